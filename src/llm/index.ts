/**
 * LLM access layer: endpoint config, the OpenAI-compatible client with retries/limits/cache, constrained
 * decoding per server kind, usage accounting, typed errors and an in-process scripted model for tests.
 */
export * from "./types.ts";
export {
  llmEndpointSchema,
  samplingDefaultsSchema,
  serverKinds,
  parseLlmEndpoint,
  resolveApiKey,
  type LlmEndpointConfig,
  type LlmEndpointInput,
  type ServerKind,
} from "./config.ts";
export { UsageMeter, type UsageRecord } from "./usage.ts";
export { LlmError, isRetryableStatus, type LlmErrorKind, type LlmErrorInit } from "./errors.ts";
export {
  createChatModel,
  OpenAIChatModel,
  backoffDelay,
  parseRetryAfter,
  readCompletion,
  estimateTokens,
  defaultSleep,
  RETRY_AFTER_CAP_MS,
  type ChatModelOptions,
  type RetryInfo,
  type SleepFn,
} from "./openai-client.ts";
export { constraintFields, choiceToRegex, escapeRegex, schemaName, isStrictCompatible } from "./constraints.ts";
export { regexToGbnf, choiceToGbnf } from "./gbnf.ts";
export { ReplyCache, cacheKey, isCacheable, canonicalJson, type CachedReply, type CacheKeyParts } from "./cache.ts";
export { Semaphore, endpointSemaphore } from "./semaphore.ts";
export { ScriptedChatModel, type ScriptFn, type ScriptedReply } from "./scripted.ts";
export { probeEndpoint, type ProbeResult } from "./probe.ts";
export { GgufChatModel, parseGgufUrl, isGgufUrl, disposeGgufRuntimes, schemaWithinBudget, GGUF_SCHEME, type GgufOptions } from "./gguf-client.ts";
