/**
 * `mpo export --run RUN [--step N] --out DIR [--merge]`: a trained policy as a standard Hugging Face model
 * directory (config.json, model.safetensors, tokenizer.json, tokenizer_config.json with the chat template,
 * generation_config.json) — the hand-off from an embedded run to transformers/vLLM serving and evaluation.
 * Full-weight runs export the checkpoint's weights; LoRA runs need --merge (W + α/r·B·A on the run's
 * reference/ base) or get the PEFT adapter directory copied next to the base. The weights are written in the
 * base model's dtype (its config.json torch_dtype, else its files' dtype: a bf16 base exports bf16, fp16
 * stays fp16), rounded to nearest even as torch's .to(dtype) does; `--dtype f32|f16|bf16` overrides. The step
 * defaults to the newest checkpoint whose manifest verifies. An existing --out is never overwritten.
 * `mpo export --model DIR --gguf OUT.gguf [--dtype]`: one GGUF file (src/engine/io/gguf-export.ts) from a HF
 * model directory (llama, qwen2, qwen3), a run directory (its newest checkpoint) or a pretrain output.
 */
import type { Command } from "commander";
import { UserError } from "../../util/errors.ts";

export interface ExportOptions {
  run: string;
  step?: number;
  out: string;
  merge?: boolean;
  /** Weight dtype of the export (default: the base model's). */
  dtype?: "f32" | "f16" | "bf16";
}

export const HF_EXPORT_DTYPES = ["f32", "f16", "bf16"] as const;

/** Writes the export; returns what was written. */
export async function runExport(
  o: ExportOptions,
): Promise<{ out: string; step: number; kind: "full" | "merged" | "adapter"; dtype: "F32" | "F16" | "BF16" }> {
  const { existsSync, cpSync, mkdirSync } = await import("node:fs");
  const { join, resolve } = await import("node:path");
  const { configWeightsDtype, loadCheckpoint, saveCheckpoint } = await import("../../engine/io/checkpoint.ts");
  const { loadAdapterDir } = await import("../../engine/io/lora.ts");
  const { loraModel } = await import("../../rl/lora-policy.ts");
  const { findResumePoint } = await import("../../rl/checkpointing.ts");
  const { checkpointDir } = await import("../../util/run-layout.ts");
  const { Rng } = await import("../../util/rng.ts");
  const run = resolve(o.run);
  const out = resolve(o.out);
  if (!existsSync(join(run, "reference", "config.json"))) throw new UserError(`--run: ${run} is not a training run (no reference/config.json)`);
  if (existsSync(out)) throw new UserError(`--out: ${out} already exists; choose a new directory (exports never overwrite)`);
  const step = o.step ?? findResumePoint(run)?.step;
  if (step === undefined) throw new UserError(`--run: ${run} has no checkpoint that verifies`);
  const pol = join(run, checkpointDir(step), "policy");
  if (!existsSync(pol)) throw new UserError(`--step: ${pol} does not exist`);
  const ref = loadCheckpoint(join(run, "reference"));
  const weightsDtype = o.dtype ? (o.dtype.toUpperCase() as "F32" | "F16" | "BF16") : (configWeightsDtype(ref.config) ?? ref.weightsDtype ?? "F32");
  const files = { tokenizerJson: ref.tokenizerJson, tokenizerConfig: ref.tokenizerConfig, generationConfig: ref.generationConfig, weightsDtype };
  const config = { ...(ref.config as Record<string, unknown>), mpo_value_head: false };
  if (existsSync(join(pol, "adapter_config.json"))) {
    const ad = loadAdapterDir(pol);
    if (!o.merge) {
      saveCheckpoint(out, { config, tensors: ref.tensors, ...files });
      mkdirSync(join(out, "adapter"), { recursive: true });
      for (const f of ["adapter_config.json", "adapter_model.safetensors"]) cpSync(join(pol, f), join(out, "adapter", f));
      return { out, step, kind: "adapter", dtype: weightsDtype };
    }
    const m = loraModel(config as never, ref.tensors, ad.settings, {}, new Rng(0), { ...ad, valueHead: undefined });
    saveCheckpoint(out, { config, tensors: m.mergedTensors(), ...files });
    return { out, step, kind: "merged", dtype: weightsDtype };
  }
  const ck = loadCheckpoint(pol);
  const tensors = new Map(ck.tensors);
  tensors.delete("value_head.weight");
  tensors.delete("value_head.bias");
  saveCheckpoint(out, { config, tensors, ...files });
  return { out, step, kind: "full", dtype: weightsDtype };
}

