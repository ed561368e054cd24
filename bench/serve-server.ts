/**
 * Child process of bench/serve-load.ts: the reward service at --meta-every 0 with an in-process judge.
 * JUDGE=zero (default): answers at once, so the measured latency is what the service itself adds.
 * JUDGE=slow: each call takes U(1, 5) s × SCALE and fails with probability FAULT (default 0.02), like a
 * loaded judge server with transient errors; the service's outage backoff is scaled by SCALE too.
 * Prints its URL on stdout.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ChatModel } from "../src/llm/types.ts";
import { serveConfigSchema } from "../src/serve/config.ts";
import { startRewardService } from "../src/serve/index.ts";

const runDir = mkdtempSync(join(tmpdir(), "mpo-serve-bench-"));
const rubric = join(runDir, "initial-rubric.txt");
writeFileSync(rubric, "<rubric><item>Quality: overall quality of the response. Score from 0 to 5.</item></rubric>");
const slow = process.env.JUDGE === "slow";
const scale = Number(process.env.SCALE ?? "1");
const fault = Number(process.env.FAULT ?? "0.02");
const answer = (last: string) => (/integer score/i.test(last) ? "4" : "Clear and on topic.");
// A bare ChatModel (not ScriptedChatModel, which keeps every request it saw): the RSS measured is the service's.
const judge: ChatModel = {
  id: slow ? "slow-faulty" : "zero-latency",
  async chat(req) {
    if (slow) {
      await new Promise((r) => setTimeout(r, (1000 + Math.random() * 4000) * scale));
      if (Math.random() < fault) throw new Error("injected judge fault (HTTP 500)");
    }
    const text = answer(req.messages[req.messages.length - 1].content);
    return { text, promptTokens: 100, completionTokens: 4 };
  },
};
const cfg = serveConfigSchema.parse({
  runDir: join(runDir, "run"),
  rubric,
  port: 0,
  metaEvery: 0,
  judge: { baseURL: "http://127.0.0.1:9/v1", model: slow ? "slow-faulty" : "zero-latency" },
  mode: process.env.MODE ?? "per-item",
  outage: { deadlineMs: Math.round(170_000 * scale), backoffBaseMs: 1000 * scale, backoffMaxMs: 15_000 * scale, queueMax: 8192 },
});
const h = await startRewardService(cfg, { judge, log: () => {} });
process.stdout.write(h.url + "\n");
process.on("SIGTERM", () => void h.close().then(() => process.exit(0)));
