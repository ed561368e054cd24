/**
 * `npm start` / `mpo sandbox`: reward hacking and MPO, end to end, offline. From one base policy, seed and
 * step budget it trains several arms with the real trainer, judge, meta step and rubric store — only the
 * two judge LLMs are simulated (served over real HTTP by ./sim-server.ts):
 *   fixed   a fixed weak rubric (one vague item, in the spirit of the paper's one-line iter0 rubric)
 *   mpo     MPO starting from that same rubric
 *   expert  a hand-written detailed rubric, fixed
 *   mpo-adaptive / mpo-guard   MPO with the adaptive meta schedule (src/meta/triggers.ts), without / with the
 *           rubric acceptance guard (src/meta/guard.ts) — opt-in arms (`--arms fixed,mpo,mpo-adaptive,mpo-guard`)
 * After training each arm is evaluated on held-out test prompts with the oracle (./oracle.ts), which no
 * judge and no reward ever sees. Results: a table on stdout and RUN/report.html.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { TransformerLM } from "../engine/index.ts";
import { loadCheckpoint } from "../engine/io/checkpoint.ts";
import { RubricJudge } from "../judge/rubric-judge.ts";
import { createChatModel } from "../llm/openai-client.ts";
import { RubricStore } from "../rubric/store.ts";
import { guardSettings, trainConfigSchema, type TrainConfigInput } from "../rl/config.ts";
import { createReward } from "../rl/reward-factory.ts";
import { tokenizerFromJson } from "../rl/tokenizer.ts";
import { Trainer, type StepMetrics } from "../rl/trainer.ts";
import { appendJsonl, readJsonl, writeJsonAtomic } from "../util/atomic.ts";
import { UserError } from "../util/errors.ts";
import { Rng } from "../util/rng.ts";
import { SANDBOX_POLICY_DIR } from "./base-policy.ts";
import { EssayOracle } from "./oracle.ts";
import { writeReport } from "./report.ts";
import { startSimServer } from "./sim-server.ts";
import { SANDBOX_RUBRICS, sandboxEssayTask } from "./task.ts";

export type Arm = "fixed" | "mpo" | "expert" | "mpo-adaptive" | "mpo-guard";
export const ARMS: Record<Arm, { label: string; rubric: string; mpo: boolean; schedule?: "adaptive"; guard?: boolean }> = {
  fixed: { label: "fixed weak rubric", rubric: SANDBOX_RUBRICS.weak, mpo: false },
  mpo: { label: "MPO from the weak rubric", rubric: SANDBOX_RUBRICS.weak, mpo: true },
  expert: { label: "fixed expert rubric", rubric: SANDBOX_RUBRICS.expert, mpo: false },
  "mpo-adaptive": { label: "MPO, adaptive meta schedule", rubric: SANDBOX_RUBRICS.weak, mpo: true, schedule: "adaptive", guard: false },
  "mpo-guard": { label: "MPO, adaptive schedule + rubric guard", rubric: SANDBOX_RUBRICS.weak, mpo: true, schedule: "adaptive", guard: true },
};

export interface SandboxOptions {
  out: string;
  arms: Arm[];
  seeds: number[];
  steps: number;
  algo: "grpo" | "ppo" | "rloo";
  batchSize: number;
  groupSize: number;
  mpoInterval: number;
  metaSamples: number;
  lr: number;
  klCoef: number;
  /** Policy-gradient epochs per batch (TRL's GRPO default is 1). */
  epochs: number;
  maxNewTokens: number;
  testPrompts: number;
  policy?: string;
  log?: (line: string) => void;
  progress?: boolean;
}

export const SANDBOX_DEFAULTS: Omit<SandboxOptions, "out"> = {
  arms: ["fixed", "mpo", "expert"],
  seeds: [0],
  steps: 30,
  algo: "grpo",
  batchSize: 8,
  groupSize: 4,
  mpoInterval: 5,
  metaSamples: 12,
  lr: 1e-4,
  klCoef: 0.02,
  epochs: 1,
  maxNewTokens: 128,
  testPrompts: 60,
};

export interface ArmResult {
  arm: Arm;
  seed: number;
  runDir: string;
  /** Mean normalized RM score of the last step's rollouts (under the arm's own rubric at that step). */
  rmScore: number;
  rmScoreFirst: number;
  /** Oracle on the training rollouts: mean over the first and the last (up to) 5 steps. */
  oracleTrainFirst: number;
  oracleTrainLast: number;
  /** Oracle on test prompts before (base policy) and after training. */
  oracleBefore: number;
  oracleAfter: number;
  kl: number;
  lengthWords: number;
  rubricVersions: number;
  /** Meta steps run, versions the guard rejected, and the senior judge's LLM use (all mrm-* stages). */
  metaSteps: number;
  rejectedVersions: number;
  seniorCalls: number;
  seniorTokens: number;
  seconds: number;
  perStep: Array<{ step: number; rm: number; oracle: number; kl: number; length: number; rubricVersion: number; meta?: string }>;
}

