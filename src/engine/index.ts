/**
 * Public API of the embedded policy engine (see docs/engine.md and the contract in ENGINE.md):
 * a small Llama-style transformer LM with explicit backward passes, KV-cached batched sampling,
 * AdamW / clipping / schedules, and a supervised training loop. Compute runs on the native addon when it
 * built (MPO_ENGINE=ts|native forces a path), else on pure TypeScript.
 */
export { TransformerLM, sampleToken } from "./model.ts";
export type {
  ParamTensor,
  NamedTensor,
  ModelOptions,
  ScoreOptions,
  ScoreOutput,
  GenerateOptions,
  GenerateOutput,
} from "./model.ts";
export { resolveConfig, llamaConfig } from "./config.ts";
export type { ModelConfig, ModelDims, Activation } from "./config.ts";
export { AdamW, clipGradNorm, gradsFinite, lrSchedule, GradAccumulator } from "./optim.ts";
export type { AdamWOptions, ScheduleOptions } from "./optim.ts";
export { sftTrain, streamBatches, exampleBatches, nllGradient } from "./sft.ts";
export type { Batch, Example, SftOptions, SftResult, StepInfo } from "./sft.ts";
export { selectKernels, loadNative, tsKernels } from "./kernels.ts";
export type { Kernels, EngineChoice } from "./kernels.ts";
