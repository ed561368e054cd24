/**
 * The small parts of the LLM layer on their own: usage accounting, the concurrency gate, Retry-After
 * parsing, completion validation, the scripted model, and the fake server's own routes.
 */
import { afterEach, describe, expect, it } from "vitest";
import { startFakeOpenAI, type FakeOpenAI } from "./helpers/fake-openai-server.ts";
import {
  LlmError,
  ScriptedChatModel,
  Semaphore,
  UsageMeter,
  backoffDelay,
  parseLlmEndpoint,
  parseRetryAfter,
  probeEndpoint,
  readCompletion,
  resolveApiKey,
} from "../src/llm/index.ts";

describe("UsageMeter", () => {
  it("records per stage, adds tables and totals without NaN", () => {
    const m = new UsageMeter();
    m.record("rm", { promptTokens: 10, completionTokens: 2, cached: false, seconds: 0.5, failed: false });
    m.record("rm", { promptTokens: 0, completionTokens: 0, cached: true, seconds: 0, failed: false });
    m.record("rm", { promptTokens: NaN, completionTokens: -3, cached: false, seconds: Infinity, failed: true });
    m.record("mrm-refine", { promptTokens: 7, completionTokens: 1, cached: false, seconds: 1, failed: false, estimated: true });
    const a = m.snapshot();
    expect(a.rm).toEqual({ calls: 3, failures: 1, promptTokens: 10, completionTokens: 2, cachedCalls: 1, seconds: 0.5 });
    expect(a["mrm-refine"]).toMatchObject({ calls: 1, estimatedCalls: 1 });
    const sum = UsageMeter.add(a, { rm: { calls: 1, failures: 0, promptTokens: 5, completionTokens: 5, cachedCalls: 0, seconds: 1 } });
    expect(sum.rm).toMatchObject({ calls: 4, promptTokens: 15, completionTokens: 7, seconds: 1.5 });
    expect(a.rm?.calls).toBe(3); // inputs untouched
    expect(UsageMeter.total(sum)).toMatchObject({ calls: 5, promptTokens: 22, completionTokens: 8, failures: 1, cachedCalls: 1, estimatedCalls: 1 });
    m.reset();
    expect(m.snapshot()).toEqual({});
  });
});

describe("Semaphore", () => {
  it("admits up to the limit, queues FIFO, and drops aborted waiters", async () => {
    const s = new Semaphore(2);
    const r1 = await s.acquire();
    const r2 = await s.acquire();
    const order: string[] = [];
    const ctl = new AbortController();
    const w3 = s.acquire().then((r) => (order.push("w3"), r));
    const w4 = s.acquire(ctl.signal);
    const w5 = s.acquire().then((r) => (order.push("w5"), r));
    expect(s.waiting).toBe(3);
    ctl.abort(new Error("stop"));
    await expect(w4).rejects.toThrow("stop");
    expect(s.waiting).toBe(2);
    r1();
    r1(); // double release is harmless
    const r3 = await w3;
    expect(s.inFlight).toBe(2);
    r2();
    const r5 = await w5;
    expect(order).toEqual(["w3", "w5"]);
    r3();
    r5();
    expect(s.inFlight).toBe(0);
    expect(s.peak).toBe(2);
  });

  it("rejects a nonsense limit", () => {
    expect(() => new Semaphore(0)).toThrow(RangeError);
  });
});

describe("retry timing helpers", () => {
  it("parses retry-after-ms, seconds and HTTP dates; ignores garbage", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter(new Headers({ "retry-after-ms": "250" }), now)).toBe(250);
    expect(parseRetryAfter(new Headers({ "retry-after": "1.5" }), now)).toBe(1500);
    expect(parseRetryAfter(new Headers({ "retry-after": new Date(now + 3000).toUTCString() }), now)).toBe(3000);
    expect(parseRetryAfter(new Headers({ "retry-after": new Date(now - 3000).toUTCString() }), now)).toBe(0);
    expect(parseRetryAfter(new Headers({ "retry-after": "soon" }), now)).toBeUndefined();
    expect(parseRetryAfter(new Headers({ "retry-after": "-4" }), now)).toBeUndefined();
    expect(parseRetryAfter(new Headers(), now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });

  it("caps exponential backoff and server waits", () => {
    const cfg = { backoffBaseMs: 500, backoffMaxMs: 20_000 };
    expect(backoffDelay(1, cfg, () => 1)).toBe(500);
    expect(backoffDelay(4, cfg, () => 1)).toBe(4000);
    expect(backoffDelay(40, cfg, () => 1)).toBe(20_000);
    expect(backoffDelay(3, cfg, () => 0)).toBe(0);
    expect(backoffDelay(1, cfg, () => 0, 3000)).toBe(3000);
    expect(backoffDelay(1, cfg, () => 0, 10 * 60_000)).toBe(60_000);
  });
});

describe("readCompletion", () => {
  it("accepts null content as empty text and reads usage", () => {
    expect(
      readCompletion({ choices: [{ message: { role: "assistant", content: null }, finish_reason: "length" }], usage: { prompt_tokens: 3, completion_tokens: 9 } }),
    ).toEqual({ text: "", finishReason: "length", promptTokens: 3, completionTokens: 9 });
  });

  it("explains what is wrong with an unusable reply", () => {
    expect(() => readCompletion("plain text")).toThrow(/not a JSON object/);
    expect(() => readCompletion({ choices: [] })).toThrow(/no choices/);
    expect(() => readCompletion({ error: { message: "model overloaded" } })).toThrow(/model overloaded/);
    expect(() => readCompletion({ choices: [{ message: { content: 42 } }] })).toThrow(/number, not text/);
  });
});

