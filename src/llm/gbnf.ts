/**
 * A small regex → GBNF translator for llama.cpp's `grammar` field (llama.cpp has no regex constraint).
 * It covers the subset our prompts constrain with: literals, escapes (\d \w \s and escaped punctuation),
 * character classes ([0-5], [^,]), groups ((...), (?:...)), alternation and quantifiers (* + ? {n} {n,}
 * {n,m}), with optional ^/$ anchors at the ends. Anything else (look-arounds, back-references, \b, lazy
 * quantifiers) returns undefined so the caller sends no grammar rather than a wrong one.
 */

class Unsupported extends Error {}

type Node =
  | { t: "lit"; s: string }
  | { t: "class"; body: string } // GBNF class text including brackets
  | { t: "seq"; items: Node[] }
  | { t: "alt"; options: Node[] }
  | { t: "rep"; node: Node; min: number; max: number | undefined };

/** GBNF double-quoted literal escaping. */
export function gbnfLiteral(s: string): string {
  let out = "";
  for (const ch of s) {
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else out += ch;
  }
  return `"${out}"`;
}

/**
 * Escapes one character for use inside a GBNF [...] class. llama.cpp's parse_char (src/llama-grammar.cpp)
 * only knows the escapes \x \u \U \t \r \n \\ \" \[ \], so ^ and - are written as hex.
 */
function classChar(ch: string): string {
  if (ch === "]" || ch === "[" || ch === "\\") return "\\" + ch;
  if (ch === "^") return "\\x5E";
  if (ch === "-") return "\\x2D";
  if (ch === "\n") return "\\n";
  if (ch === "\r") return "\\r";
  if (ch === "\t") return "\\t";
  return ch;
}

const CLASS_ESCAPES: Record<string, string> = {
  d: "0-9",
  w: "a-zA-Z0-9_",
  s: " \\t\\n\\r",
};

class Parser {
  i = 0;
  constructor(readonly src: string) {}

  parse(): Node {
    const n = this.alt();
    if (this.i < this.src.length) throw new Unsupported(`unexpected '${this.src[this.i]}'`);
    return n;
  }

  private alt(): Node {
    const options = [this.seq()];
    while (this.src[this.i] === "|") {
      this.i++;
      options.push(this.seq());
    }
    return options.length === 1 ? options[0] : { t: "alt", options };
  }

  private seq(): Node {
    const items: Node[] = [];
    while (this.i < this.src.length && this.src[this.i] !== "|" && this.src[this.i] !== ")") {
      items.push(this.quantified(this.atom()));
    }
    return { t: "seq", items };
  }

