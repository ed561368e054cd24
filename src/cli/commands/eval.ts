/**
 * `mpo eval …`: the paper's evaluations on generation files.
 *   elo       pairwise LLM-judged Elo tournament (paper protocol by default), scores + log + plot
 *   rouge     ROUGE-1/2/L/Lsum F1 of predictions against references (summarization)
 *   accuracy  verdict / boxed-answer accuracy using the task's answer checker
 * Heavy modules load inside the handlers so `mpo --help` stays fast.
 */
import type { Command } from "commander";
import { UserError } from "../../util/errors.ts";

function intOpt(name: string, v: string | undefined, min = 0): number | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v.trim()) || Number(v) < min) throw new UserError(`--${name} must be an integer ≥ ${min}, got "${v}"`);
  return Number(v);
}

function numOpt(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UserError(`--${name} must be a positive number, got "${v}"`);
  return n;
}

/** `--seeds 5` → [0..4]; `--seeds 3,7,11` → those seeds. */
export function parseSeeds(v: string | undefined): number[] | undefined {
  if (v === undefined) return undefined;
  if (/^\d+$/.test(v.trim())) {
    const n = Number(v);
    if (n < 1) throw new UserError(`--seeds must be at least 1, got ${v}`);
    return Array.from({ length: n }, (_, i) => i);
  }
  const parts = v.split(",").map((s) => s.trim());
  if (parts.some((p) => !/^\d+$/.test(p))) throw new UserError(`--seeds must be a count (5) or a list of integers (0,3,7), got "${v}"`);
  return parts.map(Number);
}

interface EloFlags {
  runs: string[];
  minUsable?: string;
  judge?: string;
  model?: string;
  server?: string;
  apiKey?: string;
  names?: string;
  seeds?: string;
  matches?: string;
  k?: string;
  base?: string;
  scale?: string;
  bothOrders?: boolean;
  ties?: boolean;
  bt?: boolean;
  bootstrap?: string;
  concurrency?: string;
  task?: string;
  description?: string;
  promptRegex?: string;
  queryField: string;
  responseField: string;
  prompts?: string;
  judgeCache?: string;
  maxTokens?: string;
  out: string;
  progress: boolean;
}

