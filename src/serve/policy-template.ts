/**
 * The split markers of the policy being trained, for `mpo serve --policy DIR|HubId [--chat-template FILE]`:
 * its tokenizer_config.json `chat_template` (or chat_template.jinja; `--chat-template` replaces it, like
 * OpenRLHF's --tokenizer_chat_template) rendered with @huggingface/jinja exactly as the engine renders
 * prompts, and the markup read off the render (split.ts markersFromChatTemplate). Only the config and
 * tokenizer files are read (a Hub id downloads no weights).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ChatTemplate } from "../tokenizer/chat.ts";
import { UserError } from "../util/errors.ts";
import type { SplitTemplate } from "./config.ts";
import { markersFromChatTemplate } from "./split.ts";

function readJson(path: string): Record<string, unknown> | undefined {
  if (!existsSync(path)) return undefined;
  let j: unknown;
  try {
    j = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new UserError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (!j || typeof j !== "object" || Array.isArray(j)) throw new UserError(`${path}: expected a JSON object`);
  return j as Record<string, unknown>;
}

const tokenText = (v: unknown): string | undefined =>
  typeof v === "string" ? v : v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string" ? (v as { content: string }).content : undefined;

/**
 * The split the service uses: `split` as configured, unless it is "auto" and the policy's template is known —
 * then the markers of that template. `note` says which (logged at start).
 */
export async function resolveSplit(cfg: { split: SplitTemplate; policy?: string; chatTemplate?: string }): Promise<{ split: SplitTemplate; note?: string }> {
  if (!cfg.policy && !cfg.chatTemplate) return { split: cfg.split };
  if (cfg.split !== "auto") return { split: cfg.split, note: "split: the configured `split` is used; the policy's chat template is not consulted" };
  let dir: string | undefined;
  if (cfg.policy) {
    const { resolveModelSource } = await import("../engine/io/hub.ts");
    dir = await resolveModelSource(cfg.policy, "--policy", { weights: false });
  }
  const tc = dir ? readJson(join(dir, "tokenizer_config.json")) : undefined;
  let source: string | undefined;
  let file: string;
  if (cfg.chatTemplate) {
    if (!existsSync(cfg.chatTemplate)) throw new UserError(`--chat-template: ${cfg.chatTemplate} does not exist`);
    source = readFileSync(cfg.chatTemplate, "utf8");
    file = cfg.chatTemplate;
  } else {
    const ct = tc?.chat_template;
    const named = Array.isArray(ct) ? (ct.find((t) => t && typeof t === "object" && (t as { name?: unknown }).name === "default") as { template?: unknown } | undefined)?.template : ct;
    if (typeof named === "string" && named.trim()) {
      source = named;
      file = join(dir!, "tokenizer_config.json");
    } else if (existsSync(join(dir!, "chat_template.jinja"))) {
      source = readFileSync(join(dir!, "chat_template.jinja"), "utf8");
      file = join(dir!, "chat_template.jinja");
    } else
      throw new UserError(
        `--policy: ${dir} has no chat template (tokenizer_config.json 'chat_template' or chat_template.jinja); give --chat-template FILE, or set \`split\` (a preset or markers)`,
      );
  }
  if (!tc && /\b(?:bos|eos|pad|unk)_token\b/.test(source))
    throw new UserError(`--chat-template: ${file} uses the tokenizer's special tokens (bos_token/eos_token…); add --policy DIR (the policy's tokenizer) so they are known`);
  const template = new ChatTemplate(source, {
    bos_token: tokenText(tc?.bos_token) ?? null,
    eos_token: tokenText(tc?.eos_token) ?? null,
    pad_token: tokenText(tc?.pad_token) ?? null,
    unk_token: tokenText(tc?.unk_token) ?? null,
  }, file);
  // Text of every token that may end a generated response: eos/pad, and generation_config's eos ids.
  const ends = [tokenText(tc?.eos_token), tokenText(tc?.pad_token)].filter((x): x is string => !!x);
  if (dir) {
    const gen = readJson(join(dir, "generation_config.json"));
    const ids = ([] as unknown[]).concat(gen?.eos_token_id ?? []);
    const added = (readJson(join(dir, "tokenizer.json"))?.added_tokens ?? []) as { id?: unknown; content?: unknown }[];
    for (const t of Array.isArray(added) ? added : []) if (ids.includes(t.id) && typeof t.content === "string") ends.push(t.content);
  }
  const m = markersFromChatTemplate(template, ends);
  return {
    split: m,
    note: `split: markers of the chat template in ${file}: prompt after ${JSON.stringify(m.userStart)}, response after ${JSON.stringify(m.assistantStart)}, end tokens ${JSON.stringify(m.endTokens)}`,
  };
}
