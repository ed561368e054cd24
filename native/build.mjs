#!/usr/bin/env node
// Builds the optional native engine addon (build/Release/mpo_engine.node) with the system C++ compiler.
// Runs as the package `install` script, so it must NEVER fail the install: any problem (no compiler, no
// Node headers, unsupported OS) prints one line and exits 0 — the engine then uses its TypeScript path.
// Why not node-gyp: it downloads Node headers from the internet unless told where they are; we find them
// next to the running node binary (or /usr/include/node) and call the compiler directly, which works offline.
// OpenBLAS (Debian: libopenblas-dev) is used when `cblas.h` + `-lopenblas` link; otherwise a built-in gemm.
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const verbose = process.argv.includes("--verbose");
const noBlas = process.argv.includes("--no-blas") || process.env.MPO_ENGINE_NO_BLAS === "1";
const out = process.env.MPO_ENGINE_ADDON_OUT ?? join(root, "build", "Release", "mpo_engine.node");
const say = (m) => console.log(`mpo native engine: ${m}`);

function fail(reason) {
  say(`not built (${reason}); the pure TypeScript engine will be used.`);
  process.exit(0);
}

if (process.env.MPO_SKIP_NATIVE === "1") fail("MPO_SKIP_NATIVE=1");
if (process.platform === "win32") fail("Windows build not supported");

const headerDirs = [
  join(dirname(process.execPath), "..", "include", "node"),
  "/usr/include/node",
  "/usr/local/include/node",
];
const inc = headerDirs.find((d) => existsSync(join(d, "node_api.h")));
if (!inc) fail(`Node headers (node_api.h) not found in ${headerDirs.join(", ")}`);

const cxx = process.env.CXX ?? "c++";
try {
  execFileSync(cxx, ["--version"], { stdio: "ignore" });
} catch {
  fail(`no C++ compiler (${cxx})`);
}

const src = join(root, "native", "mpo_engine.cc");
const isX86 = process.arch === "x64";
const base = [
  "-O3", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden",
  // fast-math for vectorized expf/logf and reductions; keep inf/nan semantics (masked -inf, NaN detection).
  "-ffast-math", "-fno-finite-math-only",
  ...(isX86 ? ["-march=x86-64-v2", "-mtune=generic"] : []),
  `-I${inc}`, "-DNODE_GYP_MODULE_NAME=mpo_engine", "-pthread",
];
if (process.platform === "darwin") base.push("-undefined", "dynamic_lookup");

function compile(flags, libs, dest) {
  // Libraries after the source: Debian links with --as-needed.
  execFileSync(cxx, [...base, ...flags, src, "-o", dest, ...libs], { stdio: verbose ? "inherit" : "pipe" });
}

mkdirSync(dirname(out), { recursive: true });
const tmp = mkdtempSync(join(tmpdir(), "mpo-native-"));
const tmpOut = join(tmp, "mpo_engine.node");
let blas = "none";
try {
  const tries = noBlas ? [] : [
    ["openblas", ["-DHAVE_CBLAS", "-I/usr/include/openblas"], ["-lopenblas"]],
  ];
  let built = false;
  for (const [name, flags, libs] of tries) {
    try {
      compile(flags, libs, tmpOut);
      blas = name;
      built = true;
      break;
    } catch (e) {
      if (verbose) say(`build with ${name} failed: ${String(e.stderr ?? e.message).slice(0, 400)}`);
    }
  }
  if (!built) {
    try {
      compile([], [], tmpOut);
      blas = "builtin gemm";
    } catch (e) {
      fail(`compile failed: ${String(e.stderr ?? e.message).split("\n").slice(0, 3).join(" | ")}`);
    }
  }
  // Check that it loads in this Node before installing it (a broken addon must not shadow the TS path).
  try {
    execFileSync(process.execPath, ["-e", `require(${JSON.stringify(tmpOut)}).info()`], { stdio: "pipe" });
  } catch (e) {
    fail(`built but does not load: ${String(e.stderr ?? e.message).split("\n")[0]}`);
  }
  // Copy then rename within the target dir: atomic, and works across filesystems.
  copyFileSync(tmpOut, out + ".tmp");
  renameSync(out + ".tmp", out);
  say(`built ${out} (${blas}).`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
