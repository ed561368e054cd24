/**
 * Benchmark: what one scored response costs in each judge mode. Scores N responses against a K-item
 * rubric through real HTTP against the fake OpenAI-compatible server (tokens ≈ chars/4, as the fake
 * server reports them) and prints calls and prompt/completion tokens per response for per-item and
 * single-call mode. Per-item mode re-sends the growing conversation for every call, so its prompt tokens
 * grow ~quadratically in K — exactly what server-side prefix caching recovers.
 *
 *   npm run bench:judge -- [N] [K]      (defaults: N=20, K=5)
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
