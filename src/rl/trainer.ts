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
 * checkpoint, so a resumed run continues exactly as the uninterrupted one would. Building the models and
 * state for a new or resumed run is rl/setup.ts, the prompt cursor rl/prompts.ts, the checkpoint files
 * rl/checkpointing.ts; this file is the loop.
 *
 * The critic (PPO): by default a separate value model initialized from the policy weights with a fresh
 * scalar head, as in the paper (TRL's PolicyAndValueWrapper with two models); `critic: "shared"` puts the
 * value head on the policy trunk instead (half the compute, value gradients then shape the policy's
 * features). The reference policy is a frozen copy of the initial policy saved in RUN/reference/.
 */
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { AdamW, clipGradNorm, gradsFinite, lrSchedule, TransformerLM } from "../engine/index.ts";
import { resolveConfig } from "../engine/config.ts";
import type { Evaluation } from "../judge/types.ts";
import type { UsageByStage } from "../llm/types.ts";
import { UsageMeter } from "../llm/usage.ts";
import { decisionTrigger, everySteps, MetaScheduler, never } from "../meta/scheduler.ts";
import { decideAdaptive, windowPoint } from "../meta/triggers.ts";
import type { TaskDefinition, TaskRecord } from "../tasks/types.ts";
import { appendJsonl, writeFileAtomic, writeJsonAtomic } from "../util/atomic.ts";
import { UserError } from "../util/errors.ts";
import { Rng } from "../util/rng.ts";
import { checkpointDir, METRICS_FILE, pad6, rolloutsFile, runPath } from "../util/run-layout.ts";
import { klArray, maskedMean, summarize } from "./advantages.ts";
import { ALGORITHMS } from "./algorithms.ts";
import { commitCheckpoint, saveModels } from "./checkpointing.ts";
import { adaptiveSettings, groupSizeOf, lrOf, type TrainConfig } from "./config.ts";
import { adaptersOff, type Scorer } from "./lora-policy.ts";
import { clippedValueLoss } from "./losses.ts";
import type { PolicyFormat } from "./policy-format.ts";
import { Progress, type RunState, writeRunStatus } from "./progress.ts";
import { nextPrompts, promptTokenIds } from "./prompts.ts";
import type { MetaOutcome, RewardFunction, RewardResult, RewardSample } from "./reward-types.ts";
import { assertContextFits, assertHasPolicy, buildModels, freshTrainerState, loadBasePolicy, openRunDir, readTrainerState, resumeRun, rollBackRun } from "./setup.ts";
import { pendingMetaJob, type MetaRolloutSample, type TrainerState } from "./state.ts";
import type { PolicyTokenizer } from "./tokenizer.ts";

export type { DataCursor, MetaRolloutSample, TrainerState } from "./state.ts";

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
    const latest = openRunDir(this.runDir, { resume, overwrite, log: this.log });
    assertHasPolicy(cfg, this.task, this.runDir, resume);
    mkdirSync(this.runDir, { recursive: true });
    this.records = await this.task.load("train", { dataDir: cfg.dataDir, limit: cfg.limit || undefined });
    if (this.records.length === 0) throw new UserError(`task ${this.task.name}: the train split has no records`);
    const engineOpts = { engine: cfg.engine, recompute: cfg.recompute };

    // The frozen initial policy (RUN/reference/): the KL reference, or with LoRA the policy with its adapters off.
    const base = await loadBasePolicy(cfg, this.runDir, resume, engineOpts);
    this.tokenizer = base.tokenizer;
    this.format = base.format;
    const fullRef = cfg.lora.enabled ? null : TransformerLM.fromParams(base.config, base.tensors, engineOpts);
    assertContextFits(cfg, resolveConfig(base.config));
    const lr = lrOf(cfg);
    this.lrAt = lrSchedule({ lr, warmupSteps: cfg.warmupSteps, totalSteps: cfg.steps, decay: cfg.lrDecay, minLrRatio: 0 });

    this.reward = await makeReward(this.runDir);
    this.meta = this.metaScheduler();

    // Policy, critic and optimizers: from the checkpoint being resumed, or fresh from the base (a resume of a
    // run that died before its first checkpoint starts over, its records moved aside).
    const ckDir = resume && latest ? join(this.runDir, latest.path) : null;
    if (resume && !latest) this.log(`mpo: ${this.runDir} has no checkpoint that verifies; starting over from step 0 (earlier records are moved aside)`);
    const models = buildModels(cfg, base, engineOpts, ckDir);
    ({ policy: this.policy, critic: this.critic, sharedCritic: this.sharedCritic, policyOpt: this.policyOpt, criticOpt: this.criticOpt } = models);
    this.ref = fullRef ?? adaptersOff(this.policy);

    // Trainer state: the checkpoint's (crash leftovers rolled back, reward restored), or step 0.
    const run = { runDir: this.runDir, meta: this.meta, reward: this.reward, log: this.log };
    if (ckDir && latest) {
      this.st = readTrainerState(models.trainerState, ckDir, latest.step);
      this.lastCheckpointStep = this.st.step;
      await resumeRun(this.st, run);
      if (this.policy.lora) {
        this.policy.loraDropCount = this.st.loraDropCounts?.policy ?? 0;
        if (this.critic) this.critic.loraDropCount = this.st.loraDropCounts?.critic ?? 0;
      }
    } else {
      this.st = freshTrainerState(cfg.seed, this.reward);
      rollBackRun(run, this.st.step);
    }
    this.genRng = Rng.fromState(this.st.genRng);
    this.mbRng = Rng.fromState(this.st.mbRng);
    writeJsonAtomic(join(this.runDir, "config.json"), { ...cfg, groupSize: this.G, lr });
    this.writeStatus("running");
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
    if (this.st.pendingMeta) this.meta.start(pendingMetaJob(this.st.pendingMeta));
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
    const next = nextPrompts(this.records, cfg.seed, this.st.cursor, cfg.batchSize);
    this.st.cursor = next.cursor;
    const records = next.prompts.flatMap((r) => Array.from({ length: G }, () => r));
    const promptIds = records.map((r) => promptTokenIds(r, this.task, this.format, this.tokenizer, cfg.maxPromptTokens));
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
    if (metaDue) this.meta.start(pendingMetaJob(this.st.pendingMeta!));
    return m;
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
    const { policy, policyOpt, critic, criticOpt, tokenizer, format } = this;
    saveModels(join(this.runDir, checkpointDir(this.st.step)), { policy, policyOpt, critic, criticOpt, tokenizer, format, state: this.st }, this.cfg);
    commitCheckpoint(this.runDir, this.st.step, this.cfg.keepCheckpoints);
    this.lastCheckpointStep = this.st.step;
  }
}
