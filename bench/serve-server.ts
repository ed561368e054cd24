/**
 * Child process of bench/serve-load.ts: the reward service with a zero-latency in-process judge
 * (answers at once), so the measured latency is what the service itself adds. Prints its URL on stdout.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ScriptedChatModel } from "../src/llm/scripted.ts";
import { serveConfigSchema } from "../src/serve/config.ts";
import { startRewardService } from "../src/serve/index.ts";

const runDir = mkdtempSync(join(tmpdir(), "mpo-serve-bench-"));
const rubric = join(runDir, "initial-rubric.txt");
writeFileSync(rubric, "<rubric><item>Quality: overall quality of the response. Score from 0 to 5.</item></rubric>");
const judge = new ScriptedChatModel((req) => (/integer score/i.test(req.messages[req.messages.length - 1].content) ? "4" : "Clear and on topic."));
const cfg = serveConfigSchema.parse({ runDir, rubric, port: 0, metaEvery: 0, judge: { baseURL: "http://127.0.0.1:9/v1", model: "zero-latency" }, mode: process.env.MODE ?? "per-item" });
const h = await startRewardService(cfg, { judge });
process.stdout.write(h.url + "\n");
process.on("SIGTERM", () => void h.close().then(() => process.exit(0)));
