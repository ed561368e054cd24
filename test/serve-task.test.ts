/**
 * `mpo serve --task NAME`: the reward service judges a sample exactly as `mpo train --task NAME` does. A fake
 * OpenAI server records every judge request; for one essay and one ethics sample, the junior requests the
 * service sends (native /v1/score, and OpenRLHF's /get_reward with a chat-templated query) equal the ones
 * the trainer's reward sends for the same record and response — the task persona, the bare prompt, the
 * instruction only where the task shows it, limits and stop strings. The ethics format rule (no verdict,
 * or reasoning under 30 words → −10, no judge call) applies in the service too.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createReward } from "../src/rl/reward-factory.ts";
import { serveConfigSchema } from "../src/serve/config.ts";
import { startRewardService } from "../src/serve/index.ts";
import type { ServerHandle } from "../src/serve/server.ts";
import { getTask } from "../src/tasks/registry.ts";
import type { TaskDefinition, TaskRecord } from "../src/tasks/types.ts";
import { startFakeOpenAI, type FakeOpenAI, type FakeRequestInfo } from "./helpers/fake-openai-server.ts";

let server: FakeOpenAI;
let dir: string;
const handles: ServerHandle[] = [];

/** A junior judge following the paper prompts: feedback per item, then an integer. */
function juniorReply(req: FakeRequestInfo): string {
  const u = req.messages.at(-1)?.content ?? "";
  if (u.includes("Give your feedback on this item")) return "The text answers the instruction clearly.<EOE>";
  if (u.includes("Give this item's score now")) return "4";
  // The senior judge's paper-profile turns (a meta step).
  if (u.includes("how many distinct scoring criteria are needed")) return "1";
  if (/Write scoring criterion #(\d+)/.test(u)) return "### Focus\n- 5: every paragraph serves the prompt.\n- 0: ignores it.<EOE>";
  if (u.includes("how many distinct, non-overlapping scoring criteria")) return "1";
  if (/Write merged criterion #(\d+)/.test(u)) return "### Merged focus\n- 5: a clear thesis, e.g. stated first.\n- 0: none.<EOE>";
  if (u.includes("Keep the analysis within")) return "The score is inflated: the essay drifts off topic.<EOE>";
  return "?";
}

beforeAll(async () => {
  server = await startFakeOpenAI({ reply: juniorReply });
  dir = mkdtempSync(join(tmpdir(), "mpo-serve-task-"));
});
afterAll(async () => {
  while (handles.length) await handles.pop()!.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const rm = () => ({ baseURL: server.url, model: "judge", server: "sglang" as const, maxTries: 1 });

function jsonl(name: string, rows: object[]): string {
  const p = join(dir, name);
  writeFileSync(p, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  return p;
}

/** The chat requests the trainer's reward sends for one sample. */
async function trainerRequests(task: TaskDefinition, record: TaskRecord, response: string, run: string): Promise<{ reqs: any[]; score: number | null }> {
  const reward = createReward({ kind: "judge", rm: rm(), mode: "per-item", protocol: "paper", metaSamples: 2, prescreen: false, concurrency: 1 } as never, { runDir: join(dir, run), task, seed: 1 });
  const before = server.requests.length;
  const [r] = await reward.score([{ record, response, finished: true }], { step: 1 });
  return { reqs: server.requests.slice(before), score: r.score };
}

async function service(task: string, run: string): Promise<ServerHandle> {
  const cfg = serveConfigSchema.parse({ runDir: join(dir, run), port: 0, task, protocol: "paper", judge: rm(), concurrency: 1, metaEvery: 0 });
  const h = await startRewardService(cfg, { log: () => {} });
  handles.push(h);
  return h;
}

async function post(h: ServerHandle, path: string, body: unknown): Promise<{ status: number; body: any; reqs: any[] }> {
  const before = server.requests.length;
  const r = await fetch(h.url + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json(), reqs: server.requests.slice(before) };
}

const chatml = (user: string, reply: string) => `<|im_start|>user\n${user}<|im_end|>\n<|im_start|>assistant\n${reply}<|im_end|>`;

const essay =
  "Lighthouses stand where land gives way to sea. Their keepers once climbed the stairs every evening to light the lamp, and ships steered by that light through storms. Today most lights run by themselves, yet the towers still guide sailors home.";
const reasoning =
  "The narrator promised to drive her sister to the airport and then cancelled an hour before the flight without offering any other way to get there. Breaking a firm promise at the last moment, when the sister could no longer arrange a ride, puts the whole cost on her. A short apology does not undo that. <verdict>WRONG</verdict>";

describe("mpo serve --task: the junior judge sees what mpo train's judge sees", () => {
  it("essay: /v1/score and /get_reward send the trainer's exact junior requests (English-teacher persona, instruction + bare prompt)", async () => {
    const task = await getTask("essay", { data: { train: jsonl("essay.jsonl", [{ id: "e1", prompt: "Describe a lighthouse at night." }]) } });
    const [record] = await task.load("train");
    const t = await trainerRequests(task, record, essay, "train-essay");
    expect(t.reqs.length).toBeGreaterThan(1);
    expect(t.reqs[0].messages[0]).toMatchObject({ role: "system" }); // the task persona
    expect(JSON.stringify(t.reqs[0].messages)).toContain("Describe a lighthouse at night.");

    const h = await service("essay", "serve-essay");
    const native = await post(h, "/v1/score", { items: [{ prompt: record.prompt, response: essay }] });
    expect(native.status, JSON.stringify(native.body)).toBe(200);
    expect(native.reqs).toEqual(t.reqs);
    expect(native.body.results[0].score).toBe(t.score);
    // OpenRLHF: the query is the chat-templated policy prompt + response; the split recovers the same sample.
    const orl = await post(h, "/get_reward", { query: [chatml(record.prompt, essay)], labels: [null] });
    expect(orl.status, JSON.stringify(orl.body)).toBe(200);
    expect(orl.reqs).toEqual(t.reqs);
    expect(orl.body.rewards).toEqual([t.score]);
  });

  it("ethics: the philosopher persona and the anecdote without the instruction; the −10 format rule applies with no judge call", async () => {
    const task = await getTask("ethics", {
      data: { train: jsonl("ethics.jsonl", [{ id: "a1", title: "AITA for cancelling a ride?", text: "My sister asked me to drive her to the airport. I said yes, then cancelled an hour before.", action: { description: "cancelling the ride at the last minute" }, binarized_label: "WRONG" }]) },
    });
    const [record] = await task.load("train");
    const t = await trainerRequests(task, record, reasoning, "train-ethics");
    expect(t.reqs.length).toBeGreaterThan(1);
    const h = await service("ethics", "serve-ethics");
    const orl = await post(h, "/get_reward", { query: [chatml(record.prompt, reasoning)], labels: ["WRONG"] });
    expect(orl.status, JSON.stringify(orl.body)).toBe(200);
    expect(orl.reqs).toEqual(t.reqs);
    expect(orl.body.rewards).toEqual([t.score]);
    // No verdict, or too little reasoning: −10 from the rule, as the trainer gives, and the judge is not asked.
    for (const bad of ["It was wrong to cancel.", reasoning.replace("<verdict>WRONG</verdict>", "So it was wrong.")]) {
      const tr = await trainerRequests(task, record, bad, `train-ethics-bad-${bad.length}`);
      expect(tr.score).toBe(-10);
      expect(tr.reqs).toEqual([]);
      const r = await post(h, "/get_reward", { query: [chatml(record.prompt, bad)], labels: ["WRONG"] });
      expect(r.status).toBe(200);
      expect(r.body.rewards).toEqual([-10]);
      expect(r.reqs).toEqual([]);
    }
    // A prompt that is not one of the task's (ethics has three fields: it cannot be guessed) is a 400, not a judged sample.
    const odd = await post(h, "/v1/score", { items: [{ prompt: "Is lying ever fine?", response: reasoning }] });
    expect(odd.status).toBe(400);
    expect(odd.body.error.message).toMatch(/item 0: the prompt is not one of task ethics's prompts/);
    expect(odd.reqs).toEqual([]);
  });

  it("essay meta step: the senior judge gets the task's persona as its system turn, as in mpo train", async () => {
    const task = await getTask("essay", { data: { train: jsonl("essay-meta.jsonl", [{ id: "e1", prompt: "Describe a lighthouse at night." }]) } });
    const [record] = await task.load("train");
    const persona = task.judgeView!(record).persona.trim();
    const cfg = serveConfigSchema.parse({ runDir: join(dir, "serve-essay-meta"), port: 0, task: "essay", protocol: "paper", judge: rm(), concurrency: 1, metaEvery: 2, metaSamples: 2 });
    let done!: (r: { ok: boolean }) => void;
    const finished = new Promise<{ ok: boolean }>((res) => (done = res));
    const h = await startRewardService(cfg, { log: () => {}, onMeta: (r) => done(r) });
    handles.push(h);
    const before = server.requests.length;
    for (let i = 0; i < 2; i++) expect((await post(h, "/v1/score", { items: [{ prompt: record.prompt, response: essay }] })).status).toBe(200);
    expect((await finished).ok).toBe(true);
    const senior = server.requests.slice(before).filter((b) => b.messages.some((m: { content: string }) => /senior instructor/.test(m.content)));
    expect(senior.length).toBeGreaterThan(0);
    for (const b of senior) expect(b.messages[0]).toEqual({ role: "system", content: persona });
  });

  it("after a restart, a meta step that runs before any new sample still gives the senior the task's persona", async () => {
    const task = await getTask("essay", { data: { train: jsonl("essay-restart.jsonl", [{ id: "e1", prompt: "Describe a harbour at dawn." }]) } });
    const [record] = await task.load("train");
    const persona = task.judgeView!(record).persona.trim();
    const cfg = serveConfigSchema.parse({ runDir: join(dir, "serve-essay-restart"), port: 0, task: "essay", protocol: "paper", judge: rm(), concurrency: 1, metaEvery: 0, metaSamples: 1, allowUnauthenticatedAdmin: true });
    const first = await startRewardService(cfg, { log: () => {} });
    expect((await post(first, "/v1/score", { items: [{ prompt: record.prompt, response: essay }] })).status).toBe(200);
    await first.close();
    const again = await startRewardService(cfg, { log: () => {} });
    handles.push(again);
    const r = await post(again, "/v1/meta-step", {});
    expect(r.status).toBe(200);
    const senior = r.reqs.filter((b) => b.messages.some((m: { content: string }) => /senior instructor/.test(m.content)));
    expect(senior.length).toBeGreaterThan(0);
    for (const b of senior) expect(b.messages[0]).toEqual({ role: "system", content: persona });
  });

  it("without --task the service keeps the generic view (its task description, no persona)", async () => {
    const cfg = serveConfigSchema.parse({ runDir: join(dir, "serve-generic"), port: 0, rubric: join(dir, "..", "nope.txt"), protocol: "paper", judge: rm() });
    expect(cfg.task).toBeUndefined();
    expect(() => serveConfigSchema.parse({ runDir: join(dir, "x"), judge: rm() })).toThrow(/rubric/);
  });
});