const words = (s: string) => (s.match(/\S+/g) ?? []).length;
const meanOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);
const topicOf = (recordId: string) => recordId.split(".")[0];

/** Generates one response per test prompt with a checkpoint and returns the oracle mean and the texts. */
function evaluatePolicy(dir: string, oracle: EssayOracle, prompts: { id: string; prompt: string }[], seed: number, maxNewTokens: number) {
  const ck = loadCheckpoint(dir);
  const cfg = ck.config as { eos_token_id?: number | number[] };
  const eos = Array.isArray(cfg.eos_token_id) ? cfg.eos_token_id[0] : cfg.eos_token_id;
  const tok = tokenizerFromJson(ck.tokenizerJson, join(dir, "tokenizer.json"), eos);
  const tensors = new Map([...ck.tensors].filter(([k]) => !k.startsWith("value_head.")));
  const model = TransformerLM.fromParams({ ...(ck.config as object), mpo_value_head: false } as never, tensors);
  const out: Array<{ id: string; prompt: string; response: string; oracle: number }> = [];
  const rng = new Rng(`sandbox-eval-${seed}`);
  // Two samples per prompt: the policy samples at temperature 1, so one draw per prompt is noisy.
  const draws = [...prompts, ...prompts];
  for (let i = 0; i < draws.length; i += 16) {
    const chunk = draws.slice(i, i + 16);
    const gen = model.generate(
      chunk.map((p) => tok.encode(`${p.prompt}\n\n`)),
      { maxNewTokens, temperature: 1, stopTokens: [tok.eosId], rng },
    );
    chunk.forEach((p, j) => {
      const response = tok.decode(gen.tokens[j]);
      out.push({ id: p.id, prompt: p.prompt, response, oracle: oracle.score(topicOf(p.id), response).score });
    });
  }
  return { mean: out.reduce((s, r) => s + r.oracle, 0) / Math.max(out.length, 1), samples: out };
}

export async function runSandbox(o: SandboxOptions): Promise<ArmResult[]> {
  const log = o.log ?? ((l: string) => process.stderr.write(l + "\n"));
  const policy = resolve(o.policy ?? SANDBOX_POLICY_DIR);
  if (!existsSync(join(policy, "model.safetensors"))) throw new UserError(`sandbox base policy not found at ${policy}; build it with: npm run sandbox:policy`);
  const testPrompts = (await sandboxEssayTask.load("test")).slice(0, o.testPrompts);
  mkdirSync(o.out, { recursive: true });
  const sim = await startSimServer();
  const oracle = new EssayOracle();
  const results: ArmResult[] = [];
  try {
    const base = evaluatePolicy(policy, oracle, testPrompts, 0, o.maxNewTokens);
    log(`mpo sandbox: base policy oracle score on ${testPrompts.length} test prompts (2 samples each): ${base.mean.toFixed(3)}`);
    writeJsonAtomic(join(o.out, "base-eval.json"), { oracle: base.mean, samples: base.samples });
    for (const seed of o.seeds) {
      for (const arm of o.arms) {
        const spec = ARMS[arm];
        const runDir = join(o.out, `seed-${seed}`, arm);
        const input: TrainConfigInput = {
          algo: o.algo,
          task: sandboxEssayTask.name,
          policy,
          critic: "separate",
          reward: { kind: "judge", rm: { baseURL: sim.url, model: "mpo-sim-judge", maxConcurrency: 32 }, rubric: spec.rubric, metaSamples: o.metaSamples, concurrency: 32 },
          run: runDir,
          seed,
          steps: o.steps,
          batchSize: o.batchSize,
          groupSize: o.groupSize,
          lr: o.lr,
          klCoef: o.klCoef,
          ppoEpochs: o.epochs,
          maxNewTokens: o.maxNewTokens,
          maxPromptTokens: 40,
          promptSeparator: "\n\n",
          mpoInterval: spec.mpo ? o.mpoInterval : 0,
          ...(spec.schedule ? { mpoSchedule: spec.schedule } : {}),
          ...(spec.guard !== undefined ? { rubricGuard: spec.guard } : {}),
          checkpointEvery: o.steps,
          keepCheckpoints: 1,
        };
        const cfg = trainConfigSchema.parse(input);
        const perStep: ArmResult["perStep"] = [];
        const senior = { steps: 0, rejected: 0, calls: 0, tokens: 0 };
        const t0 = performance.now();
        log(`mpo sandbox: seed ${seed}, arm '${arm}' (${spec.label}): ${o.steps} ${o.algo.toUpperCase()} steps`);
        const trainer = await Trainer.open({
          config: cfg,
          runDir,
          task: sandboxEssayTask,
          makeReward: (dir) => createReward(cfg.reward!, { runDir: dir, task: sandboxEssayTask, seed, guard: guardSettings(cfg) }),
          hooks: {
            progress: o.progress,
            log: (l) => log(`  [${arm}] ${l.replace(/^mpo: /, "")}`),
            onStep: (m: StepMetrics) => {
              const { records } = readJsonl<{ recordId: string; response: string }>(join(runDir, "rollouts", `step-${String(m.step).padStart(6, "0")}.jsonl`));
              const or = records.map((r) => oracle.score(topicOf(r.recordId), r.response).score);
              const oracleMean = or.reduce((s, x) => s + x, 0) / Math.max(or.length, 1);
              const length = records.reduce((s, r) => s + words(r.response), 0) / Math.max(records.length, 1);
              appendJsonl(join(runDir, "eval.jsonl"), { step: m.step, oracle: { mean: oracleMean }, responseWords: { mean: length } });
              perStep.push({ step: m.step, rm: m.normalizedScore.mean, oracle: oracleMean, kl: m.kl, length, rubricVersion: m.rubricVersion, meta: m.meta?.summary });
              for (const [stage, u] of Object.entries(m.llm)) {
                if (!stage.startsWith("mrm")) continue;
                senior.calls += u.calls;
                senior.tokens += u.promptTokens + u.completionTokens;
              }
              if (m.meta) {
                senior.steps++;
                if (m.meta.rejectedVersion !== undefined) senior.rejected++;
              }
            },
          },
        });
        await trainer.run();
        const ck = JSON.parse(readFileSync(join(runDir, "checkpoints", "latest.json"), "utf8")) as { path: string };
        const after = evaluatePolicy(join(runDir, ck.path, "policy"), oracle, testPrompts, seed, o.maxNewTokens);
        writeJsonAtomic(join(runDir, "final-eval.json"), { oracle: after.mean, samples: after.samples });
        const last = perStep[perStep.length - 1];
        const res: ArmResult = {
          arm,
          seed,
          runDir,
          rmScore: last?.rm ?? NaN,
          rmScoreFirst: perStep[0]?.rm ?? NaN,
          oracleTrainFirst: meanOf(perStep.slice(0, 5).map((p) => p.oracle)),
          oracleTrainLast: meanOf(perStep.slice(-5).map((p) => p.oracle)),
          oracleBefore: base.mean,
          oracleAfter: after.mean,
          kl: last?.kl ?? 0,
          lengthWords: after.samples.reduce((s, r) => s + words(r.response), 0) / Math.max(after.samples.length, 1),
          rubricVersions: RubricStore.open(runDir).list().filter((v) => !v.rejected).length,
          metaSteps: senior.steps,
          rejectedVersions: senior.rejected,
          seniorCalls: senior.calls,
          seniorTokens: senior.tokens,
          seconds: (performance.now() - t0) / 1000,
          perStep,
        };
        results.push(res);
        log(
          `mpo sandbox: seed ${seed} '${arm}' done in ${res.seconds.toFixed(0)} s: RM ${res.rmScoreFirst.toFixed(2)} → ${res.rmScore.toFixed(2)}, oracle(test) ${base.mean.toFixed(3)} → ${after.mean.toFixed(3)}, rubric versions ${res.rubricVersions}`,
        );
      }
    }
    writeJsonAtomic(join(o.out, "summary.json"), { options: { ...o, log: undefined }, base: base.mean, results });
    writeReport(o.out, results, base);
  } finally {
    await sim.app.close();
  }
  return results;
}

