/**
 * When MPO's meta steps run, and how they survive a crash — one implementation for the trainer (src/rl)
 * and the reward service (src/serve).
 *
 *   caller, after each step/batch:   if (s.isDue(clock)) { persist pending = job; s.start(job) }
 *   the meta step runs in the background (off the critical path: generation/scoring go on meanwhile)
 *   → it writes its log and the next rubric version → the scheduler writes the COMMIT MARKER
 *     meta/commits/step-KEY.json {outcome, state}: from here on the step is final
 *   → onCommit(outcome) applies it (the service switches the rubric at once); the trainer `settle()`s it
 *     before scoring with the new rubric → caller persists pending = null.
 *
 * Due-ness is a pluggable `MetaTrigger` (every k steps, every k samples, anyOf(...); an adaptive schedule is
 * one more trigger): the scheduler only adds "never two at once".
 *
 * Crash safety. A meta step's outputs appear one file at a time (log, vNNNN.json, vNNNN.txt, log "done",
 * marker), and a kill -9 can land between any two. A step counts as done only once its marker exists. On
 * restart the caller hands its persisted pending job to `recover()`:
 *   - marker present → the step finished: its outcome and state are adopted, it is never re-run (its
 *     rubric version and meta log stay as they are);
 *   - no marker, but the caller's `finished(job)` finds the step's own proof of completion (the service: its
 *     meta log reached a final state before a kill that landed just before the marker) → adopted likewise,
 *     and the marker is written now;
 *   - no marker → the step is half-made: `discard` undoes what it wrote (rubric versions move aside, never
 *     deleted), its meta logs move to moved-aside/, and the caller re-runs it from the same input.
 * Markers with keys above a checkpoint being resumed belong to an abandoned future: `rollBackAfter` moves
 * them aside so they can never be adopted by mistake.
 */
import { existsSync, mkdirSync, readdirSync, renameSync } from "node:fs";
import { z } from "zod";
import { readJsonFileWith } from "../util/state-file.ts";
import type { MetaDecision, WindowPoint } from "./triggers.ts";
import { writeJsonAtomic } from "../util/atomic.ts";
import { META_COMMITS_DIR, META_DIR, META_LOG_RE, metaCommitFile, movedAsideDir, runPath, stepName } from "../util/run-layout.ts";

// ---------------------------------------------------------------- triggers (when is a meta step due?)

/** What a trigger sees when asked whether a meta step is due. */
export interface MetaClock {
  /** The trainer's step just committed, or the service's count of scored samples. */
  step: number;
  /** Samples gathered since the last meta step started (the open window). */
  windowSamples: number;
  /** Steps (trainer) or window points (service) since the last meta step; for decision-style triggers. */
  sinceLast?: number;
  /** Per-step summaries of the window since the last meta step (./triggers.ts), for adaptive triggers. */
  points?: readonly WindowPoint[];
}

/** A pluggable due-ness policy: a plain yes/no, or a decision with its reason and evidence (./triggers.ts). */
export interface MetaTrigger {
  /** For logs and docs, e.g. "every 10 steps". */
  readonly name: string;
  due(clock: MetaClock): boolean | MetaDecision;
}

/** A trigger from a decision function such as decideAdaptive (the decision travels with the job). */
export function decisionTrigger(name: string, decide: (clock: MetaClock) => MetaDecision): MetaTrigger {
  return { name, due: decide };
}

/** Trainer schedule: after every k-th step, but not after the last one (no step would use its rubric). */
export function everySteps(k: number, opts: { lastStep?: number } = {}): MetaTrigger {
  return {
    name: k > 0 ? `every ${k} steps` : "never",
    due: (c) => k > 0 && c.step % k === 0 && (opts.lastStep === undefined || c.step < opts.lastStep),
  };
}

/** Service schedule: once the open window holds k samples. */
export function everySamples(k: number): MetaTrigger {
  return { name: k > 0 ? `every ${k} samples` : "never", due: (c) => k > 0 && c.windowSamples >= k };
}

export const never: MetaTrigger = { name: "never", due: () => false };

/** Due when any of the triggers is. */
export function anyOf(...triggers: MetaTrigger[]): MetaTrigger {
  const yes = (d: boolean | MetaDecision) => (typeof d === "boolean" ? d : d.due);
  return { name: triggers.map((t) => t.name).join(" or ") || "never", due: (c) => triggers.some((t) => yes(t.due(c))) };
}

