/**
 * Bradley–Terry strengths from a pairwise match log, an order-independent complement to sequential Elo
 * (Elo with K=4 depends on match order and never fully converges; BT uses all matches at once).
 * Fit: maximum likelihood by Newton's method on log-strengths (the MM algorithm of Hunter 2004 is the
 * classic choice but crawls when one system wins nearly everything), ties counted as half a win for
 * each side, and a small symmetric prior (a fraction of a virtual game against every other system) so a
 * system that never won keeps a finite strength. Strengths are reported on the Elo scale
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
  // Log-likelihood in log-strengths θ (Σθ = 0). Newton steps with step halving: the MM iteration of
  // Hunter (2004) converges too slowly when one system wins (almost) everything, and a half-converged
  // point estimate would not be comparable with its bootstrap replicates.
  const logLik = (t: number[]) => {
    let l = 0;
    for (let i = 0; i < n; i++) {
      l += wins[i] * t[i];
      for (let j = i + 1; j < n; j++) if (games[i][j] > 0) l -= games[i][j] * logAddExp(t[i], t[j]);
    }
    return l;
  };
  let theta = new Array<number>(n).fill(0);
  let current = logLik(theta);
  let iterations = 0;
  let converged = false;
  for (; iterations < maxIter; iterations++) {
    const grad = wins.slice();
    // A = −Hessian + 11ᵀ: positive definite on the constraint's complement, so the system is solvable.
    const A = Array.from({ length: n }, () => new Array<number>(n).fill(1));
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        if (i === j || games[i][j] === 0) continue;
        const p = 1 / (1 + Math.exp(theta[j] - theta[i]));
        grad[i] -= games[i][j] * p;
        const w = games[i][j] * p * (1 - p);
        A[i][i] += w;
        A[i][j] -= w;
      }
    const step = solve(A, grad);
    let scale = 1;
    let next = theta;
    let value = current;
    for (let h = 0; h < 30; h++, scale /= 2) {
      const cand = theta.map((t, i) => t + scale * step[i]);
      const mean = cand.reduce((a, b) => a + b, 0) / n;
      const centred = cand.map((t) => t - mean);
      const v = logLik(centred);
      if (v >= current - 1e-12) {
        next = centred;
        value = v;
        break;
      }
    }
    const delta = Math.max(...next.map((t, i) => Math.abs(t - theta[i])));
    theta = next;
    current = value;
    if (delta < tol) {
      converged = true;
      iterations++;
      break;
    }
  }
  return { strength: theta.map(Math.exp), iterations, converged };
}

function logAddExp(a: number, b: number): number {
  const m = Math.max(a, b);
  return m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}

/** Gaussian elimination with partial pivoting (small dense systems: one row per system). */
function solve(A: number[][], b: number[]): number[] {
  const n = b.length;
  const M = A.map((row, i) => [...row, b[i]]);
  for (let c = 0; c < n; c++) {
    let piv = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[piv][c])) piv = r;
    [M[c], M[piv]] = [M[piv], M[c]];
    const d = M[c][c] || 1e-300;
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = M[r][c] / d;
      if (f !== 0) for (let k = c; k <= n; k++) M[r][k] -= f * M[c][k];
    }
  }
  return M.map((row, i) => row[n] / (row[i] || 1e-300));
}

export function fitBradleyTerry(outcomes: PairOutcome[], opts: BradleyTerryOptions = {}): BradleyTerryResult {
  const prior = opts.prior ?? 0.1;
  const maxIter = opts.maxIterations ?? 200;
  const tol = opts.tolerance ?? 1e-9;
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
      const f = fitStrengths(names.length, resample, prior, maxIter, tol);
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
