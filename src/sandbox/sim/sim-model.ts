/**
 * The sandbox's simulated judge LLMs behind the ordinary ChatModel interface. It reads the conversation the
 * real judge code sends (default templates in prompts/rm and prompts/mrm) and dispatches on what is being
 * asked, so the same messages work in-process and over HTTP (`mpo sim-server`, where no stage is known).
 * Replies are plain model text; the real parsers in src/judge and src/meta read them.
 */
import type { ChatModel, ChatRequest, ChatResponse } from "../../llm/types.ts";
import { deriveItemName, inferScoreRange } from "../../rubric/format.ts";
import { simAnalyze, simAnnotate, simGenerate, simRevise } from "./autoprompt.ts";
import { DEFAULT_ELO_JUDGE, isEloPrompt, SimEloJudge, type EloJudgeSettings } from "./elo-judge.ts";
import { juniorJudgeItem } from "./junior.ts";
import { analyze, merge, prescreen, refine } from "./senior.ts";

function between(text: string, start: RegExp, end: RegExp): string {
  const m = start.exec(text);
  if (!m) return "";
  const rest = text.slice(m.index + m[0].length);
  const e = end.exec(rest);
  return (e ? rest.slice(0, e.index) : rest).trim();
}

function responseOf(text: string): string {
  return between(text, /<response>\n?/, /\n?<\/response>/);
}

