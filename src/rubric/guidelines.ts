/**
 * Grouped guidelines (math): free text per group key such as "algebra/1" (domain/cluster). The meta step
 * rewrites one group at a time; the set is versioned in the run directory like a rubric (`guidelines/`).
 */
import { z } from "zod";
import { formatZodIssues } from "../util/errors.ts";
import { RubricError } from "./format.ts";
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
