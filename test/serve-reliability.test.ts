/**
 * The reward service under a misbehaving judge: never a made-up reward (unreadable replies, over-long
 * replies, a misconfigured judge) and outage tolerance measured with OpenRLHF's own request loop
 * (test/helpers/openrlhf-post.ts, ported from openrlhf/utils/agent.py @3c3be62). Time is scaled down
 * through the service's deadline/backoff config and the port's time constants, not by sleeping in the test.
 */
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createChatModel } from "../src/llm/openai-client.ts";
import { ScriptedChatModel } from "../src/llm/scripted.ts";
import type { ChatModel, ChatRequest } from "../src/llm/types.ts";
import { serveConfigSchema } from "../src/serve/config.ts";
import { startRewardService } from "../src/serve/index.ts";
import type { ServerHandle } from "../src/serve/server.ts";
import { startFakeOpenAI, type FakeOpenAI } from "./helpers/fake-openai-server.ts";
import { openrlhfPostRequest } from "./helpers/openrlhf-post.ts";

const RUBRIC = "<rubric><item>Discourse: how well the writing flows. Score from 0 to 5.</item></rubric>";

const handles: ServerHandle[] = [];
const fakes: FakeOpenAI[] = [];
afterEach(async () => {
  while (handles.length) await handles.pop()!.close();
  while (fakes.length) await fakes.pop()!.close();
});

async function start(over: Record<string, unknown>, judge: ChatModel, extra: { append?: (p: string, t: string) => void } = {}) {
  const runDir = mkdtempSync(join(tmpdir(), "mpo-serve-rel-"));
  const rubric = join(runDir, "rubric.txt");
  writeFileSync(rubric, RUBRIC);
  const cfg = serveConfigSchema.parse({ rewardScale: "normalized", runDir: join(runDir, "run"), rubric, port: 0, judge: { baseURL: "http://127.0.0.1:9/v1", model: "m" }, ...over });
  const logs: string[] = [];
  const h = await startRewardService(cfg, { judge, log: (l) => logs.push(l), ...extra });
  handles.push(h);
  return { h, cfg, logs };
}

async function post(h: ServerHandle, path: string, body: unknown) {
  const r = await fetch(h.url + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as any };
}

const isScoreTurn = (req: ChatRequest) => /integer score/i.test(req.messages[req.messages.length - 1].content);
const chatml = (p: string, r: string) => `<|im_start|>user\n${p}<|im_end|>\n<|im_start|>assistant\n${r}<|im_end|>`;

