// TransformerLM end to end: full-model gradient check (float64) for logprobs/entropy/values, KV-cached
// generation vs teacher-forced scoring, sampling controls, checkpoint tensors round trip, optimizer + SFT loop.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  AdamW,
  GradAccumulator,
  TransformerLM,
  clipGradNorm,
  exampleBatches,
  llamaConfig,
  lrSchedule,
  sftTrain,
  streamBatches,
  type ModelConfig,
} from "../src/engine/index.ts";
import { Rng } from "../src/util/rng.ts";

const tiny = (over: Partial<Parameters<typeof llamaConfig>[0]> = {}): ModelConfig =>
  llamaConfig({
    vocabSize: 11,
    hiddenSize: 8,
    intermediateSize: 12,
    numLayers: 2,
    numHeads: 2,
    numKvHeads: 1,
    maxPositions: 16,
    valueHead: true,
    ...over,
  });

function randomBatch(rng: Rng, V: number, B: number, T: number) {
  const tokens = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  for (let i = 0; i < B * T; i++) {
    tokens[i] = rng.int(V);
    targets[i] = rng.random() < 0.2 ? -1 : rng.int(V);
  }
  return { tokens, targets };
}

/** Full-model check: L = Σ a·logprob + Σ c·entropy + Σ e·value; analytic grads vs central differences. */
function modelGradCheck(config: ModelConfig, temperature = 1) {
  const rng = new Rng(5);
  const model = TransformerLM.create(config, rng, { dtype: "float64" });
  // Larger weights than the 0.02 init so every path carries signal.
  for (const p of model.params) for (let i = 0; i < p.data.length; i++) p.data[i] += rng.normal() * 0.3;
  const B = 2, T = 5;
  const { tokens, targets } = randomBatch(rng, model.dims.V, B, T);
  const a = new Float64Array(B * T).map(() => rng.normal()) as unknown as Float32Array;
  const c = new Float64Array(B * T).map(() => rng.normal()) as unknown as Float32Array;
  const e = new Float64Array(B * T).map(() => rng.normal()) as unknown as Float32Array;
  const hasV = model.dims.valueHead;
  const loss = () => {
    const o = model.score(tokens, targets, B, T, { needEntropy: true, needValues: hasV, temperature });
    let s = 0;
    for (let i = 0; i < B * T; i++) s += a[i] * o.logprobs[i] + c[i] * o.entropy![i] + (hasV ? e[i] * o.values![i] : 0);
    return s;
  };
  model.zeroGrad();
  loss();
  model.backward(a, hasV ? e : null, c);
  const h = 1e-6;
  let checked = 0;
  for (const p of model.params) {
    let worst = 0;
    // Every entry of small tensors, a spread sample of large ones.
    const stride = Math.max(1, Math.floor(p.data.length / 40));
    for (let i = 0; i < p.data.length; i += stride) {
      const x0 = p.data[i];
      p.data[i] = x0 + h;
      const lp = loss();
      p.data[i] = x0 - h;
      const lm = loss();
      p.data[i] = x0;
      const fd = (lp - lm) / (2 * h);
      worst = Math.max(worst, Math.abs(fd - p.grad[i]) / Math.max(1, Math.abs(fd)));
      checked++;
    }
    expect(worst, `gradient of ${p.name}`).toBeLessThan(1e-6);
  }
  expect(checked).toBeGreaterThan(100);
}

describe("TransformerLM gradients (float64 finite differences)", () => {
  it("Llama default: RMSNorm, RoPE, GQA, SwiGLU, untied, value head", () => modelGradCheck(tiny()));
  it("tied embeddings, LayerNorm, plain GELU MLP, scored at temperature 0.7", () =>
    modelGradCheck(tiny({ tieEmbeddings: true, norm: "layernorm", mlp: "plain", hiddenAct: "gelu", numKvHeads: 2 }), 0.7));
  it("GeGLU (tanh GELU), no value head", () => modelGradCheck(tiny({ hiddenAct: "gelu_pytorch_tanh", valueHead: false })));
  it("qwen2: q/k/v biases", () => modelGradCheck({ ...tiny(), model_type: "qwen2", architectures: ["Qwen2ForCausalLM"] }));
  it("qwen3: per-head q/k RMSNorm, head_dim ≠ hidden/heads", () =>
    modelGradCheck({ ...tiny(), model_type: "qwen3", architectures: ["Qwen3ForCausalLM"], head_dim: 6 }));
  it("llama attention_bias (q/k/v/o biases) with llama3 rope scaling", () =>
    modelGradCheck({
      ...tiny(),
      attention_bias: true,
      rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8 },
    }));
});

