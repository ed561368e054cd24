/**
 * A minimal caller of the MetaScheduler for the kill-point test (test/meta-scheduler.test.ts): it persists
 * its pending meta step in caller-state.json (as the reward service does in serve-state.json and the
 * trainer in its checkpoint), runs the REAL meta step (src/meta/meta-step.ts) against a scripted senior
 * judge, and on restart hands the pending job to recover(). Every LLM call is appended to calls.log so the
 * test can tell whether a restart re-ran the step.
 *   node --import tsx [--import kill-after.mjs] meta-kill-child.ts RUN_DIR   (or import runCaller)
 */
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { ChatModel, ChatRequest, ChatResponse } from "../../src/llm/types.ts";
import { metaStep, type MetaRollout, type MetaStepResult } from "../../src/meta/meta-step.ts";
import { everySamples, MetaScheduler } from "../../src/meta/scheduler.ts";
import { parseRubricText } from "../../src/rubric/format.ts";
import { RubricStore } from "../../src/rubric/store.ts";
import { writeJsonAtomic } from "../../src/util/atomic.ts";
import { Rng } from "../../src/util/rng.ts";

/** One life of the caller process; returns what it did ("ran", "re-ran", "adopted …", or "" when nothing was due). */
export async function runCaller(runDir: string): Promise<string> {
  const calls = join(runDir, "calls.log");
  const judge: ChatModel = {
    id: "scripted-mrm",
    async chat(req: ChatRequest): Promise<ChatResponse> {
      appendFileSync(calls, `${req.stage}\n`);
      const text =
        req.stage === "mrm-analyze"
          ? "The rubric rewards length; the response pads."
          : "<rubric>\n<item>\n### Substance\nReward concrete arguments, 0 to 5.\n</item>\n<item>\n### No padding\nPenalize filler, 0 to 5.\n</item>\n</rubric>";
      return { text, promptTokens: 10, completionTokens: 10 };
    },
  };

  const store = RubricStore.open(runDir);
  store.initialize(parseRubricText("<rubric>\n<item>\n### Length\nLonger is better, 0 to 5.\n</item>\n</rubric>", "initial"));
  const rollouts: MetaRollout[] = Array.from({ length: 4 }, (_, i) => ({
    id: `r${i}`,
    taskDescription: "Write an essay.",
    prompt: `Prompt ${i}`,
    response: "words ".repeat(10 + i),
    evaluation: { items: [{ name: "Length", score: 5, min: 0, max: 5, rationale: "long", raw: "5", flags: [] }], total: 5, normalized: 1, rubricVersion: 0, mode: "per-item", flags: [], raw: [] },
  }));

  type Input = { rollouts: MetaRollout[]; fromVersion: number };
  const statePath = join(runDir, "caller-state.json");
  const state: { pending: { key: number; fromVersion: number } | null; metaSteps: number } = existsSync(statePath)
    ? JSON.parse(readFileSync(statePath, "utf8"))
    : { pending: null, metaSteps: 0 };

  const scheduler = new MetaScheduler<Input, MetaStepResult>({
    runDir,
    trigger: everySamples(4),
    run: (job) => metaStep({ protocol: "hardened", model: judge, rollouts: job.input.rollouts, store, step: job.key, runDir, rng: new Rng(job.key), samples: 2 }),
    onError: (err) => {
      throw err;
    },
    commitState: (o) => ({ version: o.version?.version ?? o.previous.version }),
    discard: (job) => void store.rollbackAfter(job.input.fromVersion),
  });

  const KEY = 7;
  let did = "";
  if (state.pending) {
    const job = { key: state.pending.key, input: { rollouts, fromVersion: state.pending.fromVersion } };
    const commit = await scheduler.recover(job);
    if (commit) did = `adopted ${JSON.stringify(commit.state)}`;
    else {
      scheduler.start(job);
      await scheduler.settle();
      did = "re-ran";
    }
  } else if (state.metaSteps === 0 && scheduler.isDue({ step: KEY, windowSamples: rollouts.length })) {
    state.pending = { key: KEY, fromVersion: store.latest()!.version };
    writeJsonAtomic(statePath, state);
    scheduler.start({ key: KEY, input: { rollouts, fromVersion: state.pending.fromVersion } });
    await scheduler.settle();
    did = "ran";
  }
  state.pending = null;
  state.metaSteps = 1;
  writeJsonAtomic(statePath, state);
  return did;
}

if (process.argv[1] && import.meta.filename === process.argv[1]) process.stdout.write((await runCaller(process.argv[2])) + "\n");
