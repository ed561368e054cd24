/**
 * Reading scores out of judge replies. Servers may ignore constrained decoding and small judges wander
 * ("**4**", "4/5", "Score: 3 (out of 5)", JSON in fences, a refusal), so parsing is layered: explicit
 * markers first (tags, JSON, "Score:"), then fractions and bold numbers, then the LAST standalone number
 * in range — rationales mention other numbers before the verdict. It never throws and never returns NaN:
 * what cannot be read becomes a configurable fallback with a flag, so a parsing problem is visible in the
 * evaluation instead of silently becoming a reward.
 */
import type { Rubric, RubricItem } from "../rubric/types.ts";

export type Fallback = "min" | number;

export interface ParsedScore {
  score: number;
  /** "clamped", "rounded", "unparsed-fallback", "empty-reply", "refusal". Empty when read cleanly. */
  flags: string[];
  /** True when a number was read from the text (possibly clamped/rounded). */
  parsed: boolean;
}

const NUM = String.raw`[-+]?\d+(?:\.\d+)?`;

const REFUSAL_RE =
  /\b(?:I\s+(?:cannot|can ?not|can't|won't|will not|am unable to|am not able to|'m unable to|'m not able to|refuse to|must decline to)|as an AI\b|I'm sorry,? but)\b/i;

export function fallbackScore(fallback: Fallback | undefined, min: number, max: number, clamp = true): number {
  if (typeof fallback === "number" && Number.isFinite(fallback)) return clamp ? Math.min(max, Math.max(min, Math.round(fallback))) : Math.round(fallback);
  return min;
}

function finishScore(value: number, min: number, max: number, flags: string[], clamp = true): ParsedScore {
  let v = value;
  if (!Number.isInteger(v)) {
    v = Math.round(v);
    flags.push("rounded");
  }
  if (v < min || v > max) {
    // Unclamped (paper profile): the judge's integer stands, as in the reference; the flag makes it visible.
    if (clamp) {
      v = Math.min(max, Math.max(min, v));
      flags.push("clamped");
    } else flags.push("outside-stated-range");
  }
  return { score: v, flags, parsed: true };
}

/** Strips ```json fences and returns every top-level {...} or [...] substring that parses as JSON, in order. */
export function extractJsonValues(text: string): unknown[] {
  const out: unknown[] = [];
  const src = text.replace(/```(?:json|JSON)?/g, " ");
  let i = 0;
  while (i < src.length) {
    const ch = src[i];
    if (ch !== "{" && ch !== "[") {
      i++;
      continue;
    }
    const end = matchBracket(src, i);
    if (end < 0) {
      i++;
      continue;
    }
    const candidate = src.slice(i, end + 1);
    const value = tryJson(candidate);
    if (value !== undefined) {
      out.push(value);
      i = end + 1;
    } else i++;
  }
  return out;
}

function tryJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    // Common small-model slip: trailing commas.
    try {
      return JSON.parse(s.replace(/,\s*([}\]])/g, "$1"));
    } catch {
      return undefined;
    }
  }
}

/** Index of the bracket closing the one at `start`, respecting JSON strings; -1 if unbalanced. */
function matchBracket(s: string, start: number): number {
  const stack: string[] = [];
  let inStr = false;
  for (let i = start; i < s.length; i++) {
    const c = s[i];
    if (inStr) {
      if (c === "\\") i++;
      else if (c === '"') inStr = false;
      continue;
    }
    if (c === '"') inStr = true;
    else if (c === "{" || c === "[") stack.push(c === "{" ? "}" : "]");
    else if (c === "}" || c === "]") {
      if (stack.pop() !== c) return -1;
      if (stack.length === 0) return i;
    }
  }
  return -1;
}

function toNumber(v: unknown): number | undefined {
  if (typeof v === "number" && Number.isFinite(v)) return v;
  if (typeof v === "string") {
    const m = v.match(new RegExp(`^\\s*(${NUM})\\s*(?:(?:/|out of)\\s*\\d+)?\\s*$`, "i"));
    if (m) return Number(m[1]);
  }
  return undefined;
}

const SCORE_KEYS = ["score", "rating", "grade", "value", "points", "final_score", "finalscore"];

function scoreFromJson(v: unknown): number | undefined {
  if (typeof v === "number") return toNumber(v);
  if (v && typeof v === "object" && !Array.isArray(v)) {
    for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
      if (SCORE_KEYS.includes(k.toLowerCase().replace(/[\s-]/g, "_"))) {
        const n = toNumber(val);
        if (n !== undefined) return n;
      }
    }
  }
  return undefined;
}

function lastMatch(text: string, re: RegExp): RegExpMatchArray | undefined {
  let last: RegExpMatchArray | undefined;
  for (const m of text.matchAll(re)) last = m;
  return last;
}

/**
 * Reads one integer score in [min, max] from a judge reply. See the module comment for the order of
 * preference. Out-of-range explicit scores are clamped (flag "clamped"); stray numbers in prose are only
 * taken when in range.
 */
export function parseItemScore(text: string | null | undefined, min: number, max: number, fallback?: Fallback, opts: { clamp?: boolean } = {}): ParsedScore {
  const lo = Math.min(min, max);
  const hi = Math.max(min, max);
  const fb = () => fallbackScore(fallback, lo, hi, opts.clamp ?? true);
  const clamp = opts.clamp ?? true;
  const finish = (value: number, a: number, b: number, flags: string[]) => finishScore(value, a, b, flags, clamp);
  const t = (text ?? "").trim();
  if (t === "") return { score: fb(), flags: ["empty-reply", "unparsed-fallback"], parsed: false };

  // 1. The whole reply is a number (what a constrained server returns).
  const bare = t.replace(/^[*_`"'\s]+|[*_`"'.\s]+$/g, "");
  if (new RegExp(`^${NUM}$`).test(bare)) return finish(Number(bare), lo, hi, []);

  // 2. Explicit tags / JSON.
  const tag = lastMatch(t, new RegExp(`<score>\\s*(${NUM})[^<]*</score>`, "gi"));
  if (tag) return finish(Number(tag[1]), lo, hi, []);
  for (const v of extractJsonValues(t).reverse()) {
    const n = scoreFromJson(v);
    if (n !== undefined) return finish(n, lo, hi, []);
  }

  // 3. "Score: 4", "Final score - 4", "rating of 4", "score is **4**".
  const marker = lastMatch(
    t,
    new RegExp(`\\b(?:final\\s+)?(?:score|rating|grade)\\s*(?:is|of|=|:|-|–)?\\s*[*_\`"']*\\s*(${NUM})`, "gi"),
  );
  if (marker) return finish(Number(marker[1]), lo, hi, []);

  // 4. "4/5", "4 out of 5".
  const frac = lastMatch(t, new RegExp(`(?<![\\w.])(${NUM})\\s*(?:/|out of)\\s*\\d+`, "gi"));
  if (frac) return finish(Number(frac[1]), lo, hi, []);

  // 5. Bold or "give/rate/award it a 4".
  const bold = lastMatch(t, new RegExp(`\\*\\*\\s*(${NUM})\\s*\\*\\*`, "g"));
  if (bold) return finish(Number(bold[1]), lo, hi, []);
  const verb = lastMatch(
    t,
    new RegExp(`\\b(?:give|giving|rate|rating|award|assign|assigning)\\b[^.\\n\\d]{0,40}?\\b(?:a|an)?\\s*(${NUM})(?![\\w.]\\d)`, "gi"),
  );
  if (verb) return finish(Number(verb[1]), lo, hi, []);

  // 6. Refusals carry no score even if they mention numbers.
  if (REFUSAL_RE.test(t)) return { score: fb(), flags: ["refusal", "unparsed-fallback"], parsed: false };

  // 7. The last standalone integer within range (numbers inside words, decimals and ranges are skipped).
  const standalone = [...t.matchAll(/(?<![\w.\-/])(-?\d+)(?![\w/]|\.\d|-\d)/g)].map((m) => Number(m[1]));
  const inRange = standalone.filter((n) => n >= lo && n <= hi);
  if (inRange.length > 0) return finish(inRange[inRange.length - 1], lo, hi, []);

  return { score: fb(), flags: ["unparsed-fallback"], parsed: false };
}

// ---------------------------------------------------------------------------------------------------------
// Single-call mode: every item in one reply.

export interface ParsedItem {
  name: string;
  score: number;
  rationale: string;
  flags: string[];
}

export interface ParsedAllItems {
  items: ParsedItem[];
  /** Evaluation-level flags: "extra-item", "unparsed-reply", "empty-reply", "refusal". */
  flags: string[];
}

/** Case/spacing/punctuation-insensitive key for matching item names. */
export function normalizeName(name: string): string {
  // "1. Relevance", "#2 Style" and "Item 3: Depth" name the same items as "relevance", "style", "depth".
  const unnumbered = name.replace(/^\s*(?:item\s*)?#?\d+\s*[.):-]?\s+/i, "");
  return unnumbered.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, "");
}

interface Candidate {
  name: string;
  score?: unknown;
  rationale?: string;
}

function candidatesFromJson(v: unknown): Candidate[] {
  if (Array.isArray(v)) {
    return v.flatMap((e): Candidate[] => {
      if (e && typeof e === "object" && !Array.isArray(e)) {
        const o = e as Record<string, unknown>;
        const name = o.name ?? o.item ?? o.criterion ?? o.title;
        if (typeof name === "string") {
          return [{ name, score: o.score ?? o.rating ?? o.grade, rationale: strOf(o.rationale ?? o.reason ?? o.justification ?? o.feedback) }];
        }
      }
      return [];
    });
  }
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    for (const key of ["items", "scores", "evaluations", "rubric", "results"]) {
      if (Array.isArray(o[key])) return candidatesFromJson(o[key]);
    }
    // {"relevance": 4, "style": {"score": 3, "rationale": "…"}}
    return Object.entries(o).flatMap(([name, val]): Candidate[] => {
      if (typeof val === "number" || typeof val === "string") return [{ name, score: val }];
      if (val && typeof val === "object" && !Array.isArray(val)) {
        const e = val as Record<string, unknown>;
        return [{ name, score: e.score ?? e.rating ?? e.grade, rationale: strOf(e.rationale ?? e.reason ?? e.justification) }];
      }
      return [];
    });
  }
  return [];
}

function strOf(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** "- Relevance: 4 — on topic", "**Style**: 3/5", "Clarity = 2" lines. */
function candidatesFromLines(text: string): Candidate[] {
  const out: Candidate[] = [];
  const re = new RegExp(`^\\s*(?:[-*•]|\\d+[.)])?\\s*[*_#\\s]*([^:=\\n]{1,80}?)[*_\\s]*[:=]\\s*[*_\\s]*(${NUM}(?:\\s*(?:/|out of)\\s*\\d+)?)[*_]*\\s*(?:[-–—:,.]\\s*(.*))?$`, "gim");
  for (const m of text.matchAll(re)) out.push({ name: m[1].trim(), score: m[2], rationale: m[3]?.trim() || undefined });
  return out;
}

/**
 * Reads all items of a single-call reply. Accepts a JSON object/array ({items:[{name,score,rationale}]},
 * [{…}], {name: score}) with or without fences and prose, or a plain "name: score" list. Each rubric item
 * gets a score: matched by normalized name, else fallback + "missing-item". Unknown names are ignored
 * (evaluation flag "extra-item").
 */
export function parseAllItems(text: string | null | undefined, rubric: Rubric, fallback?: Fallback): ParsedAllItems {
  const t = (text ?? "").trim();
  const flags: string[] = [];
  let cands: Candidate[] = [];
  for (const v of extractJsonValues(t)) {
    cands = candidatesFromJson(v);
    if (cands.length > 0) break;
  }
  if (cands.length === 0) cands = candidatesFromLines(t);
  if (t === "") flags.push("empty-reply");
  else if (cands.length === 0) flags.push(REFUSAL_RE.test(t) ? "refusal" : "unparsed-reply");

  const byName = new Map<string, Candidate>();
  for (const c of cands) {
    const k = normalizeName(c.name);
    if (!byName.has(k)) byName.set(k, c);
  }
  const used = new Set<string>();
  const items = rubric.items.map((item: RubricItem): ParsedItem => {
    const k = normalizeName(item.name);
    const c = byName.get(k);
    if (!c) {
      return { name: item.name, score: fallbackScore(fallback, item.min, item.max), rationale: "", flags: ["missing-item", "unparsed-fallback"] };
    }
    used.add(k);
    const scoreText = c.score === undefined || c.score === null ? "" : String(c.score);
    const p = parseItemScore(scoreText, item.min, item.max, fallback);
    return { name: item.name, score: p.score, rationale: c.rationale ?? "", flags: p.flags };
  });
  if ([...byName.keys()].some((k) => !used.has(k))) flags.push("extra-item");
  return { items, flags };
}
