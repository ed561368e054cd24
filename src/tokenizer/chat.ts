/**
 * Chat templates of Hugging Face policies: the Jinja `chat_template` in tokenizer_config.json, rendered with
 * @huggingface/jinja (the implementation Hugging Face publishes for exactly this, used by transformers.js)
 * with the variables transformers' apply_chat_template passes: `messages`, `add_generation_prompt`, and the
 * special-token strings (bos_token, eos_token, pad_token, unk_token). `strftime_now` is deliberately not
 * provided, so date-stamping templates (Llama 3.x) take their fixed fallback date and a prompt renders the
 * same on every run — RL rollouts and their judge scores must be reproducible.
 *
 * `chatStopIds` collects every token that ends an assistant turn: generation_config.json eos_token_id (Qwen2.5
 * lists <|im_end|> and <|endoftext|>, Llama 3.x lists three), config.json eos_token_id and the tokenizer's
 * eos_token.
 */
import { Template } from "@huggingface/jinja";
import { UserError } from "../util/errors.ts";

export interface ChatMessage {
  role: string;
  content: string;
}

/** A special-token field of tokenizer_config.json: a string, an AddedToken object {content, …}, or null. */
function tokenText(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") return (v as { content: string }).content;
  return null;
}

export class ChatTemplate {
  private readonly template: Template;
  constructor(
    readonly source: string,
    readonly specials: { bos_token: string | null; eos_token: string | null; pad_token: string | null; unk_token: string | null },
    readonly file = "tokenizer_config.json",
  ) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new UserError(`${file}: field 'chat_template' does not parse as Jinja: ${(e as Error).message}`);
    }
  }

  /**
   * The template of a tokenizer_config.json object, or undefined when it has none. A list of named templates
   * (newer configs) uses the one named "default", as transformers does.
   */
  static fromTokenizerConfig(tc: Record<string, unknown> | undefined, file = "tokenizer_config.json"): ChatTemplate | undefined {
    if (!tc || tc.chat_template === undefined || tc.chat_template === null) return undefined;
    let src: unknown = tc.chat_template;
    if (Array.isArray(src)) {
      const named = src.find((t) => t && typeof t === "object" && (t as { name?: unknown }).name === "default") as { template?: unknown } | undefined;
      src = named?.template;
    }
    if (typeof src !== "string" || src.trim() === "")
      throw new UserError(`${file}: field 'chat_template' must be a Jinja string (or a list with a "default" entry)`);
    return new ChatTemplate(src, {
      bos_token: tokenText(tc.bos_token),
      eos_token: tokenText(tc.eos_token),
      pad_token: tokenText(tc.pad_token),
      unk_token: tokenText(tc.unk_token),
    }, file);
  }

  /** The prompt text for `messages`; with addGenerationPrompt the assistant header the model continues after. */
  render(messages: ChatMessage[], addGenerationPrompt = true): string {
    for (const [i, m] of messages.entries())
      if (!m || typeof m.role !== "string" || typeof m.content !== "string") throw new UserError(`chat message ${i}: expected {role: string, content: string}`);
    try {
      return this.template.render({ messages, add_generation_prompt: addGenerationPrompt, ...this.specials });
    } catch (e) {
      throw new UserError(`${this.file}: chat_template failed to render: ${(e as Error).message}`);
    }
  }
}

/**
 * The end-of-turn token ids: generation_config.json eos_token_id, config.json eos_token_id and the id of
 * tokenizer_config.json's eos_token (looked up with `idOf`), deduplicated in that order.
 */
export function chatStopIds(
  files: { generationConfig?: Record<string, unknown>; config?: Record<string, unknown>; tokenizerConfig?: Record<string, unknown> },
  idOf: (text: string) => number | undefined,
): number[] {
  const out: number[] = [];
  const add = (v: unknown) => {
    for (const x of Array.isArray(v) ? v : [v]) if (typeof x === "number" && Number.isInteger(x) && x >= 0 && !out.includes(x)) out.push(x);
  };
  add(files.generationConfig?.eos_token_id);
  add(files.config?.eos_token_id);
  const eosText = tokenText(files.tokenizerConfig?.eos_token);
  if (eosText !== null) add(idOf(eosText));
  return out;
}
