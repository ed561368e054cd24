/**
 * What is the simulated judge being asked? The one place that recognises the project's requests.
 *
 * Recognition is by the prompt template files themselves, not by sentences copied into code: every template
 * under prompts/ (or a `--templates` overlay, the same way the judges load them) is turned into a pattern
 * whose literal text must match and whose `{{placeholders}}` capture the values. So when a template's wording
 * changes, or a protocol profile adds new template files, the simulator still knows which template a message
 * was rendered from and what was filled in; a message that matches no template is reported as unrecognised
 * (and answered with an error, never with plausible text).
 */
import { loadTemplates, type Templates } from "../../judge/templates.ts";

export interface TemplateMatch {
  /** Template name, e.g. "rm/item-rationale.md". */
  name: string;
  /** Placeholder values as rendered (first occurrence of each). */
  values: Record<string, string>;
}

interface Compiled {
  name: string;
  re: RegExp;
  groups: string[];
  /** Literal characters in the template: the more, the more specific the match. */
  literal: number;
}

const TOKEN_RE = /\{\{#\s*([A-Za-z_]\w*)\s*\}\}|\{\{\/\s*([A-Za-z_]\w*)\s*\}\}|\{\{\s*([A-Za-z_]\w*)\s*\}\}/g;
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** A template as an anchored pattern: literals exact (whitespace runs flexible, also absent: trimmed renders), placeholders captured, sections optional. */
function compile(name: string, text: string): Compiled {
  const groups: string[] = [];
  let src = "";
  let literal = 0;
  let last = 0;
  const lit = (s: string) => {
    literal += s.replace(/\s+/g, "").length;
    return s
      .split(/(\s+)/)
      .map((part) => (/^\s+$/.test(part) ? "\\s*" : escapeRe(part)))
      .join("");
  };
  for (const m of text.matchAll(TOKEN_RE)) {
    src += lit(text.slice(last, m.index));
    if (m[1]) src += "(?:";
    else if (m[2]) src += ")?";
    else {
      groups.push(m[3]);
      src += "([\\s\\S]*?)";
    }
    last = m.index! + m[0].length;
  }
  src += lit(text.slice(last).trimEnd());
  return { name, re: new RegExp(`^\\s*${src}\\s*$`), groups, literal };
}

export class Recognizer {
  private readonly compiled: Compiled[];

  constructor(templates: Templates = loadTemplates()) {
    this.compiled = templates
      .names()
      .filter((n) => n.endsWith(".md"))
      .map((n) => compile(n, templates.raw(n)))
      // Most specific first: a template that is mostly one placeholder must not shadow a precise one.
      .sort((a, b) => b.literal - a.literal);
  }

  /** The template a message was rendered from, or null. */
  match(content: string): TemplateMatch | null {
    for (const c of this.compiled) {
      if (c.literal < 8) continue; // a bare "{{x}}" template would match anything
      const m = c.re.exec(content);
      if (!m) continue;
      const values: Record<string, string> = {};
      c.groups.forEach((g, i) => {
        if (values[g] === undefined && m[i + 1] !== undefined) values[g] = m[i + 1];
      });
      return { name: c.name, values };
    }
    return null;
  }
}

/** A short, one-line description of an unrecognised request for the error reply. */
export function describeRequest(messages: { role: string; content: string }[]): string {
  const users = messages.filter((m) => m.role === "user");
  const last = users[users.length - 1]?.content ?? "";
  const head = last.replace(/\s+/g, " ").trim().slice(0, 120);
  return `${messages.length} message(s), ${users.length} from the user; last user message begins: "${head}${last.length > 120 ? "…" : ""}"`;
}
