/**
 * The junior judge (reward model): scores one response against a rubric version with an LLM.
 *
 * per-item mode (the paper's protocol): one growing conversation per response — system, then a user turn
 * with task/prompt/response, then per item a one-sentence rationale turn and an integer-score turn. Every
 * request extends the previous one's messages, so prefix-caching servers (vLLM, SGLang) reuse the shared
 * prefix instead of re-reading the response for every item. single-call mode asks for all items as one
 * JSON object: K× fewer calls, less faithful for small judges.
 *
 * Failures are split on purpose: an LLM failure (server down after retries) throws JudgeUnavailableError
 * — there is no score, and callers exclude the sample / answer 503; an unreadable reply is a judge-level
 * problem and yields a flagged fallback score (see ./parse.ts).
 */
import type { ChatMessage, ChatModel, ChatRequest, ChatResponse, OutputConstraint } from "../llm/types.ts";
import type { Rubric, RubricItem, RubricVersion } from "../rubric/types.ts";
import { rubricMaxTotal, rubricMinTotal } from "../rubric/format.ts";
import { mapLimit } from "./concurrency.ts";
import { type Fallback, parseAllItems, parseItemScore } from "./parse.ts";
import { type ProtocolName, type ProtocolProfile, resolveProtocol } from "./protocol.ts";
import { loadTemplates, type Templates } from "./templates.ts";
import { type Evaluation, type ItemEvaluation, JudgeUnavailableError, type ScoreInput, type ScoreOutcome } from "./types.ts";

export type JudgeMode = "per-item" | "single-call";

export interface RubricJudgeOptions {
  model: ChatModel;
  mode?: JudgeMode;
  /** Protocol profile (templates, limits, temperature, clamping); default "paper". See ./protocol.ts. */
  protocol?: ProtocolName | ProtocolProfile;
  /** The junior's system turn (the task's judge persona, rendered); default: the profile's generic one. */
  persona?: string;
  templates?: Templates;
  /** Score used when a reply cannot be read: the profile's (paper: 0, hardened: the item's min) unless given. */
  fallback?: Fallback;
  /** Sampling temperature for all judge calls (default: the profile's; paper 0.02, hardened 0). */
  temperature?: number;
  /** Cap on each rationale (per-item); default: the profile's (300, as in the paper). */
  maxRationaleTokens?: number;
  /** Send regex/json constraints for servers with constrained decoding (default true). Replies are parsed robustly either way. */
  useConstraints?: boolean;
  seed?: number;
  /** Default concurrency of scoreBatch (responses in flight). */
  concurrency?: number;
}

/** Weighted total and its [0,1] normalization. Never NaN (a degenerate rubric normalizes to 0). */
export function totals(rubric: Rubric, scores: number[]): { total: number; normalized: number } {
  let total = 0;
  rubric.items.forEach((it, i) => {
    const s = scores[i];
    total += (it.weight ?? 1) * (Number.isFinite(s) ? s : it.min);
  });
  const minTotal = rubricMinTotal(rubric);
  const maxTotal = rubricMaxTotal(rubric);
  const span = maxTotal - minTotal;
  const normalized = span > 0 ? Math.min(1, Math.max(0, (total - minTotal) / span)) : 0;
  return { total, normalized };
}

/** Regex the score turn is constrained to: exact digits for one-digit ranges, else any integer. */
export function scoreRegex(min: number, max: number): string {
  if (min >= 0 && max <= 9 && min <= max) return `[${min}-${max}]`;
  return min < 0 ? "-?[0-9]+" : "[0-9]+";
}

export function singleCallSchema(rubric: Rubric): Record<string, unknown> {
  return {
    type: "object",
    properties: {
      items: {
        type: "array",
        items: {
          type: "object",
          properties: {
            name: { type: "string", enum: rubric.items.map((i) => i.name) },
            rationale: { type: "string" },
            score: { type: "integer" },
          },
          required: ["name", "rationale", "score"],
          additionalProperties: false,
        },
      },
    },
    required: ["items"],
    additionalProperties: false,
  };
}

function dedupe(xs: string[]): string[] {
  return [...new Set(xs)];
}

