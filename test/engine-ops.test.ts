// Every engine op's explicit backward checked against central finite differences in float64.
import { describe, expect, it } from "vitest";
import * as ops from "../src/engine/ops.ts";
import { Rng } from "../src/util/rng.ts";

type F = Float32Array;
const f64 = (n: number) => new Float64Array(n) as unknown as F;

function randn(rng: Rng, n: number, s = 1): F {
  const a = f64(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * s;
  return a;
}

/**
 * Checks d(Σ out·R)/d(input) from `analytic` against central differences of `forward` for every entry of every
 * input. `forward` recomputes the output from the (mutated) inputs.
 */
function gradCheck(inputs: Record<string, F>, forward: () => F, R: F, analytic: Record<string, F>, tol = 1e-6): void {
  const loss = () => {
    const out = forward();
    let s = 0;
    for (let i = 0; i < R.length; i++) s += out[i] * R[i];
    return s;
  };
  const h = 1e-6;
  for (const [name, x] of Object.entries(inputs)) {
    const g = analytic[name];
    let worst = 0;
    for (let i = 0; i < x.length; i++) {
      const x0 = x[i];
      x[i] = x0 + h;
      const lp = loss();
      x[i] = x0 - h;
      const lm = loss();
      x[i] = x0;
      const fd = (lp - lm) / (2 * h);
      worst = Math.max(worst, Math.abs(fd - g[i]) / Math.max(1, Math.abs(fd)));
    }
    expect(worst, `gradient of ${name}`).toBeLessThan(tol);
  }
}

describe("engine ops: forward values", () => {
  it("matmuls agree with a naive triple loop (odd sizes, accumulate flag)", () => {
    const rng = new Rng(1);
    const N = 5, I = 7, O = 6;
    const x = randn(rng, N * I), w = randn(rng, O * I), dy = randn(rng, N * O);
    const y = f64(N * O).fill(1);
    ops.matmulXWt(y, x, w, N, I, O, true);
    const dx = f64(N * I);
    ops.matmulDyW(dx, dy, w, N, O, I, false);
    const dw = f64(O * I).fill(0.5);
    ops.matmulDyTX(dw, dy, x, N, O, I);
    for (let n = 0; n < N; n++)
      for (let o = 0; o < O; o++) {
        let s = 1;
        for (let i = 0; i < I; i++) s += x[n * I + i] * w[o * I + i];
        expect(y[n * O + o]).toBeCloseTo(s, 12);
      }
    for (let n = 0; n < N; n++)
      for (let i = 0; i < I; i++) {
        let s = 0;
        for (let o = 0; o < O; o++) s += dy[n * O + o] * w[o * I + i];
        expect(dx[n * I + i]).toBeCloseTo(s, 12);
      }
    for (let o = 0; o < O; o++)
      for (let i = 0; i < I; i++) {
        let s = 0.5;
        for (let n = 0; n < N; n++) s += dy[n * O + o] * x[n * I + i];
        expect(dw[o * I + i]).toBeCloseTo(s, 12);
      }
  });

  it("RoPE matches the HF rotate_half formula", () => {
    const D = 8, H = 2, N = 3, theta = 10000;
    const rng = new Rng(2);
    const x = randn(rng, N * H * D);
    const orig = x.slice();
    const { cos, sin } = ops.ropeTables(16, D, theta, f64);
    const pos = Int32Array.from([0, 3, 7]);
    ops.ropeApply(x, pos, N, H, D, cos, sin, 1);
    for (let n = 0; n < N; n++)
      for (let h = 0; h < H; h++)
        for (let j = 0; j < D; j++) {
          const i = j % (D / 2);
          const ang = pos[n] * Math.pow(theta, (-2 * i) / D);
          const o = n * H * D + h * D;
          const rot = j < D / 2 ? -orig[o + j + D / 2] : orig[o + j - D / 2];
          expect(x[o + j]).toBeCloseTo(orig[o + j] * Math.cos(ang) + rot * Math.sin(ang), 5);
        }
    ops.ropeApply(x, pos, N, H, D, cos, sin, -1);
    for (let i = 0; i < x.length; i++) expect(x[i]).toBeCloseTo(orig[i], 12);
  });

  it("GELU matches known values; erf is accurate", () => {
    expect(ops.erf(0.5)).toBeCloseTo(0.5204998778, 6);
    expect(ops.erf(-1.5)).toBeCloseTo(-0.9661051465, 6);
    expect(ops.activation(1, 1)).toBeCloseTo(0.8413447461, 6);
    expect(ops.activation(2, 1)).toBeCloseTo(0.8411919906, 6);
    expect(ops.activation(0, 1)).toBeCloseTo(0.7310585786, 9);
  });

  it("log-softmax gather gives normalized log-probs, ignores negative targets, and entropy", () => {
    const rng = new Rng(3);
    const N = 3, V = 5;
    const z = randn(rng, N * V);
    const lp = f64(N), ent = f64(N);
    const t = Int32Array.from([2, -1, 4]);
    ops.logSoftmaxGather(z, t, lp, ent, N, V);
    for (let n = 0; n < N; n++) {
      let s = 0, h = 0;
      for (let j = 0; j < V; j++) { s += Math.exp(z[n * V + j]); h -= Math.exp(z[n * V + j]) * z[n * V + j]; }
      expect(s).toBeCloseTo(1, 12);
      expect(ent[n]).toBeCloseTo(h, 12);
    }
    expect(lp[0]).toBe(z[2]);
    expect(lp[1]).toBe(0);
  });
});

describe("engine ops: backward vs finite differences (float64)", () => {
  const rng = new Rng(10);

  it("linear layer (x·Wᵀ)", () => {
    const N = 3, I = 5, O = 4;
    const x = randn(rng, N * I), w = randn(rng, O * I), R = randn(rng, N * O);
    const y = f64(N * O);
    const dx = f64(N * I), dw = f64(O * I);
    ops.matmulDyW(dx, R, w, N, O, I, false);
    ops.matmulDyTX(dw, R, x, N, O, I);
    gradCheck({ x, w }, () => (ops.matmulXWt(y, x, w, N, I, O, false), y), R, { x: dx, w: dw });
  });

  it("embedding", () => {
    const V = 6, d = 3, N = 4;
    const table = randn(rng, V * d);
    const tok = Int32Array.from([1, 4, 1, 0]);
    const out = f64(N * d), R = randn(rng, N * d), dT = f64(V * d);
    ops.embeddingBackward(dT, R, tok, N, d);
    gradCheck({ table }, () => (ops.embeddingForward(out, table, tok, N, d), out), R, { table: dT });
  });

  it("RMSNorm", () => {
    const N = 3, d = 6;
    const x = randn(rng, N * d), w = randn(rng, d), R = randn(rng, N * d);
    const out = f64(N * d), rstd = f64(N), dx = f64(N * d), dw = f64(d);
    ops.rmsnormForward(out, rstd, x, w, N, d, 1e-5);
    ops.rmsnormBackward(dx, dw, R, x, w, rstd, N, d);
    gradCheck({ x, w }, () => (ops.rmsnormForward(out, rstd, x, w, N, d, 1e-5), out), R, { x: dx, w: dw });
  });

  it("LayerNorm", () => {
    const N = 3, d = 6;
    const x = randn(rng, N * d), w = randn(rng, d), b = randn(rng, d), R = randn(rng, N * d);
    const out = f64(N * d), mean = f64(N), rstd = f64(N), dx = f64(N * d), dw = f64(d), db = f64(d);
    ops.layernormForward(out, mean, rstd, x, w, b, N, d, 1e-5);
    ops.layernormBackward(dx, dw, db, R, x, w, mean, rstd, N, d);
    gradCheck({ x, w, b }, () => (ops.layernormForward(out, mean, rstd, x, w, b, N, d, 1e-5), out), R, { x: dx, w: dw, b: db });
  });

  it("RoPE", () => {
    const N = 4, H = 2, D = 6;
    const x = randn(rng, N * H * D), R = randn(rng, N * H * D);
    const { cos, sin } = ops.ropeTables(8, D, 500, f64);
    const pos = Int32Array.from([0, 1, 5, 7]);
    const dx = R.slice();
    ops.ropeApply(dx, pos, N, H, D, cos, sin, -1);
    const out = f64(N * H * D);
    gradCheck({ x }, () => (out.set(x), ops.ropeApply(out, pos, N, H, D, cos, sin, 1), out), R, { x: dx });
  });

  it("causal grouped-query attention", () => {
    const B = 2, T = 4, H = 4, Hkv = 2, D = 3;
    const q = randn(rng, B * T * H * D), k = randn(rng, B * T * Hkv * D), v = randn(rng, B * T * Hkv * D);
    const R = randn(rng, B * T * H * D);
    const out = f64(B * T * H * D), lse = f64(B * H * T);
    ops.attentionForward(out, lse, q, k, v, B, T, H, Hkv, D, f64(T));
    const dq = f64(q.length), dk = f64(k.length), dv = f64(v.length);
    ops.attentionBackward(dq, dk, dv, R, out, lse, q, k, v, B, T, H, Hkv, D, f64(T));
    gradCheck({ q, k, v }, () => (ops.attentionForward(out, lse, q, k, v, B, T, H, Hkv, D, f64(T)), out), R, { q: dq, k: dk, v: dv });
    // Causality: the first position attends only to itself.
    for (let i = 0; i < D; i++) expect(out[i]).toBeCloseTo(v[i], 12);
  });

  for (const [name, code] of Object.entries(ops.ACT_CODE)) {
    it(`gated MLP hidden act(g)·u and plain act(g): ${name}`, () => {
      const n = 12;
      const g = randn(rng, n, 2), u = randn(rng, n), R = randn(rng, n);
      const m = f64(n), dg = f64(n), du = f64(n);
      ops.gluBackward(dg, du, R, g, u, n, code);
      gradCheck({ g, u }, () => (ops.gluForward(m, g, u, n, code), m), R, { g: dg, u: du }, 1e-5);
      const dg2 = f64(n);
      ops.gluBackward(dg2, null, R, g, null, n, code);
      gradCheck({ g }, () => (ops.gluForward(m, g, null, n, code), m), R, { g: dg2 }, 1e-5);
    });
  }

  it("log-probs of targets and entropy", () => {
    const N = 4, V = 6;
    const z = randn(rng, N * V);
    const t = Int32Array.from([1, -1, 5, 0]);
    const a = randn(rng, N), e = randn(rng, N);
    const lp = f64(N), ent = f64(N), work = f64(N * V);
    const fwd = () => {
      work.set(z);
      ops.logSoftmaxGather(work, t, lp, ent, N, V);
      return Float64Array.from([...lp, ...ent]) as unknown as F;
    };
    fwd();
    const dz = f64(N * V);
    ops.logSoftmaxGatherBackward(dz, work, t, a, e, ent, N, V);
    const R = Float64Array.from([...a, ...e]) as unknown as F;
    gradCheck({ z }, fwd, R, { z: dz });
  });
});
