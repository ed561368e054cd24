/**
 * The OpenAI-compatible client against a real HTTP fake server on loopback: success and usage, retries
 * and backoff (sleep injected, so waits are asserted exactly, not timed), typed failures, concurrency
 * gate, reply cache and cancellation.
 */
import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startFakeOpenAI, type FakeOpenAI, type FakeReplyFn } from "./helpers/fake-openai-server.ts";
import { createChatModel, LlmError, type OpenAIChatModel, UsageMeter, type ChatModelOptions, type LlmEndpointInput } from "../src/llm/index.ts";

const servers: FakeOpenAI[] = [];
const tmpDirs: string[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  for (const d of tmpDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function fake(reply?: FakeReplyFn): Promise<FakeOpenAI> {
  const s = await startFakeOpenAI({ reply });
  servers.push(s);
  return s;
}

/** Sleep that returns at once and records the requested waits. */
function recordingSleep() {
  const waits: number[] = [];
  const sleep: ChatModelOptions["sleep"] = async (ms, signal) => {
    if (signal?.aborted) throw signal.reason;
    waits.push(ms);
  };
  return { waits, sleep };
}

function model(server: FakeOpenAI, cfg: Partial<LlmEndpointInput> = {}, opts: ChatModelOptions = {}) {
  return createChatModel({ baseURL: server.url, model: "judge-7b", ...cfg }, opts) as OpenAIChatModel; // an http URL: never the GGUF model
}

const user = (content: string) => [{ role: "user" as const, content }];

async function failure(p: Promise<unknown>): Promise<LlmError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(LlmError);
    return err as LlmError;
  }
  throw new Error("expected the call to fail");
}

describe("chat success and usage", () => {
  it("returns the assistant text and accounts tokens per stage", async () => {
    const s = await fake(({ index }) => ({ text: `reply ${index}`, usage: { prompt_tokens: 10 + index, completion_tokens: 3 } }));
    const meter = new UsageMeter();
    const m = model(s, { server: "vllm" }, { meter });
    const a = await m.chat({ messages: user("score this"), stage: "rm", temperature: 0, maxTokens: 16 });
    const b = await m.chat({ messages: user("again"), stage: "rm" });
    const c = await m.chat({ messages: user("analyze"), stage: "mrm-analyze" });
    expect([a.text, b.text, c.text]).toEqual(["reply 0", "reply 1", "reply 2"]);
    expect(a).toMatchObject({ promptTokens: 10, completionTokens: 3, cached: false, finishReason: "stop", tries: 1 });
    expect(s.requests[0]).toMatchObject({ model: "judge-7b", temperature: 0, max_tokens: 16, messages: [{ role: "user", content: "score this" }] });
    const snap = meter.snapshot();
    expect(snap.rm).toMatchObject({ calls: 2, failures: 0, promptTokens: 21, completionTokens: 6, cachedCalls: 0 });
    expect(snap["mrm-analyze"]).toMatchObject({ calls: 1, promptTokens: 12, completionTokens: 3 });
    expect(meter.take().rm?.calls).toBe(2);
    expect(meter.snapshot()).toEqual({});
  });

  it("estimates tokens (and flags it) when the server sends no usage", async () => {
    const s = await fake(() => ({ text: "12345678", usage: null }));
    const m = model(s);
    const r = await m.chat({ messages: user("abcd") });
    expect(r).toMatchObject({ text: "12345678", promptTokens: 1, completionTokens: 2, usageEstimated: true });
    expect(m.meter.snapshot().other).toMatchObject({ calls: 1, estimatedCalls: 1 });
  });

  it("passes the server's separate reasoning text and finish reason through", async () => {
    const s = await fake(() => ({ text: "4", reasoning: "2+2 is 4", finishReason: "length" }));
    const r = await model(s).chat({ messages: user("2+2?") });
    expect(r).toMatchObject({ text: "4", reasoning: "2+2 is 4", finishReason: "length" });
  });

  it("sends default sampling params and lets the request override them", async () => {
    const s = await fake();
    const m = model(s, { defaultParams: { temperature: 0.7, maxTokens: 64, topP: 0.9, seed: 3 } });
    await m.chat({ messages: user("x"), temperature: 0.1, stop: ["\n"] });
    expect(s.requests[0]).toMatchObject({ temperature: 0.1, max_tokens: 64, top_p: 0.9, seed: 3, stop: ["\n"] });
  });

  it("uses max_completion_tokens for OpenAI itself", async () => {
    const s = await fake();
    await model(s, { server: "openai" }).chat({ messages: user("x"), maxTokens: 5 });
    expect(s.requests[0].max_completion_tokens).toBe(5);
    expect(s.requests[0].max_tokens).toBeUndefined();
  });

  it("rejects an invalid endpoint config naming the field", () => {
    expect(() => createChatModel({ baseURL: "not a url", model: "m" })).toThrow(/baseURL/);
    expect(() => createChatModel({ baseURL: "http://x/v1", model: "m", maxTries: 0 } as LlmEndpointInput)).toThrow(/maxTries/);
  });
});