/** Strips what a judge may echo around a rationale: the end marker and surrounding whitespace. */
function cleanRationale(text: string, stops: string[]): string {
  let t = text;
  for (const s of stops) {
    const i = t.indexOf(s);
    if (i >= 0) t = t.slice(0, i);
  }
  return t.trim();
}

export class RubricJudge {
  readonly mode: JudgeMode;
  readonly protocol: ProtocolProfile;
  private readonly persona?: string;
  private readonly model: ChatModel;
  private readonly templates: Templates;
  private readonly fallback: Fallback;
  private readonly temperature: number;
  private readonly maxRationaleTokens: number;
  private readonly useConstraints: boolean;
  private readonly seed?: number;
  private readonly concurrency: number;

  constructor(opts: RubricJudgeOptions) {
    this.model = opts.model;
    this.mode = opts.mode ?? "per-item";
    this.protocol = resolveProtocol(opts.protocol);
    this.persona = opts.persona;
    this.templates = opts.templates ?? loadTemplates();
    this.fallback = opts.fallback ?? this.protocol.junior.fallback;
    this.temperature = opts.temperature ?? this.protocol.junior.temperature;
    this.maxRationaleTokens = opts.maxRationaleTokens ?? this.protocol.junior.rationaleMaxTokens;
    this.useConstraints = opts.useConstraints ?? true;
    this.seed = opts.seed;
    this.concurrency = opts.concurrency ?? 8;
  }

  /**
   * Scores one response. Throws JudgeUnavailableError when the LLM fails; unreadable replies give
   * flagged fallback scores instead.
   */
  async score(input: ScoreInput, version: RubricVersion, signal?: AbortSignal): Promise<Evaluation> {
    const rubric = version.rubric;
    if (rubric.items.length === 0) throw new Error(`rubric v${version.version} has no items`);
    return this.mode === "single-call" ? this.scoreSingleCall(input, version, signal) : this.scorePerItem(input, version, signal);
  }

  /** Scores many responses; rejects with the first JudgeUnavailableError (index set) if any fails. Use scoreBatchSettled to keep the others. */
  async scoreBatch(inputs: readonly ScoreInput[], version: RubricVersion, opts: { concurrency?: number; signal?: AbortSignal } = {}): Promise<Evaluation[]> {
    const outcomes = await this.scoreBatchSettled(inputs, version, opts);
    return outcomes.map((o) => {
      if (!o.ok) throw o.error;
      return o.evaluation;
    });
  }

  /** Scores many responses; each entry is an evaluation or the explicit unavailability error for that input. */
  async scoreBatchSettled(
    inputs: readonly ScoreInput[],
    version: RubricVersion,
    opts: { concurrency?: number; signal?: AbortSignal; onDone?: (index: number, outcome: ScoreOutcome) => void } = {},
  ): Promise<ScoreOutcome[]> {
    return mapLimit(inputs, opts.concurrency ?? this.concurrency, async (input, i): Promise<ScoreOutcome> => {
      let outcome: ScoreOutcome;
      try {
        outcome = { ok: true, evaluation: await this.score(input, version, opts.signal) };
      } catch (err) {
        if (!(err instanceof JudgeUnavailableError)) throw err;
        outcome = { ok: false, error: new JudgeUnavailableError(err.message, { cause: err.cause, inputIndex: i }) };
      }
      opts.onDone?.(i, outcome);
      return outcome;
    });
  }

