/**
 * A fake W&B server on loopback that answers the part of the W&B protocol the official JS SDK uses
 * (@wandb/sdk 0.5.x = github.com/wandb/wandb-js; checked against src/internal/api.ts @aced3c8c5e4f78b970fb33f93ebdfde9bbead66d,
 * src/internal/filestream.ts @2ee55480b4c02bd7399f0f9b6159ae2dabaac46e, src/internal/sender.ts @623f03b588519ad20a60fb0e8253e5a9ead41767):
 *
 *   POST /graphql                 `query Viewer` → {data: {viewer: {entity}}} (the SDK's default entity);
 *                                 `mutation UpsertBucket($id, $name, $project, $entity, $displayName, $config: JSONString …)`
 *                                 → {data: {upsertBucket: {bucket: {…}, inserted}}} (creates the run; config is a JSON string)
 *   POST /files/<entity>/<project>/<run>/file_stream
 *                                 {files: {"wandb-history.jsonl": {offset, content: [json row, …]}, "wandb-summary.json": …}}
 *                                 — content replaces the file's lines from `offset` on; finally {complete: true, exitcode}.
 * Both authenticate with `Authorization: Basic base64("api:<WANDB_API_KEY>")`.
 *
 * `mode` switches the outage behaviours: "ok", "error" (every request → HTTP 500), "hang" (requests are read and
 * never answered), "down" (the listener is closed and open connections destroyed: connection refused).
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface FakeWandbRun {
  entity: string;
  project: string;
  name: string;
  displayName?: string;
  config: Record<string, unknown>;
  /** wandb-history.jsonl as the server holds it, one parsed row per line. */
  history: Array<Record<string, unknown>>;
  summary?: Record<string, unknown>;
  complete?: { exitcode: number };
}

export type FakeWandbMode = "ok" | "error" | "hang" | "down";

export class FakeWandb {
  runs = new Map<string, FakeWandbRun>();
  authorizations = new Set<string>();
  requests: string[] = [];
  mode: FakeWandbMode = "ok";
  /** Called before each request is answered (tests flip `mode` from here). */
  onRequest?: (path: string) => void;
  private sockets = new Set<Socket>();
  private server = createServer((req, res) => this.handle(req, res));
  url = "";

  async start(): Promise<this> {
    this.server.on("connection", (s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", () => r()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** Connection refused from now on. */
  async goDown(): Promise<void> {
    this.mode = "down";
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  async stop(): Promise<void> {
    if (this.server.listening) await this.goDown();
    for (const s of this.sockets) s.destroy();
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (d: string) => (body += d));
    req.on("end", () => {
      const path = new URL(req.url!, "http://x").pathname;
      this.requests.push(`${req.method} ${path}`);
      this.onRequest?.(path);
      if (this.mode === "down") return void req.socket.destroy();
      if (this.mode === "hang") return; // read, never answered
      if (this.mode === "error") return json(res, 500, { errors: [{ message: "fake outage" }] });
      if (req.headers.authorization) this.authorizations.add(req.headers.authorization);
      if (req.method === "POST" && path === "/graphql") return this.graphql(JSON.parse(body), res);
      const fs = /^\/files\/([^/]+)\/([^/]+)\/([^/]+)\/file_stream$/.exec(path);
      if (req.method === "POST" && fs) return this.fileStream(fs[1], fs[2], fs[3], JSON.parse(body), res);
      json(res, 404, { error: `fake W&B: no route ${req.method} ${path}` });
    });
  }

  private graphql(q: { query: string; variables?: Record<string, unknown> }, res: ServerResponse): void {
    const v = q.variables ?? {};
    if (/query Viewer\b/.test(q.query)) return json(res, 200, { data: { viewer: { id: "u1", entity: "fake-entity", flags: "{}", teams: { edges: [] } } } });
    if (/mutation UpsertBucket\b/.test(q.query)) {
      const key = `${v.entity}/${v.project}/${v.name}`;
      const prev = this.runs.get(key);
      const run: FakeWandbRun = prev ?? { entity: String(v.entity), project: String(v.project), name: String(v.name), config: {}, history: [] };
      run.displayName = (v.displayName as string | undefined) ?? run.displayName;
      if (typeof v.config === "string") run.config = JSON.parse(v.config);
      this.runs.set(key, run);
      return json(res, 200, {
        data: {
          upsertBucket: {
            bucket: { id: `b-${run.name}`, name: run.name, displayName: run.displayName ?? null, description: null, config: v.config ?? null, sweepName: null, project: { id: "p1", name: run.project, entity: { id: "e1", name: run.entity } } },
            inserted: !prev,
          },
        },
      });
    }
    json(res, 200, { errors: [{ message: "fake W&B: unknown operation" }] });
  }

  private fileStream(entity: string, project: string, name: string, body: { files?: Record<string, { offset: number; content: string[] }>; complete?: boolean; exitcode?: number }, res: ServerResponse): void {
    const run = this.runs.get(`${entity}/${project}/${name}`);
    if (!run) return json(res, 404, { error: `fake W&B: no run ${entity}/${project}/${name}` });
    const h = body.files?.["wandb-history.jsonl"];
    if (h) h.content.forEach((line, i) => (run.history[h.offset + i] = JSON.parse(line)));
    const s = body.files?.["wandb-summary.json"];
    if (s?.content.length) run.summary = JSON.parse(s.content[s.content.length - 1]);
    if (body.complete) run.complete = { exitcode: body.exitcode ?? -1 };
    json(res, 200, { exitcode: null, limits: {} });
  }
}

function json(res: ServerResponse, code: number, v: unknown): void {
  res.writeHead(code, { "content-type": "application/json" });
  res.end(JSON.stringify(v));
}
