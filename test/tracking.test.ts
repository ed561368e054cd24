/**
 * Experiment tracking from a run directory: TensorBoard event files decoded by an independent decoder
 * (test/helpers/tfevents_decode.py: its own CRC-32C and protobuf parsing, in Python), MLflow against a fake
 * tracking server on loopback answering the real REST endpoints, and missing credentials → one warning each
 * while the rest keeps working.
 */
import { execFileSync } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { flattenMetrics, parseLogTo, RunTracker } from "../src/track/index.ts";
import { crc32c } from "../src/track/tensorboard.ts";

const dir = mkdtempSync(join(tmpdir(), "mpo-track-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Decoded = Array<{ step?: number; file_version?: string; values: Array<{ tag: string; simple_value?: number; text?: string; plugin?: string }> }>;
const decode = (file: string): Decoded => JSON.parse(execFileSync("python3", [resolve(import.meta.dirname, "helpers", "tfevents_decode.py"), file], { encoding: "utf8" }));

function fakeRun(name: string): string {
  const run = join(dir, name);
  mkdirSync(join(run, "rubrics"), { recursive: true });
  writeFileSync(join(run, "metrics.jsonl"), [
    JSON.stringify({ step: 1, score: { mean: 0.25, std: 0.1 }, samples: 8, kl: 0.001, meta: { ran: false } }),
    JSON.stringify({ step: 2, score: { mean: 0.5, std: 0.2 }, samples: 8, kl: 0.002, note: "text is not a scalar" }),
  ].join("\n") + "\n");
  writeFileSync(join(run, "rubrics", "v0000.txt"), "<rubric>\n<item>### Relevance\nScore 0 to 5.</item>\n</rubric>\n");
  return run;
}

describe("tracking", () => {
  it("CRC-32C matches the standard check value", () => {
    expect(crc32c(Buffer.from("123456789"))).toBe(0xe3069283);
  });

  it("flattens metrics records; --log-to parses and rejects unknown names", () => {
    expect(flattenMetrics({ step: 3, score: { mean: 0.5 }, ok: true, s: "x", arr: [1] })).toEqual({ "score/mean": 0.5, ok: 1 });
    expect(parseLogTo("tensorboard, mlflow,tensorboard")).toEqual(["tensorboard", "mlflow"]);
    expect(() => parseLogTo("tensorbord")).toThrow(/unknown tracker 'tensorbord'/);
  });

  it("TensorBoard: every metrics.jsonl scalar per step and the rubric as text, in files an independent decoder reads", async () => {
    const run = fakeRun("tb");
    const t = await RunTracker.start(run, ["tensorboard"], { intervalMs: 0 });
    await t.sync();
    // A step appended later (and a torn half line) is picked up by the next sync, once complete.
    appendFileSync(join(run, "metrics.jsonl"), JSON.stringify({ step: 3, score: { mean: 0.75 } }) + "\n" + '{"step": 4, "sco');
    await t.close();
    const files = readdirSync(join(run, "tensorboard"));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^events\.out\.tfevents\.\d+\./);
    const events = decode(join(run, "tensorboard", files[0]));
    expect(events[0].file_version).toBe("brain.Event:2");
    const scalars = events.flatMap((e) => e.values.filter((v) => v.simple_value !== undefined).map((v) => [e.step, v.tag, v.simple_value]));
    expect(scalars).toEqual([
      [1, "score/mean", 0.25], [1, "score/std", expect.closeTo(0.1, 6)], [1, "samples", 8], [1, "kl", expect.closeTo(0.001, 6)], [1, "meta/ran", 0],
      [2, "score/mean", 0.5], [2, "score/std", expect.closeTo(0.2, 6)], [2, "samples", 8], [2, "kl", expect.closeTo(0.002, 6)],
      [3, "score/mean", 0.75],
    ]);
    const text = events.flatMap((e) => e.values.filter((v) => v.text !== undefined));
    expect(text).toEqual([{ tag: "rubric/v0000", plugin: "text", dtype: 7, text: expect.stringContaining("### Relevance") }]);
  });

  it("MLflow: runs/create, runs/log-batch per step, rubric as an artifact, run FINISHED — against a fake tracking server", async () => {
    const calls: Array<{ method: string; path: string; body: string }> = [];
    const server = createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        const url = new URL(req.url!, "http://x");
        calls.push({ method: req.method!, path: url.pathname + url.search, body });
        const json = (code: number, v: unknown) => {
          res.writeHead(code, { "content-type": "application/json" });
          res.end(JSON.stringify(v));
        };
        if (url.pathname === "/api/2.0/mlflow/experiments/get-by-name") return json(404, { error_code: "RESOURCE_DOES_NOT_EXIST", message: "no" });
        if (url.pathname === "/api/2.0/mlflow/experiments/create") return json(200, { experiment_id: "7" });
        if (url.pathname === "/api/2.0/mlflow/runs/create") return json(200, { run: { info: { run_id: "r123", experiment_id: "7", artifact_uri: "mlflow-artifacts:/7/r123/artifacts", status: "RUNNING" } } });
        if (url.pathname === "/api/2.0/mlflow/runs/log-batch" || url.pathname === "/api/2.0/mlflow/runs/update") return json(200, {});
        if (req.method === "PUT" && url.pathname.startsWith("/api/2.0/mlflow-artifacts/artifacts/")) return json(200, {});
        json(404, { error_code: "ENDPOINT_NOT_FOUND" });
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const uri = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const run = fakeRun("mlflow");
    const warnings: string[] = [];
    const t = await RunTracker.start(run, ["mlflow"], { intervalMs: 0, params: { algo: "grpo", lr: 1e-5 }, env: { MLFLOW_TRACKING_URI: uri }, warn: (l) => warnings.push(l) });
    expect(t.active).toEqual(["mlflow"]);
    await t.close();
    await new Promise<void>((r) => server.close(() => r()));
    expect(warnings).toEqual([]);
    const create = calls.find((c) => c.path === "/api/2.0/mlflow/runs/create")!;
    expect(JSON.parse(create.body)).toMatchObject({ experiment_id: "7", run_name: "mlflow" });
    const batches = calls.filter((c) => c.path === "/api/2.0/mlflow/runs/log-batch").map((c) => JSON.parse(c.body));
    expect(batches[0]).toEqual({ run_id: "r123", params: [{ key: "algo", value: "grpo" }, { key: "lr", value: "0.00001" }] });
    const metrics = batches.flatMap((b) => b.metrics ?? []);
    expect(metrics.map((m: { key: string; step: number; value: number }) => [m.step, m.key, m.value])).toEqual([
      [1, "score/mean", 0.25], [1, "score/std", 0.1], [1, "samples", 8], [1, "kl", 0.001], [1, "meta/ran", 0],
      [2, "score/mean", 0.5], [2, "score/std", 0.2], [2, "samples", 8], [2, "kl", 0.002],
    ]);
    const put = calls.find((c) => c.method === "PUT")!;
    expect(put.path).toBe("/api/2.0/mlflow-artifacts/artifacts/7/r123/artifacts/rubrics/v0000.txt");
    expect(put.body).toContain("### Relevance");
    expect(JSON.parse(calls[calls.length - 1].body)).toMatchObject({ run_id: "r123", status: "FINISHED" });
  });

  it("missing credentials or an unreachable server: one warning per backend, the others keep working", async () => {
    const run = fakeRun("partial");
    const warnings: string[] = [];
    const t = await RunTracker.start(run, ["wandb", "mlflow", "tensorboard"], { intervalMs: 0, env: { MLFLOW_TRACKING_URI: "http://127.0.0.1:9" }, warn: (l) => warnings.push(l) });
    expect(t.active).toEqual(["tensorboard"]);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/--log-to wandb is off for this run: WANDB_API_KEY is not set/);
    expect(warnings[1]).toMatch(/--log-to mlflow is off for this run: .*fetch failed|ECONNREFUSED/);
    await t.close();
    expect(decode(join(run, "tensorboard", readdirSync(join(run, "tensorboard"))[0])).length).toBeGreaterThan(2);
  });
});

