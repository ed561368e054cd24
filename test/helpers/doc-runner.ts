/**
 * Executable documentation: parses the fenced ```bash / ```sh blocks of a Markdown file and runs them in
 * order against `mpo sim-server`, with only the substitutions the document itself declares. The convention
 * (directives, working directory, chaining) is in /work/wt/NOTES.md and in test/docs.test.ts's header.
 *
 * Hand-written: no Markdown library models "directive comments bound to the next fence", and the parse we
 * need (fences + preceding comment lines) is a dozen lines.
 *
 *   npx tsx test/helpers/doc-runner.ts docs/serve.md     # run one doc, printing each block's output
 */
import { spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export interface DocBlock {
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  code: string;
  skip?: string;
  timeoutS: number;
  expectExit: number;
  expects: string[];
  /** Substitutions in force for this block (file-scoped, declared above it). */
  subs: { from: string; to: string }[];
}

export interface ParsedDoc {
  blocks: DocBlock[];
  /** Malformed directives (unknown verb, skip without reason, bad JSON in sub): the doc test fails on them. */
  problems: string[];
}

const RUNNABLE = new Set(["bash", "sh"]);
const DIRECTIVE = /^<!--\s*doc-test:\s*(.*?)\s*-->\s*$/;

/** Splits a Markdown file into its runnable blocks with the directives that apply to each. */
export function parseDoc(text: string): ParsedDoc {
  const lines = text.split("\n");
  const blocks: DocBlock[] = [];
  const problems: string[] = [];
  const subs: { from: string; to: string }[] = [];
  let pending: { skip?: string; timeoutS?: number; expectExit?: number; expects: string[] } = { expects: [] };
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i];
    const fence = /^(\s*)(`{3,}|~{3,})\s*([\w+-]*)/.exec(raw);
    if (fence) {
      const [, indent, marker, lang] = fence;
      const body: string[] = [];
      let j = i + 1;
      while (j < lines.length && !lines[j].trim().startsWith(marker)) body.push(lines[j].slice(indent.length)), j++;
      if (RUNNABLE.has(lang)) {
        blocks.push({
          line: i + 1, lang, code: body.join("\n"), skip: pending.skip, timeoutS: pending.timeoutS ?? 120,
          expectExit: pending.expectExit ?? 0, expects: pending.expects, subs: [...subs],
        });
      } else if (pending.skip || pending.timeoutS || pending.expects.length || pending.expectExit !== undefined) {
        problems.push(`line ${i + 1}: block directives before a '${lang || "plain"}' fence, which is never run`);
      }
      pending = { expects: [] };
      i = j;
      continue;
    }
    const d = DIRECTIVE.exec(raw.trim());
    if (!d) {
      if (raw.trim() !== "" && (pending.skip || pending.timeoutS || pending.expects.length || pending.expectExit !== undefined)) {
        problems.push(`line ${i + 1}: block directives must directly precede a fence (text in between)`);
        pending = { expects: [] };
      }
      continue;
    }
    const body = d[1];
    const verb = /^[\w-]+/.exec(body)?.[0] ?? "";
    const rest = body.slice(verb.length).trim();
    if (verb === "skip") {
      const reason = rest.replace(/^[—–:-]+\s*/, "").trim();
      if (!reason) problems.push(`line ${i + 1}: 'skip' needs a reason: <!-- doc-test: skip — why -->`);
      pending.skip = reason || "(no reason)";
    } else if (verb === "timeout") {
      const s = Number(rest);
      if (!(s > 0)) problems.push(`line ${i + 1}: 'timeout' needs seconds > 0, got '${rest}'`);
      else pending.timeoutS = s;
    } else if (verb === "expect-exit") {
      const n = Number(rest);
      if (!Number.isInteger(n)) problems.push(`line ${i + 1}: 'expect-exit' needs an integer, got '${rest}'`);
      else pending.expectExit = n;
    } else if (verb === "expect") {
      try {
        pending.expects.push(JSON.parse(rest) as string);
      } catch {
        problems.push(`line ${i + 1}: 'expect' needs a JSON string, got '${rest}'`);
      }
    } else if (verb === "sub") {
      const m = /^("(?:[^"\\]|\\.)*")\s*=>\s*("(?:[^"\\]|\\.)*")$/.exec(rest);
      if (!m) problems.push(`line ${i + 1}: 'sub' needs "from" => "to" (JSON strings), got '${rest}'`);
      else subs.push({ from: JSON.parse(m[1]) as string, to: JSON.parse(m[2]) as string });
    } else {
      problems.push(`line ${i + 1}: unknown doc-test directive '${verb}'`);
    }
  }
  return { blocks, problems };
}

/** Lines of a block that call the CLI as bare `mpo …` (the docs' command form is `npx mpo …`). */
export function bareMpoLines(code: string): string[] {
  return code.split("\n").filter((l) => /(^|[;&|(`]\s*)mpo\s/.test(l.replace(/(^|\s)#.*$/, "").trim()));
}

/**
 * Ports for the docs' fixed `--port N` servers. They are drawn from just below Linux's ephemeral range
 * (32768–60999 unless /proc says otherwise): the kernel gives port-0 listeners and outgoing connections ports
 * only from that range, so no other test can be handed one of ours between this check and the doc's own bind
 * (a port taken from `listen(0)` and released could be). Each vitest worker draws from its own slice, so two
 * workers never pick the same port; a port some other program holds fails the bind check and is skipped.
 */
const taken = new Set<number>();
async function freePort(): Promise<number> {
  let low = 32768;
  try {
    low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || low;
  } catch {
    /* not Linux: keep the default */
  }
  const slice = 1500, worker = Math.max(1, Number(process.env.VITEST_POOL_ID) || 1);
  const base = Math.max(1024, low - slice * ((worker % 8) + 1));
  for (let tries = 0; tries < 200; tries++) {
    const port = base + Math.floor(Math.random() * slice);
    if (taken.has(port) || !(await bindable(port))) continue;
    taken.add(port);
    return port;
  }
  throw new Error(`no free port in ${base}–${base + slice - 1}`);
}

function bindable(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once("error", () => res(false));
    s.listen(port, "127.0.0.1", () => s.close(() => res(true)));
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((res) => {
    const c = connect({ host: "127.0.0.1", port });
    c.once("connect", () => (c.destroy(), res(true)));
    c.once("error", () => res(false));
  });
}

export interface BlockResult {
  exitCode: number | null;
  signal: string | null;
  output: string;
  timedOut: boolean;
  /** The command text as run (after substitutions). */
  code: string;
  seconds: number;
}

/** One document's run: a temp working dir, a sim-server, free ports, and the process groups it started. */
export class DocSession {
  readonly dir: string;
  readonly env: Record<string, string>;
  private groups: number[] = [];
  private stopSim?: () => Promise<void>;
  private n = 0;

  private constructor(dir: string, env: Record<string, string>) {
    this.dir = dir;
    this.env = env;
  }

  static async open(docFile: string): Promise<DocSession> {
    const dir = mkdtempSync(join(tmpdir(), `mpo-doc-${docFile.replace(/[^\w]+/g, "-")}-`));
    for (const e of readdirSync(REPO)) {
      if (e === ".git" || e === "runs" || e === "test-artifacts") continue;
      symlinkSync(join(REPO, e), join(dir, e));
    }
    const { startSimServer } = await import("../../src/sandbox/sim-server.ts");
    const sim = await startSimServer({ port: 0, seed: 0 });
    const ports: number[] = [];
    for (let i = 0; i < 4; i++) ports.push(await freePort());
    const env: Record<string, string> = {
      MPO_SIM_URL: sim.url,
      MPO_SIM_MODEL: "mpo-sim-judge",
      REPO,
      ...Object.fromEntries(ports.map((p, i) => [`DOC_PORT_${i + 1}`, String(p)])),
    };
    const s = new DocSession(dir, env);
    s.stopSim = () => sim.app.close();
    return s;
  }

  /** The block's text after its substitutions, with $VARS of the runner expanded in the replacement texts. */
  render(block: DocBlock): string {
    let code = block.code;
    for (const { from, to } of block.subs) {
      const t = to.replace(/\$\{?(MPO_SIM_URL|MPO_SIM_MODEL|REPO|DOC_PORT_\d)\}?/g, (_, k: string) => this.env[k] ?? `$${k}`);
      code = code.split(from).join(t);
    }
    return code;
  }

  async run(block: DocBlock): Promise<BlockResult> {
    const code = this.render(block);
    const logPath = join(this.dir, `.doc-block-${++this.n}.log`);
    const fd = openSync(logPath, "w");
    const t0 = Date.now();
    const child = spawn("bash", ["-e", "-o", "pipefail", "-c", code], {
      cwd: this.dir,
      env: { ...process.env, ...this.env, NO_COLOR: "1", FORCE_COLOR: "0", npm_config_update_notifier: "false", npm_config_fund: "false" },
      stdio: ["ignore", fd, fd],
      detached: true,
    });
    closeSync(fd);
    if (child.pid) this.groups.push(child.pid);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid) killGroup(child.pid, "SIGKILL");
    }, block.timeoutS * 1000);
    const [exitCode, signal] = await new Promise<[number | null, string | null]>((res) => child.once("exit", (c, s) => res([c, s])));
    // Background servers the block started (`… --port N … &`): ready means accepting connections.
    const bgPorts = code
      .split("\n")
      .filter((l) => /&\s*(#.*)?$/.test(l) && !/&&\s*(#.*)?$/.test(l))
      .flatMap((l) => [...l.matchAll(/--port[ =](\d+)/g)].map((m) => Number(m[1])));
    while (!timedOut && exitCode === 0 && bgPorts.length) {
      const ready = await Promise.all(bgPorts.map(accepts));
      if (ready.every(Boolean)) break;
      await new Promise((r) => setTimeout(r, 100)); // polling a condition (connect), not sleeping in place of it
    }
    clearTimeout(timer);
    return { exitCode, signal, timedOut, code, output: readFileSync(logPath, "utf8"), seconds: (Date.now() - t0) / 1000 };
  }

  async close(): Promise<void> {
    for (const g of this.groups) killGroup(g, "SIGTERM");
    await this.stopSim?.();
    // Give SIGTERMed servers a moment to flush before the directory goes; then remove the temp dir only.
    for (const g of this.groups) killGroup(g, "SIGKILL");
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function killGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    /* already gone */
  }
}

