/**
 * The task registry: the one place that knows which tasks exist. Everything else (`mpo generate`,
 * `mpo train`, the reward service, `mpo eval`) asks it for a TaskDefinition by name — or by the path of a
 * task config file — and never branches on the task name itself.
 */
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { UserError } from "../util/errors.ts";
import { buildTask, type TaskOptions, type TaskSpec } from "./spec.ts";
import { loadTaskConfig } from "./config.ts";
import { essaySpec } from "./essay.ts";
import { summarizationSpec } from "./summarization.ts";
import { ethicsSpec } from "./ethics.ts";
import { mathSpec } from "./math.ts";
import type { TaskDefinition } from "./types.ts";

const registry = new Map<string, TaskSpec>();

/** Adds (or replaces) a task module's spec, e.g. from a plugin or a test. */
export function registerTask(spec: TaskSpec): void {
  registry.set(spec.name, spec);
}

for (const s of [essaySpec, summarizationSpec, ethicsSpec, mathSpec]) registerTask(s);

/** Paper names are accepted too. */
const ALIASES: Record<string, string> = {
  essay_writing: "essay",
  "essay-writing": "essay",
  ethical_reasoning: "ethics",
  "ethical-reasoning": "ethics",
  math_reasoning: "math",
  "math-reasoning": "math",
};

export interface TaskInfo {
  name: string;
  description: string;
  evaluations: TaskDefinition["evaluations"];
  reward: TaskSpec["reward"]["kind"];
  source: string;
}

export function listTasks(): TaskInfo[] {
  return [...registry.values()].map((s) => ({ name: s.name, description: s.description, evaluations: s.evaluations, reward: s.reward.kind, source: s.source ?? "registered" }));
}

export function getTaskSpec(nameOrPath: string): { spec: TaskSpec; baseDir?: string } {
  if (/\.(ya?ml|json)$/i.test(nameOrPath) || (nameOrPath.includes("/") && existsSync(nameOrPath))) {
    if (!existsSync(nameOrPath)) throw new UserError(`task config file not found: ${nameOrPath}`);
    return { spec: loadTaskConfig(nameOrPath), baseDir: dirname(resolve(nameOrPath)) };
  }
  const spec = registry.get(ALIASES[nameOrPath] ?? nameOrPath);
  if (!spec) throw new UserError(`unknown task '${nameOrPath}' (known: ${[...registry.keys()].join(", ")}; or give the path of a task config .yaml)`);
  return { spec };
}

/** A task by name (essay, summarization, ethics, math, or a registered one) or by config file path. */
export async function getTask(nameOrPath: string, opts: TaskOptions = {}): Promise<TaskDefinition> {
  const { spec, baseDir } = getTaskSpec(nameOrPath);
  return buildTask(spec, opts, baseDir);
}
