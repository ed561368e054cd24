/**
 * `mpo autoprompt`: agreement metrics, reply parsing, a scripted calibration round over real HTTP (generation,
 * annotation, junior scoring, analysis, revision, best-rubric choice and lineage), and resume after kill -9
 * of the CLI mid-round ending exactly where an uninterrupted run ends.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runAutoPrompt } from "../src/autoprompt/calibrate.ts";
import { agreement, ranks, spearman } from "../src/autoprompt/metrics.ts";
import { parseCases, parseLabel, parseRevision, parseStyles } from "../src/autoprompt/parse.ts";
import { createChatModel } from "../src/llm/openai-client.ts";
import { parseRubricText } from "../src/rubric/format.ts";
import { RubricStore } from "../src/rubric/store.ts";
import { SimulatedJudgeModel } from "../src/sandbox/sim/sim-model.ts";
import { readJsonl } from "../src/util/atomic.ts";
import { startFakeOpenAI, type FakeRequestInfo } from "./helpers/fake-openai-server.ts";

const repo = resolve(import.meta.dirname, "..");
const root = mkdtempSync(join(tmpdir(), "mpo-autoprompt-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("agreement metrics", () => {
  it("MAE and Spearman with average ranks for ties; undefined correlation is null, not 0", () => {
    expect(ranks([10, 20, 20, 30])).toEqual([1, 2.5, 2.5, 4]);
    expect(spearman([1, 2, 3, 4], [10, 20, 30, 40])).toBeCloseTo(1, 12);
    expect(spearman([1, 2, 3, 4], [4, 3, 2, 1])).toBeCloseTo(-1, 12);
    // scipy.stats.spearmanr([1,2,2,3,5],[2,1,3,3,4]).statistic (scipy, run here) = 0.7631578947368421
    expect(spearman([1, 2, 2, 3, 5], [2, 1, 3, 3, 4])).toBeCloseTo(0.7631578947368421, 12);
    expect(spearman([0.5, 0.5, 0.5], [0.1, 0.2, 0.3])).toBeNull();
    const a = agreement([1, 0.5, 0], [0.8, 0.5, 0.4]);
    expect(a.n).toBe(3);
    expect(a.mae).toBeCloseTo((0.2 + 0 + 0.4) / 3, 12);
    expect(agreement([], [])).toEqual({ n: 0, mae: null, spearman: null });
  });
});

describe("reply parsing", () => {
  const styles = parseStyles("- strong: a good one\n- filler: padding\n- title-only: a title");
  it("reads cases with or without closing tags, names missing styles by position, caps at the style count", () => {
    expect(styles.map((s) => s.name)).toEqual(["strong", "filler", "title-only"]);
    const cs = parseCases('Sure!\n<case style="strong">Good text.</case>\n<CASE>Filler text.\n<case style=\'title-only\'>A Title\n<case style="extra">more</case>', styles);
    expect(cs).toEqual([
      { style: "strong", response: "Good text." },
      { style: "filler", response: "Filler text." },
      { style: "title-only", response: "A Title" },
    ]);
    expect(parseCases("no tags at all", styles)).toEqual([]);
    expect(parseCases('<case style="strong">   </case>', styles)).toEqual([]);
  });
  it("reads a label only when a 0–10 score tag is present; the last tag wins", () => {
    expect(parseLabel("<reason>ok</reason><score>7</score>")).toEqual({ score: 7, reason: "ok" });
    expect(parseLabel("<score>3</score> on reflection <score>4/10</score>")).toEqual({ score: 4, reason: "" });
    expect(parseLabel("<score>11</score>")).toBeNull();
    expect(parseLabel("<score>-1</score>")).toBeNull();
    expect(parseLabel("I would give it 7.")).toBeNull();
  });
  it("a revision without any item is an error, not an empty rubric", () => {
    expect("error" in parseRevision("I cannot help with that.")).toBe(true);
    const ok = parseRevision("Here:\n<rubric>\n<item>\n### Relevance\nOn topic? Score from 0 to 5.\n</item>\n</rubric>");
    expect("rubric" in ok && ok.rubric.items[0].max).toBe(5);
  });
});

/**
 * A scripted world: "GOOD" responses deserve 9/10, "FILLER" ones 2/10. The junior gives every item full
 * marks, except that an item named no-filler gives 0 to FILLER responses. So v0 (one vague item) misses
 * the filler, the revision that adds "No filler" fixes it, and a later revision that drops it is worse.
 */
