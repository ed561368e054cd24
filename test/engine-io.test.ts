import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { mkdtempSync, mkdirSync, rmSync, readFileSync, writeFileSync, existsSync, readdirSync, renameSync, cpSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import {
  parseSafetensors,
  serializeSafetensors,
  readSafetensors,
  writeSafetensors,
  readSafetensorsHeader,
  SafetensorsError,
} from "../src/engine/io/safetensors.ts";
import { saveCheckpoint, loadCheckpoint, CheckpointError } from "../src/engine/io/checkpoint.ts";
import { expectedParamShapes, LlamaConfigSchema } from "../src/engine/io/config.ts";
import { Rng } from "../src/util/rng.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");

let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), "mpo-io-"));
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

/** Builds a safetensors file by hand from a header object and raw data, for corruption tests. */
function rawFile(header: unknown, data: Uint8Array, headerLenOverride?: bigint): Uint8Array {
  const h = Buffer.from(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLenOverride ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

describe("safetensors", () => {
  it("round-trips F32 and I32 tensors with metadata, header padded to 8 bytes", () => {
    const a = { shape: [2, 3], data: new Float32Array([1, -2.5, 3e-8, Math.PI, -0, 1e30]) };
    const b = { shape: [4], data: new Int32Array([0, -1, 2147483647, -2147483648]) };
    const empty = { shape: [0, 5], data: new Float32Array(0) };
    const bytes = serializeSafetensors({ "b.int": b, "a.w": a, empty }, { format: "pt" });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const f = parseSafetensors(bytes);
    expect(f.metadata).toEqual({ format: "pt" });
    expect(f.tensors.get("a.w")!.shape).toEqual([2, 3]);
    expect(Array.from(f.tensors.get("a.w")!.data)).toEqual(Array.from(a.data));
    expect(f.tensors.get("b.int")!.dtype).toBe("I32");
    expect(Array.from(f.tensors.get("b.int")!.data)).toEqual(Array.from(b.data));
    expect(f.tensors.get("empty")!.shape).toEqual([0, 5]);
    // Sorted-name contiguous layout, as the reference writer does.
    const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString());
    expect(header["a.w"].data_offsets).toEqual([0, 24]);
    expect(header["b.int"].data_offsets).toEqual([24, 40]);
  });

  it("reads F16, BF16, F64 (as f32) and I64", () => {
    const f16 = new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x3555, 0x0001, 0x7c00]).buffer); // 1, -2, ~0.3333, min subnormal, inf
    const bf16 = new Uint8Array(new Uint16Array([0x3f80, 0xc040]).buffer); // 1, -3
    const f64 = new Uint8Array(new Float64Array([0.1, -7]).buffer);
    const i64 = new Uint8Array(new BigInt64Array([5n, -9007199254740991n]).buffer);
    const data = new Uint8Array([...f16, ...bf16, ...f64, ...i64]);
    const header = {
      h: { dtype: "F16", shape: [5], data_offsets: [0, 10] },
      b: { dtype: "BF16", shape: [2], data_offsets: [10, 14] },
      d: { dtype: "F64", shape: [2], data_offsets: [14, 30] },
      l: { dtype: "I64", shape: [2], data_offsets: [30, 46] },
    };
    const f = parseSafetensors(rawFile(header, data));
    const h = Array.from(f.tensors.get("h")!.data);
    expect(h[0]).toBe(1);
    expect(h[1]).toBe(-2);
    expect(h[2]).toBeCloseTo(1 / 3, 3);
    expect(h[3]).toBe(2 ** -24);
    expect(h[4]).toBe(Infinity);
    expect(Array.from(f.tensors.get("b")!.data)).toEqual([1, -3]);
    expect(f.tensors.get("d")!.data[0]).toBeCloseTo(0.1, 7);
    expect(f.sourceDtypes.get("d")).toBe("F64");
    expect(Array.from(f.tensors.get("l")!.data)).toEqual([5, -9007199254740991]);
  });

  it("writes atomically to disk and reads back", () => {
    const p = join(tmp, "x.safetensors");
    writeSafetensors(p, new Map([["w", { shape: [3], data: new Float32Array([1, 2, 3]) }]]));
    expect(readdirSync(tmp)).toEqual(["x.safetensors"]);
    expect(Array.from(readSafetensors(p).tensors.get("w")!.data)).toEqual([1, 2, 3]);
  });

  const good = () => ({ w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } });
  const data8 = new Uint8Array(8);
  const corruptions: [string, () => Uint8Array, RegExp][] = [
    ["too short", () => new Uint8Array(5), /shorter than the 8-byte/],
    ["header length beyond file", () => rawFile(good(), data8, 10_000n), /header length 10000 runs beyond the end of the file/],
    ["absurd header length", () => rawFile(good(), data8, 1n << 40n), /exceeds/],
    ["bad JSON", () => {
      const b = rawFile(good(), data8);
      b[8] = 0x7b; b[9] = 0x7b; // "{{"
      return b;
    }, /not valid JSON/],
    ["offsets out of range", () => rawFile({ w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, data8), /out of range/],
    ["size != shape × dtype", () => rawFile({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, data8), /needs 12/],
    ["unsupported dtype", () => rawFile({ w: { dtype: "C64", shape: [1], data_offsets: [0, 8] } }, data8), /dtype 'C64' is not supported/],
    ["overlap", () => rawFile({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, data8), /overlap/],
    ["gap", () => rawFile({ a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, data8), /gap/],
    ["trailing bytes", () => rawFile({ a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, data8), /trailing/],
    ["end before begin", () => rawFile({ a: { dtype: "F32", shape: [0], data_offsets: [8, 0] } }, data8), /end before begin/],
    ["bad shape", () => rawFile({ a: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }, data8), /shape/],
    ["header not object", () => rawFile([1, 2], data8), /not an object/],
  ];
  for (const [label, make, msg] of corruptions) {
    it(`rejects a corrupt file: ${label}`, () => {
      const p = join(tmp, "bad.safetensors");
      writeFileSync(p, make());
      let err: unknown;
      try {
        readSafetensors(p);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SafetensorsError);
      expect((err as Error).message).toContain(p);
      expect((err as Error).message).toMatch(msg);
    });
  }

  it("rejects a file truncated anywhere", () => {
    const bytes = serializeSafetensors({ a: { shape: [10], data: new Float32Array(10) }, b: { shape: [3], data: new Float32Array(3) } });
    for (const cut of [4, 12, bytes.length - 30, bytes.length - 1]) {
      expect(() => parseSafetensors(bytes.subarray(0, cut), "t.safetensors")).toThrow(SafetensorsError);
    }
  });

  it("reads just the header of a file", () => {
    const p = join(tmp, "h.safetensors");
    writeSafetensors(p, { w: { shape: [2, 3], data: new Float32Array(6) } }, { note: "x" });
    expect(readSafetensorsHeader(p)).toEqual({ w: { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] } });
    writeFileSync(p, rawFile(good(), data8, 10_000n));
    expect(() => readSafetensorsHeader(p)).toThrow(/runs beyond the end of the file/);
  });

  it("missing file is a clear error", () => {
    expect(() => readSafetensors(join(tmp, "nope.safetensors"))).toThrow(/file not found/);
  });
});

const tinyConfig = {
  model_type: "llama",
  vocab_size: 17,
  hidden_size: 8,
  intermediate_size: 12,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  max_position_embeddings: 32,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
};

function randomTensors(config: typeof tinyConfig & { mpo_value_head?: boolean }, seed = 1) {
  const rng = new Rng(seed);
  const m = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, shape] of expectedParamShapes(LlamaConfigSchema.parse(config))) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = rng.normal();
    m.set(name, { shape, data });
  }
  return m;
}

