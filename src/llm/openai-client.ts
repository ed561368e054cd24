/**
 * ChatModel over any OpenAI-compatible /v1/chat/completions server (vLLM, SGLang, llama.cpp, Ollama,
 * OpenAI), built on the official `openai` package with its own retries switched off: WE retry, so the
 * policy is one place and bounded — per-endpoint concurrency gate, per-try timeout covering the whole
 * reply, exponential backoff with full jitter honouring Retry-After, a fixed number of tries and an
 * optional overall budget, then a typed LlmError. A call never hangs and never fails silently.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from "openai";
import type { ClientOptions } from "openai";
import { llmEndpointSchema, resolveApiKey, type LlmEndpointConfig, type LlmEndpointInput } from "./config.ts";
import { validate } from "../config/load.ts";
import { constraintFields } from "./constraints.ts";
import { cacheKey, isCacheable, ReplyCache, type CachedReply } from "./cache.ts";
import { LlmError, isRetryableStatus, type LlmErrorKind } from "./errors.ts";
import { endpointSemaphore, type Semaphore } from "./semaphore.ts";
import { UsageMeter } from "./usage.ts";
import { GgufChatModel, isGgufUrl } from "./gguf-client.ts";
import type { ChatModel, ChatRequest, ChatResponse, Stage } from "./types.ts";

/**
 * The openai package keeps only `body.error` of a non-2xx reply, so servers that answer
 * {"object":"error","message":…} (older vLLM) or {"detail":…} (FastAPI) would lose their message. Our
 * fetch wrapper copies the raw error body into the per-try context kept here.
 */
const tryContext = new AsyncLocalStorage<{ errorBody?: string }>();

/** The body of a 2xx reply was larger than the endpoint's maxReplyBytes: reading stopped there. */
export class OverLongReplyError extends Error {
  constructor(readonly limit: number) {
    super(`reply body larger than ${limit} bytes (maxReplyBytes)`);
    this.name = "OverLongReplyError";
  }
}

function isOverLong(err: unknown): err is OverLongReplyError {
  for (let cur = err, d = 0; cur && d < 6; d++, cur = (cur as { cause?: unknown }).cause) if (cur instanceof OverLongReplyError) return true;
  return false;
}

/**
 * A Response whose body errors with OverLongReplyError once more than `limit` bytes arrive, so a runaway
 * judge reply is never read (or parsed, or logged) past the cap.
 */
function capBody(res: Response, limit: number): Response {
  const declared = Number(res.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > limit) {
    void res.body?.cancel().catch(() => undefined);
    throw new OverLongReplyError(limit);
  }
  if (!res.body) return res;
  let seen = 0;
  const capped = res.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        seen += chunk.byteLength;
        if (seen > limit) ctl.error(new OverLongReplyError(limit));
        else ctl.enqueue(chunk);
      },
    }),
  );
  return new Response(capped, { status: res.status, statusText: res.statusText, headers: res.headers });
}

function wrapFetch(inner: NonNullable<ClientOptions["fetch"]>, maxReplyBytes: number): NonNullable<ClientOptions["fetch"]> {
  return (async (url: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
    const res = await inner(url, init);
    const ctx = tryContext.getStore();
    if (ctx && !res.ok) {
      try {
        ctx.errorBody = (await res.clone().text()).slice(0, 2000);
      } catch {
        /* body unreadable: the status alone will be reported */
      }
    }
    return res.ok ? capBody(res, maxReplyBytes) : res;
  }) as NonNullable<ClientOptions["fetch"]>;
}

/** Longest server-requested wait we honour (the openai package uses 60 s too). */
export const RETRY_AFTER_CAP_MS = 60_000;

export type SleepFn = (ms: number, signal?: AbortSignal) => Promise<void>;

export interface ChatModelOptions {
  /** Where usage is recorded; default: a meter private to this model (see `model.meter`). */
  meter?: UsageMeter;
  /** fetch implementation passed to the openai client (tests, proxies). */
  fetch?: ClientOptions["fetch"];
  /** Waits between tries; injectable so tests can check the backoff without waiting. */
  sleep?: SleepFn;
  /** Uniform [0,1) source for jitter; default Math.random. */
  random?: () => number;
  /** Clock for the overall budget; default Date.now. */
  now?: () => number;
  /** Called before each wait between tries (logging, tests). */
  onRetry?: (info: RetryInfo) => void;
}

