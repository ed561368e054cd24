import { describe, expect, it } from "vitest";
import { eloExpected, eloUpdate, parseWinner, runEloTournament, type EloSystem } from "../src/eval/elo.ts";
import { fitBradleyTerry } from "../src/eval/bradley-terry.ts";
import { barChartSvg } from "../src/eval/plot-svg.ts";
import type { ChatModel, ChatRequest, ChatResponse } from "../src/llm/types.ts";
import { hashString } from "../src/util/rng.ts";

/** Pulls the two anonymous responses out of the judge prompt (prompts/eval/elo-judge.md layout). */
function responsesOf(req: ChatRequest): { a: string; b: string; user: string } {
  const user = req.messages[req.messages.length - 1].content;
  const a = /## Response A\n([\s\S]*?)\n\n## Response B/.exec(user)?.[1];
  const b = /## Response B\n([\s\S]*?)\n\n## Your decision/.exec(user)?.[1];
  if (a === undefined || b === undefined) throw new Error("judge prompt does not have the documented layout:\n" + user);
  return { a, b, user };
}

/** A scripted judge: decide(a, b, user) → reply text. Optionally yields a varying number of event-loop turns so replies finish out of order. */
function judge(decide: (a: string, b: string, user: string) => string, opts: { shuffleCompletion?: boolean } = {}): ChatModel & { calls: number } {
  const m = {
    id: "scripted-judge",
    calls: 0,
    async chat(req: ChatRequest): Promise<ChatResponse> {
      m.calls++;
      const { a, b, user } = responsesOf(req);
      if (opts.shuffleCompletion) {
        const turns = hashString(user) % 7;
        for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
      }
      return { text: decide(a, b, user), promptTokens: 0, completionTokens: 0 };
    },
  };
  return m;
}

const prefersLonger = (a: string, b: string) => (a.length >= b.length ? "<winner>A</winner>" : "<winner>B</winner>");

function system(name: string, n: number, respond: (i: number) => string): EloSystem {
  const responses = new Map<string, { prompt: string; response: string }>();
  for (let i = 0; i < n; i++) responses.set(`p${i}`, { prompt: `Write about topic ${i}.`, response: respond(i) });
  return { name, responses };
}

const good = system("good", 40, (i) => `A thorough, well organized answer about topic ${i}. `.repeat(4));
const mid = system("mid", 40, (i) => `A decent answer about topic ${i}. `.repeat(2));
const bad = system("bad", 40, (i) => `Topic ${i}.`);

describe("Elo update and verdict parsing", () => {
  it("applies the standard Elo formula", () => {
    expect(eloExpected(1000, 1000)).toBeCloseTo(0.5, 12);
    expect(eloExpected(1400, 1000)).toBeCloseTo(10 / 11, 12);
    const [a, b] = eloUpdate(1000, 1000, 1, 4);
    expect(a).toBeCloseTo(1002, 12);
    expect(b).toBeCloseTo(998, 12);
    const [c, d] = eloUpdate(1000, 1000, 0.5, 4);
    expect([c, d]).toEqual([1000, 1000]);
  });

  it("reads the last <winner> tag and rejects anything else", () => {
    expect(parseWinner("<winner>A</winner>")).toBe("A");
    expect(parseWinner("thinking... <winner>a</winner> no wait <WINNER> Response B </WINNER>")).toBe("B");
    expect(parseWinner("<winner>(B)</winner>")).toBe("B");
    expect(parseWinner("Response A is better")).toBeNull();
    expect(parseWinner("<winner>C</winner>")).toBeNull();
    expect(parseWinner("<winner>tie</winner>")).toBeNull();
    expect(parseWinner("<winner>tie</winner>", true)).toBe("tie");
    expect(parseWinner("<winner>A and B</winner>")).toBeNull();
  });
});

