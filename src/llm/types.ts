/**
 * The one small interface every part of MPO uses to talk to a chat model: the junior judge (RM), the
 * senior judge (MRM), Elo judges, and the sandbox's simulated models. Real servers are reached through
 * the OpenAI-compatible client in ./openai-client.ts; tests and the sandbox plug in other implementations.
 */

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** Where a call is accounted. Totals are kept per stage and summed per training step. */
export type Stage = "rm" | "mrm-prescreen" | "mrm-analyze" | "mrm-refine" | "mrm-merge" | "eval" | "other";

/**
 * Optional constrained decoding. The client translates it into the configured server's own fields
 * (vLLM structured_outputs / response_format, SGLang regex, llama.cpp json_schema / grammar, Ollama
 * format, OpenAI response_format). Callers must still parse the reply robustly: servers may ignore it.
 */
export type OutputConstraint =
  | { kind: "regex"; pattern: string }
  | { kind: "json"; name: string; schema: Record<string, unknown> }
  | { kind: "choice"; options: string[] };

export interface ChatRequest {
  messages: ChatMessage[];
  temperature?: number;
  topP?: number;
  maxTokens?: number;
  stop?: string[];
  seed?: number;
  constraint?: OutputConstraint;
  /** Accounting bucket; default "other". */
  stage?: Stage;
  /**
   * Wall-clock budget for this call including retries and waits (overrides the endpoint's budgetMs),
   * e.g. what is left of a trainer's reward timeout. Past it the call fails with LlmError kind "gave-up".
   */
  budgetMs?: number;
  signal?: AbortSignal;
}

export interface ChatResponse {
  text: string;
  promptTokens: number;
  completionTokens: number;
  finishReason?: string;
  /** True when served from the on-disk reply cache. */
  cached?: boolean;
  /** True when the server sent no `usage` and the token counts are estimates (≈ chars/4). */
  usageEstimated?: boolean;
  /** The model's separate reasoning text, when the server returns one (vLLM/Ollama `reasoning`, SGLang `reasoning_content`). */
  reasoning?: string;
  /** True when the reply was longer than the endpoint's byte cap and was cut (the text is then empty or partial). */
  overLong?: boolean;
  /** How many HTTP tries the call took (1 = first try succeeded; 0 = cache hit or in-process model). */
  tries?: number;
}

export interface ChatModel {
  /** Human-readable identity, e.g. "vllm:http://host:8000/v1#Qwen2.5-72B-Instruct". */
  readonly id: string;
  chat(req: ChatRequest): Promise<ChatResponse>;
}

export interface StageUsage {
  calls: number;
  failures: number;
  promptTokens: number;
  completionTokens: number;
  cachedCalls: number;
  seconds: number;
  /** Calls whose token counts were estimated because the server reported no usage. */
  estimatedCalls?: number;
}

export type UsageByStage = Partial<Record<Stage, StageUsage>>;
