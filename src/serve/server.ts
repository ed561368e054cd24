/**
 * `mpo serve`: MPO rewards over HTTP for engines that train real models (OpenRLHF, veRL, TRL).
 *
 *   POST /get_reward    OpenRLHF's remote reward protocol (openrlhf/utils/agent.py posts
 *                       {query, prompts, labels}; openrlhf/cli/serve_rm.py answers {rewards}); we answer
 *                       {rewards, scores, extra_logs} with lists as long as `query` (empty → empty lists).
 *   POST /v1/score      native batch API: items {prompt, response, reference?, group?, metadata?}.
 *   GET  /v1/rubric     current version; GET /v1/rubrics: history with lineage; POST /v1/meta-step: run now.
 *   GET  /healthz, GET /metrics (Prometheus text).
 * Judge outages answer 503 with the reason — never a made-up score. Bad input answers 400 naming the field.
 */
import { PROFILES } from "../judge/protocol.ts";
import { createHash, timingSafeEqual } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { z } from "zod";
import { JudgeUnavailableError } from "../judge/types.ts";
import type { ServeConfig } from "./config.ts";
import { ServiceMetrics } from "./metrics.ts";
import { RewardService, type ScoreItem } from "./service.ts";
import { SplitError, splitQuery } from "./split.ts";

export interface ServerHandle {
  app: FastifyInstance;
  service: RewardService;
  metrics: ServiceMetrics;
  url: string;
  /** Graceful stop: refuse new requests, let in-flight ones finish, persist state. */
  close(): Promise<void>;
}

function badRequest(reply: FastifyReply, message: string) {
  return reply.code(400).send({ error: { message, type: "invalid_request" } });
}

function zodMessage(err: z.ZodError, root: string): string {
  const iss = err.issues[0];
  return `field '${[root, ...iss.path.map(String)].filter(Boolean).join(".")}': ${iss.message}`;
}

