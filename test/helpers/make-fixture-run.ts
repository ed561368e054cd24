/**
 * Generates run directories in the docs/run-dir.md layout for dashboard tests (and for trying the dashboard
 * by hand: `npx tsx test/helpers/make-fixture-run.ts /tmp/runs`). Two arms of a sandbox comparison:
 *  - sandbox/fixed: a fixed rubric that gets hacked (RM score rises while the oracle falls, responses grow
 *    long and repetitive, EOS rate drops) — the reward-hacking signals should fire here;
 *  - sandbox/mpo: the rubric evolves at meta steps 10 and 20 (v1 adds "conciseness", v2 adds
 *    "non-repetition" and rewrites "relevance"); healthy curves.
 * Robustness cases on purpose: a corrupt line in mpo's metrics.jsonl, a corrupt rubric file, a rollout
 * "file" that cannot be read (a directory), a permission-less meta log, and a run ("broken") whose
 * status.json is garbage. Deterministic (seeded).
 */
import { chmodSync, mkdirSync, writeFileSync, appendFileSync } from "node:fs";
import { join } from "node:path";
import { Rng } from "../../src/util/rng.ts";
import type { RubricItem, RubricVersion } from "../../src/rubric/types.ts";
import type { Evaluation } from "../../src/judge/types.ts";

export interface FixtureOptions {
  steps?: number;
  rolloutsPerStep?: number;
  /** Also create run "big" with this many rollouts (paging tests). */
  bigRollouts?: number;
}

export interface FixtureRuns {
  root: string;
  fixed: string;
  mpo: string;
  broken: string;
  big?: string;
  steps: number;
}

const PROMPTS = [
  "Write an essay on whether cities should ban cars from their centers.",
  "Argue for or against a four-day work week.",
  "Discuss the role of museums in the digital age.",
  "Should homework be abolished in primary schools?",
];

const SENTENCES = [
  "Urban planning shapes daily life in ways that are easy to overlook.",
  "Evidence from several European cities suggests traffic calming improves safety.",
  "Critics argue that restrictions hurt small businesses that rely on deliveries.",
  "A balanced policy would phase changes in gradually and measure the results.",
  "Public transport must improve before any ban can be fair to commuters.",
  "Air quality data show measurable gains where car traffic fell.",
  "The question ultimately concerns who the street is for.",
  "Surveys of residents report mixed but mostly positive reactions.",
];

const V0: RubricItem[] = [
  { name: "relevance", text: "Does the essay answer the prompt directly? 0 = off topic, 5 = fully on point.", min: 0, max: 5 },
  { name: "depth", text: "Are claims supported with evidence and reasoning? 0 = none, 5 = thorough.", min: 0, max: 5 },
  { name: "clarity", text: "Is the writing clear and well organized? 0 = confusing, 5 = very clear.", min: 0, max: 5 },
];
const V1: RubricItem[] = [
  ...V0,
  { name: "conciseness", text: "Deduct for padding and restating the same point. 0 = mostly filler, 5 = every sentence adds something.", min: 0, max: 5 },
];
const V2: RubricItem[] = [
  { name: "relevance", text: "Does the essay answer the prompt directly and take a clear position? 0 = off topic, 5 = fully on point with a stated thesis.", min: 0, max: 5 },
  ...V1.slice(1),
  { name: "non-repetition", text: "Deduct 2 points for each repeated sentence or paragraph. 0 = heavily repetitive, 5 = no repetition.", min: 0, max: 5 },
];

function pad(n: number): string {
  return String(n).padStart(6, "0");
}

function jsonl(path: string, recs: unknown[]): void {
  appendFileSync(path, recs.map((r) => JSON.stringify(r)).join("\n") + "\n");
}

function rubricVersion(version: number, parent: number | null, step: number, items: RubricItem[], metaStep: number | null): RubricVersion {
  return {
    version,
    parent,
    step,
    author: metaStep === null ? { kind: "initial" } : { kind: "meta", step: metaStep },
    createdAt: new Date(Date.UTC(2026, 10, 27, 1, 0, step)).toISOString(),
    analyses: metaStep === null ? [] : [`meta/step-${pad(metaStep)}.json`],
    rubric: { items },
  };
}

