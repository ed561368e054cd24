/**
 * `mpo train` on a Hugging Face chat policy (a tiny qwen2 directory with the published Qwen2.5-Instruct chat
 * template, test/helpers/hf-policy.ts) for the essay task against the simulated judge server: the run's
 * reference and checkpoints carry the HF files (tokenizer_config.json with the template, generation_config.json
 * with both end ids), so resume and export keep the prompt format.
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSimServer } from "../src/sandbox/sim-server.ts";
import { makeHfChatPolicy } from "./helpers/hf-policy.ts";

const root = mkdtempSync(join(tmpdir(), "mpo-hf-train-"));
const dataDir = join(root, "data");
const policyDir = join(root, "qwen2-tiny");

function mpo(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env, MPO_DATA_DIR: dataDir, HF_HUB_OFFLINE: "1" };
    const p = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    p.on("close", (code) => resolve({ code, out }));
  });
}

describe("mpo train --policy <HF chat policy dir>", () => {
  let sim: Awaited<ReturnType<typeof startSimServer>>;
  beforeAll(async () => {
    mkdirSync(join(dataDir, "essay"), { recursive: true });
    const rows = Array.from({ length: 4 }, (_, i) => JSON.stringify({ id: `essay-${i}`, prompt: `Write a short essay about city trees, part ${i}.` }));
    writeFileSync(join(dataDir, "essay", "prompts.jsonl"), rows.join("\n") + "\n");
    makeHfChatPolicy(policyDir);
    sim = await startSimServer();
  });
  afterAll(async () => {
    await sim?.app.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("trains the essay task with GRPO; reference and checkpoints keep the chat template and end ids", async () => {
    const run = join(root, "run");
    const { code, out } = await mpo([
      "train", "--task", "essay", "--policy", policyDir, "--algo", "grpo", "--group-size", "2", "--batch", "2", "--steps", "2",
      "--max-new-tokens", "8", "--mpo-interval", "1", "--meta-samples", "2", "--llm", sim.url, "--model", "mpo-sim-judge", "--run", run, "--no-progress",
    ]);
    expect(code, out).toBe(0);
    expect(out).toMatch(/training finished: 2 steps/);
    const template = JSON.parse(readFileSync(join(policyDir, "tokenizer_config.json"), "utf8")).chat_template;
    for (const d of [join(run, "reference"), join(run, "checkpoints", "step-000002", "policy")]) {
      expect(JSON.parse(readFileSync(join(d, "tokenizer_config.json"), "utf8")).chat_template).toBe(template);
      expect(JSON.parse(readFileSync(join(d, "generation_config.json"), "utf8")).eos_token_id).toEqual([2, 0]);
      expect(JSON.parse(readFileSync(join(d, "config.json"), "utf8")).model_type).toBe("qwen2");
    }
  }, 120_000);
});
