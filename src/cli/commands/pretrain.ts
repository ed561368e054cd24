/**
 * `mpo pretrain`: trains a small policy model from scratch on a text corpus — first a byte-level BPE
 * tokenizer on the corpus, then the engine's transformer on random windows of the token stream — so the
 * RL pipeline has a real (tiny) model to start from when no pretrained weights exist.
 *
 * Output directory layout:
 *   DIR/model/          HF-style checkpoint (config.json, model.safetensors, tokenizer.json, optimizer
 *                       state + trainer_state.json for exact resume), replaced atomically at each save
 *   DIR/losses.jsonl    loss curve, one record per optimizer step {step, loss, lr, gradNorm, tokens, seconds}
 * Re-running with the same DIR resumes from the last checkpoint (same batches, same optimizer state; the
 * loss records after that checkpoint are dropped and redone). Ctrl-C saves a checkpoint and stops.
 */
import type { Command } from "commander";
import { existsSync, readFileSync, statSync } from "node:fs";
import { UserError } from "../../util/errors.ts";
import type { AdamW as AdamWT, TransformerLM as TransformerLMT } from "../../engine/index.ts";
import type { BpeTokenizer as BpeTokenizerT } from "../../tokenizer/tokenizer.ts";
import type { Rng as RngT } from "../../util/rng.ts";

export interface PretrainOptions {
  corpus: string;
  out: string;
  vocab?: number;
  dModel?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  ff?: number;
  seq?: number;
  steps?: number;
  batch?: number;
  lr?: number;
  warmup?: number;
  seed?: number;
  saveEvery?: number;
  /** Stop (after checkpointing) once this many steps ran in this invocation — time-boxed runs and tests. */
  stopAfter?: number;
  /** Start over even when DIR/model holds a resumable checkpoint. */
  fresh?: boolean;
  progress?: boolean;
  engine?: "ts" | "native" | "auto";
  log?: (line: string) => void;
}

export interface PretrainResult {
  dir: string;
  step: number;
  steps: number;
  finalLoss: number | undefined;
  valLoss: number | undefined;
  resumedFrom: number | undefined;
  tokensPerSecond: number;
}

/** Run settings stored in trainer_state.json; a resume uses these, not the new flags (except steps). */
interface RunArgs {
  vocab: number;
  dModel: number;
  layers: number;
  heads: number;
  kvHeads: number;
  ff: number;
  seq: number;
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
  seed: number;
}

interface TrainerState {
  kind: "mpo-pretrain";
  step: number;
  rng: [number, number, number, number];
  args: RunArgs;
  corpus: { path: string; bytes: number; tokens: number };
  valLoss?: number;
}

/** Documents of the corpus: JSONL → each record's string fields; otherwise the whole file as one text. */
function readCorpus(path: string): string[] {
  if (!existsSync(path) || !statSync(path).isFile()) throw new UserError(`--corpus: file not found: ${path}`);
  const text = readFileSync(path, "utf8");
  if (!/\.jsonl$/i.test(path)) return [text];
  const docs: string[] = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch {
      throw new UserError(`${path}:${i + 1}: not valid JSON`);
    }
    const parts: string[] = [];
    const walk = (v: unknown) => {
      if (typeof v === "string") parts.push(v);
      else if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === "object") Object.values(v).forEach(walk);
    };
    walk(rec);
    if (parts.length) docs.push(parts.join("\n"));
  });
  return docs;
}

function numOpt(name: string, v: unknown, min: number, integer = true): number | undefined {
  if (v === undefined) return undefined;
  const n = typeof v === "number" ? v : Number(String(v).trim());
  if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n)) || String(v).trim() === "")
    throw new UserError(`--${name}: expected ${integer ? "an integer" : "a number"} ≥ ${min}, got "${v}"`);
  return n;
}

