import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createChatModel } from "../src/llm/openai-client.ts";
import { ScriptedChatModel } from "../src/llm/scripted.ts";
import type { ChatModel, ChatRequest } from "../src/llm/types.ts";
import type { MetaStepResult } from "../src/meta/meta-step.ts";
import { SimulatedJudgeModel } from "../src/sandbox/sim/sim-model.ts";
import { serveConfigSchema, type ServeConfig } from "../src/serve/config.ts";
import { startRewardService } from "../src/serve/index.ts";
import type { ServerHandle } from "../src/serve/server.ts";
import { RewardService } from "../src/serve/service.ts";
import { splitQuery } from "../src/serve/split.ts";
import { startFakeOpenAI } from "./helpers/fake-openai-server.ts";

const RUBRIC = "<rubric><item>Discourse: how well the writing flows. Score from 0 to 5.</item></rubric>";

function tmpRun(): { runDir: string; rubric: string } {
  const runDir = mkdtempSync(join(tmpdir(), "mpo-serve-"));
  const rubric = join(runDir, "..", `${runDir.split("/").pop()}-rubric.txt`);
  writeFileSync(rubric, RUBRIC);
  return { runDir, rubric };
}

/** A junior that gives 4 to responses containing "good" and 1 otherwise. */
function scriptedJudge(): ScriptedChatModel {
  return new ScriptedChatModel((req: ChatRequest) => {
    const last = req.messages[req.messages.length - 1].content;
    if (/integer score/i.test(last)) return /good/.test(req.messages[1].content) ? "4" : "1";
    return "One sentence of rationale.";
  });
}

const handles: ServerHandle[] = [];
afterEach(async () => {
  while (handles.length) await handles.pop()!.close();
});

async function start(over: Partial<ServeConfig> & Record<string, unknown> = {}, judge: ChatModel = scriptedJudge(), metaJudge?: ChatModel) {
  const { runDir, rubric } = tmpRun();
  const cfg = serveConfigSchema.parse({ protocol: "hardened", runDir, rubric, port: 0, judge: { baseURL: "http://127.0.0.1:9/v1", model: "m" }, ...over });
  let metaDone: (r: MetaStepResult) => void = () => {};
  const metaFinished = new Promise<MetaStepResult>((res) => (metaDone = res));
  const h = await startRewardService(cfg, { judge, metaJudge, onMeta: (r) => metaDone(r) });
  handles.push(h);
  return { h, cfg, metaFinished };
}

async function post(h: ServerHandle, path: string, body: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(h.url + path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as any };
}

const chatml = (p: string, r: string) => `<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n${p}<|im_end|>\n<|im_start|>assistant\n${r}<|im_end|>`;
const llama3 = (p: string, r: string) =>
  `<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n${p}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n${r}<|eot_id|>`;

describe("query splitting (OpenRLHF query = templated prompt + response)", () => {
  it("splits ChatML and Llama-3 and uses `prompts` when given", () => {
    expect(splitQuery(chatml("Write a poem.", "Roses are red."), "auto")).toEqual({ prompt: "Write a poem.", response: "Roses are red." });
    expect(splitQuery(llama3("Hi?", "Hello!"), "auto")).toEqual({ prompt: "Hi?", response: "Hello!" });
    const p = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n";
    expect(splitQuery(p + "A<|im_end|><|endoftext|>", "chatml", p)).toEqual({ prompt: "Q", response: "A" });
    expect(() => splitQuery("plain text", "auto")).toThrow(/marker/);
  });
});

