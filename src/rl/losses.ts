/**
 * The RL losses and their analytic gradients with respect to the per-token quantities the engine exposes
 * (log-probs of the sampled tokens, critic values). The engine backpropagates from those
 * (`model.backward(dLogprobs, dValues)`), so each loss here returns its value AND d loss / d input, in
 * plain loops next to the equation they differentiate. test/rl-losses.test.ts checks every gradient
 * against central finite differences of the loss.
 *
 * Arrays are response-aligned [B, T] with a 0/1 mask (see advantages.ts). Losses are means over real
 * tokens, so an empty mask gives loss 0 and zero gradients — never NaN.
 */
import { klPerToken, klPerTokenGrad, type KlEstimator } from "./advantages.ts";

function countMask(mask: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i]) n++;
  return n;
}

function clamp(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}

export interface PolicyLossResult {
  loss: number;
  /** d loss / d logp, [B*T] (0 at padding). */
  dLogp: Float64Array;
  /** Fraction of real tokens whose clipped branch was active. */
  clipFrac: number;
  /** 0.5 · mean (logp − logp_old)²: how far the minibatch moved from the behaviour policy. */
  approxKl: number;
}

/**
 * The clipped surrogate of one token, shared by the PPO, RLOO and GRPO losses: ρ = exp(logp − logp_old),
 *   ℓ = max(−A ρ, −A clip(ρ, 1−ε, 1+ε)),   dℓ/dlogp = −A ρ on the unclipped branch, 0 where clipped.
 */
export function clippedSurrogate(logp: number, oldLogp: number, A: number, cliprange: number): { loss: number; grad: number; clipped: boolean; logRatio: number } {
  const logRatio = logp - oldLogp;
  const ratio = Math.exp(logRatio);
  const l1 = -A * ratio;
  const l2 = -A * clamp(ratio, 1 - cliprange, 1 + cliprange);
  return l2 > l1 ? { loss: l2, grad: 0, clipped: true, logRatio } : { loss: l1, grad: -A * ratio, clipped: false, logRatio };
}

/**
 * PPO clipped surrogate (Schulman et al. 2017), per token with ρ = exp(logp − logp_old):
 *   L = mean_t max(−A_t ρ_t, −A_t clip(ρ_t, 1−ε, 1+ε))
 * Gradient: where the unclipped branch is the max, dL/dlogp = −A ρ / N (dρ/dlogp = ρ); where the clipped
 * branch is strictly larger, ρ lies outside [1−ε, 1+ε] so clip() is flat and the gradient is 0.
 */
export function ppoPolicyLoss(
  logp: ArrayLike<number>,
  oldLogp: ArrayLike<number>,
  advantages: ArrayLike<number>,
  mask: ArrayLike<number>,
  cliprange: number,
): PolicyLossResult {
  const n = countMask(mask);
  const dLogp = new Float64Array(logp.length);
  if (n === 0) return { loss: 0, dLogp, clipFrac: 0, approxKl: 0 };
  let loss = 0;
  let clipped = 0;
  let approx = 0;
  for (let i = 0; i < logp.length; i++) {
    if (!mask[i]) continue;
    const s = clippedSurrogate(logp[i], oldLogp[i], advantages[i], cliprange);
    loss += s.loss;
    if (s.clipped) clipped++;
    else dLogp[i] = s.grad / n;
    approx += s.logRatio * s.logRatio;
  }
  return { loss: loss / n, dLogp, clipFrac: clipped / n, approxKl: (0.5 * approx) / n };
}

export interface ValueLossResult {
  loss: number;
  /** d loss / d value, [B*T]. */
  dValues: Float64Array;
  clipFrac: number;
}

/**
 * Clipped value loss (PPO2 / TRL): V_clip = V_old + clip(V − V_old, −c, c)
 *   L = 0.5 · mean_t max((V − R)², (V_clip − R)²)
 * Gradient: unclipped branch → (V − R)/N; the clipped branch can only be strictly larger when V − V_old is
 * outside [−c, c], where V_clip does not depend on V → 0.
 */
