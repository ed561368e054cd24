/**
 * The reward service's state machine, independent of HTTP: scores samples with the junior judge under the
 * current rubric version, keeps every scored rollout in the run directory, and every `metaEvery` samples
 * runs a meta step in the background. A new rubric version is switched in with one assignment; each batch
 * captures the version it started with, so every reply names the version that scored it.
 *
 * Persistence (docs/run-dir.md): rubrics/ and meta/ via the rubric store and metaStep; rollouts of meta
 * window w in rollouts/step-NNNNNN.jsonl; serve-state.json {window, scored, pendingMeta}. A restart
 * continues from the newest rubric, reloads the open window, and re-runs a meta step a crash interrupted.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { RubricJudge } from "../judge/rubric-judge.ts";
import { type ProtocolName, type ProtocolProfile, resolveProtocol, withOverrides } from "../judge/protocol.ts";
import { loadTemplates } from "../judge/templates.ts";
import { JudgeUnavailableError, type Evaluation } from "../judge/types.ts";
import type { ChatModel, UsageByStage } from "../llm/types.ts";
import { UsageMeter } from "../llm/usage.ts";
import { MeteredModel } from "../meta/metered.ts";
import { metaStep, type MetaRollout, type MetaStepResult } from "../meta/meta-step.ts";
import { loadRubricFile } from "../rubric/format.ts";
import { RubricStore } from "../rubric/store.ts";
import type { RubricVersion } from "../rubric/types.ts";
import { appendJsonl, readJsonl, writeJsonAtomic } from "../util/atomic.ts";
import { Rng } from "../util/rng.ts";

export interface ServiceOptions {
  runDir: string;
  rubricFile: string;
  taskDescription: string;
  judge: ChatModel;
  metaJudge?: ChatModel;
  mode: "per-item" | "single-call";
  /** Judge protocol profile; default "paper". */
  protocol?: ProtocolName;
  judgeSeesReference?: boolean;
  metaEvery: number;
  metaSamples: number;
  prescreen: boolean;
  seed: number;
  concurrency: number;
  templatesDir?: string;
  /** Group rollout-log writes over this many ms (default 50). */
  flushMs?: number;
  /** Called whenever a meta step ends (metrics, logs). */
  onMeta?: (r: MetaStepResult) => void;
}

export interface ScoreItem {
  prompt: string;
  response: string;
  reference?: string;
  group?: string;
  metadata?: Record<string, unknown>;
}

export interface ScoredItem {
  score: number;
  normalized: number;
  rubricVersion: number;
  items: Array<{ name: string; score: number; min: number; max: number; rationale: string; flags: string[] }>;
  flags: string[];
}

interface ServeState {
  window: number;
  scored: number;
  /** Window whose meta step started but did not finish (re-run on restart). */
  pendingMeta: number | null;
  metaSteps: number;
}

const stepFile = (runDir: string, window: number) => join(runDir, "rollouts", `step-${String(window).padStart(6, "0")}.jsonl`);

export class RewardService {
  readonly store: RubricStore;
  readonly protocol: ProtocolProfile;
  private current: RubricVersion;
  private readonly judge: RubricJudge;
  private readonly meter = new UsageMeter();
  private readonly metaModel: ChatModel;
  private state: ServeState;
  private buffer: MetaRollout[] = [];
  private metaRun: Promise<void> | null = null;
  private metaAbort = new AbortController();
  private rng: Rng;
  /** Write-behind buffer of scored rollouts (window → records), flushed every flushMs and on close. */
  private unflushed = new Map<number, MetaRollout[]>();
  private flushTimer: NodeJS.Timeout | null = null;
  lastMeta: MetaStepResult | null = null;

  constructor(private readonly o: ServiceOptions) {
    this.store = RubricStore.open(o.runDir);
    this.current = this.store.latest() ?? this.store.initialize(loadRubricFile(o.rubricFile));
    const templates = o.templatesDir ? loadTemplates(o.templatesDir) : undefined;
    const base = resolveProtocol(o.protocol);
    this.protocol = o.judgeSeesReference === undefined ? base : withOverrides(base, { junior: { seesReference: o.judgeSeesReference } });
    this.judge = new RubricJudge({ model: new MeteredModel(o.judge, this.meter), mode: o.mode, concurrency: o.concurrency, templates, protocol: this.protocol });
    this.metaModel = new MeteredModel(o.metaJudge ?? o.judge, this.meter);
    this.state = this.loadState();
    this.rng = new Rng(`serve-${o.seed}-${this.state.metaSteps}`);
    this.buffer = readJsonl<MetaRollout>(stepFile(o.runDir, this.state.window)).records;
    writeJsonAtomic(join(o.runDir, "status.json"), { state: "running", kind: "reward-service", pid: process.pid, updatedAt: new Date().toISOString(), rubricVersion: this.current.version });
    if (this.state.pendingMeta !== null) {
      const w = this.state.pendingMeta;
      this.startMeta(readJsonl<MetaRollout>(stepFile(o.runDir, w)).records);
    }
  }

  private loadState(): ServeState {
    const p = join(this.o.runDir, "serve-state.json");
    if (!existsSync(p)) return { window: 0, scored: 0, pendingMeta: null, metaSteps: 0 };
    try {
      const s = JSON.parse(readFileSync(p, "utf8")) as ServeState;
      if (!Number.isInteger(s.window) || !Number.isInteger(s.scored)) throw new Error("bad fields");
      return { window: s.window, scored: s.scored, pendingMeta: s.pendingMeta ?? null, metaSteps: s.metaSteps ?? 0 };
    } catch (err) {
      throw new Error(`${p}: unreadable service state (${(err as Error).message}); move it aside to start a new window`);
    }
  }

