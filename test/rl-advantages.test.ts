import { describe, expect, it } from "vitest";
import {
  gae,
  grpoAdvantages,
  klArray,
  klPerToken,
  klPerTokenGrad,
  maskedMean,
  maskedVar,
  ppoTokenRewards,
  rlooAdvantages,
  whiten,
} from "../src/rl/advantages.ts";

describe("GAE", () => {
  it("matches a hand computation (γ=0.9, λ=0.5, one row of 3 tokens + 1 pad)", () => {
    // r = [1, 0, 2], V = [0.5, 1, 1.5], terminal V = 0
    // δ2 = 2 + 0 - 1.5 = 0.5            A2 = 0.5
    // δ1 = 0 + 0.9*1.5 - 1 = 0.35       A1 = 0.35 + 0.45*0.5 = 0.575
    // δ0 = 1 + 0.9*1 - 0.5 = 1.4        A0 = 1.4 + 0.45*0.575 = 1.65875
    const { advantages, returns } = gae([1, 0, 2, 99], [0.5, 1, 1.5, 99], [1, 1, 1, 0], 1, 4, 0.9, 0.5);
    expect(advantages[0]).toBeCloseTo(1.65875, 12);
    expect(advantages[1]).toBeCloseTo(0.575, 12);
    expect(advantages[2]).toBeCloseTo(0.5, 12);
    expect(advantages[3]).toBe(0);
    expect(returns[0]).toBeCloseTo(2.15875, 12);
    expect(returns[1]).toBeCloseTo(1.575, 12);
    expect(returns[2]).toBeCloseTo(2.0, 12);
    expect(returns[3]).toBe(0);
  });

  it("γ=1, λ=1 gives return-to-go minus value; rows are independent", () => {
    // row 0: r=[1,2], V=[0,0] → A=[3,2]; row 1: r=[5,0] with only the first token real → A=[5-1]=4
    const { advantages } = gae([1, 2, 5, 7], [0, 0, 1, 3], [1, 1, 1, 0], 2, 2, 1, 1);
    expect(Array.from(advantages)).toEqual([3, 2, 4, 0]);
  });
});

describe("whitening", () => {
  it("masked mean and unbiased variance by hand", () => {
    // real: [1, 2, 3, 6] → mean 3, squared devs 4+1+0+9=14 → var 14/3
    expect(maskedMean([1, 2, 100, 3, 6], [1, 1, 0, 1, 1])).toBe(3);
    expect(maskedVar([1, 2, 100, 3, 6], [1, 1, 0, 1, 1])).toBeCloseTo(14 / 3, 12);
    expect(maskedVar([1, 2, 100, 3, 6], [1, 1, 0, 1, 1], false)).toBeCloseTo(14 / 4, 12);
  });
  it("whiten shifts and scales; shiftMean=false keeps the mean", () => {
    const x = [1, 2, 100, 3, 6];
    const m = [1, 1, 0, 1, 1];
    const sd = Math.sqrt(14 / 3 + 1e-8);
    const w = whiten(x, m);
    expect(w[0]).toBeCloseTo(-2 / sd, 12);
    expect(w[2]).toBe(0);
    expect(w[4]).toBeCloseTo(3 / sd, 12);
    const w2 = whiten(x, m, false);
    expect(w2[0]).toBeCloseTo(-2 / sd + 3, 12);
    expect(maskedMean(w2, m)).toBeCloseTo(3, 12);
  });
  it("constant input and empty mask give finite zeros", () => {
    expect(Array.from(whiten([2, 2, 2], [1, 1, 1]))).toEqual([0, 0, 0]);
    expect(Array.from(whiten([2, 2], [0, 0]))).toEqual([0, 0]);
    expect(Array.from(whiten([5], [1]))).toEqual([0]);
  });
});

