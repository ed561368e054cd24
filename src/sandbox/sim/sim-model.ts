/**
 * The sandbox's simulated judge LLMs behind the ordinary ChatModel interface. It reads the conversation the
 * real code sends (the templates in prompts/, recognised in ./recognize.ts) and answers each kind of request
 * with the same simulated perception (./perception.ts): junior per-item and single-call scoring, math
 * plan → execute → grade, the senior's prescreen / analyze / refine / merge and guideline analysis / rewrite,
 * and — as a stand-in policy for `generate --llm` — essays from the sandbox's essay writer. The same
 * messages work in-process and over HTTP (`mpo sim-server`, where no stage is known).
 *
 * A request it does not recognise, or recognises but has no simulated answer for, throws
 * `SimUnrecognisedError` naming it (the sim-server turns it into an error reply): a plausible-looking text
 * would hide that an offline run exercised nothing.
 */
import type { ChatModel, ChatRequest, ChatResponse } from "../../llm/types.ts";
import type { Templates } from "../../judge/templates.ts";
import { mathAnswersEqual } from "../../verify/math-equiv.ts";
import { lastBoxed } from "../../verify/boxed.ts";
import { Rng, hashString } from "../../util/rng.ts";
import { writeEssay } from "../essay-writer.ts";
import { INSTRUCTIONS, TOPICS, type SandboxPrompt } from "../world.ts";
import { simAnalyze, simAnnotate, simGenerate, simRevise } from "./autoprompt.ts";
import { DEFAULT_ELO_JUDGE, SimEloJudge, type EloJudgeSettings } from "./elo-judge.ts";
import { juniorJudgeItem } from "./junior.ts";
import { guessTopic, perceive, words } from "./perception.ts";
import { Recognizer, describeRequest, type TemplateMatch } from "./recognize.ts";
import { analyze, merge, prescreen, refine } from "./senior.ts";
import { deriveItemName, inferScoreRange } from "../../rubric/format.ts";

export class SimUnrecognisedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SimUnrecognisedError";
  }
}

type Msg = ChatRequest["messages"][number];

/** Everything a handler may need: the matched last user message and the conversation's other matches. */
interface Turn {
  last: TemplateMatch;
  /** Matches of every user message, oldest first (null where a message matched no template). */
  users: (TemplateMatch | null)[];
  /** Assistant replies, oldest first. */
  assistant: string[];
  /** The last user message as sent. */
  lastText: string;
  seed: number;
  elo: SimEloJudge;
}

/** The most recent earlier user message rendered from `name`. */
function find(t: Turn, name: string): TemplateMatch | undefined {
  for (let i = t.users.length - 1; i >= 0; i--) if (t.users[i]?.name === name) return t.users[i]!;
  return undefined;
}

function need(t: Turn, name: string): TemplateMatch {
  const m = find(t, name);
  if (!m) throw new SimUnrecognisedError(`'${t.last.name}' turn without the '${name}' message it continues`);
  return m;
}

function juniorNormalized(evaluation: string): number | null {
  const m = /normalized\s+([01](?:\.\d+)?)/i.exec(evaluation);
  return m ? Number(m[1]) : null;
}

function rubricItems(text: string): string[] {
  return [...text.matchAll(/<item\b[^>]*>([\s\S]*?)(?:<\/item>|(?=<item\b)|$)/gi)].map((m) => m[1].trim()).filter(Boolean);
}

/**
 * Math grading as the simulated grader perceives it: whether the final boxed answer agrees with the
 * reference, and whether the reasoning shows enough work to support it. Returns quality in [0, 1].
 */
function mathQuality(response: string, reference: string): { quality: number; answerOk: boolean | null; steps: number } {
  const got = lastBoxed(response);
  const want = lastBoxed(reference) ?? (reference.trim().split(/\s+/).length <= 3 ? reference.trim() : null);
  const answerOk = got === null ? false : want === null ? null : mathAnswersEqual(got, want);
  const steps = words(response).length;
  const support = Math.min(1, steps / 60);
  const quality = answerOk === false ? 0.15 * support : answerOk === null ? 0.3 + 0.4 * support : 0.6 + 0.4 * support;
  return { quality, answerOk, steps };
}