describe("never a made-up reward: unreadable judge replies", () => {
  it("re-asks an unreadable reply and answers with the re-asked score, flagged", async () => {
    let scoreTurns = 0;
    const judge = new ScriptedChatModel((req) => (isScoreTurn(req) ? (++scoreTurns === 1 ? "I think it is decent overall." : "4") : "Rationale."));
    const { h } = await start({}, judge);
    const r = await post(h, "/v1/score", { items: [{ prompt: "p", response: "r" }] });
    expect(r.status).toBe(200);
    expect(r.body.results[0]).toMatchObject({ score: 4, unreadable: false });
    expect(r.body.results[0].flags).toContain("re-asked-1");
    expect(judge.requests.filter(isScoreTurn)[1].temperature).toBe(0.7); // the re-ask is not a cached repeat
  });

  it.each(["", "I cannot evaluate this response.", "The essay is fine.", "NaN"])("reply %j: 503 judge_unreadable by default, never rewards [0]", async (bad) => {
    const judge = new ScriptedChatModel((req) => (isScoreTurn(req) ? bad : "Rationale."));
    const { h } = await start({}, judge);
    const r = await post(h, "/get_reward", { query: [chatml("Write.", "text")], prompts: [], labels: [null] });
    expect(r.status).toBe(503);
    expect(r.body.error.type).toBe("judge_unreadable");
    expect(r.body.rewards).toBeUndefined();
    expect(judge.requests.filter(isScoreTurn)).toHaveLength(3); // first ask + 2 re-asks
  });

  it("policy sentinel: the documented sentinel, flagged, and the sample stays out of the meta window", async () => {
    const judge = new ScriptedChatModel((req) => (isScoreTurn(req) ? (/good/.test(req.messages[1].content) ? "4" : "no idea") : "Rationale."));
    const { h, cfg } = await start({ unreadable: { onUnreadable: "sentinel", sentinel: -1, minSamples: 100 } }, judge);
    const r = await post(h, "/get_reward", { query: [chatml("Write.", "a good one"), chatml("Write.", "other")], prompts: [], labels: [null, null] });
    expect(r.status).toBe(200);
    expect(r.body.rewards).toEqual([0.8, -1]);
    expect(r.body.extra_logs.judge_unreadable).toEqual([0, 1]);
    const native = await post(h, "/v1/score", { items: [{ prompt: "p", response: "other" }] });
    expect(native.body.results[0]).toMatchObject({ score: null, normalized: null, unreadable: true });
    const window = readFileSync(join(cfg.runDir, "rollouts", "step-000000.jsonl"), "utf8").trim().split("\n");
    expect(window).toHaveLength(1);
    expect(readFileSync(join(cfg.runDir, "rollouts", "unreadable.jsonl"), "utf8").trim().split("\n")).toHaveLength(2);
  });

  it("a misconfigured judge fails loudly: 503 with the reason, /healthz unhealthy, a log line naming the judge", async () => {
    const judge = new ScriptedChatModel((req) => (isScoreTurn(req) ? "Sure! Here is my evaluation." : "Rationale."), { id: "vllm:http://judge:8000/v1#tiny-model" });
    const { h, logs } = await start({ unreadable: { reasks: 0, onUnreadable: "sentinel", window: 10, minSamples: 4, maxShare: 0.5 } }, judge);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await post(h, "/v1/score", { items: [{ prompt: "p", response: `r${i}` }] })).status);
    expect(statuses).toEqual([200, 200, 200, 503]);
    const r = await post(h, "/v1/score", { items: [{ prompt: "p", response: "again" }] });
    expect(r.body.error.type).toBe("judge_misconfigured");
    expect(r.body.error.message).toMatch(/tiny-model.*unreadable/);
    const hz = await fetch(h.url + "/healthz");
    expect(hz.status).toBe(503);
    expect(((await hz.json()) as any).judge.state).toBe("misconfigured");
    expect(logs.some((l) => /UNHEALTHY: judge vllm:http:\/\/judge:8000\/v1#tiny-model/.test(l))).toBe(true);
  });

  it("a 5 MB reply ending 'Score: 5' is cut, flagged over-long and not a reward (in-process judge)", async () => {
    const huge = "blah ".repeat(1_000_000) + "Score: 5";
    const judge = new ScriptedChatModel((req) => (isScoreTurn(req) ? huge : "Rationale."));
    const { h, cfg } = await start({ unreadable: { reasks: 0, onUnreadable: "sentinel", minSamples: 100 } }, judge);
    const r = await post(h, "/v1/score", { items: [{ prompt: "p", response: "r" }] });
    expect(r.status).toBe(200);
    expect(r.body.results[0]).toMatchObject({ score: null, unreadable: true });
    expect(r.body.results[0].flags).toContain("over-long-reply");
    expect(readFileSync(join(cfg.runDir, "rollouts", "unreadable.jsonl")).length).toBeLessThan(200_000);
  });

  it("over HTTP the client stops reading at maxReplyBytes and sends max_tokens", async () => {
    const fake = await startFakeOpenAI({ reply: (req) => (/integer score/i.test(req.messages.at(-1)!.content) ? "x ".repeat(2_500_000) + "Score: 5" : "Rationale.") });
    fakes.push(fake);
    const judge = createChatModel({ baseURL: fake.url, model: "m", maxReplyBytes: 64 * 1024, maxTries: 1 });
    const { h } = await start({ unreadable: { reasks: 0, onUnreadable: "sentinel", minSamples: 100 } }, judge);
    const r = await post(h, "/v1/score", { items: [{ prompt: "p", response: "r" }] });
    expect(r.status).toBe(200);
    expect(r.body.results[0]).toMatchObject({ score: null, unreadable: true });
    expect(r.body.results[0].flags).toContain("over-long-reply");
    expect(fake.requests.every((b) => typeof b.max_tokens === "number")).toBe(true);
  });
});

