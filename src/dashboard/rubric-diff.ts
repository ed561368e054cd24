/**
 * Item-by-item rubric diff for the lineage view. Items are matched by name (names are unique within a
 * rubric); an item whose text, range or weight changed is "changed", with a word-level diff of its text so
 * the page can highlight what the meta step rewrote. Item matching (including renames) comes from
 * src/rubric/diff.ts; this module adds the word-level edits and counts the page shows.
 */
import { diffRubrics } from "../rubric/diff.ts";
import type { Rubric, RubricItem } from "../rubric/types.ts";

export type WordOp = { op: "same" | "add" | "del"; text: string };

export type ItemChange =
  | { kind: "added"; name: string; after: RubricItem }
  | { kind: "removed"; name: string; before: RubricItem }
  | { kind: "changed"; name: string; before: RubricItem; after: RubricItem; fields: string[]; textDiff: WordOp[]; renamedFrom?: string }
  | { kind: "unchanged"; name: string; after: RubricItem };

export interface RubricDiff {
  added: number;
  removed: number;
  changed: number;
  unchanged: number;
  /** In the order of the newer rubric, then removed items in the older rubric's order. */
  items: ItemChange[];
}

/** Word-level LCS diff; texts are a few hundred words at most, so O(n·m) is fine (capped for safety). */
export function diffWords(a: string, b: string): WordOp[] {
  // Whitespace and punctuation are their own tokens, so "directly?" → "directly and …" diffs as an insertion.
  const tokenize = (t: string) => t.split(/(\s+|[.,;:!?()])/).filter((tok) => tok !== "");
  const x = tokenize(a);
  const y = tokenize(b);
  if (x.length * y.length > 4_000_000) {
    return [
      { op: "del", text: a },
      { op: "add", text: b },
    ];
  }
  const n = x.length;
  const m = y.length;
  const lcs: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out: WordOp[] = [];
  const push = (op: WordOp["op"], text: string) => {
    const last = out[out.length - 1];
    if (last && last.op === op) last.text += text;
    else out.push({ op, text });
  };
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) {
      push("same", x[i]);
      i++;
      j++;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) push("del", x[i++]);
    else push("add", y[j++]);
  }
  while (i < n) push("del", x[i++]);
  while (j < m) push("add", y[j++]);
  return out;
}

export function diffRubricItems(before: Rubric | null, after: Rubric): RubricDiff {
  // Matching (by name, then renames by text similarity) is the project's rubric diff; this adds the
  // changed-field list and word-level text edits the page highlights.
  const items: ItemChange[] = diffRubrics(before ?? { items: [] }, after).map((d): ItemChange => {
    if (d.kind === "added") return { kind: "added", name: d.name, after: d.after! };
    if (d.kind === "removed") return { kind: "removed", name: d.name, before: d.before! };
    if (d.kind === "same") return { kind: "unchanged", name: d.name, after: d.after! };
    const prev = d.before!;
    const it = d.after!;
    const fields: string[] = [];
    if (d.renamedFrom !== undefined) fields.push("name");
    if (prev.text !== it.text) fields.push("text");
    if (prev.min !== it.min || prev.max !== it.max) fields.push("range");
    if ((prev.weight ?? 1) !== (it.weight ?? 1)) fields.push("weight");
    return { kind: "changed", name: d.name, before: prev, after: it, fields, textDiff: diffWords(prev.text, it.text), ...(d.renamedFrom !== undefined ? { renamedFrom: d.renamedFrom } : {}) };
  });
  const count = (k: ItemChange["kind"]) => items.filter((c) => c.kind === k).length;
  return { added: count("added"), removed: count("removed"), changed: count("changed"), unchanged: count("unchanged"), items };
}