  private async call(req: ChatRequest): Promise<ChatResponse> {
    try {
      return await this.model.chat(req);
    } catch (err) {
      throw new JudgeUnavailableError(`judge model ${this.model.id} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
  }

  private baseRequest(signal?: AbortSignal): Pick<ChatRequest, "temperature" | "seed" | "stage" | "signal"> {
    return { temperature: this.temperature, seed: this.seed, stage: "rm", signal };
  }

  /** The reference answer the profile lets the junior see ("" = none). */
  private referenceFor(input: ScoreInput): string {
    return this.protocol.junior.seesReference ? (input.reference ?? "") : "";
  }

  private systemTurn(input: ScoreInput): ChatMessage {
    return { role: "system", content: input.persona?.trim() || this.persona?.trim() || this.templates.render(this.protocol.templates.rmSystem, {}) };
  }

  private responseTurn(input: ScoreInput): string {
    return this.templates.render(this.protocol.templates.rmResponse, {
      taskDescription: input.taskDescription,
      prompt: input.prompt,
      response: input.response,
      reference: this.referenceFor(input),
    });
  }

  private async scorePerItem(input: ScoreInput, version: RubricVersion, signal?: AbortSignal): Promise<Evaluation> {
    const rubric = version.rubric;
    const j = this.protocol.junior;
    const messages: ChatMessage[] = [this.systemTurn(input), { role: "user", content: this.responseTurn(input) }];
    const raw: string[] = [];
    const items: ItemEvaluation[] = [];
    for (const [i, item] of rubric.items.entries()) {
      messages.push({ role: "user", content: this.itemTurn(item, i, rubric.items.length) });
      const rat = await this.call({
        ...this.baseRequest(signal),
        messages: messages.slice(),
        maxTokens: this.maxRationaleTokens,
        ...(j.rationaleStop.length ? { stop: j.rationaleStop } : {}),
      });
      const rationale = cleanRationale(rat.text, j.rationaleStop);
      messages.push({ role: "assistant", content: rationale });
      messages.push({ role: "user", content: this.templates.render(this.protocol.templates.rmItemScore, { name: item.name, min: item.min, max: item.max }) });
      const pattern = j.scoreConstraint === "digits" ? "[0-9]+" : scoreRegex(item.min, item.max);
      const constraint: OutputConstraint | undefined = this.useConstraints ? { kind: "regex", pattern } : undefined;
      const sc = await this.call({ ...this.baseRequest(signal), messages: messages.slice(), maxTokens: j.scoreMaxTokens, constraint });
      messages.push({ role: "assistant", content: sc.text.trim() });
      raw.push(rat.text, sc.text);
      const p = parseItemScore(sc.text, item.min, item.max, this.fallback, { clamp: j.clamp });
      const flags = rationale === "" ? [...p.flags, "empty-rationale"] : p.flags;
      items.push({ name: item.name, score: p.score, min: item.min, max: item.max, rationale, raw: `${rat.text}\n---\n${sc.text}`, flags });
    }
    return this.assemble(version, items, [], raw, "per-item");
  }

  private itemTurn(item: RubricItem, index: number, count: number): string {
    return this.templates.render(this.protocol.templates.rmItemRationale, { index: index + 1, count, name: item.name, min: item.min, max: item.max, text: item.text });
  }

  private async scoreSingleCall(input: ScoreInput, version: RubricVersion, signal?: AbortSignal): Promise<Evaluation> {
    const rubric = version.rubric;
    const rubricItems = rubric.items
      .map((it, i) => `### ${i + 1}. ${it.name} (integer score from ${it.min} to ${it.max})\n${it.text}`)
      .join("\n\n");
    const messages: ChatMessage[] = [
      this.systemTurn(input),
      {
        role: "user",
        content: this.templates.render(this.protocol.templates.rmSingleCall, {
          taskDescription: input.taskDescription,
          prompt: input.prompt,
          response: input.response,
          reference: this.referenceFor(input),
          rubricItems,
        }),
      },
    ];
    const constraint: OutputConstraint | undefined = this.useConstraints
      ? { kind: "json", name: "rubric_scores", schema: singleCallSchema(rubric) }
      : undefined;
    const maxTokens = Math.min(16384, 64 + rubric.items.length * (this.maxRationaleTokens + 48));
    const res = await this.call({ ...this.baseRequest(signal), messages, maxTokens, constraint });
    const parsed = parseAllItems(res.text, rubric, this.fallback);
    const items: ItemEvaluation[] = parsed.items.map((p, i) => ({
      name: p.name,
      score: p.score,
      min: rubric.items[i].min,
      max: rubric.items[i].max,
      rationale: p.rationale,
      raw: res.text,
      flags: p.flags,
    }));
    return this.assemble(version, items, parsed.flags, [res.text], "single-call");
  }

  private assemble(version: RubricVersion, items: ItemEvaluation[], evalFlags: string[], raw: string[], mode: JudgeMode): Evaluation {
    const { total, normalized } = totals(version.rubric, items.map((i) => i.score));
    return {
      items,
      total,
      normalized,
      rubricVersion: version.version,
      mode,
      flags: dedupe([...evalFlags, ...items.flatMap((i) => i.flags)]),
      raw,
    };
  }
}
