/**
 * A short sandbox run end to end (the CI-sized version of `npm start`): every arm trains through the real
 * trainer, judge (over HTTP to the simulated judges) and meta step; the report names every arm.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SANDBOX_POLICY_DIR } from "../src/sandbox/base-policy.ts";
import { eloTable, runSandbox, summaryTable } from "../src/sandbox/run.ts";
import { RubricStore } from "../src/rubric/store.ts";
import { readJsonl } from "../src/util/atomic.ts";
import type { Evaluation } from "../src/judge/types.ts";

const shipped = existsSync(join(SANDBOX_POLICY_DIR, "model.safetensors"));

describe.skipIf(!shipped)("sandbox run (reduced)", () => {
  it("trains all arms (AutoPrompt's calibrated rubric fixed, MPO's evolving), ranks them with Elo, and writes both tables to the report", async () => {
    const out = mkdtempSync(join(tmpdir(), "mpo-sandbox-"));
    const lines: string[] = [];
    const outcome = await runSandbox({
      out,
      arms: ["base", "fixed", "mpo", "expert", "autoprompt"],
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
      autopromptRounds: 1,
      autopromptPrompts: 1,
      eloMatches: 60,
      eloSeeds: [0, 1],
      eloAgreement: 0.8,
      eloPositionBias: 0.05,
      progress: false,
      log: (l) => lines.push(l),
    });
    const results = outcome.results;
    expect(results.map((r) => r.arm)).toEqual(["fixed", "mpo", "expert", "autoprompt"]);
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
    // The fixed arms never change their rubric; the AutoPrompt arm trains with the calibration's chosen rubric.
    for (const r of results.filter((x) => x.arm !== "mpo")) expect(RubricStore.open(r.runDir).list().length).toBe(1);
    const ap = results.find((r) => r.arm === "autoprompt")!;
    expect(ap.calibration!.cases).toBeGreaterThan(0);
    const chosen = RubricStore.open(ap.calibration!.dir).get(ap.calibration!.version).rubric;
    expect(RubricStore.open(ap.runDir).get(0).rubric).toEqual(chosen);
    // Elo over the test generations of every arm, base included, via the eval code (match log on disk).
    const elo = outcome.elo!;
    expect(elo.rows.map((r) => r.arm)).toEqual(["base", "fixed", "mpo", "expert", "autoprompt"]);
    for (const r of elo.rows) {
      expect(Number.isFinite(r.elo) && Number.isFinite(r.spread)).toBe(true);
      expect(r.tournaments).toBe(2);
    }
    expect(elo.rows.reduce((s, r) => s + r.elo, 0) / elo.rows.length).toBeCloseTo(1000, 6);
    expect(readJsonl(join(out, "seed-0", "elo", "elo.matches.jsonl")).records.length).toBe(120);
    expect(JSON.parse(readFileSync(join(out, "seed-0", "elo", "elo.scores.json"), "utf8"))["mean elo"]).toHaveProperty("autoprompt");
    const report = readFileSync(join(out, "report.html"), "utf8");
    for (const arm of ["fixed", "mpo", "expert", "autoprompt"]) expect(report).toContain(`arm ${arm}`);
    expect(report).toContain("Elo (pairwise judge), next to the oracle");
    for (const r of elo.rows) expect(report).toContain(`<b>${r.elo.toFixed(1)}</b> ± ${r.spread.toFixed(1)}`);
    expect(report).toContain("autoprompt-32b");
    expect(report).toContain("<svg");
    expect(summaryTable(results, outcome.base)).toMatch(/^base\s+-/m);
    expect(summaryTable(results)).toMatch(/mpo\s+\d/);
    expect(eloTable(elo)).toMatch(/autoprompt\s+AutoPrompt/);
  }, 600_000);

  it("--protocol hardened reaches every arm's judge (the controlled paper-vs-hardened comparison in README)", async () => {
    const out = mkdtempSync(join(tmpdir(), "mpo-sandbox-"));
    const outcome = await runSandbox({
      out, arms: ["fixed", "mpo"], seeds: [0], steps: 2, algo: "grpo", batchSize: 2, groupSize: 2, mpoInterval: 1, metaSamples: 4,
      lr: 1e-4, klCoef: 0.02, epochs: 1, maxNewTokens: 24, testPrompts: 2, autopromptRounds: 1, autopromptPrompts: 1,
      eloMatches: 0, eloSeeds: [0], eloAgreement: 0.8, eloPositionBias: 0.05, progress: false, log: () => {}, protocol: "hardened",
    });
    for (const r of outcome.results) {
      const cfg = JSON.parse(readFileSync(join(r.runDir, "config.json"), "utf8"));
      expect(cfg.reward.protocol).toBe("hardened");
    }
    // the meta step ran under the hardened profile
    const metaDir = join(outcome.results.find((r) => r.arm === "mpo")!.runDir, "meta");
    const logs = readdirSync(metaDir).filter((f) => /^step-\d+\.json$/.test(f));
    expect(logs.length).toBeGreaterThan(0);
    for (const f of logs) expect(JSON.parse(readFileSync(join(metaDir, f), "utf8")).settings.protocol).toBe("hardened");
  }, 600_000);
});