describe("KL estimators", () => {
  it("k1 and k3 by hand", () => {
    // logp = -1, ref = -2: k1 = 1; r = e^{-1}; k3 = e^{-1} - 1 + 1 = e^{-1}
    expect(klPerToken(-1, -2, "k1")).toBe(1);
    expect(klPerToken(-1, -2, "k3")).toBeCloseTo(Math.exp(-1), 14);
    // logp = -2, ref = -1: k1 = -1 (can be negative); r = e; k3 = e - 1 - 1 = e - 2
    expect(klPerToken(-2, -1, "k1")).toBe(-1);
    expect(klPerToken(-2, -1, "k3")).toBeCloseTo(Math.E - 2, 14);
    expect(klPerToken(-0.3, -0.3, "k3")).toBe(0);
  });
  it("gradients match finite differences", () => {
    for (const est of ["k1", "k3"] as const) {
      for (const [lp, ref] of [[-1, -2], [-2, -1], [-0.5, -0.7]]) {
        const h = 1e-6;
        const fd = (klPerToken(lp + h, ref, est) - klPerToken(lp - h, ref, est)) / (2 * h);
        expect(klPerTokenGrad(lp, ref, est)).toBeCloseTo(fd, 6);
      }
    }
  });
  it("k3 estimates the true KL on average", () => {
    // π = [0.7, 0.3], π_ref = [0.4, 0.6]: E_π[k3] = KL(π‖π_ref)
    const p = [0.7, 0.3];
    const q = [0.4, 0.6];
    const trueKl = p[0] * Math.log(p[0] / q[0]) + p[1] * Math.log(p[1] / q[1]);
    const e3 = p[0] * klPerToken(Math.log(p[0]), Math.log(q[0]), "k3") + p[1] * klPerToken(Math.log(p[1]), Math.log(q[1]), "k3");
    const e1 = p[0] * klPerToken(Math.log(p[0]), Math.log(q[0]), "k1") + p[1] * klPerToken(Math.log(p[1]), Math.log(q[1]), "k1");
    expect(e3).toBeCloseTo(trueKl, 12);
    expect(e1).toBeCloseTo(trueKl, 12);
  });
  it("klArray zeroes padding", () => {
    expect(Array.from(klArray([-1, -1], [-2, -2], [1, 0], "k1"))).toEqual([1, 0]);
  });
});

describe("PPO token rewards", () => {
  it("KL penalty on every token, score added at the last real token", () => {
    const r = ppoTokenRewards([10, 20], [1, 2, 3, 4, 5, 6], [1, 1, 0, 1, 1, 1], 2, 3, 0.1);
    expect(r[0]).toBeCloseTo(-0.1, 12);
    expect(r[1]).toBeCloseTo(10 - 0.2, 12);
    expect(r[2]).toBe(0);
    expect(r[3]).toBeCloseTo(-0.4, 12);
    expect(r[4]).toBeCloseTo(-0.5, 12);
    expect(r[5]).toBeCloseTo(20 - 0.6, 12);
  });
});

describe("GRPO group advantages", () => {
  it("normalizes within each group by mean and unbiased std", () => {
    // group 1: [1, 2, 3] mean 2, std 1 → [-1, 0, 1]/(1+eps); group 2: [4, 4, 4] → zeros
    const a = grpoAdvantages([1, 2, 3, 4, 4, 4], 3, { eps: 0 });
    expect(Array.from(a)).toEqual([-1, 0, 1, 0, 0, 0]);
    const b = grpoAdvantages([0, 2], 2); // mean 1, std sqrt(2)
    expect(b[0]).toBeCloseTo(-1 / (Math.SQRT2 + 1e-4), 12);
    expect(b[1]).toBeCloseTo(1 / (Math.SQRT2 + 1e-4), 12);
  });
  it("scaleByStd=false subtracts the group mean only", () => {
    expect(Array.from(grpoAdvantages([1, 2, 6, 0], 2, { scaleByStd: false }))).toEqual([-0.5, 0.5, 3, -3]);
  });
  it("invalid samples are excluded from the group statistics and get 0", () => {
    // group [1, NaN-ish(invalid), 3] → valid mean 2, std sqrt(2)
    const a = grpoAdvantages([1, 999, 3], 3, { valid: [true, false, true], eps: 0 });
    expect(a[0]).toBeCloseTo(-1 / Math.SQRT2, 12);
    expect(a[1]).toBe(0);
    expect(a[2]).toBeCloseTo(1 / Math.SQRT2, 12);
    expect(Array.from(grpoAdvantages([1, 2], 2, { valid: [true, false] }))).toEqual([0, 0]);
  });
  it("rejects a batch that does not split into groups", () => {
    expect(() => grpoAdvantages([1, 2, 3], 2)).toThrow(/groups of 2/);
  });
});

describe("RLOO", () => {
  it("leave-one-out baseline", () => {
    // [1, 2, 6]: A0 = 1 - 4 = -3, A1 = 2 - 3.5 = -1.5, A2 = 6 - 1.5 = 4.5
    expect(Array.from(rlooAdvantages([1, 2, 6], 3))).toEqual([-3, -1.5, 4.5]);
    expect(Array.from(rlooAdvantages([1, 2, 6, 0], 4, [true, true, true, false]))).toEqual([-3, -1.5, 4.5, 0]);
  });
});
