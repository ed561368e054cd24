/**
 * The RL trainer: PPO (the paper's trainer), GRPO and RLOO over the embedded policy engine, with the MPO
 * schedule (a meta step every `mpoInterval` steps rewrites the rubric the following steps are scored by).
 * One step, all in this file so the algorithm reads top to bottom:
 *
 *   prompts (seeded shuffle per epoch, resumable cursor) → generate G responses per prompt
 *   → [await the meta step started after the previous step] → score with the RewardFunction
 *   → drop samples without a usable score (counted, never NaN) → missing-EOS penalty
 *   → per-token logprobs of the behaviour policy, the frozen reference, the critic's values
 *   → advantages (PPO: KL-penalized token rewards + GAE + whitening; GRPO: group-normalized scores;
 *     RLOO: leave-one-out baseline on KL-penalized sequence rewards)
 *   → ppoEpochs × minibatches of clipped policy-gradient (+ clipped value) updates
 *   → rollouts file, metrics line, checkpoint (the commit point), maybe start the next meta step.
 *
 * Crash safety: `checkpoints/latest.json` is the commit point. On resume everything newer than the
 * checkpoint it names (metrics lines, rollouts files, rubric versions via reward.restoreState) is rolled
 * back, so a kill -9 at any moment loses at most the step in progress and the history has no gap and no
 * duplicate. Data order, sampling RNG, optimizer moments and the pending meta step are all in the
 * checkpoint, so a resumed run continues exactly as the uninterrupted one would.
 *
 * The critic (PPO): by default a separate value model initialized from the policy weights with a fresh
 * scalar head, as in the paper (TRL's PolicyAndValueWrapper with two models); `critic: "shared"` puts the
 * value head on the policy trunk instead (half the compute, value gradients then shape the policy's
 * features). The reference policy is a frozen copy of the initial policy saved in RUN/reference/.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { AdamW, clipGradNorm, gradsFinite, lrSchedule, TransformerLM } from "../engine/index.ts";
import type { ModelConfig, NamedTensor } from "../engine/index.ts";
import { configWeightsDtype, loadCheckpoint, saveCheckpoint } from "../engine/io/checkpoint.ts";
import { writeGenerationSettings } from "../engine/generation-settings.ts";
import { resolveModelSource } from "../engine/io/hub.ts";
import { policyFormat, type PolicyFormat } from "./policy-format.ts";
import { adaptersOff, loraModel, saveLoraModel, type Scorer } from "./lora-policy.ts";
import { loadAdapterDir } from "../engine/io/lora.ts";
import { resolveConfig } from "../engine/config.ts";
import type { Evaluation } from "../judge/types.ts";
import type { UsageByStage } from "../llm/types.ts";
import type { TaskDefinition, TaskRecord } from "../tasks/types.ts";
import { appendJsonl, writeFileAtomic, writeJsonAtomic } from "../util/atomic.ts";
import { UserError } from "../util/errors.ts";
import { Rng } from "../util/rng.ts";
import { klArray, maskedMean, summarize } from "./advantages.ts";
import { ALGORITHMS } from "./algorithms.ts";
import { BUILTIN_TASKS, builtinTokenizer } from "./builtin-task.ts";
import { adaptiveSettings, groupSizeOf, lrOf, type TrainConfig } from "./config.ts";
import { UsageMeter } from "../llm/usage.ts";
import { decisionTrigger, everySteps, MetaScheduler, never } from "../meta/scheduler.ts";
import { decideAdaptive, type MetaDecision, type WindowPoint, windowPoint } from "../meta/triggers.ts";
import { clippedValueLoss } from "./losses.ts";
import type { MetaOutcome, RewardFunction, RewardResult, RewardSample } from "./reward-types.ts";
import { tokenizerFromJson, type PolicyTokenizer } from "./tokenizer.ts";
import { commitCheckpoint, findResumePoint, prepareNewRunDir, rollBackRecords, type ResumePoint } from "./checkpointing.ts";
import { trainerStateSchema } from "./state.ts";
import { Progress, type RunState, writeRunStatus } from "./progress.ts";
import { parseStateWith } from "../util/state-file.ts";
import { checkpointDir, LATEST_CHECKPOINT, METRICS_FILE, pad6, rolloutsFile, runPath } from "../util/run-layout.ts";

export type MetaRolloutSample = RewardSample & { result: RewardResult };

/** Where the data cursor stands: position `index` of epoch `epoch`'s shuffled order. */
export interface DataCursor {
  epoch: number;
  index: number;
}

/** Everything besides tensors that a checkpoint must hold for an exact resume. */
export interface TrainerState {
  step: number;
  cursor: DataCursor;
  genRng: [number, number, number, number];
  mbRng: [number, number, number, number];
  rubricVersion: number;
  rewardState: unknown;
  /** Scored rollouts gathered since the last meta step. */
  metaBuffer: MetaRolloutSample[];
  /** A meta step decided at this step but not yet finished: re-run on resume. */
  pendingMeta: { step: number; rollouts: MetaRolloutSample[]; decision?: MetaDecision } | null;
  /** Adaptive schedule: one summary per step since the last meta step (what its triggers read). */
  metaPoints?: WindowPoint[];
  /** A meta step that finished while the run was stopping: reported with the next step's metrics. */
  completedMeta?: MetaOutcome | null;
  /** LoRA: the models' dropout-mask counters (TransformerLM.loraDropCount), so a resume draws the same masks. */
  loraDropCounts?: { policy: number; critic?: number };
  elapsedSeconds: number;
}

export interface StepMetrics {
  step: number;
  time: string;
  rubricVersion: number;
  epoch: number;
  score: { mean: number; std: number; min: number; max: number };
  normalizedScore: { mean: number };
  kl: number;
  entropy: number;
  policyLoss: number;
  valueLoss: number;
  clipFrac: number;
  valueClipFrac: number;
  approxKl: number;
  responseLength: { mean: number };
  eosRate: number;
  samples: number;
  excluded: number;
  skipped?: string;
  lr: number;
  gradNorm: number;
  llm: UsageByStage;
  seconds: { generate: number; score: number; update: number; meta: number; total: number };
  meta?: Omit<MetaOutcome, "summary"> & { summary: string };
}