describe("mpo train --log-to", () => {
  it("writes TensorBoard events for every step of a real training run; missing MLflow settings warn once", async () => {
    const { spawn } = await import("node:child_process");
    const run = join(dir, "train-run");
    const env = { ...process.env };
    delete env.MLFLOW_TRACKING_URI;
    const out = await new Promise<{ code: number | null; text: string }>((res) => {
      const p = spawn(process.execPath, [resolve(import.meta.dirname, "..", "bin", "mpo.js"), "train", "--task", "say-word", "--reward", "keyword", "--word", "blue", "--algo", "grpo", "--steps", "2", "--batch", "2", "--run", run, "--log-to", "tensorboard,mlflow", "--no-progress"], { env });
      let text = "";
      p.stdout.on("data", (d) => (text += d));
      p.stderr.on("data", (d) => (text += d));
      p.on("close", (code) => res({ code, text }));
    });
    expect(out.code, out.text).toBe(0);
    expect(out.text.match(/--log-to mlflow is off for this run: MLFLOW_TRACKING_URI is not set/g)).toHaveLength(1);
    const events = decode(join(run, "tensorboard", readdirSync(join(run, "tensorboard"))[0]));
    const steps = events.filter((e) => e.values.some((v) => v.tag === "score/mean")).map((e) => e.step);
    expect(steps).toEqual([1, 2]);
  }, 120_000);
});
