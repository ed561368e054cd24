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
  templates: { system: "tasks/summarization/system.md", user: "tasks/summarization/user.md" },
  constants: { max_words: 400 },
  reward: { kind: "rubric", initialRubric: join(REPO_ROOT, "prompts/tasks/summarization/initial-rubric.txt") },
  evaluations: ["elo", "rouge"],
  source: "built-in",
};