export interface TrainerHooks {
  /** One line of human output (progress fallback, meta summaries, final message); default stderr. */
  log?: (line: string) => void;
  /** Called after each committed step (tests use it to stop or inspect). */
  onStep?: (m: StepMetrics) => void;
  /** Show a cli-progress bar (default: when stderr is a TTY). */
  progress?: boolean;
}

export interface TrainResult {
  state: "finished" | "stopped";
  step: number;
  runDir: string;
}

/** Thrown inside a step when a second Ctrl-C asks to abandon it. */
class AbandonStep extends Error {}

const now = () => performance.now() / 1000;
const yieldLoop = () => new Promise<void>((r) => setImmediate(r));

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


/** One sampled response ready for the update: its prompt and response token ids and per-sample numbers. */
interface Sample {
  prompt: number[];
  response: number[];
}

/** Response-aligned arrays of rows (see advantages.ts): [rows, R] plus the packing into [rows, T] sequences. */
interface Packed {
  B: number;
  T: number;
  R: number;
  tokens: Int32Array;
  targets: Int32Array;
  /** For response position (b, j): index into the [B*T] score output, or -1 (padding). */
  seqIndex: Int32Array;
  mask: Float64Array;
}

/** Packs samples into right-padded sequences; the logprob of response token j sits at position P−1+j. */
function pack(samples: Sample[], R: number, padId: number): Packed {
  const B = samples.length;
  let T = 1;
  for (const s of samples) T = Math.max(T, s.prompt.length + s.response.length - 1);
  const tokens = new Int32Array(B * T).fill(padId);
  const targets = new Int32Array(B * T).fill(-1);
  const seqIndex = new Int32Array(B * R).fill(-1);
  const mask = new Float64Array(B * R);
  samples.forEach((s, b) => {
    const full = [...s.prompt, ...s.response];
    for (let t = 0; t < Math.min(T, full.length); t++) tokens[b * T + t] = full[t];
    const P = s.prompt.length;
    for (let j = 0; j < s.response.length; j++) {
      const pos = P - 1 + j;
      targets[b * T + pos] = s.response[j];
      seqIndex[b * R + j] = b * T + pos;
      mask[b * R + j] = 1;
    }
  });
  return { B, T, R, tokens, targets, seqIndex, mask };
}

function gather(src: Float32Array, p: Packed): Float64Array {
  const out = new Float64Array(p.B * p.R);
  for (let i = 0; i < out.length; i++) if (p.seqIndex[i] >= 0) out[i] = src[p.seqIndex[i]];
  return out;
}

function scatter(src: ArrayLike<number>, p: Packed, scale = 1): Float32Array {
  const out = new Float32Array(p.B * p.T);
  for (let i = 0; i < p.seqIndex.length; i++) if (p.seqIndex[i] >= 0) out[p.seqIndex[i]] = src[i] * scale;
  return out;
}

export interface TrainerInit {
  config: TrainConfig;
  runDir: string;
  task: TaskDefinition;
  /** Builds the reward once the run directory exists (rubric stores live there). */
  makeReward: (runDir: string) => RewardFunction | Promise<RewardFunction>;
  resume?: boolean;
  /** A new run in a non-empty directory: move its contents into moved-aside/ first (otherwise: refuse). */
  overwrite?: boolean;
  hooks?: TrainerHooks;
}

export class Trainer {
  readonly cfg: TrainConfig;
  readonly runDir: string;
  readonly G: number;
  private task: TaskDefinition;
  private reward!: RewardFunction;
  private hooks: TrainerHooks;
  private log: (line: string) => void;

  private policy!: TransformerLM;
  private critic: TransformerLM | null = null;
  /** PPO with the value head on the policy (no separate critic model). */
  private sharedCritic = false;
  /** KL reference: a frozen copy of the initial policy, or with LoRA the policy with its adapters off. */
  private ref!: Scorer;
  private policyOpt!: AdamW;
  private criticOpt: AdamW | null = null;
  private tokenizer!: PolicyTokenizer;
  /** Prompt rendering (chat template or separator) and the ids that end a response. */
  private format!: PolicyFormat;
  private records: TaskRecord[] = [];
  private lrAt!: (step: number) => number;

  private st!: TrainerState;
  private genRng!: Rng;
  private mbRng!: Rng;
  private meta!: MetaScheduler<MetaRolloutSample[], MetaOutcome>;
  private lastCheckpointStep = -1;
  private stopRequested = false;
  private abandonRequested = false;
  private startedAt = new Date().toISOString();

  private constructor(init: TrainerInit) {
    this.cfg = init.config;
    this.runDir = resolve(init.runDir);
    this.task = init.task;
    this.G = groupSizeOf(init.config);
    this.hooks = init.hooks ?? {};
    this.log = this.hooks.log ?? ((l) => process.stderr.write(l + "\n"));
  }

  /** Sets up a new run (or resumes one) and returns a trainer ready to `run()`. */
  static async open(init: TrainerInit): Promise<Trainer> {
    const t = new Trainer(init);
    await t.setup(!!init.resume, !!init.overwrite, init.makeReward);
    return t;
  }

  get state(): Readonly<TrainerState> {
    return this.st;
  }

  // ---------------------------------------------------------------- setup / resume

