/**
 * End-to-end RL on the built-in say-word task with a tiny freshly initialized policy: under PPO and GRPO
 * the mean keyword reward must rise clearly within a bounded number of steps. Plus the robustness rules:
 * samples without a score are excluded (never NaN), a step with no usable score is skipped and logged,
 * and an in-process stop + resume reproduces the uninterrupted run exactly.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { trainConfigSchema, type TrainConfigInput } from "../src/rl/config.ts";
import { createReward, resolveTask } from "../src/rl/reward-factory.ts";
import type { RewardFunction, RewardResult, RewardSample } from "../src/rl/reward-types.ts";
import { KeywordReward } from "../src/rl/rewards/keyword.ts";
import { Trainer, type StepMetrics } from "../src/rl/trainer.ts";
import { readJsonl } from "../src/util/atomic.ts";
import { llamaConfig, TransformerLM } from "../src/engine/index.ts";
import { loadCheckpoint, saveCheckpoint } from "../src/engine/io/checkpoint.ts";
import { builtinTokenizer } from "../src/rl/builtin-task.ts";
import { Rng } from "../src/util/rng.ts";
import { BpeTokenizer } from "../src/tokenizer/index.ts";
import type { TaskDefinition } from "../src/tasks/types.ts";

const root = mkdtempSync(join(tmpdir(), "mpo-rl-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const tiny: TrainConfigInput = {
  batchSize: 8,
  maxNewTokens: 6,
  maxPromptTokens: 10,
  init: { maxPositions: 16, hiddenSize: 32, numLayers: 1, numHeads: 2, intermediateSize: 64 },
  lr: 3e-3,
  mpoInterval: 0,
  engine: "ts",
  reward: { kind: "keyword", word: "blue" },
};

async function train(name: string, over: TrainConfigInput, reward?: RewardFunction, resume = false, onStep?: (m: StepMetrics, t: Trainer) => void) {
  const config = trainConfigSchema.parse({ ...tiny, ...over });
  const task = await resolveTask(config.task);
  const runDir = join(root, name);
  const log: string[] = [];
  let trainer: Trainer;
  trainer = await Trainer.open({
    config,
    runDir,
    task,
    resume,
    makeReward: (d) => reward ?? createReward(config.reward!, { runDir: d, task, seed: config.seed }),
    hooks: { progress: false, log: (l) => log.push(l), onStep: (m) => onStep?.(m, trainer) },
  });
  const result = await trainer.run();
  const metrics = readJsonl<StepMetrics>(join(runDir, "metrics.jsonl")).records;
  return { result, metrics, log, runDir };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe("RL end to end: a tiny policy learns to say the keyword", () => {
  for (const algo of ["ppo", "grpo"] as const) {
    it(`${algo}: mean reward rises clearly within 30 steps`, async () => {
      const { metrics } = await train(`learn-${algo}`, { algo, steps: 30, ...(algo === "grpo" ? { batchSize: 4, groupSize: 4 } : {}) });
      expect(metrics.map((m) => m.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
      const first = mean(metrics.slice(0, 5).map((m) => m.score.mean));
      const last = mean(metrics.slice(-5).map((m) => m.score.mean));
      // A random policy says "blue" about 1 word in 25; the trained one mostly says it.
      expect(first).toBeLessThan(0.25);
      expect(last).toBeGreaterThan(first + 0.4);
      for (const m of metrics) for (const v of [m.kl, m.entropy, m.policyLoss, m.valueLoss, m.approxKl, m.clipFrac]) expect(Number.isFinite(v)).toBe(true);
    }, 120_000);
  }
});

/** Keyword reward whose judge "fails" on some samples (score null), or on all of them at chosen steps. */
class FlakyReward implements RewardFunction {
  readonly name = "flaky";
  private inner = new KeywordReward("blue");
  constructor(private readonly deadSteps: Set<number>) {}
  async score(samples: RewardSample[], ctx: { step: number }): Promise<RewardResult[]> {
    const r = await this.inner.score(samples);
    if (this.deadSteps.has(ctx.step)) return r.map(() => ({ score: null, normalized: null, flags: ["judge-unavailable"] }));
    return r.map((x, i) => (i % 3 === 0 ? { score: null, normalized: null, flags: ["judge-unavailable"] } : i % 3 === 1 && i % 2 === 0 ? { ...x, score: NaN } : x));
  }
  rubricVersion(): number {
    return 0;
  }
}

