/**
 * A built-in essay generator whose texts vary in quality the way weak language models do. Its output is
 * the pretraining corpus of the sandbox's base policy: the policy learns this whole distribution —
 * good essays and flawed ones — and RL then shifts it toward whatever the judge rewards.
 *
 * Flaws, each drawn independently with its own rate: off-topic sentences, a repeated sentence, filler
 * connectives without content, an unfinished ending, a title with no body, a bare list.
 */
import { Rng } from "../util/rng.ts";
import { INSTRUCTIONS, TOPICS, instructionById, topicById, type SandboxPrompt, type Topic } from "./world.ts";

export type Flaw = "off-topic" | "repetition" | "filler" | "unfinished" | "title-only" | "list";

export interface WrittenEssay {
  text: string;
  flaws: Flaw[];
}

export interface WriterRates {
  offTopic: number;
  repetition: number;
  filler: number;
  unfinished: number;
  titleOnly: number;
  list: number;
}

/** Default flaw rates: roughly a third of essays come out clean. */
export const DEFAULT_RATES: WriterRates = { offTopic: 0.18, repetition: 0.15, filler: 0.18, unfinished: 0.14, titleOnly: 0.06, list: 0.06 };

const CONNECTIVES = ["First,", "Moreover,", "In addition,", "For example,", "However,", "As a result,", "Also,", "Finally,"];
const FILLER = [
  "Moreover, it is important to note that this is very important.",
  "Furthermore, in addition, this matters a lot for many reasons.",
  "In conclusion, as a result, there are many things to consider.",
  "Additionally, moreover, it is clear that this is a key point.",
  "Therefore, in other words, this is something that really matters.",
  "Furthermore, it goes without saying that everything is connected.",
];
const NAMES = ["Maya", "Leo", "Ana", "Tom", "Sara", "Omar", "Lena", "Jun"];

/** Subject–verb agreement: topics whose subject is a plural noun phrase. */
const PLURAL = new Set(["libraries", "gardening", "robots", "phones", "zoos", "forests", "sports", "museums", "games", "uniforms", "cars", "exams", "pets"]);
function verb(topic: Topic, plural: string, singular: string): string {
  return PLURAL.has(topic.id) ? plural : singular;
}

function cap(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.int(xs.length)];
}

function titleFor(rng: Rng, topic: Topic): string {
  const forms = [`The Case for ${titleCase(topic.subject)}`, `${titleCase(topic.subject)}: A Closer Look`, `Thinking About ${titleCase(topic.subject)}`, `Why ${titleCase(topic.subject)} ${cap(verb(topic, "matter", "matters"))}`];
  return pick(rng, forms);
}

function titleCase(s: string): string {
  return s.split(" ").map((w) => (w.length > 3 ? cap(w) : w)).join(" ");
}

/** On-topic body sentences for one topic and instruction kind (without connectives). */
function bodySentences(rng: Rng, topic: Topic, kind: string): string[] {
  const kw = () => pick(rng, topic.keywords);
  const [k1, k2] = rng.sample(topic.keywords, 2);
  if (kind === "story") {
    const name = pick(rng, NAMES);
    return [
      `${name} walked into ${topic.setting} and noticed the ${kw()}.`,
      `${name} remembered that ${pick(rng, topic.pros)}.`,
      `A friend said that ${pick(rng, topic.cons)}.`,
      `They talked about the ${k1} and the ${k2} for a long time.`,
      `By evening ${name} understood why ${topic.subject} mattered so much.`,
    ];
  }
  const pros = topic.pros.map((p) => `${cap(p)}.`);
  const cons = topic.cons.map((c) => `Some people worry that ${c}.`);
  const extra = [`The ${k1} and the ${k2} are part of this question.`, `Many people think about ${topic.subject} when they talk about ${kw()}.`];
  if (kind === "argue-against") return [...cons.map((c) => c.replace("Some people worry that ", "")).map(cap), `Supporters say that ${topic.pros[0]}, but this is not enough.`, ...extra];
  if (kind === "compare") return [...pros, ...cons, ...extra];
  return [...pros, ...extra, cons[0]];
}