/** The documents under test, relative to the repo root. */
export function docFiles(): string[] {
  const out = ["README.md"];
  for (const f of readdirSync(join(REPO, "docs")).sort()) if (f.endsWith(".md")) out.push(`docs/${f}`);
  out.push("examples/README.md");
  for (const e of readdirSync(join(REPO, "examples"), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name)))
    if (e.isDirectory()) {
      try {
        readFileSync(join(REPO, "examples", e.name, "README.md"));
        out.push(`examples/${e.name}/README.md`);
      } catch {
        /* no README */
      }
    }
  return out;
}

// CLI: run one or more docs and print every block's outcome.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const files = process.argv.slice(2).length ? process.argv.slice(2) : docFiles();
  let failed = 0;
  for (const f of files) {
    const rel = relative(REPO, resolve(f));
    const doc = parseDoc(readFileSync(join(REPO, rel), "utf8"));
    for (const p of doc.problems) console.log(`${rel}: ${p}`), failed++;
    const s = await DocSession.open(rel);
    try {
      for (const b of doc.blocks) {
        if (b.skip) {
          console.log(`\n=== ${rel}:${b.line} SKIP — ${b.skip}`);
          continue;
        }
        console.log(`\n=== ${rel}:${b.line}`);
        const r = await s.run(b);
        console.log(r.code.replace(/^/gm, "$ "));
        console.log(r.output.trimEnd());
        const ok = !r.timedOut && r.exitCode === b.expectExit && b.expects.every((e) => r.output.includes(e));
        console.log(`--- ${ok ? "ok" : "FAILED"} (exit ${r.exitCode}${r.timedOut ? ", timed out" : ""}, ${r.seconds.toFixed(1)} s)`);
        if (!ok) failed++;
      }
    } finally {
      await s.close();
    }
  }
  process.exit(failed ? 1 : 0);
}
