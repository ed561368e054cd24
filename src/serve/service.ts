/**
 * The reward service's state machine, independent of HTTP: scores samples with the junior judge under the
 * current rubric version, keeps every scored rollout in the run directory, and every `metaEvery` samples
 * runs a meta step in the background. A new rubric version is switched in with one assignment; each batch
 * captures the version it started with, so every reply names the version that scored it.
 *
 * Never a made-up reward:
 *  - judge outage: each sample is retried with backoff until the request's deadline (outage.deadlineMs);
 *    only then does scoring fail (JudgeUnavailableError → 503);
 *  - unreadable judge reply (empty, prose, refusal, over the byte cap): the evaluation is asked again
 *    (unreadable.reasks times at a higher temperature, then once with constrained output when the server
 *    supports it); still unreadable → ServiceUnavailableError "judge_unreadable" (policy "retry") or a
 *    result marked `unreadable` carrying no score (policy "sentinel"); such samples never enter a window;
 *  - a share of unreadable samples over unreadable.maxShare in the last unreadable.window samples means a
 *    misconfigured judge: every request fails with "judge_misconfigured" until the share falls again.
 *
 * Persistence (docs/run-dir.md): rubrics/ and meta/ via the rubric store and metaStep; rollouts of meta
 * window w in rollouts/step-NNNNNN.jsonl (on disk only: memory stays flat for any window size);
 * unreadable samples in rollouts/unreadable.jsonl; serve-state.json {window, scored, pendingMeta}. A reply
 * is sent only after its rollouts are written (grouped per event-loop turn); a failed write answers 503
 * for exactly the requests it carried and marks the service unhealthy until a write succeeds again.
 * A restart continues from the newest rubric, counts the open window from disk, and re-runs a meta step a
 * crash interrupted. One service per run directory (serve.lock).
 *
 * Meta steps run on the same MetaScheduler as the trainer's (src/meta/scheduler.ts): its trigger says when one
 * is due (every metaEvery samples, or adaptive), it runs the step off the request path, writes the commit
 * marker and hands the result to `onCommit`, which switches the rubric; after a crash it adopts a finished
 * step or discards a half-made one for a re-run. The service's part is the pending mark in serve-state.json.
 */
