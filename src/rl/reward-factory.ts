/**
 * Builds the trainer's RewardFunction from configuration, and resolves the task:
 *   keyword / length       rule rewards (no LLM)
 *   rule-rubric            rule judge + rule meta step over a real rubric store (offline MPO)
 *   judge                  the paper's setup: an LLM junior judge (RubricJudge) scores against the newest
 *                          rubric version in RUN/rubrics; every mpoInterval steps the LLM senior judge
 *                          (metaStep) writes the next version. Any OpenAI-compatible server (vLLM, SGLang,
 *                          llama.cpp, Ollama, OpenAI) is reached through src/llm, with its retries.
 * A sample whose judge call still fails after the client's retries gets score null: the trainer
 * excludes it from the update and counts it.
 */
import type { TaskOptions } from "../tasks/spec.ts";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { RubricJudge } from "../judge/rubric-judge.ts";
import { checkFormatRule } from "../judge/format-rule.ts";
import { type ProtocolName, type ProtocolProfile, resolveProtocol, withOverrides } from "../judge/protocol.ts";
import { boxedAnswerEvaluation, verdictEvaluation } from "../judge/verifier-reward.ts";
import type { ScoreInput } from "../judge/types.ts";
import { createChatModel } from "../llm/openai-client.ts";
import type { ChatModel, UsageByStage } from "../llm/types.ts";
import { UsageMeter } from "../llm/usage.ts";
import { type GuardOptions, judgeGuard } from "../meta/guard.ts";
import { metaStep, type MetaRollout } from "../meta/meta-step.ts";
import type { MetaDecision } from "../meta/triggers.ts";
import { loadRubricFile } from "../rubric/format.ts";
import { GuidelineStore, RubricStore } from "../rubric/store.ts";
import { loadGuidelineFile } from "../rubric/guidelines.ts";
import { MathMixedReward } from "../judge/math-reward.ts";
import { PlanExecuteJudge } from "../judge/plan-execute.ts";
import { metaStepGuidelines } from "../meta/meta-guidelines.ts";
import type { GuidelineSet } from "../rubric/types.ts";
import type { Rubric } from "../rubric/types.ts";
import type { TaskDefinition } from "../tasks/types.ts";
import { UserError } from "../util/errors.ts";
import { Rng } from "../util/rng.ts";
import { BUILTIN_TASKS } from "./builtin-task.ts";
import type { RewardConfig } from "./config.ts";
import type { MetaOutcome, RewardFunction, RewardResult, RewardSample } from "./reward-types.ts";
import { KeywordReward, LengthReward } from "./rewards/keyword.ts";
import { rollbackRubricStore, RuleRubricReward } from "./rewards/rule-rubric.ts";

const REPO_ROOT = resolve(import.meta.dirname, "..", "..");

/** A built-in toy task or a registered task (name or task config path). */
export async function resolveTask(name: string, opts: Pick<TaskOptions, "dataDir" | "data"> = {}): Promise<TaskDefinition> {
  if (BUILTIN_TASKS[name]) return BUILTIN_TASKS[name];
  const { getTask } = await import("../tasks/registry.ts");
  return getTask(name, { ...(opts.dataDir ? { dataDir: opts.dataDir } : {}), ...(opts.data ? { data: opts.data } : {}) });
}

/** Initial rubric: a file path, or a task name whose prompts/tasks/NAME/initial-rubric.txt exists. */
export function resolveInitialRubric(spec: string): Rubric {
  const candidates = [spec, join(REPO_ROOT, "prompts", "tasks", spec, "initial-rubric.txt")];
  const file = candidates.find((p) => existsSync(p));
  if (!file) throw new UserError(`reward.rubric: no rubric file '${spec}' (nor a built-in prompts/tasks/${spec}/initial-rubric.txt)`);
  return loadRubricFile(file);
}

function rubricOfTask(task: TaskDefinition): string {
  if (task.reward.kind === "rubric") return task.reward.initialRubric;
  throw new UserError(`reward.rubric: task ${task.name} has no initial rubric; give one with --rubric FILE`);
}

