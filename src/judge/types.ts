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
}

/** Input to scoring: one response to one prompt of a task. */
export interface ScoreInput {
  taskDescription: string;
  prompt: string;
  response: string;
  reference?: string;
  /** Group key for grouped guidelines (math: domain/cluster). */
  group?: string;
}
