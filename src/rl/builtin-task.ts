/**
 * Built-in toy tasks so `mpo train` runs out of the box with no data, no LLM server and no pretrained
 * weights: a word-level vocabulary, prompts made of those words, and a rule reward. They are what the
 * end-to-end tests train on (a tiny freshly initialized policy must learn them within a few dozen steps)
 * and a smoke test for real setups.
 *
 *   say-word   "please say the word W" → reward: how much of the response is the target word
 *              (`reward.word` fixes one word for every prompt; otherwise each prompt's W).
 */
import type { TaskDefinition, TaskRecord } from "../tasks/types.ts";
import { Rng } from "../util/rng.ts";
import { sandboxEssayTask } from "../sandbox/task.ts";
import { WordTokenizer } from "./tokenizer.ts";

export const BUILTIN_WORDS = [
  "please", "say", "the", "word", "red", "blue", "green", "yellow", "black", "white",
  "cat", "dog", "fox", "owl", "sun", "moon", "tree", "stone", "and", "is",
];
export const TARGET_WORDS = ["red", "blue", "green", "yellow", "cat", "dog", "fox", "owl", "sun", "moon"];

export function builtinTokenizer(): WordTokenizer {
  return new WordTokenizer(BUILTIN_WORDS);
}

function sayWordRecords(split: "train" | "test"): TaskRecord[] {
  const rng = new Rng(`say-word:${split}`);
  const templates = ["say W", "please say W", "say the word W", "please say the word W", "the word is W say W"];
  const out: TaskRecord[] = [];
  const n = split === "train" ? 200 : 40;
  for (let i = 0; i < n; i++) {
    const target = TARGET_WORDS[rng.int(TARGET_WORDS.length)];
    const t = templates[rng.int(templates.length)];
    out.push({ id: `${split}-${i}`, prompt: t.replaceAll("W", target), label: target, meta: { target } });
  }
  return out;
}

export const sayWordTask: TaskDefinition = {
  name: "say-word",
  description: "Answer with the word the user asks for.",
  async load(split, opts) {
    const recs = sayWordRecords(split);
    return opts?.limit ? recs.slice(0, opts.limit) : recs;
  },
  buildMessages: (record) => [{ role: "user", content: record.prompt }],
  reward: { kind: "custom", name: "keyword" },
  // The fresh tiny policy needs a few thousand samples to learn to copy a word: 32 prompts a step at 3e-3 moves
  // the mean score from ~0.04 to ~0.5 in the default 100 steps; 8 at 1e-3 barely moves it (docs/training.md).
  freshPolicyDefaults: { batchSize: 32, lr: 3e-3 },
  evaluations: [],
};

/** Built-in tasks by name: the toy task and the sandbox's essay world (prompts built in, no data files). */
export const BUILTIN_TASKS: Record<string, TaskDefinition> = { "say-word": sayWordTask, [sandboxEssayTask.name]: sandboxEssayTask };
