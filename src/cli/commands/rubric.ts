/**
 * `mpo rubric …`: inspect and edit the rubric versions of a run directory (show, history, diff, import).
 * Lets a user see how the meta step rewrote the rubric and hand in their own version without touching
 * the JSON files. Heavy modules are imported inside the handlers so `mpo --help` stays fast.
 */
import type { Command } from "commander";
import { UserError } from "../../util/errors.ts";

function parseVersionArg(s: string, what = "version"): number {
  const t = s.trim().replace(/^v/i, "");
  if (!/^\d+$/.test(t)) throw new UserError(`${what} must be a version number like 3 or v3, got "${s}"`);
  return Number(t);
}

async function checkRunDir(runDir: string | undefined): Promise<string> {
  const { existsSync, statSync } = await import("node:fs");
  if (!runDir) throw new UserError("--run DIR is required");
  if (!existsSync(runDir)) throw new UserError(`run directory not found: ${runDir}`);
  if (!statSync(runDir).isDirectory()) throw new UserError(`run directory is not a directory: ${runDir}`);
  return runDir;
}

/** The store must hold at least one readable version, else a clear error (with the unreadable files). */
function requireVersions(store: { dir: string; latest(): unknown; scan(): { problems: { error: string }[] } }, label: string): void {
  if (store.latest() !== null) return;
  const { problems } = store.scan();
  throw new UserError(problems.length ? `no readable ${label} version in ${store.dir}:\n${problems.map((p) => p.error).join("\n")}` : `no ${label} versions in ${store.dir}`);
}

async function openStore(runDir: string | undefined, opts: { mustExist?: boolean } = {}) {
  const { RubricStore } = await import("../../rubric/store.ts");
  const store = RubricStore.open(await checkRunDir(runDir));
  if (opts.mustExist !== false) requireVersions(store, "rubric");
  return store;
}

async function openGuidelineStore(runDir: string | undefined, opts: { mustExist?: boolean } = {}) {
  const { GuidelineStore } = await import("../../rubric/store.ts");
  const store = GuidelineStore.open(await checkRunDir(runDir));
  if (opts.mustExist !== false) requireVersions(store, "guideline set");
  return store;
}

function authorLabel(a: { kind: string; note?: string; step?: number; round?: number }): string {
  if (a.kind === "meta") return `meta@${a.step}`;
  if (a.kind === "autoprompt") return `autoprompt round ${a.round}`;
  if (a.kind === "user") return a.note ? `user (${a.note})` : "user";
  return a.kind;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join("  ").trimEnd()).join("\n");
}

type HistoryRow = { version: number; parent: number | null; step: number; author: { kind: string; note?: string; step?: number; round?: number }; analyses: string[]; items: number };

function printHistory(rows: HistoryRow[], json: boolean | undefined, dir: string, label: string, countLabel: string): void {
  if (json) {
    process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
    return;
  }
  if (rows.length === 0) {
    process.stdout.write(`no ${label} versions in ${dir}\n`);
    return;
  }
  const table_ = [["version", "parent", "step", "author", countLabel, "analyses"]];
  for (const v of rows) {
    table_.push([
      `v${v.version}`,
      v.parent === null ? "-" : `v${v.parent}`,
      String(v.step),
      authorLabel(v.author),
      String(v.items),
      v.analyses.length ? v.analyses.join(", ") : "-",
    ]);
  }
  process.stdout.write(table(table_) + "\n");
}

