/**
 * Scripted replies of a fake judge LLM (junior and senior) for tests and the judge-modes benchmark: it
 * recognizes which prompt template a request came from by a phrase of that template and answers in the
 * format the parser expects, deterministically from the request text.
 */
import type { FakeReply, FakeRequestInfo } from "./helpers/fake-openai-server.ts";

export interface FakeJudgeOptions {
  /** Score for an item (per-item and single-call); default: 3 for responses over 10 words, else 1. */
  score?: (itemName: string, response: string) => number | string;
  /** Text of the merge reply (default: a 3-item rubric with one exact duplicate). */
  merge?: () => FakeReply;
  refine?: (index: number) => FakeReply;
  analysis?: () => FakeReply;
  planScore?: () => string;
}

const lastUser = (req: FakeRequestInfo) => [...req.messages].reverse().find((m) => m.role === "user")?.content ?? "";
const firstUser = (req: FakeRequestInfo) => req.messages.find((m) => m.role === "user")?.content ?? "";

function responseOf(req: FakeRequestInfo): string {
  const m = /<response>\n([\s\S]*?)\n<\/response>/.exec(firstUser(req));
  return m ? m[1] : "";
}

const defaultScore = (_name: string, response: string) => (response.split(/\s+/).length > 10 ? 3 : 1);

export const REFINED_RUBRIC = `Here is the revised rubric.
<rubric>
<item>
### Focus
Does the response stay on the prompt? Score from 0 to 5.
- 5: every paragraph serves the prompt.
- 0: ignores the prompt. Deduct 2 points for repeated filler.
</item>
<item>
### Evidence
Are claims supported with specifics? Score from 0 to 5.
- 5: concrete examples throughout.
- 0: no support.
</item>
</rubric>`;

export const MERGED_RUBRIC = `<rubric>
<item>
### Focus
Does the response stay on the prompt? Score from 0 to 5.
- 5: every paragraph serves the prompt.
- 0: ignores the prompt. Deduct 2 points for repeated filler.
</item>
<item>
### Evidence
Are claims supported with specifics? Score from 0 to 5.
- 5: concrete examples throughout.
- 0: no support.
</item>
<item>
### Focus
Does the response stay on the prompt? Score from 0 to 5.
- 5: every paragraph serves the prompt.
- 0: ignores the prompt. Deduct 2 points for repeated filler.
</item>
<item>
### Length honesty
Penalize padding. Score from 0 to 3.
- 3: no padding.
- 0: mostly padding.
</item>
</rubric>`;

/** A reply function for startFakeOpenAI covering every built-in judge and meta template. */
export function fakeJudge(opts: FakeJudgeOptions = {}): (req: FakeRequestInfo) => FakeReply {
  const score = opts.score ?? defaultScore;
  let refineCount = 0;
  return (req) => {
    const u = lastUser(req);
    if (u.includes("Do not give the score yet")) {
      const name = /Rubric item \d+ of \d+: (.+?) \(scored/.exec(u)?.[1] ?? "?";
      return `The response handles ${name} reasonably, with some gaps.`;
    }
    if (u.includes("reply with only the integer score for")) {
      const name = /integer score for "(.+?)"/.exec(u)?.[1] ?? "?";
      return String(score(name, responseOf(req)));
    }
    if (u.includes("Reply with one JSON object")) {
      const names = [...u.matchAll(/^### \d+\. (.+?) \(integer score from/gm)].map((m) => m[1]);
      const items = names.map((n) => ({ name: n, rationale: `About ${n}.`, score: score(n, responseOf(req)) }));
      return "```json\n" + JSON.stringify({ items }) + "\n```";
    }
    if (u.includes("Answer with one word: sound or flawed")) return /\b(?:short|lazy)\b/i.test(u) ? "flawed" : "sound";
    if (u.includes("Audit one junior evaluation")) {
      return opts.analysis?.() ?? "The junior score is inflated: the response repeats filler. The rubric misses evidence and does not penalize padding.";
    }
    if (u.includes("write an improved rubric")) return opts.refine?.(refineCount++) ?? REFINED_RUBRIC;
    if (u.includes("Merge them into one coherent rubric")) return opts.merge?.() ?? MERGED_RUBRIC;
    if (u.includes("write an evaluation plan")) return "1. Check the final answer. 2. Check each algebra step.";
    if (u.includes("Carry out your plan")) return "Step 1 holds; step 2 holds. The solution is correct and complete.";
    if (u.includes("reply with only the final grade")) return opts.planScore?.() ?? "4";
    if (u.includes("Graded cases") || u.includes("grade several solutions")) return "Grades were too generous for unsupported final answers.";
    if (u.includes("Rewrite the grading guidelines")) {
      const group = /of the kind "(.+?)"/.exec(u)?.[1] ?? "?";
      return `<guidelines>For ${group}: verify every step; an unsupported final answer earns at most 1.</guidelines>`;
    }
    return "ok";
  };
}
