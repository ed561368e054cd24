/**
 * `mpo train`: RL fine-tuning of the embedded policy (PPO / GRPO / RLOO) with the MPO schedule.
 * Every config key (src/rl/config.ts) can come from --config FILE and/or a flag; flags win. The config is
 * validated before anything starts. `--resume RUN` continues a run from its newest checkpoint.
 * Ctrl-C finishes the current step, checkpoints and exits 0; a second Ctrl-C abandons the step.
 */
import type { Command } from "commander";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../../util/errors.ts";
import { FLAG_KEYS, trainConfigSchema } from "../../rl/config.ts";
import { DATA_FILE_HELP, parseDataFiles } from "../../tasks/data-files.ts";
import { LOG_TO_HELP, parseLogTo } from "../../track/index.ts";

const num = (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UserError(`expected a number, got '${v}'`);
  return n;
};
const int = (v: string) => {
  const n = num(v);
  if (!Number.isInteger(n)) throw new UserError(`expected an integer, got '${v}'`);
  return n;
};

export function register(program: Command): void {
  const cmd = program
    .command("train")
    .description("RL-train the policy with PPO/GRPO/RLOO against a reward; MPO refines the judge's rubric every --mpo-interval steps")
    .option("--config <file>", "YAML/JSON config (keys as in docs/training.md); flags override it")
    .option("--resume <run>", "continue the run in this directory from its newest checkpoint")
    .option("--run <dir>", "run directory (default runs/<task>-<algo>-<time>); must be empty or new")
    .option("--overwrite", "start over in a non-empty --run directory: its files move into moved-aside/ (nothing is deleted)")
    .option("--algo <name>", "ppo | grpo | rloo")
    .option("--task <name>", "built-in task (say-word) or a registered task / task config file")
    .option("--data-file <split=path,...>", DATA_FILE_HELP)
    .option("--log-to <list>", LOG_TO_HELP)
    .option("--limit <n>", "use at most n training records", int)
    .option("--policy <dir>", "policy checkpoint (config.json, model.safetensors, tokenizer.json); default: fresh tiny model")
    .option("--critic <kind>", "PPO critic: separate | shared")
    .option("--seed <n>", "random seed", int)
    .option("--steps <n>", "training steps (with --resume: extend the run to n steps)", int)
    .option("--batch <n>", "prompts per step", int)
    .option("--group-size <n>", "responses per prompt (GRPO/RLOO ≥ 2)", int)
    .option("--mini-batches <n>", "minibatches per epoch", int)
    .option("--ppo-epochs <n>", "optimization epochs per batch", int)
    .option("--lr <x>", "learning rate", num)
    .option("--critic-lr <x>", "critic learning rate (default: --lr)", num)
    .option("--weight-decay <x>", "AdamW weight decay", num)
    .option("--max-grad-norm <x>", "gradient clipping norm", num)
    .option("--warmup-steps <n>", "learning-rate warmup steps", int)
    .option("--lr-decay <kind>", "constant | linear | cosine (to 0 over --steps)")
    .option("--kl-coef <x>", "KL coefficient β (PPO: in the reward; GRPO: in the loss)", num)
    .option("--kl-estimator <k>", "k1 | k3")
    .option("--cliprange <x>", "policy ratio clip ε", num)
    .option("--cliprange-value <x>", "value clip", num)
    .option("--vf-coef <x>", "value loss coefficient", num)
    .option("--gamma <x>", "discount γ", num)
    .option("--lam <x>", "GAE λ", num)
    .option("--whiten-rewards", "whiten per-token rewards (PPO)")
    .option("--missing-eos-penalty <x>", "subtracted from scores of truncated responses", num)
    .option("--no-scale-by-std", "GRPO: do not divide by the group std (Dr. GRPO)")
    .option("--grpo-loss <norm>", "GRPO loss normalization: sequence | token")
    .option("--max-new-tokens <n>", "response length limit", int)
    .option("--max-prompt-tokens <n>", "prompt length limit (left-truncated)", int)
    .option("--temperature <x>", "sampling temperature", num)
    .option("--top-k <n>", "top-k sampling (0 = off)", int)
    .option("--top-p <x>", "nucleus sampling", num)
    .option("--separator <text>", "text between prompt and response for plain-text policies")
    .option("--mpo-interval <n>", "meta step every n steps (0 = fixed rubric)", int)
    .option("--mpo-schedule <kind>", "fixed (every --mpo-interval steps, the paper) | adaptive (when reward-hacking, saturation, spread or judge-flag triggers fire; docs/meta-schedule.md)")
    .option("--meta-min-interval <n>", "adaptive schedule: fewest steps between meta steps (default ⌈interval/3⌉, ≥ 2)", int)
    .option("--meta-max-interval <n>", "adaptive schedule: most steps between meta steps (default 2 × interval)", int)
    .option("--rubric-guard", "score a probe set with old and new rubric and reject a version that makes scoring worse (default: on with --mpo-schedule adaptive)")
    .option("--no-rubric-guard", "turn the rubric guard off")
    .option("--no-mpo", "train against the fixed initial rubric (the baseline)")
    .option("--checkpoint-every <n>", "checkpoint every n steps", int)
    .option("--keep-checkpoints <n>", "checkpoints kept", int)
    .option("--engine <kind>", "ts | native | auto")
    .option("--recompute", "activation recomputation: keep only each layer's input and re-run the layer in backward (less memory, ~+30% update time)")
    .option("--hidden-size <n>", "fresh policy: hidden size", int)
    .option("--layers <n>", "fresh policy: layers", int)
    .option("--heads <n>", "fresh policy: attention heads", int)
    .option("--ff-size <n>", "fresh policy: MLP size", int)
    .option("--max-positions <n>", "fresh policy: context length", int)
    .option("--reward <kind>", "keyword | length | rule-rubric | judge")
    .option("--word <w>", "keyword / rule-rubric: target word for every prompt")
    .option("--llm <url>", "judge: OpenAI-compatible base URL of the junior judge, or gguf:/path/model.gguf (implies --reward judge)")
    .option("--model <name>", "judge: junior judge model name")
    .option("--server <kind>", "judge: vllm | sglang | llamacpp | ollama | openai | generic")
    .option("--mrm-llm <url>", "judge: senior judge base URL (default: --llm)")
    .option("--mrm-model <name>", "judge: senior judge model (default: --model)")
    .option("--rubric <file>", "judge: initial rubric file or built-in task name (math: a guideline file, e.g. the paper's iter-0)")
    .option("--judge-mode <mode>", "judge: per-item | single-call")
    .option("--protocol <name>", "judge protocol profile: paper (default; the reference's stages) | hardened (docs/paper-protocol.md)")
    .option("--judge-sees-reference", "judge: show the junior judge the reference answer (e.g. the gold summary)")
    .option("--meta-samples <n>", "judge: rollouts analyzed per meta step (math-mixed: cases per guideline group)", int)
    .option("--lora", "LoRA: freeze the base, train adapters (+ value head); KL reference = base without adapters")
    .option("--lora-r <n>", "LoRA rank (default 64)", int)
    .option("--lora-alpha <x>", "LoRA alpha; scale = alpha / r (default 128)", num)
    .option("--lora-dropout <x>", "dropout on the adapter input (default 0.05)", num)
    .option("--lora-targets <list>", "comma-separated projections (default q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj)", (v: string) => v.split(",").map((x) => x.trim()).filter(Boolean))
    .option("--progress", "force the progress bar (default: when stderr is a terminal)")
    .option("--no-progress", "no progress bar")
    .action(async (opts: Record<string, unknown>, cmd: Command) => {
      const { readConfigFile, validate } = await import("../../config/load.ts");
      const { applyPolicyGenerationSettings, configFromFlags, defaultRewardFor, guardSettings, trainConfigSchema } = await import("../../rl/config.ts");
      const { Trainer } = await import("../../rl/trainer.ts");
      const { createReward } = await import("../../rl/reward-factory.ts");
      const { resolveTask } = await import("../../rl/tasks.ts");
      // Only flags the user typed count as overrides (commander fills --no-x defaults otherwise).
      const given = (k: string) => cmd.getOptionValueSource(k) === "cli";
      const flags = Object.fromEntries(Object.entries(opts).filter(([k]) => given(k)));

      let raw: Record<string, unknown> = {};
      let source = "flags";
      let runDir: string;
      const resume = typeof opts.resume === "string" ? opts.resume : undefined;
      if (resume) {
        const p = join(resume, "config.json");
        if (!existsSync(p)) throw new UserError(`--resume ${resume}: no config.json there (not a run directory)`);
        raw = readConfigFile(p) as Record<string, unknown>;
        source = p;
        runDir = resume;
        if (given("overwrite")) throw new UserError("--overwrite starts a new run; it cannot be combined with --resume");
        const extra = Object.keys(opts).filter((k) => given(k) && !["resume", "steps", "progress", "engine", "recompute"].includes(k));
        if (extra.length) throw new UserError(`--resume uses the run's saved config; only --steps, --engine, --recompute and --progress may change (got --${extra.join(", --")})`);
      } else {
        if (typeof opts.config === "string") {
          const v = readConfigFile(opts.config);
          if (v === null || typeof v !== "object" || Array.isArray(v)) throw new UserError(`${opts.config}: expected a mapping of options`);
          raw = v as Record<string, unknown>;
          source = opts.config;
        }
        runDir = "";
      }
      // The task decides what some flags mean (--llm: judge or math-mixed; its meta-step defaults). A typo'd task
      // name or an unreadable task config stops here with its own error.
      const taskName = (given("task") ? opts.task : raw.task) ?? "say-word"; // the schema's default task
      // (a task that is not a string is left to the config validation below, which names the field)
      const task0 = !resume && typeof taskName === "string" ? await resolveTask(taskName, { dataDir: (given("dataDir") ? opts.dataDir : raw.dataDir) as string | undefined }) : undefined;
      if (given("dataFile")) flags.dataFile = parseDataFiles(String(opts.dataFile));
      if (given("logTo")) flags.logTo = parseLogTo(String(opts.logTo));
      const merged = configFromFlags(flags, { file: raw, ...(task0 ? { task: task0 } : {}), resume: !!resume });
      // A policy checkpoint's own generation settings (separator, lengths, temperature) unless set above.
      if (!resume && typeof merged.policy === "string" && existsSync(merged.policy)) {
        const { loadGenerationSettings } = await import("../../engine/generation-settings.ts");
        applyPolicyGenerationSettings(merged, loadGenerationSettings(merged.policy));
      }
      // A reward kind switched by flag must not inherit the file's fields of another kind.
      const config = validate(trainConfigSchema, merged, source === "flags" ? "train flags" : `${source} (+ flags)`);
      if (!resume) runDir = config.run ?? join("runs", `${config.task.replace(/[^\w.-]+/g, "_")}-${config.algo}-${new Date().toISOString().replace(/[:.]/g, "-")}`);

      const task = await resolveTask(config.task, { dataDir: config.dataDir, data: config.data });
      // Resolve the training data now and record exactly what was read (a Hub dataset pinned to its commit, or
      // a file) in the run's config, so --resume needs no flags, environment or network.
      let data = config.data;
      if (!resume && task.dataSource) {
        await task.load("train", { dataDir: config.dataDir });
        const src = task.dataSource("train");
        if (src) data = { ...data, train: src };
      }
      const reward = config.reward ?? defaultRewardFor(task);
      const trainer = await Trainer.open({
        config: { ...config, ...(data ? { data } : {}), reward, run: runDir },
        runDir,
        task,
        resume: !!resume,
        overwrite: opts.overwrite === true,
        makeReward: (dir) => createReward(reward, { runDir: dir, task, seed: config.seed, guard: guardSettings(config) }),
        hooks: given("progress") ? { progress: opts.progress === true } : {},
      });
      let interrupts = 0;
      const onSigint = () => {
        interrupts++;
        trainer.requestStop();
        process.stderr.write(
          interrupts === 1
            ? "\nmpo: Ctrl-C: finishing the current step, then checkpoint and exit (Ctrl-C again to abandon the step)\n"
            : "\nmpo: abandoning the current step; the last checkpoint stands\n",
        );
      };
      process.on("SIGINT", onSigint);
      process.on("SIGTERM", onSigint);
      // Experiment tracking follows the run directory (src/track): no hook inside the trainer.
      const { RunTracker } = await import("../../track/index.ts");
      const tracker = await RunTracker.start(runDir, config.logTo ?? [], { params: { ...config, reward: reward.kind } });
      try {
        await trainer.run();
      } finally {
        process.off("SIGINT", onSigint);
        process.off("SIGTERM", onSigint);
        await tracker.close();
      }
    });
  showDefaults(cmd);
}