function opening(topic: Topic, kind: string): string {
  switch (kind) {
    case "argue-for":
      return `I believe that ${topic.claim}.`;
    case "argue-against":
      return `I do not agree that ${topic.claim}.`;
    case "story":
      return `It all began in ${topic.setting}.`;
    case "compare":
      return `${cap(topic.subject)} ${verb(topic, "have", "has")} clear benefits and real drawbacks.`;
    default:
      return `${cap(topic.subject)} ${verb(topic, "matter", "matters")} more than most people think.`;
  }
}

function conclusion(topic: Topic, kind: string): string {
  switch (kind) {
    case "argue-for":
      return `For these reasons, ${topic.claim}.`;
    case "argue-against":
      return `For these reasons, it is wrong to say that ${topic.claim}.`;
    case "story":
      return `It was a day nobody in ${topic.setting.replace(/^an? /, "the ")} would forget.`;
    default:
      return `In the end, ${topic.subject} ${verb(topic, "deserve", "deserves")} our attention.`;
  }
}

/** Writes one essay for a prompt. Deterministic given the Rng state. */
export function writeEssay(rng: Rng, prompt: SandboxPrompt, rates: WriterRates = DEFAULT_RATES): WrittenEssay {
  const topic = topicById(prompt.topic);
  const kind = instructionById(prompt.instruction).kind;
  const flaws: Flaw[] = [];
  const title = titleFor(rng, topic);

  if (rng.random() < rates.titleOnly) return { text: title, flaws: ["title-only"] };
  if (rng.random() < rates.list) {
    const items = rng.sample(topic.keywords, 3 + rng.int(3)).map((k) => `- ${k}`);
    return { text: [title, ...items].join("\n"), flaws: ["list"] };
  }

  const body = rng.sample(bodySentences(rng, topic, kind), 3 + rng.int(3));
  let sentences = [opening(topic, kind), ...body.map((s, i) => (i > 0 && rng.random() < 0.5 ? `${pick(rng, CONNECTIVES)} ${s.charAt(0).toLowerCase()}${s.slice(1)}` : s)), conclusion(topic, kind)];

  if (rng.random() < rates.offTopic) {
    flaws.push("off-topic");
    const other = pick(rng, TOPICS.filter((t) => t.id !== topic.id));
    const foreign = bodySentences(rng, other, "explain");
    for (let i = 1; i < sentences.length - 1; i++) if (rng.random() < 0.6) sentences[i] = pick(rng, foreign);
  }
  if (rng.random() < rates.filler) {
    flaws.push("filler");
    const n = 2 + rng.int(3);
    const keep = sentences.slice(0, 2 + rng.int(2));
    sentences = [...keep, ...Array.from({ length: n }, () => pick(rng, FILLER))];
  }
  if (rng.random() < rates.repetition) {
    flaws.push("repetition");
    const s = pick(rng, sentences.slice(0, -1));
    const times = 2 + rng.int(3);
    const at = 1 + rng.int(sentences.length - 1);
    sentences.splice(at, 0, ...Array.from({ length: times }, () => s));
  }
  let text = (rng.random() < 0.35 ? title + "\n\n" : "") + sentences.join(" ");
  if (rng.random() < rates.unfinished) {
    flaws.push("unfinished");
    const words = text.split(" ");
    const cut = Math.max(4, Math.floor(words.length * (0.4 + 0.4 * rng.random())));
    text = words.slice(0, cut).join(" ").replace(/[.!?]$/, "");
  }
  return { text, flaws };
}

/** The sandbox corpus: `perPrompt` essays for every training prompt, as `prompt\n\nessay` documents. */
export function essayCorpus(prompts: SandboxPrompt[], perPrompt: number, seed: number, rates: WriterRates = DEFAULT_RATES) {
  const rng = new Rng(`essay-corpus-${seed}`);
  const docs: Array<{ prompt: SandboxPrompt; essay: WrittenEssay }> = [];
  for (let k = 0; k < perPrompt; k++) for (const p of prompts) docs.push({ prompt: p, essay: writeEssay(rng, p, rates) });
  return docs;
}

export { INSTRUCTIONS, TOPICS };
