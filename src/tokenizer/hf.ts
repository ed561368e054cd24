/**
 * Tokenizers from any Hugging Face tokenizer.json, through the maintained @huggingface/tokenizers library
 * (pure JS; normalizers, Metaspace, WordPiece… that our own BpeTokenizer does not implement).
 * `loadTokenizer` picks our BpeTokenizer for the byte-level BPE files this project writes (several times
 * faster on long texts; the tests check both give identical ids) and the library for everything else,
 * behind one small interface the engine, CLI and trainer use.
 */
import { readFileSync } from "node:fs";
import { Tokenizer as HfLibTokenizer } from "@huggingface/tokenizers";
import { UserError } from "../util/errors.ts";
import { BpeTokenizer, TokenizerFormatError, type DecodeOptions, type EncodeOptions } from "./tokenizer.ts";

/** What callers need from a tokenizer. */
export interface TextTokenizer {
  readonly vocabSize: number;
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: ArrayLike<number>, opts?: DecodeOptions): string;
  /** Id of a special/added token (e.g. "<|im_end|>"), or undefined. */
  specialId(text: string): number | undefined;
}

/** Wraps the @huggingface/tokenizers Tokenizer (no BOS/EOS added implicitly, no decode clean-up). */
export class HfTokenizer implements TextTokenizer {
  private readonly added = new Map<string, number>();
  readonly vocabSize: number;
  constructor(
    readonly lib: HfLibTokenizer,
    json: Record<string, any>,
  ) {
    for (const t of (json.added_tokens ?? []) as { id: number; content: string }[]) this.added.set(t.content, t.id);
    let max = -1;
    for (const id of Object.values((json.model?.vocab ?? {}) as Record<string, number>)) if (typeof id === "number" && id > max) max = id;
    for (const id of this.added.values()) if (id > max) max = id;
    this.vocabSize = max + 1;
  }
  static fromJson(json: Record<string, any>, source = "tokenizer.json"): HfTokenizer {
    try {
      return new HfTokenizer(new HfLibTokenizer(json, {}), json);
    } catch (e) {
      throw new UserError(`${source}: @huggingface/tokenizers cannot load it: ${(e as Error).message}`);
    }
  }
  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (opts.parseSpecial === false)
      throw new Error("HfTokenizer: parseSpecial=false is not supported by @huggingface/tokenizers; use BpeTokenizer");
    const { ids, tokens } = this.lib.encode(text, { add_special_tokens: false });
    // The library yields undefined for pieces it cannot map (e.g. WordLevel without a usable unk); never pass that on.
    const bad = ids.findIndex((id: unknown) => typeof id !== "number");
    if (bad >= 0) throw new UserError(`tokenizer cannot encode piece ${JSON.stringify(tokens[bad])} (no id and no usable unk token)`);
    return ids;
  }
  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    if (ids.length === 0) return ""; // the library rejects empty input
    return this.lib.decode(Array.from(ids), { skip_special_tokens: opts.skipSpecial ?? false, clean_up_tokenization_spaces: false });
  }
  specialId(text: string): number | undefined {
    return this.added.get(text);
  }
}

/** Our BpeTokenizer when the file is the byte-level BPE form it supports, else the HF library. */
export function loadTokenizer(json: unknown, source = "tokenizer.json"): TextTokenizer {
  let obj = json;
  if (typeof obj === "string") {
    try {
      obj = JSON.parse(obj);
    } catch (e) {
      throw new TokenizerFormatError(source, "(root)", `not valid JSON (${(e as Error).message})`);
    }
  }
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) throw new TokenizerFormatError(source, "(root)", "expected an object");
  const o = obj as Record<string, any>;
  const ours =
    o.model?.type === "BPE" && o.pre_tokenizer?.type === "ByteLevel" && o.pre_tokenizer.add_prefix_space !== true &&
    o.pre_tokenizer.use_regex !== false && !o.normalizer && (!o.decoder || o.decoder.type === "ByteLevel");
  // Our form: our parser (its errors name the broken field). Anything else: the HF library.
  return ours ? BpeTokenizer.fromJson(o, source) : HfTokenizer.fromJson(o, source);
}

export function loadTokenizerFile(path: string): TextTokenizer {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new UserError(`${path}: cannot read tokenizer (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return loadTokenizer(text, path);
}