describe("unusable scores", () => {
  for (const algo of ["ppo", "grpo", "rloo"] as const) {
    it(`${algo}: excluded and counted; a step without any usable score is skipped and logged`, async () => {
      const { metrics, log } = await train(`flaky-${algo}`, { algo, steps: 4, batchSize: 6, ...(algo === "ppo" ? {} : { batchSize: 3, groupSize: 4 }) }, new FlakyReward(new Set([3])));
      expect(metrics).toHaveLength(4);
      const n = algo === "ppo" ? 6 : 12;
      // i%3==0 → null; i%3==1 && even → NaN: both unusable
      const bad = Array.from({ length: n }, (_, i) => i % 3 === 0 || (i % 3 === 1 && i % 2 === 0)).filter(Boolean).length;
      expect(metrics[0].excluded).toBe(bad);
      expect(metrics[2].excluded).toBe(n);
      expect(metrics[2].skipped).toMatch(/no sample has a usable score/);
      expect(log.some((l) => /step 3 skipped/.test(l))).toBe(true);
      const text = readFileSync(join(root, `flaky-${algo}`, "metrics.jsonl"), "utf8");
      expect(text).not.toMatch(/NaN|null,"kl"/);
      for (const m of metrics) for (const v of [m.kl, m.entropy, m.policyLoss, m.valueLoss, m.score.mean]) expect(Number.isFinite(v)).toBe(true);
      const rollouts = readJsonl<{ score: number | null; flags: string[] }>(join(root, `flaky-${algo}`, "rollouts", "step-000001.jsonl")).records;
      expect(rollouts).toHaveLength(n);
      expect(rollouts.filter((r) => r.score === null)).toHaveLength(bad);
    }, 60_000);
  }
});

describe("stop and resume in process", () => {
  it("a run stopped after step 3 and resumed reproduces the uninterrupted run (data order, RNG, optimizer, rubric)", async () => {
    const over: TrainConfigInput = { algo: "ppo", steps: 6, mpoInterval: 2, reward: { kind: "rule-rubric", word: "blue" }, batchSize: 4, miniBatches: 2 };
    const full = await train("full", over);
    const part = await train("part", over, undefined, false, (m, t) => {
      if (m.step === 3) t.requestStop();
    });
    expect(part.result.state).toBe("stopped");
    expect(part.metrics).toHaveLength(3);
    expect(part.log.some((l) => /--resume/.test(l))).toBe(true);
    const status = JSON.parse(readFileSync(join(part.runDir, "status.json"), "utf8"));
    expect(status).toMatchObject({ state: "stopped", step: 3 });
    const resumed = await train("part", over, undefined, true);
    expect(resumed.result.state).toBe("finished");
    const strip = (m: StepMetrics) => ({ ...m, time: 0, seconds: 0, llm: 0 });
    expect(resumed.metrics.map(strip)).toEqual(full.metrics.map(strip));
    const versions = (dir: string) =>
      readJsonl<{ step: number; rubricVersion: number }>(join(dir, "metrics.jsonl")).records.map((m) => m.rubricVersion);
    expect(versions(resumed.runDir)).toEqual(versions(full.runDir));
    expect(Math.max(...versions(full.runDir))).toBeGreaterThanOrEqual(2);
  }, 120_000);
});

describe("second Ctrl-C", () => {
  it("abandons the step in progress: nothing of it is written, the last checkpoint stands, resume redoes it", async () => {
    let trainer: Trainer | undefined;
    const inner = new KeywordReward("blue");
    const reward: RewardFunction = {
      name: "interrupting",
      rubricVersion: () => 0,
      async score(samples, ctx) {
        if (ctx.step === 3) {
          trainer!.requestStop();
          trainer!.requestStop();
        }
        return inner.score(samples);
      },
    };
    const config = trainConfigSchema.parse({ ...tiny, steps: 5 });
    const task = await resolveTask(config.task);
    const runDir = join(root, "abandon");
    trainer = await Trainer.open({ config, runDir, task, makeReward: () => reward, hooks: { progress: false, log: () => {} } });
    const r = await trainer.run();
    expect(r).toMatchObject({ state: "stopped", step: 2 });
    expect(readJsonl<StepMetrics>(join(runDir, "metrics.jsonl")).records.map((m) => m.step)).toEqual([1, 2]);
    expect(existsSync(join(runDir, "rollouts", "step-000003.jsonl"))).toBe(false);
    expect(JSON.parse(readFileSync(join(runDir, "checkpoints", "latest.json"), "utf8")).step).toBe(2);
    const resumed = await train("abandon", { steps: 5 }, undefined, true);
    expect(resumed.metrics.map((m) => m.step)).toEqual([1, 2, 3, 4, 5]);
    const full = await train("abandon-full", { steps: 5 });
    const strip = (m: StepMetrics) => ({ ...m, time: 0, seconds: 0, llm: 0 });
    expect(resumed.metrics.map(strip)).toEqual(full.metrics.map(strip));
  }, 60_000);
});

