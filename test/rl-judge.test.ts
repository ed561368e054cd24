/**
 * The paper's setup through the trainer: an LLM junior judge scores rollouts against the run's rubric and
 * an LLM senior judge rewrites it every mpoInterval steps — here the project's simulated judges served
 * over real HTTP on 127.0.0.1 (`mpo sim-server`), reached through the same OpenAI-compatible client a
 * vLLM/SGLang judge would be. And the failure path: a judge that is down yields excluded samples and
 * skipped steps, never a crash or a NaN.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { trainConfigSchema } from "../src/rl/config.ts";
import { createReward, resolveTask } from "../src/rl/reward-factory.ts";
import { Trainer, type StepMetrics } from "../src/rl/trainer.ts";
import { readJsonl } from "../src/util/atomic.ts";

const root = mkdtempSync(join(tmpdir(), "mpo-rl-judge-"));
let url = "";
let close: () => Promise<unknown> = async () => {};
const rubricFile = join(root, "rubric.txt");

beforeAll(async () => {
  const { startSimServer } = await import("../src/sandbox/sim-server.ts");
  const s = await startSimServer({ host: "127.0.0.1", port: 0, seed: 1 });
  url = s.url.endsWith("/v1") ? s.url : `${s.url.replace(/\/$/, "")}/v1`;
  close = () => s.app.close();
  writeFileSync(
    rubricFile,
    "<rubric>\n<item>Relevance (0-5): the answer says what the user asked for.</item>\n<item>Brevity (0-5): the answer has no filler words.</item>\n</rubric>\n",
  );
});
afterAll(async () => {
  await close();
  rmSync(root, { recursive: true, force: true });
});

async function run(name: string, reward: unknown, steps: number) {
  const config = trainConfigSchema.parse({
    algo: "ppo",
    steps,
    batchSize: 4,
    maxNewTokens: 4,
    maxPromptTokens: 10,
    init: { maxPositions: 16, hiddenSize: 16, numLayers: 1, intermediateSize: 32 },
    mpoInterval: 2,
    engine: "ts",
    reward,
  });
  const task = await resolveTask(config.task);
  const runDir = join(root, name);
  const log: string[] = [];
  const t = await Trainer.open({ config, runDir, task, makeReward: (d) => createReward(config.reward!, { runDir: d, task, seed: 0 }), hooks: { progress: false, log: (l) => log.push(l) } });
  await t.run();
  return { runDir, log, metrics: readJsonl<StepMetrics>(join(runDir, "metrics.jsonl")).records };
}

describe("trainer with an LLM judge over HTTP (simulated judges)", () => {
  it("scores with the rubric, runs meta steps on schedule, and later steps use the new rubric", async () => {
    const { runDir, metrics, log } = await run(
      "judge",
      { kind: "judge", rm: { baseURL: url, model: "mpo-sim-judge", maxTries: 2 }, rubric: rubricFile, metaSamples: 4, mode: "per-item" },
      5,
    );
    expect(metrics.map((m) => m.step)).toEqual([1, 2, 3, 4, 5]);
    expect(metrics[0].llm.rm?.calls).toBeGreaterThan(0);
    expect(metrics[0].excluded).toBe(0);
    // meta step after step 2 and 4, awaited (and reported) by steps 3 and 5
    expect(metrics[2].meta).toBeDefined();
    expect(metrics[4].meta).toBeDefined();
    expect(metrics.slice(0, 2).every((m) => m.rubricVersion === 0)).toBe(true);
    expect(metrics[2].meta!.ok, JSON.stringify(metrics[2].meta)).toBe(true);
    {
      expect(metrics[2].rubricVersion).toBe(metrics[2].meta!.toVersion);
      expect(existsSync(join(runDir, "rubrics", "v0001.json"))).toBe(true);
    }
    expect(existsSync(join(runDir, "meta", "step-000002.json"))).toBe(true);
    expect(log.some((l) => /step 3: rubric v0/.test(l))).toBe(true);
    const stages = Object.keys(metrics.reduce((a, m) => ({ ...a, ...m.llm }), {}));
    expect(stages.some((s) => s.startsWith("mrm"))).toBe(true);
    const r = readJsonl<{ evaluation: { items: unknown[]; rubricVersion: number } | null; rubricVersion: number }>(join(runDir, "rollouts", "step-000001.jsonl")).records;
    expect(r[0].evaluation!.items).toHaveLength(2);
    expect(r[0].evaluation!.rubricVersion).toBe(0);
  }, 120_000);

  it("math-mixed: the plan/execute path through the LLM judge, guideline meta steps on schedule", async () => {
    const { runDir, metrics } = await run(
      "math",
      { kind: "math-mixed", rm: { baseURL: url, model: "mpo-sim-judge", maxTries: 2 }, answerCheckProbability: 0, minReasoningWords: 0 },
      3,
    );
    expect(metrics.map((m) => m.step)).toEqual([1, 2, 3]);
    expect(metrics[0].llm.rm?.calls).toBeGreaterThan(0);
    expect(metrics[2].meta).toBeDefined();
    expect(existsSync(join(runDir, "guidelines", "v0000.json"))).toBe(true);
    const r = readJsonl<{ evaluation: { mode: string; flags: string[] } | null; score: number | null }>(join(runDir, "rollouts", "step-000001.jsonl")).records;
    expect(r.every((x) => x.evaluation?.mode === "mixed" && x.evaluation.flags.includes("path:plan-execute"))).toBe(true);
    expect(r.every((x) => typeof x.score === "number" && x.score >= 0 && x.score <= 5)).toBe(true);
  }, 120_000);

  it("a judge that is down: samples excluded, steps skipped and logged, no crash, no NaN", async () => {
    const { metrics, log } = await run(
      "down",
      { kind: "judge", rm: { baseURL: "http://127.0.0.1:9/v1", model: "nobody", maxTries: 1, timeoutMs: 2000 }, rubric: rubricFile },
      2,
    );
    expect(metrics).toHaveLength(2);
    for (const m of metrics) {
      expect(m.excluded).toBe(4);
      expect(m.skipped).toBeDefined();
      expect(m.llm.rm?.failures).toBeGreaterThan(0);
    }
    expect(log.filter((l) => /skipped/.test(l))).toHaveLength(2);
    expect(readFileSync(join(root, "down", "metrics.jsonl"), "utf8")).not.toMatch(/NaN/);
  }, 60_000);
});
