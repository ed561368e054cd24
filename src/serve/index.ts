/** Wires a validated service config to real (or injected) judge models and starts the HTTP server. */
import { createChatModel } from "../llm/openai-client.ts";
import type { ChatModel } from "../llm/types.ts";
import type { MetaStepResult } from "../meta/meta-step.ts";
import type { ServeConfig } from "./config.ts";
import { ServiceMetrics } from "./metrics.ts";
import { startServer, type ServerHandle } from "./server.ts";
import { RewardService } from "./service.ts";
import type { TaskDefinition } from "../tasks/types.ts";
import { UserError } from "../util/errors.ts";

export { serveConfigSchema, type ServeConfig } from "./config.ts";
export { splitQuery, PRESETS, markersFromChatTemplate } from "./split.ts";
export { resolveSplit } from "./policy-template.ts";
export { RewardService, ServiceUnavailableError } from "./service.ts";
export type { ServerHandle } from "./server.ts";

export async function startRewardService(
  cfg: ServeConfig,
  models: {
    judge?: ChatModel;
    metaJudge?: ChatModel;
    constrainedJudge?: ChatModel;
    onMeta?: (r: MetaStepResult) => void;
    /** Rollout-log writer (tests inject ENOSPC/EMFILE). */
    append?: (path: string, text: string) => void;
    /** Operator log lines (default: stderr). */
    log?: (line: string) => void;
  } = {},
): Promise<ServerHandle> {
  // The policy's chat template (--policy / --chat-template) decides the split before anything starts.
  const { resolveSplit } = await import("./policy-template.ts");
  const split = await resolveSplit(cfg);
  if (split.note) (models.log ?? ((l: string) => process.stderr.write(`mpo serve: ${l}\n`)))(split.note);
  cfg = { ...cfg, split: split.split };
  // The task: judge view and rules as `mpo train --task` applies them; its initial rubric unless one is given.
  let task: TaskDefinition | undefined;
  if (cfg.task) {
    const { resolveTask } = await import("../rl/tasks.ts");
    task = await resolveTask(cfg.task);
  }
  const rubricFile = cfg.rubric ?? (task?.reward.kind === "rubric" ? task.reward.initialRubric : undefined);
  if (!rubricFile) throw new UserError(`rubric: task ${cfg.task} has no initial rubric; give one with --rubric FILE`);
  const metrics = new ServiceMetrics();
  const judge = models.judge ?? createChatModel(cfg.judge);
  const metaJudge = models.metaJudge ?? (cfg.metaJudge ? createChatModel(cfg.metaJudge) : undefined);
  // Last re-ask of an unreadable sample: the same endpoint with constrained decoding forced on — only when
  // the user had switched it off and the server kind has constraint fields (generic servers have none).
  const constrainedJudge =
    models.constrainedJudge ?? (!models.judge && !cfg.judge.constrained && cfg.judge.server !== "generic" ? createChatModel({ ...cfg.judge, constrained: true }) : undefined);
  const secrets = [cfg.token, cfg.judge.apiKey, cfg.metaJudge?.apiKey, process.env.OPENAI_API_KEY].filter((s): s is string => !!s);
  const service = new RewardService({
    runDir: cfg.runDir,
    rubricFile,
    ...(task ? { task } : {}),
    taskDescription: cfg.taskDescription,
    judge,
    metaJudge,
    mode: cfg.mode,
    protocol: cfg.protocol,
    ...(cfg.judgeSeesReference !== undefined ? { judgeSeesReference: cfg.judgeSeesReference } : {}),
    metaEvery: cfg.metaEvery,
    metaSchedule: cfg.metaSchedule,
    adaptive: cfg.adaptive,
    guard: (cfg.rubricGuard ?? cfg.metaSchedule === "adaptive") ? cfg.guard : null,
    metaSamples: cfg.metaSamples,
    prescreen: cfg.prescreen,
    seed: cfg.seed,
    concurrency: cfg.concurrency,
    templatesDir: cfg.templates,
    constrainedJudge,
    outage: cfg.outage,
    unreadable: cfg.unreadable,
    maxReplyBytes: cfg.judge.maxReplyBytes,
    metaWindowCap: cfg.metaWindowCap,
    secrets,
    append: models.append,
    log: models.log,
    onMeta: (r) => {
      metrics.metaSteps.inc({ result: r.ok ? "ok" : "failed" });
      metrics.rubricVersion.set(service.rubric.version);
      process.stderr.write(`mpo serve: ${r.summary}\n`);
      models.onMeta?.(r);
    },
  });
  try {
    return await startServer(cfg, service, metrics);
  } catch (err) {
    await service.close(); // frees the run directory; nothing was marked running
    throw err;
  }
}
