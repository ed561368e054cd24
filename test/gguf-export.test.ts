/**
 * GGUF export, checked three ways: the encodings against numpy (independent f16/bf16/Q8_0 arithmetic),
 * the container against our reader (round trip, corrupt and truncated files), and whole models against
 * llama.cpp itself (node-llama-cpp's prebuilt binaries): the engine's prompt tokenization, greedy
 * continuation and next-token log-probabilities must match llama.cpp's on the exported file.
 *
 * Tolerance for F32 exports: |Δ log p| ≤ 1e-4 on the 20 most likely next tokens (measured: ~3e-6 with an
 * F32 KV cache; llama.cpp's default F16 KV cache alone moves them by ~1e-3, so the check uses F32 caches).
 * Lower-precision exports are checked for loading and a bounded drift only (they are lossy by design).
 */
import { describe, expect, it, beforeAll, afterAll } from "vitest";
import { mkdtempSync, rmSync, writeFileSync, readFileSync, mkdirSync, cpSync, truncateSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import {
  GGML_TYPE,
  decodeTensor,
  encodeTensor,
  f32ToBf16Bits,
  f32ToF16Bits,
  ggufGet,
  readGguf,
  readGgufHeader,
  writeGguf,
} from "../src/engine/io/gguf.ts";
import { exportGguf, permuteRotaryRows } from "../src/engine/io/gguf-export.ts";
import { loadCheckpoint, saveCheckpoint } from "../src/engine/io/checkpoint.ts";
import { TransformerLM, llamaConfig } from "../src/engine/index.ts";
import { loadTokenizer } from "../src/tokenizer/hf.ts";
import { Rng } from "../src/util/rng.ts";
import { makeHfChatPolicy } from "./helpers/hf-policy.ts";

const POLICY = join(import.meta.dirname, "..", "assets", "sandbox-policy");
let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "mpo-gguf-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs python3 with numpy; undefined when numpy is not installed (a failing script is a test failure). */
function python(code: string, input: string): string | undefined {
  try {
    execFileSync("python3", ["-c", "import numpy"], { stdio: "ignore" });
  } catch {
    return undefined;
  }
  return execFileSync("python3", ["-W", "ignore", "-c", code], { input, encoding: "utf8" });
}

describe("GGUF encodings", () => {
  it("f16, bf16 and Q8_0 match numpy bit for bit", (ctx) => {
    const rng = new Rng(3);
    const xs: number[] = [0, 1, -2.5, 65504, 65520, 1e-8, 6e-8, 3e-5, 1e5, 0.1, 1 / 3];
    while (xs.length < 512) xs.push((rng.random() - 0.5) * 10 ** (rng.random() * 8 - 5));
    const x = Float32Array.from(xs.slice(0, 512));
    const code = `
import sys, json, numpy as np
x = np.array(json.loads(sys.stdin.read()), dtype=np.float32)
f16 = x.astype(np.float16).view(np.uint16).tolist()
n = x.view(np.uint32).astype(np.uint64)
bf = ((n + (0x7fff + ((n >> 16) & 1))) >> 16).astype(np.uint16).tolist()
b = x.reshape(-1, 32)
d = np.abs(b).max(axis=-1, keepdims=True) / np.float32(127)
idd = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
v = (b * idd).astype(np.float32)
a = np.abs(v); fl = np.floor(a); q = (np.sign(v) * (fl + np.floor(2 * (a - fl)))).astype(np.int8)
blocks = np.concatenate([d.astype(np.float16).view(np.uint8), q.view(np.uint8)], axis=1)
print(json.dumps([f16, bf, blocks.reshape(-1).tolist()]))`;
    const out = python(code, JSON.stringify(Array.from(x)));
    if (out === undefined) return ctx.skip("python3 with numpy is not available");
    const [f16, bf, q8] = JSON.parse(out) as number[][];
    expect(f32ToF16Bits(-0)).toBe(0x8000); // (JSON cannot carry -0 to numpy)
    expect(Array.from(x, f32ToF16Bits)).toEqual(f16);
    expect(Array.from(x, f32ToBf16Bits)).toEqual(bf);
    expect(Array.from(encodeTensor(x, GGML_TYPE.Q8_0, [16, 32]))).toEqual(q8);
  });

  it("decodes what it encodes (exact for F32, within the format's precision otherwise)", () => {
    const x = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i) * 3);
    expect(decodeTensor(encodeTensor(x, GGML_TYPE.F32, [2, 32]), GGML_TYPE.F32, 64)).toEqual(x);
    const err = (t: number) => Math.max(...Array.from(decodeTensor(encodeTensor(x, t, [2, 32]), t, 64), (v, i) => Math.abs(v - x[i])));
    expect(err(GGML_TYPE.F16)).toBeLessThan(3e-3);
    expect(err(GGML_TYPE.BF16)).toBeLessThan(2e-2);
    expect(err(GGML_TYPE.Q8_0)).toBeLessThan(3 / 127);
  });

  it("llama q/k permutation maps rotate-half pairs (i, i+D/2) to adjacent rows (2i, 2i+1)", () => {
    // 2 heads of D=4, 1 column: rows h*4 + [0,1,2,3] → [0,2,1,3]
    const w = Float32Array.from([0, 1, 2, 3, 10, 11, 12, 13]);
    expect(Array.from(permuteRotaryRows(w, 8, 1, 2))).toEqual([0, 2, 1, 3, 10, 12, 11, 13]);
  });
});