describe("runEloTournament", () => {
  it("is deterministic given the seeds, whatever the judge-call interleaving", async () => {
    const run = (concurrency: number) =>
      runEloTournament({ systems: [good, mid, bad], judge: judge(prefersLonger, { shuffleCompletion: true }), seeds: [0, 1, 2], matches: 300, concurrency });
    const r1 = await run(16);
    const r2 = await run(1);
    expect(r1.meanElo).toEqual(r2.meanElo);
    expect(r1.matches).toEqual(r2.matches);
    expect(r1.perSeed).toEqual(r2.perSeed);
    const r3 = await runEloTournament({ systems: [good, mid, bad], judge: judge(prefersLonger), seeds: [7, 8, 9], matches: 300 });
    expect(r3.matches.map((m) => m.promptId)).not.toEqual(r1.matches.map((m) => m.promptId));
  });

  it("draws distinct systems, shows them anonymously, and logs every match", async () => {
    const seen: string[] = [];
    const j = judge((a, b, user) => {
      seen.push(user);
      return prefersLonger(a, b);
    });
    const r = await runEloTournament({ systems: [good, mid, bad], judge: j, seeds: [0], matches: 200, reuseJudgments: false });
    expect(r.matches).toHaveLength(200);
    expect(j.calls).toBe(200);
    for (const m of r.matches) expect(m.systemA).not.toBe(m.systemB);
    for (const u of seen) expect(u).not.toMatch(/\b(good|mid|bad)\b/);
    // The ratings in the log are the running ratings: the last entry of each system equals its final rating.
    const last = new Map<string, number>();
    for (const m of r.matches) {
      last.set(m.systemA, m.ratingA);
      last.set(m.systemB, m.ratingB);
    }
    for (const [name, rating] of last) expect(rating).toBeCloseTo(r.perSeed[0].ratings[name], 9);
    // Zero-sum: K·(s − E) terms cancel, so the mean rating stays at the start value.
    const ratings = Object.values(r.perSeed[0].ratings);
    expect(ratings.reduce((x, y) => x + y, 0) / ratings.length).toBeCloseTo(1000, 9);
  });

  it("a clearly better system wins by a margin", async () => {
    const r = await runEloTournament({ systems: [bad, good, mid], judge: judge(prefersLonger), matches: 2000 });
    expect(r.perSeed).toHaveLength(5);
    expect(r.meanElo.good).toBeGreaterThan(r.meanElo.mid + 50);
    expect(r.meanElo.mid).toBeGreaterThan(r.meanElo.bad + 50);
    for (const n of ["good", "mid", "bad"]) expect(r.stdElo[n]).toBeGreaterThanOrEqual(0);
    // Bradley–Terry on the same log recovers the order with non-overlapping CIs.
    const bt = fitBradleyTerry(
      r.matches.filter((m) => m.scoreA !== null).map((m) => ({ a: m.systemA, b: m.systemB, scoreA: m.scoreA! })),
      { bootstrap: 50, seed: 1 },
    );
    expect(bt.rating.good).toBeGreaterThan(bt.rating.mid);
    expect(bt.rating.mid).toBeGreaterThan(bt.rating.bad);
    expect(bt.ci!.good[0]).toBeGreaterThan(bt.ci!.mid[1]);
    expect(bt.winProbability.good.bad).toBeGreaterThan(0.9);
  });

  it("rates two identical systems alike (position-balanced judge → near 1000; both orders → exactly 1000)", async () => {
    const twin = (name: string) => system(name, 30, (i) => `Same answer ${i}.`);
    // Verdict depends on a hash of the prompt text only, so position A/B wins half the time.
    const hashJudge = judge((_a, _b, user) => (hashString(user) % 2 ? "<winner>A</winner>" : "<winner>B</winner>"));
    const r = await runEloTournament({ systems: [twin("x"), twin("y")], judge: hashJudge, matches: 1000 });
    expect(Math.abs(r.meanElo.x - 1000)).toBeLessThan(30);
    expect(r.meanElo.x + r.meanElo.y).toBeCloseTo(2000, 6);
    // A judge that always says "A": one order only inflates whoever is drawn first; both orders cancel it.
    const alwaysA = judge(() => "<winner>A</winner>");
    const both = await runEloTournament({ systems: [twin("x"), twin("y")], judge: alwaysA, matches: 300, bothOrders: true, seeds: [0, 1] });
    expect(both.meanElo).toEqual({ x: 1000, y: 1000 });
    expect(both.perSeed[0].ties).toBe(300);
  });

  it("re-draws unreadable verdicts once, from the same stream", async () => {
    // Unreadable for prompts whose index is divisible by 4.
    const flaky = judge((a, b, user) => (/topic (\d+)/.exec(user)![1] as unknown as number) % 4 === 0 ? "I cannot decide." : prefersLonger(a, b));
    const r = await runEloTournament({ systems: [good, bad], judge: flaky, seeds: [3], matches: 400 });
    const s = r.perSeed[0];
    expect(s.unreadable).toBeGreaterThan(50);
    expect(s.redrawn).toBe(s.unreadable);
    expect(s.skipped).toBeGreaterThan(0);
    expect(s.skipped).toBeLessThan(s.redrawn);
    expect(s.applied).toBe(400 - s.unreadable + (s.redrawn - s.skipped));
    const redraws = r.matches.filter((m) => m.round === "redraw");
    expect(redraws).toHaveLength(s.redrawn);
    expect(r.matches.filter((m) => m.scoreA === null)).toHaveLength(s.unreadable + s.skipped);
    // Determinism holds with re-draws too.
    const again = await runEloTournament({ systems: [good, bad], judge: flaky, seeds: [3], matches: 400 });
    expect(again.matches).toEqual(r.matches);
  });

  it("scores explicit ties when allowed and fails clearly when the judge is down", async () => {
    const tieJudge = judge(() => "<winner>tie</winner>");
    const r = await runEloTournament({ systems: [good, bad], judge: tieJudge, seeds: [0], matches: 50, allowTies: true });
    expect(r.perSeed[0].ties).toBe(50);
    expect(r.meanElo.good).toBe(1000);
    const down: ChatModel = { id: "down", chat: async () => { throw new Error("connect ECONNREFUSED 127.0.0.1:9"); } };
    await expect(runEloTournament({ systems: [good, bad], judge: down, seeds: [0], matches: 10 })).rejects.toThrow(/every judge call failed.*ECONNREFUSED/);
    await expect(runEloTournament({ systems: [good], judge: tieJudge })).rejects.toThrow(/at least two systems/);
    const other = system("other", 3, () => "x");
    other.responses = new Map([["zzz", { prompt: "q", response: "x" }]]);
    await expect(runEloTournament({ systems: [good, other], judge: tieJudge })).rejects.toThrow(/share no prompt/);
  });
});

