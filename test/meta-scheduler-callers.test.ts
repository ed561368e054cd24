/**
 * One MetaScheduler, two callers (#17): the trainer and the reward service both run their meta steps through
 * src/meta/scheduler.ts, so both write the same commit marker and resume a killed meta step the same way:
 *   - kill -9 right after the marker became visible (before the caller recorded the step as done): the restart
 *     adopts the step — its log is left byte for byte, nothing is moved aside, no second version;
 *   - kill -9 right after the step's first log write (half-made): the restart moves that log aside, re-runs the
 *     step once and ends with the same rubric version an uninterrupted run makes.
 * Each caller is driven through its real code (Trainer with the sandbox policy; RewardService) in a child
 * process killed by test/helpers/kill-after.mjs; the same assertions run for both.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MetaScheduler, never } from "../src/meta/scheduler.ts";
import { SANDBOX_POLICY_DIR } from "../src/sandbox/base-policy.ts";
import { startSimServer } from "../src/sandbox/sim-server.ts";
import { metaCommitFile, metaLogFile } from "../src/util/run-layout.ts";

const KILL = resolve("test/helpers/kill-after.mjs");
const root = mkdtempSync(join(tmpdir(), "mpo-meta-callers-"));
const rubricFile = join(root, "rubric.txt");
writeFileSync(rubricFile, "<rubric><item>Discourse: how well the writing flows. Score from 0 to 5.</item></rubric>");

let sim: Awaited<ReturnType<typeof startSimServer>>;
beforeAll(async () => {
  sim = await startSimServer();
});
afterAll(async () => {
  await sim?.app.close();
});

interface Caller {
  name: string;
  child: string;
  args: (runDir: string) => string[];
  /** The key of the meta step one life makes (trainer: the step after which it ran; service: samples scored). */
  key: number;
}
const callers: Caller[] = [
  { name: "trainer", child: resolve("test/helpers/train-meta-kill-child.ts"), args: (d) => [d, sim.url], key: 2 },
  { name: "reward service", child: resolve("test/helpers/serve-meta-kill-child.ts"), args: (d) => [d, rubricFile], key: 6 },
];

function life(c: Caller, runDir: string, kill?: { only: string; after: number }): Promise<{ status: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const env = { ...process.env, ...(kill ? { MPO_KILL_DIR: runDir, MPO_KILL_AFTER: String(kill.after), MPO_KILL_ONLY: kill.only } : {}) };
  const args = ["--import", "tsx", ...(kill ? ["--import", KILL] : []), c.child, ...c.args(runDir)];
  return new Promise((done) => {
    const p = spawn(process.execPath, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (status, signal) => done({ status, signal, stderr }));
  });
}

const versions = (runDir: string) => readdirSync(join(runDir, "rubrics")).filter((f) => /^v\d+\.(json|txt)$/.test(f)).sort();
const rubricOf = (runDir: string, v: string) => JSON.parse(readFileSync(join(runDir, "rubrics", v), "utf8")).rubric;
const movedAsideLogs = (runDir: string) =>
  existsSync(join(runDir, "moved-aside")) ? readdirSync(join(runDir, "moved-aside"), { recursive: true, encoding: "utf8" }).filter((f) => /meta\/step-\d+\.json$/.test(f)) : [];
/** Reads a run's marker through the scheduler itself: both callers' markers are the one implementation's. */
const commitOf = (runDir: string, key: number) => new MetaScheduler<null, unknown>({ runDir, trigger: never, run: async () => null, onError: () => null }).commitOf(key);

describe.skipIf(!existsSync(join(SANDBOX_POLICY_DIR, "model.safetensors")))("the trainer and the reward service share one MetaScheduler", () => {
  for (const c of callers) {
    it(`${c.name}: marker after every meta step; kill after the marker → adopted; kill mid-step → re-run once`, { timeout: 300_000 }, async () => {
      const clean = join(root, `${c.key}-clean`);
      const r = await life(c, clean);
      expect(r.status, r.stderr).toBe(0);
      expect(versions(clean)).toEqual(["v0000.json", "v0000.txt", "v0001.json", "v0001.txt"]);
      expect(commitOf(clean, c.key)).toMatchObject({ key: c.key, committedAt: expect.any(String) });
      expect(existsSync(join(clean, metaCommitFile(c.key)))).toBe(true);
      const log = metaLogFile(c.key);

      // Killed right after the commit marker: the step is final; the restart adopts it.
      const adopted = join(root, `${c.key}-adopted`);
      const k1 = await life(c, adopted, { only: "^meta/commits/", after: 1 });
      expect(k1.signal, k1.stderr).toBe("SIGKILL");
      const logBefore = readFileSync(join(adopted, log), "utf8");
      const r1 = await life(c, adopted);
      expect(r1.status, r1.stderr).toBe(0);
      expect(readFileSync(join(adopted, log), "utf8")).toBe(logBefore);
      expect(JSON.parse(logBefore).state).toBe("done");
      expect(movedAsideLogs(adopted)).toEqual([]);
      expect(versions(adopted)).toEqual(versions(clean));
      expect(rubricOf(adopted, "v0001.json")).toEqual(rubricOf(clean, "v0001.json"));

      // Killed right after the meta step's first log write: half-made; the restart moves it aside and re-runs it.
      const rerun = join(root, `${c.key}-rerun`);
      const k2 = await life(c, rerun, { only: "^meta/step-", after: 1 });
      expect(k2.signal, k2.stderr).toBe("SIGKILL");
      expect(existsSync(join(rerun, metaCommitFile(c.key)))).toBe(false);
      const r2 = await life(c, rerun);
      expect(r2.status, r2.stderr).toBe(0);
      expect(movedAsideLogs(rerun)).toHaveLength(1);
      expect(JSON.parse(readFileSync(join(rerun, log), "utf8")).state).toBe("done");
      expect(commitOf(rerun, c.key)).toMatchObject({ key: c.key });
      expect(versions(rerun)).toEqual(versions(clean));
      expect(rubricOf(rerun, "v0001.json")).toEqual(rubricOf(clean, "v0001.json"));
    });
  }
});
