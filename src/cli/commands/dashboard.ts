/**
 * `mpo dashboard [RUNS_DIR]`: serves the local web dashboard over a runs directory (curves, rubric lineage,
 * rollouts, reward-hacking warnings, live updates). Binds to 127.0.0.1 unless --host says otherwise.
 */
import type { Command } from "commander";
import { UserError } from "../../util/errors.ts";

export function register(program: Command): void {
  program
    .command("dashboard")
    .description("serve a local web dashboard for the runs under RUNS_DIR (default: ./runs)")
    .argument("[RUNS_DIR]", "directory holding run directories (nested allowed)", "runs")
    .option("--port <N>", "port to listen on (0 = any free port)", "8765")
    .option("--host <HOST>", "address to bind (use 0.0.0.0 to expose beyond this machine)", "127.0.0.1")
    .option("--poll-ms <MS>", "file polling interval for live updates", "1000")
    .action(async (runsDir: string, opts: { port: string; host: string; pollMs: string }) => {
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`--port: expected an integer 0–65535, got '${opts.port}'`);
      const pollMs = Number(opts.pollMs);
      if (!Number.isFinite(pollMs) || pollMs < 50) throw new UserError(`--poll-ms: expected a number ≥ 50, got '${opts.pollMs}'`);
      const { createDashboard } = await import("../../dashboard/server.ts");
      let dash;
      try {
        dash = await createDashboard({ runsDir, host: opts.host, port, pollMs });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "EADDRINUSE") throw new UserError(`port ${port} is in use; pick another with --port`);
        if (code === "EADDRNOTAVAIL") throw new UserError(`--host ${opts.host}: address not available on this machine`);
        // Any other bind failure (EACCES on a privileged port, an unresolvable --host, …): one line, exit 2.
        if (code) throw new UserError(`cannot listen on ${opts.host}:${port}: ${(err as Error).message}`);
        throw err;
      }
      process.stdout.write(`mpo dashboard: serving ${runsDir} at ${dash.url} (Ctrl-C to stop)\n`);
      const stop = () => {
        void dash.close().then(() => process.exit(0));
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
}
