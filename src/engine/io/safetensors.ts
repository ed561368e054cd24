/**
 * Reader/writer for the safetensors format (https://github.com/huggingface/safetensors), so our weights
 * load in PyTorch / Hugging Face and theirs load here. Layout: 8-byte little-endian header length N, N
 * bytes of JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {str: str}},
 * then the byte buffer (offsets relative to its start). Like the reference writer we pad the header with
 * spaces to an 8-byte boundary and lay tensors out contiguously in sorted-name order.
 *
 * Reading validates everything a corrupt or truncated file can get wrong and reports the file and the
 * problem: a bad checkpoint must fail loudly, never load as garbage. F32 is our storage dtype; F16, BF16,
 * F64 are read (converted to f32) and I32/I64 are read as integer arrays.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import { UserError } from "../../util/errors.ts";
import { writeFileAtomic } from "../../util/atomic.ts";
// Round-to-nearest-even f32 → f16/bf16, checked bit for bit against numpy in test/gguf-export.test.ts.
import { f32ToBf16Bits, f32ToF16Bits } from "./gguf.ts";

export type SafetensorsDtype = "F32" | "F16" | "BF16" | "F64" | "I32" | "I64";

/** A float tensor (F32 on disk, or F16/BF16/F64 converted to f32 on read). */
export interface FloatTensor {
  dtype: "F32";
  shape: number[];
  data: Float32Array;
}
/** An integer tensor (I32 as is, I64 narrowed to numbers; values beyond 2^53 are rejected). */
export interface IntTensor {
  dtype: "I32" | "I64";
  shape: number[];
  data: Int32Array | Float64Array;
}
export type Tensor = FloatTensor | IntTensor;

export interface SafetensorsFile {
  tensors: Map<string, Tensor>;
  /** The file's original dtype per tensor (before conversion to f32). */
  sourceDtypes: Map<string, SafetensorsDtype>;
  metadata: Record<string, string>;
}

