/**
 * `--data-file train=PATH,test=PATH`: the one flag every command that reads task data takes to use local
 * files instead of a task's default source (JSONL/JSON/CSV/Parquet, fields as the task expects).
 */
import { resolve } from "node:path";
import { z } from "zod";
import { UserError } from "../util/errors.ts";
import type { Split } from "./types.ts";

export const DATA_FILE_HELP = "local task data instead of the task's default (Hub) source: train=PATH,test=PATH (JSONL/JSON/CSV/Parquet)";

/** Parses `train=a.jsonl,test=b.parquet` (a bare PATH means `defaultSplit`, when given) into absolute paths. */
export function parseDataFiles(value: string, defaultSplit?: Split): Partial<Record<Split, string>> {
  const out: Partial<Record<Split, string>> = {};
  for (const part of value.split(",").map((p) => p.trim()).filter(Boolean)) {
    const m = /^(train|test)=(.+)$/.exec(part);
    if (m) out[m[1] as Split] = resolve(m[2]);
    else if (defaultSplit && !part.includes("=")) out[defaultSplit] = resolve(part);
    else throw new UserError(`--data-file: expected SPLIT=PATH[,SPLIT=PATH] with SPLIT train or test, got '${part}'`);
  }
  if (!Object.keys(out).length) throw new UserError("--data-file: expected train=PATH and/or test=PATH");
  return out;
}

/** A split's data source in a run config: a file path, or the exact source a run resolved (recorded for --resume). */
export const dataSourceConfigSchema = z.union([
  z.string().min(1),
  z.object({ path: z.string().min(1) }).strict(),
  z.object({ hf: z.string().regex(/^[\w.-]+\/[\w.-]+$/), split: z.string().min(1), revision: z.string().regex(/^[0-9a-f]{40}$/, "a 40-hex commit"), files: z.array(z.string().min(1)).min(1) }).strict(),
]);
export const dataConfigSchema = z.object({ train: dataSourceConfigSchema.optional(), test: dataSourceConfigSchema.optional() }).strict();
