import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runPretrain } from "../src/cli/commands/pretrain.ts";
import { runSample } from "../src/cli/commands/sample.ts";
import { loadCheckpoint } from "../src/engine/io/checkpoint.ts";
import { readJsonl } from "../src/util/atomic.ts";
import { Rng } from "../src/util/rng.ts";

let tmp: string;
let corpus: string;
const quiet = () => {};

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "mpo-pretrain-"));
  // A small patterned corpus: learnable quickly, with some variety.
  const rng = new Rng(5);
  const subjects = ["the judge", "a policy", "the rubric", "our model", "each essay"];
  const verbs = ["scores", "improves", "reads", "rewrites", "checks"];
  const objects = ["the answer.", "every claim.", "its reasoning.", "the evidence.", "a summary."];
  const lines: string[] = [];
  for (let i = 0; i < 600; i++) lines.push(`${subjects[rng.int(5)]} ${verbs[rng.int(5)]} ${objects[rng.int(5)]}`);
  corpus = join(tmp, "corpus.txt");
  writeFileSync(corpus, lines.join("\n"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const base = { vocab: 300, dModel: 16, layers: 1, heads: 2, seq: 16, steps: 30, batch: 4, lr: 1e-2, seed: 3, saveEvery: 10, engine: "ts" as const, progress: false, log: quiet };

describe("mpo pretrain", () => {
  it("trains (loss falls), writes a loadable checkpoint and loss curve; an interrupted run resumes exactly", async () => {
    const a = join(tmp, "straight");
    const ra = await runPretrain({ ...base, corpus, out: a });
    expect(ra.step).toBe(30);
    const curveA = readJsonl<{ step: number; loss: number }>(join(a, "losses.jsonl")).records;
    expect(curveA.map((r) => r.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    const first = curveA.slice(0, 3).reduce((s, r) => s + r.loss, 0) / 3;
    const last = curveA.slice(-3).reduce((s, r) => s + r.loss, 0) / 3;
    expect(last).toBeLessThan(first - 0.5);
    const ckA = loadCheckpoint(join(a, "model"));
    expect(ckA.config.vocab_size).toBe(300);
    expect(ckA.tokenizerJson).toBeDefined();
    expect(ckA.optimizer!.step).toBe(30);

    // Same run, stopped after 13 steps (checkpoint at 13, loss records past the last save are redone), then resumed.
    const b = join(tmp, "resumed");
    const rb1 = await runPretrain({ ...base, corpus, out: b, stopAfter: 13 });
    expect(rb1.step).toBe(13);
    expect(loadCheckpoint(join(b, "model")).trainerState!.step).toBe(13);
    const rb2 = await runPretrain({ ...base, corpus, out: b });
    expect(rb2.resumedFrom).toBe(13);
    expect(rb2.step).toBe(30);
    const ckB = loadCheckpoint(join(b, "model"));
    for (const [name, t] of ckA.tensors) expect(Array.from(ckB.tensors.get(name)!.data), name).toEqual(Array.from(t.data));
    const curveB = readJsonl<{ step: number; loss: number }>(join(b, "losses.jsonl")).records;
    expect(curveB.map((r) => r.loss)).toEqual(curveA.map((r) => r.loss));
    expect(readFileSync(join(b, "model", "tokenizer.json"), "utf8")).toBe(readFileSync(join(a, "model", "tokenizer.json"), "utf8"));
  });

  it("bad flags and too-short corpora are clear errors", async () => {
    await expect(runPretrain({ ...base, corpus: join(tmp, "missing.txt"), out: join(tmp, "x") })).rejects.toThrow(/--corpus: file not found/);
    await expect(runPretrain({ ...base, corpus, out: join(tmp, "y"), dModel: 15 })).rejects.toThrow(/--d-model 15 must be divisible by --heads 2/);
    const short = join(tmp, "short.txt");
    writeFileSync(short, "tiny");
    await expect(runPretrain({ ...base, corpus: short, out: join(tmp, "z") })).rejects.toThrow(/too short for --seq 16/);
  });
});

describe("mpo sample", () => {
  it("loads a pretrain dir, samples reproducibly, greedy is deterministic, n samples", async () => {
    const dir = join(tmp, "straight");
    if (!existsSync(join(dir, "model"))) throw new Error("needs the pretrain test's output");
    const s1 = await runSample({ model: dir, prompt: "the judge", n: 3, maxNewTokens: 8, seed: 1, engine: "ts" });
    const s2 = await runSample({ model: join(dir, "model"), prompt: "the judge", n: 3, maxNewTokens: 8, seed: 1, engine: "ts" });
    expect(s1.samples).toHaveLength(3);
    expect(s2.samples.map((s) => s.tokens)).toEqual(s1.samples.map((s) => s.tokens));
    const g = await runSample({ model: dir, prompt: "the judge", n: 2, maxNewTokens: 8, temperature: 0, engine: "ts" });
    expect(g.samples[0].tokens).toEqual(g.samples[1].tokens);
    // Trained on this corpus: the greedy continuation is more likely under the model than a random sample.
    expect(g.samples[0].logprob).toBeGreaterThan(s1.samples[0].logprob - 1e-3);
    const empty = await runSample({ model: dir, prompt: "", maxNewTokens: 4, engine: "ts" });
    expect(empty.samples[0].tokens.length).toBeGreaterThan(0);
  });

  it("missing or corrupt checkpoints are clear errors", async () => {
    await expect(runSample({ model: join(tmp, "nothing"), prompt: "x" })).rejects.toThrow(/does not exist/);
    await expect(runSample({ model: tmp, prompt: "x" })).rejects.toThrow(/is not a checkpoint/);
    const dir = join(tmp, "straight", "model");
    const p = join(dir, "model.safetensors");
    const good = readFileSync(p);
    try {
      writeFileSync(p, good.subarray(0, good.length - 100));
      await expect(runSample({ model: dir, prompt: "x" })).rejects.toThrow(/model\.safetensors: corrupt or unsupported safetensors file/);
    } finally {
      writeFileSync(p, good);
    }
    await expect(runSample({ model: dir, prompt: "x", topP: 0 })).rejects.toThrow(/--top-p/);
  });
});
