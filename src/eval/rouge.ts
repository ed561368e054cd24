/**
 * ROUGE-N (any n), ROUGE-L and ROUGE-Lsum precision/recall/F1, matching Google's `rouge-score` package
 * (the reference the summarization results are usually reported with):
 *   - tokens: lowercase, every run of non [a-z0-9] characters becomes a space, split on whitespace;
 *     optional Porter stemming of tokens longer than 3 characters;
 *   - ROUGE-N: clipped n-gram overlap; ROUGE-L: LCS over the whole text;
 *   - ROUGE-Lsum: summary-level LCS over sentences split at newlines (union LCS per reference sentence,
 *     each token counted at most as often as it occurs on both sides, as ROUGE-1.5.5 does).
 * Stemming uses the `stemmer` package (Porter) with the NLTK-mode special cases rouge-score inherits from
 * nltk's PorterStemmer (irregular forms such as skies→sky, dying→die; four-letter -ies/-ied→-ie). Known
 * remaining difference: nltk keeps a final "y" after a vowel (enjoy→enjoy, stemmer gives enjoi) and has
 * extra -fulli/-lessli rules; these rarely move scores.
 */
import { stemmer } from "stemmer";

export interface RougeScore {
  precision: number;
  recall: number;
  fmeasure: number;
}

export type RougeType = `rouge${number}` | "rougeL" | "rougeLsum";

const NLTK_IRREGULAR: Record<string, string> = {
  skies: "sky",
  sky: "sky",
  dying: "die",
  lying: "lie",
  tying: "tie",
  news: "news",
  innings: "inning",
  inning: "inning",
  outings: "outing",
  outing: "outing",
  cannings: "canning",
  canning: "canning",
  howe: "howe",
  proceed: "proceed",
  exceed: "exceed",
  succeed: "succeed",
};

const stemCache = new Map<string, string>();

/** Porter stem as nltk's PorterStemmer (NLTK_EXTENSIONS mode) gives it for the common cases. */
export function porterStem(word: string): string {
  const hit = stemCache.get(word);
  if (hit !== undefined) return hit;
  let out: string;
  if (NLTK_IRREGULAR[word] !== undefined) out = NLTK_IRREGULAR[word];
  else if (word.length === 4 && (word.endsWith("ies") || word.endsWith("ied"))) out = word.slice(0, 1) + "ie";
  else out = stemmer(word);
  if (stemCache.size > 100_000) stemCache.clear();
  stemCache.set(word, out);
  return out;
}

/** rouge-score's tokenizer. */
export function rougeTokenize(text: string, useStemmer = false): string[] {
  const tokens = text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, " ")
    .split(/\s+/)
    .filter((t) => t.length > 0);
  return useStemmer ? tokens.map((t) => (t.length > 3 ? porterStem(t) : t)) : tokens;
}

function fmeasure(p: number, r: number): number {
  return p + r > 0 ? (2 * p * r) / (p + r) : 0;
}

function ngramCounts(tokens: string[], n: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n).join(" ");
    m.set(key, (m.get(key) ?? 0) + 1);
  }
  return m;
}

