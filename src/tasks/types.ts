/**
 * A task is data + prompt templates + a reward recipe: no task-specific branches elsewhere in the code.
 * The trainer, `mpo generate`, the reward service and evaluation all take a TaskDefinition.
 */
import type { ChatMessage } from "../llm/types.ts";

export type Split = "train" | "test";

export interface TaskRecord {
  id: string;
  /** The instruction/question shown to the policy (without chat template). */
  prompt: string;
  /** Reference answer/solution/summary, when the data has one (judges and verifiers may read it). */
  reference?: string;
  /** Gold label for accuracy (e.g. a boxed answer, RIGHT/WRONG). */
  label?: string;
  /** Group key for grouped guidelines (math: "domain/cluster"). */
  group?: string;
  meta?: Record<string, unknown>;
}

/**
 * Exactly where a split's rows were read from: a local file, or a Hub dataset pinned to a commit with
 * its files. A run records it (config.json `data`), so `--resume` reads the same rows with no flags.
 */
export type ResolvedDataSource = { path: string } | { hf: string; split: string; revision: string; files: string[] };

export interface TaskDefinition {
  name: string;
  /** What the judges are told the task is. */
  description: string;
  /** Loads records of a split; throws UserError naming the missing file / field. */
  load(split: Split, opts?: { dataDir?: string; limit?: number }): Promise<TaskRecord[]>;
  /** Where `load(split)` read from (undefined before the first load, or for tasks not built from a spec). */
  dataSource?(split: Split): ResolvedDataSource | undefined;
  /** The policy's input for a record (chat messages; a plain-text policy uses the rendered text). */
  buildMessages(record: TaskRecord): ChatMessage[];
  /** Reward recipe, resolved by the reward factory (src/rl/reward.ts). */
  reward: TaskRewardSpec;
  /** The task instruction (preamble of the policy prompt), when the task declares one. */
  instruction?: string;
  /**
   * What the judges see of a record under the paper profile: the task's persona, the instruction, the
   * bare prompt (e.g. the bill without the policy's instruction around it), and whether the junior sees
   * the instruction. Absent: the generic view (description + whole policy prompt).
   */
  judgeView?(record: TaskRecord): JudgeView;
  /**
   * The record a policy prompt was rendered from (the inverse of the user template: its variables read back),
   * so a service that receives only prompt text judges it exactly as the trainer judges the record. A prompt
   * not rendered from the template is taken as the value of the template's only variable when it has one;
   * otherwise undefined.
   */
  recordFromPrompt?(prompt: string): TaskRecord | undefined;
  /** Task-level defaults of the meta step: interval (steps) and rollouts sampled (math: interval 20, as launch_mpo.sh). */
  metaDefaults?: { interval?: number; samples?: number };
  /**
   * Task-level training defaults for a run from a freshly initialized policy (no --policy), applied by `mpo train`
   * unless a flag or the config file sets them (say-word: the batch and step size its toy policy learns with in a
   * minute). Runs from a pretrained --policy keep the general defaults (the paper's).
   */
  freshPolicyDefaults?: { batchSize?: number; lr?: number };
  /** Evaluations that make sense for this task. */
  evaluations: Array<"elo" | "rouge" | "accuracy" | "oracle">;
  /**
   * How `mpo eval accuracy` checks an answer (absent: the task has no checkable answer): "boxed" = last
   * \boxed{} vs gold with MATH equivalence, "verdict" = last <verdict> tag vs gold label. `goldField` is
   * the gold field name in prediction/gold files.
   */
  accuracy?: { checker: "boxed" | "verdict"; goldField: string };
  /** Where the prompt templates were read from (for provenance). */
  templates?: { user: string; system?: string };
}

export interface JudgeView {
  persona: string;
  instruction: string;
  prompt: string;
  juniorSeesInstruction: boolean;
}

/**
 * A format rule checked before any judge call (the reference's ethics rule): a response without a
 * `<tag>VALUE</tag>` (VALUE one of `values`), or with fewer than `minWords` words once that tag is removed,
 * gets `score` without being judged.
 */
export interface FormatRule {
  tag: string;
  values: string[];
  minWords: number;
  score: number;
}

export type TaskRewardSpec =
  | { kind: "rubric"; initialRubric: string /* path to a rubric file or built-in name */; formatRule?: FormatRule }
  | { kind: "math-mixed"; answerCheckProbability: number; minReasoningWords: number; initialGuidelines?: string /* rubric/guideline file: every group's first guideline */ }
  | { kind: "verifier"; verifier: "boxed" | "verdict" }
  | { kind: "custom"; name: string };
