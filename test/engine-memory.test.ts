// Memory stays flat during training: activations, gradients and optimizer state live in buffers that are
// allocated once per shape and reused, so RSS after 1,000 steps is within 5% of RSS after warm-up.
import v8 from "node:v8";
import vm from "node:vm";
import { describe, expect, it } from "vitest";
import { AdamW, TransformerLM, clipGradNorm, llamaConfig, nllGradient } from "../src/engine/index.ts";
import { Rng } from "../src/util/rng.ts";

describe("engine memory", () => {
  // CPU-bound (~30 s alone): beside the other test files on 2 cores it can take minutes, so the limit is generous.
  it("RSS is flat (within 5%) across 1,000 training steps (+ periodic generation)", { timeout: 300_000 }, () => {
    // The sandbox policy's size (~1M parameters): a realistic training process, whose RSS is not dominated by
    // the test runner's own baseline (with a toy model, runner noise alone is a few percent).
    const V = 1024;
    const cfg = llamaConfig({ vocabSize: V, hiddenSize: 128, intermediateSize: 352, numLayers: 4, numHeads: 4, numKvHeads: 4, maxPositions: 64, valueHead: true });
    const model = TransformerLM.create(cfg, new Rng(1));
    const opt = new AdamW(model.params, { lr: 1e-3 });
    const rng = new Rng(2);
    const B = 2, T = 16;
    const tokens = new Int32Array(B * T), targets = new Int32Array(B * T), dlp = new Float32Array(B * T);
    const dv = new Float32Array(B * T);
    const step = (s: number) => {
      for (let i = 0; i < B * T; i++) tokens[i] = rng.int(V);
      for (let i = 0; i < B * T; i++) targets[i] = i % T === T - 1 ? -1 : tokens[i + 1];
      const out = model.score(tokens, targets, B, T, { needValues: true, needEntropy: true });
      nllGradient(out.logprobs, targets, dlp);
      for (let i = 0; i < B * T; i++) dv[i] = (out.values![i] - 0.5) / (B * T);
      model.backward(dlp, dv);
      clipGradNorm(model.params, 1);
      opt.update();
      model.zeroGrad();
      if (s % 100 === 0) model.generate([[1, 2, 3], [4]], { maxNewTokens: 8, temperature: 1, rng, stopTokens: [] });
    };
    // A full GC before each reading so the JS heap's own sizing (garbage not yet collected) is not
    // mistaken for engine growth; what remains is what the engine holds.
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as () => void;
    for (let s = 0; s < 300; s++) step(s);
    gc();
    const before = process.memoryUsage().rss;
    const arenaBefore = model.arenaBytes();
    for (let s = 0; s < 1000; s++) step(s);
    gc();
    const after = process.memoryUsage().rss;
    expect(model.arenaBytes()).toBe(arenaBefore);
    expect(after / before, `RSS ${(before / 2 ** 20).toFixed(1)} MiB → ${(after / 2 ** 20).toFixed(1)} MiB`).toBeLessThan(1.05);
  });
});