describe("checkpoints", () => {
  it("save → load round-trips config, tensors, tokenizer, optimizer and trainer state", () => {
    const dir = join(tmp, "ck");
    const tensors = randomTensors(tinyConfig);
    const opt = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [n, t] of tensors) {
      opt.set("exp_avg." + n, { shape: t.shape, data: t.data.map((x) => x * 0.1) });
      opt.set("exp_avg_sq." + n, { shape: t.shape, data: t.data.map((x) => x * x) });
    }
    const tok = { version: "1.0", model: { type: "BPE" } };
    saveCheckpoint(dir, { config: tinyConfig, tensors, tokenizerJson: tok, optimizer: { step: 42, tensors: opt }, trainerState: { step: 42, rng: [1, 2, 3, 4] } });
    expect(readdirSync(tmp)).toEqual(["ck"]);
    expect(readdirSync(dir).sort()).toEqual(["config.json", "generation_config.json", "model.safetensors", "optimizer.safetensors", "tokenizer.json", "trainer_state.json"]);
    const ck = loadCheckpoint(dir);
    expect(ck.config.hidden_size).toBe(8);
    expect(ck.config.rope_theta).toBe(10000); // default filled in
    expect(ck.config.rms_norm_eps).toBe(1e-5);
    expect(ck.tokenizerJson).toEqual(tok);
    for (const [n, t] of tensors) expect(Array.from(ck.tensors.get(n)!.data)).toEqual(Array.from(t.data));
    expect(ck.optimizer!.step).toBe(42);
    expect(Array.from(ck.optimizer!.tensors.get("exp_avg_sq.model.norm.weight")!.data)).toEqual(Array.from(opt.get("exp_avg_sq.model.norm.weight")!.data));
    expect(ck.trainerState).toEqual({ step: 42, rng: [1, 2, 3, 4] });
    const cfgOnDisk = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    expect(cfgOnDisk.architectures).toEqual(["LlamaForCausalLM"]);
  });

  it("overwrites an existing checkpoint leaving no temp or old dirs", () => {
    const dir = join(tmp, "ck");
    saveCheckpoint(dir, { config: tinyConfig, tensors: randomTensors(tinyConfig, 1), trainerState: { step: 1 } });
    const t2 = randomTensors(tinyConfig, 2);
    saveCheckpoint(dir, { config: tinyConfig, tensors: t2 });
    expect(readdirSync(tmp)).toEqual(["ck"]);
    const ck = loadCheckpoint(dir);
    expect(ck.trainerState).toBeUndefined(); // the whole directory was replaced, not merged
    expect(ck.tensors.get("model.norm.weight")!.data).toEqual(t2.get("model.norm.weight")!.data);
  });

  it("recovers from a save killed between its two renames", () => {
    const dir = join(tmp, "ck");
    const t1 = randomTensors(tinyConfig, 1);
    saveCheckpoint(dir, { config: tinyConfig, tensors: t1 });
    // Simulate the crash window: old renamed aside, new not yet renamed in, a half-written temp dir.
    renameSync(dir, dir + ".old-123-456");
    cpSync(dir + ".old-123-456", dir + ".tmp-abc", { recursive: true });
    writeFileSync(join(dir + ".tmp-abc", "model.safetensors"), "garbage");
    // Loading reads the complete old checkpoint.
    expect(loadCheckpoint(dir).tensors.get("model.norm.weight")!.data).toEqual(t1.get("model.norm.weight")!.data);
    // The next save cleans up.
    saveCheckpoint(dir, { config: tinyConfig, tensors: randomTensors(tinyConfig, 3) });
    expect(readdirSync(tmp)).toEqual(["ck"]);
  });

  it("tied embeddings and the value head change the expected tensor set", () => {
    const cfg = { ...tinyConfig, tie_word_embeddings: true, mpo_value_head: true };
    const t = randomTensors(cfg);
    expect(t.has("lm_head.weight")).toBe(false);
    expect(t.get("value_head.weight")!.shape).toEqual([1, 8]);
    saveCheckpoint(join(tmp, "ck"), { config: cfg, tensors: t });
    expect(loadCheckpoint(join(tmp, "ck")).tensors.get("value_head.bias")!.shape).toEqual([1]);
  });

  it("errors name the missing tensor, the mismatched shape, the bad config field", () => {
    const dir = join(tmp, "ck");
    const t = randomTensors(tinyConfig);
    t.delete("model.layers.1.mlp.up_proj.weight");
    expect(() => saveCheckpoint(dir, { config: tinyConfig, tensors: t })).toThrow(/missing tensor 'model.layers.1.mlp.up_proj.weight'/);
    expect(existsSync(dir)).toBe(false);

    saveCheckpoint(dir, { config: tinyConfig, tensors: randomTensors(tinyConfig) });
    // Config edited to disagree with the weights.
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...tinyConfig, intermediate_size: 16 }));
    expect(() => loadCheckpoint(dir)).toThrow(/tensor 'model.layers.0.mlp.gate_proj.weight' has shape \[12,8\] but the config implies \[16,8\]/);
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...tinyConfig, num_attention_heads: "two" }));
    expect(() => loadCheckpoint(dir)).toThrow(/config\.json: field 'num_attention_heads'/);
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...tinyConfig, num_key_value_heads: 3, num_attention_heads: 4 }));
    expect(() => loadCheckpoint(dir)).toThrow(/field 'num_key_value_heads'/);
    writeFileSync(join(dir, "config.json"), "{not json");
    expect(() => loadCheckpoint(dir)).toThrow(/config.json is not valid JSON/);
  });

  it("a truncated model.safetensors or missing dir is a clear error", () => {
    const dir = join(tmp, "ck");
    saveCheckpoint(dir, { config: tinyConfig, tensors: randomTensors(tinyConfig) });
    const p = join(dir, "model.safetensors");
    const bytes = readFileSync(p);
    writeFileSync(p, bytes.subarray(0, bytes.length - 7));
    expect(() => loadCheckpoint(dir)).toThrow(/model\.safetensors: corrupt or unsupported safetensors file: .*out of range/);
    expect(() => loadCheckpoint(join(tmp, "nothing"))).toThrow(CheckpointError);
    expect(() => loadCheckpoint(join(tmp, "nothing"))).toThrow(/does not exist/);
  });

  it("refuses to replace a directory that is not a checkpoint", () => {
    const dir = join(tmp, "precious");
    mkdirSync(dir);
    writeFileSync(join(dir, "notes.txt"), "keep me");
    expect(() => saveCheckpoint(dir, { config: tinyConfig, tensors: randomTensors(tinyConfig) })).toThrow(/not a checkpoint directory/);
    expect(readFileSync(join(dir, "notes.txt"), "utf8")).toBe("keep me");
    // An empty directory is fine.
    mkdirSync(join(tmp, "empty"));
    saveCheckpoint(join(tmp, "empty"), { config: tinyConfig, tensors: randomTensors(tinyConfig) });
    expect(existsSync(join(tmp, "empty", "model.safetensors"))).toBe(true);
  });

  it("refuses to save non-finite weights", () => {
    const t = randomTensors(tinyConfig);
    t.get("model.norm.weight")!.data[3] = NaN;
    expect(() => saveCheckpoint(join(tmp, "ck"), { config: tinyConfig, tensors: t })).toThrow(/'model.norm.weight' has a non-finite value at index 3/);
  });

  it("reads the PyTorch-written fixture when present", () => {
    const p = join(repo, "test/fixtures/engine/tiny_weights.safetensors");
    if (!existsSync(p)) {
      console.warn("skipping: fixture not generated yet");
      return;
    }
    const f = readSafetensors(p);
    expect(f.tensors.size).toBeGreaterThan(5);
  });
});
