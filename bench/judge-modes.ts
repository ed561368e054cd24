/**
 * Benchmark: what one scored response costs in each judge mode. Scores N responses against a K-item
 * rubric through real HTTP against the fake OpenAI-compatible server (tokens ≈ chars/4, as the fake
 * server reports them) and prints calls and prompt/completion tokens per response for per-item and
 * single-call mode. Per-item mode re-sends the growing conversation for every call, so its prompt tokens
 * grow ~quadratically in K — exactly what server-side prefix caching recovers.
 *
 * Then the in-process GGUF judge (src/llm/gguf-client.ts, llama.cpp through node-llama-cpp) on a small
 * model — the shipped sandbox policy exported to GGUF F16, or MPO_BENCH_GGUF=/path/model.gguf — beside the
 * HTTP path to the SAME model: the fake server answers every request by calling that in-process model, so
 * the two rows differ only by the HTTP client/server round trip. Rows: calls/s and generated tokens/s.
 * Skipped when node-llama-cpp is not installed. MPO_BENCH_GGUF_THREADS (default 1) sets llama.cpp threads.
 *
 *   npm run bench:judge -- [N] [K]      (defaults: N=20, K=5; the GGUF rows use min(N, 8) × min(K, 3))
 */
import { RubricJudge, type JudgeMode } from "../src/judge/rubric-judge.ts";
import type { ScoreInput } from "../src/judge/types.ts";
import { createChatModel } from "../src/llm/openai-client.ts";
import { UsageMeter } from "../src/llm/usage.ts";
import type { RubricVersion } from "../src/rubric/types.ts";
import { startFakeOpenAI } from "../test/helpers/fake-openai-server.ts";
import { fakeJudge } from "../test/judge-fake-replies.ts";

const N = Number(process.argv[2] ?? 20);
const K = Number(process.argv[3] ?? 5);
if (!(Number.isInteger(N) && N > 0 && Number.isInteger(K) && K > 0)) {
  console.error("usage: npm run bench:judge -- [N responses] [K items]");
  process.exit(2);
}

const version: RubricVersion = {
  version: 0,
  parent: null,
  step: 0,
  author: { kind: "initial" },
  createdAt: new Date().toISOString(),
  analyses: [],
  rubric: {
    items: Array.from({ length: K }, (_, i) => ({
      name: `criterion-${i + 1}`,
      text: `Criterion ${i + 1}: judge aspect ${i + 1} of the essay. Score from 0 to 5.\n- 5: excellent, with specific evidence.\n- 3: adequate.\n- 0: absent or off-topic.`,
      min: 0,
      max: 5,
    })),
  },
};

const essay = (i: number) =>
  Array.from({ length: 40 }, (_, s) => `Sentence ${s + 1} of essay ${i} argues that bike lanes reduce traffic and improve health.`).join(" ");
const inputs: ScoreInput[] = Array.from({ length: N }, (_, i) => ({
  taskDescription: "Write a persuasive essay of about 300 words.",
  prompt: "Should cities build protected bike lanes?",
  response: essay(i),
}));

const server = await startFakeOpenAI({ reply: fakeJudge() });
try {
  console.log(`judge modes: ${N} responses × ${K} rubric items (fake server, tokens ≈ chars/4)\n`);
  console.log("mode         calls/resp  prompt tok/resp  completion tok/resp  wall s");
  for (const mode of ["per-item", "single-call"] as JudgeMode[]) {
    const meter = new UsageMeter();
    const judge = new RubricJudge({ model: createChatModel({ baseURL: server.url, model: "judge", server: "vllm", maxTries: 1 }, { meter }), mode });
    const t0 = performance.now();
    await judge.scoreBatch(inputs, version, { concurrency: 8 });
    const secs = (performance.now() - t0) / 1000;
    const u = meter.snapshot().rm!;
    console.log(
      `${mode.padEnd(12)} ${(u.calls / N).toFixed(1).padStart(10)}  ${(u.promptTokens / N).toFixed(0).padStart(15)}  ${(u.completionTokens / N).toFixed(0).padStart(19)}  ${secs.toFixed(2).padStart(6)}`,
    );
  }
} finally {
  await server.close();
}

