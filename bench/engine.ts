/**
 * Engine speed bench (npm run bench:engine): our TransformerLM vs the plain-PyTorch peer
 * (bench/torch_bench.py) in ONE run on the same machine, same configs, same batch and sequence length.
 *
 * Measures training tokens/s (forward + masked mean NLL + backward + grad clip + AdamW, PyTorch semantics)
 * and batched KV-cache generation tokens/s (temperature-1 sampling). Each engine path runs in its own
 * child process so thread settings cannot leak: ours on "ts" (single-threaded) and "native" (addon,
 * MPO_ENGINE_THREADS 1 and 2) when built; PyTorch with torch.set_num_threads 1 and 2. The best thread count
 * of each is reported, plus the ratio ours/PyTorch. Because wall-clock numbers on a shared machine swing
 * with other load, a second table compares single-thread tokens per CPU-second (process user+sys time).
 *
 *   npm run bench:engine                       # both configs
 *   npm run bench:engine -- --configs 1m --seconds 2 --json out.json
 *   npm run bench:engine -- --max-step-seconds 0     # never skip a slow path
 *   npm run bench:engine -- --configs qwen0.5b [--full]  # Qwen2.5-0.5B shapes: LoRA training, generation, peak RSS
 *   npm run bench:engine -- --configs qwen0.5b-b1 --full --threads 1   # + full fine-tuning, single-thread (CPU-s table)
 *
 * qwen0.5b (the published Qwen2.5-0.5B config, random f32 weights on both sides, batch 4 × 512): training with
 * LoRA r 64, α 128, dropout 0.05 on all seven projections (ours: frozen base, chunked lm_head; PyTorch: PEFT-style
 * LoRA modules), batched KV-cache generation with the adapters on, and each process's peak RSS. Native path
 * and 2 threads only (the TS path would take hours). Full fine-tuning at this size needs 7.4 GiB for weights,
 * gradients and AdamW moments before activations, and runs only with --full. The PyTorch child is killed when its RSS passes --torch-max-rss-gib
 * (default 12); the table then shows ">cap" for its peak, no training number, and its generation measured alone.
 *
 * A path whose training step is predicted (from its step time on the previous, smaller config, scaled
 * by parameters × tokens) to exceed --max-step-seconds (default 60) is skipped with a note, which keeps
 * the pure-TS path from dominating the bench time at 5M.
 *
 * PyTorch comes from Debian (`apt-get install -y python3-torch libopenblas0-pthread`, /usr/bin/python3);
 * without it the bench says so and prints only our numbers. Numbers on a shared machine are noisy.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { cpus, loadavg } from "node:os";
import { writeJsonAtomic } from "../src/util/atomic.ts";
import { LlamaConfigSchema, expectedParamShapes } from "../src/engine/io/config.ts";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..");
const PYTHON = process.env.MPO_BENCH_PYTHON ?? "/usr/bin/python3";

interface BenchConfig {
  label: string;
  config: Record<string, unknown>;
  batch: number;
  seq: number;
  genBatch: number;
  genPrompt: number;
  genNew: number;
  /** Trainings to measure (default ["full"]); "lora" = r 64, α 128, dropout 0.05, all projections. */
  modes?: ("full" | "lora")[];
  /** Only these thread counts and the native path (big configs). */
  threads?: number[];
  nativeOnly?: boolean;
}

const QWEN05 = {
  architectures: ["Qwen2ForCausalLM"], attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645,
  hidden_act: "silu", hidden_size: 896, initializer_range: 0.02, intermediate_size: 4864,
  max_position_embeddings: 32768, max_window_layers: 21, model_type: "qwen2", num_attention_heads: 14,
  num_hidden_layers: 24, num_key_value_heads: 2, rms_norm_eps: 1e-06, rope_theta: 1000000.0,
  sliding_window: 32768, tie_word_embeddings: true, torch_dtype: "float32", use_cache: true,
  use_sliding_window: false, vocab_size: 151936,
};
const LORA = { r: 64, alpha: 128, dropout: 0.05 };

