/**
 * Configuration of `mpo serve` (YAML or JSON), validated before the server starts; every error names the
 * file and field. Flags override fields (see src/cli/commands/serve.ts).
 */
import { z } from "zod";
import { llmEndpointSchema } from "../llm/config.ts";

export const splitTemplateSchema = z.union([
  z.enum(["auto", "chatml", "llama3"]),
  z
    .object({
      /** Text that opens the assistant turn, e.g. "<|im_start|>assistant\n". */
      assistantStart: z.string().min(1),
      /** Text that opens a user turn (the prompt is the last user turn's content). */
      userStart: z.string().min(1),
      /** Text that ends a turn, e.g. "<|im_end|>". */
      turnEnd: z.string().min(1),
      /** Trailing tokens stripped from the response, e.g. ["<|endoftext|>"]. */
      endTokens: z.array(z.string()).default([]),
    })
    .strict(),
]);

export const serveConfigSchema = z
  .object({
    host: z.string().default("127.0.0.1"),
    port: z.number().int().min(0).max(65535).default(5000),
    /** Run directory: rubric versions, rollouts, meta logs, state (same layout as training runs). */
    runDir: z.string().min(1),
    /** Initial rubric file (used when the run directory has no rubric yet). */
    rubric: z.string().min(1),
    /** What the judges are told the task is. */
    taskDescription: z.string().min(1).default("Respond to the user's prompt as well as possible."),
    judge: llmEndpointSchema,
    /** Senior judge for meta steps; default: the junior's endpoint. */
    metaJudge: llmEndpointSchema.optional(),
    mode: z.enum(["per-item", "single-call"]).default("per-item"),
    /** Judge protocol profile (src/judge/protocol.ts, docs/paper-protocol.md): paper (default) or hardened. */
    protocol: z.enum(["paper", "hardened"]).default("paper"),
    /** Let the junior judge see the request's reference answer; default: the profile's (paper: no). */
    judgeSeesReference: z.boolean().optional(),
    /** Run a meta step every this many scored samples (0 = never: fixed rubric). Paper: 10 steps × 64 episodes. */
    metaEvery: z.number().int().min(0).default(640),
    metaSamples: z.number().int().min(1).default(20),
    prescreen: z.boolean().default(false),
    seed: z.number().int().default(0),
    /**
     * What `rewards` carries for OpenRLHF: the raw rubric total (the reference's reward, so a KL coefficient
     * means what it meant there) or the [0, 1]-normalized score. Default: the profile's (paper: raw; hardened: normalized).
     */
    rewardScale: z.enum(["normalized", "raw"]).optional(),
    /** Optional bearer token; when set, every route but /healthz requires `Authorization: Bearer <token>`. */
    token: z.string().min(8).optional(),
    /** Responses judged at once per request. */
    concurrency: z.number().int().min(1).default(64),
    limits: z
      .object({
        bodyBytes: z.number().int().min(1024).default(16 * 1024 * 1024),
        batchSize: z.number().int().min(1).default(4096),
        fieldChars: z.number().int().min(16).default(200_000),
        /** Per-request time limit; keep it under the caller's (OpenRLHF: 180 s). */
        requestTimeoutMs: z.number().int().min(100).default(150_000),
      })
      .strict()
      .default({ bodyBytes: 16 * 1024 * 1024, batchSize: 4096, fieldChars: 200_000, requestTimeoutMs: 150_000 }),
    split: splitTemplateSchema.default("auto"),
    /** Override directory for prompt templates. */
    templates: z.string().optional(),
  })
  .strict();

export type ServeConfig = z.output<typeof serveConfigSchema>;
export type SplitTemplate = z.output<typeof splitTemplateSchema>;
