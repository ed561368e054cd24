/**
 * `--log-to wandb` against a fake W&B server on loopback (test/helpers/fake-wandb.ts: the GraphQL Viewer /
 * UpsertBucket calls and the file_stream endpoint, as the official JS SDK @wandb/sdk sends them), driven by the
 * real SDK: every metrics.jsonl row arrives as a history row with its training step, the run config arrives with
 * the run, rubric versions arrive as text; and a W&B outage (HTTP 500s, a server that stops answering, a server
 * that goes away mid-run) is one flagged warning while the run completes and the process exits.
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { flattenMetrics, RunTracker } from "../src/track/index.ts";
import { FakeWandb } from "./helpers/fake-wandb.ts";

const dir = mkdtempSync(join(tmpdir(), "mpo-wandb-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const KEY = "fake-key-0123456789";
const basic = `Basic ${Buffer.from(`api:${KEY}`).toString("base64")}`;
const envFor = (url: string) => ({ WANDB_API_KEY: KEY, WANDB_BASE_URL: url, WANDB_PROJECT: "mpo-test" });

function fakeRun(name: string, steps: number): string {
  const run = join(dir, name);
  mkdirSync(join(run, "rubrics"), { recursive: true });
  const lines = [];
  for (let s = 1; s <= steps; s++) lines.push(JSON.stringify({ step: s, score: { mean: s / 10, std: 0.1 }, kl: s / 1000, meta: { ran: s % 2 === 0 } }));
  writeFileSync(join(run, "metrics.jsonl"), lines.join("\n") + "\n");
  writeFileSync(join(run, "rubrics", "v0000.txt"), "<rubric>\n<item>### Relevance\nScore 0 to 5.</item>\n</rubric>\n");
  return run;
}

/** The history rows the server holds, as [step, tag, value] for every metric (W&B's own _runtime/_timestamp left out). */
function scalarRows(history: Array<Record<string, unknown>>): Array<[unknown, string, unknown]> {
  return history.flatMap((row) => Object.entries(row).filter(([k, v]) => !k.startsWith("_") && typeof v === "number").map(([k, v]) => [row._step, k, v] as [unknown, string, unknown]));
}

function expectedRows(metricsFile: string): Array<[unknown, string, unknown]> {
  return readFileSync(metricsFile, "utf8")
    .split("\n")
    .filter(Boolean)
    .flatMap((l) => {
      const rec = JSON.parse(l);
      return Object.entries(flattenMetrics(rec)).map(([k, v]) => [rec.step, k, v] as [unknown, string, unknown]);
    });
}