export interface JudgeRewardOptions {
  runDir: string;
  task: TaskDefinition;
  rm: ChatModel;
  mrm: ChatModel;
  /** Shared by rm and mrm models so takeUsage() reports every call by stage. */
  meter: UsageMeter;
  initialRubric: Rubric;
  seed: number;
  mode?: "per-item" | "single-call";
  metaSamples?: number;
  prescreen?: boolean;
  concurrency?: number;
  /** Judge protocol profile; default "paper". */
  protocol?: ProtocolName;
  judgeSeesReference?: boolean;
  showRationales?: boolean;
  /** Rubric acceptance guard settings (null/undefined = no guard). */
  guard?: Partial<GuardOptions> | null;
}

/**
 * What the judges see of a sample under a profile. "task" view (paper): the task's persona, its bare
 * prompt, and the instruction only where the task says the junior sees it; the senior always sees the
 * instruction. "generic" view (hardened, or a task without a judge view): our task description and the
 * whole policy prompt.
 */
export function judgeInputs(task: TaskDefinition, profile: ProtocolProfile, s: RewardSample): { junior: ScoreInput; senior: ScoreInput } {
  const common = {
    response: s.response,
    ...(s.record.reference !== undefined ? { reference: s.record.reference } : {}),
    ...(s.record.group !== undefined ? { group: s.record.group } : {}),
  };
  if (profile.junior.view === "task" && task.judgeView) {
    const v = task.judgeView(s.record);
    return {
      junior: { ...common, taskDescription: v.juniorSeesInstruction ? v.instruction : "", prompt: v.prompt, persona: v.persona },
      senior: { ...common, taskDescription: v.instruction || task.description, prompt: v.prompt, persona: v.persona },
    };
  }
  const generic = { ...common, taskDescription: task.description, prompt: s.record.prompt };
  return { junior: generic, senior: generic };
}

/** The paper's reward: LLM junior judge over the current rubric version; LLM senior judge for meta steps. */
export class JudgeReward implements RewardFunction {
  readonly name = "judge";
  readonly store: RubricStore;
  readonly protocol: ProtocolProfile;
  private readonly judge: RubricJudge;

  constructor(private readonly o: JudgeRewardOptions) {
    this.store = RubricStore.open(o.runDir);
    this.store.initialize(o.initialRubric);
    const base = resolveProtocol(o.protocol);
    this.protocol = o.judgeSeesReference === undefined ? base : withOverrides(base, { junior: { seesReference: o.judgeSeesReference } });
    this.judge = new RubricJudge({ model: o.rm, mode: o.mode ?? "per-item", concurrency: o.concurrency ?? 16, protocol: this.protocol });
  }

  rubricVersion(): number {
    return this.store.latest()?.version ?? 0;
  }

  async score(samples: RewardSample[]): Promise<RewardResult[]> {
    const version = this.store.latest();
    if (!version) throw new Error(`no rubric version in ${this.store.dir}`);
    // The task's format rule (ethics: −10 without a verdict or with under 30 words) decides before any judge call.
    const rule = this.o.task.reward.kind === "rubric" ? this.o.task.reward.formatRule : undefined;
    const ruled = samples.map((s) => (rule ? checkFormatRule(s.response, rule, version.version) : null));
    const toJudge = samples.filter((_, i) => !ruled[i]);
    const judged = await this.judge.scoreBatchSettled(toJudge.map((s) => judgeInputs(this.o.task, this.protocol, s).junior), version);
    let k = 0;
    const outcomes = samples.map((_, i) => (ruled[i] ? { ok: true as const, evaluation: ruled[i]! } : judged[k++]));
    return outcomes.map((o) =>
      o.ok
        ? { score: o.evaluation.total, normalized: o.evaluation.normalized, evaluation: o.evaluation, flags: o.evaluation.flags }
        : { score: null, normalized: null, evaluation: null, flags: [`judge-unavailable: ${o.error.message}`] },
    );
  }

