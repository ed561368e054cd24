/**
 * Generation files as evaluation input: JSONL lines `{query, model_response}` — the paper's
 * `*.test.generations.jsonl` shape, and what `mpo generate` writes. The prompt key is the query text
 * (so files from different systems line up by prompt, not by line number); an optional pattern pulls
 * the bare instruction out of a chat-templated query for the judge (the paper did this with a regex).
 */
import { basename } from "node:path";
import { readJsonlFile, rowLocation, DataFileError } from "../data/files.ts";
import type { EloSystem } from "./elo.ts";

export interface GenerationFileOptions {
  /** Field holding the prompt key and text (default "query"). */
  queryField?: string;
  /** Field holding the response (default "model_response"). */
  responseField?: string;
  /** Optional regex; when it matches the query, its last capture group is the prompt shown to the judge. */
  promptPattern?: RegExp;
}

export interface LoadedSystem extends EloSystem {
  file: string;
  lines: number;
  /** Lines whose query repeated an earlier one (the first is kept). */
  duplicates: number;
}

/** System name from a file name: `a/b/32b_72b.test.generations.jsonl` → `32b_72b`. */
export function systemNameFromFile(path: string): string {
  return basename(path).replace(/\.jsonl$/i, "").replace(/\.test\.generations$|\.generations$/i, "");
}

export function loadGenerationFile(path: string, name = systemNameFromFile(path), opts: GenerationFileOptions = {}): LoadedSystem {
  const qf = opts.queryField ?? "query";
  const rf = opts.responseField ?? "model_response";
  const rows = readJsonlFile(path);
  const responses = new Map<string, { prompt: string; response: string }>();
  let duplicates = 0;
  rows.forEach((row, i) => {
    const q = row[qf];
    const r = row[rf];
    if (typeof q !== "string" || q === "") throw new DataFileError(path, rowLocation(row, i + 1), qf, `expected the prompt as a non-empty string, got ${q === undefined ? "nothing" : JSON.stringify(q)?.slice(0, 40)}`);
    if (typeof r !== "string") throw new DataFileError(path, rowLocation(row, i + 1), rf, `expected the response as a string, got ${r === undefined ? "nothing" : typeof r}`);
    if (responses.has(q)) {
      duplicates++;
      return;
    }
    let prompt = q;
    if (opts.promptPattern) {
      const m = opts.promptPattern.exec(q);
      if (m && m.length > 1) prompt = (m[m.length - 1] ?? q).trim();
    }
    responses.set(q, { prompt, response: r });
  });
  if (responses.size === 0) throw new DataFileError(path, null, null, "no records");
  return { name, responses, file: path, lines: rows.length, duplicates };
}
