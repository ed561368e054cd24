/**
 * Pairwise Elo tournament judged by an LLM — the paper's evaluation protocol (minnesotanlp/mpo
 * `scripts/mpo_experiments/elo_simulation.py`), reimplemented:
 *   - every system starts at 1000; per match two distinct systems and one prompt are drawn at random;
 *   - the judge sees the prompt and both responses under anonymous labels and names a winner in a
 *     `<winner>` tag; Elo update with K=4, base 10, scale 400;
 *   - a match whose verdict cannot be read is counted, and after the main matches that many new matches
 *     are drawn once more (unreadable re-draws are then skipped);
 *   - 2,000 matches per seed, mean and population spread over the seeds (5 by default).
 * Determinism: each seed has its own Rng; the match list of a seed is drawn up front from that stream,
 * judged with bounded concurrency, and the Elo updates are applied strictly in draw order, so a
 * deterministic judge gives identical ratings no matter how the judge calls interleave. The re-draw round
 * continues the same stream. Options beyond the paper: judging both orders (cancels position bias; the
 * two verdicts disagreeing counts as a tie), explicit ties, and a Bradley–Terry fit (./bradley-terry.ts).
 */
import type { ChatModel } from "../llm/types.ts";
import { loadTemplates, type Templates } from "../judge/templates.ts";
import { Rng } from "../util/rng.ts";
import { UserError } from "../util/errors.ts";

export interface EloSystem {
  name: string;
  /** promptId → the prompt text and this system's response to it. */
  responses: Map<string, { prompt: string; response: string }>;
}

export interface EloOptions {
  systems: EloSystem[];
  judge: ChatModel;
  /** One tournament per seed (default [0,1,2,3,4]). */
  seeds?: number[];
  /** Matches drawn per seed before the re-draw round (default 2000). */
  matches?: number;
  k?: number;
  base?: number;
  scale?: number;
  /** Starting rating (default 1000). */
  initial?: number;
  /** Judge every match in both orders; disagreement = tie (0.5). */
  bothOrders?: boolean;
  /** Let the judge answer `<winner>tie</winner>` (scored 0.5). */
  allowTies?: boolean;
  /** Parallel judge calls (default 8). */
  concurrency?: number;
  /** Reuse one judgment for the same (prompt, system in A, system in B) within this run (default true: a temperature-0 judge would answer the same). */
  reuseJudgments?: boolean;
  /** One sentence telling the judge what kind of responses these are (default: generic). */
  taskDescription?: string;
  /** Prompt templates (default: built-in `prompts/`, eval/elo-judge-system.md + eval/elo-judge.md). */
  templates?: Templates;
  temperature?: number;
  maxTokens?: number;
  /** Called after every judged match (all seeds together). */
  onProgress?: (done: number, total: number) => void;
}

export type Verdict = "A" | "B" | "tie";

export interface EloMatch {
  seed: number;
  /** "main" = one of the `matches` draws; "redraw" = drawn again for an unreadable verdict. */
  round: "main" | "redraw";
  /** Position in the seed's sequence of applied/attempted matches. */
  index: number;
  promptId: string;
  /** System shown as "Response A" (in the first order when bothOrders). */
  systemA: string;
  systemB: string;
  /** One verdict per judged order (null = unreadable); with bothOrders the second is for the swapped order. */
  verdicts: Array<Verdict | null>;
  /** Raw judge replies, same order as verdicts (error text when the call failed). */
  replies: string[];
  /** Score of systemA (1 win, 0.5 tie, 0 loss); null when unreadable (no update). */
  scoreA: number | null;
  winner: string | "tie" | null;
  /** Ratings of A and B after the update (before = after when unreadable). */
  ratingA: number;
  ratingB: number;
  judgeError?: boolean;
}

export interface EloSeedResult {
  seed: number;
  ratings: Record<string, number>;
  /** Matches whose verdict was applied. */
  applied: number;
  unreadable: number;
  redrawn: number;
  /** Re-drawn matches that were unreadable again (dropped, as in the paper). */
  skipped: number;
  ties: number;
  judgeErrors: number;
}

export interface EloResult {
  meanElo: Record<string, number>;
  /** Population standard deviation over seeds (the paper's "mean stds"). */
  stdElo: Record<string, number>;
  perSeed: EloSeedResult[];
  matches: EloMatch[];
  /** Prompt ids all systems answered (the draw pool). */
  promptIds: string[];
  settings: { seeds: number[]; matches: number; k: number; base: number; scale: number; initial: number; bothOrders: boolean; allowTies: boolean; judge: string };
}

/** Expected score of A against B. */
export function eloExpected(ratingA: number, ratingB: number, base = 10, scale = 400): number {
  return 1 / (1 + Math.pow(base, (ratingB - ratingA) / scale));
}

