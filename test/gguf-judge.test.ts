/**
 * In-process GGUF judges (src/llm/gguf-client.ts) on tiny models exported here: a random-weights llama
 * (the worst case for constrained decoding) and the sandbox policy. Checks the ChatModel contract the
 * judges rely on: schema-valid JSON / regex / choice replies for every constrained request, stop strings,
 * max tokens, usage (prompt tokens counted independently with our own tokenizer over the ChatML prompt),
 * concurrency on several sequences = sequential (seeded), and clear errors for bad files.
 * Skips when the optional node-llama-cpp is not installed.
 */
import { describe, expect, it, beforeAll, afterAll } from "vitest";
import { mkdtempSync, rmSync, readFileSync, writeFileSync, mkdirSync, cpSync, truncateSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportGguf } from "../src/engine/io/gguf-export.ts";
import { writeGguf } from "../src/engine/io/gguf.ts";
import { saveCheckpoint } from "../src/engine/io/checkpoint.ts";
import { TransformerLM, llamaConfig } from "../src/engine/index.ts";
import { BpeTokenizer } from "../src/tokenizer/tokenizer.ts";
import { chatmlQuery } from "../src/generate/index.ts";
import { singleCallSchema } from "../src/judge/rubric-judge.ts";
import { createChatModel, disposeGgufRuntimes, GgufChatModel, LlmError, parseGgufUrl, schemaWithinBudget, UsageMeter } from "../src/llm/index.ts";
import { Rng } from "../src/util/rng.ts";
import { RubricJudge } from "../src/judge/rubric-judge.ts";
import { judgeModelFromFlags } from "../src/cli/commands/score.ts";
import type { RubricVersion } from "../src/rubric/types.ts";

const POLICY = join(import.meta.dirname, "..", "assets", "sandbox-policy");
let available = true;
try {
  await import("node-llama-cpp");
} catch {
  available = false;
}

let tmp: string;
let randomGguf: string;
let policyGguf: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "mpo-gguf-judge-"));
  const dir = join(tmp, "random");
  const cfg = llamaConfig({ vocabSize: 1024, hiddenSize: 64, intermediateSize: 96, numLayers: 2, numHeads: 4, numKvHeads: 2, maxPositions: 1024, bosTokenId: 0, eosTokenId: 0 });
  mkdirSync(dir, { recursive: true });
  saveCheckpoint(dir, { config: cfg, tensors: TransformerLM.create(cfg, new Rng(5)).namedTensors(), tokenizerJson: readFileSync(join(POLICY, "tokenizer.json"), "utf8") });
  randomGguf = join(tmp, "random.gguf");
  exportGguf(dir, randomGguf, { dtype: "f16" });
  policyGguf = join(tmp, "policy.gguf");
  exportGguf(POLICY, policyGguf, { dtype: "f32" });
});
afterAll(async () => {
  await disposeGgufRuntimes();
  rmSync(tmp, { recursive: true, force: true });
});

const judge = (path: string, q = "threads=1", meter?: UsageMeter) => createChatModel({ baseURL: `gguf:${path}?${q}`, model: "m" }, { meter }) as GgufChatModel;
const user = (content: string) => [{ role: "user" as const, content }];

/** Checks a parsed reply against the single-call schema by hand (independent of the grammar that produced it). */
function matchesSingleCall(v: any, names: string[]): boolean {
  if (!v || typeof v !== "object" || Object.keys(v).join() !== "items" || !Array.isArray(v.items)) return false;
  return v.items.every(
    (it: any) => it && Object.keys(it).sort().join() === "name,rationale,score" && names.includes(it.name) && typeof it.rationale === "string" && Number.isInteger(it.score),
  );
}

