/**
 * Quick engine microbenchmarks (not tests): matmul GFLOP/s per backend, training tokens/s (score + backward +
 * AdamW) and KV-cached generation tokens/s on the two configs. The PyTorch comparison lives in
 * bench/engine.ts (H5). Usage: npx tsx bench/engine-micro.ts [ts|native|both] [small|5m|all] [steps]
 */
import { AdamW, TransformerLM, clipGradNorm, llamaConfig, selectKernels, type ModelConfig } from "../src/engine/index.ts";
import { Rng } from "../src/util/rng.ts";

const which = process.argv[2] ?? "both";
const size = process.argv[3] ?? "all";
const steps = Number(process.argv[4] ?? 5);
const engines = (which === "both" ? ["native", "ts"] : [which]) as ("ts" | "native")[];

function matmulBench(engine: "ts" | "native", n: number): number {
  const k = selectKernels(engine);
  const a = new Float32Array(n * n).map(() => Math.random());
  const b = new Float32Array(n * n).map(() => Math.random());
  const c = new Float32Array(n * n);
  k.matmulXWt(c, a, b, n, n, n, false);
  const reps = engine === "ts" ? 2 : 20;
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) k.matmulXWt(c, a, b, n, n, n, false);
  const s = (performance.now() - t0) / 1000;
  return (2 * n * n * n * reps) / s / 1e9;
}

const configs: Record<string, { cfg: ModelConfig; B: number; T: number }> = {
  small: {
    cfg: llamaConfig({ vocabSize: 2048, hiddenSize: 128, intermediateSize: 344, numLayers: 4, numHeads: 4, maxPositions: 256, tieEmbeddings: true }),
    B: 16, T: 64,
  },
  "5m": {
    cfg: llamaConfig({ vocabSize: 4096, hiddenSize: 256, intermediateSize: 688, numLayers: 4, numHeads: 4, maxPositions: 256, tieEmbeddings: false }),
    B: 16, T: 128,
  },
};

for (const e of engines) console.log(`matmul 512³ ${e}: ${matmulBench(e, 512).toFixed(2)} GFLOP/s`);

for (const [name, { cfg, B, T }] of Object.entries(configs)) {
  if (size !== "all" && size !== name) continue;
  for (const engine of engines) {
    const model = TransformerLM.create(cfg, new Rng(1), { engine });
    const opt = new AdamW(model.params, { lr: 1e-3, engine });
    const rng = new Rng(2);
    const tokens = Int32Array.from({ length: B * T }, () => rng.int(cfg.vocab_size));
    const targets = Int32Array.from({ length: B * T }, () => rng.int(cfg.vocab_size));
    const dlp = new Float32Array(B * T).fill(-1 / (B * T));
    const phases = { score: 0, backward: 0, opt: 0 };
    const n = engine === "ts" ? Math.min(steps, 2) : steps;
    for (let s = -1; s < n; s++) {
      const t0 = performance.now();
      model.score(tokens, targets, B, T);
      const t1 = performance.now();
      model.backward(dlp);
      const t2 = performance.now();
      clipGradNorm(model.params, 1);
      opt.update();
      model.zeroGrad();
      const t3 = performance.now();
      if (s >= 0) { phases.score += t1 - t0; phases.backward += t2 - t1; phases.opt += t3 - t2; }
    }
    const total = (phases.score + phases.backward + phases.opt) / 1000;
    console.log(
      `${name} (${(model.numParams() / 1e6).toFixed(2)}M params, B${B} T${T}) ${engine} [${model.kernels.detail}]: ` +
        `train ${((B * T * n) / total).toFixed(0)} tok/s (per step: score ${(phases.score / n).toFixed(0)} ms, ` +
        `backward ${(phases.backward / n).toFixed(0)} ms, clip+adamw ${(phases.opt / n).toFixed(0)} ms)`,
    );
    const prompts = Array.from({ length: B }, () => [1, 2, 3, 4]);
    const newTok = engine === "ts" ? 16 : 64;
    model.generate(prompts, { maxNewTokens: 4, temperature: 1, rng: new Rng(3), stopTokens: [] });
    const g0 = performance.now();
    const g = model.generate(prompts, { maxNewTokens: newTok, temperature: 1, rng: new Rng(3), stopTokens: [] });
    const gs = (performance.now() - g0) / 1000;
    const produced = g.tokens.reduce((s, t) => s + t.length, 0);
    console.log(`${name} ${engine}: generate ${(produced / gs).toFixed(0)} tok/s (batch ${B}, ${newTok} new tokens)`);
  }
}
