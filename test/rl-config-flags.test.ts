/**
 * `configFromFlags` (src/rl/config.ts): what `mpo train`'s flags mean, as a pure function of the flags the user
 * typed, the config file and the task — the reward policy that used to live in the CLI command. And the CLI
 * reports a task it cannot resolve (typo'd name, broken task config) with that task named, before anything runs.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { configFromFlags, trainConfigSchema } from "../src/rl/config.ts";
import { resolveTask } from "../src/rl/tasks.ts";

const sayWord = await resolveTask("say-word");
const math = await resolveTask("math");
const essay = await resolveTask("essay");

describe("configFromFlags", () => {
  it("maps plain flags onto config keys (nested ones dotted) and flags win over the file", () => {
    const c = configFromFlags({ batch: 8, metaMinInterval: 3, loraR: 16, lr: 0.01 }, { file: { lr: 0.5, steps: 7 }, task: sayWord });
    expect(c).toMatchObject({ batchSize: 8, adaptive: { minInterval: 3 }, lora: { r: 16 }, lr: 0.01, steps: 7 });
  });

  it("--word alone means the task's own reward with that word; a kind in the file or by flag stays", () => {
    expect(configFromFlags({ word: "blue" }, { task: sayWord }).reward).toEqual({ kind: "keyword", word: "blue" });
    expect(configFromFlags({ word: "blue" }, { task: sayWord, file: { reward: { kind: "rule-rubric" } } }).reward).toEqual({ kind: "rule-rubric", word: "blue" });
    expect(configFromFlags({ word: "blue", reward: "rule-rubric" }, { task: sayWord }).reward).toEqual({ kind: "rule-rubric", word: "blue" });
  });

  it("--llm picks the task's judge: math → math-mixed (rubric → guidelines, meta samples → cases per group), essay → judge", () => {
    const m = configFromFlags({ llm: "http://h/v1", model: "j", rubric: "g.txt", metaSamples: 3 }, { task: math });
    expect(m.reward).toEqual({ kind: "math-mixed", rm: { baseURL: "http://h/v1", model: "j" }, guidelines: "g.txt", casesPerGroup: 3 });
    expect(m.mpoInterval).toBe(20); // the math task's meta-step default (the paper's runs)
    const e = configFromFlags({ llm: "http://h/v1", model: "j", rubric: "r.txt", metaSamples: 3 }, { task: essay });
    expect(e.reward).toEqual({ kind: "judge", rm: { baseURL: "http://h/v1", model: "j" }, rubric: "r.txt", metaSamples: 3 });
    expect(e.mpoInterval).toBeUndefined();
  });

  it("judge-only flags (--protocol, --judge-mode, --judge-sees-reference) on a reward with no LLM judge: one clear error, not a schema error", () => {
    for (const [flags, name] of [
      [{ reward: "rule-rubric", word: "blue", protocol: "hardened" }, "--protocol: the 'rule-rubric' reward has no LLM judge"],
      [{ protocol: "paper" }, "--protocol: the 'keyword' reward has no LLM judge"], // say-word's own reward
      [{ reward: "verifier", judgeMode: "single-call" }, "--judge-mode: the 'verifier' reward has no LLM judge"],
      [{ reward: "keyword", judgeSeesReference: true }, "--judge-sees-reference: the 'keyword' reward has no LLM judge"],
    ] as const)
      expect(() => configFromFlags(flags, { task: sayWord }), name).toThrow(name);
    // A judge task without --llm: the task's own error (give the judge), not the flag's.
    expect(() => configFromFlags({ protocol: "hardened" }, { task: essay })).toThrow(/task essay is scored by an LLM judge.*--llm URL --model NAME/);
    // With a judge the flags apply as before; math-mixed takes --protocol too.
    expect(configFromFlags({ llm: "http://h/v1", model: "j", protocol: "hardened", judgeMode: "single-call" }, { task: essay }).reward).toMatchObject({ kind: "judge", protocol: "hardened", mode: "single-call" });
    expect(configFromFlags({ llm: "http://h/v1", model: "j", protocol: "hardened" }, { task: math }).reward).toMatchObject({ kind: "math-mixed", protocol: "hardened" });
    expect(() => configFromFlags({ llm: "http://h/v1", model: "j", judgeMode: "single-call" }, { task: math })).toThrow(/--judge-mode: the 'math-mixed' reward/);
  });

  it("a task's meta-step default yields to --mpo-interval, --no-mpo and the file", () => {
    expect(configFromFlags({ llm: "http://h/v1", model: "j", mpoInterval: 5 }, { task: math }).mpoInterval).toBe(5);
    expect(configFromFlags({ llm: "http://h/v1", model: "j", mpo: false }, { task: math }).mpoInterval).toBe(0);
    expect(configFromFlags({ llm: "http://h/v1", model: "j" }, { task: math, file: { mpoInterval: 7 } }).mpoInterval).toBe(7);
  });

  it("say-word's fresh-policy defaults (batch 32, lr 3e-3) apply without --policy and yield to flags and the file", () => {
    expect(trainConfigSchema.parse(configFromFlags({}, { task: sayWord }))).toMatchObject({ batchSize: 32, lr: 3e-3 });
    expect(configFromFlags({ batch: 4 }, { task: sayWord })).toMatchObject({ batchSize: 4, lr: 3e-3 });
    expect(configFromFlags({}, { task: sayWord, file: { lr: 1e-4 } })).toMatchObject({ batchSize: 32, lr: 1e-4 });
    // A pretrained policy (flag or file) keeps the general defaults (8 prompts, lr "auto" = the paper's 3e-6).
    expect(trainConfigSchema.parse(configFromFlags({ policy: "/p" }, { task: sayWord }))).toMatchObject({ batchSize: 8, lr: "auto" });
    expect(configFromFlags({}, { task: sayWord, file: { policy: "/p" } }).batchSize).toBeUndefined();
    // Other tasks have none.
    expect(configFromFlags({ llm: "http://h/v1", model: "j" }, { task: essay }).batchSize).toBeUndefined();
  });

  it("a gguf: judge needs no model name; the senior judge defaults to the junior's endpoint", () => {
    expect(configFromFlags({ llm: "gguf:/m.gguf" }, { task: essay }).reward).toEqual({ kind: "judge", rm: { baseURL: "gguf:/m.gguf", model: "gguf" } });
    const c = configFromFlags({ llm: "http://a/v1", model: "j", mrmModel: "big", server: "vllm" }, { task: essay });
    expect(c.reward).toMatchObject({ rm: { baseURL: "http://a/v1", model: "j", server: "vllm" }, mrm: { baseURL: "http://a/v1", model: "big", server: "vllm" } });
  });

  it("parsed --data-file and --log-to values land in data and logTo; the result validates", () => {
    const c = configFromFlags({ dataFile: { train: "/d/train.jsonl" }, logTo: ["tensorboard"], word: "x" }, { task: sayWord, file: { data: { test: "/d/t.jsonl" } } });
    expect(c.data).toEqual({ train: "/d/train.jsonl" }); // the flag replaces the file's data, as before
    expect(trainConfigSchema.parse(c)).toMatchObject({ logTo: ["tensorboard"], reward: { kind: "keyword", word: "x" } });
  });

  it("on --resume only run-independent flags apply; reward flags never touch the saved config", () => {
    const saved = { task: "say-word", reward: { kind: "keyword", word: "blue" }, steps: 4 };
    expect(configFromFlags({ steps: 10, engine: "ts", word: "red", run: "elsewhere" }, { file: saved, resume: true })).toEqual({ ...saved, steps: 10, engine: "ts" });
  });

  it("is pure: the inputs are not modified", () => {
    const file = { reward: { kind: "judge", rm: { baseURL: "http://a/v1", model: "x" } } };
    const flags = { model: "y" };
    configFromFlags(flags, { file, task: essay });
    expect(file).toEqual({ reward: { kind: "judge", rm: { baseURL: "http://a/v1", model: "x" } } });
    expect(flags).toEqual({ model: "y" });
  });
});

describe("mpo train: a task it cannot resolve is reported, naming it", () => {
  const repo = resolve(import.meta.dirname, "..");
  const dir = mkdtempSync(join(tmpdir(), "mpo-train-task-"));
  const train = (...args: string[]) => spawnSync(process.execPath, ["--import", "tsx", join(repo, "src/cli/main.ts"), "train", ...args], { cwd: repo, encoding: "utf8", timeout: 60_000 });

  it("a typo'd task name: exit 2, the name and the known tasks, no run directory", () => {
    const run = join(dir, "typo");
    const r = train("--task", "essya", "--llm", "http://127.0.0.1:9/v1", "--model", "m", "--run", run);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/unknown task 'essya' \(known: essay/);
    expect(existsSync(run)).toBe(false);
  });

  it("a broken task config file: exit 2 naming the file", () => {
    const cfg = join(dir, "broken.yaml");
    writeFileSync(cfg, "name: broken\n  prompt: [unclosed\n");
    const run = join(dir, "broken");
    const r = train("--task", cfg, "--word", "hi", "--run", run);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain(cfg);
    expect(existsSync(run)).toBe(false);
  });
});