describe("GGUF container", () => {
  it("round-trips metadata of every type and tensors; ne is stored innermost first", () => {
    const p = join(tmp, "rt.gguf");
    const a = Float32Array.from({ length: 96 }, (_, i) => i / 7);
    writeGguf(p, [
      ["general.architecture", { type: "string", value: "llama" }],
      ["x.u32", { type: "u32", value: 7 }],
      ["x.f32", { type: "f32", value: 0.5 }],
      ["x.bool", { type: "bool", value: true }],
      ["x.i64", { type: "i64", value: -3n }],
      ["x.arr", { type: "array", itemType: "string", values: ["a", "ü b", ""] }],
    ], [{ name: "t", shape: [3, 32], type: GGML_TYPE.F32, encode: () => encodeTensor(a, GGML_TYPE.F32, [3, 32]) }]);
    const g = readGguf(p);
    expect(g.version).toBe(3);
    expect(ggufGet(g.metadata, "x.u32")).toBe(7);
    expect(ggufGet(g.metadata, "x.bool")).toBe(true);
    expect(ggufGet(g.metadata, "x.i64")).toBe(-3n);
    expect(ggufGet(g.metadata, "x.arr")).toEqual(["a", "ü b", ""]);
    expect(g.tensors[0]).toMatchObject({ name: "t", shape: [3, 32], type: 0, offset: 0 });
    expect(g.dataOffset % 32).toBe(0);
    expect(g.data.get("t")).toEqual(a);
    // raw bytes: ne[0] = 32 (innermost) comes first
    const raw = readFileSync(p);
    const nameAt = raw.indexOf(Buffer.from("t\x02\x00\x00\x00", "latin1"));
    expect(raw.readBigUInt64LE(nameAt + 5)).toBe(32n);
  });

  it("a missing, non-GGUF, truncated or corrupt file is a clear error naming the file", () => {
    expect(() => readGgufHeader(join(tmp, "nope.gguf"))).toThrow(/nope\.gguf: no such file/);
    writeFileSync(join(tmp, "x.gguf"), "{\"not\": \"gguf\"}");
    expect(() => readGgufHeader(join(tmp, "x.gguf"))).toThrow(/not a GGUF file \(starts with "\{\\"no"/);
    const src = join(tmp, "whole.gguf");
    exportGguf(POLICY, src, { dtype: "f32" });
    const size = statSync(src).size;
    for (const cut of [3, 20, 5000, size - 100]) {
      const p = join(tmp, `cut${cut}.gguf`);
      cpSync(src, p);
      truncateSync(p, cut);
      expect(() => readGgufHeader(p), `cut at ${cut}`).toThrow(/truncated|not a GGUF file/);
    }
    const bad = readFileSync(src);
    bad.writeBigUInt64LE(1n << 40n, 8); // absurd tensor count
    writeFileSync(join(tmp, "bad.gguf"), bad);
    expect(() => readGgufHeader(join(tmp, "bad.gguf"))).toThrow(/corrupt header/);
  });
});

describe("GGUF export of a Hugging Face directory", () => {
  it("writes llama metadata, the byte-level tokenizer and a ChatML template; weights survive (q/k permuted)", () => {
    const p = join(tmp, "policy-f32.gguf");
    const r = exportGguf(POLICY, p, { dtype: "f32" });
    expect(r.arch).toBe("llama");
    const g = readGguf(p);
    const m = (k: string) => ggufGet(g.metadata, k);
    expect(m("general.architecture")).toBe("llama");
    expect(m("llama.block_count")).toBe(4);
    expect(m("llama.embedding_length")).toBe(128);
    expect(m("llama.attention.head_count_kv")).toBe(4);
    expect(m("tokenizer.ggml.model")).toBe("gpt2");
    expect(m("tokenizer.ggml.pre")).toBe("gpt-2");
    expect((m("tokenizer.ggml.tokens") as string[]).length).toBe(1024);
    expect((m("tokenizer.ggml.token_type") as number[]).slice(0, 5)).toEqual([3, 3, 3, 3, 1]);
    expect(m("tokenizer.ggml.eos_token_id")).toBe(0);
    expect(m("tokenizer.ggml.add_bos_token")).toBe(false);
    expect(m("tokenizer.chat_template")).toContain("<|im_start|>");
    const ck = loadCheckpoint(POLICY);
    expect(g.data.get("blk.1.ffn_down.weight")).toEqual(ck.tensors.get("model.layers.1.mlp.down_proj.weight")!.data);
    const q = ck.tensors.get("model.layers.0.self_attn.q_proj.weight")!;
    expect(g.data.get("blk.0.attn_q.weight")).toEqual(permuteRotaryRows(q.data, q.shape[0], q.shape[1], 4));
  });

  it("refuses what llama.cpp cannot represent, naming the field", () => {
    const d = join(tmp, "ln");
    cpSync(POLICY, d, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(d, "config.json"), "utf8"));
    writeFileSync(join(d, "config.json"), JSON.stringify({ ...cfg, mpo_norm: "layernorm" }));
    expect(() => exportGguf(d, join(tmp, "ln.gguf"))).toThrow(/field 'mpo_norm'/);
    writeFileSync(join(d, "config.json"), JSON.stringify({ ...cfg, model_type: "gpt2" }));
    expect(() => exportGguf(d, join(tmp, "ln.gguf"))).toThrow(/field 'model_type'/);
    writeFileSync(join(d, "config.json"), JSON.stringify(cfg));
    rmSync(join(d, "model.safetensors"));
    writeFileSync(join(d, "adapter_config.json"), "{}");
    expect(() => exportGguf(d, join(tmp, "ln.gguf"))).toThrow(/is a LoRA adapter .* not implemented yet/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Against llama.cpp

type NLC = typeof import("node-llama-cpp");
type Token = import("node-llama-cpp").Token;
type ControlledEvaluateInputItem = import("node-llama-cpp").ControlledEvaluateInputItem;
let nlc: NLC | undefined;
let llama: Awaited<ReturnType<NLC["getLlama"]>> | undefined;
try {
  nlc = await import("node-llama-cpp");
  llama = await nlc.getLlama({ build: "never", gpu: false, logLevel: nlc.LlamaLogLevel.error });
} catch (e) {
  console.warn(`node-llama-cpp unavailable, llama.cpp cross-checks skip: ${(e as Error).message}`);
}

/** A tiny random llama with GQA and tied embeddings, tokenizer from the sandbox policy. */
function tinyLlamaDir(): string {
  const dir = join(tmp, "tiny-gqa");
  const cfg = llamaConfig({ vocabSize: 1024, hiddenSize: 64, intermediateSize: 96, numLayers: 2, numHeads: 4, numKvHeads: 2, maxPositions: 128, tieEmbeddings: true, bosTokenId: 0, eosTokenId: 0 });
  const model = TransformerLM.create(cfg, new Rng(11));
  // Larger weights than the init's 0.02 std so the next-token distribution is far from uniform.
  for (const p of model.params) if (p.shape.length === 2) for (let i = 0; i < p.data.length; i++) p.data[i] *= 6;
  mkdirSync(dir, { recursive: true });
  saveCheckpoint(dir, { config: cfg, tensors: model.namedTensors(), tokenizerJson: readFileSync(join(POLICY, "tokenizer.json"), "utf8") });
  return dir;
}

/** A tiny random qwen3 (q/k RMSNorm, head_dim 16 ≠ hidden/heads = 8, GQA, untied head), tokenizer from the sandbox policy. */
function tinyQwen3Dir(): string {
  const dir = join(tmp, "tiny-qwen3");
  const cfg = {
    architectures: ["Qwen3ForCausalLM"], model_type: "qwen3", vocab_size: 1024, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, max_position_embeddings: 256, rms_norm_eps: 1e-6, rope_theta: 1000000,
    tie_word_embeddings: false, hidden_act: "silu", attention_bias: false, bos_token_id: 0, eos_token_id: 0, torch_dtype: "float32",
  };
  const model = TransformerLM.create(cfg as any, new Rng(13));
  const rng = new Rng(14);
  for (const p of model.params) {
    if (p.shape.length === 2) for (let i = 0; i < p.data.length; i++) p.data[i] *= 6;
    if (p.name.includes("_norm.")) for (let i = 0; i < p.data.length; i++) p.data[i] = 1 + 0.3 * rng.normal(); // non-trivial q/k norms
  }
  mkdirSync(dir, { recursive: true });
  saveCheckpoint(dir, { config: cfg, tensors: model.namedTensors(), tokenizerJson: readFileSync(join(POLICY, "tokenizer.json"), "utf8") });
  return dir;
}

const TEXTS = [
  "<|im_start|>user\nWhat is 12 + 7? Explain  briefly.\n\nThanks!<|im_end|>\n<|im_start|>assistant\n",
  "The cat's toys — ünïcödé, 日本語, emoji 🙂 and   spaces\t\ttabs\n\n\nend ",
  "x=1;y=22;z=333 // don't, we'll, I'm",
];

describe.skipIf(!llama)("llama.cpp reproduces the engine on exported GGUF files", () => {
  async function compare(dir: string, dtype: "f32" | "f16" | "bf16" | "q8_0", tol: number, checkGreedy: boolean, texts = TEXTS) {
    const path = join(tmp, `${dir.split("/").pop()}-${dtype}.gguf`);
    exportGguf(dir, path, { dtype });
    const ck = loadCheckpoint(dir);
    const tok = loadTokenizer(ck.tokenizerJson!, "tokenizer.json");
    const engine = TransformerLM.fromParams(ck.config, ck.tensors, {});
    const model = await llama!.loadModel({ modelPath: path });
    const ctx = await model.createContext({ contextSize: 128, sequences: 1, threads: 1, flashAttention: false, experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32" });
    let worst = 0;
    try {
      for (const text of texts) {
        const ids = tok.encode(text);
        expect(Array.from(model.tokenize(text, true)), `tokenization of ${JSON.stringify(text)}`).toEqual(ids);
        const seq = ctx.getSequence();
        // next-token distribution after every prefix length in {4, 9, all}
        const at = new Set([3, 8, ids.length - 1]);
        const input = (ids as unknown as Token[]).map((t, i): ControlledEvaluateInputItem => (at.has(i) ? [t, { generateNext: { probabilities: true } }] : t));
        const res = await seq.controlledEvaluate(input);
        for (const i of at) {
          const probs = res[i]!.next.probabilities!;
          const top = [...probs.entries()].slice(0, 20);
          const T = i + 1;
          const tokens = Int32Array.from(ids.slice(0, T));
          for (const [v, p] of top) {
            const targets = new Int32Array(T).fill(-1);
            targets[T - 1] = v;
            const lp = engine.score(tokens, targets, 1, T).logprobs[T - 1];
            worst = Math.max(worst, Math.abs(lp - Math.log(p)));
          }
        }
        await seq.clearHistory();
        if (checkGreedy) {
          const prompt = ids.slice(0, 12);
          const ours = engine.generate([prompt], { maxNewTokens: 16, temperature: 0, stopTokens: [] }).tokens[0];
          const theirs: number[] = [];
          for await (const t of seq.evaluate(prompt as unknown as Token[], { temperature: 0, yieldEogToken: true })) {
            theirs.push(t);
            if (theirs.length >= 16) break;
          }
          expect(theirs, `greedy continuation of ${JSON.stringify(text.slice(0, 20))}`).toEqual(ours);
        }
        seq.dispose();
      }
    } finally {
      await ctx.dispose();
      await model.dispose();
    }
    expect(worst).toBeLessThan(tol);
    return worst;
  }

  it("the sandbox policy (llama, MHA), F32: tokenization, greedy tokens and top-20 log-probs within 1e-4", async () => {
    await compare(POLICY, "f32", 1e-4, true);
  }, 60_000);

  it("a tiny random llama with GQA and tied embeddings, F32", async () => {
    await compare(tinyLlamaDir(), "f32", 1e-4, true);
  }, 60_000);

  it("a tiny random qwen2 (q/k/v biases, GQA, tied head, Qwen2.5 chat template), F32", async () => {
    const dir = join(tmp, "tiny-qwen2");
    makeHfChatPolicy(dir, { hidden: 64 });
    await compare(dir, "f32", 1e-4, true);
  }, 60_000);

  it("a tiny random qwen3 (q/k norms, head_dim ≠ hidden/heads), F32", async () => {
    await compare(tinyQwen3Dir(), "f32", 1e-4, true);
  }, 60_000);

  for (const [label, rope_scaling] of [
    ["llama3 (Llama-3.1/3.2: rope_freqs tensor)", { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 32 }],
    ["linear (metadata)", { type: "linear", factor: 2 }],
  ] as const)
    it(`a tiny random llama with ${label} RoPE scaling, F32`, async () => {
      const dir = join(tmp, `tiny-rope-${rope_scaling.factor}`);
      const cfg = { ...llamaConfig({ vocabSize: 1024, hiddenSize: 64, intermediateSize: 96, numLayers: 2, numHeads: 4, numKvHeads: 2, maxPositions: 128, bosTokenId: 0, eosTokenId: 0 }), rope_scaling };
      const model = TransformerLM.create(cfg as any, new Rng(21));
      for (const p of model.params) if (p.shape.length === 2) for (let i = 0; i < p.data.length; i++) p.data[i] *= 6;
      mkdirSync(dir, { recursive: true });
      saveCheckpoint(dir, { config: cfg, tensors: model.namedTensors(), tokenizerJson: readFileSync(join(POLICY, "tokenizer.json"), "utf8") });
      await compare(dir, "f32", 1e-4, true);
    }, 60_000);

  it("F16 / BF16 / Q8_0 exports load in llama.cpp and stay close to the engine", async () => {
    const drift = { f16: await compare(POLICY, "f16", 0.02, false, TEXTS.slice(0, 1)), bf16: await compare(POLICY, "bf16", 0.1, false, TEXTS.slice(0, 1)), q8_0: await compare(POLICY, "q8_0", 0.3, false, TEXTS.slice(0, 1)) };
    console.log(`log-prob drift vs engine (sandbox policy): ${JSON.stringify(drift)}`);
  }, 60_000);

  it("a truncated export is refused by our reader before llama.cpp sees it", () => {
    const p = join(tmp, "trunc.gguf");
    exportGguf(POLICY, p, { dtype: "q8_0" });
    truncateSync(p, statSync(p).size - 1);
    expect(() => readGgufHeader(p)).toThrow(/truncated: tensor '.*' .* ends at byte \d+ but the file is \d+ bytes/);
  });
});
