/**
 * The project's tokenizer: byte-level BPE stored as a Hugging Face `tokenizer.json` (model BPE, ByteLevel
 * pre-tokenizer and decoder, special tokens as added_tokens), so checkpoints carry a tokenizer that HF
 * tokenizers / transformers.js load unchanged. Trained here (./train.ts); encoding applies merges by rank
 * within each GPT-2 pre-token, after first splitting out special tokens so they are never broken up.
 *
 * This class is the reference implementation; `loadHfTokenizer` (./hf.ts) wraps the maintained
 * @huggingface/tokenizers library, and the tests check both encode identically.
 */
import { readFileSync } from "node:fs";
import { UserError } from "../util/errors.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { BYTE_TO_CHAR, fromByteLevel, preTokenize, toByteLevel } from "./bytelevel.ts";
import { trainBpe, type TrainOptions } from "./train.ts";

/** Special tokens every mpo tokenizer has (ids 0..3 when trained here). */
export const DEFAULT_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"];

export interface EncodeOptions {
  /** Match special-token text in the input as special tokens (default true, as HF does). */
  parseSpecial?: boolean;
}
export interface DecodeOptions {
  skipSpecial?: boolean;
}

export class TokenizerFormatError extends UserError {
  constructor(source: string, field: string, problem: string) {
    super(`${source}: field '${field}': ${problem}`);
    this.name = "TokenizerFormatError";
  }
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

export class BpeTokenizer {
  readonly idToToken: string[];
  readonly tokenToId: Map<string, number>;
  readonly merges: [string, string][];
  /** Special (added) token text → id. */
  readonly special: Map<string, number>;
  /** (left id, right id) → [rank, merged id]. */
  private readonly mergeMap = new Map<number, [number, number]>();
  private readonly specialSplit: RegExp | null;
  private readonly byteIds: number[];
  private cache = new Map<string, number[]>();

  constructor(idToToken: string[], merges: [string, string][], specialTokens: string[], source = "tokenizer") {
    this.idToToken = idToToken;
    this.merges = merges;
    this.tokenToId = new Map();
    idToToken.forEach((t, i) => {
      if (t === undefined) throw new TokenizerFormatError(source, "model.vocab", `no token has id ${i} (ids must be 0..n-1)`);
      this.tokenToId.set(t, i);
    });
    this.special = new Map();
    for (const s of specialTokens) {
      const id = this.tokenToId.get(s);
      if (id === undefined) throw new TokenizerFormatError(source, "added_tokens", `special token ${JSON.stringify(s)} has no id`);
      this.special.set(s, id);
    }
    this.byteIds = BYTE_TO_CHAR.map((ch, b) => {
      const id = this.tokenToId.get(ch);
      if (id === undefined) throw new TokenizerFormatError(source, "model.vocab", `byte ${b} (${JSON.stringify(ch)}) is missing: byte-level BPE needs all 256 byte symbols`);
      return id;
    });
    merges.forEach(([l, r], rank) => {
      const a = this.tokenToId.get(l), b = this.tokenToId.get(r), m = this.tokenToId.get(l + r);
      if (a === undefined || b === undefined || m === undefined)
        throw new TokenizerFormatError(source, `model.merges[${rank}]`, `merge ${JSON.stringify([l, r])} refers to a token not in the vocab`);
      const k = a * 2 ** 21 + b;
      if (!this.mergeMap.has(k)) this.mergeMap.set(k, [rank, m]);
    });
    const specials = [...this.special.keys()].sort((x, y) => y.length - x.length);
    this.specialSplit = specials.length ? new RegExp(`(${specials.map(escapeRegex).join("|")})`, "u") : null;
  }

  static train(texts: Iterable<string> | string, opts: Omit<TrainOptions, "specialTokens"> & { specialTokens?: string[] }): BpeTokenizer {
    const specialTokens = opts.specialTokens ?? DEFAULT_SPECIAL_TOKENS;
    const r = trainBpe(typeof texts === "string" ? [texts] : texts, { ...opts, specialTokens });
    return new BpeTokenizer(r.idToToken, r.merges, specialTokens);
  }

  get vocabSize(): number {
    return this.idToToken.length;
  }

  /** Id of a special token, or undefined. */
  specialId(text: string): number | undefined {
    return this.special.get(text);
  }

  private bpe(piece: string): number[] {
    const cached = this.cache.get(piece);
    if (cached) return cached;
    const bl = toByteLevel(piece);
    let syms: number[] = [];
    for (const ch of bl) syms.push(this.tokenToId.get(ch)!);
    // Repeatedly merge the lowest-rank adjacent pair (all its occurrences, left to right).
    while (syms.length > 1) {
      let bestRank = Infinity, bestA = -1, bestB = -1, bestId = -1;
      for (let i = 0; i + 1 < syms.length; i++) {
        const m = this.mergeMap.get(syms[i] * 2 ** 21 + syms[i + 1]);
        if (m && m[0] < bestRank) {
          bestRank = m[0];
          bestA = syms[i];
          bestB = syms[i + 1];
          bestId = m[1];
        }
      }
      if (bestId < 0) break;
      const out: number[] = [];
      for (let i = 0; i < syms.length; ) {
        if (i + 1 < syms.length && syms[i] === bestA && syms[i + 1] === bestB) {
          out.push(bestId);
          i += 2;
        } else out.push(syms[i++]);
      }
      syms = out;
    }
    if (this.cache.size > 100_000) this.cache.clear();
    this.cache.set(piece, syms);
    return syms;
  }

