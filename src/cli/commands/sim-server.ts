import type { Command } from "commander";
import { UserError } from "../../util/errors.ts";

export function register(program: Command): void {
  program
    .command("sim-server")
    .description("serve the sandbox's simulated judge LLMs as an OpenAI-compatible endpoint (for offline tries of the real HTTP path)")
    .option("--host <host>", "address to bind", "127.0.0.1")
    .option("--port <n>", "port", "8001")
    .option("--seed <n>", "seed of the judges' noise", "0")
    .option("--templates <dir>", "prompt template overlay the clients use (as their --templates), so their prompts are recognised")
    .action(async (o: { host: string; port: string; seed: string; templates?: string }) => {
      const port = Number(o.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`--port: expected an integer 0–65535, got '${o.port}'`);
      const { startSimServer } = await import("../../sandbox/sim-server.ts");
      const { app, url } = await startSimServer({ host: o.host, port, seed: Number(o.seed) || 0, templatesDir: o.templates });
      process.stderr.write(`simulated judge serving at ${url} (model name: any; answers the prompts in prompts/: per-item, single-call, plan/execute, prescreen, analyze/refine/merge, guidelines, essay writing). Ctrl-C to stop.\n`);
      const stop = () => void app.close().then(() => process.exit(0));
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
}
