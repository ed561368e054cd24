/**
 * Plan-then-execute judging for reasoning tasks (math): from the problem, the reference solution and the
 * grading guidelines of the problem's group, the judge first writes an evaluation plan, then executes it
 * on the response, then gives one integer 0–5 (regex-constrained). Planning before reading the response
 * keeps the judge anchored to the reference instead of the response's confident prose. Guidelines are
 * versioned per group key (GuidelineSet; lookup falls back group → domain → "default", see
 * rubric/guidelines.ts) and rewritten by the meta step (metaStepGuidelines).
 */
import type { ChatMessage, ChatModel, ChatRequest, ChatResponse } from "../llm/types.ts";
import { guidelineFor } from "../rubric/guidelines.ts";
import type { GuidelineVersion } from "../rubric/types.ts";
import { type Fallback, parseItemScore } from "./parse.ts";
import { mapLimit } from "./concurrency.ts";
import { type ProtocolName, type ProtocolProfile, resolveProtocol } from "./protocol.ts";
import { loadTemplates, type Templates } from "./templates.ts";
import { type Evaluation, JudgeUnavailableError, type ScoreInput, type ScoreOutcome } from "./types.ts";

export const PLAN_EXECUTE_MIN = 0;
export const PLAN_EXECUTE_MAX = 5;

export interface PlanExecuteOptions {
  model: ChatModel;
  /** Protocol profile (templates, token caps, stops); default "paper". */
  protocol?: ProtocolName | ProtocolProfile;
  /** System turn (the task's judge persona, rendered); default: the profile's generic one. */
  persona?: string;
  templates?: Templates;
  temperature?: number;
  maxPlanTokens?: number;
  maxExecuteTokens?: number;
  useConstraints?: boolean;
  fallback?: Fallback;
  seed?: number;
  concurrency?: number;
}

/** Text before the first stop marker a server did not cut, trimmed. */
function cut(text: string, stops: readonly string[]): string {
  let t = text;
  for (const s of stops) {
    const i = t.indexOf(s);
    if (i >= 0) t = t.slice(0, i);
  }
  return t.trim();
}

export class PlanExecuteJudge {
  readonly protocol: ProtocolProfile;
  private readonly persona?: string;
  private readonly model: ChatModel;
  private readonly templates: Templates;
  private readonly temperature: number;
  private readonly maxPlanTokens: number;
  private readonly maxExecuteTokens: number;
  private readonly useConstraints: boolean;
  private readonly fallback: Fallback;
  private readonly seed?: number;
  private readonly concurrency: number;

  constructor(opts: PlanExecuteOptions) {
    this.model = opts.model;
    this.protocol = resolveProtocol(opts.protocol);
    this.persona = opts.persona;
    this.templates = opts.templates ?? loadTemplates();
    this.temperature = opts.temperature ?? this.protocol.junior.temperature;
    this.maxPlanTokens = opts.maxPlanTokens ?? this.protocol.math.planMaxTokens;
    this.maxExecuteTokens = opts.maxExecuteTokens ?? this.protocol.math.executeMaxTokens;
    this.useConstraints = opts.useConstraints ?? true;
    this.fallback = opts.fallback ?? (this.protocol.junior.fallback === "min" ? "min" : this.protocol.junior.fallback);
    this.seed = opts.seed;
    this.concurrency = opts.concurrency ?? 8;
  }

  private async call(req: ChatRequest): Promise<ChatResponse> {
    try {
      return await this.model.chat(req);
    } catch (err) {
      throw new JudgeUnavailableError(`judge model ${this.model.id} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
  }

  /** Plan → execute → integer 0–5. Throws JudgeUnavailableError when the LLM fails. */
  async score(input: ScoreInput, guidelines: GuidelineVersion, signal?: AbortSignal): Promise<Evaluation> {
    const g = guidelineFor(guidelines.guidelines, input.group);
    const flags: string[] = [];
    if (g === undefined) flags.push("no-guidelines");
    if (!input.reference) flags.push("no-reference");
    const base = { temperature: this.temperature, seed: this.seed, stage: "rm" as const, signal };
    const T = this.protocol.templates;
    const stops = this.protocol.math.stop;
    const stop = stops.length ? { stop: [...stops] } : {};
    const messages: ChatMessage[] = [
      { role: "system", content: input.persona?.trim() || this.persona?.trim() || this.templates.render(T.rmSystem, {}) },
      {
        role: "user",
        content: this.templates.render(T.rmPlan, {
          prompt: input.prompt,
          reference: input.reference || "(none given)",
          guidelines: g || "(no specific guidelines)",
          taskDescription: input.taskDescription,
        }),
      },
    ];
    const plan = await this.call({ ...base, ...stop, messages: messages.slice(), maxTokens: this.maxPlanTokens });
    const planText = cut(plan.text, stops);
    messages.push({ role: "assistant", content: planText });
    messages.push({ role: "user", content: this.templates.render(T.rmExecute, { response: input.response }) });
    const exec = await this.call({ ...base, ...stop, messages: messages.slice(), maxTokens: this.maxExecuteTokens });
    const execText = cut(exec.text, stops);
    messages.push({ role: "assistant", content: execText });
    messages.push({ role: "user", content: this.templates.render(T.rmPlanScore, {}) });
    const sc = await this.call({
      ...base,
      messages: messages.slice(),
      maxTokens: 8,
      constraint: this.useConstraints ? { kind: "regex", pattern: `[${PLAN_EXECUTE_MIN}-${PLAN_EXECUTE_MAX}]` } : undefined,
    });
    const p = parseItemScore(sc.text, PLAN_EXECUTE_MIN, PLAN_EXECUTE_MAX, this.fallback);
    const itemFlags = [...p.flags];
    return {
      items: [
        {
          name: "plan-execute",
          score: p.score,
          min: PLAN_EXECUTE_MIN,
          max: PLAN_EXECUTE_MAX,
          rationale: execText,
          raw: sc.text,
          flags: itemFlags,
        },
      ],
      total: p.score,
      normalized: (p.score - PLAN_EXECUTE_MIN) / (PLAN_EXECUTE_MAX - PLAN_EXECUTE_MIN),
      rubricVersion: guidelines.version,
      mode: "plan-execute",
      flags: [...new Set([...flags, ...itemFlags])],
      raw: [plan.text, exec.text, sc.text],
      // The plan and its execution, kept apart for the guideline meta step (the reference shows both).
      plan: planText,
    };
  }

  async scoreBatchSettled(inputs: readonly ScoreInput[], guidelines: GuidelineVersion, opts: { concurrency?: number; signal?: AbortSignal } = {}): Promise<ScoreOutcome[]> {
    return mapLimit(inputs, opts.concurrency ?? this.concurrency, async (input, i): Promise<ScoreOutcome> => {
      try {
        return { ok: true, evaluation: await this.score(input, guidelines, opts.signal) };
      } catch (err) {
        if (!(err instanceof JudgeUnavailableError)) throw err;
        return { ok: false, error: new JudgeUnavailableError(err.message, { cause: err.cause, inputIndex: i }) };
      }
    });
  }
}
