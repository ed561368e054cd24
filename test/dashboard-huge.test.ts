/**
 * The dashboard reads run files streaming (issue #11 item 7): a metrics.jsonl of 150k lines used to
 * overflow the stack (`Math.max(...steps)`) and fail /api/runs for every run; a rollout line of many MB
 * without a newline was re-copied on every 1 MiB read (quadratic). Bad files are reported per run.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, openSync, writeSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDashboard, type Dashboard } from "../src/dashboard/server.ts";
import { scanLines } from "../src/util/lines.ts";

let tmp: string;
let dash: Dashboard;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "mpo-dash-huge-"));
  const runs = join(tmp, "runs");
  // A run with 150k metrics lines.
  const big = join(runs, "big");
  mkdirSync(big, { recursive: true });
  writeFileSync(join(big, "status.json"), JSON.stringify({ state: "finished", step: 150_000 }));
  const lines: string[] = [];
  for (let i = 1; i <= 150_000; i++) lines.push(`{"step":${i},"score":{"mean":${(i % 7) / 7}}}`);
  writeFileSync(join(big, "metrics.jsonl"), lines.join("\n") + "\n");
  // A run whose files are broken in several ways, and one with 20 MB of garbage on one line in its rollouts.
  const bad = join(runs, "bad");
  mkdirSync(join(bad, "rollouts"), { recursive: true });
  writeFileSync(join(bad, "status.json"), "{not json");
  writeFileSync(join(bad, "metrics.jsonl"), Array.from({ length: 500 }, () => "nope").join("\n") + "\n" + '{"step":1}\n');
  const fd = openSync(join(bad, "rollouts", "step-000001.jsonl"), "w");
  const mb = Buffer.alloc(1 << 20, "x");
  for (let i = 0; i < 20; i++) writeSync(fd, mb);
  writeSync(fd, '\n{"step":1,"score":0.5,"response":"fine"}\n');
  closeSync(fd);
  dash = await createDashboard({ runsDir: runs, port: 0, pollMs: 100 });
});

afterAll(async () => {
  await dash?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("huge and broken run files", () => {
  it("/api/runs lists a run with 150k metrics lines and a broken run, each with its own problems", async () => {
    const res = await dash.app.inject({ method: "GET", url: "/api/runs" });
    expect(res.statusCode).toBe(200);
    const runs = res.json().runs as Array<{ id: string; steps: number; lastStep: number | null; problems: Array<{ file: string; message: string }> }>;
    const big = runs.find((r) => r.id === "big")!;
    expect(big).toMatchObject({ steps: 150_000, lastStep: 150_000, problems: [] });
    const bad = runs.find((r) => r.id === "bad")!;
    expect(bad.steps).toBe(1);
    expect(bad.problems.some((p) => p.file === "status.json" && /invalid JSON/.test(p.message))).toBe(true);
    // 500 bad lines: a bounded list plus a count, not 500 entries.
    const metricsProblems = bad.problems.filter((p) => p.file === "metrics.jsonl");
    expect(metricsProblems.length).toBeLessThanOrEqual(21);
    expect(metricsProblems[metricsProblems.length - 1].message).toMatch(/480 more problems/);
  });

  it("/api/runs/:id/metrics returns all 150k rows", async () => {
    const res = await dash.app.inject({ method: "GET", url: "/api/runs/big/metrics" });
    expect(res.statusCode).toBe(200);
    expect(res.json().rows).toHaveLength(150_000);
  });

  it("a 20 MB rollout line is skipped and reported; the record after it is served", async () => {
    const res = await dash.app.inject({ method: "GET", url: "/api/runs/bad/rollouts?limit=10" });
    expect(res.statusCode).toBe(200);
    const page = res.json();
    expect(page.rollouts).toHaveLength(1);
    expect(page.rollouts[0]).toMatchObject({ response: "fine", _line: 2 });
    expect(page.problems.some((p: { message: string }) => /line 1: 20971520 bytes, longer than/.test(p.message))).toBe(true);
  });
});

describe("scanLines", () => {
  it("offsets, line numbers, a torn tail, an incremental continue from parsedBytes", async () => {
    const p = join(tmp, "lines.jsonl");
    writeFileSync(p, "a\n\nbcd\nef");
    const seen: Array<[string, number, number, boolean]> = [];
    const r = await scanLines(p, (b, n, off, complete) => seen.push([b.toString(), n, off, complete]), { includeTail: true });
    expect(seen).toEqual([["a", 1, 0, true], ["", 2, 2, true], ["bcd", 3, 3, true], ["ef", 4, 7, false]]);
    expect(r).toEqual({ parsedBytes: 7, lines: 3, tailBytes: 2 });
    writeFileSync(p, "a\n\nbcd\nefg\n");
    const more: string[] = [];
    expect(await scanLines(p, (b) => more.push(b.toString()), { start: r.parsedBytes, firstLine: r.lines + 1 })).toEqual({ parsedBytes: 11, lines: 4, tailBytes: 0 });
    expect(more).toEqual(["efg"]);
  });
});
