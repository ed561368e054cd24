/**
 * Byte-level BPE training (the algorithm of GPT-2 / HF BpeTrainer), deterministic and incremental:
 * the corpus is reduced to unique pre-tokens with counts; pair counts are kept in a map with an index
 * pair → words containing it, and a lazy max-heap picks the most frequent pair (ties: smaller left id,
 * then smaller right id). Each merge rewrites only the words that contain the pair and pushes only the
 * pairs whose counts changed, instead of recounting the whole corpus per merge.
 */
import { BYTE_TO_CHAR, preTokenize, toByteLevel } from "./bytelevel.ts";

export interface TrainOptions {
  /** Target vocabulary size including special tokens and the 256 byte symbols. */
  vocabSize: number;
  /** Added tokens, given ids 0..n-1 in this order. */
  specialTokens?: string[];
  /** Stop early when the best pair occurs fewer times than this (default 2). */
  minFrequency?: number;
  /** Called every few hundred merges with (merges done, target). */
  onProgress?: (done: number, total: number) => void;
}

export interface TrainedBpe {
  /** id → token string (byte-level chars, or the special token text). */
  idToToken: string[];
  /** Merge list in rank order, as pairs of token strings. */
  merges: [string, string][];
  specialTokens: string[];
}

/** Binary max-heap over (count, a, b) with a deterministic total order. */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];
  get size(): number {
    return this.keys.length;
  }
  private better(i: number, j: number): boolean {
    const ci = this.counts[i], cj = this.counts[j];
    return ci > cj || (ci === cj && this.keys[i] < this.keys[j]);
  }
  private swap(i: number, j: number): void {
    [this.counts[i], this.counts[j]] = [this.counts[j], this.counts[i]];
    [this.keys[i], this.keys[j]] = [this.keys[j], this.keys[i]];
  }
  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.keys.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.better(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): { count: number; key: number } | undefined {
    const n = this.keys.length;
    if (n === 0) return undefined;
    const top = { count: this.counts[0], key: this.keys[0] };
    const lastC = this.counts.pop()!;
    const lastK = this.keys.pop()!;
    if (n > 1) {
      this.counts[0] = lastC;
      this.keys[0] = lastK;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < n - 1 && this.better(l, m)) m = l;
        if (r < n - 1 && this.better(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

/** Pair key: ids are < 2^21, so a * 2^21 + b is an exact, order-preserving double (ties: smaller a, then b). */
const SHIFT = 2 ** 21;
const pairKey = (a: number, b: number) => a * SHIFT + b;

/** Counts GPT-2 pre-tokens over the corpus texts. */
export function countPreTokens(texts: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const text of texts) for (const p of preTokenize(text)) counts.set(p, (counts.get(p) ?? 0) + 1);
  return counts;
}

export function trainBpe(texts: Iterable<string>, opts: TrainOptions): TrainedBpe {
  const specialTokens = opts.specialTokens ?? [];
  const minFrequency = opts.minFrequency ?? 2;
  const base = specialTokens.length + 256;
  if (!Number.isInteger(opts.vocabSize) || opts.vocabSize < base)
    throw new RangeError(`vocabSize must be an integer ≥ ${base} (special tokens + 256 bytes), got ${opts.vocabSize}`);
  if (opts.vocabSize >= SHIFT) throw new RangeError(`vocabSize must be < ${SHIFT}`);
  if (new Set(specialTokens).size !== specialTokens.length) throw new Error("specialTokens contains duplicates");

  const idToToken: string[] = [...specialTokens];
  const tokenToId = new Map<string, number>();
  specialTokens.forEach((t, i) => tokenToId.set(t, i));
  for (let b = 0; b < 256; b++) {
    tokenToId.set(BYTE_TO_CHAR[b], idToToken.length);
    idToToken.push(BYTE_TO_CHAR[b]);
  }

  // Unique words (byte-level symbol id arrays) with their corpus counts, in first-seen order.
  const words: Int32Array[] = [];
  const freq: number[] = [];
  for (const [piece, count] of countPreTokens(texts)) {
    const bl = toByteLevel(piece);
    const syms = new Int32Array(bl.length);
    let i = 0;
    for (const ch of bl) syms[i++] = tokenToId.get(ch)!;
    words.push(syms.subarray(0, i));
    freq.push(count);
  }

  const pairCount = new Map<number, number>();
  const pairWhere = new Map<number, Set<number>>();
  for (let w = 0; w < words.length; w++) {
    const s = words[w];
    for (let i = 0; i + 1 < s.length; i++) {
      const k = pairKey(s[i], s[i + 1]);
      pairCount.set(k, (pairCount.get(k) ?? 0) + freq[w]);
      let set = pairWhere.get(k);
      if (!set) pairWhere.set(k, (set = new Set()));
      set.add(w);
    }
  }
  const heap = new PairHeap();
  for (const [k, c] of pairCount) heap.push(c, k);

  const merges: [string, string][] = [];
  const target = opts.vocabSize - idToToken.length;
  while (idToToken.length < opts.vocabSize) {
    const top = heap.pop();
    if (!top) break;
    const current = pairCount.get(top.key) ?? 0;
    if (current !== top.count) {
      // Stale entry: the pair's count changed since it was pushed.
      if (current > 0) heap.push(current, top.key);
      continue;
    }
    if (current < minFrequency) break;
    const a = Math.floor(top.key / SHIFT);
    const b = top.key - a * SHIFT;
    const merged = idToToken[a] + idToToken[b];
    let id = tokenToId.get(merged);
    if (id === undefined) {
      id = idToToken.length;
      idToToken.push(merged);
      tokenToId.set(merged, id);
    }
    merges.push([idToToken[a], idToToken[b]]);

    const delta = new Map<number, number>();
    const where = pairWhere.get(top.key)!;
    for (const w of where) {
      const s = words[w];
      let has = false;
      for (let i = 0; i + 1 < s.length; i++) if (s[i] === a && s[i + 1] === b) { has = true; break; }
      if (!has) continue;
      const f = freq[w];
      for (let i = 0; i + 1 < s.length; i++) {
        const k = pairKey(s[i], s[i + 1]);
        delta.set(k, (delta.get(k) ?? 0) - f);
      }
      const out = new Int32Array(s.length);
      let n = 0;
      for (let i = 0; i < s.length; ) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out[n++] = id;
          i += 2;
        } else out[n++] = s[i++];
      }
      const ns = out.subarray(0, n);
      words[w] = ns;
      for (let i = 0; i + 1 < n; i++) {
        const k = pairKey(ns[i], ns[i + 1]);
        delta.set(k, (delta.get(k) ?? 0) + f);
        let set = pairWhere.get(k);
        if (!set) pairWhere.set(k, (set = new Set()));
        set.add(w);
      }
    }
    pairWhere.delete(top.key);
    for (const [k, d] of delta) {
      if (d === 0) continue;
      const c = (pairCount.get(k) ?? 0) + d;
      if (c > 0) {
        pairCount.set(k, c);
        heap.push(c, k);
      } else {
        pairCount.delete(k);
        pairWhere.delete(k);
      }
    }
    pairCount.delete(top.key);
    if (opts.onProgress && merges.length % 256 === 0) opts.onProgress(idToToken.length - base, target);
  }
  return { idToToken, merges, specialTokens };
}