describe("query splitting: the common chat templates (rendered as their tokenizer_config.json chat_template does)", () => {
  const cases: Array<[string, string, string]> = [
    // Gemma 2/3: "model" is the assistant role; <bos> first, <end_of_turn> ends a turn.
    ["gemma", "<bos><start_of_turn>user\nWrite a haiku.<end_of_turn>\n<start_of_turn>model\n", "Rain on leaves.<end_of_turn>\n<eos>"],
    // Mistral [INST]: the user turn ends at [/INST]; </s> ends the reply.
    ["mistral", "<s>[INST] Write a haiku. [/INST]", " Rain on leaves.</s>"],
    // Phi-3: <|end|> ends every turn, <|endoftext|> the text.
    ["phi3", "<|system|>\nBe brief.<|end|>\n<|user|>\nWrite a haiku.<|end|>\n<|assistant|>\n", "Rain on leaves.<|end|>\n<|endoftext|>"],
    // DeepSeek V3/R1: full-width bars; the user turn ends where <｜Assistant｜> begins.
    ["deepseek", "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Write a haiku.<｜Assistant｜>", "Rain on leaves.<｜end▁of▁sentence｜>"],
  ];
  it.each(cases)("%s: split by marker (auto) and by the prompt OpenRLHF sends", (name, prompt, reply) => {
    expect(splitQuery(prompt + reply, "auto")).toEqual({ prompt: "Write a haiku.", response: "Rain on leaves." });
    expect(splitQuery(prompt + reply, name as never)).toEqual({ prompt: "Write a haiku.", response: "Rain on leaves." });
    expect(splitQuery(prompt + reply, "auto", prompt)).toEqual({ prompt: "Write a haiku.", response: "Rain on leaves." });
  });

  it("an unknown template is a 400 naming the markup, never markup sent to the judge", async () => {
    expect(() => splitQuery("<|turn_start|>user: Write.<|turn_sep|>model: Text", "auto")).toThrow(/chat template not recognised \(found "<\|turn_start\|>"/);
    expect(() => splitQuery("<|turn_start|>user Write.<|turn_sep|>", "auto", "<|turn_start|>user Write.")).toThrow(/prompt still contains chat-template markup/);
    // A plain-text prompt (no chat template) is fine; end tokens are stripped from the response.
    expect(splitQuery("Q: 2+2?\nA: 4<|endoftext|>", "auto", "Q: 2+2?\nA:")).toEqual({ prompt: "Q: 2+2?\nA:", response: "4" });
    const { h } = await start();
    const r = await post(h, "/get_reward", { query: ["<|turn_start|>user Write.<|turn_sep|>Text"], prompts: [], labels: [null] });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/query\.0.*chat template not recognised/);
  });
});

describe("POST /get_reward (OpenRLHF protocol)", () => {
  it("answers rewards, scores and extra_logs as long as query; empty lists for an empty batch", async () => {
    const { h } = await start();
    const r = await post(h, "/get_reward", { query: [chatml("Write.", "a good essay"), chatml("Write.", "bad")], prompts: [], labels: [null, null] });
    expect(r.status).toBe(200);
    expect(r.body.rewards).toEqual([0.8, 0.2]);
    expect(r.body.scores).toEqual([0.8, 0.2]);
    expect(r.body.extra_logs.rubric_version).toEqual([0, 0]);
    const empty = await post(h, "/get_reward", { query: [], prompts: [], labels: [] });
    expect(empty).toEqual({ status: 200, body: { rewards: [], scores: [], extra_logs: { rubric_version: [], judge_flagged: [], judge_unreadable: [] } } });
  });

  it("rejects bad bodies with 400 naming the field", async () => {
    const { h } = await start();
    expect((await post(h, "/get_reward", { query: "x" })).body.error.message).toMatch(/'query'/);
    expect((await post(h, "/get_reward", { query: ["plain"] })).body.error.message).toMatch(/'query.0'/);
    const mism = await post(h, "/get_reward", { query: [chatml("a", "b")], prompts: ["x", "y"] });
    expect(mism.status).toBe(400);
    expect(mism.body.error.message).toMatch(/'prompts'/);
    expect((await post(h, "/get_reward", "{not json")).status).toBe(400);
  });
});

