/**
 * A tiny Hugging Face chat policy directory for tests: qwen2 architecture (q/k/v biases, GQA, tied head), a
 * byte-level BPE tokenizer.json with Qwen's special tokens, tokenizer_config.json carrying the published
 * Qwen2.5-Instruct chat_template (test/fixtures/chat-templates), and generation_config.json listing two end ids
 * (<|im_end|>, <|endoftext|>) as Qwen2.5-Instruct does. Random weights; small enough for CLI tests.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { TransformerLM } from "../../src/engine/index.ts";
import { saveCheckpoint } from "../../src/engine/io/checkpoint.ts";
import { BpeTokenizer } from "../../src/tokenizer/index.ts";
import { Rng } from "../../src/util/rng.ts";

const here = dirname(fileURLToPath(import.meta.url));
export const CHAT_TEMPLATES = join(here, "..", "fixtures", "chat-templates");

const CORPUS =
  "The essay argues that cities should plant more trees. Trees cool streets, clean the air and make people happier. " +
  "A good answer is short and clear. What is two plus two? Four. Write a persuasive essay about reading books.";

export function makeHfChatPolicy(
  dir: string,
  opts: { seed?: number; layers?: number; hidden?: number; weightsDtype?: "F32" | "F16" | "BF16" } = {},
): { tokenizer: BpeTokenizer } {
  const tokenizer = BpeTokenizer.train(CORPUS.repeat(4), { vocabSize: 256 + 3 + 60, specialTokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] });
  const V = tokenizer.vocabSize;
  const hidden = opts.hidden ?? 32;
  const config = {
    architectures: ["Qwen2ForCausalLM"], attention_dropout: 0.0, bos_token_id: 0, eos_token_id: 2, hidden_act: "silu",
    hidden_size: hidden, initializer_range: 0.02, intermediate_size: 2 * hidden, max_position_embeddings: 512, max_window_layers: 21,
    model_type: "qwen2", num_attention_heads: 4, num_hidden_layers: opts.layers ?? 2, num_key_value_heads: 2, rms_norm_eps: 1e-6,
    rope_theta: 1000000.0, sliding_window: 512, tie_word_embeddings: true, torch_dtype: "float32", transformers_version: "4.43.1",
    use_cache: true, use_sliding_window: false, vocab_size: V,
  };
  const model = TransformerLM.create(config, new Rng(opts.seed ?? 1));
  // Non-zero biases so the qwen2 path is exercised.
  const rng = new Rng(2);
  for (const p of model.params) if (p.name.endsWith(".bias")) for (let i = 0; i < p.data.length; i++) p.data[i] = rng.normal() * 0.05;
  saveCheckpoint(dir, {
    config,
    weightsDtype: opts.weightsDtype, // BF16/F16: published in half precision (config torch_dtype follows)
    tensors: model.namedTensors(),
    tokenizerJson: tokenizer.toJson(),
    generationConfig: { bos_token_id: 0, pad_token_id: 0, do_sample: true, eos_token_id: [2, 0], repetition_penalty: 1.1, temperature: 0.7, top_p: 0.8, top_k: 20 },
    tokenizerConfig: {
      add_prefix_space: false, bos_token: null, chat_template: readFileSync(join(CHAT_TEMPLATES, "qwen2.5-instruct.jinja"), "utf8"),
      clean_up_tokenization_spaces: false, eos_token: "<|im_end|>", errors: "replace", model_max_length: 131072, pad_token: "<|endoftext|>",
      split_special_tokens: false, tokenizer_class: "Qwen2Tokenizer", unk_token: null,
    },
  });
  return { tokenizer };
}
