/**
 * Start-up check of an endpoint: is the server there, and does it serve the configured model? A training
 * run should learn that its judge is unreachable or misnamed in seconds, not after the first rollout.
 * Uses GET {baseURL}/models, which vLLM, SGLang, llama.cpp, Ollama and OpenAI all serve.
 */
import OpenAI, { APIError } from "openai";
import type { ClientOptions } from "openai";
import { networkDetail } from "./openai-client.ts";
import { llmEndpointSchema, resolveApiKey, type LlmEndpointConfig, type LlmEndpointInput } from "./config.ts";
import { validate } from "../config/load.ts";

export interface ProbeResult {
  ok: boolean;
  /** Model ids the server lists (empty when unreachable). */
  models: string[];
  /** One line for the user: what was found or what is wrong. */
  message: string;
}

export async function probeEndpoint(
  input: LlmEndpointInput | LlmEndpointConfig,
  opts: { timeoutMs?: number; fetch?: ClientOptions["fetch"] } = {},
): Promise<ProbeResult> {
  const cfg = validate(llmEndpointSchema, input, "llm endpoint");
  const client = new OpenAI({
    baseURL: cfg.baseURL,
    apiKey: resolveApiKey(cfg),
    timeout: opts.timeoutMs ?? Math.min(cfg.timeoutMs, 10_000),
    maxRetries: 0,
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  });
  let models: string[] | undefined;
  let why = "";
  // Two tries for network errors: the first may land on a pooled keep-alive socket the server already closed.
  for (let attempt = 1; attempt <= 2 && models === undefined; attempt++) {
    try {
      const page = await client.models.list();
      models = page.data.map((m) => m.id).filter((id): id is string => typeof id === "string");
    } catch (err) {
      if (err instanceof APIError && typeof err.status === "number") {
        why = `HTTP ${err.status}`;
        break;
      }
      why = networkDetail(err);
    }
  }
  if (models === undefined) return { ok: false, models: [], message: `server ${cfg.baseURL} did not list its models: ${why}` };
  if (models.length > 0 && !models.includes(cfg.model)) {
    return {
      ok: false,
      models,
      message: `server ${cfg.baseURL} does not serve model '${cfg.model}'; it serves: ${models.slice(0, 10).join(", ")}${models.length > 10 ? ", …" : ""}`,
    };
  }
  return { ok: true, models, message: `server ${cfg.baseURL} is up${models.length ? ` and serves '${cfg.model}'` : ""}` };
}
