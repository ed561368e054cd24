import type { Command } from "commander";
import { UserError } from "../../util/errors.ts";

export function register(program: Command): void {
  program
    .command("sim-server")
    .description("serve the sandbox's simulated judge LLMs as an OpenAI-compatible endpoint (for offline tries of the real HTTP path)")
    .option("--host <host>", "address to bind", "127.0.0.1")
    .option("--port <n>", "port", "8001")
    .option("--seed <n>", "seed of the judges' noise", "0")
    .option("--elo-agreement <p>", "pairwise evaluation judge: probability of preferring the oracle-better response", "0.8")
    .option("--elo-position-bias <b>", "pairwise evaluation judge: added to the probability of answering A", "0.05")
    .option("--templates <dir>", "prompt template overlay the clients use (as their --templates), so their prompts are recognised")
    .action(async (o: { host: string; port: string; seed: string; eloAgreement: string; eloPositionBias: string; templates?: string }) => {
      const port = Number(o.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`--port: expected an integer 0–65535, got '${o.port}'`);
      const agreement = Number(o.eloAgreement);
      if (!(agreement >= 0 && agreement <= 1)) throw new UserError(`--elo-agreement: expected a probability in [0, 1], got '${o.eloAgreement}'`);
      const positionBias = Number(o.eloPositionBias);
      if (!Number.isFinite(positionBias) || Math.abs(positionBias) > 0.5) throw new UserError(`--elo-position-bias: expected a number in [-0.5, 0.5], got '${o.eloPositionBias}'`);
      const { startSimServer } = await import("../../sandbox/sim-server.ts");
      const { app, url } = await startSimServer({ host: o.host, port, seed: Number(o.seed) || 0, elo: { agreement, positionBias }, templatesDir: o.templates });
      process.stderr.write(`simulated judge serving at ${url} (model name: any; answers the prompts in prompts/: per-item, single-call, plan/execute, prescreen, analyze/refine/merge, guidelines, Elo pairwise, autoprompt, essay writing). Ctrl-C to stop.\n`);
      const stop = () => void app.close().then(() => process.exit(0));
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
}
