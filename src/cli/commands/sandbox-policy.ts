import type { Command } from "commander";

export function register(program: Command): void {
  program
    .command("sandbox-policy")
    .description("rebuild the sandbox's base policy (essay corpus → BPE tokenizer → pretraining) from a seed")
    .option("--out <dir>", "checkpoint directory", "assets/sandbox-policy")
    .option("--seed <n>", "seed", "0")
    .option("--steps <n>", "pretraining steps", "800")
    .action(async (o: { out: string; seed: string; steps: string }) => {
      const { buildBasePolicy } = await import("../../sandbox/base-policy.ts");
      const r = await buildBasePolicy({ outDir: o.out, seed: Number(o.seed), steps: Number(o.steps), seqLen: 160, batch: 16, progress: process.stderr.isTTY });
      process.stdout.write(`wrote ${r.outDir}: ${r.params} parameters, final loss ${r.finalLoss.toFixed(3)}, ${r.tokensPerSecond.toFixed(0)} train tokens/s\n`);
    });
}
