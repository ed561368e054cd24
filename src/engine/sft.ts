/**
 * Supervised next-token training (pretraining on a token stream, or SFT on masked examples) for the engine:
 * batch makers, and `sftTrain`, the loop that runs score → backward(−mask/N) → clip → AdamW with a warmup +
 * decay schedule and gradient accumulation, showing a progress bar and writing the loss curve (JSONL).
 * The RL trainer uses the same pieces with its own per-token loss gradients.
 */
import { SingleBar } from "cli-progress";
import { appendJsonl } from "../util/atomic.ts";
import { Rng } from "../util/rng.ts";
import type { TransformerLM } from "./model.ts";
import { AdamW, clipGradNorm, lrSchedule } from "./optim.ts";

export interface Batch {
  /** [B*T] input tokens. */
  tokens: Int32Array;
  /** [B*T] next-token targets; −1 = not trained on (padding, prompt tokens under a loss mask). */
  targets: Int32Array;
  B: number;
  T: number;
}

/** Random windows of T+1 tokens from one long token stream (pretraining). */
export function streamBatches(stream: Int32Array | number[], B: number, T: number, rng: Rng): () => Batch {
  const s = stream instanceof Int32Array ? stream : Int32Array.from(stream);
  if (s.length < T + 1) throw new RangeError(`streamBatches: need at least T+1=${T + 1} tokens, got ${s.length}`);
  return () => {
    const tokens = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const start = rng.int(s.length - T);
      tokens.set(s.subarray(start, start + T), b * T);
      targets.set(s.subarray(start + 1, start + T + 1), b * T);
    }
    return { tokens, targets, B, T };
  };
}

export interface Example {
  tokens: number[];
  /** 1 where the token is a training target (e.g. response tokens), 0 otherwise; default all 1. */
  lossMask?: number[];
}

/**
 * Batches of whole examples (shuffled epochs), right padded with padId and truncated to T+1 tokens.
 * Position t predicts tokens[t+1] when lossMask[t+1] is 1.
 */
export function exampleBatches(examples: Example[], B: number, T: number, rng: Rng, padId = 0): () => Batch {
  if (examples.length === 0) throw new RangeError("exampleBatches: no examples");
  let order: number[] = [];
  let cursor = 0;
  return () => {
    const tokens = new Int32Array(B * T).fill(padId);
    const targets = new Int32Array(B * T).fill(-1);
    for (let b = 0; b < B; b++) {
      if (cursor >= order.length) {
        order = rng.shuffle(examples.map((_, i) => i));
        cursor = 0;
      }
      const ex = examples[order[cursor++]];
      const n = Math.min(ex.tokens.length, T + 1);
      for (let t = 0; t < n - 1; t++) {
        tokens[b * T + t] = ex.tokens[t];
        if (!ex.lossMask || ex.lossMask[t + 1]) targets[b * T + t] = ex.tokens[t + 1];
      }
      if (n >= 1 && n - 1 < T) tokens[b * T + n - 1] = ex.tokens[n - 1];
    }
    return { tokens, targets, B, T };
  };
}

export interface SftOptions {
  steps: number;
  lr: number;
  warmupSteps?: number;
  decay?: "cosine" | "linear" | "constant";
  minLrRatio?: number;
  weightDecay?: number;
  betas?: [number, number];
  /** Global grad-norm clip (default 1; 0 = off). */
  maxGradNorm?: number;
  /** Micro-batches per optimizer step (default 1). */
  gradAccum?: number;
  /** Show a progress bar on stderr (default: when stderr is a TTY). */
  progress?: boolean;
  /** Append {step, loss, lr, gradNorm, tokens, seconds} per optimizer step to this JSONL file. */
  lossCurvePath?: string;
  /** Resume: an existing optimizer (its step count continues the schedule). */
  optimizer?: AdamW;
  onStep?: (info: StepInfo) => void;
}

export interface StepInfo {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
  seconds: number;
  skipped: boolean;
}

export interface SftResult {
  optimizer: AdamW;
  losses: number[];
  tokensPerSecond: number;
  skippedSteps: number;
}

/** Mean next-token NLL over trained positions and its gradient w.r.t. logprobs (−1/count per position). */
export function nllGradient(logprobs: Float32Array, targets: Int32Array, dLogprobs: Float32Array, scale = 1): { loss: number; count: number } {
  let count = 0;
  for (let i = 0; i < targets.length; i++) if (targets[i] >= 0) count++;
  let loss = 0;
  const g = count > 0 ? -scale / count : 0;
  for (let i = 0; i < targets.length; i++) {
    if (targets[i] >= 0) {
      loss -= logprobs[i];
      dLogprobs[i] = g;
    } else dLogprobs[i] = 0;
  }
  return { loss: count > 0 ? loss / count : 0, count };
}

export async function sftTrain(model: TransformerLM, nextBatch: () => Batch, opts: SftOptions): Promise<SftResult> {
  const accum = opts.gradAccum ?? 1;
  const opt = opts.optimizer ?? new AdamW(model.params, { lr: opts.lr, betas: opts.betas, weightDecay: opts.weightDecay ?? 0.01 });
  const schedule = lrSchedule({
    lr: opts.lr,
    warmupSteps: opts.warmupSteps ?? 0,
    totalSteps: opts.steps,
    decay: opts.decay ?? "cosine",
    minLrRatio: opts.minLrRatio,
  });
  const showBar = opts.progress ?? Boolean(process.stderr.isTTY);
  const bar = showBar
    ? new SingleBar({
        format: "sft |{bar}| {value}/{total} loss {loss} lr {lr} {tps} tok/s",
        stream: process.stderr,
        hideCursor: true,
        synchronousUpdate: true,
      })
    : null;
  const first = opt.step;
  bar?.start(opts.steps, first, { loss: "-", lr: "-", tps: "-" });
  const losses: number[] = [];
  const t0 = performance.now();
  let tokens = 0;
  let skipped = 0;
  let dlp = new Float32Array(0);
  model.zeroGrad();
  for (let step = first; step < opts.steps; step++) {
    let lossSum = 0;
    for (let a = 0; a < accum; a++) {
      const batch = nextBatch();
      const out = model.score(batch.tokens, batch.targets, batch.B, batch.T);
      if (dlp.length !== batch.B * batch.T) dlp = new Float32Array(batch.B * batch.T);
      const { loss, count } = nllGradient(out.logprobs, batch.targets, dlp, 1 / accum);
      lossSum += loss / accum;
      tokens += count;
      model.backward(dlp);
    }
    const lr = schedule(step);
    const gradNorm = clipGradNorm(model.params, opts.maxGradNorm ?? 1);
    const finite = Number.isFinite(gradNorm);
    if (finite && Number.isFinite(lossSum)) opt.update(lr);
    else skipped++;
    model.zeroGrad();
    losses.push(lossSum);
    const seconds = (performance.now() - t0) / 1000;
    const info: StepInfo = { step: step + 1, loss: lossSum, lr, gradNorm, tokens, seconds, skipped: !finite };
    if (opts.lossCurvePath) appendJsonl(opts.lossCurvePath, info);
    opts.onStep?.(info);
    bar?.update(step + 1, { loss: lossSum.toFixed(4), lr: lr.toExponential(2), tps: Math.round(tokens / Math.max(seconds, 1e-9)) });
    // Yield to the event loop so the bar redraws and signals/IO are handled during long runs.
    await new Promise((r) => setImmediate(r));
  }
  bar?.stop();
  const seconds = (performance.now() - t0) / 1000;
  return { optimizer: opt, losses, tokensPerSecond: tokens / Math.max(seconds, 1e-9), skippedSteps: skipped };
}
