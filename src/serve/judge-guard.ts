/**
 * What the service needs from each junior-judge call, kept outside the judge itself: the call's deadline
 * (the request's outage budget) and bounded replies. GuardedModel wraps the judge's ChatModel; the sample
 * being scored runs inside `withSample`, so every call it makes sees that sample's deadline and reports an
 * over-long reply back to it (AsyncLocalStorage: the judge's own code stays unaware of either).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { ChatModel, ChatRequest, ChatResponse } from "../llm/types.ts";

export interface SampleContext {
  /** Absolute time (ms, the service clock) past which no judge call may run. */
  deadlineAt: number;
  /** Set when a reply exceeded the byte cap (it was cut, and the sample is treated as unreadable). */
  overLong: boolean;
}

const current = new AsyncLocalStorage<SampleContext>();

export function withSample<T>(ctx: SampleContext, fn: () => Promise<T>): Promise<T> {
  return current.run(ctx, fn);
}

export class GuardedModel implements ChatModel {
  readonly id: string;
  constructor(
    private readonly inner: ChatModel,
    private readonly opts: { maxReplyBytes: number; now: () => number },
  ) {
    this.id = inner.id;
  }

  async chat(req: ChatRequest): Promise<ChatResponse> {
    const ctx = current.getStore();
    let r = req;
    if (ctx) {
      // The client's own retries must not outlive the request's deadline.
      const left = Math.max(1, Math.floor(ctx.deadlineAt - this.opts.now()));
      r = { ...req, budgetMs: Math.min(req.budgetMs ?? Infinity, left) };
    }
    const res = await this.inner.chat(r);
    const cap = this.opts.maxReplyBytes;
    // In-process models and the HTTP client (which caps the body it reads, see maxReplyBytes) alike: text over
    // the cap is cut before anything parses or logs it.
    if (res.overLong || Buffer.byteLength(res.text, "utf8") > cap) {
      if (ctx) ctx.overLong = true;
      return { ...res, text: Buffer.from(res.text, "utf8").subarray(0, cap).toString("utf8"), overLong: true };
    }
    return res;
  }
}
