/**
 * How the senior judge (MRM) is shown junior evaluations and rollouts, and small text utilities shared
 * by the meta-step stages (word caps, extracting tagged blocks, duplicate detection).
 */
import type { Evaluation } from "../judge/types.ts";
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