describe("endpoint config", () => {
  it("fills defaults and resolves the API key lazily", () => {
    const cfg = parseLlmEndpoint({ baseURL: "http://127.0.0.1:8000/v1", model: "m" });
    expect(cfg).toMatchObject({ server: "generic", maxConcurrency: 64, timeoutMs: 120_000, maxTries: 5, backoffBaseMs: 500, backoffMaxMs: 20_000, constrained: true });
    const saved = process.env.OPENAI_API_KEY;
    try {
      delete process.env.OPENAI_API_KEY;
      expect(resolveApiKey(cfg)).toBe("EMPTY");
      process.env.OPENAI_API_KEY = "sk-test";
      expect(resolveApiKey(cfg)).toBe("sk-test");
      expect(resolveApiKey({ apiKey: "own" })).toBe("own");
    } finally {
      if (saved === undefined) delete process.env.OPENAI_API_KEY;
      else process.env.OPENAI_API_KEY = saved;
    }
  });

  it("names the offending field and source", () => {
    expect(() => parseLlmEndpoint({ baseURL: "http://x/v1", model: "m", server: "tgi" }, "run.yaml")).toThrow(/run\.yaml: field 'server'/);
    expect(() => parseLlmEndpoint({ baseURL: "http://x/v1", model: "m", temprature: 0 }, "run.yaml")).toThrow(/run\.yaml/);
    expect(() => parseLlmEndpoint({ baseURL: "ftp://x/v1", model: "m" })).toThrow(/baseURL/);
  });
});

describe("ScriptedChatModel", () => {
  it("answers from the script, records requests and usage", async () => {
    const m = new ScriptedChatModel((req, i) => `${i}:${req.messages[0].content.toUpperCase()}`);
    const r = await m.chat({ messages: [{ role: "user", content: "abcdefgh" }], stage: "rm" });
    expect(r).toMatchObject({ text: "0:ABCDEFGH", promptTokens: 2, usageEstimated: true });
    expect(m.requests).toHaveLength(1);
    expect(m.meter.snapshot().rm).toMatchObject({ calls: 1, failures: 0 });
  });

  it("sequence() fails loudly when the test scripted too few replies; script errors count as failures", async () => {
    const m = ScriptedChatModel.sequence(["one"]);
    expect((await m.chat({ messages: [] })).text).toBe("one");
    await expect(m.chat({ messages: [] })).rejects.toThrow(/no reply #2/);
    expect(m.meter.snapshot().other).toMatchObject({ calls: 2, failures: 1 });
  });

  it("honours an already-aborted signal", async () => {
    const m = new ScriptedChatModel(() => "x");
    const ctl = new AbortController();
    ctl.abort();
    await expect(m.chat({ messages: [], signal: ctl.signal })).rejects.toBeInstanceOf(LlmError);
  });
});

describe("fake server routes", () => {
  let s: FakeOpenAI | undefined;
  afterEach(async () => s?.close());

  it("serves /v1/models, 404s unknown paths, 400s a non-JSON body", async () => {
    s = await startFakeOpenAI();
    const models = (await (await fetch(`${s.url}/models`)).json()) as any;
    expect(models.data[0].id).toBe("fake-model");
    const nf = await fetch(`${s.url}/embeddings`, { method: "POST", body: "{}" });
    expect(nf.status).toBe(404);
    expect(((await nf.json()) as any).error.message).toMatch(/no route/);
    const bad = await fetch(`${s.url}/chat/completions`, { method: "POST", body: "{oops" });
    expect(bad.status).toBe(400);
    expect(s.requests).toHaveLength(0);
  });

  it("returns a well-formed chat.completion", async () => {
    s = await startFakeOpenAI({ reply: ({ messages }) => `echo ${messages[0].content}` });
    const res = await fetch(`${s.url}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
    });
    const j = (await res.json()) as any;
    expect(j).toMatchObject({ object: "chat.completion", model: "m", choices: [{ index: 0, message: { role: "assistant", content: "echo hi" }, finish_reason: "stop" }] });
    expect(j.usage.total_tokens).toBe(j.usage.prompt_tokens + j.usage.completion_tokens);
  });

  it("close() ends a pending slow reply instead of hanging", async () => {
    let arrived!: () => void;
    const seen = new Promise<void>((r) => (arrived = r));
    s = await startFakeOpenAI({
      reply: () => {
        arrived();
        return { delayMs: 60_000 };
      },
    });
    const pending = fetch(`${s.url}/chat/completions`, { method: "POST", body: JSON.stringify({ messages: [] }) }).then(
      () => "answered",
      () => "socket closed",
    );
    await seen;
    await s.close();
    expect(await pending).toBe("socket closed");
    s = undefined;
  });
});

describe("probeEndpoint", () => {
  let s: FakeOpenAI | undefined;
  afterEach(async () => s?.close());

  it("confirms a served model, names the served ones when misnamed, reports a dead server", async () => {
    s = await startFakeOpenAI();
    expect(await probeEndpoint({ baseURL: s.url, model: "fake-model" })).toMatchObject({ ok: true, models: ["fake-model"] });
    const wrong = await probeEndpoint({ baseURL: s.url, model: "Qwen-72B" });
    expect(wrong.ok).toBe(false);
    expect(wrong.message).toContain("does not serve model 'Qwen-72B'; it serves: fake-model");
    const url = s.url;
    await s.close();
    s = undefined;
    const dead = await probeEndpoint({ baseURL: url, model: "m" });
    expect(dead).toMatchObject({ ok: false, models: [] });
    expect(dead.message).toBe(`server ${url} did not list its models: ECONNREFUSED`);
  });
});
