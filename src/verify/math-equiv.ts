/**
 * MATH-style answer equivalence: two final answers are equal when their normalized LaTeX strings are
 * equal or both are the same rational number. Normalization removes presentation only (spacing,
 * `\left`/`\right`, `\dfrac`, braces around single tokens, units, degree and percent signs, dollar signs,
 * a leading "x =", thousands separators, trailing zeros); it never evaluates algebra, so a wrong answer
 * is not mistaken for a right one. Same idea as the usual MATH grader (Hendrycks et al.), our own rules.
 */
import { balancedGroup, lastBoxed } from "./boxed.ts";

/** Unit words dropped after a number ("5 inches", "12 square units"). Multi-letter, so not variables. */
const UNIT_WORDS = [
  "units?", "square", "sq\\.?", "cubic", "cm", "mm", "km", "meters?", "metres?", "centimeters?", "millimeters?", "kilometers?",
  "inch(?:es)?", "feet", "foot", "ft", "yards?", "yd", "miles?", "mph", "kph", "km/h", "degrees?", "deg", "radians?",
  "cents?", "dollars?", "euros?", "pounds?", "lbs?", "ounces?", "oz", "grams?", "kg", "kilograms?", "liters?", "litres?", "ml",
  "gallons?", "seconds?", "secs?", "minutes?", "mins?", "hours?", "hrs?", "days?", "weeks?", "months?", "years?",
  "people", "persons?", "students?", "children", "teachers?", "ways", "integers?", "numbers?", "points?", "meals?",
  "values?", "edges?", "tickets?", "handshakes?", "games?", "times", "steps?", "moves?", "outfits?", "boxes",
  "a\\.m\\.", "p\\.m\\.", "am", "pm",
];
const UNIT_TAIL = new RegExp(String.raw`(?<=[\d}).]|\\pi)\s*(?:(?:${UNIT_WORDS.join("|")})\s*)+(?:\^\s*\{?\s*[23]\s*\}?)?\.?\s*$`, "i");
/** `\text{ cm}^2` at the end, after something. */
const TEXT_TAIL = /(?<=\S)\s*\\(?:text|textrm|textnormal|mbox|mathrm)\s*\{[^{}]*\}\s*(?:\^\s*\{?\s*[23]\s*\}?)?\s*$/;
/** Formatting wrappers whose content is kept. */
const WRAPPERS = /\\(?:text|textbf|textit|textrm|textnormal|textsf|texttt|mbox|mathrm|mathbf|mathit|mathsf|mathtt|boldsymbol|operatorname)\s*\{([^{}]*)\}/g;

/** Brings `\frac12`, `\frac1{b}`, `\frac{a}b`, `\sqrt3` to the braced form by reading TeX arguments. */
function braceArguments(s: string): string {
  let out = "";
  let i = 0;
  while (i < s.length) {
    const m = /^\\(frac|dfrac|tfrac|binom|sqrt)(?![A-Za-z])/.exec(s.slice(i));
    if (!m) {
      out += s[i++];
      continue;
    }
    const cmd = m[1] === "dfrac" || m[1] === "tfrac" ? "frac" : m[1];
    i += m[0].length;
    let res = `\\${cmd}`;
    if (cmd === "sqrt" && s[i] === "[") {
      const close = s.indexOf("]", i);
      if (close !== -1) {
        res += s.slice(i, close + 1);
        i = close + 1;
      }
    }
    const nArgs = cmd === "sqrt" ? 1 : 2;
    for (let k = 0; k < nArgs && i < s.length; k++) {
      if (s[i] === "{") {
        const g = balancedGroup(s, i);
        if (!g) break;
        res += `{${braceArguments(g.content)}}`;
        i = g.end;
      } else if (s[i] === "\\") {
        const c = /^\\[A-Za-z]+/.exec(s.slice(i));
        const tok = c ? c[0] : s.slice(i, i + 2);
        res += `{${tok}}`;
        i += tok.length;
      } else {
        res += `{${s[i]}}`;
        i++;
      }
    }
    out += res;
  }
  return out;
}

/**
 * Presentation-free form of a final answer. Applying it twice gives the same string. An answer that
 * contains `\boxed{…}` is reduced to the boxed content first.
 */
