/**
 * An in-process ChatModel whose replies come from a function: unit tests of the judge, the meta-judge and
 * the sandbox script the model's behaviour without a server. It records every request and accounts usage
 * like the real client (tokens estimated at ≈ chars/4), so code that reads usage works unchanged.
 */
import type { ChatModel, ChatRequest, ChatResponse, Stage } from "./types.ts";
import { UsageMeter } from "./usage.ts";
import { estimateTokens } from "./openai-client.ts";
import { LlmError } from "./errors.ts";

export type ScriptedReply = string | ChatResponse;
export type ScriptFn = (req: ChatRequest, index: number) => ScriptedReply | Promise<ScriptedReply>;

export class ScriptedChatModel implements ChatModel {
  readonly id: string;
  readonly meter: UsageMeter;
  /** Every request received, in call order. */
  readonly requests: ChatRequest[] = [];

  constructor(
    private readonly script: ScriptFn,
    opts: { id?: string; meter?: UsageMeter } = {},
  ) {
    this.id = opts.id ?? "scripted";
    this.meter = opts.meter ?? new UsageMeter();
  }

  /** A model that answers the given texts in order (cycling is an error: the test scripted too few). */
  static sequence(replies: ScriptedReply[], opts?: { id?: string; meter?: UsageMeter }): ScriptedChatModel {
    return new ScriptedChatModel((_req, i) => {
      if (i >= replies.length) throw new Error(`scripted model: no reply #${i + 1} (only ${replies.length} scripted)`);
      return replies[i];
    }, opts);
  }

  async chat(req: ChatRequest): Promise<ChatResponse> {
    const stage: Stage = req.stage ?? "other";
    const index = this.requests.length;
    this.requests.push(req);
    if (req.signal?.aborted) {
      this.meter.record(stage, { promptTokens: 0, completionTokens: 0, cached: false, seconds: 0, failed: true });
      throw new LlmError({ kind: "aborted", tries: 0, endpoint: this.id, message: `call to ${this.id} was cancelled`, cause: req.signal.reason });
    }
    const started = performance.now();
    let out: ScriptedReply;
    try {
      out = await this.script(req, index);
    } catch (err) {
      this.meter.record(stage, { promptTokens: 0, completionTokens: 0, cached: false, seconds: (performance.now() - started) / 1000, failed: true });
      throw err;
    }
    const res: ChatResponse =
      typeof out === "string"
        ? {
            text: out,
            promptTokens: estimateTokens(req.messages.map((m) => m.content).join("\n")),
            completionTokens: estimateTokens(out),
            finishReason: "stop",
            usageEstimated: true,
            tries: 0,
          }
        : out;
    this.meter.record(stage, {
      promptTokens: res.promptTokens,
      completionTokens: res.completionTokens,
      cached: res.cached === true,
      seconds: (performance.now() - started) / 1000,
      failed: false,
      estimated: res.usageEstimated,
    });
    return res;
  }
}