export function rougeN(target: string[], prediction: string[], n: number): RougeScore {
  const t = ngramCounts(target, n);
  const p = ngramCounts(prediction, n);
  let overlap = 0;
  for (const [g, c] of t) overlap += Math.min(c, p.get(g) ?? 0);
  const tn = Math.max(0, target.length - n + 1);
  const pn = Math.max(0, prediction.length - n + 1);
  const precision = overlap / Math.max(pn, 1);
  const recall = overlap / Math.max(tn, 1);
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

function lcsTable(a: string[], b: string[]): Uint32Array[] {
  const t = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      t[i][j] = a[i - 1] === b[j - 1] ? t[i - 1][j - 1] + 1 : Math.max(t[i - 1][j], t[i][j - 1]);
  return t;
}

/** Indices into `ref` of one longest common subsequence (same tie-breaking as rouge-score). */
export function lcsIndices(ref: string[], can: string[]): number[] {
  const t = lcsTable(ref, can);
  const out: number[] = [];
  let i = ref.length;
  let j = can.length;
  while (i > 0 && j > 0) {
    if (ref[i - 1] === can[j - 1]) {
      out.push(i - 1);
      i--;
      j--;
    } else if (t[i][j - 1] > t[i - 1][j]) j--;
    else i--;
  }
  return out.reverse();
}

export function rougeL(target: string[], prediction: string[]): RougeScore {
  if (target.length === 0 || prediction.length === 0) return { precision: 0, recall: 0, fmeasure: 0 };
  const lcs = lcsTable(target, prediction)[target.length][prediction.length];
  const precision = lcs / prediction.length;
  const recall = lcs / target.length;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** Summary-level LCS (ROUGE paper §3.2) over tokenized sentences. */
export function rougeLsumTokens(refSents: string[][], canSents: string[][]): RougeScore {
  const zero = { precision: 0, recall: 0, fmeasure: 0 };
  if (refSents.length === 0 || canSents.length === 0) return zero;
  const m = refSents.reduce((a, s) => a + s.length, 0);
  const n = canSents.reduce((a, s) => a + s.length, 0);
  if (m === 0 || n === 0) return zero;
  const countR = new Map<string, number>();
  const countC = new Map<string, number>();
  for (const s of refSents) for (const t of s) countR.set(t, (countR.get(t) ?? 0) + 1);
  for (const s of canSents) for (const t of s) countC.set(t, (countC.get(t) ?? 0) + 1);
  let hits = 0;
  for (const r of refSents) {
    const union = new Set<number>();
    for (const c of canSents) for (const i of lcsIndices(r, c)) union.add(i);
    for (const i of [...union].sort((a, b) => a - b)) {
      const tok = r[i];
      if ((countC.get(tok) ?? 0) > 0 && (countR.get(tok) ?? 0) > 0) {
        hits++;
        countC.set(tok, countC.get(tok)! - 1);
        countR.set(tok, countR.get(tok)! - 1);
      }
    }
  }
  const precision = hits / n;
  const recall = hits / m;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

export interface RougeOptions {
  useStemmer?: boolean;
  /**
   * How ROUGE-Lsum finds sentences: "newline" (rouge-score's behaviour: one sentence per line) or
   * "punctuation" (also split after . ! ? followed by whitespace — for outputs written as one paragraph).
   */
  sentenceSplit?: "newline" | "punctuation";
}

function sentences(text: string, mode: "newline" | "punctuation"): string[] {
  const lines = text.split("\n");
  const parts = mode === "newline" ? lines : lines.flatMap((l) => l.split(/(?<=[.!?])\s+/));
  return parts.filter((s) => s.length > 0);
}

/** Scores one prediction against one target (rouge-score's `RougeScorer.score(target, prediction)`). */
export function rougeScore(target: string, prediction: string, types: RougeType[] = ["rouge1", "rouge2", "rougeL", "rougeLsum"], opts: RougeOptions = {}): Record<string, RougeScore> {
  const stem = opts.useStemmer ?? false;
  const tt = rougeTokenize(target, stem);
  const pt = rougeTokenize(prediction, stem);
  const out: Record<string, RougeScore> = {};
  for (const type of types) {
    if (type === "rougeL") out[type] = rougeL(tt, pt);
    else if (type === "rougeLsum") {
      const mode = opts.sentenceSplit ?? "newline";
      out[type] = rougeLsumTokens(
        sentences(target, mode).map((s) => rougeTokenize(s, stem)),
        sentences(prediction, mode).map((s) => rougeTokenize(s, stem)),
      );
    } else {
      const m = /^rouge([1-9])$/.exec(type);
      if (!m) throw new Error(`invalid ROUGE type: ${type} (use rouge1..rouge9, rougeL, rougeLsum)`);
      out[type] = rougeN(tt, pt, Number(m[1]));
    }
  }
  return out;
}

export interface RougeCorpusResult {
  n: number;
  /** Mean over pairs of each type's precision / recall / F1. */
  mean: Record<string, RougeScore>;
  perPair?: Array<Record<string, RougeScore>>;
}

/** Mean ROUGE over aligned (target, prediction) pairs. */
export function rougeCorpus(pairs: Array<{ target: string; prediction: string }>, types: RougeType[] = ["rouge1", "rouge2", "rougeL", "rougeLsum"], opts: RougeOptions & { keepPerPair?: boolean } = {}): RougeCorpusResult {
  const per = pairs.map((p) => rougeScore(p.target, p.prediction, types, opts));
  const mean: Record<string, RougeScore> = {};
  for (const t of types) {
    const acc = { precision: 0, recall: 0, fmeasure: 0 };
    for (const s of per) {
      acc.precision += s[t].precision;
      acc.recall += s[t].recall;
      acc.fmeasure += s[t].fmeasure;
    }
    const n = Math.max(per.length, 1);
    mean[t] = { precision: acc.precision / n, recall: acc.recall / n, fmeasure: acc.fmeasure / n };
  }
  return { n: pairs.length, mean, ...(opts.keepPerPair ? { perPair: per } : {}) };
}