import { appendFileSync, existsSync, openSync, readFileSync, readSync, closeSync, statSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";
import { metaLogFile, rolloutsFile, runPath, SERVE_STATE_FILE, STATUS_FILE, UNREADABLE_FILE } from "../util/run-layout.ts";
import { readJsonFileWith, StateFileError } from "../util/state-file.ts";
import { decisionTrigger, everySamples, MetaScheduler, type MetaJob, never, type MetaTrigger } from "../meta/scheduler.ts";
import { RubricJudge } from "../judge/rubric-judge.ts";
import { type ProtocolName, type ProtocolProfile, resolveProtocol, withOverrides } from "../judge/protocol.ts";
import { loadTemplates } from "../judge/templates.ts";
import { JudgeUnavailableError, type Evaluation, type ScoreInput } from "../judge/types.ts";
import { LlmError } from "../llm/errors.ts";
import { Semaphore } from "../llm/semaphore.ts";
import type { ChatModel, UsageByStage } from "../llm/types.ts";
import { UsageMeter } from "../llm/usage.ts";
import { MeteredModel } from "../meta/metered.ts";
import { metaStep, type MetaRollout, type MetaStepResult } from "../meta/meta-step.ts";
import { loadRubricFile } from "../rubric/format.ts";
import { RubricStore } from "../rubric/store.ts";
import type { RubricVersion } from "../rubric/types.ts";
import { writeJsonAtomic } from "../util/atomic.ts";
import { Rng } from "../util/rng.ts";
import { type GuardOptions, judgeGuard } from "../meta/guard.ts";
import { type AdaptiveOptions, adaptiveOptions, decideAdaptive, type MetaDecision, type WindowPoint, windowPoint } from "../meta/triggers.ts";
import { GuardedModel, withSample } from "./judge-guard.ts";
import { acquireRunLock, type RunLock } from "./lock.ts";
import { sanitizeErrorText } from "./sanitize.ts";
import { countLinesSync, sampleJsonlWindow } from "./window.ts";
import type { TaskDefinition } from "../tasks/types.ts";
import { itemView, type ItemView } from "./task-view.ts";

export interface OutagePolicy {
  deadlineMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  queueMax: number;
}

export interface UnreadablePolicy {
  reasks: number;
  reaskTemperature: number;
  onUnreadable: "retry" | "sentinel";
  sentinel: number;
  window: number;
  maxShare: number;
  minSamples: number;
}

export const DEFAULT_OUTAGE: OutagePolicy = { deadlineMs: 170_000, backoffBaseMs: 1000, backoffMaxMs: 15_000, queueMax: 8192 };
export const DEFAULT_UNREADABLE: UnreadablePolicy = { reasks: 2, reaskTemperature: 0.7, onUnreadable: "retry", sentinel: 0, window: 200, maxShare: 0.2, minSamples: 20 };

export interface ServiceOptions {
  runDir: string;
  rubricFile: string;
  taskDescription: string;
  judge: ChatModel;
  metaJudge?: ChatModel;
  /** The judge's endpoint with constrained decoding forced on: the last re-ask of an unreadable sample. */
  constrainedJudge?: ChatModel;
  mode: "per-item" | "single-call";
  /** Judge protocol profile; default "paper". */
  protocol?: ProtocolName;
  judgeSeesReference?: boolean;
  /** The task (`mpo serve --task`): its judge view, persona and format rule, exactly as `mpo train` applies them (task-view.ts). */
  task?: TaskDefinition;
  metaEvery: number;
  metaSamples: number;
  prescreen: boolean;
  seed: number;
  /** Samples judged at once (service-wide). */
  concurrency: number;
  templatesDir?: string;
  outage?: Partial<OutagePolicy>;
  unreadable?: Partial<UnreadablePolicy>;
  /** Cap on one judge reply's text (bytes); longer replies are cut and the sample treated as unreadable. */
  maxReplyBytes?: number;
  /** Largest window read back for a meta step (uniform sample beyond). */
  metaWindowCap?: number;
  /** Appends JSONL text to a file (injectable to test ENOSPC/EMFILE). */
  append?: (path: string, text: string) => void;
  /** Values never to echo in error texts (API keys, the service token). */
  secrets?: string[];
  /** One-line operator log (default: stderr). */
  log?: (line: string) => void;
  /** Called whenever a meta step ends (metrics, logs). */
  onMeta?: (r: MetaStepResult) => void;
  /**
   * When meta steps run: every `metaEvery` samples (fixed, the paper), or adaptive (src/meta/triggers.ts) on
   * summaries of consecutive buckets of metaEvery/10 samples, between ⌈metaEvery/3⌉ and 2 × metaEvery samples.
   */
  metaSchedule?: "fixed" | "adaptive";
  /** Adaptive thresholds (intervals are in buckets; unset ones derive from metaEvery as above). */
  adaptive?: Partial<AdaptiveOptions>;
  /** Rubric acceptance guard (src/meta/guard.ts): null/undefined = off. */
  guard?: Partial<GuardOptions> | null;
}

export interface ScoreItem {
  prompt: string;
  response: string;
  /** The dataset's label as given (text, number, list, object); the judge reads it as text. */
  reference?: unknown;
  group?: string;
  metadata?: Record<string, unknown>;
}

export interface ScoredItem {
  /** null when the judge's replies stayed unreadable (policy "sentinel"): there is no score. */
  score: number | null;
  normalized: number | null;
  rubricVersion: number;
  /** True when no readable judgement exists for this sample (see `flags`). */
  unreadable: boolean;
  items: Array<{ name: string; score: number; min: number; max: number; rationale: string; flags: string[] }>;
  flags: string[];
}

/** Scoring could not produce honest rewards; `type` is the machine-readable reason (503 body). */
export class ServiceUnavailableError extends Error {
  constructor(
    readonly type: "judge_unavailable" | "judge_unreadable" | "judge_misconfigured" | "write_failed" | "overloaded" | "shutting_down",
    message: string,
  ) {
    super(message);
    this.name = "ServiceUnavailableError";
  }
}

/** serve-state.json, validated when read back (a corrupt or hand-edited file names the field). */
const serveStateSchema = z.object({
  window: z.number().int().nonnegative(),
  /** Samples scored before the open window; with the window's lines on disk this gives `scored` after a restart. */
  windowStart: z.number().int().nonnegative().optional(),
  scored: z.number().int().nonnegative(),
  /** Window whose meta step started but did not finish (re-run on restart). */
  pendingMeta: z.number().int().nonnegative().nullable().default(null),
  /** The pending meta step's key (its meta log is meta/step-KEY.json): fixed when the window closes, so a restart finds that step's files. */
  pendingMetaKey: z.number().int().nonnegative().optional(),
  metaSteps: z.number().int().nonnegative().default(0),
  /** The task's persona for the senior (--task), kept so a meta step right after a restart still has it. */
  persona: z.object({ task: z.string(), text: z.string() }).optional(),
});
type ServeState = z.output<typeof serveStateSchema>;

/** A meta step's input: the closed window (rollouts/step-WINDOW.jsonl). Its key is the sample count at the close. */
interface ServeMetaInput {
  window: number;
}
/** What the commit marker records of a service meta step (the full result holds error causes, not JSON). */
interface ServeMetaRecord {
  ok: boolean;
  summary: string;
  version: number | null;
  logPath: string;
  error?: string;
}
/** A meta log's fields a restart reads to tell a finished step from a half-made one. */
const metaLogStateSchema = z.object({ state: z.string(), summary: z.string().optional(), ok: z.boolean().optional(), toVersion: z.number().optional() });
/** Final meta-log states. "failed" is not final here: a step stopped by a shutdown ends as failed too, and a failed step made no version, so re-running it is safe. */
const FINAL_META_STATES = new Set(["done", "rejected", "unchanged"]);

export interface JudgeHealth {
  /** ok | unreachable (failing calls now; requests keep retrying until their deadline) | misconfigured. */
  state: "ok" | "unreachable" | "misconfigured";
  model: string;
  consecutiveFailures: number;
  lastError: string | null;
  lastOkAt: string | null;
  lastFailureAt: string | null;
  unreadableShare: number;
  recentSamples: number;
}

/** Flags that mean the judge's reply could not be read (the score is a fallback, not a judgement). */
const UNREADABLE_FLAGS = new Set(["unparsed-fallback", "missing-item", "unparsed-reply", "empty-reply", "refusal", "over-long-reply"]);
/** Raw judge texts kept in the rollout log are cut here: the log is bounded whatever the judge sends. */
const RAW_LOG_CHARS = 16_384;

const stepFile = (runDir: string, window: number) => runPath(runDir, rolloutsFile(window));

function referenceText(label: unknown): string | undefined {
  if (label === undefined || label === null) return undefined;
  return typeof label === "string" ? label : JSON.stringify(label);
}

function cutRaw(s: string): string {
  return s.length > RAW_LOG_CHARS ? `${s.slice(0, RAW_LOG_CHARS)}… [cut: ${s.length - RAW_LOG_CHARS} more characters]` : s;
}

/** True when the file is non-empty and its last byte is not a newline (a write torn by ENOSPC or a kill). */
function endsTorn(path: string): boolean {
  if (!existsSync(path)) return false;
  const size = statSync(path).size;
  if (size === 0) return false;
  const fd = openSync(path, "r");
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, size - 1);
    return b[0] !== 10;
  } finally {
    closeSync(fd);
  }
}