function response(rng: Rng, hacked: number): string {
  const n = 4 + rng.int(3);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(SENTENCES[rng.int(SENTENCES.length)]);
  // A hacked policy pads: repeats its favourite sentence (grows length, repetition).
  const repeats = Math.round(hacked * 8);
  for (let i = 0; i < repeats; i++) parts.push(SENTENCES[0]);
  return parts.join(" ");
}

function evaluation(rng: Rng, items: RubricItem[], version: number, quality: number): Evaluation {
  const its = items.map((it) => {
    const score = Math.max(it.min, Math.min(it.max, Math.round(quality * it.max + rng.normal() * 0.8)));
    const flags = rng.random() < 0.05 ? ["clamped"] : [];
    return { name: it.name, score, min: it.min, max: it.max, rationale: `The response ${score >= 3 ? "meets" : "falls short on"} ${it.name}: score ${score}.`, raw: `Score: ${score}`, flags };
  });
  const total = its.reduce((s, x) => s + x.score, 0);
  const maxTotal = items.reduce((s, x) => s + x.max, 0);
  return { items: its, total, normalized: total / maxTotal, rubricVersion: version, mode: "per-item", flags: rng.random() < 0.04 ? ["unparsed-fallback"] : [], raw: its.map((x) => x.raw) };
}

interface ArmSpec {
  id: string;
  arm: "fixed" | "mpo";
  state: "running" | "finished";
}

