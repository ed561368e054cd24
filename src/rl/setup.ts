/**
 * Setting up a training run before its first step, and resuming one: the run directory (new or resumed),
 * the base policy and tokenizer (RUN/reference/, written once), the policy / critic / optimizers built from
 * the config or read back from a checkpoint, and the trainer state (step 0 from the seed, or the
 * checkpoint's, with a crashed process's leftovers rolled back). Plain data in and out; the Trainer wires
 * the pieces together in `Trainer.open`.
 *
 *   new run:  empty run dir → base policy (--policy or a fresh word-level one) saved as RUN/reference/
 *             → policy (+ critic) initialized from it → fresh optimizers → step-0 state
 *   resume:   newest verifiable checkpoint → base from RUN/reference/ → policy/critic/optimizer tensors
 *             and trainer_state.json from checkpoints/step-N/ → records newer than N moved aside
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { AdamW, TransformerLM } from "../engine/index.ts";
import type { ModelConfig, NamedTensor } from "../engine/index.ts";
import { resolveConfig, type ModelDims } from "../engine/config.ts";
import { configWeightsDtype, loadCheckpoint, saveCheckpoint } from "../engine/io/checkpoint.ts";
import { resolveModelSource } from "../engine/io/hub.ts";
import { loadAdapterDir } from "../engine/io/lora.ts";
import type { ModelOptions } from "../engine/model.ts";
import type { MetaScheduler } from "../meta/scheduler.ts";
import type { TaskDefinition } from "../tasks/types.ts";
import { UserError } from "../util/errors.ts";
import { Rng } from "../util/rng.ts";
import { parseStateWith } from "../util/state-file.ts";
import { LATEST_CHECKPOINT } from "../util/run-layout.ts";
import { ALGORITHMS } from "./algorithms.ts";
import { BUILTIN_TASKS, builtinTokenizer } from "./builtin-task.ts";
import { findResumePoint, prepareNewRunDir, rollBackRecords, type ResumePoint } from "./checkpointing.ts";
import { lrOf, type TrainConfig } from "./config.ts";
import { loraModel } from "./lora-policy.ts";
import { policyFormat, type PolicyFormat } from "./policy-format.ts";
import type { MetaOutcome, RewardFunction } from "./reward-types.ts";
import { pendingMetaJob, trainerStateSchema, type MetaRolloutSample, type TrainerState } from "./state.ts";
import { tokenizerFromJson, type PolicyTokenizer } from "./tokenizer.ts";

/** The engine options every model of a run is built with. */
export type EngineOptions = Pick<ModelOptions, "engine" | "recompute">;

/** What the trainer's resume and rollback report to, and act on. */
export interface RunContext {
  runDir: string;
  meta: MetaScheduler<MetaRolloutSample[], MetaOutcome>;
  reward: RewardFunction;
  log: (line: string) => void;
}

// ---------------------------------------------------------------- run directory

/**
 * Where to start: a resume takes the newest checkpoint that verifies (null: none, start over); a new run
 * needs a directory without a run in it (--overwrite moves an old one aside first).
 */
export function openRunDir(runDir: string, o: { resume: boolean; overwrite: boolean; log: (line: string) => void }): ResumePoint | null {
  if (o.resume) {
    const latest = findResumePoint(runDir);
    for (const why of latest?.skipped ?? []) o.log(`mpo: skipped ${why}`);
    if (latest?.skipped.length) o.log(`mpo: using ${latest.path}, the newest checkpoint that verifies`);
    return latest;
  }
  const pointer = join(runDir, LATEST_CHECKPOINT);
  if (existsSync(pointer) && !o.overwrite) throw new UserError(`run directory ${runDir} already holds a run (${pointer}); use --resume ${runDir}, another --run, or --overwrite to move it aside`);
  const aside = prepareNewRunDir(runDir, o.overwrite);
  if (aside) o.log(`mpo: moved the previous contents of ${runDir} into ${aside}/`);
  return null;
}

// ---------------------------------------------------------------- base policy (RUN/reference/)

/** The frozen initial policy: its config, weights (no value head), tokenizer and prompt format. */
export interface BasePolicy {
  config: ModelConfig;
  tensors: Map<string, NamedTensor>;
  tokenizer: PolicyTokenizer;
  format: PolicyFormat;
}

