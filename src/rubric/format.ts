/**
 * Rubric text and JSON formats.
 *
 * The paper's rubrics (and what the meta-reward model writes) are `<rubric><item>…</item>…</rubric>` text in
 * which every item states its own scoring in prose ("from 0 to 5", "- (4): …"). We parse that leniently
 * (LLM output is messy: missing closing tags, markdown, chatter around the block), derive a short unique name
 * per item and read the score range the item states. `rubricToText` writes the same form back with the name,
 * range and weight as attributes on `<item>`, so text → rubric → text is lossless and the text stays what
 * the judge reads.
 */
import { existsSync, readFileSync } from "node:fs";
import { z } from "zod";
import { formatZodIssues } from "../util/errors.ts";
import { UserError } from "../util/errors.ts";
import type { Rubric, RubricItem } from "./types.ts";

/** A rubric that cannot be read (no items, bad JSON field, invalid range). */
export class RubricError extends UserError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RubricError";
  }
}

export const DEFAULT_SCORE_RANGE = Object.freeze({ min: 0, max: 5 });
/** Ranges above this are treated as misreads (years, word counts), not score scales. */
const MAX_PLAUSIBLE_SCORE = 100;

// ---------------------------------------------------------------------------------------------------------
// Score range inference
// ---------------------------------------------------------------------------------------------------------

/** Words that mark a sentence as talking about scores, so "from 3 to 5 paragraphs" is not read as a scale. */
const SCORE_WORD = String.raw`(?:scores?|scored|scoring|scale|rate|rated|rating|ratings|points?|pts|grade|grades|marks?|integer|integers|labels?|range|ranging)`;
/** A number, optionally quoted or bold (`'0'`, `**5**`), optionally followed by a parenthetical ("0 (worst)"). */
const NUM = String.raw`[*'"“‘]*(\d{1,3})[*'"”’]*(?:\s*\([^()\n]{0,40}\))?`;
const RANGE_SEP = String.raw`\s*(?:-|–|—|to|through|and|\.\.)\s*`;

/**
 * Reads the integer score range an item's text states; `{min: 0, max: 5}` when it states none or the
 * evidence is implausible. Evidence, unioned: explicit ranges in a score context ("score from 0 to 5",
 * "scale of 1-10", "(0-3 points)", "on a 1–7 scale"), quoted label lists (`["0", "1", …, "5"]`), and
 * score-level lists ("- 5: …", "- (4): …", "Score 3:", "Integer Score: **6**"). Sub-ranges mentioned in
 * prose ("scores of '0' through '3'") fall inside the full range, so the union is the stated scale.
 */
