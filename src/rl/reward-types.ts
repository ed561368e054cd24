/**
 * The reward interface the RL trainer consumes. Any task's reward (LLM judge with MPO, verifiers, mixes,
 * simulated judges, rule-based toy rewards) implements it. `score === null` means no usable score (judge
 * down after retries): the trainer excludes that sample from the update and counts it — never a NaN.
 */
import type { Evaluation } from "../judge/types.ts";
import type { UsageByStage } from "../llm/types.ts";
import type { MetaDecision } from "../meta/triggers.ts";
import type { TaskRecord } from "../tasks/types.ts";

export interface RewardSample {
  record: TaskRecord;
  response: string;
  /** True when generation ended with EOS/stop (false = truncated). */
  finished: boolean;
}

export interface RewardResult {
  score: number | null;
  /** score mapped to [0, 1] when the reward has a known range. */
  normalized: number | null;
  evaluation?: Evaluation | null;
  flags: string[];
}

export interface MetaOutcome {
  ok: boolean;
  /** The training step the meta step ran after (its log is meta/step-N.json); reported with a later step's metrics. */
  step?: number;
  fromVersion: number;
  toVersion: number;
  summary: string;
  itemsBefore: number;
  itemsAfter: number;
  added: number;
  removed: number;
  error?: string;
  /** Adaptive schedule: why this meta step ran (reason and the triggers that fired, with their evidence). */
  trigger?: { reason: MetaDecision["reason"]; triggers: Array<{ kind: string; message: string; evidence: Record<string, number> }> };
  /** Rubric guard: its verdict on the merged rubric (a rejected one is stored as `rejectedVersion`, never used). */
  guard?: { accepted: boolean; reasons: string[]; scorings: number; numbers: Record<string, number | null> };
  rejectedVersion?: number;
}

export interface RewardFunction {
  readonly name: string;
  score(samples: RewardSample[], ctx: { step: number }): Promise<RewardResult[]>;
  /** Current rubric version used for scoring (0 when the reward has no rubric). */
  rubricVersion(): number;
  /** MPO: run a meta step on the rollouts gathered since the last one (absent for fixed rewards). */
  metaStep?(rollouts: Array<RewardSample & { result: RewardResult }>, ctx: { step: number; decision?: MetaDecision }): Promise<MetaOutcome>;
  /** LLM usage since the last call, by stage (reset on read). */
  takeUsage?(): UsageByStage;
  /**
   * Resume support (optional). `saveState()` goes into each trainer checkpoint; `restoreState(s)` is called
   * when a run resumes from that checkpoint and must bring the reward back to exactly that point — e.g.
   * roll back rubric versions a meta step created after the checkpoint, so the resumed run neither skips
   * nor duplicates a version.
   */
  saveState?(): unknown;
  restoreState?(state: unknown): Promise<void> | void;
}
