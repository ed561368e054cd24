/**
 * Published Hugging Face layouts in the embedded engine: tiny random checkpoints written by
 * bench/hf_fixtures.py in the exact layouts of Qwen2.5-Instruct (qwen2, biases, BF16, tied), Llama-3.2-Instruct
 * (llama3 rope scaling, head_dim, untied, two F16 shards), SmolLM2-Instruct (tied, F32) and Qwen3 (q/k norm,
 * head_dim ≠ hidden/heads, BF16), with reference log-softmax and greedy generations from the independent
 * PyTorch model (bench/torch_model.py). Both compute paths. Plus the loader's errors and the HF cache lookup.
 */
import { describe, it, expect, afterEach } from "vitest";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { readSafetensors } from "../src/engine/io/safetensors.ts";
import { loadCheckpoint } from "../src/engine/io/checkpoint.ts";
import { cachedSnapshot, hubCacheDir, parseHubId, resolveModelSource } from "../src/engine/io/hub.ts";
import { TransformerLM, loadNative } from "../src/engine/index.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "fixtures/hf");
const CASES = ["qwen2_5", "llama3_2", "smollm2", "qwen3"] as const;

function ref(name: string) {
  const t = readSafetensors(join(root, `${name}_ref.safetensors`)).tensors;
  const get = (k: string) => t.get(k)!;
  return {
    tokens: Int32Array.from(get("tokens").data as Int32Array),
    tokShape: get("tokens").shape,
    logsm: get("logsoftmax").data as Float32Array,
    prompts: Array.from({ length: get("gen_prompts").shape[0] }, (_, b) =>
      Array.from((get("gen_prompts").data as Int32Array).subarray(b * 4, b * 4 + 4))),
    gen: get("gen_tokens"),
  };
}

const engines: ("ts" | "native")[] = ["ts"];
if (loadNative().kernels) engines.push("native");

const tmps: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "mpo-hf-"));
  tmps.push(d);
  return d;
};
afterEach(() => {
  for (const d of tmps.splice(0)) rmSync(d, { recursive: true, force: true });
});

for (const engine of engines) {
  describe(`published HF layouts vs PyTorch (${engine})`, () => {
    for (const name of CASES) {
      it(`${name}: full log-softmax to 1e-4 and greedy generation`, () => {
        const ck = loadCheckpoint(join(root, name));
        const model = TransformerLM.fromParams(ck.config, ck.tensors, { engine });
        const r = ref(name);
        const [B, T] = r.tokShape;
        const V = model.dims.V;
        // Every logit up to its normalizer: score each vocabulary entry as the target at every position.
        let worst = 0;
        for (let j = 0; j < V; j++) {
          const targets = new Int32Array(B * T).fill(j);
          const lp = model.score(r.tokens, targets, B, T).logprobs;
          for (let i = 0; i < B * T; i++) worst = Math.max(worst, Math.abs(lp[i] - r.logsm[i * V + j]));
        }
        expect(worst, `max |Δ log p| for ${name}`).toBeLessThan(1e-4);
        const out = model.generate(r.prompts, { maxNewTokens: 6, temperature: 0, stopTokens: [] });
        const want = Array.from({ length: B }, (_, b) => Array.from((r.gen.data as Int32Array).subarray(b * 6, b * 6 + 6)));
        expect(out.tokens).toEqual(want);
      });
    }
  });
}

