/**
 * The MetaScheduler (src/meta/scheduler.ts): triggers, the background run and its hand-over, and crash
 * safety — a meta step killed (-9) at every point where a file of it becomes visible is, after a restart,
 * either finished exactly once (adopted, no LLM call repeated) or discarded and re-run; never done twice.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { anyOf, decisionTrigger, everySamples, everySteps, MetaScheduler, never } from "../src/meta/scheduler.ts";
import { decideFixed } from "../src/meta/triggers.ts";
import { metaCommitFile, runPath } from "../src/util/run-layout.ts";

const repo = resolve(import.meta.dirname, "..");
const root = mkdtempSync(join(tmpdir(), "mpo-meta-sched-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("triggers", () => {
  it("every k steps (not after the last), every k samples, never, anyOf", () => {
    const t = everySteps(3, { lastStep: 9 });
    expect([1, 2, 3, 4, 6, 9].map((step) => t.due({ step, windowSamples: 0 }))).toEqual([false, false, true, false, true, false]);
    expect(everySteps(0).due({ step: 3, windowSamples: 0 })).toBe(false);
    const s = everySamples(5);
    expect([4, 5, 6].map((w) => s.due({ step: 0, windowSamples: w }))).toEqual([false, true, true]);
    expect(everySamples(0).due({ step: 0, windowSamples: 100 })).toBe(false);
    expect(never.due({ step: 1, windowSamples: 1 })).toBe(false);
    expect(anyOf(everySteps(4), everySamples(2)).due({ step: 1, windowSamples: 2 })).toBe(true);
  });

  it("a decision function (the adaptive schedule's shape) plugs in; its reason travels with the answer", () => {
    const s = new MetaScheduler<null, null>({
      runDir: root,
      trigger: decisionTrigger("fixed 3", (c) => decideFixed(c.sinceLast ?? 0, 3)),
      run: async () => null,
      onError: () => null,
    });
    expect(s.decide({ step: 2, windowSamples: 0, sinceLast: 2 })).toEqual({ due: false, decision: { due: false, reason: "quiet", sinceLast: 2, triggers: [] } });
    expect(s.decide({ step: 3, windowSamples: 0, sinceLast: 3 })).toMatchObject({ due: true, decision: { reason: "interval" } });
    expect(s.isDue({ step: 3, windowSamples: 0, sinceLast: 3 })).toBe(true);
  });
});

describe("scheduler", () => {
  it("runs in the background, is not due while running, hands the result over once, writes the commit marker", async () => {
    const runDir = mkdtempSync(join(root, "bg-"));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const committed: number[] = [];
    const s = new MetaScheduler<string, string>({
      runDir,
      trigger: everySamples(1),
      run: async (job) => {
        await gate;
        return `done ${job.input}`;
      },
      onError: () => "error",
      commitState: () => ({ v: 1 }),
      onCommit: (_o, job) => committed.push(job.key),
    });
    expect(s.isDue({ step: 1, windowSamples: 1 })).toBe(true);
    s.start({ key: 1, input: "a" });
    expect(s.isDue({ step: 2, windowSamples: 5 })).toBe(false);
    expect(() => s.start({ key: 2, input: "b" })).toThrow(/running/);
    expect(existsSync(runPath(runDir, metaCommitFile(1)))).toBe(false);
    release();
    const r = await s.settle();
    expect(r).toMatchObject({ outcome: "done a", committed: true, job: { key: 1 } });
    expect(committed).toEqual([1]);
    expect(await s.settle()).toBeNull();
    expect(s.commitOf(1)).toMatchObject({ key: 1, outcome: "done a", state: { v: 1 } });
  });

  it("a throwing step becomes onError's outcome; an aborted one commits nothing", async () => {
    const runDir = mkdtempSync(join(root, "err-"));
    const s = new MetaScheduler<string, string>({
      runDir,
      trigger: never,
      run: async (job, signal) => {
        if (job.input === "boom") throw new Error("boom");
        await new Promise((r) => signal.addEventListener("abort", r));
        return "aborted";
      },
      onError: (err) => `error: ${(err as Error).message}`,
    });
    s.start({ key: 1, input: "boom" });
    expect((await s.settle())!.outcome).toBe("error: boom");
    s.start({ key: 2, input: "wait" });
    await s.abort();
    expect(s.commitOf(2)).toBeNull();
    expect(s.running).toBeNull();
  });

  it("a corrupt commit marker is an error naming the file and field", async () => {
    const runDir = mkdtempSync(join(root, "corrupt-"));
    const s = new MetaScheduler<string, string>({ runDir, trigger: never, run: async () => "x", onError: () => "e" });
    s.start({ key: 3, input: "" });
    await s.settle();
    const { writeFileSync } = await import("node:fs");
    writeFileSync(runPath(runDir, metaCommitFile(3)), JSON.stringify({ key: "three" }));
    expect(() => s.commitOf(3)).toThrow(/step-000003\.json: field 'key'/);
  });
});

/** Runs the child caller as a process; MPO_KILL_AFTER=n kills it -9 right after the n-th visible write in the run dir. */
function child(runDir: string, killAfter = 0): Promise<{ signal: NodeJS.Signals | null; status: number | null; stderr: string }> {
  const args = ["--import", "tsx", "--import", join(repo, "test/helpers/kill-after.mjs"), join(repo, "test/helpers/meta-kill-child.ts"), runDir];
  const c = spawn(process.execPath, args, {
    cwd: repo,
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, MPO_KILL_DIR: runDir, MPO_KILL_AFTER: String(killAfter), MPO_KILL_TRACE: `${runDir}.trace` },
  });
  let stderr = "";
  c.stderr!.on("data", (d) => (stderr += d));
  return new Promise((res) => c.on("close", (status, signal) => res({ status, signal, stderr })));
}

