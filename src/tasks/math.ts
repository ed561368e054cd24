/**
 * Math reasoning (paper task 4): MATH problems → a worked solution with the final answer in \boxed{}.
 * Reward: the paper's mixture — per batch either an exact answer check or the LLM plan-then-execute
 * judge with guidelines per (domain, cluster). Evaluated by boxed-answer accuracy. Records carry
 * `group = "<domain>/<cluster>"`: k clusters (default 3) per domain from our deterministic TF-IDF +
 * k-means (./cluster.ts), fitted on the train split and applied to the test split, cached as JSON
 * (computed once per data version, k and seed).
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeJsonAtomic } from "../util/atomic.ts";
import { defaultCacheDir } from "../data/hf.ts";
import { lastBoxed } from "../verify/boxed.ts";
import { assignCluster, clusterTexts, type KMeansModel } from "./cluster.ts";
import { REPO_ROOT, type LoadContext, type TaskSpec } from "./spec.ts";
import type { Split, TaskRecord } from "./types.ts";

export interface MathClusterCache {
  method: string;
  k: number;
  seed: number;
  /** sha256 of the train records' ids + problems the clusters were fitted on. */
  fingerprint: string;
  fittedOn: number;
  /** domain → cluster sizes on the train split. */
  sizes: Record<string, number[]>;
  models: Record<string, KMeansModel>;
  /** train record id → cluster. */
  train: Record<string, number>;
}

const METHOD = "tfidf-sublinear-mindf2+kmeans++/lloyd v1";

function domainOf(r: TaskRecord): string {
  const d = r.meta?.domain;
  return typeof d === "string" && d !== "" ? d : "unknown";
}

function problemOf(r: TaskRecord): string {
  const v = (r.meta?.vars as Record<string, unknown> | undefined)?.problem;
  return typeof v === "string" ? v : r.prompt;
}

export function fingerprintRecords(records: TaskRecord[]): string {
  const h = createHash("sha256");
  for (const r of records) h.update(r.id).update("\u0000").update(problemOf(r)).update("\u0001");
  return h.digest("hex");
}

/** Fits the per-domain clusters on the train records. */
export function fitMathClusters(train: TaskRecord[], k: number, seed: number): MathClusterCache {
  const byDomain = new Map<string, TaskRecord[]>();
  for (const r of train) {
    const d = domainOf(r);
    if (!byDomain.has(d)) byDomain.set(d, []);
    byDomain.get(d)!.push(r);
  }
  const cache: MathClusterCache = { method: METHOD, k, seed, fingerprint: fingerprintRecords(train), fittedOn: train.length, sizes: {}, models: {}, train: {} };
  for (const d of [...byDomain.keys()].sort()) {
    const recs = byDomain.get(d)!;
    // Each domain gets its own stream, derived from the seed and the domain name.
    const res = clusterTexts(recs.map(problemOf), k, `${seed}/${d}`);
    cache.models[d] = res.model;
    cache.sizes[d] = Array.from({ length: res.model.centroids.length }, (_, j) => res.labels.filter((l) => l === j).length);
    recs.forEach((r, i) => (cache.train[r.id] = res.labels[i]));
  }
  return cache;
}

async function clustersFor(ctx: LoadContext, k: number, seed: number): Promise<MathClusterCache> {
  const train = await ctx.loadRaw("train");
  const fp = fingerprintRecords(train);
  const dir = ctx.options.cacheDir ?? defaultCacheDir();
  const file = join(dir, "math-clusters", `k${k}-seed${seed}-${fp.slice(0, 16)}.json`);
  if (existsSync(file)) {
    try {
      const c = JSON.parse(readFileSync(file, "utf8")) as MathClusterCache;
      if (c.fingerprint === fp && c.k === k && c.seed === seed && c.method === METHOD) return c;
    } catch {
      // A corrupt cache is recomputed (and overwritten atomically below).
    }
  }
  const c = fitMathClusters(train, k, seed);
  writeJsonAtomic(file, c);
  return c;
}

/** Adds `group = domain/cluster` to every record (train: fitted labels; other splits: nearest centroid). */
export function applyMathClusters(records: TaskRecord[], split: Split, c: MathClusterCache): TaskRecord[] {
  const indexes = new Map<string, Map<string, number>>();
  return records.map((r) => {
    const d = domainOf(r);
    let cluster = split === "train" ? c.train[r.id] : undefined;
    if (cluster === undefined) {
      const model = c.models[d];
      if (!model) cluster = 0;
      else {
        if (!indexes.has(d)) indexes.set(d, new Map(model.vocab.map((w, i) => [w, i])));
        cluster = assignCluster(model, problemOf(r), indexes.get(d));
      }
    }
    return { ...r, group: `${d}/${cluster}`, meta: { ...r.meta, cluster } };
  });
}

/**
 * The Hub copy of MATH has `type` ("Counting & Probability") but no `domain` and no extracted answer:
 * domain = the type as a folder-style slug (counting_and_probability, the dataset's own folder names),
 * label = the content of the solution's last \boxed{} (the usual MATH convention).
 */
export function completeMathRecord(r: TaskRecord): TaskRecord {
  const meta = { ...r.meta };
  if ((typeof meta.domain !== "string" || meta.domain === "") && typeof meta.type === "string") meta.domain = meta.type.trim().toLowerCase().replace(/\s*&\s*/g, "_and_").replace(/\s+/g, "_");
  const label = r.label ?? (r.reference ? (lastBoxed(r.reference) ?? undefined) : undefined);
  return { ...r, meta, ...(label !== undefined ? { label } : {}) };
}

export const mathSpec: TaskSpec = {
  name: "math",
  description: "Math reasoning: the policy solves a competition math problem (MATH dataset) step by step and gives the final answer in \\boxed{}.",
  data: {
    // MIT; one Parquet file per subject and split (algebra/train-00000-of-00001.parquet, …).
    train: { hf: "EleutherAI/hendrycks_math", split: "train" },
    test: { hf: "EleutherAI/hendrycks_math", split: "test" },
  },
  fields: { id: "id", vars: { problem: "problem" }, reference: "solution", label: "answer", meta: ["domain", "level", "type"] },
  templates: { instruction: "tasks/math/instruction.md", user: "tasks/math/user.md" },
  judge: { persona: "tasks/math/judge-persona.md", prompt: "tasks/math/judge-prompt.md", showInstruction: false },
  reward: {
    kind: "math-mixed",
    answerCheckProbability: 0.5,
    minReasoningWords: 30,
    // Every group starts from the paper's one-line guideline (Apache-2.0, see prompts/rubrics/paper/NOTICE.md).
    initialGuidelines: join(REPO_ROOT, "prompts/rubrics/paper/math_reasoning/evaluation_rubric_real_iter_0.txt"),
  },
  // launch_mpo.sh:72 runs math with a meta step every 20 updates (the guideline step samples per group, not `samples`).
  meta: { interval: 20 },
  evaluations: ["accuracy", "elo"],
  accuracy: { checker: "boxed", goldField: "answer" },
  source: "built-in",
  async postprocess(raw, split, ctx) {
    const records = raw.map(completeMathRecord);
    const k = ctx.options.clusters ?? 3;
    const seed = ctx.options.clusterSeed ?? 0;
    return applyMathClusters(records, split, await clustersFor(ctx, k, seed));
  },
};