describe("retries and failures", () => {
  it("honours Retry-After (seconds) on 429, then succeeds", async () => {
    const s = await fake(({ index }) => (index === 0 ? { status: 429, retryAfter: 2 } : "fine"));
    const { waits, sleep } = recordingSleep();
    const m = model(s, {}, { sleep, random: () => 0 });
    const r = await m.chat({ messages: user("x"), stage: "rm" });
    expect(r.text).toBe("fine");
    expect(r.tries).toBe(2);
    expect(waits).toEqual([2000]);
    expect(s.requests).toHaveLength(2);
    expect(m.meter.snapshot().rm).toMatchObject({ calls: 1, failures: 0 });
  });

  it("honours retry-after-ms and an HTTP-date Retry-After", async () => {
    const now = Date.parse("2026-11-27T00:00:00Z");
    const date = new Date(now + 7000).toUTCString();
    const s = await fake(({ index }) =>
      index === 0 ? { status: 503, retryAfterMs: 1234 } : index === 1 ? { status: 429, retryAfter: date } : "ok",
    );
    const { waits, sleep } = recordingSleep();
    const r = await model(s, {}, { sleep, random: () => 0, now: () => now }).chat({ messages: user("x") });
    expect(r.text).toBe("ok");
    expect(waits).toEqual([1234, 7000]);
  });

  it("backs off exponentially with jitter below the cap, then gives up after maxTries on 5xx", async () => {
    const s = await fake(() => ({ status: 500 }));
    const { waits, sleep } = recordingSleep();
    const m = model(s, { maxTries: 4, backoffBaseMs: 100, backoffMaxMs: 250 }, { sleep, random: () => 0.999 });
    const err = await failure(m.chat({ messages: user("x"), stage: "rm" }));
    expect(err).toMatchObject({ kind: "http", status: 500, tries: 4, endpoint: s.url });
    expect(err.message).toContain("judge server");
    expect(err.message).toContain("fake server error 500");
    expect(s.requests).toHaveLength(4);
    // ceilings 100, 200, min(400, 250)
    expect(waits.map(Math.round)).toEqual([100, 200, 250]);
    expect(m.meter.snapshot().rm).toMatchObject({ calls: 1, failures: 1 });
  });

  it("fails at once on a 400 with the server's own message (OpenAI and old-vLLM error shapes)", async () => {
    const s = await fake(({ index }) =>
      index === 0
        ? { status: 400, body: { error: { message: "maximum context length is 4096 tokens" } } }
        : { status: 400, body: { object: "error", message: "structured_outputs: invalid regex", code: 400 } },
    );
    const { waits, sleep } = recordingSleep();
    const m = model(s, {}, { sleep });
    const e1 = await failure(m.chat({ messages: user("x") }));
    expect(e1).toMatchObject({ kind: "http", status: 400, tries: 1 });
    expect(e1.message).toContain("maximum context length is 4096 tokens");
    const e2 = await failure(m.chat({ messages: user("x") }));
    expect(e2.message).toContain("structured_outputs: invalid regex");
    expect(s.requests).toHaveLength(2);
    expect(waits).toEqual([]);
  });

  it("times out a slow server per try and reports kind timeout", async () => {
    const s = await fake(() => ({ delayMs: 60_000 }));
    const { sleep } = recordingSleep();
    const m = model(s, { timeoutMs: 300, maxTries: 2 }, { sleep });
    const err = await failure(m.chat({ messages: user("x") }));
    expect(err).toMatchObject({ kind: "timeout", tries: 2 });
    expect(err.message).toMatch(/did not answer in time/);
    // (how many of the tries reached the server before their deadline depends on machine load)
  });

  it("reports a connection reset as a connection error after retrying", async () => {
    const s = await fake(() => ({ reset: true }));
    const { waits, sleep } = recordingSleep();
    const err = await failure(model(s, { maxTries: 3 }, { sleep }).chat({ messages: user("x") }));
    expect(err).toMatchObject({ kind: "connection", tries: 3 });
    expect(s.requests).toHaveLength(3);
    expect(waits).toHaveLength(2);
  });

  it("reports a closed port as unreachable with ECONNREFUSED", async () => {
    const s = await startFakeOpenAI();
    const url = s.url;
    await s.close();
    const { sleep } = recordingSleep();
    const m = createChatModel({ baseURL: url, model: "m", maxTries: 2 }, { sleep });
    const err = await failure(m.chat({ messages: user("x"), stage: "rm" }));
    expect(err).toMatchObject({ kind: "connection", tries: 2, endpoint: url });
    expect(err.message).toBe(`judge server ${url} (model m) unreachable after 2 tries: ECONNREFUSED`);
  });

  it("does not retry a port that fetch refuses to use", async () => {
    const { waits, sleep } = recordingSleep();
    const m = createChatModel({ baseURL: "http://127.0.0.1:6000/v1", model: "m" }, { sleep });
    const err = await failure(m.chat({ messages: user("x") }));
    expect(err).toMatchObject({ kind: "connection", tries: 1 });
    expect(err.message).toMatch(/blocked-port list/);
    expect(waits).toEqual([]);
  });

  it("retries a malformed 200 body and succeeds", async () => {
    const s = await fake(({ index }) => (index === 0 ? { malformed: true } : index === 1 ? { raw: '{"object":"chat.completion","choices":[]}' } : "good"));
    const { sleep } = recordingSleep();
    const r = await model(s, {}, { sleep }).chat({ messages: user("x") });
    expect(r).toMatchObject({ text: "good", tries: 3 });
  });

  it("gives up with bad-response when every reply is unusable", async () => {
    const s = await fake(() => ({ raw: '{"choices":[{"index":0}]}' }));
    const { sleep } = recordingSleep();
    const err = await failure(model(s, { maxTries: 2 }, { sleep }).chat({ messages: user("x") }));
    expect(err).toMatchObject({ kind: "bad-response", tries: 2 });
    expect(err.message).toContain("no message");
  });

  it("a per-request budget overrides the endpoint's", async () => {
    const s = await fake(({ index }) => (index <= 1 ? { status: 503, retryAfterMs: 400 } : "late"));
    const { sleep } = recordingSleep();
    let t = 0;
    const m = model(s, { budgetMs: 60_000 }, { sleep, now: () => t });
    const err = await failure(m.chat({ messages: user("x"), budgetMs: 300 }));
    expect(err).toMatchObject({ kind: "gave-up", status: 503, tries: 1 });
    expect(err.message).toMatch(/300 ms budget/);
    // with room left, the same server answers on the second try
    expect(await m.chat({ messages: user("x"), budgetMs: 1000 })).toMatchObject({ text: "late", tries: 2 });
  });

  it("the budget also caps a single try's timeout (no waiting out a 60 s timeoutMs)", async () => {
    const s = await fake(() => ({ delayMs: 60_000 }));
    const m = model(s, { timeoutMs: 60_000, maxTries: 3 }, { random: () => 0.5 });
    const err = await failure(m.chat({ messages: user("x"), budgetMs: 300 }));
    // the try is cut at the budget, so the call stops there and says the budget did it
    expect(err).toMatchObject({ kind: "gave-up", tries: 1, budgetCut: true });
    expect(err.message).toMatch(/300 ms budget ran out during the last one; no earlier error from the server/);
  });

  it("a try cut by the budget reports the server's own last error, not the cut", async () => {
    // try 1: HTTP 500 at once; try 2 hangs past what is left of the budget
    const s = await fake(({ index }) => (index === 0 ? { status: 500, body: { error: { message: "overloaded" } } } : { delayMs: 60_000 }));
    const m = model(s, { timeoutMs: 60_000, maxTries: 5, backoffBaseMs: 1, backoffMaxMs: 1 });
    const err = await failure(m.chat({ messages: user("x"), budgetMs: 400 }));
    expect(err).toMatchObject({ kind: "gave-up", tries: 2, status: 500, budgetCut: true });
    expect(err.message).toMatch(/400 ms budget ran out during the last one; last error from the server: HTTP 500: overloaded/);
  });

  it("retries 408/409, fails at once on 401/404/422", async () => {
    const s = await fake(({ index }) => (index === 0 ? { status: 408 } : index === 1 ? { status: 409 } : "ok"));
    const { sleep } = recordingSleep();
    expect((await model(s, {}, { sleep }).chat({ messages: user("x") })).tries).toBe(3);
    for (const status of [401, 404, 422]) {
      const t = await fake(() => ({ status }));
      const err = await failure(model(t, {}, { sleep }).chat({ messages: user("x") }));
      expect(err).toMatchObject({ kind: "http", status, tries: 1 });
      expect(t.requests).toHaveLength(1);
    }
  });

  it("reports a proxy's non-JSON error page readably", async () => {
    const s = await fake(() => ({ status: 502, body: "<html><body>502 Bad Gateway</body></html>" }));
    const { sleep } = recordingSleep();
    const err = await failure(model(s, { maxTries: 2 }, { sleep }).chat({ messages: user("x"), stage: "mrm-merge" }));
    expect(err).toMatchObject({ kind: "http", status: 502, tries: 2 });
    expect(err.message).toContain("senior judge server");
    expect(err.message).toContain("502 Bad Gateway");
  });

  it("stops with gave-up when the next wait would overrun the call budget", async () => {
    let t = 0;
    const s = await fake(() => ({ status: 429, retryAfter: 30 }));
    const { waits, sleep } = recordingSleep();
    const err = await failure(model(s, { budgetMs: 10_000 }, { sleep, now: () => t }).chat({ messages: user("x") }));
    expect(err).toMatchObject({ kind: "gave-up", status: 429, tries: 1 });
    expect(waits).toEqual([]);
    expect(s.requests).toHaveLength(1);
  });
});

