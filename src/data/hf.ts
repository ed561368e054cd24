/**
 * Hugging Face Hub datasets, read through the standard Hugging Face cache, so a dataset fetched once (by
 * this project, by Python's `huggingface_hub` / `datasets`, or by `hf download --repo-type dataset`) is read
 * offline afterwards by all of them. Layout (the Hub libraries' own):
 *   <cache>/datasets--<owner>--<name>/refs/<revision>            the commit a branch/tag resolved to
 *   <cache>/datasets--<owner>--<name>/snapshots/<commit>/<path>   the repo's files at that commit
 *   <cache>/datasets--<owner>--<name>/blobs/<etag>                 content (snapshot entries link here)
 * <cache> is $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub (getHFHubCachePath).
 * Online, the revision is resolved to a commit first and files are fetched with @huggingface/hub's
 * downloadFileToCacheDir at that commit; the resolved commit is returned so a run can pin it. Offline
 * ($HF_HUB_OFFLINE=1 or an unreachable Hub) with nothing cached → one UserError naming the dataset, the
 * cache path and the local-file flag.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { homedir } from "node:os";
import { UserError } from "../util/errors.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { readTable, type Row } from "./files.ts";

export interface HfDatasetOptions {
  /** Hugging Face hub cache (default $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Branch, tag or commit (default "main"). */
  revision?: string;
  /** Hub base URL (default $HF_ENDPOINT, else https://huggingface.co). */
  hubUrl?: string;
  /** Access token for gated datasets (default $HF_TOKEN). */
  accessToken?: string;
  /** Exact file paths inside the repo for this split (default: every data file of the split, by name). */
  files?: string[];
  /** Never touch the network (default: $HF_HUB_OFFLINE=1). */
  offline?: boolean;
  /** How to use local files instead, for the offline error (default "--data-file <split>=PATH"). */
  localFlag?: string;
  limit?: number;
  fetch?: typeof fetch;
}

/** Where a split's rows came from, exactly enough to load the same rows again. */
export interface HfResolved {
  hf: string;
  split: string;
  /** The commit the revision resolved to (40 hex). */
  revision: string;
  files: string[];
}

/** The dataset is neither cached nor reachable (a task may then fall back to a shipped file). */
export class HfUnavailableError extends UserError {
  constructor(
    message: string,
    /** Why it could not be fetched, in a few words. */
    override readonly cause: string,
  ) {
    super(message);
    this.name = "HfUnavailableError";
  }
}

const DATA_EXT = /\.(parquet|jsonl|ndjson|json|csv|tsv)$/i;
const COMMIT = /^[0-9a-f]{40}$/;

export function hfHubCacheDir(): string {
  const home = process.env.HF_HOME || join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "huggingface");
  return process.env.HF_HUB_CACHE || join(home, "hub");
}

/** The dataset's folder in the hub cache (`datasets--owner--name`). */
export function hfCachePath(repo: string, cacheDir = hfHubCacheDir()): string {
  return join(cacheDir, `datasets--${repo.split("/").join("--")}`);
}

/** Cache for things this project derives from data (math clusters): $MPO_DATA_CACHE, else ~/.cache/mpo. */
export function defaultCacheDir(): string {
  return process.env.MPO_DATA_CACHE || join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "mpo");
}

/** Whether a repo file belongs to `split` (data/test-00000-of-00001.parquet, test/0000.parquet, test.jsonl; not ca_test-…). */
export function fileMatchesSplit(path: string, split: string): boolean {
  if (!DATA_EXT.test(path)) return false;
  const parts = path.split("/");
  const name = parts[parts.length - 1];
  const esc = split.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`^${esc}([-_.]|$)`).test(name) || parts.slice(0, -1).includes(split);
}

/** Every file under a snapshot folder, as repo paths (sorted). */
function snapshotFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name.startsWith(".")) continue;
      const p = join(d, e.name);
      // Snapshot entries are symlinks to blobs: follow them (a dangling link is not a cached file).
      let st;
      try {
        st = statSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(p);
      else out.push(relative(dir, p).split("\\").join("/"));
    }
  };
  if (existsSync(dir)) walk(dir);
  return out.sort();
}

async function readAll(dir: string, files: string[], limit?: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const f of files) {
    const left = limit === undefined ? undefined : limit - rows.length;
    if (left !== undefined && left <= 0) break;
    rows.push(...(await readTable(join(dir, f), { limit: left })));
  }
  return rows;
}

/** A fetch that gives up when no response headers arrive in `ms` (a firewalled host can hang forever). */
function fetchWithTimeout(base: typeof fetch, ms: number): typeof fetch {
  return async (input, init) => {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new Error(`no answer in ${ms / 1000} s`)), ms);
    const outer = init?.signal;
    if (outer) outer.addEventListener("abort", () => ctl.abort(outer.reason), { once: true });
    try {
      return await base(input, { ...init, signal: ctl.signal });
    } finally {
      clearTimeout(timer);
    }
  };
}

