/**
 * The paper's math reward as a trainer reward: per step a seeded coin picks the exact answer check or the LLM
 * plan/execute judge with grouped guidelines (src/judge/math-reward.ts); the senior judge rewrites the
 * guidelines per group in a meta step (src/meta/meta-guidelines.ts), stored in RUN/guidelines.
 */
import { MathMixedReward } from "../../judge/math-reward.ts";
import { PlanExecuteJudge } from "../../judge/plan-execute.ts";
import { type ProtocolName, type ProtocolProfile, resolveProtocol } from "../../judge/protocol.ts";
import type { ChatModel, UsageByStage } from "../../llm/types.ts";
import type { UsageMeter } from "../../llm/usage.ts";
import { metaStepGuidelines } from "../../meta/meta-guidelines.ts";
import type { MetaRollout } from "../../meta/meta-step.ts";
import { GuidelineStore } from "../../rubric/store.ts";
import type { GuidelineSet } from "../../rubric/types.ts";
import type { TaskDefinition } from "../../tasks/types.ts";
import { Rng } from "../../util/rng.ts";
import type { MetaOutcome, RewardFunction, RewardResult, RewardSample } from "../reward-types.ts";
import { judgeInputs } from "./judge.ts";
import { rollbackRubricStore } from "./rule-rubric.ts";

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