export async function runPretrain(o: PretrainOptions): Promise<PretrainResult> {
  const { join, resolve } = await import("node:path");
  const { rmSync } = await import("node:fs");
  const { BpeTokenizer } = await import("../../tokenizer/tokenizer.ts");
  const { TransformerLM, AdamW, sftTrain, streamBatches, llamaConfig, nllGradient } = await import("../../engine/index.ts");
  const { saveCheckpoint, loadCheckpoint } = await import("../../engine/io/checkpoint.ts");
  const { Rng } = await import("../../util/rng.ts");
  const { writeFileAtomic, readJsonl } = await import("../../util/atomic.ts");
  const { SingleBar } = await import("cli-progress");
  const log = o.log ?? ((s: string) => process.stderr.write(s + "\n"));

  const dir = resolve(o.out);
  const modelDir = join(dir, "model");
  const lossPath = join(dir, "losses.jsonl");
  const corpusPath = resolve(o.corpus);
  const docs = readCorpus(corpusPath);
  const corpusBytes = statSync(corpusPath).size;

  let args: RunArgs;
  let tok: BpeTokenizerT;
  let model: TransformerLMT;
  let opt: AdamWT;
  let rng: RngT;
  let resumedFrom: number | undefined;
  const stateFile = join(modelDir, "trainer_state.json");
  const resumable = !o.fresh && existsSync(stateFile);
  if (o.fresh && existsSync(dir)) {
    rmSync(modelDir, { recursive: true, force: true });
    rmSync(lossPath, { force: true });
  }
  if (resumable) {
    const ck = loadCheckpoint(modelDir);
    const st = ck.trainerState as unknown as TrainerState;
    if (st?.kind !== "mpo-pretrain" || !st.args || !Array.isArray(st.rng))
      throw new UserError(`${stateFile}: not a resumable mpo pretrain state (use --fresh to start over)`);
    if (!ck.optimizer) throw new UserError(`${modelDir}: optimizer.safetensors missing, cannot resume exactly (use --fresh to start over)`);
    if (!ck.tokenizerJson) throw new UserError(`${modelDir}: tokenizer.json missing (use --fresh to start over)`);
    args = { ...st.args, steps: numOpt("steps", o.steps, 1) ?? st.args.steps };
    for (const [flag, key] of [["vocab", "vocab"], ["d-model", "dModel"], ["layers", "layers"], ["heads", "heads"], ["seq", "seq"], ["batch", "batch"], ["lr", "lr"], ["seed", "seed"]] as const) {
      const given = (o as unknown as Record<string, unknown>)[key];
      if (given !== undefined && Number(given) !== st.args[key]) log(`note: resuming ${modelDir}; --${flag} ${given} ignored (checkpoint has ${st.args[key]}; use --fresh to start over)`);
    }
    if (st.corpus && st.corpus.bytes !== corpusBytes) log(`warning: corpus size changed since the checkpoint (${st.corpus.bytes} → ${corpusBytes} bytes)`);
    tok = BpeTokenizer.fromJson(ck.tokenizerJson, join(modelDir, "tokenizer.json"));
    model = TransformerLM.fromParams(ck.config, ck.tensors, { engine: o.engine });
    opt = new AdamW(model.params, { lr: args.lr, weightDecay: 0.01, engine: o.engine });
    opt.loadStateDict({ step: ck.optimizer.step, tensors: ck.optimizer.tensors });
    rng = Rng.fromState(st.rng);
    resumedFrom = st.step;
    // Loss records past the checkpoint belong to steps that will be redone.
    const kept = readJsonl<{ step: number }>(lossPath).records.filter((r) => r.step <= st.step);
    writeFileAtomic(lossPath, kept.map((r) => JSON.stringify(r) + "\n").join(""));
    log(`resuming ${modelDir} at step ${st.step}/${args.steps}`);
  } else {
    if (existsSync(modelDir)) throw new UserError(`${modelDir} exists but is not a resumable pretrain checkpoint; use --fresh or another --out`);
    const dModel = numOpt("d-model", o.dModel, 8) ?? 128;
    const heads = numOpt("heads", o.heads, 1) ?? 4;
    if (dModel % heads !== 0 || (dModel / heads) % 2 !== 0) throw new UserError(`--d-model ${dModel} must be divisible by --heads ${heads} into an even head size`);
    const kvHeads = numOpt("kv-heads", o.kvHeads, 1) ?? heads;
    if (heads % kvHeads !== 0) throw new UserError(`--kv-heads ${kvHeads} must divide --heads ${heads}`);
    args = {
      vocab: numOpt("vocab", o.vocab, 260) ?? 2048,
      dModel,
      layers: numOpt("layers", o.layers, 1) ?? 4,
      heads,
      kvHeads,
      // SwiGLU with ~8/3·d hidden units keeps the MLP's parameter count near a 4·d GELU MLP.
      ff: numOpt("ff", o.ff, 1) ?? Math.ceil((8 * dModel) / 3 / 8) * 8,
      seq: numOpt("seq", o.seq, 2) ?? 128,
      steps: numOpt("steps", o.steps, 1) ?? 1000,
      batch: numOpt("batch", o.batch, 1) ?? 16,
      lr: numOpt("lr", o.lr, 0, false) ?? 1e-3,
      warmup: 0,
      seed: numOpt("seed", o.seed, 0) ?? 0,
    };
    args.warmup = numOpt("warmup", o.warmup, 0) ?? Math.min(100, Math.floor(args.steps / 10));
    rng = new Rng(args.seed);
    log(`training tokenizer (vocab ${args.vocab}) on ${corpusPath} (${corpusBytes} bytes)…`);
    const t0 = performance.now();
    tok = BpeTokenizer.train(docs, { vocabSize: args.vocab });
    log(`  done in ${((performance.now() - t0) / 1000).toFixed(1)}s, ${tok.vocabSize} tokens, ${tok.merges.length} merges`);
    const config = llamaConfig({
      vocabSize: tok.vocabSize,
      hiddenSize: args.dModel,
      intermediateSize: args.ff,
      numLayers: args.layers,
      numHeads: args.heads,
      numKvHeads: args.kvHeads,
      maxPositions: args.seq,
      bosTokenId: tok.specialId("<|endoftext|>"),
      eosTokenId: tok.specialId("<|endoftext|>"),
      padTokenId: tok.specialId("<pad>"),
    });
    model = TransformerLM.create(config, rng.fork("init"), { engine: o.engine });
    opt = new AdamW(model.params, { lr: args.lr, weightDecay: 0.01, engine: o.engine });
    rmSync(lossPath, { force: true });
  }

  // Token stream: documents joined with <|endoftext|>; the last ~5% is held out for a validation loss.
  const eot = tok.specialId("<|endoftext|>")!;
  const ids: number[] = [];
  for (const d of docs) {
    for (const id of tok.encode(d, { parseSpecial: false })) ids.push(id);
    ids.push(eot);
  }
  const stream = Int32Array.from(ids);
  const T = args.seq;
  const holdout = stream.length >= 40 * (T + 1) ? Math.max(T + 1, Math.floor(stream.length * 0.05)) : 0;
  const trainStream = stream.subarray(0, stream.length - holdout);
  if (trainStream.length < T + 1) throw new UserError(`--corpus: ${stream.length} tokens is too short for --seq ${T} (need more than ${T + 1})`);
  log(`corpus: ${stream.length} tokens (${(corpusBytes / Math.max(1, stream.length)).toFixed(2)} bytes/token), ${holdout} held out for validation`);
  const params = model.params.reduce((s, p) => s + p.data.length, 0);
  log(`model: ${params} parameters (d ${args.dModel}, ${args.layers} layers, ${args.heads} heads, ff ${args.ff}, vocab ${tok.vocabSize}, seq ${T})`);

  const dataRng = rng; // batches draw from the run rng; its state is checkpointed for exact resume
  const nextBatch = streamBatches(trainStream, args.batch, T, dataRng);
  const saveEvery = numOpt("save-every", o.saveEvery, 1) ?? 100;
  const stopAfter = numOpt("stop-after", o.stopAfter, 1);
  const save = (step: number, valLoss?: number) => {
    const sd = opt.stateDict();
    const state: TrainerState = { kind: "mpo-pretrain", step, rng: dataRng.state(), args, corpus: { path: corpusPath, bytes: corpusBytes, tokens: stream.length }, valLoss };
    saveCheckpoint(modelDir, {
      config: model.config,
      tensors: new Map(model.params.map((p) => [p.name, { shape: p.shape, data: p.data }])),
      tokenizerJson: tok.toJson(),
      optimizer: { step: sd.step, tensors: sd.tensors },
      trainerState: state,
    });
  };

  const showBar = o.progress ?? Boolean(process.stderr.isTTY);
  const bar = showBar
    ? new SingleBar({ format: "pretrain |{bar}| step {value}/{total} loss {loss} {tps} tok/s ETA {eta_formatted}", stream: process.stderr, hideCursor: true, etaBuffer: 20 })
    : null;
  const startStep = opt.step;
  bar?.start(args.steps, startStep, { loss: "-", tps: "-" });
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
  };
  process.once("SIGINT", onSigint);
  class Stop extends Error {}
  let lastLoss: number | undefined;
  let ranThisRun = 0;
  let tokensPerSecond = 0;
  let stepNow = startStep;
  try {
    if (startStep < args.steps) {
      const r = await sftTrain(model, nextBatch, {
        steps: args.steps,
        lr: args.lr,
        warmupSteps: args.warmup,
        decay: "cosine",
        optimizer: opt,
        progress: false,
        lossCurvePath: lossPath,
        onStep: (info) => {
          lastLoss = info.loss;
          ranThisRun++;
          stepNow = info.step;
          tokensPerSecond = info.tokens / Math.max(info.seconds, 1e-9);
          bar?.update(info.step, { loss: info.loss.toFixed(4), tps: Math.round(tokensPerSecond) });
          if (!bar && (info.step % Math.max(1, Math.floor(args.steps / 20)) === 0 || info.step === args.steps))
            log(`step ${info.step}/${args.steps} loss ${info.loss.toFixed(4)} ${Math.round(tokensPerSecond)} tok/s`);
          const stop = interrupted || (stopAfter !== undefined && ranThisRun >= stopAfter);
          if (info.step % saveEvery === 0 || stop || info.step === args.steps) save(info.step);
          if (stop && info.step < args.steps) throw new Stop();
        },
      });
      tokensPerSecond = r.tokensPerSecond;
    }
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
  } finally {
    bar?.stop();
    process.removeListener("SIGINT", onSigint);
  }

  let valLoss: number | undefined;
  if (stepNow >= args.steps && holdout > 0) {
    // Validation: mean NLL over non-overlapping windows of the held-out tail (up to 8 batches).
    const val = stream.subarray(stream.length - holdout);
    const windows = Math.min(Math.floor((val.length - 1) / T), 8 * args.batch);
    let sum = 0, count = 0;
    for (let w0 = 0; w0 < windows; w0 += args.batch) {
      const B = Math.min(args.batch, windows - w0);
      const tokens = new Int32Array(B * T), targets = new Int32Array(B * T);
      for (let b = 0; b < B; b++) {
        tokens.set(val.subarray((w0 + b) * T, (w0 + b + 1) * T), b * T);
        targets.set(val.subarray((w0 + b) * T + 1, (w0 + b + 1) * T + 1), b * T);
      }
      const out = model.score(tokens, targets, B, T);
      const { loss, count: c } = nllGradient(out.logprobs, targets, new Float32Array(B * T));
      sum += loss * c;
      count += c;
    }
    if (count) {
      valLoss = sum / count;
      log(`validation loss ${valLoss.toFixed(4)} (${count} held-out tokens)`);
      save(stepNow, valLoss);
    }
  }
  if (stepNow < args.steps) log(`stopped at step ${stepNow}/${args.steps}; run the same command again to resume`);
  log(`checkpoint: ${modelDir}\nloss curve: ${lossPath}`);
  return { dir: modelDir, step: stepNow, steps: args.steps, finalLoss: lastLoss, valLoss, resumedFrom, tokensPerSecond };
}