export function normalizeMathAnswer(answer: string): string {
  let s = String(answer ?? "").trim();
  if (/\\(?:boxed|fbox)(?![A-Za-z])/.test(s)) s = lastBoxed(s) ?? s;
  // Math delimiters around the whole answer.
  s = s.replace(/^\$+|\$+$/g, "").replace(/^\\\(|\\\)$/g, "").replace(/^\\\[|\\\]$/g, "").trim();
  s = s.replace(/\n/g, " ");
  // Unicode a model may write in plain text.
  s = s.replace(/[−–]/g, "-").replace(/π/g, "\\pi ").replace(/∞/g, "\\infty ").replace(/√/g, "\\sqrt");
  // Sizing and spacing commands.
  s = s.replace(/\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg)(?![A-Za-z])/g, "");
  s = s.replace(/\\(?:displaystyle|textstyle|quad|qquad)(?![A-Za-z])/g, " ").replace(/\\[!,;: ]/g, " ").replace(/~/g, " ");
  s = s.replace(/\\[dt]frac(?![A-Za-z])/g, "\\frac").replace(/\\[dt]binom(?![A-Za-z])/g, "\\binom");
  s = s.replace(/\{,\}/g, ",");
  // Leading approximate/equal signs: "\approx 8.24".
  s = s.replace(/^(?:\\approx|\\sim|=)\s*/, "");
  // Degrees, percent, currency.
  s = s.replace(/\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ(?![A-Za-z])|°|\\degree(?![A-Za-z])/g, "");
  s = s.replace(/\\%|%/g, "").replace(/\\\$|\$/g, "");
  // Units at the end: "\text{ cm}^2", "12 square units".
  for (let k = 0; k < 3; k++) {
    const before = s;
    s = s.replace(TEXT_TAIL, "").replace(UNIT_TAIL, "").trim();
    if (s === before) break;
  }
  // Keep the content of formatting wrappers (`\text{odd}` → odd), innermost first.
  for (let k = 0; k < 5; k++) {
    const next = s.replace(WRAPPERS, "$1");
    if (next === s) break;
    s = next;
  }
  s = s.replace(UNIT_TAIL, "").trim(); // units that were inside the wrapper: \text{5 inches}
  // "12 and 13", "2, 3, and 4", "-2 or -12" → comma lists.
  s = s.replace(/(?<=\S)\s*,?\s*\b(?:and|or)\b\s*(?=\S)/g, ",");
  // Leading "x =", "k=", "\theta =" (a single variable being assigned; equations with more stay as they are).
  const assign = /^\s*(?:[A-Za-z](?:_\{?\w+\}?)?|\\[A-Za-z]+)\s*=\s*(.+)$/.exec(s);
  if (assign && !assign[1].includes("=")) s = assign[1];
  // No whitespace matters from here on.
  s = s.replace(/\s+/g, "");
  s = braceArguments(s);
  // Braces around a single token in exponents/subscripts: x^{2} → x^2.
  s = s.replace(/([\^_])\{([A-Za-z0-9])\}/g, "$1$2");
  // Multiple-choice letters: "(C)" → "C".
  s = s.replace(/^\(([A-Z])\)$/, "$1");
  // Trailing period from prose.
  s = s.replace(/\.+$/, "");
  // ".5" → "0.5"; "5.0" → "5"; "2.50" → "2.5".
  s = s.replace(/(^|[^\d])\.(\d)/g, "$10.$2");
  s = s.replace(/(\d)\.(\d*?)0+(?!\d)/g, (_m, a: string, frac: string) => (frac ? `${a}.${frac}` : a));
  // Thousands separators in a lone number: "1,000" / "85,184" (but not tuples with other group sizes).
  if (/^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$/.test(s)) s = s.replace(/,/g, "");
  // Simple numeric fractions: "3/4" → \frac{3}{4}; sign in front: \frac{-3}{4} → -\frac{3}{4}.
  s = s.replace(/^(-?)(\d+)\/(\d+)$/, "$1\\frac{$2}{$3}");
  s = s.replace(/\\frac\{-(\d+(?:\.\d+)?)\}\{(\d+(?:\.\d+)?)\}/g, "-\\frac{$1}{$2}");
  s = s.replace(/^--/, "");
  return s;
}

/** An exact rational p/q (BigInt), or null. */
interface Rational {
  p: bigint;
  q: bigint;
}

function decimalToRational(t: string): Rational | null {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(t);
  if (!m) return null;
  const frac = m[3] ?? "";
  const p = BigInt(m[2] + frac) * (m[1] ? -1n : 1n);
  return { p, q: 10n ** BigInt(frac.length) };
}

/**
 * The exact value of a normalized numeric answer: integer, decimal, \frac{a}{b} or a/b of those, or a
 * mixed number `2\frac{1}{2}` (= 5/2; MATH writes these in prealgebra answers; proper fractions only).
 */
export function numericValue(normalized: string): Rational | null {
  const d = decimalToRational(normalized);
  if (d) return d;
  const mixed = /^(-?)(\d+)\\frac\{(\d+)\}\{(\d+)\}$/.exec(normalized);
  if (mixed) {
    const [w, a, b] = [BigInt(mixed[2]), BigInt(mixed[3]), BigInt(mixed[4])];
    if (b === 0n || a >= b) return null;
    return { p: (w * b + a) * (mixed[1] ? -1n : 1n), q: b };
  }
  const f = /^(-?)\\frac\{(\d+(?:\.\d+)?)\}\{(\d+(?:\.\d+)?)\}$/.exec(normalized) ?? /^(-?)(\d+(?:\.\d+)?)\/(\d+(?:\.\d+)?)$/.exec(normalized);
  if (!f) return null;
  const a = decimalToRational(f[2])!;
  const b = decimalToRational(f[3])!;
  if (b.p === 0n) return null;
  return { p: a.p * b.q * (f[1] ? -1n : 1n), q: a.q * b.p };
}

/** Whether two final answers are the same: equal normalized strings, or the same exact rational number. */
export function mathAnswersEqual(a: string | null | undefined, b: string | null | undefined): boolean {
  if (a == null || b == null) return false;
  const na = normalizeMathAnswer(a);
  const nb = normalizeMathAnswer(b);
  if (na === "" || nb === "") return false;
  if (na === nb) return true;
  const x = numericValue(na);
  const y = numericValue(nb);
  return x !== null && y !== null && x.p * y.q === y.p * x.q;
}