/** Only built-in tasks can start without a policy checkpoint (a resume has one in RUN/reference/). */
export function assertHasPolicy(cfg: TrainConfig, task: TaskDefinition, runDir: string, resume: boolean): void {
  if (!cfg.policy && !BUILTIN_TASKS[task.name] && !(resume && existsSync(join(runDir, "reference", "config.json"))))
    throw new UserError(`task ${task.name} needs a policy checkpoint (--policy DIR with config.json, model.safetensors, tokenizer.json); only built-in tasks (${Object.keys(BUILTIN_TASKS).join(", ")}) can start from a fresh word-level policy`);
}

/**
 * The base policy: read back from RUN/reference/ on a resume that has it; otherwise loaded from --policy
 * (a directory or a Hub id) or created fresh for a built-in task, and saved as RUN/reference/.
 */
export async function loadBasePolicy(cfg: TrainConfig, runDir: string, resume: boolean, engineOpts: EngineOptions): Promise<BasePolicy> {
  const refDir = join(runDir, "reference");
  if (resume && existsSync(join(refDir, "config.json"))) {
    const ck = loadCheckpoint(refDir);
    const config = ck.config as ModelConfig;
    const tokenizer = tokenizerFromJson(ck.tokenizerJson, join(refDir, "tokenizer.json"), firstEos(config));
    const format = policyFormat(ck, tokenizer, cfg.promptSeparator, join(refDir, "tokenizer_config.json"));
    return { config, tensors: ck.tensors, tokenizer, format };
  }
  if (cfg.policy) {
    const ck = loadCheckpoint(await resolveModelSource(cfg.policy)); // a directory, or a Hub id via the HF cache
    const config: ModelConfig = { ...(ck.config as ModelConfig), mpo_value_head: false };
    const tensors = stripValueHead(ck.tensors);
    const tokenizer = tokenizerFromJson(ck.tokenizerJson, join(cfg.policy, "tokenizer.json"), firstEos(config));
    const format = policyFormat(ck, tokenizer, cfg.promptSeparator, join(cfg.policy, "tokenizer_config.json"));
    const maxT = config.max_position_embeddings;
    if (cfg.maxPromptTokens + cfg.maxNewTokens > maxT)
      throw new UserError(`maxPromptTokens + maxNewTokens = ${cfg.maxPromptTokens + cfg.maxNewTokens} exceeds the policy's max_position_embeddings ${maxT}`);
    // A half-precision base is kept in its own dtype (lossless: its values are exactly those read), which
    // halves RUN/reference/ on disk and tells `mpo export` the base's dtype.
    const keepDtype = ck.weightsDtype && ck.weightsDtype === configWeightsDtype(ck.config) ? ck.weightsDtype : undefined;
    saveCheckpoint(refDir, { config, tensors, tokenizerJson: tokenizer.toJSON(), ...format.files, weightsDtype: keepDtype });
    return { config, tensors, tokenizer, format };
  }
  const tokenizer = builtinTokenizer();
  const { llamaConfig } = await import("../engine/index.ts");
  const i = cfg.init;
  const config = llamaConfig({
    vocabSize: tokenizer.vocabSize,
    hiddenSize: i.hiddenSize,
    intermediateSize: i.intermediateSize,
    numLayers: i.numLayers,
    numHeads: i.numHeads,
    maxPositions: i.maxPositions,
    tieEmbeddings: i.tieEmbeddings,
    bosTokenId: tokenizer.bosId,
    eosTokenId: tokenizer.eosId,
    padTokenId: 0,
  });
  const fresh = TransformerLM.create(config, new Rng(`${cfg.seed}:init`), engineOpts);
  const tensors = cloneTensors(fresh.namedTensors());
  const format = policyFormat({ config }, tokenizer, cfg.promptSeparator);
  saveCheckpoint(refDir, { config, tensors, tokenizerJson: tokenizer.toJSON() });
  return { config, tensors, tokenizer, format };
}

/** Prompt plus response must fit the model's positions. */
export function assertContextFits(cfg: TrainConfig, dims: ModelDims): void {
  if (cfg.maxPromptTokens + cfg.maxNewTokens > dims.maxT)
    throw new UserError(`maxPromptTokens + maxNewTokens = ${cfg.maxPromptTokens + cfg.maxNewTokens} exceeds the policy's max_position_embeddings ${dims.maxT}`);
}

// ---------------------------------------------------------------- policy, critic, optimizers

