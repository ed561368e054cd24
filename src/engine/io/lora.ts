/**
 * LoRA adapters on disk in PEFT's format, so `peft.PeftModel.from_pretrained(base, dir)` loads what the
 * trainer saves and the engine loads adapters trained with PEFT:
 *   adapter_config.json        LoraConfig fields (peft_type "LORA", task_type "CAUSAL_LM", r, lora_alpha,
 *                              lora_dropout, target_modules, base_model_name_or_path, …)
 *   adapter_model.safetensors  `base_model.model.<HF module path>.lora_A.weight` [r, in] and `.lora_B.weight`
 *                              [out, r] (the adapter name "default" removed, as get_peft_model_state_dict does)
 * Names, file names and the α/r scaling were checked against PEFT's source (huggingface/peft at 5d602fdbf:
 * src/peft/utils/constants.py SAFETENSORS_WEIGHTS_NAME / CONFIG_NAME, src/peft/utils/save_and_load.py
 * get_peft_model_state_dict, src/peft/tuners/lora/layer.py update_layer / reset_lora_parameters).
 * A trainer checkpoint adds value_head.safetensors (the PPO value head, not a PEFT module), optimizer.safetensors
 * and trainer_state.json next to them. Directories are written to a temp sibling and renamed into place.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { UserError } from "../../util/errors.ts";
import { writeFileAtomic } from "../../util/atomic.ts";
import { floatTensors, readSafetensors, serializeSafetensors } from "./safetensors.ts";
import { LORA_TARGETS, type LoraTarget, type TransformerLM } from "../model.ts";
import type { Rng } from "../../util/rng.ts";

export const PEFT_PREFIX = "base_model.model.";

export interface AdapterSettings {
  r: number;
  alpha: number;
  dropout: number;
  targets: LoraTarget[];
  baseModel: string;
}

type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

/** adapter_config.json as PEFT's LoraConfig.to_dict writes it (the fields this adapter uses; the rest default). */
export function peftAdapterConfig(s: AdapterSettings): Record<string, unknown> {
  return {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    base_model_name_or_path: s.baseModel,
    revision: null,
    r: s.r,
    lora_alpha: s.alpha,
    lora_dropout: s.dropout,
    target_modules: [...s.targets],
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    use_rslora: false,
    use_dora: false,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
  };
}

export interface AdapterCheckpoint {
  settings: AdapterSettings;
  /** Adapter tensors by engine name (`model.layers.0.self_attn.q_proj.lora_A.weight`). */
  adapters: Tensors;
  valueHead?: Tensors;
  optimizer?: { step: number; tensors: Tensors };
  trainerState?: object;
}

