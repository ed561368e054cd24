/**
 * Experiment tracking: `--log-to tensorboard,wandb,mlflow` (config key `logTo`) for `mpo train`, `mpo sandbox`
 * and `mpo serve`. One hook for every command: a RunTracker follows the run directory the command writes
 * anyway (docs/run-dir.md) — every line of metrics.jsonl becomes per-step scalars, every rubric version
 * (rubrics/vNNNN.txt) becomes text/an artifact — so the trainer and the reward service know nothing about
 * trackers. It syncs every few seconds and once more on close (nothing is lost at the end of a run), and
 * remembers what it sent in <run>/tracking.json, so a resumed run continues without duplicates.
 *
 *   tensorboard  event files in <run>/tensorboard/ (./tensorboard.ts)
 *   wandb        the official JS SDK @wandb/sdk (WANDB_API_KEY, WANDB_PROJECT [mpo], WANDB_ENTITY, WANDB_BASE_URL)
 *   mlflow       the MLflow REST API (MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME [mpo], MLFLOW_TRACKING_TOKEN)
 * A backend without credentials, or that cannot be reached, prints one warning and is switched off; the run
 * goes on.
 */
import { existsSync, readdirSync, readFileSync, statSync, openSync, readSync, closeSync } from "node:fs";
import { basename, join } from "node:path";
import { UserError } from "../util/errors.ts";
import { writeJsonAtomic } from "../util/atomic.ts";
import { TensorBoardWriter } from "./tensorboard.ts";
import { WandbSink } from "./wandb.ts";

export const TRACKER_KINDS = ["tensorboard", "wandb", "mlflow"] as const;
export type TrackerKind = (typeof TRACKER_KINDS)[number];
export const LOG_TO_HELP = "experiment tracking, any of tensorboard,wandb,mlflow (comma-separated; see docs/tracking.md)";

/** `tensorboard,mlflow` → kinds; unknown names are a UserError naming them. */
export function parseLogTo(v: string | string[] | undefined): TrackerKind[] {
  if (v === undefined) return [];
  const parts = (Array.isArray(v) ? v : v.split(",")).map((s) => s.trim().toLowerCase()).filter(Boolean);
  const bad = parts.filter((p) => !(TRACKER_KINDS as readonly string[]).includes(p));
  if (bad.length) throw new UserError(`--log-to: unknown tracker ${bad.map((b) => `'${b}'`).join(", ")} (use ${TRACKER_KINDS.join(", ")})`);
  return [...new Set(parts)] as TrackerKind[];
}

/** A destination for scalars and texts. Implementations never throw out of these: RunTracker catches. */
interface Sink {
  readonly kind: TrackerKind;
  scalars(step: number, values: Record<string, number>): Promise<void>;
  text(step: number, tag: string, text: string, artifactPath: string): Promise<void>;
  close(): Promise<void>;
}

/** Numeric leaves of a metrics record as "a/b" tags (booleans → 0/1); `step` itself and non-numbers are left out. */
export function flattenMetrics(rec: Record<string, unknown>, prefix = ""): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(rec)) {
    if (!prefix && k === "step") continue;
    const tag = prefix ? `${prefix}/${k}` : k;
    if (typeof v === "number" && Number.isFinite(v)) out[tag] = v;
    else if (typeof v === "boolean") out[tag] = v ? 1 : 0;
    else if (v && typeof v === "object" && !Array.isArray(v)) Object.assign(out, flattenMetrics(v as Record<string, unknown>, tag));
  }
  return out;
}

// ---------------------------------------------------------------- TensorBoard

class TensorBoardSink implements Sink {
  readonly kind = "tensorboard" as const;
  private w: TensorBoardWriter;
  constructor(runDir: string) {
    this.w = new TensorBoardWriter(join(runDir, "tensorboard"));
  }
  async scalars(step: number, values: Record<string, number>) {
    this.w.scalars(step, values);
  }
  async text(step: number, tag: string, text: string) {
    // TensorBoard's text plugin renders markdown; a fenced block keeps the rubric's layout.
    this.w.text(step, tag, "```\n" + text + "\n```");
  }
  async close() {
    this.w.close();
  }
}

// ---------------------------------------------------------------- MLflow (REST API 2.0)

interface MlflowState {
  runId?: string;
  experimentId?: string;
}

class MlflowSink implements Sink {
  readonly kind = "mlflow" as const;
  private constructor(
    private base: string,
    private headers: Record<string, string>,
    readonly runId: string,
    private experimentId: string,
    private artifactUri: string,
  ) {}