/** The trained models of a run and their optimizers. */
export interface RunModels {
  policy: TransformerLM;
  /** PPO's separate value model (null: no critic, or the value head sits on the policy). */
  critic: TransformerLM | null;
  /** PPO with the value head on the policy (no separate critic model). */
  sharedCritic: boolean;
  policyOpt: AdamW;
  criticOpt: AdamW | null;
  /** The checkpoint's trainer_state.json as read (unvalidated; see readTrainerState), when resuming. */
  trainerState?: unknown;
}

/**
 * Policy and critic with their optimizers, initialized from the base (`ckDir` null) or read back from the
 * checkpoint directory `ckDir` (weights or LoRA adapters, and the optimizer moments an exact resume needs).
 * PPO's critic is a separate model (the paper) or a value head on the policy trunk (critic: "shared"); with
 * LoRA, policy and critic are adapters on the one frozen base.
 */
export function buildModels(cfg: TrainConfig, base: BasePolicy, engineOpts: EngineOptions, ckDir: string | null): RunModels {
  const sharedCritic = ALGORITHMS[cfg.algo].usesCritic && cfg.critic === "shared";
  const separateCritic = ALGORITHMS[cfg.algo].usesCritic && !sharedCritic;
  const policyConfig: ModelConfig = { ...base.config, mpo_value_head: sharedCritic };
  const criticConfig: ModelConfig = { ...base.config, mpo_value_head: true };
  const lr = lrOf(cfg);
  const optOpts = { lr, weightDecay: cfg.weightDecay };
  const criticOptOpts = { ...optOpts, lr: cfg.criticLr ?? lr };
  const lora = cfg.lora.enabled ? cfg.lora : null;
  const loraRng = new Rng(`${cfg.seed}:lora`);
  const restore = (opt: AdamW, saved: { optimizer?: Parameters<AdamW["loadStateDict"]>[0] }, dir: string) => {
    if (!saved.optimizer) throw new UserError(`${dir}: optimizer.safetensors missing; cannot resume exactly`);
    opt.loadStateDict(saved.optimizer);
  };
  let critic: TransformerLM | null = null;
  let criticOpt: AdamW | null = null;

  if (ckDir && lora) {
    // LoRA run: adapters (+ value head, optimizer, trainer state) on the frozen base from reference/.
    const pck = loadAdapterDir(join(ckDir, "policy"));
    const policy = loraModel(policyConfig, base.tensors, lora, engineOpts, loraRng.fork("policy"), pck, cfg.seed);
    const policyOpt = new AdamW(policy.trainableParams(), optOpts);
    restore(policyOpt, pck, `${ckDir}/policy`);
    if (separateCritic) {
      const cck = loadAdapterDir(join(ckDir, "critic"));
      critic = loraModel(criticConfig, base.tensors, lora, { ...engineOpts, shareArenaWith: policy }, loraRng.fork("critic"), cck, cfg.seed);
      criticOpt = new AdamW(critic.trainableParams(), criticOptOpts);
      restore(criticOpt, cck, `${ckDir}/critic`);
    }
    return { policy, critic, sharedCritic, policyOpt, criticOpt, trainerState: pck.trainerState };
  }
  if (ckDir) {
    const pck = loadCheckpoint(join(ckDir, "policy"));
    const policy = TransformerLM.fromParams(policyConfig, pck.tensors, engineOpts);
    const policyOpt = new AdamW(policy.params, optOpts);
    restore(policyOpt, pck, `${ckDir}/policy`);
    if (separateCritic) {
      const cck = loadCheckpoint(join(ckDir, "critic"));
      critic = TransformerLM.fromParams(criticConfig, cck.tensors, engineOpts);
      criticOpt = new AdamW(critic.params, criticOptOpts);
      restore(criticOpt, cck, `${ckDir}/critic`);
    }
    return { policy, critic, sharedCritic, policyOpt, criticOpt, trainerState: pck.trainerState };
  }
  if (lora) {
    // A fresh LoRA run: policy, critic and reference share one frozen base.
    const policy = loraModel(policyConfig, base.tensors, lora, engineOpts, loraRng.fork("policy"), undefined, cfg.seed);
    const policyOpt = new AdamW(policy.trainableParams(), optOpts);
    if (separateCritic) {
      critic = loraModel(criticConfig, base.tensors, lora, { ...engineOpts, shareArenaWith: policy }, loraRng.fork("critic"), undefined, cfg.seed);
      criticOpt = new AdamW(critic.trainableParams(), criticOptOpts);
    }
    return { policy, critic, sharedCritic, policyOpt, criticOpt };
  }
  // A fresh run: the policy starts as the base (a shared critic's head at zero), the critic as the base with a zero head.
  const d = resolveConfig(base.config).d;
  const policy = TransformerLM.fromParams(policyConfig, sharedCritic ? withValueHead(base.tensors, d) : cloneTensors(base.tensors), engineOpts);
  const policyOpt = new AdamW(policy.params, optOpts);
  if (separateCritic) {
    critic = TransformerLM.fromParams(criticConfig, withValueHead(base.tensors, d), engineOpts);
    criticOpt = new AdamW(critic.params, criticOptOpts);
  }
  return { policy, critic, sharedCritic, policyOpt, criticOpt };
}

