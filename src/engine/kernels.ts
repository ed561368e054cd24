/**
 * Compute backends for the engine's heavy loops. The model code calls these through one `Kernels` object so
 * the same forward/backward runs on either path:
 *   - "ts": the plain TypeScript loops in ops.ts (always available, also runs float64 for gradient checks);
 *   - "native": the N-API addon in native/ (C++ with OpenBLAS sgemm when it was found at build time, and
 *     threaded C loops for attention), loaded from build/Release/mpo_engine.node when it built.
 * Selection: MPO_ENGINE=ts|native forces a path (native throws if the addon is missing); unset = native when
 * it loads, else ts. Why native and not WASM SIMD or worker_threads: measured, see docs/engine.md.
 */
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as ops from "./ops.ts";

type F = Float32Array;

export interface Kernels {
  readonly name: "ts" | "native";
  /** Extra detail for logs (e.g. "openblas, 2 threads"). */
  readonly detail: string;
  /** y[N,O] = x[N,I]·Wᵀ (+y). */
  matmulXWt(y: F, x: F, w: F, N: number, I: number, O: number, accumulate: boolean): void;
  /** dx[N,I] (+)= dy[N,O]·W[O,I]. */
  matmulDyW(dx: F, dy: F, w: F, N: number, O: number, I: number, accumulate: boolean): void;
  /** dW[O,I] += dyᵀ·x. */
  matmulDyTX(dw: F, dy: F, x: F, N: number, O: number, I: number): void;
  /** Causal GQA attention; keeps only the row log-sum-exp lse [B,H,T]; scratch ≥ T floats. */
  attentionForward(out: F, lse: F, q: F, k: F, v: F, B: number, T: number, H: number, Hkv: number, D: number, scratch: F): void;
  /** Backward recomputing the probabilities from q, k and lse (needs the forward's out). */
  attentionBackward(
    dq: F, dk: F, dv: F, dout: F, out: F, lse: F, q: F, k: F, v: F, B: number, T: number, H: number, Hkv: number,
    D: number, scratch: F,
  ): void;
  /** In place log-softmax over rows + gather of target log-probs (+ entropy). */
  logSoftmaxGather(logits: F, targets: Int32Array, lp: F, ent: F | null, N: number, V: number): void;
  logSoftmaxGatherBackward(
    dlogits: F, logp: F, targets: Int32Array, dlp: F | null, dent: F | null, ent: F | null, N: number, V: number,
  ): void;
  /** Gated MLP hidden m = act(g)·u (u null: plain MLP m = act(g)); kind: 0 silu, 1 gelu, 2 gelu_tanh. */
  gluForward(m: F, g: F, u: F | null, n: number, kind: number): void;
  /** dg = dm·u·act'(g), du = dm·act(g) (both overwrite). */
  gluBackward(dg: F, du: F | null, dm: F, g: F, u: F | null, n: number, kind: number): void;
  /** AdamW element update: p ← p·shrink − stepSize·m/(sqrt(v)·invSqrtBc2 + eps) after the moment updates. */
  adamw(p: F, g: F, m: F, v: F, b1: number, b2: number, eps: number, shrink: number, stepSize: number, invSqrtBc2: number): void;
  rmsnormForward(out: F, rstd: F, x: F, w: F, N: number, d: number, eps: number): void;
  rmsnormBackward(dx: F, dw: F, dout: F, x: F, w: F, rstd: F, N: number, d: number): void;
  /** In-place RoPE rotation (sign −1: inverse = backward). */
  ropeApply(x: F, pos: Int32Array, N: number, nHeads: number, D: number, cos: F, sin: F, sign: number): void;
  /** Σ g² (for the global gradient norm). */
  sumSquares(g: F): number;
  /** Generation attention of R rows against the KV cache [slot, Hkv, Tc, D] (see ops.attentionDecode). */
  attentionDecode(
    att: F, q: F, kc: F, vc: F, pos: Int32Array, slot: Int32Array, R: number, H: number, Hkv: number, D: number,
    Tc: number, scores: F,
  ): void;
  /** One sampled token (+ its untempered log-prob) per logits row; see ops.sampleToken for the semantics. */
  sampleRows(
    logits: F, R: number, V: number, temperature: number, topK: number, topP: number, uniforms: F,
    tokens: Int32Array, logprobs: F, scratch: F,
  ): void;
}