  async metaStep(rollouts: Array<RewardSample & { result: RewardResult }>, ctx: { step: number; decision?: MetaDecision }): Promise<MetaOutcome> {
    const metaRollouts: MetaRollout[] = rollouts
      .filter((r) => r.result.evaluation)
      .map((r, i) => {
        const { persona: _persona, ...senior } = judgeInputs(this.o.task, this.protocol, r).senior;
        return { id: `${ctx.step}-${i}-${r.record.id}`, ...senior, evaluation: r.result.evaluation! };
      });
    const persona = rollouts.length ? judgeInputs(this.o.task, this.protocol, rollouts[0]).senior.persona : undefined;
    // The guard re-scores probes as the junior saw them (the meta rollouts carry the senior's view).
    const juniorById = new Map(metaRollouts.map((m, i) => [m.id, judgeInputs(this.o.task, this.protocol, rollouts.filter((r) => r.result.evaluation)[i]).junior]));
    const guard = this.o.guard
      ? judgeGuard({
          judge: this.judge,
          window: metaRollouts,
          runDir: this.o.runDir,
          store: this.store,
          rng: new Rng(`${this.o.seed}:guard:${ctx.step}`),
          options: this.o.guard,
          juniorInput: (r) => juniorById.get(r.id)!,
        })
      : undefined;
    const res = await metaStep({
      ...(guard ? { guard } : {}),
      ...(ctx.decision ? { trigger: ctx.decision } : {}),
      protocol: this.protocol,
      ...(persona ? { persona } : {}),
      ...(this.o.showRationales !== undefined ? { showRationales: this.o.showRationales } : {}),
      model: this.o.mrm,
      rollouts: metaRollouts,
      store: this.store,
      step: ctx.step,
      runDir: this.o.runDir,
      // Seeded by step so a resumed run re-samples the same rollouts.
      rng: new Rng(`${this.o.seed}:meta:${ctx.step}`),
      samples: this.o.metaSamples ?? 20,
      prescreen: this.o.prescreen ?? false,
    });
    const prev = res.previous;
    return {
      ok: res.ok,
      fromVersion: prev.version,
      toVersion: res.version?.version ?? prev.version,
      summary: res.summary,
      itemsBefore: res.diff?.itemsBefore ?? prev.rubric.items.length,
      itemsAfter: res.diff?.itemsAfter ?? prev.rubric.items.length,
      added: res.diff?.added ?? 0,
      removed: res.diff?.removed ?? 0,
      ...(res.error ? { error: res.error } : {}),
      ...(res.guard ? { guard: { accepted: res.guard.accepted, reasons: res.guard.reasons, scorings: res.guard.scorings, numbers: res.guard.numbers } } : {}),
      ...(res.rejected ? { rejectedVersion: res.rejected.version } : {}),
    };
  }

  takeUsage(): UsageByStage {
    return this.o.meter.take();
  }

  saveState(): unknown {
    return { rubricVersion: this.rubricVersion() };
  }

  restoreState(state: unknown): void {
    const v = (state as { rubricVersion?: unknown } | null)?.rubricVersion;
    if (typeof v === "number") rollbackRubricStore(this.store, v);
  }
}

export interface MathRewardOptions {
  runDir: string;
  task: TaskDefinition;
  rm: ChatModel;
  mrm: ChatModel;
  meter: UsageMeter;
  initialGuidelines: GuidelineSet;
  seed: number;
  answerCheckProbability: number;
  minReasoningWords: number;
  casesPerGroup?: number;
  concurrency?: number;
  protocol?: ProtocolName;
  answerBox?: "first" | "last";
  answerMatch?: "reference" | "lenient";
}

/**
 * The paper's math reward with MPO over grouped guidelines (RUN/guidelines). The per-step coin is drawn
 * from an Rng seeded by (seed, step), so a resumed run takes the same paths.
 */