// ---------------------------------------------------------------- trainer state

/** Step-0 trainer state of a fresh run (RNG streams from the seed). */
export function freshTrainerState(seed: number, reward: RewardFunction): TrainerState {
  const seedRng = new Rng(seed);
  return {
    step: 0,
    cursor: { epoch: 0, index: 0 },
    genRng: seedRng.fork("generate").state(),
    mbRng: seedRng.fork("minibatch").state(),
    rubricVersion: reward.rubricVersion(),
    rewardState: reward.saveState?.() ?? null,
    metaBuffer: [],
    pendingMeta: null,
    elapsedSeconds: 0,
  };
}

/** A checkpoint's trainer_state.json, validated (file and field named on error) and matched against its step. */
export function readTrainerState(raw: unknown, ckDir: string, step: number): TrainerState {
  const statePath = join(ckDir, "policy", "trainer_state.json");
  if (raw === undefined) throw new UserError(`${statePath}: missing; cannot resume exactly`);
  const s = parseStateWith(statePath, raw, trainerStateSchema, "trainer state") as TrainerState;
  if (s.step !== step) throw new UserError(`${statePath}: field 'step' is ${s.step}, the checkpoint is step ${step}`);
  return s;
}

/** Moves aside everything a crashed process wrote after `step` (records, meta-step markers). */
export function rollBackRun(run: RunContext, step: number): void {
  const aside = rollBackRecords(run.runDir, step);
  if (aside) run.log(`mpo: records after step ${step} moved into ${aside}/`);
  run.meta.rollBackAfter(step);
}

/**
 * Continues from a checkpoint's state `st` (the trainer's state object; this sets its pendingMeta /
 * completedMeta): crash leftovers rolled back, a pending meta step that finished before the crash adopted
 * (never redone) or discarded to be re-run, and the reward's state (rubric version) restored to match.
 */
export async function resumeRun(st: TrainerState, run: RunContext): Promise<void> {
  rollBackRun(run, st.step);
  const commit = st.pendingMeta ? run.meta.recover(pendingMetaJob(st.pendingMeta)) : null;
  if (commit) {
    st.completedMeta = commit.outcome as MetaOutcome;
    st.pendingMeta = null;
    await run.reward.restoreState?.(commit.state);
  } else await run.reward.restoreState?.(st.rewardState);
  const hasRubric = typeof run.reward.metaStep === "function";
  run.log(`mpo: resuming ${run.runDir} after step ${st.step}${hasRubric ? ` (rubric v${run.reward.rubricVersion()})` : ""}`);
}

// ---------------------------------------------------------------- tensors

/** Model tensors with or without the value head (the reference policy has none). */
function stripValueHead(t: Map<string, NamedTensor>): Map<string, NamedTensor> {
  const out = new Map(t);
  out.delete("value_head.weight");
  out.delete("value_head.bias");
  return out;
}

/** Copies tensors (the engine shares param buffers; checkpoints and copies must not alias them). */
function cloneTensors(t: Map<string, NamedTensor>): Map<string, NamedTensor> {
  const out = new Map<string, NamedTensor>();
  for (const [k, v] of t) out.set(k, { shape: v.shape.slice(), data: Float32Array.from(v.data) });
  return out;
}

/** The same tensors plus a zero-initialized value head (a fresh critic predicts 0 everywhere). */
function withValueHead(t: Map<string, NamedTensor>, d: number): Map<string, NamedTensor> {
  const out = cloneTensors(stripValueHead(t));
  out.set("value_head.weight", { shape: [1, d], data: new Float32Array(d) });
  out.set("value_head.bias", { shape: [1], data: new Float32Array(1) });
  return out;
}

function firstEos(c: ModelConfig): number | undefined {
  const e = c.eos_token_id;
  return Array.isArray(e) ? e[0] : e;
}
