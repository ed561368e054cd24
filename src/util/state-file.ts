/**
 * Reading back state files the program wrote itself (checkpoint manifests, trainer state, serve-state.json,
 * meta commit markers, rubric versions): parsed JSON validated with a zod schema, so a corrupt or
 * hand-edited file fails with an error naming the file and the field instead of a cast that crashes later.
 */
import { readFileSync } from "node:fs";
import type { z } from "zod";
import { formatZodIssues, UserError } from "./errors.ts";

/** A state file that exists but cannot be used: the message names the file (and the field when known). */
export class StateFileError extends UserError {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(message);
    this.name = "StateFileError";
  }
}

/** Validates an already parsed value read from `file`; `what` says what the file is ("trainer state"). */
export function parseStateWith<S extends z.ZodType>(file: string, value: unknown, schema: S, what: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new StateFileError(file, `unreadable ${what}:\n${formatZodIssues(file, r.error.issues)}`);
  return r.data;
}

/** Reads, parses and validates a JSON state file. */
export function readJsonFileWith<S extends z.ZodType>(file: string, schema: S, what: string): z.output<S> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new StateFileError(file, `${file}: cannot read ${what}: ${(err as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new StateFileError(file, `${file}: unreadable ${what}: not JSON (${(err as Error).message})`);
  }
  return parseStateWith(file, value, schema, what);
}
