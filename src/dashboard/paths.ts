/**
 * Run ids → directories, safely. A run id is a path relative to RUNS_DIR ("sandbox/mpo"); anything that
 * would leave RUNS_DIR (.., absolute paths, NUL, symlinks pointing out) is refused, because the dashboard
 * serves files named by URL parameters and must never become a file server for the whole disk.
 */
import { realpathSync } from "node:fs";
import { isAbsolute, join, relative, resolve, sep } from "node:path";

export class PathRejected extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PathRejected";
  }
}

/** True if `child` equals `root` or lies inside it (both absolute, already normalized). */
export function isInside(root: string, child: string): boolean {
  const rel = relative(root, child);
  return rel === "" || (rel.split(sep)[0] !== ".." && !isAbsolute(rel));
}

/**
 * Resolves a run id to an absolute, real directory path inside `realRoot` (the realpath of RUNS_DIR).
 * Throws PathRejected for ids that are syntactically suspicious or resolve outside; returns null when the
 * id is well-formed but nothing exists there.
 */
export function resolveRunId(realRoot: string, id: string): string | null {
  if (typeof id !== "string" || id.length === 0 || id.length > 1000) throw new PathRejected("empty or overlong run id");
  if (id.includes("\0")) throw new PathRejected("run id contains NUL");
  if (id.includes("\\")) throw new PathRejected("run id contains a backslash");
  if (isAbsolute(id) || /^[a-zA-Z]:/.test(id)) throw new PathRejected("run id must be relative to the runs directory");
  const segments = id.split("/");
  if (segments.some((s) => s === "..")) throw new PathRejected("run id must not contain '..'");
  const lexical = resolve(realRoot, id);
  if (!isInside(realRoot, lexical)) throw new PathRejected("run id resolves outside the runs directory");
  let real: string;
  try {
    real = realpathSync(lexical);
  } catch {
    return null;
  }
  if (!isInside(realRoot, real)) throw new PathRejected("run id resolves (through a link) outside the runs directory");
  return real;
}

/**
 * A file inside a run directory, by a name the server built itself (never raw user text); still checked
 * with realpath so a symlinked file inside a run cannot point out of RUNS_DIR. Returns null if missing.
 */
export function safeFile(realRoot: string, runDir: string, ...parts: string[]): string | null {
  const p = join(runDir, ...parts);
  let real: string;
  try {
    real = realpathSync(p);
  } catch {
    return null;
  }
  if (!isInside(realRoot, real)) throw new PathRejected(`${parts.join("/")} links outside the runs directory`);
  return real;
}

/** Run id of a directory (POSIX separators; "." for RUNS_DIR itself). */
export function runIdOf(realRoot: string, dir: string): string {
  const rel = relative(realRoot, dir);
  return rel === "" ? "." : rel.split(sep).join("/");
}
