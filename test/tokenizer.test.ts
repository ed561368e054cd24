import { describe, it, expect } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BpeTokenizer, DEFAULT_SPECIAL_TOKENS, HfTokenizer, loadTokenizer, preTokenize, toByteLevel, trainBpe } from "../src/tokenizer/index.ts";
import { BYTE_TO_CHAR } from "../src/tokenizer/bytelevel.ts";
import { Rng } from "../src/util/rng.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");

const WORDS = ["the", "model", "reward", "rubric", "policy", "optimizer", "token", "judge", "essay", "answer",
  "is", "a", "of", "to", "and", "in", "that", "it", "with", "for", "42", "3.14", "x^2", "don't", "we'll", "naïve", "café",
  "数学", "问题", "答案", "😀", "🚀", "Ünïcödé", "\t", "λ", "∑"];

function syntheticCorpus(seed: number, nWords: number): string {
  const rng = new Rng(seed);
  const parts: string[] = [];
  for (let i = 0; i < nWords; i++) {
    // Zipf-ish: early words far more frequent, so merges have a clear order with some ties.
    const w = WORDS[Math.min(WORDS.length - 1, Math.floor(WORDS.length * rng.random() ** 2.5))];
    parts.push(w);
    const r = rng.random();
    parts.push(r < 0.8 ? " " : r < 0.9 ? ". " : r < 0.95 ? "\n" : ",  ");
  }
  return parts.join("");
}

/** Code points from diverse ranges: ASCII, whitespace, Latin-1, combining marks, CJK, emoji (astral), ZWJ, control. */
function randomString(rng: Rng, maxLen: number): string {
  const pools: [number, number][] = [[0x20, 0x7e], [0x09, 0x0d], [0xa0, 0xff], [0x300, 0x36f], [0x4e00, 0x4fff], [0x1f600, 0x1f64f], [0x200d, 0x200d], [0x00, 0x1f], [0x10000, 0x10ffff]];
  const n = rng.int(maxLen + 1);
  let s = "";
  for (let i = 0; i < n; i++) {
    const [lo, hi] = pools[rng.int(pools.length)];
    let cp = lo + rng.int(hi - lo + 1);
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41; // lone surrogates are not valid Unicode text
    s += String.fromCodePoint(cp);
    if (rng.random() < 0.05) s += DEFAULT_SPECIAL_TOKENS[rng.int(DEFAULT_SPECIAL_TOKENS.length)];
  }
  return s;
}

/** Reference BPE trainer: recounts every pair of every word before each merge (slow, obviously right). */
function naiveTrain(text: string, vocabSize: number, specials: string[]): [string, string][] {
  const counts = new Map<string, number>();
  for (const p of preTokenize(text)) counts.set(p, (counts.get(p) ?? 0) + 1);
  const idOf = new Map<string, number>();
  const tokens: string[] = [...specials];
  specials.forEach((s, i) => idOf.set(s, i));
  for (let b = 0; b < 256; b++) {
    const ch = BYTE_TO_CHAR[b];
    idOf.set(ch, tokens.length);
    tokens.push(ch);
  }
  let words = [...counts].map(([w, c]) => ({ syms: [...toByteLevel(w)].map((ch) => idOf.get(ch)!), c }));
  const merges: [string, string][] = [];
  while (tokens.length < vocabSize) {
    const pc = new Map<string, number>();
    for (const { syms, c } of words) for (let i = 0; i + 1 < syms.length; i++) pc.set(`${syms[i]},${syms[i + 1]}`, (pc.get(`${syms[i]},${syms[i + 1]}`) ?? 0) + c);
    let best: [number, number] | null = null;
    let bestC = 0;
    for (const [k, c] of pc) {
      const [a, b] = k.split(",").map(Number);
      if (c > bestC || (c === bestC && best && (a < best[0] || (a === best[0] && b < best[1])))) {
        best = [a, b];
        bestC = c;
      }
    }
    if (!best || bestC < 2) break;
    const [a, b] = best;
    const str = tokens[a] + tokens[b];
    let id = idOf.get(str);
    if (id === undefined) {
      id = tokens.length;
      tokens.push(str);
      idOf.set(str, id);
    }
    merges.push([tokens[a], tokens[b]]);
    words = words.map(({ syms, c }) => {
      const out: number[] = [];
      for (let i = 0; i < syms.length; ) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          out.push(id!);
          i += 2;
        } else out.push(syms[i++]);
      }
      return { syms: out, c };
    });
  }
  return merges;
}


