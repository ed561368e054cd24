/**
 * A short sandbox run end to end (the CI-sized version of `npm start`): every arm trains through the real
 * trainer, judge (over HTTP to the simulated judges) and meta step; the report names every arm.
 */
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SANDBOX_POLICY_DIR } from "../src/sandbox/base-policy.ts";
import { runSandbox, summaryTable } from "../src/sandbox/run.ts";
import { RubricStore } from "../src/rubric/store.ts";
import { readJsonl } from "../src/util/atomic.ts";
import type { Evaluation } from "../src/judge/types.ts";

const shipped = existsSync(join(SANDBOX_POLICY_DIR, "model.safetensors"));

describe.skipIf(!shipped)("sandbox run (reduced)", () => {
  it("trains all arms, evolves the rubric in the MPO arm, and writes a report naming every arm", async () => {
    const out = mkdtempSync(join(tmpdir(), "mpo-sandbox-"));
    const lines: string[] = [];
    const results = await runSandbox({
      out,
      arms: ["fixed", "mpo", "expert"],
      seeds: [0],
      steps: 3,
      algo: "grpo",
      batchSize: 2,
      groupSize: 2,
      mpoInterval: 1,
      metaSamples: 4,
      lr: 1e-4,
      klCoef: 0.02,
      epochs: 1,
      maxNewTokens: 48,
      testPrompts: 4,
      progress: false,
      log: (l) => lines.push(l),
    });
    expect(results.map((r) => r.arm)).toEqual(["fixed", "mpo", "expert"]);
    for (const r of results) {
      for (const p of r.perStep) {
        expect(p.rm).toBeGreaterThanOrEqual(0);
        expect(p.rm).toBeLessThanOrEqual(1);
        expect(p.oracle).toBeGreaterThanOrEqual(0);
        expect(p.oracle).toBeLessThanOrEqual(1);
      }
      expect(Number.isFinite(r.oracleAfter)).toBe(true);
    }
    // The MPO arm made new rubric versions, and the junior scored later steps with them: every item of the
    // version in force was evaluated, in range, without a parsing fallback.
    const mpo = results.find((r) => r.arm === "mpo")!;
    const versions = RubricStore.open(mpo.runDir).list();
    expect(versions.length).toBeGreaterThan(1);
    expect(versions[1].author).toEqual({ kind: "meta", step: 1 });
    const { records } = readJsonl<{ rubricVersion: number; evaluation: Evaluation }>(join(mpo.runDir, "rollouts", "step-000003.jsonl"));
    expect(records.length).toBe(4);
    for (const rec of records) {
      const v = versions.find((x) => x.version === rec.rubricVersion)!;
      expect(rec.rubricVersion).toBeGreaterThan(0);
      expect(rec.evaluation.items.map((i) => i.name)).toEqual(v.rubric.items.map((i) => i.name));
      for (const it of rec.evaluation.items) {
        expect(it.score).toBeGreaterThanOrEqual(it.min);
        expect(it.score).toBeLessThanOrEqual(it.max);
        expect(it.flags).not.toContain("unparsed-fallback");
      }
    }
    // The fixed arms never change their rubric.
    for (const r of results.filter((x) => x.arm !== "mpo")) expect(RubricStore.open(r.runDir).list().length).toBe(1);
    const report = readFileSync(join(out, "report.html"), "utf8");
    for (const arm of ["fixed", "mpo", "expert"]) expect(report).toContain(`arm ${arm}`);
    expect(report).toContain("<svg");
    expect(summaryTable(results)).toMatch(/mpo\s+\d/);
  }, 600_000);
});
