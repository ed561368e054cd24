/**
 * The trainer's configuration: one zod schema, every default in one place (the paper's PPO run where it
 * applies), validated before anything starts so a typo fails with the field named instead of an hour in.
 * `mpo train --config FILE` reads this shape (YAML/JSON); every flag of the CLI maps onto one key.
 * The resolved object (defaults filled in) is written to RUN/config.json.
 */
import { dataConfigSchema } from "../tasks/data-files.ts";
import { TRACKER_KINDS } from "../track/index.ts";
import { z } from "zod";
import { LORA_TARGETS } from "../engine/model.ts";
import { llmEndpointSchema } from "../llm/config.ts";
import { type GuardOptions, guardConfigSchema } from "../meta/guard.ts";
import { type AdaptiveOptions, adaptiveConfigSchema, adaptiveOptions } from "../meta/triggers.ts";
import type { GenerationSettings } from "../engine/generation-settings.ts";
import type { TaskDefinition } from "../tasks/types.ts";
import { UserError } from "../util/errors.ts";
import { deepMerge } from "../config/load.ts";

const positiveInt = z.number().int().min(1);

/** Architecture of a freshly initialized policy (when no --policy checkpoint is given). */
export const policyInitSchema = z
  .object({
    hiddenSize: positiveInt.default(32),
    numLayers: positiveInt.default(2),
    numHeads: positiveInt.default(2),
    intermediateSize: positiveInt.default(64),
    maxPositions: positiveInt.default(64),
    tieEmbeddings: z.boolean().default(true),
  })
  .strict();

export const rewardSchema = z.discriminatedUnion("kind", [
  /** Fraction of response words equal to the target word (built-in task). */
  z.object({ kind: z.literal("keyword"), word: z.string().min(1).optional() }).strict(),
  z.object({ kind: z.literal("length"), min: z.number().int().min(0), max: z.number().int().min(1) }).strict(),
  /** Rule judge with a rubric in the run dir and a rule-based meta step (offline MPO). */
  z.object({ kind: z.literal("rule-rubric"), word: z.string().min(1).optional(), maxAvoid: positiveInt.default(8) }).strict(),
  /** Rule verifier: last \\boxed{} answer vs the gold answer, or the <verdict> tag vs the label. */
  z.object({ kind: z.literal("verifier"), verifier: z.enum(["boxed", "verdict"]) }).strict(),
  /**
   * The paper's math reward: per step a seeded coin picks the exact answer check (5/0) or the LLM
   * plan/execute judge with grouped guidelines (0–5); the meta step rewrites the guidelines per group.
   */
  z
    .object({
      kind: z.literal("math-mixed"),
      rm: llmEndpointSchema,
      mrm: llmEndpointSchema.optional(),
      /** JSON GuidelineSet {groups: {key: text}}; default: no guidelines until the first meta step. */
      guidelines: z.string().min(1).optional(),
      answerCheckProbability: z.number().min(0).max(1).default(0.5),
      minReasoningWords: z.number().int().min(0).default(30),
      /** Judge protocol profile (src/judge/protocol.ts): paper (default) or hardened. */
      protocol: z.enum(["paper", "hardened"]).default("paper"),
      /** Which \\boxed{} is the answer; default: the profile's (paper: first, as the reference). */
      answerBox: z.enum(["first", "last"]).optional(),
      /** Answer matching; default: the profile's (paper: the reference's normalisation; lenient: also equal rationals). */
      answerMatch: z.enum(["reference", "lenient"]).optional(),
      /** Cases per group, drawn uniformly; default: the profile's sampling (paper: 2 per score third). */
      casesPerGroup: positiveInt.optional(),
      concurrency: positiveInt.default(16),
    })
    .strict(),
  /** The paper's setup: LLM junior judge (RM) over a rubric, LLM senior judge (MRM) for meta steps. */
  z
    .object({
      kind: z.literal("judge"),
      rm: llmEndpointSchema,
      /** Senior judge; default: the same endpoint as rm. */
      mrm: llmEndpointSchema.optional(),
      /** Initial rubric: a file (.txt <rubric> form or .json) or a task name; default: the task's initial rubric. */
      rubric: z.string().min(1).optional(),
      mode: z.enum(["per-item", "single-call"]).default("per-item"),
      /** Judge protocol profile (src/judge/protocol.ts): paper (default) or hardened. */
      protocol: z.enum(["paper", "hardened"]).default("paper"),
      /** Let the junior judge see the reference answer (e.g. the gold summary); default: the profile's (paper: no). */
      judgeSeesReference: z.boolean().optional(),
      /** Show the senior judge the junior's per-item rationales; default: the profile's (paper: the total only). */
      showRationales: z.boolean().optional(),
      metaSamples: positiveInt.default(20),
      prescreen: z.boolean().default(false),
      concurrency: positiveInt.default(16),
    })
    .strict(),
]);
export type RewardConfig = z.output<typeof rewardSchema>;

