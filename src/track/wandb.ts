/**
 * Weights & Biases through the official JS SDK (@wandb/sdk), run in a worker thread of its own.
 *
 * Why a worker: the SDK (0.5.x, github.com/wandb/wandb-js) has no timeouts and keeps retrying with timers
 * that hold the process open — a W&B server that answers 5xx or stops answering would otherwise keep
 * `mpo train` from exiting for up to half an hour after the last step, and its SIGINT/SIGTERM handlers call
 * process.exit() (the trainer's Ctrl-C must finish the step and checkpoint). In a worker, signals are not
 * delivered to the SDK, its timers and sockets die with `worker.terminate()`, and the trainer never waits
 * on the network: log() is a postMessage. What the SDK prints about failed requests ("Fatal error: …",
 * "Retrying failed request to W&B …") is turned into one flagged warning instead of stack dumps.
 *
 * Protocol facts this relies on (wandb-js src/internal/filestream.ts @2ee55480, src/sdk/wandb_run.ts):
 * `log(data, step, commit)` takes the step POSITIONALLY; the file stream sends a history row only when
 * `step >= rows sent so far`, so we send exactly one committed row per training step (steps increase from
 * ≥ 0) and attach rubric texts uncommitted to the next step's row (or to a row after the last step, at close).
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";

export interface WandbOptions {
  /** Environment the SDK reads (WANDB_API_KEY, WANDB_BASE_URL, WANDB_PROJECT, WANDB_ENTITY, WANDB_MODE). */
  env: NodeJS.ProcessEnv;
  /** How long wandb.init may take before W&B is switched off for the run (default 30 s). */
  initTimeoutMs?: number;
  /** How long finish() may take (flush + the file stream's final request) before the worker is stopped (default 30 s). */
  finishTimeoutMs?: number;
  warn: (line: string) => void;
}