export const tsKernels: Kernels = {
  name: "ts",
  detail: "pure TypeScript",
  matmulXWt: ops.matmulXWt,
  matmulDyW: ops.matmulDyW,
  matmulDyTX: ops.matmulDyTX,
  attentionForward: ops.attentionForward,
  attentionBackward: ops.attentionBackward,
  logSoftmaxGather: ops.logSoftmaxGather,
  logSoftmaxGatherBackward: ops.logSoftmaxGatherBackward,
  gluForward: ops.gluForward,
  gluBackward: ops.gluBackward,
  adamw: ops.adamwUpdate,
  rmsnormForward: ops.rmsnormForward,
  rmsnormBackward: ops.rmsnormBackward,
  ropeApply: ops.ropeApply,
  sumSquares: ops.sumSquares,
  attentionDecode: ops.attentionDecode,
  sampleRows: ops.sampleRows,
};

/** Must equal kAbiVersion in native/mpo_engine.cc; a stale build is ignored (rebuild with npm run build:native). */
const NATIVE_ABI = 5;

/** What the addon exports (see native/mpo_engine.cc). */
interface NativeAddon extends Omit<Kernels, "name" | "detail"> {
  info(): { blas: string; threads: number; simd: string; abi: number };
  setThreads(n: number): void;
}

let nativeCache: { kernels: Kernels | null; error: string } | undefined;

function repoRoot(): string {
  // src/engine/kernels.ts → repo root two levels up.
  return join(dirname(fileURLToPath(import.meta.url)), "..", "..");
}

/** The native kernels, or null with the reason (never throws). */
export function loadNative(): { kernels: Kernels | null; error: string } {
  if (nativeCache) return nativeCache;
  const path = process.env.MPO_ENGINE_ADDON ?? join(repoRoot(), "build", "Release", "mpo_engine.node");
  if (!existsSync(path)) {
    nativeCache = { kernels: null, error: `native addon not built (${path} missing; run \`npm run build:native\`)` };
    return nativeCache;
  }
  try {
    const req = createRequire(import.meta.url);
    const a = req(path) as NativeAddon;
    const info = a.info();
    if (info.abi !== NATIVE_ABI) {
      nativeCache = { kernels: null, error: `native addon is stale (abi ${info.abi}, need ${NATIVE_ABI}; run \`npm run build:native\`)` };
      return nativeCache;
    }
    const threadsEnv = Number(process.env.MPO_ENGINE_THREADS);
    if (Number.isInteger(threadsEnv) && threadsEnv > 0) a.setThreads(threadsEnv);
    const k: Kernels = {
      name: "native",
      detail: `${info.blas}, ${a.info().threads} threads, ${info.simd}`,
      matmulXWt: a.matmulXWt,
      matmulDyW: a.matmulDyW,
      matmulDyTX: a.matmulDyTX,
      attentionForward: a.attentionForward,
      attentionBackward: a.attentionBackward,
      logSoftmaxGather: a.logSoftmaxGather,
      logSoftmaxGatherBackward: a.logSoftmaxGatherBackward,
      gluForward: a.gluForward,
      gluBackward: a.gluBackward,
      adamw: a.adamw,
      rmsnormForward: a.rmsnormForward,
      rmsnormBackward: a.rmsnormBackward,
      ropeApply: a.ropeApply,
      sumSquares: a.sumSquares,
      attentionDecode: a.attentionDecode,
      sampleRows: a.sampleRows,
    };
    nativeCache = { kernels: k, error: "" };
  } catch (e) {
    nativeCache = { kernels: null, error: `native addon failed to load: ${(e as Error).message}` };
  }
  return nativeCache;
}

export type EngineChoice = "ts" | "native" | "auto";

/** Pick the kernels: explicit choice, else MPO_ENGINE, else native when it loads. */
export function selectKernels(choice?: EngineChoice): Kernels {
  const env = process.env.MPO_ENGINE;
  const want = choice && choice !== "auto" ? choice : env === "ts" || env === "native" ? env : "auto";
  if (env !== undefined && env !== "" && env !== "ts" && env !== "native" && env !== "auto") {
    throw new Error(`MPO_ENGINE must be "ts", "native" or "auto", got ${JSON.stringify(env)}`);
  }
  if (want === "ts") return tsKernels;
  const n = loadNative();
  if (n.kernels) return n.kernels;
  if (want === "native") throw new Error(`MPO_ENGINE=native requested but ${n.error}`);
  return tsKernels;
}
