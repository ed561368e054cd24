/**
 * What the reward service's judges see of a request item: with `task` set (`mpo serve --task NAME`), exactly
 * what `mpo train --task NAME` shows them for the same sample — the task's record is read back from the
 * prompt text (TaskDefinition.recordFromPrompt), then the trainer's own judgeInputs gives the junior's and
 * the senior's view under the protocol profile (paper: the task persona, the bare prompt, the instruction
 * only where the task says), and the task's format rule (ethics: −10) decides before any judge call. Without
 * a task: the configured task description and the prompt as sent (the generic view).
 */
import { checkFormatRule } from "../judge/format-rule.ts";
import type { ProtocolProfile } from "../judge/protocol.ts";
import type { Evaluation, ScoreInput } from "../judge/types.ts";
import { judgeInputs } from "../rl/rewards/judge.ts";
import type { TaskDefinition, TaskRecord } from "../tasks/types.ts";

/** A request item that cannot be judged as the task's (400 naming the item). */
export class BadItemError extends Error {
  readonly statusCode = 400;
}

export interface ItemView {
  junior: ScoreInput;
  /** What the senior judge reads of this rollout in a meta step. */
  senior: { taskDescription: string; prompt: string };
  /** The senior's system turn (the task's persona), when the task has one. */
  persona?: string;
  /** The task's format rule decided the score (no judge call). */
  ruled: Evaluation | null;
}

export function itemView(
  o: { task?: TaskDefinition; protocol: ProtocolProfile; taskDescription: string },
  it: { prompt: string; response: string; reference?: string; group?: string },
  index: number,
  rubricVersion: number,
): ItemView {
  if (!o.task) {
    const junior: ScoreInput = { taskDescription: o.taskDescription, prompt: it.prompt, response: it.response, reference: it.reference, group: it.group };
    return { junior, senior: { taskDescription: o.taskDescription, prompt: it.prompt }, ruled: null };
  }
  const task = o.task;
  const found = task.recordFromPrompt ? task.recordFromPrompt(it.prompt) : { id: "", prompt: it.prompt };
  if (!found)
    throw new BadItemError(
      `item ${index}: the prompt is not one of task ${task.name}'s prompts (its user template ${task.templates?.user ?? ""} does not match); send the policy prompt as the task renders it`,
    );
  const record: TaskRecord = {
    ...found,
    ...(it.reference !== undefined ? { reference: it.reference } : {}),
    ...(it.group !== undefined ? { group: it.group } : {}),
  };
  const v = judgeInputs(task, o.protocol, { record, response: it.response, finished: true });
  const rule = task.reward.kind === "rubric" ? task.reward.formatRule : undefined;
  return {
    junior: v.junior,
    senior: { taskDescription: v.senior.taskDescription, prompt: v.senior.prompt },
    ...(v.senior.persona ? { persona: v.senior.persona } : {}),
    ruled: rule ? checkFormatRule(it.response, rule, rubricVersion) : null,
  };
}
