/**
 * A rule-based judge with a real MPO loop, no LLM: the rubric (kept in the run's RubricStore, so versions,
 * files and rollback are the real thing) holds a "say the target word" item plus "avoid-W" items; the
 * score is target-word fraction minus the fraction of each avoided word. Its meta step plays the senior
 * judge: it looks at the rollouts since the last meta step, finds the most frequent non-target word the
 * policy leans on, and adds an "avoid" criterion for it — a toy of the paper's "the rubric learns what
 * the policy exploits". Used to run and test MPO schedules (intervals, overlap, resume) offline.
 */
import { existsSync, mkdirSync, readdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { RubricStore } from "../../rubric/store.ts";
import { VERSION_FILE_RE, versionFileName } from "../../util/run-layout.ts";
import type { Rubric, RubricItem } from "../../rubric/types.ts";
import type { MetaOutcome, RewardFunction, RewardResult, RewardSample } from "../reward-types.ts";
import { KeywordReward } from "./keyword.ts";

const AVOID = /^avoid-(.+)$/;

function words(text: string): string[] {
  return text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean);
}

export function initialRuleRubric(): Rubric {
  return { items: [{ name: "target", text: "Say the word the user asks for (0-1: share of the response that is that word).", min: 0, max: 1 }] };
}

/**
 * Rolls a rubric (or guideline) store back to version `keep`: newer versions (made after the checkpoint being
 * resumed) move into `<store>/rolled-back/<time>/` — never deleted — and their numbers become free again.
 */
export function rollbackRubricStore(store: { dir: string }, keep: number): number[] {
  const moved: number[] = [];
  if (!existsSync(store.dir)) return moved;
  for (const f of readdirSync(store.dir)) {
    const m = VERSION_FILE_RE.exec(f);
    if (m && Number(m[1]) > keep) moved.push(Number(m[1]));
  }
  if (moved.length === 0) return moved;
  const dest = join(store.dir, "rolled-back", `${new Date().toISOString().replace(/[:.]/g, "-")}-${process.pid}`);
  mkdirSync(dest, { recursive: true });
  // Newest first, so a concurrent reader never sees a gap below a surviving version.
  for (const v of moved.sort((a, b) => b - a)) {
    for (const ext of ["json", "txt"] as const) {
      const p = join(store.dir, versionFileName(v, ext));
      if (existsSync(p)) renameSync(p, join(dest, versionFileName(v, ext)));
    }
  }
  return moved.sort((a, b) => a - b);
}

export class RuleRubricReward implements RewardFunction {
  readonly name = "rule-rubric";
  private readonly keyword: KeywordReward;
  readonly store: RubricStore;

  constructor(
    runDir: string,
    word?: string,
    private readonly opts: { maxAvoid?: number } = {},
  ) {
    this.keyword = new KeywordReward(word);
    this.store = RubricStore.open(runDir);
    this.store.initialize(initialRuleRubric());
  }

  rubricVersion(): number {
    return this.store.latest()?.version ?? 0;
  }

  private avoided(): string[] {
    const r = this.store.latest()?.rubric ?? initialRuleRubric();
    return r.items.map((i) => AVOID.exec(i.name)?.[1]).filter((w): w is string => !!w);
  }

  async score(samples: RewardSample[]): Promise<RewardResult[]> {
    const version = this.store.latest()!;
    const avoid = this.avoided();
    const base = await this.keyword.score(samples);
    return samples.map((s, i) => {
      const b = base[i];
      if (b.score === null) return b;
      const ws = words(s.response);
      const items = [{ name: "target", score: b.score, min: 0, max: 1, rationale: "share of target word", raw: "", flags: [] as string[] }];
      let total = b.score;
      for (const w of avoid) {
        const frac = ws.length ? ws.filter((x) => x === w).length / ws.length : 0;
        total -= frac;
        items.push({ name: `avoid-${w}`, score: -frac, min: -1, max: 0, rationale: `share of '${w}'`, raw: "", flags: [] });
      }
      const lo = -avoid.length;
      const normalized = (total - lo) / (1 - lo);
      return {
        score: total,
        normalized,
        flags: b.flags,
        evaluation: { items, total, normalized, rubricVersion: version.version, mode: "verifier", flags: [], raw: [] },
      };
    });
  }

  async metaStep(rollouts: Array<RewardSample & { result: RewardResult }>, ctx: { step: number }): Promise<MetaOutcome> {
    const cur = this.store.latest()!;
    const avoid = new Set(this.avoided());
    const counts = new Map<string, number>();
    for (const r of rollouts) {
      const target = this.keyword.targetOf(r);
      for (const w of words(r.response)) if (w !== target && !avoid.has(w)) counts.set(w, (counts.get(w) ?? 0) + 1);
    }
    const best = [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0];
    const before = cur.rubric.items.length;
    const base = { fromVersion: cur.version, itemsBefore: before, removed: 0 };
    if (!best || avoid.size >= (this.opts.maxAvoid ?? 8)) {
      return { ok: true, ...base, toVersion: cur.version, itemsAfter: before, added: 0, summary: `rubric v${cur.version}: unchanged (nothing new to penalize)` };
    }
    const item: RubricItem = { name: `avoid-${best[0]}`, text: `Do not fill the answer with '${best[0]}' (0 to -1: minus its share of the response).`, min: -1, max: 0 };
    const next = this.store.add({ parent: cur.version, step: ctx.step, author: { kind: "meta", step: ctx.step }, rubric: { items: [...cur.rubric.items, item] } });
    return {
      ok: true,
      ...base,
      toVersion: next.version,
      itemsAfter: before + 1,
      added: 1,
      summary: `rubric v${cur.version} → v${next.version}: ${before + 1} items (+1, −0)`,
    };
  }

  saveState(): unknown {
    return { rubricVersion: this.rubricVersion() };
  }

  restoreState(state: unknown): void {
    const v = (state as { rubricVersion?: unknown } | null)?.rubricVersion;
    if (typeof v === "number") rollbackRubricStore(this.store, v);
  }
}