/** Defaults the checkpoint given with --policy may declare (its mpo-generation.json / generation_config.json). */
const FROM_POLICY = new Set(["maxNewTokens", "maxPromptTokens", "promptSeparator", "temperature"]);
const EXTRA_DEFAULTS: Record<string, string> = {
  groupSize: "1 for ppo, 4 for grpo/rloo",
  lr: "3e-6 with --policy (the paper), 1e-3 for the fresh tiny policy (say-word: 3e-3)",
  batch: "8 (say-word with the fresh tiny policy: 32)",
  criticLr: "--lr",
  reward: "the task's own (say-word: keyword)",
  judgeMode: "per-item",
  metaSamples: "20 (math-mixed: 4 cases per group)",
  server: "generic",
};

/** Appends each flag's default (from the config schema, so help and behaviour cannot drift) to its help text. */
function showDefaults(cmd: Command): void {
  const defaults = trainConfigSchema.parse({}) as Record<string, unknown>;
  const at = (key: string) => key.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], defaults);
  for (const opt of cmd.options) {
    const name = opt.attributeName();
    if (opt.negate || /\(default/.test(opt.description ?? "")) continue;
    const key = FLAG_KEYS[name];
    let text = EXTRA_DEFAULTS[name];
    if (text === undefined && key !== undefined) {
      const v = at(key);
      if (v === undefined) continue;
      text = JSON.stringify(v);
      if (FROM_POLICY.has(key)) text = `the --policy checkpoint's mpo-generation.json, else ${text}`;
    }
    if (text !== undefined) opt.description = `${opt.description} (default: ${text})`;
  }
}