describe("outage tolerance with OpenRLHF's request loop (time scaled down)", () => {
  // Time scaled by S (OpenRLHF's 180 s timeout and 1 s sleep, our deadline and backoff, the outage). The deadline
  // is 150 s, not the default 170 s: scaling also shrinks the 10 s margin to OpenRLHF's timeout, and on a loaded
  // 2-core CI machine one judge round trip can take longer than 10 s × S.
  const policy = (S: number) => ({ deadlineMs: 150_000 * S, backoffBaseMs: 1000 * S, backoffMaxMs: 15_000 * S, queueMax: 1000 });

  async function outageRun(S: number, outageMs: number, samples: number, outage = policy(S)) {
    let down = true;
    const fake = await startFakeOpenAI({
      reply: (req) => {
        if (down) return { status: 503, body: { error: { message: "model is loading" } } };
        if (/integer score/i.test(req.messages.at(-1)!.content)) return /good/.test(req.messages[1].content) ? "4" : "1";
        return "Rationale.";
      },
    });
    fakes.push(fake);
    const judge = createChatModel({ baseURL: fake.url, model: "m", maxTries: 2, backoffBaseMs: 1, backoffMaxMs: 5, timeoutMs: 1000 });
    const { h, logs } = await start({ outage }, judge);
    const tries: string[] = [];
    // The outage is the scenario (the judge server comes back after outageMs), not a synchronization.
    const back = setTimeout(() => (down = false), outageMs);
    const queries = Array.from({ length: samples }, (_, i) => chatml("Write an essay.", i % 2 ? "a good essay" : "meh"));
    const t0 = performance.now();
    const results = await Promise.allSettled(queries.map((q) => openrlhfPostRequest(`${h.url}/get_reward`, { query: [q], prompts: [], labels: [null] }, { scale: S, log: (l) => tries.push(`${(performance.now() - t0).toFixed(0)}ms ${l}`) })));
    clearTimeout(back);
    return { results, tries, logs, fake, h };
  }

  it("a 60 s judge outage: every reward arrives, none invented, no request fails", async () => {
    const S = 0.05; // 60 s → 3 s, deadline → 7.5 s, OpenRLHF's timeout → 9 s
    const { results, tries, logs, fake, h } = await outageRun(S, 60_000 * S, 8);
    expect(results.every((r) => r.status === "fulfilled")).toBe(true);
    const rewards = results.map((r) => (r as PromiseFulfilledResult<any>).value.rewards);
    expect(rewards).toEqual(Array.from({ length: 8 }, (_, i) => [i % 2 ? 0.8 : 0.2]));
    expect(tries).toEqual([]); // not one 503: the service waited the outage out inside the request
    expect(fake.requests.length).toBeGreaterThan(16); // the judge really was down and was retried
    expect(logs.some((l) => /judge .* failing/.test(l))).toBe(true);
    expect(logs.some((l) => /answers again/.test(l))).toBe(true);
    const hz = (await (await fetch(h.url + "/healthz")).json()) as any;
    expect(hz.judge.state).toBe("ok");
  });

  it("an outage past the deadline: 503 only at the deadline, OpenRLHF's next try gets the real reward", async () => {
    // Three margins decide this scenario, and scaling shrinks each: the 503 must reach the client before its
    // timeout (deadline → timeout), the first try must still meet the outage when its deadline fires (deadline →
    // end of outage), and the second try must outlive the outage (end of outage + backoff → its deadline). Under
    // load a timer or a reply can be late by most of a second, so each margin here is ≥ 2 s: S = 0.05 with a
    // 120 s deadline (→ 6 s; OpenRLHF's timeout → 9 s, its sleep → 50 ms) and a 160 s outage (→ 8 s).
    // (With S = 0.02 and the 150 s deadline the first margin was 0.6 s, and a loaded machine missed it.)
    const S = 0.05;
    const outage = { ...policy(S), deadlineMs: 120_000 * S };
    const { results, tries } = await outageRun(S, 160_000 * S, 2, outage);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled"]);
    expect(results.map((r) => (r as PromiseFulfilledResult<any>).value.rewards)).toEqual([[0.2], [0.8]]);
    expect(tries.length).toBe(2); // one 503 per sample, then success
    for (const t of tries) {
      expect(t).toMatch(/503/);
      expect(Number(/^(\d+)ms/.exec(t)![1])).toBeGreaterThanOrEqual(outage.deadlineMs - outage.backoffMaxMs);
    }
  });
});
