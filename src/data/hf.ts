/**
 * Hugging Face Hub datasets, fetched once into a local cache and read offline afterwards (training
 * machines are often cut off from the internet, and a run must not depend on the Hub being up).
 * Uses @huggingface/hub (listFiles / downloadFile). The cache layout is
 *   <cacheDir>/<owner>__<name>/<split>/<file name>  +  .complete.json (written last, atomically),
 * so a directory with the marker is used as is; a directory without it (an interrupted download) is
 * re-fetched. When the Hub cannot be reached the UserError says exactly which files to fetch by hand
 * and where to put them; files put there by hand (without the marker) are used too.
 */
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { basename, join } from "node:path";
import { homedir } from "node:os";
import { UserError } from "../util/errors.ts";
import { writeFileAtomic, writeJsonAtomic } from "../util/atomic.ts";
import { readTable, type Row } from "./files.ts";

export interface HfDatasetOptions {
  /** Default: $MPO_DATA_CACHE or ~/.cache/mpo/datasets. */
  cacheDir?: string;
  /** Default "main". */
  revision?: string;
  /** Hub base URL (default https://huggingface.co; tests point it at a closed port). */
  hubUrl?: string;
  /** Access token for gated datasets (default $HF_TOKEN). */
  accessToken?: string;
  /** Exact file paths inside the repo for this split, when known (skips listing the repo). */
  files?: string[];
  /** Likely file paths for this split, only used to make the "fetch it by hand" message exact when listing fails. */
  hintFiles?: string[];
  limit?: number;
  fetch?: typeof fetch;
}

const DATA_EXT = /\.(parquet|jsonl|ndjson|json|csv|tsv)$/i;

export function defaultCacheDir(): string {
  return process.env.MPO_DATA_CACHE || join(homedir(), ".cache", "mpo", "datasets");
}

export function hfCachePath(repo: string, split: string, cacheDir = defaultCacheDir()): string {
  return join(cacheDir, repo.replace(/\//g, "__"), split);
}

/** Whether a repo file belongs to `split` (data/test-00000-of-00001.parquet, test/0000.parquet, test.jsonl; not ca_test-…). */
export function fileMatchesSplit(path: string, split: string): boolean {
  if (!DATA_EXT.test(path)) return false;
  const parts = path.split("/");
  const name = parts[parts.length - 1];
  const esc = split.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`^${esc}([-_.]|$)`).test(name) || parts.slice(0, -1).includes(split);
}

function localFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => DATA_EXT.test(f) && !f.startsWith("."))
    .sort()
    .map((f) => join(dir, f));
}

async function readAll(files: string[], limit?: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const f of files) {
    const left = limit === undefined ? undefined : limit - rows.length;
    if (left !== undefined && left <= 0) break;
    rows.push(...(await readTable(f, { limit: left })));
  }
  return rows;
}

/**
 * Rows of one split of a Hub dataset (e.g. `hfDataset("FiscalNote/billsum", "test")`): from the cache if
 * present, else downloaded into it first.
 */
export async function hfDataset(repo: string, split: string, opts: HfDatasetOptions = {}): Promise<Row[]> {
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) throw new UserError(`Hugging Face dataset name must look like owner/name, got '${repo}'`);
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const dir = hfCachePath(repo, split, cacheDir);
  const hubUrl = (opts.hubUrl ?? process.env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, "");
  const revision = opts.revision ?? "main";
  if (existsSync(join(dir, ".complete.json"))) return readAll(localFiles(dir), opts.limit);

  const handHint = (files: string[] | null, cause: string) =>
    new UserError(
      `could not download Hugging Face dataset ${repo} (split '${split}') from ${hubUrl}: ${cause}\n` +
        `Fetch it by hand: download ${files && files.length ? files.map((f) => `${hubUrl}/datasets/${repo}/resolve/${revision}/${f}`).join(" and ") : `the '${split}' data files (Parquet/JSONL/CSV) listed at ${hubUrl}/datasets/${repo}/tree/${revision}`}\n` +
        `and put ${files && files.length > 1 ? "them" : "it"} in ${dir}/ (keep the file name${files && files.length > 1 ? "s" : ""}), then run again — or point the task at a local file instead.`,
    );

  const hub = await import("@huggingface/hub");
  const credentials = opts.accessToken ?? process.env.HF_TOKEN;
  const common = {
    repo: { type: "dataset" as const, name: repo },
    revision,
    hubUrl,
    ...(credentials ? { accessToken: credentials } : {}),
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  };
  let files = opts.files;
  if (!files) {
    try {
      files = [];
      for await (const entry of hub.listFiles({ ...common, recursive: true })) {
        if (entry.type === "file" && fileMatchesSplit(entry.path, split)) files.push(entry.path);
      }
      files.sort();
    } catch (err) {
      // Files put in place by hand are good enough when the Hub is unreachable.
      const manual = localFiles(dir);
      if (manual.length) return readAll(manual, opts.limit);
      throw handHint(opts.hintFiles ?? null, (err as Error).message);
    }
    if (files.length === 0) throw new UserError(`Hugging Face dataset ${repo} has no data file for split '${split}' at revision ${revision} (looked for ${split}-*.parquet / ${split}/*.parquet / ${split}.jsonl …)`);
  }
  mkdirSync(dir, { recursive: true });
  for (const f of files) {
    let blob: Blob | null;
    try {
      blob = await hub.downloadFile({ ...common, path: f });
    } catch (err) {
      const manual = localFiles(dir);
      if (manual.length && files.every((x) => manual.some((m) => basename(m) === basename(x)))) return readAll(manual, opts.limit);
      throw handHint(files, (err as Error).message);
    }
    if (!blob) throw handHint(files, `file not found in the repo: ${f}`);
    writeFileAtomic(join(dir, basename(f)), new Uint8Array(await blob.arrayBuffer()));
  }
  writeJsonAtomic(join(dir, ".complete.json"), { repo, split, revision, hubUrl, files, fetchedAt: new Date().toISOString() });
  return readAll(localFiles(dir), opts.limit);
}
