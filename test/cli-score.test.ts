import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildProgram } from "../src/cli/main.ts";
import { startFakeOpenAI, type FakeOpenAI } from "./helpers/fake-openai-server.ts";
import { fakeJudge } from "./judge-fake-replies.ts";

const RUBRIC = `<rubric>
<item>
### Relevance
Stays on the prompt. Score from 0 to 5.
</item>
<item>
### Style
Clear prose. Score from 0 to 5.
</item>
</rubric>
`;

let server: FakeOpenAI;
let dir: string;
let deadUrl: string;
beforeAll(async () => {
  server = await startFakeOpenAI({ reply: fakeJudge() });
  const dead = await startFakeOpenAI();
  deadUrl = dead.url;
  await dead.close();
  dir = mkdtempSync(join(tmpdir(), "mpo-cli-score-"));
  writeFileSync(join(dir, "rubric.txt"), RUBRIC);
  writeFileSync(join(dir, "bad-rubric.txt"), "<rubric>\n</rubric>\n");
  const recs = Array.from({ length: 6 }, (_, i) => ({
    id: `s${i}`,
    prompt: `Prompt ${i}`,
    response: i % 2 ? "short lazy text" : "Cities should invest in bike lanes because they reduce traffic, improve health and cut emissions.",
    ...(i === 0 ? { taskDescription: "Argue a position." } : {}),
  }));
  writeFileSync(join(dir, "in.jsonl"), recs.map((r) => JSON.stringify(r)).join("\n") + "\n\n");
  writeFileSync(join(dir, "bad.jsonl"), '{"prompt":"p","response":"r"}\n{"prompt":"p","response":7}\n');
});
afterAll(() => server.close());