describe("TransformerLM backward options", () => {
  it("dEntropy works even when score() did not compute entropy (recomputed from kept log-probs)", () => {
    const cfg = tiny();
    const m = TransformerLM.create(cfg, new Rng(7), { dtype: "float64" });
    const rng = new Rng(8);
    const { tokens, targets } = randomBatch(rng, 11, 2, 4);
    const de = new Float64Array(8).map(() => rng.normal()) as unknown as Float32Array;
    m.zeroGrad();
    m.score(tokens, targets, 2, 4, { needEntropy: true });
    m.backward(null, null, de);
    const want = m.params.map((p) => p.grad.slice());
    m.zeroGrad();
    m.score(tokens, targets, 2, 4);
    m.backward(null, null, de);
    m.params.forEach((p, k) => {
      for (let i = 0; i < p.grad.length; i++) expect(p.grad[i]).toBeCloseTo(want[k][i], 12);
    });
    expect(m.params.some((p) => p.grad.some((g) => g !== 0))).toBe(true);
    expect(() => TransformerLM.create(tiny({ valueHead: false }), new Rng(1)).score(tokens, targets, 2, 4, { needValues: true })).toThrow(/value head/);
  });
});

describe("TransformerLM scoring and generation", () => {
  const config = tiny({ vocabSize: 23, hiddenSize: 16, intermediateSize: 24, numHeads: 4, numKvHeads: 2, maxPositions: 32 });

  function trainedishModel() {
    const rng = new Rng(9);
    const m = TransformerLM.create(config, rng, { engine: "ts" });
    for (const p of m.params) for (let i = 0; i < p.data.length; i++) p.data[i] += rng.normal() * 0.2;
    return m;
  }

  it("padding on the right does not change earlier positions (causal)", () => {
    const m = trainedishModel();
    const a = Int32Array.from([1, 5, 7, 3, 0, 0]);
    const b = Int32Array.from([1, 5, 7, 3, 9, 4]);
    const t = Int32Array.from([5, 7, 3, 2, -1, -1]);
    const la = m.score(a, t, 1, 6).logprobs.slice();
    const lb = m.score(b, t, 1, 6).logprobs.slice();
    for (let i = 0; i < 4; i++) expect(la[i]).toBeCloseTo(lb[i], 5);
    expect(la[4]).toBe(0);
  });

  it("greedy KV-cached generation: batched = one by one, and logprobs equal teacher-forced scores", () => {
    const m = trainedishModel();
    const prompts = [[1, 4, 9], [1, 2], [1, 7, 7, 3, 12]];
    const batched = m.generate(prompts, { maxNewTokens: 6, temperature: 0, stopTokens: [] });
    for (let b = 0; b < prompts.length; b++) {
      const single = m.generate([prompts[b]], { maxNewTokens: 6, temperature: 0, stopTokens: [] });
      expect(single.tokens[0]).toEqual(batched.tokens[b]);
      const seq = [...prompts[b], ...batched.tokens[b]];
      const T = seq.length - 1;
      const s = m.score(Int32Array.from(seq.slice(0, T)), Int32Array.from(seq.slice(1)), 1, T);
      for (let j = 0; j < 6; j++) expect(batched.logprobs[b][j]).toBeCloseTo(s.logprobs[prompts[b].length - 1 + j], 4);
      // Greedy picks the argmax: its logprob is the largest of the row.
      expect(batched.tokens[b]).toHaveLength(6);
      expect(batched.finished[b]).toBe(false);
    }
  });

  it("sampling is reproducible from the seed; top-k 1 and tiny top-p are greedy; stop tokens end a row", () => {
    const m = trainedishModel();
    const prompts = [[1, 4], [1, 6, 2]];
    const g1 = m.generate(prompts, { maxNewTokens: 8, temperature: 1.3, rng: new Rng(4), stopTokens: [] });
    const g2 = m.generate(prompts, { maxNewTokens: 8, temperature: 1.3, rng: new Rng(4), stopTokens: [] });
    expect(g1).toEqual(g2);
    const g3 = m.generate(prompts, { maxNewTokens: 8, temperature: 1.3, rng: new Rng(5), stopTokens: [] });
    expect(g3.tokens).not.toEqual(g1.tokens);
    const greedy = m.generate(prompts, { maxNewTokens: 8, temperature: 0, stopTokens: [] });
    expect(m.generate(prompts, { maxNewTokens: 8, temperature: 1, topK: 1, rng: new Rng(1), stopTokens: [] }).tokens).toEqual(greedy.tokens);
    expect(m.generate(prompts, { maxNewTokens: 8, temperature: 1, topP: 1e-6, rng: new Rng(1), stopTokens: [] }).tokens).toEqual(greedy.tokens);
    // Top-k = 3: every sampled token is among the 3 most likely at its step.
    const k3 = m.generate([[1, 4]], { maxNewTokens: 8, temperature: 2, topK: 3, rng: new Rng(8), stopTokens: [] });
    const seq = [1, 4, ...k3.tokens[0]];
    const T = seq.length - 1;
    const inputs = Int32Array.from(seq.slice(0, T));
    for (let j = 0; j < 8; j++) {
      const allLp: number[] = [];
      for (let v = 0; v < config.vocab_size; v++) {
        const tg = new Int32Array(T).fill(-1);
        tg[1 + j] = v;
        allLp.push(m.score(inputs, tg, 1, T).logprobs[1 + j]);
      }
      const rank = allLp.filter((x) => x > allLp[k3.tokens[0][j]]).length;
      expect(rank).toBeLessThan(3);
    }
    // Stop at the first greedy token: output is that single token, finished.
    const stopTok = greedy.tokens[0][2];
    const st = m.generate([prompts[0]], { maxNewTokens: 8, temperature: 0, stopTokens: [stopTok] });
    expect(st.tokens[0]).toEqual(greedy.tokens[0].slice(0, greedy.tokens[0].indexOf(stopTok) + 1));
    expect(st.finished[0]).toBe(true);
  });

  it("rejects bad inputs with clear errors", () => {
    const m = trainedishModel();
    expect(() => m.generate([[]], { maxNewTokens: 2 })).toThrow(/prompt 0 is empty/);
    expect(() => m.generate([[1, 99]], { maxNewTokens: 2 })).toThrow(/outside vocab/);
    expect(() => m.score(Int32Array.from([1, 2]), Int32Array.from([1]), 1, 2)).toThrow(/B\*T=2/);
    expect(() => m.score(Int32Array.from([1, 50]), Int32Array.from([1, 2]), 1, 2)).toThrow(/outside vocab/);
    expect(() => TransformerLM.create({ ...config, num_key_value_heads: 3 }, new Rng(1))).toThrow(/num_key_value_heads/);
    expect(() => TransformerLM.create({ ...config, hidden_act: "relu" }, new Rng(1))).toThrow(/hidden_act/);
  });

  it("namedTensors → fromParams reproduces the model; missing/mis-shaped tensors are named", () => {
    const m = trainedishModel();
    const t = m.namedTensors();
    expect([...t.keys()]).toContain("model.layers.1.mlp.gate_proj.weight");
    expect(t.get("model.layers.0.self_attn.k_proj.weight")!.shape).toEqual([16 / 4 * 2, 16]);
    const m2 = TransformerLM.fromParams(config, t, { engine: "ts" });
    const tok = Int32Array.from([1, 3, 5, 7]), tg = Int32Array.from([3, 5, 7, 9]);
    expect(Array.from(m2.score(tok, tg, 1, 4, { needValues: true }).logprobs)).toEqual(Array.from(m.score(tok, tg, 1, 4).logprobs));
    const missing = new Map(t);
    missing.delete("model.norm.weight");
    expect(() => TransformerLM.fromParams(config, missing)).toThrow(/missing tensor 'model.norm.weight'/);
    const bad = new Map(t);
    bad.set("lm_head.weight", { shape: [5, 16], data: new Float32Array(80) });
    expect(() => TransformerLM.fromParams(config, bad)).toThrow(/'lm_head.weight' has shape \[5, 16\]/);
    const tiedCfg = { ...config, tie_word_embeddings: true };
    const tied = TransformerLM.create(tiedCfg, new Rng(2));
    expect(tied.namedTensors().has("lm_head.weight")).toBe(false);
  });
});

