/**
 * The reward service's meta step across kill -9 at every visible write (#11: "meta steps idempotent across a
 * kill at any point"): a restart finishes or discards the half-made step and never redoes a finished one — one
 * new rubric version, complete, whatever the kill point.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const repo = resolve(".");
const root = mkdtempSync(join(tmpdir(), "mpo-serve-kill-"));
const rubric = join(root, "rubric.txt");
writeFileSync(rubric, "<rubric><item>Discourse: how well the writing flows. Score from 0 to 5.</item></rubric>");

function child(runDir: string, killAfter = 0): Promise<{ signal: NodeJS.Signals | null; status: number | null; stderr: string }> {
  const args = ["--import", "tsx", "--import", join(repo, "test/helpers/kill-after.mjs"), join(repo, "test/helpers/serve-meta-kill-child.ts"), runDir, rubric];
  const c = spawn(process.execPath, args, {
    cwd: repo,
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, MPO_KILL_DIR: runDir, MPO_KILL_AFTER: String(killAfter), MPO_KILL_TRACE: `${runDir}.trace`, MPO_KILL_ONLY: "^(meta/step-|rubrics/v|serve-state)" },
  });
  let stderr = "";
  c.stderr!.on("data", (d) => (stderr += d));
  return new Promise((res) => c.on("close", (status, signal) => res({ status, signal, stderr })));
}

const calls = (runDir: string) => (existsSync(join(runDir, "calls.log")) ? readFileSync(join(runDir, "calls.log"), "utf8").split("\n").filter(Boolean).length : 0);
const versions = (runDir: string) => readdirSync(join(runDir, "rubrics")).filter((f) => /^v\d+\.(json|txt)$/.test(f)).sort();
const metaLogs = (runDir: string) => readdirSync(join(runDir, "meta")).filter((f) => /^step-\d+\.json$/.test(f));

describe("reward service: kill -9 at every visible write of a meta step", () => {
  it("restart adopts a finished step or discards and re-runs a half-made one; one complete new version", { timeout: 180_000 }, async () => {
    const clean = join(root, "clean");
    expect(await child(clean)).toMatchObject({ status: 0, signal: null });
    const perStep = calls(clean);
    expect(perStep).toBeGreaterThan(0);
    const trace = readFileSync(`${clean}.trace`, "utf8").trim().split("\n").map((l) => l.split(" ")[2]);
    const logName = metaLogs(clean)[0];
    expect(versions(clean)).toEqual(["v0000.json", "v0000.txt", "v0001.json", "v0001.txt"]);
    // The meta step's own writes: log, version json + txt, log done, then the state without the pending step.
    const firstLog = trace.indexOf(`meta/${logName}`) + 1;
    const doneLog = trace.lastIndexOf(`meta/${logName}`) + 1;
    expect(firstLog).toBeGreaterThan(0);
    expect(doneLog).toBeGreaterThan(firstLog);

    const points = trace.map((_, i) => i + 1).filter((k) => k >= firstLog - 1); // from the pending mark on
    for (const k of points) {
      const dir = join(root, `kill-${k}`);
      const killed = await child(dir, k);
      expect(killed.signal, `kill point ${k} (${trace[k - 1]}): ${killed.stderr}`).toBe("SIGKILL");
      const before = calls(dir);
      const again = await child(dir);
      expect(again.status, `restart after kill point ${k}: ${again.stderr}`).toBe(0);
      expect(versions(dir), `kill point ${k}`).toEqual(["v0000.json", "v0000.txt", "v0001.json", "v0001.txt"]);
      expect(metaLogs(dir), `kill point ${k}`).toEqual([logName]);
      expect(JSON.parse(readFileSync(join(dir, "meta", logName), "utf8")).state).toBe("done");
      const state = JSON.parse(readFileSync(join(dir, "serve-state.json"), "utf8"));
      expect(state, `kill point ${k}`).toMatchObject({ pendingMeta: null, metaSteps: 1 });
      // Finished before the kill (log done): adopted, not one senior call repeated. Otherwise re-run exactly once.
      expect(calls(dir) - before, `kill point ${k} (${trace[k - 1]})`).toBe(k >= doneLog ? 0 : perStep);
      expect(JSON.parse(readFileSync(join(dir, "rubrics", "v0001.json"), "utf8")).rubric).toEqual(JSON.parse(readFileSync(join(clean, "rubrics", "v0001.json"), "utf8")).rubric);
    }
  });
});
