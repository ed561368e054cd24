/**
 * Optimization utilities for the engine: AdamW (PyTorch semantics, serializable state for exact resume),
 * global-norm gradient clipping, warmup + decay learning-rate schedules, and gradient accumulation.
 * These work on the `{name, data, grad}` parameter list every TransformerLM exposes.
 */
import type { NamedTensor, ParamTensor } from "./model.ts";
import { type EngineChoice, type Kernels, selectKernels, tsKernels } from "./kernels.ts";

export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /**
   * Which parameters get weight decay. Default: tensors with ≥ 2 dimensions (matrices, embeddings), not
   * norms / biases — the usual LM practice. Pass `() => true` for PyTorch's plain AdamW behaviour.
   */
  decay?: (p: ParamTensor) => boolean;
  /** Compute path for the update loop (default as the model: MPO_ENGINE, else native when available). */
  engine?: EngineChoice;
}

/**
 * AdamW as torch.optim.AdamW: p ← p − lr·wd·p;  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;
 * p ← p − lr · (m / (1−β1ᵗ)) / (sqrt(v / (1−β2ᵗ)) + eps).
 */
export class AdamW {
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  step = 0;
  private readonly m: Float32Array[];
  private readonly v: Float32Array[];
  private readonly decayMask: boolean[];
  private readonly kernels: Kernels;

  constructor(readonly params: ParamTensor[], opts: AdamWOptions) {
    if (!(opts.lr >= 0)) throw new RangeError(`AdamW: lr must be ≥ 0, got ${opts.lr}`);
    this.lr = opts.lr;
    [this.beta1, this.beta2] = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    const decay = opts.decay ?? ((p: ParamTensor) => p.shape.length >= 2);
    this.m = params.map((p) => new Float32Array(p.data.length));
    this.v = params.map((p) => new Float32Array(p.data.length));
    this.decayMask = params.map((p) => decay(p));
    // Native kernels take Float32Array only (float64 models are for gradient tests).
    const f32 = params.every((p) => p.data instanceof Float32Array && p.grad instanceof Float32Array);
    this.kernels = f32 ? selectKernels(opts.engine) : tsKernels;
  }

  /** One update with the current grads (does not zero them). `lr` overrides this.lr for this step. */
  update(lr: number = this.lr): void {
    this.step++;
    const b1 = this.beta1, b2 = this.beta2, eps = this.eps;
    const bc1 = 1 - Math.pow(b1, this.step);
    const bc2 = 1 - Math.pow(b2, this.step);
    const stepSize = lr / bc1;
    const invSqrtBc2 = 1 / Math.sqrt(bc2);
    for (let k = 0; k < this.params.length; k++) {
      const p = this.params[k].data;
      const g = this.params[k].grad;
      const m = this.m[k];
      const v = this.v[k];
      const shrink = this.decayMask[k] ? 1 - lr * this.weightDecay : 1;
      this.kernels.adamw(p, g, m, v, b1, b2, eps, shrink, stepSize, invSqrtBc2);
    }
  }

  /** Optimizer state as named tensors ("exp_avg.<param>", "exp_avg_sq.<param>") + scalars. */
  stateDict(): { step: number; lr: number; tensors: Map<string, NamedTensor> } {
    const tensors = new Map<string, NamedTensor>();
    this.params.forEach((p, k) => {
      tensors.set(`exp_avg.${p.name}`, { shape: p.shape.slice(), data: this.m[k] });
      tensors.set(`exp_avg_sq.${p.name}`, { shape: p.shape.slice(), data: this.v[k] });
    });
    return { step: this.step, lr: this.lr, tensors };
  }

