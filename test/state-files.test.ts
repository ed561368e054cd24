/**
 * State read back from disk is validated, not cast (#17 item 4): a corrupt or hand-edited serve-state.json
 * stops the reward service with an error naming the file and the field, and a rubric version the dashboard
 * reads is checked with the rubric module's own schema (the problem names the file and the field).
 */
import { mkdirSync, mkdtempSync, realpathSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readRubrics } from "../src/dashboard/runs.ts";
import { SimulatedJudgeModel } from "../src/sandbox/sim/sim-model.ts";
import { RewardService } from "../src/serve/service.ts";
import { StateFileError } from "../src/util/state-file.ts";

const RUBRIC = "<rubric><item>Discourse: how well the writing flows. Score from 0 to 5.</item></rubric>";

function service(runDir: string) {
  const rubricFile = join(runDir, "..", `${runDir.split("/").pop()}-rubric.txt`);
  writeFileSync(rubricFile, RUBRIC);
  const sim = new SimulatedJudgeModel();
  return new RewardService({ runDir, rubricFile, taskDescription: "Write an essay.", judge: sim, mode: "per-item", metaEvery: 0, metaSamples: 2, prescreen: false, seed: 0, concurrency: 1, log: () => {} });
}

describe("serve-state.json read back", () => {
  const cases: Array<[string, string, RegExp]> = [
    ["a field of the wrong type", JSON.stringify({ window: 1, scored: "12", pendingMeta: null, metaSteps: 0 }), /field 'scored'/],
    ["a negative window", JSON.stringify({ window: -1, scored: 3, pendingMeta: null, metaSteps: 0 }), /field 'window'/],
    ["a pending meta step that is not a window number", JSON.stringify({ window: 2, scored: 3, pendingMeta: "1", metaSteps: 0 }), /field 'pendingMeta'/],
    ["a missing field", JSON.stringify({ scored: 3 }), /field 'window'/],
    ["a torn file", '{"window": 1, "sco', /not JSON/],
  ];
  for (const [what, text, field] of cases) {
    it(`${what}: the service refuses to start, naming the file and the field`, () => {
      const runDir = mkdtempSync(join(tmpdir(), "mpo-serve-state-"));
      writeFileSync(join(runDir, "serve-state.json"), text);
      let err: unknown;
      try {
        service(runDir).close();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(StateFileError);
      expect((err as Error).message).toContain(join(runDir, "serve-state.json"));
      expect((err as Error).message).toMatch(field);
      expect((err as Error).message).toMatch(/move serve-state.json aside/);
    });
  }

  it("a state file from before pendingMeta/metaSteps existed still loads (defaults)", async () => {
    const runDir = mkdtempSync(join(tmpdir(), "mpo-serve-state-"));
    writeFileSync(join(runDir, "serve-state.json"), JSON.stringify({ window: 0, scored: 0 }));
    const s = service(runDir);
    expect(s.stats).toMatchObject({ metaSteps: 0 });
    await s.close();
  });
});

describe("rubric versions read by the dashboard", () => {
  const version = (rubric: unknown, over: Record<string, unknown> = {}) =>
    JSON.stringify({ version: 0, parent: null, step: 0, author: { kind: "initial" }, createdAt: "2026-11-28T00:00:00.000Z", analyses: [], rubric, ...over });
  const item = { name: "flow", text: "How well the writing flows, 0 to 5.", min: 0, max: 5 };
  const cases: Array<[string, string, RegExp]> = [
    ["min not below max", version({ items: [{ ...item, min: 5, max: 5 }] }), /field 'rubric\.items\.0\.max'/],
    ["an item without text", version({ items: [{ name: "flow", min: 0, max: 5 }] }), /field 'rubric\.items\.0\.text'/],
    ["no items", version({ items: [] }), /field 'rubric\.items'/],
    ["duplicate item names", version({ items: [item, item] }), /field 'rubric\.items\.1\.name'.*duplicate/],
    ["an unknown author", version({ items: [item] }, { author: { kind: "someone" } }), /field 'author'/],
    ["a version number that is not a number", version({ items: [item] }, { version: "0" }), /field 'version'/],
  ];
  for (const [what, text, field] of cases) {
    it(`${what}: a problem naming the file and the field; the valid versions are still shown`, async () => {
      const root = realpathSync(mkdtempSync(join(tmpdir(), "mpo-dash-rubric-")));
      const runDir = join(root, "run");
      mkdirSync(join(runDir, "rubrics"), { recursive: true });
      writeFileSync(join(runDir, "rubrics", "v0000.json"), version({ items: [item] }));
      writeFileSync(join(runDir, "rubrics", "v0001.json"), text);
      const r = await readRubrics(root, runDir);
      expect(r.versions.map((v) => v.version)).toEqual([0]);
      expect(r.versions[0].items).toEqual([item]);
      expect(r.problems).toHaveLength(1);
      expect(r.problems[0].file).toBe("rubrics/v0001.json");
      expect(r.problems[0].message).toMatch(field);
    });
  }
});