describe("Bradley–Terry and plot", () => {
  it("recovers known strengths from simulated outcomes", () => {
    // True Elo-scale ratings 1200 / 1000 / 800; outcomes drawn deterministically at the expected rates.
    const truth: Record<string, number> = { s1: 1200, s2: 1000, s3: 800 };
    const names = Object.keys(truth);
    const outcomes: Array<{ a: string; b: string; scoreA: number }> = [];
    for (const a of names)
      for (const b of names) {
        if (a >= b) continue;
        const p = eloExpected(truth[a], truth[b]);
        const n = 400;
        const wins = Math.round(p * n);
        for (let i = 0; i < n; i++) outcomes.push({ a, b, scoreA: i < wins ? 1 : 0 });
      }
    const bt = fitBradleyTerry(outcomes, { bootstrap: 0 });
    expect(bt.converged).toBe(true);
    for (const n of names) expect(Math.abs(bt.rating[n] - truth[n])).toBeLessThan(10);
    expect(() => fitBradleyTerry([{ a: "x", b: "x", scoreA: 1 }])).toThrow();
  });

  it("converges when one system wins every match, with the estimate inside its bootstrap CI", () => {
    const outcomes: Array<{ a: string; b: string; scoreA: number }> = [];
    for (let i = 0; i < 300; i++) outcomes.push({ a: "top", b: i % 2 ? "mid" : "low", scoreA: 1 }, { a: "mid", b: "low", scoreA: i % 4 === 0 ? 0 : 1 });
    const bt = fitBradleyTerry(outcomes, { bootstrap: 40, seed: 3 });
    expect(bt.converged).toBe(true);
    for (const n of bt.systems) {
      expect(Number.isFinite(bt.rating[n])).toBe(true);
      expect(bt.rating[n]).toBeGreaterThanOrEqual(bt.ci![n][0] - 1e-6);
      expect(bt.rating[n]).toBeLessThanOrEqual(bt.ci![n][1] + 1e-6);
    }
    expect(bt.rating.top).toBeGreaterThan(bt.rating.mid);
    expect(bt.rating.mid).toBeGreaterThan(bt.rating.low);
    // Ratings are centred: mean 1000.
    expect(bt.systems.reduce((a, n) => a + bt.rating[n], 0) / 3).toBeCloseTo(1000, 6);
    // Seeded bootstrap: same seed, same CIs.
    expect(fitBradleyTerry(outcomes, { bootstrap: 40, seed: 3 }).ci).toEqual(bt.ci);
  });

  it("draws an SVG bar chart with error bars and escaped labels", () => {
    const svg = barChartSvg([
      { label: "b<x>", value: 950, error: 12 },
      { label: "a", value: 1100, error: 8 },
    ], { title: "Elo" });
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain("b&lt;x&gt;");
    expect(svg.indexOf(">a</text>")).toBeLessThan(svg.indexOf("b&lt;x&gt;</text>"));
    expect((svg.match(/<rect /g) ?? []).length).toBe(3);
  });
});