  /** Restore from stateDict() output (e.g. read back from optimizer.safetensors). */
  loadStateDict(s: { step: number; lr?: number; tensors: Map<string, NamedTensor> }): void {
    if (!(Number.isInteger(s.step) && s.step >= 0)) throw new RangeError(`AdamW state: step must be an integer ≥ 0, got ${s.step}`);
    this.params.forEach((p, k) => {
      for (const [prefix, dst] of [["exp_avg.", this.m[k]], ["exp_avg_sq.", this.v[k]]] as const) {
        const t = s.tensors.get(prefix + p.name);
        if (!t) throw new RangeError(`AdamW state: missing tensor '${prefix}${p.name}'`);
        if (t.data.length !== dst.length) {
          throw new RangeError(`AdamW state: '${prefix}${p.name}' has ${t.data.length} values, parameter has ${dst.length}`);
        }
        dst.set(t.data);
      }
    });
    this.step = s.step;
    if (s.lr !== undefined) this.lr = s.lr;
  }
}

/**
 * Global L2 norm of all grads; scales them by maxNorm/(norm+1e-6) when above maxNorm (torch semantics).
 * A non-finite norm (NaN/Inf somewhere) is returned as is and nothing is scaled: callers skip that step.
 */
export function clipGradNorm(params: ParamTensor[], maxNorm: number): number {
  const K = params.every((p) => p.grad instanceof Float32Array) ? selectKernels() : tsKernels;
  let ss = 0;
  for (const p of params) ss += K.sumSquares(p.grad);
  const norm = Math.sqrt(ss);
  if (Number.isFinite(norm) && Number.isFinite(maxNorm) && maxNorm > 0 && norm > maxNorm) {
    const c = maxNorm / (norm + 1e-6);
    for (const p of params) {
      const g = p.grad;
      for (let i = 0; i < g.length; i++) g[i] *= c;
    }
  }
  return norm;
}

/** True when every gradient entry is finite (skip the step otherwise). */
export function gradsFinite(params: ParamTensor[]): boolean {
  for (const p of params) {
    const g = p.grad;
    for (let i = 0; i < g.length; i++) if (!Number.isFinite(g[i])) return false;
  }
  return true;
}

export interface ScheduleOptions {
  /** Peak learning rate. */
  lr: number;
  warmupSteps?: number;
  totalSteps: number;
  decay?: "cosine" | "linear" | "constant";
  /** Final lr as a fraction of the peak (cosine/linear). Default 0.1. */
  minLrRatio?: number;
}

/** lr(step) for step = 0, 1, …: linear warmup from lr/warmup to lr, then cosine/linear decay to min. */
export function lrSchedule(o: ScheduleOptions): (step: number) => number {
  const warm = o.warmupSteps ?? 0;
  const total = Math.max(o.totalSteps, warm + 1);
  const minLr = o.lr * (o.minLrRatio ?? 0.1);
  const decay = o.decay ?? "cosine";
  return (step: number) => {
    if (step < warm) return (o.lr * (step + 1)) / warm;
    if (decay === "constant") return o.lr;
    const t = Math.min(1, (step - warm) / Math.max(1, total - warm));
    if (decay === "linear") return o.lr + (minLr - o.lr) * t;
    return minLr + 0.5 * (o.lr - minLr) * (1 + Math.cos(Math.PI * t));
  };
}

/**
 * Gradient accumulation over micro-batches: backward() already accumulates, so this only scales each
 * micro-batch's upstream gradient by 1/steps and says when to update. Usage:
 *   const acc = new GradAccumulator(4);
 *   for (mb of microBatches) { …; model.backward(scale(dlp, acc.scale)); if (acc.tick()) { clip; opt.update(); zeroGrad } }
 */
export class GradAccumulator {
  private count = 0;
  constructor(readonly steps: number) {
    if (!(Number.isInteger(steps) && steps >= 1)) throw new RangeError(`GradAccumulator: steps must be an integer ≥ 1, got ${steps}`);
  }
  /** Multiply each micro-batch's loss gradient by this. */
  get scale(): number {
    return 1 / this.steps;
  }
  /** Count one micro-batch; true when an optimizer step is due (then the counter restarts). */
  tick(): boolean {
    this.count++;
    if (this.count >= this.steps) {
      this.count = 0;
      return true;
    }
    return false;
  }
}