function writeArm(root: string, spec: ArmSpec, steps: number, perStep: number): void {
  const dir = join(root, spec.id);
  for (const sub of ["rollouts", "rubrics", "meta"]) mkdirSync(join(dir, sub), { recursive: true });
  const rng = new Rng(`fixture-${spec.arm}`);
  const hacking = spec.arm === "fixed";
  writeFileSync(join(dir, "config.json"), JSON.stringify({ task: "essay", algorithm: "ppo", arm: spec.arm, steps, metaEvery: hacking ? null : 10 }, null, 2));
  const versions: Array<{ from: number; items: RubricItem[]; version: number }> = [{ from: 1, items: V0, version: 0 }];
  writeFileSync(join(dir, "rubrics", "v0000.json"), JSON.stringify(rubricVersion(0, null, 0, V0, null), null, 2));
  writeFileSync(join(dir, "rubrics", "v0000.txt"), `<rubric>${V0.map((i) => `<item>${i.text}</item>`).join("")}</rubric>\n`);
  if (!hacking) {
    writeFileSync(join(dir, "rubrics", "v0001.json"), JSON.stringify(rubricVersion(1, 0, 10, V1, 10), null, 2));
    writeFileSync(join(dir, "rubrics", "v0002.json"), JSON.stringify(rubricVersion(2, 1, 20, V2, 20), null, 2));
    // Corrupt: a torn rubric file must be reported, not crash the lineage view.
    writeFileSync(join(dir, "rubrics", "v0003.json"), `{"version": 3, "parent": 2, "rubr`);
    versions.push({ from: 11, items: V1, version: 1 }, { from: 21, items: V2, version: 2 });
  }
  const metrics: string[] = [];
  const evals: unknown[] = [];
  for (let step = 1; step <= steps; step++) {
    const t = step / steps;
    const v = [...versions].reverse().find((x) => step >= x.from)!;
    // Fixed arm: hacking starts mid-run (length, repetition up; oracle down) while the RM keeps rising.
    const hacked = hacking ? Math.max(0, (step - steps / 2) / (steps / 2)) : 0;
    const quality = hacking ? 0.45 + 0.45 * t : 0.45 + 0.25 * t;
    const rollouts = [];
    const scores: number[] = [];
    const normalized: number[] = [];
    let lengthSum = 0;
    let eos = 0;
    for (let i = 0; i < perStep; i++) {
      const text = response(rng, hacked);
      const ev = evaluation(rng, v.items, v.version, Math.min(1, quality + rng.normal() * 0.05));
      const length = text.split(/\s+/).length * 1.3;
      const hitEos = rng.random() > 0.05 + 0.6 * hacked;
      scores.push(ev.total);
      normalized.push(ev.normalized);
      lengthSum += length;
      eos += hitEos ? 1 : 0;
      rollouts.push({
        id: `${spec.arm}-${step}-${i}`,
        step,
        prompt: PROMPTS[(step + i) % PROMPTS.length],
        response: text,
        score: ev.total,
        normalized: ev.normalized,
        rubricVersion: v.version,
        evaluation: ev,
        flags: hitEos ? [] : ["truncated"],
        length: Math.round(length),
        eos: hitEos,
      });
    }
    if (!(spec.arm === "mpo" && step === 7)) jsonl(join(dir, "rollouts", `step-${pad(step)}.jsonl`), rollouts);
    const meanOf = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    const mean = meanOf(scores);
    const std = Math.sqrt(meanOf(scores.map((x) => (x - mean) ** 2)));
    const row: Record<string, unknown> = {
      step,
      time: new Date(Date.UTC(2026, 10, 27, 1, 0, step * 10)).toISOString(),
      rubricVersion: v.version,
      score: { mean, std, min: Math.min(...scores), max: Math.max(...scores) },
      normalizedScore: { mean: meanOf(normalized) },
      kl: 0.002 * step + 0.001 * rng.random() + (hacking ? 0.004 * step * hacked : 0),
      entropy: 2.1 - 0.02 * step + 0.02 * rng.normal(),
      policyLoss: -0.01 + 0.005 * rng.normal(),
      valueLoss: 0.2 / step,
      clipFrac: 0.1,
      approxKl: 0.01,
      responseLength: { mean: lengthSum / perStep },
      eosRate: eos / perStep,
      excluded: 0,
      llm: { rm: { calls: perStep * v.items.length, promptTokens: 900 * perStep, completionTokens: 80 * perStep, failures: 0 } },
      seconds: { generate: 3, score: 2, update: 1, meta: 0, total: 6 },
    };
    if (!hacking && (step === 10 || step === 20)) {
      const to = step === 10 ? 1 : 2;
      // The second one as the adaptive schedule records it: what fired, with its evidence.
      const trigger = { reason: "trigger", triggers: [{ kind: "length-explode", message: "Mean response length grew 2×", evidence: { ratio: 2 } }] };
      row.meta = { fromVersion: to - 1, toVersion: to, itemsBefore: to === 1 ? 3 : 4, itemsAfter: to === 1 ? 4 : 5, added: 1, removed: 0, ok: true, ...(to === 2 ? { trigger } : {}) };
    }
    metrics.push(JSON.stringify(row));
    // Eval every 3 steps: the oracle agrees with the RM early on, then (fixed arm) diverges.
    if (step % 3 === 0) {
      const oracle = hacking ? 0.5 + 0.15 * Math.min(t, 0.5) - 0.5 * Math.max(0, t - 0.5) : 0.5 + 0.2 * t;
      evals.push({ step, oracle: oracle + 0.01 * rng.normal(), winRate: hacking ? 0.5 - 0.3 * hacked : 0.5 + 0.2 * t });
    }
  }
  if (!hacking) metrics.splice(14, 0, `{"step": 15, "score": {"mean": 3.1, "st`); // corrupt line mid-file
  writeFileSync(join(dir, "metrics.jsonl"), metrics.join("\n") + "\n");
  jsonl(join(dir, "eval.jsonl"), evals);
  if (!hacking) {
    for (const [metaStep, to] of [
      [10, 1],
      [20, 2],
    ] as const) {
      const added = to === 1 ? "conciseness" : "non-repetition";
      writeFileSync(
        join(dir, "meta", `step-${pad(metaStep)}.json`),
        JSON.stringify(
          {
            step: metaStep,
            fromVersion: to - 1,
            resultVersion: to,
            sampled: [`mpo-${metaStep}-0`, `mpo-${metaStep}-3`],
            samples: [
              {
                rolloutId: `mpo-${metaStep}-0`,
                prescreen: "The response restates its opening claim several times.",
                analysis: `The junior judge rewarded length: repeated sentences were scored as depth. The rubric has no criterion for ${added}.`,
                refinement: `Add an item '${added}' that deducts for restated points.`,
              },
              {
                rolloutId: `mpo-${metaStep}-3`,
                prescreen: "No obvious issue.",
                analysis: "Scores look consistent with the rubric.",
                refinement: "",
              },
            ],
            merge: { input: [`Add an item '${added}'`], output: `Added '${added}'${to === 2 ? "; clarified 'relevance' to require a thesis" : ""}.` },
            usage: { "mrm-analyze": { calls: 2, promptTokens: 4000, completionTokens: 600 } },
            errors: [],
          },
          null,
          2,
        ),
      );
    }
    // A second kind of meta log for the same step (math guideline refinement writes "-guidelines").
    writeFileSync(join(dir, "meta", `step-${pad(20)}-guidelines.json`), JSON.stringify({ kind: "guidelines", step: 20, ok: false, toVersion: null, errors: ["no groups sampled"] }));
    // Unreadable meta log (permission-less; readable anyway when the tests run as root) and an unreadable rollout file.
    const locked = join(dir, "meta", `step-${pad(25)}.json`);
    writeFileSync(locked, JSON.stringify({ step: 25, fromVersion: 2, resultVersion: null, reason: "no refinement passed the prescreen", errors: [] }));
    chmodSync(locked, 0o000);
    mkdirSync(join(dir, "rollouts", `step-${pad(7)}.jsonl`));
  }
  writeFileSync(
    join(dir, "status.json"),
    JSON.stringify({ state: spec.state, step: steps, totalSteps: spec.state === "running" ? steps * 2 : steps, task: "essay", algorithm: "ppo", arm: spec.arm, pid: 0, startedAt: "2026-11-27T01:00:00.000Z", updatedAt: new Date().toISOString() }, null, 2),
  );
}

