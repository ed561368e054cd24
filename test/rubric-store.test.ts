import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parseRubricText } from "../src/rubric/format.ts";
import { GuidelineStore, RubricStore } from "../src/rubric/store.ts";
import type { Rubric } from "../src/rubric/types.ts";

const rub = (name: string, max = 5): Rubric => ({ items: [{ name, text: `About ${name}.`, min: 0, max }] });
const tmpRun = () => mkdtempSync(join(tmpdir(), "mpo-store-"));
const quiet = { onWarning: () => {} };

describe("RubricStore", () => {
  it("initializes v0 once, then returns the latest", () => {
    const run = tmpRun();
    const s = RubricStore.open(run);
    expect(s.latest()).toBeNull();
    expect(s.list()).toEqual([]);
    const v0 = s.initialize(rub("first"));
    expect(v0).toMatchObject({ version: 0, parent: null, step: 0, author: { kind: "initial" }, analyses: [] });
    const again = s.initialize(rub("other"));
    expect(again.rubric).toEqual(rub("first"));
    expect(readdirSync(join(run, "rubrics")).sort()).toEqual(["v0000.json", "v0000.txt"]);
    expect(parseRubricText(readFileSync(join(run, "rubrics/v0000.txt"), "utf8"))).toEqual(rub("first"));
  });

  it("appends versions with lineage, never overwriting, and reads them back after reopening", () => {
    const run = tmpRun();
    const s = RubricStore.open(run);
    s.initialize(rub("a"));
    const v1 = s.add({ rubric: rub("b"), parent: 0, step: 10, author: { kind: "meta", step: 10 }, analyses: ["meta/step-000010.json"] });
    const v2 = s.add({ rubric: rub("c"), author: { kind: "user", note: "hand edit" }, step: 12 });
    expect(v1.version).toBe(1);
    expect(v2).toMatchObject({ version: 2, parent: 1, step: 12, author: { kind: "user", note: "hand edit" }, analyses: [] });
    const before = readFileSync(join(run, "rubrics/v0001.json"), "utf8");

    const reopened = RubricStore.open(run);
    expect(reopened.list().map((v) => v.version)).toEqual([0, 1, 2]);
    expect(reopened.get(1)).toEqual(v1);
    expect(reopened.latest()).toEqual(v2);
    const v3 = reopened.add({ rubric: rub("d"), author: { kind: "meta", step: 20 }, step: 20, parent: 2 });
    expect(v3.version).toBe(3);
    expect(readFileSync(join(run, "rubrics/v0001.json"), "utf8")).toBe(before);
    expect(reopened.get(3).rubric).toEqual(rub("d"));
  });

  it("gives clear errors for missing versions and invalid payloads", () => {
    const run = tmpRun();
    const s = RubricStore.open(run);
    expect(() => s.get(0)).toThrow(/rubric version v0 not found .*the store is empty/);
    s.initialize(rub("a"));
    expect(() => s.get(7)).toThrow(/v7 not found .*have v0–v0/);
    expect(() => s.add({ rubric: { items: [] }, author: { kind: "user" } })).toThrow(/field 'items'/);
    expect(() => s.add({ rubric: rub("b"), parent: 4, author: { kind: "user" } })).toThrow(/parent rubric version v4 does not exist/);
    expect(existsSync(join(run, "rubrics/v0001.json"))).toBe(false);
  });

  it("skips a corrupt file in list() with a warning naming it, and get() throws naming it", () => {
    const run = tmpRun();
    const warnings: string[] = [];
    const s = RubricStore.open(run, "rubrics", { onWarning: (m) => warnings.push(m) });
    s.initialize(rub("a"));
    s.add({ rubric: rub("b"), author: { kind: "user" } });
    writeFileSync(join(run, "rubrics/v0001.json"), "{ torn");
    writeFileSync(join(run, "rubrics/v0002.json"), JSON.stringify({ version: 2, parent: 1, step: 0, author: { kind: "user" }, createdAt: "x", analyses: [], rubric: { items: [{ name: "a", text: "t", min: 0, max: "9" }] } }));
    expect(s.list().map((v) => v.version)).toEqual([0]);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/v0001\.json/);
    expect(warnings[1]).toMatch(/v0002\.json.*\n.*items\.0\.max/);
    s.list();
    expect(warnings).toHaveLength(2); // once per file
    expect(() => s.get(1)).toThrow(/corrupt rubric version file .*v0001\.json/);
    // Numbers of corrupt files stay taken.
    expect(s.add({ rubric: rub("c"), author: { kind: "user" } }).version).toBe(3);
    expect(s.latest()?.version).toBe(3);
  });

  it("refuses to initialize over only-corrupt files rather than hiding them", () => {
    const run = tmpRun();
    const s = RubricStore.open(run, "rubrics", quiet);
    s.initialize(rub("a"));
    writeFileSync(join(run, "rubrics/v0000.json"), "garbage");
    expect(() => s.initialize(rub("b"))).toThrow(/cannot initialize .*v0000\.json/);
  });

  it("detects a file whose version field disagrees with its name", () => {
    const run = tmpRun();
    const s = RubricStore.open(run, "rubrics", quiet);
    s.initialize(rub("a"));
    const v = JSON.parse(readFileSync(join(run, "rubrics/v0000.json"), "utf8"));
    writeFileSync(join(run, "rubrics/v0001.json"), JSON.stringify({ ...v, version: 5 }));
    expect(() => s.get(1)).toThrow(/says version 5/);
  });

  it("never lets two processes write the same version", async () => {
    const run = tmpRun();
    RubricStore.open(run).initialize(rub("base"));
    const storeUrl = new URL("../src/rubric/store.ts", import.meta.url).href;
    const script = `
      const { RubricStore } = await import(${JSON.stringify(storeUrl)});
      const s = RubricStore.open(process.argv[1]);
      const out = [];
      for (let i = 0; i < 10; i++) out.push(s.add({ rubric: { items: [{ name: "p" + process.argv[2] + "-" + i, text: "t", min: 0, max: 5 }] }, author: { kind: "user" } }).version);
      process.stdout.write(JSON.stringify(out));
    `;
    const runOne = (id: number) =>
      new Promise<number[]>((res, rej) => {
        const p = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script, run, String(id)], { cwd: resolve(__dirname, "..") });
        let out = "";
        let err = "";
        p.stdout.on("data", (d) => (out += d));
        p.stderr.on("data", (d) => (err += d));
        p.on("close", (code) => (code === 0 ? res(JSON.parse(out)) : rej(new Error(err))));
      });
    const [a, b, c] = await Promise.all([runOne(1), runOne(2), runOne(3)]);
    const all = [...a, ...b, ...c].sort((x, y) => x - y);
    expect(all).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    const s = RubricStore.open(run);
    const versions = s.list();
    expect(versions).toHaveLength(31);
    // Every file holds the rubric its writer was told it got.
    const names = new Set(versions.slice(1).map((v) => v.rubric.items[0].name));
    expect(names.size).toBe(30);
    expect(readdirSync(join(run, "rubrics")).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });
});