/** Per template: the simulated answer. Template names are the files under prompts/. */
const HANDLERS: Record<string, (t: Turn) => string> = {
  // ---- junior judge, per-item: a rationale turn, then a score turn, per item
  "rm/item-rationale.md": (t) => {
    const r = need(t, "rm/response.md").values;
    const v = t.last.values;
    return juniorJudgeItem({ name: v.name, min: Number(v.min), max: Number(v.max), text: v.text }, r.prompt, r.response, t.seed).rationale;
  },
  "rm/item-score.md": (t) => {
    const r = need(t, "rm/response.md").values;
    const v = t.last.values;
    const item = [...t.users].reverse().find((u) => u?.name === "rm/item-rationale.md" && u.values.name === v.name);
    if (!item) throw new SimUnrecognisedError(`score turn for item '${v.name}' without its rationale turn`);
    return String(juniorJudgeItem({ name: v.name, min: Number(v.min), max: Number(v.max), text: item.values.text }, r.prompt, r.response, t.seed).score);
  },
  // ---- junior judge, single call: every item in one JSON reply
  "rm/single-call.md": (t) => {
    const v = t.last.values;
    const items = [...v.rubricItems.matchAll(/### \d+\. (.+?) \(integer score from (-?\d+) to (-?\d+)\)\n([\s\S]*?)(?=\n\n### \d+\. |$)/g)];
    if (!items.length) throw new SimUnrecognisedError("single-call request whose rubric lists no '### N. name (integer score from A to B)' items");
    const out = items.map((m) => {
      const j = juniorJudgeItem({ name: m[1], min: Number(m[2]), max: Number(m[3]), text: m[4] }, v.prompt, v.response, t.seed);
      return { name: m[1], rationale: j.rationale, score: j.score };
    });
    return JSON.stringify({ items: out });
  },
  // ---- junior judge, math: plan → execute → grade (0–5)
  "rm/plan.md": (t) => {
    const v = t.last.values;
    const want = lastBoxed(v.reference) ?? v.reference.trim().split("\n").pop() ?? "";
    return [
      `1. The solution must reach the reference's final answer (${want.slice(0, 80)}) and state it in \\boxed{}.`,
      "2. Each step must follow from the previous one; an answer without the work that supports it is at most 2.",
      "3. An arithmetic or algebra error that changes the answer makes the grade 0 or 1.",
      ...(v.guidelines && !/^\(none/.test(v.guidelines.trim()) ? [`4. Apply the guidelines: ${v.guidelines.trim().split("\n")[0].slice(0, 160)}`] : []),
    ].join("\n");
  },
  "rm/execute.md": (t) => {
    const plan = need(t, "rm/plan.md").values;
    const q = mathQuality(t.last.values.response, plan.reference);
    return [
      q.answerOk === true ? "1. The final boxed answer matches the reference." : q.answerOk === false ? "1. The final answer does not match the reference (or is not boxed)." : "1. I cannot tell whether the final answer matches the reference.",
      q.steps >= 60 ? "2. The work is shown step by step." : q.steps >= 20 ? "2. Some steps are shown, others skipped." : "2. Almost no work is shown.",
      `Summary: ${q.answerOk ? "correct answer" : "wrong or missing answer"}, ${q.steps} words of reasoning.`,
    ].join("\n");
  },
  "rm/plan-score.md": (t) => {
    const plan = need(t, "rm/plan.md").values;
    const exec = need(t, "rm/execute.md").values;
    const q = mathQuality(exec.response, plan.reference);
    const rng = new Rng(hashString(`${t.seed}|plan|${exec.response}`));
    let level = q.quality * 5 + 0.5;
    if (rng.random() < 0.2) level += rng.random() < 0.5 ? -1 : 1;
    return String(Math.max(0, Math.min(5, Math.floor(level))));
  },
  // ---- senior judge: prescreen, analyze → refine (one conversation), merge
  "mrm/prescreen.md": (t) => {
    const v = t.last.values;
    return prescreen({ prompt: v.prompt, response: v.response, rubric: v.rubric, juniorNormalized: juniorNormalized(v.evaluation) });
  },
  "mrm/analyze.md": (t) => {
    const v = t.last.values;
    return analyze({ prompt: v.prompt, response: v.response, rubric: v.rubric, juniorNormalized: juniorNormalized(v.evaluation) }).text;
  },
  "mrm/refine.md": (t) => {
    const v = need(t, "mrm/analyze.md").values;
    const a = analyze({ prompt: v.prompt, response: v.response, rubric: v.rubric, juniorNormalized: juniorNormalized(v.evaluation) });
    return refine(v.rubric, a.missing, rubricItems(v.rubric));
  },
  "mrm/merge.md": (t) => {
    const proposals = t.last.values.refinements.split(/<\/rubric>/i).map(rubricItems).filter((x) => x.length > 0);
    if (!proposals.length) throw new SimUnrecognisedError("merge request with no <rubric> proposals");
    return merge(proposals);
  },
  // ---- senior judge, math guidelines: analysis of graded cases, then the rewrite
  "mrm/guidelines-analyze.md": (t) => guidelineFindings(t.last.values.cases).analysis,
  "mrm/guidelines-refine.md": (t) => {
    const an = need(t, "mrm/guidelines-analyze.md").values;
    const f = guidelineFindings(an.cases);
    const before = an.guidelines && !/^\(none/.test(an.guidelines.trim()) ? an.guidelines.trim().split("\n") : [];
    const lines = [...new Set([...before, ...f.rules])];
    return `<guidelines>\n${lines.join("\n")}\n</guidelines>`;
  },
  // ---- the pairwise evaluation judge (`mpo eval elo`): follows the oracle with noise and position bias (./elo-judge.ts)
  "eval/elo-judge.md": (t) => t.elo.reply(t.lastText),
  // ---- `mpo autoprompt` calibration: boundary cases, annotation, disagreement analysis, revision (./autoprompt.ts)
  "autoprompt/generate.md": (t) => simGenerate(t.lastText, t.seed),
  "autoprompt/annotate.md": (t) => simAnnotate(t.lastText),
  "autoprompt/analyze.md": (t) => simAnalyze(t.lastText),
  "autoprompt/revise.md": (t) => simRevise(t.lastText),
  // ---- a stand-in policy for `generate --llm`: the sandbox's essay writer on the prompt's topic
  "tasks/essay/user.md": (t) => {
    const prompt = t.last.values.prompt ?? Object.values(t.last.values).join("\n");
    const topic = guessTopic(prompt) ?? TOPICS[hashString(prompt) % TOPICS.length];
    const instr = INSTRUCTIONS[hashString(`${prompt}|instr`) % INSTRUCTIONS.length];
    const sp: SandboxPrompt = { id: "sim", prompt, topic: topic.id, instruction: instr.id };
    return writeEssay(new Rng(hashString(`${t.seed}|essay|${prompt}`)), sp).text;
  },
};

/** The junior's normalized score from a bare total (the paper profile shows the senior only the total). */
function normalizedFromTotal(total: string, rubric: string): number | null {
  const ranges = rubricItems(rubric).map((t) => inferScoreRange(t));
  const lo = ranges.reduce((a, r) => a + r.min, 0);
  const hi = ranges.reduce((a, r) => a + r.max, 0);
  const x = Number(total.trim());
  return Number.isFinite(x) && hi > lo ? Math.min(1, Math.max(0, (x - lo) / (hi - lo))) : null;
}

/** Paper-profile graded cases (prompts/mrm/paper/guidelines-analyze.md) in the hardened case form guidelineFindings reads. */
function paperCases(cases: string): string {
  return cases
    .split(/^### Case \d+\n/m)
    .filter((c) => c.trim())
    .map((c, i) => {
      const student = /#### Student's response\n([\s\S]*?)\n\n#### Reference solution/.exec(c)?.[1] ?? "";
      const reference = /#### Reference solution\n([\s\S]*?)\n\n#### Junior/.exec(c)?.[1] ?? "";
      const score = Number(/#### Score assigned\n(\S+)/.exec(c)?.[1]);
      return `### Case ${i + 1}\nReference solution:\n${reference}\n\nStudent solution:\n${student}\n\nJunior grade:\nnormalized ${Number.isFinite(score) ? Math.min(1, Math.max(0, score / 5)).toFixed(2) : "?"}`;
    })
    .join("\n\n");
}

/** The paper profile's senior conversation: the analysis it continues and the rubric it would write. */
function paperRefined(t: Turn): string[] {
  const v = need(t, "mrm/paper/analyze.md").values;
  const a = analyze({ prompt: v.prompt, response: v.response, rubric: v.rubric, juniorNormalized: normalizedFromTotal(v.evaluation, v.rubric) });
  return rubricItems(refine(v.rubric, a.missing, rubricItems(v.rubric)));
}

function paperMerged(t: Turn): string[] {
  const proposals = need(t, "mrm/paper/merge.md").values.refinements.split(/<\/rubric>/i).map(rubricItems).filter((x) => x.length > 0);
  if (!proposals.length) throw new SimUnrecognisedError("merge request with no <rubric> criteria sets");
  return rubricItems(merge(proposals));
}

/** Paper-profile templates (prompts/rm/paper, prompts/mrm/paper; docs/paper-protocol.md): item turns show only "#N" and the item text, so name and range are read from the text as the rubric parser reads them. */
const PAPER_HANDLERS: Record<string, (t: Turn) => string> = {
  "rm/paper/item-rationale.md": (t) => {
    const r = need(t, "rm/paper/response.md").values;
    const text = t.last.values.text;
    const { min, max } = inferScoreRange(text);
    return juniorJudgeItem({ name: deriveItemName(text), min, max, text }, r.prompt, r.response, t.seed).rationale;
  },
  "rm/paper/item-score.md": (t) => {
    const r = need(t, "rm/paper/response.md").values;
    const text = need(t, "rm/paper/item-rationale.md").values.text;
    const { min, max } = inferScoreRange(text);
    return String(juniorJudgeItem({ name: deriveItemName(text), min, max, text }, r.prompt, r.response, t.seed).score);
  },
  "rm/paper/plan.md": (t) => HANDLERS["rm/plan.md"](t),
  "rm/paper/execute.md": (t) => {
    const plan = need(t, "rm/paper/plan.md").values;
    return HANDLERS["rm/execute.md"]({ ...t, users: [...t.users, { name: "rm/plan.md", values: plan }] });
  },
  "rm/paper/plan-score.md": (t) =>
    HANDLERS["rm/plan-score.md"]({ ...t, users: [...t.users, { name: "rm/plan.md", values: need(t, "rm/paper/plan.md").values }, { name: "rm/execute.md", values: need(t, "rm/paper/execute.md").values }] }),
  "mrm/paper/analyze.md": (t) => {
    const v = t.last.values;
    return `${analyze({ prompt: v.prompt, response: v.response, rubric: v.rubric, juniorNormalized: normalizedFromTotal(v.evaluation, v.rubric) }).text}\n<EOE>`;
  },
  "mrm/paper/refine-count.md": (t) => String(paperRefined(t).length),
  "mrm/paper/refine-item.md": (t) => `${paperRefined(t)[Number(t.last.values.index) - 1] ?? ""}\n<EOE>`,
  "mrm/paper/merge-count.md": (t) => String(paperMerged(t).length),
  "mrm/paper/merge-item.md": (t) => `${paperMerged(t)[Number(t.last.values.index) - 1] ?? ""}\n<EOE>`,
  "mrm/paper/guidelines-analyze.md": (t) => `${guidelineFindings(paperCases(t.last.values.cases)).analysis}\n<EOE>`,
  "mrm/paper/guidelines-refine.md": (t) => {
    const an = need(t, "mrm/paper/guidelines-analyze.md").values;
    const f = guidelineFindings(paperCases(an.cases));
    const before = an.guidelines && !/^\(none/.test(an.guidelines.trim()) ? an.guidelines.trim().split("\n") : [];
    return `${[...new Set([...before, ...f.rules])].join("\n")}\n<EOE>`;
  },
};
Object.assign(HANDLERS, PAPER_HANDLERS);

/** What the senior grader finds across a group's graded cases: over-generous grades on wrong answers, bare answers. */
function guidelineFindings(cases: string): { analysis: string; rules: string[] } {
  const parts = cases.split(/^### Case \d+\n/m).filter((s) => s.trim());
  let generous = 0;
  let bare = 0;
  let harsh = 0;
  for (const c of parts) {
    const student = /Student solution:\n([\s\S]*?)\n\nJunior grade:/.exec(c)?.[1] ?? "";
    const reference = /Reference solution:\n([\s\S]*?)\n\nStudent solution:/.exec(c)?.[1] ?? "";
    const norm = juniorNormalized(c);
    const q = mathQuality(student, reference);
    if (norm !== null && norm - q.quality > 0.25) generous++;
    if (norm !== null && q.quality - norm > 0.25) harsh++;
    if (q.steps < 20) bare++;
  }
  const rules = [
    "- Compare the final \\boxed{} answer with the reference first; a different final answer scores at most 1.",
    ...(bare ? ["- A correct answer with no supporting steps scores at most 2."] : []),
    ...(harsh ? ["- Equivalent forms of the reference answer (fractions, decimals, simplified radicals) are correct."] : []),
  ];
  const analysis = [
    `Of ${parts.length} graded case(s), ${generous} grade(s) were too generous and ${harsh} too harsh.`,
    bare ? `${bare} solution(s) gave an answer with almost no work, which the guidelines did not penalize.` : "Every solution showed its work.",
    "The guidelines should make the grader check the final answer against the reference before anything else.",
  ].join(" ");
  return { analysis, rules };
}

const estimateTokens = (s: string) => Math.max(1, Math.ceil(s.length / 4));

export class SimulatedJudgeModel implements ChatModel {
  readonly id: string;
  /** The pairwise evaluation judge (Elo prompts); it reads the oracle, which no reward ever does. */
  readonly elo: SimEloJudge;
  private readonly recognizer: Recognizer;

  constructor(
    readonly role: "junior" | "senior" | "both" = "both",
    readonly seed = 0,
    eloSettings: EloJudgeSettings = DEFAULT_ELO_JUDGE,
    templates?: Templates,
  ) {
    this.id = `sim:${role}`;
    this.elo = new SimEloJudge(eloSettings, seed);
    this.recognizer = new Recognizer(templates);
  }

  async chat(req: ChatRequest): Promise<ChatResponse> {
    const text = this.reply(req.messages);
    const promptTokens = req.messages.reduce((s, m) => s + estimateTokens(m.content), 0);
    return { text, promptTokens, completionTokens: estimateTokens(text), finishReason: "stop" };
  }

  /** Which template the conversation's last user message was rendered from (null: none). */
  recognise(messages: Msg[]): TemplateMatch | null {
    const users = messages.filter((m) => m.role === "user");
    return users.length ? this.recognizer.match(users[users.length - 1].content) : null;
  }

  reply(messages: Msg[]): string {
    const users = messages.filter((m) => m.role === "user").map((m) => this.recognizer.match(m.content));
    const last = users[users.length - 1];
    if (!last) throw new SimUnrecognisedError(`the simulated judge does not recognise this request (it matches no prompt template): ${describeRequest(messages)}`);
    const handler = HANDLERS[last.name];
    if (!handler) throw new SimUnrecognisedError(`the simulated judge recognises prompt template '${last.name}' but has no simulated answer for it`);
    const assistant = messages.filter((m) => m.role === "assistant").map((m) => m.content);
    const lastText = [...messages].reverse().find((m) => m.role === "user")!.content;
    return handler({ last, users, assistant, lastText, seed: this.seed, elo: this.elo });
  }
}

/** Template names the simulator answers (for docs and tests). */
export const SIMULATED_TEMPLATES = Object.keys(HANDLERS).sort();

// Kept for callers that only need a verdict on how a response reads.
export { perceive };