describe("POST /v1/score (native API)", () => {
  it("returns per-item rationales, scores, flags and the rubric version", async () => {
    const { h } = await start();
    const r = await post(h, "/v1/score", { items: [{ prompt: "Write.", response: "a good essay" }] });
    expect(r.status).toBe(200);
    expect(r.body.results[0]).toMatchObject({ score: 4, normalized: 0.8, rubricVersion: 0, flags: [] });
    expect(r.body.results[0].items[0]).toMatchObject({ score: 4, min: 0, max: 5, rationale: "One sentence of rationale." });
  });

  it.each([
    [{ items: [{ prompt: "p" }] }, /items\.0\.response/],
    [{ items: [{ prompt: "p", response: "r", extra: 1 }] }, /items\.0/],
    [{ items: [{ prompt: "p", response: 5 }] }, /items\.0\.response/],
    [{ itemz: [] }, /(itemz|items)/],
    [{ items: [{ prompt: "p".repeat(101), response: "r" }] }, /items\.0\.prompt.*100/],
    [{ items: Array.from({ length: 6 }, () => ({ prompt: "p", response: "r" })) }, /'items'.*at most 5/],
  ])("400 for %j", async (body, msg) => {
    const { h } = await start({ limits: { fieldChars: 100, batchSize: 5, bodyBytes: 4096, requestTimeoutMs: 10_000, bodyTimeoutMs: 10_000 } });
    const r = await post(h, "/v1/score", body);
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(msg);
  });

  it("413 for a body over the size limit", async () => {
    const { h } = await start({ limits: { fieldChars: 100_000, batchSize: 5, bodyBytes: 2048, requestTimeoutMs: 10_000, bodyTimeoutMs: 10_000 } });
    const r = await post(h, "/v1/score", { items: [{ prompt: "p", response: "x".repeat(5000) }] });
    expect(r.status).toBe(413);
  });

  it("answers 503 with the reason when the judge is down — never a score", async () => {
    const fake = await startFakeOpenAI({ reply: () => ({ status: 500, body: { error: { message: "overloaded" } } }) });
    try {
      const judge = createChatModel({ baseURL: fake.url, model: "m", maxTries: 2, backoffBaseMs: 1, backoffMaxMs: 2 });
      const { h } = await start({ outage: { deadlineMs: 3000, backoffBaseMs: 5, backoffMaxMs: 20, queueMax: 100 } }, judge);
      const r = await post(h, "/v1/score", { items: [{ prompt: "p", response: "r" }] });
      expect(r.status).toBe(503);
      expect(r.body.error.type).toBe("judge_unavailable");
      expect(r.body.error.message).toMatch(/deadline.*HTTP 500: overloaded/);
      expect(r.body.results).toBeUndefined();
    } finally {
      await fake.close();
    }
  });
});

describe("auth, health, metrics", () => {
  it("requires the bearer token when configured (healthz stays open)", async () => {
    const { h } = await start({ token: "s3cret-token" });
    expect((await post(h, "/v1/score", { items: [] })).status).toBe(401);
    expect((await post(h, "/v1/score", { items: [] }, { authorization: "Bearer wrong-token" })).status).toBe(401);
    expect((await post(h, "/v1/score", { items: [] }, { authorization: "Bearer s3cret-token" })).status).toBe(200);
    expect((await fetch(h.url + "/healthz")).status).toBe(200);
  });

  it("exposes Prometheus metrics with requests, judge calls by stage and the rubric version", async () => {
    const { h } = await start();
    await post(h, "/v1/score", { items: [{ prompt: "p", response: "good" }] });
    const text = await (await fetch(h.url + "/metrics")).text();
    expect(text).toMatch(/mpo_requests_total\{route="\/v1\/score",status="200"\} 1/);
    expect(text).toMatch(/mpo_judge_calls_total\{stage="rm"\} 2/);
    expect(text).toMatch(/mpo_rubric_version 0/);
    expect(text).toMatch(/mpo_request_duration_seconds_bucket/);
  });
});

describe("online MPO", () => {
  it("runs a meta step every metaEvery samples, switches the rubric, and a restart continues from it", async () => {
    const sim = new SimulatedJudgeModel();
    const { h, cfg, metaFinished } = await start({ metaEvery: 4, metaSamples: 4 }, sim, sim);
    const filler = "Moreover, it is important to note that this is very important. Furthermore, in addition, this matters a lot.";
    const items = Array.from({ length: 4 }, (_, i) => ({ prompt: "Write a short essay arguing that cities should spend more money on public libraries.", response: i % 2 ? filler : "The Case for Public Libraries" }));
    const first = await post(h, "/v1/score", { items });
    expect(first.body.results.map((r: any) => r.rubricVersion)).toEqual([0, 0, 0, 0]);
    const meta = await metaFinished;
    expect(meta.ok).toBe(true);
    const after = await post(h, "/v1/score", { items: items.slice(0, 1) });
    expect(after.body.results[0].rubricVersion).toBe(1);
    const hist = (await (await fetch(h.url + "/v1/rubrics")).json()) as any;
    expect(hist.versions.map((v: any) => [v.version, v.parent, v.author.kind])).toEqual([
      [0, null, "initial"],
      [1, 0, "meta"],
    ]);
    expect(hist.versions[1].analyses[0]).toMatch(/^meta\/step-/);
    await h.close();
    handles.splice(handles.indexOf(h), 1);

    const again = new RewardService({ protocol: "hardened", runDir: cfg.runDir, rubricFile: cfg.rubric!, taskDescription: "t", judge: sim, mode: "per-item", metaEvery: 4, metaSamples: 4, prescreen: false, seed: 0, concurrency: 4 });
    expect(again.rubric.version).toBe(1);
    expect(again.stats).toMatchObject({ scored: 5, window: 1, windowSize: 1, metaSteps: 1 });
    await again.close();
  });
});

