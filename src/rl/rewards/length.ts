/**
 * Length reward: deterministic, no LLM; a sanity baseline.
 *   score = 1 inside [min, max] words, falling linearly to 0 at distance max outside.
 */
import type { RewardFunction, RewardResult, RewardSample } from "../reward-types.ts";
import { words } from "./keyword.ts";

export class LengthReward implements RewardFunction {
  readonly name = "length";
  constructor(
    private readonly min: number,
    private readonly max: number,
  ) {}

  async score(samples: RewardSample[]): Promise<RewardResult[]> {
    return samples.map((s) => {
      const n = words(s.response).length;
      const dist = n < this.min ? this.min - n : n > this.max ? n - this.max : 0;
      const score = Math.max(0, 1 - dist / Math.max(1, this.max));
      return { score, normalized: score, flags: [] };
    });
  }

  rubricVersion(): number {
    return 0;
  }
}
