/**
 * What a training run shows while it runs, kept out of the loop in trainer.ts:
 *   - RUN/status.json (`writeRunStatus`): state, step, rubric version — what the dashboard and `mpo` read;
 *   - the human output (`Progress`): a cli-progress bar on a terminal (log lines print above it), else a
 *     line every ~5% of the steps; meta-step summaries and skipped steps always get their own line.
 */
import { writeJsonAtomic } from "../util/atomic.ts";
import { runPath, STATUS_FILE } from "../util/run-layout.ts";
import type { StepMetrics } from "./trainer.ts";

export type RunState = "running" | "finished" | "crashed" | "stopped";

export interface RunStatus {
  state: RunState;
  step: number;
  totalSteps: number;
  task: string;
  algorithm: string;
  startedAt: string;
  rubricVersion: number;
  message?: string;
}

/** Writes RUN/status.json atomically (docs/run-dir.md). */
export function writeRunStatus(runDir: string, s: RunStatus): void {
  writeJsonAtomic(runPath(runDir, STATUS_FILE), {
    state: s.state,
    step: s.step,
    totalSteps: s.totalSteps,
    task: s.task,
    algorithm: s.algorithm,
    arm: null,
    pid: process.pid,
    startedAt: s.startedAt,
    updatedAt: new Date().toISOString(),
    rubricVersion: s.rubricVersion,
    ...(s.message ? { message: s.message } : {}),
  });
}

interface Bar {
  update(v: number, payload?: object): void;
  stop(): void;
}

export interface ProgressOptions {
  totalSteps: number;
  /** Rewards a meta step can evolve show their rubric version and normalized score. */
  hasRubric: boolean;
  /** The bar (default: when stderr is a terminal). */
  bar?: boolean;
  /** Where lines go without a bar. */
  log: (line: string) => void;
}

export class Progress {
  private constructor(
    private readonly o: ProgressOptions,
    private readonly bar: Bar | null,
    private current: number,
  ) {}

  /** Starts the bar at `step` when wanted (cli-progress is loaded only then). */
  static async start(o: ProgressOptions, step: number, rubricVersion: number): Promise<Progress> {
    if (!(o.bar ?? !!process.stderr.isTTY)) return new Progress(o, null, step);
    const { default: cliProgress } = await import("cli-progress");
    const bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format: `step {value}/{total} |{bar}| score {score} kl {kl}${o.hasRubric ? " rubric v{rv}" : ""} | {duration_formatted} eta {eta_formatted}`,
        hideCursor: true,
        etaBuffer: 20,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(o.totalSteps, step, { score: "-", kl: "-", rv: rubricVersion });
    return new Progress(o, bar, step);
  }

  /** One line of output; with a bar, printed above it without tearing it. */
  readonly log = (line: string): void => {
    if (!this.bar) return this.o.log(line);
    process.stderr.write("\r\x1b[K" + line + "\n");
    this.bar.update(this.current);
  };

  /** After each committed step. */
  step(m: StepMetrics): void {
    this.current = m.step;
    if (m.meta) this.log(`mpo: step ${m.step}: ${m.meta.summary}${m.meta.ok ? "" : ` (meta step failed: ${m.meta.error ?? "unknown"})`}`);
    if (m.skipped) this.log(`mpo: step ${m.step} skipped: ${m.skipped}`);
    if (this.bar) this.bar.update(m.step, { score: this.scoreText(m), kl: m.kl.toFixed(3), rv: m.rubricVersion });
    else {
      const every = Math.max(1, Math.floor(this.o.totalSteps / 20));
      if (m.step % every === 0 || m.step === this.o.totalSteps)
        this.log(`mpo: step ${m.step}/${this.o.totalSteps} score ${this.scoreText(m)} kl ${m.kl.toFixed(4)}${this.o.hasRubric ? ` rubric v${m.rubricVersion}` : ""} (${m.seconds.total.toFixed(2)} s/step)`);
    }
  }

  stop(): void {
    this.bar?.stop();
  }

  /**
   * The raw total depends on how many items the rubric has (1 item: 0–5, 6 items: 0–30), so a meta step that
   * grows the rubric makes it jump; the normalized score (0–1) is comparable across versions.
   */
  private scoreText(m: StepMetrics): string {
    const raw = m.score.mean.toFixed(3);
    const norm = m.normalizedScore?.mean;
    return this.o.hasRubric && norm !== undefined && Number.isFinite(norm) ? `${raw} (normalized ${norm.toFixed(3)})` : raw;
  }
}
