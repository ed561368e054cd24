/**
 * The simulated senior's answers to the calibration prompts of `mpo autoprompt` (prompts/autoprompt/*):
 *   generate  boundary cases in the requested styles, written by the sandbox's essay writer with the
 *             style's flaw forced on (title-only, filler, off-topic, repetition, truncation, …);
 *   annotate  a 0–10 grade from the senior's own reading (./senior.ts seniorQuality — never the oracle);
 *   analyze   which problems of over-scored cases the rubric does not name (the senior's perception);
 *   revise    the rubric with criteria for those problems added (the same wording as in MPO's refine).
 * Everything is seeded by the request text, so the same request gets the same reply (temperature 0).
 */
import { Rng, hashString } from "../../util/rng.ts";
import { DEFAULT_RATES, writeEssay, type WriterRates } from "../essay-writer.ts";
import { sandboxPrompts, type SandboxPrompt } from "../world.ts";
import { ALL_ASPECTS, aspectsOf, describe, guessTopic, perceive, type Aspect } from "./perception.ts";
import { criterionTitle, refine, seniorQuality } from "./senior.ts";

export function section(text: string, heading: string): string {
  const start = text.indexOf(`## ${heading}\n`);
  if (start === -1) return "";
  const rest = text.slice(start + heading.length + 4);
  const end = rest.search(/\n## [A-Z]/);
  return (end === -1 ? rest : rest.slice(0, end)).trim();
}

let byText: Map<string, SandboxPrompt> | null = null;
/** The sandbox prompt behind a prompt text (exact, else by the topic a reader would guess). */
export function sandboxPromptOf(prompt: string): SandboxPrompt | null {
  byText ??= new Map(sandboxPrompts("all").map((p) => [p.prompt.trim(), p]));
  const exact = byText.get(prompt.trim());
  if (exact) return exact;
  const t = guessTopic(prompt);
  return t ? { id: `${t.id}.explain`, prompt, topic: t.id, instruction: "explain" } : null;
}

const CLEAN: WriterRates = { offTopic: 0, repetition: 0, filler: 0, unfinished: 0, titleOnly: 0, list: 0 };

/** Which flaw a style asks for, read from its name and description. */
export function ratesForStyle(style: string): WriterRates {
  const s = style.toLowerCase();
  if (/title/.test(s)) return { ...CLEAN, titleOnly: 1 };
  if (/bullet|\blist\b/.test(s)) return { ...CLEAN, list: 1 };
  if (/filler|padding|say nothing|linking phrases/.test(s)) return { ...CLEAN, filler: 1 };
  if (/off[- ]topic|different subject/.test(s)) return { ...CLEAN, offTopic: 1 };
  if (/repet|repeat/.test(s)) return { ...CLEAN, repetition: 1 };
  if (/truncat|cut off|unfinished|stops in the middle/.test(s)) return { ...CLEAN, unfinished: 1 };
  if (/strong|excellent|genuinely good|fully does/.test(s)) return CLEAN;
  return DEFAULT_RATES;
}

export function simGenerate(user: string, seed = 0): string {
  const p = sandboxPromptOf(section(user, "Prompt"));
  if (!p) return "I can only write cases for the sandbox's essay prompts.";
  const styles = [...section(user, "Boundary cases to write").matchAll(/^\s*-\s*([^:\n]+?)\s*:\s*(.*)$/gm)].map((m) => ({ name: m[1], description: m[2] }));
  const rng = new Rng(hashString(`${seed}|generate|${user}`));
  return styles.map((s) => `<case style="${s.name}">\n${writeEssay(rng, p, ratesForStyle(`${s.name} ${s.description}`)).text}\n</case>`).join("\n");
}

function responseIn(text: string): string {
  const m = /<response>\n?([\s\S]*?)\n?<\/response>/.exec(text);
  return m ? m[1] : "";
}

export function simAnnotate(user: string): string {
  const prompt = section(user, "Prompt");
  const response = responseIn(user);
  const { quality, problems } = seniorQuality(prompt, response);
  const p = perceive(prompt, response);
  const reason = problems.length ? problems.slice(0, 2).map((a) => describe(a, p)).join(" ") : "It does the task: on topic, developed, finished and well written.";
  return `<reason>${reason}</reason>\n<score>${Math.round(10 * quality)}</score>`;
}

interface ShownCase {
  prompt: string;
  response: string;
  reference: number;
  grader: number;
}

function shownCases(block: string): ShownCase[] {
  return block
    .split(/^### Case \d+.*$/m)
    .slice(1)
    .map((c) => ({
      prompt: /^Prompt: (.*)$/m.exec(c)?.[1] ?? "",
      response: responseIn(c),
      reference: Number(/^Reference grade: ([\d.]+)/m.exec(c)?.[1] ?? NaN),
      grader: Number(/^Grader score: ([\d.]+)/m.exec(c)?.[1] ?? NaN),
    }))
    .filter((c) => Number.isFinite(c.reference) && Number.isFinite(c.grader));
}

export function simAnalyze(user: string): string {
  const rubric = section(user, "Current rubric");
  const covered = aspectsOf(rubric);
  const cases = shownCases(section(user, "Disagreements (largest first)"));
  const over = cases.filter((c) => c.grader - c.reference > 0.15);
  const under = cases.filter((c) => c.reference - c.grader > 0.15);
  // Problems the over-scored cases have that no criterion names, most frequent first.
  const counts = new Map<Aspect, number>();
  for (const c of over) for (const a of seniorQuality(c.prompt, c.response).problems) if (!covered.includes(a)) counts.set(a, (counts.get(a) ?? 0) + 1);
  const missing = ALL_ASPECTS.filter((a) => counts.has(a)).sort((a, b) => counts.get(b)! - counts.get(a)!);
  const lines = [
    `1. The grader over-scores ${over.length} of the ${cases.length} cases shown and under-scores ${under.length}.`,
    missing.length
      ? `2. The over-scored responses have problems no criterion names: ${missing.map((a) => `${criterionTitle(a).toLowerCase()} (${counts.get(a)} cases)`).join("; ")}. The rubric lets them through because it never asks about these.`
      : "2. The rubric's criteria name the problems of the over-scored responses; their score levels need to be applied more strictly.",
    missing.length ? `3. Add criteria: ${missing.map(criterionTitle).join(", ")}, with explicit deductions.` : "3. Keep the criteria; state their score levels explicitly.",
  ];
  return lines.join("\n");
}

function rubricItems(text: string): string[] {
  return [...text.matchAll(/<item\b[^>]*>([\s\S]*?)(?:<\/item>|(?=<item\b)|$)/gi)].map((m) => m[1].trim()).filter(Boolean);
}

export function simRevise(user: string): string {
  const rubric = section(user, "Current rubric");
  const analysis = section(user, "Error analysis");
  const addLine = /Add criteria:(.*)/.exec(analysis)?.[1] ?? "";
  return refine(rubric, aspectsOf(addLine), rubricItems(rubric));
}