export const trainConfigSchema = z
  .object({
    algo: z.enum(["ppo", "grpo", "rloo"]).default("ppo"),
    /** A built-in task ("say-word") or a registered task name. */
    task: z.string().min(1).default("say-word"),
    dataDir: z.string().optional(),
    /**
     * Task data per split: a local file (`--data-file train=PATH`), or — written by the trainer CLI — the exact
     * source the run resolved (a Hub dataset pinned to its commit, or a file), so --resume reads the same rows.
     */
    data: dataConfigSchema.optional(),
    /** Experiment trackers fed from the run directory (src/track): tensorboard, wandb, mlflow. */
    logTo: z.array(z.enum(TRACKER_KINDS)).optional(),
    /** Limit the number of training records (0 = all). */
    limit: z.number().int().min(0).default(0),
    /** Policy checkpoint directory (config.json, model.safetensors, tokenizer.json); absent → fresh init. */
    policy: z.string().optional(),
    init: policyInitSchema.default(policyInitSchema.parse({})),
    /** PPO critic: a separate value model initialized from the policy (the paper) or a head on the policy. */
    critic: z.enum(["separate", "shared"]).default("separate"),
    /**
     * LoRA (the paper: r 64, α 128, dropout 0.05 on all attention + MLP projections): the base is frozen, only
     * adapters (+ value head) train; the KL reference is the base with adapters off. See docs/training.md.
     */
    lora: z
      .object({
        enabled: z.boolean().default(false),
        r: positiveInt.default(64),
        alpha: z.number().positive().default(128),
        dropout: z.number().min(0).lt(1).default(0.05),
        targets: z.array(z.enum(LORA_TARGETS)).min(1).default([...LORA_TARGETS]),
      })
      .strict()
      .default({ enabled: false, r: 64, alpha: 128, dropout: 0.05, targets: [...LORA_TARGETS] }),
    /** Absent: what the task's reward recipe asks for (see defaultRewardFor in reward-factory.ts). */
    reward: rewardSchema.optional(),
    run: z.string().optional(),
    seed: z.number().int().default(0),
    steps: positiveInt.default(100),
    /** Prompts per step; each gets groupSize responses. */
    batchSize: positiveInt.default(8),
    /** Responses per prompt (GRPO/RLOO need ≥ 2); default 1 for PPO, 4 otherwise. */
    groupSize: positiveInt.optional(),
    miniBatches: positiveInt.default(1),
    ppoEpochs: positiveInt.default(4),
    /** Learning rate; "auto": 3e-6 (the paper, for a pretrained LLM) when --policy is given, 1e-3 for a fresh tiny policy. */
    lr: z.union([z.number().positive(), z.literal("auto")]).default("auto"),
    criticLr: z.number().positive().optional(),
    weightDecay: z.number().min(0).default(0),
    maxGradNorm: z.number().positive().default(1),
    warmupSteps: z.number().int().min(0).default(0),
    /** After warmup: constant (default; keeps `--resume --steps N` extensions exact) or decay over `steps` to 0 (TRL's linear default). */
    lrDecay: z.enum(["constant", "linear", "cosine"]).default("constant"),
    klCoef: z.number().min(0).default(0.02),
    klEstimator: z.enum(["k1", "k3"]).default("k1"),
    cliprange: z.number().positive().default(0.2),
    cliprangeValue: z.number().positive().default(0.2),
    vfCoef: z.number().min(0).default(0.1),
    gamma: z.number().min(0).max(1).default(1),
    lam: z.number().min(0).max(1).default(0.95),
    whitenRewards: z.boolean().default(false),
    /** Subtracted from the score of a response that hit maxNewTokens without EOS (paper: 1.0). */
    missingEosPenalty: z.number().min(0).default(1),
    /** GRPO: divide by the group std (false = Dr. GRPO). */
    scaleByStd: z.boolean().default(true),
    grpoLossNormalization: z.enum(["sequence", "token"]).default("sequence"),
    /** RLOO: whiten the sequence advantages over the batch. */
    normalizeAdvantages: z.boolean().default(false),
    maxNewTokens: positiveInt.default(8),
    maxPromptTokens: positiveInt.default(48),
    temperature: z.number().positive().default(1),
    topK: z.number().int().min(0).default(0),
    topP: z.number().gt(0).max(1).default(1),
    /** Plain-text policies: text placed between the prompt and the response. */
    promptSeparator: z.string().default(" <sep>"),
    /** Meta step every N steps; 0 = fixed rubric (the baseline). */
    mpoInterval: z.number().int().min(0).default(10),
    /** When meta steps run: every mpoInterval steps (the paper) or when a trigger fires (src/meta/triggers.ts). */
    mpoSchedule: z.enum(["fixed", "adaptive"]).default("fixed"),
    /** Adaptive schedule settings; unset intervals derive from mpoInterval (min ⌈k/3⌉ but ≥ 2, max 2k). */
    adaptive: adaptiveConfigSchema,
    /** Rubric acceptance guard (src/meta/guard.ts); default: on with the adaptive schedule, off with the fixed one. */
    rubricGuard: z.boolean().optional(),
    guard: guardConfigSchema,
    checkpointEvery: positiveInt.default(1),
    keepCheckpoints: positiveInt.default(2),
    saveRollouts: z.boolean().default(true),
    /** Engine compute path: TS loops, the native addon, or native when it loads. */
    engine: z.enum(["ts", "native", "auto"]).default("auto"),
    /** Activation recomputation (per-layer gradient checkpointing): less memory, one more forward per update. */
    recompute: z.boolean().default(false),
  })
  .strict()
  .superRefine((c, ctx) => {
    const g = c.groupSize ?? (c.algo === "ppo" ? 1 : 4);
    if (c.algo !== "ppo" && g < 2) ctx.addIssue({ code: "custom", path: ["groupSize"], message: `${c.algo} needs groupSize ≥ 2 (a group baseline), got ${g}` });
    if (c.miniBatches > c.batchSize * g)
      ctx.addIssue({ code: "custom", path: ["miniBatches"], message: `must be ≤ batchSize × groupSize = ${c.batchSize * g}` });
    if (c.reward?.kind === "length" && c.reward.min > c.reward.max) ctx.addIssue({ code: "custom", path: ["reward", "max"], message: "must be ≥ reward.min" });
    if (c.maxPromptTokens + c.maxNewTokens > (c.policy ? Infinity : c.init.maxPositions))
      ctx.addIssue({ code: "custom", path: ["maxNewTokens"], message: `maxPromptTokens + maxNewTokens must fit init.maxPositions (${c.init.maxPositions})` });
  });

