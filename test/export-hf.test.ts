/**
 * `mpo export --run RUN --out DIR [--merge]` writes the weights in the BASE model's dtype: a LoRA run on a
 * bf16 qwen2 base (trained here through the real CLI against the simulated judge) exports BF16 tensors whose
 * values are the merged f32 weights rounded to nearest even, and whose logits are the adapted model's within
 * bf16 precision; an fp16 base stays fp16; `--dtype f32` keeps full precision. Tokenizer, chat template and
 * generation config travel with the export.
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSimServer } from "../src/sandbox/sim-server.ts";
import { makeHfChatPolicy } from "./helpers/hf-policy.ts";
import { readSafetensorsHeader } from "../src/engine/io/safetensors.ts";
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "../src/engine/io/gguf.ts";
import { loadAdapterDir } from "../src/engine/io/lora.ts";
import { loadCheckpoint, saveCheckpoint } from "../src/engine/io/checkpoint.ts";
import { loraModel } from "../src/rl/lora-policy.ts";
import { Rng } from "../src/util/rng.ts";
import { TransformerLM } from "../src/engine/index.ts";
import { runExport } from "../src/cli/commands/export.ts";

const root = mkdtempSync(join(tmpdir(), "mpo-export-hf-"));
const dataDir = join(root, "data");

function mpo(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env, MPO_DATA_DIR: dataDir, HF_HUB_OFFLINE: "1" };
    const p = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    p.on("close", (code) => resolve({ code, out }));
  });
}

const dtypes = (file: string) => new Set(Object.entries(readSafetensorsHeader(file)).filter(([k]) => k !== "__metadata__").map(([, v]) => v.dtype));
const tokens = Int32Array.from([1, 5, 9, 40, 41, 42, 7, 8, 3, 11]);
const targets = Int32Array.from([5, 9, 40, 41, 42, 7, 8, 3, 11, -1]);
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.max(...Array.from(a, (x, i) => Math.abs(x - b[i])));

describe("mpo export --out: weights in the base model's dtype", () => {
  let sim: Awaited<ReturnType<typeof startSimServer>>;
  beforeAll(async () => {
    mkdirSync(join(dataDir, "essay"), { recursive: true });
    const rows = Array.from({ length: 4 }, (_, i) => JSON.stringify({ id: `essay-${i}`, prompt: `Write a short essay about city trees, part ${i}.` }));
    writeFileSync(join(dataDir, "essay", "prompts.jsonl"), rows.join("\n") + "\n");
    sim = await startSimServer();
  });
  afterAll(async () => {
    await sim?.app.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("LoRA on a bf16 qwen2 base: --merge writes BF16 (the merged weights rounded) that reproduce the adapted logits", async () => {
    const base = join(root, "qwen2-bf16");
    makeHfChatPolicy(base, { weightsDtype: "BF16" });
    expect(dtypes(join(base, "model.safetensors"))).toEqual(new Set(["BF16"]));
    const run = join(root, "run-lora");
    const t = await mpo([
      "train", "--task", "essay", "--policy", base, "--lora", "--lora-r", "4", "--lora-alpha", "8", "--algo", "grpo", "--group-size", "2",
      "--batch", "2", "--steps", "1", "--max-new-tokens", "8", "--llm", sim.url, "--model", "mpo-sim-judge", "--run", run, "--no-progress",
    ]);
    expect(t.code, t.out).toBe(0);
    // The run keeps its bf16 base as is (lossless: the values are the base's own).
    expect(dtypes(join(run, "reference", "model.safetensors"))).toEqual(new Set(["BF16"]));

    const out = join(root, "export-bf16");
    const e = await mpo(["export", "--run", run, "--out", out, "--merge"]);
    expect(e.code, e.out).toBe(0);
    expect(e.out).toContain("exported step 1 (merged, BF16)");
    expect(dtypes(join(out, "model.safetensors"))).toEqual(new Set(["BF16"]));
    const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    expect(config).toMatchObject({ model_type: "qwen2", torch_dtype: "bfloat16", mpo_value_head: false });
    expect(readFileSync(join(out, "tokenizer.json"), "utf8")).toBe(readFileSync(join(run, "reference", "tokenizer.json"), "utf8"));
    const baseTc = JSON.parse(readFileSync(join(base, "tokenizer_config.json"), "utf8"));
    expect(JSON.parse(readFileSync(join(out, "tokenizer_config.json"), "utf8")).chat_template).toBe(baseTc.chat_template);
    expect(JSON.parse(readFileSync(join(out, "generation_config.json"), "utf8")).eos_token_id).toEqual([2, 0]);

    // The adapted model, as the trainer holds it (f32 base + adapters), and its merged weights.
    const ref = loadCheckpoint(join(run, "reference"));
    const ad = loadAdapterDir(join(run, "checkpoints", "step-000001", "policy"));
    const m = loraModel({ ...ref.config, mpo_value_head: false }, ref.tensors, ad.settings, {}, new Rng(0), ad);
    const merged = m.mergedTensors();
    const ex = loadCheckpoint(out);
    expect(ex.weightsDtype).toBe("BF16");
    let moved = 0;
    for (const [name, w] of merged) {
      const got = ex.tensors.get(name)!.data;
      const want = Float32Array.from(w.data, (x) => bf16BitsToF32(f32ToBf16Bits(x)));
      expect(Array.from(got), name).toEqual(Array.from(want));
      if (name.endsWith("q_proj.weight")) moved += maxDiff(w.data, ref.tensors.get(name)!.data);
    }
    expect(moved).toBeGreaterThan(0); // the adapters trained, so the merge changed the base

    const adapted = Float32Array.from(m.score(tokens, targets, 1, tokens.length).logprobs);
    const bf16 = TransformerLM.fromParams(ex.config, ex.tensors).score(tokens, targets, 1, tokens.length).logprobs;
    // bf16 keeps 8 mantissa bits (relative rounding ≤ 2^-9 per weight): here the log-probs agree to ~5e-5.
    const d16 = maxDiff(bf16, adapted);
    console.log(`export bf16: max abs log-prob difference to the adapted f32 model ${d16.toExponential(2)}`);
    expect(d16).toBeLessThan(1e-3);
    // --dtype f32 keeps the merge exact.
    const out32 = join(root, "export-f32");
    expect((await runExport({ run, out: out32, merge: true, dtype: "f32" })).dtype).toBe("F32");
    expect(dtypes(join(out32, "model.safetensors"))).toEqual(new Set(["F32"]));
    const e32 = loadCheckpoint(out32);
    expect(e32.config.torch_dtype).toBe("float32");
    expect(maxDiff(TransformerLM.fromParams(e32.config, e32.tensors).score(tokens, targets, 1, tokens.length).logprobs, adapted)).toBeLessThan(1e-5);
    // The adapter export keeps the base in its dtype too.
    const outAd = join(root, "export-adapter");
    expect(await runExport({ run, out: outAd })).toMatchObject({ kind: "adapter", dtype: "BF16" });
    expect(dtypes(join(outAd, "model.safetensors"))).toEqual(new Set(["BF16"]));
    expect(dtypes(join(outAd, "adapter", "adapter_model.safetensors"))).toEqual(new Set(["F32"]));
  }, 180_000);

  it("a full fine-tune on an fp16 base exports fp16 (the trained f32 weights rounded); a bad --dtype is one clear error", async () => {
    // A run directory as the trainer lays it out for a full fine-tune: reference/ (the base) and a policy checkpoint.
    const base = join(root, "qwen2-f16");
    makeHfChatPolicy(base, { weightsDtype: "F16", seed: 5 });
    const b = loadCheckpoint(base);
    expect(b.weightsDtype).toBe("F16");
    expect(b.config.torch_dtype).toBe("float16");
    const run = join(root, "run-full");
    saveCheckpoint(join(run, "reference"), { config: b.config, tensors: b.tensors, tokenizerJson: b.tokenizerJson, tokenizerConfig: b.tokenizerConfig, generationConfig: b.generationConfig, weightsDtype: "F16" });
    const rng = new Rng(9);
    const trained = new Map([...b.tensors].map(([k, v]) => [k, { shape: v.shape, data: Float32Array.from(v.data, (x) => x + rng.normal() * 1e-3) }]));
    const d = b.config.hidden_size;
    trained.set("value_head.weight", { shape: [1, d], data: new Float32Array(d).fill(0.5) });
    trained.set("value_head.bias", { shape: [1], data: new Float32Array(1) });
    saveCheckpoint(join(run, "checkpoints", "step-000003", "policy"), { config: { ...b.config, mpo_value_head: true }, tensors: trained, tokenizerJson: b.tokenizerJson });

    const out = join(root, "export-f16");
    expect(await runExport({ run, step: 3, out })).toMatchObject({ kind: "full", dtype: "F16" });
    expect(dtypes(join(out, "model.safetensors"))).toEqual(new Set(["F16"]));
    const ex = loadCheckpoint(out);
    expect(ex.config.torch_dtype).toBe("float16");
    expect(ex.tensors.has("value_head.weight")).toBe(false);
    const w = trained.get("model.layers.1.mlp.up_proj.weight")!.data;
    expect(Array.from(ex.tensors.get("model.layers.1.mlp.up_proj.weight")!.data)).toEqual(Array.from(w, (x) => f16BitsToF32(f32ToF16Bits(x))));

    const bad = await mpo(["export", "--run", run, "--step", "3", "--out", join(root, "never"), "--dtype", "q8_0"]);
    expect(bad.code, bad.out).toBe(2); // a usage error
    expect(bad.out).toMatch(/--dtype: the Hugging Face export writes f32, f16, bf16/);
    expect(bad.out).not.toMatch(/\n\s+at /); // one line, no stack
  }, 60_000);
});
