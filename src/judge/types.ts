/** What the junior judge (RM) produces for one scored response. Plain data, stored in rollouts. */

export interface ItemEvaluation {
  name: string;
  /** Integer in [min, max]; after clamping or fallback when flagged. */
  score: number;
  min: number;
  max: number;
  rationale: string;
  /** Raw model text for the score (and rationale, in per-item mode). */
  raw: string;
  /** e.g. "clamped", "unparsed-fallback", "missing-item", "refusal", "empty-reply". */
  flags: string[];
}

export interface Evaluation {
  items: ItemEvaluation[];
  /** Sum (or weighted sum) of item scores. Never NaN. */
  total: number;
  /** total mapped to [0, 1] using the rubric's min/max totals. */
  normalized: number;
  rubricVersion: number;
  mode: "per-item" | "single-call" | "plan-execute" | "verifier" | "mixed";
  flags: string[];
  /** Every raw model text of this evaluation, in order. */
  raw: string[];
  /** Plan/execute mode: the evaluation plan (the execution is the item's rationale). */
  plan?: string;
}

/** Input to scoring: one response to one prompt of a task. */
export interface ScoreInput {
  taskDescription: string;
  prompt: string;
  response: string;
  reference?: string;
  /** Group key for grouped guidelines (math: domain/cluster). */
  group?: string;
  /** The judge's system turn for this input (the task's persona); overrides the judge's own. */
  persona?: string;
}

/**
 * The judge could not produce a score for a response because its LLM failed (server down, timeouts,
 * HTTP errors after the client's retries). Distinct from a judge-level parsing problem, which yields a
 * flagged fallback score: callers must EXCLUDE such samples (trainer) or answer 503 (reward service) —
 * never substitute a number.
 */
export class JudgeUnavailableError extends Error {
  constructor(
    message: string,
    options?: { cause?: unknown; inputIndex?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "JudgeUnavailableError";
    this.inputIndex = options?.inputIndex;
  }

  /** Index of the input within a batch, when known. */
  readonly inputIndex?: number;
}

/** One batch entry: an evaluation, or the explicit reason there is none. */
export type ScoreOutcome = { ok: true; evaluation: Evaluation } | { ok: false; error: JudgeUnavailableError };
