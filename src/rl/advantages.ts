/**
 * Advantage estimation and the small statistics around it, in plain loops over response-aligned
 * arrays: row i of a [B, T] array is the i-th response, column t its t-th generated token, and
 * mask[i*T + t] = 1 for real tokens (0 for padding after the response ends). Everything here is pure,
 * deterministic and hand-tested (test/rl-advantages.test.ts) — the trainer only wires it together.
 *
 * Conventions follow the PPO-for-LMs recipe used by the paper's trainer (TRL's PPOTrainer):
 *   - GAE over response tokens with the value after the last token taken as 0 (terminal state);
 *   - advantages whitened over all real tokens of the batch (mean 0, std 1);
 *   - optional reward whitening that keeps the mean (shiftMean = false);
 *   - KL to the reference policy estimated per token with k1 or k3 (Schulman, "Approximating KL").
 */

/** A tiny number so divisions by a zero std never produce NaN/Infinity. */
export const WHITEN_EPS = 1e-8;

/** Mean of x over positions where mask = 1 (0 when the mask is empty: an empty batch has no signal). */
export function maskedMean(x: ArrayLike<number>, mask: ArrayLike<number>): number {
  let s = 0;
  let n = 0;
  for (let i = 0; i < x.length; i++) {
    if (mask[i]) {
      s += x[i];
      n++;
    }
  }
  return n > 0 ? s / n : 0;
}

/**
 * Variance over masked positions. `unbiased` applies Bessel's correction n/(n-1) (torch's default and
 * TRL's masked_var); with a single element the unbiased variance is undefined and we return 0.
 */
export function maskedVar(x: ArrayLike<number>, mask: ArrayLike<number>, unbiased = true): number {
  const mu = maskedMean(x, mask);
  let s = 0;
  let n = 0;
  for (let i = 0; i < x.length; i++) {
    if (mask[i]) {
      const d = x[i] - mu;
      s += d * d;
      n++;
    }
  }
  if (n === 0) return 0;
  if (!unbiased) return s / n;
  return n > 1 ? s / (n - 1) : 0;
}

/**
 * Whitening: (x - mean) / sqrt(var + eps) over masked positions (unbiased var). With shiftMean = false
 * the mean is added back, which rescales rewards without changing their sign balance (TRL's
 * whiten_rewards). Masked-out positions are returned as 0.
 */
export function whiten(x: ArrayLike<number>, mask: ArrayLike<number>, shiftMean = true): Float64Array {
  const mu = maskedMean(x, mask);
  const v = maskedVar(x, mask, true);
  const inv = 1 / Math.sqrt(v + WHITEN_EPS);
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    if (!mask[i]) continue;
    out[i] = (x[i] - mu) * inv + (shiftMean ? 0 : mu);
  }
  return out;
}

/**
 * Generalized Advantage Estimation (Schulman et al. 2016), per row, right to left:
 *   δ_t = r_t + γ V_{t+1} − V_t          (V_{t+1} = 0 after the last real token: the episode ends)
 *   A_t = δ_t + γ λ A_{t+1}
 *   returns_t = A_t + V_t               (the value target)
 * Padding positions get A = returns = 0.
 */
export function gae(
  rewards: ArrayLike<number>,
  values: ArrayLike<number>,
  mask: ArrayLike<number>,
  B: number,
  T: number,
  gamma: number,
  lambda: number,
): { advantages: Float64Array; returns: Float64Array } {
  const advantages = new Float64Array(B * T);
  const returns = new Float64Array(B * T);
  for (let b = 0; b < B; b++) {
    let nextValue = 0;
    let lastGaeLam = 0;
    for (let t = T - 1; t >= 0; t--) {
      const i = b * T + t;
      if (!mask[i]) {
        // Beyond the response: nothing to bootstrap from.
        nextValue = 0;
        lastGaeLam = 0;
        continue;
      }
      const delta = rewards[i] + gamma * nextValue - values[i];
      lastGaeLam = delta + gamma * lambda * lastGaeLam;
      advantages[i] = lastGaeLam;
      returns[i] = lastGaeLam + values[i];
      nextValue = values[i];
    }
  }
  return { advantages, returns };
}

export type KlEstimator = "k1" | "k3";

/**
 * Per-token KL(π‖π_ref) estimate from sampled-token log-probs (the token was drawn from π):
 *   k1 = log π − log π_ref                         (unbiased, can be negative)
 *   k3 = (r − 1) − log r,  r = π_ref / π = exp(log π_ref − log π)   (unbiased, always ≥ 0)
 */
export function klPerToken(logp: number, refLogp: number, estimator: KlEstimator): number {
  if (estimator === "k1") return logp - refLogp;
  const logr = refLogp - logp;
  return Math.expm1(logr) - logr;
}

/** d klPerToken / d logp (π_ref is frozen): k1 → 1; k3 → 1 − r. Used when the KL is a loss term (GRPO). */
export function klPerTokenGrad(logp: number, refLogp: number, estimator: KlEstimator): number {
  if (estimator === "k1") return 1;
  return 1 - Math.exp(refLogp - logp);
}

