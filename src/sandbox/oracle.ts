/**
 * The sandbox oracle: a held-out quality measure for EVALUATION ONLY. Neither the policy's reward nor the
 * simulated judges ever call it; it has its own text handling so that the judges' blind spots are not
 * shared with it. Score in [0, 1], a weighted mean of:
 *   relevance      – share of sentences about the prompt's topic (topic lexicon vs other topics' lexicons)
 *   nonRepetition  – 1 − 2 × (repeated sentences / sentences), floored at 0
 *   completeness   – ends with a finished sentence and has a body (≥ 3 sentences)
 *   fluency        – mean bigram log-probability under a model of clean essays, scaled between a word-salad
 *                    floor and the clean-essay level
 *   length         – at least 50 words (ramps up linearly below)
 */
import { Rng } from "../util/rng.ts";
import { TOPICS, topicById, type SandboxPrompt, type Topic } from "./world.ts";
import { writeEssay } from "./essay-writer.ts";

const STOP = new Set(
  "the a an and or but of to in on for with that this these those is are was were be been it its they them their there who what why how when many more most some every all not no can will would should could into from at by as so very than then also about over your our we you he she his her him i my me one time long day".split(
    " ",
  ),
);

function oracleWords(text: string): string[] {
  return text.toLowerCase().match(/[a-z']+/g) ?? [];
}

function oracleSentences(text: string): string[] {
  return text
    .split(/(?<=[.!?])\s+|\n+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function lexicon(topic: Topic): Set<string> {
  const src = [topic.subject, topic.claim, topic.setting, ...topic.keywords, ...topic.pros, ...topic.cons].join(" ");
  return new Set(oracleWords(src).filter((w) => w.length >= 4 && !STOP.has(w)));
}

export interface OracleBreakdown {
  score: number;
  relevance: number;
  nonRepetition: number;
  completeness: number;
  fluency: number;
  length: number;
}

export const ORACLE_WEIGHTS = { relevance: 0.3, nonRepetition: 0.2, completeness: 0.15, fluency: 0.2, length: 0.15 };

export class EssayOracle {
  private lex = new Map<string, Set<string>>();
  private bigram = new Map<string, Map<string, number>>();
  private unigram = new Map<string, number>();
  private vocabSize = 1;
  private cleanLevel = 0;
  private saladLevel = -10;

  constructor(seed = 0) {
    for (const t of TOPICS) this.lex.set(t.id, lexicon(t));
    // Fluency reference: clean essays (no flaws) for every prompt, several per prompt.
    const rng = new Rng(`oracle-${seed}`);
    const clean = { offTopic: 0, repetition: 0, filler: 0, unfinished: 0, titleOnly: 0, list: 0 };
    const docs: string[] = [];
    const prompts: SandboxPrompt[] = [];
    for (const t of TOPICS) for (const instr of ["argue-for", "argue-against", "explain", "story", "compare"]) prompts.push({ id: `${t.id}.${instr}`, prompt: "", topic: t.id, instruction: instr });
    for (let k = 0; k < 6; k++) for (const p of prompts) docs.push(writeEssay(rng, p, clean).text);
    for (const d of docs) this.countDoc(d);
    this.vocabSize = this.unigram.size + 1;
    const held = prompts.map((p) => writeEssay(rng, p, clean).text);
    this.cleanLevel = mean(held.map((d) => this.meanLogProb(d)));
    this.saladLevel = mean(held.map((d) => this.meanLogProb(rng.shuffle(oracleWords(d)).join(" "))));
  }

  private countDoc(text: string): void {
    const ws = ["<s>", ...oracleWords(text), "</s>"];
    for (let i = 0; i < ws.length; i++) {
      this.unigram.set(ws[i], (this.unigram.get(ws[i]) ?? 0) + 1);
      if (i > 0) {
        let row = this.bigram.get(ws[i - 1]);
        if (!row) this.bigram.set(ws[i - 1], (row = new Map()));
        row.set(ws[i], (row.get(ws[i]) ?? 0) + 1);
      }
    }
  }

  /** Mean log P(w_i | w_{i-1}) with add-0.1 smoothing. */
  meanLogProb(text: string): number {
    const ws = ["<s>", ...oracleWords(text), "</s>"];
    if (ws.length <= 2) return this.saladLevel;
    let sum = 0;
    for (let i = 1; i < ws.length; i++) {
      const row = this.bigram.get(ws[i - 1]);
      const c = row?.get(ws[i]) ?? 0;
      const total = row ? sumValues(row) : 0;
      sum += Math.log((c + 0.1) / (total + 0.1 * this.vocabSize));
    }
    return sum / (ws.length - 1);
  }

  score(topicId: string, response: string): OracleBreakdown {
    const own = this.lex.get(topicId) ?? lexicon(topicById(topicId));
    const sents = oracleSentences(response);
    const nWords = oracleWords(response).length;
    let relevant = 0;
    for (const s of sents) {
      const ws = oracleWords(s);
      const ownHits = ws.filter((w) => own.has(w)).length;
      let otherHits = 0;
      for (const [id, lex] of this.lex) if (id !== topicId) otherHits = Math.max(otherHits, ws.filter((w) => lex.has(w) && !own.has(w)).length);
      if (ownHits > 0 && ownHits >= otherHits) relevant++;
    }
    // A body is expected: fewer than four sentences cannot be fully relevant.
    const relevance = relevant / Math.max(sents.length, 4);
    const normalized = sents.map((s) => oracleWords(s).join(" "));
    // Each repeated sentence costs twice its share: a reader notices repetition more than its length.
    const nonRepetition = sents.length ? Math.max(0, 1 - (2 * (sents.length - new Set(normalized).size)) / sents.length) : 0;
    const finished = /[.!?]["')]?\s*$/.test(response.trim());
    const completeness = finished ? (sents.length >= 3 ? 1 : 0.4) : 0;
    const lp = this.meanLogProb(response);
    const fluency = clamp01((lp - this.saladLevel) / (this.cleanLevel - this.saladLevel));
    const length = Math.min(1, nWords / 50);
    const score =
      ORACLE_WEIGHTS.relevance * relevance +
      ORACLE_WEIGHTS.nonRepetition * nonRepetition +
      ORACLE_WEIGHTS.completeness * completeness +
      ORACLE_WEIGHTS.fluency * fluency +
      ORACLE_WEIGHTS.length * length;
    return { score, relevance, nonRepetition, completeness, fluency, length };
  }
}

function sumValues(m: Map<string, number>): number {
  let s = 0;
  for (const v of m.values()) s += v;
  return s;
}
function mean(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
}
function clamp01(x: number): number {
  return Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0;
}
