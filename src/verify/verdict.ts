/**
 * The verdict of an ethics answer: the policy ends with `<verdict>RIGHT</verdict>` or
 * `<verdict>WRONG</verdict>` (was the author in the right?). Accuracy is read from the last such tag, so
 * a model that first quotes the format and then answers is judged on its answer.
 */

export type Verdict = "RIGHT" | "WRONG";

/**
 * The last `<verdict>…</verdict>` (any case, whitespace or markdown emphasis inside tolerated) read as
 * RIGHT or WRONG; null when there is no tag, or the last tag holds anything else. A final unclosed
 * `<verdict>RIGHT` at the very end (a reply cut at the stop sequence) also counts.
 */
export function extractVerdict(text: string): Verdict | null {
  if (!text) return null;
  const closed = [...text.matchAll(/<\s*verdict\s*>([\s\S]*?)<\s*\/\s*verdict\s*>/gi)];
  const lastClosedEnd = closed.length ? closed[closed.length - 1].index! + closed[closed.length - 1][0].length : -1;
  // An unclosed tag after the last closed one wins (it is the later answer).
  const tail = /<\s*verdict\s*>\s*[*_"'`]*\s*(right|wrong)\s*[*_"'`.!]*\s*$/i.exec(text);
  if (tail && tail.index >= lastClosedEnd) return tail[1].toUpperCase() as Verdict;
  if (closed.length === 0) return null;
  const inner = closed[closed.length - 1][1].replace(/[*_"'`.!\s]/g, "").toUpperCase();
  return inner === "RIGHT" || inner === "WRONG" ? inner : null;
}