  private async setup(resume: boolean, overwrite: boolean, makeReward: TrainerInit["makeReward"]): Promise<void> {
    const cfg = this.cfg;
    // Where to start: a resume takes the newest checkpoint that verifies; a new run needs an empty directory.
    let latest: ResumePoint | null = null;
    if (resume) {
      latest = findResumePoint(this.runDir);
      for (const why of latest?.skipped ?? []) this.log(`mpo: skipped ${why}`);
      if (latest?.skipped.length) this.log(`mpo: using ${latest.path}, the newest checkpoint that verifies`);
    } else {
      const pointer = join(this.runDir, LATEST_CHECKPOINT);
      if (existsSync(pointer) && !overwrite) throw new UserError(`run directory ${this.runDir} already holds a run (${pointer}); use --resume ${this.runDir}, another --run, or --overwrite to move it aside`);
      const aside = prepareNewRunDir(this.runDir, overwrite);
      if (aside) this.log(`mpo: moved the previous contents of ${this.runDir} into ${aside}/`);
    }
    const refDir = join(this.runDir, "reference");
    if (!cfg.policy && !BUILTIN_TASKS[this.task.name] && !(resume && existsSync(join(refDir, "config.json"))))
      throw new UserError(`task ${this.task.name} needs a policy checkpoint (--policy DIR with config.json, model.safetensors, tokenizer.json); only built-in tasks (${Object.keys(BUILTIN_TASKS).join(", ")}) can start from a fresh word-level policy`);
    mkdirSync(this.runDir, { recursive: true });
    this.records = await this.task.load("train", { dataDir: cfg.dataDir, limit: cfg.limit || undefined });
    if (this.records.length === 0) throw new UserError(`task ${this.task.name}: the train split has no records`);
    const engineOpts = { engine: cfg.engine, recompute: cfg.recompute };

    // Reference policy (frozen initial policy) and tokenizer: RUN/reference/ once written.
    let refTensors: Map<string, NamedTensor>;
    let baseConfig: ModelConfig;
    if (resume && existsSync(join(refDir, "config.json"))) {
      const ck = loadCheckpoint(refDir);
      baseConfig = ck.config as ModelConfig;
      refTensors = ck.tensors;
      this.tokenizer = tokenizerFromJson(ck.tokenizerJson, join(refDir, "tokenizer.json"), firstEos(baseConfig));
      this.format = policyFormat(ck, this.tokenizer, cfg.promptSeparator, join(refDir, "tokenizer_config.json"));
    } else if (cfg.policy) {
      const ck = loadCheckpoint(await resolveModelSource(cfg.policy)); // a directory, or a Hub id via the HF cache
      baseConfig = { ...(ck.config as ModelConfig), mpo_value_head: false };
      refTensors = stripValueHead(ck.tensors);
      this.tokenizer = tokenizerFromJson(ck.tokenizerJson, join(cfg.policy, "tokenizer.json"), firstEos(baseConfig));
      this.format = policyFormat(ck, this.tokenizer, cfg.promptSeparator, join(cfg.policy, "tokenizer_config.json"));
      const maxT = baseConfig.max_position_embeddings;
      if (cfg.maxPromptTokens + cfg.maxNewTokens > maxT)
        throw new UserError(`maxPromptTokens + maxNewTokens = ${cfg.maxPromptTokens + cfg.maxNewTokens} exceeds the policy's max_position_embeddings ${maxT}`);
      // A half-precision base is kept in its own dtype (lossless: its values are exactly those read), which
      // halves RUN/reference/ on disk and tells `mpo export` the base's dtype.
      const keepDtype = ck.weightsDtype && ck.weightsDtype === configWeightsDtype(ck.config) ? ck.weightsDtype : undefined;
      saveCheckpoint(refDir, { config: baseConfig, tensors: refTensors, tokenizerJson: this.tokenizer.toJSON(), ...this.format.files, weightsDtype: keepDtype });
    } else {
      const tok = builtinTokenizer();
      const { llamaConfig } = await import("../engine/index.ts");
      const i = cfg.init;
      baseConfig = llamaConfig({
        vocabSize: tok.vocabSize,
        hiddenSize: i.hiddenSize,
        intermediateSize: i.intermediateSize,
        numLayers: i.numLayers,
        numHeads: i.numHeads,
        maxPositions: i.maxPositions,
        tieEmbeddings: i.tieEmbeddings,
        bosTokenId: tok.bosId,
        eosTokenId: tok.eosId,
        padTokenId: 0,
      });
      const fresh = TransformerLM.create(baseConfig, new Rng(`${cfg.seed}:init`), engineOpts);
      refTensors = cloneTensors(fresh.namedTensors());
      this.tokenizer = tok;
      this.format = policyFormat({ config: baseConfig }, tok, cfg.promptSeparator);
      saveCheckpoint(refDir, { config: baseConfig, tensors: refTensors, tokenizerJson: tok.toJSON() });
    }
    const lora = cfg.lora.enabled ? cfg.lora : null;
    if (!lora) this.ref = TransformerLM.fromParams(baseConfig, refTensors, engineOpts);
    else this.ref = { dims: resolveConfig(baseConfig), score: () => { throw new Error("LoRA reference before the policy exists"); } };
    const d = this.ref.dims.d;
    if (cfg.maxPromptTokens + cfg.maxNewTokens > this.ref.dims.maxT)
      throw new UserError(`maxPromptTokens + maxNewTokens = ${cfg.maxPromptTokens + cfg.maxNewTokens} exceeds the policy's max_position_embeddings ${this.ref.dims.maxT}`);

    // PPO's critic: a separate model (the paper) or a value head on the policy trunk (critic: "shared").
    const shared = ALGORITHMS[cfg.algo].usesCritic && cfg.critic === "shared";
    this.sharedCritic = shared;
    const policyConfig: ModelConfig = { ...baseConfig, mpo_value_head: shared };
    const criticConfig: ModelConfig = { ...baseConfig, mpo_value_head: true };
    const lr = lrOf(cfg);
    this.lrAt = lrSchedule({ lr, warmupSteps: cfg.warmupSteps, totalSteps: cfg.steps, decay: cfg.lrDecay, minLrRatio: 0 });
    const optOpts = { lr, weightDecay: cfg.weightDecay };

    this.reward = await makeReward(this.runDir);
    this.meta = this.metaScheduler();

    const loraRng = new Rng(`${cfg.seed}:lora`);
    if (resume && latest && lora) {
      // LoRA run: adapters (+ value head, optimizer, trainer state) on the frozen base from reference/.
      const ckDir = join(this.runDir, latest.path);
      const pck = loadAdapterDir(join(ckDir, "policy"));
      this.policy = loraModel(policyConfig, refTensors, lora, engineOpts, loraRng.fork("policy"), pck);
      this.policyOpt = new AdamW(this.policy.trainableParams(), optOpts);
      if (!pck.optimizer) throw new UserError(`${ckDir}/policy: optimizer.safetensors missing; cannot resume exactly`);
      this.policyOpt.loadStateDict(pck.optimizer);
      if (ALGORITHMS[cfg.algo].usesCritic && !shared) {
        const cck = loadAdapterDir(join(ckDir, "critic"));
        this.critic = loraModel(criticConfig, refTensors, lora, { ...engineOpts, shareArenaWith: this.policy }, loraRng.fork("critic"), cck);
        const criticOpt = new AdamW(this.critic.trainableParams(), { ...optOpts, lr: cfg.criticLr ?? lr });
        if (!cck.optimizer) throw new UserError(`${ckDir}/critic: optimizer.safetensors missing; cannot resume exactly`);
        criticOpt.loadStateDict(cck.optimizer);
        this.criticOpt = criticOpt;
      }
      this.ref = adaptersOff(this.policy);
      await this.resumeState(pck.trainerState, ckDir, latest.step);
      this.policy.loraDropCount = this.st.loraDropCounts?.policy ?? 0;
      if (this.critic) this.critic.loraDropCount = this.st.loraDropCounts?.critic ?? 0;
    } else if (resume && latest) {
      const ckDir = join(this.runDir, latest.path);
      const pck = loadCheckpoint(join(ckDir, "policy"));
      this.policy = TransformerLM.fromParams(policyConfig, pck.tensors, engineOpts);
      this.policyOpt = new AdamW(this.policy.params, optOpts);
      if (!pck.optimizer) throw new UserError(`${ckDir}/policy: optimizer.safetensors missing; cannot resume exactly`);
      this.policyOpt.loadStateDict(pck.optimizer);
      if (ALGORITHMS[cfg.algo].usesCritic && !shared) {
        const cck = loadCheckpoint(join(ckDir, "critic"));
        this.critic = TransformerLM.fromParams(criticConfig, cck.tensors, engineOpts);
        this.criticOpt = new AdamW(this.critic.params, { ...optOpts, lr: cfg.criticLr ?? lr });
        if (!cck.optimizer) throw new UserError(`${ckDir}/critic: optimizer.safetensors missing; cannot resume exactly`);
        this.criticOpt.loadStateDict(cck.optimizer);
      }
      await this.resumeState(pck.trainerState, ckDir, latest.step);
    } else if (lora) {
      // A fresh LoRA run: policy, critic and reference share one frozen base.
      this.policy = loraModel(policyConfig, refTensors, lora, engineOpts, loraRng.fork("policy"));
      this.policyOpt = new AdamW(this.policy.trainableParams(), optOpts);
      if (ALGORITHMS[cfg.algo].usesCritic && !shared) {
        this.critic = loraModel(criticConfig, refTensors, lora, { ...engineOpts, shareArenaWith: this.policy }, loraRng.fork("critic"));
        this.criticOpt = new AdamW(this.critic.trainableParams(), { ...optOpts, lr: cfg.criticLr ?? lr });
      }
      this.ref = adaptersOff(this.policy);
      this.freshState();
    } else {
      // A fresh run (or a resume of a run that died before its first checkpoint: start over, data moved aside).
      if (resume) this.log(`mpo: ${this.runDir} has no checkpoint that verifies; starting over from step 0 (earlier records are moved aside)`);
      const policyTensors = shared ? withValueHead(refTensors, d) : cloneTensors(refTensors);
      this.policy = TransformerLM.fromParams(policyConfig, policyTensors, engineOpts);
      this.policyOpt = new AdamW(this.policy.params, optOpts);
      if (ALGORITHMS[cfg.algo].usesCritic && !shared) {
        this.critic = TransformerLM.fromParams(criticConfig, withValueHead(refTensors, d), engineOpts);
        this.criticOpt = new AdamW(this.critic.params, { ...optOpts, lr: cfg.criticLr ?? lr });
      }
      this.freshState();
    }
    this.genRng = Rng.fromState(this.st.genRng);
    this.mbRng = Rng.fromState(this.st.mbRng);
    writeJsonAtomic(join(this.runDir, "config.json"), { ...cfg, groupSize: this.G, lr });
    this.writeStatus("running");
  }