function llama(V: number, d: number, L: number, H: number, ff: number, maxPos: number): Record<string, unknown> {
  return {
    model_type: "llama", architectures: ["LlamaForCausalLM"], vocab_size: V, hidden_size: d, intermediate_size: ff,
    num_hidden_layers: L, num_attention_heads: H, num_key_value_heads: H, max_position_embeddings: maxPos,
    rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false, hidden_act: "silu",
    bos_token_id: 1, eos_token_id: 2, torch_dtype: "float32",
  };
}

const CONFIGS: Record<string, BenchConfig> = {
  "1m": { label: "~1M (d128 L4 H4 ff344 V2048)", config: llama(2048, 128, 4, 4, 344, 256), batch: 8, seq: 64, genBatch: 8, genPrompt: 8, genNew: 56 },
  "5m": { label: "~5M (d256 L4 H8 ff688 V4096)", config: llama(4096, 256, 4, 8, 688, 256), batch: 16, seq: 128, genBatch: 8, genPrompt: 8, genNew: 120 },
  "qwen0.5b": {
    label: "Qwen2.5-0.5B (d896 L24 H14/2 ff4864 V151936)", config: QWEN05, batch: 4, seq: 512, genBatch: 4, genPrompt: 16, genNew: 32,
    modes: ["lora"], threads: [2], nativeOnly: true,
  },
  // The same at batch 1 × 512: PyTorch's LoRA training at 4 × 512 does not fit this machine (> 19 GiB RSS).
  "qwen0.5b-b1": {
    label: "Qwen2.5-0.5B, batch 1", config: QWEN05, batch: 1, seq: 512, genBatch: 4, genPrompt: 16, genNew: 32,
    modes: ["lora"], threads: [2], nativeOnly: true,
  },
};

interface Measure {
  threads: number;
  train_tokens_per_s?: number;
  train_step_ms?: number;
  gen_tokens_per_s?: number;
  /** Tokens per CPU-second (user+sys of the whole process): less sensitive to other load on a shared machine. */
  train_tokens_per_cpu_s?: number;
  gen_tokens_per_cpu_s?: number;
  /** Which training ran in this process ("full" or "lora"). */
  mode?: "full" | "lora";
  /** Peak RSS of the whole worker process (MiB): model + training + generation. */
  peak_rss_mib?: number;
}

// ------------------------------------------------------------------------------------------- worker side

async function worker(spec: BenchConfig & { seconds: number; engine: "ts" | "native"; mode: "full" | "lora" }): Promise<void> {
  const { TransformerLM, AdamW, clipGradNorm, nllGradient } = await import("../src/engine/index.ts");
  const { LORA_TARGETS } = await import("../src/engine/model.ts");
  const { Rng } = await import("../src/util/rng.ts");
  const rng = new Rng(0);
  const lora = spec.mode === "lora";
  // LoRA: the base is frozen from construction (no base-sized gradient buffers), adapters on every projection.
  const model = TransformerLM.create(spec.config as never, rng, { engine: spec.engine, frozenBase: lora });
  if (lora) model.addLora({ ...LORA, targets: LORA_TARGETS, rng });
  const params = model.trainableParams();
  const opt = new AdamW(params, { lr: 1e-4, weightDecay: 0.01, engine: spec.engine, decay: () => true });
  const V = spec.config.vocab_size as number;
  const { batch: B, seq: T } = spec;
  const tokens = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    const row = Array.from({ length: T + 1 }, () => rng.int(V));
    for (let t = 0; t < T; t++) {
      tokens[b * T + t] = row[t];
      targets[b * T + t] = row[t + 1];
    }
  }
  const dLp = new Float32Array(B * T);
  const trainStep = () => {
    model.zeroGrad();
    model.loraTrain = true;
    const out = model.score(tokens, targets, B, T);
    nllGradient(out.logprobs, targets, dLp);
    model.backward(dLp);
    clipGradNorm(params, 1.0);
    opt.update();
    model.loraTrain = false;
  };
  const prompts = Array.from({ length: spec.genBatch }, () => Array.from({ length: spec.genPrompt }, () => rng.int(V)));
  const genStep = () => {
    model.generate(prompts, { maxNewTokens: spec.genNew, temperature: 1, stopTokens: [], rng });
  };
  const r: Measure = { threads: Number(process.env.MPO_ENGINE_THREADS ?? 1), mode: spec.mode };
  {
    const { n, el, cpu } = timed(trainStep, spec.seconds);
    r.train_tokens_per_s = (B * T * n) / el;
    r.train_tokens_per_cpu_s = (B * T * n) / cpu;
    r.train_step_ms = (1000 * el) / n;
  }
  {
    const { n, el, cpu } = timed(genStep, spec.seconds);
    r.gen_tokens_per_s = (spec.genBatch * spec.genNew * n) / el;
    r.gen_tokens_per_cpu_s = (spec.genBatch * spec.genNew * n) / cpu;
  }
  r.peak_rss_mib = process.resourceUsage().maxRSS / 1024;
  const nParams = [...model.namedTensors().values()].reduce((s, t) => s + t.data.length, 0);
  process.stdout.write(JSON.stringify({ params: nParams, results: [r] }) + "\n");
}