// ---------------------------------------------------------------- the scheduler

/** One meta step to run: `key` names its log and marker (the trainer's step; the service's sample count). */
export interface MetaJob<I> {
  key: number;
  input: I;
  /** Why it is due, when the trigger gave a decision (recorded by the caller in its logs/metrics). */
  decision?: MetaDecision;
}

/** The commit marker's content (`outcome`: what `commitOutcome` records of the step's outcome). */
export interface MetaCommit<R> {
  key: number;
  outcome: R;
  /** Caller state after the step (the trainer: reward.saveState(), i.e. the rubric version it made). */
  state: unknown;
  committedAt: string;
}

export interface MetaSettled<I, O> {
  job: MetaJob<I>;
  outcome: O;
  /** False when the step was aborted (shutdown): nothing committed, a restart re-runs it. */
  committed: boolean;
}

export interface MetaSchedulerOptions<I, O, R = O> {
  runDir: string;
  trigger: MetaTrigger;
  /** Runs one meta step (writes its log and rubric version). Expected failures are outcomes, not throws. */
  run: (job: MetaJob<I>, signal: AbortSignal) => Promise<O>;
  /** The outcome recorded when `run` throws (a bug or an unexpected error): the run goes on with the old rubric. */
  onError: (err: unknown, job: MetaJob<I>) => O;
  /** State stored in the marker, read after the step finished (default: none). */
  commitState?: (outcome: O, job: MetaJob<I>) => unknown;
  /** What the marker records of the outcome (plain JSON; default: the outcome itself). */
  commitOutcome?: (outcome: O, job: MetaJob<I>) => R;
  /** Called once the marker is written (the service switches its rubric here). */
  onCommit?: (outcome: O, job: MetaJob<I>) => void;
  /**
   * recover() without a marker: the step's own proof that it finished anyway (a kill between its last write
   * and the marker), as the marker would have recorded it; null = half-made. Default: none (always half-made).
   */
  finished?: (job: MetaJob<I>) => { outcome: R; state: unknown } | null;
  /** Undoes what a half-made step wrote (rubric versions), called by recover() when it did not finish. */
  discard?: (job: MetaJob<I>) => void;
}

const commitSchema = z.object({
  key: z.number().int().nonnegative(),
  outcome: z.unknown(),
  state: z.unknown(),
  committedAt: z.string(),
});

export class MetaScheduler<I, O, R = O> {
  /** The last started step until someone settle()s it (the trainer does; the service applies results in onCommit). */
  private current: { job: MetaJob<I>; done: Promise<MetaSettled<I, O>> } | null = null;
  private inFlight: MetaJob<I> | null = null;
  private abortController = new AbortController();

  constructor(private readonly o: MetaSchedulerOptions<I, O, R>) {}

  get trigger(): MetaTrigger {
    return this.o.trigger;
  }

  /** The job running now, if any. */
  get running(): MetaJob<I> | null {
    return this.inFlight;
  }

  /** The last started job while it is running or finished but not yet settle()d. */
  get unsettled(): MetaJob<I> | null {
    return this.current?.job ?? null;
  }

  /** True when the trigger says so and no meta step is running. */
  isDue(clock: MetaClock): boolean {
    return this.decide(clock).due;
  }

  /** The trigger's answer with its reason (plain triggers: reason "interval"/"quiet"); never due while one runs. */
  decide(clock: MetaClock): { due: boolean; decision?: MetaDecision } {
    if (this.inFlight) return { due: false };
    const d = this.o.trigger.due(clock);
    return typeof d === "boolean" ? { due: d } : { due: d.due, decision: d };
  }

