/**
 * Constrained decoding, translated into the fields each server kind actually reads. Every server names
 * these differently and several silently IGNORE unknown fields (HTTP 200, unconstrained output), so a wrong
 * name fails quietly: each mapping below cites the source file it was checked against. The returned
 * object is merged into the TOP LEVEL of the chat.completions params (the openai package forwards unknown
 * top-level keys; a literal `extra_body` key would be sent as-is and ignored by the servers).
 * Callers must still parse replies robustly: a server may not honour the constraint.
 */
import type { OutputConstraint } from "./types.ts";
import type { ServerKind } from "./config.ts";
import { choiceToGbnf, regexToGbnf } from "./gbnf.ts";

/** Escapes a literal for use inside a regular expression (choice → regex alternation). */
export function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** `(?:a|b)` matching exactly one of the options, metacharacters escaped. */
export function choiceToRegex(options: string[]): string {
  return `(?:${options.map(escapeRegex).join("|")})`;
}

/** OpenAI requires json_schema.name ≤ 64 chars of [A-Za-z0-9_-]. */
export function schemaName(name: string): string {
  const clean = name.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 64);
  return clean.length > 0 ? clean : "output";
}

/**
 * Whether a schema satisfies OpenAI strict mode's subset: every object lists all its properties as
 * required and sets additionalProperties: false. If not, we send strict: false rather than get a 400.
 */
export function isStrictCompatible(schema: unknown): boolean {
  if (Array.isArray(schema)) return schema.every(isStrictCompatible);
  if (schema === null || typeof schema !== "object") return true;
  const s = schema as Record<string, unknown>;
  const isObject = s.type === "object" || (s.properties !== undefined && typeof s.properties === "object");
  if (isObject) {
    if (s.additionalProperties !== false) return false;
    const props = Object.keys((s.properties as Record<string, unknown>) ?? {});
    const req = Array.isArray(s.required) ? (s.required as unknown[]) : [];
    if (!props.every((p) => req.includes(p))) return false;
  }
  return Object.entries(s).every(([k, v]) => (k === "enum" || k === "const" ? true : isStrictCompatible(v)));
}

function jsonSchemaResponseFormat(c: Extract<OutputConstraint, { kind: "json" }>, strict?: boolean) {
  const json_schema: Record<string, unknown> = { name: schemaName(c.name), schema: c.schema };
  if (strict !== undefined) json_schema.strict = strict;
  return { type: "json_schema", json_schema };
}

/**
 * Extra top-level request fields that ask `server` to obey `constraint`; {} when the server kind has no
 * way to express it (the reply is then parsed free-form).
 */
export function constraintFields(server: ServerKind, constraint: OutputConstraint | undefined): Record<string, unknown> {
  if (!constraint) return {};
  switch (server) {
    case "vllm":
      // vLLM ≥ 0.12: ChatCompletionRequest.structured_outputs (vllm-project/vllm
      // vllm/entrypoints/openai/chat_completion/protocol.py @002032ee) of type StructuredOutputsParams
      // {json: str|dict, regex: str, choice: list[str], grammar, json_object, ...}, exactly one set
      // (vllm/sampling_params.py). That request model has no guided_* fields any more: the old
      // guided_json/guided_regex/guided_choice were removed in v0.12.0 and are silently ignored — never send them.
      if (constraint.kind === "regex") return { structured_outputs: { regex: constraint.pattern } };
      if (constraint.kind === "choice") return { structured_outputs: { choice: constraint.options } };
      return { structured_outputs: { json: constraint.schema } };
    case "sglang":
      // SGLang ChatCompletionRequest (sgl-project/sglang python/sglang/srt/entrypoints/openai/protocol.py
      // @004c82e0): top-level `regex: Optional[str]` and `ebnf`, and `response_format: ResponseFormat`
      // {type: "json_schema", json_schema: JsonSchemaResponseFormat{name (required), schema, strict}}.
      // strict is left unset on purpose: strict=false may run unconstrained there. No choice field:
      // send an escaped alternation as regex.
      if (constraint.kind === "regex") return { regex: constraint.pattern };
      if (constraint.kind === "choice") return { regex: choiceToRegex(constraint.options) };
      return { response_format: jsonSchemaResponseFormat(constraint) };
    case "llamacpp": {
      // llama.cpp server (ggml-org/llama.cpp tools/server/server-common.cpp @006639c3,
      // oaicompat_chat_params_parse): top-level `json_schema` (a schema object) or `grammar` (GBNF text),
      // "Cannot use both json_schema and grammar"; a response_format, if sent, would override json_schema.
      // GBNF escapes follow src/llama-grammar.cpp parse_char (see ./gbnf.ts).
      if (constraint.kind === "json") return { json_schema: constraint.schema };
      const grammar =
        constraint.kind === "choice" ? choiceToGbnf(constraint.options) : regexToGbnf(constraint.pattern);
      return grammar === undefined ? {} : { grammar };
    }
    case "ollama":
      // Ollama's OpenAI layer (ollama/ollama openai/openai.go @00988753, FromChatRequest) maps
      // response_format {type: "json_schema", json_schema: {schema}} → native `format` (the schema) and
      // "json_object" → format "json"; it has no regex/grammar/choice constraint.
      if (constraint.kind === "json") return { response_format: jsonSchemaResponseFormat(constraint) };
      return {};
    case "openai":
      // OpenAI structured outputs: response_format {type: "json_schema", json_schema: {name, schema, strict}}
      // (openai npm resources/shared.d.ts ResponseFormatJSONSchema.JSONSchema: name "a-z, A-Z, 0-9,
      // underscores and dashes, maximum length of 64"). No regex/choice constraint exists there.
      if (constraint.kind === "json")
        return { response_format: jsonSchemaResponseFormat(constraint, isStrictCompatible(constraint.schema)) };
      return {};
    case "generic":
      return {};
  }
}
