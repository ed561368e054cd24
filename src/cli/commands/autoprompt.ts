/**
 * `mpo autoprompt`: offline rubric calibration (AutoPrompt-style, src/autoprompt/calibrate.ts) over any
 * OpenAI-compatible server. Rerunning the same command with the same --out resumes an interrupted run.
 */
import type { Command } from "commander";
import { UserError } from "../../util/errors.ts";
import { intFlag, judgeModelFromFlags } from "./score.ts";

interface AutoPromptFlags {
  task?: string;
  prompts?: string;
  promptField: string;
  taskDescription?: string;
  dataDir?: string;
  rubric?: string;
  llm: string;
  model: string;
  server?: string;
  juniorLlm?: string;
  juniorModel?: string;
  juniorServer?: string;
  annotatorLlm?: string;
  annotatorModel?: string;
  annotatorServer?: string;
  mode: string;
  rounds: string;
  promptsPerRound: string;
  maxDisagreements: string;
  seed: string;
  out?: string;
  rubricOut?: string;
  templates?: string;
  concurrency: string;
  cache?: string;
  apiKey?: string;
  maxTries?: string;
  timeoutMs?: string;
}

export function register(program: Command): void {
  program
    .command("autoprompt")
    .description("calibrate a rubric offline (AutoPrompt-style): boundary cases → annotation → junior scores → error analysis → revised rubric, per round")
    .option("--task <NAME>", "task whose train prompts, description and initial rubric are used (e.g. essay, sandbox-essay, or a task config .yaml)")
    .option("--prompts <FILE>", "prompts to write cases for (JSONL/JSON/CSV with a prompt field) instead of the task's")
    .option("--prompt-field <NAME>", "field holding the prompt text in --prompts", "prompt")
    .option("--task-description <TEXT>", "what the responses are for (default: the task's description)")
    .option("--data-dir <DIR>", "task data directory")
    .option("--rubric <FILE>", "initial rubric (default: the task's initial rubric)")
    .requiredOption("--llm <URL>", "OpenAI-compatible base URL of the senior model (writes cases, analyses, revises)")
    .requiredOption("--model <NAME>", "senior model name")
    .option("--server <KIND>", "server kind of --llm: vllm, sglang, llamacpp, ollama, openai, generic", "generic")
    .option("--junior-llm <URL>", "base URL of the junior judge being calibrated (default: --llm)")
    .option("--junior-model <NAME>", "junior judge model name (default: --model)")
    .option("--junior-server <KIND>", "server kind of the junior (default: --server)")
    .option("--annotator-llm <URL>", "base URL of the annotator (default: --llm, the senior)")
    .option("--annotator-model <NAME>", "annotator model name (default: --model)")
    .option("--annotator-server <KIND>", "server kind of the annotator (default: --server)")
    .option("--mode <MODE>", "junior judge mode: per-item | single-call", "per-item")
    .option("--rounds <N>", "calibration rounds", "4")
    .option("--prompts-per-round <N>", "prompts sampled per round (one case per style each)", "6")
    .option("--max-disagreements <N>", "largest disagreements shown to the analysis", "8")
    .option("--seed <S>", "seed of the prompt sampling", "0")
    .option("--out <DIR>", "run directory (default runs/autoprompt-<time>); an existing one is resumed")
    .option("--rubric-out <FILE>", "also write the best rubric here (it is always in OUT/rubric.txt)")
    .option("--templates <DIR>", "directory overriding prompt templates (autoprompt/*.md, rm/*.md)")
    .option("--concurrency <N>", "LLM calls in flight", "8")
    .option("--cache <DIR>", "on-disk reply cache")
    .option("--api-key <KEY>", "API key (default $OPENAI_API_KEY, else EMPTY)")
    .option("--max-tries <N>", "tries per call before giving up")
    .option("--timeout-ms <MS>", "timeout of one try")
    .action(async (f: AutoPromptFlags) => {
      const rounds = intFlag("rounds", f.rounds, 1)!;
      const promptsPerRound = intFlag("prompts-per-round", f.promptsPerRound, 1)!;
      const maxDisagreements = intFlag("max-disagreements", f.maxDisagreements, 1)!;
      const seed = intFlag("seed", f.seed, 0)!;
      const concurrency = intFlag("concurrency", f.concurrency, 1)!;
      if (f.mode !== "per-item" && f.mode !== "single-call") throw new UserError(`--mode: expected per-item or single-call, got '${f.mode}'`);
      if (!f.task && !f.prompts) throw new UserError("give --task NAME or --prompts FILE (the prompts to write boundary cases for)");
      const { readFileSync } = await import("node:fs");
      const { loadRubricFile } = await import("../../rubric/format.ts");
      const { loadTemplates } = await import("../../judge/templates.ts");
      const { UsageMeter } = await import("../../llm/usage.ts");
      const { writeFileAtomic } = await import("../../util/atomic.ts");
      const { runAutoPrompt, formatRounds } = await import("../../autoprompt/calibrate.ts");

      let task: import("../../tasks/types.ts").TaskDefinition | undefined;
      if (f.task) {
        const { resolveTask } = await import("../../rl/reward-factory.ts");
        task = await resolveTask(f.task, { dataDir: f.dataDir });
      }
      let prompts: Array<{ id: string; prompt: string }>;
      if (f.prompts) {
        const { readTable, requireText } = await import("../../data/files.ts");
        const rows = await readTable(f.prompts);
        prompts = rows.map((r, i) => ({ id: String((r as Record<string, unknown>).id ?? i), prompt: requireText(r, f.promptField, { file: f.prompts!, row: i + 1 }) }));
      } else prompts = (await task!.load("train")).map((r) => ({ id: r.id, prompt: r.prompt }));
      if (prompts.length === 0) throw new UserError(`no prompts to write cases for (${f.prompts ?? `task ${f.task}`} is empty)`);
      const taskDescription = f.taskDescription ?? task?.description;
      if (!taskDescription) throw new UserError("--task-description is required with --prompts (what the responses are for)");
      const rubricPath = f.rubric ?? (task?.reward.kind === "rubric" ? task.reward.initialRubric : undefined);
      if (!rubricPath) throw new UserError(`--rubric FILE is required${task ? ` (task ${task.name} has no initial rubric)` : ""}`);
      const initialRubric = loadRubricFile(rubricPath);

      const meter = new UsageMeter();
      const common = { apiKey: f.apiKey, cache: f.cache, maxTries: f.maxTries, timeoutMs: f.timeoutMs };
      const senior = await judgeModelFromFlags({ llm: f.llm, model: f.model, server: f.server, ...common }, meter);
      const junior =
        f.juniorLlm || f.juniorModel || f.juniorServer
          ? await judgeModelFromFlags({ llm: f.juniorLlm ?? f.llm, model: f.juniorModel ?? f.model, server: f.juniorServer ?? f.server, ...common }, meter)
          : senior;
      const annotator =
        f.annotatorLlm || f.annotatorModel || f.annotatorServer
          ? await judgeModelFromFlags({ llm: f.annotatorLlm ?? f.llm, model: f.annotatorModel ?? f.model, server: f.annotatorServer ?? f.server, ...common }, meter)
          : senior;
      const out = f.out ?? `runs/autoprompt-${new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19)}`;
      process.stderr.write(`mpo autoprompt: ${rounds} rounds × ${promptsPerRound} prompts from ${rubricPath} → ${out}\n`);
      const res = await runAutoPrompt({
        runDir: out,
        senior,
        annotator,
        junior,
        juniorMode: f.mode,
        taskDescription,
        prompts,
        initialRubric,
        rounds,
        promptsPerRound,
        maxDisagreements,
        seed,
        concurrency,
        templates: loadTemplates(f.templates),
        info: {
          senior: { url: f.llm, model: f.model },
          junior: { url: f.juniorLlm ?? f.llm, model: f.juniorModel ?? f.model },
          annotator: { url: f.annotatorLlm ?? f.llm, model: f.annotatorModel ?? f.model },
          rubric: rubricPath,
          task: f.task ?? null,
          prompts: f.prompts ?? null,
        },
      });
      if (f.rubricOut) writeFileAtomic(f.rubricOut, readFileSync(res.rubricFile, "utf8"));
      const u = UsageMeter.total(meter.snapshot());
      process.stdout.write(`\n${formatRounds(res)}\n\nLLM calls this session: ${u.calls} (${u.failures} failed), ${u.promptTokens} prompt + ${u.completionTokens} completion tokens\nbest rubric: v${res.best.version} → ${res.rubricFile}${f.rubricOut ? ` and ${f.rubricOut}` : ""}\nlog: ${out}/autoprompt/ (calls.jsonl, scores.jsonl, round-NNN.json), versions: ${out}/rubrics/\n`);
    });
}
