/**
 * Crash safety of `mpo train` as a real process: kill -9 in the middle of a run, `--resume`, and the run's
 * metrics and rubric history have no gap and no duplicate and match an uninterrupted run with the same
 * seed step for step (full fine-tuning and --lora: same adapters, bit for bit). Ctrl-C (SIGINT) finishes the
 * step, checkpoints and exits 0.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readJsonl } from "../src/util/atomic.ts";
import { readSafetensors } from "../src/engine/io/safetensors.ts";

const repo = resolve(import.meta.dirname, "..");
const root = mkdtempSync(join(tmpdir(), "mpo-rl-resume-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const baseArgs = [
  "--batch", "4", "--max-new-tokens", "4", "--max-prompt-tokens", "10", "--max-positions", "16",
  "--hidden-size", "16", "--layers", "1", "--ff-size", "32", "--reward", "rule-rubric", "--word", "blue",
  "--mpo-interval", "2", "--engine", "ts", "--no-progress", "--seed", "5", "--lr", "0.003",
];

function start(args: string[]): { child: ChildProcess; done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> } {
  const child = spawn(process.execPath, ["--import", "tsx", join(repo, "src/cli/main.ts"), "train", ...args], { cwd: repo, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  child.stdout!.on("data", () => {});
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((res) => child.on("close", (code, signal) => res({ code, signal, stderr })));
  return { child, done };
}

function metricLines(run: string): number {
  const p = join(run, "metrics.jsonl");
  if (!existsSync(p)) return 0;
  return readFileSync(p, "utf8").split("\n").filter((l) => l.trim()).length;
}

/** Resolves when cond() holds; re-checks whenever the run directory changes (and on a short stat tick as a fallback). */
async function until(cond: () => boolean, exited: Promise<unknown>, what: string, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let gone = false;
  void exited.then(() => (gone = true));
  while (!cond()) {
    if (gone) throw new Error(`process exited before: ${what}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

type M = { step: number; rubricVersion: number; time: unknown; seconds: unknown; llm: unknown };
const strip = (m: M) => ({ ...m, time: 0, seconds: 0, llm: 0 });
const metrics = (run: string) => readJsonl<M>(join(run, "metrics.jsonl")).records;

function rubricHistory(run: string): { version: number; parent: number | null }[] {
  return readdirSync(join(run, "rubrics"))
    .filter((f) => /^v\d+\.json$/.test(f))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(run, "rubrics", f), "utf8")));
}

describe("mpo train: kill -9 and --resume", () => {
  it("continues exactly where it stopped: no gap, no duplicate, same as an uninterrupted run", async () => {
    const killed = join(root, "killed");
    const ref = join(root, "reference");
    const a = start(["--run", killed, "--steps", "200", ...baseArgs]);
    await until(() => metricLines(killed) >= 5, a.done, "5 metrics lines");
    a.child.kill("SIGKILL");
    const ra = await a.done;
    expect(ra.signal).toBe("SIGKILL");
    const latest = JSON.parse(readFileSync(join(killed, "checkpoints", "latest.json"), "utf8"));
    expect(latest.step).toBeGreaterThanOrEqual(4);

    const b = start(["--resume", killed, "--steps", "12", "--no-progress"]);
    const rb = await b.done;
    expect(rb.stderr).toMatch(new RegExp(`resuming .* after step ${latest.step}`));
    expect(rb.code, rb.stderr).toBe(0);

    const c = start(["--run", ref, "--steps", "12", ...baseArgs]);
    const rc = await c.done;
    expect(rc.code, rc.stderr).toBe(0);

    const got = metrics(killed);
    expect(got.map((m) => m.step)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(got.map(strip)).toEqual(metrics(ref).map(strip));
    const hist = rubricHistory(killed);
    expect(hist.map((v) => v.version)).toEqual(hist.map((_, i) => i));
    expect(hist.slice(1).map((v) => v.parent)).toEqual(hist.slice(0, -1).map((v) => v.version));
    expect(hist.length).toBe(rubricHistory(ref).length);
    expect(hist.length).toBeGreaterThanOrEqual(4);
    const rollouts = readdirSync(join(killed, "rollouts")).sort();
    expect(rollouts).toEqual(Array.from({ length: 12 }, (_, i) => `step-${String(i + 1).padStart(6, "0")}.jsonl`));
    expect(JSON.parse(readFileSync(join(killed, "status.json"), "utf8"))).toMatchObject({ state: "finished", step: 12 });
    // No temp files left behind by atomic writes.
    const stray = (dir: string): string[] =>
      readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? stray(join(dir, f)) : /\.tmp$|\.tmp-/.test(f) ? [join(dir, f)] : []));
    expect(stray(killed)).toEqual([]);
  }, 180_000);

  it("--lora (PPO: policy and critic adapters, dropout on): a killed run resumes to the same adapters and metrics as an uninterrupted one", async () => {
    const lora = ["--lora", "--lora-r", "4", "--lora-alpha", "8", "--algo", "ppo", ...baseArgs];
    const killed = join(root, "lora-killed");
    const ref = join(root, "lora-reference");
    const a = start(["--run", killed, "--steps", "200", ...lora]);
    await until(() => metricLines(killed) >= 4, a.done, "4 metrics lines");
    a.child.kill("SIGKILL");
    expect((await a.done).signal).toBe("SIGKILL");
    const latest = JSON.parse(readFileSync(join(killed, "checkpoints", "latest.json"), "utf8"));
    expect(latest.step).toBeGreaterThanOrEqual(3);
    expect(existsSync(join(killed, "checkpoints", `step-${String(latest.step).padStart(6, "0")}`, "policy", "adapter_model.safetensors"))).toBe(true);

    const b = start(["--resume", killed, "--steps", "10", "--no-progress"]);
    const rb = await b.done;
    expect(rb.code, rb.stderr).toBe(0);
    expect(rb.stderr).toMatch(new RegExp(`resuming .* after step ${latest.step}`));
    const c = start(["--run", ref, "--steps", "10", ...lora]);
    const rc = await c.done;
    expect(rc.code, rc.stderr).toBe(0);

    const got = metrics(killed);
    expect(got.map((m) => m.step)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    expect(got.map(strip)).toEqual(metrics(ref).map(strip));
    // The adapters (policy and critic), value head and AdamW moments are bit-identical after step 10.
    for (const part of ["policy/adapter_model.safetensors", "critic/adapter_model.safetensors", "critic/value_head.safetensors", "policy/optimizer.safetensors"]) {
      const f = join("checkpoints", "step-000010", part);
      const x = readSafetensors(join(killed, f));
      const y = readSafetensors(join(ref, f));
      expect([...x.tensors.keys()].sort(), f).toEqual([...y.tensors.keys()].sort());
      expect(x.tensors.size).toBeGreaterThan(0);
      for (const [name, t] of x.tensors) expect(Buffer.from(t.data.buffer).equals(Buffer.from(y.tensors.get(name)!.data.buffer)), `${f} ${name}`).toBe(true);
    }
    // ...and they trained: B left its zero init.
    const b0 = readSafetensors(join(killed, "checkpoints", "step-000010", "policy", "adapter_model.safetensors")).tensors.get("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight")!;
    expect(Math.max(...Array.from(b0.data, Math.abs))).toBeGreaterThan(0);
  }, 180_000);

  it("Ctrl-C finishes the step, checkpoints and exits 0 with a message", async () => {
    const run = join(root, "sigint");
    const a = start(["--run", run, "--steps", "200", ...baseArgs]);
    await until(() => metricLines(run) >= 3, a.done, "3 metrics lines");
    a.child.kill("SIGINT");
    const r = await a.done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/stopped after step \d+ \(checkpoint saved\); continue with: mpo train --resume/);
    const ms = metrics(run);
    const last = ms[ms.length - 1].step;
    expect(ms.map((m) => m.step)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
    expect(JSON.parse(readFileSync(join(run, "checkpoints", "latest.json"), "utf8")).step).toBe(last);
    expect(JSON.parse(readFileSync(join(run, "status.json"), "utf8"))).toMatchObject({ state: "stopped", step: last });
  }, 120_000);

  it("config errors are reported with the field before any training starts", async () => {
    const run = join(root, "bad");
    const a = start(["--run", run, "--steps", "3", "--algo", "grpo", "--group-size", "1", "--no-progress"]);
    const r = await a.done;
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/groupSize/);
    expect(existsSync(join(run, "metrics.jsonl"))).toBe(false);
  }, 60_000);
});