describe("rollbackAfter", () => {
  it("moves newer versions aside (not deleted) so numbers are reused after resuming from a checkpoint", () => {
    const run = tmpRun();
    const s = RubricStore.open(run);
    s.initialize(rub("a"));
    s.add({ rubric: rub("b"), author: { kind: "meta", step: 10 }, step: 10 });
    s.add({ rubric: rub("c"), author: { kind: "meta", step: 20 }, step: 20 });
    expect(s.rollbackAfter(0)).toEqual([1, 2]);
    expect(s.list().map((v) => v.version)).toEqual([0]);
    const aside = readdirSync(join(run, "rubrics/rolled-back"));
    expect(aside).toHaveLength(1);
    expect(readdirSync(join(run, "rubrics/rolled-back", aside[0])).sort()).toEqual(["v0001.json", "v0001.txt", "v0002.json", "v0002.txt"]);
    expect(s.add({ rubric: rub("d"), author: { kind: "meta", step: 10 }, step: 10 }).version).toBe(1);
    expect(s.rollbackAfter(5)).toEqual([]);
  });
});

describe("GuidelineStore", () => {
  it("versions guideline sets under guidelines/ with the payload under 'guidelines'", () => {
    const run = tmpRun();
    const g = RubricStore.open(run, "guidelines");
    expect(g).toBeInstanceOf(GuidelineStore);
    const v0 = g.initialize({ groups: { "algebra/0": "Check each step.", default: "Be fair." } });
    const v1 = g.add({ guidelines: { groups: { "algebra/0": "Check signs." } }, author: { kind: "meta", step: 20 }, step: 20, analyses: ["meta/step-000020.json"] });
    expect(v1.parent).toBe(0);
    const file = JSON.parse(readFileSync(join(run, "guidelines/v0001.json"), "utf8"));
    expect(file.guidelines.groups["algebra/0"]).toBe("Check signs.");
    expect(readFileSync(join(run, "guidelines/v0000.txt"), "utf8")).toContain("## algebra/0\n\nCheck each step.");
    expect(GuidelineStore.open(run).list()).toEqual([v0, v1]);
    expect(existsSync(join(run, "rubrics"))).toBe(false);
    expect(() => g.add({ guidelines: { groups: { x: 3 } } as never, author: { kind: "user" } })).toThrow(/groups\.x/);
  });
});
