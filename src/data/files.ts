/**
 * Local dataset readers (JSONL, CSV, Parquet) returning plain row objects, plus field access with
 * dotted paths (`action.description`). Every problem names the file, the line/row and the field, because
 * data files are the most common thing a user gets wrong. Unlike util/atomic.readJsonl (which skips a
 * torn last line of our own logs), a bad line in a user's dataset is an error: silently dropping
 * examples would change results.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { extname } from "node:path";
import { UserError } from "../util/errors.ts";

export type Row = Record<string, unknown>;

export class DataFileError extends UserError {
  constructor(
    readonly file: string,
    /** 1-based line number in the file (JSONL/CSV), or a label such as "row 3" (Parquet). */
    readonly line: number | string | null,
    readonly field: string | null,
    problem: string,
  ) {
    super(`${file}${line === null ? "" : typeof line === "number" ? `:${line}` : ` (${line})`}${field ? `: field '${field}'` : ""}: ${problem}`);
    this.name = "DataFileError";
  }
}

/** Where each row read by these readers came from (line in the file, or "row N"), for error messages. */
const rowOrigin = new WeakMap<object, number | string>();

/** The line (or "row N") a row was read from; `fallback` (1-based index) when unknown. */
export function rowLocation(row: Row, fallback: number): number | string {
  return rowOrigin.get(row) ?? fallback;
}

function mustExist(path: string): void {
  if (!existsSync(path)) throw new UserError(`data file not found: ${path}`);
  if (statSync(path).isDirectory()) throw new UserError(`expected a data file but found a directory: ${path}`);
}

/** One JSON object per line; blank lines are skipped; anything else that is not an object is an error. */
export function readJsonlFile(path: string, opts: { limit?: number } = {}): Row[] {
  mustExist(path);
  const rows: Row[] = [];
  const lines = readFileSync(path, "utf8").split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "") continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (err) {
      throw new DataFileError(path, i + 1, null, `not valid JSON (${(err as Error).message})`);
    }
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw new DataFileError(path, i + 1, null, `expected a JSON object, got ${Array.isArray(v) ? "an array" : typeof v}`);
    rows.push(v as Row);
    rowOrigin.set(v as Row, i + 1);
    if (opts.limit !== undefined && rows.length >= opts.limit) break;
  }
  return rows;
}

/** A JSON file holding an array of objects (or one object per key, which becomes rows with `_key`). */
export function readJsonFile(path: string, opts: { limit?: number } = {}): Row[] {
  mustExist(path);
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new DataFileError(path, null, null, `not valid JSON (${(err as Error).message})`);
  }
  const rows = Array.isArray(v) ? v : v && typeof v === "object" ? Object.entries(v).map(([k, x]) => ({ _key: k, ...(x as object) })) : null;
  if (!rows) throw new DataFileError(path, null, null, "expected an array of objects");
  rows.forEach((r, i) => {
    if (r === null || typeof r !== "object" || Array.isArray(r)) throw new DataFileError(path, null, `[${i}]`, "expected an object");
  });
  return (opts.limit !== undefined ? rows.slice(0, opts.limit) : rows) as Row[];
}

/** CSV with a header row (RFC 4180 quoting, via csv-parse). Values stay strings. */
export async function readCsvFile(path: string, opts: { limit?: number; delimiter?: string } = {}): Promise<Row[]> {
  mustExist(path);
  const { parse } = await import("csv-parse/sync");
  try {
    const out = parse(readFileSync(path, "utf8"), {
      columns: true,
      skip_empty_lines: true,
      bom: true,
      info: true,
      delimiter: opts.delimiter ?? (extname(path).toLowerCase() === ".tsv" ? "\t" : ","),
      to: opts.limit,
    }) as unknown as Array<{ record: Row; info: { lines: number } }>;
    return out.map(({ record, info }) => {
      rowOrigin.set(record, info.lines);
      return record;
    });
  } catch (err) {
    const e = err as Error & { lines?: number; column?: string | number };
    throw new DataFileError(path, e.lines ?? null, e.column !== undefined ? String(e.column) : null, e.message);
  }
}

/** Parquet via hyparquet (pure JS; snappy/gzip/brotli built in). BigInt values become numbers when safe. */
export async function readParquetFile(path: string, opts: { limit?: number; columns?: string[] } = {}): Promise<Row[]> {
  mustExist(path);
  const { asyncBufferFromFile, parquetReadObjects } = await import("hyparquet");
  try {
    const file = await asyncBufferFromFile(path);
    const rows = (await parquetReadObjects({ file, columns: opts.columns, rowEnd: opts.limit })) as Row[];
    return rows.map((r, i) => {
      for (const [k, v] of Object.entries(r)) if (typeof v === "bigint" && Number.isSafeInteger(Number(v))) r[k] = Number(v);
      rowOrigin.set(r, `row ${i + 1}`);
      return r;
    });
  } catch (err) {
    throw new DataFileError(path, null, null, `cannot read Parquet (${(err as Error).message})`);
  }
}

/** Reads any supported file by extension: .jsonl/.ndjson, .json, .csv/.tsv, .parquet. */
export async function readTable(path: string, opts: { limit?: number } = {}): Promise<Row[]> {
  const ext = extname(path).toLowerCase();
  if (ext === ".jsonl" || ext === ".ndjson") return readJsonlFile(path, opts);
  if (ext === ".json") return readJsonFile(path, opts);
  if (ext === ".csv" || ext === ".tsv") return readCsvFile(path, opts);
  if (ext === ".parquet") return readParquetFile(path, opts);
  throw new UserError(`unsupported data file type '${ext || "(none)"}' for ${path}: use .jsonl, .json, .csv, .tsv or .parquet`);
}

/** Value at a dotted path (`action.description`), or undefined. */
export function getField(row: Row, path: string): unknown {
  let cur: unknown = row;
  for (const part of path.split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/**
 * A required field as text: numbers are stringified; missing/null/empty or non-scalar values are a
 * DataFileError naming the file, the row (1-based) and the field.
 */
export function requireText(row: Row, field: string, where: { file: string; row: number }): string {
  const v = getField(row, field);
  if (typeof v === "string" && v.trim() !== "") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  const got = v === undefined ? "nothing (field missing)" : v === null ? "null" : typeof v === "string" ? "an empty string" : typeof v;
  throw new DataFileError(where.file, rowLocation(row, where.row), field, `expected non-empty text, got ${got} (fields present: ${Object.keys(row).join(", ") || "none"})`);
}

/** An optional field as text (undefined when missing or null). */
export function optionalText(row: Row, field: string | undefined): string | undefined {
  if (!field) return undefined;
  const v = getField(row, field);
  if (v === undefined || v === null) return undefined;
  return typeof v === "string" ? v : typeof v === "object" ? JSON.stringify(v) : String(v);
}