async function evalElo(f: EloFlags): Promise<void> {
  const { existsSync } = await import("node:fs");
  const { loadGenerationFile, systemNameFromFile } = await import("../../eval/runs.ts");
  const { runEloReport, formatEloTable } = await import("../../eval/report.ts");
  const { createChatModel } = await import("../../llm/index.ts");
  const { parseLlmEndpoint } = await import("../../llm/config.ts");
  const { loadTemplates } = await import("../../judge/templates.ts");

  if (!f.runs || f.runs.length < 2) throw new UserError("--runs needs at least two generation files (JSONL lines {query, model_response})");
  if (!f.judge) throw new UserError("--judge URL is required (an OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1)");
  if (!f.model && !f.judge.startsWith("gguf:")) throw new UserError("--model NAME is required (the judge model name the server expects)");
  for (const r of f.runs) if (!existsSync(r)) throw new UserError(`generation file not found: ${r}`);
  const names = f.names ? f.names.split(",").map((s) => s.trim()) : f.runs.map((r) => systemNameFromFile(r));
  if (names.length !== f.runs.length) throw new UserError(`--names gives ${names.length} names for ${f.runs.length} --runs files`);
  let promptPattern: RegExp | undefined;
  if (f.promptRegex) {
    try {
      promptPattern = new RegExp(f.promptRegex, "s");
    } catch (err) {
      throw new UserError(`--prompt-regex is not a valid regular expression: ${(err as Error).message}`);
    }
  }
  const systems = f.runs.map((r, i) => loadGenerationFile(r, names[i], { queryField: f.queryField, responseField: f.responseField, promptPattern }));

  let taskDescription = f.description;
  if (!taskDescription && f.task) {
    const { getTask } = await import("../../tasks/registry.ts");
    taskDescription = (await getTask(f.task)).description;
  }

  const endpoint = parseLlmEndpoint(
    {
      baseURL: f.judge,
      model: f.model ?? "gguf",
      ...(f.server ? { server: f.server } : {}),
      ...(f.apiKey ? { apiKey: f.apiKey } : {}),
      ...(f.judgeCache ? { cacheDir: f.judgeCache } : {}),
    },
    "--judge/--model/--server",
  );
  const judge = createChatModel(endpoint);
  const seeds = parseSeeds(f.seeds);
  const matches = intOpt("matches", f.matches, 1);

  let bar: { start(total: number, v: number): void; setTotal(t: number): void; update(v: number): void; stop(): void } | undefined;
  if (f.progress && process.stderr.isTTY) {
    const cliProgress = (await import("cli-progress")).default;
    bar = new cliProgress.SingleBar({ format: "judging {bar} {value}/{total} matches | {eta_formatted} left", stream: process.stderr }, cliProgress.Presets.shades_classic);
    bar.start((seeds?.length ?? 5) * (matches ?? 2000), 0);
  }
  let lastLine = 0;
  const report = await runEloReport({
    systems,
    judge,
    seeds,
    matches,
    k: numOpt("k", f.k),
    base: numOpt("base", f.base),
    scale: numOpt("scale", f.scale),
    bothOrders: f.bothOrders ?? false,
    allowTies: f.ties ?? false,
    concurrency: intOpt("concurrency", f.concurrency, 1),
    maxTokens: intOpt("max-tokens", f.maxTokens, 1),
    taskDescription,
    templates: f.prompts ? loadTemplates(f.prompts) : undefined,
    outDir: f.out,
    bradleyTerry: f.bt ? { bootstrap: intOpt("bootstrap", f.bootstrap, 0) ?? 200 } : false,
    judgeInfo: { endpoint: endpoint.baseURL, model: endpoint.model, server: endpoint.server },
    onProgress: (done, total) => {
      if (bar) {
        bar.setTotal(total);
        bar.update(done);
      } else if (f.progress && (done - lastLine >= Math.max(1, Math.floor(total / 20)) || done === total)) {
        lastLine = done;
        process.stderr.write(`judging: ${done}/${total} matches\n`);
      }
    },
  });
  bar?.stop();
  process.stdout.write(formatEloTable(report.result, report.bt));
  const c = report.provenance.counts as Record<string, number>;
  process.stdout.write(
    `judge ${endpoint.model} at ${endpoint.baseURL}; seeds ${report.result.settings.seeds.join(",")}; ${report.result.promptIds.length} prompts; ` +
      `${c.applied} verdicts applied, ${c.unreadable} unreadable (${c.redrawn} re-drawn, ${c.skipped} dropped), ${c.judgeErrors} judge errors\n`,
  );
  process.stdout.write(`wrote ${Object.values(report.files).join(", ")}\n`);
  // Ratings from a judge whose verdicts mostly could not be read are noise around the start rating: say so
  // and fail (the files stay for inspection) instead of printing a table that looks like a result.
  const scheduled = report.result.settings.seeds.length * report.result.settings.matches;
  const minUsable = f.minUsable === undefined ? 0.8 : Number(f.minUsable);
  if (!(minUsable >= 0 && minUsable <= 1)) throw new UserError(`--min-usable: expected a share in [0, 1], got ${f.minUsable}`);
  if (c.applied < minUsable * scheduled)
    throw new UserError(
      `only ${c.applied} of ${scheduled} scheduled matches (${((100 * c.applied) / scheduled).toFixed(1)}%) got a usable verdict, below --min-usable ${minUsable}: ` +
        `the ratings above are not a result. Check the judge's replies in ${report.files.matches ?? f.out} (answer format, --max-tokens, --server)`,
    );
}

