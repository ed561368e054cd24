// The native addon and the TypeScript path compute the same thing: per-kernel on odd sizes, and the whole
// model's score/backward/generate with identical weights. Skips (with the reason) when the addon is not built.
import { describe, expect, it } from "vitest";
import { AdamW, TransformerLM, llamaConfig, loadNative, selectKernels, tsKernels } from "../src/engine/index.ts";
import { Rng } from "../src/util/rng.ts";

const native = loadNative();
if (!native.kernels) console.warn(`engine-native tests skipped: ${native.error}`);
const d = native.kernels ? describe : describe.skip;

function rand(rng: Rng, n: number, s = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * s);
}

function expectClose(a: Float32Array, b: Float32Array, tol: number, what: string) {
  expect(a.length).toBe(b.length);
  let scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  expect(worst / Math.max(scale, 1e-12), what).toBeLessThan(tol);
}

d("native kernels vs TypeScript", () => {
  const N = native.kernels!;
  const T = tsKernels;
  const rng = new Rng(11);

  it("matmuls (all three shapes, accumulate on/off)", () => {
    const n = 37, I = 29, O = 45;
    const x = rand(rng, n * I), w = rand(rng, O * I), dy = rand(rng, n * O);
    for (const acc of [false, true]) {
      const y1 = rand(rng, n * O), y2 = y1.slice();
      N.matmulXWt(y1, x, w, n, I, O, acc);
      T.matmulXWt(y2, x, w, n, I, O, acc);
      expectClose(y1, y2, 1e-5, `xWt acc=${acc}`);
      const d1 = rand(rng, n * I), d2 = d1.slice();
      N.matmulDyW(d1, dy, w, n, O, I, acc);
      T.matmulDyW(d2, dy, w, n, O, I, acc);
      expectClose(d1, d2, 1e-5, `dyW acc=${acc}`);
    }
    const g1 = rand(rng, O * I), g2 = g1.slice();
    N.matmulDyTX(g1, dy, x, n, O, I);
    T.matmulDyTX(g2, dy, x, n, O, I);
    expectClose(g1, g2, 1e-5, "dyTX");
  });

  it("attention forward/backward (GQA), log-softmax, gated activations, AdamW", () => {
    const B = 3, Tn = 7, H = 4, Hkv = 2, D = 6;
    const q = rand(rng, B * Tn * H * D), k = rand(rng, B * Tn * Hkv * D), v = rand(rng, B * Tn * Hkv * D);
    const o1 = new Float32Array(q.length), o2 = new Float32Array(q.length);
    const P1 = new Float32Array(B * H * Tn), P2 = new Float32Array(B * H * Tn);
    N.attentionForward(o1, P1, q, k, v, B, Tn, H, Hkv, D, new Float32Array(Tn));
    T.attentionForward(o2, P2, q, k, v, B, Tn, H, Hkv, D, new Float32Array(Tn));
    expectClose(o1, o2, 1e-5, "attention out");
    expectClose(P1, P2, 1e-5, "attention lse");
    const dout = rand(rng, q.length);
    const g1 = [q, k, v].map((a) => new Float32Array(a.length));
    const g2 = [q, k, v].map((a) => new Float32Array(a.length));
    N.attentionBackward(g1[0], g1[1], g1[2], dout, o1, P1, q, k, v, B, Tn, H, Hkv, D, new Float32Array(Tn));
    T.attentionBackward(g2[0], g2[1], g2[2], dout, o2, P2, q, k, v, B, Tn, H, Hkv, D, new Float32Array(Tn));
    ["dq", "dk", "dv"].forEach((nm, i) => expectClose(g1[i], g2[i], 1e-5, nm));

    const n = 5, V = 33;
    const z = rand(rng, n * V, 3);
    const t = Int32Array.from([3, -1, 32, 0, 7]);
    const z1 = z.slice(), z2 = z.slice();
    const lp1 = new Float32Array(n), lp2 = new Float32Array(n), e1 = new Float32Array(n), e2 = new Float32Array(n);
    N.logSoftmaxGather(z1, t, lp1, e1, n, V);
    T.logSoftmaxGather(z2, t, lp2, e2, n, V);
    expectClose(lp1, lp2, 1e-5, "logprobs");
    expectClose(e1, e2, 1e-5, "entropy");
    const dl = rand(rng, n), de = rand(rng, n);
    const dz1 = new Float32Array(n * V), dz2 = new Float32Array(n * V);
    N.logSoftmaxGatherBackward(dz1, z1, t, dl, de, e1, n, V);
    T.logSoftmaxGatherBackward(dz2, z2, t, dl, de, e2, n, V);
    expectClose(dz1, dz2, 1e-5, "dlogits");
    N.logSoftmaxGatherBackward(dz1, z1, t, dl, null, null, n, V);
    T.logSoftmaxGatherBackward(dz2, z2, t, dl, null, null, n, V);
    expectClose(dz1, dz2, 1e-5, "dlogits (no entropy)");

    for (const kind of [0, 1, 2]) {
      const m = 50;
      const g = rand(rng, m, 2), u = rand(rng, m), dm = rand(rng, m);
      for (const uu of [u, null]) {
        const m1 = new Float32Array(m), m2 = new Float32Array(m);
        N.gluForward(m1, g, uu, m, kind);
        T.gluForward(m2, g, uu, m, kind);
        expectClose(m1, m2, 1e-5, `glu fwd ${kind}`);
        const a1 = new Float32Array(m), a2 = new Float32Array(m), b1 = uu ? new Float32Array(m) : null, b2 = uu ? new Float32Array(m) : null;
        N.gluBackward(a1, b1, dm, g, uu, m, kind);
        T.gluBackward(a2, b2, dm, g, uu, m, kind);
        expectClose(a1, a2, 1e-5, `glu dg ${kind}`);
        if (b1 && b2) expectClose(b1, b2, 1e-5, `glu du ${kind}`);
      }
    }

    const p = rand(rng, 40), g = rand(rng, 40), m = rand(rng, 40), v2 = rand(rng, 40).map(Math.abs);
    const s1 = [p.slice(), g, m.slice(), v2.slice()], s2 = [p.slice(), g, m.slice(), v2.slice()];
    N.adamw(s1[0], s1[1], s1[2], s1[3], 0.9, 0.95, 1e-8, 0.999, 1e-3, 1.1);
    T.adamw(s2[0], s2[1], s2[2], s2[3], 0.9, 0.95, 1e-8, 0.999, 1e-3, 1.1);
    expectClose(s1[0], s2[0], 1e-6, "adamw p");
  });

  it("RMSNorm, RoPE, sum of squares, KV-cache attention and row sampling", () => {
    const n = 9, dd = 24;
    const x = rand(rng, n * dd), w = rand(rng, dd), dout = rand(rng, n * dd);
    const o1 = new Float32Array(n * dd), o2 = new Float32Array(n * dd), r1 = new Float32Array(n), r2 = new Float32Array(n);
    N.rmsnormForward(o1, r1, x, w, n, dd, 1e-5);
    T.rmsnormForward(o2, r2, x, w, n, dd, 1e-5);
    expectClose(o1, o2, 1e-5, "rmsnorm out");
    const dx1 = rand(rng, n * dd), dx2 = dx1.slice(), dw1 = rand(rng, dd), dw2 = dw1.slice();
    N.rmsnormBackward(dx1, dw1, dout, x, w, r1, n, dd);
    T.rmsnormBackward(dx2, dw2, dout, x, w, r2, n, dd);
    expectClose(dx1, dx2, 1e-5, "rmsnorm dx");
    expectClose(dw1, dw2, 1e-5, "rmsnorm dw");
    const cos = rand(rng, 16 * 4), sin = rand(rng, 16 * 4);
    const pos = Int32Array.from([0, 3, 15, 2, 7, 1, 1, 9, 4]);
    for (const sign of [1, -1]) {
      const a = x.slice(), b = x.slice();
      N.ropeApply(a, pos, n, 3, 8, cos, sin, sign);
      T.ropeApply(b, pos, n, 3, 8, cos, sin, sign);
      expectClose(a, b, 1e-6, `rope sign ${sign}`);
    }
    expect(() => N.ropeApply(x.slice(), Int32Array.from([99, 0, 0, 0, 0, 0, 0, 0, 0]), n, 3, 8, cos, sin, 1)).toThrow(/RoPE position/);
    expect(N.sumSquares(x)).toBeCloseTo(T.sumSquares(x), 3);

    const R = 3, H = 4, Hkv = 2, D = 8, Tc = 11, S = 4;
    const kc = rand(rng, S * Hkv * Tc * D), vc = rand(rng, S * Hkv * Tc * D), q = rand(rng, R * H * D);
    const ps = Int32Array.from([0, 10, 5]), slot = Int32Array.from([3, 0, 1]);
    const a1 = new Float32Array(R * H * D), a2 = new Float32Array(R * H * D);
    N.attentionDecode(a1, q, kc, vc, ps, slot, R, H, Hkv, D, Tc, new Float32Array(Tc));
    T.attentionDecode(a2, q, kc, vc, ps, slot, R, H, Hkv, D, Tc, new Float32Array(Tc));
    expectClose(a1, a2, 1e-5, "decode attention");
    expect(() => N.attentionDecode(a1, q, kc, vc, ps, Int32Array.from([9, 0, 0]), R, H, Hkv, D, Tc, new Float32Array(Tc))).toThrow(/KV cache/);

    const rows = 24, V = 300;
    const z = rand(rng, rows * V, 2.5);
    const uni = Float32Array.from({ length: rows }, () => rng.random());
    for (const [temp, k, p] of [[0, 0, 1], [1, 0, 1], [0.7, 0, 1], [1, 20, 1], [1, 0, 0.8], [1.3, 40, 0.6], [1, 300, 0.999]]) {
      const t1 = new Int32Array(rows), t2 = new Int32Array(rows), l1 = new Float32Array(rows), l2 = new Float32Array(rows);
      N.sampleRows(z, rows, V, temp, k, p, uni, t1, l1, new Float32Array(2 * V));
      T.sampleRows(z, rows, V, temp, k, p, uni, t2, l2, new Float32Array(2 * V));
      expect(Array.from(t1), `tokens at T=${temp} k=${k} p=${p}`).toEqual(Array.from(t2));
      expectClose(l1, l2, 1e-5, "sampled logprobs");
    }
  });

  it("whole model: score, backward, AdamW step and greedy generation agree between paths", () => {
    const cfg = llamaConfig({ vocabSize: 67, hiddenSize: 32, intermediateSize: 40, numLayers: 2, numHeads: 4, numKvHeads: 2, maxPositions: 64, valueHead: true });
    const a = TransformerLM.create(cfg, new Rng(3), { engine: "native" });
    const b = TransformerLM.fromParams(cfg, a.namedTensors(), { engine: "ts" });
    expect(a.kernels.name).toBe("native");
    expect(b.kernels.name).toBe("ts");
    for (const p of a.params) for (let i = 0; i < p.data.length; i++) p.data[i] += (Math.sin(i * 7.1 + p.data.length) * 0.1);
    for (const [i, p] of b.params.entries()) p.data.set(a.params[i].data);
    const B = 3, Tn = 9;
    const tok = Int32Array.from({ length: B * Tn }, (_, i) => (i * 13 + 5) % 67);
    const tgt = Int32Array.from({ length: B * Tn }, (_, i) => (i % 5 === 4 ? -1 : (i * 7 + 1) % 67));
    const oa = a.score(tok, tgt, B, Tn, { needEntropy: true, needValues: true });
    const ob = b.score(tok, tgt, B, Tn, { needEntropy: true, needValues: true });
    expectClose(oa.logprobs, ob.logprobs, 1e-5, "logprobs");
    expectClose(oa.entropy!, ob.entropy!, 1e-5, "entropy");
    expectClose(oa.values!, ob.values!, 1e-5, "values");
    const rng = new Rng(4);
    const dl = rand(rng, B * Tn), dv = rand(rng, B * Tn), de = rand(rng, B * Tn);
    a.backward(dl, dv, de);
    b.backward(dl, dv, de);
    a.params.forEach((p, i) => expectClose(p.grad, b.params[i].grad, 1e-4, p.name));
    const optA = new AdamW(a.params, { lr: 1e-2, engine: "native" });
    const optB = new AdamW(b.params, { lr: 1e-2, engine: "ts" });
    optA.update();
    optB.update();
    a.params.forEach((p, i) => expectClose(p.data, b.params[i].data, 1e-4, `${p.name} after AdamW`));
    const prompts = [[1, 2, 3], [4, 5], [6]];
    const ga = a.generate(prompts, { maxNewTokens: 5, temperature: 0, stopTokens: [] });
    const gb = b.generate(prompts, { maxNewTokens: 5, temperature: 0, stopTokens: [] });
    expect(ga.tokens).toEqual(gb.tokens);
    const sa = a.generate(prompts, { maxNewTokens: 6, temperature: 0.9, topK: 20, topP: 0.9, rng: new Rng(6), stopTokens: [] });
    const sb = b.generate(prompts, { maxNewTokens: 6, temperature: 0.9, topK: 20, topP: 0.9, rng: new Rng(6), stopTokens: [] });
    expect(sa.tokens).toEqual(sb.tokens);
    ga.logprobs.forEach((row, i) => row.forEach((x, j) => expect(x).toBeCloseTo(gb.logprobs[i][j], 4)));
  });

  it("MPO_ENGINE selects the path; a bad value is a clear error", () => {
    const saved = process.env.MPO_ENGINE;
    try {
      process.env.MPO_ENGINE = "ts";
      expect(selectKernels().name).toBe("ts");
      process.env.MPO_ENGINE = "native";
      expect(selectKernels().name).toBe("native");
      process.env.MPO_ENGINE = "gpu";
      expect(() => selectKernels()).toThrow(/MPO_ENGINE must be/);
      delete process.env.MPO_ENGINE;
      expect(selectKernels().name).toBe("native");
    } finally {
      if (saved === undefined) delete process.env.MPO_ENGINE;
      else process.env.MPO_ENGINE = saved;
    }
  });
});
