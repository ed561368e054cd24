import type { Command } from "commander";
import { UserError } from "../../util/errors.ts";

const intList = (v: string) =>
  v.split(",").map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n)) throw new UserError(`expected a comma-separated list of integers, got '${v}'`);
    return n;
  });

export function register(program: Command): void {
  program
    .command("sandbox")
    .description("offline demo (the default of `npm start`): reward hacking under a weak rubric, and MPO countering it")
    .option("--out <dir>", "output directory (default runs/sandbox-<time>)")
    .option("--steps <n>", "RL steps per arm")
    .option("--arms <list>", "comma-separated arms from base,fixed,expert,autoprompt,mpo (default: base,fixed,autoprompt,mpo); also mpo-adaptive, mpo-guard (adaptive meta schedule without/with the rubric guard)")
    .option("--seeds <list>", "comma-separated seeds, e.g. 0,1,2 (default 0)")
    .option("--full", "the full table: all five arms and seeds 0,1,2 (unless --arms/--seeds are given)")
    .option("--algo <algo>", "grpo | ppo | rloo")
    .option("--batch <n>", "prompts per step")
    .option("--group-size <n>", "responses per prompt")
    .option("--mpo-interval <n>", "meta step every N steps (mpo arm)")
    .option("--meta-samples <n>", "rollouts the senior judge analyzes per meta step")
    .option("--lr <x>", "learning rate")
    .option("--kl-coef <x>", "KL coefficient")
    .option("--epochs <n>", "policy-gradient epochs per batch")
    .option("--max-new-tokens <n>", "response length limit in tokens")
    .option("--test-prompts <n>", "held-out prompts for the oracle evaluation")
    .option("--autoprompt-rounds <n>", "autoprompt arm: calibration rounds")
    .option("--autoprompt-prompts <n>", "autoprompt arm: prompts per calibration round (7 boundary cases each)")
    .option("--elo-matches <n>", "Elo matches per tournament (0 = no Elo table)")
    .option("--elo-seeds <list>", "Elo tournament seeds per training seed, e.g. 0,1,2,3,4")
    .option("--elo-agreement <p>", "simulated pairwise judge: probability of preferring the oracle-better response")
    .option("--elo-position-bias <b>", "simulated pairwise judge: added probability of answering A")
    .option("--policy <dir>", "base policy checkpoint (default: the shipped assets/sandbox-policy)")
    .option("--log-to <list>", "experiment tracking for every arm's run, any of tensorboard,wandb,mlflow (see docs/tracking.md)")
    .option("--judge <url>", "a real judge instead of the simulated one: gguf:/path/model.gguf (in-process llama.cpp) or an OpenAI-compatible base URL")
    .option("--senior-judge <url>", "the senior judge (default: --judge)")
    .option("--judge-model <name>", "model name for http(s) judges")
    .option("--protocol <name>", "judge protocol profile for every arm: paper (default) or hardened (docs/paper-protocol.md)")
    .action(async (o: Record<string, string | undefined>) => {
      const { runSandbox, summaryTable, eloTable, SANDBOX_DEFAULTS, ARMS, FULL_ARMS } = await import("../../sandbox/run.ts");
      const num = (k: string, v: string | undefined, d: number, int = true) => {
        if (v === undefined) return d;
        const n = Number(v);
        if (!Number.isFinite(n) || (int && !Number.isInteger(n)) || n < 0) throw new UserError(`--${k}: expected a ${int ? "non-negative integer" : "non-negative number"}, got '${v}'`);
        return n;
      };
      const arms = (o.arms ?? (o.full ? FULL_ARMS : SANDBOX_DEFAULTS.arms).join(",")).split(",").map((a) => a.trim());
      for (const a of arms) if (!(a in ARMS)) throw new UserError(`--arms: unknown arm '${a}' (known: ${Object.keys(ARMS).join(", ")})`);
      const algo = (o.algo ?? SANDBOX_DEFAULTS.algo) as "grpo" | "ppo" | "rloo";
      if (!["grpo", "ppo", "rloo"].includes(algo)) throw new UserError(`--algo: expected grpo, ppo or rloo, got '${algo}'`);
      if (o.protocol !== undefined && o.protocol !== "paper" && o.protocol !== "hardened") throw new UserError(`--protocol: expected paper or hardened, got '${o.protocol}'`);
      const out = o.out ?? `runs/sandbox-${new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19)}`;
      const d = SANDBOX_DEFAULTS;
      const opts = {
        out,
        arms: arms as Array<keyof typeof ARMS>,
        seeds: o.seeds ? intList(o.seeds) : o.full ? [0, 1, 2] : d.seeds,
        steps: num("steps", o.steps, d.steps),
        algo,
        batchSize: num("batch", o.batch, d.batchSize),
        groupSize: num("group-size", o.groupSize, algo === "ppo" ? 1 : d.groupSize),
        mpoInterval: num("mpo-interval", o.mpoInterval, d.mpoInterval),
        metaSamples: num("meta-samples", o.metaSamples, d.metaSamples),
        lr: num("lr", o.lr, d.lr, false),
        klCoef: num("kl-coef", o.klCoef, d.klCoef, false),
        epochs: num("epochs", o.epochs, d.epochs),
        maxNewTokens: num("max-new-tokens", o.maxNewTokens, d.maxNewTokens),
        testPrompts: num("test-prompts", o.testPrompts, d.testPrompts),
        autopromptRounds: num("autoprompt-rounds", o.autopromptRounds, d.autopromptRounds),
        autopromptPrompts: num("autoprompt-prompts", o.autopromptPrompts, d.autopromptPrompts),
        eloMatches: num("elo-matches", o.eloMatches, d.eloMatches),
        eloSeeds: o.eloSeeds ? intList(o.eloSeeds) : d.eloSeeds,
        eloAgreement: num("elo-agreement", o.eloAgreement, d.eloAgreement, false),
        eloPositionBias: num("elo-position-bias", o.eloPositionBias, d.eloPositionBias, false),
        policy: o.policy,
        judge: o.judge,
        seniorJudge: o.seniorJudge,
        judgeModel: o.judgeModel,
        protocol: o.protocol as "paper" | "hardened" | undefined,
      };
      if (opts.eloAgreement > 1) throw new UserError(`--elo-agreement: expected a probability in [0, 1], got '${o.eloAgreement}'`);
      if (opts.eloPositionBias > 0.5) throw new UserError(`--elo-position-bias: expected a number in [0, 0.5], got '${o.eloPositionBias}'`);
      if (opts.autopromptRounds < 1 && opts.arms.includes("autoprompt")) throw new UserError("--autoprompt-rounds: the autoprompt arm needs at least 1 round");
      process.stderr.write(
        `mpo sandbox: ${opts.arms.join(", ")} × seeds ${opts.seeds.join(",")}, ${opts.steps} ${algo.toUpperCase()} steps each → ${out}\n` +
          (opts.judge
            ? `  (judge: ${opts.judge}; senior judge: ${opts.seniorJudge ?? opts.judge})\n`
            : `  (simulated judge LLMs over a loopback OpenAI-compatible server; everything else is the real MPO code path)\n`) +
          (opts.protocol ? `  (judge protocol profile: ${opts.protocol})\n` : ""),
      );
      const t0 = performance.now();
      const { TreeTracker, parseLogTo } = await import("../../track/index.ts");
      const tracker = TreeTracker.start(out, parseLogTo(o.logTo), { name: out.split(/[\\/]/).pop() });
      let res;
      try {
        res = await runSandbox(opts);
      } finally {
        await tracker.close();
      }
      const elo = res.elo ? `\n\n${eloTable(res.elo)}` : "";
      process.stdout.write(`\n${summaryTable(res.results, opts.arms.includes("base") ? res.base : undefined)}${elo}\n\nreport: ${out}/report.html   (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
    });
}