interface PendingWrite {
  file: "window" | "unreadable";
  records: MetaRollout[];
  resolve: () => void;
  reject: (err: Error) => void;
}

export class RewardService {
  readonly store: RubricStore;
  readonly protocol: ProtocolProfile;
  /** The task's persona for the senior judge (from the first item judged under the task's view; serve-state.json keeps it across restarts). */
  private persona?: string;
  private current: RubricVersion;
  /** First ask, then the re-asks (and the constrained one, when the server supports it), in order. */
  private readonly judges: RubricJudge[];
  private readonly meter = new UsageMeter();
  private readonly metaModel: ChatModel;
  private readonly outage: OutagePolicy;
  private readonly unreadablePolicy: UnreadablePolicy;
  private readonly gate: Semaphore;
  private readonly lock: RunLock;
  private readonly appendText: (path: string, text: string) => void;
  private readonly log: (line: string) => void;
  private readonly secrets: string[];
  private state: ServeState;
  /** Lines of the open window on disk (the window itself is never held in memory). */
  private windowSize = 0;
  /** Adaptive schedule: summaries of full buckets since the last meta step, the open bucket, and why the last step ran. */
  private metaPoints: WindowPoint[] = [];
  private bucket: Array<{ normalized: number | null; response: string; flags: string[] }> = [];
  /** When meta steps run, and their crash safety: the same scheduler as the trainer's. */
  private readonly meta: MetaScheduler<ServeMetaInput, MetaStepResult, ServeMetaRecord>;
  /** Settles when the running meta step has ended (logged when it crashed); null when none runs. */
  private metaDone: Promise<void> | null = null;
  private rng: Rng;
  private pending: PendingWrite[] = [];
  private flushScheduled = false;
  /** Files whose last write may have been torn: the next append starts on a fresh line. */
  private torn = new Set<string>();
  /** Files whose tail was checked for a torn line (once per file and process). */
  private tailChecked = new Set<string>();
  private writeError: string | null = null;
  private judgeHealth: Omit<JudgeHealth, "state" | "unreadableShare" | "recentSamples">;
  /** Ring of the last `unreadable.window` samples: 1 = unreadable. */
  private recent: Uint8Array;
  private recentPos = 0;
  private recentCount = 0;
  private recentBad = 0;
  private misconfigured = false;
  private running = false;
  private closed = false;
  /** Aborted when shutdown starts: outage retries stop waiting (their requests get 503), judge calls in flight finish. */
  private readonly stopping = new AbortController();
  lastMeta: MetaStepResult | null = null;

  constructor(private readonly o: ServiceOptions) {
    this.outage = { ...DEFAULT_OUTAGE, ...o.outage };
    this.unreadablePolicy = { ...DEFAULT_UNREADABLE, ...o.unreadable };
    this.log = o.log ?? ((line) => process.stderr.write(`mpo serve: ${line}\n`));
    this.secrets = (o.secrets ?? []).filter((s) => s.length >= 4);
    this.appendText = o.append ?? ((path, text) => appendFileSync(path, text));
    mkdirSync(o.runDir, { recursive: true });
    this.lock = acquireRunLock(o.runDir);
    if (this.lock.tookOverFrom !== undefined) this.log(`took over the lock of pid ${this.lock.tookOverFrom}, which is no longer running`);
    try {
      this.store = RubricStore.open(o.runDir);
      this.current = this.store.latest() ?? this.store.initialize(loadRubricFile(o.rubricFile));
      const templates = o.templatesDir ? loadTemplates(o.templatesDir) : undefined;
      const guard = { maxReplyBytes: o.maxReplyBytes ?? 1024 * 1024, now: () => performance.now() };
      const model = new GuardedModel(new MeteredModel(o.judge, this.meter), guard);
      const protocol = resolveProtocol(o.protocol);
      this.protocol = o.judgeSeesReference === undefined ? protocol : withOverrides(protocol, { junior: { seesReference: o.judgeSeesReference } });
      const base = { mode: o.mode, concurrency: 1, templates, protocol: this.protocol };
      this.judges = [new RubricJudge({ ...base, model })];
      for (let r = 1; r <= this.unreadablePolicy.reasks; r++) {
        this.judges.push(new RubricJudge({ ...base, model, temperature: this.unreadablePolicy.reaskTemperature, seed: o.seed * 1000 + r }));
      }
      if (o.constrainedJudge) {
        this.judges.push(new RubricJudge({ ...base, model: new GuardedModel(new MeteredModel(o.constrainedJudge, this.meter), guard), useConstraints: true }));
      }
      this.metaModel = new MeteredModel(o.metaJudge ?? o.judge, this.meter);
      this.gate = new Semaphore(o.concurrency);
      this.recent = new Uint8Array(this.unreadablePolicy.window);
      this.judgeHealth = { model: o.judge.id, consecutiveFailures: 0, lastError: null, lastOkAt: null, lastFailureAt: null };
      this.meta = this.metaScheduler();
      this.state = this.loadState();
      if (o.task && this.state.persona?.task === o.task.name) this.persona = this.state.persona.text;
      this.rng = new Rng(`serve-${o.seed}-${this.state.metaSteps}`);
      this.windowSize = countLinesSync(stepFile(o.runDir, this.state.window));
      // The state file is written when a window opens, not per request: the window on disk is the count.
      if (this.state.windowStart !== undefined) this.state.scored = this.state.windowStart + this.windowSize;
      if (this.state.pendingMeta !== null) this.recoverMeta(this.state.pendingMeta, this.state.pendingMetaKey ?? this.state.scored);
    } catch (err) {
      this.lock.release();
      throw err;
    }
  }

