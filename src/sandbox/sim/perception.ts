/**
 * What the simulated judge LLMs "notice" in a response. A real LLM judge perceives many qualities of a text
 * but scores only what its rubric asks about; these detectors stand in for that perception. They are the
 * judges' own (the oracle in ../oracle.ts has separate code) and deliberately rougher: keyword relevance
 * instead of topic modelling, surface connective counts for "discourse", and so on.
 */
import { TOPICS, type Topic } from "../world.ts";

export type Aspect = "discourse" | "relevance" | "repetition" | "completeness" | "development" | "structure" | "filler" | "language";

export const ALL_ASPECTS: Aspect[] = ["discourse", "relevance", "repetition", "completeness", "development", "structure", "filler", "language"];

/** Words in a criterion that make a judge attend to an aspect. */
const CUES: Record<Aspect, RegExp> = {
  discourse: /\b(discourse|flow|transition|connective|coheren|cohesi|linking|connect)/i,
  relevance: /\b(relevan|on[- ]topic|off[- ]topic|address(es|ing)? the prompt|stay(s)? on|the prompt's topic|focus|unrelated)/i,
  repetition: /\b(repeat|repetit|redundan|duplicate)/i,
  completeness: /\b(complete|unfinished|conclu|ending|cut off|trailing|finish)/i,
  development: /\b(develop|elaborat|depth|detail|length|word count|too short|substan|support(ed|ing)? (with|by) )/i,
  structure: /\b(structure|organi[sz]|paragraph|title[- ]only|bullet|list instead|format)/i,
  filler: /\b(filler|padding|empty phrases|stacked connectives|without content|vague statements)/i,
  language: /\b(spelling|non-?words?|gibberish|garbled|grammar|fluen|well-formed|misspell)/i,
};

export function aspectsOf(criterion: string): Aspect[] {
  return ALL_ASPECTS.filter((a) => CUES[a].test(criterion));
}

const CONNECTIVES = /\b(moreover|furthermore|in addition|additionally|however|therefore|as a result|for example|first|finally|also|in conclusion|in other words|on the other hand|because|so that|thus)\b/gi;
const FUNCTION_WORDS =
  "the a an and or but of to in on for with that this these those is are was were be been it its they them their there who what why how when many more most some every all not no can will would should could into from at by as so very than then also about over your our we you he she his her him i my me one time long day do does did has have had while after before until walked noticed remembered said talked understood began nobody forget believe agree think worry say people part question clear benefits real drawbacks matter matters mattered deserve deserves attention reasons wrong supporters enough important note key point things consider connected goes without saying something really lot evening friend end".split(
    " ",
  );

let lexicon: Set<string> | null = null;
/** Words the simulated judges recognise as English (their "vocabulary"). */
function knownWords(): Set<string> {
  if (lexicon) return lexicon;
  const s = new Set(FUNCTION_WORDS);
  for (const t of TOPICS) for (const w of words([t.subject, t.claim, t.setting, ...t.keywords, ...t.pros, ...t.cons].join(" "))) s.add(w);
  for (const w of "moreover furthermore addition additionally however therefore result example first finally conclusion other words hand thus maya leo ana tom sara omar lena jun case closer look thinking".split(" ")) s.add(w);
  return (lexicon = s);
}

export function words(text: string): string[] {
  return text.toLowerCase().match(/[a-z]+(?:'[a-z]+)?/g) ?? [];
}

export function sentences(text: string): string[] {
  return text
    .split(/(?<=[.!?])\s+|\n+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Which topic a prompt is about, as a judge reading it would guess (best word overlap). */
export function guessTopic(prompt: string): Topic | null {
  const pw = new Set(words(prompt));
  let best: Topic | null = null;
  let bestHits = 0;
  for (const t of TOPICS) {
    const hits = words([t.subject, t.claim, t.setting].join(" ")).filter((w) => w.length > 3 && pw.has(w)).length;
    if (hits > bestHits) [best, bestHits] = [t, hits];
  }
  return best;
}

function topicWords(t: Topic | null, prompt: string): Set<string> {
  const src = t ? [t.subject, t.claim, t.setting, ...t.keywords, ...t.pros, ...t.cons].join(" ") : prompt;
  return new Set(words(src).filter((w) => w.length > 3 && !FUNCTION_WORDS.includes(w)));
}

export interface Perception {
  words: number;
  sentences: number;
  /** Each in [0, 1]; 1 = no problem with that aspect. */
  quality: Record<Aspect, number>;
  /** Raw observations used in rationales. */
  notes: {
    connectives: number;
    offTopicSentences: number;
    repeatedSentences: number;
    finished: boolean;
    fillerSentences: number;
    nonWords: number;
    bullets: number;
    titleOnly: boolean;
  };
}

export function perceive(prompt: string, response: string): Perception {
  const ws = words(response);
  const sents = sentences(response);
  const topic = guessTopic(prompt);
  const tw = topicWords(topic, prompt);
  const known = knownWords();
  const connectives = (response.match(CONNECTIVES) ?? []).length;
  const bodySents = sents.filter((s) => /[.!?]$/.test(s) || s.split(" ").length > 6);
  const offTopic = bodySents.filter((s) => !words(s).some((w) => tw.has(w))).length;
  const norm = sents.map((s) => words(s).join(" "));
  const repeated = norm.length - new Set(norm).size;
  const finished = /[.!?]["')]?$/.test(response.trim());
  const filler = sents.filter((s) => (s.match(CONNECTIVES) ?? []).length >= 2 && !words(s).some((w) => tw.has(w))).length;
  const nonWords = ws.filter((w) => !known.has(w)).length;
  const bullets = response.split("\n").filter((l) => /^\s*[-*•]\s/.test(l)).length;
  const titleOnly = sents.length <= 1 && ws.length < 12 && !/[.!?]$/.test(response.trim());
  const n = Math.max(sents.length, 1);

  const quality: Record<Aspect, number> = {
    // Surface reading of "discourse": how much the text links its sentences with connectives.
    discourse: Math.min(1, connectives / (1.2 * n)),
    relevance: bodySents.length ? 1 - offTopic / bodySents.length : 0,
    repetition: 1 - repeated / n,
    completeness: finished && sents.length >= 3 ? 1 : finished ? 0.5 : 0,
    development: Math.min(1, ws.length / 60) * Math.min(1, (new Set(norm).size - filler) / 4),
    structure: titleOnly ? 0 : bullets > 0 ? 0.3 : 1,
    filler: 1 - filler / n,
    language: ws.length ? Math.max(0, 1 - (3 * nonWords) / ws.length) : 0,
  };
  for (const a of ALL_ASPECTS) quality[a] = Math.min(1, Math.max(0, quality[a]));
  return {
    words: ws.length,
    sentences: sents.length,
    quality,
    notes: { connectives, offTopicSentences: offTopic, repeatedSentences: repeated, finished, fillerSentences: filler, nonWords, bullets, titleOnly },
  };
}

/** One sentence a judge would write about an aspect of a response. */
export function describe(aspect: Aspect, p: Perception): string {
  const q = p.quality[aspect];
  const n = p.notes;
  switch (aspect) {
    case "discourse":
      return q > 0.6 ? `The text links its sentences with many connecting words (${n.connectives} in ${p.sentences} sentences).` : `The sentences are loosely linked, with only ${n.connectives} connecting words.`;
    case "relevance":
      return q < 0.5 && n.offTopicSentences === 0 ? "No full sentence addresses the prompt." : n.offTopicSentences === 0 ? "Every sentence stays on the prompt's topic." : `${n.offTopicSentences} of the sentences drift away from the prompt's topic.`;
    case "repetition":
      return n.repeatedSentences === 0 ? "No sentence is repeated." : `The response repeats the same sentence ${n.repeatedSentences} extra times.`;
    case "completeness":
      return n.finished ? (p.sentences >= 3 ? "The response reaches a finished ending." : "The response ends properly but is too short to be complete.") : "The response is cut off in the middle of a sentence.";
    case "development":
      return q > 0.7 ? `The ideas are developed over ${p.words} words.` : `The response is thin, with ${p.words} words and little substance.`;
    case "structure":
      return n.titleOnly ? "The response is only a title with no body." : n.bullets > 0 ? "The response is a bare list instead of prose." : "The response is written as connected prose.";
    case "filler":
      return n.fillerSentences === 0 ? "There are no empty filler sentences." : `${n.fillerSentences} sentences are filler made of stacked connectives without content.`;
    case "language":
      return n.nonWords === 0 ? "The wording is well-formed." : `The text contains ${n.nonWords} garbled or non-words.`;
  }
}
