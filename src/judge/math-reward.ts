/**
 * The paper's mixed math reward. Per BATCH a seeded coin decides the path: with probability p, an exact
 * answer check only (last \boxed{} vs gold: 5 or 0); otherwise the LLM plan/execute judge (0–5) with the
 * group's guidelines. Both paths give 0 without asking anyone when the reasoning is too short (< 30 words
 * by default), so bare answers never pay. Mixing keeps the reward anchored to correctness while the
 * judge (whose guidelines the meta step evolves) rewards sound reasoning.
 */
import type { GuidelineVersion } from "../rubric/types.ts";
import type { Rng } from "../util/rng.ts";
import { isTooShort, lastBoxed, mathAnswersEqual } from "../verify/index.ts";
import { PLAN_EXECUTE_MAX, PLAN_EXECUTE_MIN, type PlanExecuteJudge } from "./plan-execute.ts";
import { type Evaluation, JudgeUnavailableError, type ScoreInput, type ScoreOutcome } from "./types.ts";
import { goldAnswer } from "./verifier-reward.ts";

export type MathPath = "answer-check" | "plan-execute";

/** A math input: `gold` is the final answer; default: the last \boxed{} of `reference`. */
export type MathInput = ScoreInput & { gold?: string };

export interface MathMixedRewardOptions {
  judge: PlanExecuteJudge;
  rng: Rng;
  /** Probability of the answer-check path per batch (paper: 0.5). */
  answerCheckProbability?: number;
  /** Minimum reasoning words (paper: 30). */
  minWords?: number;
  concurrency?: number;
}

export interface MathBatchResult {
  path: MathPath;
  outcomes: ScoreOutcome[];
}

function fixed(score: number, path: MathPath, version: number, rationale: string, raw: string, flags: string[]): Evaluation {
  const allFlags = [`path:${path}`, ...flags];
  return {
    items: [{ name: path, score, min: PLAN_EXECUTE_MIN, max: PLAN_EXECUTE_MAX, rationale, raw, flags }],
    total: score,
    normalized: (score - PLAN_EXECUTE_MIN) / (PLAN_EXECUTE_MAX - PLAN_EXECUTE_MIN),
    rubricVersion: version,
    mode: "mixed",
    flags: allFlags,
    raw: raw ? [raw] : [],
  };
}

export class MathMixedReward {
  private readonly judge: PlanExecuteJudge;
  private readonly rng: Rng;
  readonly p: number;
  readonly minWords: number;
  private readonly concurrency?: number;

  constructor(opts: MathMixedRewardOptions) {
    this.judge = opts.judge;
    this.rng = opts.rng;
    this.p = opts.answerCheckProbability ?? 0.5;
    this.minWords = opts.minWords ?? 30;
    this.concurrency = opts.concurrency;
    if (!(this.p >= 0 && this.p <= 1)) throw new RangeError(`answerCheckProbability must be in [0, 1], got ${this.p}`);
  }

  /** The exact answer check of one response: 5 when the last boxed answer equals the gold answer, else 0. */
  answerCheck(input: MathInput, version: number): Evaluation {
    if (isTooShort(input.response, this.minWords)) return fixed(0, "answer-check", version, `reasoning shorter than ${this.minWords} words`, "", ["too-short"]);
    const gold = input.gold ?? (input.reference ? goldAnswer(input.reference) : undefined);
    if (gold === undefined || gold === "") return fixed(0, "answer-check", version, "no gold answer", "", ["no-gold"]);
    const got = lastBoxed(input.response);
    if (got === null) return fixed(0, "answer-check", version, "no \\boxed{} answer", "", ["no-answer"]);
    const ok = mathAnswersEqual(got, gold);
    return fixed(ok ? PLAN_EXECUTE_MAX : PLAN_EXECUTE_MIN, "answer-check", version, ok ? `answer ${got} matches ${gold}` : `answer ${got} differs from ${gold}`, got, []);
  }

  /**
   * Scores one batch: one coin toss (drawn from the seeded Rng) picks the path for the whole batch.
   * Plan/execute outcomes can be unavailable (judge down); answer checks never are.
   */
  async scoreBatch(inputs: readonly MathInput[], guidelines: GuidelineVersion, opts: { signal?: AbortSignal } = {}): Promise<MathBatchResult> {
    const path: MathPath = this.rng.random() < this.p ? "answer-check" : "plan-execute";
    if (path === "answer-check") {
      return { path, outcomes: inputs.map((inp) => ({ ok: true, evaluation: this.answerCheck(inp, guidelines.version) })) };
    }
    const longEnough = inputs.map((inp) => !isTooShort(inp.response, this.minWords));
    const toJudge = inputs.filter((_, i) => longEnough[i]);
    const judged = await this.judge.scoreBatchSettled(toJudge, guidelines, { concurrency: this.concurrency, signal: opts.signal });
    let k = 0;
    const outcomes = inputs.map((_, i): ScoreOutcome => {
      if (!longEnough[i]) return { ok: true, evaluation: fixed(0, "plan-execute", guidelines.version, `reasoning shorter than ${this.minWords} words`, "", ["too-short"]) };
      const o = judged[k++];
      if (!o.ok) return { ok: false, error: new JudgeUnavailableError(o.error.message, { cause: o.error.cause, inputIndex: i }) };
      return { ok: true, evaluation: { ...o.evaluation, mode: "mixed", flags: ["path:plan-execute", ...o.evaluation.flags] } };
    });
    return { path, outcomes };
  }
}