describe("policy from a checkpoint, shared critic, RLOO", () => {
  it("--policy DIR: trains from a saved checkpoint (tokenizer from tokenizer.json), the reference stays frozen", async () => {
    const dir = join(root, "init-policy");
    const tok = builtinTokenizer();
    const config = llamaConfig({ vocabSize: tok.vocabSize, hiddenSize: 16, intermediateSize: 32, numLayers: 1, numHeads: 2, maxPositions: 16, tieEmbeddings: true, eosTokenId: tok.eosId, bosTokenId: tok.bosId });
    const m = TransformerLM.create(config, new Rng(9), { engine: "ts" });
    saveCheckpoint(dir, { config, tensors: m.namedTensors(), tokenizerJson: tok.toJSON() });
    const { metrics, runDir } = await train("from-ckpt", { algo: "rloo", groupSize: 2, batchSize: 4, steps: 3, policy: dir, lr: 1e-2 });
    expect(metrics.map((x) => x.step)).toEqual([1, 2, 3]);
    const ref = loadCheckpoint(join(runDir, "reference"));
    expect(Array.from(ref.tensors.get("model.embed_tokens.weight")!.data)).toEqual(Array.from(m.namedTensors().get("model.embed_tokens.weight")!.data));
    const pol = loadCheckpoint(join(runDir, "checkpoints", "step-000003", "policy"));
    expect(Array.from(pol.tensors.get("model.embed_tokens.weight")!.data)).not.toEqual(Array.from(ref.tensors.get("model.embed_tokens.weight")!.data));
    expect(metrics[2].kl).not.toBe(0);
  }, 60_000);

  it("any task + a BPE policy checkpoint (general tokenizer path): GRPO runs on a custom task with a length reward", async () => {
    const texts = ["write a short poem about the sea", "describe a cat in one line", "the sea is blue and the cat is grey"];
    const bpe = BpeTokenizer.train(texts, { vocabSize: 300 });
    const eos = bpe.specialId("<|endoftext|>")!;
    const dir = join(root, "bpe-policy");
    const config = llamaConfig({ vocabSize: bpe.vocabSize, hiddenSize: 16, intermediateSize: 32, numLayers: 1, numHeads: 2, maxPositions: 48, tieEmbeddings: true, eosTokenId: eos });
    saveCheckpoint(dir, { config, tensors: TransformerLM.create(config, new Rng(2), { engine: "ts" }).namedTensors(), tokenizerJson: bpe.toJson() });
    const task: TaskDefinition = {
      name: "custom-poems",
      description: "Write what the user asks for.",
      load: async () => texts.map((prompt, i) => ({ id: `p${i}`, prompt })),
      buildMessages: (r) => [{ role: "user", content: r.prompt }],
      reward: { kind: "custom", name: "length" },
      evaluations: [],
    };
    const cfg = trainConfigSchema.parse({ ...tiny, algo: "grpo", groupSize: 2, batchSize: 2, steps: 2, policy: dir, maxNewTokens: 8, maxPromptTokens: 32, promptSeparator: "\nAnswer:", reward: { kind: "length", min: 2, max: 6 } });
    const runDir = join(root, "bpe-run");
    const t = await Trainer.open({ config: cfg, runDir, task, makeReward: (d) => createReward(cfg.reward!, { runDir: d, task, seed: 0 }), hooks: { progress: false, log: () => {} } });
    await t.run();
    const rollouts = readJsonl<{ prompt: string; response: string; score: number }>(join(runDir, "rollouts", "step-000002.jsonl")).records;
    expect(rollouts).toHaveLength(4);
    expect(rollouts.every((r) => typeof r.response === "string" && Number.isFinite(r.score))).toBe(true);
    expect(loadCheckpoint(join(runDir, "reference")).tokenizerJson).toEqual(JSON.parse(JSON.stringify(bpe.toJson())));
  }, 60_000);

  it("PPO with the value head on the policy (critic: shared) trains and checkpoints one model", async () => {
    const { metrics, runDir } = await train("shared", { algo: "ppo", critic: "shared", steps: 3 });
    expect(metrics).toHaveLength(3);
    expect(metrics.every((x) => Number.isFinite(x.valueLoss) && x.valueLoss > 0)).toBe(true);
    expect(existsSync(join(runDir, "checkpoints", "step-000003", "critic"))).toBe(false);
    expect(loadCheckpoint(join(runDir, "checkpoints", "step-000003", "policy")).tensors.has("value_head.weight")).toBe(true);
  }, 60_000);
});

