/**
 * `mpo train` on a Hugging Face chat policy (a tiny qwen2 directory with the published Qwen2.5-Instruct chat
 * template, test/helpers/hf-policy.ts) for the essay task against the simulated judge server: the run's
 * reference and checkpoints carry the HF files (tokenizer_config.json with the template, generation_config.json
 * with both end ids), so resume and export keep the prompt format.
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSimServer } from "../src/sandbox/sim-server.ts";
import { makeHfChatPolicy } from "./helpers/hf-policy.ts";
import { existsSync } from "node:fs";
import { readSafetensorsHeader } from "../src/engine/io/safetensors.ts";
import { loadAdapterDir } from "../src/engine/io/lora.ts";
import { loadCheckpoint } from "../src/engine/io/checkpoint.ts";
import { loraModel } from "../src/rl/lora-policy.ts";
import { Rng } from "../src/util/rng.ts";
import { TransformerLM } from "../src/engine/index.ts";

const root = mkdtempSync(join(tmpdir(), "mpo-hf-train-"));
const dataDir = join(root, "data");
const policyDir = join(root, "qwen2-tiny");

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

describe("mpo train --policy <HF chat policy dir>", () => {
  let sim: Awaited<ReturnType<typeof startSimServer>>;
  beforeAll(async () => {
    mkdirSync(join(dataDir, "essay"), { recursive: true });
    const rows = Array.from({ length: 4 }, (_, i) => JSON.stringify({ id: `essay-${i}`, prompt: `Write a short essay about city trees, part ${i}.` }));
    writeFileSync(join(dataDir, "essay", "prompts.jsonl"), rows.join("\n") + "\n");
    makeHfChatPolicy(policyDir);
    sim = await startSimServer();
  });
  afterAll(async () => {
    await sim?.app.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("trains the essay task with GRPO; reference and checkpoints keep the chat template and end ids", async () => {
    const run = join(root, "run");
    const { code, out } = await mpo([
      "train", "--task", "essay", "--policy", policyDir, "--algo", "grpo", "--group-size", "2", "--batch", "2", "--steps", "2",
      "--max-new-tokens", "8", "--mpo-interval", "1", "--meta-samples", "2", "--llm", sim.url, "--model", "mpo-sim-judge", "--run", run, "--no-progress",
    ]);
    expect(code, out).toBe(0);
    expect(out).toMatch(/training finished: 2 steps/);
    const template = JSON.parse(readFileSync(join(policyDir, "tokenizer_config.json"), "utf8")).chat_template;
    for (const d of [join(run, "reference"), join(run, "checkpoints", "step-000002", "policy")]) {
      expect(JSON.parse(readFileSync(join(d, "tokenizer_config.json"), "utf8")).chat_template).toBe(template);
      expect(JSON.parse(readFileSync(join(d, "generation_config.json"), "utf8")).eos_token_id).toEqual([2, 0]);
      expect(JSON.parse(readFileSync(join(d, "config.json"), "utf8")).model_type).toBe("qwen2");
    }
  }, 120_000);

  it("--lora (PPO, separate critic): adapters saved in PEFT's format, the adapter loads back, the run resumes", async () => {
    const run = join(root, "run-lora");
    const common = ["--no-progress"];
    const { code, out } = await mpo([
      "train", "--task", "essay", "--policy", policyDir, "--lora", "--lora-r", "4", "--lora-alpha", "8", "--algo", "ppo", "--batch", "2", "--steps", "2",
      "--max-new-tokens", "8", "--mpo-interval", "1", "--meta-samples", "2", "--llm", sim.url, "--model", "mpo-sim-judge", "--run", run, ...common,
    ]);
    expect(code, out).toBe(0);
    const pol = join(run, "checkpoints", "step-000002", "policy");
    expect(existsSync(join(pol, "model.safetensors"))).toBe(false);
    const cfg = JSON.parse(readFileSync(join(pol, "adapter_config.json"), "utf8"));
    expect(cfg).toMatchObject({ peft_type: "LORA", task_type: "CAUSAL_LM", r: 4, lora_alpha: 8, lora_dropout: 0.05, base_model_name_or_path: policyDir, bias: "none" });
    expect(cfg.target_modules).toEqual(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]);
    const header = readSafetensorsHeader(join(pol, "adapter_model.safetensors"));
    expect(header["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].shape).toEqual([4, 32]);
    expect(header["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"].shape).toEqual([32, 4]);
    expect(Object.keys(header).length).toBe(2 * 7 * 2);
    expect(existsSync(join(run, "checkpoints", "step-000002", "critic", "value_head.safetensors"))).toBe(true);
    // The adapter loads back onto the base, and it trained (B moved away from its zero init).
    const ad = loadAdapterDir(pol);
    const base = loadCheckpoint(join(run, "reference"));
    const m = loraModel({ ...base.config, mpo_value_head: false }, base.tensors, ad.settings, {}, new Rng(0), ad);
    const b = m.loraTensors().get("model.layers.0.self_attn.q_proj.lora_B.weight")!;
    expect(Math.max(...b.data.map(Math.abs))).toBeGreaterThan(0);
    // mpo export --merge: a plain HF directory whose logits are the adapted model's.
    const { runExport } = await import("../src/cli/commands/export.ts");
    const exportDir = join(root, "export-merged");
    expect((await runExport({ run, out: exportDir, merge: true })).kind).toBe("merged");
    const ex = loadCheckpoint(exportDir);
    expect(ex.tokenizerConfig?.chat_template).toBe(JSON.parse(readFileSync(join(policyDir, "tokenizer_config.json"), "utf8")).chat_template);
    expect(ex.generationConfig?.eos_token_id).toEqual([2, 0]);
    const merged = TransformerLM.fromParams(ex.config, ex.tensors);
    const tokens = Int32Array.from([1, 5, 9, 40, 41, 42, 7, 8]);
    const targets = Int32Array.from([5, 9, 40, 41, 42, 7, 8, -1]);
    const want = Float32Array.from(m.score(tokens, targets, 1, 8).logprobs);
    const got = merged.score(tokens, targets, 1, 8).logprobs;
    want.forEach((x, i) => expect(Math.abs(got[i] - x)).toBeLessThan(1e-5));
    await expect(runExport({ run, out: exportDir, merge: true })).rejects.toThrow(/already exists/);
    // The merged directory is the GGUF export's input (LoRA → merge → GGUF): qwen2 keeps HF's row order, so the
    // file's tensors are the merged weights exactly (f32).
    const { exportGguf } = await import("../src/engine/io/gguf-export.ts");
    const { readGguf } = await import("../src/engine/io/gguf.ts");
    const g = exportGguf(exportDir, join(root, "merged.gguf"), { dtype: "f32" });
    expect(g.arch).toBe("qwen2");
    const gg = readGguf(g.path);
    expect(Array.from(gg.data.get("blk.0.attn_q.weight")!)).toEqual(Array.from(ex.tensors.get("model.layers.0.self_attn.q_proj.weight")!.data));
    // Resume continues from the adapter checkpoint.
    const r2 = await mpo(["train", "--resume", run, "--steps", "3", ...common]);
    expect(r2.code, r2.out).toBe(0);
    expect(r2.out).toMatch(/resuming .* after step 2/);
    expect(existsSync(join(run, "checkpoints", "step-000003", "policy", "adapter_model.safetensors"))).toBe(true);
  }, 180_000);
});
