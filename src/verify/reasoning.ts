/**
 * Minimal-reasoning check of the math reward: an answer whose rationale is shorter than a few dozen words
 * gets no credit even when its boxed answer is right, so the policy cannot learn to emit bare answers.
 */

/** Whitespace-separated tokens that contain at least one letter or digit (stray "$" or "=" do not count). */
export function wordCount(text: string): number {
  if (!text) return 0;
  let n = 0;
  for (const tok of text.split(/\s+/)) if (/[\p{L}\p{N}]/u.test(tok)) n++;
  return n;
}

/** True when `text` has fewer than `minWords` words (default 30, as in the paper's math reward). */
export function isTooShort(text: string, minWords = 30): boolean {
  return wordCount(text) < minWords;
}