/**
 * Generation keys a policy checkpoint declares (its mpo-generation.json / HF generation files): filled into a
 * raw config where neither a flag nor the config file set them, so `--policy DIR` runs with the settings the
 * policy was made for. The schema defaults (8 / 48 / " <sep>") remain for the fresh toy policy.
 */
export function applyPolicyGenerationSettings(raw: Record<string, unknown>, s: GenerationSettings): string[] {
  const filled: string[] = [];
  const fill = (key: string, v: unknown) => {
    if (v === undefined || raw[key] !== undefined) return;
    raw[key] = v;
    filled.push(key);
  };
  if (s.prompt?.kind === "separator") fill("promptSeparator", s.prompt.separator);
  fill("maxPromptTokens", s.maxPromptTokens);
  fill("maxNewTokens", s.maxNewTokens);
  fill("temperature", s.temperature);
  return filled;
}

export type TrainConfigInput = z.input<typeof trainConfigSchema>;
export type TrainConfig = z.output<typeof trainConfigSchema>;

/** groupSize with its algorithm-dependent default resolved. */
export function groupSizeOf(c: TrainConfig): number {
  return c.groupSize ?? (c.algo === "ppo" ? 1 : 4);
}

export function lrOf(c: TrainConfig): number {
  return c.lr === "auto" ? (c.policy ? 3e-6 : 1e-3) : c.lr;
}