describe("optimizer utilities", () => {
  it("AdamW matches the PyTorch update formula and resumes exactly from its state", () => {
    const p = { name: "w", shape: [2, 2], data: Float32Array.from([1, -2, 0.5, 3]), grad: Float32Array.from([0.1, -0.2, 0.3, 0]) };
    const opt = new AdamW([p], { lr: 0.1, weightDecay: 0.1 });
    opt.update();
    // Step 1: m̂ = g, v̂ = g², update = lr·g/(|g|+eps) after decoupled decay.
    const exp = [1, -2, 0.5, 3].map((x, i) => {
      const g = [0.1, -0.2, 0.3, 0][i];
      return x * (1 - 0.1 * 0.1) - (0.1 * g) / (Math.abs(g) + 1e-8);
    });
    for (let i = 0; i < 4; i++) expect(p.data[i]).toBeCloseTo(exp[i], 5);
    const state = opt.stateDict();
    const snapshot = { step: state.step, lr: state.lr, tensors: new Map([...state.tensors].map(([k, v]) => [k, { shape: v.shape, data: v.data.slice() }])) };
    const q = { ...p, data: p.data.slice(), grad: p.grad.slice() };
    opt.update();
    const opt2 = new AdamW([q], { lr: 0.1, weightDecay: 0.1 });
    opt2.loadStateDict(snapshot);
    opt2.update();
    expect(Array.from(q.data)).toEqual(Array.from(p.data));
    expect(() => opt2.loadStateDict({ step: 1, tensors: new Map() })).toThrow(/missing tensor 'exp_avg.w'/);
  });

  it("clipGradNorm returns the pre-clip norm and rescales; schedules warm up and decay", () => {
    const p = { name: "a", shape: [2], data: new Float32Array(2), grad: Float32Array.from([3, 4]) };
    expect(clipGradNorm([p], 1)).toBeCloseTo(5, 6);
    expect(Math.hypot(p.grad[0], p.grad[1])).toBeCloseTo(1, 5);
    expect(clipGradNorm([p], 10)).toBeCloseTo(1, 5);
    const s = lrSchedule({ lr: 1, warmupSteps: 4, totalSteps: 14, decay: "cosine", minLrRatio: 0.1 });
    expect(s(0)).toBeCloseTo(0.25);
    expect(s(3)).toBeCloseTo(1);
    expect(s(4)).toBeCloseTo(1);
    expect(s(9)).toBeCloseTo(0.55);
    expect(s(14)).toBeCloseTo(0.1);
    const lin = lrSchedule({ lr: 2, totalSteps: 10, decay: "linear", minLrRatio: 0 });
    expect(lin(5)).toBeCloseTo(1);
    const acc = new GradAccumulator(3);
    expect([acc.tick(), acc.tick(), acc.tick(), acc.tick()]).toEqual([false, false, true, false]);
    expect(acc.scale).toBeCloseTo(1 / 3);
  });

  it("gradient accumulation over micro-batches equals one big batch", () => {
    const cfg = tiny({ valueHead: false });
    const m = TransformerLM.create(cfg, new Rng(3), { dtype: "float64" });
    const rng = new Rng(4);
    const { tokens, targets } = randomBatch(rng, 11, 4, 5);
    const ones = (n: number, s: number) => new Float64Array(n).fill(s) as unknown as Float32Array;
    m.zeroGrad();
    m.score(tokens, targets, 4, 5);
    m.backward(ones(20, 1 / 20));
    const big = m.params.map((p) => p.grad.slice());
    m.zeroGrad();
    for (let h = 0; h < 2; h++) {
      m.score(tokens.subarray(h * 10, h * 10 + 10), targets.subarray(h * 10, h * 10 + 10), 2, 5);
      m.backward(ones(10, 1 / 20));
    }
    m.params.forEach((p, k) => {
      for (let i = 0; i < p.grad.length; i++) expect(p.grad[i]).toBeCloseTo(big[k][i], 12);
    });
  });
});

