/**
 * The package as a stranger gets it: `npm pack` (prepack compiles src/ to dist/ with declarations) → a fresh
 * project elsewhere installs the tarball → README's "Library API" snippet, taken from README.md as written
 * (only the judge URL and model name pointed at a simulated judge server), is type-checked against the
 * installed package's declarations and run with plain Node (no tsx); the installed `mpo` command runs.
 * Slow by nature (a full compile and an npm install): one test, generous timeout.
 */
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import ts from "typescript";
import { afterAll, describe, expect, it } from "vitest";
import { startSimServer } from "../src/sandbox/sim-server.ts";

const REPO = resolve(import.meta.dirname, "..");
const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { name: string; version: string };
const dir = mkdtempSync(join(tmpdir(), "mpo-pack-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The ```ts block under "## Library API" in README.md. */
function readmeLibrarySnippet(): string {
  const readme = readFileSync(join(REPO, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Library API"));
  const m = /```ts\n([\s\S]*?)```/.exec(section);
  if (!m) throw new Error("README.md: no ```ts block under ## Library API");
  return m[1];
}

const npm = (args: string[], cwd: string) => execFileSync("npm", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, npm_config_update_notifier: "false" } });

describe("npm pack → install in another project → import with types, run the mpo command", () => {
  it("README's Library API snippet type-checks and runs from a separate project; `mpo` works without tsx", async () => {
    npm(["pack", "--pack-destination", dir], REPO);
    const tarball = join(dir, `${pkg.name}-${pkg.version}.tgz`);
    expect(existsSync(tarball)).toBe(true);

    const app = join(dir, "app");
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "consumer-app", version: "1.0.0", type: "module", private: true }));
    npm(["install", "--prefer-offline", "--no-audit", "--no-fund", tarball], app);
    const installed = join(app, "node_modules", pkg.name);
    expect(existsSync(join(installed, "dist", "index.d.ts"))).toBe(true);
    expect(existsSync(join(installed, "src"))).toBe(false);
    expect(existsSync(join(app, "node_modules", "tsx"))).toBe(false);

    const sim = await startSimServer();
    try {
      // The snippet exactly as README shows it, with the package name a consumer would import.
      const snippet = readmeLibrarySnippet()
        .replace("http://127.0.0.1:8000/v1", sim.url)
        .replace("Qwen2.5-32B-Instruct-AWQ", "mpo-sim-judge");
      expect(snippet).toContain(`from "${pkg.name}"`);
      const file = join(app, "snippet.ts");
      writeFileSync(file, snippet);

      // Types: compile against node_modules/<pkg>/dist/*.d.ts as a consumer's tsc would.
      const program = ts.createProgram([file], {
        module: ts.ModuleKind.NodeNext,
        moduleResolution: ts.ModuleResolutionKind.NodeNext,
        target: ts.ScriptTarget.ES2022,
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        types: ["node"],
        typeRoots: [join(REPO, "node_modules", "@types")],
      });
      const diags = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
      expect(diags).toEqual([]);

      // Run: the same code as plain JavaScript on Node (no tsx, no loader).
      const js = ts.transpileModule(snippet, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
      writeFileSync(join(app, "snippet.mjs"), js);
      // Async: the simulated judge server runs in this process, so blocking here would starve it.
      const { stdout: out } = await promisify(execFile)(process.execPath, ["snippet.mjs"], { cwd: app, encoding: "utf8", timeout: 120_000 });
      const [scoreLine, metaLine] = out.trim().split("\n");
      expect(scoreLine).toMatch(/^\d+(\.\d+)? \d(\.\d+)? /); // total, normalized, items
      expect(metaLine).toBeTruthy();
      expect(readdirSync(join(app, "runs", "manual"))).toContain("rubrics");
    } finally {
      await sim.app.close();
    }

    // The installed command (what `npx mpo` runs in that project, and what `npm install -g` links).
    const version = execFileSync(join(app, "node_modules", ".bin", "mpo"), ["--version"], { cwd: app, encoding: "utf8" });
    expect(version.trim()).toBe(pkg.version);
    const help = execFileSync(join(app, "node_modules", ".bin", "mpo"), ["train", "--help"], { cwd: app, encoding: "utf8" });
    expect(help).toContain("--data-file");
  }, 600_000);
});