function scripted(opts: { revisions: string[] }) {
  const calls: Record<string, number> = { generate: 0, annotate: 0, analyze: 0, revise: 0, junior: 0 };
  let revision = 0;
  const reply = (req: FakeRequestInfo): string => {
    const last = req.messages[req.messages.length - 1].content;
    if (last.includes("## Boundary cases to write")) {
      calls.generate++;
      const prompt = /## Prompt\n(.*)\n/.exec(last)![1];
      return `<case style="strong">GOOD essay about ${prompt}.</case>\n<case style="filler">FILLER words about ${prompt}.</case>`;
    }
    if (last.includes("## Response to label")) {
      calls.annotate++;
      return last.includes("GOOD") ? "<reason>does the task</reason><score>9</score>" : "<reason>padding</reason><score>2</score>";
    }
    if (last.includes("## Disagreements (largest first)")) {
      calls.analyze++;
      expect(last).toMatch(/Reference grade: 0\.20/);
      return "The grader over-scores filler. Add a filler criterion.";
    }
    if (last.includes("## Revised rubric")) {
      calls.revise++;
      expect(last).toContain("The grader over-scores filler.");
      return opts.revisions[revision++] ?? "no rubric today";
    }
    calls.junior++;
    const score = /integer score for "([^"]+)"/.exec(last);
    if (!score) return "One sentence.";
    const response = /<response>\n([\s\S]*?)\n<\/response>/.exec(req.messages[1].content)![1];
    return score[1] === "no-filler" && response.startsWith("FILLER") ? "0" : "5";
  };
  return { calls, reply };
}

const weak = parseRubricText("<rubric><item>\n### Quality\nIs it good? Score from 0 to 5.\n</item></rubric>");
const prompts = ["Write about rain.", "Write about trains.", "Write about bread."].map((p, i) => ({ id: `p${i}`, prompt: p }));

