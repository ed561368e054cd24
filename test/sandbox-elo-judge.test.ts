/**
 * The sim-server's pairwise evaluation judge: over many seeded pairs it prefers the oracle-better response
 * at the configured rate and answers "A" more often by the configured position bias — measured through the
 * project's real Elo prompt and parser, and end to end through `runEloTournament` over HTTP.
 */
import { describe, expect, it } from "vitest";
import { parseWinner, runEloTournament, type EloSystem } from "../src/eval/elo.ts";
import { loadTemplates } from "../src/judge/templates.ts";
import { createChatModel } from "../src/llm/openai-client.ts";
import { writeEssay } from "../src/sandbox/essay-writer.ts";
import { EssayOracle } from "../src/sandbox/oracle.ts";
import { startSimServer } from "../src/sandbox/sim-server.ts";
import { SimulatedJudgeModel } from "../src/sandbox/sim/sim-model.ts";
import { sandboxPrompts } from "../src/sandbox/world.ts";
import { Rng } from "../src/util/rng.ts";

const templates = loadTemplates();
const oracle = new EssayOracle();
const prompts = sandboxPrompts("test");

/** N seeded pairs of essays (default flaw rates) for random test prompts, in random order, with the oracle's preference. */
function pairs(n: number, seed: number) {
  const rng = new Rng(`elo-pairs-${seed}`);
  const out: Array<{ prompt: string; a: string; b: string; better: "A" | "B" | null }> = [];
  while (out.length < n) {
    const p = prompts[rng.int(prompts.length)];
    const a = writeEssay(rng, p).text;
    const b = writeEssay(rng, p).text;
    const qa = oracle.score(p.topic, a).score;
    const qb = oracle.score(p.topic, b).score;
    out.push({ prompt: p.prompt, a, b, better: Math.abs(qa - qb) < 1e-9 ? null : qa > qb ? "A" : "B" });
  }
  return out;
}

function ask(judge: SimulatedJudgeModel, prompt: string, a: string, b: string): string {
  return judge.reply([
    { role: "system", content: templates.render("eval/elo-judge-system.md", { task_description: "Essays." }) },
    { role: "user", content: templates.render("eval/elo-judge.md", { prompt, response_a: a, response_b: b, answer_options: "either <winner>A</winner> or <winner>B</winner>" }) },
  ]);
}

describe("simulated pairwise evaluation judge", () => {
  for (const settings of [
    { agreement: 0.8, positionBias: 0.05 },
    { agreement: 0.65, positionBias: 0.15 },
  ]) {
    it(`prefers the oracle-better response at rate ${settings.agreement} and says A ${settings.positionBias} more often (2500 seeded pairs)`, () => {
      const judge = new SimulatedJudgeModel("both", 0, settings);
      const ps = pairs(2500, 1).filter((p) => p.better !== null);
      let agree = 0;
      let saidA = 0;
      for (const p of ps) {
        const v = parseWinner(ask(judge, p.prompt, p.a, p.b));
        expect(v === "A" || v === "B").toBe(true);
        if (v === p.better) agree++;
        if (v === "A") saidA++;
      }
      // 3.5 binomial standard errors (≈ 0.035 at n ≈ 2450).
      const tol = 3.5 * Math.sqrt(0.25 / ps.length);
      expect(ps.length).toBeGreaterThan(2000);
      expect(Math.abs(agree / ps.length - settings.agreement)).toBeLessThan(tol);
      // A is oracle-better about half the time (random order), so P(say A) = 0.5 + bias.
      const aBetter = ps.filter((p) => p.better === "A").length / ps.length;
      const expectedA = aBetter * (settings.agreement + settings.positionBias) + (1 - aBetter) * (1 - settings.agreement + settings.positionBias);
      expect(Math.abs(saidA / ps.length - expectedA)).toBeLessThan(tol);
    });
  }

  it("is deterministic per (seed, prompt, pair) and differs across seeds", () => {
    const ps = pairs(200, 2);
    const j0 = new SimulatedJudgeModel("both", 0);
    const again = new SimulatedJudgeModel("both", 0);
    const j1 = new SimulatedJudgeModel("both", 1);
    const v0 = ps.map((p) => ask(j0, p.prompt, p.a, p.b));
    expect(ps.map((p) => ask(again, p.prompt, p.a, p.b))).toEqual(v0);
    expect(ps.map((p) => ask(j1, p.prompt, p.a, p.b))).not.toEqual(v0);
  });

  it("ranks systems by oracle quality in a real Elo tournament over HTTP (K 4, start 1000, single order)", async () => {
    const sim = await startSimServer({ seed: 0 });
    try {
      const rng = new Rng("elo-systems");
      const clean = { offTopic: 0, repetition: 0, filler: 0, unfinished: 0, titleOnly: 0, list: 0 };
      const make = (name: string, rates: typeof clean): EloSystem => ({ name, responses: new Map(prompts.map((p) => [p.id, { prompt: p.prompt, response: writeEssay(rng, p, rates).text }])) });
      const systems = [make("clean", clean), make("fillers", { ...clean, filler: 1 }), make("titles", { ...clean, titleOnly: 1 })];
      const judge = createChatModel({ baseURL: sim.url, model: "mpo-sim-judge", maxTries: 1 });
      const res = await runEloTournament({ systems, judge, seeds: [0, 1, 2], matches: 150, k: 4, initial: 1000, concurrency: 8 });
      expect(res.perSeed.every((s) => s.unreadable === 0 && s.judgeErrors === 0)).toBe(true);
      expect(res.meanElo.clean).toBeGreaterThan(res.meanElo.fillers);
      expect(res.meanElo.fillers).toBeGreaterThan(res.meanElo.titles);
      // Elo is zero-sum around the start: the mean rating stays 1000.
      expect((res.meanElo.clean + res.meanElo.fillers + res.meanElo.titles) / 3).toBeCloseTo(1000, 6);
    } finally {
      await sim.app.close();
    }
  });
});