  /** Trainer state read back from a checkpoint: validated against latest.json, crash leftovers rolled back, reward state restored. */
  private async resumeState(trainerState: unknown, ckDir: string, step: number): Promise<void> {
    {
      const statePath = join(ckDir, "policy", "trainer_state.json");
      if (trainerState === undefined) throw new UserError(`${statePath}: missing; cannot resume exactly`);
      const s = parseStateWith(statePath, trainerState, trainerStateSchema, "trainer state") as TrainerState;
      if (s.step !== step) throw new UserError(`${statePath}: field 'step' is ${s.step}, the checkpoint is step ${step}`);
      this.st = s;
      this.lastCheckpointStep = s.step;
      this.rollBackTo(s);
      // A meta step pending in the checkpoint may have finished before the crash: adopt it, never redo it.
      const commit = s.pendingMeta ? this.meta.recover(this.metaJob(s.pendingMeta)) : null;
      if (commit) {
        this.st.completedMeta = commit.outcome as MetaOutcome;
        this.st.pendingMeta = null;
        await this.reward.restoreState?.(commit.state);
      } else await this.reward.restoreState?.(s.rewardState);
      this.log(`mpo: resuming ${this.runDir} after step ${s.step}${this.hasRubric() ? ` (rubric v${this.reward.rubricVersion()})` : ""}`);
    }
  }

  /** Step-0 trainer state of a fresh run (RNG streams from the seed). */
  private freshState(): void {
    const seedRng = new Rng(this.cfg.seed);
    this.st = {
      step: 0,
      cursor: { epoch: 0, index: 0 },
      genRng: seedRng.fork("generate").state(),
      mbRng: seedRng.fork("minibatch").state(),
      rubricVersion: this.reward.rubricVersion(),
      rewardState: this.reward.saveState?.() ?? null,
      metaBuffer: [],
      pendingMeta: null,
      elapsedSeconds: 0,
    };
    this.rollBackTo(this.st);
  }

