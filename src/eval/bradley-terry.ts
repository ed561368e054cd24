/**
 * Bradley–Terry strengths from a pairwise match log, an order-independent complement to sequential Elo
 * (Elo with K=4 depends on match order and never fully converges; BT uses all matches at once).
 * Fit: Hunter's MM algorithm (2004) — p_i ← W_i / Σ_j n_ij / (p_i + p_j) — with ties counted as half a
 * win for each side and a small symmetric prior (a fraction of a virtual game against every other
 * system) so a system that never won keeps a finite strength. Strengths are reported on the Elo scale
 * (1000 + scale·log_base p_i, geometric mean of p = 1, so the mean rating is 1000). Confidence intervals:
 * percentile bootstrap over matches, drawn from a seeded Rng.
 */
import { Rng } from "../util/rng.ts";
import { UserError } from "../util/errors.ts";

export interface PairOutcome {
  a: string;
  b: string;
  /** Score of a: 1 win, 0.5 tie, 0 loss. */
  scoreA: number;
}

export interface BradleyTerryOptions {
  /** Virtual games per pair, split half/half (default 0.1). */
  prior?: number;
  maxIterations?: number;
  tolerance?: number;
  base?: number;
  scale?: number;
  /** Bootstrap resamples (default 200; 0 = no CIs). */
  bootstrap?: number;
  /** Seed of the bootstrap Rng (default 0). */
  seed?: number;
  /** CI level (default 0.95). */
  level?: number;
}

export interface BradleyTerryResult {
  systems: string[];
  /** Elo-scale ratings (mean 1000). */
  rating: Record<string, number>;
  /** Percentile bootstrap CI of the rating, when bootstrap > 0. */
  ci?: Record<string, [number, number]>;
  /** Estimated P(row beats column) from the fit. */
  winProbability: Record<string, Record<string, number>>;
  matches: number;
  iterations: number;
  converged: boolean;
  settings: { prior: number; bootstrap: number; seed: number; level: number; base: number; scale: number };
}

interface Fit {
  strength: number[];
  iterations: number;
  converged: boolean;
}

function fitStrengths(n: number, outcomes: Array<{ i: number; j: number; s: number }>, prior: number, maxIter: number, tol: number): Fit {
  // wins[i] and games[i][j] (symmetric), prior included.
  const wins = new Array<number>(n).fill(0);
  const games = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (const { i, j, s } of outcomes) {
    wins[i] += s;
    wins[j] += 1 - s;
    games[i][j] += 1;
    games[j][i] += 1;
  }
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++)
      if (i !== j) {
        games[i][j] += prior;
        wins[i] += prior / 2;
      }
  let p = new Array<number>(n).fill(1);
  let iterations = 0;
  let converged = false;
  for (; iterations < maxIter; iterations++) {
    const next = p.map((pi, i) => {
      let denom = 0;
      for (let j = 0; j < n; j++) if (j !== i && games[i][j] > 0) denom += games[i][j] / (pi + p[j]);
      return denom > 0 ? wins[i] / denom : pi;
    });
    // Normalize to geometric mean 1 (the scale of BT strengths is arbitrary).
    const logMean = next.reduce((a, x) => a + Math.log(x), 0) / n;
    const g = Math.exp(logMean);
    const normed = next.map((x) => x / g);
    const delta = Math.max(...normed.map((x, i) => Math.abs(Math.log(x) - Math.log(p[i]))));
    p = normed;
    if (delta < tol) {
      converged = true;
      iterations++;
      break;
    }
  }
  return { strength: p, iterations, converged };
}

export function fitBradleyTerry(outcomes: PairOutcome[], opts: BradleyTerryOptions = {}): BradleyTerryResult {
  const prior = opts.prior ?? 0.1;
  const maxIter = opts.maxIterations ?? 10_000;
  const tol = opts.tolerance ?? 1e-10;
  const base = opts.base ?? 10;
  const scale = opts.scale ?? 400;
  const B = opts.bootstrap ?? 200;
  const seed = opts.seed ?? 0;
  const level = opts.level ?? 0.95;
  if (!(prior > 0)) throw new UserError(`Bradley–Terry prior must be > 0, got ${prior}`);
  const names = [...new Set(outcomes.flatMap((o) => [o.a, o.b]))].sort();
  if (names.length < 2) throw new UserError(`Bradley–Terry needs matches between at least two systems, got ${names.length}`);
  const idx = new Map(names.map((n, i) => [n, i]));
  const coded = outcomes.map((o, t) => {
    if (!(o.scoreA === 0 || o.scoreA === 0.5 || o.scoreA === 1)) throw new UserError(`match ${t}: scoreA must be 0, 0.5 or 1, got ${o.scoreA}`);
    if (o.a === o.b) throw new UserError(`match ${t}: a system cannot play itself (${o.a})`);
    return { i: idx.get(o.a)!, j: idx.get(o.b)!, s: o.scoreA };
  });
  const toRating = (p: number) => 1000 + (scale * Math.log(p)) / Math.log(base);
  const fit = fitStrengths(names.length, coded, prior, maxIter, tol);
  const rating = Object.fromEntries(names.map((n, i) => [n, toRating(fit.strength[i])]));
  const winProbability = Object.fromEntries(
    names.map((a, i) => [a, Object.fromEntries(names.filter((b) => b !== a).map((b) => [b, fit.strength[i] / (fit.strength[i] + fit.strength[idx.get(b)!])]))]),
  );
  const result: BradleyTerryResult = {
    systems: names,
    rating,
    winProbability,
    matches: outcomes.length,
    iterations: fit.iterations,
    converged: fit.converged,
    settings: { prior, bootstrap: B, seed, level, base, scale },
  };
  if (B > 0) {
    const rng = new Rng(seed);
    const samples: number[][] = names.map(() => []);
    for (let b = 0; b < B; b++) {
      const resample = Array.from({ length: coded.length }, () => coded[rng.int(coded.length)]);
      const f = fitStrengths(names.length, resample, prior, 2000, 1e-8);
      f.strength.forEach((p, i) => samples[i].push(toRating(p)));
    }
    const lo = (1 - level) / 2;
    result.ci = Object.fromEntries(names.map((n, i) => [n, [quantile(samples[i], lo), quantile(samples[i], 1 - lo)]]));
  }
  return result;
}

/** Linear-interpolated quantile (type 7, like numpy's default). */
export function quantile(xs: number[], q: number): number {
  const s = xs.slice().sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}