/** Keyword reward with a scripted meta step that records when it runs and what it was given. */
class RecordingMetaReward implements RewardFunction {
  readonly name = "recording";
  events: string[] = [];
  batches: number[] = [];
  private version = 0;
  private inner = new KeywordReward("blue");
  async score(samples: RewardSample[], ctx: { step: number }): Promise<RewardResult[]> {
    this.events.push(`score:${ctx.step}`);
    return this.inner.score(samples);
  }
  rubricVersion(): number {
    return this.version;
  }
  async metaStep(rollouts: Array<RewardSample & { result: RewardResult }>, ctx: { step: number }) {
    this.events.push(`meta-start:${ctx.step}`);
    this.batches.push(rollouts.length);
    await new Promise((r) => setImmediate(r));
    const from = this.version++;
    this.events.push(`meta-end:${ctx.step}`);
    return { ok: true, fromVersion: from, toVersion: this.version, summary: `rubric v${from} → v${this.version}: 1 items (+0, −0)`, itemsBefore: 1, itemsAfter: 1, added: 0, removed: 0 };
  }
}

describe("MPO schedule", () => {
  it("meta step every mpoInterval steps on the rollouts since the last one; it overlaps the next step's generation and is awaited before its scoring", async () => {
    const reward = new RecordingMetaReward();
    const { metrics, log } = await train("schedule", { steps: 7, mpoInterval: 3, batchSize: 4 }, reward, false, (m) => reward.events.push(`committed:${m.step}`));
    // The meta step starts when step 3 commits and is still running when the trainer moves on to step 4
    // (whose generation runs before the meta step's first await returns); step 4 scores only after it ended.
    expect(reward.events).toEqual([
      "score:1", "committed:1", "score:2", "committed:2", "score:3", "meta-start:3", "committed:3", "meta-end:3", "score:4", "committed:4",
      "score:5", "committed:5", "score:6", "meta-start:6", "committed:6", "meta-end:6", "score:7", "committed:7",
    ]);
    expect(reward.batches).toEqual([12, 12]);
    expect(metrics.map((m) => m.rubricVersion)).toEqual([0, 0, 0, 1, 1, 1, 2]);
    expect(metrics[3].meta).toMatchObject({ ok: true, fromVersion: 0, toVersion: 1 });
    expect(metrics[6].meta).toMatchObject({ fromVersion: 1, toVersion: 2 });
    expect(metrics.filter((m) => m.meta)).toHaveLength(2);
    expect(log).toContain("mpo: step 4: rubric v0 → v1: 1 items (+0, −0)");
  }, 60_000);

  it("--no-mpo (mpoInterval 0) never calls the meta step", async () => {
    const reward = new RecordingMetaReward();
    await train("no-mpo", { steps: 4, mpoInterval: 0, batchSize: 4 }, reward);
    expect(reward.events.filter((e) => e.startsWith("meta"))).toEqual([]);
  }, 60_000);
});

describe("config", () => {
  it("errors name the field before anything starts", () => {
    expect(() => trainConfigSchema.parse({ algo: "grpo", groupSize: 1 })).toThrow(/groupSize/);
    expect(() => trainConfigSchema.parse({ klEstimator: "k2" })).toThrow(/klEstimator/);
    expect(() => trainConfigSchema.parse({ maxNewTokens: 60, maxPromptTokens: 48 })).toThrow(/maxNewTokens/);
    expect(() => trainConfigSchema.parse({ stepz: 3 })).toThrow(/stepz/);
  });
});
