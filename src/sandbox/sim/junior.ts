/**
 * The simulated junior judge (RM). It reads the real RM conversation produced by the judge's prompt
 * templates (prompts/rm/*), so the rubric text it sees is exactly what a real LLM would see, and answers the
 * way a real model does: one rationale sentence per item, then an integer.
 *
 * Its behaviour models a mid-sized instruction-tuned judge:
 *  - it scores only the aspects an item's wording names (recognised from the criterion text);
 *  - an item that names nothing it can check gets a lenient impression score;
 *  - it is generous by about half a level and sometimes off by one (seeded noise).
 * So a vague rubric leaves gaps a policy can exploit, and a rubric that names a problem closes that gap.
 */
import { Rng, hashString } from "../../util/rng.ts";
import { aspectsOf, describe, perceive, type Aspect, type Perception } from "./perception.ts";

export interface JuniorItem {
  name: string;
  text: string;
  min: number;
  max: number;
}

export interface JuniorVerdict {
  aspects: Aspect[];
  quality: number;
  score: number;
  rationale: string;
}

export function juniorJudgeItem(item: JuniorItem, prompt: string, response: string, seed = 0): JuniorVerdict {
  const p = perceive(prompt, response);
  const aspects = aspectsOf(`${item.name}\n${item.text}`);
  const quality = aspects.length ? Math.min(...aspects.map((a) => p.quality[a])) * 0.5 + mean(aspects.map((a) => p.quality[a])) * 0.5 : impression(p);
  // Deterministic per (item, response) noise: the same text gets the same score, like temperature-0 decoding.
  const rng = new Rng(hashString(`${seed}|${item.name}|${response}`));
  const leniency = 0.5;
  let level = item.min + quality * (item.max - item.min) + leniency;
  if (rng.random() < 0.2) level += rng.random() < 0.5 ? -1 : 1;
  const score = Math.max(item.min, Math.min(item.max, Math.floor(level)));
  const rationale = aspects.length ? aspects.map((a) => describe(a, p)).slice(0, 2).join(" ") : `Overall the response reads as a reasonable attempt at the task (${p.words} words).`;
  return { aspects, quality, score, rationale };
}

/** What a judge gives when the criterion names nothing checkable: mostly "looks like an answer". */
function impression(p: Perception): number {
  return p.words === 0 ? 0 : Math.min(1, 0.55 + p.words / 150);
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);
}
