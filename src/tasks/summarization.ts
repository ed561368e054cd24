/**
 * Summarization (paper task 2): a US congressional bill → a concise, faithful summary of at most 400
 * words; rubric RM + MRM; evaluated by Elo and ROUGE against the human summary. Data: BillSum
 * (`text`, `summary`, `title`): the Hub dataset FiscalNote/billsum (CC0-1.0; read through the Hugging Face
 * cache; splits train / test / ca_test), or a local JSONL/Parquet file.
 */
import { join } from "node:path";
import type { TaskSpec } from "./spec.ts";
import { REPO_ROOT } from "./spec.ts";

export const summarizationSpec: TaskSpec = {
  name: "summarization",
  description: "Summarization: the policy summarizes a US congressional bill in at most 400 words, concisely and faithfully.",
  data: {
    train: { hf: "FiscalNote/billsum", split: "train" },
    test: { hf: "FiscalNote/billsum", split: "test" },
  },
  fields: { vars: { text: "text", title: "title" }, optional: ["title"], reference: "summary", meta: ["title"] },
  templates: { instruction: "tasks/summarization/instruction.md", user: "tasks/summarization/user.md" },
  constants: { max_words: 400 },
  // The reference's judge sees the bill and the summary only: no instruction, no gold summary.
  judge: { persona: "tasks/summarization/judge-persona.md", prompt: "tasks/summarization/judge-prompt.md", showInstruction: false },
  reward: { kind: "rubric", initialRubric: join(REPO_ROOT, "prompts/rubrics/paper/summarization/evaluation_rubric_real_iter_0.txt") },
  evaluations: ["elo", "rouge"],
  source: "built-in",
};
