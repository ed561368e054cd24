/**
 * Task data from the Hugging Face Hub through the standard HF cache. The Hub cannot be reached here, so:
 * (1) a fake Hub on loopback answers the real endpoints @huggingface/hub calls (revision info, tree,
 * paths-info, resolve) and we check what lands in the cache, byte for byte and in the documented layout
 * (https://huggingface.co/docs/hub/local-cache); (2) a cache pre-populated by hand in that layout (blobs +
 * relative symlinks + refs/main, as Python's huggingface_hub writes it) is read with the network off;
 * (3) offline with nothing cached gives one error naming the dataset, the cache path and the flag, and the
 * essay task falls back to its shipped prompts.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parquetWriteBuffer } from "hyparquet-writer";
import { hfCachePath, hfDatasetResolved, HfUnavailableError } from "../src/data/hf.ts";
import { getTask } from "../src/tasks/registry.ts";
import { REPO_ROOT } from "../src/tasks/spec.ts";

const dir = mkdtempSync(join(tmpdir(), "mpo-hf-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const jsonl = (rows: unknown[]) => Buffer.from(rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** MATH as the Hub has it: one Parquet file per subject and split, `type` but no `domain` or `answer`. */
function mathParquet(type: string, n: number): Buffer {
  const problems = Array.from({ length: n }, (_, i) => `What is ${i} + ${i + 1} (${type})?`);
  return Buffer.from(
    parquetWriteBuffer({
      columnData: [
        { name: "problem", data: problems, type: "STRING" },
        { name: "level", data: problems.map(() => "Level 1"), type: "STRING" },
        { name: "type", data: problems.map(() => type), type: "STRING" },
        { name: "solution", data: problems.map((_, i) => `Add: $${i}+${i + 1}=\\boxed{${2 * i + 1}}$.`), type: "STRING" },
      ],
    }),
  );
}

