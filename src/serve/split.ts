/**
 * Splits OpenRLHF's `query` (prompt + response rendered with the policy's chat template, special tokens
 * kept — openrlhf/utils/agent.py decodes the whole observation with skip_special_tokens=False) into the
 * user prompt and the response the judge should read. Preferred: `prompts[i]` (the templated prompt
 * OpenRLHF sends), so the response is exactly what follows it. Otherwise the split is at the last
 * assistant-turn marker of the policy's template. A text with template markup we cannot place is refused
 * (SplitError → 400), never passed to the judge: markup and end-of-turn tokens change its score.
 *
 * Where the policy's chat template is known (`mpo serve --policy DIR|HubId` or `--chat-template FILE`), the
 * markers are read off that template (`markersFromChatTemplate`: it is rendered with @huggingface/jinja, as
 * the engine renders prompts, for probe conversations, and the text around the probes is the markup). Else
 * `auto` detects one of the presets below; when several match (Zephyr and Phi-3 share <|user|>/<|assistant|>),
 * the one whose end-of-turn token occurs in the text wins.
 *
 * Presets (each checked against the model's chat_template in its tokenizer_config.json):
 *   chatml   Qwen2/2.5/3, many fine-tunes   <|im_start|>user\n…<|im_end|>\n<|im_start|>assistant\n…<|im_end|>
 *   llama3   Llama 3.x                     <|start_header_id|>user<|end_header_id|>\n\n…<|eot_id|>
 *   gemma    Gemma 2/3                      <start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n…
 *   mistral  Mistral/Mixtral [INST]         <s>[INST] … [/INST] …</s>
 *   phi3     Phi-3/3.5                      <|user|>\n…<|end|>\n<|assistant|>\n…<|end|>
 *   zephyr   Zephyr, TinyLlama-Chat          <|user|>\n…</s>\n<|assistant|>\n…</s>
 *   deepseek DeepSeek V3/R1                 <｜User｜>…<｜Assistant｜>…<｜end▁of▁sentence｜>
 */
import type { SplitTemplate } from "./config.ts";
import type { ChatTemplate } from "../tokenizer/chat.ts";
import { UserError } from "../util/errors.ts";

export interface Markers {
  assistantStart: string;
  userStart: string;
  turnEnd: string;
  /** End of a user turn when it differs from turnEnd. */
  userEnd?: string;
  endTokens: string[];
}

export type PresetName = "chatml" | "llama3" | "gemma" | "mistral" | "phi3" | "zephyr" | "deepseek";

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
  zephyr: { assistantStart: "<|assistant|>\n", userStart: "<|user|>\n", turnEnd: "</s>", endTokens: ["</s>"] },
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
  const found = Object.values(PRESETS).filter((m) => text.includes(m.assistantStart) || text.includes(m.userStart));
  return found.find((m) => text.includes(m.turnEnd)) ?? found[0];
}

/** Longest common prefix of two strings. */
function commonPrefix(a: string, b: string): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return a.slice(0, i);
}

/**
 * The turn markers of a chat template, read off the template itself. It is rendered for three probe
 * conversations — [user U1] + generation prompt, [user U1, assistant A1], [user U1, assistant A1, user U2] +
 * generation prompt — and the markup is the text between the probes:
 *   after U1 (with generation prompt)  = end of a user turn + start of the assistant's  → where a response begins
 *   after A1                           = end of an assistant turn                       → stripped from responses
 *   between A1 and U2                  = end of an assistant turn + start of a user turn → userStart
 * Markers are trimmed of surrounding whitespace (a decoded query may differ there). `endTokens` adds the
 * tokenizer's own end tokens (eos_token, and generation_config's eos ids as text) that may follow a response.
 */
export function markersFromChatTemplate(t: ChatTemplate, extraEndTokens: string[] = []): Markers {
  const [U1, A1, U2] = ["MPO-PROBE-USER-ONE", "MPO-PROBE-ASSISTANT-ONE", "MPO-PROBE-USER-TWO"];
  const what = `${t.file}: chat template`;
  const c1 = t.render([{ role: "user", content: U1 }], true);
  const c2 = t.render([{ role: "user", content: U1 }, { role: "assistant", content: A1 }], false);
  const c3 = t.render([{ role: "user", content: U1 }, { role: "assistant", content: A1 }, { role: "user", content: U2 }], true);
  const after = (text: string, probe: string) => {
    const i = text.lastIndexOf(probe);
    if (i < 0) throw new UserError(`${what} does not render message contents as given (probe ${probe} missing); set \`split\` to markers by hand`);
    return text.slice(i + probe.length);
  };
  const genSuffix = after(c1, U1);
  const assistantEnd = after(c2, A1);
  const tail = after(c3, A1);
  const j = tail.indexOf(U2);
  if (j < 0) throw new UserError(`${what} drops the second user turn; set \`split\` to markers by hand`);
  const mid = tail.slice(0, j);
  const userStart = mid.slice(commonPrefix(assistantEnd, mid).length).trim();
  const assistantStart = genSuffix.trim();
  if (!assistantStart) throw new UserError(`${what} adds no generation prompt after a user turn: the response cannot be told from the prompt; set \`split\` to markers by hand`);
  if (!userStart) throw new UserError(`${what} has no marker before a user turn; set \`split\` to markers by hand`);
  const turnEnd = assistantEnd.trim();
  const endTokens = [...new Set([turnEnd, ...extraEndTokens.map((x) => x.trim())].filter((x) => x.length > 0))];
  return { assistantStart, userStart, userEnd: assistantStart, turnEnd: turnEnd || assistantStart, endTokens };
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
