/**
 * A policy directory's generation settings: how a prompt is laid out for it (the separator it was trained
 * with, or a chat template), how long prompts and responses may be, and which tokens end a response. Every
 * command that generates from a checkpoint (`train`, `generate`, `sample`) reads them from here, so a
 * checkpoint runs with the settings it was made for unless a flag or config key overrides them.
 *
 * Sources, first found wins per field:
 *   1. `mpo-generation.json` (written by `mpo train` checkpoints and `mpo sandbox-policy`):
 *        { "prompt_format": {"kind": "separator", "separator": "\n\n"} | {"kind": "chat_template"},
 *          "max_prompt_tokens": 40, "max_new_tokens": 128, "eos_token_id": [0], "temperature": 1 }
 *   2. Hugging Face files: generation_config.json (max_new_tokens, eos_token_id, temperature),
 *      tokenizer_config.json (chat_template).
 * Fields absent everywhere stay undefined; the caller applies its own default and says so in --help.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { writeJsonAtomic } from "../util/atomic.ts";
import { UserError } from "../util/errors.ts";

export const GENERATION_SETTINGS_FILE = "mpo-generation.json";

export type PromptFormat = { kind: "separator"; separator: string } | { kind: "chat-template"; template: string };

export interface GenerationSettings {
  prompt?: PromptFormat;
  maxPromptTokens?: number;
  maxNewTokens?: number;
  eosTokenIds?: number[];
  temperature?: number;
  /** Which file each field came from (for messages and the run's config). */
  sources: Partial<Record<"prompt" | "maxPromptTokens" | "maxNewTokens" | "eosTokenIds" | "temperature", string>>;
}

const posInt = z.number().int().min(1);
const idList = z.union([z.number().int().min(0), z.array(z.number().int().min(0)).min(1)]).transform((v) => (Array.isArray(v) ? v : [v]));

const mpoFileSchema = z
  .object({
    prompt_format: z.discriminatedUnion("kind", [z.object({ kind: z.literal("separator"), separator: z.string() }).strict(), z.object({ kind: z.literal("chat_template") }).strict()]).optional(),
    max_prompt_tokens: posInt.optional(),
    max_new_tokens: posInt.optional(),
    eos_token_id: idList.optional(),
    temperature: z.number().min(0).optional(),
  })
  .strict();
export type GenerationSettingsFile = z.input<typeof mpoFileSchema>;

// HF files carry many other keys; read only ours, leniently typed but never invented.
const hfGenSchema = z.object({ max_new_tokens: posInt.optional(), eos_token_id: idList.optional(), temperature: z.number().min(0).optional() }).passthrough();
const hfTokSchema = z.object({ chat_template: z.union([z.string(), z.array(z.object({ name: z.string(), template: z.string() }).passthrough())]).optional() }).passthrough();

function readJson<T>(path: string, schema: z.ZodType<T>): T | undefined {
  if (!existsSync(path)) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new UserError(`${path}: not valid JSON (${(err as Error).message})`);
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    const iss = r.error.issues[0];
    throw new UserError(`${path}: field '${iss.path.join(".")}': ${iss.message}`);
  }
  return r.data;
}

function chatTemplateOf(dir: string): string | undefined {
  const p = join(dir, "tokenizer_config.json");
  const t = readJson(p, hfTokSchema)?.chat_template;
  if (typeof t === "string") return t;
  return t?.find((x) => x.name === "default")?.template ?? t?.[0]?.template;
}

/** The generation settings a policy directory declares (fields it does not declare stay undefined). */
export function loadGenerationSettings(dir: string): GenerationSettings {
  const s: GenerationSettings = { sources: {} };
  const set = <K extends keyof Omit<GenerationSettings, "sources">>(k: K, v: GenerationSettings[K] | undefined, src: string) => {
    if (v === undefined || s[k] !== undefined) return;
    s[k] = v;
    s.sources[k] = src;
  };
  const mpoPath = join(dir, GENERATION_SETTINGS_FILE);
  const mine = readJson(mpoPath, mpoFileSchema);
  if (mine) {
    if (mine.prompt_format?.kind === "separator") set("prompt", { kind: "separator", separator: mine.prompt_format.separator }, mpoPath);
    else if (mine.prompt_format?.kind === "chat_template") {
      const template = chatTemplateOf(dir);
      if (template === undefined) throw new UserError(`${mpoPath}: prompt_format chat_template, but ${join(dir, "tokenizer_config.json")} has no chat_template`);
      set("prompt", { kind: "chat-template", template }, mpoPath);
    }
    set("maxPromptTokens", mine.max_prompt_tokens, mpoPath);
    set("maxNewTokens", mine.max_new_tokens, mpoPath);
    set("eosTokenIds", mine.eos_token_id, mpoPath);
    set("temperature", mine.temperature, mpoPath);
  }
  const genPath = join(dir, "generation_config.json");
  const gen = readJson(genPath, hfGenSchema);
  if (gen) {
    set("maxNewTokens", gen.max_new_tokens, genPath);
    set("eosTokenIds", gen.eos_token_id, genPath);
    set("temperature", gen.temperature, genPath);
  }
  const template = s.prompt ? undefined : chatTemplateOf(dir);
  if (template !== undefined) set("prompt", { kind: "chat-template", template }, join(dir, "tokenizer_config.json"));
  return s;
}

/** Writes a checkpoint's settings (atomically) so later commands use what it was trained with. */
export function writeGenerationSettings(
  dir: string,
  s: { separator?: string; chatTemplate?: boolean; maxPromptTokens?: number; maxNewTokens?: number; eosTokenIds?: number[]; temperature?: number },
): void {
  const file: GenerationSettingsFile = {
    ...(s.chatTemplate ? { prompt_format: { kind: "chat_template" as const } } : s.separator !== undefined ? { prompt_format: { kind: "separator" as const, separator: s.separator } } : {}),
    ...(s.maxPromptTokens !== undefined ? { max_prompt_tokens: s.maxPromptTokens } : {}),
    ...(s.maxNewTokens !== undefined ? { max_new_tokens: s.maxNewTokens } : {}),
    ...(s.eosTokenIds !== undefined ? { eos_token_id: s.eosTokenIds } : {}),
    ...(s.temperature !== undefined ? { temperature: s.temperature } : {}),
  };
  writeJsonAtomic(join(dir, GENERATION_SETTINGS_FILE), mpoFileSchema.parse(file));
}
