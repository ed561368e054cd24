/**
 * Configuration files (YAML or JSON) validated with zod. Every problem is reported with the file, the
 * field path and what was expected, before any work starts.
 */
import { existsSync, readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { ConfigError, formatZodIssues, UserError } from "../util/errors.ts";

export { formatZodIssues };

export class ConfigValidationError extends UserError {
  constructor(
    readonly source: string,
    readonly issues: readonly z.core.$ZodIssue[],
  ) {
    super(formatZodIssues(source, issues));
    this.name = "ConfigValidationError";
  }
}

/** Validates a plain value against a schema; `source` names where it came from (file, flag, HTTP body). */
export function validate<S extends z.ZodType>(schema: S, value: unknown, source: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new ConfigValidationError(source, r.error.issues);
  return r.data;
}

/** Reads a .yaml/.yml/.json file into a plain value; a missing or unparsable file is a clear UserError. */
export function readConfigFile(path: string): unknown {
  if (!existsSync(path)) throw new UserError(`config file not found: ${path}`);
  const text = readFileSync(path, "utf8");
  try {
    if (/\.json$/i.test(path)) return JSON.parse(text);
    return parseYaml(text);
  } catch (err) {
    throw new ConfigError(path, "", "valid " + (/\.json$/i.test(path) ? "JSON" : "YAML"), (err as Error).message);
  }
}

export function loadConfig<S extends z.ZodType>(schema: S, path: string, overrides: Record<string, unknown> = {}): z.output<S> {
  const raw = readConfigFile(path);
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new ConfigError(path, "", "a mapping of options");
  return validate(schema, deepMerge(raw as Record<string, unknown>, overrides), path);
}

/** Merges flag overrides (possibly dotted keys, e.g. `rm.model`) into a config object. Undefined values are ignored. */
export function deepMerge(base: Record<string, unknown>, overrides: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = structuredClone(base);
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) continue;
    const parts = key.split(".");
    let cur: Record<string, unknown> = out;
    for (const p of parts.slice(0, -1)) {
      if (cur[p] === null || typeof cur[p] !== "object") cur[p] = {};
      cur = cur[p] as Record<string, unknown>;
    }
    cur[parts[parts.length - 1]] = value;
  }
  return out;
}