export class MathJudgeReward implements RewardFunction {
  readonly name = "math-mixed";
  readonly store: GuidelineStore;
  readonly protocol: ProtocolProfile;
  private readonly judge: PlanExecuteJudge;

  constructor(private readonly o: MathRewardOptions) {
    this.store = GuidelineStore.open(o.runDir);
    this.store.initialize(o.initialGuidelines);
    this.protocol = resolveProtocol(o.protocol);
    this.judge = new PlanExecuteJudge({ model: o.rm, protocol: this.protocol });
  }

  rubricVersion(): number {
    return this.store.latest()?.version ?? 0;
  }

  private input(s: RewardSample) {
    // The math judge sees the reference solution in every profile (the plan is written from it).
    return { ...judgeInputs(this.o.task, this.protocol, s).junior, ...(s.record.label !== undefined ? { gold: s.record.label } : {}) };
  }

  async score(samples: RewardSample[], ctx: { step: number }): Promise<RewardResult[]> {
    const version = this.store.latest();
    if (!version) throw new Error(`no guideline version in ${this.store.dir}`);
    const mixed = new MathMixedReward({
      judge: this.judge,
      rng: new Rng(`${this.o.seed}:math:${ctx.step}`),
      answerCheckProbability: this.o.answerCheckProbability,
      minWords: this.o.minReasoningWords,
      concurrency: this.o.concurrency,
      answerBox: this.o.answerBox ?? this.protocol.math.answerBox,
      answerMatch: this.o.answerMatch ?? this.protocol.math.answerMatch,
    });
    const { outcomes } = await mixed.scoreBatch(samples.map((s) => this.input(s)), version);
    return outcomes.map((o) =>
      o.ok
        ? { score: o.evaluation.total, normalized: o.evaluation.normalized, evaluation: o.evaluation, flags: o.evaluation.flags }
        : { score: null, normalized: null, evaluation: null, flags: [`judge-unavailable: ${o.error.message}`] },
    );
  }

  async metaStep(rollouts: Array<RewardSample & { result: RewardResult }>, ctx: { step: number }): Promise<MetaOutcome> {
    // The reference analyzes every case, answer checks included; hardened keeps plan/execute cases only.
    const cases: MetaRollout[] = rollouts
      .filter((r) => r.result.evaluation && (this.protocol.math.includeAnswerChecks || r.result.evaluation.flags.includes("path:plan-execute")))
      .map((r, i) => {
        const { persona: _persona, gold: _gold, ...c } = this.input(r);
        return { id: `${ctx.step}-${i}-${r.record.id}`, ...c, evaluation: r.result.evaluation! };
      });
    const prev = this.store.latest()!;
    const before = Object.keys(prev.guidelines.groups).length;
    if (cases.length === 0)
      return { ok: true, fromVersion: prev.version, toVersion: prev.version, summary: `guidelines v${prev.version} kept: no judged cases since the last meta step`, itemsBefore: before, itemsAfter: before, added: 0, removed: 0 };
    const res = await metaStepGuidelines({
      model: this.o.mrm,
      rollouts: cases,
      store: this.store,
      step: ctx.step,
      runDir: this.o.runDir,
      rng: new Rng(`${this.o.seed}:meta:${ctx.step}`),
      protocol: this.protocol,
      ...(cases.length && this.input(rollouts[0]).persona ? { persona: this.input(rollouts[0]).persona } : {}),
      ...(this.o.casesPerGroup !== undefined ? { casesPerGroup: this.o.casesPerGroup } : {}),
    });
    const after = res.version ? Object.keys(res.version.guidelines.groups).length : before;
    return {
      ok: res.ok,
      fromVersion: res.previous.version,
      toVersion: res.version?.version ?? res.previous.version,
      summary: res.summary,
      itemsBefore: before,
      itemsAfter: after,
      added: Math.max(0, after - before),
      removed: 0,
      ...(res.error ? { error: res.error } : {}),
    };
  }

  takeUsage(): UsageByStage {
    return this.o.meter.take();
  }

