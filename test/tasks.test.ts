import { afterAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, statSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parquetWriteBuffer } from "hyparquet-writer";
import { getTask, listTasks } from "../src/tasks/registry.ts";
import { loadTaskConfig } from "../src/tasks/config.ts";
import { clusterTexts } from "../src/tasks/cluster.ts";
import { fitMathClusters } from "../src/tasks/math.ts";
import type { TaskRecord } from "../src/tasks/types.ts";

const SHARED = resolve(__dirname, "..", "..", "shared", "data");
const HAVE_SHARED = existsSync(join(SHARED, "math", "train.jsonl"));
if (!HAVE_SHARED) console.warn(`tasks.test: ${SHARED} not found — tests on the real corpora are skipped`);

const dir = mkdtempSync(join(tmpdir(), "mpo-tasks-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function jsonl(name: string, rows: unknown[]): string {
  const p = join(dir, name);
  writeFileSync(p, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  return p;
}

function readRows(p: string): Array<Record<string, any>> {
  return readFileSync(p, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

describe("registry", () => {
  it("lists the paper's four tasks and rejects unknown names", async () => {
    expect(listTasks().map((t) => t.name)).toEqual(expect.arrayContaining(["essay", "summarization", "ethics", "math"]));
    await expect(getTask("poetry")).rejects.toThrow(/unknown task 'poetry' \(known: essay, summarization, ethics, math/);
    expect((await getTask("essay_writing")).name).toBe("essay");
  });
});

describe.skipIf(!HAVE_SHARED)("prompt builders on real records (../shared/data)", () => {
  it("essay: the paper's test instructions, one user message (no system turn, as the reference) with the word limit", async () => {
    const task = await getTask("essay", { data: { test: join(SHARED, "essay", "prompts.jsonl") } });
    const recs = await task.load("test");
    expect(recs).toHaveLength(4096);
    const first = readRows(join(SHARED, "essay", "prompts.jsonl"))[0];
    expect(recs[0].id).toBe(first.id);
    const msgs = task.buildMessages(recs[0]);
    expect(msgs.map((m) => m.role)).toEqual(["user"]);
    expect(msgs[0].content).toContain("350 words");
    expect(msgs[0].content).toContain(`Instruction:\n${first.prompt}\n`);
    expect(msgs[0].content).not.toMatch(/\{\{|\}\}/);
    // The paper's instruction makes no quality demands of its own.
    expect(msgs[0].content).not.toMatch(/stay on (?:the )?topic|beginning|well-structured/i);
    const view = task.judgeView!(recs[0]);
    expect(view.prompt).toBe(first.prompt);
    expect(msgs[0].content.startsWith(view.instruction)).toBe(true);
    expect(view.juniorSeesInstruction).toBe(true);
    expect(task.reward.kind).toBe("rubric");
    expect(task.evaluations).toContain("elo");
  });

  it("ethics: title → action pairs build a prompt that asks for a <verdict>", async () => {
    const rows = readRows(join(SHARED, "ethics", "scruples_gold_title_action.jsonl")).filter((r) => r.action_description);
    expect(rows.length).toBe(40);
    const p = jsonl("gold-actions.jsonl", rows);
    const task = await getTask("ethics", { data: { test: p }, fields: { action: "action_description" } });
    const recs = await task.load("test");
    expect(recs).toHaveLength(40);
    const user = task.buildMessages(recs[0]).at(-1)!.content;
    expect(user).toContain(`Title: ${rows[0].title}`);
    expect(user).toContain(`### Action to evaluate\n"${rows[0].action_description}"`);
    expect(user).toContain("300 words");
    expect(user).toContain("<verdict>RIGHT</verdict>");
    expect(user).toContain("<verdict>WRONG</verdict>");
    expect(user).not.toContain("Situation:");
    expect(recs[0].label).toBeUndefined();
    // Records with a null action are dropped, as the paper's loader does (and counted on stderr).
    const all = await getTask("ethics", { data: { test: join(SHARED, "ethics", "scruples_gold_title_action.jsonl") }, fields: { action: "action_description" } });
    expect((await all.load("test")).map((r) => r.id)).toEqual(recs.map((r) => r.id));
    // An action that is present but empty is still an error naming file, line and field.
    const bad = jsonl("gold-empty-action.jsonl", [{ ...rows[0], action_description: "" }]);
    await expect((await getTask("ethics", { data: { test: bad }, fields: { action: "action_description" } })).load("test")).rejects.toThrow(/gold-empty-action\.jsonl:1: field 'action_description': expected non-empty text, got an empty string/);
  });

  it("math: problem prompt, gold answer as label, solution as reference, domain/cluster groups (k=3, cached)", async () => {
    // A per-domain subset of the real train/test files keeps the test fast.
    const per = (rows: Array<Record<string, any>>, n: number) => {
      const seen = new Map<string, number>();
      return rows.filter((r) => {
        const c = seen.get(r.domain) ?? 0;
        seen.set(r.domain, c + 1);
        return c < n;
      });
    };
    const train = jsonl("math-train.jsonl", per(readRows(join(SHARED, "math", "train.jsonl")), 60));
    const test = jsonl("math-test.jsonl", per(readRows(join(SHARED, "math", "test.jsonl")), 15));
    const cacheDir = join(dir, "cache");
    const task = await getTask("math", { data: { train, test }, cacheDir });
    const recs = await task.load("test");
    expect(recs).toHaveLength(7 * 15);
    const r0 = recs[0];
    const raw0 = readRows(test)[0];
    expect(r0.id).toBe(raw0.id);
    expect(r0.label).toBe(raw0.answer);
    expect(r0.reference).toBe(raw0.solution);
    expect(r0.group).toMatch(/^[a-z_]+\/[0-2]$/);
    const user = task.buildMessages(r0).at(-1)!.content;
    expect(user).toContain(raw0.problem);
    expect(user).toContain("\\boxed{ }");
    const trainRecs = await task.load("train");
    const domains = new Set(trainRecs.map((r) => r.group!.split("/")[0]));
    expect(domains.size).toBe(7);
    for (const d of domains) for (const c of [0, 1, 2]) expect(trainRecs.some((r) => r.group === `${d}/${c}`)).toBe(true);
    // The cluster assignment is computed once and cached as JSON.
    const cacheFiles = readdirSync(join(cacheDir, "math-clusters"));
    expect(cacheFiles).toHaveLength(1);
    const cachePath = join(cacheDir, "math-clusters", cacheFiles[0]);
    const mtime = statSync(cachePath).mtimeMs;
    const again = await (await getTask("math", { data: { train, test }, cacheDir })).load("test");
    expect(again.map((r) => r.group)).toEqual(recs.map((r) => r.group));
    expect(statSync(cachePath).mtimeMs).toBe(mtime);
    expect(task.accuracy).toEqual({ checker: "boxed", goldField: "answer" });
    expect(task.reward).toMatchObject({ kind: "math-mixed", answerCheckProbability: 0.5, minReasoningWords: 30 });
    expect(task.metaDefaults).toEqual({ interval: 20 });
    expect(task.judgeView!(r0).prompt).toBe(raw0.problem);
  });

  it("k-means clustering is deterministic for a seed and covers every domain of the real train split", () => {
    const rows = readRows(join(SHARED, "math", "train.jsonl"));
    const algebra = rows.filter((r) => r.domain === "algebra").slice(0, 300).map((r) => r.problem);
    const a = clusterTexts(algebra, 3, 0);
    const b = clusterTexts(algebra, 3, 0);
    expect(a.labels).toEqual(b.labels);
    expect(new Set(a.labels).size).toBe(3);
    // Clusters are labelled by size, largest first.
    const sizes = [0, 1, 2].map((c) => a.labels.filter((l) => l === c).length);
    expect(sizes[0]).toBeGreaterThanOrEqual(sizes[1]);
    expect(sizes[1]).toBeGreaterThanOrEqual(sizes[2]);
    const recs: TaskRecord[] = rows
      .filter((_, i) => i % 10 === 0)
      .map((r) => ({ id: r.id, prompt: r.problem, meta: { domain: r.domain, vars: { problem: r.problem } } }));
    const fit = fitMathClusters(recs, 3, 0);
    expect(Object.keys(fit.sizes).sort()).toEqual(["algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory", "prealgebra", "precalculus"]);
    for (const s of Object.values(fit.sizes)) {
      expect(s).toHaveLength(3);
      for (const n of s) expect(n).toBeGreaterThan(0);
    }
    expect(Object.keys(fit.train)).toHaveLength(recs.length);
    expect(fitMathClusters(recs, 3, 0).train).toEqual(fit.train);
  });
});

describe("synthetic records", () => {
  it("summarization: BillSum fields from local JSONL and Parquet; missing fields name file, row and field", async () => {
    const rows = [
      { text: "SECTION 1. SHORT TITLE.\nThis Act may be cited as the Clean Parks Act.", summary: "Clean Parks Act: funds park cleanup.", title: "To fund park cleanup." },
      { text: "SEC. 2. Grants for rural broadband.", summary: "Authorizes broadband grants.", title: "" },
    ];
    const pj = jsonl("bills.jsonl", rows);
    const pq = join(dir, "bills.parquet");
    writeFileSync(pq, new Uint8Array(parquetWriteBuffer({ columnData: ["text", "summary", "title"].map((k) => ({ name: k, data: rows.map((r) => (r as any)[k]), type: "STRING" as const })) })));
    for (const p of [pj, pq]) {
      const task = await getTask("summarization", { data: { test: p } });
      const recs = await task.load("test");
      expect(recs).toHaveLength(2);
      expect(recs[0].reference).toBe(rows[0].summary);
      const u0 = task.buildMessages(recs[0]).at(-1)!.content;
      expect(u0).toContain("400 words");
      // The reference shows the bill text only (no title).
      expect(u0).not.toContain("To fund park cleanup.");
      expect(u0).toContain("```\nSECTION 1. SHORT TITLE.\nThis Act may be cited as the Clean Parks Act.\n```");
      // The judge sees the bill alone: no instruction, no gold summary.
      const view = task.judgeView!(recs[0]);
      expect(view.prompt).toBe(rows[0].text);
      expect(view.juniorSeesInstruction).toBe(false);
      expect(task.evaluations).toEqual(["elo", "rouge"]);
    }
    const bad = jsonl("bills-bad.jsonl", [rows[0], { summary: "no text" }]);
    await expect((await getTask("summarization", { data: { test: bad } })).load("test")).rejects.toThrow(/bills-bad\.jsonl:2: field 'text': expected non-empty text, got nothing/);
  });

  it("summarization without a local file goes to the Hub and says what to do when it cannot", async () => {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
    const port = (s.address() as AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    const task = await getTask("summarization", { hubCacheDir: join(dir, "hub"), hubUrl: `http://127.0.0.1:${port}`, offline: false });
    await expect(task.load("test")).rejects.toThrow(/FiscalNote\/billsum[\s\S]*datasets--FiscalNote--billsum[\s\S]*cannot be reached[\s\S]*--data-file test=PATH/);
  });

  it("ethics: Scruples anecdote fields (nested action.description, binarized_label)", async () => {
    const p = jsonl("anecdotes.jsonl", [
      { id: "a1", title: "AITA for skipping my friend's party?", text: "I had an exam the next day and told her a week before.", action: { description: "skipping my friend's party" }, binarized_label: "RIGHT" },
    ]);
    const task = await getTask("ethics", { data: { test: p } });
    const [r] = await task.load("test");
    expect(r.id).toBe("a1");
    expect(r.label).toBe("RIGHT");
    const u = task.buildMessages(r).at(-1)!.content;
    expect(u).toContain("### Anecdote\nTitle: AITA for skipping my friend's party?\nI had an exam the next day");
    expect(u).toContain(`### Action to evaluate\n"skipping my friend's party"`);
    expect(task.judgeView!(r).prompt).toBe(`Title: AITA for skipping my friend's party?\nI had an exam the next day and told her a week before.\n\nAction to evaluate: "skipping my friend's party"`);
    expect(task.reward).toMatchObject({ formatRule: { tag: "verdict", minWords: 30, score: -10 } });
    expect(task.accuracy).toEqual({ checker: "verdict", goldField: "binarized_label" });
  });
});

describe("template overrides and limits", () => {
  it("a prompts directory overrides the built-in task template; limit trims the split", async () => {
    const over = join(dir, "my-prompts");
    mkdirSync(join(over, "tasks", "essay"), { recursive: true });
    writeFileSync(join(over, "tasks", "essay", "user.md"), "TASK ({{max_words}} words max): {{prompt}}\n");
    const p = jsonl("essay-own.jsonl", [{ id: "e1", prompt: "Describe a lighthouse." }, { id: "e2", prompt: "Describe a mill." }]);
    const task = await getTask("essay", { data: { test: p }, promptsDir: over });
    const recs = await task.load("test", { limit: 1 });
    expect(recs).toHaveLength(1);
    expect(task.buildMessages(recs[0]).at(-1)!.content).toBe("TASK (350 words max): Describe a lighthouse.");
    expect(task.templates?.user).toBe(join(over, "tasks", "essay", "user.md"));
  });
});

describe("task config files", () => {
  it("a YAML task with its own template loads, validates and builds prompts", async () => {
    const data = jsonl("haiku.jsonl", [{ uid: "h1", topic: "autumn rain" }]);
    writeFileSync(join(dir, "haiku-user.md"), "Write a haiku about {{topic}} in at most {{max_words}} words.\n");
    const cfg = join(dir, "haiku.yaml");
    writeFileSync(cfg, [
      "name: haiku",
      "description: Haiku writing from a topic.",
      "data:",
      "  test: haiku.jsonl",
      "fields:",
      "  id: uid",
      "  vars: { topic: topic }",
      "templates:",
      "  system: tasks/essay/system.md",
      "  user: haiku-user.md",
      "constants: { max_words: 17 }",
      "reward: { kind: rubric, initialRubric: ../rubric.txt }",
      "evaluations: [elo]",
    ].join("\n"));
    const spec = loadTaskConfig(cfg);
    expect(spec.data.test).toEqual({ path: data });
    const task = await getTask(cfg);
    const [r] = await task.load("test");
    expect(r.id).toBe("h1");
    expect(task.buildMessages(r)).toEqual([
      { role: "system", content: readFileSync(resolve(__dirname, "..", "prompts", "tasks", "essay", "system.md"), "utf8").trim() },
      { role: "user", content: "Write a haiku about autumn rain in at most 17 words." },
    ]);
  });

  it("config errors name the file and the field", () => {
    const write = (name: string, text: string) => {
      const p = join(dir, name);
      writeFileSync(p, text);
      return p;
    };
    const base = "description: d\ndata: { test: x.jsonl }\nfields: { vars: { topic: topic } }\ntemplates: { user: haiku-user.md }\nreward: { kind: rubric, initialRubric: r.txt }\n";
    expect(() => loadTaskConfig(write("c1.yaml", "name: c1\n" + base.replace("description: d\n", "")))).toThrow(/c1\.yaml: field 'description'/);
    expect(() => loadTaskConfig(write("c2.yaml", "name: c2\n" + base))).toThrow(/c2\.yaml: field 'templates\.user'.*unmapped \{\{max_words\}\}/);
    expect(() => loadTaskConfig(write("c3.yaml", "name: c3\n" + base.replace("kind: rubric, initialRubric: r.txt", "kind: magic")))).toThrow(/c3\.yaml: field 'reward\.kind'/);
    expect(() => loadTaskConfig(write("c4.yaml", "name: c4\n" + base.replace("haiku-user.md", "nope.md")))).toThrow(/c4\.yaml: field 'templates\.user'/);
    expect(() => loadTaskConfig(write("c5.yaml", "name: c5\n" + base + "evaluations: [accuracy]\nconstants: { max_words: 3 }\n"))).toThrow(/c5\.yaml: field 'accuracy'/);
  });
});
