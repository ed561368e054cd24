/**
 * The reward service attacked: failing disks, slow clients, huge windows, a second instance, judge error
 * bodies that echo credentials, cross-site requests and DNS rebinding. Each test first reproduced the
 * defect it guards (issue #11): a crash from a timer, connections held open, ERR_STRING_TOO_LONG on restart,
 * a second service marking the first "stopped", a leaked token, a rubric rewritten from another origin.
 */
import { execFile } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync, appendFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { createChatModel } from "../src/llm/openai-client.ts";
import { ScriptedChatModel } from "../src/llm/scripted.ts";
import type { ChatModel, ChatRequest } from "../src/llm/types.ts";
import { serveConfigSchema } from "../src/serve/config.ts";
import { startRewardService } from "../src/serve/index.ts";
import { RunDirLockedError } from "../src/serve/lock.ts";
import { UnsafeConfigError, type ServerHandle } from "../src/serve/server.ts";
import { RewardService } from "../src/serve/service.ts";
import { SimulatedJudgeModel } from "../src/sandbox/sim/sim-model.ts";
import { startFakeOpenAI, type FakeOpenAI } from "./helpers/fake-openai-server.ts";

const RUBRIC = "<rubric><item>Discourse: how well the writing flows. Score from 0 to 5.</item></rubric>";
const REPO = resolve(__dirname, "..");

const handles: ServerHandle[] = [];
const fakes: FakeOpenAI[] = [];
afterEach(async () => {
  while (handles.length) await handles.pop()!.close();
  while (fakes.length) await fakes.pop()!.close();
});

function tmpRun(): { runDir: string; rubric: string } {
  const dir = mkdtempSync(join(tmpdir(), "mpo-serve-hard-"));
  const rubric = join(dir, "rubric.txt");
  writeFileSync(rubric, RUBRIC);
  return { runDir: join(dir, "run"), rubric };
}

const scripted = () =>
  new ScriptedChatModel((req: ChatRequest) => (/integer score/i.test(req.messages.at(-1)!.content) ? (/good/.test(req.messages[1].content) ? "4" : "1") : "Rationale."));

async function start(over: Record<string, unknown> = {}, judge: ChatModel = scripted(), extra: { append?: (p: string, t: string) => void; metaJudge?: ChatModel } = {}) {
  const { runDir, rubric } = tmpRun();
  const cfg = serveConfigSchema.parse({ protocol: "hardened", runDir, rubric, port: 0, judge: { baseURL: "http://127.0.0.1:9/v1", model: "m" }, ...over });
  const logs: string[] = [];
  const h = await startRewardService(cfg, { judge, log: (l) => logs.push(l), ...extra });
  handles.push(h);
  return { h, cfg, logs };
}