  static async open(runName: string, params: Record<string, string>, prev: MlflowState, env = process.env): Promise<MlflowSink> {
    const uri = env.MLFLOW_TRACKING_URI;
    if (!uri || !/^https?:\/\//.test(uri)) throw new Error(`MLFLOW_TRACKING_URI is ${uri ? `'${uri}' (need an http(s) tracking server)` : "not set"}`);
    const base = uri.replace(/\/+$/, "");
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (env.MLFLOW_TRACKING_TOKEN) headers.authorization = `Bearer ${env.MLFLOW_TRACKING_TOKEN}`;
    else if (env.MLFLOW_TRACKING_USERNAME) headers.authorization = `Basic ${Buffer.from(`${env.MLFLOW_TRACKING_USERNAME}:${env.MLFLOW_TRACKING_PASSWORD ?? ""}`).toString("base64")}`;
    const call = (method: string, path: string, body?: unknown) => mlflowCall(base, headers, method, path, body);
    if (prev.runId) {
      const got = (await call("GET", `/api/2.0/mlflow/runs/get?run_id=${encodeURIComponent(prev.runId)}`)) as { run: { info: { experiment_id: string; artifact_uri: string } } };
      return new MlflowSink(base, headers, prev.runId, got.run.info.experiment_id, got.run.info.artifact_uri);
    }
    const name = env.MLFLOW_EXPERIMENT_NAME || "mpo";
    let experimentId: string;
    try {
      const got = (await call("GET", `/api/2.0/mlflow/experiments/get-by-name?experiment_name=${encodeURIComponent(name)}`)) as { experiment: { experiment_id: string } };
      experimentId = got.experiment.experiment_id;
    } catch (err) {
      if (!(err instanceof MlflowError) || err.status !== 404) throw err;
      experimentId = ((await call("POST", "/api/2.0/mlflow/experiments/create", { name })) as { experiment_id: string }).experiment_id;
    }
    const created = (await call("POST", "/api/2.0/mlflow/runs/create", { experiment_id: experimentId, run_name: runName, start_time: Date.now(), tags: [{ key: "mlflow.source.name", value: "mpo" }] })) as { run: { info: { run_id: string; artifact_uri: string } } };
    const sink = new MlflowSink(base, headers, created.run.info.run_id, experimentId, created.run.info.artifact_uri);
    const p = Object.entries(params).slice(0, 100).map(([key, value]) => ({ key, value: value.slice(0, 6000) }));
    if (p.length) await call("POST", "/api/2.0/mlflow/runs/log-batch", { run_id: sink.runId, params: p });
    return sink;
  }

  async scalars(step: number, values: Record<string, number>) {
    const ts = Date.now();
    const metrics = Object.entries(values).map(([key, value]) => ({ key: key.replace(/[^\w./ -]/g, "_"), value, timestamp: ts, step }));
    // log-batch takes at most 1000 metrics per request.
    for (let i = 0; i < metrics.length; i += 1000) await mlflowCall(this.base, this.headers, "POST", "/api/2.0/mlflow/runs/log-batch", { run_id: this.runId, metrics: metrics.slice(i, i + 1000) });
  }

  async text(_step: number, _tag: string, text: string, artifactPath: string) {
    // Proxied artifact upload (the tracking server's --serve-artifacts, on by default since MLflow 2.0):
    // artifact_uri "mlflow-artifacts:/<exp>/<run>/artifacts" → PUT /api/2.0/mlflow-artifacts/artifacts/<exp>/<run>/artifacts/<path>.
    const m = /^mlflow-artifacts:(?:\/\/[^/]*)?\/(.*)$/.exec(this.artifactUri);
    if (!m) throw new Error(`artifact store ${this.artifactUri} is not served by the tracking server (start it with --serve-artifacts)`);
    const path = `${m[1].replace(/\/+$/, "")}/${artifactPath}`.split("/").map(encodeURIComponent).join("/");
    const res = await fetch(`${this.base}/api/2.0/mlflow-artifacts/artifacts/${path}`, { method: "PUT", headers: { ...this.headers, "content-type": "text/plain" }, body: text });
    if (!res.ok) throw new MlflowError(res.status, `PUT artifact ${artifactPath}: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
  }

  async close() {
    await mlflowCall(this.base, this.headers, "POST", "/api/2.0/mlflow/runs/update", { run_id: this.runId, status: "FINISHED", end_time: Date.now() });
  }

  state(): MlflowState {
    return { runId: this.runId, experimentId: this.experimentId };
  }
}

class MlflowError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function mlflowCall(base: string, headers: Record<string, string>, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(base + path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}), signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  if (!res.ok) throw new MlflowError(res.status, `${method} ${path.split("?")[0]}: HTTP ${res.status} ${text.slice(0, 200)}`);
  return text ? JSON.parse(text) : {};
}

// ---------------------------------------------------------------- the follower

interface TrackingState {
  metricsOffset: number;
  rubrics: string[];
  mlflow?: MlflowState;
  wandb?: { runId: string };
}

export interface RunTrackerOptions {
  /** Run name shown by the trackers (default: the run directory's name). */
  name?: string;
  /** Flat parameters / config recorded once (MLflow params, W&B config). */
  params?: Record<string, unknown>;
  /** Sync period (default 5000 ms; 0 = only on sync()/close()). */
  intervalMs?: number;
  /** Where warnings go (default stderr). */
  warn?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  /** W&B time limits (tests shorten them). */
  wandb?: { initTimeoutMs?: number; finishTimeoutMs?: number };
}

export class RunTracker {
  private sinks: Sink[] = [];
  private timer?: NodeJS.Timeout;
  private syncing: Promise<void> = Promise.resolve();
  private st: TrackingState;
  private readonly stateFile: string;

  private constructor(
    readonly runDir: string,
    private warn: (line: string) => void,
  ) {
    this.stateFile = join(runDir, "tracking.json");
    let st: TrackingState = { metricsOffset: 0, rubrics: [] };
    try {
      if (existsSync(this.stateFile)) st = { ...st, ...(JSON.parse(readFileSync(this.stateFile, "utf8")) as TrackingState) };
    } catch {
      // An unreadable state file means we resend from the start (duplicates in a tracker beat a crash).
    }
    this.st = st;
  }

  /** Opens the requested backends (each failure: one warning, backend off) and starts following the run. */
  static async start(runDir: string, kinds: TrackerKind[], o: RunTrackerOptions = {}): Promise<RunTracker> {
    const t = new RunTracker(runDir, o.warn ?? ((l) => process.stderr.write(l + "\n")));
    const env = o.env ?? process.env;
    const name = o.name ?? basename(runDir);
    const params = Object.fromEntries(Object.entries(o.params ?? {}).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
    for (const kind of kinds) {
      try {
        if (kind === "tensorboard") t.sinks.push(new TensorBoardSink(runDir));
        else if (kind === "mlflow") {
          const s = await MlflowSink.open(name, params, t.st.mlflow ?? {}, env);
          t.st.mlflow = s.state();
          t.sinks.push(s);
        } else {
          const s = await WandbSink.open(name, o.params ?? {}, t.st.wandb?.runId, { env, warn: t.warn, ...o.wandb });
          t.st.wandb = { runId: s.runId };
          t.sinks.push(s);
        }
      } catch (err) {
        t.warn(`mpo: warning: --log-to ${kind} is off for this run: ${(err as Error).message}`);
      }
    }
    if (t.sinks.length && (o.intervalMs ?? 5000) > 0) {
      t.timer = setInterval(() => void t.sync(), o.intervalMs ?? 5000);
      t.timer.unref();
    }
    return t;
  }

  get active(): TrackerKind[] {
    return this.sinks.map((s) => s.kind);
  }

  /** Sends what the run directory gained since the last sync (serialized; safe to call any time). */
  sync(): Promise<void> {
    this.syncing = this.syncing.then(() => this.syncOnce()).catch((err) => this.warn(`mpo: warning: tracking sync failed: ${(err as Error).message}`));
    return this.syncing;
  }

  private async syncOnce(): Promise<void> {
    if (!this.sinks.length) return;
    // 1. New complete lines of metrics.jsonl.
    const mpath = join(this.runDir, "metrics.jsonl");
    if (existsSync(mpath)) {
      const size = statSync(mpath).size;
      if (size < this.st.metricsOffset) this.st.metricsOffset = 0; // replaced (e.g. rolled back): resend
      if (size > this.st.metricsOffset) {
        const buf = Buffer.alloc(size - this.st.metricsOffset);
        const fd = openSync(mpath, "r");
        try {
          readSync(fd, buf, 0, buf.length, this.st.metricsOffset);
        } finally {
          closeSync(fd);
        }
        const end = buf.lastIndexOf(0x0a) + 1; // a torn last line waits for the next sync
        for (const line of buf.subarray(0, end).toString("utf8").split("\n")) {
          if (!line.trim()) continue;
          let rec: Record<string, unknown>;
          try {
            rec = JSON.parse(line);
          } catch {
            continue;
          }
          const step = typeof rec.step === "number" ? rec.step : 0;
          await this.each((s) => s.scalars(step, flattenMetrics(rec)));
        }
        this.st.metricsOffset += end;
      }
    }
    // 2. New rubric versions (text + artifact).
    const rdir = join(this.runDir, "rubrics");
    if (existsSync(rdir)) {
      for (const f of readdirSync(rdir).filter((x) => /^v\d+\.txt$/.test(x)).sort()) {
        if (this.st.rubrics.includes(f)) continue;
        const text = readFileSync(join(rdir, f), "utf8");
        const meta = join(rdir, f.replace(/\.txt$/, ".json"));
        let step = Number(f.slice(1, -4));
        try {
          const j = JSON.parse(readFileSync(meta, "utf8")) as { step?: unknown; createdAtStep?: unknown };
          if (typeof j.step === "number") step = j.step;
          else if (typeof j.createdAtStep === "number") step = j.createdAtStep;
        } catch {
          // no metadata: the version number stands in for the step
        }
        await this.each((s) => s.text(step, `rubric/${f.slice(0, -4)}`, text, `rubrics/${f}`));
        this.st.rubrics.push(f);
      }
    }
    writeJsonAtomic(this.stateFile, this.st, { durable: false });
  }

  /** Runs an operation on every sink; a sink that fails is warned about once and switched off. */
  private async each(op: (s: Sink) => Promise<void>): Promise<void> {
    for (const s of [...this.sinks]) {
      try {
        await op(s);
      } catch (err) {
        this.warn(`mpo: warning: --log-to ${s.kind} failed and is off for the rest of this run: ${(err as Error).message}`);
        this.sinks = this.sinks.filter((x) => x !== s);
      }
    }
  }

  /** Final sync, then closes every backend (MLflow run FINISHED, W&B finish, event file flushed). */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.sync();
    for (const s of this.sinks) {
      try {
        await s.close();
      } catch (err) {
        this.warn(`mpo: warning: closing --log-to ${s.kind}: ${(err as Error).message}`);
      }
    }
    this.sinks = [];
  }
}

/**
 * Tracking for a command that writes several runs under one folder (`mpo sandbox`: <out>/seed-N/<arm>/):
 * each run directory with a metrics.jsonl gets its own RunTracker (TensorBoard: `tensorboard --logdir <out>`
 * shows them side by side; MLflow and W&B: one run each — each W&B run has its own SDK worker, src/track/wandb.ts).
 */
export class TreeTracker {
  private runs = new Map<string, RunTracker>();
  private timer?: NodeJS.Timeout;
  private chain: Promise<void> = Promise.resolve();

  private constructor(
    readonly root: string,
    private kinds: TrackerKind[],
    private o: RunTrackerOptions,
  ) {}

  static start(root: string, kinds: TrackerKind[], o: RunTrackerOptions = {}): TreeTracker {
    const t = new TreeTracker(root, kinds, o);
    if (kinds.length && (o.intervalMs ?? 5000) > 0) {
      t.timer = setInterval(() => void t.sync(), o.intervalMs ?? 5000);
      t.timer.unref();
    }
    return t;
  }

  private findRuns(dir: string, depth: number, out: string[]): void {
    if (!existsSync(dir)) return;
    if (existsSync(join(dir, "metrics.jsonl"))) out.push(dir);
    if (depth === 0) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory() && !e.name.startsWith(".") && !["tensorboard", "checkpoints", "rollouts", "rubrics", "meta"].includes(e.name)) this.findRuns(join(dir, e.name), depth - 1, out);
  }

  sync(): Promise<void> {
    this.chain = this.chain.then(async () => {
      const found: string[] = [];
      this.findRuns(this.root, 3, found);
      for (const dir of found) {
        if (!this.runs.has(dir)) {
          const rel = dir.slice(this.root.length).replace(/^[\\/]+/, "") || basename(dir);
          this.runs.set(dir, await RunTracker.start(dir, this.kinds, { ...this.o, name: `${this.o.name ?? basename(this.root)}/${rel}`, intervalMs: 0 }));
        }
        await this.runs.get(dir)!.sync();
      }
    });
    return this.chain;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.sync();
    for (const r of this.runs.values()) await r.close();
  }
}
