/** Task resolution for the trainer: the built-in toy tasks, else the task registry (src/tasks). */
import type { TaskOptions } from "../tasks/spec.ts";
import type { TaskDefinition } from "../tasks/types.ts";
import { BUILTIN_TASKS } from "./builtin-task.ts";

/** A built-in toy task or a registered task (name or task config path). */
export async function resolveTask(name: string, opts: Pick<TaskOptions, "dataDir" | "data"> = {}): Promise<TaskDefinition> {
  if (BUILTIN_TASKS[name]) return BUILTIN_TASKS[name];
  const { getTask } = await import("../tasks/registry.ts");
  return getTask(name, { ...(opts.dataDir ? { dataDir: opts.dataDir } : {}), ...(opts.data ? { data: opts.data } : {}) });
}
