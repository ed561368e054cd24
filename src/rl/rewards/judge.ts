/**
 * The paper's reward: an LLM junior judge (RubricJudge) scores against the newest rubric version in
 * RUN/rubrics; the LLM senior judge (metaStep) writes the next version when the trainer's MetaScheduler says
 * a meta step is due. Any OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, OpenAI) is reached
 * through src/llm, with its retries. A sample whose judge call still fails after the client's retries gets
 * score null: the trainer excludes it from the update and counts it.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { RubricJudge } from "../../judge/rubric-judge.ts";
import { checkFormatRule } from "../../judge/format-rule.ts";
import { type ProtocolName, type ProtocolProfile, resolveProtocol, withOverrides } from "../../judge/protocol.ts";
import type { ScoreInput } from "../../judge/types.ts";
import type { ChatModel, UsageByStage } from "../../llm/types.ts";
import type { UsageMeter } from "../../llm/usage.ts";
import { type GuardOptions, judgeGuard } from "../../meta/guard.ts";
import { metaStep, type MetaRollout } from "../../meta/meta-step.ts";
import type { MetaDecision } from "../../meta/triggers.ts";
import { loadRubricFile } from "../../rubric/format.ts";
import { RubricStore } from "../../rubric/store.ts";
import type { Rubric } from "../../rubric/types.ts";
import type { TaskDefinition } from "../../tasks/types.ts";
import { UserError } from "../../util/errors.ts";
import { Rng } from "../../util/rng.ts";
import type { MetaOutcome, RewardFunction, RewardResult, RewardSample } from "../reward-types.ts";
import { rollbackRubricStore } from "./rule-rubric.ts";

const REPO_ROOT = resolve(import.meta.dirname, "..", "..", "..");

/** Initial rubric: a file path, or a task name whose prompts/tasks/NAME/initial-rubric.txt exists. */
export function resolveInitialRubric(spec: string): Rubric {
  const candidates = [spec, join(REPO_ROOT, "prompts", "tasks", spec, "initial-rubric.txt")];
  const file = candidates.find((p) => existsSync(p));
  if (!file) throw new UserError(`reward.rubric: no rubric file '${spec}' (nor a built-in prompts/tasks/${spec}/initial-rubric.txt)`);
  return loadRubricFile(file);
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