function mpo(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("npx", ["tsx", "src/cli/main.ts", ...args], { cwd: process.cwd(), timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Runs a command in-process (no spawn) and returns the error it throws, if any. */
async function inProcess(args: string[]): Promise<Error | undefined> {
  const program = await buildProgram();
  program.exitOverride();
  program.configureOutput({ writeErr: () => {}, writeOut: () => {} });
  for (const c of program.commands) c.exitOverride();
  try {
    await program.parseAsync(["node", "mpo", ...args]);
    return undefined;
  } catch (err) {
    return err as Error;
  }
}

describe("mpo score / mpo meta-step end to end (spawned CLI, fake judge server)", () => {
  it("scores a JSONL file, then runs a meta step on the scored output", async () => {
    const out = join(dir, "scored.jsonl");
    const r = await mpo(["score", "--rubric", join(dir, "rubric.txt"), "--input", join(dir, "in.jsonl"), "--llm", server.url, "--model", "judge", "--server", "vllm", "--task-description", "Write an essay.", "--out", out, "--concurrency", "3", "--protocol", "hardened"]);
    expect(r.stderr).not.toMatch(/mpo:|Error/);
    expect(r.code).toBe(0);
    const lines = readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(lines).toHaveLength(6);
    expect(lines[0]).toMatchObject({ id: "s0", taskDescription: "Argue a position.", evaluation: { total: 6, mode: "per-item", rubricVersion: 0 } });
    expect(lines[1].evaluation.total).toBe(2);
    expect(lines[1].evaluation.items.map((i: any) => i.name)).toEqual(["relevance", "style"]);
    expect(lines.every((l) => Array.isArray(l.evaluation.items) && l.evaluation.items.every((i: any) => i.rationale && i.flags))).toBe(true);
    expect(r.stdout).toContain("scored 6/6 responses with rubric v0 (2 items, per-item)");
    expect(r.stdout).toContain("mean total 4.000");
    expect(r.stdout).toMatch(/judge: 24 calls \(0 failed\), \d+ prompt \+ \d+ completion tokens/);
    // the first record's own task description reached the judge
    expect(server.requests.some((q) => q.messages[1]?.content.includes("Argue a position."))).toBe(true);

    const run = join(dir, "run");
    const m = await mpo(["meta-step", "--rubric", join(dir, "rubric.txt"), "--rollouts", out, "--llm", server.url, "--model", "mrm", "--out", run, "--samples", "3", "--seed", "5", "--task-description", "Write an essay.", "--protocol", "hardened"]);
    expect(m.code).toBe(0);
    expect(m.stdout).toContain("rubric v0 → v1: 3 items");
    expect(m.stdout).toContain(`new rubric: ${join(run, "rubrics", "v0001.txt")}`);
    expect(existsSync(join(run, "rubrics", "v0001.json"))).toBe(true);
    const log = JSON.parse(readFileSync(join(run, "meta", "step-000000.json"), "utf8"));
    expect(log.ok).toBe(true);
    expect(log.sampledIds).toHaveLength(3);
  });

  it("a spawned command with an unreachable server exits 2 with a clear message", async () => {
    const r = await mpo(["score", "--rubric", join(dir, "rubric.txt"), "--input", join(dir, "in.jsonl"), "--llm", deadUrl, "--model", "m", "--task-description", "t", "--max-tries", "1"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`mpo: cannot reach judge server at ${deadUrl}`);
    expect(r.stdout).toBe("");
  });
});

describe("mpo score / meta-step errors (in-process)", () => {
  const base = () => ["--llm", server.url, "--model", "m", "--task-description", "t"];
  it("missing input file, bad rubric, bad JSONL line", async () => {
    expect((await inProcess(["score", "--rubric", join(dir, "rubric.txt"), "--input", join(dir, "nope.jsonl"), ...base()]))?.message).toBe(`input file not found: ${join(dir, "nope.jsonl")}`);
    expect((await inProcess(["score", "--rubric", join(dir, "nope.txt"), "--input", join(dir, "in.jsonl"), ...base()]))?.message).toMatch(/rubric file not found/);
    expect((await inProcess(["score", "--rubric", join(dir, "bad-rubric.txt"), "--input", join(dir, "in.jsonl"), ...base()]))?.message).toMatch(/no rubric text found in .*bad-rubric\.txt/);
    expect((await inProcess(["score", "--rubric", join(dir, "rubric.txt"), "--input", join(dir, "bad.jsonl"), ...base()]))?.message).toBe(
      `${join(dir, "bad.jsonl")}: line 2: field 'response': expected a string, got number`,
    );
    expect((await inProcess(["score", "--rubric", join(dir, "rubric.txt"), "--input", join(dir, "in.jsonl"), ...base(), "--mode", "batch"]))?.message).toMatch(/--mode/);
    expect((await inProcess(["score", "--rubric", join(dir, "rubric.txt"), "--input", join(dir, "in.jsonl"), "--llm", "not a url", "--model", "m", "--task-description", "t"]))?.message).toMatch(/--llm: expected a URL/);
  });

  it("meta-step: unscored rollouts, empty store without --rubric, unreachable server", async () => {
    expect((await inProcess(["meta-step", "--rollouts", join(dir, "in.jsonl"), "--out", join(dir, "r2"), ...base()]))?.message).toMatch(/no record has an evaluation/);
    const scored = join(dir, "one-scored.jsonl");
    const ev = { items: [{ name: "relevance", score: 5, min: 0, max: 5, rationale: "ok" }], total: 5, normalized: 1 };
    writeFileSync(scored, JSON.stringify({ prompt: "p", response: "r", evaluation: ev }) + "\n");
    expect((await inProcess(["meta-step", "--rollouts", scored, "--out", join(dir, "r3"), ...base()]))?.message).toMatch(/store .* is empty: pass --rubric/);
    writeFileSync(join(dir, "bad-ev.jsonl"), JSON.stringify({ prompt: "p", response: "r", evaluation: { items: [{ name: "x", score: "high" }] } }) + "\n");
    expect((await inProcess(["meta-step", "--rollouts", join(dir, "bad-ev.jsonl"), "--out", join(dir, "r3"), ...base()]))?.message).toBe(
      `${join(dir, "bad-ev.jsonl")}: line 1: field 'evaluation'.items.0.score: expected a number`,
    );
    const err = await inProcess(["meta-step", "--rubric", join(dir, "rubric.txt"), "--rollouts", scored, "--out", join(dir, "r4"), "--llm", deadUrl, "--model", "m", "--task-description", "t", "--max-tries", "1"]);
    expect(err?.message).toMatch(new RegExp(`^cannot reach judge server at ${deadUrl.replace(/[./]/g, "\\$&")}`));
    expect(existsSync(join(dir, "r4", "rubrics", "v0000.json"))).toBe(true);
    expect(existsSync(join(dir, "r4", "rubrics", "v0001.json"))).toBe(false);
  });
});
