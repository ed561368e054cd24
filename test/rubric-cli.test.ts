import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { Command } from "commander";
import { register } from "../src/cli/commands/rubric.ts";
import { GuidelineStore, RubricStore } from "../src/rubric/store.ts";
import { UserError } from "../src/util/errors.ts";

const ROOT = resolve(__dirname, "..");

/** Runs the real CLI (`tsx src/cli/main.ts …`) in a child process: exit codes and stderr as a user sees them. */
function mpoProcess(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { cwd: ROOT });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("error", rej);
    p.on("close", (code) => res({ code, stdout, stderr }));
  });
}

/**
 * Runs the `rubric` command group in-process (fast): same parsing and handlers as the CLI; a UserError
 * maps to exit code 2 with its message on stderr, as src/cli/main.ts does.
 */
async function mpo(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const program = new Command().name("mpo").version("0.1.0").exitOverride();
  register(program);
  program.commands.forEach((c) => c.exitOverride().commands.forEach((s) => s.exitOverride()));
  let stdout = "";
  const write = process.stdout.write;
  process.stdout.write = ((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  try {
    await program.parseAsync(["node", "mpo", ...args]);
    return { code: 0, stdout, stderr: "" };
  } catch (err) {
    if (err instanceof UserError) return { code: 2, stdout, stderr: `mpo: ${err.message}\n` };
    throw err;
  } finally {
    process.stdout.write = write;
  }
}

describe("mpo rubric CLI", () => {
  it("imports, lists, shows and diffs versions of a run", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mpo-cli-"));
    const run = join(dir, "run");
    mkdirSync(run);
    writeFileSync(join(dir, "r0.txt"), "<rubric><item>### Clarity\nIs it clear? Score 0 to 5.</item></rubric>");
    writeFileSync(
      join(dir, "r1.json"),
      JSON.stringify({ items: [{ name: "clarity", text: "Is it clear?\nNo title-only answers. Score 0 to 5.", min: 0, max: 5 }, { name: "depth", text: "Deep.", min: 0, max: 3 }] }),
    );

    let r = await mpo(["rubric", "import", "--run", run, "--file", join(dir, "r0.txt")]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/added rubric v0 \(1 items, parent none\)/);
    r = await mpo(["rubric", "import", "--run", run, "--file", join(dir, "r1.json"), "--note", "hand edit", "--step", "20"]);
    expect(r.stdout).toMatch(/added rubric v1 \(2 items, parent v0\)/);
    // A meta version written by the library appears with its analyses.
    RubricStore.open(run).add({ rubric: { items: [{ name: "depth", text: "Deep.", min: 0, max: 3 }] }, step: 30, author: { kind: "meta", step: 30 }, analyses: ["meta/step-000030.json"] });

    r = await mpo(["rubric", "history", "--run", run]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^version\s+parent\s+step\s+author\s+items\s+analyses$/);
    expect(lines[1]).toMatch(/^v0\s+-\s+0\s+user\s+1\s+-$/);
    expect(lines[2]).toMatch(/^v1\s+v0\s+20\s+user \(hand edit\)\s+2\s+-$/);
    expect(lines[3]).toMatch(/^v2\s+v1\s+30\s+meta@30\s+1\s+meta\/step-000030\.json$/);

    r = await mpoProcess(["rubric", "show", "--run", run, "--version", "1"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^# rubric v1 \(parent v0, step 20, author user \(hand edit\), 2 items, total 0–8/);
    expect(r.stdout).toContain('<item name="depth" min="0" max="3">\nDeep.\n</item>');
    r = await mpo(["rubric", "show", "--run", run, "--json"]);
    expect(JSON.parse(r.stdout)).toMatchObject({ version: 2, parent: 1, analyses: ["meta/step-000030.json"] });
    r = await mpo(["rubric", "show", "--file", join(dir, "r0.txt"), "--json"]);
    expect(JSON.parse(r.stdout)).toEqual({ items: [{ name: "clarity", text: "### Clarity\nIs it clear? Score 0 to 5.", min: 0, max: 5 }] });

    r = await mpo(["rubric", "diff", "--run", run, "0", "v1"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("rubric v0 → v1: 2 items (+1, −0, ~1 changed)");
    expect(r.stdout).toContain("~ changed clarity");
    expect(r.stdout).toContain("+ added depth (0–3)");
  }, 120_000);

  it("shows and lists math guideline versions with --guidelines", async () => {
    const run = mkdtempSync(join(tmpdir(), "mpo-cli-"));
    let r = await mpo(["rubric", "show", "--run", run, "--guidelines"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no guideline set versions in/);
    const g = GuidelineStore.open(run);
    g.initialize({ groups: { "algebra/0": "Check each step." } });
    g.add({ guidelines: { groups: { "algebra/0": "Check signs.", "geometry/1": "Check the figure." } }, step: 20, author: { kind: "meta", step: 20 }, analyses: ["meta/step-000020.json"] });
    r = await mpo(["rubric", "history", "--run", run, "--guidelines"]);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^version\s+parent\s+step\s+author\s+groups\s+analyses$/);
    expect(lines[2]).toMatch(/^v1\s+v0\s+20\s+meta@20\s+2\s+meta\/step-000020\.json$/);
    r = await mpo(["rubric", "show", "--run", run, "--guidelines", "--version", "0"]);
    expect(r.stdout).toContain("# guidelines v0 (parent none, step 0, author initial, 1 groups");
    expect(r.stdout).toContain("## algebra/0\n\nCheck each step.");
    r = await mpo(["rubric", "history", "--run", run]);
    expect(r.stdout).toMatch(/no rubric versions in/);
  });

  it("gives clear errors (exit 2) for a missing run dir, version or file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mpo-cli-"));
    let r = await mpoProcess(["rubric", "history", "--run", join(dir, "nope")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/run directory not found: .*nope/);
    r = await mpo(["rubric", "show", "--run", dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no rubric versions in/);
    RubricStore.open(dir).initialize({ items: [{ name: "a", text: "t", min: 0, max: 5 }] });
    r = await mpo(["rubric", "diff", "--run", dir, "0", "5"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/rubric version v5 not found .*have v0–v0/);
    r = await mpo(["rubric", "show", "--run", dir, "--version", "abc"]);
    expect(r.stderr).toMatch(/version must be a version number/);
    r = await mpo(["rubric", "import", "--run", dir, "--file", join(dir, "missing.txt")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/rubric file not found/);
    // (plain prose is a valid markdown rubric since the paper's rubric files parse as they are; blank is not)
    writeFileSync(join(dir, "empty.txt"), "  \n\n");
    r = await mpo(["rubric", "import", "--run", dir, "--file", join(dir, "empty.txt")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no rubric text found in .*empty\.txt/);
  }, 120_000);
});