  /**
   * Starts a meta step in the background. The caller has persisted `job` as pending before (so a crash
   * re-runs it). A marker left under the same key by an abandoned attempt is moved aside first.
   */
  start(job: MetaJob<I>): void {
    if (this.inFlight) throw new Error(`meta step ${job.key} started while ${this.inFlight.key} is running`);
    this.moveAside([metaCommitFile(job.key)], `stale-meta-${job.key}`);
    const signal = this.abortController.signal;
    const done = (async (): Promise<MetaSettled<I, O>> => {
      let outcome: O;
      try {
        outcome = await this.o.run(job, signal);
      } catch (err) {
        outcome = this.o.onError(err, job);
      }
      if (signal.aborted) return { job, outcome, committed: false };
      this.writeCommit(job.key, this.o.commitOutcome ? this.o.commitOutcome(outcome, job) : (outcome as unknown as R), this.o.commitState?.(outcome, job) ?? null);
      this.o.onCommit?.(outcome, job);
      return { job, outcome, committed: true };
    })();
    this.current = { job, done };
    this.inFlight = job;
    // The slot frees itself when the step ends, settled or not (the service never awaits).
    const free = () => {
      if (this.inFlight === job) this.inFlight = null;
    };
    void done.then(free, free);
  }

  /** Waits for the last started meta step and hands its result over once (null when there is none). */
  async settle(): Promise<MetaSettled<I, O> | null> {
    const c = this.current;
    if (!c) return null;
    const r = await c.done;
    if (this.current === c) this.current = null;
    return r;
  }

  /** Stops the running step without committing it (shutdown); a restart re-runs it. */
  async abort(): Promise<void> {
    this.abortController.abort();
    await this.settle().catch(() => undefined);
    this.abortController = new AbortController();
  }

  /** The marker of `key`, if that meta step committed. Throws naming the file when the marker is corrupt. */
  commitOf(key: number): MetaCommit<R> | null {
    const p = runPath(this.o.runDir, metaCommitFile(key));
    if (!existsSync(p)) return null;
    const c = readJsonFileWith(p, commitSchema, "meta-step commit marker");
    if (c.key !== key) throw new Error(`${p}: marker says key ${c.key}, expected ${key}`);
    return c as MetaCommit<R>;
  }

  private writeCommit(key: number, outcome: R, state: unknown): MetaCommit<R> {
    const commit: MetaCommit<R> = { key, outcome, state, committedAt: new Date().toISOString() };
    writeJsonAtomic(runPath(this.o.runDir, metaCommitFile(key)), commit, { durable: true });
    return commit;
  }

  /**
   * After a restart, for the job the caller had persisted as pending: the committed result (adopt it, do not
   * re-run), or null after discarding the half-made step (the caller then `start`s it again). Synchronous, so a
   * caller can recover in its constructor before anything else can start a step.
   */
  recover(job: MetaJob<I>): MetaCommit<R> | null {
    const c = this.commitOf(job.key);
    if (c) return c;
    const f = this.o.finished?.(job);
    if (f) return this.writeCommit(job.key, f.outcome, f.state);
    this.o.discard?.(job);
    const logs = this.metaLogsOf(job.key);
    this.moveAside(logs, `half-made-meta-${job.key}`);
    return null;
  }

  /** Moves markers with keys above `key` aside (they belong to steps after the checkpoint being resumed). */
  rollBackAfter(key: number): number[] {
    const dir = runPath(this.o.runDir, META_COMMITS_DIR);
    if (!existsSync(dir)) return [];
    const keys = readdirSync(dir)
      .map((f) => /^step-(\d+)\.json$/.exec(f))
      .filter((m): m is RegExpExecArray => !!m)
      .map((m) => Number(m[1]))
      .filter((k) => k > key);
    this.moveAside(keys.map(metaCommitFile), `rolled-back-after-${key}`);
    return keys;
  }

  /** Run-dir-relative meta logs of one key: meta/step-KEY.json and meta/step-KEY-<kind>.json. */
  private metaLogsOf(key: number): string[] {
    const dir = runPath(this.o.runDir, META_DIR);
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((f) => {
        const m = META_LOG_RE.exec(f);
        return !!m && Number(m[1]) === key && f.startsWith(stepName(key));
      })
      .map((f) => `${META_DIR}/${f}`);
  }

  /** Moves run-dir-relative files into moved-aside/<time>-<why>/ keeping their relative paths. Never deletes. */
  private moveAside(rels: string[], why: string): void {
    const present = rels.filter((r) => existsSync(runPath(this.o.runDir, r)));
    if (present.length === 0) return;
    const dest = movedAsideDir(why);
    for (const r of present) {
      const to = runPath(this.o.runDir, `${dest}/${r}`);
      mkdirSync(runPath(this.o.runDir, `${dest}/${r.split("/").slice(0, -1).join("/")}`), { recursive: true });
      renameSync(runPath(this.o.runDir, r), to);
    }
  }
}
