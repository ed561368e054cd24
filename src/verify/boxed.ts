/**
 * The final answer of a math solution: the content of its last `\boxed{…}` (MATH convention; braces
 * balanced so `\boxed{\frac{1}{2}}` gives `\frac{1}{2}`). Also reads `\fbox{…}` and the brace-less
 * `\boxed 5`. The exact-answer reward and the math accuracy metric both rest on this.
 */

/** Content of a balanced `{…}` group starting at `open` (which must be "{"), or null if unbalanced. */
export function balancedGroup(text: string, open: number): { content: string; end: number } | null {
  if (text[open] !== "{") return null;
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === "\\") {
      i++; // escaped character (\{ or \}) does not count
      continue;
    }
    if (c === "{") depth++;
    else if (c === "}") {
      depth--;
      if (depth === 0) return { content: text.slice(open + 1, i), end: i + 1 };
    }
  }
  return null;
}

/** All well-formed boxed answers in order of appearance (trimmed). */
export function allBoxed(text: string): string[] {
  const out: string[] = [];
  const re = /\\(?:boxed|fbox)(?![A-Za-z])/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    let i = m.index + m[0].length;
    while (i < text.length && /\s/.test(text[i])) i++;
    if (text[i] === "{") {
      const g = balancedGroup(text, i);
      if (g) {
        out.push(g.content.trim());
        re.lastIndex = g.end;
      }
    } else if (i > m.index + m[0].length) {
      // `\boxed 5` (TeX reads one token): take the run up to whitespace, `$` or a closing delimiter.
      const tok = /^[^\s$}\\]+|^\\[A-Za-z]+/.exec(text.slice(i));
      if (tok) out.push(tok[0].trim());
    }
  }
  return out;
}

/** The last well-formed `\boxed{…}` / `\fbox{…}` / `\boxed x` content, trimmed; null if there is none. */
export function lastBoxed(text: string): string | null {
  const all = allBoxed(text);
  return all.length ? all[all.length - 1] : null;
}

/**
 * The first `\boxed{…}` content, as the reference implementation reads an answer (it finds the first
 * "\boxed{" and takes the brace-balanced content; an unclosed box runs to the end of the text). Not
 * trimmed, like the reference; null when there is no "\boxed{".
 */
export function firstBoxed(text: string): string | null {
  const start = text.indexOf("\\boxed{");
  if (start < 0) return null;
  let depth = 1;
  let i = start + "\\boxed{".length;
  const from = i;
  for (; i < text.length; i++) {
    const c = text[i];
    if (c === "{") depth++;
    else if (c === "}" && --depth === 0) break;
  }
  return text.slice(from, i);
}

/** Which box is the answer: the first (the reference) or the last (the usual MATH convention). */
export type AnswerBox = "first" | "last";

export function boxedAnswer(text: string, which: AnswerBox): string | null {
  return which === "first" ? firstBoxed(text) : lastBoxed(text);
}