describe("graceful shutdown", () => {
  it("lets an in-flight request finish before closing", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    let entered: () => void = () => {};
    const inJudge = new Promise<void>((r) => (entered = r));
    const slow = new ScriptedChatModel(async (req) => {
      entered();
      await gate;
      return /integer score/i.test(req.messages[req.messages.length - 1].content) ? "3" : "Fine.";
    });
    const { h } = await start({}, slow);
    const pending = post(h, "/v1/score", { items: [{ prompt: "p", response: "r" }] });
    await inJudge;
    const closed = h.close();
    release();
    const r = await pending;
    expect(r.status).toBe(200);
    expect(r.body.results[0].score).toBe(3);
    await closed;
    handles.splice(handles.indexOf(h), 1);
  });
});

describe("restart during a meta step", () => {
  it("re-runs the interrupted meta step on the same window after a restart", async () => {
    const { runDir, rubric } = tmpRun();
    let entered: () => void = () => {};
    const inMeta = new Promise<void>((r) => (entered = r));
    // A senior judge that hangs until the request is aborted (the service is stopped mid meta step).
    const hanging: ChatModel = {
      id: "hanging",
      chat: (req) =>
        new Promise((_res, rej) => {
          entered();
          req.signal?.addEventListener("abort", () => rej(new Error("aborted")));
        }),
    };
    const base = { protocol: "hardened" as const, runDir, rubricFile: rubric, taskDescription: "t", mode: "per-item" as const, metaEvery: 2, metaSamples: 2, prescreen: false, seed: 0, concurrency: 2 };
    const first = new RewardService({ ...base, judge: scriptedJudge(), metaJudge: hanging });
    await first.score([{ prompt: "p", response: "a good one" }, { prompt: "p", response: "bad" }]);
    await inMeta;
    expect(first.metaRunning).toBe(true);
    await first.close();

    const sim = new SimulatedJudgeModel();
    let done: (r: MetaStepResult) => void = () => {};
    const finished = new Promise<MetaStepResult>((r) => (done = r));
    const second = new RewardService({ ...base, judge: scriptedJudge(), metaJudge: sim, onMeta: (r) => done(r) });
    const r = await finished;
    expect(r.ok).toBe(true);
    expect(second.rubric.version).toBe(1);
    expect(second.stats).toMatchObject({ scored: 2, window: 1, metaSteps: 1 });
    await second.close();
  });
});

describe("usage accounting", () => {
  it("counts a requested meta step's judge calls once in /metrics", async () => {
    const sim = new SimulatedJudgeModel();
    const { h } = await start({ metaEvery: 0, metaSamples: 2, allowUnauthenticatedAdmin: true }, sim, sim);
    await post(h, "/v1/score", { items: [{ prompt: "Write about libraries.", response: "The Case for Public Libraries" }, { prompt: "Write about libraries.", response: "Libraries lend books." }] });
    const meta = await post(h, "/v1/meta-step", {});
    expect(meta.status).toBe(200);
    const log = JSON.parse(readFileSync(join(h.service.store.dir, "..", meta.body.log), "utf8"));
    await post(h, "/v1/score", { items: [{ prompt: "Write about libraries.", response: "Libraries lend books." }] });
    const text = await (await fetch(h.url + "/metrics")).text();
    const calls = Number(/mpo_judge_calls_total\{stage="mrm-analyze"\} (\d+)/.exec(text)?.[1]);
    expect(calls).toBe(log.usage["mrm-analyze"].calls);
    expect(calls).toBeGreaterThan(0);
  });
});
