/**
 * The simulated senior judge (MRM). It reads the real meta-step prompts (prompts/mrm/*): the rollout, the
 * current rubric and the junior's scores and rationales — and nothing else (it never sees the oracle). It
 * notices every aspect in ./perception.ts, not only those the rubric names, and writes its analyses and
 * refined rubric items in natural language. The junior then recognises the refined items by their wording,
 * just as a real judge reads a clearer rubric.
 */
import { ALL_ASPECTS, aspectsOf, describe, perceive, type Aspect } from "./perception.ts";

/** The senior's own wording for a criterion on each aspect (score levels and deductions included). */
const CRITERIA: Record<Aspect, { title: string; body: string }> = {
  discourse: {
    title: "Flow between ideas",
    body: `Do the sentences follow from one another, with transitions that link real ideas? Score from 0 to 5.
- 5: each sentence builds on the previous one, e.g. a reason followed by its example.
- 3: mostly linked, with a few abrupt jumps.
- 0: a heap of unrelated sentences.`,
  },
  relevance: {
    title: "Relevance to the prompt",
    body: `Does every sentence address the prompt's topic and instruction? Score from 0 to 5.
- 5: every sentence serves the prompt, e.g. each argument is about the subject named in the prompt.
- 3: some sentences drift to unrelated subjects.
- 0: mostly off-topic. Deduct 1 point for each sentence about an unrelated subject.`,
  },
  repetition: {
    title: "No repetition",
    body: `Does each sentence add something new? Score from 0 to 5.
- 5: no sentence or idea is repeated.
- 2: one sentence is repeated.
- 0: the same sentence is repeated several times to pad the text. Deduct 2 points for every repeated sentence.`,
  },
  completeness: {
    title: "Complete ending",
    body: `Is the response finished, with a closing sentence? Score from 0 to 5.
- 5: it reaches a clear conclusion, e.g. a final sentence that answers the prompt.
- 2: it ends abruptly without a conclusion.
- 0: it is cut off in the middle of a sentence.`,
  },
  development: {
    title: "Development and detail",
    body: `Are the ideas developed with supporting detail and enough substance? Score from 0 to 5.
- 5: several distinct points, each supported with a reason or example, over at least 60 words.
- 3: a few points with thin support.
- 0: one line or almost no substance. A response under 20 words scores at most 1.`,
  },
  structure: {
    title: "Organized prose",
    body: `Is the response organized as prose that carries out the instruction? Score from 0 to 5.
- 5: an opening, a body and a closing in full sentences.
- 2: a bare bullet list instead of sentences.
- 0: a title-only answer with no body.`,
  },
  filler: {
    title: "No filler",
    body: `Is every sentence about something, rather than filler? Score from 0 to 5.
- 5: no empty phrases.
- 2: one or two filler sentences that string linking words together without content.
- 0: mostly filler. Deduct 2 points for each sentence that says nothing about the topic.`,
  },
  language: {
    title: "Well-formed language",
    body: `Is the wording well-formed, without garbled or non-words? Score from 0 to 5.
- 5: every word is a real word in a grammatical sentence.
- 2: several garbled words.
- 0: mostly gibberish.`,
  },
};

/** The senior's title for the criterion on an aspect (e.g. "No filler"). */
export function criterionTitle(a: Aspect): string {
  return CRITERIA[a].title;
}

export function criterionItem(a: Aspect): string {
  return `<item>\n### ${CRITERIA[a].title}\n${CRITERIA[a].body}\n</item>`;
}

/** The senior's overall reading of a response in [0, 1] (all aspects weighted equally). */
export function seniorQuality(prompt: string, response: string): { quality: number; problems: Aspect[] } {
  const p = perceive(prompt, response);
  const qs = ALL_ASPECTS.map((a) => p.quality[a]);
  // A careful reader weighs the worst real problem heavily; sparse connectives alone are not one.
  const worst = Math.min(...ALL_ASPECTS.filter((a) => a !== "discourse").map((a) => p.quality[a]));
  const quality = 0.5 * (qs.reduce((s, q) => s + q, 0) / qs.length) + 0.5 * worst;
  const problems = ALL_ASPECTS.filter((a) => p.quality[a] < 0.7).sort((a, b) => p.quality[a] - p.quality[b]);
  return { quality, problems };
}

