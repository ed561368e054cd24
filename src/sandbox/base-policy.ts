/**
 * The sandbox's base policy: a ~1M-parameter Llama-style model pretrained, by the project's own engine, on
 * essays from the built-in writer (./essay-writer.ts). It learns the writer's whole distribution — clean
 * essays and flawed ones — so RL has something to shift. The shipped checkpoint (assets/sandbox-policy)
 * is regenerated from a seed by `npm run sandbox:policy`.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { TransformerLM, exampleBatches, sftTrain, type Example } from "../engine/index.ts";
import { loadCheckpoint, saveCheckpoint } from "../engine/io/checkpoint.ts";
import { writeGenerationSettings } from "../engine/generation-settings.ts";
import { BpeTokenizer } from "../tokenizer/index.ts";
import { Rng } from "../util/rng.ts";
import { essayCorpus } from "./essay-writer.ts";
import { sandboxPrompts } from "./world.ts";

export const SANDBOX_POLICY_DIR = join(dirname(dirname(dirname(fileURLToPath(import.meta.url)))), "assets", "sandbox-policy");

/** How the policy sees a prompt: the instruction, a blank line, then it writes the essay and EOS. */
export function policyPromptText(prompt: string): string {
  return `${prompt}\n\n`;
}

export interface BasePolicyOptions {
  outDir: string;
  seed?: number;
  vocabSize?: number;
  essaysPerPrompt?: number;
  steps?: number;
  batch?: number;
  seqLen?: number;
  lr?: number;
  dModel?: number;
  layers?: number;
  heads?: number;
  progress?: boolean;
}

export async function buildBasePolicy(o: BasePolicyOptions): Promise<{ outDir: string; params: number; finalLoss: number; tokensPerSecond: number }> {
  const seed = o.seed ?? 0;
  const docs = essayCorpus(sandboxPrompts("train"), o.essaysPerPrompt ?? 24, seed);
  const texts = docs.map((d) => policyPromptText(d.prompt.prompt) + d.essay.text);
  const tokenizer = BpeTokenizer.train(texts, { vocabSize: o.vocabSize ?? 1024 });
  const eos = tokenizer.specialId("<|endoftext|>")!;
  const pad = tokenizer.specialId("<pad>") ?? eos;
  const seqLen = o.seqLen ?? 192;
  const examples: Example[] = docs.map((d) => {
    const p = tokenizer.encode(policyPromptText(d.prompt.prompt));
    const r = [...tokenizer.encode(d.essay.text), eos];
    const tokens = [...p, ...r].slice(0, seqLen + 1);
    // Loss on the essay only: the policy must learn to write, not to produce instructions.
    const lossMask = tokens.map((_, i) => (i >= p.length ? 1 : 0));
    return { tokens, lossMask };
  });
  const d = o.dModel ?? 128;
  const config = {
    model_type: "llama",
    architectures: ["LlamaForCausalLM"],
    vocab_size: tokenizer.vocabSize,
    hidden_size: d,
    intermediate_size: Math.round((d * 8) / 3 / 16) * 16,
    num_hidden_layers: o.layers ?? 4,
    num_attention_heads: o.heads ?? 4,
    num_key_value_heads: o.heads ?? 4,
    max_position_embeddings: 256,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    hidden_act: "silu",
    bos_token_id: eos,
    eos_token_id: eos,
    pad_token_id: pad,
    torch_dtype: "float32",
  };
  const rng = new Rng(`sandbox-policy-${seed}`);
  const model = TransformerLM.create(config, rng);
  const batch = o.batch ?? 16;
  const res = await sftTrain(model, exampleBatches(examples, batch, seqLen, rng.fork("batches"), pad), {
    steps: o.steps ?? 1200,
    lr: o.lr ?? 3e-3,
    warmupSteps: 50,
    decay: "cosine",
    minLrRatio: 0.1,
    weightDecay: 0.01,
    progress: o.progress,
    lossCurvePath: join(o.outDir + ".loss.jsonl"),
  });
  const params = model.params.reduce((s, p) => s + p.data.length, 0);
  saveCheckpoint(o.outDir, {
    config,
    tensors: model.namedTensors(),
    tokenizerJson: tokenizer.toJson(),
    trainerState: { kind: "sandbox-base-policy", seed, steps: o.steps ?? 1200, finalLoss: res.losses[res.losses.length - 1] },
    generationConfig: { eos_token_id: eos, pad_token_id: pad, temperature: 1.0 },
  });
  // How the policy was trained to be prompted ("prompt\n\nessay" documents) and the lengths the sandbox uses.
  writeGenerationSettings(o.outDir, { separator: "\n\n", maxPromptTokens: 40, maxNewTokens: 128, eosTokenIds: [eos], temperature: 1 });
  return { outDir: o.outDir, params, finalLoss: res.losses[res.losses.length - 1], tokensPerSecond: res.tokensPerSecond };
}

export interface LoadedPolicy {
  model: TransformerLM;
  tokenizer: BpeTokenizer;
  eos: number;
  pad: number;
}

export function loadPolicy(dir: string): LoadedPolicy {
  if (!existsSync(dir)) throw new Error(`policy checkpoint not found: ${dir}`);
  const ck = loadCheckpoint(dir);
  if (!ck.tokenizerJson) throw new Error(`policy checkpoint ${dir} has no tokenizer.json`);
  const tokenizer = BpeTokenizer.fromJson(ck.tokenizerJson, join(dir, "tokenizer.json"));
  const model = TransformerLM.fromParams(ck.config as never, ck.tensors);
  const eos = tokenizer.specialId("<|endoftext|>")!;
  return { model, tokenizer, eos, pad: tokenizer.specialId("<pad>") ?? eos };
}
