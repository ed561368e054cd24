/**
 * LoRA in the engine: adapter gradients (float64 finite differences, with and without dropout), the base
 * frozen (no weight gradients, released grad buffers, only adapters + value head trainable), B = 0 at init
 * (adapted = base), adapters off = the base (the KL reference), and merged weights reproduce the adapted
 * model's log-probs, on every compute path.
 */
import { describe, expect, it } from "vitest";
import { TransformerLM, llamaConfig, loadNative, type ModelConfig } from "../src/engine/index.ts";
import { LORA_TARGETS } from "../src/engine/model.ts";
import { Rng } from "../src/util/rng.ts";

const qwen2 = (): ModelConfig => ({
  ...llamaConfig({ vocabSize: 13, hiddenSize: 8, intermediateSize: 12, numLayers: 2, numHeads: 2, numKvHeads: 1, maxPositions: 16, valueHead: true }),
  model_type: "qwen2",
});

function batch(rng: Rng, V: number, B: number, T: number) {
  const tokens = new Int32Array(B * T).map(() => rng.int(V));
  const targets = new Int32Array(B * T).map(() => (rng.random() < 0.2 ? -1 : rng.int(V)));
  return { tokens, targets };
}

function loraGradCheck(dropout: number, maskSeed = 0) {
  const rng = new Rng(3);
  const model = TransformerLM.create(qwen2(), rng, { dtype: "float64" });
  for (const p of model.params) for (let i = 0; i < p.data.length; i++) p.data[i] += rng.normal() * 0.3;
  model.addLora({ r: 2, alpha: 4, dropout, targets: LORA_TARGETS, rng: new Rng(4) });
  // Non-zero B so every adapter carries signal.
  for (const p of model.trainableParams()) if (p.name.includes("lora_B")) for (let i = 0; i < p.data.length; i++) p.data[i] = rng.normal() * 0.3;
  model.loraTrain = true;
  model.loraDropSeed = 7;
  model.loraMaskSeed = maskSeed;
  const B = 2, T = 5;
  const { tokens, targets } = batch(rng, 13, B, T);
  const a = new Float64Array(B * T).map(() => rng.normal()) as unknown as Float32Array;
  const e = new Float64Array(B * T).map(() => rng.normal()) as unknown as Float32Array;
  const loss = () => {
    const o = model.score(tokens, targets, B, T, { needValues: true });
    let s = 0;
    for (let i = 0; i < B * T; i++) s += a[i] * o.logprobs[i] + e[i] * o.values![i];
    return s;
  };
  model.zeroGrad();
  loss();
  model.backward(a, e);
  const trainable = model.trainableParams();
  expect(trainable.every((p) => p.name.includes(".lora_") || p.name.startsWith("value_head."))).toBe(true);
  expect(trainable.length).toBe(2 * 7 * 2 + 2);
  const h = 1e-6;
  for (const p of trainable) {
    let worst = 0;
    const stride = Math.max(1, Math.floor(p.data.length / 12));
    for (let i = 0; i < p.data.length; i += stride) {
      const x0 = p.data[i];
      p.data[i] = x0 + h;
      const lp = loss();
      p.data[i] = x0 - h;
      const lm = loss();
      p.data[i] = x0;
      const fd = (lp - lm) / (2 * h);
      worst = Math.max(worst, Math.abs(fd - p.grad[i]) / Math.max(1, Math.abs(fd)));
    }
    expect(worst, `gradient of ${p.name}`).toBeLessThan(1e-6);
  }
  // Frozen matrices computed no gradient and hold no buffer.
  expect(model.param("model.layers.0.self_attn.q_proj.weight")!.grad.length).toBe(0);
  expect(model.param("model.embed_tokens.weight")!.frozen).toBe(true);
}

describe("LoRA gradients (float64 finite differences)", () => {
  it("all attention + MLP projections, no dropout", () => loraGradCheck(0));
  it("with adapter dropout (mask replayed by backward)", () => loraGradCheck(0.3));
  it("with adapter dropout under a run's mask seed (backward replays that seed's mask)", () => loraGradCheck(0.3, 5));
  it("the run's mask seed picks the dropout masks: same seed same masks, another seed other masks", () => {
    const logprobs = (maskSeed: number) => {
      const model = TransformerLM.create(qwen2(), new Rng(3));
      model.addLora({ r: 2, alpha: 4, dropout: 0.5, targets: LORA_TARGETS, rng: new Rng(4) });
      for (const p of model.trainableParams()) if (p.name.includes("lora_B")) for (let i = 0; i < p.data.length; i++) p.data[i] = 0.3 * Math.sin(i + 1);
      model.loraTrain = true;
      model.loraMaskSeed = maskSeed;
      const { tokens, targets } = batch(new Rng(9), 13, 2, 5);
      return Array.from(model.score(tokens, targets, 2, 5).logprobs);
    };
    expect(logprobs(1)).toEqual(logprobs(1));
    expect(logprobs(2)).not.toEqual(logprobs(1));
    expect(logprobs(0)).not.toEqual(logprobs(1));
  });
});

const engines: ("ts" | "native")[] = ["ts"];
if (loadNative().kernels) engines.push("native");
for (const engine of engines) {
  describe(`LoRA on the ${engine} path`, () => {
    it("B = 0 at init leaves the base; adapters off = base; merged weights = adapted model", () => {
      const cfg = { ...qwen2(), mpo_value_head: false };
      const base = TransformerLM.create(cfg, new Rng(11), { engine });
      const { tokens, targets } = batch(new Rng(12), 13, 2, 6);
      const lp0 = Float32Array.from(base.score(tokens, targets, 2, 6).logprobs);
      const m = TransformerLM.fromParams(cfg, base.namedTensors(), { engine });
      m.addLora({ r: 4, alpha: 8, dropout: 0.05, targets: ["q_proj", "v_proj", "down_proj"], rng: new Rng(1) });
      expect(Array.from(m.score(tokens, targets, 2, 6).logprobs)).toEqual(Array.from(lp0));
      const rng = new Rng(5);
      for (const p of m.trainableParams()) for (let i = 0; i < p.data.length; i++) p.data[i] = rng.normal() * 0.2;
      const adapted = Float32Array.from(m.score(tokens, targets, 2, 6).logprobs);
      expect(Math.max(...adapted.map((x, i) => Math.abs(x - lp0[i])))).toBeGreaterThan(1e-3);
      m.loraEnabled = false;
      const off = m.score(tokens, targets, 2, 6).logprobs;
      off.forEach((x, i) => expect(x).toBeCloseTo(lp0[i], 5));
      m.loraEnabled = true;
      const merged = TransformerLM.fromParams(cfg, m.mergedTensors(), { engine });
      const mlp = merged.score(tokens, targets, 2, 6).logprobs;
      mlp.forEach((x, i) => expect(Math.abs(x - adapted[i])).toBeLessThan(1e-5));
      // Sampling uses the adapters too: greedy from the adapted model = greedy from the merged one.
      const g1 = m.generate([[1, 2, 3]], { maxNewTokens: 5, temperature: 0, stopTokens: [] });
      const g2 = merged.generate([[1, 2, 3]], { maxNewTokens: 5, temperature: 0, stopTokens: [] });
      expect(g1.tokens).toEqual(g2.tokens);
    });
  });
}
