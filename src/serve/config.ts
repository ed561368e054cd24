/**
 * Configuration of `mpo serve` (YAML or JSON), validated before the server starts; every error names the
 * file and field. Flags override fields (see src/cli/commands/serve.ts).
 */
import { z } from "zod";
import { guardConfigSchema } from "../meta/guard.ts";
import { adaptiveConfigSchema } from "../meta/triggers.ts";
import { llmEndpointSchema } from "../llm/config.ts";

export const splitPresetNames = ["chatml", "llama3", "gemma", "mistral", "phi3", "zephyr", "deepseek"] as const;

export const splitTemplateSchema = z.union([
  z.enum(["auto", ...splitPresetNames]),
  z
    .object({
      /** Text that opens the assistant turn, e.g. "<|im_start|>assistant\n". */
      assistantStart: z.string().min(1),
      /** Text that opens a user turn (the prompt is the last user turn's content). */
      userStart: z.string().min(1),
      /** Text that ends a turn, e.g. "<|im_end|>". */
      turnEnd: z.string().min(1),
      /** Text that ends a user turn when it differs from turnEnd (Mistral: "[/INST]"). */
      userEnd: z.string().min(1).optional(),
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
    /** Initial rubric file (used when the run directory has no rubric yet); default with `task`: the task's initial rubric. */
    rubric: z.string().min(1).optional(),
    /** What the judges are told the task is (the generic view; a `task` brings its own). */
    taskDescription: z.string().min(1).default("Respond to the user's prompt as well as possible."),
    /**
     * The task (a built-in name or a task config file, as `mpo train --task`): the judges see each sample as
     * `mpo train` shows it (the task persona and judge prompt under the paper profile) and its rules apply
     * (ethics: −10 without a verdict or with under 30 words of reasoning).
     */
    task: z.string().min(1).optional(),
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
    /** fixed: every metaEvery samples (the paper); adaptive: when a trigger fires (docs/meta-schedule.md). */
    metaSchedule: z.enum(["fixed", "adaptive"]).default("fixed"),
    /** Adaptive thresholds; intervals count buckets of ⌈metaEvery/10⌉ samples (unset: ⌈metaEvery/3⌉ … 2 × metaEvery samples). */
    adaptive: adaptiveConfigSchema,
    /** Rubric acceptance guard (docs/meta-schedule.md); default: on with the adaptive schedule. */
    rubricGuard: z.boolean().optional(),
    guard: guardConfigSchema,
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
        /** Hard per-request time limit (504); the judge deadline (outage.deadlineMs) normally answers first. */
        requestTimeoutMs: z.number().int().min(100).default(175_000),
        /** Time to receive a whole request (headers and body): a slow trickle is cut off (408). */
        bodyTimeoutMs: z.number().int().min(100).default(30_000),
      })
      .strict()
      .default({ bodyBytes: 16 * 1024 * 1024, batchSize: 4096, fieldChars: 200_000, requestTimeoutMs: 175_000, bodyTimeoutMs: 30_000 }),
    /**
     * Judge outages: each sample is retried (exponential backoff with full jitter) until `deadlineMs` after
     * its request arrived; only then is the answer 503. Default: just under OpenRLHF's 180 s per try.
     */
    outage: z
      .object({
        deadlineMs: z.number().int().min(1).default(170_000),
        backoffBaseMs: z.number().min(0).default(1000),
        backoffMaxMs: z.number().min(0).default(15_000),
        /** Samples waiting for a judge slot beyond `concurrency`; past it new requests get 503 at once. */
        queueMax: z.number().int().min(0).default(8192),
      })
      .strict()
      .default({ deadlineMs: 170_000, backoffBaseMs: 1000, backoffMaxMs: 15_000, queueMax: 8192 }),
    /**
     * Unreadable judge replies (empty, prose, refusal, over-long): re-asked, then answered per `onUnreadable`
     * — never turned into a reward silently. A share above `maxShare` of the last `window` samples fails loudly.
     */
    unreadable: z
      .object({
        /** Extra asks of the whole evaluation (at `reaskTemperature`, a new seed each) before giving up. */
        reasks: z.number().int().min(0).max(10).default(2),
        reaskTemperature: z.number().min(0).max(2).default(0.7),
        /** "retry": 503 for the request so the caller asks again; "sentinel": reward = `sentinel`, flagged. */
        onUnreadable: z.enum(["retry", "sentinel"]).default("retry"),
        sentinel: z.number().finite().default(0),
        window: z.number().int().min(1).default(200),
        maxShare: z.number().min(0).max(1).default(0.2),
        /** Samples needed in the window before the share is judged. */
        minSamples: z.number().int().min(1).default(20),
      })
      .strict()
      .default({ reasks: 2, reaskTemperature: 0.7, onUnreadable: "retry", sentinel: 0, window: 200, maxShare: 0.2, minSamples: 20 }),
    /** Largest meta window read back for a meta step; bigger windows are sampled uniformly down to it. */
    metaWindowCap: z.number().int().min(1).default(10_000),
    /** Extra Host header values accepted (DNS names the service is reached by); bound addresses always are. */
    allowedHosts: z.array(z.string().min(1)).default([]),
    /** Without a token, /v1/meta-step is refused unless this is set. */
    allowUnauthenticatedAdmin: z.boolean().default(false),
    /** Allow a non-loopback host without a token. */
    insecure: z.boolean().default(false),
    split: splitTemplateSchema.default("auto"),
    /**
     * The policy being trained (a HF model directory or Hub id): with split "auto", OpenRLHF's query is split
     * at the markers of ITS chat template (tokenizer_config.json / chat_template.jinja), not a guessed preset.
     */
    policy: z.string().min(1).optional(),
    /** A Jinja chat template file (OpenRLHF's --tokenizer_chat_template), replacing the policy's own. */
    chatTemplate: z.string().min(1).optional(),
    /** Override directory for prompt templates. */
    templates: z.string().optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.rubric === undefined && c.task === undefined) ctx.addIssue({ code: "custom", path: ["rubric"], message: "required (an initial rubric file), unless `task` gives one" });
  });

export type ServeConfig = z.output<typeof serveConfigSchema>;
export type SplitTemplate = z.output<typeof splitTemplateSchema>;