export class SafetensorsError extends UserError {
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: corrupt or unsupported safetensors file: ${problem}`);
    this.name = "SafetensorsError";
  }
}

const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I32: 4, I64: 8 };
/** Header size cap from the reference implementation (100 MB); anything larger is corruption. */
const MAX_HEADER = 100_000_000;

function shapeSize(shape: number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

/** Decodes an IEEE half float. */
function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Parses safetensors bytes; `file` names the source in errors. */
export function parseSafetensors(bytes: Uint8Array, file = "<buffer>"): SafetensorsFile {
  const fail = (p: string): never => {
    throw new SafetensorsError(file, p);
  };
  if (bytes.length < 8) fail(`file is ${bytes.length} bytes, shorter than the 8-byte header length prefix (truncated?)`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = dv.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER)) fail(`header length ${n64} exceeds the ${MAX_HEADER}-byte limit`);
  const n = Number(n64);
  if (8 + n > bytes.length) fail(`header length ${n} runs beyond the end of the file (${bytes.length} bytes; truncated?)`);
  const headerText = Buffer.from(bytes.buffer, bytes.byteOffset + 8, n).toString("utf8");
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (e) {
    fail(`header is not valid JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) fail("header JSON is not an object");
  const dataStart = 8 + n;
  const dataLen = bytes.length - dataStart;
  const tensors = new Map<string, Tensor>();
  const sourceDtypes = new Map<string, SafetensorsDtype>();
  let metadata: Record<string, string> = {};
  const ranges: { name: string; begin: number; end: number }[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (raw === null || typeof raw !== "object" || Array.isArray(raw)) fail("__metadata__ is not an object");
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== "string") fail(`__metadata__.${k} is not a string`);
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (info === null || typeof info !== "object") fail(`tensor '${name}': entry is not an object`);
    const dtype = info.dtype;
    if (typeof dtype !== "string") fail(`tensor '${name}': missing dtype`);
    if (!(dtype as string in DTYPE_BYTES)) fail(`tensor '${name}': dtype '${dtype}' is not supported (F32, F16, BF16, F64, I32, I64)`);
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((s) => Number.isSafeInteger(s) && s >= 0))
      fail(`tensor '${name}': shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    const off = info.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0))
      fail(`tensor '${name}': data_offsets ${JSON.stringify(off)} is not [begin, end]`);
    const [begin, end] = off as [number, number];
    if (end < begin) fail(`tensor '${name}': data_offsets [${begin}, ${end}] end before begin`);
    if (end > dataLen) fail(`tensor '${name}': data_offsets [${begin}, ${end}] out of range (data section is ${dataLen} bytes; truncated?)`);
    const dt = dtype as SafetensorsDtype;
    const count = shapeSize(shape as number[]);
    if (count * DTYPE_BYTES[dt] !== end - begin)
      fail(`tensor '${name}': ${end - begin} bytes of data but shape ${JSON.stringify(shape)} × ${dt} needs ${count * DTYPE_BYTES[dt]}`);
    ranges.push({ name, begin, end });
    tensors.set(name, decode(bytes, dataStart + begin, count, dt, shape as number[], name, fail));
    sourceDtypes.set(name, dt);
  }
  // Like the reference loader: tensors must tile the data section exactly (no overlap, no gap, no
  // trailing bytes), which also catches files spliced or truncated at a tensor boundary.
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev = "";
  for (const r of ranges) {
    if (r.begin < cursor) fail(`tensor '${r.name}' data_offsets [${r.begin}, ${r.end}] overlap tensor '${prev}' (ends at ${cursor})`);
    if (r.begin > cursor) fail(`gap in data section: bytes [${cursor}, ${r.begin}) before tensor '${r.name}' belong to no tensor`);
    cursor = r.end;
    prev = r.name;
  }
  if (cursor !== dataLen) fail(`data section is ${dataLen} bytes but tensors cover ${cursor} (trailing bytes or wrong offsets)`);
  return { tensors, sourceDtypes, metadata };
}

function decode(
  bytes: Uint8Array,
  start: number,
  count: number,
  dt: SafetensorsDtype,
  shape: number[],
  name: string,
  fail: (p: string) => never,
): Tensor {
  const dv = new DataView(bytes.buffer, bytes.byteOffset + start, count * DTYPE_BYTES[dt]);
  switch (dt) {
    case "F32": {
      // Copy (not a view): the result must own aligned memory independent of the file buffer.
      const data = new Float32Array(count);
      new Uint8Array(data.buffer).set(bytes.subarray(start, start + count * 4));
      if (!littleEndian) for (let i = 0; i < count; i++) data[i] = dv.getFloat32(i * 4, true);
      return { dtype: "F32", shape, data };
    }
    case "F64": {
      const data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = dv.getFloat64(i * 8, true);
      return { dtype: "F32", shape, data };
    }
    case "F16": {
      const data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = f16ToF32(dv.getUint16(i * 2, true));
      return { dtype: "F32", shape, data };
    }
    case "BF16": {
      const data = new Float32Array(count);
      const u = new Uint32Array(data.buffer);
      for (let i = 0; i < count; i++) u[i] = dv.getUint16(i * 2, true) << 16;
      return { dtype: "F32", shape, data };
    }
    case "I32": {
      const data = new Int32Array(count);
      for (let i = 0; i < count; i++) data[i] = dv.getInt32(i * 4, true);
      return { dtype: "I32", shape, data };
    }
    case "I64": {
      const data = new Float64Array(count);
      for (let i = 0; i < count; i++) {
        const v = dv.getBigInt64(i * 8, true);
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER))
          fail(`tensor '${name}': I64 value ${v} at index ${i} is beyond 2^53`);
        data[i] = Number(v);
      }
      return { dtype: "I64", shape, data };
    }
  }
}

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Reads and validates a .safetensors file. */
export function readSafetensors(path: string): SafetensorsFile {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(code === "ENOENT" ? `${path}: file not found` : `${path}: cannot read (${(e as Error).message})`);
  }
  return parseSafetensors(bytes, path);
}

/** Reads only the header (names, dtypes, shapes, offsets) without loading tensor data: cheap inspection of big files. */
export function readSafetensorsHeader(path: string): Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(code === "ENOENT" ? `${path}: file not found` : `${path}: cannot read (${(e as Error).message})`);
  }
  try {
    const size = fstatSync(fd).size;
    if (size < 8) throw new SafetensorsError(path, `file is ${size} bytes, shorter than the 8-byte header length prefix (truncated?)`);
    const pre = Buffer.alloc(8);
    readSync(fd, pre, 0, 8, 0);
    const n64 = pre.readBigUInt64LE(0);
    if (n64 > BigInt(MAX_HEADER)) throw new SafetensorsError(path, `header length ${n64} exceeds the ${MAX_HEADER}-byte limit`);
    const n = Number(n64);
    if (8 + n > size) throw new SafetensorsError(path, `header length ${n} runs beyond the end of the file (${size} bytes; truncated?)`);
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, 8);
    let h: Record<string, unknown>;
    try {
      h = JSON.parse(buf.toString("utf8"));
    } catch (e) {
      throw new SafetensorsError(path, `header is not valid JSON (${(e as Error).message})`);
    }
    if (h === null || typeof h !== "object" || Array.isArray(h)) throw new SafetensorsError(path, "header JSON is not an object");
    delete h.__metadata__;
    return h as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  } finally {
    closeSync(fd);
  }
}

/** What can be written: float data as F32 (or F16/BF16, see serializeSafetensors), Int32Array as I32. */
export type WritableTensor = { shape: readonly number[]; data: Float32Array | Int32Array };

/** The float dtypes we write: F32 (our storage dtype) or a published model's half dtype (exports). */
export type FloatStorageDtype = "F32" | "F16" | "BF16";

/**
 * Serializes tensors (sorted by name, contiguous, header space-padded to 8 bytes). Float tensors are written
 * as `floatDtype` (default F32; F16/BF16 round to nearest even — an f16 overflow is an error naming the tensor).
 */
export function serializeSafetensors(
  tensors: Map<string, WritableTensor> | Record<string, WritableTensor>,
  metadata?: Record<string, string>,
  floatDtype: FloatStorageDtype = "F32",
): Uint8Array {
  const entries = (tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors)).sort(([a], [b]) =>
    a < b ? -1 : a > b ? 1 : 0,
  );
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === "__metadata__") throw new Error("tensor name '__metadata__' is reserved");
    const count = shapeSize([...t.shape]);
    if (count !== t.data.length)
      throw new Error(`serializeSafetensors: tensor '${name}' has ${t.data.length} elements but shape ${JSON.stringify(t.shape)} needs ${count}`);
    const dtype = t.data instanceof Int32Array ? "I32" : floatDtype;
    const bytesLen = t.data.length * DTYPE_BYTES[dtype];
    header[name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytesLen] };
    offset += bytesLen;
  }
  let headerBytes = Buffer.from(JSON.stringify(header), "utf8");
  const pad = (8 - (headerBytes.length % 8)) % 8;
  if (pad) headerBytes = Buffer.concat([headerBytes, Buffer.alloc(pad, 0x20)]);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const [name, t] of entries) {
    if (!(t.data instanceof Int32Array) && floatDtype !== "F32") {
      const half = floatDtype === "BF16" ? f32ToBf16Bits : f32ToF16Bits;
      for (let i = 0; i < t.data.length; i++) {
        const h = half(t.data[i]);
        if (floatDtype === "F16" && (h & 0x7c00) === 0x7c00 && Number.isFinite(t.data[i]))
          throw new Error(`serializeSafetensors: tensor '${name}' value ${t.data[i]} at index ${i} overflows F16 (max 65504)`);
        dv.setUint16(pos + 2 * i, h, true);
      }
      pos += 2 * t.data.length;
      continue;
    }
    if (littleEndian) {
      out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    } else {
      for (let i = 0; i < t.data.length; i++)
        t.data instanceof Int32Array ? dv.setInt32(pos + i * 4, t.data[i], true) : dv.setFloat32(pos + i * 4, t.data[i], true);
    }
    pos += t.data.byteLength;
  }
  return out;
}

/** Writes a .safetensors file atomically (temp + fsync + rename). */
export function writeSafetensors(
  path: string,
  tensors: Map<string, WritableTensor> | Record<string, WritableTensor>,
  metadata?: Record<string, string>,
  floatDtype: FloatStorageDtype = "F32",
): void {
  writeFileAtomic(path, serializeSafetensors(tensors, metadata, floatDtype));
}

/** Convenience: the float tensors of a file as a name → {shape, data} record (rejects integer tensors). */
export function floatTensors(f: SafetensorsFile, file = "<buffer>"): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of f.tensors) {
    if (t.dtype !== "F32") throw new SafetensorsError(file, `tensor '${name}' has integer dtype ${t.dtype}, expected a float tensor`);
    out.set(name, { shape: t.shape, data: t.data });
  }
  return out;
}