  saveState(): unknown {
    return { guidelineVersion: this.rubricVersion() };
  }

  restoreState(state: unknown): void {
    const v = (state as { guidelineVersion?: unknown } | null)?.guidelineVersion;
    if (typeof v === "number") rollbackRubricStore(this.store, v);
  }
}

/** Rule verifier reward (no LLM): boxed-answer equivalence or verdict-tag match against the record's gold. */
export class VerifierReward implements RewardFunction {
  readonly name: string;
  constructor(private readonly verifier: "boxed" | "verdict") {
    this.name = `verifier-${verifier}`;
  }
  async score(samples: RewardSample[]): Promise<RewardResult[]> {
    return samples.map((s) => {
      const gold = s.record.label ?? s.record.reference;
      if (gold === undefined) return { score: null, normalized: null, flags: ["no-gold-answer"] };
      const e = this.verifier === "boxed" ? boxedAnswerEvaluation(s.response, gold) : verdictEvaluation(s.response, gold);
      return { score: e.total, normalized: e.normalized, evaluation: e, flags: e.flags };
    });
  }
  rubricVersion(): number {
    return 0;
  }
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

/** The RewardFunction a config asks for, bound to a run directory. */
export function createReward(cfg: RewardConfig, ctx: { runDir: string; task: TaskDefinition; seed: number; guard?: Partial<GuardOptions> | null }): RewardFunction {
  switch (cfg.kind) {
    case "verifier":
      return new VerifierReward(cfg.verifier);
    case "keyword":
      return new KeywordReward(cfg.word);
    case "length":
      return new LengthReward(cfg.min, cfg.max);
    case "rule-rubric":
      return new RuleRubricReward(ctx.runDir, cfg.word, { maxAvoid: cfg.maxAvoid });
    case "math-mixed": {
      const meter = new UsageMeter();
      const rm = createChatModel(cfg.rm, { meter });
      const mrm = cfg.mrm ? createChatModel(cfg.mrm, { meter }) : rm;
      // A guideline file (JSON set, or one text such as the paper's iter-0 file for every group), else the task's.
      const file = cfg.guidelines ?? (ctx.task.reward.kind === "math-mixed" ? ctx.task.reward.initialGuidelines : undefined);
      const initialGuidelines: GuidelineSet = file ? loadGuidelineFile(file) : { groups: {} };
      return new MathJudgeReward({
        runDir: ctx.runDir,
        task: ctx.task,
        rm,
        mrm,
        meter,
        initialGuidelines,
        seed: ctx.seed,
        answerCheckProbability: cfg.answerCheckProbability,
        minReasoningWords: cfg.minReasoningWords,
        casesPerGroup: cfg.casesPerGroup,
        concurrency: cfg.concurrency,
        protocol: cfg.protocol,
        ...(cfg.answerBox ? { answerBox: cfg.answerBox } : {}),
        ...(cfg.answerMatch ? { answerMatch: cfg.answerMatch } : {}),
      });
    }
    case "judge": {
      const meter = new UsageMeter();
      const rm = createChatModel(cfg.rm, { meter });
      const mrm = cfg.mrm ? createChatModel(cfg.mrm, { meter }) : rm;
      return new JudgeReward({
        runDir: ctx.runDir,
        task: ctx.task,
        rm,
        mrm,
        meter,
        initialRubric: resolveInitialRubric(cfg.rubric ?? rubricOfTask(ctx.task)),
        seed: ctx.seed,
        mode: cfg.mode,
        metaSamples: cfg.metaSamples,
        prescreen: cfg.prescreen,
        concurrency: cfg.concurrency,
        protocol: cfg.protocol,
        ...(cfg.judgeSeesReference !== undefined ? { judgeSeesReference: cfg.judgeSeesReference } : {}),
        ...(cfg.showRationales !== undefined ? { showRationales: cfg.showRationales } : {}),
        guard: ctx.guard ?? null,
      });
    }
  }
}