// ---------------------------------------------------------------- in-process GGUF judge vs HTTP to the same model
let nlcAvailable = true;
try {
  await import("node-llama-cpp");
} catch {
  nlcAvailable = false;
  console.log("\nGGUF judge: skipped (node-llama-cpp is not installed)");
}
if (nlcAvailable) {
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const { exportGguf } = await import("../src/engine/io/gguf-export.ts");
  const { GgufChatModel, disposeGgufRuntimes } = await import("../src/llm/gguf-client.ts");
  const { regexToGbnf } = await import("../src/llm/gbnf.ts");
  const { scoreRegex } = await import("../src/judge/rubric-judge.ts");
  const tmp = mkdtempSync(join(tmpdir(), "mpo-bench-gguf-"));
  let path = process.env.MPO_BENCH_GGUF;
  if (!path) {
    path = join(tmp, "sandbox-policy-f16.gguf");
    exportGguf(join(import.meta.dirname, "..", "assets", "sandbox-policy"), path, { dtype: "f16" });
  }
  const threads = Number(process.env.MPO_BENCH_GGUF_THREADS ?? 1);
  const n = Math.min(N, 8), k = Math.min(K, 3);
  const v2: RubricVersion = { ...version, rubric: { items: version.rubric.items.slice(0, k) } };
  const shortInputs = inputs.slice(0, n).map((x) => ({ ...x, response: x.response.slice(0, 600) }));
  const url = `gguf:${path}?ctx=4096&seqs=4&threads=${threads}`;
  const local = new GgufChatModel({ baseURL: url, model: "gguf", maxConcurrency: 4 });
  const info = await local.load();
  // The HTTP side: llama.cpp-server request fields (json_schema / grammar) mapped back to our constraint.
  const grammars = new Map<string, { kind: "regex"; pattern: string }>();
  for (const it of v2.rubric.items) grammars.set(regexToGbnf(scoreRegex(it.min, it.max))!, { kind: "regex", pattern: scoreRegex(it.min, it.max) });
  const http = await startFakeOpenAI({
    reply: async ({ body, messages }) => {
      const constraint = body.json_schema ? { kind: "json" as const, name: "x", schema: body.json_schema } : body.grammar ? grammars.get(body.grammar) : undefined;
      const r = await local.chat({ messages: messages as any, maxTokens: body.max_tokens, temperature: body.temperature, seed: body.seed, stop: body.stop, constraint });
      return { text: r.text, usage: { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens }, finishReason: r.finishReason };
    },
  });
  try {
    console.log(`\nGGUF judge: ${path.split("/").pop()} (${info.arch}, ${info.gpu || "CPU"}, ${threads} thread(s), ${info.sequences} sequences), ${n} responses × ${k} items, temperature 0`);
    console.log("path                    mode         calls/s  gen tok/s  prompt tok/s  wall s");
    for (const mode of ["per-item", "single-call"] as JudgeMode[]) {
      for (const [label, model] of [
        ["in-process (gguf:)", (meter: UsageMeter) => new GgufChatModel({ baseURL: url, model: "gguf", maxConcurrency: 4 }, { meter })],
        ["HTTP (same model)", (meter: UsageMeter) => createChatModel({ baseURL: http.url, model: "gguf", server: "llamacpp", maxTries: 1, timeoutMs: 600_000 }, { meter })],
      ] as const) {
        const meter = new UsageMeter();
        const judge = new RubricJudge({ model: model(meter), mode, temperature: 0 });
        const t0 = performance.now();
        await judge.scoreBatch(shortInputs, v2, { concurrency: 4 });
        const secs = (performance.now() - t0) / 1000;
        const u = meter.snapshot().rm!;
        console.log(
          `${label.padEnd(22)}  ${mode.padEnd(12)} ${(u.calls / secs).toFixed(2).padStart(7)}  ${(u.completionTokens / secs).toFixed(1).padStart(9)}  ${(u.promptTokens / secs).toFixed(0).padStart(12)}  ${secs.toFixed(2).padStart(6)}`,
        );
      }
    }
  } finally {
    await http.close();
    await disposeGgufRuntimes();
    rmSync(tmp, { recursive: true, force: true });
  }
}