describe("HF checkpoint files", () => {
  it("reads generation_config.json with several eos ids and the family-specific tensors", () => {
    const ck = loadCheckpoint(join(root, "llama3_2"));
    expect(ck.generationConfig?.eos_token_id).toEqual([89, 90, 91]);
    expect(ck.tensors.has("lm_head.weight")).toBe(true);
    const q2 = loadCheckpoint(join(root, "qwen2_5"));
    expect(q2.tensors.get("model.layers.0.self_attn.q_proj.bias")?.shape).toEqual([32]);
    expect(q2.tensors.has("model.layers.0.self_attn.o_proj.bias")).toBe(false);
    const q3 = loadCheckpoint(join(root, "qwen3"));
    expect(q3.tensors.get("model.layers.1.self_attn.k_norm.weight")?.shape).toEqual([12]);
    expect(TransformerLM.fromParams(q3.config, q3.tensors).dims.D).toBe(12);
  });

  it("a missing shard is named with the index that lists it", () => {
    const d = tmp();
    cpSync(join(root, "llama3_2"), d, { recursive: true });
    unlinkSync(join(d, "model-00002-of-00002.safetensors"));
    expect(() => loadCheckpoint(d)).toThrow(/shard model-00002-of-00002\.safetensors listed in model\.safetensors\.index\.json is missing/);
  });

  it("a tensor the index places in a shard but that is absent there is named", () => {
    const d = tmp();
    cpSync(join(root, "llama3_2"), d, { recursive: true });
    const idx = JSON.parse(readFileSync(join(d, "model.safetensors.index.json"), "utf8"));
    idx.weight_map["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00002.safetensors";
    writeFileSync(join(d, "model.safetensors.index.json"), JSON.stringify(idx));
    expect(() => loadCheckpoint(d)).toThrow(/lacks tensor 'model\.layers\.9\.mlp\.up_proj\.weight'/);
  });

  it("unsupported model_type lists the supported ones", () => {
    const d = tmp();
    cpSync(join(root, "smollm2"), d, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(d, "config.json"), "utf8"));
    writeFileSync(join(d, "config.json"), JSON.stringify({ ...cfg, model_type: "mistral" }));
    expect(() => loadCheckpoint(d)).toThrow(/model_type.*supported: llama, qwen2, qwen3/);
  });

  it("a shape mismatch names the tensor; a config whose rope_type is not implemented is refused", () => {
    const d = tmp();
    cpSync(join(root, "qwen3"), d, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(d, "config.json"), "utf8"));
    writeFileSync(join(d, "config.json"), JSON.stringify({ ...cfg, head_dim: 8 }));
    expect(() => loadCheckpoint(d)).toThrow(/q_proj\.weight' has shape \[48,32\] but the config implies \[32,32\].*and 8 more/);
    writeFileSync(join(d, "config.json"), JSON.stringify({ ...cfg, rope_scaling: { rope_type: "yarn", factor: 4 } }));
    expect(() => loadCheckpoint(d)).toThrow(/rope_scaling\.rope_type.*"yarn"/);
  });

  it("pytorch_model.bin without safetensors is a clear error", () => {
    const d = tmp();
    cpSync(join(root, "smollm2"), d, { recursive: true });
    unlinkSync(join(d, "model.safetensors"));
    writeFileSync(join(d, "pytorch_model.bin"), "x");
    expect(() => loadCheckpoint(d)).toThrow(/pytorch_model\.bin but no model\.safetensors/);
  });
});

describe("Hugging Face Hub ids through the standard cache layout", () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const k of ["HF_HUB_CACHE", "HF_HOME", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "XDG_CACHE_HOME"]) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });

  it("cache root precedence: HF_HUB_CACHE, then HF_HOME/hub, then ~/.cache/huggingface/hub", () => {
    expect(hubCacheDir({ HF_HUB_CACHE: "/a", HF_HOME: "/b" })).toBe("/a");
    expect(hubCacheDir({ HF_HOME: "/b" })).toBe("/b/hub");
    expect(hubCacheDir({ XDG_CACHE_HOME: "/x" })).toBe("/x/huggingface/hub");
    expect(parseHubId("Qwen/Qwen2.5-0.5B-Instruct")).toEqual({ repo: "Qwen/Qwen2.5-0.5B-Instruct", revision: "main" });
    expect(parseHubId("Org/Name@v1.0")).toEqual({ repo: "Org/Name", revision: "v1.0" });
    expect(parseHubId("../x/y")).toBeNull();
  });

  it("a Hub id found in the cache (refs/main → snapshot of blob symlinks) loads without network", async () => {
    const home = tmp();
    process.env.HF_HOME = home;
    process.env.HF_HUB_OFFLINE = "1";
    const repo = join(home, "hub", "models--Tiny--qwen2_5");
    const commit = "0123456789abcdef0123456789abcdef01234567";
    mkdirSync(join(repo, "refs"), { recursive: true });
    mkdirSync(join(repo, "blobs"));
    mkdirSync(join(repo, "snapshots", commit), { recursive: true });
    writeFileSync(join(repo, "refs", "main"), commit);
    for (const f of ["config.json", "generation_config.json", "model.safetensors"]) {
      const blob = join(repo, "blobs", `blob-${f}`);
      cpSync(join(root, "qwen2_5", f), blob);
      symlinkSync(join("..", "..", "blobs", `blob-${f}`), join(repo, "snapshots", commit, f));
    }
    expect(cachedSnapshot("Tiny/qwen2_5", "main").dir).toBe(join(repo, "snapshots", commit));
    const dir = await resolveModelSource("Tiny/qwen2_5");
    const ck = loadCheckpoint(dir);
    expect(ck.config.model_type).toBe("qwen2");
  });

  it("offline and not cached: the error names the searched path and how to pass a local directory", async () => {
    const home = tmp();
    process.env.HF_HOME = home;
    process.env.HF_HUB_OFFLINE = "1";
    await expect(resolveModelSource("Qwen/Qwen2.5-0.5B-Instruct")).rejects.toThrow(
      new RegExp(`searched ${join(home, "hub", "models--Qwen--Qwen2.5-0.5B-Instruct", "snapshots", "main").replace(/[.]/g, "\\.")}.*pass a local model directory`),
    );
  });
});