describe("--log-to wandb (the official JS SDK against a fake W&B server)", () => {
  it("delivers every metrics row with its step, the run config and the rubric text", async () => {
    const w = await new FakeWandb().start();
    try {
      const run = fakeRun("ok", 4);
      const warnings: string[] = [];
      const t = await RunTracker.start(run, ["wandb"], { intervalMs: 0, params: { algo: "ppo", lr: 0.001 }, env: envFor(w.url), warn: (l) => warnings.push(l) });
      expect(t.active).toEqual(["wandb"]);
      await t.close();
      expect(warnings).toEqual([]);
      expect([...w.runs.keys()]).toHaveLength(1);
      const got = [...w.runs.values()][0];
      expect(got).toMatchObject({ entity: "fake-entity", project: "mpo-test", displayName: "ok", config: { algo: "ppo", lr: 0.001 }, complete: { exitcode: 0 } });
      expect(w.authorizations).toEqual(new Set([basic]));
      expect(scalarRows(got.history)).toEqual(expectedRows(join(run, "metrics.jsonl")));
      // Steps 1..4, one row each, then the rubric (synced after the metrics) in a row after the last step.
      expect(got.history.map((r) => r._step)).toEqual([1, 2, 3, 4, 5]);
      expect(got.history[4]["rubric/v0000"]).toContain("### Relevance");
      // The run id is kept for --resume (tracking.json).
      expect(JSON.parse(readFileSync(join(run, "tracking.json"), "utf8")).wandb.runId).toBe(got.name);
    } finally {
      await w.stop();
    }
  }, 60_000);

  it("a resumed run becomes a new W&B run (the JS SDK cannot append to one) and sends only the new steps", async () => {
    const w = await new FakeWandb().start();
    try {
      const run = fakeRun("resumed", 2);
      const env = envFor(w.url);
      await (await RunTracker.start(run, ["wandb"], { intervalMs: 0, env, warn: () => {} })).close();
      writeFileSync(join(run, "metrics.jsonl"), readFileSync(join(run, "metrics.jsonl"), "utf8") + JSON.stringify({ step: 3, score: { mean: 0.9 } }) + "\n");
      await (await RunTracker.start(run, ["wandb"], { intervalMs: 0, env, warn: () => {} })).close();
      const [first, second] = [...w.runs.values()];
      expect(scalarRows(first.history).map((r) => r[0])).toEqual([1, 1, 1, 1, 2, 2, 2, 2]);
      expect(second).toMatchObject({ displayName: "resumed (resumed)", config: { resumed_from: first.name } });
      expect(scalarRows(second.history)).toEqual([[3, "score/mean", 0.9]]);
    } finally {
      await w.stop();
    }
  }, 60_000);

  it("a W&B server answering HTTP 500: one warning, W&B off, the other trackers go on, nothing waits on retries", async () => {
    const w = await new FakeWandb().start();
    w.mode = "error";
    try {
      const run = fakeRun("error", 2);
      const warnings: string[] = [];
      const t = await RunTracker.start(run, ["wandb", "tensorboard"], { intervalMs: 0, env: envFor(w.url), warn: (l) => warnings.push(l), wandb: { initTimeoutMs: 3000 } });
      expect(t.active).toEqual(["tensorboard"]);
      await t.close();
      expect(warnings.filter((l) => /--log-to wandb is off for this run: wandb\.init: no answer/.test(l))).toHaveLength(1);
      expect(readdirSync(join(run, "tensorboard"))).toHaveLength(1);
    } finally {
      await w.stop();
    }
  }, 60_000);

  it("a W&B server that stops answering mid-run: close() gives up after its limit with a warning", async () => {
    const w = await new FakeWandb().start();
    w.onRequest = (path) => {
      if (path.endsWith("/file_stream")) w.mode = "hang";
    };
    try {
      const run = fakeRun("hang", 3);
      const warnings: string[] = [];
      const t = await RunTracker.start(run, ["wandb"], { intervalMs: 0, env: envFor(w.url), warn: (l) => warnings.push(l), wandb: { finishTimeoutMs: 3000 } });
      expect(t.active).toEqual(["wandb"]);
      await t.close();
      expect(warnings).toEqual([expect.stringMatching(/closing --log-to wandb: wandb\.finish: W&B did not confirm the end of the run in 3 s/)]);
    } finally {
      await w.stop();
    }
  }, 60_000);
});

describe("mpo train --log-to wandb", () => {
  const train = (run: string, url: string, steps: number) =>
    new Promise<{ code: number | null; text: string }>((res) => {
      const env = { ...process.env, ...envFor(url) };
      const p = spawn(process.execPath, [resolve(import.meta.dirname, "..", "bin", "mpo.js"), "train", "--task", "say-word", "--steps", String(steps), "--batch", "2", "--run", run, "--log-to", "wandb", "--no-progress"], { env });
      let text = "";
      p.stdout.on("data", (d) => (text += d));
      p.stderr.on("data", (d) => (text += d));
      p.on("close", (code) => res({ code, text }));
    });

  it("every step's metrics row and the run's config reach W&B", async () => {
    const w = await new FakeWandb().start();
    try {
      const run = join(dir, "train-ok");
      const out = await train(run, w.url, 3);
      expect(out.code, out.text).toBe(0);
      expect(out.text).not.toMatch(/warning: .*--log-to/);
      const got = [...w.runs.values()];
      expect(got).toHaveLength(1);
      expect(got[0].config).toMatchObject({ algo: "ppo", task: "say-word", steps: 3, batchSize: 2, reward: "keyword" });
      expect(got[0].complete).toEqual({ exitcode: 0 });
      const rows = scalarRows(got[0].history);
      expect(rows).toEqual(expectedRows(join(run, "metrics.jsonl")));
      expect(new Set(rows.map((r) => r[0]))).toEqual(new Set([1, 2, 3]));
      expect(rows.some(([, k]) => k === "score/mean")).toBe(true);
    } finally {
      await w.stop();
    }
  }, 120_000);

  it("W&B going away mid-run: one flagged warning, training completes and exits 0", async () => {
    const w = await new FakeWandb().start();
    // The run is created, then the first file-stream request finds the server gone (connection reset, then refused).
    w.onRequest = (path) => {
      if (path.endsWith("/file_stream")) void w.goDown();
    };
    try {
      const run = join(dir, "train-down");
      const out = await train(run, w.url, 3);
      expect(out.code, out.text).toBe(0);
      expect(out.text).toMatch(/training finished: 3 steps/);
      expect(out.text.match(/mpo: warning: --log-to wandb: a request to W&B failed/g), out.text).toHaveLength(1);
      expect(readFileSync(join(run, "metrics.jsonl"), "utf8").trim().split("\n")).toHaveLength(3);
    } finally {
      await w.stop();
    }
  }, 120_000);
});
