import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, mkdirSync, writeFileSync, existsSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parquetWriteBuffer } from "hyparquet-writer";
import { readCsvFile, readJsonlFile, readParquetFile, readTable, getField, requireText } from "../src/data/files.ts";
import { fileMatchesSplit } from "../src/data/hf.ts";
import { UserError } from "../src/util/errors.ts";

const dir = mkdtempSync(join(tmpdir(), "mpo-data-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A port that was just free: listen on 0, note the port, close. Connections to it are refused. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe("local readers", () => {
  it("reads JSONL and names file + line on a bad line", () => {
    const p = join(dir, "a.jsonl");
    writeFileSync(p, '{"id": 1, "action": {"description": "x"}}\n\n{"id": 2}\n');
    const rows = readJsonlFile(p);
    expect(rows).toHaveLength(2);
    expect(getField(rows[0], "action.description")).toBe("x");
    expect(getField(rows[1], "action.description")).toBeUndefined();
    expect(() => requireText(rows[1], "action.description", { file: p, row: 2 })).toThrow(/a\.jsonl:3: field 'action\.description': expected non-empty text, got nothing/); // line 3: blank line 2 is skipped
    writeFileSync(p, '{"id": 1}\n{"id": 2,,}\n');
    expect(() => readJsonlFile(p)).toThrow(/a\.jsonl:2: not valid JSON/);
    writeFileSync(p, '{"id": 1}\n[1,2]\n');
    expect(() => readJsonlFile(p)).toThrow(/a\.jsonl:2: expected a JSON object, got an array/);
    expect(() => readJsonlFile(join(dir, "missing.jsonl"))).toThrow(/data file not found/);
  });

  it("reads CSV with quoting and reports malformed rows with their line", async () => {
    const p = join(dir, "b.csv");
    writeFileSync(p, 'title,text\n"A, B","line one\nline two"\nplain,"say ""hi"""\n');
    const rows = await readCsvFile(p);
    expect(rows).toEqual([
      { title: "A, B", text: "line one\nline two" },
      { title: "plain", text: 'say "hi"' },
    ]);
    // Row errors name the line the record starts on (records may span lines).
    expect(() => requireText(rows[1], "missing", { file: p, row: 2 })).toThrow(/b\.csv:4: field 'missing'/);
    writeFileSync(p, 'title,text\nok,fine\nbad,"unclosed\n');
    await expect(readCsvFile(p)).rejects.toThrow(/b\.csv:\d+.*(quote|Quote)/);
    writeFileSync(p, "title,text\na,b,c\n");
    await expect(readCsvFile(p)).rejects.toThrow(/b\.csv:2/);
  });

  it("reads Parquet written by another implementation", async () => {
    const p = join(dir, "c.parquet");
    const buf = parquetWriteBuffer({
      columnData: [
        { name: "text", data: ["SECTION 1. Short title.", "SEC. 2. Findings."], type: "STRING" },
        { name: "summary", data: ["Sets a title.", "States findings."], type: "STRING" },
        { name: "n", data: [1, 2], type: "INT32" },
      ],
    });
    writeFileSync(p, new Uint8Array(buf));
    const rows = await readParquetFile(p);
    expect(rows).toEqual([
      { text: "SECTION 1. Short title.", summary: "Sets a title.", n: 1 },
      { text: "SEC. 2. Findings.", summary: "States findings.", n: 2 },
    ]);
    expect(await readTable(p, { limit: 1 })).toHaveLength(1);
    writeFileSync(join(dir, "broken.parquet"), "not parquet at all");
    await expect(readParquetFile(join(dir, "broken.parquet"))).rejects.toThrow(/broken\.parquet: cannot read Parquet/);
    await expect(readTable(join(dir, "x.xlsx"))).rejects.toThrow(/unsupported data file type '.xlsx'/);
  });
});

describe("Hugging Face datasets", () => {
  it("matches split files by name", () => {
    expect(fileMatchesSplit("data/test-00000-of-00001.parquet", "test")).toBe(true);
    expect(fileMatchesSplit("data/ca_test-00000-of-00001.parquet", "test")).toBe(false);
    expect(fileMatchesSplit("default/test/0000.parquet", "test")).toBe(true);
    expect(fileMatchesSplit("test.jsonl", "test")).toBe(true);
    expect(fileMatchesSplit("README.md", "test")).toBe(false);
  });
});