export function register(program: Command): void {
  program
    .command("pretrain")
    .description("train a byte-level BPE tokenizer and a small transformer LM from scratch on a text corpus (resumable)")
    .requiredOption("--corpus <file>", "training text (.txt as one document; .jsonl: string fields of each record, one document per line)")
    .requiredOption("--out <dir>", "output directory (model/ checkpoint + losses.jsonl); an existing run there is resumed")
    .option("--vocab <n>", "tokenizer vocabulary size (default 2048)")
    .option("--d-model <n>", "hidden size (default 128)")
    .option("--layers <n>", "transformer blocks (default 4)")
    .option("--heads <n>", "attention heads (default 4)")
    .option("--kv-heads <n>", "key/value heads for grouped-query attention (default = heads)")
    .option("--ff <n>", "MLP hidden size (default ≈ 8/3·d-model)")
    .option("--seq <n>", "context length in tokens (default 128)")
    .option("--steps <n>", "optimizer steps (default 1000; may be raised when resuming)")
    .option("--batch <n>", "sequences per step (default 16)")
    .option("--lr <x>", "peak learning rate, cosine decay (default 1e-3)")
    .option("--warmup <n>", "warmup steps (default min(100, steps/10))")
    .option("--seed <n>", "random seed (default 0)")
    .option("--save-every <n>", "checkpoint every n steps (default 100)")
    .option("--stop-after <n>", "stop after n steps in this invocation (checkpointed; rerun to resume)")
    .option("--fresh", "start over even if --out holds a checkpoint")
    .option("--engine <path>", "compute path: ts, native or auto (default: MPO_ENGINE, else native when built)")
    .action(async (flags) => {
      const engine = flags.engine;
      if (engine !== undefined && !["ts", "native", "auto"].includes(engine)) throw new UserError(`--engine: expected ts, native or auto, got "${engine}"`);
      const r = await runPretrain({
        corpus: flags.corpus,
        out: flags.out,
        vocab: flags.vocab,
        dModel: flags.dModel,
        layers: flags.layers,
        heads: flags.heads,
        kvHeads: flags.kvHeads,
        ff: flags.ff,
        seq: flags.seq,
        steps: flags.steps,
        batch: flags.batch,
        lr: flags.lr,
        warmup: flags.warmup,
        seed: flags.seed,
        saveEvery: flags.saveEvery,
        stopAfter: flags.stopAfter,
        fresh: flags.fresh,
        engine,
      });
      process.stdout.write(JSON.stringify(r) + "\n");
    });
}