/** One Elo update; scoreA in {0, 0.5, 1}. */
export function eloUpdate(ratingA: number, ratingB: number, scoreA: number, k = 4, base = 10, scale = 400): [number, number] {
  const ea = eloExpected(ratingA, ratingB, base, scale);
  const eb = eloExpected(ratingB, ratingA, base, scale);
  return [ratingA + k * (scoreA - ea), ratingB + k * (1 - scoreA - eb)];
}

/**
 * Reads the judge's verdict: the last `<winner>…</winner>` tag. Accepts "A", "Response A", "(a)" etc.;
 * "tie"/"draw"/"equal" only when ties are allowed. Anything else is unreadable (null).
 */
export function parseWinner(text: string, allowTies = false): Verdict | null {
  const tags = [...text.matchAll(/<winner>([\s\S]*?)<\/winner>/gi)];
  if (tags.length === 0) return null;
  const inner = tags[tags.length - 1][1]
    .toLowerCase()
    .replace(/\b(response|answer|model|system|option)\b/g, " ")
    .replace(/[^a-z]+/g, " ")
    .trim();
  if (inner === "a") return "A";
  if (inner === "b") return "B";
  if (/^(tie|draw|equal|both|neither)$/.test(inner)) return allowTies ? "tie" : null;
  return null;
}

interface DrawnMatch {
  promptId: string;
  a: string;
  b: string;
}

function drawMatch(rng: Rng, names: string[], promptIds: string[]): DrawnMatch {
  // Two distinct systems in random order (the order decides the anonymous positions), then one prompt.
  const [a, b] = rng.sample(names, 2);
  const promptId = promptIds[rng.int(promptIds.length)];
  return { promptId, a, b };
}

