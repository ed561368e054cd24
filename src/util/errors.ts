import type { z } from "zod";

/**
 * Errors a user can act on (bad config, missing file, unreachable server). The CLI prints their message
 * without a stack trace and exits with status 2; everything else is a bug and keeps its stack.
 */
export class UserError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "UserError";
  }
}

/** A configuration or data-file problem: names the file, the field path and what was expected. */
export class ConfigError extends UserError {
  constructor(
    readonly file: string,
    readonly field: string,
    readonly expected: string,
    readonly got?: string,
  ) {
    super(`${file}: field '${field || "(root)"}': expected ${expected}${got !== undefined ? `, got ${got}` : ""}`);
    this.name = "ConfigError";
  }
}

/** Turns zod issues into one readable message: `file: field 'a.b': expected number, got string`. */
export function formatZodIssues(source: string, issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .map((iss) => {
      const field = iss.path.length ? iss.path.map(String).join(".") : "(root)";
      return `${source}: field '${field}': ${iss.message}`;
    })
    .join("\n");
}
