/**
 * Run-directory safety of `mpo train` (issue #11 item 7): training never deletes or truncates existing run
 * data. Each case first builds the situation that used to lose data (missing latest.json, a truncated
 * newest checkpoint, --run on a directory with files, resume without any checkpoint) and checks that the
 * records survive — in place or in moved-aside/ — and the run continues from the newest verifiable state.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findResumePoint, verifyCheckpoint } from "../src/rl/checkpointing.ts";
import { trainConfigSchema, type TrainConfigInput } from "../src/rl/config.ts";
import { createReward, resolveTask } from "../src/rl/reward-factory.ts";
import { Trainer } from "../src/rl/trainer.ts";
import { readJsonl } from "../src/util/atomic.ts";

const root = mkdtempSync(join(tmpdir(), "mpo-rundir-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const tiny: TrainConfigInput = {
  batchSize: 4,
  maxNewTokens: 4,
  maxPromptTokens: 10,
  init: { maxPositions: 16, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32 },
  engine: "ts",
  algo: "grpo",
  groupSize: 2,
  mpoInterval: 2,
  reward: { kind: "rule-rubric", word: "blue" },
  checkpointEvery: 1,
  keepCheckpoints: 3,
  seed: 4,
};

async function train(runDir: string, steps: number, o: { resume?: boolean; overwrite?: boolean; lora?: boolean } = {}) {
  const config = trainConfigSchema.parse({ ...tiny, steps, ...(o.lora ? { lora: { enabled: true, r: 2, alpha: 4 } } : {}) });
  const task = await resolveTask(config.task);
  const log: string[] = [];
  const t = await Trainer.open({
    config,
    runDir,
    task,
    resume: o.resume,
    overwrite: o.overwrite,
    makeReward: (d) => createReward(config.reward!, { runDir: d, task, seed: config.seed }),
    hooks: { progress: false, log: (l) => log.push(l) },
  });
  await t.run();
  return log;
}

const steps = (runDir: string) => readJsonl<{ step: number }>(join(runDir, "metrics.jsonl")).records.map((r) => r.step);
const movedAside = (runDir: string, name: string): string[] =>
  existsSync(join(runDir, "moved-aside"))
    ? readdirSync(join(runDir, "moved-aside"), { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(name)).map((f) => join(runDir, "moved-aside", f))
    : [];
const lines = (p: string) => readFileSync(p, "utf8").split("\n").filter(Boolean).length;

describe("--resume picks the newest verifiable checkpoint", { timeout: 120_000 }, () => {
  it("latest.json missing: scans checkpoints/, continues after step 4, nothing lost or repeated", async () => {
    const run = join(root, "no-latest");
    await train(run, 4);
    rmSync(join(run, "checkpoints", "latest.json"));
    const before = readFileSync(join(run, "metrics.jsonl"), "utf8");
    expect(findResumePoint(run)).toMatchObject({ step: 4, path: "checkpoints/step-000004" });
    const log = await train(run, 6, { resume: true });
    expect(log.join("\n")).toMatch(/latest\.json is missing/);
    expect(log.join("\n")).toMatch(/using checkpoints\/step-000004/);
    expect(steps(run)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(readdirSync(join(run, "rollouts")).length).toBe(6);
    // Steps 1–4 are the original records (same timestamps), not a re-run from step 0.
    expect(readFileSync(join(run, "metrics.jsonl"), "utf8").startsWith(before)).toBe(true);
  });

  it("a truncated newest checkpoint is skipped for the intact earlier one, and says so; the newer records move aside", async () => {
    const run = join(root, "truncated");
    await train(run, 4);
    const model = join(run, "checkpoints", "step-000004", "policy", "model.safetensors");
    truncateSync(model, Math.floor(statSync(model).size / 2));
    expect(verifyCheckpoint(run, 4)).toMatch(/model\.safetensors has \d+ bytes/);
    const log = await train(run, 6, { resume: true });
    expect(log.join("\n")).toMatch(/skipped checkpoints\/step-000004: policy\/model\.safetensors has/);
    expect(log.join("\n")).toMatch(/using checkpoints\/step-000003/);
    expect(steps(run)).toEqual([1, 2, 3, 4, 5, 6]);
    // The step-4 records of the abandoned attempt are kept aside, not deleted.
    const old = movedAside(run, "metrics.jsonl");
    expect(old).toHaveLength(1);
    expect(lines(old[0])).toBe(4);
    expect(movedAside(run, "step-000004.jsonl")).toHaveLength(1);
  });

  it("a corrupt trainer state names the file and field", async () => {
    const run = join(root, "bad-state");
    await train(run, 2);
    const p = join(run, "checkpoints", "step-000002", "policy", "trainer_state.json");
    const s = JSON.parse(readFileSync(p, "utf8"));
    s.cursor.epoch = "zero";
    writeFileSync(p, JSON.stringify(s));
    // The manifest no longer matches, so step 2 is skipped for step 1 …
    expect(findResumePoint(run)).toMatchObject({ step: 1 });
    // … and with a manifest that matches the edit, the schema names the field.
    const { writeManifest } = await import("../src/rl/checkpointing.ts");
    writeManifest(run, 2);
    await expect(train(run, 3, { resume: true })).rejects.toThrow(/trainer_state\.json: field 'cursor\.epoch'/);
  });

  it("no checkpoint at all: starts over from step 0 and moves the earlier records aside", async () => {
    const run = join(root, "no-checkpoint");
    await train(run, 3);
    rmSync(join(run, "checkpoints"), { recursive: true });
    const log = await train(run, 2, { resume: true });
    expect(log.join("\n")).toMatch(/no checkpoint that verifies; starting over/);
    expect(steps(run)).toEqual([1, 2]);
    expect(lines(movedAside(run, "metrics.jsonl")[0])).toBe(3);
  });

  it("the same for a LoRA run: it says it starts over, and the earlier records move aside", async () => {
    const run = join(root, "no-checkpoint-lora");
    await train(run, 2, { lora: true });
    rmSync(join(run, "checkpoints"), { recursive: true });
    const log = await train(run, 1, { resume: true, lora: true });
    expect(log.join("\n")).toMatch(/no checkpoint that verifies; starting over/);
    expect(steps(run)).toEqual([1]);
    expect(lines(movedAside(run, "metrics.jsonl")[0])).toBe(2);
  });
});

describe("a new run never takes over a directory with data", () => {
  it("--run on a non-empty directory without a run refuses and changes nothing; --overwrite moves the files aside", { timeout: 60_000 }, async () => {
    const run = join(root, "occupied");
    mkdirSync(join(run, "rollouts"), { recursive: true });
    writeFileSync(join(run, "metrics.jsonl"), '{"step":1}\n{"step":2}\n');
    writeFileSync(join(run, "rollouts", "step-000001.jsonl"), "{}\n");
    writeFileSync(join(run, "notes.txt"), "mine");
    await expect(train(run, 1)).rejects.toThrow(/not empty .*--overwrite/);
    expect(readFileSync(join(run, "metrics.jsonl"), "utf8")).toBe('{"step":1}\n{"step":2}\n');
    expect(readdirSync(run).sort()).toEqual(["metrics.jsonl", "notes.txt", "rollouts"]);

    const log = await train(run, 1, { overwrite: true });
    expect(log.join("\n")).toMatch(/moved the previous contents/);
    expect(steps(run)).toEqual([1]);
    expect(readFileSync(movedAside(run, "notes.txt")[0], "utf8")).toBe("mine");
    expect(lines(movedAside(run, "metrics.jsonl")[0])).toBe(2);
  });

  it("a directory that holds a run asks for --resume", { timeout: 60_000 }, async () => {
    const run = join(root, "has-run");
    await train(run, 1);
    await expect(train(run, 2)).rejects.toThrow(/already holds a run .*--resume/);
  });
});