/** A fake Hub serving one dataset repo at one commit; `requests` records every call. */
async function fakeHub(repo: string, files: Record<string, Buffer>) {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const url = new URL(req.url!, "http://x");
    const json = (v: unknown) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(v));
    };
    if (url.pathname === `/api/datasets/${repo}/revision/main`) return json({ _id: "x", id: repo, sha: COMMIT, private: false, downloads: 0, likes: 0, gated: false, lastModified: "2024-07-09T00:00:00.000Z" });
    if (url.pathname === `/api/datasets/${repo}/tree/${COMMIT}`)
      return json([{ type: "file", path: "README.md", size: 3, oid: "r" }, ...Object.entries(files).map(([path, b]) => ({ type: "file", path, size: b.length, oid: sha256(b).slice(0, 40) }))]);
    if (req.method === "POST" && url.pathname === `/api/datasets/${repo}/paths-info/${COMMIT}`) {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        const { paths } = JSON.parse(body) as { paths: string[] };
        json(paths.filter((p) => files[p]).map((p) => ({ type: "file", path: p, size: files[p].length, oid: sha256(files[p]).slice(0, 40), lfs: { oid: sha256(files[p]), size: files[p].length, pointerSize: 130 }, lastCommit: { id: "f".repeat(40), title: "x", date: "2024-07-09T00:00:00.000Z" } })));
      });
      return;
    }
    const prefix = `/datasets/${repo}/resolve/${COMMIT}/`;
    if (url.pathname.startsWith(prefix) && files[url.pathname.slice(prefix.length)]) {
      const body = files[url.pathname.slice(prefix.length)];
      const m = /bytes=(\d+)-(\d*)/.exec(req.headers.range ?? "");
      const start = m ? Number(m[1]) : 0;
      const end = m && m[2] ? Math.min(Number(m[2]), body.length - 1) : body.length - 1;
      res.writeHead(m ? 206 : 200, { etag: `"${sha256(body)}"`, "x-repo-commit": COMMIT, "content-range": `bytes ${start}-${end}/${body.length}`, "content-length": end - start + 1, "content-type": "application/octet-stream" });
      res.end(body.subarray(start, end + 1));
      return;
    }
    res.writeHead(404, { "x-error-code": "EntryNotFound", "content-type": "application/json" });
    res.end(JSON.stringify({ error: "not found" }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, requests, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** Writes a dataset into a hub cache the way huggingface_hub does: blobs/<sha256>, relative symlinks, refs/main. */
function populateCache(cacheDir: string, repo: string, commit: string, files: Record<string, Buffer>): void {
  const storage = hfCachePath(repo, cacheDir);
  mkdirSync(join(storage, "blobs"), { recursive: true });
  mkdirSync(join(storage, "refs"), { recursive: true });
  writeFileSync(join(storage, "refs", "main"), commit);
  for (const [path, body] of Object.entries(files)) {
    const blob = sha256(body);
    writeFileSync(join(storage, "blobs", blob), body);
    const link = join(storage, "snapshots", commit, path);
    mkdirSync(join(link, ".."), { recursive: true });
    const depth = path.split("/").length + 1; // snapshots/<commit>/<path…>
    symlinkSync(join(...Array(depth).fill(".."), "blobs", blob), link);
  }
}

// Environment variables a developer may have set must not leak into these tests.
const saved = { HF_HUB_OFFLINE: process.env.HF_HUB_OFFLINE, HF_HUB_CACHE: process.env.HF_HUB_CACHE, HF_ENDPOINT: process.env.HF_ENDPOINT };
beforeAll(() => {
  delete process.env.HF_HUB_OFFLINE;
  delete process.env.HF_ENDPOINT;
});
afterEach(() => {
  delete process.env.HF_HUB_OFFLINE;
});
afterAll(() => Object.assign(process.env, saved));

describe("Hub datasets through the Hugging Face cache", () => {
  it("downloads a split from a Hub over HTTP into the standard cache layout, then reads it with the network off", async () => {
    const files = { "algebra/train-00000-of-00001.parquet": mathParquet("Algebra", 4), "counting_and_probability/train-00000-of-00001.parquet": mathParquet("Counting & Probability", 3), "algebra/test-00000-of-00001.parquet": mathParquet("Algebra", 2) };
    const hub = await fakeHub("acme/math", files);
    const cacheDir = join(dir, "hub-1");
    const got = await hfDatasetResolved("acme/math", "train", { cacheDir, hubUrl: hub.url });
    expect(got.rows).toHaveLength(7);
    expect(got.source).toEqual({ hf: "acme/math", split: "train", revision: COMMIT, files: ["algebra/train-00000-of-00001.parquet", "counting_and_probability/train-00000-of-00001.parquet"] });
    expect(hub.requests.some((r) => r.includes("test-0000"))).toBe(false);
    // The documented layout: refs/main → commit; snapshots/<commit>/<path> a relative symlink to blobs/<etag>.
    const storage = join(cacheDir, "datasets--acme--math");
    expect(readFileSync(join(storage, "refs", "main"), "utf8")).toBe(COMMIT);
    const link = join(storage, "snapshots", COMMIT, "algebra", "train-00000-of-00001.parquet");
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link).startsWith("..")).toBe(true);
    expect(readlinkSync(link)).toContain(`blobs/${sha256(files["algebra/train-00000-of-00001.parquet"])}`);
    expect(readFileSync(link).equals(files["algebra/train-00000-of-00001.parquet"])).toBe(true);
    await hub.close();

    // Network gone: served from the cache (same rows, no request), with or without HF_HUB_OFFLINE.
    const n = hub.requests.length;
    const again = await hfDatasetResolved("acme/math", "train", { cacheDir, hubUrl: hub.url });
    expect(again.rows).toEqual(got.rows);
    process.env.HF_HUB_OFFLINE = "1";
    expect((await hfDatasetResolved("acme/math", "train", { cacheDir, revision: COMMIT, limit: 2 })).rows).toEqual(got.rows.slice(0, 2));
    expect(hub.requests.length).toBe(n);
    // The split not downloaded is not there, and offline says so.
    await expect(hfDatasetResolved("acme/math", "test", { cacheDir })).rejects.toBeInstanceOf(HfUnavailableError);
  });

  it("reads a cache pre-populated in huggingface_hub's layout (HF_HUB_CACHE), network off", async () => {
    const cacheDir = join(dir, "hub-2");
    const rows = [{ text: "SEC. 1. Short title.", summary: "Names the act.", title: "An Act" }];
    populateCache(cacheDir, "FiscalNote/billsum", COMMIT, { "data/test-00000-of-00001.jsonl": jsonl(rows), "README.md": Buffer.from("card") });
    process.env.HF_HUB_OFFLINE = "1";
    process.env.HF_HUB_CACHE = cacheDir;
    try {
      const task = await getTask("summarization");
      const recs = await task.load("test");
      expect(recs).toHaveLength(1);
      expect(recs[0].reference).toBe("Names the act.");
      expect(task.dataSource!("test")).toEqual({ hf: "FiscalNote/billsum", split: "test", revision: COMMIT, files: ["data/test-00000-of-00001.jsonl"] });
    } finally {
      if (saved.HF_HUB_CACHE === undefined) delete process.env.HF_HUB_CACHE;
      else process.env.HF_HUB_CACHE = saved.HF_HUB_CACHE;
    }
  });

  it("offline with nothing cached: one error naming the dataset, the cache path and --data-file", async () => {
    const cacheDir = join(dir, "hub-empty");
    process.env.HF_HUB_OFFLINE = "1";
    const task = await getTask("summarization", { hubCacheDir: cacheDir });
    const err = await task.load("train").catch((e) => e);
    expect(err).toBeInstanceOf(HfUnavailableError);
    expect(err.message).toContain("FiscalNote/billsum");
    expect(err.message).toContain(join(cacheDir, "datasets--FiscalNote--billsum"));
    expect(err.message).toContain("--data-file train=PATH");
    expect(err.message).not.toMatch(/shared/);
    // An unreachable Hub (connection refused) says the same, with the cause.
    delete process.env.HF_HUB_OFFLINE;
    const refused = await (await getTask("math", { hubCacheDir: cacheDir, hubUrl: "http://127.0.0.1:9" })).load("test").catch((e) => e);
    expect(refused).toBeInstanceOf(HfUnavailableError);
    expect(refused.message).toMatch(/EleutherAI\/hendrycks_math[\s\S]*cannot be reached[\s\S]*--data-file test=PATH/);
  });

  it("essay with no cache and no network uses the 4,096 prompts shipped in data/essay", async () => {
    process.env.HF_HUB_OFFLINE = "1";
    const task = await getTask("essay", { hubCacheDir: join(dir, "hub-empty-2") });
    const recs = await task.load("train");
    expect(recs).toHaveLength(4096);
    expect(recs[0].id).toBe("essay-00000");
    expect(task.dataSource!("train")).toEqual({ path: join(REPO_ROOT, "data", "essay", "prompts.jsonl") });
    expect(existsSync(join(REPO_ROOT, "data", "essay", "LICENSE"))).toBe(true);
  });

  it("math rows from the Hub get their domain from `type` and their label from the last \\boxed{}", async () => {
    const cacheDir = join(dir, "hub-3");
    populateCache(cacheDir, "EleutherAI/hendrycks_math", COMMIT, {
      "algebra/test-00000-of-00001.parquet": mathParquet("Algebra", 3),
      "counting_and_probability/test-00000-of-00001.parquet": mathParquet("Counting & Probability", 3),
      "algebra/train-00000-of-00001.parquet": mathParquet("Algebra", 6),
      "counting_and_probability/train-00000-of-00001.parquet": mathParquet("Counting & Probability", 6),
    });
    process.env.HF_HUB_OFFLINE = "1";
    const task = await getTask("math", { hubCacheDir: cacheDir, cacheDir: join(dir, "derived"), clusters: 2 });
    const recs = await task.load("test");
    expect(recs).toHaveLength(6);
    expect(new Set(recs.map((r) => r.meta?.domain))).toEqual(new Set(["algebra", "counting_and_probability"]));
    expect(recs[1].label).toBe("3");
    expect(recs.every((r) => /^(algebra|counting_and_probability)\/[01]$/.test(r.group!))).toBe(true);
  });

  it("a recorded source loads the same rows again (what --resume uses)", async () => {
    const cacheDir = join(dir, "hub-3");
    process.env.HF_HUB_OFFLINE = "1";
    const first = await getTask("math", { hubCacheDir: cacheDir, cacheDir: join(dir, "derived"), clusters: 2 });
    await first.load("train");
    const src = first.dataSource!("train")!;
    const again = await getTask("math", { hubCacheDir: cacheDir, cacheDir: join(dir, "derived"), clusters: 2, data: { train: src } });
    expect((await again.load("train")).map((r) => r.prompt)).toEqual((await first.load("train")).map((r) => r.prompt));
  });
});
