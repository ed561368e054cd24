// Preload (node --import): kill -9 this process right after the N-th file becomes visible under a directory.
// MPO_KILL_DIR: the directory; MPO_KILL_AFTER: N (1-based); MPO_KILL_ONLY: optional regex on the
// dir-relative destination (only matching writes count). A "visible write" is a rename or hard link whose
// destination lies in MPO_KILL_DIR and is not a temp file — exactly the points at which another process
// (or a restart) can observe new state. Patches node:fs and syncs the ESM named exports, so modules that
// `import { renameSync } from "node:fs"` see the patched functions too.
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import { relative, resolve } from "node:path";

const dir = process.env.MPO_KILL_DIR ? resolve(process.env.MPO_KILL_DIR) : null;
const after = Number(process.env.MPO_KILL_AFTER ?? 0);
const only = process.env.MPO_KILL_ONLY ? new RegExp(process.env.MPO_KILL_ONLY) : null;
let seen = 0;

function visible(dest) {
  if (!dir) return false;
  const rel = relative(dir, resolve(String(dest)));
  if (rel.startsWith("..") || /\.tmp$|\.tmp-|\/\.[^/]*\.tmp/.test(rel)) return false;
  return !only || only.test(rel);
}

function counted(name) {
  const orig = fs[name];
  fs[name] = function (src, dest, ...rest) {
    const r = orig.call(this, src, dest, ...rest);
    if (visible(dest)) {
      seen++;
      if (process.env.MPO_KILL_TRACE) fs.appendFileSync(process.env.MPO_KILL_TRACE, `${seen} ${name} ${relative(dir, resolve(String(dest)))}\n`);
      if (after > 0 && seen === after) process.kill(process.pid, "SIGKILL");
    }
    return r;
  };
}
counted("renameSync");
counted("linkSync");
syncBuiltinESMExports();
