/**
 * `mpo export --run RUN [--step N] --out DIR [--merge]`: a trained policy as a standard Hugging Face model
 * directory (config.json, model.safetensors, tokenizer.json, tokenizer_config.json with the chat template,
 * generation_config.json) — the hand-off from an embedded run to transformers/vLLM serving and evaluation.
 * Full-weight runs export the checkpoint's weights; LoRA runs need --merge (W + α/r·B·A on the run's
 * reference/ base) or get the PEFT adapter directory copied next to the base. The step defaults to the
 * newest checkpoint whose manifest verifies. An existing --out is never overwritten.
 */
import type { Command } from "commander";
import { UserError } from "../../util/errors.ts";

export interface ExportOptions {
  run: string;
  step?: number;
  out: string;
  merge?: boolean;
}

/** Writes the export; returns what was written. */
export async function runExport(o: ExportOptions): Promise<{ out: string; step: number; kind: "full" | "merged" | "adapter" }> {
  const { existsSync, cpSync, mkdirSync } = await import("node:fs");
  const { join, resolve } = await import("node:path");
  const { loadCheckpoint, saveCheckpoint } = await import("../../engine/io/checkpoint.ts");
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
  const files = { tokenizerJson: ref.tokenizerJson, tokenizerConfig: ref.tokenizerConfig, generationConfig: ref.generationConfig };
  const config = { ...(ref.config as Record<string, unknown>), mpo_value_head: false };
  if (existsSync(join(pol, "adapter_config.json"))) {
    const ad = loadAdapterDir(pol);
    if (!o.merge) {
      saveCheckpoint(out, { config, tensors: ref.tensors, ...files });
      mkdirSync(join(out, "adapter"), { recursive: true });
      for (const f of ["adapter_config.json", "adapter_model.safetensors"]) cpSync(join(pol, f), join(out, "adapter", f));
      return { out, step, kind: "adapter" };
    }
    const m = loraModel(config as never, ref.tensors, ad.settings, {}, new Rng(0), { ...ad, valueHead: undefined });
    saveCheckpoint(out, { config, tensors: m.mergedTensors(), ...files });
    return { out, step, kind: "merged" };
  }
  const ck = loadCheckpoint(pol);
  const tensors = new Map(ck.tensors);
  tensors.delete("value_head.weight");
  tensors.delete("value_head.bias");
  saveCheckpoint(out, { config, tensors, ...files });
  return { out, step, kind: "full" };
}

export function register(program: Command): void {
  program
    .command("export")
    .description("write a trained policy as a standard Hugging Face model directory (LoRA: --merge folds the adapters in)")
    .requiredOption("--run <dir>", "training run directory")
    .requiredOption("--out <dir>", "new output directory")
    .option("--step <n>", "checkpoint step (default: the newest that verifies)")
    .option("--merge", "LoRA runs: merge the adapters into the base weights (else the adapter is written to OUT/adapter)")
    .action(async (f: { run: string; out: string; step?: string; merge?: boolean }) => {
      const step = f.step === undefined ? undefined : Number(f.step);
      if (step !== undefined && !(Number.isInteger(step) && step >= 0)) throw new UserError(`--step: expected a non-negative integer, got "${f.step}"`);
      const r = await runExport({ run: f.run, out: f.out, step, merge: f.merge });
      process.stdout.write(`exported step ${r.step} (${r.kind}) to ${r.out}\n`);
    });
}
