/** Tokenizer public API: byte-level BPE training/encoding (ours) and HF tokenizer.json loading. */
export { BpeTokenizer, DEFAULT_SPECIAL_TOKENS, TokenizerFormatError, type EncodeOptions, type DecodeOptions } from "./tokenizer.ts";
export { trainBpe, countPreTokens, type TrainOptions, type TrainedBpe } from "./train.ts";
export { HfTokenizer, loadTokenizer, loadTokenizerFile, type TextTokenizer } from "./hf.ts";
export { preTokenize, toByteLevel, fromByteLevel, GPT2_PATTERN } from "./bytelevel.ts";