/**
 * One warm-up, then repeat until `seconds` have passed (at least once). A warm-up that alone takes longer
 * than `seconds` is the measurement (slow paths on big configs would otherwise double the bench time).
 */
function timed(fn: () => void, seconds: number): { n: number; el: number; cpu: number } {
  const cpuS = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  const w0 = performance.now();
  const c0 = cpuS();
  fn();
  const w = (performance.now() - w0) / 1000;
  if (w >= seconds) return { n: 1, el: w, cpu: cpuS() - c0 };
  let n = 0;
  const t0 = performance.now();
  const c1 = cpuS();
  for (;;) {
    fn();
    n++;
    const el = (performance.now() - t0) / 1000;
    if (el >= seconds) return { n, el, cpu: cpuS() - c1 };
  }
}

// ------------------------------------------------------------------------------------------- driver side

/**
 * Runs a child; with maxRssBytes, polls its RSS (/proc/PID/status VmRSS, every second) and kills it once it
 * goes above — the PyTorch peer at Qwen2.5-0.5B LoRA 4 × 512 grew past 19 GiB on this 24 GiB shared machine.
 */
function run(
  cmd: string, args: string[], env: Record<string, string>, timeoutS: number, maxRssBytes = 0,
): Promise<{ ok: boolean; out: string; err: string; rssKilled?: number }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: repo, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    let rssKilled: number | undefined;
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutS * 1000);
    const poll = maxRssBytes > 0
      ? setInterval(() => {
          try {
            const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
            const rss = m ? Number(m[1]) * 1024 : 0;
            if (rss > maxRssBytes && rssKilled === undefined) {
              rssKilled = rss;
              child.kill("SIGKILL");
            }
          } catch {
            /* exited */
          }
        }, 1000)
      : null;
    const done = (r: { ok: boolean; out: string; err: string }) => {
      clearTimeout(timer);
      if (poll) clearInterval(poll);
      resolve(rssKilled === undefined ? r : { ...r, ok: false, rssKilled });
    };
    child.on("error", (e) => done({ ok: false, out, err: err + String(e) }));
    child.on("close", (code) => done({ ok: code === 0, out, err: code === null ? err + "\n(killed: timeout)" : err }));
  });
}

function lastJson(out: string): { params: number; torch?: string; results: Measure[] } | null {
  const lines = out.trim().split("\n").reverse();
  for (const l of lines) {
    try {
      return JSON.parse(l);
    } catch {
      /* not the result line */
    }
  }
  return null;
}

type MeasureKey = "train_tokens_per_s" | "gen_tokens_per_s" | "train_tokens_per_cpu_s" | "gen_tokens_per_cpu_s";

