/** Online MPO in the reward service with the adaptive meta schedule and the rubric guard (#16 item 4). */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { MetaStepResult } from "../src/meta/meta-step.ts";
import { SimulatedJudgeModel } from "../src/sandbox/sim/sim-model.ts";
import { serveConfigSchema } from "../src/serve/config.ts";
import { startRewardService } from "../src/serve/index.ts";
import type { ServerHandle } from "../src/serve/server.ts";

const RUBRIC = "<rubric><item>Discourse: how well the writing flows. Score from 0 to 5.</item></rubric>";
const handles: ServerHandle[] = [];
afterEach(async () => {
  while (handles.length) await handles.pop()!.close();
});

async function start(over: Record<string, unknown>) {
  const runDir = mkdtempSync(join(tmpdir(), "mpo-serve-adaptive-"));
  const rubric = join(runDir, "..", `${runDir.split("/").pop()}-rubric.txt`);
  writeFileSync(rubric, RUBRIC);
  const cfg = serveConfigSchema.parse({ runDir, rubric, port: 0, judge: { baseURL: "http://127.0.0.1:9/v1", model: "m" }, metaSamples: 4, ...over });
  const sim = new SimulatedJudgeModel();
  let metaDone: (r: MetaStepResult) => void = () => {};
  const metaFinished = new Promise<MetaStepResult>((res) => (metaDone = res));
  const h = await startRewardService(cfg, { judge: sim, metaJudge: sim, onMeta: (r) => metaDone(r), log: () => {} });
  handles.push(h);
  return { h, runDir, metaFinished };
}

const filler = "Moreover, it is important to note that this is very important. Furthermore, in addition, this matters a lot.";
const items = (n: number) => Array.from({ length: n }, () => ({ prompt: "Write a short essay arguing that cities should spend more money on public libraries.", response: filler }));
const score = (h: ServerHandle, n: number) => fetch(h.url + "/v1/score", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ items: items(n) }) });

describe("reward service: adaptive meta schedule", () => {
  it("identical scores (spread collapse) trigger a meta step long before metaEvery; the log says why and carries the guard's verdict", async () => {
    // metaEvery 40 → buckets of 4 samples, min interval 4 buckets (16 samples), max 20 buckets (80 samples).
    const { h, runDir, metaFinished } = await start({ metaEvery: 40, metaSchedule: "adaptive" });
    for (let i = 0; i < 4; i++) expect((await score(h, 4)).status).toBe(200);
    const meta = await metaFinished;
    expect(h.service.stats.metaSteps).toBe(1);
    const log = JSON.parse(readFileSync(meta.logFile, "utf8"));
    expect(log.trigger.reason).toBe("trigger");
    expect(log.trigger.triggers.map((t: { kind: string }) => t.kind)).toContain("spread-collapsed");
    expect(log.rolloutCount).toBe(16);
    expect(log.guard).toBeDefined(); // on by default with the adaptive schedule
    expect(log.guard.numbers.probes).toBeGreaterThan(0);
    expect(meta.logFile.startsWith(runDir)).toBe(true);
  });

  it("the fixed schedule waits for metaEvery samples on the same stream", async () => {
    const { h } = await start({ metaEvery: 40 });
    for (let i = 0; i < 4; i++) expect((await score(h, 4)).status).toBe(200);
    expect(h.service.stats).toMatchObject({ metaSteps: 0, windowSize: 16 });
  });

  it("config is validated with the field named", () => {
    expect(() => serveConfigSchema.parse({ runDir: "r", rubric: "x", judge: { baseURL: "http://h/v1", model: "m" }, metaSchedule: "sometimes" })).toThrow(/metaSchedule/);
    expect(() => serveConfigSchema.parse({ runDir: "r", rubric: "x", judge: { baseURL: "http://h/v1", model: "m" }, guard: { probes: 0 } })).toThrow(/probes/);
  });
});
