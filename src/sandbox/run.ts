/**
 * `npm start` / `mpo sandbox`: reward hacking and MPO, end to end, offline. From one base policy, seed and
 * step budget it trains several arms with the real trainer, judge, meta step and rubric store — only the
 * two judge LLMs are simulated (served over real HTTP by ./sim-server.ts):
 *   base        the base policy itself, untrained (a row of the tables, like the paper's base-1.5b)
 *   fixed       a fixed weak rubric (one vague item, in the spirit of the paper's one-line iter0 rubric)
 *   expert      a hand-written detailed rubric, fixed
 *   autoprompt  the weak rubric calibrated offline by `mpo autoprompt` (../autoprompt/) against the same
 *               simulated judges before training, then fixed
 *   mpo         MPO starting from the weak rubric
 *   mpo-adaptive / mpo-guard   MPO with the adaptive meta schedule (src/meta/triggers.ts), without / with
 *               the rubric acceptance guard (src/meta/guard.ts) — opt-in (`--arms mpo,mpo-adaptive,mpo-guard`)
 * After training each arm is evaluated on held-out test prompts with the oracle (./oracle.ts), which no
 * judge and no reward ever sees, and the arms' test generations meet in the paper's pairwise Elo tournament
 * (the code behind `mpo eval elo`) judged by the sim-server's evaluation judge, whose preference follows
 * the oracle with seeded noise and a position bias. Results: tables on stdout and RUN/report.html.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { TransformerLM } from "../engine/index.ts";
import { loadCheckpoint } from "../engine/io/checkpoint.ts";
import { createChatModel } from "../llm/openai-client.ts";
import { RubricStore } from "../rubric/store.ts";
import { guardSettings, trainConfigSchema, type TrainConfigInput } from "../rl/config.ts";
import { createReward } from "../rl/reward-factory.ts";
import { latestPointerSchema } from "../rl/checkpointing.ts";
import { LATEST_CHECKPOINT, rolloutsFile, runPath } from "../util/run-layout.ts";
import { readJsonFileWith } from "../util/state-file.ts";
import { tokenizerFromJson } from "../rl/tokenizer.ts";
import { Trainer, type StepMetrics } from "../rl/trainer.ts";
import { runAutoPrompt } from "../autoprompt/calibrate.ts";
import { runEloReport } from "../eval/report.ts";
import { loadGenerationFile } from "../eval/runs.ts";
import { loadRubricFile } from "../rubric/format.ts";
import { appendJsonl, readJsonl, writeFileAtomic, writeJsonAtomic } from "../util/atomic.ts";
import { UserError } from "../util/errors.ts";
import { Rng } from "../util/rng.ts";
import { SANDBOX_POLICY_DIR } from "./base-policy.ts";
import { EssayOracle } from "./oracle.ts";
import { writeReport } from "./report.ts";
import { startSimServer } from "./sim-server.ts";
import { SANDBOX_RUBRICS, sandboxEssayTask } from "./task.ts";

export type Arm = "base" | "fixed" | "expert" | "autoprompt" | "mpo" | "mpo-adaptive" | "mpo-guard";
export const ARMS: Record<Arm, { label: string; rubric: string; mpo: boolean; train: boolean; calibrate?: boolean; schedule?: "adaptive"; guard?: boolean }> = {
  base: { label: "base policy, no RL", rubric: "", mpo: false, train: false },
  fixed: { label: "fixed weak rubric", rubric: SANDBOX_RUBRICS.weak, mpo: false, train: true },
  expert: { label: "fixed expert rubric", rubric: SANDBOX_RUBRICS.expert, mpo: false, train: true },
  autoprompt: { label: "AutoPrompt-calibrated weak rubric, fixed", rubric: SANDBOX_RUBRICS.weak, mpo: false, train: true, calibrate: true },
  mpo: { label: "MPO from the weak rubric", rubric: SANDBOX_RUBRICS.weak, mpo: true, train: true },
  "mpo-adaptive": { label: "MPO, adaptive meta schedule", rubric: SANDBOX_RUBRICS.weak, mpo: true, train: true, schedule: "adaptive", guard: false },
  "mpo-guard": { label: "MPO, adaptive schedule + rubric guard", rubric: SANDBOX_RUBRICS.weak, mpo: true, train: true, schedule: "adaptive", guard: true },
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
  /** AutoPrompt arm: calibration rounds and prompts per round (7 boundary cases per prompt). */
  autopromptRounds: number;
  autopromptPrompts: number;
  /** Elo tournament per training seed (paper protocol: K 4, start 1000, single order); matches 0 = no Elo. */
  eloMatches: number;
  eloSeeds: number[];
  /** The simulated evaluation judge: P(prefers the oracle-better response), and the extra P of answering A. */
  eloAgreement: number;
  eloPositionBias: number;
  policy?: string;
  /** A real judge in place of the simulated one: gguf:/path/model.gguf (in-process llama.cpp) or an http(s) base URL. */
  judge?: string;
  /** The senior judge (default: the same as `judge`). */
  seniorJudge?: string;
  /** Model name for http(s) judges. */
  judgeModel?: string;
  /** Judge protocol profile for every arm's junior and senior judge (default: the paper profile). */
  protocol?: "paper" | "hardened";
  log?: (line: string) => void;
  progress?: boolean;
}

