/**
 * One PPO or GRPO training step with LoRA on a Qwen2.5-0.5B-shaped model (#13 phase 5), built exactly as
 * `mpo train --lora` builds it (src/rl/lora-policy.ts: policy + critic on ONE frozen base, the KL reference =
 * the policy with adapters off, the critic sharing the policy's activation arena) and run through the
 * trainer's own pieces (ALGORITHMS[algo].advantages / policyLoss, clippedValueLoss, AdamW, clipGradNorm):
 *   1. rollout scoring: behaviour log-probs + entropy, reference log-probs, critic values (PPO);
 *   2. one minibatch update of the policy (and of the critic for PPO).
 * Batch B × T tokens (default 4 × 512: a 128-token prompt + 384 response tokens per row, random ids). No
 * generation and no judge here — those are measured by `npm run bench:engine -- --configs qwen0.5b`.
 *
 *   npx tsx bench/make-qwen05.ts                       # once: /tmp/mpo-qwen2.5-0.5b-random (988 MB)
 *   /usr/bin/time -v npx tsx bench/rl-step-qwen05.ts --algo ppo [--batch 4 --seq 512 --prompt 128] [--recompute]
 *
 * Prints each phase's wall time and the process RSS after it; the peak RSS is /usr/bin/time's
 * "Maximum resident set size" (the node process; npx/tsx wrappers are small).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { loadCheckpoint } from "../src/engine/io/checkpoint.ts";
import { AdamW, clipGradNorm } from "../src/engine/optim.ts";
import { LORA_TARGETS } from "../src/engine/model.ts";
import { adaptersOff, loraModel } from "../src/rl/lora-policy.ts";
import { ALGORITHMS } from "../src/rl/algorithms.ts";
import { klArray } from "../src/rl/advantages.ts";
import { clippedValueLoss } from "../src/rl/losses.ts";
import { trainConfigSchema, type TrainConfig } from "../src/rl/config.ts";
import { Rng } from "../src/util/rng.ts";
import { QWEN05_DIR, makeQwen05 } from "./make-qwen05.ts";

const arg = (k: string, dflt: string) => {
  const i = process.argv.indexOf(k);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const algo = arg("--algo", "ppo") as "ppo" | "grpo";
const B = Number(arg("--batch", "4"));
const T = Number(arg("--seq", "512"));
const P = Number(arg("--prompt", "128"));
const dir = arg("--dir", QWEN05_DIR);
const engine = arg("--engine", "native") as "native" | "ts";
const recompute = process.argv.includes("--recompute");
const R = T - P; // response tokens per row

const gib = (b: number) => (b / 2 ** 30).toFixed(2) + " GiB";
const t00 = performance.now();
let tPrev = t00;
function phase(name: string) {
  const now = performance.now();
  const m = process.memoryUsage();
  console.log(`${name.padEnd(44)} ${((now - tPrev) / 1000).toFixed(1).padStart(7)} s   rss ${gib(m.rss)}  (array buffers ${gib(m.arrayBuffers)})`);
  tPrev = now;
}

if (!existsSync(join(dir, "model.safetensors"))) makeQwen05(dir);
const ck = loadCheckpoint(dir);
phase(`load ${dir} (bf16 → f32)`);

const cfg: TrainConfig = trainConfigSchema.parse({ algo, task: "essay", steps: 1, lora: { enabled: true } } as never);
const lora = { r: 64, alpha: 128, dropout: 0.05, targets: [...LORA_TARGETS] };
const rng = new Rng(0);
const policy = loraModel(ck.config, ck.tensors, lora, { engine, recompute }, rng.fork("policy"));
const ref = adaptersOff(policy);
const critic = ALGORITHMS[algo].usesCritic
  ? loraModel({ ...ck.config, mpo_value_head: true }, ck.tensors, lora, { engine, recompute, shareArenaWith: policy }, rng.fork("critic"))
  : null;
const policyOpt = new AdamW(policy.trainableParams(), { lr: 1e-5, weightDecay: 0 });
const criticOpt = critic ? new AdamW(critic.trainableParams(), { lr: 1e-5, weightDecay: 0 }) : null;
const nTrain = policy.trainableParams().reduce((s, p) => s + p.data.length, 0);
console.log(`${algo.toUpperCase()} LoRA r${lora.r} α${lora.alpha} on ${lora.targets.join(",")}: ${(policy.numParams() / 1e6).toFixed(1)}M params (trainable ${(nTrain / 1e6).toFixed(2)}M), kernels ${policy.kernels.name} (${policy.kernels.detail}), batch ${B} × ${T} (prompt ${P} + response ${R})${recompute ? ", activation recomputation" : ""}`);
phase("build policy" + (critic ? " + critic" : "") + " (shared frozen base)");

// Rows: prompt tokens then response tokens; targets = the next token on response positions only (as pack()).
const V = policy.dims.V;
const tokens = new Int32Array(B * T);
const targets = new Int32Array(B * T).fill(-1);
for (let b = 0; b < B; b++) {
  for (let t = 0; t < T; t++) tokens[b * T + t] = rng.int(V);
  for (let t = P - 1; t < T - 1; t++) targets[b * T + t] = tokens[b * T + t + 1];
}
const mask = new Float64Array(B * R).fill(1);
const toResp = (x: Float32Array) => {
  const out = new Float64Array(B * R);
  for (let b = 0; b < B; b++) for (let j = 0; j < R; j++) out[b * R + j] = x[b * T + P - 1 + j];
  return out;
};
const fromResp = (x: Float64Array, scale = 1) => {
  const out = new Float32Array(B * T);
  for (let b = 0; b < B; b++) for (let j = 0; j < R; j++) out[b * T + P - 1 + j] = x[b * R + j] * scale;
  return out;
};

// 1. Rollout scoring (as Trainer.update's first loop).
const po = policy.score(tokens, targets, B, T, { needEntropy: true });
const oldLogp = toResp(po.logprobs);
phase("score: behaviour policy (log-probs + entropy)");
const refLogp = toResp(ref.score(tokens, targets, B, T).logprobs);
phase("score: reference (adapters off)");
let oldValues = new Float64Array(B * R);
if (critic) {
  oldValues = toResp(critic.score(tokens, targets, B, T, { needValues: true, needLogprobs: false }).values!);
  phase("score: critic values (no lm_head)");
}
const klTok = klArray(oldLogp, refLogp, mask, cfg.klEstimator);
const klSeq = new Float64Array(B);
for (let b = 0; b < B; b++) for (let j = 0; j < R; j++) klSeq[b] += klTok[b * R + j];
const scores = Array.from({ length: B }, (_, i) => i % 3);
const use = Array.from({ length: B }, (_, i) => i);
const adv = ALGORITHMS[algo].advantages({ B, R, G: algo === "grpo" ? B : 1, mask, klTok, klSeq, oldValues, scores, valid: scores.map(() => true), use }, cfg);

// 2. One minibatch update of the policy (all B rows), then of the critic.
policy.loraTrain = true;
policy.zeroGrad();
const out = policy.score(tokens, targets, B, T);
const l = ALGORITHMS[algo].policyLoss({ logp: toResp(out.logprobs), oldLogp, refLogp, mask, rows: use, R, sel: (x) => x }, adv, cfg);
phase("update: policy forward (dropout on)");
policy.backward(fromResp(l.dLogp));
phase("update: policy backward");
const gn = clipGradNorm(policy.trainableParams(), cfg.maxGradNorm);
policyOpt.update(1e-5);
phase(`update: clip (grad norm ${gn.toFixed(4)}) + AdamW`);
if (critic && criticOpt) {
  critic.loraTrain = true;
  critic.zeroGrad();
  const co = critic.score(tokens, targets, B, T, { needValues: true, needLogprobs: false });
  const v = clippedValueLoss(toResp(co.values!), oldValues, adv.returns, mask, cfg.cliprangeValue);
  critic.backward(null, fromResp(v.dValues, cfg.vfCoef));
  clipGradNorm(critic.trainableParams(), cfg.maxGradNorm);
  criticOpt.update(1e-5);
  phase("update: critic forward + backward + AdamW");
}
console.log(`policy loss ${l.loss.toFixed(5)}; arena ${gib(policy.arenaBytes())}; total ${((performance.now() - t00) / 1000).toFixed(1)} s; ${B * R} response tokens trained`);
