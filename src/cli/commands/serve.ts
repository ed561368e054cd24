import type { Command } from "commander";

export function register(program: Command): void {
  program
    .command("serve")
    .description("serve MPO rewards over HTTP (OpenRLHF /get_reward, native /v1/score) with online rubric evolution")
    .option("--config <file>", "service config (YAML or JSON); see docs/serve.md")
    .option("--run <dir>", "run directory (overrides runDir)")
    .option("--log-to <list>", "experiment tracking of rubric versions, any of tensorboard,wandb,mlflow (see docs/tracking.md)")
    .option("--rubric <file>", "initial rubric file (overrides rubric; default with --task: the task's)")
    .option("--task <name>", "task (built-in name or task config file): the judges see samples as `mpo train --task` shows them, and its rules apply (overrides task)")
    .option("--llm <url>", "judge base URL, e.g. http://127.0.0.1:8000/v1 (overrides judge.baseURL)")
    .option("--model <name>", "judge model name (overrides judge.model)")
    .option("--server <kind>", "judge server kind: vllm|sglang|llamacpp|ollama|openai|generic")
    .option("--host <host>", "address to bind (default 127.0.0.1)")
    .option("--port <n>", "port (default 5000)")
    .option("--meta-every <n>", "meta step every N scored samples (0 = fixed rubric)")
    .option("--protocol <name>", "judge protocol profile: paper (default) | hardened (docs/paper-protocol.md)")
    .option("--mpo-schedule <kind>", "fixed (every --meta-every samples) | adaptive (when triggers fire; docs/meta-schedule.md)")
    .option("--rubric-guard", "reject a merged rubric that makes scoring worse on a probe set (default: on with --mpo-schedule adaptive)")
    .option("--no-rubric-guard", "turn the rubric guard off")
    .option("--policy <dir|id>", "the policy being trained (HF dir or Hub id): OpenRLHF queries are split at ITS chat template's markers (overrides policy)")
    .option("--chat-template <file>", "a Jinja chat template replacing the policy's (as OpenRLHF's --tokenizer_chat_template; overrides chatTemplate)")
    .option("--token <token>", "require this bearer token (default: $MPO_SERVE_TOKEN)")
    .option("--allow-unauthenticated-admin", "without a token, still allow POST /v1/meta-step (any local process or web page could change the rubric)")
    .option("--insecure", "allow a non-loopback --host without a token")
    .option("--deadline <ms>", "keep retrying the judge within a request this long before answering 503 (default 170000)")
    .option("--on-unreadable <policy>", "unreadable judge reply after re-asks: retry (503) | sentinel (reward = unreadable.sentinel, flagged)")
    .action(async (o: Record<string, string | undefined>) => {
      const { readConfigFile, validate, deepMerge } = await import("../../config/load.ts");
      const { serveConfigSchema } = await import("../../serve/config.ts");
      const { startRewardService } = await import("../../serve/index.ts");
      const base = o.config ? (readConfigFile(o.config) as Record<string, unknown>) : {};
      const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
      const merged = deepMerge(base ?? {}, {
        runDir: o.run,
        rubric: o.rubric,
        task: o.task,
        "judge.baseURL": o.llm,
        "judge.model": o.model ?? (o.llm?.startsWith("gguf:") ? "gguf" : undefined),
        "judge.server": o.server,
        host: o.host,
        port: num(o.port),
        metaEvery: num(o.metaEvery),
        protocol: o.protocol,
        policy: o.policy,
        chatTemplate: o.chatTemplate,
        metaSchedule: o.mpoSchedule,
        rubricGuard: typeof o.rubricGuard === "boolean" ? o.rubricGuard : undefined,
        token: o.token ?? process.env.MPO_SERVE_TOKEN,
        allowUnauthenticatedAdmin: o.allowUnauthenticatedAdmin ? true : undefined,
        insecure: o.insecure ? true : undefined,
        "outage.deadlineMs": num(o.deadline),
        "unreadable.onUnreadable": o.onUnreadable,
      });
      const cfg = validate(serveConfigSchema, merged, o.config ?? "command-line flags");
      const { RunTracker, parseLogTo } = await import("../../track/index.ts");
      const logTo = parseLogTo(o.logTo);
      let h;
      try {
        h = await startRewardService(cfg);
      } catch (err) {
        // Busy port, locked run directory, unsafe bind: one line, exit 2, nothing marked running.
        const e = err as NodeJS.ErrnoException;
        const why = e.code === "EADDRINUSE" ? `${cfg.host}:${cfg.port} is already in use (another service?); pick another --port` : e.code === "EADDRNOTAVAIL" ? `${cfg.host} is not an address of this machine` : e.message;
        process.stderr.write(`mpo serve: cannot start: ${why}\n`);
        process.exit(2);
      }
      const auth = cfg.token ? "bearer token required" : cfg.allowUnauthenticatedAdmin ? "NO token, admin routes open" : "no token: scoring open, admin routes disabled";
      process.stderr.write(`mpo serve: listening on ${h.boundAddress} (${h.url}) — ${auth}; rubric v${h.service.rubric.version}, run dir ${cfg.runDir}\n`);
      const tracker = await RunTracker.start(cfg.runDir, logTo);
      const stop = (sig: string) => {
        process.stderr.write(`mpo serve: ${sig}: finishing in-flight requests…\n`);
        void h.close().then(() => tracker.close()).then(() => process.exit(0));
      };
      process.once("SIGTERM", () => stop("SIGTERM"));
      process.once("SIGINT", () => stop("SIGINT"));
    });
}
