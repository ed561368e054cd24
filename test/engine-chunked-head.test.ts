/**
 * The memory options for big vocabularies (#13 phase 5): the chunked lm_head/log-softmax (score() never holds
 * [rows, vocab] logits for all rows; backward() recomputes each chunk) gives the same log-probs, entropies and
 * gradients as the one-chunk path; a frozen base is built without matrix gradient buffers; a critic sharing
 * the policy's activation arena computes the same values and refuses a backward after another model scored;
 * needLogprobs: false skips the head and leaves the values unchanged; activation recomputation (recompute: true)
 * gives the same outputs and gradients as keeping every layer's activations. On every compute path.
 */
import { describe, expect, it } from "vitest";
import { TransformerLM, llamaConfig, loadNative, type ModelConfig } from "../src/engine/index.ts";
import { LORA_TARGETS } from "../src/engine/model.ts";
import { Rng } from "../src/util/rng.ts";

const V = 37;
const cfg = (tied: boolean): ModelConfig => ({
  ...llamaConfig({ vocabSize: V, hiddenSize: 16, intermediateSize: 24, numLayers: 2, numHeads: 4, numKvHeads: 2, maxPositions: 32, valueHead: true, tieEmbeddings: tied }),
  model_type: "qwen2",
});

function batch(rng: Rng, B: number, T: number) {
  const tokens = new Int32Array(B * T).map(() => rng.int(V));
  // Ignored positions (−1) inside and at the ends, so head rows are a gathered subset.
  const targets = new Int32Array(B * T).map((_, i) => (i % T === 0 || rng.random() < 0.25 ? -1 : rng.int(V)));
  return { tokens, targets };
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const engines: ("ts" | "native")[] = ["ts"];
if (loadNative().kernels) engines.push("native");

for (const engine of engines) {
  describe(`chunked lm_head on the ${engine} path`, () => {
    for (const [label, tied, lora, temperature, needEntropy] of [
      ["full weights, untied head, temperature 0.7, entropy requested", false, false, 0.7, true],
      ["full weights, tied head, entropy only in backward", true, false, 1, false],
      ["LoRA on a frozen tied base", true, true, 1, true],
    ] as const) {
      it(`chunks of 3 rows = one chunk: ${label}`, () => {
        const B = 3, T = 7, N = B * T;
        const base = TransformerLM.create(cfg(tied), new Rng(1), { engine });
        const rng = new Rng(2);
        // Bigger weights than the 0.02 init so log-probs and gradients are far from uniform.
        for (const p of base.params) for (let i = 0; i < p.data.length; i++) p.data[i] += rng.normal() * 0.3;
        const make = (headChunkRows?: number) => {
          const m = TransformerLM.fromParams(cfg(tied), base.namedTensors(), { engine, headChunkRows, frozenBase: lora });
          if (lora) {
            m.addLora({ r: 2, alpha: 4, dropout: 0, targets: LORA_TARGETS, rng: new Rng(3) });
            const r = new Rng(4);
            for (const p of m.trainableParams()) if (p.name.includes("lora_B")) for (let i = 0; i < p.data.length; i++) p.data[i] = r.normal() * 0.3;
          }
          return m;
        };
        const one = make();
        const chunked = make(3);
        const { tokens, targets } = batch(new Rng(5), B, T);
        const dLp = new Float32Array(N).map(() => rng.normal());
        const dEnt = new Float32Array(N).map(() => rng.normal());
        const dVal = new Float32Array(N).map(() => rng.normal());
        const outs = [one, chunked].map((m) => {
          m.zeroGrad();
          const o = m.score(tokens, targets, B, T, { needValues: true, needEntropy, temperature });
          const copy = { logprobs: Float32Array.from(o.logprobs), entropy: o.entropy ? Float32Array.from(o.entropy) : null, values: Float32Array.from(o.values!) };
          m.backward(dLp, dVal, dEnt);
          return copy;
        });
        expect(maxDiff(outs[0].logprobs, outs[1].logprobs)).toBeLessThan(1e-5);
        expect(maxDiff(outs[0].values, outs[1].values)).toBeLessThan(1e-5);
        if (needEntropy) expect(maxDiff(outs[0].entropy!, outs[1].entropy!)).toBeLessThan(1e-5);
        // The test is not vacuous: ignored targets give 0, others real log-probs.
        expect(outs[1].logprobs.filter((x, i) => targets[i] >= 0 && x < -0.1).length).toBeGreaterThan(N / 3);
        const p1 = one.trainableParams();
        const p2 = chunked.trainableParams();
        expect(p2.map((p) => p.name)).toEqual(p1.map((p) => p.name));
        let checked = 0;
        for (let k = 0; k < p1.length; k++) {
          const scale = Math.max(1, ...Array.from(p1[k].grad, Math.abs));
          expect(maxDiff(p1[k].grad, p2[k].grad) / scale, `gradient of ${p1[k].name}`).toBeLessThan(1e-5);
          if (p1[k].grad.some((g) => g !== 0)) checked++;
        }
        expect(checked).toBeGreaterThan(p1.length / 2);
        if (!lora) {
          const head = tied ? "model.embed_tokens.weight" : "lm_head.weight";
          expect(chunked.param(head)!.grad.some((g) => g !== 0)).toBe(true);
        }
      });
    }

    for (const [label, modelType, lora] of [
      ["qwen3 (q/k norm), full weights", "qwen3", false],
      ["qwen2, LoRA with dropout (masks replayed)", "qwen2", true],
    ] as const) {
      it(`recompute = kept activations: ${label}`, () => {
        const B = 2, T = 6, N = B * T;
        const c: ModelConfig = { ...cfg(false), model_type: modelType, ...(modelType === "qwen3" ? { head_dim: 6 } : {}) };
        const base = TransformerLM.create(c, new Rng(7), { engine });
        const rng = new Rng(8);
        for (const p of base.params) for (let i = 0; i < p.data.length; i++) p.data[i] += rng.normal() * 0.3;
        const make = (recompute: boolean) => {
          const m = TransformerLM.fromParams(c, base.namedTensors(), { engine, recompute, headChunkRows: recompute ? 4 : undefined });
          if (lora) {
            m.addLora({ r: 2, alpha: 4, dropout: 0.3, targets: LORA_TARGETS, rng: new Rng(3) });
            const r = new Rng(4);
            for (const p of m.trainableParams()) if (p.name.includes("lora_B")) for (let i = 0; i < p.data.length; i++) p.data[i] = r.normal() * 0.3;
            m.loraTrain = true;
          }
          return m;
        };
        const { tokens, targets } = batch(new Rng(9), B, T);
        const dLp = new Float32Array(N).map(() => rng.normal());
        const dVal = new Float32Array(N).map(() => rng.normal());
        const res = [make(false), make(true)].map((m) => {
          m.zeroGrad();
          const o = m.score(tokens, targets, B, T, { needValues: true });
          const lp = Float32Array.from(o.logprobs);
          const vals = Float32Array.from(o.values!);
          m.backward(dLp, dVal);
          return { lp, vals, params: m.trainableParams() };
        });
        expect(maxDiff(res[0].lp, res[1].lp)).toBeLessThan(1e-5);
        expect(maxDiff(res[0].vals, res[1].vals)).toBeLessThan(1e-5);
        let nonzero = 0;
        for (let k = 0; k < res[0].params.length; k++) {
          const g0 = res[0].params[k].grad, g1 = res[1].params[k].grad;
          const scale = Math.max(1, ...Array.from(g0, Math.abs));
          expect(maxDiff(g0, g1) / scale, `gradient of ${res[0].params[k].name}`).toBeLessThan(1e-5);
          if (g0.some((g) => g !== 0)) nonzero++;
        }
        expect(nonzero).toBeGreaterThan(res[0].params.length / 2);
      });
    }

    it("frozenBase: no matrix gradient buffers from the start; only the value head (then adapters) train", () => {
      const m = TransformerLM.create(cfg(true), new Rng(1), { engine, frozenBase: true });
      for (const p of m.params) {
        if (p.name.startsWith("value_head.")) expect(p.frozen, p.name).toBeFalsy();
        else expect(p.frozen, p.name).toBe(true);
        if (p.shape.length === 2 && !p.name.startsWith("value_head.")) expect(p.grad.length, p.name).toBe(0);
      }
      expect(m.trainableParams().map((p) => p.name)).toEqual(["value_head.weight", "value_head.bias"]);
      m.addLora({ r: 2, alpha: 4, dropout: 0, targets: ["q_proj"], rng: new Rng(2) });
      expect(m.trainableParams().length).toBe(2 * 2 + 2);
      // A step runs: score + backward fill the adapter gradients only.
      const { tokens, targets } = batch(new Rng(3), 2, 5);
      m.zeroGrad();
      m.score(tokens, targets, 2, 5);
      m.backward(new Float32Array(10).fill(1));
      expect(m.param("model.layers.0.self_attn.q_proj.lora_A.weight")!.grad.length).toBe(2 * 16);
    });

    it("a critic sharing the policy's arena: same values, needLogprobs: false skips the head, stale backward refused", () => {
      const policy = TransformerLM.create(cfg(true), new Rng(1), { engine });
      const own = TransformerLM.fromParams(cfg(true), policy.namedTensors(), { engine });
      const critic = TransformerLM.fromParams(cfg(true), policy.namedTensors(), { engine, shareArenaWith: policy });
      const { tokens, targets } = batch(new Rng(4), 2, 6);
      const want = Float32Array.from(own.score(tokens, targets, 2, 6, { needValues: true }).values!);
      const lpPolicy = Float32Array.from(policy.score(tokens, targets, 2, 6).logprobs);
      const co = critic.score(tokens, targets, 2, 6, { needValues: true, needLogprobs: false });
      expect(maxDiff(co.values!, want)).toBe(0);
      expect(Array.from(co.logprobs).every((x) => x === 0)).toBe(true);
      expect(() => policy.backward(lpPolicy)).toThrow(/another model sharing/);
      critic.zeroGrad();
      critic.backward(null, new Float32Array(12).fill(1));
      expect(critic.param("value_head.weight")!.grad.some((g) => g !== 0)).toBe(true);
      // The policy scores again and may then run its backward.
      policy.score(tokens, targets, 2, 6);
      expect(() => policy.backward(new Float32Array(12).fill(1))).not.toThrow();
    });
  });
}