/** The adaptive schedule's settings for a config: explicit keys win, intervals default from mpoInterval. */
export function adaptiveSettings(cfg: Pick<TrainConfig, "mpoInterval" | "adaptive">): AdaptiveOptions {
  const k = Math.max(1, cfg.mpoInterval);
  return adaptiveOptions({ minInterval: Math.max(2, Math.ceil(k / 3)), maxInterval: Math.max(2, 2 * k), ...cfg.adaptive });
}

/** The guard's settings when it is on for this config (null = off). */
export function guardSettings(cfg: Pick<TrainConfig, "mpoSchedule" | "rubricGuard" | "guard">): Partial<GuardOptions> | null {
  return (cfg.rubricGuard ?? cfg.mpoSchedule === "adaptive") ? cfg.guard : null;
}

/**
 * The reward config a task's own recipe implies when the user gave none: rule rewards and verifiers need
 * nothing more; a rubric task needs a judge endpoint (--llm/--model), which is a config error until given.
 */
export function defaultRewardFor(task: TaskDefinition): RewardConfig {
  const spec = task.reward;
  if (spec.kind === "custom" && spec.name === "keyword") return { kind: "keyword" };
  if (spec.kind === "verifier") return { kind: "verifier", verifier: spec.verifier };
  if (spec.kind === "math-mixed")
    throw new UserError(`task ${task.name} is scored by the mixed math reward (answer check + LLM plan/execute judge): give the judge with --llm URL --model NAME (reward kind math-mixed), or use {kind: verifier, verifier: boxed}`);
  if (spec.kind === "rubric")
    throw new UserError(`task ${task.name} is scored by an LLM judge against a rubric: give the judge with --llm URL --model NAME (or reward: {kind: judge, rm: {...}} in the config)`);
  throw new UserError(`task ${task.name}: its reward recipe '${spec.kind}${spec.kind === "custom" ? `:${spec.name}` : ""}' has no trainer reward yet; set reward explicitly`);
}

/** Flags that configure the LLM judge: [commander attribute, flag, reward kinds that have the key]. */
const JUDGE_ONLY_FLAGS: Array<[string, string, string[]]> = [
  ["protocol", "--protocol", ["judge", "math-mixed"]],
  ["judgeMode", "--judge-mode", ["judge"]],
  ["judgeSeesReference", "--judge-sees-reference", ["judge"]],
];

