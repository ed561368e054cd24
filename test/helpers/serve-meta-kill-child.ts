/**
 * One life of the reward service for the service kill-point test (test/serve-meta-kill.test.ts): the real
 * RewardService (in process, no HTTP) with the simulated judges. First life: score 6 samples, close the window
 * with a meta step. Later lives: construct the service (which recovers a pending meta step) and wait for it.
 * Every senior-judge call is appended to calls.log so the test can tell whether a restart re-ran the step.
 *   node --import tsx [--import kill-after.mjs] serve-meta-kill-child.ts RUN_DIR RUBRIC_FILE
 */
import { appendFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import type { ChatModel, ChatRequest } from "../../src/llm/types.ts";
import { SimulatedJudgeModel } from "../../src/sandbox/sim/sim-model.ts";
import { RewardService } from "../../src/serve/service.ts";

export async function runService(runDir: string, rubricFile: string): Promise<string> {
  const sim = new SimulatedJudgeModel();
  const senior: ChatModel = {
    id: "sim-senior",
    chat: (req: ChatRequest) => {
      appendFileSync(join(runDir, "calls.log"), `${req.stage}\n`);
      return sim.chat(req);
    },
  };
  const first = !existsSync(join(runDir, "serve-state.json"));
  const service = new RewardService({
    runDir,
    rubricFile,
    taskDescription: "Write an essay.",
    judge: sim,
    metaJudge: senior,
    mode: "per-item",
    metaEvery: 0,
    metaSamples: 3,
    prescreen: false,
    seed: 0,
    concurrency: 4,
    log: () => {},
  });
  try {
    if (first) {
      const filler = "Moreover, it is important to note that this is very important. Furthermore, in addition, this matters a lot.";
      await service.score(Array.from({ length: 6 }, (_, i) => ({ prompt: "Write a short essay arguing that cities should spend more money on public libraries.", response: i % 2 ? filler : "The Case for Public Libraries" })));
    }
    const r = await service.metaStepNow();
    return r ? r.summary : "";
  } finally {
    await service.close();
  }
}

if (process.argv[1] && import.meta.filename === process.argv[1]) process.stdout.write((await runService(process.argv[2], process.argv[3])) + "\n");