/** The split's files in the cache for a commit, or null when the snapshot lacks them. */
function cachedSplit(storage: string, commit: string, split: string, want?: string[]): string[] | null {
  const snap = join(storage, "snapshots", commit);
  const have = snapshotFiles(snap);
  if (want) return want.every((f) => have.includes(f)) ? want : null;
  const files = have.filter((f) => fileMatchesSplit(f, split));
  return files.length ? files : null;
}

/**
 * Rows of one split of a Hub dataset plus the exact source (commit, files): from the cache when the
 * revision's snapshot holds the split, else downloaded into the cache first.
 */
export async function hfDatasetResolved(repo: string, split: string, opts: HfDatasetOptions = {}): Promise<{ rows: Row[]; source: HfResolved }> {
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) throw new UserError(`Hugging Face dataset name must look like owner/name, got '${repo}'`);
  const cacheDir = opts.cacheDir ?? hfHubCacheDir();
  const storage = hfCachePath(repo, cacheDir);
  const revision = opts.revision ?? "main";
  const hubUrl = (opts.hubUrl ?? process.env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, "");
  const offline = opts.offline ?? ["1", "true", "yes", "on"].includes(String(process.env.HF_HUB_OFFLINE ?? "").toLowerCase());
  const flag = opts.localFlag ?? `--data-file ${split}=PATH`;

  const done = async (commit: string, files: string[]) => ({
    rows: await readAll(join(storage, "snapshots", commit), files, opts.limit),
    source: { hf: repo, split, revision: commit, files },
  });

  // 1. The cache: a commit given directly, or the commit the branch/tag resolved to last time.
  const refFile = join(storage, "refs", revision);
  const cachedCommit = COMMIT.test(revision) ? revision : existsSync(refFile) ? readFileSync(refFile, "utf8").trim() : null;
  if (cachedCommit) {
    const files = cachedSplit(storage, cachedCommit, split, opts.files);
    if (files) return done(cachedCommit, files);
  }

  const unavailable = (cause: string) =>
    new HfUnavailableError(
      `Hugging Face dataset ${repo} (split '${split}', revision ${revision}) is not in the cache at ${storage} and ${cause}.\n` +
        `Either connect once (it is then cached there for offline use; \`hf download ${repo} --repo-type dataset\` fills the same cache), ` +
        `or use local files: ${flag} (JSONL/JSON/CSV/Parquet).`,
      cause,
    );
  if (offline) throw unavailable("HF_HUB_OFFLINE is set");

  // 2. The Hub: resolve the revision to a commit, list the split's files at it, download each into the cache.
  const hub = await import("@huggingface/hub");
  const credentials = opts.accessToken ?? process.env.HF_TOKEN;
  const common = {
    repo: { type: "dataset" as const, name: repo },
    hubUrl,
    fetch: fetchWithTimeout(opts.fetch ?? fetch, 30_000),
    ...(credentials ? { accessToken: credentials } : {}),
  };
  let commit: string;
  let files: string[];
  try {
    commit = COMMIT.test(revision)
      ? revision
      : String((await hub.datasetInfo({ name: repo, revision, hubUrl, fetch: common.fetch, additionalFields: ["sha"], ...(credentials ? { accessToken: credentials } : {}) })).sha);
    if (!COMMIT.test(commit)) throw new Error(`the Hub answered no commit for revision ${revision}`);
    files = opts.files ?? [];
    if (!opts.files) {
      for await (const e of hub.listFiles({ ...common, revision: commit, recursive: true })) if (e.type === "file" && fileMatchesSplit(e.path, split)) files.push(e.path);
      files.sort();
    }
  } catch (err) {
    throw unavailable(`the Hub at ${hubUrl} cannot be reached (${(err as Error).message})`);
  }
  if (files.length === 0) throw new UserError(`Hugging Face dataset ${repo} has no data file for split '${split}' at ${revision} (${commit}) (looked for ${split}-*.parquet, ${split}/*.parquet, ${split}.jsonl …); pass local files with ${flag}`);
  // downloadFileToCacheDir announces each file with console.debug (stdout); stdout carries commands' output.
  const debug = console.debug;
  console.debug = (...a: unknown[]) => process.stderr.write(`${a.join(" ")}\n`);
  try {
    for (const path of files) {
      try {
        await hub.downloadFileToCacheDir({ ...common, path, revision: commit, cacheDir });
      } catch (err) {
        throw unavailable(`downloading ${path} from ${hubUrl} failed (${(err as Error).message})`);
      }
    }
  } finally {
    console.debug = debug;
  }
  if (!COMMIT.test(revision)) writeFileAtomic(refFile, commit);
  return done(commit, files);
}

/** Rows of one split of a Hub dataset (e.g. `hfDataset("FiscalNote/billsum", "test")`); see hfDatasetResolved. */
export async function hfDataset(repo: string, split: string, opts: HfDatasetOptions = {}): Promise<Row[]> {
  return (await hfDatasetResolved(repo, split, opts)).rows;
}
