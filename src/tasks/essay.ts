/**
 * Essay writing (paper task 1): instruction-following essays and stories of at most 350 words, judged
 * by a rubric RM refined by the MRM, evaluated by pairwise Elo. Records: `{id, prompt}` JSONL — by
 * default `essay/prompts.jsonl` in the data dir (the paper's 4,096 test instructions); pass your own
 * file for training. This module is the worked example in docs/tasks.md.
 */
import { join } from "node:path";
import type { TaskSpec } from "./spec.ts";
import { REPO_ROOT } from "./spec.ts";

export const essaySpec: TaskSpec = {
  name: "essay",
  description: "Essay writing: the policy writes an essay or story of at most 350 words that follows a writing instruction.",
  data: {
    train: { path: "essay/prompts.jsonl" },
    test: { path: "essay/prompts.jsonl" },
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
