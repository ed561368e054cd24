/**
 * The dashboard's JSON API over a generated fixture runs directory: run discovery and status, robustness
 * (corrupt/unreadable files reported, not fatal), path safety (.., absolute, encoded slashes, symlinks out),
 * paged rollout queries on a 12k-rollout run, incremental indexing of a growing file, and SSE change events.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDashboard, type Dashboard } from "../src/dashboard/server.ts";
import { appendMetricsStep, makeFixtureRuns, type FixtureRuns } from "./helpers/make-fixture-run.ts";

let tmp: string;
let fx: FixtureRuns;
let dash: Dashboard;

async function get(path: string): Promise<{ status: number; body: any }> {
  const res = await dash.app.inject({ method: "GET", url: path });
  return { status: res.statusCode, body: res.headers["content-type"]?.toString().includes("json") ? res.json() : res.body };
}
const runUrl = (id: string, rest = "") => `/api/runs/${encodeURIComponent(id)}${rest}`;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "mpo-dash-api-"));
  fx = makeFixtureRuns(join(tmp, "runs"), { bigRollouts: 12_000 });
  // Things that must stay unreachable: a directory outside RUNS_DIR that looks like a run, linked in.
  const outside = join(tmp, "outside");
  mkdirSync(outside);
  writeFileSync(join(outside, "status.json"), JSON.stringify({ state: "finished" }));
  writeFileSync(join(outside, "metrics.jsonl"), JSON.stringify({ step: 1, secret: 42 }) + "\n");
  symlinkSync(outside, join(fx.root, "escape"));
  // A rollout file inside a run that links to a file outside.
  symlinkSync(join(outside, "metrics.jsonl"), join(fx.root, fx.fixed, "rollouts", "step-000099.jsonl"));
  dash = await createDashboard({ runsDir: fx.root, port: 0, pollMs: 100 });
});

afterAll(async () => {
  await dash?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("runs", () => {
  it("refuses a runs directory that does not exist, naming it", async () => {
    await expect(createDashboard({ runsDir: join(tmp, "nope"), port: 0 })).rejects.toThrow(/runs directory '.*nope' cannot be opened/);
  });

  it("binds to loopback by default", () => {
    expect(dash.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it("lists nested runs with state, steps and problems; never follows a link out", async () => {
    const { status, body } = await get("/api/runs");
    expect(status).toBe(200);
    const ids = body.runs.map((r: { id: string }) => r.id);
    expect(ids).toEqual(["big", "broken", "sandbox/fixed", "sandbox/mpo"]);
    const mpo = body.runs.find((r: { id: string }) => r.id === "sandbox/mpo");
    expect(mpo).toMatchObject({ state: "running", task: "essay", algorithm: "ppo", arm: "mpo", steps: 30, lastStep: 30, totalSteps: 60, rubricVersions: 4 });
    expect(mpo.problems).toEqual([{ file: "metrics.jsonl", message: "line 15: invalid JSON, skipped" }]);
    expect(mpo.stale).toBe(false); // pid 0 in the fixture: unknown, and files are fresh
    const broken = body.runs.find((r: { id: string }) => r.id === "broken");
    expect(broken.state).toBe("unknown");
    expect(broken.problems.map((p: { file: string }) => p.file)).toEqual(["status.json", "metrics.jsonl"]);
    expect(broken.steps).toBe(1);
  });
});

describe("stale runs", () => {
  it("a 'running' run whose process is gone is flagged stale, with the reason", async () => {
    const dir = join(fx.root, "killed");
    mkdirSync(dir);
    // A pid far above Linux's pid_max default range that cannot exist.
    writeFileSync(join(dir, "status.json"), JSON.stringify({ state: "running", step: 3, pid: 2 ** 30, updatedAt: new Date().toISOString() }));
    const { body } = await get(runUrl("killed"));
    expect(body.state).toBe("running");
    expect(body.stale).toBe(true);
    expect(body.staleReason).toContain(String(2 ** 30));
    rmSync(dir, { recursive: true });
  });
});

describe("path safety", () => {
  it.each([
    ["..", 404], // the URL normalizes /api/runs/../metrics away from the route: nothing served either way
    ["../outside", 400],
    ["sandbox/../../outside", 400],
    ["/etc", 400],
    [join(tmp ?? "/tmp", "outside"), 400],
    ["escape", 400],
    ["sandbox\\..\\..", 400],
    ["does-not-exist", 404],
  ])("run id %s → %i", async (id, code) => {
    const { status, body } = await get(runUrl(id, "/metrics"));
    expect(status).toBe(code);
    expect(JSON.stringify(body)).not.toContain("secret");
  });

  it("rejects raw and double-encoded traversal in the URL", async () => {
    for (const url of ["/api/runs/..%2F..%2Fetc/metrics", "/api/runs/%2e%2e/metrics", "/api/runs/%2Fetc%2Fpasswd/metrics", "/api/runs/..%252F..%252Fetc/metrics"]) {
      const { status, body } = await get(url);
      expect([400, 404]).toContain(status);
      expect(JSON.stringify(body)).not.toContain("root:");
    }
    expect((await get("/static/..%2Fserver.ts")).status).toBe(404);
    expect((await get("/vendor/..%2F..%2Fpackage.json")).status).toBe(404);
  });

  it("reports a rollout file that links outside instead of reading it", async () => {
    const { body } = await get(runUrl(fx.fixed, "/rollouts?step=99"));
    expect(body.total).toBe(0);
    expect(body.problems.some((p: { file: string; message: string }) => p.file === "rollouts/step-000099.jsonl" && /outside/.test(p.message))).toBe(true);
  });
});

describe("metrics, rubrics, meta, signals", () => {
  it("metrics skip the corrupt line and carry meta steps and eval rows", async () => {
    const { body } = await get(runUrl(fx.mpo, "/metrics"));
    expect(body.rows.map((r: { step: number }) => r.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(body.eval).toHaveLength(10);
    expect(body.metaSteps.map((m: { step: number }) => m.step)).toEqual([10, 20, 25]);
    expect(body.metaSteps[0]).toMatchObject({ toVersion: 1, ok: true, added: 1 });
    expect(body.metaSteps[0].trigger).toBeUndefined();
    expect(body.metaSteps[1]).toMatchObject({ toVersion: 2, trigger: "length-explode" });
    expect(body.problems).toHaveLength(1);
  });

  it("rubric lineage has diffs against parents and links meta logs; the corrupt version is a problem", async () => {
    const { body } = await get(runUrl(fx.mpo, "/rubrics"));
    expect(body.versions.map((v: { version: number }) => v.version)).toEqual([0, 1, 2]);
    const v1 = body.versions[1];
    expect(v1.parent).toBe(0);
    expect(v1.metaSteps).toEqual([10]);
    expect(v1.diff.items.filter((c: { kind: string }) => c.kind === "added").map((c: { name: string }) => c.name)).toEqual(["conciseness"]);
    const v2 = body.versions[2];
    expect(v2.diff.items.find((c: { name: string }) => c.name === "relevance").kind).toBe("changed");
    expect(body.problems.map((p: { file: string }) => p.file)).toEqual(["rubrics/v0003.json"]);
  });

  it("meta logs by step, with clear errors for bad or missing steps", async () => {
    const ok = await get(runUrl(fx.mpo, "/meta/10"));
    expect(ok.status).toBe(200);
    expect(ok.body.log.samples).toHaveLength(2);
    expect((await get(runUrl(fx.mpo, "/meta/abc"))).status).toBe(400);
    expect((await get(runUrl(fx.mpo, "/meta/99"))).status).toBe(404);
    const list = await get(runUrl(fx.mpo, "/meta"));
    expect(list.body.meta.map((m: { key: string }) => m.key)).toEqual(["10", "20", "20-guidelines", "25"]);
    const g = await get(runUrl(fx.mpo, "/meta/20-guidelines"));
    expect(g.body.log.kind).toBe("guidelines");
    expect((await get(runUrl(fx.mpo, "/meta/20-..%2F..%2Fx"))).status).toBe(400);
  });

  it("signals fire on the hacked arm, not on the healthy one", async () => {
    const fixed = await get(runUrl(fx.fixed, "/signals"));
    const kinds = new Set(fixed.body.signals.map((s: { kind: string }) => s.kind));
    for (const k of ["rm-up-eval-down", "length-explode", "repetition-rising", "eos-dropping"]) expect(kinds).toContain(k);
    const mpo = await get(runUrl(fx.mpo, "/signals"));
    expect(mpo.body.signals).toEqual([]);
    expect(mpo.body.problems.some((p: { file: string }) => p.file === "rollouts/step-000007.jsonl")).toBe(true);
  });
});

describe("rollouts", () => {
  it("pages through a 12k-rollout run", async () => {
    const first = await get(runUrl("big", "/rollouts?limit=500"));
    expect(first.body.total).toBe(12_000);
    expect(first.body.rollouts).toHaveLength(500);
    expect(first.body.facets.count).toBe(12_000);
    const last = await get(runUrl("big", "/rollouts?limit=500&offset=11900"));
    expect(last.body.rollouts).toHaveLength(100);
    expect(last.body.rollouts[99].id).toBe("fixed-20-599");
    // Pages are contiguous and disjoint across step files.
    const a = await get(runUrl("big", "/rollouts?limit=7&offset=595"));
    expect(a.body.rollouts.map((r: { id: string }) => r.id)).toEqual(["fixed-1-595", "fixed-1-596", "fixed-1-597", "fixed-1-598", "fixed-1-599", "fixed-2-0", "fixed-2-1"]);
  });

  it("filters by step, score range, version and flag", async () => {
    const step = await get(runUrl("big", "/rollouts?step=5&limit=500"));
    expect(step.body.total).toBe(600);
    expect(new Set(step.body.rollouts.map((r: { step: number }) => r.step))).toEqual(new Set([5]));
    const range = await get(runUrl(fx.mpo, "/rollouts?minScore=12&maxScore=14&limit=500"));
    expect(range.body.total).toBeGreaterThan(0);
    for (const r of range.body.rollouts) expect(r.score >= 12 && r.score <= 14).toBe(true);
    const v2 = await get(runUrl(fx.mpo, "/rollouts?version=2&limit=500"));
    expect(v2.body.total).toBe(80); // steps 21–30
    for (const r of v2.body.rollouts) expect(r.rubricVersion).toBe(2);
    const flag = await get(runUrl(fx.mpo, "/rollouts?flag=unparsed-fallback&limit=500"));
    expect(flag.body.total).toBeGreaterThan(0);
    for (const r of flag.body.rollouts) expect(r.evaluation.flags).toContain("unparsed-fallback");
  });

  it("rejects bad query parameters naming the field", async () => {
    const r = await get(runUrl(fx.mpo, "/rollouts?limit=100000"));
    expect(r.status).toBe(400);
    expect(r.body.error).toContain("'limit'");
    const s = await get(runUrl(fx.mpo, "/rollouts?step=abc"));
    expect(s.status).toBe(400);
    expect(s.body.error).toContain("'step'");
  });

  it("indexes a growing file incrementally and waits for a torn line to complete", async () => {
    const file = join(fx.root, fx.fixed, "rollouts", "step-000030.jsonl");
    const before = (await get(runUrl(fx.fixed, "/rollouts?step=30"))).body.total;
    const rec = { id: "late-1", step: 30, prompt: "p", response: "r", score: 1, normalized: 0.1, rubricVersion: 0, evaluation: null, flags: ["late"], length: 1, eos: true };
    const text = JSON.stringify(rec);
    appendFileSync(file, text.slice(0, 20));
    const torn = (await get(runUrl(fx.fixed, "/rollouts?step=30"))).body;
    expect(torn.total).toBe(before);
    expect(torn.problems.filter((p: { file: string }) => p.file.includes("step-000030"))).toEqual([]);
    appendFileSync(file, text.slice(20) + "\n");
    const done = (await get(runUrl(fx.fixed, "/rollouts?step=30&flag=late"))).body;
    expect(done.total).toBe(1);
    expect(done.rollouts[0].id).toBe("late-1");
  });
});

describe("live events", () => {
  it("sends a change event naming the run and part when metrics are appended", async () => {
    const ctrl = new AbortController();
    const res = await fetch(`${dash.url}/api/events`, { signal: ctrl.signal });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    const next = async (pred: (ev: { event: string; data: string }) => boolean) => {
      for (;;) {
        let i: number;
        while ((i = buf.indexOf("\n\n")) !== -1) {
          const chunk = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = { event: "message", data: "" };
          for (const line of chunk.split("\n")) {
            if (line.startsWith("event: ")) ev.event = line.slice(7);
            if (line.startsWith("data: ")) ev.data += line.slice(6);
          }
          if (pred(ev)) return ev;
        }
        const { value, done } = await reader.read();
        if (done) throw new Error("stream ended");
        buf += decoder.decode(value, { stream: true });
      }
    };
    await next((e) => e.event === "hello");
    appendMetricsStep(fx.root, fx.mpo, 31);
    const ev = await next((e) => e.event === "change" && JSON.parse(e.data).run === fx.mpo);
    expect(JSON.parse(ev.data).parts).toContain("metrics");
    ctrl.abort();
    const m = await get(runUrl(fx.mpo, "/metrics"));
    expect(m.body.rows[m.body.rows.length - 1].step).toBe(31);
  });
});