describe("calibration rounds against a fake OpenAI-compatible server", () => {
  it("generates, annotates, scores, analyses, revises; keeps the best version by agreement, with lineage", async () => {
    const withFiller = "<rubric>\n<item>\n### Quality\nIs it good? Score from 0 to 5.\n</item>\n<item>\n### No filler\nEmpty padding sentences? Score from 0 to 5.\n</item>\n</rubric>";
    const dropsIt = "<rubric>\n<item>\n### Quality\nIs it really good? Score from 0 to 5.\n</item>\n</rubric>";
    const s = scripted({ revisions: [withFiller, dropsIt] });
    const fake = await startFakeOpenAI({ reply: s.reply });
    try {
      const model = createChatModel({ baseURL: fake.url, model: "fake", maxTries: 1 });
      const runDir = join(root, "scripted");
      const lines: string[] = [];
      const res = await runAutoPrompt({ runDir, senior: model, junior: model, taskDescription: "Write short texts.", prompts, initialRubric: weak, rounds: 2, promptsPerRound: 2, seed: 0, log: (l) => lines.push(l), protocol: "hardened" });
      // Per round: 2 prompts → 2 generations → 4 cases → 4 annotations; one analysis and one revision.
      expect(s.calls.generate).toBe(4);
      expect(s.calls.annotate).toBe(8);
      expect(s.calls.analyze).toBe(2);
      expect(s.calls.revise).toBe(2);
      expect(res.cases).toBe(8);
      // Round 1: v0 gives everything 1.0 → MAE = mean(|1−.9|, |1−.2|) = 0.45; correlation undefined (constant).
      const [r1, r2] = res.rounds;
      expect(r1.current).toBe(0);
      expect(r1.currentOnNew.mae).toBeCloseTo(0.45, 12);
      expect(r1.currentOnNew.spearman).toBeNull();
      expect(r1.revised).toBe(1);
      // Round 2: v1 (with "No filler") gives filler 0.5 → MAE = mean(.1, .3) = 0.2, ranks agree → best v1;
      // the revision of v1 drops the criterion (v2, parent v1) and the final choice keeps v1.
      expect(r2.current).toBe(1);
      expect(r2.best.version).toBe(1);
      expect(r2.best.mae).toBeCloseTo(0.2, 12);
      expect(r2.best.spearman).toBeCloseTo(1, 12);
      expect(r2.ranking.map((r) => r.version)).toEqual([1, 0]);
      expect(res.finalRanking.map((r) => r.version)).toEqual([1, 0, 2]);
      expect(res.best.version).toBe(1);
      expect(readFileSync(res.rubricFile, "utf8")).toContain("No filler");
      const versions = RubricStore.open(runDir).list();
      expect(versions.map((v) => [v.version, v.parent, v.author])).toEqual([
        [0, null, { kind: "initial" }],
        [1, 0, { kind: "autoprompt", round: 1 }],
        [2, 1, { kind: "autoprompt", round: 2 }],
      ]);
      expect(versions[1].analyses).toEqual(["autoprompt/round-001.json"]);
      // Every generation/annotation/analysis/revision request and reply is in the log; every junior evaluation too.
      const calls = readJsonl<{ key: string; messages: unknown[]; reply: string }>(join(runDir, "autoprompt", "calls.jsonl")).records;
      expect(calls.length).toBe(4 + 8 + 2 + 2);
      expect(calls.every((c) => c.messages.length === 2 && typeof c.reply === "string")).toBe(true);
      const scores = readJsonl<{ version: number; caseId: string }>(join(runDir, "autoprompt", "scores.jsonl")).records;
      // (v0, v1 on 8 cases) + v2 on 8 cases in the final choice; nothing scored twice.
      expect(scores.length).toBe(24);
      expect(new Set(scores.map((x) => `${x.version}/${x.caseId}`)).size).toBe(24);
      expect(lines.some((l) => /round 2: .*best v1/.test(l))).toBe(true);
    } finally {
      await fake.close();
    }
  });

  it("an unreadable revision or annotation is logged and skipped, never invented", async () => {
    const s = scripted({ revisions: [] });
    const fake = await startFakeOpenAI({
      reply: (req) => {
        const last = req.messages[req.messages.length - 1].content;
        if (last.includes("## Response to label") && last.includes("bread")) return "It is fine I guess.";
        return s.reply(req);
      },
    });
    try {
      const model = createChatModel({ baseURL: fake.url, model: "fake", maxTries: 1 });
      const runDir = join(root, "unreadable");
      const res = await runAutoPrompt({ runDir, senior: model, junior: model, taskDescription: "Write short texts.", prompts, initialRubric: weak, rounds: 1, promptsPerRound: 3, seed: 0, log: () => {}, protocol: "hardened" });
      expect(res.rounds[0].unreadable).toEqual({ generations: 0, annotations: 2 });
      expect(res.cases).toBe(4);
      expect(res.rounds[0].cases.some((c) => c.prompt.includes("bread"))).toBe(false);
      expect(res.rounds[0].revised).toBeNull();
      expect(res.rounds[0].revisionNote).toMatch(/revision unreadable/);
      expect(RubricStore.open(runDir).list().length).toBe(1);
      expect(res.best.version).toBe(0);
    } finally {
      await fake.close();
    }
  });

  it("refuses to resume a directory made for another task or seed", async () => {
    const s = scripted({ revisions: [] });
    const fake = await startFakeOpenAI({ reply: s.reply });
    try {
      const model = createChatModel({ baseURL: fake.url, model: "fake", maxTries: 1 });
      const runDir = join(root, "mismatch");
      const base = { runDir, senior: model, junior: model, taskDescription: "Write short texts.", prompts, initialRubric: weak, rounds: 1, promptsPerRound: 1, log: () => {} };
      await runAutoPrompt({ ...base, seed: 0 });
      await expect(runAutoPrompt({ ...base, seed: 1 })).rejects.toThrow(/cannot resume .*'seed' differs/);
    } finally {
      await fake.close();
    }
  });
});

