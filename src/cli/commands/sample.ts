/**
 * `mpo sample`: loads a checkpoint (an HF model dir or Hub id, or a `mpo pretrain` output dir holding model/)
 * and generates continuations of a prompt with the engine's KV-cached sampler — the quickest way to see
 * what a pretrained or RL-trained policy says. `--chat` renders the policy's own chat template
 * (tokenizer_config.json) around a user message (and `--system`), with the assistant header appended, and
 * stops at any end-of-turn id. A missing or corrupt checkpoint is a clear error naming the file and the problem.
 */
import type { Command } from "commander";
import { UserError } from "../../util/errors.ts";

export interface SampleOptions {
  model: string;
  prompt: string;
  /** User message rendered with the policy's chat template (instead of `prompt`). */
  chat?: string;
  /** System message for `chat`. */
  system?: string;
  maxNewTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  n?: number;
  engine?: "ts" | "native" | "auto";
  /** Continue the prompt exactly as given, without the policy's separator. */
  raw?: boolean;
}

export interface SampleResult {
  /** The prompt text as fed to the model (the rendered chat template with --chat). */
  prompt: string;
  promptTokens: number;
  promptIds: number[];
  /** The first sample's new token ids, text and per-token log-probs (for scripts and cross-checks). */
  ids: number[];
  text: string;
  logprobs: number[];
  samples: { text: string; tokens: number[]; finished: boolean; logprob: number; logprobs: number[] }[];
}

function num(name: string, v: unknown, min: number, max: number, integer: boolean): number | undefined {
  if (v === undefined) return undefined;
  const s = String(v).trim();
  const n = Number(s);
  if (s === "" || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n)))
    throw new UserError(`--${name}: expected ${integer ? "an integer" : "a number"} in [${min}, ${max}], got "${v}"`);
  return n;
}

/** Nucleus mass in (0, 1]. */
function topP(v: unknown): number {
  const p = num("top-p", v, 0, 1, false);
  if (p === 0) throw new UserError(`--top-p: expected a number in (0, 1], got "${v}"`);
  return p ?? 1;
}

/** The checkpoint dir: DIR itself when it has config.json, else DIR/model (pretrain output layout); a Hub id resolves through the HF cache. */
export async function resolveModelDir(dir: string): Promise<string> {
  const { join } = await import("node:path");
  const { existsSync } = await import("node:fs");
  const { resolveModelSource } = await import("../../engine/io/hub.ts");
  const d = await resolveModelSource(dir, "--model");
  if (existsSync(join(d, "config.json"))) return d;
  if (existsSync(join(d, "model", "config.json"))) return join(d, "model");
  throw new UserError(`--model: ${d} is not a checkpoint (no config.json in it or in ${join(d, "model")})`);
}