export async function startServer(cfg: ServeConfig, service: RewardService, metrics = new ServiceMetrics()): Promise<ServerHandle> {
  const L = cfg.limits;
  const text = z.string().max(L.fieldChars, `at most ${L.fieldChars} characters`);
  const openrlhfBody = z.object({
    query: z.array(text).max(L.batchSize, `at most ${L.batchSize} items per request`),
    prompts: z.array(text).optional(),
    labels: z.array(z.union([text, z.null()])).optional(),
  });
  const scoreBody = z
    .object({
      items: z
        .array(
          z
            .object({ prompt: text, response: text, reference: text.optional(), group: z.string().max(200).optional(), metadata: z.record(z.string(), z.unknown()).optional() })
            .strict(),
        )
        .max(L.batchSize, `at most ${L.batchSize} items per request`),
    })
    .strict();

  const app = Fastify({ logger: false, bodyLimit: L.bodyBytes });
  const tokenDigest = cfg.token ? createHash("sha256").update(cfg.token).digest() : null;

  app.addHook("onRequest", async (req: FastifyRequest, reply: FastifyReply) => {
    (req as { startedAt?: bigint }).startedAt = process.hrtime.bigint();
    if (!tokenDigest || req.url === "/healthz") return;
    const h = req.headers.authorization ?? "";
    const given = createHash("sha256").update(h.startsWith("Bearer ") ? h.slice(7) : "").digest();
    // Compare fixed-length digests in constant time so the token's length and prefix do not leak.
    if (!timingSafeEqual(given, tokenDigest)) {
      metrics.errors.inc({ kind: "unauthorized" });
      return reply.code(401).send({ error: { message: "missing or wrong bearer token", type: "unauthorized" } });
    }
  });
  app.addHook("onResponse", async (req: FastifyRequest, reply: FastifyReply) => {
    const route = req.routeOptions.url ?? "unknown";
    metrics.requests.inc({ route, status: String(reply.statusCode) });
    const t0 = (req as { startedAt?: bigint }).startedAt;
    if (t0 !== undefined) metrics.latency.observe({ route }, Number(process.hrtime.bigint() - t0) / 1e9);
  });
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status >= 500) metrics.errors.inc({ kind: "internal" });
    const message = err.code === "FST_ERR_CTP_BODY_TOO_LARGE" ? `request body larger than ${L.bodyBytes} bytes` : err.message;
    reply.code(status).send({ error: { message, type: status === 413 ? "too_large" : status < 500 ? "invalid_request" : "internal" } });
  });

  /** Scores with a per-request time limit; maps judge outages to 503 and the limit to 504. */
  async function scoreOrFail(items: ScoreItem[], reply: FastifyReply) {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), L.requestTimeoutMs);
    try {
      const scored = await service.score(items, ac.signal);
      metrics.samples.inc(items.length);
      return scored;
    } catch (err) {
      if (ac.signal.aborted) {
        metrics.errors.inc({ kind: "timeout" });
        reply.code(504).send({ error: { message: `scoring took longer than ${L.requestTimeoutMs} ms`, type: "timeout" } });
        return null;
      }
      if (err instanceof JudgeUnavailableError) {
        metrics.errors.inc({ kind: "judge_unavailable" });
        reply.code(503).send({ error: { message: `judge unavailable: ${err.message}`, type: "judge_unavailable" } });
        return null;
      }
      throw err;
    } finally {
      clearTimeout(timer);
      metrics.addUsage(service.takeUsage());
      metrics.rubricVersion.set(service.rubric.version);
    }
  }

  app.post("/get_reward", async (req, reply) => {
    const parsed = openrlhfBody.safeParse(req.body);
    if (!parsed.success) return badRequest(reply, zodMessage(parsed.error, ""));
    const { query, prompts, labels } = parsed.data;
    if (prompts && prompts.length !== query.length && prompts.length !== 0) return badRequest(reply, `field 'prompts': expected ${query.length} items (as many as 'query'), got ${prompts.length}`);
    const items: ScoreItem[] = [];
    for (let i = 0; i < query.length; i++) {
      try {
        const { prompt, response } = splitQuery(query[i], cfg.split, prompts?.[i]);
        const label = labels?.[i];
        items.push({ prompt, response, reference: label ?? undefined });
      } catch (err) {
        if (err instanceof SplitError) return badRequest(reply, `field 'query.${i}': ${err.message}`);
        throw err;
      }
    }
    const scored = await scoreOrFail(items, reply);
    if (!scored) return reply;
    return {
      rewards: scored.map((s) => ((cfg.rewardScale ?? PROFILES[cfg.protocol].service.rewardScale) === "raw" ? s.score : s.normalized)),
      scores: scored.map((s) => s.normalized),
      extra_logs: { rubric_version: scored.map((s) => s.rubricVersion), judge_flagged: scored.map((s) => (s.flags.length || s.items.some((i) => i.flags.length) ? 1 : 0)) },
    };
  });

  app.post("/v1/score", async (req, reply) => {
    const parsed = scoreBody.safeParse(req.body);
    if (!parsed.success) return badRequest(reply, zodMessage(parsed.error, ""));
    const scored = await scoreOrFail(parsed.data.items, reply);
    if (!scored) return reply;
    return { rubricVersion: service.rubric.version, results: scored };
  });

  app.get("/v1/rubric", async () => service.rubric);
  app.get("/v1/rubrics", async () => ({ versions: service.store.list() }));
  app.post("/v1/meta-step", async (_req, reply) => {
    const r = await service.metaStepNow();
    if (!r) return reply.code(409).send({ error: { message: "no scored rollouts since the last meta step", type: "nothing_to_do" } });
    metrics.metaSteps.inc({ result: r.ok ? "ok" : "failed" });
    // The meta step's calls went through the service's meter like every judge call: take them from there (once).
    metrics.addUsage(service.takeUsage());
    metrics.rubricVersion.set(service.rubric.version);
    return { ok: r.ok, summary: r.summary, version: service.rubric.version, log: r.logPath, error: r.error };
  });
  app.get("/healthz", async () => ({ ok: true, rubricVersion: service.rubric.version, metaRunning: service.metaRunning, ...service.stats }));
  app.get("/metrics", async (_req, reply) => {
    metrics.addUsage(service.takeUsage()); // e.g. a background meta step's calls since the last request
    metrics.rubricVersion.set(service.rubric.version);
    reply.header("content-type", metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  const address = await app.listen({ host: cfg.host, port: cfg.port });
  const url = address.replace("[::1]", "127.0.0.1");
  let closing: Promise<void> | null = null;
  return {
    app,
    service,
    metrics,
    url,
    close: () =>
      (closing ??= (async () => {
        await app.close(); // stops accepting; resolves after in-flight requests finish
        await service.close();
      })()),
  };
}
