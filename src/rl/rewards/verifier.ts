import { boxedAnswerEvaluation, verdictEvaluation } from "../../judge/verifier-reward.ts";
import type { RewardFunction, RewardResult, RewardSample } from "../reward-types.ts";

/** Rule verifier reward (no LLM): boxed-answer equivalence or verdict-tag match against the record's gold. */
export class VerifierReward implements RewardFunction {
  readonly name: string;
  constructor(private readonly verifier: "boxed" | "verdict") {
    this.name = `verifier-${verifier}`;
  }
  async score(samples: RewardSample[]): Promise<RewardResult[]> {
    return samples.map((s) => {
      const gold = s.record.label ?? s.record.reference;
      if (gold === undefined) return { score: null, normalized: null, flags: ["no-gold-answer"] };
      const e = this.verifier === "boxed" ? boxedAnswerEvaluation(s.response, gold) : verdictEvaluation(s.response, gold);
      return { score: e.total, normalized: e.normalized, evaluation: e, flags: e.flags };
    });
  }
  rubricVersion(): number {
    return 0;
  }
}
