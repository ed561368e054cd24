/**
 * A task's format rule, checked before any judge call (the reference's ethics rule,
 * `rm_ethical_reasoning.py:81-95`): a response without `<tag>VALUE</tag>` (VALUE one of the rule's values,
 * exact case, as the reference's pattern), or with fewer than `minWords` whitespace-separated words once
 * every such tag is removed, gets the rule's score and is not judged. Returns null when the response passes.
 */
import type { FormatRule } from "../tasks/types.ts";
import type { Evaluation } from "./types.ts";

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

export function checkFormatRule(response: string, rule: FormatRule, rubricVersion: number): Evaluation | null {
  const tag = new RegExp(`<${escape(rule.tag)}>(?:${rule.values.map(escape).join("|")})</${escape(rule.tag)}>`, "g");
  const fail = (why: string, flag: string): Evaluation => ({
    items: [{ name: "format-rule", score: rule.score, min: rule.score, max: rule.score, rationale: why, raw: "", flags: [flag] }],
    total: rule.score,
    normalized: 0,
    rubricVersion,
    mode: "verifier",
    flags: ["format-rule", flag],
    raw: [],
  });
  if (!tag.test(response)) return fail(`no <${rule.tag}> tag with one of ${rule.values.join(", ")}`, `missing-${rule.tag}`);
  const rest = response.replace(tag, "").trim();
  const words = rest === "" ? 0 : rest.split(/\s+/).length;
  if (words < rule.minWords) return fail(`reasoning of ${words} words, fewer than ${rule.minWords}`, "too-short");
  return null;
}
