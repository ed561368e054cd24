/**
 * The trainer's prompt stream: a seeded shuffle per epoch walked by a resumable cursor, and a record's prompt
 * as policy token ids. The order of epoch e is a pure function of (seed, e), so the cursor {epoch, index}
 * saved in a checkpoint is all a resume needs to continue the same sequence.
 */
import type { TaskDefinition, TaskRecord } from "../tasks/types.ts";
import { Rng } from "../util/rng.ts";
import type { PolicyFormat } from "./policy-format.ts";
import type { DataCursor } from "./state.ts";
import type { PolicyTokenizer } from "./tokenizer.ts";

/** The shuffled record indices of epoch `epoch`. */
export function epochOrder(seed: number, epoch: number, records: readonly TaskRecord[]): number[] {
  return new Rng(`${seed}:data:${epoch}`).shuffle(records.map((_, i) => i));
}

/** The next `n` records from `cursor` (wrapping into the next epoch's order) and the cursor after them. */
export function nextPrompts(records: readonly TaskRecord[], seed: number, cursor: DataCursor, n: number): { prompts: TaskRecord[]; cursor: DataCursor } {
  const prompts: TaskRecord[] = [];
  let { epoch, index } = cursor;
  let order = epochOrder(seed, epoch, records);
  while (prompts.length < n) {
    if (index >= order.length) {
      epoch++;
      index = 0;
      order = epochOrder(seed, epoch, records);
    }
    prompts.push(records[order[index++]]);
  }
  return { prompts, cursor: { epoch, index } };
}

/** A record's prompt as token ids: rendered by the policy's format, left-truncated to maxPromptTokens, never empty. */
export function promptTokenIds(record: TaskRecord, task: TaskDefinition, format: PolicyFormat, tokenizer: PolicyTokenizer, maxPromptTokens: number): number[] {
  const text = format.prompt(task.buildMessages(record));
  let ids = tokenizer.encode(text);
  // A chat template writes its own begin-of-text token when the model has one.
  if (tokenizer.bosId !== null && format.kind === "separator") ids = [tokenizer.bosId, ...ids];
  if (ids.length > maxPromptTokens) ids = ids.slice(ids.length - maxPromptTokens);
  if (ids.length === 0) ids = [tokenizer.eosId];
  return ids;
}
