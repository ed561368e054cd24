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
import { loadTemplates, templatePattern, matchTemplate, type TemplatePattern, type Templates } from "../../judge/templates.ts";

export interface TemplateMatch {
  /** Template name, e.g. "rm/item-rationale.md". */
  name: string;
  /** Placeholder values as rendered (first occurrence of each). */
  values: Record<string, string>;
}

interface Compiled extends TemplatePattern {
  name: string;
}

const compile = (name: string, text: string): Compiled => ({ name, ...templatePattern(text) });

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
      const values = matchTemplate(c, content);
      if (values) return { name: c.name, values };
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