describe("byte-level BPE training", () => {
  const corpus = syntheticCorpus(7, 4000);

  it("matches a naive full-recount trainer merge for merge", () => {
    const fast = trainBpe([corpus], { vocabSize: 4 + 256 + 120, specialTokens: DEFAULT_SPECIAL_TOKENS });
    const slow = naiveTrain(corpus, 4 + 256 + 120, DEFAULT_SPECIAL_TOKENS);
    expect(fast.merges.length).toBeGreaterThan(50);
    expect(fast.merges).toEqual(slow);
  });

  it("is deterministic and reaches the requested vocab size", () => {
    const a = BpeTokenizer.train(corpus, { vocabSize: 300 });
    const b = BpeTokenizer.train(corpus, { vocabSize: 300 });
    expect(JSON.stringify(a.toJson())).toBe(JSON.stringify(b.toJson()));
    expect(a.vocabSize).toBe(300);
    expect(a.specialId("<|endoftext|>")).toBe(0);
    expect(a.specialId("<pad>")).toBe(3);
  });

  it("stops early when no pair is frequent enough, and rejects a too-small vocab", () => {
    const t = BpeTokenizer.train("ab", { vocabSize: 1000 });
    expect(t.vocabSize).toBe(260);
    expect(() => BpeTokenizer.train("ab", { vocabSize: 100 })).toThrow(/vocabSize must be an integer ≥ 260/);
  });

  it("compresses its training text", () => {
    const t = BpeTokenizer.train(corpus, { vocabSize: 400 });
    const bytes = Buffer.byteLength(corpus);
    expect(t.encode(corpus).length).toBeLessThan(bytes / 2.5);
  });
});