  /** Full-weight policy (and critic) checkpoints: HF model dirs with optimizer and trainer state. */
  private saveFullCheckpoint(dir: string): void {
    const pol = this.policyOpt.stateDict();
    saveCheckpoint(join(dir, "policy"), {
      config: this.policy.config,
      tensors: this.policy.namedTensors(),
      tokenizerJson: this.tokenizer.toJSON(),
      ...this.format.files,
      optimizer: { step: pol.step, tensors: pol.tensors },
      trainerState: this.st,
    });
    // The checkpoint carries the settings it was trained with, so generate/sample/train --policy use them.
    writeGenerationSettings(join(dir, "policy"), {
      ...(this.format.kind === "chat-template" ? { chatTemplate: true } : { separator: this.cfg.promptSeparator }),
      maxPromptTokens: this.cfg.maxPromptTokens,
      maxNewTokens: this.cfg.maxNewTokens,
      eosTokenIds: this.format.stopIds,
      temperature: this.cfg.temperature,
    });
    if (this.critic && this.criticOpt) {
      const c = this.criticOpt.stateDict();
      saveCheckpoint(join(dir, "critic"), { config: this.critic.config, tensors: this.critic.namedTensors(), optimizer: { step: c.step, tensors: c.tensors } });
    }
  }

  /** Moves aside everything a crashed process wrote after the checkpoint being resumed (see module comment). */
  private rollBackTo(s: TrainerState): void {
    const aside = rollBackRecords(this.runDir, s.step);
    if (aside) this.log(`mpo: records after step ${s.step} moved into ${aside}/`);
    this.meta.rollBackAfter(s.step);
  }

  // ---------------------------------------------------------------- data

  /** The shuffled order of epoch e: a pure function of (seed, e), so the cursor alone resumes it. */
  private order(epoch: number): number[] {
    return new Rng(`${this.cfg.seed}:data:${epoch}`).shuffle(this.records.map((_, i) => i));
  }

  private nextPrompts(n: number): TaskRecord[] {
    const out: TaskRecord[] = [];
    let { epoch, index } = this.st.cursor;
    let order = this.order(epoch);
    while (out.length < n) {
      if (index >= order.length) {
        epoch++;
        index = 0;
        order = this.order(epoch);
      }
      out.push(this.records[order[index++]]);
    }
    this.st.cursor = { epoch, index };
    return out;
  }

  private promptIds(record: TaskRecord): number[] {
    const text = this.format.prompt(this.task.buildMessages(record));
    let ids = this.tokenizer.encode(text);
    // A chat template writes its own begin-of-text token when the model has one.
    if (this.tokenizer.bosId !== null && this.format.kind === "separator") ids = [this.tokenizer.bosId, ...ids];
    if (ids.length > this.cfg.maxPromptTokens) ids = ids.slice(ids.length - this.cfg.maxPromptTokens);
    if (ids.length === 0) ids = [this.tokenizer.eosId];
    return ids;
  }

  // ---------------------------------------------------------------- signals / progress / status

  /** First call: finish the current step, checkpoint and stop. Second call: abandon the step in progress. */
  requestStop(): void {
    if (this.stopRequested) this.abandonRequested = true;
    this.stopRequested = true;
  }

  private checkAbandon(): void {
    if (this.abandonRequested) throw new AbandonStep();
  }

  private writeStatus(state: RunState, message?: string): void {
    writeRunStatus(this.runDir, {
      state,
      step: this.st?.step ?? 0,
      totalSteps: this.cfg.steps,
      task: this.task.name,
      algorithm: this.cfg.algo,
      startedAt: this.startedAt,
      rubricVersion: this.reward?.rubricVersion() ?? 0,
      ...(message ? { message } : {}),
    });
  }

  // ---------------------------------------------------------------- main loop

  async run(): Promise<TrainResult> {
    const progress = await Progress.start({ totalSteps: this.cfg.steps, hasRubric: this.hasRubric(), log: this.log, ...(this.hooks.progress !== undefined ? { bar: this.hooks.progress } : {}) }, this.st.step, this.reward.rubricVersion());
    this.log = progress.log;
    if (this.st.pendingMeta) this.meta.start(this.metaJob(this.st.pendingMeta));
    let final: "finished" | "stopped" = "finished";
    try {
      while (this.st.step < this.cfg.steps) {
        if (this.stopRequested) {
          final = "stopped";
          const settled = await this.meta.settle();
          if (settled) {
            // Let a running meta step finish (no writes after we exit) and keep its result in the checkpoint.
            this.st.completedMeta = settled.outcome;
            this.st.pendingMeta = null;
            this.st.rewardState = this.reward.saveState?.() ?? null;
            this.checkpoint();
          } else if (this.lastCheckpointStep !== this.st.step) this.checkpoint(); // steps since the last checkpoint (checkpointEvery > 1)
          break;
        }
        let m: StepMetrics;
        try {
          m = await this.step(this.st.step + 1);
        } catch (err) {
          if (err instanceof AbandonStep) {
            final = "stopped";
            break;
          }
          throw err;
        }
        this.hooks.onStep?.(m);
        progress.step(m);
      }
      if (final === "finished") await this.meta.settle().catch(() => undefined);
    } catch (err) {
      progress.stop();
      this.writeStatus("crashed", (err as Error).message);
      throw err;
    }
    progress.stop();
    const msg =
      final === "finished"
        ? `training finished: ${this.st.step} steps${this.hasRubric() ? `, rubric v${this.reward.rubricVersion()}` : ""}; run directory ${this.runDir}`
        : `stopped after step ${this.st.step} (checkpoint saved); continue with: mpo train --resume ${this.runDir}`;
    this.writeStatus(final, msg);
    this.log(`mpo: ${msg}`);
    return { state: final, step: this.st.step, runDir: this.runDir };
  }

