/**
 * Keyword reward: deterministic, instant, no LLM. Used by the built-in toy task, the end-to-end tests and
 * as a cheap sanity baseline for real runs.
 *
 *   keyword: score = (occurrences of the target word) / (number of words), in [0, 1]; the target is
 *            `word` when given, else the record's label / meta.target. An empty response scores 0.
 */
import type { RewardFunction, RewardResult, RewardSample } from "../reward-types.ts";

/** Lower-cased words (letters and digits) of a text. */
export function words(text: string): string[] {
  return text
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter(Boolean);
}

export class KeywordReward implements RewardFunction {
  readonly name = "keyword";
  constructor(private readonly word?: string) {}

  targetOf(sample: RewardSample): string | undefined {
    const meta = sample.record.meta as { target?: unknown } | undefined;
    const t = this.word ?? sample.record.label ?? (typeof meta?.target === "string" ? meta.target : undefined);
    return t?.toLowerCase();
  }

  async score(samples: RewardSample[]): Promise<RewardResult[]> {
    return samples.map((s) => {
      const target = this.targetOf(s);
      if (!target) return { score: null, normalized: null, flags: ["no-target"] };
      const ws = words(s.response);
      const hits = ws.filter((w) => w === target).length;
      const score = ws.length ? hits / ws.length : 0;
      return { score, normalized: score, flags: ws.length ? [] : ["empty-response"] };
    });
  }

  rubricVersion(): number {
    return 0;
  }
}
