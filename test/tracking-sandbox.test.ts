/**
 * `mpo sandbox --log-to tensorboard,wandb`: every arm's run is tracked on its own — TensorBoard event files in
 * each arm's run directory (decoded independently by test/helpers/tfevents_decode.py) and one W&B run per arm
 * (the real SDK against the fake W&B server), each carrying every step of that arm's metrics.jsonl and, for the
 * MPO arm, every rubric version.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SANDBOX_POLICY_DIR } from "../src/sandbox/base-policy.ts";
import { FakeWandb } from "./helpers/fake-wandb.ts";

const shipped = existsSync(join(SANDBOX_POLICY_DIR, "model.safetensors"));
const dir = mkdtempSync(join(tmpdir(), "mpo-sandbox-track-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Decoded = Array<{ step?: number; values: Array<{ tag: string; simple_value?: number; text?: string }> }>;
const decode = (file: string): Decoded => JSON.parse(execFileSync("python3", [resolve(import.meta.dirname, "helpers", "tfevents_decode.py"), file], { encoding: "utf8" }));
const metricSteps = (run: string): Array<[number, number]> =>
  readFileSync(join(run, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .map((r) => [r.step, r.score.mean]);

describe.skipIf(!shipped)("mpo sandbox --log-to", () => {
  it("each arm logs its own steps and rubric versions to TensorBoard and to its own W&B run", async () => {
    const w = await new FakeWandb().start();
    const out = join(dir, "sb");
    try {
      const args = ["sandbox", "--out", out, "--arms", "fixed,mpo", "--seeds", "0", "--steps", "2", "--algo", "grpo", "--batch", "2", "--group-size", "2", "--mpo-interval", "1", "--meta-samples", "4", "--epochs", "1", "--max-new-tokens", "16", "--test-prompts", "2", "--elo-matches", "0", "--log-to", "tensorboard,wandb"];
      const res = await new Promise<{ code: number | null; text: string }>((r) => {
        const p = spawn(process.execPath, [resolve(import.meta.dirname, "..", "bin", "mpo.js"), ...args], { env: { ...process.env, WANDB_API_KEY: "fake-key", WANDB_BASE_URL: w.url, WANDB_PROJECT: "mpo-sandbox" } });
        let text = "";
        p.stdout.on("data", (d) => (text += d));
        p.stderr.on("data", (d) => (text += d));
        p.on("close", (code) => r({ code, text }));
      });
      expect(res.code, res.text).toBe(0);
      expect(res.text).not.toMatch(/warning: .*--log-to/);
      const wandbRuns = [...w.runs.values()];
      expect(wandbRuns.map((r) => r.displayName).sort()).toEqual(["sb/seed-0/fixed", "sb/seed-0/mpo"]);
      for (const arm of ["fixed", "mpo"]) {
        const run = join(out, "seed-0", arm);
        const want = metricSteps(run);
        expect(want.map(([s]) => s)).toEqual([1, 2]);
        // TensorBoard: the arm's own event file, score/mean at every step, its rubric versions as text.
        const files = readdirSync(join(run, "tensorboard"));
        expect(files).toHaveLength(1);
        const events = decode(join(run, "tensorboard", files[0]));
        const scores = events.flatMap((e) => e.values.filter((v) => v.tag === "score/mean").map((v) => [e.step, v.simple_value]));
        expect(scores).toEqual(want.map(([s, m]) => [s, expect.closeTo(m, 5)]));
        const texts = events.flatMap((e) => e.values.filter((v) => v.text !== undefined).map((v) => v.tag));
        const versions = readdirSync(join(run, "rubrics")).filter((f) => f.endsWith(".txt")).map((f) => `rubric/${f.slice(0, -4)}`);
        expect(texts).toEqual(versions);
        // W&B: the arm's own run with the same rows.
        const wr = wandbRuns.find((r) => r.displayName === `sb/seed-0/${arm}`)!;
        expect(wr.complete).toEqual({ exitcode: 0 });
        expect(wr.history.filter((h) => "score/mean" in h).map((h) => [h._step, h["score/mean"]])).toEqual(want);
        expect(wr.history.flatMap((h) => Object.keys(h).filter((k) => k.startsWith("rubric/"))).sort()).toEqual(versions);
      }
      // The MPO arm made a rubric version; the fixed arm kept v0.
      expect(readdirSync(join(out, "seed-0", "mpo", "rubrics")).filter((f) => f.endsWith(".txt")).length).toBeGreaterThan(1);
    } finally {
      await w.stop();
    }
  }, 240_000);
});