describe("mpo autoprompt resumes after kill -9", () => {
  const sim = new SimulatedJudgeModel("both", 0);
  const args = (out: string, url: string) => ["autoprompt", "--task", "sandbox-essay", "--llm", url, "--model", "sim", "--rounds", "2", "--prompts-per-round", "1", "--seed", "3", "--out", out, "--max-tries", "1"];

  function run(argv: string[]) {
    const child = spawn(process.execPath, ["--import", "tsx", join(repo, "src/cli/main.ts"), ...argv], { cwd: repo, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (out += d));
    const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }>((res) => child.on("close", (code, signal) => res({ code, signal, out })));
    return { child, done };
  }

  it("killed mid-round, the rerun ends with the same rubric, versions and per-round agreement as an uninterrupted run", async () => {
    // Uninterrupted reference run.
    const fake = await startFakeOpenAI({ reply: (req) => sim.reply(req.messages as never) });
    let killAt = -1;
    let victim: ReturnType<typeof run> | null = null;
    const killer = await startFakeOpenAI({
      reply: (req) => {
        // The kill lands while round 2's junior scoring is under way (after its cases were labelled).
        if (req.index === killAt && victim) victim.child.kill("SIGKILL");
        return sim.reply(req.messages as never);
      },
    });
    try {
      const ref = join(root, "ref");
      const r0 = await run(args(ref, fake.url)).done;
      expect(r0.code, r0.out).toBe(0);
      const refCalls = readJsonl<{ key: string }>(join(ref, "autoprompt", "calls.jsonl")).records;
      const round2Annotations = refCalls.filter((c) => c.key.startsWith("r2/annotate/")).length;
      expect(round2Annotations).toBeGreaterThan(0);
      // Kill between round 2's last annotation and its analysis: during its junior scoring.
      const bodies = fake.requests.map((b) => JSON.stringify(b));
      const lastIndex = (text: string) => bodies.map((b, i) => (b.includes(text) ? i : -1)).reduce((a, b) => Math.max(a, b), -1);
      const lastLabel = lastIndex("## Response to label");
      const lastAnalysis = lastIndex("## Disagreements");
      expect(lastAnalysis - lastLabel).toBeGreaterThan(10);
      killAt = Math.floor((lastLabel + lastAnalysis) / 2);

      const out = join(root, "killed");
      victim = run(args(out, killer.url));
      const k = await victim.done;
      expect(k.signal).toBe("SIGKILL");
      expect(existsSync(join(out, "autoprompt", "round-001.json"))).toBe(true);
      expect(existsSync(join(out, "autoprompt", "round-002.json"))).toBe(false);
      const before = readJsonl(join(out, "autoprompt", "calls.jsonl")).records.length;
      expect(before).toBeGreaterThan(0);

      const r1 = await run(args(out, fake.url)).done;
      expect(r1.code, r1.out).toBe(0);
      expect(r1.out).toContain("round 1 already done (resumed)");
      expect(readFileSync(join(out, "rubric.txt"), "utf8")).toBe(readFileSync(join(ref, "rubric.txt"), "utf8"));
      const summary = (d: string) => JSON.parse(readFileSync(join(d, "autoprompt", "summary.json"), "utf8"));
      expect(summary(out)).toEqual(summary(ref));
      const hist = (d: string) => RubricStore.open(d).list().map((v) => [v.version, v.parent, v.author, v.rubric]);
      expect(hist(out)).toEqual(hist(ref));
      // Journaled calls were replayed, not asked again: the resumed run made no duplicate senior call.
      const keys = readJsonl<{ key: string }>(join(out, "autoprompt", "calls.jsonl")).records.map((c) => c.key);
      expect(new Set(keys).size).toBe(keys.length);
    } finally {
      await fake.close();
      await killer.close();
    }
  }, 120_000);
});