function best(ms: Measure[], key: MeasureKey, threads?: number): { v: number; threads: number } | null {
  let b: { v: number; threads: number } | null = null;
  for (const m of ms) {
    if (threads !== undefined && m.threads !== threads) continue;
    const v = m[key];
    if (v !== undefined && (!b || v > b.v)) b = { v, threads: m.threads };
  }
  return b;
}

async function torchAvailable(): Promise<string | null> {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  const r = await run(PYTHON, ["-c", "import torch; print(torch.__version__)"], {}, 120);
  return r.ok ? null : `${PYTHON} cannot import torch (${r.err.trim().split("\n").pop()})`;
}

async function main(argv: string[]): Promise<void> {
  const arg = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  if (argv.includes("--worker")) {
    await worker(JSON.parse(arg("--worker")!));
    return;
  }
  const seconds = Number(arg("--seconds") ?? 3);
  const configs = (arg("--configs") ?? "1m,5m").split(",").map((c) => {
    const spec = CONFIGS[c.trim()];
    if (!spec) throw new Error(`unknown config ${c} (have ${Object.keys(CONFIGS).join(", ")})`);
    return spec;
  });
  const { loadNative } = await import("../src/engine/kernels.ts");
  const native = loadNative();
  const torchProblem = argv.includes("--no-torch") ? "disabled with --no-torch" : await torchAvailable();
  if (torchProblem) process.stderr.write(`PyTorch baseline unavailable: ${torchProblem}. Install with: apt-get install -y python3-torch libopenblas0-pthread. Showing only our numbers.\n`);
  if (!native.kernels) process.stderr.write(`native path unavailable: ${native.error}\n`);
  const perStepLimit = Number(arg("--timeout") ?? 1800);
  /** The PyTorch child is killed above this RSS (GiB; 0 = never): a shared machine must not run out of memory. */
  const torchMaxRss = Number(arg("--torch-max-rss-gib") ?? 12) * 2 ** 30;

  const maxStepS = Number(arg("--max-step-seconds") ?? 60);
  /** --threads 1,2 overrides each config's thread counts (e.g. 1 for the load-robust tokens-per-CPU-second table at 0.5B). */
  const threadsArg = arg("--threads")?.split(",").map(Number);
  if (threadsArg && !threadsArg.every((t) => Number.isInteger(t) && t > 0)) {
    process.stderr.write(`bench:engine: --threads: expected positive integers like 1,2, got '${arg("--threads")}'\n`);
    process.exit(2);
  }
  const work = (spec: BenchConfig) => {
    let p = 0;
    for (const shape of expectedParamShapes(LlamaConfigSchema.parse(spec.config)).values()) p += shape.reduce((a, b) => a * b, 1);
    return p * spec.batch * spec.seq;
  };
  /** Per path: last measured training step time and the work it did, to predict the next config's step. */
  const lastStep = new Map<string, { ms: number; work: number }>();
  const rows: Record<string, unknown>[] = [];
  for (const spec of configs) {
    const modes = [...(spec.modes ?? ["full"])];
    if (argv.includes("--full") && !modes.includes("full")) modes.push("full");
    const threads = threadsArg ?? spec.threads ?? [1, 2];
    const paths: { name: string; env: Record<string, string>; engine: "ts" | "native" }[] = spec.nativeOnly ? [] : [{ name: "ts", env: { MPO_ENGINE: "ts" }, engine: "ts" }];
    if (native.kernels)
      for (const th of threads) paths.push({ name: `native`, env: { MPO_ENGINE: "native", MPO_ENGINE_THREADS: String(th) }, engine: "native" });
    for (const mode of modes) {
      const ours: Record<string, Measure[]> = {};
      let params = 0;
      for (const p of paths) {
        const key = `${p.name}/${p.env.MPO_ENGINE_THREADS ?? 1}/${mode}`;
        const prev = lastStep.get(key);
        if (prev && maxStepS > 0) {
          const predicted = (prev.ms / 1000) * (work(spec) / prev.work);
          if (predicted > maxStepS) {
            process.stderr.write(`[${spec.label}] ours ${key}: skipped, predicted ${predicted.toFixed(0)} s per training step > --max-step-seconds ${maxStepS}\n`);
            continue;
          }
        }
        process.stderr.write(`[${spec.label}] ours ${p.name} threads ${p.env.MPO_ENGINE_THREADS ?? 1}, ${mode} training …\n`);
        const r = await run(process.execPath, ["--import", "tsx", join(here, "engine.ts"), "--worker", JSON.stringify({ ...spec, seconds, engine: p.engine, mode })], p.env, perStepLimit);
        const j = lastJson(r.out);
        if (!r.ok || !j) {
          process.stderr.write(`  failed: ${r.err.trim().slice(-500)}\n`);
          continue;
        }
        params = j.params;
        (ours[p.name] ??= []).push(...j.results);
        if (j.results[0]?.train_step_ms) lastStep.set(key, { ms: j.results[0].train_step_ms, work: work(spec) });
      }
      let torch: Measure[] = [];
      let torchVersion = "";
      let torchNote = "";
      if (!torchProblem) {
        const torchArgs = (extra: string[]) => [join(here, "torch_bench.py"), "--config", JSON.stringify(spec.config), "--batch", String(spec.batch), "--seq", String(spec.seq),
          "--gen-batch", String(spec.genBatch), "--gen-prompt", String(spec.genPrompt), "--gen-new", String(spec.genNew), "--threads", threads.join(","), "--seconds", String(seconds),
          ...(mode === "lora" ? ["--lora", `${LORA.r},${LORA.alpha},${LORA.dropout}`] : []), ...extra];
        process.stderr.write(`[${spec.label}] PyTorch threads ${threads.join(",")}, ${mode} training …\n`);
        let r = await run(PYTHON, torchArgs([]), {}, perStepLimit, torchMaxRss);
        if (r.rssKilled !== undefined) {
          torchNote = `PyTorch ${mode} training killed at ${(r.rssKilled / 2 ** 30).toFixed(1)} GiB RSS (over --torch-max-rss-gib ${torchMaxRss / 2 ** 30}); its generation measured alone`;
          process.stderr.write(`  ${torchNote}\n`);
          r = await run(PYTHON, torchArgs(["--skip-train"]), {}, perStepLimit, torchMaxRss);
        }
        const j = lastJson(r.out);
        if (r.ok && j) {
          torch = j.results;
          torchVersion = j.torch ?? "";
        } else process.stderr.write(`  PyTorch failed: ${r.err.trim().slice(-500)}\n`);
      }
      const tTrain = best(torch, "train_tokens_per_s");
      const tGen = best(torch, "gen_tokens_per_s");
      const tRss: number | string | undefined = torchNote ? `>${((torchMaxRss / 2 ** 20) | 0)}` : torch[0]?.peak_rss_mib;
      for (const [name, ms] of Object.entries(ours)) {
        const tr = best(ms, "train_tokens_per_s");
        const ge = best(ms, "gen_tokens_per_s");
        const rss = Math.max(...ms.map((m) => m.peak_rss_mib ?? 0));
        rows.push({
          config: spec.label, params, batch: `${spec.batch}x${spec.seq}`, gen: `${spec.genBatch}x(${spec.genPrompt}+${spec.genNew})`, path: name, mode,
          train_tok_s: tr?.v, train_threads: tr?.threads, torch_train_tok_s: tTrain?.v, torch_train_threads: tTrain?.threads,
          train_ratio: tr && tTrain ? tr.v / tTrain.v : undefined,
          gen_tok_s: ge?.v, gen_threads: ge?.threads, torch_gen_tok_s: tGen?.v, torch_gen_threads: tGen?.threads,
          gen_ratio: ge && tGen ? ge.v / tGen.v : undefined, torch_version: torchVersion,
          peak_rss_mib: rss || undefined, torch_peak_rss_mib: tRss, ...(torchNote ? { torch_note: torchNote } : {}),
          ...cpuRatios(ms, torch),
          all: { ours: ms, torch },
        });
      }
    }
    if (!modes.includes("full") && spec.modes) process.stderr.write(`[${spec.label}] full fine-tuning not run (f32 weights + gradients + AdamW moments alone are 16 bytes/parameter, before activations); add --full to measure it\n`);
  }
  const la = loadavg();
  console.log(`machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? "?"}), load average ${la.map((x) => x.toFixed(1)).join(" ")} — shared machines make these numbers noisy`);
  printTable(rows);
  const jsonOut = arg("--json");
  if (jsonOut) writeJsonAtomic(jsonOut, { date: new Date().toISOString(), seconds, rows });
}

