/**
 * The tokenizer view the trainer needs: text ↔ ids plus the end-of-sequence id. Two sources:
 *  - a word-level vocabulary (the built-in toy tasks: one token per whitespace-separated word), stored as a
 *    Hugging Face `tokenizer.json` with a "WordLevel" model so checkpoints stay loadable by HF tools;
 *  - anything else in a checkpoint's tokenizer.json is handed to the project's general tokenizer module
 *    (src/tokenizer: our BPE and HF tokenizer.json).
 */
import { loadTokenizer } from "../tokenizer/index.ts";
import { UserError } from "../util/errors.ts";

export interface PolicyTokenizer {
  encode(text: string): number[];
  decode(ids: number[]): string;
  readonly eosId: number;
  readonly bosId: number | null;
  readonly vocabSize: number;
  /** tokenizer.json content to store next to the model. */
  toJSON(): object;
}

export const SPECIAL = { pad: "<pad>", bos: "<bos>", eos: "<eos>", sep: "<sep>", unk: "<unk>" } as const;

/** One id per whitespace-separated word; unknown words map to <unk>. */
export class WordTokenizer implements PolicyTokenizer {
  readonly vocab: string[];
  private readonly ids = new Map<string, number>();
  readonly eosId: number;
  readonly bosId: number;
  readonly unkId: number;

  constructor(words: string[]) {
    const specials = [SPECIAL.pad, SPECIAL.bos, SPECIAL.eos, SPECIAL.sep, SPECIAL.unk];
    this.vocab = [...specials, ...words.filter((w) => !specials.includes(w as never))];
    this.vocab.forEach((w, i) => {
      if (this.ids.has(w)) throw new UserError(`word tokenizer: duplicate word '${w}'`);
      this.ids.set(w, i);
    });
    this.eosId = this.ids.get(SPECIAL.eos)!;
    this.bosId = this.ids.get(SPECIAL.bos)!;
    this.unkId = this.ids.get(SPECIAL.unk)!;
  }

  get vocabSize(): number {
    return this.vocab.length;
  }

  id(word: string): number {
    return this.ids.get(word) ?? this.unkId;
  }

  encode(text: string): number[] {
    return text.split(/\s+/).filter(Boolean).map((w) => this.id(w));
  }

  /** Special tokens other than <sep>/<unk> are dropped: they are control symbols, not text. */
  decode(ids: number[]): string {
    return ids
      .filter((i) => i !== this.eosId && i !== this.bosId && i !== 0)
      .map((i) => this.vocab[i] ?? SPECIAL.unk)
      .join(" ");
  }

  toJSON(): object {
    const vocab: Record<string, number> = {};
    this.vocab.forEach((w, i) => (vocab[w] = i));
    return {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: this.vocab.slice(0, 5).map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
      normalizer: null,
      pre_tokenizer: { type: "WhitespaceSplit" },
      post_processor: null,
      decoder: null,
      model: { type: "WordLevel", vocab, unk_token: SPECIAL.unk },
    };
  }

  static fromJSON(json: Record<string, unknown>, source: string): WordTokenizer {
    const model = json.model as { type?: string; vocab?: Record<string, number> } | undefined;
    if (!model || model.type !== "WordLevel" || !model.vocab || typeof model.vocab !== "object") {
      throw new UserError(`${source}: field 'model': expected a WordLevel model with a vocab`);
    }
    const words = Object.entries(model.vocab).sort((a, b) => a[1] - b[1]);
    words.forEach(([w, i], k) => {
      if (i !== k) throw new UserError(`${source}: field 'model.vocab.${w}': expected id ${k} (ids must be 0..n-1), got ${i}`);
    });
    const t = new WordTokenizer(words.map(([w]) => w));
    words.forEach(([w, i]) => {
      if (t.id(w) !== i) throw new UserError(`${source}: field 'model.vocab': special tokens must come first in the order ${Object.values(SPECIAL).join(", ")}`);
    });
    return t;
  }
}

/** Builds the tokenizer for a checkpoint's tokenizer.json (word-level here, anything else via src/tokenizer). */
export function tokenizerFromJson(json: Record<string, unknown> | undefined, source: string, eosTokenId?: number): PolicyTokenizer {
  if (!json) throw new UserError(`${source}: the policy checkpoint has no tokenizer.json`);
  const model = json.model as { type?: string } | undefined;
  if (model?.type === "WordLevel") return WordTokenizer.fromJSON(json, source);
  // General tokenizers (BPE, HF tokenizer.json) come from src/tokenizer.
  const inner = loadTokenizer(json, source);
  if (eosTokenId === undefined) throw new UserError(`${source}: config.json has no eos_token_id; the trainer needs it to stop generation`);
  const eos = eosTokenId;
  return {
    encode: (t) => inner.encode(t),
    decode: (ids) => inner.decode(ids.filter((i) => i !== eos)),
    eosId: eos,
    bosId: null,
    vocabSize: inner.vocabSize,
    toJSON: () => json,
  };
}
