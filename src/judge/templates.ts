/**
 * Prompt templates for the junior judge (RM) and the senior judge (MRM). Prompts are files under
 * `prompts/` so users can tune wording per task without touching code: `loadTemplates(dir)` overlays
 * every file found in `dir` (same relative name, e.g. `rm/system.md`) on the built-in set.
 *
 * Syntax (deliberately tiny, no logic): `{{name}}` inserts a value; `{{#name}}…{{/name}}` keeps the
 * enclosed text only when `name` has a non-empty value. Values are inserted verbatim in one pass, so a
 * response that itself contains `{{…}}` is never expanded. A placeholder without a value is an error
 * naming it — a silently empty prompt would make the judge grade nothing.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { UserError } from "../util/errors.ts";

/** The built-in template directory (`<repo>/prompts`). */
export const DEFAULT_TEMPLATE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "prompts");

export type TemplateValues = Record<string, string | number | undefined | null>;

export class TemplateError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = "TemplateError";
  }
}

const SECTION_RE = /\{\{#\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}([\s\S]*?)\{\{\/\s*\1\s*\}\}/g;
const PLACEHOLDER_RE = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

function present(v: TemplateValues[string]): boolean {
  return v !== undefined && v !== null && String(v) !== "";
}

/** Renders one template text. `name` is only used in error messages. */
export function renderTemplate(text: string, values: TemplateValues, name = "template"): string {
  const withSections = text.replace(SECTION_RE, (_m, key: string, body: string) => (present(values[key]) ? body : ""));
  const missing = new Set<string>();
  const out = withSections.replace(PLACEHOLDER_RE, (_m, key: string) => {
    const v = values[key];
    if (v === undefined || v === null) {
      missing.add(key);
      return "";
    }
    return String(v);
  });
  if (missing.size > 0) {
    throw new TemplateError(`prompt template ${name}: no value for placeholder ${[...missing].map((k) => `{{${k}}}`).join(", ")}`);
  }
  return out;
}

/** A template as an anchored pattern (see templatePattern). */
export interface TemplatePattern {
  re: RegExp;
  /** Placeholder name of each capture group, in order. */
  groups: string[];
  /** Literal characters in the template: the more, the more specific the match. */
  literal: number;
}

const PATTERN_TOKEN_RE = /\{\{#\s*([A-Za-z_]\w*)\s*\}\}|\{\{\/\s*([A-Za-z_]\w*)\s*\}\}|\{\{\s*([A-Za-z_]\w*)\s*\}\}/g;
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * The inverse of renderTemplate: a pattern whose literal text must match (whitespace runs flexible, also
 * absent: trimmed renders), whose {{placeholders}} capture the values, and whose {{#x}}…{{/x}} sections are
 * optional. Used to tell which template a text was rendered from and with what (the simulated judge, and the
 * reward service recovering a task record from the policy prompt it receives).
 */
export function templatePattern(text: string, opts: { whitespace?: "flexible" | "required" } = {}): TemplatePattern {
  // "required": a whitespace run of the template must be there, a line break as a line break, which pins lazy
  // captures between placeholders (e.g. "Title: {{title}}\n{{text}}") to the rendered line structure.
  const ws = (run: string) => (opts.whitespace !== "required" ? "\\s*" : run.includes("\n") ? "[^\\S\\n]*\\n\\s*" : "[^\\S\\n]+");
  const groups: string[] = [];
  let src = "";
  let literal = 0;
  let last = 0;
  const lit = (s: string) => {
    literal += s.replace(/\s+/g, "").length;
    return s
      .split(/(\s+)/)
      .map((part) => (/^\s+$/.test(part) ? ws(part) : escapeRe(part)))
      .join("");
  };
  for (const m of text.matchAll(PATTERN_TOKEN_RE)) {
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
  return { re: new RegExp(`^\\s*${src}\\s*$`), groups, literal };
}

/** The placeholder values `text` was rendered with from `pattern` (first occurrence of each), or null. */
export function matchTemplate(pattern: TemplatePattern, text: string): Record<string, string> | null {
  const m = pattern.re.exec(text);
  if (!m) return null;
  const values: Record<string, string> = {};
  pattern.groups.forEach((g, i) => {
    if (values[g] === undefined && m[i + 1] !== undefined) values[g] = m[i + 1];
  });
  return values;
}

/** Names of the placeholders a template uses (section names included). */
export function templatePlaceholders(text: string): string[] {
  const names = new Set<string>();
  for (const m of text.matchAll(/\{\{[#/]?\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g)) names.add(m[1]);
  return [...names];
}

export class Templates {
  constructor(
    private readonly files: ReadonlyMap<string, string>,
    /** For each name, where its text came from (built-in or override path). */
    readonly sources: ReadonlyMap<string, string>,
  ) {}

  names(): string[] {
    return [...this.files.keys()].sort();
  }

  has(name: string): boolean {
    return this.files.has(name);
  }

  raw(name: string): string {
    const t = this.files.get(name);
    if (t === undefined) throw new TemplateError(`prompt template not found: ${name} (known: ${this.names().join(", ")})`);
    return t;
  }

  /** Renders `name` (e.g. "rm/item-score.md"); trailing whitespace trimmed. */
  render(name: string, values: TemplateValues): string {
    return renderTemplate(this.raw(name), values, this.sources.get(name) ?? name).trimEnd();
  }

  /** A copy with some templates replaced by literal texts (tests, library users). */
  with(overrides: Record<string, string>): Templates {
    const files = new Map(this.files);
    const sources = new Map(this.sources);
    for (const [k, v] of Object.entries(overrides)) {
      files.set(k, v);
      sources.set(k, `(inline ${k})`);
    }
    return new Templates(files, sources);
  }
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const p = join(dir, entry);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

function readDir(dir: string, files: Map<string, string>, sources: Map<string, string>): void {
  for (const p of walk(dir)) {
    const rel = relative(dir, p).split(sep).join("/");
    files.set(rel, readFileSync(p, "utf8"));
    sources.set(rel, p);
  }
}

let defaultCache: Templates | undefined;

/**
 * The built-in templates, with every file in `overrideDir` (if given) replacing the built-in file of the
 * same relative name. An override dir that does not exist is a UserError (a typo must not silently fall
 * back to the defaults).
 */
export function loadTemplates(overrideDir?: string): Templates {
  if (!overrideDir && defaultCache) return defaultCache;
  const files = new Map<string, string>();
  const sources = new Map<string, string>();
  readDir(DEFAULT_TEMPLATE_DIR, files, sources);
  if (overrideDir) {
    if (!existsSync(overrideDir) || !statSync(overrideDir).isDirectory()) {
      throw new UserError(`prompt template directory not found: ${overrideDir}`);
    }
    readDir(overrideDir, files, sources);
  }
  const t = new Templates(files, sources);
  if (!overrideDir) defaultCache = t;
  return t;
}
