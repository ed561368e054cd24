/**
 * A ChatModel wrapper that records every call into its own UsageMeter. The meta step reports the usage
 * of exactly its own calls (per stage) even when the underlying model's meter is shared with the judge
 * and the rest of the process.
 */
import type { ChatModel, ChatRequest, ChatResponse } from "../llm/types.ts";
import { UsageMeter } from "../llm/usage.ts";

export class MeteredModel implements ChatModel {
  readonly id: string;
  constructor(
    private readonly inner: ChatModel,
    readonly meter: UsageMeter = new UsageMeter(),
  ) {
    this.id = inner.id;
  }

  async chat(req: ChatRequest): Promise<ChatResponse> {
    const stage = req.stage ?? "other";
    const started = performance.now();
    try {
      const res = await this.inner.chat(req);
      this.meter.record(stage, {
        promptTokens: res.promptTokens,
        completionTokens: res.completionTokens,
        cached: res.cached === true,
        seconds: (performance.now() - started) / 1000,
        failed: false,
      });
      return res;
    } catch (err) {
      this.meter.record(stage, { promptTokens: 0, completionTokens: 0, cached: false, seconds: (performance.now() - started) / 1000, failed: true });
      throw err;
    }
  }
}