export function inferScoreRange(text: string): { min: number; max: number } {
  const values: number[] = [];
  const addRange = (a: number, b: number, at = -1) => {
    if (at >= 0 && isAdjustment(text, at)) return;
    if (a < b && b <= MAX_PLAUSIBLE_SCORE) values.push(a, b);
  };

  // 1. Explicit ranges preceded (within a few words) by a score word: "score from 0 (worst) to 5 (best)".
  const before = new RegExp(
    String.raw`\b${SCORE_WORD}\b(?:[\s,;:]+[\w'’]+){0,4}?[\s,;:]+(?:from\s+|between\s+|of\s+)?[(\[]?${NUM}${RANGE_SEP}${NUM}`,
    "gid",
  );
  for (const m of text.matchAll(before)) addRange(Number(m[1]), Number(m[2]), m.indices![1][0]);
  // A bare "1-10" / "1–10" directly after the score word ("Rate 1-10", "score: 0-5").
  const direct = new RegExp(String.raw`\b${SCORE_WORD}\b\s*[:=]?\s*[(\[]?(\d{1,3})\s*[-–—]\s*(\d{1,3})\b`, "gid");
  for (const m of text.matchAll(direct)) addRange(Number(m[1]), Number(m[2]), m.indices![1][0]);
  // 2. Ranges followed by a score word: "(0-3 points)", "on a 1–10 scale", "0 to 5 points".
  const after = new RegExp(String.raw`(?<![\d.,/])${NUM}${RANGE_SEP}${NUM}\s*[-]?\s*(?:points?|pts|scale|score|rating)\b`, "gid");
  for (const m of text.matchAll(after)) addRange(Number(m[1]), Number(m[2]), m.indices![1][0]);

  // A range standing alone as a label: "Grammar: 0 to 10", "Clarity (1-10)", a line "0-5".
  const label = new RegExp(String.raw`(?:^|[:(\[])[ \t]*${NUM}${RANGE_SEP}${NUM}[ \t]*(?=[)\]]|$)`, "gimd");
  for (const m of text.matchAll(label)) addRange(Number(m[1]), Number(m[2]), m.indices![1][0]);

  // 3. Quoted label lists: ['0', '1', '2', '3', '4', '5'] or ["1", "2", "3"].
  for (const m of text.matchAll(/\[\s*((?:["'‘“]\d{1,3}["'’”]\s*,\s*){2,}["'‘“]\d{1,3}["'’”])\s*\]/g)) {
    const nums = [...m[1].matchAll(/\d{1,3}/g)].map((x) => Number(x[0]));
    addRange(Math.min(...nums), Math.max(...nums));
  }

  // 4. Score-level lists, one level per line.
  const levels = new Set<number>();
  for (const line of text.split(/\r?\n/)) {
    const lvl = scoreLevelOfLine(line);
    if (lvl !== null && lvl <= MAX_PLAUSIBLE_SCORE) levels.add(lvl);
  }
  // Inline level definitions: "1 = poor, 3 = fair, 5 = excellent".
  const inline = new Set<number>();
  for (const m of text.matchAll(/(?<![\w.\\^_=+\-*/])(\d{1,3})\s*=\s*(?=["'“(]?[A-Za-z])/g)) inline.add(Number(m[1]));
  if (inline.size >= 2) for (const v of inline) levels.add(v);
  if (levels.size >= 2) values.push(...[...levels].filter((v) => v <= MAX_PLAUSIBLE_SCORE));

  // "a score out of 10": only when nothing else states the scale (the low end is then taken as 0).
  if (values.length === 0) {
    const outOf = new RegExp(String.raw`\b${SCORE_WORD}\b(?:\s+[\w'’]+){0,4}?\s+out\s+of\s+(\d{1,3})\b`, "i").exec(text);
    if (outOf) addRange(0, Number(outOf[1]));
  }

  if (values.length === 0) return { ...DEFAULT_SCORE_RANGE };
  const min = Math.min(...values);
  const max = Math.max(...values);
  if (!(min < max) || max > MAX_PLAUSIBLE_SCORE) return { ...DEFAULT_SCORE_RANGE };
  return { min, max };
}

/** "Deduct 1-2 points", "add 1 to 3 points": a penalty or bonus size (words right before the range), not the scale. */
function isAdjustment(text: string, rangeStart: number): boolean {
  const before = text.slice(Math.max(0, rangeStart - 40), rangeStart);
  return /\b(?:deduct\w*|subtract\w*|penali[sz]\w*|minus|lose|loses|losing|take\s+off|takes\s+off|remove|add|adds|bonus|extra|reduc\w*|lower\w*|rais\w*)(?:\s+(?:it|the\s+score|score|up\s+to|between|by|of|from|another|an?\s+additional|additional))*[\s:(*'"]*$/i.test(before);
}

/**
 * The score level a line introduces, or null: "- 5: …", "* (4): …", "**3** – …", "5 points: …",
 * "Score 3:", "#### Criterion for Integer Score: **6**". Numbered lists ("1. …", "2) …") are not levels.
 */
function scoreLevelOfLine(line: string): number | null {
  const s = line.trim();
  // "Score 3:", "Score: 4", "Integer Score: **6**" (number at end of line or followed by a separator).
  let m = /\bscores?\s*(?:level\s*)?[:=]?\s*[*(\['"]*(\d{1,3})[*)\]'"]*\s*(?::|$|\s[-–—]\s)/i.exec(s);
  if (m) return Number(m[1]);
  // Bullet/heading/bold level: "- 5: …", "- (4): …", "**5**: …", "(3) - …", "5 points: …".
  m = /^(?:[-*+•]\s*|#{1,6}\s*)?[*(\['"]*(\d{1,3})[*)\]'"]*\s*(?:points?|pts)?\s*(?::|\s[-–—]\s|[-–—]\s)/i.exec(s);
  if (m) {
    // "1 - 10" style ranges at line start are not levels.
    if (/^\S*\d{1,3}\S*\s*[-–—]\s*\d/.test(s)) return null;
    return Number(m[1]);
  }
  return null;
}

// ---------------------------------------------------------------------------------------------------------
// Text form
// ---------------------------------------------------------------------------------------------------------

const STOP_WORDS = new Set(
  "a an the your you this that these those of on in to for and or is are be should must will with as at by it its their from how what which when whether please".split(
    " ",
  ),
);

/** Lowercase, ASCII letters/digits joined by "-", at most `maxLen` characters. */
export function slugify(s: string, maxLen = 48): string {
  const slug = s
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
  if (slug.length <= maxLen) return slug;
  const cut = slug.slice(0, maxLen);
  return cut.includes("-") ? cut.slice(0, cut.lastIndexOf("-")) : cut;
}

/**
 * A short name for an item: its leading markdown heading ("### Ideas and Content"), bold title
 * ("**Clarity**"), or "Name:" label; else the first few content words of its first line.
 */
export function deriveItemName(text: string): string {
  const first = text.trim().split(/\r?\n/)[0]?.trim() ?? "";
  let title: string | undefined;
  let m = /^#{1,6}\s+(.+)$/.exec(first);
  if (m) title = m[1];
  else if ((m = /^\*\*([^*]{1,80})\*\*/.exec(first))) title = m[1];
  else if ((m = /^__([^_]{1,80})__/.exec(first))) title = m[1];
  else if ((m = /^([A-Za-z][\w '’&/-]{0,40}):(?:\s|$)/.exec(first)) && m[1].trim().split(/\s+/).length <= 5) title = m[1];
  if (title !== undefined) {
    // "Logical Flow (flow): Assess …" → "Logical Flow"; drop markdown emphasis and trailing descriptions.
    title = title.replace(/[*_`]/g, "").split(/:\s/)[0].replace(/\([^)]*\)/g, " ").trim();
    const words = title.split(/\s+/).filter(Boolean).slice(0, 6);
    const slug = slugify(words.join(" "));
    if (slug) return slug;
  }
  const words = first
    .replace(/[*_`#>]/g, " ")
    .split(/[^\p{L}\p{N}'’-]+/u)
    .map((w) => w.replace(/^['’-]+|['’-]+$/g, ""))
    .filter((w) => w && !STOP_WORDS.has(w.toLowerCase()));
  return slugify(words.slice(0, 4).join(" ")) || "item";
}

function uniqueName(base: string, taken: Set<string>): string {
  let name = base;
  for (let i = 2; taken.has(name); i++) name = `${base}-${i}`;
  taken.add(name);
  return name;
}

/** `name="x" min="0"` → {name: "x", min: "0"} (double or single quotes). */
function parseAttributes(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of s.matchAll(/([A-Za-z_][\w-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) out[m[1].toLowerCase()] = unescapeAttr(m[2] ?? m[3]);
  return out;
}
const escapeAttr = (s: string) => s.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const unescapeAttr = (s: string) => s.replace(/&quot;/g, '"').replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");

/**
 * Which part of a reply holds the items: the last `<rubric>` block that contains an `<item>` (an LLM may
 * quote an example rubric before writing its own), else the whole text.
 */
function rubricRegion(text: string): string {
  const opens = [...text.matchAll(/<rubric\b[^>]*>/gi)];
  for (let i = opens.length - 1; i >= 0; i--) {
    const start = opens[i].index! + opens[i][0].length;
    const rest = text.slice(start);
    const end = rest.search(/<\/rubric\s*>|<rubric\b[^>]*>/i);
    const region = end === -1 ? rest : rest.slice(0, end);
    if (/<item\b[^>]*>/i.test(region)) return region;
  }
  return text;
}

/**
 * Parses the paper's `<rubric><item>…</item>…</rubric>` form. Tolerates whitespace, markdown inside items,
 * a missing `</rubric>` or final `</item>`, text outside items (ignored) and any tag case. Attributes
 * written by `rubricToText` (name, min, max, weight) are honoured; otherwise the name is derived and the
 * range inferred from the item's text.
 */
export function parseRubricText(text: string, source = "rubric"): Rubric {
  const region = rubricRegion(text);
  const tags = [...region.matchAll(/<item\b([^>]*)>/gi)];
  if (tags.length === 0) throw new RubricError(`no <item> found in ${source}`);
  const taken = new Set<string>();
  const items: RubricItem[] = [];
  const pending: { attrs: Record<string, string>; body: string }[] = [];
  tags.forEach((tag, i) => {
    const start = tag.index! + tag[0].length;
    const stop = i + 1 < tags.length ? tags[i + 1].index! : region.length;
    let body = region.slice(start, stop);
    const close = body.search(/<\/item\s*>/i);
    if (close !== -1) body = body.slice(0, close);
    body = body.trim();
    if (body) pending.push({ attrs: parseAttributes(tag[1]), body });
  });
  if (pending.length === 0) throw new RubricError(`no <item> found in ${source} (all items are empty)`);
  // Explicit names first, so a derived name never steals an explicit one.
  for (const p of pending) if (p.attrs.name) taken.add(p.attrs.name);
  const seenExplicit = new Set<string>();
  pending.forEach(({ attrs, body }, idx) => {
    let name: string;
    if (attrs.name && !seenExplicit.has(attrs.name)) {
      name = attrs.name;
      seenExplicit.add(name);
    } else name = uniqueName(slugify(attrs.name ?? "") || deriveItemName(body), taken);
    const inferred = inferScoreRange(body);
    const min = attrs.min !== undefined ? intAttr(attrs.min, "min", source, idx) : inferred.min;
    const max = attrs.max !== undefined ? intAttr(attrs.max, "max", source, idx) : inferred.max;
    if (!(min < max)) throw new RubricError(`${source}: item ${idx + 1} (${name}): min ${min} must be below max ${max}`);
    const item: RubricItem = { name, text: body, min, max };
    if (attrs.weight !== undefined) {
      const w = Number(attrs.weight);
      if (!Number.isFinite(w) || w < 0) throw new RubricError(`${source}: item ${idx + 1} (${name}): weight must be a number ≥ 0, got "${attrs.weight}"`);
      item.weight = w;
    }
    items.push(item);
  });
  return { items };
}

/** The body of a `[Start of …] … [End of …]` block (the paper's math guideline files), or null. */
export function guidelineBlock(text: string): string | null {
  const m = /\[Start of [^\]\n]*\]\s*\n?([\s\S]*?)\n?\s*\[End of [^\]\n]*\]/i.exec(text);
  return m ? m[1].trim() : null;
}

/**
 * A rubric file without `<item>` tags (loadRubricFile only: a meta-step reply without items stays an
 * error, so chatter never becomes a rubric). A `[Start of …] … [End of …]` guideline block is one item; otherwise
 * the text is split at the shallowest markdown heading level that occurs at least twice ("### Clarity",
 * "### Depth" → two items; text before the first heading is kept with the first item), and a text with no
 * such headings is one item. Empty text is an error.
 */
export function parseMarkdownRubric(text: string, source = "rubric"): Rubric {
  const block = guidelineBlock(text);
  const body = (block ?? text.replace(/<\/?rubric\b[^>]*>/gi, "")).trim();
  if (!body) throw new RubricError(`no rubric text found in ${source} (neither <item> blocks nor markdown)`);
  const lines = body.split(/\r?\n/);
  let sections: string[] = [body];
  if (block === null) {
    for (let level = 1; level <= 6; level++) {
      const re = new RegExp(`^#{${level}}\\s+\\S`);
      const starts = lines.map((l, i) => (re.test(l) ? i : -1)).filter((i) => i >= 0);
      if (starts.length < 2) continue;
      sections = starts.map((st, k) => lines.slice(k === 0 ? 0 : st, starts[k + 1] ?? lines.length).join("\n").trim()).filter(Boolean);
      break;
    }
  }
  const taken = new Set<string>();
  return {
    items: sections.map((t) => {
      const { min, max } = inferScoreRange(t);
      return { name: uniqueName(deriveItemName(t.replace(/^[^#]*?(?=^#)/ms, "")), taken), text: t, min, max };
    }),
  };
}

function intAttr(v: string, field: string, source: string, idx: number): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new RubricError(`${source}: item ${idx + 1}: attribute ${field} must be an integer, got "${v}"`);
  return n;
}

/**
 * The paper's text form with each item's name, range and (if set) weight as `<item>` attributes, so
 * `parseRubricText(rubricToText(r))` gives back `r`. The judge sees the same text.
 */
export function rubricToText(r: Rubric): string {
  const parts = r.items.map((it) => {
    const attrs = [`name="${escapeAttr(it.name)}"`, `min="${it.min}"`, `max="${it.max}"`];
    if (it.weight !== undefined) attrs.push(`weight="${it.weight}"`);
    return `<item ${attrs.join(" ")}>\n${it.text.trim()}\n</item>`;
  });
  return `<rubric>\n${parts.join("\n\n")}\n</rubric>\n`;
}

/** The paper's plain form, `<item>` without attributes: what the reference's judges read. Not lossless (ranges are re-inferred). */
export function rubricToPlainText(r: Rubric): string {
  return `<rubric>\n${r.items.map((it) => `<item>\n${it.text.trim()}\n</item>`).join("\n\n")}\n</rubric>\n`;
}

// ---------------------------------------------------------------------------------------------------------
// JSON form
// ---------------------------------------------------------------------------------------------------------

const ITEM_TAG = /<\/?(?:item|rubric)\b[^>]*>/i;

export const rubricItemSchema = z
  .object({
    name: z.string().trim().min(1, "must be a non-empty string"),
    text: z
      .string()
      .trim()
      .min(1, "must be a non-empty string")
      .refine((t) => !ITEM_TAG.test(t), "must not contain <item> or <rubric> tags"),
    min: z.number().int(),
    max: z.number().int(),
    weight: z.number().finite().nonnegative().optional(),
  })
  .strict()
  .refine((it) => it.min < it.max, { message: "min must be below max", path: ["max"] });

export const rubricSchema = z
  .object({ items: z.array(rubricItemSchema).min(1, "must have at least one item") })
  .strict()
  .superRefine((r, ctx) => {
    const seen = new Set<string>();
    r.items.forEach((it, i) => {
      if (seen.has(it.name)) ctx.addIssue({ code: "custom", message: `duplicate item name "${it.name}"`, path: ["items", i, "name"] });
      seen.add(it.name);
    });
  });

/** Validates a JSON value as a Rubric; errors name the source and field (e.g. `items.1.max`). */
export function parseRubricJson(value: unknown, source = "rubric"): Rubric {
  const r = rubricSchema.safeParse(value);
  if (!r.success) throw new RubricError(formatZodIssues(source, r.error.issues));
  // Rebuild without undefined keys so results deep-equal parsed text.
  return {
    items: r.data.items.map((it) => {
      const item: RubricItem = { name: it.name, text: it.text, min: it.min, max: it.max };
      if (it.weight !== undefined) item.weight = it.weight;
      return item;
    }),
  };
}

/** Loads a rubric file: `.json` as JSON (a Rubric, or a RubricVersion with a `rubric` key), anything else as text. */
export function loadRubricFile(path: string): Rubric {
  if (!existsSync(path)) throw new UserError(`rubric file not found: ${path}`);
  const text = readFileSync(path, "utf8");
  if (/\.json$/i.test(path)) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new RubricError(`${path}: not valid JSON: ${(err as Error).message}`);
    }
    if (value && typeof value === "object" && !Array.isArray(value) && "rubric" in value && !("items" in value)) {
      return parseRubricJson((value as { rubric: unknown }).rubric, `${path} (rubric)`);
    }
    return parseRubricJson(value, path);
  }
  // A file a person wrote may be plain markdown or the paper's guideline form; LLM replies never get this leniency.
  return /<item\b/i.test(text) ? parseRubricText(text, path) : parseMarkdownRubric(text, path);
}

const weightOf = (it: RubricItem) => it.weight ?? 1;
/** Lowest possible weighted total. */
export function rubricMinTotal(r: Rubric): number {
  return r.items.reduce((s, it) => s + weightOf(it) * it.min, 0);
}
/** Highest possible weighted total. */
export function rubricMaxTotal(r: Rubric): number {
  return r.items.reduce((s, it) => s + weightOf(it) * it.max, 0);
}
