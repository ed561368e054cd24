import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, mkdirSync, writeFileSync, existsSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parquetWriteBuffer } from "hyparquet-writer";
import { readCsvFile, readJsonlFile, readParquetFile, readTable, getField, requireText } from "../src/data/files.ts";
import { fileMatchesSplit, hfCachePath, hfDataset } from "../src/data/hf.ts";
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

  it("an unreachable Hub gives a UserError naming the files to fetch and where to put them; files put there by hand are used", async () => {
    const port = await closedPort();
    const cacheDir = join(dir, "hf-cache");
    const err = await hfDataset("FiscalNote/billsum", "test", { cacheDir, hubUrl: `http://127.0.0.1:${port}`, files: ["data/test-00000-of-00001.parquet"] }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    const target = hfCachePath("FiscalNote/billsum", "test", cacheDir);
    expect(err.message).toContain(`http://127.0.0.1:${port}/datasets/FiscalNote/billsum/resolve/main/data/test-00000-of-00001.parquet`);
    expect(err.message).toContain(target);
    // Without a file list it points at the repo's file tree.
    const err2 = await hfDataset("FiscalNote/billsum", "train", { cacheDir, hubUrl: `http://127.0.0.1:${port}` }).catch((e) => e);
    expect(err2.message).toMatch(/Fetch it by hand: download the 'train' data files .* listed at http:\/\/127\.0\.0\.1:\d+\/datasets\/FiscalNote\/billsum\/tree\/main/);
    // Fetched by hand → read offline.
    mkdirSync(target, { recursive: true });
    writeFileSync(join(target, "test-00000-of-00001.jsonl"), '{"text": "t", "summary": "s", "title": "x"}\n');
    const rows = await hfDataset("FiscalNote/billsum", "test", { cacheDir, hubUrl: `http://127.0.0.1:${port}` });
    expect(rows).toEqual([{ text: "t", summary: "s", title: "x" }]);
  });

  it("downloads once from a Hub over HTTP, then reads offline from the cache", async () => {
    const body = Buffer.from('{"text": "bill one", "summary": "s1"}\n{"text": "bill two", "summary": "s2"}\n');
    const requests: string[] = [];
    const server: Server = createServer((req, res) => {
      requests.push(`${req.method} ${req.url}`);
      const url = new URL(req.url!, "http://x");
      if (url.pathname === "/api/datasets/acme/bills/tree/main") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify([
          { type: "file", path: "README.md", size: 10, oid: "a" },
          { type: "file", path: "data/test-00000-of-00001.jsonl", size: body.length, oid: "b" },
          { type: "file", path: "data/train-00000-of-00001.jsonl", size: body.length, oid: "c" },
        ]));
        return;
      }
      if (url.pathname === "/datasets/acme/bills/resolve/main/data/test-00000-of-00001.jsonl") {
        const m = /bytes=(\d+)-(\d*)/.exec(req.headers.range ?? "");
        const start = m ? Number(m[1]) : 0;
        const end = m && m[2] ? Math.min(Number(m[2]), body.length - 1) : body.length - 1;
        res.writeHead(m ? 206 : 200, { etag: '"e1"', "content-range": `bytes ${start}-${end}/${body.length}`, "content-length": end - start + 1, "content-type": "application/octet-stream" });
        res.end(body.subarray(start, end + 1));
        return;
      }
      res.writeHead(404, { "x-error-code": "EntryNotFound" });
      res.end("{}");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const hubUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const cacheDir = join(dir, "hf-cache-2");
    const rows = await hfDataset("acme/bills", "test", { cacheDir, hubUrl });
    expect(rows.map((r) => r.text)).toEqual(["bill one", "bill two"]);
    expect(requests.some((r) => r.includes("train-0000"))).toBe(false);
    expect(existsSync(join(hfCachePath("acme/bills", "test", cacheDir), ".complete.json"))).toBe(true);
    await new Promise<void>((r) => server.close(() => r()));
    const n = requests.length;
    const again = await hfDataset("acme/bills", "test", { cacheDir, hubUrl, limit: 1 });
    expect(again).toEqual([{ text: "bill one", summary: "s1" }]);
    expect(requests.length).toBe(n);
  });
});
