/**
 * What changed between two rubric versions, item by item. The meta step rewrites whole rubrics; to see
 * what it actually did (added a criterion against title-only answers, tightened a range, dropped an item)
 * we match items by name, then renamed items by text similarity, and show line-level edits of the text.
 */
import type { Rubric, RubricItem, RubricVersion } from "./types.ts";

export interface ItemDiff {
  kind: "added" | "removed" | "changed" | "same";
  /** The item's name in the newer rubric (the older one for removed items). */
  name: string;
  /** Set when a changed item was matched by text similarity under a different name. */
  renamedFrom?: string;
  before?: RubricItem;
  after?: RubricItem;
}

/** Items whose word-set similarity reaches this are taken as the same criterion renamed. */
const RENAME_SIMILARITY = 0.5;

function words(text: string): Set<string> {
  return new Set(text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []);
}

/** Jaccard similarity of the two texts' word sets (0…1). */
export function textSimilarity(a: string, b: string): number {
  const wa = words(a);
  const wb = words(b);
  if (wa.size === 0 && wb.size === 0) return 1;
  let inter = 0;
  for (const w of wa) if (wb.has(w)) inter++;
  return inter / (wa.size + wb.size - inter);
}

function sameItem(a: RubricItem, b: RubricItem): boolean {
  return a.name === b.name && a.text === b.text && a.min === b.min && a.max === b.max && (a.weight ?? 1) === (b.weight ?? 1);
}

/**
 * Item-level diff from `a` (older) to `b` (newer): in `b`'s order, then removed items in `a`'s order.
 * Matching: equal names first; then each unmatched new item takes the most similar unmatched old item
 * (greedy, best pairs first) when similarity ≥ 0.5.
 */
export function diffRubrics(a: Rubric, b: Rubric): ItemDiff[] {
  const oldByName = new Map(a.items.map((it) => [it.name, it]));
  const match = new Map<RubricItem, RubricItem>(); // new → old
  const usedOld = new Set<RubricItem>();
  for (const it of b.items) {
    const old = oldByName.get(it.name);
    if (old && !usedOld.has(old)) {
      match.set(it, old);
      usedOld.add(old);
    }
  }
  const freeNew = b.items.filter((it) => !match.has(it));
  const freeOld = a.items.filter((it) => !usedOld.has(it));
  const pairs: { n: RubricItem; o: RubricItem; sim: number }[] = [];
  for (const n of freeNew) for (const o of freeOld) pairs.push({ n, o, sim: textSimilarity(n.text, o.text) });
  pairs.sort((x, y) => y.sim - x.sim);
  for (const { n, o, sim } of pairs) {
    if (sim < RENAME_SIMILARITY) break;
    if (match.has(n) || usedOld.has(o)) continue;
    match.set(n, o);
    usedOld.add(o);
  }
  const out: ItemDiff[] = [];
  for (const it of b.items) {
    const old = match.get(it);
    if (!old) out.push({ kind: "added", name: it.name, after: it });
    else if (sameItem(old, it)) out.push({ kind: "same", name: it.name, before: old, after: it });
    else {
      const d: ItemDiff = { kind: "changed", name: it.name, before: old, after: it };
      if (old.name !== it.name) d.renamedFrom = old.name;
      out.push(d);
    }
  }
  for (const it of a.items) if (!usedOld.has(it)) out.push({ kind: "removed", name: it.name, before: it });
  return out;
}

/** "rubric v3 → v4: 5 items (+2, −1, ~1 changed)". */
export function summarizeDiff(from: RubricVersion, to: RubricVersion): string {
  const d = diffRubrics(from.rubric, to.rubric);
  const count = (k: ItemDiff["kind"]) => d.filter((x) => x.kind === k).length;
  const n = to.rubric.items.length;
  return `rubric v${from.version} → v${to.version}: ${n} item${n === 1 ? "" : "s"} (+${count("added")}, −${count("removed")}, ~${count("changed")} changed)`;
}

const range = (it: RubricItem) => `${it.min}–${it.max}${it.weight !== undefined && it.weight !== 1 ? ` ×${it.weight}` : ""}`;

/** Line-level edit script (longest common subsequence): each line prefixed "  ", "- " or "+ ". */
export function diffLines(before: string, after: string): string[] {
  const a = before.split(/\r?\n/);
  const b = after.split(/\r?\n/);
  // Quadratic table; beyond this size show a plain replace instead of exhausting memory.
  if (a.length * b.length > 4_000_000) return [...a.map((l) => `- ${l}`), ...b.map((l) => `+ ${l}`)];
  // lcs[i][j] = LCS length of a[i..] and b[j..]
  const lcs: number[][] = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--)
    for (let j = b.length - 1; j >= 0; j--) lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      out.push(`  ${a[i]}`);
      i++;
      j++;
    } else if (i < a.length && (j >= b.length || lcs[i + 1][j] >= lcs[i][j + 1])) out.push(`- ${a[i++]}`);
    else out.push(`+ ${b[j++]}`);
  }
  return out;
}

const indent = (lines: string[], pad = "    ") => lines.map((l) => (pad + l).trimEnd()).join("\n");

/** Readable item-by-item report; changed items show their line-level text edits. */
export function formatDiff(diffs: ItemDiff[]): string {
  if (diffs.length === 0) return "(no items)";
  const blocks: string[] = [];
  for (const d of diffs) {
    if (d.kind === "same") blocks.push(`= ${d.name} (${range(d.after!)}) unchanged`);
    else if (d.kind === "added") blocks.push(`+ added ${d.name} (${range(d.after!)})\n${indent(d.after!.text.split("\n").map((l) => `+ ${l}`))}`);
    else if (d.kind === "removed") blocks.push(`- removed ${d.name} (${range(d.before!)})\n${indent(d.before!.text.split("\n").map((l) => `- ${l}`))}`);
    else {
      const b = d.before!;
      const a = d.after!;
      const notes: string[] = [];
      if (d.renamedFrom) notes.push(`renamed from ${d.renamedFrom}`);
      if (range(b) !== range(a)) notes.push(`range ${range(b)} → ${range(a)}`);
      const head = `~ changed ${d.name}${notes.length ? ` (${notes.join("; ")})` : ` (${range(a)})`}`;
      blocks.push(b.text === a.text ? `${head}\n    (text unchanged)` : `${head}\n${indent(diffLines(b.text, a.text))}`);
    }
  }
  return blocks.join("\n\n");
}
