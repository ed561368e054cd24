/**
 * Streaming, linear-time line reading of (possibly huge, possibly growing) JSONL files. Written by hand
 * because node:readline buffers a whole line however long it is and cannot report byte offsets, which the
 * dashboard's rollout index needs for paged reads. Guarantees: each byte is scanned for a newline once;
 * a line is assembled with one concat when its newline arrives (no re-copying of a growing carry); a line
 * longer than `maxLineBytes` is not buffered at all — it is reported as oversized and skipped.
 */
import { promises as fsp } from "node:fs";

export interface LineScan {
  /** Bytes up to and including the last newline seen (where an incremental re-scan continues). */
  parsedBytes: number;
  /** Lines seen (complete ones; plus the oversized ones). */
  lines: number;
  /** Bytes after the last newline: an incomplete last line (a writer mid-append, or torn by a crash). */
  tailBytes: number;
}

export interface LineScanOptions {
  /** Byte position to start at (must be a line start). Default 0. */
  start?: number;
  /** Line number of the first line read (1-based). Default 1. */
  firstLine?: number;
  /** Lines longer than this are skipped via onOversized (default 64 MiB). */
  maxLineBytes?: number;
  onOversized?: (lineNo: number, offset: number, bytes: number) => void;
  /** Also deliver the incomplete last line (without newline) with `complete: false`. */
  includeTail?: boolean;
}

/** Calls onLine(buf, lineNo, offset, complete) for every line of the file from `start`. */
export async function scanLines(
  path: string,
  onLine: (line: Buffer, lineNo: number, offset: number, complete: boolean) => void,
  o: LineScanOptions = {},
): Promise<LineScan> {
  const maxLine = o.maxLineBytes ?? 64 * 1024 * 1024;
  const fh = await fsp.open(path, "r");
  try {
    const size = (await fh.stat()).size;
    const chunk = Buffer.alloc(1 << 20);
    let pos = o.start ?? 0;
    let lineNo = (o.firstLine ?? 1) - 1;
    let lineStart = pos; // file offset of the line being assembled
    let parts: Buffer[] = []; // pieces of the current line from earlier chunks
    let partBytes = 0;
    let oversized = false;
    while (pos < size) {
      const { bytesRead } = await fh.read(chunk, 0, Math.min(chunk.length, size - pos), pos);
      if (bytesRead === 0) break;
      const buf = chunk.subarray(0, bytesRead);
      let from = 0;
      let nl: number;
      while ((nl = buf.indexOf(10, from)) !== -1) {
        lineNo++;
        const bytes = partBytes + (nl - from);
        if (oversized || bytes > maxLine) o.onOversized?.(lineNo, lineStart, bytes);
        else onLine(parts.length ? Buffer.concat([...parts, buf.subarray(from, nl)]) : Buffer.from(buf.subarray(from, nl)), lineNo, lineStart, true);
        parts = [];
        partBytes = 0;
        oversized = false;
        from = nl + 1;
        lineStart = pos + from;
      }
      const rest = bytesRead - from;
      if (rest > 0) {
        if (!oversized && partBytes + rest <= maxLine) parts.push(Buffer.from(buf.subarray(from)));
        else {
          oversized = true;
          parts = [];
        }
        partBytes += rest;
      }
      pos += bytesRead;
    }
    if (o.includeTail && partBytes > 0) {
      if (oversized) o.onOversized?.(lineNo + 1, lineStart, partBytes);
      else onLine(Buffer.concat(parts), lineNo + 1, lineStart, false);
    }
    return { parsedBytes: lineStart, lines: lineNo, tailBytes: partBytes };
  } finally {
    await fh.close();
  }
}
