/** The rubric acceptance guard inside a real meta step: fake senior and junior judges over loopback HTTP. */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RubricJudge } from "../src/judge/rubric-judge.ts";
import type { Evaluation } from "../src/judge/types.ts";
import { createChatModel } from "../src/llm/openai-client.ts";
import { judgeGuard, loadExploits } from "../src/meta/guard.ts";
import { metaStep, type MetaRollout } from "../src/meta/meta-step.ts";
import { parseRubricText } from "../src/rubric/format.ts";
import { RubricStore } from "../src/rubric/store.ts";
import { Rng } from "../src/util/rng.ts";
import { startFakeOpenAI, type FakeOpenAI } from "./helpers/fake-openai-server.ts";
import { fakeJudge } from "./judge-fake-replies.ts";

const initial = parseRubricText(`<rubric>
<item>
### Relevance
Stays on the prompt. Score from 0 to 5.
</item>
<item>
### Style
Clear prose. Score from 0 to 5.
</item>
</rubric>`);

/** Junior score under the initial rubric: by length (1 short, 3 long). */
const lengthScore = (response: string) => (response.split(/\s+/).length > 10 ? 3 : 1);

function evaluation(score: number): Evaluation {
  return {
    items: initial.items.map((it) => ({ name: it.name, score, min: 0, max: 5, rationale: "ok", raw: String(score), flags: [] })),
    total: 2 * score,
    normalized: score / 5,
    rubricVersion: 0,
    mode: "per-item",
    flags: [],
    raw: [],
  };
}

function window(n: number): MetaRollout[] {
  return Array.from({ length: n }, (_, i) => {
    const response = i % 2 === 0 ? `short reply ${i}` : `A long essay number ${i} with many words about the topic at hand, and more.`;
    return { id: `r${i}`, taskDescription: "Write an essay.", prompt: `Prompt ${i}`, response, evaluation: evaluation(lengthScore(response)) };
  });
}

const servers: FakeOpenAI[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()!.close();
});

/** Senior = the usual fake (merge → Focus/Evidence items); junior scores Focus/Evidence with `candidateScore`. */
async function setup(candidateScore: (response: string) => number) {
  const senior = await startFakeOpenAI({ reply: fakeJudge() });
  const junior = await startFakeOpenAI({
    reply: fakeJudge({ score: (item, response) => (/relevance|style/i.test(item) ? lengthScore(response) : candidateScore(response)) }),
  });
  servers.push(senior, junior);
  const runDir = mkdtempSync(join(tmpdir(), "mpo-guard-"));
  const store = RubricStore.open(runDir);
  store.initialize(initial);
  const mk = (url: string, model: string) => createChatModel({ baseURL: url, model, server: "vllm", maxTries: 2, backoffBaseMs: 1 });
  return { runDir, store, mrm: mk(senior.url, "mrm"), judge: new RubricJudge({ protocol: "hardened", model: mk(junior.url, "rm") }), junior };
}

async function run(s: Awaited<ReturnType<typeof setup>>, step: number) {
  const w = window(12);
  return metaStep({
    protocol: "hardened",
    model: s.mrm,
    rollouts: w,
    store: s.store,
    step,
    runDir: s.runDir,
    rng: new Rng(step),
    samples: 3,
    guard: judgeGuard({ judge: s.judge, window: w, runDir: s.runDir, store: s.store, rng: new Rng(step + 1), options: { probes: 6 } }),
  });
}

describe("meta step with the rubric guard", () => {
  it("a rubric that scores everything alike is stored as rejected and never becomes current", async () => {
    const s = await setup(() => 5);
    const res = await run(s, 10);
    expect(res.ok).toBe(false);
    expect(res.rejected?.version).toBe(1);
    expect(res.summary).toMatch(/rubric v0 kept: v1 rejected by the guard \(score spread collapses/);
    expect(s.store.latest()!.version).toBe(0);
    const all = s.store.list();
    expect(all.map((v) => [v.version, !!v.rejected])).toEqual([
      [0, false],
      [1, true],
    ]);
    // The rejected version is readable from disk with its reasons (lineage shows it), and its log says why.
    expect(JSON.parse(readFileSync(join(s.runDir, "rubrics", "v0001.json"), "utf8")).rejected.reasons[0]).toMatch(/spread/);
    const log = JSON.parse(readFileSync(res.logFile, "utf8"));
    expect(log.state).toBe("rejected");
    expect(log.guard.numbers.spreadAfter).toBe(0);
    expect(log.guard.probes).toHaveLength(6);
    // Scoring after the rejection uses v0: the rejected rubric never scores a rollout.
    const e = await s.judge.score({ taskDescription: "t", prompt: "p", response: "tiny" }, s.store.latest()!);
    expect(e.rubricVersion).toBe(0);
    expect(e.items.map((i) => i.name)).toEqual(initial.items.map((i) => i.name));
    // The next meta step starts from v0 again and takes the next free number.
    const again = await run(s, 20);
    expect(again.previous.version).toBe(0);
    expect(again.rejected?.version).toBe(2);
    expect(s.store.latest()!.version).toBe(0);
  });

  it("a rubric that keeps the ranking is accepted; the probes' window scores are reused", async () => {
    const s = await setup(lengthScore);
    const before = s.junior.requests.length;
    const res = await run(s, 10);
    expect(res.ok).toBe(true);
    expect(res.version!.version).toBe(1);
    expect(res.guard!.accepted).toBe(true);
    expect(res.guard!.scorings).toBe(6); // 6 recent probes under the new rubric only
    expect(s.store.latest()!.version).toBe(1);
    // per-item: 2 calls (rationale + score) per item × 3 items after dedupe... at least one call per probe
    expect(s.junior.requests.length - before).toBeGreaterThanOrEqual(6);
  });

  it("an accepted version that demotes high-scoring probes records them as exploit cases for later guards", async () => {
    // Candidate scores long answers 0: every high probe drops → recorded as an exploit case.
    const s = await setup((r) => (r.split(/\s+/).length > 10 ? 1 : 0));
    const res = await run(s, 10);
    expect(res.ok).toBe(true);
    const ex = loadExploits(s.runDir, s.store, 8);
    expect(ex.length).toBeGreaterThan(0);
    expect(ex.every((e) => e.kind === "exploit" && /long essay/.test(e.input.response))).toBe(true);
  });

  it("a junior judge that is down during the guard keeps the rubric and stores nothing", async () => {
    const s = await setup(lengthScore);
    await servers.pop()!.close(); // the junior goes down; the senior stays up (closed in afterEach)
    const res = await run(s, 10);
    expect(res.ok).toBe(false);
    expect(res.error).toMatch(/rubric guard could not score/);
    expect(s.store.list().map((v) => v.version)).toEqual([0]);
  });
});