function promptOf(text: string): string {
  return between(text, /## Prompt\n/, /\n## /);
}

function juniorNormalized(text: string): number | null {
  const m = /normalized\s+([01](?:\.\d+)?)/i.exec(text);
  return m ? Number(m[1]) : null;
}

function rubricItems(text: string): string[] {
  return [...text.matchAll(/<item\b[^>]*>([\s\S]*?)(?:<\/item>|(?=<item\b)|$)/gi)].map((m) => m[1].trim()).filter(Boolean);
}

const estimateTokens = (s: string) => Math.max(1, Math.ceil(s.length / 4));

export class SimulatedJudgeModel implements ChatModel {
  readonly id: string;
  /** The pairwise evaluation judge (Elo prompts); it reads the oracle, which no reward ever does. */
  readonly elo: SimEloJudge;
  constructor(
    readonly role: "junior" | "senior" | "both" = "both",
    readonly seed = 0,
    eloSettings: EloJudgeSettings = DEFAULT_ELO_JUDGE,
  ) {
    this.id = `sim:${role}`;
    this.elo = new SimEloJudge(eloSettings, seed);
  }

  async chat(req: ChatRequest): Promise<ChatResponse> {
    const text = this.reply(req.messages);
    const promptTokens = req.messages.reduce((s, m) => s + estimateTokens(m.content), 0);
    return { text, promptTokens, completionTokens: estimateTokens(text), finishReason: "stop" };
  }

  reply(messages: ChatRequest["messages"]): string {
    const users = messages.filter((m) => m.role === "user");
    const last = users[users.length - 1]?.content ?? "";
    const first = users[0]?.content ?? "";

    // Evaluation judge (prompts/eval/elo-judge.md) and the calibration prompts of `mpo autoprompt`
    // (prompts/autoprompt/*.md), recognised by their section headings.
    if (isEloPrompt(last)) return this.elo.reply(last);
    if (/## Boundary cases to write\n/.test(last)) return simGenerate(last, this.seed);
    if (/## Response to label\n/.test(last)) return simAnnotate(last);
    if (/## Disagreements \(largest first\)\n/.test(last)) return simAnalyze(last);
    if (/## Error analysis\n/.test(last) && /## Revised rubric\n/.test(last)) return simRevise(last);

    // Paper-profile prompts (prompts/rm/paper, prompts/mrm/paper): the item turn shows only "Rubric item #N"
    // and the item text; name and range are read from the text as the rubric parser would.
    const paperItem = /^Rubric item #\d+\n([\s\S]*?)\n\nGive your feedback on this item/;
    const paperJudge = (text: string) => {
      const { min, max } = inferScoreRange(text);
      return juniorJudgeItem({ name: deriveItemName(text), min, max, text }, promptOf(first), responseOf(first), this.seed);
    };
    if (/Give this item's score now: one integer score/i.test(last)) {
      const itemMsg = [...users].reverse().find((m) => paperItem.test(m.content));
      const m = itemMsg && paperItem.exec(itemMsg.content);
      return m ? String(paperJudge(m[1]).score) : "3";
    }
    const pi = paperItem.exec(last);
    if (pi) return paperJudge(pi[1]).rationale;
    const paperAudit = users.find((m) => /you review how a junior instructor scored/i.test(m.content));
    if (paperAudit) {
      const rubric = between(paperAudit.content, /## Junior instructor's scoring criteria\n/, /\n## Score the junior/);
      const total = Number(between(paperAudit.content, /## Score the junior instructor assigned\n/, /\n\n/));
      const ranges = rubricItems(rubric).map((t) => inferScoreRange(t));
      const lo = ranges.reduce((a, r) => a + r.min, 0);
      const hi = ranges.reduce((a, r) => a + r.max, 0);
      const juniorNorm = Number.isFinite(total) && hi > lo ? Math.min(1, Math.max(0, (total - lo) / (hi - lo))) : null;
      const a = analyze({ prompt: between(paperAudit.content, /## Prompt given to the student\n/, /\n## /), response: responseOf(paperAudit.content), rubric, juniorNormalized: juniorNorm });
      const refined = () => rubricItems(refine(rubric, a.missing, rubricItems(rubric)));
      if (/how many distinct scoring criteria are needed/i.test(last)) return String(refined().length);
      const each = /Write scoring criterion #(\d+)/.exec(last);
      if (each) return `${refined()[Number(each[1]) - 1] ?? ""}\n<EOE>`;
      return `${a.text}\n<EOE>`;
    }
    const paperMerge = users.find((m) => /several sets of the junior instructor's scoring criteria/i.test(m.content));
    if (paperMerge) {
      const block = between(paperMerge.content, /```\n/, /\n```/);
      const merged = rubricItems(merge(block.split(/<\/rubric>/i).map(rubricItems).filter((x) => x.length > 0)));
      if (/how many distinct, non-overlapping scoring criteria/i.test(last)) return String(merged.length);
      const each = /Write merged criterion #(\d+)/.exec(last);
      if (each) return `${merged[Number(each[1]) - 1] ?? ""}\n<EOE>`;
    }

    // Junior, per-item mode: rationale turn, then score turn.
    const itemTurn = /Rubric item \d+ of \d+: (.+?) \(scored from (-?\d+) to (-?\d+)\)\n\n([\s\S]*?)\n\nIn exactly one sentence/;
    if (/integer score/i.test(last)) {
      const itemMsg = [...users].reverse().find((m) => itemTurn.test(m.content));
      const m = itemMsg && itemTurn.exec(itemMsg.content);
      if (!m) return "3";
      const v = juniorJudgeItem({ name: m[1], min: Number(m[2]), max: Number(m[3]), text: m[4] }, promptOf(first), responseOf(first), this.seed);
      return String(v.score);
    }
    const it = itemTurn.exec(last);
    if (it) return juniorJudgeItem({ name: it[1], min: Number(it[2]), max: Number(it[3]), text: it[4] }, promptOf(first), responseOf(first), this.seed).rationale;

    // Junior, single-call mode.
    if (/Reply with one JSON object/i.test(last)) {
      const rubric = between(last, /## Rubric\n/, /\n\nReply with one JSON object/);
      const items = [...rubric.matchAll(/### \d+\. (.+?) \(integer score from (-?\d+) to (-?\d+)\)\n([\s\S]*?)(?=\n\n### \d+\. |$)/g)];
      const out = items.map((m) => {
        const v = juniorJudgeItem({ name: m[1], min: Number(m[2]), max: Number(m[3]), text: m[4] }, promptOf(last), responseOf(last), this.seed);
        return { name: m[1], rationale: v.rationale, score: v.score };
      });
      return JSON.stringify({ items: out });
    }

    // Senior stages.
    if (/sound or flawed/i.test(last)) return prescreen({ prompt: promptOf(last), response: responseOf(last), rubric: between(last, /## Rubric used\n/, /\n## /), juniorNormalized: juniorNormalized(last) });
    const auditMsg = users.find((m) => /Audit one junior evaluation/i.test(m.content));
    if (auditMsg) {
      const rubric = between(auditMsg.content, /## Current rubric\n/, /\n## Junior evaluation/);
      const input = { prompt: promptOf(auditMsg.content), response: responseOf(auditMsg.content), rubric, juniorNormalized: juniorNormalized(auditMsg.content) };
      const a = analyze(input);
      if (/improved rubric/i.test(last)) return refine(rubric, a.missing, rubricItems(rubric));
      return a.text;
    }
    if (/Merge them into one coherent rubric/i.test(last)) {
      const block = between(last, /## Proposed rubrics\n/, /\nRules:/);
      const proposals = block.split(/<\/rubric>/i).map(rubricItems).filter((x) => x.length > 0);
      return merge(proposals);
    }
    return "I am a simulated judge for the mpo sandbox and can only answer its rubric-grading prompts.";
  }
}
