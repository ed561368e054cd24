/**
 * `mpo meta-step`: run one MPO meta step by hand — the senior judge reads scored rollouts (from
 * `mpo score` or a trainer's rollouts file), analyzes the junior's scores, and writes the next rubric
 * version into a run directory's store. Useful to inspect what the MRM would change before training with
 * it. Heavy imports stay inside the action.
 */
import type { Command } from "commander";
import { UserError } from "../../util/errors.ts";
import { explainJudgeFailure, intFlag, judgeModelFromFlags, type JudgeServerFlags } from "./score.ts";

interface MetaFlags extends JudgeServerFlags {
  rubric?: string;
  rollouts: string;
  out: string;
  samples: string;
  seed: string;
  step?: string;
  prescreen?: boolean;
  taskDescription?: string;
  concurrency: string;
  templates?: string;
  analysisWordCap?: string;
  protocol?: string;
  showRationales?: boolean;
  mergeWordBudget?: string;
}

/** Next free step number for meta logs in RUN/meta (so a rerun never overwrites an earlier log). */
async function nextStep(runDir: string): Promise<number> {
  const { existsSync, readdirSync } = await import("node:fs");
  const { join } = await import("node:path");
  const dir = join(runDir, "meta");
  if (!existsSync(dir)) return 0;
  const steps = readdirSync(dir).flatMap((f) => {
    const m = /^step-(\d+)(?:-guidelines)?\.json$/.exec(f);
    return m ? [Number(m[1])] : [];
  });
  return steps.length ? Math.max(...steps) + 1 : 0;
}

export function register(program: Command): void {
  program
    .command("meta-step")
    .description("run one meta step: the senior judge analyzes scored rollouts and writes the next rubric version into --out")
    .option("--rubric <FILE>", "initial rubric (used when the store in --out is empty)")
    .requiredOption("--rollouts <FILE>", "scored rollouts JSONL (records with an `evaluation`, e.g. from mpo score)")
    .requiredOption("--llm <URL>", "OpenAI-compatible base URL of the senior judge, or gguf:/path/model.gguf (in-process llama.cpp)")
    .option("--model <NAME>", "senior judge model name (not needed for gguf:)")
    .requiredOption("--out <DIR>", "run directory holding the rubric store (rubrics/) and meta logs (meta/)")
    .option("--server <KIND>", "server kind: vllm, sglang, llamacpp, ollama, openai, generic", "generic")
    .option("--samples <N>", "rollouts analyzed", "20")
    .option("--seed <S>", "seed of the sampling", "0")
    .option("--step <N>", "step number recorded in the lineage and the log name (default: next free)")
    .option("--prescreen", "label evaluations sound/flawed first and analyze flawed ones first")
    .option("--task-description <TEXT>", "task description for records without taskDescription")
    .option("--concurrency <N>", "MRM calls in flight", "8")
    .option("--templates <DIR>", "directory overriding prompt templates")
    .option("--protocol <NAME>", "judge protocol profile: paper (default) | hardened (docs/paper-protocol.md)", "paper")
    .option("--show-rationales", "show the senior the junior's per-item rationales (paper profile: the total only)")
    .option("--analysis-word-cap <N>", "word cap of each analysis (default: the profile's, 1000)")
    .option("--merge-word-budget <N>", "words of refinements given to the merge (default: the profile's; paper 16666)")
    .option("--cache <DIR>", "on-disk reply cache")
    .option("--api-key <KEY>", "API key (default $OPENAI_API_KEY, else EMPTY)")
    .option("--max-tries <N>", "tries per call before giving up")
    .option("--timeout-ms <MS>", "timeout of one try")
    .action(async (flags: MetaFlags) => {
      const samples = intFlag("samples", flags.samples, 1)!;
      const seed = intFlag("seed", flags.seed, 0)!;
      const concurrency = intFlag("concurrency", flags.concurrency, 1)!;
      const analysisWordCap = intFlag("analysis-word-cap", flags.analysisWordCap, 10);
      const mergeWordBudget = intFlag("merge-word-budget", flags.mergeWordBudget, 10);
      const { readJsonlObjects, toMetaRollouts } = await import("../../judge/jsonl-input.ts");
      const { loadTemplates } = await import("../../judge/templates.ts");
      const { metaStep } = await import("../../meta/meta-step.ts");
      const { loadRubricFile } = await import("../../rubric/format.ts");
      const { RubricStore } = await import("../../rubric/store.ts");
      const { UsageMeter } = await import("../../llm/usage.ts");
      const { Rng } = await import("../../util/rng.ts");

      const { rollouts, skippedLines } = toMetaRollouts(flags.rollouts, readJsonlObjects(flags.rollouts), flags.taskDescription);
      if (rollouts.length === 0) throw new UserError(`${flags.rollouts}: no record has an evaluation (all ${skippedLines.length} are null)`);
      if (skippedLines.length) process.stderr.write(`mpo: skipping ${skippedLines.length} record(s) without evaluation (lines ${skippedLines.slice(0, 10).join(", ")}${skippedLines.length > 10 ? ", …" : ""})\n`);
      const templates = loadTemplates(flags.templates);
      const store = RubricStore.open(flags.out);
      if (!store.latest()) {
        if (!flags.rubric) throw new UserError(`the rubric store in ${flags.out} is empty: pass --rubric FILE with the initial rubric`);
        const v0 = store.initialize(loadRubricFile(flags.rubric));
        process.stderr.write(`mpo: initialized ${store.paths(v0.version).json} from ${flags.rubric}\n`);
      } else if (flags.rubric) {
        process.stderr.write(`mpo: ${flags.out} already has rubric v${store.latest()!.version}; --rubric is ignored\n`);
      }
      const step = flags.step !== undefined ? intFlag("step", flags.step, 0)! : await nextStep(flags.out);
      const model = await judgeModelFromFlags(flags, new UsageMeter());
      const res = await metaStep({
        model,
        rollouts,
        store,
        step,
        runDir: flags.out,
        rng: new Rng(seed),
        samples,
        prescreen: flags.prescreen ?? false,
        protocol: (await import("../../judge/protocol.ts")).resolveProtocol(flags.protocol),
        ...(flags.showRationales ? { showRationales: true } : {}),
        ...(analysisWordCap !== undefined ? { analysisWordCap } : {}),
        ...(mergeWordBudget !== undefined ? { mergeWordBudget } : {}),
        templates,
        concurrency,
      });
      const u = UsageMeter.total(res.usage);
      process.stdout.write(`${res.summary}\n`);
      process.stdout.write(`log: ${res.logFile}\n`);
      process.stdout.write(`mrm: ${u.calls} calls (${u.failures} failed), ${u.promptTokens} prompt + ${u.completionTokens} completion tokens\n`);
      if (res.ok) {
        process.stdout.write(`new rubric: ${store.paths(res.version!.version).txt}\n`);
        return;
      }
      if (res.cause !== undefined) await explainJudgeFailure(res.cause, flags.llm);
      throw new UserError(`meta step failed, rubric v${res.previous.version} kept: ${res.error}`);
    });
}
