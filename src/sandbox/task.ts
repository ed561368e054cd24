/** The sandbox's essay task as a TaskDefinition: built-in prompts, plain instruction as the user turn. */
import { join } from "node:path";
import type { TaskDefinition } from "../tasks/types.ts";
import { REPO_ROOT } from "../tasks/spec.ts";
import { sandboxPrompts } from "./world.ts";

export const SANDBOX_RUBRICS = {
  weak: join(REPO_ROOT, "prompts", "sandbox", "weak-rubric.txt"),
  expert: join(REPO_ROOT, "prompts", "sandbox", "expert-rubric.txt"),
};

export const sandboxEssayTask: TaskDefinition = {
  name: "sandbox-essay",
  description: "Essay writing: write a short essay or story (under 350 words) that follows the instruction.",
  async load(split, opts) {
    const rs = sandboxPrompts(split).map((p) => ({ id: p.id, prompt: p.prompt, group: p.topic, meta: { topic: p.topic, instruction: p.instruction } }));
    return opts?.limit ? rs.slice(0, opts.limit) : rs;
  },
  buildMessages: (r) => [{ role: "user", content: r.prompt }],
  reward: { kind: "rubric", initialRubric: SANDBOX_RUBRICS.weak },
  evaluations: ["oracle"],
};
