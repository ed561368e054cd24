/**
 * The adaptive schedule and the rubric guard inside real training runs (the sandbox policy and task, the
 * simulated judges over HTTP): triggered meta steps carry their reason into metrics and meta logs, the guard's
 * verdict is recorded, and a kill -9 in the middle of a guarded meta step resumes to exactly the run an
 * uninterrupted process makes.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SANDBOX_POLICY_DIR } from "../src/sandbox/base-policy.ts";
import { startSimServer } from "../src/sandbox/sim-server.ts";

const CHILD = resolve("test/helpers/guard-kill-child.ts");
const KILL = resolve("test/helpers/kill-after.mjs");

/** One process life (async: the simulated judges are served from this process's event loop). */
function life(runDir: string, url: string, killAfter?: number): Promise<{ status: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const env = { ...process.env, ...(killAfter ? { MPO_KILL_DIR: runDir, MPO_KILL_AFTER: String(killAfter), MPO_KILL_ONLY: "^meta/step-" } : {}) };
  const args = ["--import", "tsx", ...(killAfter ? ["--import", KILL] : []), CHILD, runDir, url];
  return new Promise((done) => {
    const p = spawn(process.execPath, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (status, signal) => done({ status, signal, stderr }));
  });
}

const lines = (f: string) => readFileSync(f, "utf8").trim().split("\n").map((l) => JSON.parse(l));
/** What must match between an interrupted+resumed run and an uninterrupted one. */
function fingerprint(runDir: string) {
  const metrics = lines(join(runDir, "metrics.jsonl")).map((m) => ({ step: m.step, score: m.score, rubricVersion: m.rubricVersion, kl: m.kl, meta: m.meta && { ok: m.meta.ok, trigger: m.meta.trigger, guard: m.meta.guard, rejectedVersion: m.meta.rejectedVersion, toVersion: m.meta.toVersion } }));
  const rubrics = readdirSync(join(runDir, "rubrics"))
    .filter((f) => /^v\d+\.json$/.test(f))
    .sort()
    .map((f) => {
      const v = JSON.parse(readFileSync(join(runDir, "rubrics", f), "utf8"));
      return { version: v.version, parent: v.parent, rejected: v.rejected ?? null, rubric: v.rubric };
    });
  return { metrics, rubrics };
}

describe.skipIf(!existsSync(join(SANDBOX_POLICY_DIR, "model.safetensors")))("adaptive schedule + rubric guard in training", () => {
  let sim: Awaited<ReturnType<typeof startSimServer>>;
  beforeAll(async () => {
    sim = await startSimServer();
  });
  afterAll(async () => {
    await sim?.app.close();
  });

  it("records why each meta step ran and the guard's verdict; kill -9 mid-guard resumes exactly", { timeout: 240_000 }, async () => {
    const root = mkdtempSync(join(tmpdir(), "mpo-adaptive-"));
    const clean = join(root, "clean");
    const r = await life(clean, sim.url);
    expect(r.status, r.stderr).toBe(0);
    const want = fingerprint(clean);
    const metaLines = want.metrics.filter((m) => m.meta);
    expect(metaLines.length).toBeGreaterThan(0);
    for (const m of metaLines) {
      expect(["trigger", "max-interval"]).toContain(m.meta.trigger.reason);
      expect(m.meta.guard).toBeDefined();
    }
    const log = JSON.parse(readFileSync(join(clean, "meta", readdirSync(join(clean, "meta")).filter((f) => /^step-\d+\.json$/.test(f)).sort()[0]), "utf8"));
    expect(log.trigger.reason).toMatch(/trigger|max-interval/);
    expect(log.guard.probes.length).toBeGreaterThan(0);

    // Killed right after the first meta log becomes visible: the guard has decided, no version stored yet.
    const killed = join(root, "killed");
    const k = await life(killed, sim.url, 1);
    expect(k.signal).toBe("SIGKILL");
    expect(existsSync(join(killed, "checkpoints"))).toBe(true);
    const again = await life(killed, sim.url);
    expect(again.status, again.stderr).toBe(0);
    expect(fingerprint(killed)).toEqual(want);
  });
});