const llmCalls = (runDir: string) => (existsSync(join(runDir, "calls.log")) ? readFileSync(join(runDir, "calls.log"), "utf8").split("\n").filter(Boolean).length : 0);
const versions = (runDir: string) => readdirSync(join(runDir, "rubrics")).filter((f) => /^v\d+\.(json|txt)$/.test(f)).sort();
const movedAside = (runDir: string): string[] =>
  existsSync(join(runDir, "moved-aside")) ? readdirSync(join(runDir, "moved-aside"), { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".json")) : [];

describe("kill -9 at every visible write of a meta step", () => {
  it("restart finishes or discards the half-made step and never redoes a finished one", { timeout: 120_000 }, async () => {
    // The uninterrupted run: the visible writes in order, and how many LLM calls one meta step makes.
    const clean = mkdtempSync(join(root, "clean-"));
    expect(await child(clean)).toMatchObject({ status: 0, signal: null });
    const callsPerStep = llmCalls(clean);
    expect(callsPerStep).toBeGreaterThan(0);
    const trace = readFileSync(`${clean}.trace`, "utf8").trim().split("\n").map((l) => l.split(" ")[2]);
    expect(trace).toEqual([
      "rubrics/v0000.json", // the store's initial version …
      "rubrics/v0000.txt", // … and its text
      "caller-state.json", // pending = the job
      "meta/step-000007.json", // the meta log (no version yet)
      "rubrics/v0001.json",
      "rubrics/v0001.txt",
      "meta/step-000007.json", // log: done, toVersion 1
      "meta/commits/step-000007.json", // the commit marker: the step is final
      "caller-state.json", // pending = null
    ]);
    const pendingAt = 3;
    const logAt = 4;
    const markerAt = 8;

    // Every kill point at once (processes in parallel), then each run directory is restarted in process.
    const points = trace.map((_, i) => i + 1);
    const dirs = points.map((k) => mkdtempSync(join(root, `kill-${k}-`)));
    const killed = await Promise.all(points.map((k, i) => child(dirs[i], k)));
    const { runCaller } = await import("./helpers/meta-kill-child.ts");
    for (const [i, k] of points.entries()) {
      const runDir = dirs[i];
      expect(killed[i].signal, `kill point ${k}: ${killed[i].stderr}`).toBe("SIGKILL");
      const callsBefore = llmCalls(runDir);
      const logBefore = existsSync(join(runDir, "meta/step-000007.json")) ? readFileSync(join(runDir, "meta/step-000007.json"), "utf8") : null;
      const did = await runCaller(runDir);
      // Exactly one new version, complete (text file too), its log done, its marker present, the caller done.
      expect(versions(runDir), `kill point ${k}`).toEqual(["v0000.json", "v0000.txt", "v0001.json", "v0001.txt"]);
      expect(JSON.parse(readFileSync(join(runDir, "meta/step-000007.json"), "utf8")), `kill point ${k}`).toMatchObject({ state: "done", ok: true, toVersion: 1 });
      expect(JSON.parse(readFileSync(join(runDir, "meta/commits/step-000007.json"), "utf8"))).toMatchObject({ key: 7, state: { version: 1 } });
      expect(JSON.parse(readFileSync(join(runDir, "caller-state.json"), "utf8"))).toEqual({ pending: null, metaSteps: 1 });
      if (k >= markerAt) {
        // Finished before the kill: adopted (or nothing left to do), not one LLM call repeated, its log untouched.
        expect(llmCalls(runDir) - callsBefore, `kill point ${k}`).toBe(0);
        expect(readFileSync(join(runDir, "meta/step-000007.json"), "utf8")).toBe(logBefore);
        expect(did).toBe(k === markerAt ? 'adopted {"version":1}' : "");
      } else if (k >= pendingAt) {
        // Half-made: discarded and re-run exactly once; what it had written is moved aside, never deleted.
        expect(did, `kill point ${k}`).toBe("re-ran");
        expect(llmCalls(runDir) - callsBefore, `kill point ${k}`).toBe(callsPerStep);
        if (k >= logAt) expect(movedAside(runDir).some((f) => f.endsWith("meta/step-000007.json")), `kill point ${k}`).toBe(true);
      } else {
        // Killed while the store initialized: the restart completes v0's text and runs the step once.
        expect(did, `kill point ${k}`).toBe("ran");
        expect(llmCalls(runDir)).toBe(callsPerStep);
      }
    }
    // One more write than the trace has would never be reached: the trace is every kill point.
    const past = mkdtempSync(join(root, "past-"));
    expect(await child(past, trace.length + 1)).toMatchObject({ status: 0, signal: null });
  });
});
