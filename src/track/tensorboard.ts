/**
 * A TensorBoard event-file writer: scalars and text, readable by TensorBoard itself.
 * Hand-written because no maintained npm library does only this: TensorFlow.js's summary writer
 * (@tensorflow/tfjs-node) needs the native libtensorflow (hundreds of MB) for one file format.
 *
 * The format (tensorflow/core/lib/io/record_writer.cc + core/util/event.proto):
 *   file  = record*;  record = len:uint64le, masked_crc32c(len):uint32le, data[len], masked_crc32c(data):uint32le
 *   masked_crc32c(x) = ((crc >>> 15) | (crc << 17)) + 0xa282ead8   (CRC-32C, Castagnoli)
 *   data  = Event { wall_time:double=1, step:int64=2, file_version:string=3 | summary:Summary=5 }
 *   Summary { value:Value=1 (repeated) };  Value { tag:string=1, simple_value:float=2, metadata=9, tensor=8 }
 * The first record carries file_version "brain.Event:2". Text uses the text plugin: metadata.plugin_data.
 * plugin_name = "text" and a DT_STRING tensor (dtype 7) with one string_val.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

// ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32c(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function maskedCrc32c(buf: Uint8Array): number {
  const c = crc32c(buf);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

// ---- Minimal protobuf encoding (only the wire types used here).
type Field = Uint8Array;
const concat = (parts: Uint8Array[]): Uint8Array => Buffer.concat(parts);

function varint(n: number | bigint): Uint8Array {
  let v = BigInt(n);
  if (v < 0n) v += 1n << 64n; // int64 two's complement
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Uint8Array.from(out);
}
const key = (field: number, wire: number) => varint((field << 3) | wire);
const fVarint = (field: number, n: number | bigint): Field => concat([key(field, 0), varint(n)]);
const fBytes = (field: number, b: Uint8Array): Field => concat([key(field, 2), varint(b.length), b]);
const fString = (field: number, s: string): Field => fBytes(field, Buffer.from(s, "utf8"));
function fDouble(field: number, x: number): Field {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(x);
  return concat([key(field, 1), b]);
}
function fFloat(field: number, x: number): Field {
  const b = Buffer.alloc(4);
  b.writeFloatLE(x);
  return concat([key(field, 5), b]);
}

function event(wallTime: number, step: number, body: Field[]): Uint8Array {
  return concat([fDouble(1, wallTime), fVarint(2, Math.trunc(step)), ...body]);
}
const scalarValue = (tag: string, x: number): Field => fBytes(1, concat([fString(1, tag), fFloat(2, x)]));
function textValue(tag: string, text: string): Field {
  const metadata = fBytes(1, fString(1, "text")); // SummaryMetadata.plugin_data { plugin_name }
  const tensor = concat([fVarint(1, 7), fBytes(2, new Uint8Array(0)), fBytes(8, Buffer.from(text, "utf8"))]); // DT_STRING, scalar shape
  return fBytes(1, concat([fString(1, tag), fBytes(9, metadata), fBytes(8, tensor)]));
}

function record(data: Uint8Array): Uint8Array {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(data.length));
  const h = Buffer.alloc(4);
  h.writeUInt32LE(maskedCrc32c(len));
  const f = Buffer.alloc(4);
  f.writeUInt32LE(maskedCrc32c(data));
  return concat([len, h, data, f]);
}

/** Appends events to `<logDir>/events.out.tfevents.<seconds>.<host>` (a new file per writer, as TensorBoard expects). */
export class TensorBoardWriter {
  readonly path: string;
  private fd: number;

  constructor(logDir: string, now = Date.now()) {
    mkdirSync(logDir, { recursive: true });
    this.path = join(logDir, `events.out.tfevents.${Math.floor(now / 1000)}.${hostname()}.${process.pid}`);
    this.fd = openSync(this.path, "a");
    this.write(event(now / 1000, 0, [fString(3, "brain.Event:2")]));
  }

  private write(data: Uint8Array): void {
    writeSync(this.fd, record(data));
  }

  /** One event holding every finite scalar of a step (tags like "score/mean"). */
  scalars(step: number, values: Record<string, number>, wallTime = Date.now() / 1000): void {
    const vals = Object.entries(values).filter(([, v]) => Number.isFinite(v));
    if (vals.length) this.write(event(wallTime, step, [fBytes(5, concat(vals.map(([t, v]) => scalarValue(t, v))))]));
  }

  text(step: number, tag: string, text: string, wallTime = Date.now() / 1000): void {
    this.write(event(wallTime, step, [fBytes(5, textValue(tag, text))]));
  }

  flush(): void {
    fsyncSync(this.fd);
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
  }
}
