import { describe, expect, it } from "vitest";
import { clippedValueLoss, grpoLoss, ppoPolicyLoss } from "../src/rl/losses.ts";
import { Rng } from "../src/util/rng.ts";

/** Central finite difference of f at x[i]. */
function fd(f: (x: Float64Array) => number, x: Float64Array, i: number, h = 1e-6): number {
  const xp = x.slice();
  const xm = x.slice();
  xp[i] += h;
  xm[i] -= h;
  return (f(xp) - f(xm)) / (2 * h);
}

describe("PPO clipped policy loss", () => {
  it("hand-computed value, clip fraction and approx-KL", () => {
    // ε = 0.2. token 0: ratio e^0.1≈1.105, A=1 → l1=-1.105, l2=-1.105 → -1.10517
    // token 1: ratio e^0.5≈1.6487, A=1 → l1=-1.6487, l2=-1.2 → max = -1.2 (clipped)
    // token 2: ratio e^-0.5≈0.6065, A=-2 → l1=1.2131, l2=-2*0.8*-1=1.6 → 1.6 (clipped)
    // token 3: padding
    const logp = [0.1, 0.5, -0.5, 7];
    const old = [0, 0, 0, 0];
    const A = [1, 1, -2, 5];
    const r = ppoPolicyLoss(logp, old, A, [1, 1, 1, 0], 0.2);
    expect(r.loss).toBeCloseTo((-Math.exp(0.1) - 1.2 + 1.6) / 3, 12);
    expect(r.clipFrac).toBeCloseTo(2 / 3, 12);
    expect(r.approxKl).toBeCloseTo((0.5 * (0.01 + 0.25 + 0.25)) / 3, 12);
    expect(r.dLogp[0]).toBeCloseTo(-Math.exp(0.1) / 3, 12);
    expect(r.dLogp[1]).toBe(0);
    expect(r.dLogp[2]).toBe(0);
    expect(r.dLogp[3]).toBe(0);
  });

  it("gradient matches finite differences on random inputs", () => {
    const rng = new Rng(7);
    const n = 40;
    const logp = Float64Array.from({ length: n }, () => -1 + 0.4 * rng.normal());
    const old = Float64Array.from({ length: n }, (_, i) => logp[i] + 0.3 * rng.normal());
    const A = Float64Array.from({ length: n }, () => rng.normal());
    const mask = Float64Array.from({ length: n }, (_, i) => (i % 7 === 6 ? 0 : 1));
    const f = (x: Float64Array) => ppoPolicyLoss(x, old, A, mask, 0.2).loss;
    const g = ppoPolicyLoss(logp, old, A, mask, 0.2).dLogp;
    for (let i = 0; i < n; i++) expect(g[i]).toBeCloseTo(fd(f, logp, i), 6);
  });

  it("empty mask → zero loss, no NaN", () => {
    const r = ppoPolicyLoss([1], [0], [1], [0], 0.2);
    expect(r.loss).toBe(0);
    expect(r.clipFrac).toBe(0);
  });
});

