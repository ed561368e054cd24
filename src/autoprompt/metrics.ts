/**
 * Agreement between the junior's normalized scores j_i and the annotator's targets t_i (both in [0, 1]):
 *   MAE      = (1/n) Σ |j_i − t_i|
 *   Spearman = Pearson correlation of the ranks of j and t (ties get their average rank)
 * Spearman is null when either side is constant (the correlation is undefined, not 0).
 */

export interface Agreement {
  n: number;
  mae: number | null;
  spearman: number | null;
}

/** Average ranks (1-based), ties sharing the mean of the positions they span. */
export function ranks(xs: readonly number[]): number[] {
  const order = xs.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0]);
  const r = new Array<number>(xs.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++;
    const avg = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) r[order[k][1]] = avg;
    i = j + 1;
  }
  return r;
}

export function pearson(a: readonly number[], b: readonly number[]): number | null {
  const n = a.length;
  if (n < 2 || b.length !== n) return null;
  const ma = a.reduce((s, x) => s + x, 0) / n;
  const mb = b.reduce((s, x) => s + x, 0) / n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  if (saa === 0 || sbb === 0) return null;
  return sab / Math.sqrt(saa * sbb);
}

export function spearman(a: readonly number[], b: readonly number[]): number | null {
  return pearson(ranks(a), ranks(b));
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
