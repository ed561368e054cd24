/**
 * Deterministic text clustering for grouped guidelines (math: k clusters of problems per domain, so the
 * MRM can write guidelines per (domain, cluster) as in the paper, whose own cluster files are not
 * public). Method: TF-IDF (sublinear tf, smoothed idf, min document frequency 2, L2-normalized) and
 * k-means (Lloyd) with k-means++ seeding from our seeded Rng. Same texts + same seed → same clusters.
 * Cluster ids are relabelled by size (0 = largest; ties by earliest member) so they do not depend on
 * the seeding order. A fitted model assigns new texts (the test split) to the nearest centroid.
 */
import { Rng, hashString } from "../util/rng.ts";

export interface TfidfModel {
  vocab: string[];
  idf: number[];
}

export interface KMeansModel extends TfidfModel {
  /** Dense centroids over the vocabulary, index = cluster id. */
  centroids: number[][];
}

type Sparse = Array<[number, number]>;

const STOP = new Set(
  "the and for that this with from are was were has have had what which who whom whose how many much let find its his her their they them then than when where there these those such into onto over under each every some any all can will would could should may might must does did done been being also only both either neither not nor but our your you are as at be by if in is it of on or so to an we".split(" "),
);

export function tokenizeForClustering(text: string): string[] {
  return (text.toLowerCase().match(/\\[a-z]+|[a-z]{2,}/g) ?? []).filter((t) => !STOP.has(t));
}

export function fitTfidf(texts: string[], minDf = 2): TfidfModel {
  const df = new Map<string, number>();
  for (const t of texts) for (const w of new Set(tokenizeForClustering(t))) df.set(w, (df.get(w) ?? 0) + 1);
  const vocab = [...df.entries()].filter(([, c]) => c >= Math.min(minDf, texts.length)).map(([w]) => w).sort();
  const n = texts.length;
  return { vocab, idf: vocab.map((w) => Math.log((1 + n) / (1 + df.get(w)!)) + 1) };
}

export function tfidfVector(model: TfidfModel, text: string, index?: Map<string, number>): Sparse {
  const idx = index ?? new Map(model.vocab.map((w, i) => [w, i]));
  const counts = new Map<number, number>();
  for (const w of tokenizeForClustering(text)) {
    const i = idx.get(w);
    if (i !== undefined) counts.set(i, (counts.get(i) ?? 0) + 1);
  }
  const v: Sparse = [...counts.entries()].sort((a, b) => a[0] - b[0]).map(([i, c]) => [i, (1 + Math.log(c)) * model.idf[i]]);
  const norm = Math.sqrt(v.reduce((a, [, x]) => a + x * x, 0));
  return norm > 0 ? v.map(([i, x]) => [i, x / norm]) : v;
}

function dist2(x: Sparse, c: number[], cNorm2: number): number {
  let dot = 0;
  let xNorm2 = 0;
  for (const [i, v] of x) {
    dot += v * c[i];
    xNorm2 += v * v;
  }
  return Math.max(0, xNorm2 - 2 * dot + cNorm2);
}

function nearest(x: Sparse, centroids: number[][], norms: number[]): [number, number] {
  let best = 0;
  let bestD = Infinity;
  centroids.forEach((c, j) => {
    const d = dist2(x, c, norms[j]);
    if (d < bestD - 1e-12) {
      bestD = d;
      best = j;
    }
  });
  return [best, bestD];
}

export interface KMeansResult {
  model: KMeansModel;
  /** Cluster id per input text. */
  labels: number[];
  iterations: number;
}

/** TF-IDF + k-means++ + Lloyd. `seed` and the texts fully determine the result. */
export function clusterTexts(texts: string[], k: number, seed: number | string, maxIter = 100): KMeansResult {
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be a positive integer, got ${k}`);
  const tfidf = fitTfidf(texts);
  const index = new Map(tfidf.vocab.map((w, i) => [w, i]));
  const X = texts.map((t) => tfidfVector(tfidf, t, index));
  const dim = tfidf.vocab.length;
  const kk = Math.min(k, texts.length);
  const rng = new Rng(typeof seed === "string" ? hashString(seed) : seed);
  const toDense = (x: Sparse) => {
    const c = new Array<number>(dim).fill(0);
    for (const [i, v] of x) c[i] = v;
    return c;
  };
  const norm2 = (c: number[]) => c.reduce((a, x) => a + x * x, 0);

  // k-means++ seeding: first centre uniform, then proportional to squared distance to the nearest centre.
  const centroids: number[][] = [toDense(X[rng.int(X.length)])];
  while (centroids.length < kk) {
    const norms = centroids.map(norm2);
    const d = X.map((x) => nearest(x, centroids, norms)[1]);
    const total = d.reduce((a, b) => a + b, 0);
    let pick = 0;
    if (total > 0) {
      let r = rng.random() * total;
      for (pick = 0; pick < d.length - 1; pick++) {
        r -= d[pick];
        if (r < 0) break;
      }
    } else pick = rng.int(X.length);
    centroids.push(toDense(X[pick]));
  }

  let labels = new Array<number>(X.length).fill(-1);
  let iterations = 0;
  for (; iterations < maxIter; iterations++) {
    const norms = centroids.map(norm2);
    const next = X.map((x) => nearest(x, centroids, norms)[0]);
    const changed = next.some((l, i) => l !== labels[i]);
    labels = next;
    if (!changed) break;
    for (let j = 0; j < kk; j++) {
      const members = X.filter((_, i) => labels[i] === j);
      if (members.length === 0) {
        // Empty cluster: restart it at the point farthest from its centre (deterministic).
        let far = 0;
        let farD = -1;
        X.forEach((x, i) => {
          const d = dist2(x, centroids[labels[i]], norms[labels[i]]);
          if (d > farD) {
            farD = d;
            far = i;
          }
        });
        centroids[j] = toDense(X[far]);
        labels[far] = j;
        continue;
      }
      const c = new Array<number>(dim).fill(0);
      for (const m of members) for (const [i, v] of m) c[i] += v / members.length;
      centroids[j] = c;
    }
  }

  // Relabel by size (desc), ties by first member index.
  const order = Array.from({ length: kk }, (_, j) => j).sort((a, b) => {
    const sa = labels.filter((l) => l === a).length;
    const sb = labels.filter((l) => l === b).length;
    return sb - sa || labels.indexOf(a) - labels.indexOf(b);
  });
  const rename = new Map(order.map((old, neu) => [old, neu]));
  return {
    model: { ...tfidf, centroids: order.map((j) => centroids[j]) },
    labels: labels.map((l) => rename.get(l)!),
    iterations,
  };
}

/** Nearest-centroid cluster of a new text under a fitted model. */
export function assignCluster(model: KMeansModel, text: string, index?: Map<string, number>): number {
  const x = tfidfVector(model, text, index);
  return nearest(x, model.centroids, model.centroids.map((c) => c.reduce((a, v) => a + v * v, 0)))[0];
}
