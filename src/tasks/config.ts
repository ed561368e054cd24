/**
 * User-defined tasks from a YAML/JSON file — a task without writing code: data source(s), the field
 * mapping into template placeholders, template files, reward recipe, evaluations. Validated with zod
 * (errors name the file and field), and checked for consistency: every placeholder the templates use
 * must be mapped to a field or given as a constant, so a typo fails at load time, not mid-training.
 * Relative paths (data, templates, rubric) resolve against the config file's directory.
 */
import { existsSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import { readConfigFile, validate } from "../config/load.ts";
import { ConfigError } from "../util/errors.ts";
import { loadTemplates, templatePlaceholders } from "../judge/templates.ts";
import { resolveTemplateText, type DataSource, type TaskSpec } from "./spec.ts";

const dataSource = z.union([
  z.string().min(1),
  z.object({ path: z.string().min(1) }).strict(),
  z.object({ hf: z.string().regex(/^[\w.-]+\/[\w.-]+$/, "a Hub dataset name like owner/name"), split: z.string().min(1), revision: z.string().min(1).optional(), files: z.array(z.string()).optional() }).strict(),
]);

const fieldPath = z.string().min(1);

export const taskConfigSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "a name of letters, digits, _ . -"),
    description: z.string().min(1),
    data: z
      .object({ train: dataSource.optional(), test: dataSource.optional() })
      .strict()
      .refine((d) => d.train !== undefined || d.test !== undefined, "at least one of train / test"),
    fields: z
      .object({
        id: fieldPath.optional(),
        vars: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), fieldPath).refine((v) => Object.keys(v).length > 0, "at least one placeholder → field"),
        optional: z.array(z.string()).optional(),
        reference: fieldPath.optional(),
        label: fieldPath.optional(),
        group: fieldPath.optional(),
        meta: z.array(fieldPath).optional(),
      })
      .strict(),
    templates: z.object({ user: z.string().min(1), system: z.string().min(1).optional() }).strict(),
    constants: z.record(z.string(), z.union([z.string(), z.number()])).optional(),
    reward: z.discriminatedUnion("kind", [
      z.object({ kind: z.literal("rubric"), initialRubric: z.string().min(1) }).strict(),
      z.object({ kind: z.literal("math-mixed"), answerCheckProbability: z.number().min(0).max(1).default(0.5), minReasoningWords: z.number().int().min(0).default(30) }).strict(),
      z.object({ kind: z.literal("verifier"), verifier: z.enum(["boxed", "verdict"]) }).strict(),
      z.object({ kind: z.literal("custom"), name: z.string().min(1) }).strict(),
    ]),
    evaluations: z.array(z.enum(["elo", "rouge", "accuracy", "oracle"])).default(["elo"]),
    accuracy: z.object({ checker: z.enum(["boxed", "verdict"]), goldField: z.string().min(1) }).strict().optional(),
  })
  .strict();

export type TaskConfig = z.output<typeof taskConfigSchema>;

/** Reads, validates and cross-checks a task config file into a TaskSpec (build it with buildTask / getTask). */
export function loadTaskConfig(path: string): TaskSpec {
  const raw = readConfigFile(path);
  const cfg = validate(taskConfigSchema, raw, path);
  const baseDir = dirname(resolve(path));
  const abs = (p: string) => (isAbsolute(p) ? p : join(baseDir, p));

  const templates = loadTemplates();
  const known = new Set([...Object.keys(cfg.fields.vars), ...Object.keys(cfg.constants ?? {})]);
  for (const key of ["user", "system"] as const) {
    const ref = cfg.templates[key];
    if (!ref) continue;
    let text: string;
    try {
      text = resolveTemplateText(ref, templates, baseDir).text;
    } catch {
      throw new ConfigError(path, `templates.${key}`, "a template file (relative to the config file) or a built-in template name such as tasks/essay/user.md", JSON.stringify(ref));
    }
    const missing = templatePlaceholders(text).filter((p) => !known.has(p));
    if (missing.length) throw new ConfigError(path, `templates.${key}`, `every placeholder mapped in fields.vars or constants`, `unmapped ${missing.map((m) => `{{${m}}}`).join(", ")}`);
  }
  for (const o of cfg.fields.optional ?? []) if (!(o in cfg.fields.vars)) throw new ConfigError(path, "fields.optional", "names of placeholders listed in fields.vars", JSON.stringify(o));
  if (cfg.evaluations.includes("accuracy") && !cfg.accuracy) throw new ConfigError(path, "accuracy", "{checker, goldField} when evaluations include accuracy", "nothing");

  const source = (s: TaskConfig["data"]["train"]): DataSource | undefined =>
    s === undefined ? undefined : typeof s === "string" ? { path: abs(s) } : "path" in s ? { path: abs(s.path) } : s;
  const reward = cfg.reward.kind === "rubric" && existsSync(abs(cfg.reward.initialRubric)) ? { ...cfg.reward, initialRubric: abs(cfg.reward.initialRubric) } : cfg.reward;
  const data: TaskSpec["data"] = {};
  if (cfg.data.train !== undefined) data.train = source(cfg.data.train);
  if (cfg.data.test !== undefined) data.test = source(cfg.data.test);
  return {
    name: cfg.name,
    description: cfg.description,
    data,
    fields: cfg.fields,
    templates: { user: cfg.templates.user, ...(cfg.templates.system ? { system: cfg.templates.system } : {}) },
    constants: cfg.constants,
    reward,
    evaluations: cfg.evaluations,
    accuracy: cfg.accuracy,
    source: resolve(path),
  };
}