  private quantified(node: Node): Node {
    const c = this.src[this.i];
    let min: number;
    let max: number | undefined;
    if (c === "*") [min, max] = [0, undefined];
    else if (c === "+") [min, max] = [1, undefined];
    else if (c === "?") [min, max] = [0, 1];
    else if (c === "{") {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.i));
      if (!m) throw new Unsupported("bad {} quantifier");
      min = Number(m[1]);
      max = m[2] === undefined ? min : m[3] === "" ? undefined : Number(m[3]);
      if (max !== undefined && max < min) throw new Unsupported("bad {} range");
      if (min > 64 || (max ?? 0) > 64) throw new Unsupported("repeat too large");
      this.i += m[0].length - 1;
    } else return node;
    this.i++;
    if (this.src[this.i] === "?" || this.src[this.i] === "+") throw new Unsupported("lazy/possessive quantifier");
    return { t: "rep", node, min, max };
  }

  private atom(): Node {
    const c = this.src[this.i];
    if (c === "(") {
      this.i++;
      if (this.src[this.i] === "?") {
        if (this.src[this.i + 1] !== ":") throw new Unsupported("group flags / look-around");
        this.i += 2;
      }
      const inner = this.alt();
      if (this.src[this.i] !== ")") throw new Unsupported("unclosed group");
      this.i++;
      return inner;
    }
    if (c === "[") return this.charClass();
    if (c === ".") {
      this.i++;
      return { t: "class", body: "[^\\n]" };
    }
    if (c === "\\") {
      const e = this.src[this.i + 1];
      if (e === undefined) throw new Unsupported("trailing backslash");
      this.i += 2;
      if (CLASS_ESCAPES[e]) return { t: "class", body: `[${CLASS_ESCAPES[e]}]` };
      if (e === "n") return { t: "lit", s: "\n" };
      if (e === "t") return { t: "lit", s: "\t" };
      if (/[A-Za-z0-9]/.test(e)) throw new Unsupported(`escape \\${e}`);
      return { t: "lit", s: e };
    }
    if (c === "^" || c === "$") throw new Unsupported("anchor inside pattern");
    if (c === "*" || c === "+" || c === "?" || c === "{") throw new Unsupported("dangling quantifier");
    this.i++;
    return { t: "lit", s: c };
  }

  private charClass(): Node {
    this.i++; // [
    let body = "[";
    if (this.src[this.i] === "^") {
      body += "^";
      this.i++;
    }
    let first = true;
    let afterAtom = false; // a '-' right after a class member (and not before ']') is a range
    while (this.i < this.src.length && (this.src[this.i] !== "]" || first)) {
      first = false;
      const c = this.src[this.i];
      const wasAfterAtom = afterAtom;
      afterAtom = true;
      if (c === "\\") {
        const e = this.src[this.i + 1];
        if (e === undefined) throw new Unsupported("trailing backslash");
        this.i += 2;
        if (CLASS_ESCAPES[e]) {
          body += CLASS_ESCAPES[e];
          afterAtom = false; // \d-x is not a range
        }
        else if (e === "n") body += "\\n";
        else if (e === "t") body += "\\t";
        else if (/[A-Za-z0-9]/.test(e)) throw new Unsupported(`escape \\${e}`);
        else body += classChar(e);
        continue;
      }
      if (c === "-" && wasAfterAtom && this.src[this.i + 1] !== "]") {
        body += "-";
        afterAtom = false;
        this.i++;
        continue;
      }
      if (c === "[") throw new Unsupported("nested class");
      body += classChar(c);
      this.i++;
    }
    if (this.src[this.i] !== "]") throw new Unsupported("unclosed class");
    this.i++;
    return { t: "class", body: body + "]" };
  }
}

function emit(n: Node): string {
  switch (n.t) {
    case "lit":
      return gbnfLiteral(n.s);
    case "class":
      return n.body;
    case "seq": {
      // merge adjacent literals for readability
      const parts: string[] = [];
      let lit = "";
      for (const it of n.items) {
        if (it.t === "lit") lit += it.s;
        else {
          if (lit) parts.push(gbnfLiteral(lit)), (lit = "");
          parts.push(emit(it));
        }
      }
      if (lit) parts.push(gbnfLiteral(lit));
      return parts.length === 0 ? '""' : parts.length === 1 ? parts[0] : `(${parts.join(" ")})`;
    }
    case "alt":
      return `(${n.options.map(emit).join(" | ")})`;
    case "rep": {
      const inner = emit(n.node);
      const atom = /^(\(.*\)|\[.*\]|".*")$/s.test(inner) ? inner : `(${inner})`;
      // Expand bounded repeats into plain GBNF (older llama.cpp builds lack {m,n}).
      const req = Array(n.min).fill(atom);
      if (n.max === undefined) {
        if (n.min === 0) return `${atom}*`;
        req[req.length - 1] = `${atom}+`;
        return req.length === 1 ? req[0] : `(${req.join(" ")})`;
      }
      const opt = Array(n.max - n.min).fill(`${atom}?`);
      const all = [...req, ...opt];
      return all.length === 0 ? '""' : all.length === 1 ? all[0] : `(${all.join(" ")})`;
    }
  }
}

/** `root ::= …` grammar for a full match of `pattern`, or undefined when the pattern is outside the subset. */
export function regexToGbnf(pattern: string): string | undefined {
  let p = pattern;
  if (p.startsWith("^")) p = p.slice(1);
  if (p.endsWith("$") && !p.endsWith("\\$")) p = p.slice(0, -1);
  try {
    return `root ::= ${emit(new Parser(p).parse())}`;
  } catch (e) {
    if (e instanceof Unsupported) return undefined;
    throw e;
  }
}

/** `root ::= "a" | "b"` for a fixed set of answers. */
export function choiceToGbnf(options: string[]): string {
  return `root ::= ${options.map(gbnfLiteral).join(" | ")}`;
}