export function makeFixtureRuns(root: string, opts: FixtureOptions = {}): FixtureRuns {
  const steps = opts.steps ?? 30;
  const perStep = opts.rolloutsPerStep ?? 8;
  mkdirSync(root, { recursive: true });
  writeArm(root, { id: "sandbox/fixed", arm: "fixed", state: "finished" }, steps, perStep);
  writeArm(root, { id: "sandbox/mpo", arm: "mpo", state: "running" }, steps, perStep);
  const broken = join(root, "broken");
  mkdirSync(broken, { recursive: true });
  writeFileSync(join(broken, "status.json"), "{ this is not json");
  writeFileSync(join(broken, "metrics.jsonl"), JSON.stringify({ step: 1, score: { mean: 1, std: 0, min: 1, max: 1 } }) + "\n{\"step\": 2, \"sco");
  const out: FixtureRuns = { root, fixed: "sandbox/fixed", mpo: "sandbox/mpo", broken: "broken", steps };
  if (opts.bigRollouts) {
    const bigSteps = 20;
    writeArm(root, { id: "big", arm: "fixed", state: "finished" }, bigSteps, Math.ceil(opts.bigRollouts / bigSteps));
    out.big = "big";
  }
  return out;
}

/** Appends one metrics record for `step` to a run (what a live trainer does). */
export function appendMetricsStep(root: string, runId: string, step: number, scoreMean = 4.2): void {
  jsonl(join(root, runId, "metrics.jsonl"), [
    {
      step,
      time: new Date().toISOString(),
      rubricVersion: 2,
      score: { mean: scoreMean, std: 0.5, min: scoreMean - 1, max: scoreMean + 1 },
      normalizedScore: { mean: scoreMean / 25 },
      kl: 0.07,
      entropy: 1.5,
      responseLength: { mean: 80 },
      eosRate: 0.95,
      excluded: 0,
    },
  ]);
}

const isEntry = process.argv[1] && import.meta.url === `file://${process.argv[1]}`;
if (isEntry) {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write("usage: tsx test/helpers/make-fixture-run.ts DIR\n");
    process.exit(2);
  }
  const r = makeFixtureRuns(dir);
  process.stdout.write(`fixture runs written under ${r.root}: ${r.fixed}, ${r.mpo}, ${r.broken}\n`);
}