describe("sftTrain", () => {
  it("learns a repeating token stream and writes the loss curve", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mpo-engine-"));
    try {
      const cfg = llamaConfig({ vocabSize: 16, hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 4, maxPositions: 32 });
      const model = TransformerLM.create(cfg, new Rng(1));
      const stream = Int32Array.from({ length: 400 }, (_, i) => [3, 1, 4, 1, 5, 9, 2, 6][i % 8]);
      const curve = join(dir, "loss.jsonl");
      const res = await sftTrain(model, streamBatches(stream, 4, 16, new Rng(2)), {
        steps: 60, lr: 1e-2, warmupSteps: 5, progress: false, lossCurvePath: curve, gradAccum: 2,
      });
      expect(res.losses[0]).toBeGreaterThan(2);
      expect(res.losses.at(-1)!).toBeLessThan(0.5);
      const lines = readFileSync(curve, "utf8").trim().split("\n").map((l) => JSON.parse(l));
      expect(lines).toHaveLength(60);
      expect(lines[59]).toMatchObject({ step: 60 });
      expect(res.optimizer.step).toBe(60);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("example batches pad on the right and only train on masked-in targets", () => {
    const next = exampleBatches([{ tokens: [1, 2, 3, 4], lossMask: [0, 0, 1, 1] }], 1, 6, new Rng(1), 0);
    const b = next();
    expect(Array.from(b.tokens)).toEqual([1, 2, 3, 4, 0, 0]);
    expect(Array.from(b.targets)).toEqual([-1, 3, 4, -1, -1, -1]);
  });
});
