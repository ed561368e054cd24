/** Wires a validated service config to real (or injected) judge models and starts the HTTP server. */
import { createChatModel } from "../llm/openai-client.ts";
import type { ChatModel } from "../llm/types.ts";
import type { MetaStepResult } from "../meta/meta-step.ts";
import type { ServeConfig } from "./config.ts";
import { ServiceMetrics } from "./metrics.ts";
import { startServer, type ServerHandle } from "./server.ts";
import { RewardService } from "./service.ts";

export { serveConfigSchema, type ServeConfig } from "./config.ts";
export { splitQuery, PRESETS } from "./split.ts";
export { RewardService } from "./service.ts";
export type { ServerHandle } from "./server.ts";

export async function startRewardService(
  cfg: ServeConfig,
  models: { judge?: ChatModel; metaJudge?: ChatModel; onMeta?: (r: MetaStepResult) => void } = {},
): Promise<ServerHandle> {
  const metrics = new ServiceMetrics();
  const judge = models.judge ?? createChatModel(cfg.judge);
  const metaJudge = models.metaJudge ?? (cfg.metaJudge ? createChatModel(cfg.metaJudge) : undefined);
  const service = new RewardService({
    runDir: cfg.runDir,
    rubricFile: cfg.rubric,
    taskDescription: cfg.taskDescription,
    judge,
    metaJudge,
    mode: cfg.mode,
    protocol: cfg.protocol,
    ...(cfg.judgeSeesReference !== undefined ? { judgeSeesReference: cfg.judgeSeesReference } : {}),
    metaEvery: cfg.metaEvery,
    metaSamples: cfg.metaSamples,
    prescreen: cfg.prescreen,
    seed: cfg.seed,
    concurrency: cfg.concurrency,
    templatesDir: cfg.templates,
    onMeta: (r) => {
      metrics.metaSteps.inc({ result: r.ok ? "ok" : "failed" });
      metrics.rubricVersion.set(service.rubric.version);
      process.stderr.write(`mpo serve: ${r.summary}\n`);
      models.onMeta?.(r);
    },
  });
  return startServer(cfg, service, metrics);
}