  private saveState(durable = false): void {
    writeJsonAtomic(join(this.o.runDir, "serve-state.json"), this.state, { durable });
  }

  get rubric(): RubricVersion {
    return this.current;
  }

  get metaRunning(): boolean {
    return this.metaRun !== null;
  }

  get stats(): { scored: number; window: number; windowSize: number; metaSteps: number } {
    return { scored: this.state.scored, window: this.state.window, windowSize: this.buffer.length, metaSteps: this.state.metaSteps };
  }

  takeUsage(): UsageByStage {
    return this.meter.take();
  }

  /**
   * Scores a batch under one rubric version. Throws JudgeUnavailableError when any response could not be
   * judged (after the client's retries): the caller answers 503 rather than inventing a score.
   */
  async score(items: ScoreItem[], signal?: AbortSignal): Promise<ScoredItem[]> {
    if (items.length === 0) return [];
    const version = this.current;
    const outcomes = await this.judge.scoreBatchSettled(
      items.map((it) => ({ taskDescription: this.o.taskDescription, prompt: it.prompt, response: it.response, reference: it.reference, group: it.group })),
      version,
      { signal },
    );
    const failed = outcomes.find((o) => !o.ok);
    if (failed && !failed.ok) throw failed.error;
    const evals = outcomes.map((o) => (o as { ok: true; evaluation: Evaluation }).evaluation);
    this.record(items, evals);
    return evals.map((e) => ({
      score: e.total,
      normalized: e.normalized,
      rubricVersion: e.rubricVersion,
      items: e.items.map((i) => ({ name: i.name, score: i.score, min: i.min, max: i.max, rationale: i.rationale, flags: i.flags })),
      flags: e.flags,
    }));
  }

  private record(items: ScoreItem[], evals: Evaluation[]): void {
    const base = this.state.scored;
    const rollouts: MetaRollout[] = items.map((it, i) => ({
      id: `s${base + i}`,
      taskDescription: this.o.taskDescription,
      prompt: it.prompt,
      response: it.response,
      reference: it.reference,
      group: it.group,
      evaluation: evals[i],
    }));
    const pending = this.unflushed.get(this.state.window) ?? [];
    pending.push(...rollouts);
    this.unflushed.set(this.state.window, pending);
    this.buffer.push(...rollouts);
    this.state.scored += items.length;
    if (this.o.metaEvery > 0 && this.buffer.length >= this.o.metaEvery && !this.metaRun) this.closeWindow();
    else this.flush(this.o.flushMs ?? 50);
  }

  /** Ends the open meta window: its rollouts and the pending-meta mark are on disk before the meta step starts. */
  private closeWindow(): void {
    const batch = this.buffer;
    this.state.pendingMeta = this.state.window;
    this.state.window += 1;
    this.buffer = [];
    this.flush();
    this.startMeta(batch);
  }

  /**
   * Writes buffered rollouts and the state. Per-request file writes would dominate the service's latency,
   * so writes are grouped: at most `flushMs` of scored rollouts are in memory only (a kill -9 in that window
   * loses those log lines — never a reply's score, and never a rubric version or meta log).
   */
  flush(afterMs = 0): void {
    if (afterMs > 0) {
      this.flushTimer ??= setTimeout(() => this.flush(), afterMs);
      return;
    }
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    for (const [window, records] of this.unflushed) appendJsonl(stepFile(this.o.runDir, window), records, { durable: false });
    this.unflushed.clear();
    this.saveState();
  }

  /** Runs a meta step now on the open window (POST /v1/meta-step). Resolves when it has finished. */
  async metaStepNow(): Promise<MetaStepResult | null> {
    if (this.metaRun) {
      await this.metaRun;
      return this.lastMeta;
    }
    if (this.buffer.length === 0) return null;
    this.closeWindow();
    await this.metaRun;
    return this.lastMeta;
  }

  private startMeta(rollouts: MetaRollout[]): void {
    const templates = this.o.templatesDir ? loadTemplates(this.o.templatesDir) : undefined;
    this.metaRun = (async () => {
      try {
        const r = await metaStep({
          protocol: this.protocol,
          model: this.metaModel,
          rollouts,
          store: this.store,
          step: this.state.scored,
          runDir: this.o.runDir,
          rng: this.rng,
          samples: this.o.metaSamples,
          prescreen: this.o.prescreen,
          templates,
          signal: this.metaAbort.signal,
        });
        this.lastMeta = r;
        if (r.ok && r.version) this.current = r.version; // the switch: later batches score with the new version
        if (this.metaAbort.signal.aborted) return; // interrupted by shutdown: keep pendingMeta for the restart
        this.state.pendingMeta = null;
        this.state.metaSteps += 1;
        this.saveState();
        this.o.onMeta?.(r);
      } catch (err) {
        // metaStep reports LLM failures as ok:false; anything else is a bug — keep serving with the current rubric.
        process.stderr.write(`mpo serve: meta step crashed: ${(err as Error).stack ?? err}\n`);
      } finally {
        this.metaRun = null;
      }
    })();
  }

  /** Stops a running meta step (it is re-run after a restart) and marks the run stopped. */
  async close(): Promise<void> {
    this.flush();
    this.metaAbort.abort();
    if (this.metaRun) await this.metaRun.catch(() => undefined);
    writeJsonAtomic(join(this.o.runDir, "status.json"), { state: "stopped", kind: "reward-service", pid: process.pid, updatedAt: new Date().toISOString(), rubricVersion: this.current.version });
  }
}

export { JudgeUnavailableError };
