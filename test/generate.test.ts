import { execFile } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { llamaConfig, TransformerLM } from "../src/engine/index.ts";
import { saveCheckpoint } from "../src/engine/io/checkpoint.ts";
import { chatmlQuery, generate, resolvePolicyDir } from "../src/generate/index.ts";
import { tokenizerFromJson } from "../src/rl/tokenizer.ts";
import { getTask } from "../src/tasks/registry.ts";
import { BpeTokenizer } from "../src/tokenizer/tokenizer.ts";
import { readJsonl } from "../src/util/atomic.ts";
import { Rng } from "../src/util/rng.ts";
import { startFakeOpenAI, type FakeOpenAI } from "./helpers/fake-openai-server.ts";

const REPO = resolve(__dirname, "..");
let dir: string;
let taskYaml: string;
let fake: FakeOpenAI;

const ROWS = [
  { uid: "h1", topic: "autumn rain", example: "rain on leaves" },
  { uid: "h2", topic: "winter sun", example: "pale light" },
  { uid: "h3", topic: "spring wind", example: "petals fly" },
  { uid: "h4", topic: "summer night", example: "crickets sing" },
  { uid: "h5", topic: "harbor fog", example: "ships vanish" },
];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mpo-generate-"));
  writeFileSync(join(dir, "haiku.jsonl"), ROWS.map((r) => JSON.stringify(r)).join("\n") + "\n");
  writeFileSync(join(dir, "haiku-user.md"), "Write a haiku about {{topic}}.\n");
  writeFileSync(join(dir, "rubric.txt"), "<rubric><item>Imagery. Score from 0 to 5.</item></rubric>");
  taskYaml = join(dir, "haiku.yaml");
  writeFileSync(
    taskYaml,
    [
      "name: haiku",
      "description: Haiku writing from a topic.",
      "data:",
      "  test: haiku.jsonl",
      "  train: haiku.jsonl",
      "fields:",
      "  id: uid",
      "  vars: { topic: topic }",
      "  reference: example",
      "templates:",
      "  system: tasks/essay/system.md",
      "  user: haiku-user.md",
      "reward: { kind: rubric, initialRubric: rubric.txt }",
      "evaluations: [elo]",
    ].join("\n"),
  );
  // The fake server answers with a text derived from the user turn, so each line can be checked.
  fake = await startFakeOpenAI({ reply: ({ messages }) => `HAIKU for <${messages[messages.length - 1].content}>` });
});
afterAll(async () => {
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("mpo generate --llm", () => {
  it("writes {id, prompt, query, model_response} per record, sends the task's messages as-is, and resumes", async () => {
    const out = join(dir, "llm.jsonl");
    const task = await getTask(taskYaml);
    const records = await task.load("test");
    const before = fake.requests.length;
    const r1 = await generate({ task: taskYaml, split: "test", out, limit: 3, backend: { kind: "llm", endpoint: { baseURL: fake.url, model: "fake-model", server: "vllm" } }, temperature: 0.3, maxNewTokens: 50, seed: 7, concurrency: 2 });
    expect(r1).toMatchObject({ total: 3, skipped: 0, written: 3, failed: [] });
    const sent = fake.requests.slice(before);
    expect(sent).toHaveLength(3);
    for (const body of sent) {
      expect(body).toMatchObject({ model: "fake-model", temperature: 0.3, seed: 7 });
      expect(body.max_tokens ?? body.max_completion_tokens).toBe(50);
    }
    const byUser = new Map(sent.map((b) => [b.messages[b.messages.length - 1].content, b.messages]));
    const lines1 = readJsonl<any>(out).records;
    expect(lines1.map((l) => l.id)).toEqual(["h1", "h2", "h3"]); // record order, whatever finished first
    for (const [i, l] of lines1.entries()) {
      const msgs = task.buildMessages(records[i]);
      expect(byUser.get(msgs[msgs.length - 1].content)).toEqual(msgs);
      expect(l).toEqual({
        id: records[i].id,
        prompt: records[i].prompt,
        query: chatmlQuery(msgs),
        model_response: `HAIKU for <${records[i].prompt}>`,
        finish_reason: "stop",
        generator: `llm fake-model @ ${fake.url}`,
        reference: ROWS[i].example,
      });
    }
    expect(lines1[0].query).toMatch(/^<\|im_start\|>system\n[\s\S]*<\|im_start\|>user\nWrite a haiku about autumn rain\.<\|im_end\|>\n<\|im_start\|>assistant\n$/);

    // A crash left a torn line: it is skipped, and the next run neither glues onto it nor repeats done ids.
    appendFileSync(out, '{"id": "h4", "prompt": "Wri');
    const mid = fake.requests.length;
    const r2 = await generate({ task: taskYaml, split: "test", out, backend: { kind: "llm", endpoint: { baseURL: fake.url, model: "fake-model" } } });
    expect(r2).toMatchObject({ total: 5, skipped: 3, written: 2, failed: [] });
    expect(fake.requests.length - mid).toBe(2);
    const all = readJsonl<any>(out);
    expect(all.records.map((l) => l.id)).toEqual(["h1", "h2", "h3", "h4", "h5"]);
    expect(all.badLines).toHaveLength(1);
    const r3 = await generate({ task: taskYaml, split: "test", out, backend: { kind: "llm", endpoint: { baseURL: fake.url, model: "fake-model" } } });
    expect(r3).toMatchObject({ skipped: 5, written: 0 });
  });

  it("--out written by one model is not resumed by another unless --append; each line names its generator", async () => {
    const out = join(dir, "mixed.jsonl");
    const other = { id: "other", chat: async () => ({ text: "from the other model", promptTokens: 1, completionTokens: 4, finishReason: "stop" as const }) };
    await generate({ task: taskYaml, split: "test", out, limit: 2, backend: { kind: "llm", endpoint: { baseURL: fake.url, model: "fake-model" } } });
    expect(readJsonl<any>(out).records.map((r) => r.generator)).toEqual([`llm fake-model @ ${fake.url}`, `llm fake-model @ ${fake.url}`]);
    const before = readFileSync(out, "utf8");
    const otherBackend = { kind: "llm" as const, endpoint: { baseURL: "http://127.0.0.1:1/v1", model: "other-model" }, model: other };
    await expect(generate({ task: taskYaml, split: "test", out, backend: otherBackend })).rejects.toThrow(
      /already holds 2 line\(s\) from llm fake-model @ .*other-model.*--append/,
    );
    expect(readFileSync(out, "utf8")).toBe(before);
    const r = await generate({ task: taskYaml, split: "test", out, backend: otherBackend, append: true });
    expect(r).toMatchObject({ skipped: 2, written: 3 });
    expect(readJsonl<any>(out).records.map((x) => x.generator.split(" ")[1])).toEqual(["fake-model", "fake-model", "other-model", "other-model", "other-model"]);
  });

  it("failed records are reported and not written; a rerun generates them", async () => {
    const out = join(dir, "flaky.jsonl");
    let calls = 0;
    const flaky = await startFakeOpenAI({
      reply: ({ messages }) => {
        calls++;
        return /winter/.test(messages[messages.length - 1].content) && calls < 10 ? { status: 400, body: { error: { message: "bad request for winter" } } } : "ok";
      },
    });
    try {
      const backend = { kind: "llm" as const, endpoint: { baseURL: flaky.url, model: "fake-model", maxTries: 1 } };
      const r1 = await generate({ task: taskYaml, split: "test", out, limit: 3, backend, concurrency: 1 });
      expect(r1.written).toBe(2);
      expect(r1.failed).toEqual([{ id: "h2", error: expect.stringMatching(/winter/) }]);
      expect(readJsonl<any>(out).records.map((l) => l.id)).toEqual(["h1", "h3"]);
      calls = 100;
      const r2 = await generate({ task: taskYaml, split: "test", out, limit: 3, backend, concurrency: 1 });
      expect(r2).toMatchObject({ skipped: 2, written: 1, failed: [] });
      expect(readJsonl<any>(out).records.map((l) => l.id).sort()).toEqual(["h1", "h2", "h3"]);
    } finally {
      await flaky.close();
    }
  });

  it("clear errors: unknown task (lists the known ones), unreachable server, model not served, bad flags", async () => {
    const out = join(dir, "err.jsonl");
    const llm = { kind: "llm" as const, endpoint: { baseURL: fake.url, model: "fake-model" } };
    await expect(generate({ task: "poetry", split: "test", out, backend: llm })).rejects.toThrow(/unknown task 'poetry' \(known: .*essay.*summarization.*ethics.*math/);
    await expect(generate({ task: taskYaml, split: "test", out, backend: { kind: "llm", endpoint: { baseURL: "http://127.0.0.1:9/v1", model: "m" } } })).rejects.toThrow(/--llm: server http:\/\/127\.0\.0\.1:9\/v1 did not list its models/);
    await expect(generate({ task: taskYaml, split: "test", out, backend: { kind: "llm", endpoint: { baseURL: fake.url, model: "other" } } })).rejects.toThrow(/does not serve model 'other'.*fake-model/);
    await expect(generate({ task: taskYaml, split: "test", out, backend: llm, limit: 0 })).rejects.toThrow(/--limit: expected an integer ≥ 1/);
    await expect(generate({ task: taskYaml, split: "test", out, backend: llm, temperature: 3 })).rejects.toThrow(/--temperature/);
  });

  it("a task with an answer checker also gets the label under its gold field (mpo eval accuracy defaults)", async () => {
    const verdictYaml = join(dir, "verdict.yaml");
    writeFileSync(join(dir, "verdict.jsonl"), [{ uid: "v1", topic: "lying", gold: "WRONG" }, { uid: "v2", topic: "helping", gold: "RIGHT" }].map((r) => JSON.stringify(r)).join("\n") + "\n");
    writeFileSync(
      verdictYaml,
      ["name: verdict", "description: Judge an action.", "data:", "  test: verdict.jsonl", "fields:", "  id: uid", "  vars: { topic: topic }", "  label: gold",
        "templates:", "  user: haiku-user.md", "reward: { kind: verifier, verifier: verdict }", "evaluations: [accuracy]", "accuracy: { checker: verdict, goldField: gold_verdict }"].join("\n"),
    );
    const out = join(dir, "verdict.out.jsonl");
    await generate({ task: verdictYaml, split: "test", out, backend: { kind: "llm", endpoint: { baseURL: fake.url, model: "fake-model" } } });
    expect(readJsonl<any>(out).records.map((l) => [l.id, l.label, l.gold_verdict])).toEqual([["v1", "WRONG", "WRONG"], ["v2", "RIGHT", "RIGHT"]]);
  });

  it("CLI: writes the default-named file and reports; exactly one backend is required", async () => {
    const run = promisify(execFile);
    const cwd = mkdtempSync(join(dir, "cli-"));
    const cli = [join(REPO, "node_modules", "tsx", "dist", "cli.mjs"), join(REPO, "src", "cli", "main.ts"), "generate"];
    const r = await run(process.execPath, [...cli, "--task", taskYaml, "--llm", fake.url, "--model", "fake-model", "--server", "vllm", "--limit", "2"], { cwd });
    expect(r.stderr).toMatch(/2 new, 0 already in fake-model\.test\.generations\.jsonl, 2 records/);
    expect(readJsonl<any>(join(cwd, "fake-model.test.generations.jsonl")).records.map((l) => l.id)).toEqual(["h1", "h2"]);
    const bad = await run(process.execPath, [...cli, "--task", taskYaml], { cwd }).catch((e) => e);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/exactly one of --policy .* or --llm/);
  }, 60_000);
});

describe("mpo generate --policy", () => {
  let ckpt: string;
  let tok: BpeTokenizer;

  beforeAll(() => {
    // A tiny randomly initialised policy with a BPE tokenizer trained on a few sentences.
    tok = BpeTokenizer.train(["Write a haiku about autumn rain.", "winter sun and spring wind", "summer night, harbor fog. petals fly."].join("\n"), { vocabSize: 300 });
    const eos = tok.specialId("<|endoftext|>")!;
    const config = llamaConfig({ vocabSize: tok.vocabSize, hiddenSize: 16, intermediateSize: 32, numLayers: 1, numHeads: 2, maxPositions: 64, eosTokenId: eos });
    const model = TransformerLM.create(config, new Rng(3), { engine: "ts" });
    ckpt = join(dir, "tiny-policy");
    saveCheckpoint(ckpt, { config: model.config, tensors: model.namedTensors(), tokenizerJson: tok.toJson() });
  });

  it("renders the last user message + blank line, samples until EOS or the limit, and is the engine's own greedy output", async () => {
    const out = join(dir, "policy.jsonl");
    const r = await generate({ task: taskYaml, split: "test", out, limit: 2, backend: { kind: "policy", dir: ckpt, engine: "ts" }, temperature: 0, maxNewTokens: 12 });
    expect(r).toMatchObject({ total: 2, written: 2, failed: [] });
    const lines = readJsonl<any>(out).records;
    expect(lines[0].query).toBe("Write a haiku about autumn rain.\n\n");
    // Independent reference: greedy decoding of the same text with the engine directly.
    const { loadCheckpoint } = await import("../src/engine/io/checkpoint.ts");
    const ck = loadCheckpoint(ckpt);
    const m = TransformerLM.fromParams(ck.config, ck.tensors, { engine: "ts" });
    const t = tokenizerFromJson(ck.tokenizerJson, "tokenizer.json", ck.config.eos_token_id as number);
    for (const l of lines) {
      const g = m.generate([t.encode(l.query)], { maxNewTokens: 12, temperature: 0, stopTokens: [t.eosId] });
      expect(l.model_response).toBe(t.decode(g.tokens[0]));
      expect(l.finish_reason).toBe(g.finished[0] ? "stop" : "length");
      expect(["stop", "length"]).toContain(l.finish_reason);
    }
  });

  it("sampling is per record (seed + id): a resumed run equals a straight one", async () => {
    const a = join(dir, "straight.jsonl");
    const b = join(dir, "resumed.jsonl");
    const backend = { kind: "policy" as const, dir: ckpt, engine: "ts" as const };
    await generate({ task: taskYaml, split: "test", out: a, backend, temperature: 1, maxNewTokens: 8, seed: 5 });
    await generate({ task: taskYaml, split: "test", out: b, limit: 2, backend, temperature: 1, maxNewTokens: 8, seed: 5 });
    const r = await generate({ task: taskYaml, split: "test", out: b, backend, temperature: 1, maxNewTokens: 8, seed: 5 });
    expect(r).toMatchObject({ skipped: 2, written: 3 });
    expect(readFileSync(b, "utf8")).toBe(readFileSync(a, "utf8"));
    const other = join(dir, "seed6.jsonl");
    await generate({ task: taskYaml, split: "test", out: other, backend, temperature: 1, maxNewTokens: 8, seed: 6 });
    expect(readFileSync(other, "utf8")).not.toBe(readFileSync(a, "utf8"));
  });

  it("finds a training run's newest checkpoint and uses the run's prompt format", async () => {
    const run = join(dir, "run");
    const step = join(run, "checkpoints", "step-000004");
    mkdirSync(step, { recursive: true });
    saveCheckpoint(join(step, "policy"), { config: JSON.parse(readFileSync(join(ckpt, "config.json"), "utf8")), tensors: (await import("../src/engine/io/checkpoint.ts")).loadCheckpoint(ckpt).tensors, tokenizerJson: tok.toJson() });
    writeFileSync(join(run, "checkpoints", "latest.json"), JSON.stringify({ step: 4, path: "checkpoints/step-000004" }));
    writeFileSync(join(run, "config.json"), JSON.stringify({ promptSeparator: " <sep>" }));
    expect(resolvePolicyDir(run)).toBe(join(step, "policy"));
    const out = join(dir, "run.jsonl");
    await generate({ task: taskYaml, split: "test", out, limit: 1, backend: { kind: "policy", dir: run, engine: "ts" }, maxNewTokens: 4 });
    const task = await getTask(taskYaml);
    const [rec] = await task.load("test", { limit: 1 });
    expect(readJsonl<any>(out).records[0].query).toBe(task.buildMessages(rec).map((m) => m.content).join("\n") + " <sep>");
  });

  it("the files feed `mpo eval`: llm and policy outputs line up by `prompt` (their `query` renderings differ)", async () => {
    const { loadGenerationFile } = await import("../src/eval/runs.ts");
    const a = join(dir, "pair-llm.jsonl");
    const b = join(dir, "pair-policy.jsonl");
    await generate({ task: taskYaml, split: "test", out: a, limit: 3, backend: { kind: "llm", endpoint: { baseURL: fake.url, model: "fake-model" } } });
    await generate({ task: taskYaml, split: "test", out: b, limit: 3, backend: { kind: "policy", dir: ckpt, engine: "ts" }, maxNewTokens: 4 });
    const sa = loadGenerationFile(a, "llm", { queryField: "prompt" });
    const sb = loadGenerationFile(b, "policy", { queryField: "prompt" });
    expect([...sa.responses.keys()].sort()).toEqual([...sb.responses.keys()].sort());
    expect(sa.responses.size).toBe(3);
    const byQuery = loadGenerationFile(a, "llm");
    expect([...byQuery.responses.keys()][0]).toMatch(/^<\|im_start\|>system/);
  });

  it("a missing or broken checkpoint is a clear error", async () => {
    const out = join(dir, "none.jsonl");
    await expect(generate({ task: taskYaml, split: "test", out, backend: { kind: "policy", dir: join(dir, "nope") } })).rejects.toThrow(/--policy: .*nope does not exist/);
    const empty = join(dir, "empty-ckpt");
    mkdirSync(empty);
    await expect(generate({ task: taskYaml, split: "test", out, backend: { kind: "policy", dir: empty } })).rejects.toThrow(/is not a checkpoint/);
    const broken = join(dir, "broken-ckpt");
    mkdirSync(broken);
    writeFileSync(join(broken, "config.json"), "{}");
    await expect(generate({ task: taskYaml, split: "test", out, backend: { kind: "policy", dir: broken } })).rejects.toThrow(/broken-ckpt\/config\.json: field 'vocab_size'/);
  });
});
