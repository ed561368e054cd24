/**
 * Builds the trainer's RewardFunction from its config (`reward` in src/rl/config.ts), bound to a run directory:
 *   keyword / length       rule rewards (no LLM)                               rewards/keyword.ts, rewards/length.ts
 *   verifier               boxed-answer / verdict check (no LLM)               rewards/verifier.ts
 *   rule-rubric            rule judge + rule meta step over a real rubric store (offline MPO)  rewards/rule-rubric.ts
 *   judge                  the paper's setup: LLM junior judge + LLM senior judge (MPO)       rewards/judge.ts
 *   math-mixed             answer check or plan/execute judge + grouped guidelines (MPO)      rewards/math-judge.ts
 * Which reward a run uses when the config names none is policy: `defaultRewardFor` in src/rl/config.ts.
 */
import { createChatModel } from "../llm/openai-client.ts";
import { UsageMeter } from "../llm/usage.ts";
import type { GuardOptions } from "../meta/guard.ts";
import { loadGuidelineFile } from "../rubric/guidelines.ts";
import type { GuidelineSet } from "../rubric/types.ts";
import type { TaskDefinition } from "../tasks/types.ts";
import { UserError } from "../util/errors.ts";
import type { RewardConfig } from "./config.ts";
import type { RewardFunction } from "./reward-types.ts";
import { JudgeReward, resolveInitialRubric } from "./rewards/judge.ts";
import { KeywordReward } from "./rewards/keyword.ts";
import { LengthReward } from "./rewards/length.ts";
import { MathJudgeReward } from "./rewards/math-judge.ts";
import { RuleRubricReward } from "./rewards/rule-rubric.ts";
import { VerifierReward } from "./rewards/verifier.ts";

// Moved in #17; re-exported so existing imports keep working.
export { defaultRewardFor } from "./config.ts";
export { JudgeReward, judgeInputs, resolveInitialRubric, type JudgeRewardOptions } from "./rewards/judge.ts";
export { MathJudgeReward, type MathRewardOptions } from "./rewards/math-judge.ts";
export { VerifierReward } from "./rewards/verifier.ts";
export { resolveTask } from "./tasks.ts";

function rubricOfTask(task: TaskDefinition): string {
  if (task.reward.kind === "rubric") return task.reward.initialRubric;
  throw new UserError(`reward.rubric: task ${task.name} has no initial rubric; give one with --rubric FILE`);
}

/** The RewardFunction a config asks for, bound to a run directory. */
export function createReward(cfg: RewardConfig, ctx: { runDir: string; task: TaskDefinition; seed: number; guard?: Partial<GuardOptions> | null }): RewardFunction {
  switch (cfg.kind) {
    case "verifier":
      return new VerifierReward(cfg.verifier);
    case "keyword":
      return new KeywordReward(cfg.word);
    case "length":
      return new LengthReward(cfg.min, cfg.max);
    case "rule-rubric":
      return new RuleRubricReward(ctx.runDir, cfg.word, { maxAvoid: cfg.maxAvoid });
    case "math-mixed": {
      const meter = new UsageMeter();
      const rm = createChatModel(cfg.rm, { meter });
      const mrm = cfg.mrm ? createChatModel(cfg.mrm, { meter }) : rm;
      // A guideline file (JSON set, or one text such as the paper's iter-0 file for every group), else the task's.
      const file = cfg.guidelines ?? (ctx.task.reward.kind === "math-mixed" ? ctx.task.reward.initialGuidelines : undefined);
      const initialGuidelines: GuidelineSet = file ? loadGuidelineFile(file) : { groups: {} };
      return new MathJudgeReward({
        runDir: ctx.runDir,
        task: ctx.task,
        rm,
        mrm,
        meter,
        initialGuidelines,
        seed: ctx.seed,
        answerCheckProbability: cfg.answerCheckProbability,
        minReasoningWords: cfg.minReasoningWords,
        casesPerGroup: cfg.casesPerGroup,
        concurrency: cfg.concurrency,
        protocol: cfg.protocol,
        ...(cfg.answerBox ? { answerBox: cfg.answerBox } : {}),
        ...(cfg.answerMatch ? { answerMatch: cfg.answerMatch } : {}),
      });
    }
    case "judge": {
      const meter = new UsageMeter();
      const rm = createChatModel(cfg.rm, { meter });
      const mrm = cfg.mrm ? createChatModel(cfg.mrm, { meter }) : rm;
      return new JudgeReward({
        runDir: ctx.runDir,
        task: ctx.task,
        rm,
        mrm,
        meter,
        initialRubric: resolveInitialRubric(cfg.rubric ?? rubricOfTask(ctx.task)),
        seed: ctx.seed,
        mode: cfg.mode,
        metaSamples: cfg.metaSamples,
        prescreen: cfg.prescreen,
        concurrency: cfg.concurrency,
        protocol: cfg.protocol,
        ...(cfg.judgeSeesReference !== undefined ? { judgeSeesReference: cfg.judgeSeesReference } : {}),
        ...(cfg.showRationales !== undefined ? { showRationales: cfg.showRationales } : {}),
        guard: ctx.guard ?? null,
      });
    }
  }
}
