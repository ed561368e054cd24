/**
 * The open meta window lives on disk (rollouts/step-NNNNNN.jsonl), never in memory: the service keeps only
 * its line count, and a meta step reads the window back as a stream into a bounded reservoir. With
 * `--meta-every 0` a window grows without end, so neither path may hold the file (or one string of it):
 * Node cannot make a string over 512 MiB, and the service must restart on any window size.
 */
import { closeSync, createReadStream, existsSync, openSync, readSync } from "node:fs";
import { createInterface } from "node:readline";
import type { Rng } from "../util/rng.ts";

/** Complete lines (ending in "\n") of a file, read in 1 MiB chunks: a torn last line after a kill is not counted. */
export function countLinesSync(path: string): number {
  if (!existsSync(path)) return 0;
  const fd = openSync(path, "r");
  const buf = Buffer.allocUnsafe(1 << 20);
  let n = 0;
  try {
    for (;;) {
      const got = readSync(fd, buf, 0, buf.length, null);
      if (got === 0) break;
      for (let i = buf.indexOf(10, 0); i >= 0 && i < got; i = buf.indexOf(10, i + 1)) n++;
    }
  } finally {
    closeSync(fd);
  }
  return n;
}

/**
 * Reads a JSONL window as a stream and keeps a uniform sample of at most `cap` records (reservoir
 * sampling, Algorithm R: record t replaces a kept one with probability cap/t). Unparsable lines (a torn
 * tail after kill -9) are counted and skipped. Memory: O(cap) records whatever the file size.
 */
export async function sampleJsonlWindow<T>(path: string, cap: number, rng: Rng): Promise<{ records: T[]; seen: number; skipped: number }> {
  const kept: T[] = [];
  let seen = 0;
  let skipped = 0;
  if (!existsSync(path)) return { records: kept, seen, skipped };
  const lines = createInterface({ input: createReadStream(path, { encoding: "utf8" }), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === "") continue;
    let rec: T;
    try {
      rec = JSON.parse(line) as T;
    } catch {
      skipped++;
      continue;
    }
    seen++;
    if (kept.length < cap) kept.push(rec);
    else {
      const j = rng.int(seen);
      if (j < cap) kept[j] = rec;
    }
  }
  return { records: kept, seen, skipped };
}
