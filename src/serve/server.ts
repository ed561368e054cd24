/**
 * `mpo serve`: MPO rewards over HTTP for engines that train real models (OpenRLHF, veRL, TRL).
 *
 *   POST /get_reward    OpenRLHF's remote reward protocol (openrlhf/utils/agent.py posts
 *                       {query, prompts, labels}; openrlhf/cli/serve_rm.py answers {rewards}); we answer
 *                       {rewards, scores, extra_logs} with lists as long as `query` (empty → empty lists).
 *   POST /v1/score      native batch API: items {prompt, response, reference?, group?, metadata?}.
 *   GET  /v1/rubric     current version; GET /v1/rubrics: history with lineage; POST /v1/meta-step: run now.
 *   GET  /healthz (200 healthy / 503 with the problems), GET /metrics (Prometheus text).
 * When honest rewards cannot be given (judge down past the deadline, unreadable replies, misconfigured judge,
 * failed log write) the answer is 503 with the reason — never a made-up score. Bad input answers 400 naming
 * the field. Secure by default: Host must name a bound address (DNS rebinding), JSON routes take only
 * application/json (no cross-site "simple" POSTs), state-changing routes need the token or an explicit
 * --allow-unauthenticated-admin, a non-loopback bind needs a token or --insecure.
 */
import { PROFILES } from "../judge/protocol.ts";
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { hostname, networkInterfaces } from "node:os";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { z } from "zod";
import type { ServeConfig } from "./config.ts";
import { ServiceMetrics } from "./metrics.ts";
import { RewardService, ServiceUnavailableError, type ScoreItem } from "./service.ts";
import { SplitError, splitQuery } from "./split.ts";

export interface ServerHandle {
  app: FastifyInstance;
  service: RewardService;
  metrics: ServiceMetrics;
  url: string;
  /** The address actually bound, e.g. "127.0.0.1:5000" or "0.0.0.0:5000". */
  boundAddress: string;
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

/** Loopback names: binding there is reachable from this machine only. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Thrown before binding when the config would expose the service unsafely. */
export class UnsafeConfigError extends Error {}

/** Host header values (without port) that name this server: bound addresses, plus configured names. */
function allowedHostNames(host: string, bound: AddressInfo, extra: string[]): Set<string> {
  const names = new Set<string>(extra.map((h) => h.toLowerCase()));
  const add = (a: string) => names.add(a.toLowerCase().replace(/^\[|\]$/g, ""));
  add(host);
  add(bound.address);
  if (isLoopbackHost(bound.address) || isLoopbackHost(host)) ["localhost", "127.0.0.1", "::1"].forEach(add);
  if (bound.address === "0.0.0.0" || bound.address === "::") {
    // Every local interface address and the machine's name: what clients on the network use to reach us.
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) add(a.address);
    add(hostname());
    ["localhost", "127.0.0.1", "::1"].forEach(add);
  }
  return names;
}

function hostOf(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(1, h.indexOf("]") > 0 ? h.indexOf("]") : undefined);
  const colon = h.lastIndexOf(":");
  return colon > 0 && h.indexOf(":") === colon ? h.slice(0, colon) : h;
}