describe("gguf: endpoint URLs", () => {
  it("parses options and refuses bad ones, naming the key", () => {
    expect(parseGgufUrl("gguf:/m/x.gguf?ctx=2048&seqs=3&threads=2&gpu=off")).toEqual({ path: "/m/x.gguf", contextSize: 2048, sequences: 3, threads: 2, gpu: "off" });
    expect(() => parseGgufUrl("gguf:/m/x.gguf?seqs=0")).toThrow(/'seqs' must be an integer ≥ 1/);
    expect(() => parseGgufUrl("gguf:/m/x.gguf?gpu=cuda")).toThrow(/'gpu' must be auto or off/);
    expect(() => parseGgufUrl("gguf:/m/x.gguf?temp=1")).toThrow(/unknown option 'temp'/);
    expect(createChatModel({ baseURL: "gguf:/m/x.gguf", model: "m" })).toBeInstanceOf(GgufChatModel);
  });

  it("bounds a schema so its worst case fits the token budget", () => {
    const s = singleCallSchema({ items: [{ name: "a" }, { name: "b" }] } as any);
    const b = schemaWithinBudget(s, 400) as any;
    expect(b.properties.items.maxItems).toBeGreaterThanOrEqual(1);
    expect(b.properties.items.items.properties.rationale.maxLength).toBeGreaterThanOrEqual(0);
    expect(schemaWithinBudget(s, 5)).toBeUndefined();
  });
});