  /** Rewards with a rubric (or guidelines) are the ones a meta step can evolve; only they have versions to show. */
  private hasRubric(): boolean {
    return typeof this.reward.metaStep === "function";
  }

  /**
   * The meta-step schedule, run by the reward (rewards without metaStep: never): every mpoInterval steps, or
   * (adaptive) when a trigger fires on the per-step summaries since the last meta step, within min/max intervals.
   * Never after the last step (no step would use its rubric); mpoInterval 0 = the fixed-rubric baseline.
   */
  private metaScheduler(): MetaScheduler<MetaRolloutSample[], MetaOutcome> {
    const reward = this.reward;
    const cfg = this.cfg;
    const adaptive = adaptiveSettings(cfg);
    const trigger = !reward.metaStep || cfg.mpoInterval === 0
      ? never
      : cfg.mpoSchedule === "adaptive"
        ? decisionTrigger(`adaptive (${adaptive.minInterval}–${adaptive.maxInterval} steps)`, (c) =>
            c.step >= cfg.steps ? { due: false, reason: "quiet", sinceLast: c.sinceLast ?? 0, triggers: [] } : decideAdaptive(c.points ?? [], c.sinceLast ?? 0, adaptive),
          )
        : everySteps(cfg.mpoInterval, { lastStep: cfg.steps });
    return new MetaScheduler<MetaRolloutSample[], MetaOutcome>({
      runDir: this.runDir,
      trigger,
      run: async (job) => ({
        ...(await reward.metaStep!(job.input, { step: job.key, ...(job.decision ? { decision: job.decision } : {}) })),
        step: job.key,
        ...(job.decision ? { trigger: { reason: job.decision.reason, triggers: job.decision.triggers } } : {}),
      }),
      onError: (err, job): MetaOutcome => {
        const fromVersion = reward.rubricVersion();
        return {
          ok: false,
          step: job.key,
          fromVersion,
          toVersion: fromVersion,
          summary: `rubric v${fromVersion} kept: meta step error`,
          itemsBefore: 0,
          itemsAfter: 0,
          added: 0,
          removed: 0,
          error: (err as Error).message,
        };
      },
      // The reward's state after the step (its rubric version): what a resume adopts instead of re-running it.
      commitState: () => reward.saveState?.() ?? null,
      // A half-made step is undone by rolling the reward back to the checkpoint (versions move aside).
      discard: () => reward.restoreState?.(this.st.rewardState),
    });
  }

