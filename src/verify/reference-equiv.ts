/**
 * Answer matching as the reference implementation does it (minnesotanlp/mpo, `rm_math_reasoning.py`
 * `is_equiv`, after Hendrycks et al.'s MATH grader): both answers lose their spaces, then go through a
 * fixed list of string rewrites, and must then be identical. Nothing is evaluated, so "0.50" ≠ "1/2"
 * here while the lenient matcher (./math-equiv.ts) accepts it. Our own implementation of the same rules:
 *
 *   drop newlines and `\!`; `\\` → `\`; tfrac/dfrac → frac; drop `\left` `\right`; drop `^{\circ}`
 *   `^\circ` `\$`; cut a unit introduced by `\text{ ` (exactly one occurrence, else the rewrite fails);
 *   drop `\%`; " ." → " 0.", "{." → "{0.", a leading "." gets a 0; "x=…" with a left side of at most
 *   two characters keeps the right side; `\sqrt3` → `\sqrt{3}`; drop spaces; `\frac12` → `\frac{1}{2}`
 *   (`\frac1{2}` too); exactly "0.5" → `\frac{1}{2}`; "a/b" of two integers → `\frac{a}{b}`.
 * When a rewrite fails (as the reference's raises), the raw strings are compared instead.
 */

class RewriteFailed extends Error {}

/** `\sqrt3x` → `\sqrt{3}x`: a single character right after \sqrt gets braces. */
function braceSqrt(s: string): string {
  if (!s.includes("\\sqrt")) return s;
  const [head, ...parts] = s.split("\\sqrt");
  return head + parts.map((p) => (p === "" ? (() => { throw new RewriteFailed("empty \\sqrt"); })() : p[0] === "{" ? `\\sqrt${p}` : `\\sqrt{${p[0]}}${p.slice(1)}`)).join("");
}

/** `\frac12` → `\frac{1}{2}`, `\frac1{2}` → `\frac{1}{2}`; braced fractions stay. A fraction with fewer than two characters after it leaves the whole string unchanged. */
function braceFracs(s: string): string {
  const [head, ...parts] = s.split("\\frac");
  let out = head;
  for (const p of parts) {
    out += "\\frac";
    if (p[0] === "{") {
      out += p;
      continue;
    }
    if (p.length < 2) return s;
    const [a, b, rest] = [p[0], p[1], p.slice(2)];
    out += b === "{" ? `{${a}}${b}${rest}` : `{${a}}{${b}}${rest}`;
  }
  return out;
}

/** "3/4" (integers written exactly so) → `\frac{3}{4}`. */
function slashToFrac(s: string): string {
  const parts = s.split("/");
  if (parts.length !== 2) return s;
  const [a, b] = parts;
  if (!/^-?\d+$/.test(a) || !/^-?\d+$/.test(b)) return s;
  if (`${Number(a)}/${Number(b)}` !== s) return s;
  return `\\frac{${Number(a)}}{${Number(b)}}`;
}

/** The reference's normal form of an answer; throws RewriteFailed where the reference's would raise. */
export function referenceNormalize(answer: string): string {
  let s = answer.replace(/\n/g, "").replace(/\\!/g, "").replace(/\\\\/g, "\\");
  s = s.replace(/tfrac/g, "frac").replace(/dfrac/g, "frac");
  s = s.replace(/\\left/g, "").replace(/\\right/g, "");
  s = s.replace(/\^\{\\circ\}/g, "").replace(/\^\\circ/g, "");
  s = s.replace(/\\\$/g, "");
  if (s.includes("\\text{ ")) {
    const pieces = s.split("\\text{ ");
    if (pieces.length !== 2) throw new RewriteFailed("more than one unit");
    s = pieces[0];
  }
  s = s.replace(/\\%/g, "");
  s = s.replace(/ \./g, " 0.").replace(/\{\./g, "{0.");
  if (s.length === 0) return s;
  if (s[0] === ".") s = `0${s}`;
  const eq = s.split("=");
  if (eq.length === 2 && eq[0].length <= 2) s = eq[1];
  s = braceSqrt(s);
  s = s.replace(/ /g, "");
  s = braceFracs(s);
  if (s === "0.5") s = "\\frac{1}{2}";
  return slashToFrac(s);
}

/** The reference's answer comparison (spaces removed first, as its answer check does). */
export function referenceAnswersEqual(a: string | null | undefined, b: string | null | undefined): boolean {
  if (a == null || b == null) return false;
  const x = a.replace(/ /g, "").trim();
  const y = b.replace(/ /g, "").trim();
  try {
    return referenceNormalize(x) === referenceNormalize(y);
  } catch (err) {
    if (err instanceof RewriteFailed) return x === y;
    throw err;
  }
}
