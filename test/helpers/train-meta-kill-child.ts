/**
 * One life of a short MPO training run with the fixed meta schedule (a meta step after step 2 of 3), for the
 * test that the trainer and the reward service resume a meta step the same way (test/meta-scheduler-callers.test.ts):
 * the sandbox policy and task, the simulated judges at SIM_URL.
 *   node --import tsx [--import kill-after.mjs] train-meta-kill-child.ts RUN_DIR SIM_URL   (resumes when RUN_DIR has a checkpoint)
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { trainConfigSchema } from "../../src/rl/config.ts";
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
  seed: 5,
  steps: 3,
  batchSize: 2,
  groupSize: 2,
  maxNewTokens: 16,
  maxPromptTokens: 40,
  promptSeparator: "\n\n",
  mpoInterval: 2,
  checkpointEvery: 1,
  keepCheckpoints: 3,
});
const resume = existsSync(join(runDir, "checkpoints"));
const trainer = await Trainer.open({
  config,
  runDir,
  task: sandboxEssayTask,
  resume,
  makeReward: (dir) => createReward(config.reward!, { runDir: dir, task: sandboxEssayTask, seed: config.seed }),
  hooks: { progress: false, log: () => {} },
});
const r = await trainer.run();
process.stdout.write(`${r.state} ${r.step}\n`);
