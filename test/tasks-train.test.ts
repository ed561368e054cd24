/**
 * Each of the paper's four tasks trains with `mpo train --task NAME` against a judge server on loopback
 * (the simulated judges of `mpo sim-server`). Data are small synthetic records in each task's own layout:
 * essay, ethics and math through `--data-file train=PATH`, and BillSum rows placed in the Hugging Face cache
 * by hand in its standard layout (the Hub itself is unreachable here, as it is for a user behind a firewall).
 * The run records the resolved data source, so `--resume` needs neither the flag nor the environment.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SANDBOX_POLICY_DIR } from "../src/sandbox/base-policy.ts";
import { startSimServer } from "../src/sandbox/sim-server.ts";

const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
const root = mkdtempSync(join(tmpdir(), "mpo-tasks-train-"));
const dataDir = join(root, "data");
const cacheDir = join(root, "hf-hub");
const COMMIT = "89abcdef0123456789abcdef0123456789abcdef";
const FILES: Record<string, string> = {
  essay: join(dataDir, "essay", "prompts.jsonl"),
  ethics: join(dataDir, "ethics", "anecdotes", "train.scruples-anecdotes.jsonl"),
  math: join(dataDir, "math", "train.jsonl"),
};

function writeData(): void {
  mkdirSync(join(dataDir, "essay"), { recursive: true });
  writeFileSync(join(dataDir, "essay", "prompts.jsonl"), jsonl(Array.from({ length: 6 }, (_, i) => ({ id: `essay-${i}`, prompt: `Write a short essay about public libraries, part ${i}.` }))));
  mkdirSync(join(dataDir, "ethics", "anecdotes"), { recursive: true });
  const anecdotes = Array.from({ length: 6 }, (_, i) => ({
    id: `a${i}`,
    title: `AITA for not lending my car to my friend (${i})?`,
    text: "My friend crashed my car last year and asked to borrow it again for a weekend trip. I said no.",
    action: { description: "not lending my car to a friend" },
    binarized_label: i % 2 ? "RIGHT" : "WRONG",
  }));
  for (const split of ["train", "test"]) writeFileSync(join(dataDir, "ethics", "anecdotes", `${split}.scruples-anecdotes.jsonl`), jsonl(anecdotes));
  mkdirSync(join(dataDir, "math"), { recursive: true });
  const problems = ["algebra", "geometry"].flatMap((domain) =>
    Array.from({ length: 5 }, (_, i) => ({ id: `train/${domain}/${i}`, domain, level: "Level 1", type: domain, problem: `What is ${i} + ${i + 2} in ${domain}?`, solution: `It is $\\boxed{${2 * i + 2}}$.`, answer: String(2 * i + 2) })),
  );
  for (const split of ["train", "test"]) writeFileSync(join(dataDir, "math", `${split}.jsonl`), jsonl(problems));
  for (const split of ["train", "test"]) {
    // huggingface_hub's layout: refs/main → commit, snapshots/<commit>/<path> (a plain file is fine too).
    const dir = join(cacheDir, "datasets--FiscalNote--billsum", "snapshots", COMMIT, "data");
    mkdirSync(dir, { recursive: true });
    mkdirSync(join(cacheDir, "datasets--FiscalNote--billsum", "refs"), { recursive: true });
    writeFileSync(join(cacheDir, "datasets--FiscalNote--billsum", "refs", "main"), COMMIT);
    writeFileSync(join(dir, `${split}-00000-of-00001.jsonl`), jsonl(Array.from({ length: 6 }, (_, i) => ({ text: `SECTION 1. This Act may be cited as the Library Act ${i}. SEC. 2. Funds are provided for public libraries.`, summary: `Provides funds for public libraries (${i}).`, title: `Library Act ${i}` }))));
  }
}

function mpo(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    p.on("close", (code) => resolve({ code, out }));
  });
}

describe.skipIf(!existsSync(join(SANDBOX_POLICY_DIR, "model.safetensors")))("mpo train --task NAME (paper tasks) against a judge server", () => {
  let sim: Awaited<ReturnType<typeof startSimServer>>;
  beforeAll(async () => {
    writeData();
    sim = await startSimServer();
  });
  afterAll(async () => {
    await sim?.app.close();
  });

  it.each(["essay", "summarization", "ethics", "math"])("%s trains 2 steps and writes its run directory", async (task) => {
    const runDir = join(root, `run-${task}`);
    const args = ["train", "--task", task, "--policy", SANDBOX_POLICY_DIR, "--algo", "grpo", "--group-size", "2", "--batch", "2"];
    args.push("--steps", "2", "--max-new-tokens", "16", "--mpo-interval", "1", "--meta-samples", "2", "--llm", sim.url, "--model", "mpo-sim-judge", "--run", runDir, "--no-progress");
    if (FILES[task]) args.push("--data-file", `train=${FILES[task]}`);
    const env = { ...process.env, MPO_DATA_CACHE: join(root, "derived"), HF_HUB_CACHE: cacheDir, HF_ENDPOINT: "http://127.0.0.1:9" };
    const { code, out } = await mpo(args, env);
    expect(code, out).toBe(0);
    expect(out).toMatch(/training finished: 2 steps/);
    const metrics = readFileSync(join(runDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(metrics.map((m) => m.step)).toEqual([1, 2]);
    for (const m of metrics) {
      expect(Number.isFinite(m.score.mean)).toBe(true);
      expect(m.samples).toBe(4);
    }
    const config = JSON.parse(readFileSync(join(runDir, "config.json"), "utf8"));
    expect(config.task).toBe(task);
    expect(config.reward.kind).toBe(task === "math" ? "math-mixed" : "judge");
    // The resolved data source is in the run's config: a Hub dataset pinned to its commit, or the file.
    expect(config.data.train).toEqual(FILES[task] ? { path: FILES[task] } : { hf: "FiscalNote/billsum", split: "train", revision: COMMIT, files: ["data/train-00000-of-00001.jsonl"] });
    if (task === "summarization") {
      // --resume offline with no flag: the recorded source (pinned commit) is enough.
      const bare = { ...process.env, MPO_DATA_CACHE: join(root, "derived"), HF_HUB_CACHE: cacheDir, HF_HUB_OFFLINE: "1" };
      const again = await mpo(["train", "--resume", runDir, "--steps", "3", "--no-progress"], bare);
      expect(again.code, again.out).toBe(0);
      expect(readFileSync(join(runDir, "metrics.jsonl"), "utf8").trim().split("\n")).toHaveLength(3);
    }
  }, 120_000);
});
