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
  attentionForward(out: F, P: F, q: F, k: F, v: F, B: number, T: number, H: number, Hkv: number, D: number): void;
  attentionBackward(
    dq: F, dk: F, dv: F, dout: F, P: F, q: F, k: F, v: F, B: number, T: number, H: number, Hkv: number, D: number,
    scratch: F,
  ): void;
  /** In place log-softmax over rows + gather of target log-probs (+ entropy). */
  logSoftmaxGather(logits: F, targets: Int32Array, lp: F, ent: F | null, N: number, V: number): void;
  logSoftmaxGatherBackward(
    dlogits: F, logp: F, targets: Int32Array, dlp: F | null, dent: F | null, ent: F | null, N: number, V: number,
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
};

/** What the addon exports (see native/mpo_engine.cc). */
interface NativeAddon {
  info(): { blas: string; threads: number; simd: string };
  setThreads(n: number): void;
  matmulXWt(y: F, x: F, w: F, N: number, I: number, O: number, accumulate: boolean): void;
  matmulDyW(dx: F, dy: F, w: F, N: number, O: number, I: number, accumulate: boolean): void;
  matmulDyTX(dw: F, dy: F, x: F, N: number, O: number, I: number): void;
  attentionForward(out: F, P: F, q: F, k: F, v: F, B: number, T: number, H: number, Hkv: number, D: number): void;
  attentionBackward(
    dq: F, dk: F, dv: F, dout: F, P: F, q: F, k: F, v: F, B: number, T: number, H: number, Hkv: number, D: number,
    scratch: F,
  ): void;
  logSoftmaxGather(logits: F, targets: Int32Array, lp: F, ent: F | null, N: number, V: number): void;
  logSoftmaxGatherBackward(
    dlogits: F, logp: F, targets: Int32Array, dlp: F | null, dent: F | null, ent: F | null, N: number, V: number,
  ): void;
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