/** `mpo train` flag (commander attribute name) → config key (dotted for nested keys). */
export const FLAG_KEYS: Record<string, string> = {
  algo: "algo",
  task: "task",
  dataDir: "dataDir",
  limit: "limit",
  policy: "policy",
  critic: "critic",
  seed: "seed",
  steps: "steps",
  batch: "batchSize",
  groupSize: "groupSize",
  miniBatches: "miniBatches",
  ppoEpochs: "ppoEpochs",
  lr: "lr",
  criticLr: "criticLr",
  weightDecay: "weightDecay",
  maxGradNorm: "maxGradNorm",
  warmupSteps: "warmupSteps",
  lrDecay: "lrDecay",
  klCoef: "klCoef",
  klEstimator: "klEstimator",
  cliprange: "cliprange",
  cliprangeValue: "cliprangeValue",
  vfCoef: "vfCoef",
  gamma: "gamma",
  lam: "lam",
  whitenRewards: "whitenRewards",
  missingEosPenalty: "missingEosPenalty",
  scaleByStd: "scaleByStd",
  grpoLoss: "grpoLossNormalization",
  maxNewTokens: "maxNewTokens",
  maxPromptTokens: "maxPromptTokens",
  temperature: "temperature",
  topK: "topK",
  topP: "topP",
  separator: "promptSeparator",
  mpoInterval: "mpoInterval",
  mpoSchedule: "mpoSchedule",
  rubricGuard: "rubricGuard",
  metaMinInterval: "adaptive.minInterval",
  metaMaxInterval: "adaptive.maxInterval",
  checkpointEvery: "checkpointEvery",
  keepCheckpoints: "keepCheckpoints",
  engine: "engine",
  recompute: "recompute",
  lora: "lora.enabled",
  loraR: "lora.r",
  loraAlpha: "lora.alpha",
  loraDropout: "lora.dropout",
  loraTargets: "lora.targets",
  hiddenSize: "init.hiddenSize",
  layers: "init.numLayers",
  heads: "init.numHeads",
  ffSize: "init.intermediateSize",
  maxPositions: "init.maxPositions",
};

/**
 * The raw train config (before validation) from a config file and the flags the user typed — flags win — plus
 * the policy of what some flags mean, which depends on the task:
 *   --word alone          the task's own reward with this word (say-word: keyword), unless a kind is set;
 *   --llm / --model       an LLM judge: the task's recipe decides which (math: math-mixed, else judge);
 *                         a gguf: judge needs no model name; --mrm-* default to the junior's endpoint;
 *   --rubric, --meta-samples   map onto the chosen kind's keys (math-mixed: guidelines, casesPerGroup);
 *   --no-mpo              mpoInterval 0;  the task's meta defaults (math: every 20 steps) unless set;
 *   no --policy           the task's freshPolicyDefaults (say-word: batch 32, lr 3e-3) unless set.
 * On --resume only run-independent flags (--steps, --engine) apply; reward flags are ignored (the CLI
 * refuses them before). `flags` holds only typed flags, values already parsed (dataFile: {train, test}).
 * Pure: no file, network or environment access.
 */
