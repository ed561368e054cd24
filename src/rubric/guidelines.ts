/**
 * Grouped guidelines (math): free text per group key such as "algebra/1" (domain/cluster). The meta step
 * rewrites one group at a time; the set is versioned in the run directory like a rubric (`guidelines/`).
 */
import { z } from "zod";
import { existsSync, readFileSync } from "node:fs";
import { formatZodIssues, UserError } from "../util/errors.ts";
import { guidelineBlock, RubricError } from "./format.ts";
import type { GuidelineSet } from "./types.ts";

export const guidelineSetSchema = z
  .object({
    groups: z.record(z.string().min(1, "group key must be non-empty"), z.string()),
  })
  .strict();

/** Validates a JSON value as a GuidelineSet; errors name the source and field. */
export function parseGuidelineSetJson(value: unknown, source = "guidelines"): GuidelineSet {
  const r = guidelineSetSchema.safeParse(value);
  if (!r.success) throw new RubricError(formatZodIssues(source, r.error.issues));
  return { groups: { ...r.data.groups } };
}

/** Human-readable form (the `.txt` next to each version): one `## group` section per key, sorted. */
export function guidelinesToText(g: GuidelineSet): string {
  return (
    Object.keys(g.groups)
      .sort()
      .map((k) => `## ${k}\n\n${g.groups[k].trim()}\n`)
      .join("\n") || "(no guidelines)\n"
  );
}

/** The guideline text for a group, falling back to the domain ("algebra/2" → "algebra") and then "default". */
export function guidelineFor(g: GuidelineSet, group: string | undefined): string | undefined {
  if (group === undefined) return g.groups.default;
  if (group in g.groups) return g.groups[group];
  const domain = group.split("/")[0];
  return g.groups[domain] ?? g.groups.default;
}

/**
 * An initial guideline set from a file: `.json` as a GuidelineSet; any other file as one text that
 * becomes every group's first guideline (key "default", which every group falls back to), with a
 * `[Start of …] … [End of …]` wrapper (the paper's math files) removed.
 */
export function loadGuidelineFile(path: string): GuidelineSet {
  if (!existsSync(path)) throw new UserError(`guideline file not found: ${path}`);
  const text = readFileSync(path, "utf8");
  if (/\.json$/i.test(path)) {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new RubricError(`${path}: not valid JSON: ${(err as Error).message}`);
    }
    return parseGuidelineSetJson(raw, path);
  }
  const body = (guidelineBlock(text) ?? text).trim();
  if (!body) throw new RubricError(`${path}: no guideline text`);
  return { groups: { default: body } };
}
