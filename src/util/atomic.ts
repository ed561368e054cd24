/**
 * Crash-safe file writes. State files are written to a temp file in the same directory, fsynced and
 * renamed over the target, so a kill -9 leaves either the old or the new content, never half of one.
 * JSONL logs are appended whole-line with a single write; readers skip a torn last line (see readJsonl).
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync, existsSync } from "node:fs";
import { dirname, basename, join } from "node:path";

let counter = 0;

/**
 * `durable: false` skips the fsync: the rename is still atomic and survives a kill -9 (the page cache
 * outlives the process), only not a power loss. For hot paths such as per-request service state.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, opts: { durable?: boolean } = {}): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${counter++}.tmp`);
  const fd = openSync(tmp, "w");
  try {
    writeSync(fd, typeof data === "string" ? Buffer.from(data) : data);
    if (opts.durable !== false) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

export function writeJsonAtomic(path: string, value: unknown, opts: { durable?: boolean } = {}): void {
  writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n", opts);
}

/** Appends records as complete lines in one write call (and fsyncs), so concurrent readers never see a partial record except at a crash. */
export function appendJsonl(path: string, records: unknown[] | unknown, opts: { durable?: boolean } = {}): void {
  const list = Array.isArray(records) ? records : [records];
  if (list.length === 0) return;
  mkdirSync(dirname(path), { recursive: true });
  const text = list.map((r) => JSON.stringify(r)).join("\n") + "\n";
  const fd = openSync(path, "a");
  try {
    writeSync(fd, text);
    if (opts.durable !== false) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export interface JsonlReadResult<T> {
  records: T[];
  /** 1-based line numbers that were not valid JSON (a torn last line after a crash shows up here). */
  badLines: number[];
}

export function readJsonl<T = unknown>(path: string): JsonlReadResult<T> {
  if (!existsSync(path)) return { records: [], badLines: [] };
  const lines = readFileSync(path, "utf8").split("\n");
  const records: T[] = [];
  const badLines: number[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    try {
      records.push(JSON.parse(line) as T);
    } catch {
      badLines.push(i + 1);
    }
  });
  return { records, badLines };
}
