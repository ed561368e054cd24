/**
 * Byte-level pieces shared by training, encoding and decoding, matching Hugging Face's ByteLevel
 * pre-tokenizer/decoder (GPT-2): text is split with the GPT-2 regex, each piece is UTF-8 encoded and every
 * byte is shown as one printable Unicode character (bytes_to_unicode), so any string — emoji, CJK, control
 * characters — becomes a sequence over a fixed 256-symbol alphabet and decodes back losslessly.
 */

/** The GPT-2 pre-tokenization pattern (as used by HF ByteLevel with use_regex), Unicode-aware in JS `u` mode. */
export const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to code points 256+. */
function buildByteMaps(): { byteToChar: string[]; charToByte: Map<string, number> } {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const byteToChar: string[] = new Array(256);
  const charToByte = new Map<string, number>();
  bs.forEach((b, i) => {
    const ch = String.fromCodePoint(cs[i]);
    byteToChar[b] = ch;
    charToByte.set(ch, b);
  });
  return { byteToChar, charToByte };
}

export const { byteToChar: BYTE_TO_CHAR, charToByte: CHAR_TO_BYTE } = buildByteMaps();

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: false });

/** Splits text into GPT-2 pre-tokens (the pieces BPE never merges across). */
export function preTokenize(text: string): string[] {
  return text.match(GPT2_PATTERN) ?? [];
}

/** A pre-token → its byte-level string (one char per UTF-8 byte). */
export function toByteLevel(piece: string): string {
  const bytes = encoder.encode(piece);
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += BYTE_TO_CHAR[bytes[i]];
  return s;
}

/** Byte-level string → text (invalid UTF-8, e.g. a sequence cut mid-character, becomes U+FFFD like HF's lossy decode). */
export function fromByteLevel(s: string): string {
  const bytes: number[] = [];
  for (const ch of s) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b === undefined) {
      // Not a byte-level char (cannot come from our vocab): keep the text as UTF-8.
      for (const x of encoder.encode(ch)) bytes.push(x);
    } else bytes.push(b);
  }
  return decoder.decode(new Uint8Array(bytes));
}
