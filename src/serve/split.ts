/**
 * Splits OpenRLHF's `query` (prompt + response rendered with the policy's chat template, special tokens
 * kept — openrlhf/utils/agent.py decodes the whole observation with skip_special_tokens=False) into the
 * user prompt and the response the judge should read. Preferred: `prompts[i]` (the templated prompt
 * OpenRLHF sends), so the response is exactly what follows it. Otherwise the split is at the last
 * assistant-turn marker of a known template. A text with template markup we cannot place is refused
 * (SplitError → 400), never passed to the judge: markup and end-of-turn tokens change its score.
 *
 * Presets (each checked against the model's chat_template in its tokenizer_config.json):
 *   chatml   Qwen2/2.5/3, many fine-tunes   <|im_start|>user\n…<|im_end|>\n<|im_start|>assistant\n…<|im_end|>
 *   llama3   Llama 3.x                     <|start_header_id|>user<|end_header_id|>\n\n…<|eot_id|>
 *   gemma    Gemma 2/3                      <start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n…
 *   mistral  Mistral/Mixtral [INST]         <s>[INST] … [/INST] …</s>
 *   phi3     Phi-3/3.5                      <|user|>\n…<|end|>\n<|assistant|>\n…<|end|>
 *   deepseek DeepSeek V3/R1                 <｜User｜>…<｜Assistant｜>…<｜end▁of▁sentence｜>
 */
import type { SplitTemplate } from "./config.ts";

export interface Markers {
  assistantStart: string;
  userStart: string;
  turnEnd: string;
  /** End of a user turn when it differs from turnEnd. */
  userEnd?: string;
  endTokens: string[];
}

export type PresetName = "chatml" | "llama3" | "gemma" | "mistral" | "phi3" | "deepseek";

export const PRESETS: Record<PresetName, Markers> = {
  chatml: { assistantStart: "<|im_start|>assistant\n", userStart: "<|im_start|>user\n", turnEnd: "<|im_end|>", endTokens: ["<|endoftext|>", "<|im_end|>"] },
  llama3: {
    assistantStart: "<|start_header_id|>assistant<|end_header_id|>\n\n",
    userStart: "<|start_header_id|>user<|end_header_id|>\n\n",
    turnEnd: "<|eot_id|>",
    endTokens: ["<|end_of_text|>", "<|eot_id|>", "<|eom_id|>"],
  },
  gemma: { assistantStart: "<start_of_turn>model\n", userStart: "<start_of_turn>user\n", turnEnd: "<end_of_turn>", endTokens: ["<eos>", "<end_of_turn>"] },
  mistral: { assistantStart: "[/INST]", userStart: "[INST]", userEnd: "[/INST]", turnEnd: "</s>", endTokens: ["</s>"] },
  phi3: { assistantStart: "<|assistant|>\n", userStart: "<|user|>\n", turnEnd: "<|end|>", endTokens: ["<|endoftext|>", "<|end|>"] },
  deepseek: {
    assistantStart: "<｜Assistant｜>",
    userStart: "<｜User｜>",
    userEnd: "<｜Assistant｜>",
    turnEnd: "<｜end▁of▁sentence｜>",
    endTokens: ["<｜end▁of▁sentence｜>"],
  },
};

export class SplitError extends Error {}

/** Text that looks like chat-template markup (special tokens of any common family). */
const MARKUP_RE = /<\|[a-z_]{2,30}\|>|<｜[^｜\n]{1,30}｜>|\[\/?INST\]|<(?:start|end)_of_turn>|<\|(?:begin|end)_of_text\|>|<(?:bos|eos)>/i;

function detect(text: string): Markers | undefined {
  for (const m of Object.values(PRESETS)) if (text.includes(m.assistantStart) || text.includes(m.userStart)) return m;
  return undefined;
}

function markersFor(template: SplitTemplate, text: string): Markers {
  if (typeof template === "object") return template;
  if (template !== "auto") return PRESETS[template];
  const m = detect(text);
  if (m) return m;
  const markup = MARKUP_RE.exec(text);
  throw new SplitError(
    markup
      ? `chat template not recognised (found ${JSON.stringify(markup[0])}; known: ${Object.keys(PRESETS).join(", ")}): set \`split\` to a preset or to custom markers in the service config`
      : "no known assistant-turn marker found; send `prompts` too, or set `split` in the service config",
  );
}

function stripEnd(s: string, tokens: string[]): string {
  let out = s;
  for (let changed = true; changed; ) {
    changed = false;
    const t = out.trimEnd();
    for (const tok of tokens) {
      if (tok && t.endsWith(tok)) {
        out = t.slice(0, -tok.length);
        changed = true;
      }
    }
  }
  return out.trim();
}

/** The last user turn's content in a templated conversation (the whole text when no marker is present). */
export function lastUserTurn(text: string, m: Markers): string {
  const i = text.lastIndexOf(m.userStart);
  if (i < 0) return text.trim();
  const rest = text.slice(i + m.userStart.length);
  const end = rest.indexOf(m.userEnd ?? m.turnEnd);
  return (end >= 0 ? rest.slice(0, end) : rest).trim();
}

const ALL_END_TOKENS = [...new Set(Object.values(PRESETS).flatMap((m) => [m.turnEnd, ...m.endTokens]))];

function refuseMarkup(what: string, text: string): void {
  const markup = MARKUP_RE.exec(text);
  if (markup) throw new SplitError(`${what} still contains chat-template markup ${JSON.stringify(markup[0])}: set \`split\` to the policy's template`);
}

/**
 * Returns {prompt, response}. With `templatedPrompt` (OpenRLHF's `prompts[i]`) the response is what follows
 * it in the query; otherwise the split is at the last assistant-turn marker.
 */
export function splitQuery(query: string, template: SplitTemplate, templatedPrompt?: string): { prompt: string; response: string } {
  if (templatedPrompt !== undefined && templatedPrompt.length > 0 && query.startsWith(templatedPrompt)) {
    const tail = query.slice(templatedPrompt.length);
    const m = typeof template === "object" || template !== "auto" ? markersFor(template, templatedPrompt) : detect(templatedPrompt);
    if (m) {
      const response = stripEnd(tail, [m.turnEnd, ...m.endTokens]);
      refuseMarkup("the response", response);
      return { prompt: lastUserTurn(templatedPrompt, m), response };
    }
    // No known template in the prompt: fine when it is plain text (a trainer without chat template).
    refuseMarkup("the prompt", templatedPrompt);
    const response = stripEnd(tail, ALL_END_TOKENS);
    refuseMarkup("the response", response);
    return { prompt: templatedPrompt.trim(), response };
  }
  const m = markersFor(template, query);
  const at = query.lastIndexOf(m.assistantStart);
  if (at < 0) throw new SplitError(`assistant-turn marker ${JSON.stringify(m.assistantStart)} not found`);
  const prompt = lastUserTurn(query.slice(0, at), m);
  const response = stripEnd(query.slice(at + m.assistantStart.length), [m.turnEnd, ...m.endTokens]);
  refuseMarkup("the response", response);
  refuseMarkup("the prompt", prompt);
  return { prompt, response };
}