describe("concurrency, cancellation, cache", () => {
  it("never has more than maxConcurrency requests in flight at the server", async () => {
    const held: (() => void)[] = [];
    let m: ReturnType<typeof model> | undefined;
    const s = await fake(
      ({ index }) =>
        new Promise((resolve) => {
          held.push(() => resolve(`r${index}`));
          // Release once every request the client let through has reached us.
          if (held.length === m!.gate.inFlight) held.splice(0).forEach((f) => f());
        }),
    );
    m = model(s, { maxConcurrency: 3 });
    const out = await Promise.all(Array.from({ length: 10 }, (_, i) => m!.chat({ messages: user(`q${i}`) })));
    expect(out.map((r) => r.text).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `r${i}`).sort());
    expect(s.requests).toHaveLength(10);
    expect(s.maxInFlight).toBe(3);
  });

  it("aborts an in-flight call via the request signal", async () => {
    let arrived!: () => void;
    const seen = new Promise<void>((r) => (arrived = r));
    const s = await fake(() => {
      arrived();
      return { delayMs: 60_000 };
    });
    const ctl = new AbortController();
    const p = model(s).chat({ messages: user("x"), signal: ctl.signal });
    await seen;
    ctl.abort();
    const err = await failure(p);
    expect(err).toMatchObject({ kind: "aborted" });
    expect(s.requests).toHaveLength(1);
  });

  it("aborts a call still waiting for a free slot without sending it", async () => {
    let release!: () => void;
    let arrived!: () => void;
    const seen = new Promise<void>((r) => (arrived = r));
    const s = await fake(
      () =>
        new Promise((resolve) => {
          release = () => resolve("first");
          arrived();
        }),
    );
    const m = model(s, { maxConcurrency: 1 });
    const first = m.chat({ messages: user("a") });
    await seen;
    const ctl = new AbortController();
    const second = m.chat({ messages: user("b"), signal: ctl.signal });
    expect(m.gate.waiting).toBe(1);
    ctl.abort();
    expect(await failure(second)).toMatchObject({ kind: "aborted" });
    release();
    expect((await first).text).toBe("first");
    expect(s.requests).toHaveLength(1);
    expect(m.gate.inFlight).toBe(0);
  });

  it("aborts during the backoff wait", async () => {
    const s = await fake(() => ({ status: 503 }));
    const ctl = new AbortController();
    const err = await failure(
      model(s, {}, { onRetry: () => ctl.abort(), random: () => 0.5 }).chat({ messages: user("x"), signal: ctl.signal }),
    );
    expect(err).toMatchObject({ kind: "aborted", tries: 1 });
    expect(s.requests).toHaveLength(1);
  });

  it("still answers when the cache directory cannot be written", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mpo-cache-"));
    tmpDirs.push(dir);
    const blocker = join(dir, "not-a-dir");
    writeFileSync(blocker, "x");
    const s = await fake(() => "fresh");
    const warn = console.warn;
    const warnings: string[] = [];
    console.warn = (msg: string) => warnings.push(msg);
    try {
      const m = model(s, { cacheDir: blocker });
      expect((await m.chat({ messages: user("q"), temperature: 0 })).text).toBe("fresh");
      expect((await m.chat({ messages: user("q"), temperature: 0 })).cached).toBe(false);
    } finally {
      console.warn = warn;
    }
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/not writable/);
  });

  it("serves a repeated deterministic request from the disk cache and survives a corrupt entry", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mpo-cache-"));
    tmpDirs.push(dir);
    const s = await fake(({ index }) => ({ text: `answer ${index}`, usage: { prompt_tokens: 5, completion_tokens: 2 } }));
    const m = model(s, { cacheDir: dir });
    const req = { messages: user("same question"), temperature: 0, stage: "rm" as const };
    const a = await m.chat(req);
    const b = await m.chat(req);
    expect(a).toMatchObject({ text: "answer 0", cached: false });
    expect(b).toMatchObject({ text: "answer 0", cached: true });
    expect(s.requests).toHaveLength(1);
    expect(m.meter.snapshot().rm).toMatchObject({ calls: 2, cachedCalls: 1, promptTokens: 5 });

    // corrupt the single entry: it is ignored, re-fetched and rewritten
    const shard = readdirSync(dir).filter((d) => /^[0-9a-f]{2}$/.test(d));
    expect(shard).toHaveLength(1);
    const file = join(dir, shard[0], readdirSync(join(dir, shard[0]))[0]);
    writeFileSync(file, "{ not json");
    const c = await m.chat(req);
    expect(c).toMatchObject({ text: "answer 1", cached: false });
    expect(s.requests).toHaveLength(2);
    expect(JSON.parse(readFileSync(file, "utf8")).reply.text).toBe("answer 1");
    expect((await m.chat(req)).cached).toBe(true);

    // a different constraint or a sampled request is a different key / not cached
    await m.chat({ ...req, constraint: { kind: "regex", pattern: "\\d+" } });
    await m.chat({ ...req, temperature: 0.8 });
    await m.chat({ ...req, temperature: 0.8 });
    expect(s.requests).toHaveLength(5);
  });
});