export function clippedValueLoss(
  values: ArrayLike<number>,
  oldValues: ArrayLike<number>,
  returns: ArrayLike<number>,
  mask: ArrayLike<number>,
  cliprangeValue: number,
): ValueLossResult {
  const n = countMask(mask);
  const dValues = new Float64Array(values.length);
  if (n === 0) return { loss: 0, dValues, clipFrac: 0 };
  let loss = 0;
  let clipped = 0;
  for (let i = 0; i < values.length; i++) {
    if (!mask[i]) continue;
    const v = values[i];
    const R = returns[i];
    const vClip = oldValues[i] + clamp(v - oldValues[i], -cliprangeValue, cliprangeValue);
    const l1 = (v - R) * (v - R);
    const l2 = (vClip - R) * (vClip - R);
    if (l2 > l1) {
      loss += l2;
      clipped++;
    } else {
      loss += l1;
      dValues[i] = (v - R) / n; // d/dV of 0.5·(V − R)² / N
    }
  }
  return { loss: (0.5 * loss) / n, dValues, clipFrac: clipped / n };
}

export interface GrpoLossResult extends PolicyLossResult {
  /** Mean per-token KL estimate to the reference over real tokens. */
  kl: number;
}

/**
 * GRPO objective (Shao et al. 2024) as a loss, with the sequence advantage A_b broadcast over its tokens:
 *   ℓ_{b,t} = max(−A_b ρ, −A_b clip(ρ, 1−ε, 1+ε)) + β · kl_t(π‖π_ref)
 *   normalization "sequence": L = mean_b (1/|o_b|) Σ_t ℓ_{b,t}   (the paper's formula)
 *   normalization "token":    L = (1/N) Σ_{b,t} ℓ_{b,t}           (token-level, DAPO / newer TRL)
 * Gradient per token: w · (unclipped ? −A ρ : 0) + w · β · dkl/dlogp, w the token's normalization weight.
 * Rows without real tokens are skipped (they do not count in mean_b).
 */
export function grpoLoss(
  logp: ArrayLike<number>,
  oldLogp: ArrayLike<number>,
  refLogp: ArrayLike<number>,
  seqAdvantages: ArrayLike<number>,
  mask: ArrayLike<number>,
  B: number,
  T: number,
  opts: { cliprange: number; beta: number; estimator: KlEstimator; normalization?: "sequence" | "token" },
): GrpoLossResult {
  const norm = opts.normalization ?? "sequence";
  const dLogp = new Float64Array(B * T);
  const nTok = countMask(mask);
  if (nTok === 0) return { loss: 0, dLogp, clipFrac: 0, approxKl: 0, kl: 0 };
  let rows = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) if (mask[b * T + t]) (rows++, (t = T));
  }
  let loss = 0;
  let clipped = 0;
  let approx = 0;
  let klSum = 0;
  for (let b = 0; b < B; b++) {
    let nb = 0;
    for (let t = 0; t < T; t++) if (mask[b * T + t]) nb++;
    if (nb === 0) continue;
    const w = norm === "sequence" ? 1 / (rows * nb) : 1 / nTok;
    const A = seqAdvantages[b];
    for (let t = 0; t < T; t++) {
      const i = b * T + t;
      if (!mask[i]) continue;
      const s = clippedSurrogate(logp[i], oldLogp[i], A, opts.cliprange);
      const kl = klPerToken(logp[i], refLogp[i], opts.estimator);
      loss += w * s.loss;
      if (s.clipped) clipped++;
      loss += w * opts.beta * kl;
      const g = s.grad + opts.beta * klPerTokenGrad(logp[i], refLogp[i], opts.estimator);
      dLogp[i] = w * g;
      approx += s.logRatio * s.logRatio;
      klSum += kl;
    }
  }
  return { loss, dLogp, clipFrac: clipped / nTok, approxKl: (0.5 * approx) / nTok, kl: klSum / nTok };
}
