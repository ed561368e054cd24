/**
 * The dashboard's HTTP server: a JSON API over a runs directory plus the static single-page app. Read-only;
 * binds to 127.0.0.1 unless told otherwise, because run logs contain prompts and model outputs. Live
 * updates go out as server-sent events fed by RunWatcher. Front-end libraries are served from
 * node_modules so the page works offline (no CDN).
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { promises as fsp, realpathSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { UserError } from "../util/errors.ts";
import { PathRejected, resolveRunId } from "./paths.ts";
import {
  discoverRuns,
  listMeta,
  queryRollouts,
  readMeta,
  readMetrics,
  readRubrics,
  RolloutIndex,
  rolloutStepStats,
  summarizeRun,
  unreadableRun,
  type RolloutQuery,
} from "./runs.ts";
import { detectSignals, type StepPoint } from "../meta/signals.ts";
import { RunWatcher, type ChangeEvent } from "./watch.ts";

export interface DashboardOptions {
  runsDir: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  pollMs?: number;
  /** A "running" run with no file changes for this long is shown as stale. */
  staleMs?: number;
}

export interface Dashboard {
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

const STATIC_DIR = join(dirname(fileURLToPath(import.meta.url)), "static");
const MAX_LIMIT = 500;

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
};

function vendorFiles(): Record<string, string> {
  const require = createRequire(import.meta.url);
  const uplotDir = dirname(require.resolve("uplot"));
  return {
    "uplot.js": join(uplotDir, "uPlot.esm.js"),
    "uplot.css": join(uplotDir, "uPlot.min.css"),
  };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function parseNum(q: Record<string, string | undefined>, field: string, opts: { int?: boolean; min?: number; max?: number } = {}): number | undefined {
  const raw = q[field];
  if (raw === undefined || raw === "") return undefined;
  const v = Number(raw);
  if (!Number.isFinite(v) || (opts.int && !Number.isInteger(v)) || (opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
    const want = `${opts.int ? "an integer" : "a number"}${opts.min !== undefined ? ` ≥ ${opts.min}` : ""}${opts.max !== undefined ? ` ≤ ${opts.max}` : ""}`;
    throw new HttpError(400, `query parameter '${field}': expected ${want}, got '${raw}'`);
  }
  return v;
}

/** Numeric leaves of an eval record (one level of nesting: {oracle: {mean}} → "oracle.mean"). */
function numericFields(r: Record<string, unknown>, skip: Set<string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(r)) {
    if (skip.has(k)) continue;
    if (typeof v === "number" && Number.isFinite(v)) out[k] = v;
    else if (v && typeof v === "object" && !Array.isArray(v)) {
      for (const [k2, v2] of Object.entries(v as Record<string, unknown>)) if (typeof v2 === "number" && Number.isFinite(v2)) out[`${k}.${k2}`] = v2;
    }
  }
  return out;
}

function series(rows: Record<string, unknown>[], get: (r: Record<string, unknown>) => unknown): StepPoint[] {
  const out: StepPoint[] = [];
  for (const r of rows) {
    const v = get(r);
    if (typeof v === "number" && Number.isFinite(v)) out.push({ step: r.step as number, value: v });
  }
  return out;
}

export async function createDashboard(opts: DashboardOptions): Promise<Dashboard> {
  let root: string;
  try {
    root = realpathSync(opts.runsDir);
    if (!statSync(root).isDirectory()) throw new Error("not a directory");
  } catch (err) {
    throw new UserError(`runs directory '${opts.runsDir}' cannot be opened (${(err as Error).message})`);
  }
  const host = opts.host ?? "127.0.0.1";
  const app = Fastify({ logger: false });
  const index = new RolloutIndex();
  const watcher = new RunWatcher(root, opts.pollMs ?? 1000);
  const sseClients = new Set<FastifyReply>();
  const vendor = vendorFiles();

  async function runDirOf(req: FastifyRequest): Promise<{ dir: string; id: string }> {
    const id = (req.params as { id: string }).id;
    let dir: string | null;
    try {
      dir = resolveRunId(root, id);
    } catch (err) {
      if (err instanceof PathRejected) throw new HttpError(400, `run id '${id}': ${err.message}`);
      throw err;
    }
    if (!dir) throw new HttpError(404, `run '${id}' not found`);
    const st = await fsp.stat(dir).catch(() => null);
    if (!st?.isDirectory()) throw new HttpError(404, `run '${id}' is not a directory`);
    return { dir, id };
  }

  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof HttpError) return reply.code(err.status).send({ error: err.message });
    if (err instanceof PathRejected) return reply.code(400).send({ error: err.message });
    const status = (err as { statusCode?: number }).statusCode;
    if (status && status < 500) return reply.code(status).send({ error: (err as Error).message });
    return reply.code(500).send({ error: `internal error: ${(err as Error).message}` });
  });

  async function sendFile(reply: FastifyReply, path: string) {
    const ext = path.slice(path.lastIndexOf("."));
    const body = await fsp.readFile(path);
    return reply.header("content-type", CONTENT_TYPES[ext] ?? "application/octet-stream").header("cache-control", "no-cache").send(body);
  }

  app.get("/", async (_req, reply) => sendFile(reply, join(STATIC_DIR, "index.html")));
  app.get("/static/:file", async (req, reply) => {
    const file = (req.params as { file: string }).file;
    // Static files are a flat directory; the name is checked against a listing, never joined blindly.
    const names = await fsp.readdir(STATIC_DIR);
    if (!/^[\w.-]+$/.test(file) || !names.includes(file)) throw new HttpError(404, "no such file");
    return sendFile(reply, join(STATIC_DIR, file));
  });
  app.get("/vendor/:file", async (req, reply) => {
    const path = vendor[(req.params as { file: string }).file];
    if (!path) throw new HttpError(404, "no such file");
    return sendFile(reply, path);
  });

  app.get("/api/runs", async () => {
    const ids = await discoverRuns(root);
    const runs = [];
    // One unreadable run is reported in its own entry; it never fails the list.
    for (const id of ids) {
      try {
        runs.push(await summarizeRun(root, join(root, id), opts.staleMs));
      } catch (err) {
        runs.push(unreadableRun(id, err));
      }
    }
    return { root, runs };
  });
  app.get("/api/runs/:id", async (req) => {
    const { dir } = await runDirOf(req);
    return summarizeRun(root, dir, opts.staleMs);
  });
  app.get("/api/runs/:id/metrics", async (req) => {
    const { dir } = await runDirOf(req);
    return readMetrics(root, dir);
  });
  app.get("/api/runs/:id/rubrics", async (req) => {
    const { dir } = await runDirOf(req);
    return readRubrics(root, dir);
  });
  app.get("/api/runs/:id/meta", async (req) => {
    const { dir } = await runDirOf(req);
    return { meta: await listMeta(root, dir) };
  });
  app.get("/api/runs/:id/meta/:step", async (req) => {
    const { dir } = await runDirOf(req);
    const raw = (req.params as { step: string }).step;
    const m = /^(\d{1,9})(-[a-z][a-z0-9-]*)?$/.exec(raw);
    if (!m) throw new HttpError(400, `meta step '${raw}': expected a step number, optionally with a kind suffix (e.g. 10 or 10-guidelines)`);
    const key = `${Number(m[1])}${m[2] ?? ""}`;
    const r = await readMeta(root, dir, key);
    if (r.missing) throw new HttpError(404, `no meta log for step ${raw}`);
    return { step: Number(m[1]), key, ...r };
  });
  app.get("/api/runs/:id/rollouts", async (req) => {
    const { dir } = await runDirOf(req);
    const q = req.query as Record<string, string | undefined>;
    const query: RolloutQuery = {
      step: parseNum(q, "step", { int: true, min: 0 }),
      minScore: parseNum(q, "minScore"),
      maxScore: parseNum(q, "maxScore"),
      version: parseNum(q, "version", { int: true, min: 0 }),
      flag: q.flag ? String(q.flag) : undefined,
      offset: parseNum(q, "offset", { int: true, min: 0 }) ?? 0,
      limit: parseNum(q, "limit", { int: true, min: 1, max: MAX_LIMIT }) ?? 50,
    };
    return queryRollouts(root, dir, index, query);
  });
  app.get("/api/runs/:id/signals", async (req) => {
    const { dir } = await runDirOf(req);
    const m = await readMetrics(root, dir);
    const stats = await rolloutStepStats(root, dir, index);
    const evals: Record<string, StepPoint[]> = {};
    const skip = new Set(["step", "time", "rubricVersion"]);
    for (const r of m.eval) {
      for (const [k, v] of Object.entries(numericFields(r, skip))) (evals[k] ??= []).push({ step: r.step as number, value: v });
    }
    const hasNorm = m.rows.some((r) => typeof (r.normalizedScore as Record<string, unknown> | undefined)?.mean === "number");
    const signals = detectSignals({
      score: series(m.rows, (r) => (hasNorm ? (r.normalizedScore as Record<string, unknown> | undefined)?.mean : (r.score as Record<string, unknown> | undefined)?.mean)),
      responseLength: series(m.rows, (r) => (r.responseLength as Record<string, unknown> | undefined)?.mean),
      eosRate: series(m.rows, (r) => r.eosRate),
      repetition: stats.repetition,
      distinct2: stats.distinct2,
      evals,
    });
    return { signals, repetition: stats.repetition, distinct2: stats.distinct2, problems: [...m.problems, ...stats.problems] };
  });

  app.get("/api/events", (req, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    res.write(`retry: 2000\nevent: hello\ndata: {}\n\n`);
    sseClients.add(reply);
    const onChange = (e: ChangeEvent) => res.write(`event: change\ndata: ${JSON.stringify(e)}\n\n`);
    const onRuns = (runs: string[]) => res.write(`event: runs\ndata: ${JSON.stringify({ runs })}\n\n`);
    watcher.on("change", onChange);
    watcher.on("runs", onRuns);
    const heartbeat = setInterval(() => res.write(`: keep-alive\n\n`), 15_000);
    heartbeat.unref();
    req.raw.on("close", () => {
      clearInterval(heartbeat);
      watcher.off("change", onChange);
      watcher.off("runs", onRuns);
      sseClients.delete(reply);
    });
  });

  app.addHook("preClose", async () => {
    watcher.stop();
    for (const c of sseClients) c.raw.end();
    sseClients.clear();
  });

  await watcher.start();
  const address = await app.listen({ host, port: opts.port ?? 0 });
  const url = address.replace("[::1]", "localhost");
  return {
    app,
    url,
    close: async () => {
      await app.close();
    },
  };
}