export function register(program: Command): void {
  const ev = program.command("eval").description("evaluate generations: pairwise Elo with an LLM judge, ROUGE, accuracy");

  ev.command("elo")
    .description("pairwise Elo tournament judged by an LLM (the paper's protocol by default)")
    .requiredOption("--runs <files...>", "generation files, JSONL lines {query, model_response}; system name = file name")
    .option("--judge <url>", "judge server base URL (OpenAI-compatible, e.g. http://127.0.0.1:8000/v1), or gguf:/path/model.gguf (in-process llama.cpp)")
    .option("--model <name>", "judge model name")
    .option("--server <kind>", "judge server kind: vllm, sglang, llamacpp, ollama, openai, generic")
    .option("--api-key <key>", "API key (default: $OPENAI_API_KEY or EMPTY)")
    .option("--names <a,b,...>", "system names, one per --runs file (default: file names)")
    .option("--seeds <n|list>", "number of tournaments (seeds 0..n-1) or a list of seeds (default 5)")
    .option("--matches <n>", "matches per seed (default 2000)")
    .option("--min-usable <share>", "fail (exit 1) when fewer than this share of the scheduled matches get a usable verdict (default 0.8)")
    .option("--k <k>", "Elo K factor (default 4)")
    .option("--base <b>", "Elo base (default 10)")
    .option("--scale <s>", "Elo scale (default 400)")
    .option("--both-orders", "judge each match in both orders (cancels position bias; disagreement = tie)")
    .option("--ties", "let the judge declare a tie")
    .option("--bt", "also fit Bradley–Terry with bootstrap confidence intervals")
    .option("--bootstrap <n>", "bootstrap resamples for --bt (default 200)")
    .option("--concurrency <n>", "judge calls in flight (default 8)")
    .option("--task <name>", "task whose description the judge is given (essay, summarization, ethics, math, or a task .yaml)")
    .option("--description <text>", "what the responses are, told to the judge (overrides --task)")
    .option("--prompt-regex <re>", "regex whose last group extracts the prompt shown to the judge from a templated query")
    .option("--query-field <f>", "prompt field in the generation files", "query")
    .option("--response-field <f>", "response field in the generation files", "model_response")
    .option("--prompts <dir>", "directory overriding prompt templates (eval/elo-judge.md, eval/elo-judge-system.md)")
    .option("--judge-cache <dir>", "on-disk cache of judge replies (temperature 0)")
    .option("--max-tokens <n>", "judge reply token limit (default 256)")
    .option("--out <dir>", "output directory", "elo-results")
    .option("--no-progress", "no progress output on stderr")
    .action((flags: EloFlags) => evalElo(flags));

  ev.command("rouge")
    .description("ROUGE-1/2/L/Lsum (rouge-score compatible) of predictions against references")
    .requiredOption("--pred <file>", "predictions (JSONL/JSON/CSV/Parquet)")
    .option("--ref <file>", "references (default: read --ref-field from the --pred file)")
    .option("--pred-field <f>", "prediction field", "model_response")
    .option("--ref-field <f>", "reference field", "summary")
    .option("--key <f>", "join predictions and references on this field (default: line order)")
    .option("--no-stem", "no Porter stemming (the paper's numbers use stemming)")
    .option("--split-sentences", "for ROUGE-Lsum also split sentences at . ! ? (default: newlines only, like rouge-score)")
    .option("--out <file>", "write the result as JSON")
    .action(async (f: { pred: string; ref?: string; predField: string; refField: string; key?: string; stem: boolean; splitSentences?: boolean; out?: string }) => {
      const { loadPairs } = await import("../../eval/pairs.ts");
      const { rougeCorpus } = await import("../../eval/rouge.ts");
      const pairs = await loadPairs(f);
      if (pairs.length === 0) throw new UserError(`no records in ${f.pred}`);
      const r = rougeCorpus(
        pairs.map((p) => ({ target: p.reference, prediction: p.prediction })),
        undefined,
        { useStemmer: f.stem, sentenceSplit: f.splitSentences ? "punctuation" : "newline" },
      );
      const lines = [`ROUGE on ${r.n} pairs (${f.stem ? "with" : "without"} stemming) — F1 / P / R`];
      for (const [t, s] of Object.entries(r.mean)) lines.push(`${t.padEnd(10)} ${(100 * s.fmeasure).toFixed(2)}  ${(100 * s.precision).toFixed(2)}  ${(100 * s.recall).toFixed(2)}`);
      process.stdout.write(lines.join("\n") + "\n");
      if (f.out) {
        const { writeJsonAtomic } = await import("../../util/atomic.ts");
        writeJsonAtomic(f.out, { kind: "rouge", source: { pred: f.pred, ref: f.ref ?? f.pred, predField: f.predField, refField: f.refField, key: f.key ?? null }, stemming: f.stem, ...r });
        process.stdout.write(`wrote ${f.out}\n`);
      }
    });

  ev.command("accuracy")
    .description("answer accuracy with the task's checker (math: boxed answer equivalence; ethics: <verdict> tag)")
    .requiredOption("--task <name>", "task name (math, ethics, or any task that declares an answer checker)")
    .requiredOption("--pred <file>", "predictions (JSONL/JSON/CSV/Parquet)")
    .option("--gold <file>", "gold labels (default: read --gold-field from the --pred file)")
    .option("--pred-field <f>", "prediction field", "model_response")
    .option("--gold-field <f>", "gold label field (default: the task's, e.g. answer / binarized_label)")
    .option("--key <f>", "join predictions and gold on this field (default: line order)")
    .option("--out <file>", "write the result as JSON")
    .action(async (f: { task: string; pred: string; gold?: string; predField: string; goldField?: string; key?: string; out?: string }) => {
      const { getTask } = await import("../../tasks/registry.ts");
      const { loadPairs } = await import("../../eval/pairs.ts");
      const { accuracyFor, formatAccuracy } = await import("../../eval/accuracy.ts");
      const task = await getTask(f.task);
      if (!task.accuracy) throw new UserError(`task '${task.name}' declares no answer checker, so accuracy does not apply (it has: ${task.evaluations.join(", ")})`);
      const goldField = f.goldField ?? task.accuracy.goldField;
      const pairs = await loadPairs({ pred: f.pred, ref: f.gold, predField: f.predField, refField: goldField, key: f.key });
      if (pairs.length === 0) throw new UserError(`no records in ${f.pred}`);
      const r = accuracyFor(task.accuracy.checker, pairs.map((p) => ({ id: p.key, prediction: p.prediction, gold: p.reference })));
      process.stdout.write(formatAccuracy(r));
      if (f.out) {
        const { writeJsonAtomic } = await import("../../util/atomic.ts");
        writeJsonAtomic(f.out, { kind: "accuracy", task: task.name, source: { pred: f.pred, gold: f.gold ?? f.pred, predField: f.predField, goldField, key: f.key ?? null }, ...r });
        process.stdout.write(`wrote ${f.out}\n`);
      }
    });
}
