/**
 * Change detection for live updates. Writers append to run directories; the dashboard tells open pages
 * which run and which part (status, metrics, rollouts, rubrics, meta, eval) changed so they refetch only
 * that. fs.watch gives prompt notice where the platform delivers it; a periodic stat poll is the fallback
 * that always works (network filesystems, inotify limits, files replaced by rename).
 */
import { EventEmitter } from "node:events";
import { promises as fsp, watch, type FSWatcher } from "node:fs";
import { join } from "node:path";
import { discoverRuns } from "./runs.ts";
import { META_DIR, METRICS_FILE, ROLLOUTS_DIR, RUBRICS_DIR, STATUS_FILE } from "../util/run-layout.ts";

export type RunPart = "status" | "metrics" | "eval" | "rollouts" | "rubrics" | "meta";

export interface ChangeEvent {
  run: string;
  parts: RunPart[];
}

async function fileSig(p: string): Promise<string> {
  try {
    const st = await fsp.stat(p);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return "-";
  }
}

/** Directory signature: entry count, dir mtime and the newest-named entry's size (appends go to the last step file). */
async function dirSig(p: string): Promise<string> {
  try {
    const names = (await fsp.readdir(p)).filter((n) => !n.startsWith(".")).sort();
    const st = await fsp.stat(p);
    const last = names[names.length - 1];
    return `${names.length}:${st.mtimeMs}:${last ?? ""}:${last ? await fileSig(join(p, last)) : ""}`;
  } catch {
    return "-";
  }
}

const PARTS: Array<[RunPart, string, "file" | "dir"]> = [
  ["status", STATUS_FILE, "file"],
  ["metrics", METRICS_FILE, "file"],
  ["eval", "eval.jsonl", "file"],
  ["rollouts", ROLLOUTS_DIR, "dir"],
  ["rubrics", RUBRICS_DIR, "dir"],
  ["meta", META_DIR, "dir"],
];

export class RunWatcher extends EventEmitter {
  private sigs = new Map<string, Map<RunPart, string>>();
  private runs: string[] = [];
  private timer: NodeJS.Timeout | null = null;
  private watchers = new Map<string, FSWatcher>();
  private busy = false;
  private again = false;
  private kick: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly root: string,
    private readonly pollMs = 1000,
  ) {
    super();
  }

  async start(): Promise<void> {
    await this.tick(true);
    this.timer = setInterval(() => void this.tick(false), this.pollMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.kick) clearTimeout(this.kick);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }

  /** Schedules an early poll (called by fs.watch callbacks; coalesces bursts of events). */
  private soon(): void {
    if (this.kick || this.stopped) return;
    this.kick = setTimeout(() => {
      this.kick = null;
      void this.tick(false);
    }, 50);
    this.kick.unref();
  }

  private watchPath(p: string): void {
    if (this.watchers.has(p)) return;
    try {
      const w = watch(p, { persistent: false }, () => this.soon());
      w.on("error", () => {
        w.close();
        this.watchers.delete(p);
      });
      this.watchers.set(p, w);
    } catch {
      // Not watchable (missing, inotify limit): polling covers it.
    }
  }

  private async tick(initial: boolean): Promise<void> {
    if (this.stopped) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    try {
      const runs = await discoverRuns(this.root);
      if (!initial && runs.join("\n") !== this.runs.join("\n")) this.emit("runs", runs);
      this.runs = runs;
      this.watchPath(this.root);
      for (const id of runs) {
        const dir = join(this.root, id);
        this.watchPath(dir);
        const prev = this.sigs.get(id);
        const next = new Map<RunPart, string>();
        const changed: RunPart[] = [];
        for (const [part, rel, kind] of PARTS) {
          const p = join(dir, rel);
          const sig = kind === "file" ? await fileSig(p) : await dirSig(p);
          next.set(part, sig);
          if (kind === "dir" && sig !== "-") this.watchPath(p);
          if (prev && prev.get(part) !== sig) changed.push(part);
        }
        this.sigs.set(id, next);
        if (!initial && changed.length) this.emit("change", { run: id, parts: changed } satisfies ChangeEvent);
      }
    } catch (err) {
      this.emit("error-note", String(err));
    } finally {
      this.busy = false;
      if (this.again && !this.stopped) {
        this.again = false;
        void this.tick(false);
      }
    }
  }
}