export function register(program: Command): void {
  program
    .command("export")
    .description(
      "export a policy: --out DIR writes a standard Hugging Face model directory from a training run (LoRA: --merge folds the adapters in); " +
        "--gguf FILE writes one GGUF file for llama.cpp, Ollama and LM Studio",
    )
    .option("--run <dir>", "training run directory (with --out; with --gguf: its newest checkpoint)")
    .option("--out <dir>", "new output directory for the Hugging Face export")
    .option("--step <n>", "checkpoint step (default: the newest that verifies)")
    .option("--merge", "LoRA runs: merge the adapters into the base weights (else the adapter is written to OUT/adapter)")
    .option("--model <dir>", "with --gguf: a HF model dir (llama/qwen2/qwen3), a `mpo train` run dir or a `mpo pretrain` --out dir")
    .option("--gguf <file>", "write this GGUF file instead of a HF directory")
    .option("--dtype <type>", "GGUF: tensor type of the matrices, f32|f16|bf16|q8_0 (default f16; norms and biases stay f32). --out: weight dtype f32|f16|bf16 (default: the base model's)")
    .option("--chat-template <file>", "GGUF: a Jinja chat template replacing the model's own")
    .option("--name <name>", "GGUF: general.name in the file (default: the directory's name)")
    .action(async (f: { run?: string; out?: string; step?: string; merge?: boolean; model?: string; gguf?: string; dtype?: string; chatTemplate?: string; name?: string }) => {
      if (f.gguf) {
        const src = f.model ?? f.run;
        if (!src) throw new UserError("--gguf needs the policy: --model DIR (or --run RUN)");
        if (f.out || f.merge || f.step !== undefined) throw new UserError("--gguf writes one file from --model/--run; --out, --merge and --step belong to the Hugging Face export");
        const { readFileSync, existsSync } = await import("node:fs");
        const { exportGguf, GGUF_DTYPES } = await import("../../engine/io/gguf-export.ts");
        const { resolvePolicyDir } = await import("../../generate/index.ts");
        const { resolveModelDir } = await import("./sample.ts");
        const dtype = f.dtype ?? "f16";
        if (!(GGUF_DTYPES as string[]).includes(dtype)) throw new UserError(`--dtype: expected one of ${GGUF_DTYPES.join(", ")}, got "${dtype}"`);
        if (f.chatTemplate && !existsSync(f.chatTemplate)) throw new UserError(`--chat-template: ${f.chatTemplate} does not exist`);
        const dir = resolvePolicyDir(await resolveModelDir(src));
        const t0 = performance.now();
        const r = exportGguf(dir, f.gguf, { dtype: dtype as (typeof GGUF_DTYPES)[number], name: f.name, chatTemplate: f.chatTemplate ? readFileSync(f.chatTemplate, "utf8") : undefined });
        for (const n of r.fallbacks) process.stderr.write(`note: ${n}\n`);
        process.stdout.write(`wrote ${r.path}: ${r.arch}, ${r.tensors} tensors, ${dtype}, ${(r.bytes / 2 ** 20).toFixed(1)} MiB (${((performance.now() - t0) / 1000).toFixed(1)} s) from ${dir}\n`);
        return;
      }
      if (!f.run || !f.out) throw new UserError("give --run RUN --out DIR (Hugging Face directory) or --model DIR --gguf FILE (GGUF)");
      const step = f.step === undefined ? undefined : Number(f.step);
      if (step !== undefined && !(Number.isInteger(step) && step >= 0)) throw new UserError(`--step: expected a non-negative integer, got "${f.step}"`);
      if (f.dtype !== undefined && !(HF_EXPORT_DTYPES as readonly string[]).includes(f.dtype))
        throw new UserError(`--dtype: the Hugging Face export writes ${HF_EXPORT_DTYPES.join(", ")} (default: the base model's dtype), got "${f.dtype}"`);
      const r = await runExport({ run: f.run, out: f.out, step, merge: f.merge, dtype: f.dtype as ExportOptions["dtype"] });
      process.stdout.write(`exported step ${r.step} (${r.kind}, ${r.dtype}) to ${r.out}\n`);
    });
}
