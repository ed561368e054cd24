/**
 * Essay writing (paper task 1): instruction-following essays and stories of at most 350 words, judged
 * by a rubric RM refined by the MRM, evaluated by pairwise Elo. Records: `{prompt}` (+ optional `id`) — by
 * default the Hub dataset the paper used (zaemyung/writing_prompts_collection, train/test splits); when it
 * is neither cached nor reachable, the 4,096 test prompts shipped in data/essay. This module is the worked
 * example in docs/tasks.md.
 */
import { join } from "node:path";
import type { TaskSpec } from "./spec.ts";
import { REPO_ROOT } from "./spec.ts";

/** The paper's essay prompts on the Hub (Apache-2.0; data/{train,test}-00000-of-00001.parquet, field `prompt`). */
export const ESSAY_HF = "zaemyung/writing_prompts_collection";
/** Shipped with the project (data/essay/README.md): the 4,096 prompts of the paper's essay test generations. */
const SHIPPED_PROMPTS = { path: "data/essay/prompts.jsonl", note: "the 4,096 essay prompts shipped in data/essay (the paper's test prompts)" };

export const essaySpec: TaskSpec = {
  name: "essay",
  description: "Essay writing: the policy writes an essay or story of at most 350 words that follows a writing instruction.",
  data: {
    train: { hf: ESSAY_HF, split: "train", fallback: SHIPPED_PROMPTS },
    test: { hf: ESSAY_HF, split: "test", fallback: SHIPPED_PROMPTS },
  },
  fields: { id: "id", vars: { prompt: "prompt" } },
  // As the reference: no system turn of our own, the instruction in the user turn, no quality demands.
  templates: { instruction: "tasks/essay/instruction.md", user: "tasks/essay/user.md" },
  constants: { max_words: 350 },
  judge: { persona: "tasks/essay/judge-persona.md", prompt: "tasks/essay/judge-prompt.md", showInstruction: true },
  // The paper's iteration-0 rubric (Apache-2.0, see prompts/rubrics/paper/NOTICE.md).
  reward: { kind: "rubric", initialRubric: join(REPO_ROOT, "prompts/rubrics/paper/essay_writing/evaluation_rubric_real_iter_0.txt") },
  evaluations: ["elo"],
  source: "built-in",
};