export async function startServer(cfg: ServeConfig, service: RewardService, metrics = new ServiceMetrics()): Promise<ServerHandle> {
  const L = cfg.limits;
  if (!cfg.token && !isLoopbackHost(cfg.host) && !cfg.insecure) {
    throw new UnsafeConfigError(
      `refusing to listen on ${cfg.host} without a token: anyone who can reach it could read and change the run; set --token (and give it to the trainer), or pass --insecure to accept that`,
    );
  }
  const text = z.string().max(L.fieldChars, `at most ${L.fieldChars} characters`);
  const openrlhfBody = z.object({
    query: z.array(text).max(L.batchSize, `at most ${L.batchSize} items per request`),
    prompts: z.array(text).optional(),
    // OpenRLHF passes the dataset's label as is: text, number, list, dict or None.
    labels: z.array(z.unknown()).optional(),
  });
  const scoreBody = z
    .object({
      items: z
        .array(
          z
            .object({ prompt: text, response: text, reference: z.unknown().optional(), group: z.string().max(200).optional(), metadata: z.record(z.string(), z.unknown()).optional() })
            .strict(),
        )
        .max(L.batchSize, `at most ${L.batchSize} items per request`),
    })
    .strict();

  const app = Fastify({
    logger: false,
    bodyLimit: L.bodyBytes,
    // Node's own limits on receiving a request (headers and body): a slow trickle gets 408 and its socket
    // is closed, so trickling clients cannot hold file descriptors. Checked every ≤ 1 s.
    serverFactory: (handler) =>
      createServer(
        {
          requestTimeout: L.bodyTimeoutMs,
          headersTimeout: L.bodyTimeoutMs,
          connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(L.bodyTimeoutMs / 4))),
        },
        handler,
      ),
  });
  // Fastify parses text/plain by default; a cross-site form or fetch may send it without a CORS preflight.
  app.removeContentTypeParser("text/plain");
  const tokenDigest = cfg.token ? createHash("sha256").update(cfg.token).digest() : null;
  let allowedHosts = new Set<string>();

  const refuse = (reply: FastifyReply, status: number, type: string, message: string) => {
    metrics.errors.inc({ kind: type });
    return reply.code(status).send({ error: { message, type } });
  };

  app.addHook("onRequest", async (req: FastifyRequest, reply: FastifyReply) => {
    (req as { startedAt?: bigint }).startedAt = process.hrtime.bigint();
    // DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example.
    const host = req.headers.host;
    if (!host || !allowedHosts.has(hostOf(host))) {
      return refuse(reply, 421, "wrong_host", `Host ${JSON.stringify(host ?? "")} is not an address of this server; add it to allowedHosts in the service config if clients use that name`);
    }
    if (req.method === "POST") {
      const ct = (req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
      if (ct !== "application/json") return refuse(reply, 415, "unsupported_media_type", `content-type must be application/json (got ${JSON.stringify(ct || "none")})`);
    }
    if (!tokenDigest || req.url === "/healthz") return;
    const h = req.headers.authorization ?? "";
    const given = createHash("sha256").update(h.startsWith("Bearer ") ? h.slice(7) : "").digest();
    // Compare fixed-length digests in constant time so the token's length and prefix do not leak.
    if (!timingSafeEqual(given, tokenDigest)) return refuse(reply, 401, "unauthorized", "missing or wrong bearer token");
  });
  app.addHook("onResponse", async (req: FastifyRequest, reply: FastifyReply) => {
    const route = req.routeOptions.url ?? "unknown";
    metrics.requests.inc({ route, status: String(reply.statusCode) });
    const t0 = (req as { startedAt?: bigint }).startedAt;
    if (t0 !== undefined) metrics.latency.observe({ route }, Number(process.hrtime.bigint() - t0) / 1e9);
  });
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status >= 500) {
      metrics.errors.inc({ kind: "internal" });
      process.stderr.write(`mpo serve: internal error: ${err.stack ?? err.message}\n`);
    }
    const message = err.code === "FST_ERR_CTP_BODY_TOO_LARGE" ? `request body larger than ${L.bodyBytes} bytes` : status >= 500 ? "internal error (logged by the service)" : err.message;
    reply.code(status).send({ error: { message, type: status === 413 ? "too_large" : status === 415 ? "unsupported_media_type" : status < 500 ? "invalid_request" : "internal" } });
  });

  /** Scores with a hard per-request limit; maps "no honest reward now" to 503 (with the reason) and the limit to 504. */
  async function scoreOrFail(items: ScoreItem[], reply: FastifyReply) {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), L.requestTimeoutMs);
    try {
      const scored = await service.score(items, ac.signal);
      metrics.samples.inc(items.length);
      return scored;
    } catch (err) {
      if (err instanceof ServiceUnavailableError) {
        metrics.errors.inc({ kind: err.type });
        // Retry-After: OpenRLHF ignores it (fixed 1 s), other clients may honour it.
        reply.code(503).header("retry-after", "1").send({ error: { message: err.message, type: err.type } });
        return null;
      }
      if (ac.signal.aborted) {
        metrics.errors.inc({ kind: "timeout" });
        reply.code(504).send({ error: { message: `scoring took longer than ${L.requestTimeoutMs} ms`, type: "timeout" } });
        return null;
      }
      throw err;
    } finally {
      clearTimeout(timer);
      metrics.addUsage(service.takeUsage());
      metrics.rubricVersion.set(service.rubric.version);
    }
  }

  const sentinel = cfg.unreadable.sentinel;
  app.post("/get_reward", async (req, reply) => {
    const parsed = openrlhfBody.safeParse(req.body);
    if (!parsed.success) return badRequest(reply, zodMessage(parsed.error, ""));
    const { query, prompts, labels } = parsed.data;
    if (prompts && prompts.length !== query.length && prompts.length !== 0) return badRequest(reply, `field 'prompts': expected ${query.length} items (as many as 'query'), got ${prompts.length}`);
    if (labels && labels.length !== query.length && labels.length !== 0) return badRequest(reply, `field 'labels': expected ${query.length} items (as many as 'query'), got ${labels.length}`);
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
    // An unreadable sample (policy "sentinel") carries the documented sentinel, flagged in extra_logs.
    const scale = cfg.rewardScale ?? PROFILES[cfg.protocol].service.rewardScale;
    const reward = (s: (typeof scored)[number]) => (s.unreadable ? sentinel : scale === "raw" ? s.score! : s.normalized!);
    return {
      rewards: scored.map(reward),
      scores: scored.map((s) => (s.unreadable ? sentinel : s.normalized!)),
      extra_logs: {
        rubric_version: scored.map((s) => s.rubricVersion),
        judge_flagged: scored.map((s) => (s.flags.length || s.items.some((i) => i.flags.length) ? 1 : 0)),
        judge_unreadable: scored.map((s) => (s.unreadable ? 1 : 0)),
      },
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
    if (!tokenDigest && !cfg.allowUnauthenticatedAdmin) {
      return refuse(reply, 403, "admin_disabled", "POST /v1/meta-step changes the rubric: start the service with --token (and send it), or with --allow-unauthenticated-admin");
    }
    let r;
    try {
      r = await service.metaStepNow();
    } catch (err) {
      if (err instanceof ServiceUnavailableError) return refuse(reply.header("retry-after", "1"), 503, err.type, err.message);
      throw err;
    }
    if (!r) return reply.code(409).send({ error: { message: "no scored rollouts since the last meta step", type: "nothing_to_do" } });
    metrics.metaSteps.inc({ result: r.ok ? "ok" : "failed" });
    // The meta step's calls went through the service's meter like every judge call: take them from there (once).
    metrics.addUsage(service.takeUsage());
    metrics.rubricVersion.set(service.rubric.version);
    return { ok: r.ok, summary: r.summary, version: service.rubric.version, log: r.logPath, error: r.error };
  });
  app.get("/healthz", async (_req, reply) => {
    const h = service.health();
    return reply.code(h.ok ? 200 : 503).send({ ok: h.ok, problems: h.problems, judge: h.judge, writes: h.writes, rubricVersion: service.rubric.version, metaRunning: service.metaRunning, ...service.stats });
  });
  app.get("/metrics", async (_req, reply) => {
    metrics.addUsage(service.takeUsage()); // e.g. a background meta step's calls since the last request
    metrics.rubricVersion.set(service.rubric.version);
    reply.header("content-type", metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  await app.listen({ host: cfg.host, port: cfg.port });
  const bound = app.server.address() as AddressInfo;
  allowedHosts = allowedHostNames(cfg.host, bound, cfg.allowedHosts);
  const shown = bound.family === "IPv6" ? `[${bound.address}]` : bound.address;
  // Clients of a wildcard bind still connect to a concrete address; loopback works for local tests.
  const urlHost = bound.address === "0.0.0.0" ? "127.0.0.1" : bound.address === "::" ? "[::1]" : shown;
  const url = `http://${urlHost}:${bound.port}`;
  service.markRunning();
  let closing: Promise<void> | null = null;
  return {
    app,
    service,
    metrics,
    url,
    boundAddress: `${shown}:${bound.port}`,
    close: () =>
      (closing ??= (async () => {
        service.beginShutdown();
        await app.close(); // stops accepting; resolves after in-flight requests finish
        await service.close();
      })()),
  };
}