/** Writes an adapter directory (see module comment) atomically: temp sibling, then rename. */
export function saveAdapterDir(dirIn: string, ck: AdapterCheckpoint): void {
  const dir = resolve(dirIn);
  mkdirSync(dirname(dir), { recursive: true });
  if (existsSync(dir) && !existsSync(join(dir, "adapter_config.json")))
    throw new UserError(`${dir} exists and is not an adapter directory (no adapter_config.json); refusing to replace it`);
  const tmp = mkdtempSync(`${dir}.tmp-`);
  try {
    writeFileAtomic(join(tmp, "adapter_config.json"), JSON.stringify(peftAdapterConfig(ck.settings), null, 2) + "\n");
    const peft = new Map([...ck.adapters].map(([k, v]) => [PEFT_PREFIX + k, v]));
    writeFileAtomic(join(tmp, "adapter_model.safetensors"), serializeSafetensors(peft, { format: "pt" }));
    if (ck.valueHead) writeFileAtomic(join(tmp, "value_head.safetensors"), serializeSafetensors(ck.valueHead, { format: "pt" }));
    if (ck.optimizer) writeFileAtomic(join(tmp, "optimizer.safetensors"), serializeSafetensors(ck.optimizer.tensors, { step: String(ck.optimizer.step), format: "mpo-adamw" }));
    if (ck.trainerState !== undefined) writeFileAtomic(join(tmp, "trainer_state.json"), JSON.stringify(ck.trainerState, null, 2) + "\n");
    const old = existsSync(dir) ? `${dir}.old-${process.pid}` : null;
    if (old) renameSync(dir, old);
    renameSync(tmp, dir);
    if (old) rmSync(old, { recursive: true, force: true });
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

function readJson(dir: string, file: string): Record<string, unknown> {
  try {
    const v = JSON.parse(readFileSync(join(dir, file), "utf8"));
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("not a JSON object");
    return v as Record<string, unknown>;
  } catch (e) {
    throw new UserError(`${join(dir, file)}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "file missing" : (e as Error).message}`);
  }
}

/** Reads an adapter directory (ours or PEFT's); names come back without PEFT's prefix. */
export function loadAdapterDir(dirIn: string): AdapterCheckpoint {
  const dir = resolve(dirIn);
  const c = readJson(dir, "adapter_config.json");
  const file = join(dir, "adapter_config.json");
  if (c.peft_type !== "LORA") throw new UserError(`${file}: field 'peft_type': expected "LORA", got ${JSON.stringify(c.peft_type)}`);
  if (c.use_dora === true || c.use_rslora === true) throw new UserError(`${file}: DoRA / rsLoRA adapters are not supported (use_dora/use_rslora must be false)`);
  if (!(Number.isInteger(c.r) && (c.r as number) > 0)) throw new UserError(`${file}: field 'r': expected a positive integer, got ${JSON.stringify(c.r)}`);
  if (!(typeof c.lora_alpha === "number" && c.lora_alpha > 0)) throw new UserError(`${file}: field 'lora_alpha': expected a positive number, got ${JSON.stringify(c.lora_alpha)}`);
  let targets = c.target_modules;
  if (typeof targets === "string") targets = [targets];
  if (!Array.isArray(targets) || targets.some((t) => !(LORA_TARGETS as readonly string[]).includes(t)))
    throw new UserError(`${file}: field 'target_modules': expected a list of ${LORA_TARGETS.join(", ")}, got ${JSON.stringify(c.target_modules)}`);
  const settings: AdapterSettings = {
    r: c.r as number,
    alpha: c.lora_alpha as number,
    dropout: typeof c.lora_dropout === "number" ? c.lora_dropout : 0,
    targets: targets as LoraTarget[],
    baseModel: typeof c.base_model_name_or_path === "string" ? c.base_model_name_or_path : "",
  };
  const wPath = join(dir, "adapter_model.safetensors");
  const adapters: Tensors = new Map();
  for (const [k, v] of floatTensors(readSafetensors(wPath), wPath)) {
    if (!k.startsWith(PEFT_PREFIX)) throw new UserError(`${wPath}: tensor '${k}' does not start with '${PEFT_PREFIX}' (not a PEFT LoRA adapter)`);
    adapters.set(k.slice(PEFT_PREFIX.length).replace(/\.default\.weight$/, ".weight"), v);
  }
  const out: AdapterCheckpoint = { settings, adapters };
  const vPath = join(dir, "value_head.safetensors");
  if (existsSync(vPath)) out.valueHead = floatTensors(readSafetensors(vPath), vPath);
  const oPath = join(dir, "optimizer.safetensors");
  if (existsSync(oPath)) {
    const f = readSafetensors(oPath);
    const step = Number(f.metadata.step);
    if (!Number.isSafeInteger(step) || step < 0) throw new UserError(`${oPath}: metadata 'step' must be a non-negative integer`);
    out.optimizer = { step, tensors: floatTensors(f, oPath) };
  }
  if (existsSync(join(dir, "trainer_state.json"))) out.trainerState = readJson(dir, "trainer_state.json");
  return out;
}

/** Adds the adapters of `ck` to `model` (which must not have any yet) and copies their values in, shape-checked. */
export function applyAdapter(model: TransformerLM, ck: AdapterCheckpoint, rng: Rng, source = "adapter_model.safetensors"): void {
  model.addLora({ r: ck.settings.r, alpha: ck.settings.alpha, dropout: ck.settings.dropout, targets: ck.settings.targets, rng });
  const want = model.loraTensors();
  for (const [name, t] of want) {
    const got = ck.adapters.get(name);
    if (!got) throw new UserError(`${source}: missing adapter tensor '${PEFT_PREFIX}${name}' (expected shape [${t.shape}])`);
    if (got.shape.length !== t.shape.length || got.shape.some((s, i) => s !== t.shape[i]))
      throw new UserError(`${source}: '${PEFT_PREFIX}${name}' has shape [${got.shape}], the model expects [${t.shape}]`);
    t.data.set(got.data);
  }
  const extra = [...ck.adapters.keys()].filter((k) => !want.has(k));
  if (extra.length) throw new UserError(`${source}: adapter tensors for modules this model does not have: ${extra.slice(0, 3).map((k) => PEFT_PREFIX + k).join(", ")}`);
  if (ck.valueHead) {
    for (const [name, t] of ck.valueHead) {
      const p = model.param(name);
      if (!p) throw new UserError(`${source}: value head tensor '${name}' but the model has no value head`);
      if (p.data.length !== t.data.length) throw new UserError(`${source}: '${name}' has ${t.data.length} values, the model expects ${p.data.length}`);
      p.data.set(t.data);
    }
  }
}