export async function runSample(o: SampleOptions): Promise<SampleResult> {
  const { loadCheckpoint } = await import("../../engine/io/checkpoint.ts");
  const { TransformerLM } = await import("../../engine/index.ts");
  const { loadTokenizer } = await import("../../tokenizer/hf.ts");
  const { Rng } = await import("../../util/rng.ts");
  const { join } = await import("node:path");
  const dir = await resolveModelDir(o.model);
  const ck = loadCheckpoint(dir);
  if (!ck.tokenizerJson) throw new UserError(`checkpoint ${dir}: tokenizer.json is missing, cannot encode the prompt`);
  const tok = loadTokenizer(ck.tokenizerJson, join(dir, "tokenizer.json"));
  if (tok.vocabSize > ck.config.vocab_size)
    throw new UserError(`checkpoint ${dir}: tokenizer has ${tok.vocabSize} tokens but config.json vocab_size is ${ck.config.vocab_size}`);
  const model = TransformerLM.fromParams(ck.config, ck.tensors, { engine: o.engine });
  const { ChatTemplate, chatStopIds } = await import("../../tokenizer/chat.ts");
  let promptText = o.prompt;
  if (o.chat !== undefined) {
    if (o.prompt) throw new UserError("give either --prompt (plain text) or --chat (a user message for the chat template), not both");
    const tpl = ChatTemplate.fromTokenizerConfig(ck.tokenizerConfig, join(dir, "tokenizer_config.json"));
    if (!tpl) throw new UserError(`checkpoint ${dir}: no chat_template in tokenizer_config.json; use --prompt with plain text`);
    const messages = [...(o.system !== undefined ? [{ role: "system", content: o.system }] : []), { role: "user", content: o.chat }];
    promptText = tpl.render(messages, true);
  } else if (o.system !== undefined) throw new UserError("--system needs --chat");

  const { loadGenerationSettings } = await import("../../engine/generation-settings.ts");
  const settings = loadGenerationSettings(dir);
  const maxPos = ck.config.max_position_embeddings;
  const maxNew = num("max-new-tokens", o.maxNewTokens, 1, maxPos - 1, true) ?? Math.min(settings.maxNewTokens ?? 64, maxPos - 1);
  const n = num("n", o.n, 1, 256, true) ?? 1;
  // A policy trained with a separator after its prompt (mpo-generation.json) continues from prompt + separator.
  if (o.chat === undefined && settings.prompt?.kind === "separator" && o.prompt !== "" && !o.raw) promptText += settings.prompt.separator;
  let ids = tok.encode(promptText);
  // An empty prompt starts a fresh document (the end-of-text token separates documents in pretraining).
  const start = tok.specialId("<|endoftext|>") ?? (typeof ck.config.bos_token_id === "number" ? ck.config.bos_token_id : undefined);
  if (ids.length === 0) {
    if (start === undefined) throw new UserError("--prompt is empty and the tokenizer has no <|endoftext|> / BOS token to start from");
    ids = [start];
  }
  const promptTokens = ids.length;
  if (ids.length + maxNew > maxPos) {
    // Keep the most recent context: the model never saw positions beyond max_position_embeddings.
    ids = ids.slice(ids.length + maxNew - maxPos);
    process.stderr.write(`note: prompt truncated to its last ${ids.length} tokens (context ${maxPos}, ${maxNew} new)\n`);
  }
  // Every end-of-turn id: mpo-generation.json when the checkpoint declares its own; else generation_config.json
  // (Qwen2.5 and Llama 3 list several), config.json, tokenizer eos.
  const stopTokens =
    settings.sources.eosTokenIds?.endsWith("mpo-generation.json") && settings.eosTokenIds
      ? settings.eosTokenIds
      : chatStopIds({ generationConfig: ck.generationConfig, config: ck.config as Record<string, unknown>, tokenizerConfig: ck.tokenizerConfig }, (t) => tok.specialId(t));
  const out = model.generate(
    Array.from({ length: n }, () => ids),
    {
      maxNewTokens: maxNew,
      temperature: num("temperature", o.temperature, 0, 100, false) ?? settings.temperature ?? 1,
      topK: num("top-k", o.topK, 0, ck.config.vocab_size, true) ?? 0,
      topP: topP(o.topP),
      stopTokens,
      rng: new Rng(num("seed", o.seed, 0, 2 ** 32 - 1, true) ?? 0),
    },
  );
  const samples = out.tokens.map((t, i) => ({
    text: tok.decode(t.filter((x) => !stopTokens.includes(x)), { skipSpecial: true }),
    tokens: t,
    finished: out.finished[i],
    logprob: out.logprobs[i].reduce((a, b) => a + b, 0),
    logprobs: out.logprobs[i],
  }));
  return {
    prompt: promptText,
    promptTokens,
    promptIds: ids,
    ids: samples[0].tokens,
    text: samples[0].text,
    logprobs: samples[0].logprobs,
    samples,
  };
}

export function register(program: Command): void {
  program
    .command("sample")
    .description("generate continuations of a prompt from a checkpoint (KV-cached sampling)")
    .requiredOption("--model <dir>", "checkpoint dir (config.json, model.safetensors, tokenizer.json) or a `mpo pretrain` --out dir")
    .option("--prompt <text>", "prompt text (special tokens like <|im_start|> are recognized)", "")
    .option("--chat <text>", "a user message, wrapped in the policy's chat template (tokenizer_config.json) with the assistant header")
    .option("--system <text>", "system message for --chat")
    .option("--max-new-tokens <n>", "tokens to generate (default: the checkpoint's mpo-generation.json / generation_config.json, else 64)")
    .option("--temperature <x>", "sampling temperature; 0 = greedy (default: the checkpoint's, else 1)")
    .option("--raw", "continue --prompt as typed, without the separator the checkpoint declares (mpo-generation.json)")
    .option("--top-k <n>", "keep the k most likely tokens (0 = off)")
    .option("--top-p <x>", "nucleus sampling mass (1 = off)")
    .option("--seed <n>", "random seed (default 0)")
    .option("-n, --n <n>", "number of samples (default 1)")
    .option("--json", "print JSON {prompt, promptIds, ids, text, logprobs, samples} instead of text")
    .option("--engine <path>", "compute path: ts, native or auto")
    .action(async (flags) => {
      if (flags.engine !== undefined && !["ts", "native", "auto"].includes(flags.engine)) throw new UserError(`--engine: expected ts, native or auto, got "${flags.engine}"`);
      const r = await runSample({
        model: flags.model,
        prompt: flags.prompt,
        chat: flags.chat,
        system: flags.system,
        maxNewTokens: flags.maxNewTokens,
        temperature: flags.temperature,
        topK: flags.topK,
        topP: flags.topP,
        seed: flags.seed,
        n: flags.n,
        engine: flags.engine,
        raw: flags.raw === true,
      });
      if (flags.json) {
        process.stdout.write(JSON.stringify(r) + "\n");
        return;
      }
      r.samples.forEach((s, i) => {
        if (r.samples.length > 1) process.stdout.write(`--- sample ${i + 1} (logprob ${s.logprob.toFixed(2)}${s.finished ? ", ended" : ""})\n`);
        process.stdout.write(r.prompt + s.text + "\n");
      });
    });
}
