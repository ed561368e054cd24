/**
 * `mpo generate`: responses of a policy (an embedded-engine checkpoint, or a model on an OpenAI-compatible
 * server) to a task's prompts, written as the paper's generation files (JSONL `{query, model_response}` plus
 * `id`, `prompt`, `finish_reason`, `reference`, `label`) for `mpo eval`. Resumable: rerunning with the same
 * --out skips ids already written. The logic lives in src/generate/.
 */
import { DATA_FILE_HELP, parseDataFiles } from "../../tasks/data-files.ts";
import type { Command } from "commander";
import { UserError } from "../../util/errors.ts";

function num(name: string, v: string | undefined, integer: boolean): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new UserError(`--${name}: expected ${integer ? "an integer" : "a number"}, got "${v}"`);
  return n;
}

export function register(program: Command): void {
  program
    .command("generate")
    .description("generate responses to a task's prompts with a policy checkpoint or an OpenAI-compatible server (JSONL {id, prompt, query, model_response})")
    .requiredOption("--task <name>", "task name (essay, summarization, ethics, math, …) or a task config .yaml")
    .option("--split <split>", "train | test", "test")
    .option("--policy <dir>", "embedded-engine checkpoint: a checkpoint dir, a `mpo train` run dir (newest checkpoint) or a `mpo pretrain` output")
    .option("--llm <url>", "OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    .option("--model <name>", "model name on the --llm server")
    .option("--server <kind>", "server kind: vllm | sglang | llamacpp | ollama | openai | generic", "generic")
    .option("--api-key <key>", "API key (default: $OPENAI_API_KEY or EMPTY)")
    .option("--limit <n>", "first n records of the split")
    .option("--out <file>", "output JSONL (resumed: ids already there are skipped; refused if another model wrote it). Default: <model>.<split>.generations.jsonl")
    .option("--append", "add to an --out file that holds another model's lines")
    .option("--max-new-tokens <n>", "response length limit in tokens (default: with --policy the policy's own (mpo-generation.json, generation_config.json), else 1000)")
    .option("--temperature <x>", "sampling temperature; 0 = greedy (default: with --policy the policy's own, else 0.7)")
    .option("--seed <n>", "sampling seed (default 0 for --policy; sent as `seed` to the server)")
    .option("--concurrency <n>", "--llm: requests in flight (default 8)")
    .option("--separator <text>", "--policy: text between prompt and response (default: the policy's mpo-generation.json, else its training run's, else a blank line)")
    .option("--data-file <split=path,...>", `${DATA_FILE_HELP}; a bare PATH means the --split`)
    .option("--prompts <dir>", "directory overriding prompt templates (same relative names as prompts/)")
    .option("--engine <kind>", "--policy compute path: ts | native | auto")
    .option("--no-progress", "no progress bar on stderr")
    .action(async (f: Record<string, string | boolean | undefined>) => {
      const s = (k: string) => f[k] as string | undefined;
      if (!!s("policy") === !!s("llm")) throw new UserError("give exactly one of --policy CHECKPOINT_DIR or --llm URL --model NAME");
      if (s("llm") && !s("model")) throw new UserError("--llm needs --model (the model name the server serves)");
      const split = s("split");
      if (split !== "train" && split !== "test") throw new UserError(`--split: expected train or test, got "${split}"`);
      const engine = s("engine");
      if (engine !== undefined && !["ts", "native", "auto"].includes(engine)) throw new UserError(`--engine: expected ts, native or auto, got "${engine}"`);
      const { generate, defaultOutPath } = await import("../../generate/index.ts");
      const { serverKinds } = await import("../../llm/config.ts");
      const server = s("server")!;
      if (!(serverKinds as readonly string[]).includes(server)) throw new UserError(`--server: expected one of ${serverKinds.join(", ")}, got "${server}"`);
      const backend = s("llm")
        ? { kind: "llm" as const, endpoint: { baseURL: s("llm")!, model: s("model")!, server: server as (typeof serverKinds)[number], apiKey: s("api-key") ?? s("apiKey") } }
        : { kind: "policy" as const, dir: s("policy")!, separator: s("separator"), engine: engine as "ts" | "native" | "auto" | undefined };
      const out = s("out") ?? defaultOutPath(backend, split);

      let bar: import("cli-progress").SingleBar | undefined;
      let barStarted = false;
      if (f.progress !== false && process.stderr.isTTY) {
        const { SingleBar, Presets } = await import("cli-progress");
        bar = new SingleBar({ stream: process.stderr, format: "generating [{bar}] {value}/{total} | {eta_formatted} left", hideCursor: true }, Presets.shades_classic);
      }
      const ac = new AbortController();
      const onSig = () => {
        process.stderr.write("\nmpo generate: stopping; finished lines are kept, rerun to resume\n");
        ac.abort();
      };
      process.once("SIGINT", onSig);
      try {
        const r = await generate({
          task: s("task")!,
          split,
          backend,
          out,
          append: f.append === true,
          limit: num("limit", s("limit"), true),
          maxNewTokens: num("max-new-tokens", s("maxNewTokens"), true),
          temperature: num("temperature", s("temperature"), false),
          seed: num("seed", s("seed"), true),
          concurrency: num("concurrency", s("concurrency"), true),
          dataDir: s("dataDir"),
          dataFiles: s("dataFile") ? parseDataFiles(s("dataFile")!, split) : undefined,
          promptsDir: s("prompts"),
          signal: ac.signal,
          onProgress: (done, total) => {
            if (!bar) return;
            if (!barStarted) bar.start(total, done);
            else bar.update(done);
            barStarted = true;
          },
        });
        bar?.stop();
        process.stderr.write(
          `mpo generate: ${r.written} new, ${r.skipped} already in ${r.out}, ${r.total} records` +
            (r.failed.length ? `; ${r.failed.length} failed (rerun to retry): ${r.failed.slice(0, 3).map((x) => `${x.id}: ${x.error}`).join("; ")}` : "") +
            "\n",
        );
        if (r.failed.length || ac.signal.aborted) process.exitCode = 1;
      } finally {
        bar?.stop();
        process.off("SIGINT", onSig);
      }
    });
}
