/**
 * Agreement between the junior's normalized scores j_i and the annotator's targets t_i (both in [0, 1]):
 *   MAE      = (1/n) Σ |j_i − t_i|
 *   Spearman = Pearson correlation of the ranks of j and t (ties get their average rank)
 * Spearman is null when either side is constant (the correlation is undefined, not 0).
 */

import { spearman } from "../util/stats.ts";

export { pearson, ranks, spearman } from "../util/stats.ts";

export interface Agreement {
  n: number;
  mae: number | null;
  spearman: number | null;
}

export function agreement(junior: readonly number[], target: readonly number[]): Agreement {
  const n = junior.length;
  if (n === 0) return { n: 0, mae: null, spearman: null };
  const mae = junior.reduce((s, j, i) => s + Math.abs(j - target[i]), 0) / n;
  return { n, mae, spearman: spearman(junior, target) };
}

/**
 * Orders candidates best first: lower MAE, then higher rank correlation (null counts as worst), then the
 * older version (a revision must earn its place).
 */
export function compareAgreement(a: Agreement & { version: number }, b: Agreement & { version: number }): number {
  const ma = a.mae ?? Infinity;
  const mb = b.mae ?? Infinity;
  if (Math.abs(ma - mb) > 1e-12) return ma - mb;
  const sa = a.spearman ?? -Infinity;
  const sb = b.spearman ?? -Infinity;
  if (Math.abs(sa - sb) > 1e-12) return sb - sa;
  return a.version - b.version;
}
