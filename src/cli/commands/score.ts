/**
 * `mpo score`: score a JSONL file of responses against a rubric with an LLM judge on any
 * OpenAI-compatible server — the junior judge on its own, for checking a rubric or a judge model before
 * training, and for producing the scored rollouts `mpo meta-step` reads. Heavy imports stay inside the
 * action so `mpo --help` stays fast.
 */
import type { Command } from "commander";
import { UserError } from "../../util/errors.ts";

export interface JudgeServerFlags {
  llm: string;
  /** Required for HTTP servers; a gguf: file needs none. */
  model?: string;
  server?: string;
  apiKey?: string;
  cache?: string;
  maxTries?: string;
  timeoutMs?: string;
}

export function intFlag(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v.trim()) || Number(v) < min) throw new UserError(`--${name}: expected an integer ≥ ${min}, got "${v}"`);
  return Number(v);
}

/** A ChatModel for the judge flags; a bad URL or server kind is a UserError naming the flag. */
export async function judgeModelFromFlags(flags: JudgeServerFlags, meter: import("../../llm/usage.ts").UsageMeter) {
  const { serverKinds } = await import("../../llm/config.ts");
  const { createChatModel } = await import("../../llm/openai-client.ts");
  const server = flags.server ?? "generic";
  if (!(serverKinds as readonly string[]).includes(server)) throw new UserError(`--server: expected one of ${serverKinds.join(", ")}, got "${server}"`);
  const gguf = flags.llm.startsWith("gguf:"); // a local GGUF file run in-process (src/llm/gguf-client.ts)
  if (!gguf) {
    let url: URL;
    try {
      url = new URL(flags.llm);
    } catch {
      throw new UserError(`--llm: expected a URL like http://127.0.0.1:8000/v1 or gguf:/path/model.gguf, got "${flags.llm}"`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new UserError(`--llm: expected an http(s) URL or gguf:/path/model.gguf, got "${flags.llm}"`);
    if (!flags.model) throw new UserError("--model is required: the judge model name the server expects");
  }
  return createChatModel(
    {
      baseURL: flags.llm,
      model: flags.model ?? "gguf",
      server: server as (typeof serverKinds)[number],
      apiKey: flags.apiKey,
      cacheDir: flags.cache,
      maxTries: intFlag("max-tries", flags.maxTries, 1),
      timeoutMs: intFlag("timeout-ms", flags.timeoutMs, 1),
    },
    { meter },
  );
}

/** Turns a connection failure into the message a user can act on; other errors pass through. */
export async function explainJudgeFailure(err: unknown, url: string): Promise<never> {
  const { LlmError } = await import("../../llm/errors.ts");
  // Walk the cause chain (JudgeUnavailableError → LlmError → transport error) to the LlmError.
  let cause: unknown = err;
  for (let i = 0; i < 5 && cause && !(cause instanceof LlmError); i++) cause = (cause as { cause?: unknown }).cause;
  if (cause instanceof LlmError && (cause.kind === "connection" || cause.kind === "timeout")) {
    throw new UserError(`cannot reach judge server at ${url}: ${cause.message}`);
  }
  if (cause instanceof LlmError) throw new UserError(`judge server at ${url} failed: ${cause.message}`);
  throw err;
}

/** Loads a rubric file; a RubricVersion JSON keeps its version number. */
export async function loadRubricVersion(path: string) {
  const { loadRubricFile } = await import("../../rubric/format.ts");
  const { readFileSync } = await import("node:fs");
  const rubric = loadRubricFile(path);
  let version = 0;
  if (/\.json$/i.test(path)) {
    const v = JSON.parse(readFileSync(path, "utf8"));
    if (v && typeof v.version === "number") version = v.version;
  }
  const rv: import("../../rubric/types.ts").RubricVersion = {
    version,
    parent: null,
    step: 0,
    author: { kind: "user", note: path },
    createdAt: new Date().toISOString(),
    analyses: [],
    rubric,
  };
  return rv;
}

interface ScoreFlags extends JudgeServerFlags {
  rubric: string;
  input: string;
  mode: string;
  taskDescription?: string;
  out?: string;
  concurrency: string;
  templates?: string;
  fallback?: string;
  protocol?: string;
  judgeSeesReference?: boolean;
}

export function register(program: Command): void {
  program
    .command("score")
    .description("score JSONL responses ({prompt, response, reference?, taskDescription?}) against a rubric with an LLM judge")
    .requiredOption("--rubric <FILE>", "rubric file (<rubric><item>…</item></rubric> text, or JSON)")
    .requiredOption("--input <FILE>", "JSONL input, one {prompt, response, reference?, taskDescription?} per line")
    .requiredOption("--llm <URL>", "OpenAI-compatible base URL of the judge, e.g. http://127.0.0.1:8000/v1, or gguf:/path/model.gguf (in-process llama.cpp)")
    .option("--model <NAME>", "judge model name as the server knows it (not needed for gguf:)")
    .option("--server <KIND>", "server kind for constrained decoding: vllm, sglang, llamacpp, ollama, openai, generic", "generic")
    .option("--mode <MODE>", "per-item (one conversation per response, paper protocol) or single-call (one JSON reply)", "per-item")
    .option("--task-description <TEXT>", "task description for records without taskDescription")
    .option("--protocol <NAME>", "judge protocol profile: paper (default) | hardened (docs/paper-protocol.md)", "paper")
    .option("--judge-sees-reference", "show the judge each record's reference (paper profile: hidden)")
    .option("--out <FILE>", "write scored JSONL here (default: stdout)")
    .option("--concurrency <N>", "responses scored at once", "8")
    .option("--cache <DIR>", "on-disk reply cache (deterministic calls only)")
    .option("--templates <DIR>", "directory overriding prompt templates (same relative names as prompts/)")
    .option("--fallback <N>", "score for unreadable judge replies (default: the profile's; paper 0, hardened the item's minimum)")
    .option("--api-key <KEY>", "API key (default $OPENAI_API_KEY, else EMPTY)")
    .option("--max-tries <N>", "tries per judge call before giving up")
    .option("--timeout-ms <MS>", "timeout of one try")
    .action(async (flags: ScoreFlags) => {
      if (flags.mode !== "per-item" && flags.mode !== "single-call") throw new UserError(`--mode: expected per-item or single-call, got "${flags.mode}"`);
      const concurrency = intFlag("concurrency", flags.concurrency, 1)!;
      let fallback: number | undefined;
      if (flags.fallback !== undefined) {
        fallback = Number(flags.fallback);
        if (!Number.isFinite(fallback)) throw new UserError(`--fallback: expected a number, got "${flags.fallback}"`);
      }
      const { readJsonlObjects, toScoreInputs } = await import("../../judge/jsonl-input.ts");
      const { RubricJudge } = await import("../../judge/rubric-judge.ts");
      const { loadTemplates } = await import("../../judge/templates.ts");
      const { UsageMeter } = await import("../../llm/usage.ts");
      const { writeFileAtomic } = await import("../../util/atomic.ts");

      const version = await loadRubricVersion(flags.rubric);
      const records = readJsonlObjects(flags.input);
      const inputs = toScoreInputs(flags.input, records, flags.taskDescription);
      const templates = loadTemplates(flags.templates);
      const meter = new UsageMeter();
      const model = await judgeModelFromFlags(flags, meter);
      const { resolveProtocol, withOverrides } = await import("../../judge/protocol.ts");
      const base = resolveProtocol(flags.protocol);
      const protocol = flags.judgeSeesReference ? withOverrides(base, { junior: { seesReference: true } }) : base;
      const judge = new RubricJudge({ model, mode: flags.mode, templates, concurrency, protocol, ...(fallback !== undefined ? { fallback } : {}) });

      // One response first: a dead server is reported once, clearly, before a batch of failures.
      const first = (await judge.scoreBatchSettled(inputs.slice(0, 1), version))[0];
      if (!first.ok) await explainJudgeFailure(first.error, flags.llm);

      let bar: import("cli-progress").SingleBar | undefined;
      if (process.stderr.isTTY) {
        const { SingleBar, Presets } = await import("cli-progress");
        bar = new SingleBar({ stream: process.stderr, format: "scoring [{bar}] {value}/{total} | {eta_formatted} left", hideCursor: true }, Presets.shades_classic);
        bar.start(inputs.length, 1);
      }
      const rest = await judge.scoreBatchSettled(inputs.slice(1), version, { concurrency, onDone: () => bar?.increment() });
      bar?.stop();
      const outcomes = [first, ...rest];

      const lines = records.map((r, i) => {
        const o = outcomes[i];
        return JSON.stringify(o.ok ? { ...r.value, evaluation: o.evaluation } : { ...r.value, evaluation: null, error: o.error.message });
      });
      const text = lines.join("\n") + "\n";
      if (flags.out) writeFileAtomic(flags.out, text);
      else process.stdout.write(text);

      const evs = outcomes.flatMap((o) => (o.ok ? [o.evaluation] : []));
      const failed = outcomes.length - evs.length;
      const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
      const flagCounts = new Map<string, number>();
      for (const e of evs) for (const f of e.flags) flagCounts.set(f, (flagCounts.get(f) ?? 0) + 1);
      const u = UsageMeter.total(meter.snapshot());
      const summary = [
        `scored ${evs.length}/${outcomes.length} responses with rubric v${version.version} (${version.rubric.items.length} items, ${flags.mode})` +
          (failed ? `; ${failed} unavailable (judge failed)` : ""),
        evs.length ? `mean total ${mean(evs.map((e) => e.total)).toFixed(3)}, mean normalized ${mean(evs.map((e) => e.normalized)).toFixed(3)}` : "no scores",
        `flags: ${flagCounts.size ? [...flagCounts].map(([f, n]) => `${f}×${n}`).join(", ") : "none"}`,
        `judge: ${u.calls} calls (${u.failures} failed), ${u.promptTokens} prompt + ${u.completionTokens} completion tokens`,
      ].join("\n");
      (flags.out ? process.stdout : process.stderr).write(summary + (flags.out ? `\nwrote ${flags.out}\n` : "\n"));
      if (failed) process.exitCode = 1;
    });
}