export function configFromFlags(
  flags: Record<string, unknown>,
  ctx: { file?: Record<string, unknown>; task?: TaskDefinition; resume?: boolean } = {},
): Record<string, unknown> {
  const raw = ctx.file ?? {};
  const task = ctx.task;
  const given = (k: string) => k in flags && flags[k] !== undefined;
  const fileReward = raw.reward as { kind?: string; metaSamples?: unknown } | undefined;
  const over: Record<string, unknown> = {};
  for (const [flag, key] of Object.entries(FLAG_KEYS)) if (given(flag)) over[key] = flags[flag];
  if (given("dataFile")) over.data = flags.dataFile;
  if (given("logTo")) over.logTo = flags.logTo;
  if (given("mpo") && flags.mpo === false) over.mpoInterval = 0;
  if (!ctx.resume) {
    if (given("reward")) over["reward.kind"] = flags.reward;
    if (given("word")) {
      over["reward.word"] = flags.word;
      // `--word` alone means "the task's own reward, with this word" (keyword for say-word), not a kind-less reward.
      if (!given("reward") && !fileReward?.kind) over["reward.kind"] = task ? defaultRewardFor(task).kind : "keyword";
    }
    if (given("llm") || given("model")) {
      // An LLM judge: the task's recipe decides which (rubric judge, or the mixed math reward).
      if (!given("reward")) over["reward.kind"] = task?.reward.kind === "math-mixed" ? "math-mixed" : "judge";
      if (given("llm")) over["reward.rm.baseURL"] = flags.llm;
      if (given("model")) over["reward.rm.model"] = flags.model;
      else if (String(flags.llm ?? "").startsWith("gguf:")) over["reward.rm.model"] = "gguf"; // a local GGUF file needs no model name
      if (given("server")) over["reward.rm.server"] = flags.server;
      if (given("mrmLlm") || given("mrmModel")) {
        over["reward.mrm.baseURL"] = flags.mrmLlm ?? flags.llm;
        over["reward.mrm.model"] = flags.mrmModel ?? flags.model ?? (String(flags.mrmLlm ?? flags.llm ?? "").startsWith("gguf:") ? "gguf" : undefined);
        if (given("server")) over["reward.mrm.server"] = flags.server;
      }
    }
    const rewardKind = over["reward.kind"] ?? fileReward?.kind;
    if (given("rubric")) over[rewardKind === "math-mixed" ? "reward.guidelines" : "reward.rubric"] = flags.rubric;
    // Judge-only flags on a reward with no LLM judge (rule-rubric, keyword, verifier…) would change nothing:
    // one clear error rather than silently ignoring them (a forgotten --llm is the usual cause).
    let kind = rewardKind as string | undefined;
    if (kind === undefined) {
      try {
        kind = task ? defaultRewardFor(task).kind : "keyword";
      } catch (e) {
        // A judge task without --llm: with a judge flag given, its own error (give the judge) is the one to show.
        if (JUDGE_ONLY_FLAGS.some(([key]) => given(key))) throw e;
        kind = undefined;
      }
    }
    for (const [key, flag, kinds] of JUDGE_ONLY_FLAGS)
      if (given(key) && kind !== undefined && !kinds.includes(kind))
        throw new UserError(`${flag}: the '${kind}' reward has no LLM judge, so ${flag} changes nothing; drop it, or score with the LLM judge (--llm URL --model NAME)`);
    if (given("judgeMode")) over["reward.mode"] = flags.judgeMode;
    if (given("protocol")) over["reward.protocol"] = flags.protocol;
    if (given("judgeSeesReference")) over["reward.judgeSeesReference"] = true;
    // Task-level defaults (math: a meta step every 20 steps, as the paper's runs) unless set by flag or file.
    if (task?.metaDefaults?.interval !== undefined && !given("mpoInterval") && !given("mpo") && raw.mpoInterval === undefined) over.mpoInterval = task.metaDefaults.interval;
    if (task?.metaDefaults?.samples !== undefined && !given("metaSamples") && rewardKind !== "math-mixed" && fileReward?.metaSamples === undefined && over["reward.kind"] !== undefined) over["reward.metaSamples"] = task.metaDefaults.samples;
    // The task's defaults for a fresh policy (say-word: the batch and step size its toy policy learns with),
    // unless set by flag or file; a pretrained --policy keeps the general defaults.
    const fresh = task?.freshPolicyDefaults;
    if (fresh && !given("policy") && raw.policy === undefined) {
      if (fresh.batchSize !== undefined && !given("batch") && raw.batchSize === undefined) over.batchSize = fresh.batchSize;
      if (fresh.lr !== undefined && !given("lr") && raw.lr === undefined) over.lr = fresh.lr;
    }
    // The mixed math reward's meta step analyzes cases per guideline group rather than single rollouts.
    if (given("metaSamples")) over[rewardKind === "math-mixed" ? "reward.casesPerGroup" : "reward.metaSamples"] = flags.metaSamples;
    if (given("run")) over.run = flags.run;
  }
  return deepMerge(raw, over);
}
