import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildProgram } from "../src/cli/main.ts";
import { startFakeOpenAI, type FakeOpenAI } from "./helpers/fake-openai-server.ts";

const dir = mkdtempSync(join(tmpdir(), "mpo-eval-cli-"));
let server: FakeOpenAI | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  vi.restoreAllMocks();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(args: string[]): Promise<string> {
  const out: string[] = [];
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: any) => {
    out.push(String(chunk));
    return true;
  });
  try {
    await (await buildProgram()).parseAsync(["node", "mpo", ...args]);
  } finally {
    vi.restoreAllMocks();
  }
  return out.join("");
}

function jsonl(name: string, rows: unknown[]): string {
  const p = join(dir, name);
  writeFileSync(p, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  return p;
}

const queries = Array.from({ length: 12 }, (_, i) => `Write a short essay about city ${i}.`);

describe("mpo eval elo (real HTTP judge)", () => {
  it("runs the tournament against an OpenAI-compatible server and writes scores, provenance, log and plot", async () => {
    server = await startFakeOpenAI({
      reply: ({ messages }) => {
        const user = messages[messages.length - 1].content;
        const a = /## Response A\n([\s\S]*?)\n\n## Response B/.exec(user)?.[1] ?? "";
        const b = /## Response B\n([\s\S]*?)\n\n## Your decision/.exec(user)?.[1] ?? "";
        return a.length >= b.length ? "<winner>A</winner>" : "<winner>B</winner>";
      },
    });
    const strong = jsonl("strong-1.5b.test.generations.jsonl", queries.map((q, i) => ({ query: q, model_response: `A detailed essay about city ${i}. `.repeat(5) })));
    const weak = jsonl("weak.jsonl", [...queries].reverse().map((q, i) => ({ query: q, model_response: `City ${i}.` })));
    const out = join(dir, "elo");
    const text = await run(["eval", "elo", "--runs", strong, weak, "--judge", server.url, "--model", "judge-model", "--seeds", "2", "--matches", "40", "--bt", "--bootstrap", "20", "--out", out, "--no-progress", "--task", "essay"]);
    expect(text).toMatch(/strong-1\.5b/);
    const scores = JSON.parse(readFileSync(join(out, "elo.scores.json"), "utf8"));
    expect(Object.keys(scores)).toEqual(["mean elo", "mean stds"]);
    expect(scores["mean elo"]["strong-1.5b"]).toBeGreaterThan(scores["mean elo"].weak + 20);
    const prov = JSON.parse(readFileSync(join(out, "elo.provenance.json"), "utf8"));
    expect(prov.judge).toMatchObject({ endpoint: server.url, model: "judge-model" });
    expect(prov.settings).toMatchObject({ seeds: [0, 1], matches: 40, k: 4, base: 10, scale: 400, bothOrders: false });
    expect(prov.promptsCompared).toBe(12);
    expect(prov.counts.applied).toBe(80);
    const log = readFileSync(join(out, "elo.matches.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(log).toHaveLength(80);
    expect(readFileSync(join(out, "elo.plot.svg"), "utf8")).toMatch(/^<svg[\s\S]*strong-1\.5b[\s\S]*<\/svg>\n$/);
    expect(existsSync(join(out, "bt.json"))).toBe(true);
    // What the server received: the judge model, temperature 0, a system + user prompt with the task description.
    const req = server.requests[0];
    expect(req.model).toBe("judge-model");
    expect(req.temperature).toBe(0);
    expect(req.messages[0].role).toBe("system");
    expect(req.messages[0].content).toContain("Essay writing");
    // Identical (prompt, A, B) triples are judged once.
    expect(server.requests.length).toBeLessThanOrEqual(80);
  });

  it("fails (non-zero, saying why) when too few verdicts are usable; the progress total never moves", async () => {
    // A judge that answers the right way only for prompts about cities 0–3: a third of the verdicts are readable.
    server = await startFakeOpenAI({ reply: ({ messages }) => (/city [0-3]\./.test(messages[messages.length - 1].content) ? "<winner>A</winner>" : "I cannot decide.") });
    const a = jsonl("a.jsonl", queries.map((q) => ({ query: q, model_response: "one" })));
    const b = jsonl("b.jsonl", queries.map((q) => ({ query: q, model_response: "two" })));
    const out = join(dir, "elo-bad");
    const args = ["eval", "elo", "--runs", a, b, "--judge", server.url, "--model", "judge-model", "--seeds", "2", "--matches", "30", "--out", out, "--no-progress"];
    await expect(run(args)).rejects.toThrow(/only \d+ of 60 scheduled matches \(\d+\.\d%\) got a usable verdict, below --min-usable 0\.8/);
    expect(existsSync(join(out, "elo.matches.jsonl"))).toBe(true); // kept for inspection
    await expect(run([...args, "--min-usable", "0.1"])).resolves.toMatch(/verdicts applied/);
    // Progress: the total is the scheduled matches from the first tick to the last, re-draws included.
    const { runEloTournament } = await import("../src/eval/elo.ts");
    const { createChatModel } = await import("../src/llm/index.ts");
    const sys = (name: string) => ({ name, responses: new Map(queries.map((q, i) => [String(i), { prompt: q, response: name }])) });
    const ticks: [number, number][] = [];
    const r = await runEloTournament({
      systems: [sys("a"), sys("b")], judge: createChatModel({ baseURL: server!.url, model: "judge-model", maxTries: 1 }), seeds: [0, 1], matches: 30,
      onProgress: (d, t) => ticks.push([d, t]),
    });
    expect(r.perSeed.every((x) => x.redrawn > 0)).toBe(true);
    expect(new Set(ticks.map(([, t]) => t))).toEqual(new Set([60]));
    expect(ticks.map(([d]) => d)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
  });

  it("reads the paper's templated queries with --prompt-regex and writes scores shaped like the paper's", async () => {
    server = await startFakeOpenAI({ reply: () => "<winner>B</winner>" });
    const q = (i: number) => `system\nYou are a helpful assistant.\nuser\nInstructions:\nDescribe harbour ${i}.\n\nYour Writing:\nassistant\n`;
    const a = jsonl("sysA.jsonl", [0, 1, 2].map((i) => ({ query: q(i), model_response: `A${i}` })));
    const b = jsonl("sysB.jsonl", [0, 1, 2].map((i) => ({ query: q(i), model_response: `B${i}` })));
    const out = join(dir, "elo-regex");
    await run(["eval", "elo", "--runs", a, b, "--names", "alpha,beta", "--judge", server.url, "--model", "m", "--seeds", "1", "--matches", "6", "--prompt-regex", "Instructions:(.+?)Your Writing:", "--out", out, "--no-progress"]);
    const user = server.requests[0].messages[1].content as string;
    expect(user).toMatch(/^## Request\nDescribe harbour \d\.\n\n## Response A/);
    expect(user).not.toContain("Your Writing");
    const ours = JSON.parse(readFileSync(join(out, "elo.scores.json"), "utf8"));
    expect(Object.keys(ours["mean elo"]).sort()).toEqual(["alpha", "beta"]);
    const paper = join(__dirname, "..", "..", "shared", "data", "paper_results", "summarization", "summarization-merged.scores.json");
    if (existsSync(paper)) {
      const ref = JSON.parse(readFileSync(paper, "utf8"));
      expect(Object.keys(ours)).toEqual(Object.keys(ref));
      for (const k of Object.keys(ref)) for (const v of Object.values(ours[k])) expect(typeof v).toBe("number");
    } else console.warn(`eval-cli.test: ${paper} not found — shape comparison with the paper's file skipped`);
  });

  it("clear errors for missing files and bad lines", async () => {
    const good = jsonl("g.jsonl", [{ query: "q", model_response: "r" }]);
    await expect(run(["eval", "elo", "--runs", good, join(dir, "nope.jsonl"), "--judge", "http://127.0.0.1:9/v1", "--model", "m", "--no-progress"])).rejects.toThrow(/generation file not found: .*nope\.jsonl/);
    const bad = join(dir, "bad.jsonl");
    writeFileSync(bad, '{"query": "q", "model_response": "r"}\n{"query": "q2"}\n');
    await expect(run(["eval", "elo", "--runs", good, bad, "--judge", "http://127.0.0.1:9/v1", "--model", "m", "--no-progress"])).rejects.toThrow(/bad\.jsonl:2: field 'model_response'/);
    await expect(run(["eval", "elo", "--runs", good, good, "--judge", "http://127.0.0.1:9/v1", "--model", "m", "--seeds", "x"])).rejects.toThrow(/--seeds must be/);
  });
});

describe("mpo eval rouge / accuracy", () => {
  it("rouge from one file with both fields", async () => {
    const p = jsonl("sums.jsonl", [
      { model_response: "the cat sat on the mat", summary: "the cat sat on the mat" },
      { model_response: "a dog", summary: "the cat" },
    ]);
    const outFile = join(dir, "rouge.json");
    const text = await run(["eval", "rouge", "--pred", p, "--out", outFile]);
    expect(text).toMatch(/ROUGE on 2 pairs \(with stemming\)/);
    const r = JSON.parse(readFileSync(outFile, "utf8"));
    expect(r.mean.rouge1.fmeasure).toBeCloseTo(0.5, 12);
    expect(r.source.refField).toBe("summary");
  });

  it("rouge joins two files by key and refuses misaligned line counts", async () => {
    const pred = jsonl("pred.jsonl", [{ id: "b", model_response: "x y" }, { id: "a", model_response: "p q" }]);
    const ref = jsonl("ref.jsonl", [{ id: "a", summary: "p q" }, { id: "b", summary: "x y" }, { id: "c", summary: "z" }]);
    const outFile = join(dir, "rouge2.json");
    await run(["eval", "rouge", "--pred", pred, "--ref", ref, "--key", "id", "--out", outFile]);
    expect(JSON.parse(readFileSync(outFile, "utf8")).mean.rouge2.fmeasure).toBe(1);
    await expect(run(["eval", "rouge", "--pred", pred, "--ref", ref])).rejects.toThrow(/has 2 records but .* has 3/);
  });

  it("accuracy with the task's checker (ethics verdicts, math boxes)", async () => {
    const eth = jsonl("eth.jsonl", [
      { model_response: "… <verdict>RIGHT</verdict>", binarized_label: "RIGHT" },
      { model_response: "… <verdict>RIGHT</verdict>", binarized_label: "WRONG" },
      { model_response: "no tag", binarized_label: "WRONG" },
      { model_response: "<verdict>WRONG</verdict>", binarized_label: "WRONG" },
    ]);
    const outFile = join(dir, "acc.json");
    const text = await run(["eval", "accuracy", "--task", "ethics", "--pred", eth, "--out", outFile]);
    expect(text).toMatch(/accuracy \(verdict\): 50\.00% — 2\/4 correct, 1 wrong, 1 unparsable/);
    expect(JSON.parse(readFileSync(outFile, "utf8"))).toMatchObject({ task: "ethics", n: 4, correct: 2 });
    const math = jsonl("math-preds.jsonl", [{ model_response: "so \\boxed{\\frac12}", answer: "\\frac{1}{2}" }, { model_response: "\\boxed{3}", answer: "4" }]);
    expect(await run(["eval", "accuracy", "--task", "math", "--pred", math])).toMatch(/1\/2 correct/);
    await expect(run(["eval", "accuracy", "--task", "essay", "--pred", math])).rejects.toThrow(/declares no answer checker/);
  });
});
