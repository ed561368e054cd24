/**
 * One `mpo serve` per run directory. Two services on one directory would interleave windows and rubric
 * versions, and the one that exits first would mark the other's live run "stopped". The lock is a file
 * created with O_EXCL holding the owner's pid; a lock whose pid is no longer alive (kill -9, reboot) is
 * taken over. Hand-written: a lock library would add nothing over these twenty lines.
 */
import { readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

export class RunDirLockedError extends Error {
  constructor(
    readonly lockPath: string,
    readonly pid: number,
  ) {
    super(`run directory is in use by another mpo serve (pid ${pid}, lock ${lockPath}); stop it first, or use another --run directory`);
    this.name = "RunDirLockedError";
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by someone else
  }
}

export interface RunLock {
  path: string;
  /** Previous holder that was dead and whose lock was taken over, if any. */
  tookOverFrom?: number;
  release(): void;
}

export function acquireRunLock(runDir: string, name = "serve.lock"): RunLock {
  const path = join(runDir, name);
  const body = JSON.stringify({ pid: process.pid, host: hostname(), startedAt: new Date().toISOString() }) + "\n";
  let tookOverFrom: number | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(path, body, { flag: "wx" });
      let released = false;
      return {
        path,
        tookOverFrom,
        release: () => {
          if (released) return;
          released = true;
          try {
            const cur = JSON.parse(readFileSync(path, "utf8")) as { pid?: number };
            if (cur.pid === process.pid) unlinkSync(path);
          } catch {
            /* already gone */
          }
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    let pid = NaN;
    try {
      pid = Number((JSON.parse(readFileSync(path, "utf8")) as { pid?: unknown }).pid);
    } catch {
      /* torn or foreign lock file: treated as stale below */
    }
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) throw new RunDirLockedError(path, pid);
    if (pid === process.pid) throw new RunDirLockedError(path, pid); // this process already serves the directory
    tookOverFrom = Number.isInteger(pid) ? pid : undefined;
    try {
      unlinkSync(path);
    } catch {
      /* another process took it over first: retry the exclusive create */
    }
  }
  throw new Error(`could not take the lock ${path}`);
}