  private loadState(): ServeState {
    const p = runPath(this.o.runDir, SERVE_STATE_FILE);
    if (!existsSync(p)) return { window: 0, scored: 0, pendingMeta: null, metaSteps: 0 };
    try {
      // A few hundred bytes written by this service (writeJsonAtomic): a whole-file read is fine here.
      return readJsonFileWith(p, serveStateSchema, "service state");
    } catch (err) {
      if (err instanceof StateFileError) throw new StateFileError(p, `${err.message}\nmove ${SERVE_STATE_FILE} aside to start a new window`);
      throw err;
    }
  }

  /** Writes the task's persona to serve-state.json once (a failed write is tried again on the next request). */
  private savePersona(text: string): void {
    if (!this.o.task) return;
    const saved = this.state.persona;
    this.state.persona = { task: this.o.task.name, text };
    try {
      this.saveState();
    } catch {
      this.state.persona = saved;
    }
  }

  private saveState(durable = false): void {
    writeJsonAtomic(runPath(this.o.runDir, SERVE_STATE_FILE), this.state, { durable });
  }

  private writeStatus(state: "running" | "stopped"): void {
    writeJsonAtomic(runPath(this.o.runDir, STATUS_FILE), { state, kind: "reward-service", pid: process.pid, updatedAt: new Date().toISOString(), rubricVersion: this.current.version });
  }

  /** Called once the HTTP server is listening: only then is the run "running" (a failed bind leaves no trace). */
  markRunning(): void {
    this.writeStatus("running");
    this.running = true;
  }

  get rubric(): RubricVersion {
    return this.current;
  }

  get metaRunning(): boolean {
    return this.meta.running !== null;
  }

  get stats(): { scored: number; window: number; windowSize: number; metaSteps: number } {
    return { scored: this.state.scored, window: this.state.window, windowSize: this.windowSize, metaSteps: this.state.metaSteps };
  }

  /** Whether the service can give honest rewards now, and why not. */
  health(): { ok: boolean; problems: string[]; judge: JudgeHealth; writes: { ok: boolean; lastError: string | null } } {
    const problems: string[] = [];
    if (this.misconfigured) problems.push(this.misconfiguredMessage());
    if (this.writeError) problems.push(`rollout log write failed: ${this.writeError}`);
    const state = this.misconfigured ? "misconfigured" : this.judgeHealth.consecutiveFailures > 0 ? "unreachable" : "ok";
    return {
      ok: problems.length === 0,
      problems,
      judge: { state, ...this.judgeHealth, unreadableShare: this.recentCount ? this.recentBad / this.recentCount : 0, recentSamples: this.recentCount },
      writes: { ok: this.writeError === null, lastError: this.writeError },
    };
  }

  takeUsage(): UsageByStage {
    return this.meter.take();
  }

  private sanitize(text: string): string {
    return sanitizeErrorText(text, this.secrets);
  }