/** Single-thread tokens per CPU-second, ours vs PyTorch: the contention-robust comparison. */
function cpuRatios(ours: Measure[], torch: Measure[]): Record<string, number | undefined> {
  const o = best(ours, "train_tokens_per_cpu_s", 1), t = best(torch, "train_tokens_per_cpu_s", 1);
  const og = best(ours, "gen_tokens_per_cpu_s", 1), tg = best(torch, "gen_tokens_per_cpu_s", 1);
  return {
    train_cpu_tok_s: o?.v, torch_train_cpu_tok_s: t?.v, train_cpu_ratio: o && t ? o.v / t.v : undefined,
    gen_cpu_tok_s: og?.v, torch_gen_cpu_tok_s: tg?.v, gen_cpu_ratio: og && tg ? og.v / tg.v : undefined,
  };
}

function printTable(rows: Record<string, unknown>[]): void {
  const f = (v: unknown, digits = 0) => (typeof v === "number" ? v.toFixed(digits) : typeof v === "string" ? v : "-");
  const header = ["config", "params", "path", "training", "train tok/s (thr)", "torch train (thr)", "ours/torch", "gen tok/s (thr)", "torch gen (thr)", "ours/torch", "peak RSS MiB", "torch", "ours/torch"];
  const lines = rows.map((r) => [
    String(r.config), f(r.params), String(r.path), String(r.mode),
    `${f(r.train_tok_s)} (${r.train_threads ?? "-"})`, `${f(r.torch_train_tok_s)} (${r.torch_train_threads ?? "-"})`, f(r.train_ratio, 2),
    `${f(r.gen_tok_s)} (${r.gen_threads ?? "-"})`, `${f(r.torch_gen_tok_s)} (${r.torch_gen_threads ?? "-"})`, f(r.gen_ratio, 2),
    f(r.peak_rss_mib), f(r.torch_peak_rss_mib), f(typeof r.peak_rss_mib === "number" && typeof r.torch_peak_rss_mib === "number" ? r.peak_rss_mib / r.torch_peak_rss_mib : undefined, 2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ");
  console.log("wall-clock tokens/s, best thread count (threads in parentheses):");
  console.log(fmt(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const l of lines) console.log(fmt(l));
  for (const r of rows) if (r.torch_note) console.log(`note (${r.config}, ${r.mode}): ${r.torch_note}`);
  const h2 = ["config", "path", "training", "train tok/CPU-s", "torch", "ours/torch", "gen tok/CPU-s", "torch", "ours/torch"];
  const l2 = rows.map((r) => [String(r.config), String(r.path), String(r.mode), f(r.train_cpu_tok_s), f(r.torch_train_cpu_tok_s), f(r.train_cpu_ratio, 2), f(r.gen_cpu_tok_s), f(r.torch_gen_cpu_tok_s), f(r.gen_cpu_ratio, 2)]);
  const w2 = h2.map((h, i) => Math.max(h.length, ...l2.map((l) => l[i].length)));
  const fmt2 = (cells: string[]) => cells.map((c, i) => c.padEnd(w2[i])).join("  ");
  console.log("\nsingle-thread tokens per CPU-second (robust to other load on the machine):");
  console.log(fmt2(h2));
  console.log(w2.map((w) => "-".repeat(w)).join("  "));
  for (const l of l2) console.log(fmt2(l));
}

const isEntry = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (isEntry) await main(process.argv.slice(2));
