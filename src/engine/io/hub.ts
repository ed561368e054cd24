/**
 * Where a policy comes from: a local model directory, or a Hugging Face Hub id ("Qwen/Qwen2.5-0.5B-Instruct",
 * optionally "@revision") resolved through the standard HF cache layout that transformers and huggingface_hub
 * share (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`:
 * `models--Org--Name/refs/<rev>` → `snapshots/<commit>/…`). A model already in that cache is used without
 * network; otherwise the files the engine reads (config, generation config, tokenizer files, safetensors
 * weights or their shards) are downloaded into the same cache with @huggingface/hub, so Python tools reuse
 * them. Offline (HF_HUB_OFFLINE=1, or the download fails) the error names the searched path and says how
 * to pass a local directory.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { UserError } from "../../util/errors.ts";

/** The hub cache root, with the same environment precedence as huggingface_hub. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "huggingface");
  return join(home, "hub");
}

const HUB_ID = /^([A-Za-z0-9][\w.-]*)\/([A-Za-z0-9][\w.-]*)(?:@([\w./-]+))?$/;

/** "Org/Name[@rev]" → parts, or null when the spec does not look like a Hub id. */
export function parseHubId(spec: string): { repo: string; revision: string } | null {
  const m = HUB_ID.exec(spec);
  if (!m || m[1] === "." || m[1] === "..") return null;
  return { repo: `${m[1]}/${m[2]}`, revision: m[3] ?? "main" };
}

/** The snapshot directory of a cached repo at a revision (branch/tag via refs/, or a commit hash), if present. */
export function cachedSnapshot(repo: string, revision: string, cacheDir = hubCacheDir()): { dir: string | null; searched: string } {
  const folder = join(cacheDir, `models--${repo.split("/").join("--")}`);
  let commit = revision;
  const ref = join(folder, "refs", revision);
  if (existsSync(ref)) commit = readFileSync(ref, "utf8").trim();
  const dir = join(folder, "snapshots", commit);
  return { dir: existsSync(join(dir, "config.json")) ? dir : null, searched: dir };
}

/** Files the engine reads from a model repo (weights chosen after looking at what exists). */
const META_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"];

async function download(repo: string, revision: string, cacheDir: string, weights = true): Promise<string> {
  const hub = await import("@huggingface/hub");
  const accessToken = process.env.HF_TOKEN || undefined;
  const get = (path: string) => hub.downloadFileToCacheDir({ repo, path, revision, cacheDir, accessToken });
  const exists = async (path: string) => hub.fileExists({ repo, path, revision, accessToken });
  let configPath = "";
  for (const f of META_FILES) {
    if (f !== "config.json" && !(await exists(f))) continue;
    const p = await get(f);
    if (f === "config.json") configPath = p;
  }
  if (!weights) return resolve(configPath, "..");
  if (await exists("model.safetensors")) await get("model.safetensors");
  else if (await exists("model.safetensors.index.json")) {
    const idxPath = await get("model.safetensors.index.json");
    const idx = JSON.parse(readFileSync(idxPath, "utf8")) as { weight_map?: Record<string, string> };
    for (const shard of new Set(Object.values(idx.weight_map ?? {}))) await get(shard);
  } else throw new UserError(`${repo}@${revision}: the repository has no model.safetensors or model.safetensors.index.json (only safetensors weights are read)`);
  return resolve(configPath, "..");
}

/**
 * A local model directory for `spec`: the path itself when it exists, else the cached or downloaded
 * snapshot of the Hub id. `flag` names the option in errors ("--policy", "--model"). `weights: false`
 * downloads only the config and tokenizer files (the reward service needs the chat template, not the model).
 */
export async function resolveModelSource(spec: string, flag = "--policy", opts: { weights?: boolean } = {}): Promise<string> {
  const local = resolve(spec);
  if (existsSync(local)) {
    if (!statSync(local).isDirectory()) throw new UserError(`${flag}: ${local} is not a directory`);
    return local;
  }
  const id = parseHubId(spec);
  if (!id) throw new UserError(`${flag}: ${local} does not exist (and "${spec}" is not a Hugging Face id like Org/Name)`);
  const cacheDir = hubCacheDir();
  const hit = cachedSnapshot(id.repo, id.revision, cacheDir);
  // A snapshot fetched without weights (by `mpo serve --policy`) is not a hit for a caller that needs them.
  const hasWeights = (d: string) => existsSync(join(d, "model.safetensors")) || existsSync(join(d, "model.safetensors.index.json"));
  if (hit.dir && (opts.weights === false || hasWeights(hit.dir))) return hit.dir;
  const how = `pass a local model directory instead (${flag} /path/to/dir with config.json, model.safetensors, tokenizer.json), or set HF_HOME / HF_HUB_CACHE to the cache that holds it`;
  if (process.env.HF_HUB_OFFLINE === "1" || process.env.TRANSFORMERS_OFFLINE === "1")
    throw new UserError(`${flag}: ${spec} is not in the Hugging Face cache (searched ${hit.searched}) and HF_HUB_OFFLINE=1 forbids downloading; ${how}`);
  try {
    return await download(id.repo, id.revision, cacheDir, opts.weights ?? true);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${flag}: ${spec} is not in the Hugging Face cache (searched ${hit.searched}) and downloading it failed (${(e as Error).message}); ${how}`);
  }
}