async function post(h: ServerHandle, path: string, body: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(h.url + path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
  return { status: r.status, body: (await r.json().catch(() => null)) as any };
}

/** A raw HTTP/1.1 request (fetch cannot send a foreign Host header). Resolves with the status line's code. */
function rawRequest(h: ServerHandle, lines: string[], body = ""): Promise<number> {
  const { port, hostname } = new URL(h.url);
  return new Promise((resolveP, reject) => {
    const sock = connect(Number(port), hostname, () => sock.end([...lines, `content-length: ${Buffer.byteLength(body)}`, "connection: close", "", body].join("\r\n")));
    let data = "";
    sock.on("data", (d) => (data += d));
    sock.on("end", () => resolveP(Number(/^HTTP\/1\.1 (\d+)/.exec(data)?.[1] ?? 0)));
    sock.on("error", reject);
  });
}

describe("write failures (ENOSPC, EMFILE) answer 503 and mark health, never crash", () => {
  it("a failing rollout write: 503 write_failed for that request, /healthz 503, recovery on the next good write, no torn line", async () => {
    let fail: NodeJS.ErrnoException | null = null;
    const append = (path: string, text: string) => {
      if (fail) {
        appendFileSync(path, text.slice(0, 7)); // the disk took part of the write, then filled up
        throw fail;
      }
      appendFileSync(path, text);
    };
    const { h, cfg, logs } = await start({ metaEvery: 0 }, scripted(), { append });
    expect((await post(h, "/v1/score", { items: [{ prompt: "p", response: "good 1" }] })).status).toBe(200);
    fail = Object.assign(new Error("no space left on device, write"), { code: "ENOSPC" });
    const r = await post(h, "/v1/score", { items: [{ prompt: "p", response: "good 2" }] });
    expect(r.status).toBe(503);
    expect(r.body.error).toMatchObject({ type: "write_failed" });
    expect(r.body.error.message).toMatch(/ENOSPC/);
    const hz = await fetch(h.url + "/healthz");
    expect(hz.status).toBe(503);
    expect(((await hz.json()) as any).problems[0]).toMatch(/ENOSPC/);
    expect(logs.some((l) => /UNHEALTHY: cannot write rollouts/.test(l))).toBe(true);
    fail = Object.assign(new Error("too many open files"), { code: "EMFILE" });
    expect((await post(h, "/v1/score", { items: [{ prompt: "p", response: "good 3" }] })).body.error.message).toMatch(/EMFILE/);
    fail = null;
    expect((await post(h, "/v1/score", { items: [{ prompt: "p", response: "good 4" }] })).status).toBe(200);
    expect((await fetch(h.url + "/healthz")).status).toBe(200);
    const lines = readFileSync(join(cfg.runDir, "rollouts", "step-000000.jsonl"), "utf8").split("\n").filter(Boolean);
    const parsed = lines.flatMap((l) => {
      try {
        return [JSON.parse(l)];
      } catch {
        return [];
      }
    });
    expect(parsed.map((x) => x.response)).toEqual(["good 1", "good 4"]); // the torn fragments are alone on their lines
    expect(h.service.stats).toMatchObject({ scored: 2, windowSize: 2 });
  });
});

describe("slow clients", () => {
  it("a body trickled slower than bodyTimeoutMs gets 408 and its socket is closed; a slow judge does not", async () => {
    const slowJudge = new ScriptedChatModel(async (req) => {
      await new Promise((r) => setTimeout(r, 700)); // the judge (not the client) takes longer than bodyTimeoutMs
      return /integer score/i.test(req.messages.at(-1)!.content) ? "3" : "Fine.";
    });
    const { h } = await start({ limits: { bodyBytes: 1 << 20, batchSize: 10, fieldChars: 1000, requestTimeoutMs: 10_000, bodyTimeoutMs: 400 } }, slowJudge);
    const { port } = new URL(h.url);
    // The client would need 1000 drips (50 s) to finish its body; the server must close the socket long before,
    // counted in drips rather than wall-clock time so a loaded machine (slower drips, slower timers) cannot flip it.
    const closedAfter = await new Promise<{ drips: number; data: string }>((resolveP) => {
      let drips = 0;
      const sock = connect(Number(port), "127.0.0.1", () => {
        sock.write(`POST /v1/score HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{`);
        const drip = setInterval(() => sock.writable && (drips++, sock.write(" ")), 50);
        sock.on("close", () => {
          clearInterval(drip);
          resolveP({ drips, data });
        });
      });
      let data = "";
      sock.on("data", (d) => (data += d));
      sock.on("error", () => undefined);
    });
    expect(closedAfter.data).toMatch(/^HTTP\/1\.1 408/);
    expect(closedAfter.drips).toBeLessThan(999); // closed with the body still incomplete
    const r = await post(h, "/v1/score", { items: [{ prompt: "p", response: "r" }] });
    expect(r.status).toBe(200);
  });
});

describe("bounded memory: the window stays on disk", () => {
  it("restarts on a window file over 512 MiB (no whole-file string) and a meta step reads it as a bounded stream", async () => {
    const { runDir, rubric } = tmpRun();
    const first = new RewardService({ protocol: "hardened", runDir, rubricFile: rubric, taskDescription: "t", judge: scripted(), mode: "per-item", metaEvery: 0, metaSamples: 2, prescreen: false, seed: 0, concurrency: 2 });
    await first.score([{ prompt: "Write about libraries.", response: "good" }]);
    await first.close();
    // Grow the open window past V8's 512 MiB string limit: 9,000 rollouts of ~64 KiB each (~590 MB).
    const file = join(runDir, "rollouts", "step-000000.jsonl");
    const line = readFileSync(file, "utf8").trim();
    const rec = JSON.parse(line);
    rec.response = "Libraries lend books. ".repeat(3000);
    const big = Buffer.from(JSON.stringify(rec) + "\n");
    const fd = openSync(file, "a");
    const n = Math.ceil((590 * 1024 * 1024) / big.length);
    const chunk = Buffer.concat(Array.from({ length: 64 }, () => big));
    for (let i = 0; i < n; i += 64) writeSync(fd, chunk);
    closeSync(fd);
    const lines = 1 + Math.ceil(n / 64) * 64;
    try {
      const sim = new SimulatedJudgeModel();
      let done: (v: unknown) => void = () => {};
      const finished = new Promise((r) => (done = r));
      const logs: string[] = [];
      const again = new RewardService({ protocol: "hardened", runDir, rubricFile: rubric, taskDescription: "t", judge: scripted(), metaJudge: sim, mode: "per-item", metaEvery: 0, metaSamples: 2, prescreen: false, seed: 0, concurrency: 2, metaWindowCap: 50, log: (l) => logs.push(l), onMeta: done });
      expect(again.stats.windowSize).toBe(lines);
      const r = await again.metaStepNow();
      expect(r).not.toBeNull();
      expect(logs.some((l) => new RegExp(`${lines} rollouts, meta step reads a uniform sample of 50`).test(l))).toBe(true);
      await finished;
      await again.close();
    } finally {
      rmSync(file, { force: true });
    }
  }, 120_000);
});

describe("one service per run directory", () => {
  it("a second service on the same run directory refuses, naming the holder's pid; a dead holder's lock is taken over", async () => {
    const { runDir, rubric } = tmpRun();
    const opts = { protocol: "hardened" as const, runDir, rubricFile: rubric, taskDescription: "t", judge: scripted(), mode: "per-item" as const, metaEvery: 0, metaSamples: 2, prescreen: false, seed: 0, concurrency: 2 };
    const first = new RewardService(opts);
    expect(() => new RewardService(opts)).toThrow(RunDirLockedError);
    expect(() => new RewardService(opts)).toThrow(new RegExp(`pid ${process.pid}`));
    await first.close();
    // A lock whose holder died (kill -9): its pid no longer exists.
    writeFileSync(join(runDir, "serve.lock"), JSON.stringify({ pid: 2 ** 22 + 12345 }));
    const logs: string[] = [];
    const second = new RewardService({ ...opts, log: (l) => logs.push(l) });
    expect(logs[0]).toMatch(/took over the lock of pid 4206649/);
    await second.close();
    expect(existsSync(join(runDir, "serve.lock"))).toBe(false);
  });

  it("CLI: a second `mpo serve` on a live run directory and a busy port each exit 2 with one line; nothing marked running", async () => {
    const { h, cfg } = await start();
    const cli = (args: string[]) =>
      promisify(execFile)(process.execPath, [join(REPO, "bin", "mpo.js"), "serve", ...args], { cwd: REPO, timeout: 60_000 }).then(
        () => ({ code: 0, stderr: "" }),
        (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
      );
    const base = ["--rubric", cfg.rubric!, "--llm", "http://127.0.0.1:9/v1", "--model", "m"];
    const { port } = new URL(h.url);
    const [locked, busy] = await Promise.all([
      cli(["--run", cfg.runDir, "--port", "0", ...base]),
      cli(["--run", join(cfg.runDir, "..", "other-run"), "--port", port, ...base]),
    ]);
    expect(locked.code).toBe(2);
    expect(locked.stderr.trim().split("\n")).toHaveLength(1);
    expect(locked.stderr).toMatch(new RegExp(`cannot start: run directory is in use by another mpo serve \\(pid ${process.pid}`));
    expect(busy.code).toBe(2);
    expect(busy.stderr.trim().split("\n")).toHaveLength(1);
    expect(busy.stderr).toMatch(new RegExp(`cannot start: 127.0.0.1:${port} is already in use`));
    expect(existsSync(join(cfg.runDir, "..", "other-run", "status.json"))).toBe(false);
    expect(JSON.parse(readFileSync(join(cfg.runDir, "status.json"), "utf8"))).toMatchObject({ state: "running", pid: process.pid });
  }, 90_000);
});

describe("judge error text is sanitized", () => {
  it("an error body echoing the Authorization header never reaches the caller, /healthz or the log", async () => {
    const secret = "sk-live-THISISSECRET1234567890";
    const fake = await startFakeOpenAI({ reply: () => ({ status: 500, body: { error: { message: `upstream failed for request headers {"Authorization": "Bearer ${secret}", "x-api-key": "abcd1234efgh"}` } } }) });
    fakes.push(fake);
    const judge = createChatModel({ baseURL: fake.url, model: "m", apiKey: secret, maxTries: 1 });
    const runDirs = tmpRun();
    const cfg = serveConfigSchema.parse({ protocol: "hardened", ...runDirs, port: 0, judge: { baseURL: fake.url, model: "m", apiKey: secret }, outage: { deadlineMs: 1500, backoffBaseMs: 10, backoffMaxMs: 50 } });
    const logs: string[] = [];
    const h = await startRewardService(cfg, { judge, log: (l) => logs.push(l) });
    handles.push(h);
    const r = await post(h, "/v1/score", { items: [{ prompt: "p", response: "r" }] });
    expect(r.status).toBe(503);
    expect(r.body.error.message).toMatch(/upstream failed/);
    const hz = await (await fetch(h.url + "/healthz")).text();
    for (const text of [JSON.stringify(r.body), hz, logs.join("\n")]) {
      expect(text).not.toContain("THISISSECRET");
      expect(text).not.toContain("abcd1234efgh");
    }
  });
});

describe("security by default", () => {
  it("without a token, POST /v1/meta-step is refused unless --allow-unauthenticated-admin", async () => {
    const sim = new SimulatedJudgeModel();
    const { h } = await start({ metaEvery: 0 }, sim, { metaJudge: sim });
    await post(h, "/v1/score", { items: [{ prompt: "Write about libraries.", response: "Libraries lend books." }] });
    const r = await post(h, "/v1/meta-step", {});
    expect(r.status).toBe(403);
    expect(r.body.error.message).toMatch(/--allow-unauthenticated-admin/);
    expect(h.service.rubric.version).toBe(0);
    const open = await start({ metaEvery: 0, allowUnauthenticatedAdmin: true }, sim, { metaJudge: sim });
    await post(open.h, "/v1/score", { items: [{ prompt: "Write about libraries.", response: "Libraries lend books." }] });
    expect((await post(open.h, "/v1/meta-step", {})).status).toBe(200);
    const withToken = await start({ metaEvery: 0, token: "a-long-token" }, sim, { metaJudge: sim });
    await post(withToken.h, "/v1/score", { items: [{ prompt: "Write about libraries.", response: "Libraries lend books." }] }, { authorization: "Bearer a-long-token" });
    expect((await post(withToken.h, "/v1/meta-step", {}, { authorization: "Bearer a-long-token" })).status).toBe(200);
  });

  it("a cross-site text/plain POST is refused (415) before it runs anything", async () => {
    const { h } = await start({ allowUnauthenticatedAdmin: true });
    for (const path of ["/v1/meta-step", "/v1/score", "/get_reward"]) {
      const r = await fetch(h.url + path, { method: "POST", headers: { "content-type": "text/plain", origin: "http://evil.example" }, body: '{"items": []}' });
      expect(r.status).toBe(415);
    }
    const form = await fetch(h.url + "/v1/score", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "a=1" });
    expect(form.status).toBe(415);
  });

  it("a foreign Host header (DNS rebinding) gets 421 on every route; bound names pass", async () => {
    const { h } = await start();
    const port = new URL(h.url).port;
    expect(await rawRequest(h, ["GET /v1/rubrics HTTP/1.1", "host: evil.example:" + port])).toBe(421);
    expect(await rawRequest(h, ["GET /healthz HTTP/1.1", "host: rebind.attacker.test"])).toBe(421);
    expect(await rawRequest(h, ["POST /v1/score HTTP/1.1", "host: evil.example", "content-type: application/json"], '{"items":[]}')).toBe(421);
    expect(await rawRequest(h, ["GET /v1/rubrics HTTP/1.1", `host: localhost:${port}`])).toBe(200);
    expect(await rawRequest(h, ["GET /v1/rubrics HTTP/1.1", `host: 127.0.0.1:${port}`])).toBe(200);
    const named = await start({ allowedHosts: ["mpo.internal"] });
    expect(await rawRequest(named.h, ["GET /v1/rubrics HTTP/1.1", "host: mpo.internal:5000"])).toBe(200);
  });

  it("a non-loopback host without a token refuses to start unless --insecure; the bound address is reported", async () => {
    await expect(start({ host: "0.0.0.0" })).rejects.toThrow(UnsafeConfigError);
    const { h } = await start({ host: "0.0.0.0", insecure: true });
    expect(h.boundAddress).toMatch(/^0\.0\.0\.0:\d+$/);
    expect((await fetch(h.url + "/healthz")).status).toBe(200);
    const { h: tok } = await start({ host: "0.0.0.0", token: "a-long-token" });
    expect(tok.boundAddress).toMatch(/^0\.0\.0\.0:/);
  });
});