/** `npm start`: the four rows of the paper's summarization table (base, iter0, AutoPrompt, MPO) on seed 0, to stay
 * within about 5 minutes on 2 cores; `--full` adds the expert arm and seeds 1 and 2. */
export const FULL_ARMS: Arm[] = ["base", "fixed", "expert", "autoprompt", "mpo"];
export const SANDBOX_DEFAULTS: Omit<SandboxOptions, "out"> = {
  arms: ["base", "fixed", "autoprompt", "mpo"],
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
  autopromptRounds: 4,
  autopromptPrompts: 4,
  eloMatches: 2000,
  eloSeeds: [0, 1, 2, 3, 4],
  eloAgreement: 0.8,
  eloPositionBias: 0.05,
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
  /** AutoPrompt arm: the calibration that produced its rubric. */
  calibration?: { dir: string; version: number; items: string[]; mae: number | null; spearman: number | null; cases: number; rounds: Array<{ round: number; version: number; maeNew: number | null; spearmanNew: number | null }> };
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

export interface EloRow {
  arm: Arm;
  label: string;
  /** Mean rating over all tournaments (training seeds × Elo seeds) and its population spread. */
  elo: number;
  spread: number;
  /** Oracle on the held-out test prompts (mean over training seeds). */
  oracle: number;
  tournaments: number;
}

export interface SandboxOutcome {
  results: ArmResult[];
  base: { oracle: number; words: number };
  elo: { rows: EloRow[]; dirs: string[]; settings: { matches: number; seeds: number[]; k: number; initial: number; agreement: number; positionBias: number } } | null;
  seconds: number;
}

export async function runSandbox(o: SandboxOptions): Promise<SandboxOutcome> {
  const t0 = performance.now();
  const log = o.log ?? ((l: string) => process.stderr.write(l + "\n"));
  const policy = resolve(o.policy ?? SANDBOX_POLICY_DIR);
  if (!existsSync(join(policy, "model.safetensors"))) throw new UserError(`sandbox base policy not found at ${policy}; build it with: npm run sandbox:policy`);
  const testPrompts = (await sandboxEssayTask.load("test")).slice(0, o.testPrompts);
  mkdirSync(o.out, { recursive: true });
  const sim = await startSimServer({ elo: { agreement: o.eloAgreement, positionBias: o.eloPositionBias } });
  const oracle = new EssayOracle();
  const results: ArmResult[] = [];
  /** First test sample per prompt of every (seed, arm): the generations the Elo tournament compares. */
  const generations = new Map<string, Array<{ id: string; prompt: string; response: string }>>();
  let elo: SandboxOutcome["elo"] = null;
  let baseOut: SandboxOutcome["base"];
  try {
    const base = evaluatePolicy(policy, oracle, testPrompts, 0, o.maxNewTokens);
    baseOut = { oracle: base.mean, words: base.samples.reduce((s, r) => s + words(r.response), 0) / Math.max(base.samples.length, 1) };
    log(`mpo sandbox: base policy oracle score on ${testPrompts.length} test prompts (2 samples each): ${base.mean.toFixed(3)}`);
    writeJsonAtomic(join(o.out, "base-eval.json"), { oracle: base.mean, samples: base.samples });
    for (const seed of o.seeds) {
      generations.set(`${seed}/base`, base.samples.slice(0, testPrompts.length));
      for (const arm of o.arms) {
        const spec = ARMS[arm];
        if (!spec.train) continue;
        const runDir = join(o.out, `seed-${seed}`, arm);
        const t0 = performance.now();
        let rubricPath = spec.rubric;
        let calibration: ArmResult["calibration"];
        if (spec.calibrate) {
          // AutoPrompt: calibrate the weak rubric offline against the same simulated judges, then train with it fixed.
          const dir = join(o.out, `seed-${seed}`, "autoprompt-calibration");
          log(`mpo sandbox: seed ${seed}, arm '${arm}': calibrating the weak rubric (${o.autopromptRounds} rounds × ${o.autopromptPrompts} prompts)`);
          const judge = createChatModel({ baseURL: sim.url, model: "mpo-sim-judge", maxConcurrency: 32 });
          const cal = await runAutoPrompt({
            runDir: dir,
            senior: judge,
            junior: judge,
            taskDescription: sandboxEssayTask.description,
            prompts: (await sandboxEssayTask.load("train")).map((r) => ({ id: r.id, prompt: r.prompt })),
            initialRubric: loadRubricFile(spec.rubric),
            rounds: o.autopromptRounds,
            promptsPerRound: o.autopromptPrompts,
            seed,
            concurrency: 32,
            log: (l) => log(`  [${arm}] ${l.replace(/^mpo autoprompt: /, "")}`),
          });
          rubricPath = cal.rubricFile;
          calibration = {
            dir,
            version: cal.best.version,
            items: cal.best.rubric.items.map((i) => i.name),
            mae: cal.bestAgreement.mae,
            spearman: cal.bestAgreement.spearman,
            cases: cal.cases,
            rounds: cal.rounds.map((r) => ({ round: r.round, version: r.current, maeNew: r.currentOnNew.mae, spearmanNew: r.currentOnNew.spearman })),
          };
        }
        const input: TrainConfigInput = {
          algo: o.algo,
          task: sandboxEssayTask.name,
          policy,
          critic: "separate",
          reward: {
            kind: "judge",
            rm: { baseURL: o.judge ?? sim.url, model: o.judge ? (o.judgeModel ?? "gguf") : "mpo-sim-judge", maxConcurrency: 32 },
            ...(o.seniorJudge ? { mrm: { baseURL: o.seniorJudge, model: o.judgeModel ?? "gguf", maxConcurrency: 32 } } : {}),
            rubric: rubricPath,
            ...(o.protocol ? { protocol: o.protocol } : {}),
            metaSamples: o.metaSamples,
            concurrency: 32,
          },
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
              const { records } = readJsonl<{ recordId: string; response: string }>(runPath(runDir, rolloutsFile(m.step)));
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
        const ck = readJsonFileWith(runPath(runDir, LATEST_CHECKPOINT), latestPointerSchema, "checkpoint pointer");
        const after = evaluatePolicy(join(runDir, ck.path, "policy"), oracle, testPrompts, seed, o.maxNewTokens);
        writeJsonAtomic(join(runDir, "final-eval.json"), { oracle: after.mean, samples: after.samples });
        generations.set(`${seed}/${arm}`, after.samples.slice(0, testPrompts.length));
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
          ...(calibration ? { calibration } : {}),
        };
        results.push(res);
        log(
          `mpo sandbox: seed ${seed} '${arm}' done in ${res.seconds.toFixed(0)} s: RM ${res.rmScoreFirst.toFixed(2)} → ${res.rmScore.toFixed(2)}, oracle(test) ${base.mean.toFixed(3)} → ${after.mean.toFixed(3)}, rubric versions ${res.rubricVersions}`,
        );
      }
    }

    // Elo: per training seed, the arms' test generations in the paper's tournament (the code of `mpo eval elo`).
    const eloArms = o.arms.filter((a) => a === "base" || results.some((r) => r.arm === a));
    if (o.eloMatches > 0 && eloArms.length >= 2) {
      const judge = createChatModel({ baseURL: sim.url, model: "mpo-sim-judge", maxConcurrency: 32 });
      const ratings = new Map<Arm, number[]>(eloArms.map((a) => [a, []]));
      const dirs: string[] = [];
      for (const seed of o.seeds) {
        const genDir = join(o.out, `seed-${seed}`, "generations");
        const systems = eloArms.map((arm) => {
          const file = join(genDir, `${arm}.jsonl`);
          writeFileAtomic(file, generations.get(`${seed}/${arm}`)!.map((g) => JSON.stringify({ id: g.id, query: g.prompt, model_response: g.response })).join("\n") + "\n");
          return loadGenerationFile(file, arm);
        });
        const outDir = join(o.out, `seed-${seed}`, "elo");
        log(`mpo sandbox: seed ${seed}: Elo tournament of ${eloArms.join(", ")} (${o.eloSeeds.length} seeds × ${o.eloMatches} matches, K 4, single order)`);
        const rep = await runEloReport({
          systems,
          judge,
          seeds: o.eloSeeds,
          matches: o.eloMatches,
          k: 4,
          initial: 1000,
          bothOrders: false,
          concurrency: 32,
          taskDescription: sandboxEssayTask.description,
          outDir,
          judgeInfo: { endpoint: sim.url, model: "mpo-sim-judge", kind: "simulated evaluation judge (oracle preference + seeded noise + position bias)", agreement: o.eloAgreement, positionBias: o.eloPositionBias },
        });
        dirs.push(outDir);
        for (const s of rep.result.perSeed) for (const a of eloArms) ratings.get(a)!.push(s.ratings[a]);
      }
      const rows: EloRow[] = eloArms.map((arm) => {
        const xs = ratings.get(arm)!;
        const m = meanOf(xs);
        const rs = results.filter((r) => r.arm === arm);
        return {
          arm,
          label: ARMS[arm].label,
          elo: m,
          spread: Math.sqrt(meanOf(xs.map((x) => (x - m) ** 2))),
          oracle: arm === "base" ? base.mean : meanOf(rs.map((r) => r.oracleAfter)),
          tournaments: xs.length,
        };
      });
      elo = { rows, dirs, settings: { matches: o.eloMatches, seeds: o.eloSeeds, k: 4, initial: 1000, agreement: o.eloAgreement, positionBias: o.eloPositionBias } };
    }
    const seconds = (performance.now() - t0) / 1000;
    writeJsonAtomic(join(o.out, "summary.json"), { options: { ...o, log: undefined }, base: base.mean, baseWords: baseOut.words, results, elo, seconds });
    writeReport(o.out, results, base, { arms: o.arms, elo });
    return { results, base: baseOut, elo, seconds };
  } finally {
    await sim.app.close();
  }
}

function formatTable(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  return [fmt(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(fmt)].join("\n");
}

/** The per-arm table printed at the end (means over seeds); the base policy as a first row when given. */
export function summaryTable(results: ArmResult[], base?: { oracle: number; words: number }): string {
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
  if (base) rows.unshift(["base", "-", "-", base.oracle.toFixed(3), base.oracle.toFixed(3), "-", "0", base.words.toFixed(1), "-", "-", "-", "-"]);
  const head = ["arm", "RM score (step 1 → last)", "oracle, train (first 5 → last 5 steps)", "oracle test: base", "after", "Δ test", "KL", "mean words", "rubric versions", "meta steps", "senior tokens", "seeds"];
  return formatTable(head, rows);
}

/** Elo ± spread per arm next to the oracle, in the paper's form. */
export function eloTable(elo: NonNullable<SandboxOutcome["elo"]>): string {
  const rows = elo.rows.map((r) => [r.arm, r.label, `${r.elo.toFixed(1)} ± ${r.spread.toFixed(1)}`, r.oracle.toFixed(3), String(r.tournaments)]);
  const s = elo.settings;
  return (
    formatTable(["arm", "what", "Elo ± spread", "oracle (test)", "tournaments"], rows) +
    `\n(pairwise judge: the sim-server's evaluation judge, prefers the oracle-better response with p=${s.agreement}, position bias +${s.positionBias} for A; ` +
    `${s.seeds.length} Elo seeds × ${s.matches} matches per training seed, K ${s.k}, start ${s.initial}, single order; spread = population std over all tournaments)`
  );
}
