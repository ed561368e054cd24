/**
 * Writes a Qwen2.5-0.5B-shaped model directory with RANDOM weights (for the memory/speed benches; never
 * committed — 988 MB): the published Qwen/Qwen2.5-0.5B-Instruct config.json and generation_config.json
 * (same keys and values), and one model.safetensors in the published layout — BF16 tensors, HF names,
 * tied embeddings (no lm_head.weight), q/k/v biases, `__metadata__ {"format": "pt"}`.
 *
 *   npx tsx bench/make-qwen05.ts [--out /tmp/mpo-qwen2.5-0.5b-random] [--seed 0]
 *
 * Weights ~ N(0, 0.02) (initializer_range), norms 1, biases N(0, 0.02). Streams tensor by tensor, so the
 * generator itself needs well under 100 MB. Reused when the directory already holds a complete file.
 */
import { closeSync, existsSync, mkdirSync, openSync, renameSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";

export const QWEN05_CONFIG = {
  architectures: ["Qwen2ForCausalLM"], attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645,
  hidden_act: "silu", hidden_size: 896, initializer_range: 0.02, intermediate_size: 4864,
  max_position_embeddings: 32768, max_window_layers: 21, model_type: "qwen2", num_attention_heads: 14,
  num_hidden_layers: 24, num_key_value_heads: 2, rms_norm_eps: 1e-06, rope_theta: 1000000.0,
  sliding_window: 32768, tie_word_embeddings: true, torch_dtype: "bfloat16", transformers_version: "4.43.1",
  use_cache: true, use_sliding_window: false, vocab_size: 151936,
};

const GENERATION_CONFIG = {
  bos_token_id: 151643, pad_token_id: 151643, do_sample: true, eos_token_id: [151645, 151643],
  repetition_penalty: 1.1, temperature: 0.7, top_p: 0.8, top_k: 20, transformers_version: "4.37.0",
};

export const QWEN05_DIR = "/tmp/mpo-qwen2.5-0.5b-random";

/** Tensor names and shapes of the published checkpoint (tied: no lm_head.weight). */
function shapes(): [string, number[], "normal" | "ones"][] {
  const c = QWEN05_CONFIG;
  const d = c.hidden_size, ff = c.intermediate_size, D = d / c.num_attention_heads, kv = c.num_key_value_heads * D;
  const out: [string, number[], "normal" | "ones"][] = [["model.embed_tokens.weight", [c.vocab_size, d], "normal"]];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    out.push(
      [p + "input_layernorm.weight", [d], "ones"],
      [p + "self_attn.q_proj.weight", [d, d], "normal"], [p + "self_attn.q_proj.bias", [d], "normal"],
      [p + "self_attn.k_proj.weight", [kv, d], "normal"], [p + "self_attn.k_proj.bias", [kv], "normal"],
      [p + "self_attn.v_proj.weight", [kv, d], "normal"], [p + "self_attn.v_proj.bias", [kv], "normal"],
      [p + "self_attn.o_proj.weight", [d, d], "normal"],
      [p + "post_attention_layernorm.weight", [d], "ones"],
      [p + "mlp.gate_proj.weight", [ff, d], "normal"], [p + "mlp.up_proj.weight", [ff, d], "normal"],
      [p + "mlp.down_proj.weight", [d, ff], "normal"],
    );
  }
  out.push(["model.norm.weight", [d], "ones"]);
  return out;
}

/** f32 → bf16 bits, round to nearest even (what torch's .to(bfloat16) does for finite values). */
function bf16(x: number, f: Float32Array, u: Uint32Array): number {
  f[0] = x;
  const b = u[0];
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

export function makeQwen05(out = QWEN05_DIR, seed = 0): string {
  const file = join(out, "model.safetensors");
  const list = shapes();
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let off = 0;
  // The published file lists tensors sorted by name (safetensors' writer sorts).
  for (const [name, shape] of [...list].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const n = shape.reduce((a, b) => a * b, 1) * 2;
    header[name] = { dtype: "BF16", shape, data_offsets: [off, off + n] };
    off += n;
  }
  let h = Buffer.from(JSON.stringify(header));
  h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
  const total = 8 + h.length + off;
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "config.json"), JSON.stringify(QWEN05_CONFIG, null, 2) + "\n");
  writeFileSync(join(out, "generation_config.json"), JSON.stringify(GENERATION_CONFIG, null, 2) + "\n");
  if (existsSync(file) && statSync(file).size === total) return out;
  const tmp = file + ".tmp";
  const fd = openSync(tmp, "w");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  writeSync(fd, len);
  writeSync(fd, h);
  // xorshift128+ uniforms → Box–Muller normals; deterministic per seed.
  let s0 = BigInt(seed) * 0x9e3779b97f4a7c15n + 1n, s1 = 0x6a09e667f3bcc909n;
  const M = (1n << 64n) - 1n;
  const next32 = () => {
    let x = s0;
    const y = s1;
    s0 = y;
    x = (x ^ (x << 23n)) & M;
    s1 = x ^ y ^ (x >> 17n) ^ (y >> 26n);
    return Number(((s1 + y) & M) >> 32n) / 4294967296;
  };
  // BigInt per value is slow: seed a fast 32-bit generator per tensor from the 64-bit one.
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (const [name, shape, init] of [...list].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const n = shape.reduce((a, b) => a * b, 1);
    const buf = Buffer.alloc(n * 2);
    if (init === "ones") for (let i = 0; i < n; i++) buf.writeUInt16LE(0x3f80, i * 2);
    else {
      let a = (next32() * 4294967296) >>> 0 || 1;
      const rand = () => {
        a ^= a << 13; a >>>= 0; a ^= a >>> 17; a ^= a << 5; a >>>= 0;
        return (a + 0.5) / 4294967296;
      };
      for (let i = 0; i < n; i += 2) {
        const r = Math.sqrt(-2 * Math.log(rand())) * 0.02;
        const t = 2 * Math.PI * rand();
        buf.writeUInt16LE(bf16(r * Math.cos(t), f, u), i * 2);
        if (i + 1 < n) buf.writeUInt16LE(bf16(r * Math.sin(t), f, u), i * 2 + 2);
      }
    }
    writeSync(fd, buf);
    void name;
  }
  closeSync(fd);
  renameSync(tmp, file);
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (k: string) => {
    const i = process.argv.indexOf(k);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const t0 = Date.now();
  const dir = makeQwen05(arg("--out") ?? QWEN05_DIR, Number(arg("--seed") ?? 0));
  console.log(`${dir}: written in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
