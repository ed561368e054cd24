/**
 * Token and call accounting per stage (rm, mrm-*, eval...). Every ChatModel records into a meter so a
 * training step can report what the judges cost; `take()` hands over the totals since the last take.
 */
import type { Stage, StageUsage, UsageByStage } from "./types.ts";

export interface UsageRecord {
  promptTokens: number;
  completionTokens: number;
  cached: boolean;
  seconds: number;
  failed: boolean;
  /** Token counts were estimated (≈ chars/4) because the server sent no `usage`. */
  estimated?: boolean;
}

function emptyStage(): StageUsage {
  return { calls: 0, failures: 0, promptTokens: 0, completionTokens: 0, cachedCalls: 0, seconds: 0 };
}

function finite(x: number): number {
  return Number.isFinite(x) && x > 0 ? x : 0;
}

export class UsageMeter {
  private byStage: UsageByStage = {};

  record(stage: Stage, r: UsageRecord): void {
    const s = (this.byStage[stage] ??= emptyStage());
    s.calls += 1;
    if (r.failed) s.failures += 1;
    if (r.cached) s.cachedCalls += 1;
    s.promptTokens += finite(r.promptTokens);
    s.completionTokens += finite(r.completionTokens);
    s.seconds += finite(r.seconds);
    if (r.estimated) s.estimatedCalls = (s.estimatedCalls ?? 0) + 1;
  }

  /** A deep copy of the totals so far. */
  snapshot(): UsageByStage {
    return structuredClone(this.byStage);
  }

  /** Totals so far, then reset (per-step accounting). */
  take(): UsageByStage {
    const out = this.byStage;
    this.byStage = {};
    return out;
  }

  reset(): void {
    this.byStage = {};
  }

  /** Stage-wise sum of two usage tables (neither is modified). */
  static add(a: UsageByStage, b: UsageByStage): UsageByStage {
    const out: UsageByStage = structuredClone(a);
    for (const [stage, u] of Object.entries(b) as [Stage, StageUsage | undefined][]) {
      if (!u) continue;
      const s = (out[stage] ??= emptyStage());
      s.calls += u.calls;
      s.failures += u.failures;
      s.promptTokens += u.promptTokens;
      s.completionTokens += u.completionTokens;
      s.cachedCalls += u.cachedCalls;
      s.seconds += u.seconds;
      if (u.estimatedCalls) s.estimatedCalls = (s.estimatedCalls ?? 0) + u.estimatedCalls;
    }
    return out;
  }

  /** Sum over all stages. */
  static total(u: UsageByStage): StageUsage {
    let t = emptyStage();
    for (const s of Object.values(u)) if (s) t = UsageMeter.add({ other: t }, { other: s }).other!;
    return t;
  }
}