/** klPerToken over arrays; masked-out positions are 0. */
export function klArray(
  logp: ArrayLike<number>,
  refLogp: ArrayLike<number>,
  mask: ArrayLike<number>,
  estimator: KlEstimator,
): Float64Array {
  const out = new Float64Array(logp.length);
  for (let i = 0; i < logp.length; i++) if (mask[i]) out[i] = klPerToken(logp[i], refLogp[i], estimator);
  return out;
}

/**
 * PPO per-token rewards (TRL style): every token pays the KL penalty −β·kl_t, and the sequence score is
 * added at the last real token of the response. Rows without any real token are left at 0.
 */
export function ppoTokenRewards(
  scores: ArrayLike<number>,
  kl: ArrayLike<number>,
  mask: ArrayLike<number>,
  B: number,
  T: number,
  klCoef: number,
): Float64Array {
  const rewards = new Float64Array(B * T);
  for (let b = 0; b < B; b++) {
    let last = -1;
    for (let t = 0; t < T; t++) {
      const i = b * T + t;
      if (!mask[i]) continue;
      rewards[i] = -klCoef * kl[i];
      last = i;
    }
    if (last >= 0) rewards[last] += scores[b];
  }
  return rewards;
}

/**
 * GRPO group-relative advantages: scores come in consecutive groups of G responses to the same prompt;
 *   A_i = (s_i − mean_g) / (std_g + eps)   (scaleByStd, unbiased std as in TRL's GRPOTrainer)
 *   A_i = s_i − mean_g                      (scaleByStd = false, "Dr. GRPO")
 * `valid[i] = false` excludes a sample (no usable score): it gets advantage 0 and does not enter its
 * group's statistics. A group with a single valid sample has no baseline and gets 0 advantages.
 */
export function grpoAdvantages(
  scores: ArrayLike<number>,
  groupSize: number,
  opts: { scaleByStd?: boolean; eps?: number; valid?: ArrayLike<boolean> } = {},
): Float64Array {
  const scaleByStd = opts.scaleByStd ?? true;
  const eps = opts.eps ?? 1e-4;
  const n = scores.length;
  if (groupSize < 1 || n % groupSize !== 0) throw new RangeError(`grpoAdvantages: ${n} scores do not split into groups of ${groupSize}`);
  const out = new Float64Array(n);
  for (let g0 = 0; g0 < n; g0 += groupSize) {
    let cnt = 0;
    let sum = 0;
    for (let i = g0; i < g0 + groupSize; i++) if (!opts.valid || opts.valid[i]) (cnt++, (sum += scores[i]));
    if (cnt < 2) continue;
    const mean = sum / cnt;
    let ss = 0;
    for (let i = g0; i < g0 + groupSize; i++) if (!opts.valid || opts.valid[i]) ss += (scores[i] - mean) ** 2;
    const std = Math.sqrt(ss / (cnt - 1));
    for (let i = g0; i < g0 + groupSize; i++) {
      if (opts.valid && !opts.valid[i]) continue;
      const diff = scores[i] - mean;
      // A constant group (std = 0) carries no preference signal: its advantages are exactly 0.
      out[i] = !scaleByStd ? diff : std + eps > 0 ? diff / (std + eps) : 0;
    }
  }
  return out;
}

/**
 * RLOO (REINFORCE leave-one-out, Ahmadian et al. 2024): the baseline of sample i is the mean of the
 * other valid samples of its group:  A_i = R_i − (Σ_{j≠i} R_j) / (k − 1).  Invalid samples get 0.
 */
export function rlooAdvantages(rewards: ArrayLike<number>, groupSize: number, valid?: ArrayLike<boolean>): Float64Array {
  const n = rewards.length;
  if (groupSize < 1 || n % groupSize !== 0) throw new RangeError(`rlooAdvantages: ${n} rewards do not split into groups of ${groupSize}`);
  const out = new Float64Array(n);
  for (let g0 = 0; g0 < n; g0 += groupSize) {
    let k = 0;
    let sum = 0;
    for (let i = g0; i < g0 + groupSize; i++) if (!valid || valid[i]) (k++, (sum += rewards[i]));
    if (k < 2) continue;
    for (let i = g0; i < g0 + groupSize; i++) {
      if (valid && !valid[i]) continue;
      out[i] = rewards[i] - (sum - rewards[i]) / (k - 1);
    }
  }
  return out;
}

/** Mean, (population) std, min, max of the finite numbers in xs; zeros when there are none. */
export function summarize(xs: ArrayLike<number>): { mean: number; std: number; min: number; max: number; n: number } {
  let n = 0;
  let s = 0;
  let mn = Infinity;
  let mx = -Infinity;
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i];
    if (!Number.isFinite(x)) continue;
    n++;
    s += x;
    if (x < mn) mn = x;
    if (x > mx) mx = x;
  }
  if (n === 0) return { mean: 0, std: 0, min: 0, max: 0, n: 0 };
  const mean = s / n;
  let ss = 0;
  for (let i = 0; i < xs.length; i++) if (Number.isFinite(xs[i])) ss += (xs[i] - mean) ** 2;
  return { mean, std: Math.sqrt(ss / n), min: mn, max: mx, n };
}
