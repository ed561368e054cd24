/**
 * The sandbox's pairwise *evaluation* judge: answers the project's Elo prompt (prompts/eval/elo-judge*.md)
 * with a preference that follows the held-out oracle (../oracle.ts). Reading the oracle is allowed here —
 * this judge only ranks finished policies, like the paper's GPT-4o Elo judge; no reward ever sees it.
 *   P(judge names A) = agreement + bias     if the oracle rates A higher,
 *                      1 − agreement + bias if it rates B higher,
 *                      0.5 + bias           on an oracle tie,
 * clamped to [0, 1], drawn with noise seeded by (seed, prompt, A, B): over pairs shown in both orders the
 * judge picks the oracle-better response at rate `agreement`, and names "A" bias more often than "B".
 */
import { Rng, hashString } from "../../util/rng.ts";
import { EssayOracle } from "../oracle.ts";
import { sandboxPromptOf, section } from "./autoprompt.ts";
import { seniorQuality } from "./senior.ts";

export interface EloJudgeSettings {
  /** Probability of preferring the oracle-better response (default 0.8). */
  agreement: number;
  /** Added to the probability of answering "A" (default 0.05). */
  positionBias: number;
}

export const DEFAULT_ELO_JUDGE: EloJudgeSettings = { agreement: 0.8, positionBias: 0.05 };

export function isEloPrompt(user: string): boolean {
  return /<winner>/.test(user) && /## Response A\n/.test(user) && /## Response B\n/.test(user);
}

export class SimEloJudge {
  private oracle: EssayOracle | null = null;
  private readonly cache = new Map<string, number>();
  constructor(
    readonly settings: EloJudgeSettings = DEFAULT_ELO_JUDGE,
    readonly seed = 0,
  ) {
    for (const [k, v] of Object.entries(settings)) if (!Number.isFinite(v)) throw new Error(`elo judge setting '${k}' must be a number, got ${v}`);
    if (settings.agreement < 0 || settings.agreement > 1) throw new Error(`elo judge agreement must be in [0, 1], got ${settings.agreement}`);
  }

  /** The oracle score of a response to a prompt (the senior's reading for prompts outside the essay world). */
  quality(prompt: string, response: string): number {
    const key = `${prompt}\u0000${response}`;
    const hit = this.cache.get(key);
    if (hit !== undefined) return hit;
    const p = sandboxPromptOf(prompt);
    this.oracle ??= new EssayOracle();
    const q = p ? this.oracle.score(p.topic, response).score : seniorQuality(prompt, response).quality;
    if (this.cache.size > 100_000) this.cache.clear();
    this.cache.set(key, q);
    return q;
  }

  verdict(prompt: string, a: string, b: string): "A" | "B" {
    const qa = this.quality(prompt, a);
    const qb = this.quality(prompt, b);
    const { agreement, positionBias } = this.settings;
    const base = Math.abs(qa - qb) < 1e-9 ? 0.5 : qa > qb ? agreement : 1 - agreement;
    const pA = Math.min(1, Math.max(0, base + positionBias));
    return new Rng(hashString(`${this.seed}|elo|${prompt}|${a}|${b}`)).random() < pA ? "A" : "B";
  }

  reply(user: string): string {
    const prompt = section(user, "Request");
    const a = section(user, "Response A");
    const b = section(user, "Response B");
    const v = this.verdict(prompt, a, b);
    return `Response ${v} serves the request better.\n<winner>${v}</winner>`;
  }
}