describe.skipIf(!available)("gguf: in-process judge over llama.cpp", () => {
  it("every constrained request gets a valid reply, even from random weights (JSON schema, regex, choice)", async () => {
    const m = judge(randomGguf);
    const names = ["accuracy", "clarity", "safety"];
    const schema = singleCallSchema({ items: names.map((name) => ({ name })) } as any);
    const budget = 64 + names.length * (48 + 48); // the single-call budget with maxRationaleTokens 48
    let redone = 0;
    for (let seed = 1; seed <= 4; seed++) {
      const r = await m.chat({ messages: user("Score the answer."), temperature: 1, seed, maxTokens: budget, constraint: { kind: "json", name: "rubric_scores", schema } });
      expect(r.completionTokens).toBeGreaterThan(0);
      expect(matchesSingleCall(JSON.parse(r.text), names), r.text).toBe(true);
      if (r.completionTokens > budget) redone++; // cut mid-JSON, then redone with a bounded schema
      const s = await m.chat({ messages: user("1 to 5?"), temperature: 1, seed, maxTokens: 4, constraint: { kind: "regex", pattern: "[1-5]" } });
      expect(s.text).toMatch(/^[1-5]$/);
      const c = await m.chat({ messages: user("sound?"), temperature: 1, seed, maxTokens: 8, constraint: { kind: "choice", options: ["sound", "flawed"] } });
      expect(["sound", "flawed"]).toContain(c.text);
    }
    expect(redone).toBeGreaterThan(0); // random weights ran away at least once: the bounded redo was exercised
  }, 60_000);

  it("usage: prompt tokens = our tokenizer over the ChatML prompt; max tokens and stop strings honoured", async () => {
    const meter = new UsageMeter();
    const m = judge(policyGguf, "threads=1", meter);
    const msgs = [{ role: "system" as const, content: "You are a judge." }, ...user("Is 2 + 2 = 4? Answer briefly.")];
    const tok = BpeTokenizer.load(join(POLICY, "tokenizer.json"));
    const free = await m.chat({ messages: msgs, temperature: 0, maxTokens: 24, stage: "rm" });
    expect(free.promptTokens).toBe(tok.encode(chatmlQuery(msgs)).length);
    expect(free.completionTokens).toBeLessThanOrEqual(24);
    if (free.finishReason === "length") expect(free.completionTokens).toBe(24);
    // a stop string taken from the middle of the free reply cuts it there
    const stop = free.text.slice(8, 12);
    expect(stop.length).toBe(4);
    const cut = await m.chat({ messages: msgs, temperature: 0, maxTokens: 24, stop: [stop], stage: "rm" });
    expect(cut.text).toBe(free.text.slice(0, free.text.indexOf(stop)));
    expect(cut.finishReason).toBe("stop");
    const u = meter.snapshot().rm!;
    expect(u.calls).toBe(2);
    expect(u.promptTokens).toBe(2 * free.promptTokens);
    expect(u.completionTokens).toBe(free.completionTokens + cut.completionTokens);
  }, 60_000);

  it("concurrent calls on several sequences give the same replies as sequential ones (seeded)", async () => {
    const reqs = Array.from({ length: 6 }, (_, i) => ({ messages: user(`Question number ${i}: is this right?`), temperature: 0.9, seed: 100 + i, maxTokens: 16 }));
    const seq = judge(policyGguf, "threads=1&seqs=1");
    const one: string[] = [];
    for (const r of reqs) one.push((await seq.chat(r)).text);
    const par = judge(policyGguf, "threads=1&seqs=3");
    const many = await Promise.all(reqs.map((r) => par.chat(r)));
    expect(many.map((r) => r.text)).toEqual(one);
    expect(new Set(one).size).toBeGreaterThan(1); // the seeds really sample differently
  }, 60_000);

  it("the rubric judge (as `mpo score --llm gguf:…` builds it) scores in range in both modes, never falling back", async () => {
    const meter = new UsageMeter();
    const model = await judgeModelFromFlags({ llm: `gguf:${randomGguf}?threads=1` }, meter); // no --model needed
    expect(model).toBeInstanceOf(GgufChatModel);
    const version: RubricVersion = {
      version: 0, parent: null, step: 0, author: { kind: "initial" }, createdAt: new Date(0).toISOString(), analyses: [],
      rubric: { items: [{ name: "evidence", text: "Evidence: 0 to 5.", min: 0, max: 5 }, { name: "clarity", text: "Clarity: 1 to 3.", min: 1, max: 3 }] },
    };
    const input = { taskDescription: "Write an essay.", prompt: "Trees?", response: "Trees cool streets and clean the air." };
    for (const mode of ["per-item", "single-call"] as const) {
      const ev = await new RubricJudge({ model, mode, temperature: 1, seed: 3, maxRationaleTokens: 24, protocol: "hardened" }).score(input, version); // hardened: the score regex is the item's range
      // single-call: the reply is schema-valid JSON; items it leaves out (the schema has no minItems) are flagged, never invented
      const listed = mode === "single-call" ? new Set((JSON.parse(ev.raw[0]).items as { name: string }[]).map((x) => x.name)) : undefined;
      for (const it of ev.items) {
        expect(it.score).toBeGreaterThanOrEqual(it.min);
        expect(it.score).toBeLessThanOrEqual(it.max);
        if (!listed || listed.has(it.name)) expect(it.flags, `${mode} ${it.name}: ${it.raw}`).toEqual([]); // constrained: never unparsed
        else expect(it.flags.length).toBeGreaterThan(0);
      }
    }
    expect(meter.snapshot().rm!.calls).toBeGreaterThanOrEqual(5);
  }, 60_000);

  it("clear errors: missing file, not GGUF, truncated, no chat template, unknown architecture, prompt too long", async () => {
    const err = async (path: string) => {
      try {
        await judge(path).chat({ messages: user("hi"), maxTokens: 2 });
      } catch (e) {
        return (e as Error).message;
      }
      return "no error";
    };
    expect(await err(join(tmp, "missing.gguf"))).toMatch(/missing\.gguf: no such file/);
    writeFileSync(join(tmp, "text.gguf"), "hello, not a model");
    expect(await err(join(tmp, "text.gguf"))).toMatch(/not a GGUF file/);
    cpSync(policyGguf, join(tmp, "cut.gguf"));
    truncateSync(join(tmp, "cut.gguf"), statSync(policyGguf).size - 4096);
    expect(await err(join(tmp, "cut.gguf"))).toMatch(/truncated: tensor/);
    writeGguf(join(tmp, "notpl.gguf"), [["general.architecture", { type: "string", value: "llama" }]], []);
    expect(await err(join(tmp, "notpl.gguf"))).toMatch(/no chat template/);
    writeGguf(join(tmp, "arch.gguf"), [["general.architecture", { type: "string", value: "no-such-arch" }], ["tokenizer.chat_template", { type: "string", value: "{{ messages[0]['content'] }}" }]], []);
    expect(await err(join(tmp, "arch.gguf"))).toMatch(/llama\.cpp cannot load .*architecture 'no-such-arch'/);
    const long = await judge(policyGguf).chat({ messages: user("word ".repeat(300)), maxTokens: 8 }).catch((e) => e);
    expect(long).toBeInstanceOf(LlmError);
    expect(long.message).toMatch(/exceeds the context of 256/);
  }, 60_000);
});
