/**
 * Executable documentation: every ```bash / ```sh block of README.md, docs/*.md and examples/**\/README.md runs
 * here, in order, each doc in its own temp working dir (symlinks to the repo's top-level entries), against a
 * simulated-judge server the runner starts (`$MPO_SIM_URL`). Only substitutions the doc itself declares
 * (`<!-- doc-test: sub "from" => "to" -->`) change what runs; blocks that cannot run here carry
 * `<!-- doc-test: skip — reason -->`. Full convention: test/helpers/doc-runner.ts and the project NOTES.
 *
 * One doc:  npx vitest run test/docs.test.ts -t "docs/serve.md"
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { bareMpoLines, DocSession, docFiles, parseDoc, REPO } from "./helpers/doc-runner.ts";

describe("doc-test convention parser", () => {
  test("directives bind to the next fence; subs are file-scoped; bad directives are reported", () => {
    const md = [
      '<!-- doc-test: sub "--steps 100" => "--steps 2" -->',
      "```bash",
      "npx mpo train --steps 100",
      "```",
      "<!-- doc-test: skip — needs a GPU -->",
      "```sh",
      "nvidia-smi",
      "```",
      "```ts",
      "not run",
      "```",
      "<!-- doc-test: timeout 5 -->",
      '<!-- doc-test: expect "done" -->',
      "<!-- doc-test: expect-exit 2 -->",
      "```bash",
      "echo done; exit 2",
      "```",
      "<!-- doc-test: skip -->",
      "<!-- doc-test: frobnicate -->",
      "```bash",
      "true",
      "```",
    ].join("\n");
    const { blocks, problems } = parseDoc(md);
    expect(blocks.map((b) => b.line)).toEqual([2, 6, 15, 20]);
    expect(blocks[0].subs).toEqual([{ from: "--steps 100", to: "--steps 2" }]);
    expect(blocks[1].skip).toBe("needs a GPU");
    expect(blocks[2]).toMatchObject({ timeoutS: 5, expectExit: 2, expects: ["done"], skip: undefined });
    expect(problems.join("\n")).toMatch(/'skip' needs a reason/);
    expect(problems.join("\n")).toMatch(/unknown doc-test directive 'frobnicate'/);
  });

  test("bare `mpo` command lines are found, `npx mpo` and prose mentions are not", () => {
    expect(bareMpoLines("mpo train --steps 1\nnpx mpo score\nfoo && mpo eval elo\n# mpo in a comment\necho ok # then mpo x")).toEqual([
      "mpo train --steps 1",
      "foo && mpo eval elo",
    ]);
  });
});

for (const file of docFiles()) {
  const doc = parseDoc(readFileSync(join(REPO, file), "utf8"));
  describe(file, () => {
    let session: DocSession | undefined;
    const runnable = doc.blocks.filter((b) => !b.skip);
    beforeAll(async () => {
      if (runnable.length) session = await DocSession.open(file);
    });
    afterAll(async () => {
      await session?.close();
    });

    test("directives are well-formed and commands use `npx mpo`", () => {
      expect(doc.problems).toEqual([]);
      const bare = doc.blocks.flatMap((b) => bareMpoLines(b.code).map((l) => `line ~${b.line}: ${l}`));
      expect(bare, "write `npx mpo …` (the command a fresh clone has)").toEqual([]);
    });

    for (const b of doc.blocks) {
      const name = `block at line ${b.line}: ${b.code.split("\n").find((l) => l.trim() && !l.trim().startsWith("#"))?.trim().slice(0, 60) ?? ""}`;
      if (b.skip) {
        test.skip(`${name} (skipped in the doc: ${b.skip})`, () => {});
        continue;
      }
      test(name, async () => {
        const r = await session!.run(b);
        const context = `\n--- ran (cwd ${session!.dir}):\n${r.code}\n--- output:\n${r.output.slice(-6000)}`;
        expect(r.timedOut, `timed out after ${b.timeoutS} s${context}`).toBe(false);
        expect(r.exitCode, `exit code${context}`).toBe(b.expectExit);
        for (const e of b.expects) expect(r.output, `expected output to contain ${JSON.stringify(e)}${context}`).toContain(e);
      }, (b.timeoutS + 30) * 1000);
    }
  });
}
