/**
 * PPO, GRPO and RLOO as data: each maps a scored batch to advantages and a minibatch to its policy loss.
 * The trainer calls `ALGORITHMS[cfg.algo]` and never branches on the algorithm name.
 *
 *   PPO  (the paper's trainer): r_t = −β·kl_t + score at the last token → GAE(γ, λ) → whiten A over the batch;
 *        per-token clipped surrogate; a critic (separate or a head on the policy) fits the returns.
 *   GRPO: A_b = (score_b − mean_group) / std_group (KL is in the loss, not the reward);
 *        loss = clipped surrogate + β·kl_t, normalized per sequence or per token.
 *   RLOO: R_b = score_b − β Σ_t kl_{b,t};  A_b = R_b − mean of the other valid samples of its group,
 *        optionally whitened; broadcast over the tokens; per-token clipped surrogate.
 */
import { gae, grpoAdvantages, ppoTokenRewards, rlooAdvantages, whiten } from "./advantages.ts";
import type { TrainConfig } from "./config.ts";
import { grpoLoss, ppoPolicyLoss, type PolicyLossResult } from "./losses.ts";

/** A step's batch after scoring: B rows of samples with a usable score, response-aligned [B, R] arrays. */
export interface ScoredBatch {
  B: number;
  R: number;
  /** Responses per prompt. */
  G: number;
  mask: Float64Array;
  /** Per-token KL to the reference (behaviour policy), and its per-row sum. */
  klTok: Float64Array;
  klSeq: Float64Array;
  /** The critic's values at the behaviour policy (PPO). */
  oldValues: Float64Array;
  /** Scores of ALL samples of the step (group statistics see every response), and which are valid. */
  scores: number[];
  valid: boolean[];
  /** Indices (into the step's samples) of the B rows. */
  use: number[];
}

/** Advantages per token [B*R] (PPO/RLOO) or per sequence [B] (GRPO), and PPO's value targets. */
export interface Advantages {
  tokAdv: Float64Array;
  seqAdv: Float64Array;
  returns: Float64Array;
}

/** One minibatch's inputs to the policy loss: rows of the batch, response-aligned [rows, R]. */
export interface MinibatchLossInput {
  logp: Float64Array;
  oldLogp: Float64Array;
  refLogp: Float64Array;
  mask: Float64Array;
  /** The batch rows of this minibatch (to pick their advantages). */
  rows: number[];
  R: number;
  /** Selects the minibatch rows of a [B*R] batch array. */
  sel: (src: Float64Array) => Float64Array;
}

export interface Algorithm {
  /** Trains a value function (PPO): the trainer builds a critic and adds the clipped value loss. */
  readonly usesCritic: boolean;
  advantages(batch: ScoredBatch, cfg: TrainConfig): Advantages;
  policyLoss(mb: MinibatchLossInput, adv: Advantages, cfg: TrainConfig): PolicyLossResult;
}

const empty = (b: ScoredBatch): Advantages => ({ tokAdv: new Float64Array(b.B * b.R), seqAdv: new Float64Array(b.B), returns: new Float64Array(b.B * b.R) });

/** Per-token clipped surrogate on per-token advantages (PPO and RLOO). */
const tokenPolicyLoss = (mb: MinibatchLossInput, adv: Advantages, cfg: TrainConfig) => ppoPolicyLoss(mb.logp, mb.oldLogp, mb.sel(adv.tokAdv), mb.mask, cfg.cliprange);

export const ppo: Algorithm = {
  usesCritic: true,
  advantages(b, cfg) {
    const out = empty(b);
    // r_t = −β·kl_t, plus the score at the last token; GAE; whiten advantages over the batch.
    let rewards: Float64Array = ppoTokenRewards(b.use.map((i) => b.scores[i]), b.klTok, b.mask, b.B, b.R, cfg.klCoef);
    if (cfg.whitenRewards) rewards = whiten(rewards, b.mask, false);
    const g = gae(rewards, b.oldValues, b.mask, b.B, b.R, cfg.gamma, cfg.lam);
    out.returns = g.returns;
    out.tokAdv = whiten(g.advantages, b.mask, true);
    return out;
  },
  policyLoss: tokenPolicyLoss,
};

export const grpo: Algorithm = {
  usesCritic: false,
  advantages(b, cfg) {
    const out = empty(b);
    // Group-relative advantages over the G responses of each prompt (KL goes into the loss instead).
    const full = grpoAdvantages(b.scores.map((s) => (Number.isFinite(s) ? s : 0)), b.G, { scaleByStd: cfg.scaleByStd, valid: b.valid });
    out.seqAdv = Float64Array.from(b.use.map((i) => full[i]));
    return out;
  },
  policyLoss(mb, adv, cfg) {
    const a = Float64Array.from(mb.rows.map((r) => adv.seqAdv[r]));
    return grpoLoss(mb.logp, mb.oldLogp, mb.refLogp, a, mb.mask, mb.rows.length, mb.R, {
      cliprange: cfg.cliprange,
      beta: cfg.klCoef,
      estimator: cfg.klEstimator,
      normalization: cfg.grpoLossNormalization,
    });
  },
};

export const rloo: Algorithm = {
  usesCritic: false,
  advantages(b, cfg) {
    const out = empty(b);
    // Sequence reward R_i = score − β Σ_t kl_t, baseline = mean of the other valid samples of the group.
    const seqR = new Array<number>(b.scores.length).fill(0);
    b.use.forEach((i, row) => (seqR[i] = b.scores[i] - cfg.klCoef * b.klSeq[row]));
    const full = rlooAdvantages(seqR, b.G, b.valid);
    let a: Float64Array = Float64Array.from(b.use.map((i) => full[i]));
    if (cfg.normalizeAdvantages) a = whiten(a, new Float64Array(b.B).fill(1), true);
    for (let row = 0; row < b.B; row++) for (let j = 0; j < b.R; j++) if (b.mask[row * b.R + j]) out.tokAdv[row * b.R + j] = a[row];
    return out;
  },
  policyLoss: tokenPolicyLoss,
};

export const ALGORITHMS: Record<TrainConfig["algo"], Algorithm> = { ppo, grpo, rloo };