export interface RetryInfo {
  /** The try that just failed (1-based). */
  attempt: number;
  delayMs: number;
  /** Server-requested wait, when it sent retry-after(-ms). */
  retryAfterMs?: number;
  kind: LlmErrorKind;
  status?: number;
  detail: string;
}

/** Abortable setTimeout. */
export const defaultSleep: SleepFn = (ms, signal) =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });

/** Parses `retry-after-ms` (milliseconds) or `Retry-After` (seconds or an HTTP date) into ms; undefined if absent/invalid. */
export function parseRetryAfter(headers: Headers | undefined, now: number = Date.now()): number | undefined {
  if (!headers) return undefined;
  const ms = headers.get("retry-after-ms");
  if (ms !== null && ms.trim() !== "") {
    const v = Number(ms);
    if (Number.isFinite(v) && v >= 0) return v;
  }
  const ra = headers.get("retry-after");
  if (ra === null || ra.trim() === "") return undefined;
  const secs = Number(ra);
  if (Number.isFinite(secs)) return secs >= 0 ? secs * 1000 : undefined;
  const date = Date.parse(ra);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/**
 * Wait before the next try: "full jitter" exponential backoff, uniform in [0, min(max, base·2^(attempt-1))],
 * but never shorter than what the server asked for (capped at max(backoffMaxMs, RETRY_AFTER_CAP_MS)).
 */
export function backoffDelay(
  attempt: number,
  cfg: Pick<LlmEndpointConfig, "backoffBaseMs" | "backoffMaxMs">,
  random: () => number,
  retryAfterMs?: number,
): number {
  const ceiling = Math.min(cfg.backoffMaxMs, cfg.backoffBaseMs * 2 ** Math.min(attempt - 1, 30));
  const jittered = random() * ceiling;
  if (retryAfterMs === undefined) return jittered;
  return Math.min(Math.max(retryAfterMs, jittered), Math.max(cfg.backoffMaxMs, RETRY_AFTER_CAP_MS));
}

/** Who is being called, in the user's words: "judge server", "senior judge server"... */
function serverLabel(stage: Stage): string {
  if (stage === "rm") return "judge";
  if (stage.startsWith("mrm")) return "senior judge";
  if (stage === "eval") return "eval judge";
  return "LLM";
}

/** Innermost useful description of a network error: its code (ECONNREFUSED...) or message. */
export function networkDetail(err: unknown): string {
  let cur: unknown = err;
  let best: string | undefined;
  for (let depth = 0; cur && depth < 6; depth++) {
    const e = cur as { code?: unknown; message?: unknown; cause?: unknown };
    if (typeof e.code === "string" && e.code) {
      const msg = typeof e.message === "string" && e.message && !e.message.includes(e.code) ? `: ${e.message}` : "";
      best = e.code.startsWith("E") ? e.code : `${e.code}${msg}`;
    } else if (!best && typeof e.message === "string" && e.message && e.message !== "Connection error." && e.message !== "fetch failed") {
      best = e.message;
    }
    cur = e.cause;
  }
  return best ?? (err instanceof Error ? err.message : String(err));
}

interface Failure {
  kind: LlmErrorKind;
  status?: number;
  retryable: boolean;
  retryAfterMs?: number;
  detail: string;
  cause?: unknown;
  /** The try's timer was the call's remaining budget (shorter than the per-try timeout), and it fired. */
  budgetCut?: boolean;
}

class BadResponse extends Error {}

/** Extracts text/usage from a parsed chat.completion, or throws BadResponse saying what is missing. */
export function readCompletion(body: unknown): {
  text: string;
  finishReason?: string;
  promptTokens?: number;
  completionTokens?: number;
  reasoning?: string;
} {
  if (body === null || typeof body !== "object") {
    throw new BadResponse(`reply is not a JSON object (got ${typeof body === "string" ? JSON.stringify(body.slice(0, 80)) : String(body)})`);
  }
  const b = body as { choices?: unknown; usage?: unknown; error?: unknown };
  if (!Array.isArray(b.choices) || b.choices.length === 0) {
    const err = b.error && typeof b.error === "object" ? (b.error as { message?: unknown }).message : b.error;
    throw new BadResponse(err ? `reply carries an error: ${String(err)}` : "reply has no choices");
  }
  const choice = b.choices[0] as { message?: unknown; finish_reason?: unknown };
  if (!choice || typeof choice !== "object" || !choice.message || typeof choice.message !== "object") {
    throw new BadResponse("reply choice has no message");
  }
  const msg = choice.message as { content?: unknown; reasoning?: unknown; reasoning_content?: unknown };
  const content = msg.content;
  const reasoning = typeof msg.reasoning === "string" ? msg.reasoning : typeof msg.reasoning_content === "string" ? msg.reasoning_content : undefined;
  if (content !== null && content !== undefined && typeof content !== "string") {
    throw new BadResponse(`reply message content is ${typeof content}, not text`);
  }
  const u = (b.usage && typeof b.usage === "object" ? b.usage : {}) as { prompt_tokens?: unknown; completion_tokens?: unknown };
  const num = (x: unknown) => (typeof x === "number" && Number.isFinite(x) && x >= 0 ? x : undefined);
  return {
    text: content ?? "",
    finishReason: typeof choice.finish_reason === "string" ? choice.finish_reason : undefined,
    promptTokens: num(u.prompt_tokens),
    completionTokens: num(u.completion_tokens),
    ...(reasoning !== undefined ? { reasoning } : {}),
  };
}

/** ≈ 4 characters per token: only used when the server reports no usage (flagged as estimated). */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

export class OpenAIChatModel implements ChatModel {
  readonly id: string;
  readonly cfg: LlmEndpointConfig;
  readonly meter: UsageMeter;
  private readonly client: OpenAI;
  /** The per-endpoint concurrency gate this model shares with every other model for the same baseURL. */
  readonly gate: Semaphore;
  private readonly cache?: ReplyCache;
  private readonly sleep: SleepFn;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly onRetry?: (info: RetryInfo) => void;
  private cacheWriteWarned = false;

  constructor(cfg: LlmEndpointInput | LlmEndpointConfig, opts: ChatModelOptions = {}) {
    this.cfg = validate(llmEndpointSchema, cfg, "llm endpoint");
    this.id = `${this.cfg.server}:${this.cfg.baseURL}#${this.cfg.model}`;
    this.meter = opts.meter ?? new UsageMeter();
    this.client = new OpenAI({
      baseURL: this.cfg.baseURL,
      apiKey: resolveApiKey(this.cfg),
      timeout: this.cfg.timeoutMs,
      maxRetries: 0,
      fetch: wrapFetch(opts.fetch ?? ((url, init) => globalThis.fetch(url, init)), this.cfg.maxReplyBytes),
    });
    this.gate = endpointSemaphore(this.cfg.baseURL, this.cfg.maxConcurrency);
    this.cache = this.cfg.cacheDir ? new ReplyCache(this.cfg.cacheDir) : undefined;
    this.sleep = opts.sleep ?? defaultSleep;
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
    this.onRetry = opts.onRetry;
  }

  /** The request body sent for `req` (without `stream`), exposed for diagnostics and tests. */
  buildBody(req: ChatRequest): Record<string, unknown> {
    const d = this.cfg.defaultParams ?? {};
    const body: Record<string, unknown> = {
      model: this.cfg.model,
      messages: req.messages.map((m) => ({ role: m.role, content: m.content })),
    };
    const temperature = req.temperature ?? d.temperature;
    const topP = req.topP ?? d.topP;
    // Always bounded: a judge without a token limit can talk until the server's context runs out.
    const maxTokens = req.maxTokens ?? d.maxTokens ?? this.cfg.maxTokensCap;
    const seed = req.seed ?? d.seed;
    if (temperature !== undefined) body.temperature = temperature;
    if (topP !== undefined) body.top_p = topP;
    // OpenAI's newer models reject max_tokens; the open servers all read max_tokens.
    if (maxTokens !== undefined) body[this.cfg.server === "openai" ? "max_completion_tokens" : "max_tokens"] = maxTokens;
    if (req.stop && req.stop.length > 0) body.stop = req.stop;
    if (seed !== undefined) body.seed = seed;
    if (this.cfg.constrained) Object.assign(body, constraintFields(this.cfg.server, req.constraint));
    return body;
  }

  async chat(req: ChatRequest): Promise<ChatResponse> {
    const stage: Stage = req.stage ?? "other";
    const started = this.now();
    const d = this.cfg.defaultParams ?? {};
    const temperature = req.temperature ?? d.temperature;
    const seed = req.seed ?? d.seed;

    let key: string | undefined;
    if (this.cache && isCacheable({ temperature, seed })) {
      key = cacheKey({
        baseURL: this.cfg.baseURL,
        model: this.cfg.model,
        messages: req.messages,
        temperature,
        topP: req.topP ?? d.topP,
        maxTokens: req.maxTokens ?? d.maxTokens,
        stop: req.stop,
        seed,
        constraint: this.cfg.constrained ? req.constraint : undefined,
      });
      const hit = this.cache.get(key);
      if (hit) {
        // A cache hit costs no server tokens: counted as a (cached) call with zero tokens.
        this.meter.record(stage, { promptTokens: 0, completionTokens: 0, cached: true, seconds: 0, failed: false });
        return { ...hit, cached: true, tries: 0 };
      }
    }

    const body = this.buildBody(req);
    try {
      const { reply, tries } = await this.callWithRetries(body, req, stage, started);
      const seconds = (this.now() - started) / 1000;
      this.meter.record(stage, {
        promptTokens: reply.promptTokens,
        completionTokens: reply.completionTokens,
        cached: false,
        seconds,
        failed: false,
        estimated: reply.usageEstimated,
      });
      if (key && this.cache && !(reply as { overLong?: boolean }).overLong) {
        try {
          this.cache.put(key, reply);
        } catch (err) {
          // A cache that cannot be written must not fail a call that succeeded; say so once.
          if (!this.cacheWriteWarned) {
            this.cacheWriteWarned = true;
            console.warn(`warning: reply cache ${this.cfg.cacheDir} not writable (${(err as Error).message}); continuing without storing`);
          }
        }
      }
      return { ...reply, cached: false, tries };
    } catch (err) {
      this.meter.record(stage, { promptTokens: 0, completionTokens: 0, cached: false, seconds: (this.now() - started) / 1000, failed: true });
      throw err;
    }
  }

  private describe(stage: Stage): string {
    return `${serverLabel(stage)} server ${this.cfg.baseURL} (model ${this.cfg.model})`;
  }

  private async callWithRetries(
    body: Record<string, unknown>,
    req: ChatRequest,
    stage: Stage,
    started: number,
  ): Promise<{ reply: CachedReply; tries: number }> {
    const { maxTries } = this.cfg;
    const budgetMs = req.budgetMs ?? this.cfg.budgetMs;
    const deadline = budgetMs !== undefined ? started + budgetMs : Infinity;
    let last: Failure | undefined;
    let lastFromServer: Failure | undefined; // the last failure the budget did not cause
    for (let attempt = 1; attempt <= maxTries; attempt++) {
      if (req.signal?.aborted) throw this.abortedError(stage, attempt - 1, req.signal.reason);
      const result = await this.tryOnce(body, req, deadline);
      if ("reply" in result) return { reply: result.reply, tries: attempt };
      last = result.failure;
      if (last.kind === "aborted") throw this.abortedError(stage, attempt, last.cause);
      if (last.budgetCut) {
        // The budget, not the server, ended this try: no retry can fit, and "no reply within 3 ms" would hide
        // what the server actually said before.
        const n = `${attempt} ${attempt === 1 ? "try" : "tries"}`;
        throw new LlmError({
          kind: "gave-up",
          status: lastFromServer?.status,
          tries: attempt,
          endpoint: this.cfg.baseURL,
          cause: last.cause,
          budgetCut: true,
          message: `${this.describe(stage)}: gave up after ${n} — the ${budgetMs} ms budget ran out during the last one; ${lastFromServer ? `last error from the server: ${lastFromServer.detail}` : "no earlier error from the server"}`,
        });
      }
      lastFromServer = last;
      if (!last.retryable) throw this.finalError(last, stage, attempt);
      if (attempt === maxTries) break;
      const delayMs = backoffDelay(attempt, this.cfg, this.random, last.retryAfterMs);
      if (this.now() + delayMs >= deadline) {
        throw new LlmError({
          kind: "gave-up",
          status: last.status,
          tries: attempt,
          endpoint: this.cfg.baseURL,
          cause: last.cause,
          message: `${this.describe(stage)}: gave up after ${attempt} ${attempt === 1 ? "try" : "tries"} — the next wait (${Math.round(delayMs)} ms) would pass the ${budgetMs} ms budget; last error: ${last.detail}`,
        });
      }
      this.onRetry?.({ attempt, delayMs, retryAfterMs: last.retryAfterMs, kind: last.kind, status: last.status, detail: last.detail });
      try {
        await this.sleep(delayMs, req.signal);
      } catch (reason) {
        throw this.abortedError(stage, attempt, reason);
      }
    }
    throw this.finalError(last!, stage, maxTries);
  }

  /** One HTTP try under the endpoint gate, with a timer that covers headers AND body. */
  private async tryOnce(
    body: Record<string, unknown>,
    req: ChatRequest,
    deadline: number,
  ): Promise<{ reply: CachedReply } | { failure: Failure }> {
    let release: (() => void) | undefined;
    try {
      release = await this.gate.acquire(req.signal);
    } catch (reason) {
      return { failure: { kind: "aborted", retryable: false, detail: "cancelled while waiting for a free slot", cause: reason } };
    }
    const timeoutMs = Math.max(1, Math.min(this.cfg.timeoutMs, deadline - this.now()));
    const budgetBound = timeoutMs < this.cfg.timeoutMs;
    const ctl = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ctl.abort(new Error(`timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const onUserAbort = () => ctl.abort(req.signal!.reason);
    req.signal?.addEventListener("abort", onUserAbort, { once: true });
    if (req.signal?.aborted) onUserAbort(); // aborted between taking the slot and listening
    const ctx: { errorBody?: string } = {};
    try {
      const raw: unknown = await tryContext.run(ctx, () =>
        this.client.chat.completions.create(body as never, {
          signal: ctl.signal,
          timeout: timeoutMs,
          maxRetries: 0,
        }),
      );
      const parsed = readCompletion(raw);
      const estimated = parsed.promptTokens === undefined || parsed.completionTokens === undefined;
      const reply: CachedReply = {
        text: parsed.text,
        promptTokens: parsed.promptTokens ?? estimateTokens(req.messages.map((m) => m.content).join("\n")),
        completionTokens: parsed.completionTokens ?? estimateTokens(parsed.text),
        ...(parsed.finishReason !== undefined ? { finishReason: parsed.finishReason } : {}),
        ...(estimated ? { usageEstimated: true } : {}),
        ...(parsed.reasoning !== undefined ? { reasoning: parsed.reasoning } : {}),
      };
      return { reply };
    } catch (err) {
      if (isOverLong(err) && !req.signal?.aborted && !timedOut) {
        // Not an outage and not worth a retry (a deterministic judge says the same again): the caller gets an
        // empty, flagged reply and treats it as unreadable.
        const reply: CachedReply & { overLong: true } = {
          text: "",
          promptTokens: estimateTokens(req.messages.map((m) => m.content).join("\n")),
          completionTokens: Math.ceil(this.cfg.maxReplyBytes / 4),
          finishReason: "length",
          usageEstimated: true,
          overLong: true,
        };
        return { reply };
      }
      const failure = this.classify(err, { timedOut, userAborted: req.signal?.aborted === true, timeoutMs, errorBody: ctx.errorBody });
      if (failure.kind === "timeout" && timedOut && budgetBound) failure.budgetCut = true;
      return { failure };
    } finally {
      clearTimeout(timer);
      req.signal?.removeEventListener("abort", onUserAbort);
      release();
    }
  }

  private classify(err: unknown, ctx: { timedOut: boolean; userAborted: boolean; timeoutMs: number; errorBody?: string }): Failure {
    if (ctx.userAborted) return { kind: "aborted", retryable: false, detail: "cancelled", cause: err };
    if (ctx.timedOut || err instanceof APIConnectionTimeoutError) {
      return { kind: "timeout", retryable: true, detail: `no complete reply within ${ctx.timeoutMs} ms`, cause: err };
    }
    if (err instanceof BadResponse) return { kind: "bad-response", retryable: true, detail: err.message, cause: err };
    if (err instanceof APIUserAbortError) return { kind: "aborted", retryable: false, detail: "cancelled", cause: err };
    if (err instanceof APIConnectionError) {
      const detail = networkDetail(err);
      // fetch refuses "bad ports" (e.g. 1, 9, 6000) outright; retrying cannot help.
      if (detail === "bad port") {
        return { kind: "connection", retryable: false, detail: "the port is on fetch's blocked-port list; serve the model on another port", cause: err };
      }
      return { kind: "connection", retryable: true, detail, cause: err };
    }
    if (err instanceof APIError && typeof err.status === "number") {
      const status = err.status;
      const serverMsg = apiErrorMessage(err, ctx.errorBody);
      return {
        kind: "http",
        status,
        retryable: isRetryableStatus(status),
        retryAfterMs: parseRetryAfter(err.headers as Headers | undefined, this.now()),
        detail: `HTTP ${status}${serverMsg ? `: ${serverMsg}` : ""}`,
        cause: err,
      };
    }
    if (err instanceof SyntaxError) {
      return { kind: "bad-response", retryable: true, detail: `reply is not valid JSON (${err.message})`, cause: err };
    }
    // Body read failures after the headers (socket closed mid-body) surface as plain TypeErrors from fetch.
    if (err instanceof TypeError || (err as { name?: string })?.name === "AbortError") {
      return { kind: "connection", retryable: true, detail: networkDetail(err), cause: err };
    }
    throw err; // a bug on our side, not a server problem: keep the stack
  }

  private abortedError(stage: Stage, tries: number, cause: unknown): LlmError {
    return new LlmError({
      kind: "aborted",
      tries,
      endpoint: this.cfg.baseURL,
      cause,
      message: `call to ${this.describe(stage)} was cancelled`,
    });
  }

  private finalError(f: Failure, stage: Stage, tries: number): LlmError {
    const where = this.describe(stage);
    const n = `${tries} ${tries === 1 ? "try" : "tries"}`;
    let message: string;
    switch (f.kind) {
      case "connection":
        message = `${where} unreachable after ${n}: ${f.detail}`;
        break;
      case "timeout":
        message = `${where} did not answer in time after ${n}: ${f.detail} (raise timeoutMs if the model is just slow)`;
        break;
      case "http":
        message = f.retryable
          ? `${where} kept failing after ${n}: ${f.detail}`
          : `${where} rejected the request: ${f.detail}`;
        break;
      case "bad-response":
        message = `${where} sent an unusable reply after ${n}: ${f.detail}`;
        break;
      default:
        message = `${where} failed after ${n}: ${f.detail}`;
    }
    return new LlmError({ kind: f.kind, status: f.status, tries, endpoint: this.cfg.baseURL, message, cause: f.cause });
  }
}

/** The server's own error text: {error: {message}} | {error: "…"} | {message} | {detail}, else the raw body. */
export function apiErrorMessage(err: APIError | undefined, rawBody?: string): string {
  const pick = (x: unknown): string | undefined => {
    if (typeof x === "string" && x.trim()) return x.trim();
    if (!x || typeof x !== "object") return undefined;
    const b = x as { message?: unknown; detail?: unknown; error?: unknown };
    return pick(b.error) ?? pick(b.message) ?? (typeof b.detail === "string" ? b.detail : b.detail !== undefined ? JSON.stringify(b.detail) : undefined);
  };
  const fromParsed = pick(err?.error);
  if (fromParsed) return fromParsed.slice(0, 500);
  if (rawBody !== undefined && rawBody.trim()) {
    try {
      const fromRaw = pick(JSON.parse(rawBody));
      if (fromRaw) return fromRaw.slice(0, 500);
    } catch {
      /* not JSON: report it as text */
    }
    return rawBody.trim().slice(0, 300);
  }
  return "";
}

/** A ChatModel for one configured endpoint (validates `cfg` and fills defaults). */
export function createChatModel(cfg: LlmEndpointInput | LlmEndpointConfig, opts: ChatModelOptions = {}): OpenAIChatModel | GgufChatModel {
  if (isGgufUrl(cfg.baseURL)) return new GgufChatModel(cfg, opts);
  return new OpenAIChatModel(cfg, opts);
}