export interface AnalysisInput {
  prompt: string;
  response: string;
  rubric: string;
  /** Junior's normalized total in [0, 1], if the evaluation showed it. */
  juniorNormalized: number | null;
}

export function analyze(x: AnalysisInput): { text: string; missing: Aspect[]; covered: Aspect[] } {
  const p = perceive(x.prompt, x.response);
  const { quality, problems } = seniorQuality(x.prompt, x.response);
  const covered = aspectsOf(x.rubric);
  const missing = problems.filter((a) => !covered.includes(a));
  const lines: string[] = [];
  const j = x.juniorNormalized;
  if (j === null) lines.push(`1. I could not read the junior's total; on its own merits this response deserves about ${Math.round(quality * 100)}% of the points.`);
  else if (j - quality > 0.15) lines.push(`1. The junior's total (${Math.round(j * 100)}% of the points) is inflated: the response deserves about ${Math.round(quality * 100)}%.`);
  else if (quality - j > 0.15) lines.push(`1. The junior's total (${Math.round(j * 100)}% of the points) is too harsh: the response deserves about ${Math.round(quality * 100)}%.`);
  else lines.push(`1. The junior's total (${Math.round(j * 100)}% of the points) is about right.`);
  if (missing.length) lines.push(`2. The rubric misses: ${missing.map((a) => `${CRITERIA[a].title.toLowerCase()} (${describe(a, p)})`).join("; ")}.`);
  else lines.push("2. The rubric's criteria cover the problems this response has.");
  const exploits = problems.filter((a) => ["repetition", "filler", "structure", "relevance", "development"].includes(a));
  if (exploits.length) lines.push(`3. The response earns points without doing the task: ${exploits.map((a) => describe(a, p)).join(" ")} These should cost points.`);
  else lines.push("3. I see no exploitation of the rubric here.");
  lines.push(missing.length ? `4. Add criteria: ${missing.map((a) => CRITERIA[a].title).join(", ")}, with explicit deductions.` : "4. Keep the criteria; state their score levels explicitly.");
  return { text: lines.join("\n"), missing, covered };
}

/** A refined rubric: the aspects the current rubric covers, plus those the analysis found missing. */
export function refine(currentRubric: string, missing: Aspect[], currentItems: string[]): string {
  const covered = aspectsOf(currentRubric);
  const aspects = ALL_ASPECTS.filter((a) => covered.includes(a) || missing.includes(a));
  // Items the senior cannot map to an aspect are kept as written.
  const kept = currentItems.filter((t) => aspectsOf(t).length === 0).map((t) => `<item>\n${t.trim()}\n</item>`);
  return `<rubric>\n${[...aspects.map(criterionItem), ...kept].join("\n")}\n</rubric>`;
}

/** Merge: keep every aspect that enough proposals ask for, written once; unmappable items deduplicated. */
export function merge(proposals: string[][]): string {
  const votes = new Map<Aspect, number>();
  const other = new Map<string, string>();
  for (const items of proposals) {
    const seen = new Set<Aspect>();
    for (const it of items) {
      const as = aspectsOf(it);
      if (as.length === 0) other.set(it.toLowerCase().replace(/\s+/g, " ").trim(), it.trim());
      for (const a of as) seen.add(a);
    }
    for (const a of seen) votes.set(a, (votes.get(a) ?? 0) + 1);
  }
  const need = Math.max(1, Math.ceil(0.2 * proposals.length));
  const aspects = ALL_ASPECTS.filter((a) => (votes.get(a) ?? 0) >= need);
  const items = [...aspects.map(criterionItem), ...[...other.values()].slice(0, 2).map((t) => `<item>\n${t}\n</item>`)];
  return `<rubric>\n${items.join("\n")}\n</rubric>`;
}

export function prescreen(x: AnalysisInput): "sound" | "flawed" {
  const { quality } = seniorQuality(x.prompt, x.response);
  return x.juniorNormalized !== null && Math.abs(x.juniorNormalized - quality) > 0.15 ? "flawed" : "sound";
}