  /** One training step; returns its metrics after the checkpoint committed it. */
  private async step(step: number): Promise<StepMetrics> {
    const cfg = this.cfg;
    const G = this.G;
    const t0 = now();
    const secs = { generate: 0, score: 0, update: 0, meta: 0, total: 0 };

    // 1. prompts and generation (G responses per prompt, consecutive).
    const prompts = this.nextPrompts(cfg.batchSize);
    const records = prompts.flatMap((r) => Array.from({ length: G }, () => r));
    const promptIds = records.map((r) => this.promptIds(r));
    let tg = now();
    const gen = this.policy.generate(promptIds, {
      maxNewTokens: cfg.maxNewTokens,
      temperature: cfg.temperature,
      topK: cfg.topK,
      topP: cfg.topP,
      stopTokens: this.format.stopIds,
      rng: this.genRng,
    });
    secs.generate = now() - tg;
    await yieldLoop();
    this.checkAbandon();
    const n = records.length;
    const texts = gen.tokens.map((ids) => this.tokenizer.decode(ids.filter((t) => !this.format.stopIds.includes(t))));
    const samples: RewardSample[] = records.map((record, i) => ({ record, response: texts[i], finished: gen.finished[i] }));

    // 2. the meta step started after the previous step must finish before we score with its rubric.
    let metaOutcome: MetaOutcome | undefined;
    if (this.meta.unsettled) {
      tg = now();
      metaOutcome = (await this.meta.settle())!.outcome;
      this.st.pendingMeta = null;
      secs.meta = now() - tg;
      this.checkAbandon();
    } else if (this.st.completedMeta) {
      metaOutcome = this.st.completedMeta;
      this.st.completedMeta = null;
    }
    const rubricVersion = this.reward.rubricVersion();

    // 3. scoring. Unusable scores (null, non-finite, or a whole failed call) are excluded, never NaN.
    tg = now();
    let results: RewardResult[];
    try {
      results = await this.reward.score(samples, { step });
      if (!Array.isArray(results) || results.length !== n) throw new Error(`reward returned ${Array.isArray(results) ? results.length : typeof results} results for ${n} samples`);
    } catch (err) {
      results = samples.map(() => ({ score: null, normalized: null, flags: [`reward-error: ${(err as Error).message}`] }));
    }
    results = results.map((r) =>
      r && typeof r.score === "number" && Number.isFinite(r.score) ? r : { ...(r ?? {}), score: null, normalized: null, flags: [...(r?.flags ?? []), "no-usable-score"] },
    );
    secs.score = now() - tg;
    this.checkAbandon();
    const valid = results.map((r) => r.score !== null);
    const rawScores = results.map((r) => r.score ?? NaN);
    // Missing-EOS penalty: a truncated response is worse than its text alone suggests.
    const scores = rawScores.map((s, i) => (gen.finished[i] ? s : s - cfg.missingEosPenalty));

    // 4. the update on the samples that have a score.
    tg = now();
    const use = valid.flatMap((v, i) => (v ? [i] : []));
    const upd = use.length > 0 ? await this.update(use, promptIds, gen.tokens, scores, valid, step) : null;
    secs.update = now() - tg;

    // 5. record: rollouts, meta buffer, metrics, checkpoint (commit), next meta step.
    const rollouts = samples.map((s, i) => ({
      id: `${pad6(step)}-${i}`,
      step,
      recordId: s.record.id,
      prompt: s.record.prompt,
      response: s.response,
      ...(s.record.reference !== undefined ? { reference: s.record.reference } : {}),
      score: results[i].score,
      normalized: results[i].normalized,
      rubricVersion,
      evaluation: (results[i].evaluation ?? null) as Evaluation | null,
      flags: results[i].flags ?? [],
      length: gen.tokens[i].length,
      eos: gen.finished[i],
    }));
    if (cfg.saveRollouts) writeFileAtomic(runPath(this.runDir, rolloutsFile(step)), rollouts.map((r) => JSON.stringify(r) + "\n").join(""));
    for (let i = 0; i < n; i++) if (valid[i]) this.st.metaBuffer.push({ ...samples[i], result: results[i] });
    this.st.metaPoints = [
      ...(this.st.metaPoints ?? []),
      windowPoint(step, samples.map((s, i) => ({ normalized: results[i].normalized, response: s.response, length: gen.tokens[i].length, finished: gen.finished[i], flags: results[i].flags }))),
    ];

    const sc = summarize(rawScores.filter((_, i) => valid[i]));
    const norm = results.filter((r) => r.normalized !== null && Number.isFinite(r.normalized)).map((r) => r.normalized as number);
    const usage = UsageMeter.add({}, this.reward.takeUsage?.() ?? {});
    secs.total = now() - t0;
    const m: StepMetrics = {
      step,
      time: new Date().toISOString(),
      rubricVersion,
      epoch: this.st.cursor.epoch,
      score: { mean: sc.mean, std: sc.std, min: sc.min, max: sc.max },
      normalizedScore: { mean: norm.length ? norm.reduce((a, b) => a + b, 0) / norm.length : 0 },
      kl: upd?.kl ?? 0,
      entropy: upd?.entropy ?? 0,
      policyLoss: upd?.policyLoss ?? 0,
      valueLoss: upd?.valueLoss ?? 0,
      clipFrac: upd?.clipFrac ?? 0,
      valueClipFrac: upd?.valueClipFrac ?? 0,
      approxKl: upd?.approxKl ?? 0,
      responseLength: { mean: gen.tokens.reduce((a, t) => a + t.length, 0) / Math.max(1, n) },
      eosRate: gen.finished.filter(Boolean).length / Math.max(1, n),
      samples: n,
      excluded: n - use.length,
      ...(use.length === 0 ? { skipped: "no sample has a usable score" } : {}),
      lr: this.lrAt(step - 1),
      gradNorm: upd?.gradNorm ?? 0,
      llm: usage,
      seconds: secs,
      ...(metaOutcome
        ? {
            meta: {
              ok: metaOutcome.ok,
              ...(metaOutcome.step !== undefined ? { step: metaOutcome.step } : {}),
              fromVersion: metaOutcome.fromVersion,
              toVersion: metaOutcome.toVersion,
              itemsBefore: metaOutcome.itemsBefore,
              itemsAfter: metaOutcome.itemsAfter,
              added: metaOutcome.added,
              removed: metaOutcome.removed,
              summary: metaOutcome.summary,
              ...(metaOutcome.error ? { error: metaOutcome.error } : {}),
              ...(metaOutcome.trigger ? { trigger: metaOutcome.trigger } : {}),
              ...(metaOutcome.guard ? { guard: metaOutcome.guard } : {}),
              ...(metaOutcome.rejectedVersion !== undefined ? { rejectedVersion: metaOutcome.rejectedVersion } : {}),
            },
          }
        : {}),
    };
    appendJsonl(runPath(this.runDir, METRICS_FILE), m);

    // The next meta step is decided now so the checkpoint carries it (a resume re-runs it).
    const points = this.st.metaPoints ?? [];
    const { due: metaDue, decision } = this.meta.decide({ step, windowSamples: this.st.metaBuffer.length, sinceLast: points.length, points });
    if (metaDue) {
      this.st.pendingMeta = { step, rollouts: this.st.metaBuffer, ...(decision ? { decision } : {}) };
      this.st.metaBuffer = [];
      this.st.metaPoints = [];
    }
    this.st.step = step;
    this.st.genRng = this.genRng.state();
    this.st.mbRng = this.mbRng.state();
    if (this.policy.lora) this.st.loraDropCounts = { policy: this.policy.loraDropCount, ...(this.critic?.lora ? { critic: this.critic.loraDropCount } : {}) };
    this.st.rubricVersion = rubricVersion;
    this.st.rewardState = this.reward.saveState?.() ?? null;
    this.st.elapsedSeconds += now() - t0;
    if (step % cfg.checkpointEvery === 0 || step === cfg.steps || this.stopRequested) this.checkpoint();
    this.writeStatus("running");
    if (metaDue) this.meta.start(this.metaJob(this.st.pendingMeta!));
    return m;
  }

  private metaJob(p: NonNullable<TrainerState["pendingMeta"]>) {
    return { key: p.step, input: p.rollouts, ...(p.decision ? { decision: p.decision } : {}) };
  }