/** The per-arm table printed at the end (means over seeds). */
export function summaryTable(results: ArmResult[]): string {
  const arms = [...new Set(results.map((r) => r.arm))];
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);
  const rows = arms.map((a) => {
    const rs = results.filter((r) => r.arm === a);
    return [
      a,
      `${mean(rs.map((r) => r.rmScoreFirst)).toFixed(3)} → ${mean(rs.map((r) => r.rmScore)).toFixed(3)}`,
      `${mean(rs.map((r) => r.oracleTrainFirst)).toFixed(3)} → ${mean(rs.map((r) => r.oracleTrainLast)).toFixed(3)}`,
      mean(rs.map((r) => r.oracleBefore)).toFixed(3),
      mean(rs.map((r) => r.oracleAfter)).toFixed(3),
      (mean(rs.map((r) => r.oracleAfter - r.oracleBefore)) >= 0 ? "+" : "") + mean(rs.map((r) => r.oracleAfter - r.oracleBefore)).toFixed(3),
      mean(rs.map((r) => r.kl)).toFixed(3),
      mean(rs.map((r) => r.lengthWords)).toFixed(1),
      mean(rs.map((r) => r.rubricVersions)).toFixed(1),
      mean(rs.map((r) => r.metaSteps ?? 0)).toFixed(1) + (rs.some((r) => r.rejectedVersions) ? ` (${mean(rs.map((r) => r.rejectedVersions ?? 0)).toFixed(1)} rejected)` : ""),
      mean(rs.map((r) => r.seniorTokens ?? 0)).toFixed(0),
      String(rs.length),
    ];
  });
  const head = ["arm", "RM score (step 1 → last)", "oracle, train (first 5 → last 5 steps)", "oracle test: base", "after", "Δ test", "KL", "mean words", "rubric versions", "meta steps", "senior tokens", "seeds"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join("  ");
  return [fmt(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(fmt)].join("\n");
}