  private encodeOrdinary(text: string, out: number[]): void {
    for (const p of preTokenize(text)) for (const id of this.bpe(p)) out.push(id);
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const out: number[] = [];
    if (opts.parseSpecial === false || !this.specialSplit) {
      this.encodeOrdinary(text, out);
      return out;
    }
    const parts = text.split(this.specialSplit);
    // split with a capture group alternates ordinary text (even) and special tokens (odd).
    for (let i = 0; i < parts.length; i++) {
      if (i % 2 === 1) out.push(this.special.get(parts[i])!);
      else if (parts[i]) this.encodeOrdinary(parts[i], out);
    }
    return out;
  }

  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    let text = "";
    let pending = "";
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const tok = this.idToToken[id];
      if (tok === undefined) throw new RangeError(`decode: token id ${id} is outside the vocabulary (size ${this.vocabSize})`);
      if (this.special.has(tok)) {
        text += fromByteLevel(pending);
        pending = "";
        if (!opts.skipSpecial) text += tok;
      } else pending += tok;
    }
    return text + fromByteLevel(pending);
  }

  /** The Hugging Face tokenizer.json object. */
  toJson(): Record<string, unknown> {
    const vocab: Record<string, number> = {};
    this.idToToken.forEach((t, i) => {
      if (!this.special.has(t)) vocab[t] = i;
    });
    // Special tokens are in the vocab too (HF convention for added tokens that are part of the model vocab).
    for (const [t, i] of this.special) vocab[t] = i;
    return {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: [...this.special].map(([content, id]) => ({
        id,
        content,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      })),
      normalizer: null,
      pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
      post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
      decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: "BPE",
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
        vocab,
        merges: this.merges.map(([a, b]) => `${a} ${b}`),
      },
    };
  }

  save(path: string): void {
    writeFileAtomic(path, JSON.stringify(this.toJson()));
  }

  /** Loads a byte-level BPE tokenizer.json (object or JSON text); unsupported shapes are errors naming the field. */
  static fromJson(json: unknown, source = "tokenizer.json"): BpeTokenizer {
    let obj = json;
    if (typeof obj === "string") {
      try {
        obj = JSON.parse(obj);
      } catch (e) {
        throw new TokenizerFormatError(source, "(root)", `not valid JSON (${(e as Error).message})`);
      }
    }
    if (obj === null || typeof obj !== "object") throw new TokenizerFormatError(source, "(root)", "expected an object");
    const o = obj as Record<string, any>;
    const model = o.model;
    if (!model || model.type !== "BPE") throw new TokenizerFormatError(source, "model.type", `expected "BPE", got ${JSON.stringify(model?.type)}`);
    const pre = o.pre_tokenizer;
    if (!pre || pre.type !== "ByteLevel" || pre.add_prefix_space === true || pre.use_regex === false)
      throw new TokenizerFormatError(source, "pre_tokenizer", `expected ByteLevel with use_regex and no prefix space, got ${JSON.stringify(pre)}`);
    if (o.normalizer) throw new TokenizerFormatError(source, "normalizer", `normalizers are not supported, got ${JSON.stringify(o.normalizer?.type)}`);
    if (o.decoder && o.decoder.type !== "ByteLevel") throw new TokenizerFormatError(source, "decoder.type", `expected "ByteLevel", got ${JSON.stringify(o.decoder.type)}`);
    if (!model.vocab || typeof model.vocab !== "object") throw new TokenizerFormatError(source, "model.vocab", "expected an object token → id");
    if (!Array.isArray(model.merges)) throw new TokenizerFormatError(source, "model.merges", "expected a list");
    const idToToken: string[] = [];
    for (const [tok, id] of Object.entries(model.vocab as Record<string, unknown>)) {
      if (!Number.isInteger(id) || (id as number) < 0) throw new TokenizerFormatError(source, `model.vocab.${tok}`, `expected a non-negative integer id, got ${JSON.stringify(id)}`);
      if (idToToken[id as number] !== undefined) throw new TokenizerFormatError(source, `model.vocab.${tok}`, `id ${id} is used twice`);
      idToToken[id as number] = tok;
    }
    const specials: string[] = [];
    for (const [i, t] of ((o.added_tokens ?? []) as any[]).entries()) {
      if (typeof t?.content !== "string" || !Number.isInteger(t?.id)) throw new TokenizerFormatError(source, `added_tokens[${i}]`, "expected {id, content}");
      if (idToToken[t.id] !== undefined && idToToken[t.id] !== t.content)
        throw new TokenizerFormatError(source, `added_tokens[${i}]`, `id ${t.id} is ${JSON.stringify(idToToken[t.id])} in the vocab`);
      idToToken[t.id] = t.content;
      specials.push(t.content);
    }
    const merges: [string, string][] = model.merges.map((m: unknown, i: number) => {
      if (Array.isArray(m) && m.length === 2 && m.every((x) => typeof x === "string")) return [m[0], m[1]];
      if (typeof m === "string") {
        const parts = m.split(" ");
        if (parts.length === 2) return [parts[0], parts[1]];
      }
      throw new TokenizerFormatError(source, `model.merges[${i}]`, `expected "a b" or ["a", "b"], got ${JSON.stringify(m)}`);
    });
    for (let i = 0; i < idToToken.length; i++)
      if (idToToken[i] === undefined) throw new TokenizerFormatError(source, "model.vocab", `no token has id ${i} (ids must be 0..n-1)`);
    return new BpeTokenizer(idToToken, merges, specials, source);
  }

  static load(path: string): BpeTokenizer {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (e) {
      throw new UserError(`${path}: cannot read tokenizer (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    return BpeTokenizer.fromJson(text, path);
  }
}
