/**
 * Item-by-item rubric diff for the lineage view. Items are matched by name (names are unique within a
 * rubric); an item whose text, range or weight changed is "changed", with a word-level diff of its text so
 * the page can highlight what the meta step rewrote. Kept local to the dashboard (minimal on purpose): the
 * project's general diff lives in src/rubric/diff.ts when present.
 */
import type { Rubric, RubricItem } from "../rubric/types.ts";

export type WordOp = { op: "same" | "add" | "del"; text: string };

export type ItemChange =
  | { kind: "added"; name: string; after: RubricItem }
  | { kind: "removed"; name: string; before: RubricItem }
  | { kind: "changed"; name: string; before: RubricItem; after: RubricItem; fields: string[]; textDiff: WordOp[] }
  | { kind: "unchanged"; name: string; after: RubricItem };

export interface RubricDiff {
  added: number;
  removed: number;
  changed: number;
  unchanged: number;
  /** In the order of the newer rubric, removed items after the item that preceded them in the older one. */
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
  const oldItems = before?.items ?? [];
  const oldByName = new Map(oldItems.map((it) => [it.name, it]));
  const newNames = new Set(after.items.map((it) => it.name));
  const items: ItemChange[] = [];
  let added = 0;
  let removed = 0;
  let changed = 0;
  let unchanged = 0;
  for (const it of after.items) {
    const prev = oldByName.get(it.name);
    if (!prev) {
      items.push({ kind: "added", name: it.name, after: it });
      added++;
      continue;
    }
    const fields: string[] = [];
    if (prev.text !== it.text) fields.push("text");
    if (prev.min !== it.min || prev.max !== it.max) fields.push("range");
    if ((prev.weight ?? 1) !== (it.weight ?? 1)) fields.push("weight");
    if (fields.length > 0) {
      items.push({ kind: "changed", name: it.name, before: prev, after: it, fields, textDiff: diffWords(prev.text, it.text) });
      changed++;
    } else {
      items.push({ kind: "unchanged", name: it.name, after: it });
      unchanged++;
    }
  }
  // Removed items go after the nearest surviving predecessor from the old order, so the list reads naturally.
  oldItems.forEach((it, idx) => {
    if (newNames.has(it.name)) return;
    removed++;
    let anchor = -1;
    for (let k = idx - 1; k >= 0; k--) {
      const pos = items.findIndex((c) => c.name === oldItems[k].name);
      if (pos >= 0) {
        anchor = pos;
        break;
      }
    }
    items.splice(anchor + 1, 0, { kind: "removed", name: it.name, before: it });
  });
  return { added, removed, changed, unchanged, items };
}
