/**
 * The paper's mixed math reward. Per BATCH a seeded coin decides the path: with probability p, an exact
 * answer check only (last \boxed{} vs gold: 5 or 0); otherwise the LLM plan/execute judge (0–5) with the
 * group's guidelines. Both paths give 0 without asking anyone when the reasoning is too short (< 30 words
 * by default), so bare answers never pay. Mixing keeps the reward anchored to correctness while the
 * judge (whose guidelines the meta step evolves) rewards sound reasoning.
 */
import type { GuidelineVersion } from "../rubric/types.ts";
import type { Rng } from "../util/rng.ts";
import { type AnswerBox, boxedAnswer, firstBoxed, isTooShort, mathAnswersEqual, referenceAnswersEqual } from "../verify/index.ts";
import { PLAN_EXECUTE_MAX, PLAN_EXECUTE_MIN, type PlanExecuteJudge } from "./plan-execute.ts";
import { type Evaluation, JudgeUnavailableError, type ScoreInput, type ScoreOutcome } from "./types.ts";
import { goldAnswer } from "./verifier-reward.ts";

export type MathPath = "answer-check" | "plan-execute";

/** A math input: `gold` is the final answer; default: the answer box (first or last, per options) of `reference`. */
export type MathInput = ScoreInput & { gold?: string };

export interface MathMixedRewardOptions {
  judge: PlanExecuteJudge;
  rng: Rng;
  /** Probability of the answer-check path per batch (paper: 0.5). */
  answerCheckProbability?: number;
  /** Minimum reasoning words (paper: 30). */
  minWords?: number;
  concurrency?: number;
  /** Which \boxed{} is the answer (default "first", as the reference reads it; "last" is the MATH convention). */
  answerBox?: AnswerBox;
  /** "reference": the reference's normalisation then string equality (default); "lenient": ours, which also equates equal rationals. */
  answerMatch?: "reference" | "lenient";
}

/** Whether two final answers match under the chosen rule. */
export function answersMatch(got: string, gold: string, rule: "reference" | "lenient"): boolean {
  return rule === "reference" ? referenceAnswersEqual(got, gold) : mathAnswersEqual(got, gold);
}

/**
 * Too little reasoning for any credit. "first"-box mode counts as the reference does: the response with
 * its answer text and every "\boxed{" removed, split on whitespace. "last"-box mode counts word-like
 * tokens of the whole response (src/verify/reasoning.ts).
 */
export function reasoningTooShort(response: string, minWords: number, box: AnswerBox): boolean {
  if (box === "last") return isTooShort(response, minWords);
  const answer = firstBoxed(response) ?? "";
  const rest = (answer ? response.split(answer).join("") : response).split("\\boxed{").join("").trim();
  return (rest === "" ? 0 : rest.split(/\s+/).length) < minWords;
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
  readonly answerBox: AnswerBox;
  readonly answerMatch: "reference" | "lenient";
  private readonly concurrency?: number;

  constructor(opts: MathMixedRewardOptions) {
    this.judge = opts.judge;
    this.rng = opts.rng;
    this.p = opts.answerCheckProbability ?? 0.5;
    this.minWords = opts.minWords ?? 30;
    this.answerBox = opts.answerBox ?? "first";
    this.answerMatch = opts.answerMatch ?? "reference";
    this.concurrency = opts.concurrency;
    if (!(this.p >= 0 && this.p <= 1)) throw new RangeError(`answerCheckProbability must be in [0, 1], got ${this.p}`);
  }

  /** The gold answer: the reference solution's answer box when it has one (first-box mode), else `gold`, else the reference's last box. */
  gold(input: MathInput): string | undefined {
    const fromReference = this.answerBox === "first" && input.reference ? firstBoxed(input.reference)?.trim() : undefined;
    return fromReference || input.gold || (input.reference ? goldAnswer(input.reference) : undefined);
  }

  /** The exact answer check of one response: 5 when its answer box matches the gold answer, else 0. */
  answerCheck(input: MathInput, version: number): Evaluation {
    if (reasoningTooShort(input.response, this.minWords, this.answerBox)) return fixed(0, "answer-check", version, `reasoning shorter than ${this.minWords} words`, "", ["too-short"]);
    const gold = this.gold(input);
    if (gold === undefined || gold === "") return fixed(0, "answer-check", version, "no gold answer", "", ["no-gold"]);
    const got = boxedAnswer(input.response, this.answerBox)?.trim() ?? null;
    if (got === null || got.replace(/ /g, "") === "") return fixed(0, "answer-check", version, "no \\boxed{} answer", "", ["no-answer"]);
    const ok = answersMatch(got, gold, this.answerMatch);
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
    const longEnough = inputs.map((inp) => !reasoningTooShort(inp.response, this.minWords, this.answerBox));
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
