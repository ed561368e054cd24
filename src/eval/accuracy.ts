/**
 * Answer accuracy for tasks with checkable answers, using the same parsers and equivalence as the reward
 * core (src/verify), so an evaluation never disagrees with what training rewarded:
 *   - "boxed": the last \boxed{…} of the prediction vs the gold answer (gold may itself be a worked
 *     solution; then its last box is used), compared with mathAnswersEqual;
 *   - "verdict": the last <verdict>RIGHT|WRONG</verdict> of the prediction vs the gold label.
 * Unparsable predictions count as wrong in `accuracy` and are reported separately; records whose gold is
 * unusable (e.g. MATH's two empty boxes) are excluded and counted, never silently scored.
 */
import { UserError } from "../util/errors.ts";
import { extractVerdict, lastBoxed, mathAnswersEqual } from "../verify/index.ts";

export type AnswerChecker = "boxed" | "verdict";

export interface AccuracyItem {
  id: string;
  prediction: string;
  gold: string;
}

export interface AccuracyResult {
  checker: AnswerChecker;
  /** Records scored (excludes goldUnusable). */
  n: number;
  correct: number;
  /** Parsed answer that did not match. */
  wrong: number;
  /** No answer could be read from the prediction (counted as wrong in `accuracy`). */
  unparsable: number;
  goldUnusable: number;
  /** correct / n. */
  accuracy: number;
  /** correct / (n − unparsable): accuracy among readable answers. */
  accuracyParsed: number;
  /** verdict: per gold label counts. */
  perLabel?: Record<string, { n: number; correct: number }>;
  items: Array<{ id: string; extracted: string | null; gold: string; correct: boolean }>;
  excluded: string[];
}

function goldAnswer(checker: AnswerChecker, gold: string): string | null {
  if (checker === "boxed") {
    const g = gold.includes("\\boxed") || gold.includes("\\fbox") ? lastBoxed(gold) : gold.trim();
    return g && g.trim() !== "" ? g.trim() : null;
  }
  const g = gold.trim().toUpperCase();
  return g === "RIGHT" || g === "WRONG" ? g : null;
}

export function accuracyFor(checker: AnswerChecker, items: AccuracyItem[]): AccuracyResult {
  if (checker !== "boxed" && checker !== "verdict") throw new UserError(`unknown answer checker '${checker}' (use boxed or verdict)`);
  const r: AccuracyResult = { checker, n: 0, correct: 0, wrong: 0, unparsable: 0, goldUnusable: 0, accuracy: 0, accuracyParsed: 0, items: [], excluded: [] };
  if (checker === "verdict") r.perLabel = {};
  for (const it of items) {
    const gold = goldAnswer(checker, it.gold);
    if (gold === null) {
      r.goldUnusable++;
      r.excluded.push(it.id);
      continue;
    }
    r.n++;
    const extracted = checker === "boxed" ? lastBoxed(it.prediction) : extractVerdict(it.prediction);
    let correct = false;
    if (extracted === null) r.unparsable++;
    else {
      correct = checker === "boxed" ? mathAnswersEqual(extracted, gold) : extracted === gold;
      if (correct) r.correct++;
      else r.wrong++;
    }
    if (r.perLabel) {
      const pl = (r.perLabel[gold] ??= { n: 0, correct: 0 });
      pl.n++;
      if (correct) pl.correct++;
    }
    r.items.push({ id: it.id, extracted, gold, correct });
  }
  r.accuracy = r.n ? r.correct / r.n : 0;
  r.accuracyParsed = r.n - r.unparsable ? r.correct / (r.n - r.unparsable) : 0;
  return r;
}

export function formatAccuracy(r: AccuracyResult): string {
  const pct = (x: number) => (100 * x).toFixed(2) + "%";
  const lines = [
    `accuracy (${r.checker}): ${pct(r.accuracy)} — ${r.correct}/${r.n} correct, ${r.wrong} wrong, ${r.unparsable} unparsable (accuracy among parsed: ${pct(r.accuracyParsed)})`,
  ];
  if (r.goldUnusable) lines.push(`${r.goldUnusable} record(s) excluded: gold answer unusable (e.g. ${r.excluded.slice(0, 3).join(", ")})`);
  if (r.perLabel) for (const [l, s] of Object.entries(r.perLabel)) lines.push(`  gold ${l}: ${s.correct}/${s.n}`);
  return lines.join("\n") + "\n";
}
