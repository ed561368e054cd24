/**
 * Readers for the calibration LLM replies. Lenient about chatter and tag case; anything that cannot be read
 * is reported as null (the caller logs it and leaves that case or revision out) — never a made-up label.
 */
import { parseRubricText } from "../rubric/format.ts";
import type { Rubric } from "../rubric/types.ts";

export interface Style {
  name: string;
  description: string;
}

/** The styles file (`prompts/autoprompt/styles.md`): one `- name: description` per line. */
export function parseStyles(text: string, source = "autoprompt/styles.md"): Style[] {
  const out: Style[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*[-*]\s*([^:]+?)\s*:\s*(.+?)\s*$/.exec(line);
    if (m) out.push({ name: m[1], description: m[2] });
  }
  if (out.length === 0) throw new Error(`${source}: no styles found (expected lines like "- filler: sentences that say nothing")`);
  return out;
}

export function stylesText(styles: readonly Style[]): string {
  return styles.map((s) => `- ${s.name}: ${s.description}`).join("\n");
}

/** Boundary cases from a generation reply: `<case style="…">text</case>` blocks (closing tag optional). */
export function parseCases(text: string, styles: readonly Style[], maxChars = 6000): Array<{ style: string; response: string }> {
  const out: Array<{ style: string; response: string }> = [];
  const blocks = [...text.matchAll(/<case\b([^>]*)>([\s\S]*?)(?=<\/case\s*>|<case\b|$)/gi)];
  blocks.forEach((m, i) => {
    const attr = /style\s*=\s*["']?([^"'>]+?)["']?\s*$/i.exec(m[1].trim());
    const response = m[2].trim().slice(0, maxChars);
    if (!response) return;
    out.push({ style: attr?.[1]?.trim() || styles[i]?.name || `case-${i + 1}`, response });
  });
  return out.slice(0, styles.length);
}

/** An annotation: `<score>N</score>` (0–10, last tag wins) and an optional `<reason>`. */
export function parseLabel(text: string): { score: number; reason: string } | null {
  const tags = [...text.matchAll(/<score>\s*([-+]?\d+(?:\.\d+)?)\s*(?:\/\s*10\s*)?<\/score>/gi)];
  if (tags.length === 0) return null;
  const score = Number(tags[tags.length - 1][1]);
  if (!Number.isFinite(score) || score < 0 || score > 10) return null;
  const reason = /<reason>([\s\S]*?)<\/reason>/i.exec(text)?.[1].trim() ?? "";
  return { score, reason };
}

/** A revised rubric from the reviser's reply, or the reason it cannot be used. */
export function parseRevision(text: string): { rubric: Rubric } | { error: string } {
  try {
    const rubric = parseRubricText(text, "the revised rubric");
    return { rubric };
  } catch (err) {
    return { error: (err as Error).message };
  }
}
