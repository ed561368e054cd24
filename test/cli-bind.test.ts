/**
 * `mpo dashboard` that cannot bind: one line on stderr naming the problem, exit 2, no stack trace.
 * (`mpo serve`'s bind errors are covered in serve-hardening.test.ts.)
 */
import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const BIN = resolve(__dirname, "../bin/mpo.js");
let busy: Server;
let port: number;
beforeAll(async () => {
  busy = createServer();
  await new Promise<void>((r) => busy.listen(0, "127.0.0.1", () => r()));
  port = (busy.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((r) => busy.close(() => r())));

function mpo(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((res) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 60_000 }, (err, _stdout, stderr) => res({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }));
  });
}

describe("dashboard bind errors", () => {
  it("a busy port: one line, exit 2", async () => {
    const r = await mpo(["dashboard", mkdtempSync(join(tmpdir(), "mpo-bind-")), "--port", String(port)]);
    expect(r.code).toBe(2);
    const lines = r.stderr.split("\n").filter((l) => l.trim() && !/EBADENGINE|npm warn/.test(l));
    expect(lines).toEqual([`mpo: port ${port} is in use; pick another with --port`]);
  });

  it("an address that is not this machine's: one line, exit 2", async () => {
    const r = await mpo(["dashboard", mkdtempSync(join(tmpdir(), "mpo-bind-")), "--host", "203.0.113.7", "--port", "0"]);
    expect(r.code).toBe(2);
    const lines = r.stderr.split("\n").filter((l) => l.trim());
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^mpo: --host 203\.0\.113\.7: address not available|^mpo: cannot listen on 203\.0\.113\.7/);
  });
});