/** Runs `fn` over items with at most `limit` in flight; results keep item order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

export function commonPromptIds(systems: EloSystem[]): string[] {
  const [first, ...rest] = systems;
  return [...first.responses.keys()].filter((id) => rest.every((s) => s.responses.has(id)));
}

const DEFAULT_TASK_DESCRIPTION = "Each answer responds to the same user request.";

export async function runEloTournament(opts: EloOptions): Promise<EloResult> {
  const seeds = opts.seeds ?? [0, 1, 2, 3, 4];
  const matches = opts.matches ?? 2000;
  const k = opts.k ?? 4;
  const base = opts.base ?? 10;
  const scale = opts.scale ?? 400;
  const initial = opts.initial ?? 1000;
  const bothOrders = opts.bothOrders ?? false;
  const allowTies = opts.allowTies ?? false;
  const concurrency = opts.concurrency ?? 8;
  const reuse = opts.reuseJudgments ?? true;
  const templates = opts.templates ?? loadTemplates();

  const names = opts.systems.map((s) => s.name);
  if (names.length < 2) throw new UserError(`Elo needs at least two systems, got ${names.length}`);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new UserError(`two systems share the name '${dup}' (use --names to rename them)`);
  if (!(matches > 0) || !Number.isInteger(matches)) throw new UserError(`matches must be a positive integer, got ${matches}`);
  if (seeds.length === 0) throw new UserError("at least one seed is needed");
  const promptIds = commonPromptIds(opts.systems);
  if (promptIds.length === 0) throw new UserError(`the systems share no prompt: nothing to compare (systems: ${names.join(", ")})`);
  const byName = new Map(opts.systems.map((s) => [s.name, s]));

  const system = templates.render("eval/elo-judge-system.md", { task_description: opts.taskDescription ?? DEFAULT_TASK_DESCRIPTION });
  const answerOptions = allowTies
    ? "<winner>A</winner>, <winner>B</winner> or, only if they are truly equal in quality, <winner>tie</winner>"
    : "either <winner>A</winner> or <winner>B</winner>";

  const cache = new Map<string, Promise<{ verdict: Verdict | null; reply: string; error: boolean }>>();
  const judgeOnce = (promptId: string, first: string, second: string) => {
    const key = `${promptId}\u0000${first}\u0000${second}`;
    const hit = reuse ? cache.get(key) : undefined;
    if (hit) return hit;
    const p = (async () => {
      const entryA = byName.get(first)!.responses.get(promptId)!;
      const entryB = byName.get(second)!.responses.get(promptId)!;
      const user = templates.render("eval/elo-judge.md", {
        prompt: entryA.prompt,
        response_a: entryA.response,
        response_b: entryB.response,
        answer_options: answerOptions,
      });
      try {
        const res = await opts.judge.chat({
          messages: [
            { role: "system", content: system },
            { role: "user", content: user },
          ],
          temperature: opts.temperature ?? 0,
          maxTokens: opts.maxTokens ?? 256,
          stage: "eval",
        });
        return { verdict: parseWinner(res.text, allowTies), reply: res.text, error: false };
      } catch (err) {
        return { verdict: null, reply: `judge error: ${(err as Error).message}`, error: true };
      }
    })();
    if (reuse) cache.set(key, p);
    return p;
  };

  /** Judges one drawn match (one or both orders) into a score for `a`. */
  const judgeMatch = async (m: DrawnMatch) => {
    const first = await judgeOnce(m.promptId, m.a, m.b);
    const runs = [first];
    if (bothOrders) runs.push(await judgeOnce(m.promptId, m.b, m.a));
    const verdicts = runs.map((r) => r.verdict);
    let scoreA: number | null = null;
    if (verdicts.every((v) => v !== null)) {
      const s1 = verdicts[0] === "A" ? 1 : verdicts[0] === "B" ? 0 : 0.5;
      if (!bothOrders) scoreA = s1;
      else {
        const s2 = verdicts[1] === "B" ? 1 : verdicts[1] === "A" ? 0 : 0.5;
        scoreA = (s1 + s2) / 2;
      }
    }
    return { verdicts, replies: runs.map((r) => r.reply), scoreA, error: runs.some((r) => r.error) };
  };

  // Progress counts the scheduled matches, a total fixed up front; re-draws of unreadable verdicts are extra
  // calls that replace a scheduled match's verdict and do not move it (a total that grows mid-run misleads).
  let done = 0;
  const total = seeds.length * matches;
  const tick = () => opts.onProgress?.(++done, total);

  const perSeed: EloSeedResult[] = [];
  const log: EloMatch[] = [];
  for (const seed of seeds) {
    const rng = new Rng(seed);
    const ratings: Record<string, number> = Object.fromEntries(names.map((n) => [n, initial]));
    const stats: EloSeedResult = { seed, ratings, applied: 0, unreadable: 0, redrawn: 0, skipped: 0, ties: 0, judgeErrors: 0 };
    let index = 0;
    const playRound = async (round: "main" | "redraw", count: number) => {
      const drawn = Array.from({ length: count }, () => drawMatch(rng, names, promptIds));
      const judged = await mapLimit(drawn, concurrency, async (m) => {
        const r = await judgeMatch(m);
        if (round === "main") tick();
        return r;
      });
      let unreadable = 0;
      drawn.forEach((m, i) => {
        const j = judged[i];
        if (j.error) stats.judgeErrors++;
        if (j.scoreA !== null) {
          [ratings[m.a], ratings[m.b]] = eloUpdate(ratings[m.a], ratings[m.b], j.scoreA, k, base, scale);
          stats.applied++;
          if (j.scoreA === 0.5) stats.ties++;
        } else unreadable++;
        log.push({
          seed,
          round,
          index: index++,
          promptId: m.promptId,
          systemA: m.a,
          systemB: m.b,
          verdicts: j.verdicts,
          replies: j.replies,
          scoreA: j.scoreA,
          winner: j.scoreA === null ? null : j.scoreA === 1 ? m.a : j.scoreA === 0 ? m.b : "tie",
          ratingA: ratings[m.a],
          ratingB: ratings[m.b],
          ...(j.error ? { judgeError: true } : {}),
        });
      });
      return unreadable;
    };
    stats.unreadable = await playRound("main", matches);
    if (stats.judgeErrors === matches) {
      const firstErr = log.find((m) => m.seed === seed && m.judgeError)?.replies[0] ?? "";
      throw new UserError(`every judge call failed for seed ${seed}; is the judge reachable? First error: ${firstErr}`);
    }
    if (stats.unreadable > 0) {
      stats.redrawn = stats.unreadable;
      stats.skipped = await playRound("redraw", stats.unreadable);
    }
    perSeed.push(stats);
  }

  const meanElo: Record<string, number> = {};
  const stdElo: Record<string, number> = {};
  for (const n of names) {
    const xs = perSeed.map((s) => s.ratings[n]);
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    meanElo[n] = mean;
    stdElo[n] = Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / xs.length);
  }
  return {
    meanElo,
    stdElo,
    perSeed,
    matches: log,
    promptIds,
    settings: { seeds, matches, k, base, scale, initial, bothOrders, allowTies, judge: opts.judge.id },
  };
}

/** The paper's merged scores file shape: `{"mean elo": {...}, "mean stds": {...}}`. */
export function eloScoresJson(r: EloResult): { "mean elo": Record<string, number>; "mean stds": Record<string, number> } {
  return { "mean elo": r.meanElo, "mean stds": r.stdElo };
}
