/**
 * Splits OpenRLHF's `query` (prompt + response rendered with the policy's chat template, special tokens
 * kept — openrlhf/utils/agent.py) into the user prompt and the response the judge should read.
 * Presets for Qwen2/ChatML and Llama-3; a custom template names its markers.
 */
import type { SplitTemplate } from "./config.ts";

interface Markers {
  assistantStart: string;
  userStart: string;
  turnEnd: string;
  endTokens: string[];
}

export const PRESETS: Record<"chatml" | "llama3", Markers> = {
  chatml: { assistantStart: "<|im_start|>assistant\n", userStart: "<|im_start|>user\n", turnEnd: "<|im_end|>", endTokens: ["<|endoftext|>", "<|im_end|>"] },
  llama3: {
    assistantStart: "<|start_header_id|>assistant<|end_header_id|>\n\n",
    userStart: "<|start_header_id|>user<|end_header_id|>\n\n",
    turnEnd: "<|eot_id|>",
    endTokens: ["<|end_of_text|>", "<|eot_id|>"],
  },
};

export class SplitError extends Error {}

function markersFor(template: SplitTemplate, text: string): Markers {
  if (typeof template === "object") return template;
  if (template !== "auto") return PRESETS[template];
  for (const m of Object.values(PRESETS)) if (text.includes(m.assistantStart)) return m;
  throw new SplitError("no known assistant-turn marker (ChatML or Llama-3) found; send `prompts` too, or set `split` in the service config");
}

function stripEnd(s: string, m: Markers): string {
  let out = s;
  for (let changed = true; changed; ) {
    changed = false;
    const t = out.trimEnd();
    for (const tok of [m.turnEnd, ...m.endTokens]) {
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
  const end = rest.indexOf(m.turnEnd);
  return (end >= 0 ? rest.slice(0, end) : rest).trim();
}

/**
 * Returns {prompt, response}. With `templatedPrompt` (OpenRLHF's `prompts[i]`) the response is what follows
 * it in the query; otherwise the split is at the last assistant-turn marker.
 */
export function splitQuery(query: string, template: SplitTemplate, templatedPrompt?: string): { prompt: string; response: string } {
  if (templatedPrompt !== undefined && templatedPrompt.length > 0 && query.startsWith(templatedPrompt)) {
    let m: Markers;
    try {
      m = markersFor(template, query);
    } catch {
      return { prompt: templatedPrompt.trim(), response: query.slice(templatedPrompt.length).trim() };
    }
    return { prompt: lastUserTurn(templatedPrompt, m), response: stripEnd(query.slice(templatedPrompt.length), m) };
  }
  const m = markersFor(template, query);
  const at = query.lastIndexOf(m.assistantStart);
  if (at < 0) throw new SplitError(`assistant-turn marker ${JSON.stringify(m.assistantStart)} not found`);
  return { prompt: lastUserTurn(query.slice(0, at), m), response: stripEnd(query.slice(at + m.assistantStart.length), m) };
}
