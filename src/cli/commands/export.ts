/**
 * `mpo export --gguf OUT.gguf --model DIR`: writes a policy as one GGUF file for llama.cpp, Ollama and LM
 * Studio (src/engine/io/gguf-export.ts). DIR is a Hugging Face model directory (llama, qwen2, qwen3: what
 * `mpo train` checkpoints and `mpo pretrain` write), a `mpo train` run directory (its latest checkpoint's
 * policy), a `mpo pretrain` output directory, or a Hub id in the local HF cache.
 */
import type { Command } from "commander";
import { UserError } from "../../util/errors.ts";

/** The policy directory behind DIR: a train run's latest checkpoint, else a model directory. */
export async function resolvePolicyDir(dir: string): Promise<string> {
  const { existsSync, readFileSync } = await import("node:fs");
  const { join, resolve } = await import("node:path");
  const latest = join(resolve(dir), "checkpoints", "latest.json");
  if (existsSync(latest)) {
    let rel: unknown;
    try {
      rel = JSON.parse(readFileSync(latest, "utf8")).path;
    } catch (e) {
      throw new UserError(`${latest}: not valid JSON (${(e as Error).message})`);
    }
    if (typeof rel !== "string") throw new UserError(`${latest}: field 'path' is missing`);
    return join(resolve(dir), rel, "policy");
  }
  const { resolveModelDir } = await import("./sample.ts");
  return resolveModelDir(dir);
}

export function register(program: Command): void {
  program
    .command("export")
    .description("export a policy for other runtimes: --gguf writes one GGUF file (llama.cpp, Ollama, LM Studio)")
    .requiredOption("--model <dir>", "HF model dir (llama/qwen2/qwen3), a `mpo train` run dir (latest checkpoint) or a `mpo pretrain` --out dir")
    .requiredOption("--gguf <file>", "the GGUF file to write")
    .option("--dtype <type>", "tensor type of the matrices: f32, f16, bf16, q8_0 (norms and biases stay f32)", "f16")
    .option("--chat-template <file>", "a Jinja chat template replacing the model's own (default: tokenizer_config.json's, else ChatML when the vocabulary has <|im_start|>)")
    .option("--name <name>", "general.name in the file (default: the directory's name)")
    .action(async (o: { model: string; gguf: string; dtype: string; chatTemplate?: string; name?: string }) => {
      const { readFileSync, existsSync } = await import("node:fs");
      const { exportGguf, GGUF_DTYPES } = await import("../../engine/io/gguf-export.ts");
      if (!(GGUF_DTYPES as string[]).includes(o.dtype)) throw new UserError(`--dtype: expected one of ${GGUF_DTYPES.join(", ")}, got "${o.dtype}"`);
      if (o.chatTemplate && !existsSync(o.chatTemplate)) throw new UserError(`--chat-template: ${o.chatTemplate} does not exist`);
      const dir = await resolvePolicyDir(o.model);
      const t0 = performance.now();
      const r = exportGguf(dir, o.gguf, {
        dtype: o.dtype as (typeof GGUF_DTYPES)[number],
        name: o.name,
        chatTemplate: o.chatTemplate ? readFileSync(o.chatTemplate, "utf8") : undefined,
      });
      for (const f of r.fallbacks) process.stderr.write(`note: ${f}\n`);
      process.stdout.write(
        `wrote ${r.path}: ${r.arch}, ${r.tensors} tensors, ${o.dtype}, ${(r.bytes / 2 ** 20).toFixed(1)} MiB (${((performance.now() - t0) / 1000).toFixed(1)} s) from ${dir}\n`,
      );
    });
}
