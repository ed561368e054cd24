/**
 * LoRA policies for the trainer (--lora): every model the run needs sits on ONE frozen copy of the base
 * weights (shared arrays, never copied), each with its own small trainable parts:
 *   - the policy: LoRA adapters (+ the value head when PPO's critic is "shared");
 *   - the PPO critic ("separate", the default): its own adapters + a value head on the same frozen base, so a
 *     critic costs activations and adapter memory, not a second model;
 *   - the KL reference: the policy with its adapters switched off — the exact initial policy, for free.
 * Checkpoints hold only the adapters in PEFT's format (+ value head, optimizer, trainer state); the base is
 * the run's reference/ directory.
 */
import { TransformerLM, type ModelConfig, type ScoreOptions, type ScoreOutput } from "../engine/index.ts";
import type { ModelDims } from "../engine/config.ts";
import type { LoraTarget, ModelOptions, NamedTensor } from "../engine/model.ts";
import { applyAdapter, saveAdapterDir, type AdapterCheckpoint } from "../engine/io/lora.ts";
import type { AdamW } from "../engine/optim.ts";
import type { Rng } from "../util/rng.ts";

export interface LoraSettings {
  r: number;
  alpha: number;
  dropout: number;
  targets: LoraTarget[];
}

/** What the trainer needs from its KL reference. */
export interface Scorer {
  readonly dims: ModelDims;
  score(tokens: Int32Array, targets: Int32Array, B: number, T: number, opts?: ScoreOptions): ScoreOutput;
}

/** A model on the shared frozen base with fresh (or saved) adapters and, when the config asks, a zero value head. */
export function loraModel(
  config: ModelConfig, base: Map<string, NamedTensor>, lora: LoraSettings, engine: ModelOptions, rng: Rng, saved?: AdapterCheckpoint, maskSeed = 0,
): TransformerLM {
  const tensors = new Map(base);
  tensors.delete("value_head.weight");
  tensors.delete("value_head.bias");
  if (config.mpo_value_head) {
    const d = config.hidden_size;
    tensors.set("value_head.weight", { shape: [1, d], data: new Float32Array(d) });
    tensors.set("value_head.bias", { shape: [1], data: new Float32Array(1) });
  }
  // frozenBase: the base is frozen from construction, so no base-sized gradient buffer is ever allocated.
  const m = TransformerLM.fromParams(config, tensors, { ...engine, shareTensors: true, frozenBase: true });
  if (saved) applyAdapter(m, saved, rng);
  else m.addLora({ ...lora, rng });
  m.loraMaskSeed = maskSeed; // the run's --seed: other seeds draw other dropout masks
  return m;
}

/** The policy with its adapters off: the frozen base, i.e. the initial policy (the KL reference). */
export function adaptersOff(policy: TransformerLM): Scorer {
  return {
    dims: policy.dims,
    score(tokens, targets, B, T, opts) {
      policy.loraEnabled = false;
      try {
        return policy.score(tokens, targets, B, T, opts);
      } finally {
        policy.loraEnabled = true;
      }
    },
  };
}

/** Saves a LoRA model's adapters (PEFT format), value head, optimizer state and trainer state. */
export function saveLoraModel(dir: string, m: TransformerLM, opt: AdamW, baseModel: string, trainerState?: object): void {
  if (!m.lora) throw new Error("saveLoraModel: the model has no adapters");
  const vh = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const name of ["value_head.weight", "value_head.bias"]) {
    const p = m.param(name);
    if (p) vh.set(name, { shape: p.shape.slice(), data: p.data });
  }
  const st = opt.stateDict();
  saveAdapterDir(dir, {
    settings: { r: m.lora.r, alpha: m.lora.alpha, dropout: m.lora.dropout, targets: m.lora.targets, baseModel },
    adapters: m.loraTensors(),
    valueHead: vh.size ? vh : undefined,
    optimizer: { step: st.step, tensors: st.tensors },
    trainerState,
  });
}
