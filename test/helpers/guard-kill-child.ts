/**
 * One life of a short MPO training run with the adaptive schedule and the rubric guard, for the kill-mid-guard
 * test (test/meta-adaptive-train.test.ts): the sandbox policy and task, the simulated judges at SIM_URL.
 *   node --import tsx [--import kill-after.mjs] guard-kill-child.ts RUN_DIR SIM_URL   (resumes when RUN_DIR has a checkpoint)
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { guardSettings, trainConfigSchema } from "../../src/rl/config.ts";
import { createReward } from "../../src/rl/reward-factory.ts";
import { Trainer } from "../../src/rl/trainer.ts";
import { SANDBOX_POLICY_DIR } from "../../src/sandbox/base-policy.ts";
import { SANDBOX_RUBRICS, sandboxEssayTask } from "../../src/sandbox/task.ts";

const [runDir, simUrl] = process.argv.slice(2);
const config = trainConfigSchema.parse({
  algo: "grpo",
  task: sandboxEssayTask.name,
  policy: SANDBOX_POLICY_DIR,
  reward: { kind: "judge", rm: { baseURL: simUrl, model: "mpo-sim-judge" }, rubric: SANDBOX_RUBRICS.weak, metaSamples: 3 },
  run: runDir,
  seed: 3,
  steps: 4,
  batchSize: 3,
  groupSize: 2,
  maxNewTokens: 24,
  maxPromptTokens: 40,
  promptSeparator: "\n\n",
  mpoInterval: 2,
  mpoSchedule: "adaptive",
  adaptive: { minInterval: 1, maxInterval: 2 },
  rubricGuard: true,
  guard: { probes: 4 },
  checkpointEvery: 1,
  keepCheckpoints: 2,
});
const resume = existsSync(join(runDir, "checkpoints"));
const trainer = await Trainer.open({
  config,
  runDir,
  task: sandboxEssayTask,
  resume,
  makeReward: (dir) => createReward(config.reward!, { runDir: dir, task: sandboxEssayTask, seed: config.seed, guard: guardSettings(config) }),
  hooks: { progress: false, log: () => {} },
});
const r = await trainer.run();
process.stdout.write(`${r.state} ${r.step}\n`);