describe("encode / decode", () => {
  const tok = BpeTokenizer.train(syntheticCorpus(3, 6000), { vocabSize: 420 });

  it("round-trips arbitrary Unicode text (seeded property test)", () => {
    const rng = new Rng(99);
    for (let i = 0; i < 400; i++) {
      const s = randomString(rng, 40);
      const ids = tok.encode(s);
      expect(tok.decode(ids)).toBe(s);
      for (const id of ids) expect(id).toBeLessThan(tok.vocabSize);
    }
  });

  it("never splits special tokens and can treat them as plain text", () => {
    const s = "<|im_start|>user\nhi 😀<|im_end|>\n<|im_start|>assistant\n数学<|endoftext|>";
    const ids = tok.encode(s);
    expect(ids[0]).toBe(tok.specialId("<|im_start|>"));
    expect(ids.filter((x) => x === tok.specialId("<|im_end|>")).length).toBe(1);
    expect(ids[ids.length - 1]).toBe(tok.specialId("<|endoftext|>"));
    expect(tok.decode(ids)).toBe(s);
    expect(tok.decode(ids, { skipSpecial: true })).toBe("user\nhi 😀\nassistant\n数学");
    const plain = tok.encode(s, { parseSpecial: false });
    for (const sp of DEFAULT_SPECIAL_TOKENS) expect(plain).not.toContain(tok.specialId(sp));
    expect(tok.decode(plain)).toBe(s);
  });

  it("decoding a cut multi-byte character gives U+FFFD, not a throw", () => {
    const ids = tok.encode("😀");
    if (ids.length > 1) expect(tok.decode(ids.slice(0, 1))).toContain("\uFFFD");
    expect(() => tok.decode([tok.vocabSize])).toThrow(/outside the vocabulary/);
  });

  it("tokenizer.json round-trips and is saved atomically", () => {
    const dir = mkdtempSync(join(tmpdir(), "mpo-tok-"));
    try {
      const p = join(dir, "tokenizer.json");
      tok.save(p);
      const back = BpeTokenizer.load(p);
      const s = "The rubric 数学 😀 don't\n\n  x^2 <|im_end|>";
      expect(back.encode(s)).toEqual(tok.encode(s));
      const j = JSON.parse(readFileSync(p, "utf8"));
      expect(j.model.type).toBe("BPE");
      expect(j.pre_tokenizer.type).toBe("ByteLevel");
      expect(j.added_tokens.map((t: { content: string }) => t.content)).toEqual(DEFAULT_SPECIAL_TOKENS);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("bad tokenizer.json errors name the field", () => {
    const j = tok.toJson() as any;
    expect(() => BpeTokenizer.fromJson({ ...j, model: { ...j.model, type: "WordPiece" } })).toThrow(/field 'model.type'/);
    expect(() => BpeTokenizer.fromJson({ ...j, model: { ...j.model, merges: [...j.model.merges, "zz qq"] } })).toThrow(/model.merges\[\d+\]/);
    const vocab = { ...j.model.vocab };
    delete vocab["Ā"];
    expect(() => BpeTokenizer.fromJson({ ...j, model: { ...j.model, vocab } })).toThrow(/model.vocab/);
    expect(() => BpeTokenizer.fromJson("{oops", "x.json")).toThrow(/x.json: field '\(root\)': not valid JSON/);
  });
});

describe("@huggingface/tokenizers agrees with our implementation", () => {
  const tok = BpeTokenizer.train(syntheticCorpus(5, 6000), { vocabSize: 450 });
  const hf = HfTokenizer.fromJson(tok.toJson());

  it("same ids and same decoding on random Unicode text and chat markup", () => {
    const rng = new Rng(123);
    const samples = [syntheticCorpus(11, 300), "<|im_start|>system\nBe brief.<|im_end|>\n", "  leading and trailing  \n\n", ""];
    for (let i = 0; i < 300; i++) samples.push(randomString(rng, 30));
    for (const s of samples) {
      const ids = tok.encode(s);
      expect(hf.encode(s)).toEqual(ids);
      expect(hf.decode(ids)).toBe(tok.decode(ids));
      expect(hf.decode(ids, { skipSpecial: true })).toBe(tok.decode(ids, { skipSpecial: true }));
    }
    expect(hf.vocabSize).toBe(tok.vocabSize);
    expect(hf.specialId("<|im_end|>")).toBe(tok.specialId("<|im_end|>"));
  });

  it("loadTokenizer uses ours for our form and the library for other tokenizer.json kinds", () => {
    expect(loadTokenizer(tok.toJson())).toBeInstanceOf(BpeTokenizer);
    // A WordLevel tokenizer: not ours, the library handles it.
    const wl = {
      version: "1.0", added_tokens: [{ id: 0, content: "[UNK]", special: true, single_word: false, lstrip: false, rstrip: false, normalized: false }],
      normalizer: null, pre_tokenizer: { type: "Whitespace" }, post_processor: null, decoder: null,
      model: { type: "WordLevel", vocab: { "[UNK]": 0, hello: 1, world: 2 }, unk_token: "[UNK]" },
    };
    const t = loadTokenizer(wl);
    expect(t).toBeInstanceOf(HfTokenizer);
    expect(t.encode("hello world")).toEqual([1, 2]);
    expect(t.decode([])).toBe("");
  });

  it("agrees on real data when ../shared/data is present", () => {
    const p = join(repo, "../shared/data/essay/prompts.jsonl");
    if (!existsSync(p)) {
      console.warn("skipping: ../shared/data not present");
      return;
    }
    const text = readFileSync(p, "utf8").slice(0, 200_000);
    const real = BpeTokenizer.train(text, { vocabSize: 1024 });
    const lib = HfTokenizer.fromJson(real.toJson());
    const sample = text.slice(100_000, 130_000);
    expect(lib.encode(sample)).toEqual(real.encode(sample));
    expect(real.decode(real.encode(sample))).toBe(sample);
  });
});