// The worker's code: plain JS (no TypeScript loader in a worker), a thin message loop around the SDK.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { format } = require("node:util");
// The SDK reports failed requests with console.*: send those lines over the same port as "finished", so none is
// lost or reordered when the worker is stopped right after it.
for (const k of ["log", "info", "warn", "error"]) console[k] = (...a) => parentPort.postMessage({ op: "said", text: format(...a) });
(async () => {
  const wandb = (await import(workerData.sdkUrl)).default;
  let run;
  try {
    run = await wandb.init(workerData.init);
  } catch (err) {
    parentPort.postMessage({ op: "init-failed", message: String((err && err.message) || err) });
    return;
  }
  parentPort.postMessage({ op: "ready", id: run.id, entity: run.entity, project: run.project });
  parentPort.on("message", async (m) => {
    if (m.op === "log") wandb.log(m.data, m.step, m.commit);
    else if (m.op === "finish") {
      try { await wandb.finish(0); } finally { parentPort.postMessage({ op: "finished" }); }
    }
  });
})();
`;

function sdkUrl(): string {
  const req = createRequire(import.meta.url);
  return pathToFileURL(join(dirname(req.resolve("@wandb/sdk/package.json")), "index.js")).href;
}

export class WandbSink {
  readonly kind = "wandb" as const;
  private lastStep = -1;
  private dead?: string;
  private warnedRequests = false;
  private finished?: () => void;
  /** A text was logged uncommitted and still waits for a row. */
  private pendingText = false;

  private constructor(
    private worker: Worker,
    readonly runId: string,
    private o: WandbOptions,
  ) {
    worker.on("message", (m: { op: string; text?: string }) => {
      if (m.op === "said") this.sdkSaid(m.text!.split("\n")[0]);
      else if (m.op === "finished") this.finished?.();
    });
    worker.on("error", (err) => (this.dead ??= err.message));
    worker.on("exit", () => {
      this.dead ??= "the W&B worker exited";
      this.finished?.();
    });
  }

  /** The SDK's own console lines: request failures become one warning; "View run at …" is passed through. */
  private sdkSaid(line: string): void {
    if (/^View run at /.test(line)) {
      process.stderr.write(`mpo: wandb: ${line}\n`);
      return;
    }
    if (!/Fatal (HTTP )?error|Retrying failed request|Max retries|Error/.test(line) || this.warnedRequests) return;
    this.warnedRequests = true;
    this.o.warn(`mpo: warning: --log-to wandb: a request to W&B failed (${line.trim().slice(0, 200)}); training goes on, W&B may miss rows logged meanwhile`);
  }

  /**
   * `resumedFrom`: the W&B run id of the run this one resumes. The JS SDK cannot continue a W&B run (its
   * file stream restarts at history line 0 and would overwrite the earlier rows), so a resumed mpo run
   * becomes a new W&B run named "<name> (resumed)" with `resumed_from` in its config.
   */
  static async open(runName: string, config: Record<string, unknown>, resumedFrom: string | undefined, o: WandbOptions): Promise<WandbSink> {
    const env = o.env;
    // Without a key the SDK would prompt on a TTY (or hang a headless job): check first.
    if (!env.WANDB_API_KEY) throw new Error("WANDB_API_KEY is not set");
    const init = {
      project: env.WANDB_PROJECT || "mpo",
      ...(env.WANDB_ENTITY ? { entity: env.WANDB_ENTITY } : {}),
      name: resumedFrom ? `${runName} (resumed)` : runName,
      config: resumedFrom ? { ...config, resumed_from: resumedFrom } : config,
    };
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { sdkUrl: sdkUrl(), init }, env: { ...env } });
    worker.unref(); // never keeps the process alive
    const ready = new Promise<{ id: string }>((resolve, reject) => {
      worker.on("message", (m: { op: string; id?: string; message?: string }) => {
        if (m.op === "ready") resolve({ id: m.id! });
        else if (m.op === "init-failed") reject(new Error(m.message));
      });
      worker.on("error", reject);
      worker.on("exit", (code) => reject(new Error(`the W&B worker exited (code ${code}) during init`)));
    });
    const timeoutMs = o.initTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const got = await Promise.race([ready, new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`wandb.init: no answer from ${env.WANDB_BASE_URL || "https://api.wandb.ai"} in ${timeoutMs / 1000} s`)), timeoutMs)))]);
      return new WandbSink(worker, got.id, o);
    } catch (err) {
      await worker.terminate();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private post(m: Record<string, unknown>): void {
    if (this.dead) throw new Error(this.dead);
    this.worker.postMessage(m);
  }

  async scalars(step: number, values: Record<string, number>): Promise<void> {
    if (step <= this.lastStep) return; // one committed row per step, steps increasing (see the module comment)
    this.lastStep = step;
    this.post({ op: "log", data: values, step, commit: true });
    this.pendingText = false;
  }

  async text(_step: number, tag: string, text: string): Promise<void> {
    // Uncommitted: rides with the next step's row (or with a row after the last step, at close).
    this.post({ op: "log", data: { [tag]: text }, step: Math.max(this.lastStep, 0), commit: false });
    this.pendingText = true;
  }

  async close(): Promise<void> {
    if (this.dead) {
      await this.worker.terminate();
      return;
    }
    const ms = this.o.finishTimeoutMs ?? 30_000;
    // A text still waiting for a row gets one of its own after the last step (the SDK's final flush would
    // repeat the last step's number).
    if (this.pendingText) this.post({ op: "log", data: {}, step: this.lastStep + 1, commit: true });
    const done = new Promise<void>((r) => (this.finished = r));
    this.worker.postMessage({ op: "finish" });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([done.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), ms)))]);
    clearTimeout(timer);
    await this.worker.terminate();
    if (timedOut) throw new Error(`wandb.finish: W&B did not confirm the end of the run in ${ms / 1000} s; stopped waiting`);
  }
}
