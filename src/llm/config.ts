/**
 * Where and how to reach one OpenAI-compatible chat-completions server (the junior judge, the senior judge,
 * an eval judge...). Validated with zod so a typo in a config file is reported with the field name before
 * any request is sent. The `server` kind decides which constrained-decoding fields are sent (see
 * ./constraints.ts); the retry/backoff numbers bound how long one call may take before it fails loudly.
 */
import { z } from "zod";
import { validate } from "../config/load.ts";

export const serverKinds = ["vllm", "sglang", "llamacpp", "ollama", "openai", "generic"] as const;
export type ServerKind = (typeof serverKinds)[number];

export const samplingDefaultsSchema = z
  .object({
    temperature: z.number().min(0).max(2).optional(),
    maxTokens: z.number().int().min(1).optional(),
    topP: z.number().gt(0).max(1).optional(),
    seed: z.number().int().optional(),
  })
  .strict();

export const llmEndpointSchema = z
  .object({
    /** e.g. http://127.0.0.1:8000/v1 (the path up to, not including, /chat/completions). */
    /** Or `gguf:/path/model.gguf[?ctx=&seqs=&threads=&gpu=]`: a local GGUF file run in-process (./gguf-client.ts). */
    baseURL: z.union([z.url({ protocol: /^https?$/ }), z.string().regex(/^gguf:.+/, "gguf:/path/model.gguf")]),
    model: z.string().min(1),
    /** Default: $OPENAI_API_KEY, else "EMPTY" (local servers ignore it; the openai client requires one). Resolved when the model is created. */
    apiKey: z.string().optional(),
    server: z.enum(serverKinds).default("generic"),
    /** Requests in flight at once to this baseURL, shared by every ChatModel of the process that uses it. */
    maxConcurrency: z.number().int().min(1).default(64),
    /** One try, from sending the request to having parsed the whole reply. */
    timeoutMs: z.number().int().min(1).default(120_000),
    /** Total tries per call (1 = no retry). */
    maxTries: z.number().int().min(1).default(5),
    backoffBaseMs: z.number().min(0).default(500),
    backoffMaxMs: z.number().min(0).default(20_000),
    /**
     * Optional wall-clock budget for one call including all retries and waits (e.g. keep a judge call
     * inside a trainer's 180 s reward timeout). When the next wait would overrun it, the call fails
     * with kind "gave-up" instead of sleeping.
     */
    budgetMs: z.number().int().min(1).optional(),
    /** On-disk reply cache directory (deterministic requests only: temperature 0 or a seed). */
    cacheDir: z.string().min(1).optional(),
    /**
     * Hard cap on the bytes of one reply body read from the server. A longer reply is not read further:
     * the call returns empty text flagged `overLong` (a judge treats it as unreadable), never a partial parse.
     */
    maxReplyBytes: z.number().int().min(1024).default(1024 * 1024),
    /** max_tokens sent when neither the request nor defaultParams sets one (unset: the server's default). */
    maxTokensCap: z.number().int().min(1).optional(),
    /** Send constrained-decoding fields when the server kind supports them. */
    constrained: z.boolean().default(true),
    defaultParams: samplingDefaultsSchema.optional(),
  })
  .strict();

/** A validated endpoint with defaults filled in. */
export type LlmEndpointConfig = z.output<typeof llmEndpointSchema>;
/** What a user may write (defaults optional). `createChatModel` accepts either form. */
export type LlmEndpointInput = z.input<typeof llmEndpointSchema>;

/** Validates and fills defaults; `source` names where the value came from (file path, flag) for error messages. */
export function parseLlmEndpoint(value: unknown, source = "llm endpoint"): LlmEndpointConfig {
  return validate(llmEndpointSchema, value, source);
}

/** The API key actually sent: configured, else $OPENAI_API_KEY, else "EMPTY". */
export function resolveApiKey(cfg: Pick<LlmEndpointConfig, "apiKey">): string {
  return cfg.apiKey ?? process.env.OPENAI_API_KEY ?? "EMPTY";
}
