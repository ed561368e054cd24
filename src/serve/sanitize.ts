/**
 * Judge error text is forwarded to callers (503 bodies), /healthz and logs. Servers and proxies sometimes
 * echo the request, Authorization header included, in their error body, so every such text passes
 * through here: credentials are replaced, control characters dropped, and the length bounded.
 */

const PATTERNS: [RegExp, string][] = [
  [/(authorization|proxy-authorization|x-api-key|api[-_]?key|access[-_]?token|token)(["']?\s*[:=]\s*["']?)(bearer\s+|basic\s+)?[^\s"',;}]+/gi, "$1$2[redacted]"],
  [/\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}/gi, "$1 [redacted]"],
  [/\bsk-[A-Za-z0-9_-]{8,}/g, "[redacted]"],
  [/\bhf_[A-Za-z0-9]{8,}/g, "[redacted]"],
];

/** `text` without credentials (known `secrets` and common token shapes), control characters or excess length. */
export function sanitizeErrorText(text: string, secrets: readonly (string | undefined)[] = [], maxChars = 400): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join("[redacted]");
  for (const [re, to] of PATTERNS) out = out.replace(re, to);
  out = out.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, " ");
  return out.length > maxChars ? `${out.slice(0, maxChars)}… [${out.length - maxChars} more characters]` : out;
}
