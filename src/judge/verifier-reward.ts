/**
 * Pure rule-verifier rewards as Evaluations (mode "verifier"), so verifier-scored tasks flow through the
 * same rollout/metrics plumbing as LLM-judged ones: the last \boxed{} answer against the gold answer
 * (MATH equivalence), or the last <verdict> tag against the gold label (ethics).
 */
import { isTooShort, lastBoxed, mathAnswersEqual } from "../verify/index.ts";
import { extractVerdict } from "../verify/verdict.ts";
import type { Evaluation } from "./types.ts";

export interface VerifierOptions {
  /** Score for a correct answer (default 1); a wrong one gets 0. */
  correct?: number;
  /** Responses with fewer words score 0 (flag "too-short"); default: no minimum. */
  minWords?: number;
}

/** The gold answer of a MATH-style reference: its last \boxed{} content, else the whole (trimmed) text. */
export function goldAnswer(referenceOrLabel: string): string {
  return lastBoxed(referenceOrLabel) ?? referenceOrLabel.trim();
}

function evaluation(name: string, ok: boolean, correct: number, rationale: string, raw: string, flags: string[]): Evaluation {
  const score = ok ? correct : 0;
  return {
    items: [{ name, score, min: 0, max: correct, rationale, raw, flags }],
    total: score,
    normalized: correct > 0 ? score / correct : 0,
    rubricVersion: 0,
    mode: "verifier",
    flags: [...flags],
    raw: [raw],
  };
}

/** Last \boxed{} answer of `response` vs `gold` (a label or a reference solution with \boxed{}). */
export function boxedAnswerEvaluation(response: string, gold: string, opts: VerifierOptions = {}): Evaluation {
  const correct = opts.correct ?? 1;
  const want = goldAnswer(gold);
  const got = lastBoxed(response);
  if (opts.minWords !== undefined && isTooShort(response, opts.minWords)) {
    return evaluation("answer", false, correct, `reasoning shorter than ${opts.minWords} words`, got ?? "", ["too-short"]);
  }
  if (got === null) return evaluation("answer", false, correct, "no \\boxed{} answer", "", ["no-answer"]);
  const ok = mathAnswersEqual(got, want);
  return evaluation("answer", ok, correct, ok ? `answer ${got} matches ${want}` : `answer ${got} differs from ${want}`, got, []);
}

/** Last <verdict>RIGHT|WRONG</verdict> of `response` vs the gold label (case-insensitive). */
export function verdictEvaluation(response: string, gold: string, opts: VerifierOptions = {}): Evaluation {
  const correct = opts.correct ?? 1;
  const got = extractVerdict(response);
  if (got === null) return evaluation("verdict", false, correct, "no <verdict> tag", "", ["no-verdict"]);
  const want = gold.trim().toUpperCase();
  const ok = got === want;
  return evaluation("verdict", ok, correct, ok ? `verdict ${got} matches` : `verdict ${got}, gold ${want}`, got, []);
}
