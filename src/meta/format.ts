/**
 * How the senior judge (MRM) is shown junior evaluations and rollouts, and small text utilities shared
 * by the meta-step stages (word caps, extracting tagged blocks, duplicate detection).
 */
import type { Evaluation } from "../judge/types.ts";
import type { RubricWriting } from "../judge/protocol.ts";
import type { ChatMessage, ChatRequest, ChatResponse } from "../llm/types.ts";
import type { RubricItem } from "../rubric/types.ts";

/** A scored rollout as the meta step sees it. */
export interface MetaRollout {
  id: string;
  taskDescription: string;
  prompt: string;
  response: string;
  reference?: string;
  /** Group key (grouped guidelines, math). */
  group?: string;
  evaluation: Evaluation;
}

export function wordCount(text: string): number {
  const t = text.trim();
  return t === "" ? 0 : t.split(/\s+/).length;
}

/** First `cap` words of `text` (whitespace-normalized only when cut). */
export function truncateWords(text: string, cap: number): { text: string; truncated: boolean } {
  const words = text.trim().split(/\s+/);
  if (text.trim() === "" || words.length <= cap) return { text: text.trim(), truncated: false };
  return { text: words.slice(0, cap).join(" ") + " …", truncated: true };
}

/** Per-item scores and rationales plus the total, as the MRM reads them. */
export function formatEvaluation(e: Evaluation, rationaleWordCap = 120): string {
  const lines = e.items.map((it) => {
    const flags = it.flags.length ? ` [flags: ${it.flags.join(", ")}]` : "";
    const why = truncateWords(it.rationale || "(no rationale)", rationaleWordCap).text;
    return `- ${it.name}: ${it.score} (range ${it.min}–${it.max})${flags} — ${why}`;
  });
  const lo = e.items.reduce((s, i) => s + i.min, 0);
  const hi = e.items.reduce((s, i) => s + i.max, 0);
  lines.push(`Total: ${e.total} (possible ${lo}–${hi}; normalized ${e.normalized.toFixed(2)})`);
  return lines.join("\n");
}

/** Content of the last complete `<tag>…</tag>` block, or of an unclosed trailing `<tag>…`; undefined when absent. */
export function extractTagged(text: string, tag: string): string | undefined {
  const closed = [...text.matchAll(new RegExp(`<${tag}\\s*>([\\s\\S]*?)</${tag}\\s*>`, "gi"))];
  if (closed.length) return closed[closed.length - 1][1].trim();
  const open = text.search(new RegExp(`<${tag}\\s*>`, "i"));
  if (open >= 0) return text.slice(open).replace(new RegExp(`^<${tag}\\s*>`, "i"), "").trim();
  return undefined;
}

/** Key under which two items count as exact duplicates: text with case, markup spacing and attributes ignored. */
export function itemTextKey(item: Pick<RubricItem, "text">): string {
  return item.text.toLowerCase().replace(/\s+/g, " ").trim();
}

/** The junior's total alone, as the reference shows it to the senior judge. */
export function formatTotal(e: Evaluation): string {
  return String(e.total);
}

/** Text up to the first stop marker a server did not cut (servers that ignore `stop`), trimmed. */
export function stripStops(text: string, stops: readonly string[]): string {
  let t = text;
  for (const s of stops) {
    const i = t.indexOf(s);
    if (i >= 0) t = t.slice(0, i);
  }
  return t.trim();
}

/** Tokens of a conversation as the reference estimates them: whitespace words × 1.5. */
export function estimateConversationTokens(messages: readonly ChatMessage[]): number {
  return messages.reduce((s, m) => s + m.content.split(" ").length, 0) * 1.5;
}

/** First integer of a count reply ("7", "7 criteria", "**7**"), or null. */
export function parseCount(text: string): number | null {
  const m = /\d+/.exec(text);
  return m ? Number(m[0]) : null;
}

export interface WrittenCriteria {
  /** `<rubric><item>…</item>…</rubric>` of the written criteria ("" when none). */
  text: string;
  stated: number | null;
  written: number;
  /** Why no criteria came back (unreadable count, zero, all empty). */
  error?: string;
  /** True when the context budget ended the loop before the stated count. */
  budgetReached: boolean;
}

/**
 * The reference's way of writing a rubric (refinement and merge): in the same conversation, ask how many
 * criteria are needed (a number, constrained to digits), then ask for each criterion in its own turn
 * until the stated count, the safety cap or the context budget is reached. Appends every turn to
 * `messages`. Consecutive user turns are kept as separate messages, as the reference sends them.
 */
export async function writeCriteria(o: {
  call: (label: string, req: Omit<ChatRequest, "stage">) => Promise<ChatResponse>;
  messages: ChatMessage[];
  writing: Extract<RubricWriting, { structure: "count-then-each" }>;
  stops: readonly string[];
  turns: { count: string; start: string; each: (index: number) => string };
}): Promise<WrittenCriteria> {
  const { messages, writing } = o;
  messages.push({ role: "user", content: o.turns.count });
  const c = await o.call("count", { messages: messages.slice(), maxTokens: 8, constraint: { kind: "regex", pattern: "[0-9]+" } });
  messages.push({ role: "assistant", content: c.text.trim() });
  const stated = parseCount(c.text);
  if (stated === null || stated < 1) return { text: "", stated, written: 0, error: `unreadable criterion count ${JSON.stringify(c.text.slice(0, 40))}`, budgetReached: false };
  const count = Math.min(stated, writing.maxItems);
  messages.push({ role: "user", content: o.turns.start });
  const items: string[] = [];
  let budgetReached = false;
  for (let i = 1; i <= count; i++) {
    messages.push({ role: "user", content: o.turns.each(i) });
    const r = await o.call(`criterion ${i}`, { messages: messages.slice(), maxTokens: writing.itemMaxTokens, ...(o.stops.length ? { stop: [...o.stops] } : {}) });
    // A criterion is plain text; tags a model adds itself would split or nest items.
    const text = stripStops(r.text, o.stops).replace(/<\/?(?:item|rubric)\b[^>]*>/gi, "").trim();
    messages.push({ role: "assistant", content: text });
    if (text) items.push(text);
    if (estimateConversationTokens(messages) >= writing.contextBudgetTokens) {
      budgetReached = i < count;
      break;
    }
  }
  if (items.length === 0) return { text: "", stated, written: 0, error: "every criterion reply was empty", budgetReached };
  return { text: `<rubric>\n${items.map((t) => `<item>\n${t}\n</item>`).join("\n\n")}\n</rubric>`, stated, written: items.length, budgetReached };
}