  /**
   * Advantages and the clipped updates for the samples `use` (indices into the step's batch). For GRPO/RLOO
   * the group statistics see all G responses of a prompt with the invalid ones masked out.
   */
  private async update(
    use: number[],
    promptIds: number[][],
    responses: number[][],
    scores: number[],
    valid: boolean[],
    step: number,
  ) {
    const cfg = this.cfg;
    const R = Math.max(1, ...use.map((i) => responses[i].length));
    const all: Sample[] = use.map((i) => ({ prompt: promptIds[i], response: responses[i] }));
    const B = all.length;
    const padId = 0;
    const opts = { temperature: cfg.temperature };
    const shared = this.sharedCritic;

    // Behaviour-policy, reference and critic quantities, in chunks to bound activation memory.
    const oldLogp = new Float64Array(B * R);
    const refLogp = new Float64Array(B * R);
    const entropy = new Float64Array(B * R);
    const oldValues = new Float64Array(B * R);
    const mask = new Float64Array(B * R);
    const chunk = 32;
    for (let c0 = 0; c0 < B; c0 += chunk) {
      const rows = all.slice(c0, c0 + chunk);
      const p = pack(rows, R, padId);
      const po = this.policy.score(p.tokens, p.targets, p.B, p.T, { ...opts, needEntropy: true, needValues: shared });
      oldLogp.set(gather(po.logprobs, p), c0 * R);
      entropy.set(gather(po.entropy!, p), c0 * R);
      if (shared) oldValues.set(gather(po.values!, p), c0 * R);
      const ro = this.ref.score(p.tokens, p.targets, p.B, p.T, opts);
      refLogp.set(gather(ro.logprobs, p), c0 * R);
      if (this.critic) {
        const co = this.critic.score(p.tokens, p.targets, p.B, p.T, { ...opts, needValues: true, needLogprobs: false });
        oldValues.set(gather(co.values!, p), c0 * R);
      }
      mask.set(p.mask, c0 * R);
      await yieldLoop();
      this.checkAbandon();
    }

    // KL to the reference per token (behaviour policy vs frozen initial policy), and per sequence.
    const klTok = klArray(oldLogp, refLogp, mask, cfg.klEstimator);
    const klSeq = new Float64Array(B);
    for (let b = 0; b < B; b++) for (let j = 0; j < R; j++) klSeq[b] += klTok[b * R + j];

    // Advantages (and PPO's value targets) by the configured algorithm.
    const algo = ALGORITHMS[cfg.algo];
    const adv = algo.advantages({ B, R, G: this.G, mask, klTok, klSeq, oldValues, scores, valid, use }, cfg);
    const returns = adv.returns;

    // Clipped updates: ppoEpochs passes over a fresh minibatch split of the batch.
    const lr = this.lrAt(step - 1);
    const nMb = Math.min(cfg.miniBatches, B);
    let sums = { policyLoss: 0, valueLoss: 0, clipFrac: 0, valueClipFrac: 0, approxKl: 0, gradNorm: 0, n: 0 };
    // Adapter dropout is a training-forward thing: on for the updates, off again for sampling and scoring.
    this.policy.loraTrain = true;
    if (this.critic) this.critic.loraTrain = true;
    for (let epoch = 0; epoch < cfg.ppoEpochs; epoch++) {
      const perm = this.mbRng.shuffle(Array.from({ length: B }, (_, i) => i));
      for (let k = 0; k < nMb; k++) {
        const rows = perm.filter((_, idx) => idx % nMb === k);
        const p = pack(rows.map((r) => all[r]), R, padId);
        const sel = (src: Float64Array) => {
          const out = new Float64Array(rows.length * R);
          rows.forEach((r, b) => out.set(src.subarray(r * R, (r + 1) * R), b * R));
          return out;
        };
        const mMask = p.mask;
        this.policy.zeroGrad();
        const out = this.policy.score(p.tokens, p.targets, p.B, p.T, { ...opts, needValues: shared });
        const logp = gather(out.logprobs, p);
        const l = algo.policyLoss({ logp, oldLogp: sel(oldLogp), refLogp: sel(refLogp), mask: mMask, rows, R, sel }, adv, cfg);
        const dLogp = l.dLogp;
        sums.policyLoss += l.loss;
        sums.clipFrac += l.clipFrac;
        sums.approxKl += l.approxKl;
        let dValues: Float32Array | null = null;
        if (shared) {
          const v = clippedValueLoss(gather(out.values!, p), sel(oldValues), sel(returns), mMask, cfg.cliprangeValue);
          dValues = scatter(v.dValues, p, cfg.vfCoef);
          sums.valueLoss += v.loss;
          sums.valueClipFrac += v.clipFrac;
        }
        this.policy.backward(scatter(dLogp, p), dValues);
        if (gradsFinite(this.policy.trainableParams())) {
          sums.gradNorm += clipGradNorm(this.policy.trainableParams(), cfg.maxGradNorm);
          this.policyOpt.update(lr);
        }
        if (this.critic && this.criticOpt) {
          this.critic.zeroGrad();
          const co = this.critic.score(p.tokens, p.targets, p.B, p.T, { ...opts, needValues: true, needLogprobs: false });
          const v = clippedValueLoss(gather(co.values!, p), sel(oldValues), sel(returns), mMask, cfg.cliprangeValue);
          this.critic.backward(null, scatter(v.dValues, p, cfg.vfCoef));
          if (gradsFinite(this.critic.trainableParams())) {
            clipGradNorm(this.critic.trainableParams(), cfg.maxGradNorm);
            this.criticOpt.update(cfg.criticLr ?? lr);
          }
          sums.valueLoss += v.loss;
          sums.valueClipFrac += v.clipFrac;
        }
        sums.n++;
        await yieldLoop();
        this.checkAbandon();
      }
    }
    this.policy.loraTrain = false;
    if (this.critic) this.critic.loraTrain = false;
    const k = Math.max(1, sums.n);
    let klMean = 0;
    for (let b = 0; b < B; b++) klMean += klSeq[b];
    return {
      kl: klMean / Math.max(1, B),
      entropy: maskedMean(entropy, mask),
      policyLoss: sums.policyLoss / k,
      valueLoss: sums.valueLoss / k,
      clipFrac: sums.clipFrac / k,
      valueClipFrac: sums.valueClipFrac / k,
      approxKl: sums.approxKl / k,
      gradNorm: sums.gradNorm / k,
    };
  }

  // ---------------------------------------------------------------- checkpoints

  /** Writes checkpoints/step-N/{policy,critic}, then its manifest and latest.json (the commit point), then prunes. */
  checkpoint(): void {
    const dir = join(this.runDir, checkpointDir(this.st.step));
    if (this.policy.lora) {
      // LoRA: only the adapters (PEFT format), value head and optimizer; the base is reference/.
      saveLoraModel(join(dir, "policy"), this.policy, this.policyOpt, this.cfg.policy ?? "reference", this.st);
      if (this.critic && this.criticOpt) saveLoraModel(join(dir, "critic"), this.critic, this.criticOpt, this.cfg.policy ?? "reference");
    } else this.saveFullCheckpoint(dir);
    commitCheckpoint(this.runDir, this.st.step, this.cfg.keepCheckpoints);
    this.lastCheckpointStep = this.st.step;
  }
}

function firstEos(c: ModelConfig): number | undefined {
  const e = c.eos_token_id;
  return Array.isArray(e) ? e[0] : e;
}
