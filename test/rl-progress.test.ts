/** src/rl/progress.ts: the training run's status.json and its human output without a terminal (#17 item 2). */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Progress, writeRunStatus } from "../src/rl/progress.ts";
import type { StepMetrics } from "../src/rl/trainer.ts";

const metrics = (step: number, over: Partial<StepMetrics> = {}) =>
  ({ step, rubricVersion: 0, score: { mean: 2.5, std: 0, min: 0, max: 5 }, normalizedScore: { mean: 0.5 }, kl: 0.01234, seconds: { generate: 0, score: 0, update: 0, meta: 0, total: 1.5 }, ...over }) as StepMetrics;

describe("writeRunStatus", () => {
  it("writes status.json with the fields the dashboard reads; message only when given", () => {
    const runDir = mkdtempSync(join(tmpdir(), "mpo-progress-"));
    writeRunStatus(runDir, { state: "running", step: 3, totalSteps: 10, task: "essay", algorithm: "grpo", startedAt: "2026-11-28T00:00:00.000Z", rubricVersion: 2 });
    const s = JSON.parse(readFileSync(join(runDir, "status.json"), "utf8"));
    expect(s).toMatchObject({ state: "running", step: 3, totalSteps: 10, task: "essay", algorithm: "grpo", arm: null, pid: process.pid, rubricVersion: 2 });
    expect(Date.parse(s.updatedAt)).not.toBeNaN();
    expect(s.message).toBeUndefined();
    writeRunStatus(runDir, { state: "crashed", step: 3, totalSteps: 10, task: "essay", algorithm: "grpo", startedAt: s.startedAt, rubricVersion: 2, message: "boom" });
    expect(JSON.parse(readFileSync(join(runDir, "status.json"), "utf8"))).toMatchObject({ state: "crashed", message: "boom" });
  });
});

describe("Progress without a bar", () => {
  it("a line every 5% of the steps and at the last; meta summaries and skipped steps always", async () => {
    const lines: string[] = [];
    const p = await Progress.start({ totalSteps: 40, hasRubric: true, bar: false, log: (l) => lines.push(l) }, 0, 0);
    for (let s = 1; s <= 40; s++) {
      const over: Partial<StepMetrics> = {};
      if (s === 3) over.meta = { ok: true, summary: "rubric v0 → v1: 2 items" } as StepMetrics["meta"];
      if (s === 5) over.meta = { ok: false, summary: "rubric v1 kept", error: "judge down" } as StepMetrics["meta"];
      if (s === 7) over.skipped = "no usable scores";
      p.step(metrics(s, over));
    }
    p.stop();
    const stepLines = lines.filter((l) => / step \d+\/40 /.test(l));
    expect(stepLines.map((l) => Number(/step (\d+)\//.exec(l)![1]))).toEqual(Array.from({ length: 20 }, (_, i) => 2 * (i + 1)));
    expect(stepLines[0]).toBe("mpo: step 2/40 score 2.500 (normalized 0.500) kl 0.0123 rubric v0 (1.50 s/step)");
    expect(lines).toContain("mpo: step 3: rubric v0 → v1: 2 items");
    expect(lines).toContain("mpo: step 5: rubric v1 kept (meta step failed: judge down)");
    expect(lines).toContain("mpo: step 7 skipped: no usable scores");
    p.log("hello");
    expect(lines.at(-1)).toBe("hello");
  });

  it("rewards without a rubric show the raw score and no version", async () => {
    const lines: string[] = [];
    const p = await Progress.start({ totalSteps: 1, hasRubric: false, bar: false, log: (l) => lines.push(l) }, 0, 0);
    p.step(metrics(1));
    expect(lines).toEqual(["mpo: step 1/1 score 2.500 kl 0.0123 (1.50 s/step)"]);
  });
});