  /**
   * Scores a batch under one rubric version. Rejects with ServiceUnavailableError when honest rewards
   * cannot be given (judge down past the deadline, unreadable under policy "retry", misconfigured judge,
   * failed write, full queue); results are returned only once their rollouts are on disk.
   */
  async score(items: ScoreItem[], signal?: AbortSignal): Promise<ScoredItem[]> {
    if (items.length === 0) return [];
    if (this.closed) throw new ServiceUnavailableError("shutting_down", "the service is shutting down");
    if (this.gate.waiting + items.length > this.outage.queueMax + this.gate.capacity) {
      throw new ServiceUnavailableError("overloaded", `${this.gate.waiting} samples already wait for the judge (queue limit ${this.outage.queueMax}); retry later`);
    }
    const version = this.current;
    // The judges' view of each item (task view, format rule) first: an item the task cannot read is a 400 before any judge call.
    const views: ItemView[] = items.map((it, i) =>
      itemView({ task: this.o.task, protocol: this.protocol, taskDescription: this.o.taskDescription }, { prompt: it.prompt, response: it.response, reference: referenceText(it.reference), group: it.group }, i, version.version),
    );
    this.persona ??= views.find((v) => v.persona)?.persona;
    if (this.persona !== undefined && this.state.persona?.text !== this.persona) this.savePersona(this.persona);
    const started = performance.now();
    const deadlineAt = started + this.outage.deadlineMs;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new Error("deadline")), this.outage.deadlineMs);
    const onAbort = () => ac.abort(signal!.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) onAbort();
    let outcomes: Array<{ ev: Evaluation; unreadable: string[] }>;
    try {
      outcomes = await Promise.all(
        items.map(async (_it, i) => {
          const release = await this.gate.acquire(ac.signal).catch(() => {
            throw this.deadlineError(started, "waiting for a free judge slot");
          });
          try {
            return await this.scoreOne(views[i], version, deadlineAt, started, ac.signal);
          } finally {
            release();
          }
        }),
      );
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
    for (const o of outcomes) this.noteReadability(o.unreadable.length > 0);
    if (this.misconfigured) throw new ServiceUnavailableError("judge_misconfigured", this.misconfiguredMessage());
    const bad = outcomes.findIndex((o) => o.unreadable.length > 0);
    if (bad >= 0 && this.unreadablePolicy.onUnreadable === "retry") {
      throw new ServiceUnavailableError(
        "judge_unreadable",
        `judge ${this.o.judge.id} gave no readable score for item ${bad} after ${this.judges.length} asks (${outcomes[bad].unreadable.join(", ")}); ask again, or set unreadable.onUnreadable: sentinel`,
      );
    }
    const toRecord = (o: (typeof outcomes)[number], i: number): MetaRollout => ({
      id: "",
      taskDescription: views[i].senior.taskDescription,
      prompt: views[i].senior.prompt,
      response: items[i].response,
      reference: referenceText(items[i].reference),
      group: items[i].group,
      evaluation: { ...o.ev, raw: o.ev.raw.map(cutRaw), items: o.ev.items.map((x) => ({ ...x, raw: cutRaw(x.raw) })) },
      ...(items[i].reference !== undefined && typeof items[i].reference !== "string" ? { label: items[i].reference } : {}),
    });
    const good = outcomes.flatMap((o, i) => (o.unreadable.length ? [] : [toRecord(o, i)]));
    const unread = outcomes.flatMap((o, i) => (o.unreadable.length ? [toRecord(o, i)] : []));
    const writes: Promise<void>[] = [];
    if (good.length) writes.push(this.enqueueWrite("window", good));
    if (unread.length) writes.push(this.enqueueWrite("unreadable", unread));
    await Promise.all(writes);
    return outcomes.map(({ ev, unreadable }) => ({
      score: unreadable.length ? null : ev.total,
      normalized: unreadable.length ? null : ev.normalized,
      rubricVersion: ev.rubricVersion,
      unreadable: unreadable.length > 0,
      items: ev.items.map((i) => ({ name: i.name, score: i.score, min: i.min, max: i.max, rationale: i.rationale, flags: i.flags })),
      flags: unreadable.length ? [...new Set([...ev.flags, "unreadable"])] : ev.flags,
    }));
  }

  private deadlineError(started: number, doing: string): ServiceUnavailableError {
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    const last = this.judgeHealth.lastError ? `; last judge error: ${this.judgeHealth.lastError}` : "";
    return new ServiceUnavailableError("judge_unavailable", `judge ${this.o.judge.id} gave no score within the ${this.outage.deadlineMs} ms deadline (${secs} s, ${doing})${last}`);
  }

  /** One sample: every ask in turn until one is readable; each ask is retried through outages until the deadline. */
  private async scoreOne(view: ItemView, version: RubricVersion, deadlineAt: number, started: number, signal: AbortSignal): Promise<{ ev: Evaluation; unreadable: string[] }> {
    if (view.ruled) return { ev: view.ruled, unreadable: [] }; // the task's format rule decided (no judge call)
    const input: ScoreInput = view.junior;
    const ctx = { deadlineAt, overLong: false };
    return withSample(ctx, async () => {
      let last: { ev: Evaluation; unreadable: string[] } | null = null;
      for (const [k, judge] of this.judges.entries()) {
        ctx.overLong = false;
        let ev = await this.throughOutage(() => judge.score(input, version, signal), deadlineAt, started, signal);
        if (ctx.overLong) ev = { ...ev, flags: [...new Set([...ev.flags, "over-long-reply"])] };
        const unreadable = ev.flags.filter((f) => UNREADABLE_FLAGS.has(f));
        if (unreadable.length === 0) return { ev: k > 0 ? { ...ev, flags: [...ev.flags, `re-asked-${k}`] } : ev, unreadable };
        last = { ev, unreadable };
      }
      return last!;
    });
  }

  /** Retries `fn` through judge outages (exponential backoff, full jitter) until the deadline. */
  private async throughOutage<T>(fn: () => Promise<T>, deadlineAt: number, started: number, signal: AbortSignal): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await fn();
        this.judgeOk();
        return r;
      } catch (err) {
        if (!(err instanceof JudgeUnavailableError)) throw err;
        if (signal.aborted) throw this.deadlineError(started, "retrying through a judge outage");
        this.judgeFailed(err.message, cutBeforeAnyReply(err));
        if (this.stopping.signal.aborted) throw new ServiceUnavailableError("shutting_down", `the service is shutting down; judge ${this.o.judge.id} was failing: ${this.judgeHealth.lastError}`);
        // wait_n ~ U[0, min(max, base·2^(n-1))]
        const delay = Math.random() * Math.min(this.outage.backoffMaxMs, this.outage.backoffBaseMs * 2 ** Math.min(attempt - 1, 30));
        if (performance.now() + delay >= deadlineAt) throw this.deadlineError(started, "retrying through a judge outage");
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(() => {
            signal.removeEventListener("abort", onAbort);
            this.stopping.signal.removeEventListener("abort", onAbort);
            resolve();
          }, delay);
          const onAbort = () => {
            clearTimeout(t);
            signal.removeEventListener("abort", onAbort);
            this.stopping.signal.removeEventListener("abort", onAbort);
            reject(
              this.stopping.signal.aborted
                ? new ServiceUnavailableError("shutting_down", `the service is shutting down; judge ${this.o.judge.id} was failing: ${this.judgeHealth.lastError}`)
                : this.deadlineError(started, "retrying through a judge outage"),
            );
          };
          signal.addEventListener("abort", onAbort, { once: true });
          this.stopping.signal.addEventListener("abort", onAbort, { once: true });
        });
      }
    }
  }

  private judgeOk(): void {
    if (this.judgeHealth.consecutiveFailures > 0) this.log(`judge ${this.o.judge.id} answers again after ${this.judgeHealth.consecutiveFailures} failed calls`);
    this.judgeHealth.consecutiveFailures = 0;
    this.judgeHealth.lastOkAt = new Date().toISOString();
  }

  /** `cutOnly`: the deadline ended the call before the judge said anything; the earlier error stays the one reported. */
  private judgeFailed(message: string, cutOnly = false): void {
    const msg = this.sanitize(message);
    if (this.judgeHealth.consecutiveFailures === 0) this.log(`judge ${this.o.judge.id} failing; requests keep retrying for up to ${this.outage.deadlineMs} ms: ${msg}`);
    this.judgeHealth.consecutiveFailures++;
    if (!cutOnly || this.judgeHealth.lastError === null) this.judgeHealth.lastError = msg;
    this.judgeHealth.lastFailureAt = new Date().toISOString();
  }

  private misconfiguredMessage(): string {
    const p = this.unreadablePolicy;
    return `judge ${this.o.judge.id} gave unreadable replies for ${this.recentBad} of the last ${this.recentCount} samples (over ${(p.maxShare * 100).toFixed(0)}%): refusing to send rewards — check the judge model, its chat template and server, and the judge prompts`;
  }

  /** Slides the readability window and switches the misconfigured state loudly when the share crosses the limit. */
  private noteReadability(unreadable: boolean): void {
    const p = this.unreadablePolicy;
    if (this.recentCount === p.window) this.recentBad -= this.recent[this.recentPos];
    else this.recentCount++;
    this.recent[this.recentPos] = unreadable ? 1 : 0;
    this.recentBad += unreadable ? 1 : 0;
    this.recentPos = (this.recentPos + 1) % p.window;
    const over = this.recentCount >= p.minSamples && this.recentBad / this.recentCount > p.maxShare;
    if (over && !this.misconfigured) this.log(`UNHEALTHY: ${this.misconfiguredMessage()}`);
    if (!over && this.misconfigured) this.log(`judge ${this.o.judge.id} readable again (${this.recentBad} of the last ${this.recentCount} samples unreadable)`);
    this.misconfigured = over;
  }

  /** Queues records for the next group write; resolves once they are on disk. */
  private enqueueWrite(file: PendingWrite["file"], records: MetaRollout[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ file, records, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // One write for every request that finished in this event-loop turn.
        setImmediate(() => this.flush());
      }
    });
  }

  private appendLines(path: string, records: MetaRollout[]): void {
    mkdirSync(dirname(path), { recursive: true });
    let text = "";
    for (const r of records) text += JSON.stringify(r) + "\n";
    if (!this.tailChecked.has(path)) {
      this.tailChecked.add(path);
      if (endsTorn(path)) this.torn.add(path); // e.g. a kill -9 mid-write before this process started
    }
    if (this.torn.has(path)) text = "\n" + text;
    try {
      this.appendText(path, text);
      this.torn.delete(path);
    } catch (err) {
      this.torn.add(path);
      throw err;
    }
  }

  /**
   * Writes every queued record. Never throws: a failure (ENOSPC, EMFILE, …) rejects exactly the requests
   * whose records were in this write, and marks the service unhealthy until a later write succeeds.
   */
  flush(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    const windowRecs = batch.filter((b) => b.file === "window").flatMap((b) => b.records);
    const unreadRecs = batch.filter((b) => b.file === "unreadable").flatMap((b) => b.records);
    try {
      let id = this.state.scored;
      for (const r of windowRecs) r.id = `s${id++}`;
      for (const r of unreadRecs) r.id = `u${this.state.scored}-${id++}`;
      if (windowRecs.length) this.appendLines(stepFile(this.o.runDir, this.state.window), windowRecs);
      if (unreadRecs.length) this.appendLines(runPath(this.o.runDir, UNREADABLE_FILE), unreadRecs);
      this.state.scored += windowRecs.length;
      this.windowSize += windowRecs.length;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const msg = this.sanitize(`${e.code ? `${e.code}: ` : ""}${e.message}`);
      if (this.writeError === null) this.log(`UNHEALTHY: cannot write rollouts in ${this.o.runDir}: ${msg}`);
      this.writeError = msg;
      const fail = new ServiceUnavailableError("write_failed", `could not record the scored rollouts (${msg}); the rewards were not sent — retry once the disk problem is fixed`);
      for (const b of batch) b.reject(fail);
      return;
    }
    if (this.state.windowStart === undefined) {
      // A state file from before windowStart existed: record it once (the rollouts above are already safe).
      this.state.windowStart = this.state.scored - this.windowSize;
      try {
        this.saveState();
      } catch {
        this.state.windowStart = undefined; // try again with the next write
      }
    }
    if (this.writeError !== null) this.log(`rollout writes work again (after: ${this.writeError})`);
    this.writeError = null;
    for (const b of batch) b.resolve();
    this.observe(windowRecs);
    const due = this.metaDue();
    if (due) this.closeWindow(due.decision);
  }

  /** Samples per adaptive-schedule point (a tenth of metaEvery, at least 1). */
  private get bucketSize(): number {
    return Math.max(1, Math.ceil(this.o.metaEvery / 10));
  }

  /** Adaptive schedule: fold newly recorded samples into bucket summaries. */
  private observe(recs: MetaRollout[]): void {
    if (this.o.metaSchedule !== "adaptive") return;
    for (const r of recs) {
      this.bucket.push({ normalized: r.evaluation?.normalized ?? null, response: r.response, flags: r.evaluation?.flags ?? [] });
      if (this.bucket.length >= this.bucketSize) {
        this.metaPoints.push(windowPoint(this.state.scored, this.bucket));
        this.bucket = [];
      }
    }
  }

  /**
   * The meta-step schedule. Fixed: the window holds metaEvery samples. Adaptive: decideAdaptive on the bucket
   * summaries, between ⌈metaEvery/3⌉ and 2 × metaEvery samples (in buckets); sinceLast counts buckets of the
   * open window, so a restart, which keeps the window but not the summaries, still honours the maximum interval.
   */
  private metaScheduler(): MetaScheduler<ServeMetaInput, MetaStepResult, ServeMetaRecord> {
    const o = this.o;
    const b = this.bucketSize;
    const adaptive = adaptiveOptions({ minInterval: Math.max(1, Math.ceil(o.metaEvery / 3 / b)), maxInterval: Math.max(2, Math.ceil((2 * o.metaEvery) / b)), ...o.adaptive });
    const trigger: MetaTrigger =
      o.metaEvery <= 0
        ? never
        : o.metaSchedule === "adaptive"
          ? decisionTrigger(`adaptive (${adaptive.minInterval}–${adaptive.maxInterval} buckets of ${b} samples)`, (c) => decideAdaptive(c.points ?? [], c.sinceLast ?? 0, adaptive))
          : everySamples(o.metaEvery);
    return new MetaScheduler<ServeMetaInput, MetaStepResult, ServeMetaRecord>({
      runDir: o.runDir,
      trigger,
      run: (job, signal) => this.runMeta(job, signal),
      // metaStep reports LLM failures as ok:false; a throw is a bug: logged, the rubric stays, the step stays pending.
      onError: (err) => {
        throw err;
      },
      commitOutcome: (r) => ({ ok: r.ok, summary: r.summary, version: r.version?.version ?? null, logPath: r.logPath, ...(r.error ? { error: r.error } : {}) }),
      commitState: () => ({ rubricVersion: this.store.latest()!.version }),
      onCommit: (r) => this.applyMeta(r),
      finished: (job) => this.finishedBeforeMarker(job),
      discard: (job) => this.discardHalfMade(job),
    });
  }

  /** Is a meta step due after this flush (never while one runs)? With the adaptive schedule, why. */
  private metaDue(): { decision?: MetaDecision } | null {
    const d = this.meta.decide({ step: this.state.scored, windowSamples: this.windowSize, sinceLast: Math.floor(this.windowSize / this.bucketSize), points: this.metaPoints });
    return d.due ? (d.decision ? { decision: d.decision } : {}) : null;
  }

  /** Runs a meta step now on the open window (POST /v1/meta-step). Resolves when it has finished. */
  async metaStepNow(): Promise<MetaStepResult | null> {
    if (this.metaDone) {
      await this.metaDone;
      return this.lastMeta;
    }
    if (this.windowSize === 0) return null;
    if (!this.closeWindow()) throw new ServiceUnavailableError("write_failed", `could not record the window's end: ${this.writeError}`);
    await this.metaDone;
    return this.lastMeta;
  }

  /** Ends the open meta window: the pending-meta mark is on disk before the meta step starts. */
  private closeWindow(decision?: MetaDecision): boolean {
    const before = { ...this.state };
    this.state.pendingMeta = this.state.window;
    this.state.pendingMetaKey = this.state.scored;
    this.state.window += 1;
    this.state.windowStart = this.state.scored;
    try {
      this.saveState(true);
    } catch (err) {
      this.state = before;
      this.writeError = this.sanitize((err as Error).message);
      this.log(`UNHEALTHY: cannot write serve-state.json: ${this.writeError}`);
      return false;
    }
    this.windowSize = 0;
    this.metaPoints = [];
    this.bucket = [];
    this.startMeta({ key: this.state.pendingMetaKey, input: { window: before.window }, ...(decision ? { decision } : {}) });
    return true;
  }

  /**
   * Restart with a meta step pending: a kill can land between any two of its writes (log, vNNNN.json, vNNNN.txt,
   * log "done", commit marker, serve-state.json). The scheduler adopts a step that finished (marker, or its log in
   * a final state) — a second run would make a second version from the same window — and otherwise discards the
   * half-made one (below) so it re-runs on the same window with the same seed.
   */
  private recoverMeta(window: number, key: number): void {
    const job: MetaJob<ServeMetaInput> = { key, input: { window } };
    const commit = this.meta.recover(job);
    this.current = this.store.latest()!;
    if (!commit) {
      this.startMeta(job);
      return;
    }
    this.state.pendingMeta = null;
    delete this.state.pendingMetaKey;
    this.state.metaSteps += 1;
    this.saveState(true);
    this.log(`meta step ${key} (window ${window}) had finished before the restart: ${commit.outcome.summary}; not re-run`);
  }

  /** A pending step with no marker whose log reached a final state finished (killed just before its marker). */
  private finishedBeforeMarker(job: MetaJob<ServeMetaInput>): { outcome: ServeMetaRecord; state: unknown } | null {
    const logPath = metaLogFile(job.key);
    const logAbs = runPath(this.o.runDir, logPath);
    if (!existsSync(logAbs)) return null;
    let log: z.output<typeof metaLogStateSchema>;
    try {
      const r = metaLogStateSchema.safeParse(JSON.parse(readFileSync(logAbs, "utf8")));
      if (!r.success) return null;
      log = r.data;
    } catch {
      return null; // torn or corrupt: half-made
    }
    if (!FINAL_META_STATES.has(log.state)) return null;
    const latest = this.store.latest()!.version;
    return { outcome: { ok: log.ok ?? true, summary: log.summary ?? log.state, version: log.toVersion ?? latest, logPath }, state: { rubricVersion: latest } };
  }

  /** A half-made step's rubric versions move aside (store.rollbackAfter, nothing deleted); the scheduler moves its logs. */
  private discardHalfMade(job: MetaJob<ServeMetaInput>): void {
    const made = this.store.list().filter((v) => v.author.kind === "meta" && v.author.step === job.key);
    if (!made.length) return;
    const moved = this.store.rollbackAfter(Math.min(...made.map((v) => v.version)) - 1);
    this.log(`meta step ${job.key} (window ${job.input.window}) was interrupted: moved its half-made rubric version(s) v${moved.join(", v")} aside`);
  }

  private startMeta(job: MetaJob<ServeMetaInput>): void {
    this.meta.start(job);
    this.metaDone = this.meta.settle().then(
      () => undefined,
      // A bug (metaStep reports LLM failures as ok:false) or an unwritable marker: keep serving with the current rubric.
      (err) => this.log(`meta step crashed: ${(err as Error).stack ?? err}`),
    );
    const done = this.metaDone;
    void done.then(() => {
      if (this.metaDone === done) this.metaDone = null;
    });
  }

  /** One meta step on a closed window (run by the scheduler, in the background). */
  private async runMeta(job: MetaJob<ServeMetaInput>, signal: AbortSignal): Promise<MetaStepResult> {
    const window = job.input.window;
    const templates = this.o.templatesDir ? loadTemplates(this.o.templatesDir) : undefined;
    const { records, seen, skipped } = await sampleJsonlWindow<MetaRollout>(stepFile(this.o.runDir, window), this.o.metaWindowCap ?? 10_000, this.rng.fork(`window-${window}`));
    if (skipped) this.log(`window ${window}: skipped ${skipped} unreadable log lines`);
    if (seen > records.length) this.log(`window ${window}: ${seen} rollouts, meta step reads a uniform sample of ${records.length}`);
    const guard = this.o.guard
      ? judgeGuard({ judge: this.judges[0], window: records, runDir: this.o.runDir, store: this.store, rng: this.rng.fork(`guard-${window}`), options: this.o.guard, signal })
      : undefined;
    const r = await metaStep({
      protocol: this.protocol,
      ...(this.persona ? { persona: this.persona } : {}),
      ...(guard ? { guard } : {}),
      ...(job.decision ? { trigger: job.decision } : {}),
      model: this.metaModel,
      rollouts: records,
      store: this.store,
      step: job.key,
      runDir: this.o.runDir,
      rng: this.rng,
      samples: this.o.metaSamples,
      prescreen: this.o.prescreen,
      templates,
      signal,
    });
    this.lastMeta = r;
    return r;
  }

  /** The committed step's result: later batches score with the new version (one assignment); the pending mark clears. */
  private applyMeta(r: MetaStepResult): void {
    if (r.ok && r.version) this.current = r.version;
    this.state.pendingMeta = null;
    delete this.state.pendingMetaKey;
    this.state.metaSteps += 1;
    try {
      this.saveState();
    } catch (err) {
      this.writeError = this.sanitize((err as Error).message);
      this.log(`UNHEALTHY: cannot write serve-state.json after a meta step: ${this.writeError}`);
    }
    this.o.onMeta?.(r);
  }

  /** Shutdown begins: requests waiting out a judge outage answer 503 now instead of holding the shutdown. */
  beginShutdown(): void {
    this.stopping.abort();
  }

  /** Stops a running meta step (it is re-run after a restart), marks the run stopped and frees the run directory. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopping.abort();
    this.flush();
    await this.meta.abort(); // a running meta step stops uncommitted: pendingMeta stays for the restart
    if (this.metaDone) await this.metaDone;
    try {
      if (this.running) this.writeStatus("stopped");
    } catch (err) {
      this.log(`could not write status.json: ${this.sanitize((err as Error).message)}`);
    } finally {
      this.lock.release();
    }
  }
}

export { JudgeUnavailableError };

/** The request's deadline cut the call's first try: the judge gave no error of its own in this call. */
function cutBeforeAnyReply(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof LlmError) return e.budgetCut && e.tries === 1;
  }
  return false;
}