export function register(program: Command): void {
  // `rubric show --version N` must reach the subcommand: without positional options the root program
  // would take `--version` as its own (print the mpo version) wherever it appears.
  program.enablePositionalOptions();
  const rubric = program.command("rubric").description("show, compare and import rubric versions of a run");

  rubric
    .command("show")
    .description("print a rubric: a run's latest (or --version N), or a rubric file")
    .option("--run <dir>", "run directory")
    .option("--version <n>", "version number (default: latest)")
    .option("--file <path>", "a rubric file (.json or text) instead of a run")
    .option("--json", "print JSON instead of the <rubric> text form")
    .option("--guidelines", "show the run's math guideline set (RUN/guidelines) instead of its rubric")
    .action(async (opts: { run?: string; version?: string; file?: string; json?: boolean; guidelines?: boolean }) => {
      const { loadRubricFile, rubricToText, rubricMinTotal, rubricMaxTotal } = await import("../../rubric/format.ts");
      if (opts.file && opts.run) throw new UserError("give either --run or --file, not both");
      if (opts.guidelines) {
        if (opts.file) throw new UserError("--guidelines applies to --run, not --file");
        const { guidelinesToText } = await import("../../rubric/guidelines.ts");
        const store = await openGuidelineStore(opts.run);
        const v = opts.version !== undefined ? store.get(parseVersionArg(opts.version)) : store.latest()!;
        if (opts.json) return void process.stdout.write(JSON.stringify(v, null, 2) + "\n");
        const parent = v.parent === null ? "none" : `v${v.parent}`;
        const n = Object.keys(v.guidelines.groups).length;
        process.stdout.write(`# guidelines v${v.version} (parent ${parent}, step ${v.step}, author ${authorLabel(v.author)}, ${n} groups, created ${v.createdAt})\n` + guidelinesToText(v.guidelines));
        return;
      }
      if (opts.file) {
        if (opts.version !== undefined) throw new UserError("--version applies to --run, not --file");
        const r = loadRubricFile(opts.file);
        process.stdout.write(opts.json ? JSON.stringify(r, null, 2) + "\n" : rubricToText(r));
        return;
      }
      if (!opts.run) throw new UserError("give --run DIR or --file PATH");
      const store = await openStore(opts.run);
      const v = opts.version !== undefined ? store.get(parseVersionArg(opts.version)) : store.latest()!;
      if (opts.json) {
        process.stdout.write(JSON.stringify(v, null, 2) + "\n");
        return;
      }
      const parent = v.parent === null ? "none" : `v${v.parent}`;
      process.stdout.write(
        `# rubric v${v.version} (parent ${parent}, step ${v.step}, author ${authorLabel(v.author)}, ${v.rubric.items.length} items, ` +
          `total ${rubricMinTotal(v.rubric)}–${rubricMaxTotal(v.rubric)}, created ${v.createdAt})\n` +
          rubricToText(v.rubric),
      );
    });

  rubric
    .command("history")
    .description("list a run's rubric versions with their lineage")
    .requiredOption("--run <dir>", "run directory")
    .option("--json", "print JSON")
    .option("--guidelines", "list the run's math guideline versions (RUN/guidelines) instead")
    .action(async (opts: { run: string; json?: boolean; guidelines?: boolean }) => {
      if (opts.guidelines) {
        const store = await openGuidelineStore(opts.run, { mustExist: false });
        const versions = store.list().map(({ guidelines, ...meta }) => ({ ...meta, items: Object.keys(guidelines.groups).length }));
        return void printHistory(versions, opts.json, store.dir, "guideline", "groups");
      }
      const store = await openStore(opts.run, { mustExist: false });
      const versions = store.list().map(({ rubric, ...meta }) => ({ ...meta, items: rubric.items.length }));
      return void printHistory(versions, opts.json, store.dir, "rubric", "items");
    });

  rubric
    .command("diff")
    .description("compare two rubric versions of a run item by item")
    .requiredOption("--run <dir>", "run directory")
    .argument("<a>", "older version (e.g. 3 or v3)")
    .argument("<b>", "newer version")
    .option("--json", "print the item diffs as JSON")
    .action(async (a: string, b: string, opts: { run: string; json?: boolean }) => {
      const { diffRubrics, formatDiff, summarizeDiff } = await import("../../rubric/diff.ts");
      const store = await openStore(opts.run);
      const va = store.get(parseVersionArg(a, "A"));
      const vb = store.get(parseVersionArg(b, "B"));
      const diffs = diffRubrics(va.rubric, vb.rubric);
      if (opts.json) {
        process.stdout.write(JSON.stringify({ from: va.version, to: vb.version, items: diffs }, null, 2) + "\n");
        return;
      }
      process.stdout.write(`${summarizeDiff(va, vb)}\n\n${formatDiff(diffs)}\n`);
    });

  rubric
    .command("import")
    .description("add a rubric file as a new user-authored version of a run")
    .requiredOption("--run <dir>", "run directory")
    .requiredOption("--file <path>", "rubric file (.json or <rubric> text)")
    .option("--note <text>", "note stored with the author")
    .option("--step <n>", "training step to record (default: the latest version's step, or 0)")
    .action(async (opts: { run: string; file: string; note?: string; step?: string }) => {
      const { loadRubricFile } = await import("../../rubric/format.ts");
      const r = loadRubricFile(opts.file);
      const store = await openStore(opts.run, { mustExist: false });
      const latest = store.latest();
      let step = latest?.step ?? 0;
      if (opts.step !== undefined) {
        if (!/^\d+$/.test(opts.step)) throw new UserError(`--step must be a non-negative integer, got "${opts.step}"`);
        step = Number(opts.step);
      }
      const v = store.add({
        rubric: r,
        parent: latest?.version ?? null,
        step,
        author: opts.note ? { kind: "user", note: opts.note } : { kind: "user" },
        analyses: [],
      });
      process.stdout.write(`added rubric v${v.version} (${r.items.length} items, parent ${v.parent === null ? "none" : `v${v.parent}`}) to ${store.dir}\n`);
    });
}
