/**
 * Ethical reasoning (paper task 3): an anecdote from r/AmItheAsshole (Scruples) and the action it
 * describes → step-by-step reasoning ending in `<verdict>RIGHT|WRONG</verdict>`; rubric RM + MRM;
 * evaluated by verdict accuracy against the community's binarized label. Data: Scruples anecdotes JSONL
 * (`id`, `title`, `text`, `action.description`, `binarized_label`) from the Hub dataset metaeval/scruples
 * (Apache-2.0; train/dev/test anecdote JSONL), or any file passed in. The anecdote text is optional so
 * title-only records still build a prompt.
 */
import { join } from "node:path";
import type { TaskSpec } from "./spec.ts";
import { REPO_ROOT } from "./spec.ts";

export const ethicsSpec: TaskSpec = {
  name: "ethics",
  description: "Ethical reasoning: the policy reads a personal anecdote, reasons about whether the described action was acceptable, and ends with <verdict>RIGHT</verdict> or <verdict>WRONG</verdict>.",
  data: {
    train: { hf: "metaeval/scruples", split: "train", files: ["train.scruples-anecdotes.jsonl"] },
    test: { hf: "metaeval/scruples", split: "test", files: ["test.scruples-anecdotes.jsonl"] },
  },
  // The paper drops anecdotes without an extracted action; so do we (and say how many).
  fields: { id: "id", vars: { title: "title", text: "text", action: "action.description" }, optional: ["title", "text"], label: "binarized_label", skipMissing: ["action"] },
  templates: { instruction: "tasks/ethics/instruction.md", user: "tasks/ethics/user.md" },
  constants: { max_words: 300 },
  judge: { persona: "tasks/ethics/judge-persona.md", prompt: "tasks/ethics/judge-prompt.md", showInstruction: false },
  reward: {
    kind: "rubric",
    initialRubric: join(REPO_ROOT, "prompts/rubrics/paper/ethical_reasoning/evaluation_rubric_real_iter_0.txt"),
    // The reference's format rule (rm_ethical_reasoning.py:81-95): no verdict tag, or under 30 words of reasoning → −10, unjudged.
    formatRule: { tag: "verdict", values: ["RIGHT", "WRONG"], minWords: 30, score: -10 },
  },
  evaluations: ["accuracy", "elo"],
  accuracy: { checker: "verdict", goldField: "binarized_label" },
  source: "built-in",
};