describe("clipped value loss", () => {
  it("hand-computed value and gradient", () => {
    // c = 0.2. token 0: V=1, Vold=0.9, R=2 → Vclip=1 (|0.1|<0.2) → 0.5*(1)^2 = 0.5, grad (1-2) = -1
    // token 1: V=1.5, Vold=1, R=0 → Vclip=1.2, l1=2.25, l2=1.44 → 2.25 unclipped; grad 1.5
    // token 2: V=0.5, Vold=1, R=2 → Vclip=0.8, l1=2.25, l2=1.44 → unclipped; grad -1.5
    // token 3: V=1.5, Vold=1, R=2 → Vclip=1.2, l1=0.25, l2=0.64 → clipped: 0.64, grad 0
    const r = clippedValueLoss([1, 1.5, 0.5, 1.5], [0.9, 1, 1, 1], [2, 0, 2, 2], [1, 1, 1, 1], 0.2);
    expect(r.loss).toBeCloseTo((0.5 * (1 + 2.25 + 2.25 + 0.64)) / 4, 12);
    expect(r.clipFrac).toBe(0.25);
    expect(r.dValues[0]).toBeCloseTo(-1 / 4, 12);
    expect(r.dValues[1]).toBeCloseTo(1.5 / 4, 12);
    expect(r.dValues[2]).toBeCloseTo(-1.5 / 4, 12);
    expect(r.dValues[3]).toBe(0);
  });

  it("gradient matches finite differences on random inputs", () => {
    const rng = new Rng(11);
    const n = 40;
    const v = Float64Array.from({ length: n }, () => rng.normal());
    const old = Float64Array.from({ length: n }, (_, i) => v[i] + 0.4 * rng.normal());
    const R = Float64Array.from({ length: n }, () => rng.normal());
    const mask = Float64Array.from({ length: n }, (_, i) => (i % 5 === 4 ? 0 : 1));
    const f = (x: Float64Array) => clippedValueLoss(x, old, R, mask, 0.2).loss;
    const g = clippedValueLoss(v, old, R, mask, 0.2).dValues;
    for (let i = 0; i < n; i++) expect(g[i]).toBeCloseTo(fd(f, v, i), 6);
  });
});

describe("GRPO loss", () => {
  it("hand-computed sequence-normalized loss with a k3 KL term", () => {
    // B=2, T=2, row 0 has 2 tokens, row 1 has 1. ε=0.2, β=0.5.
    // On-policy (logp = old): ratio 1 → policy term = −A. k3 with ref: token KLs.
    const logp = [-1, -1, -2, 0];
    const ref = [-2, -1, -1, 0];
    const A = [1, -1];
    const r = grpoLoss(logp, logp, ref, A, [1, 1, 1, 0], 2, 2, { cliprange: 0.2, beta: 0.5, estimator: "k3" });
    const k3a = Math.exp(-1); // logp=-1, ref=-2
    const k3b = 0;
    const k3c = Math.E - 2; // logp=-2, ref=-1
    const row0 = (-1 + 0.5 * k3a + (-1 + 0.5 * k3b)) / 2;
    const row1 = 1 + 0.5 * k3c;
    expect(r.loss).toBeCloseTo((row0 + row1) / 2, 12);
    expect(r.kl).toBeCloseTo((k3a + k3b + k3c) / 3, 12);
    // gradient of token 0: w=1/(2*2); −A·ρ + β(1 − r), r = e^{ref−logp} = e^{-1}
    expect(r.dLogp[0]).toBeCloseTo((1 / 4) * (-1 + 0.5 * (1 - Math.exp(-1))), 12);
    expect(r.dLogp[3]).toBe(0);
  });

  it("gradients match finite differences (both normalizations, both estimators)", () => {
    const rng = new Rng(3);
    const B = 4;
    const T = 6;
    const n = B * T;
    const logp = Float64Array.from({ length: n }, () => -1 + 0.4 * rng.normal());
    const old = Float64Array.from({ length: n }, (_, i) => logp[i] + 0.25 * rng.normal());
    const ref = Float64Array.from({ length: n }, (_, i) => logp[i] + 0.5 * rng.normal());
    const A = Float64Array.from({ length: B }, () => rng.normal());
    const lens = [6, 3, 0, 1];
    const mask = Float64Array.from({ length: n }, (_, i) => (i % T < lens[Math.floor(i / T)] ? 1 : 0));
    for (const normalization of ["sequence", "token"] as const) {
      for (const estimator of ["k1", "k3"] as const) {
        const opts = { cliprange: 0.2, beta: 0.1, estimator, normalization };
        const f = (x: Float64Array) => grpoLoss(x, old, ref, A, mask, B, T, opts).loss;
        const g = grpoLoss(logp, old, ref, A, mask, B, T, opts).dLogp;
        for (let i = 0; i < n; i++) expect(g[i]).toBeCloseTo(fd(f, logp, i), 6);
      }
    }
  });
});
