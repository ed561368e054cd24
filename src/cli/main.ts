/**
 * The `mpo` command line. Each subcommand lives in its own module under ./commands/ and exports
 * `register(program)`; this file discovers them, so parts of the project add commands without editing
 * a shared list. Command modules keep heavy imports inside their action handlers (dynamic import) so
 * `mpo --help` stays fast.
 */
import { Command } from "commander";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { UserError } from "../util/errors.ts";

export async function buildProgram(): Promise<Command> {
  const program = new Command();
  program
    .name("mpo")
    .description("Meta Policy Optimization: RL for language models with evolving LLM-judge rubrics")
    .version("0.1.0")
    .showHelpAfterError();
  const dir = join(dirname(fileURLToPath(import.meta.url)), "commands");
  // .ts from a checkout (run through tsx), .js from the compiled package (dist/).
  const files = readdirSync(dir).filter((f) => (f.endsWith(".ts") && !f.endsWith(".d.ts")) || f.endsWith(".js")).sort();
  for (const f of files) {
    const mod = await import(pathToFileURL(join(dir, f)).href);
    if (typeof mod.register === "function") mod.register(program);
  }
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = await buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof UserError) {
      process.stderr.write(`mpo: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

const isEntry = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (isEntry) await main(process.argv);
