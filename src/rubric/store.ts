/**
 * Versioned rubric (and guideline) storage in a run directory (docs/run-dir.md): `rubrics/vNNNN.json` holds a
 * RubricVersion, `rubrics/vNNNN.txt` the same rubric in the paper's text form. Versions are append-only:
 * a version number is claimed by an exclusive create of its final file name (hard link of a fully written,
 * fsynced temp file), so two processes can never both write vNNNN and readers never see half a file.
 * The lineage (parent, step, author, analyses) is what lets the dashboard show how a rubric evolved.
 */
import { closeSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { join, relative } from "node:path";
import { z } from "zod";
import { formatZodIssues } from "../util/errors.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { VERSION_FILE_RE, versionFileName } from "../util/run-layout.ts";
import { UserError } from "../util/errors.ts";
import { parseRubricJson, RubricError, rubricSchema, rubricToText } from "./format.ts";
import { guidelinesToText, parseGuidelineSetJson } from "./guidelines.ts";
import type { GuidelineSet, Rubric, RubricAuthor, VersionMeta } from "./types.ts";

/** How one kind of payload is named, validated and rendered as text. */
export interface PayloadCodec<K extends string, T> {
  /** Key of the payload inside the version file ("rubric", "guidelines"). */
  key: K;
  /** Sub-directory of the run directory ("rubrics", "guidelines"). */
  dirName: string;
  /** For messages: "rubric", "guideline set". */
  label: string;
  parse(value: unknown, source: string): T;
  toText(payload: T): string;
}

export type StoredVersion<K extends string, T> = VersionMeta & { [P in K]: T };

export type AddVersionInput<K extends string, T> = {
  /** Default: the latest version (null when the store is empty). */
  parent?: number | null;
  /** Default: 0. */
  step?: number;
  author: RubricAuthor;
  /** Default: []. */
  analyses?: string[];
  /** Stored for the lineage only: never returned by latest() (see VersionMeta.rejected). */
  rejected?: { reasons: string[] };
} & { [P in K]: T };

export interface StoreProblem {
  file: string;
  error: string;
}

export interface StoreOptions {
  /** Receives one message per unreadable version file (default: a line on stderr). */
  onWarning?: (message: string) => void;
}

const authorSchema = z.union([
  z.object({ kind: z.literal("initial") }),
  z.object({ kind: z.literal("user"), note: z.string().optional() }),
  z.object({ kind: z.literal("meta"), step: z.number().int().nonnegative() }),
  z.object({ kind: z.literal("autoprompt"), round: z.number().int().positive() }),
]);

const metaSchema = z.object({
  version: z.number().int().nonnegative(),
  parent: z.number().int().nonnegative().nullable(),
  step: z.number().int().nonnegative(),
  author: authorSchema,
  createdAt: z.string().min(1),
  analyses: z.array(z.string()),
  rejected: z.object({ reasons: z.array(z.string()) }).optional(),
});

/**
 * A rubric version file (rubrics/vNNNN.json) as readers outside the store validate it (the dashboard): the
 * lineage fields and the rubric, with the same item schema the store and the rubric parser use.
 */
export const rubricVersionFileSchema = metaSchema.extend({ rubric: rubricSchema });

const FILE_RE = VERSION_FILE_RE;
export { versionFileName };

let tmpCounter = 0;

/** An append-only store of numbered versions of one payload kind. */
export class VersionStore<K extends string, T> {
  private warned = new Set<string>();
  private readonly onWarning: (message: string) => void;

  constructor(
    /** The directory holding vNNNN.json files (e.g. RUN/rubrics). */
    readonly dir: string,
    readonly codec: PayloadCodec<K, T>,
    options: StoreOptions = {},
  ) {
    this.onWarning = options.onWarning ?? ((m) => process.stderr.write(`mpo: warning: ${m}\n`));
  }

  /** Paths of a version's files. */
  paths(version: number): { json: string; txt: string } {
    return { json: join(this.dir, versionFileName(version, "json")), txt: join(this.dir, versionFileName(version, "txt")) };
  }

  /** Version numbers that have a file, valid or not (a number with a corrupt file is still taken). */
  private numbers(): number[] {
    if (!existsSync(this.dir)) return [];
    const out: number[] = [];
    for (const f of readdirSync(this.dir)) {
      const m = FILE_RE.exec(f);
      if (m) out.push(Number(m[1]));
    }
    return out.sort((a, b) => a - b);
  }

  /** Reads and validates one version file; throws a RubricError naming the file when it is unreadable. */
  private read(version: number): StoredVersion<K, T> {
    const file = this.paths(version).json;
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(file, "utf8"));
    } catch (err) {
      throw new RubricError(`corrupt ${this.codec.label} version file ${file}: ${(err as Error).message}`);
    }
    const meta = metaSchema.safeParse(raw);
    if (!meta.success) throw new RubricError(`corrupt ${this.codec.label} version file ${file}:\n${formatZodIssues(file, meta.error.issues)}`);
    if (meta.data.version !== version) {
      throw new RubricError(`corrupt ${this.codec.label} version file ${file}: it says version ${meta.data.version}`);
    }
    let payload: T;
    try {
      payload = this.codec.parse((raw as Record<string, unknown>)[this.codec.key], `${file} (${this.codec.key})`);
    } catch (err) {
      throw new RubricError(`corrupt ${this.codec.label} version file ${file}:\n${(err as Error).message}`);
    }
    const m = meta.data;
    return {
      version: m.version,
      parent: m.parent,
      step: m.step,
      author: m.author as RubricAuthor,
      createdAt: m.createdAt,
      analyses: m.analyses,
      ...(m.rejected ? { rejected: m.rejected } : {}),
      [this.codec.key]: payload,
    } as StoredVersion<K, T>;
  }

  /** All readable versions (sorted) and the files that could not be read. */
  scan(): { versions: StoredVersion<K, T>[]; problems: StoreProblem[] } {
    const versions: StoredVersion<K, T>[] = [];
    const problems: StoreProblem[] = [];
    for (const n of this.numbers()) {
      try {
        versions.push(this.read(n));
      } catch (err) {
        problems.push({ file: this.paths(n).json, error: (err as Error).message });
      }
    }
    return { versions, problems };
  }

  /** Readable versions in order. Unreadable files are skipped with one warning each (see scan()). */
  list(): StoredVersion<K, T>[] {
    const { versions, problems } = this.scan();
    for (const p of problems) {
      if (this.warned.has(p.file)) continue;
      this.warned.add(p.file);
      this.onWarning(`skipping ${p.error}`);
    }
    return versions;
  }

  /** The current version: the newest readable one not rejected by the guard, or null when there is none. */
  latest(): StoredVersion<K, T> | null {
    const all = this.list().filter((v) => !v.rejected);
    return all.length ? all[all.length - 1] : null;
  }

  /** One version; a clear error if it does not exist or its file is corrupt. */
  get(version: number): StoredVersion<K, T> {
    if (!Number.isInteger(version) || version < 0) throw new UserError(`${this.codec.label} version must be a non-negative integer, got ${version}`);
    if (!existsSync(this.paths(version).json)) {
      const have = this.numbers();
      const range = have.length ? `have v${have[0]}–v${have[have.length - 1]}` : "the store is empty";
      throw new UserError(`${this.codec.label} version v${version} not found in ${this.dir} (${range})`);
    }
    return this.read(version);
  }

  /**
   * Appends the next version. Never overwrites: the number is claimed by an exclusive create of the final
   * file name; if another process claimed it first we take the next one.
   */
  add(input: AddVersionInput<K, T>): StoredVersion<K, T> {
    const payload = this.codec.parse(input[this.codec.key], `new ${this.codec.label}`);
    const parent = input.parent === undefined ? (this.latest()?.version ?? null) : input.parent;
    if (parent !== null && !(Number.isInteger(parent) && existsSync(this.paths(parent).json))) {
      throw new UserError(`parent ${this.codec.label} version v${parent} does not exist in ${this.dir}`);
    }
    const step = input.step ?? 0;
    if (!Number.isInteger(step) || step < 0) throw new UserError(`step must be a non-negative integer, got ${step}`);
    authorSchema.parse(input.author);
    for (let attempt = 0; attempt < 1000; attempt++) {
      const have = this.numbers();
      const version = have.length ? have[have.length - 1] + 1 : 0;
      const record = this.makeRecord(version, parent, step, input.author, input.analyses ?? [], payload);
      if (input.rejected) record.rejected = { reasons: [...input.rejected.reasons] };
      if (this.createExclusive(record)) return record;
    }
    throw new Error(`could not claim a version number in ${this.dir} after 1000 attempts`);
  }

  /** Creates v0 from `payload` when the store has no version; otherwise returns the latest. */
  initialize(payload: T, author: RubricAuthor = { kind: "initial" }): StoredVersion<K, T> {
    const existing = this.latest();
    if (existing) {
      this.completeTextFiles();
      return existing;
    }
    const { problems } = this.scan();
    if (problems.length) throw new RubricError(`cannot initialize ${this.dir}: ${problems[0].error}`);
    const parsed = this.codec.parse(payload, `initial ${this.codec.label}`);
    const record = this.makeRecord(0, null, 0, author, [], parsed);
    if (this.createExclusive(record)) return record;
    // Another process created v0 between our check and our create: use theirs.
    return this.latest() ?? this.get(0);
  }

  /**
   * Writes the text file of every readable version that lacks one. A version's JSON is claimed first and its
   * text written right after, so a kill between the two leaves a version without its text; the text is
   * derived from the JSON, so finishing it is always safe. Returns the versions completed.
   */
  completeTextFiles(): number[] {
    const done: number[] = [];
    for (const v of this.scan().versions) {
      const { txt } = this.paths(v.version);
      if (existsSync(txt)) continue;
      writeFileAtomic(txt, this.codec.toText(v[this.codec.key] as T));
      done.push(v.version);
    }
    return done;
  }

  private makeRecord(version: number, parent: number | null, step: number, author: RubricAuthor, analyses: string[], payload: T): StoredVersion<K, T> {
    return {
      version,
      parent,
      step,
      author,
      createdAt: new Date().toISOString(),
      analyses: [...analyses],
      [this.codec.key]: payload,
    } as StoredVersion<K, T>;
  }

  /** Writes the record under its number unless that file exists. Returns false if the number was taken. */
  private createExclusive(record: StoredVersion<K, T>): boolean {
    mkdirSync(this.dir, { recursive: true });
    const { json, txt } = this.paths(record.version);
    const data = Buffer.from(JSON.stringify(record, null, 2) + "\n");
    const tmp = join(this.dir, `.${versionFileName(record.version)}.${process.pid}.${tmpCounter++}.tmp`);
    writeWhole(tmp, data, "w");
    try {
      linkSync(tmp, json); // atomic and exclusive: fails with EEXIST if the number is taken
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST") return false;
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "ENOSYS" && code !== "EXDEV") throw err;
      // File systems without hard links: exclusive create of the final name, then write.
      try {
        writeWhole(json, data, "wx");
      } catch (err2) {
        if ((err2 as NodeJS.ErrnoException).code === "EEXIST") return false;
        throw err2;
      }
    } finally {
      try {
        unlinkSync(tmp);
      } catch {
        /* already gone */
      }
    }
    syncDir(this.dir);
    writeFileAtomic(txt, this.codec.toText(record[this.codec.key] as T));
    return true;
  }

  /**
   * Moves versions newer than `keep` out of the way (into `<dir>/rolled-back/<time>/`), for resuming a run
   * from a checkpoint taken before they were made. Nothing is deleted; the numbers become free again.
   * Returns the moved version numbers.
   */
  rollbackAfter(keep: number): number[] {
    const moved = this.numbers().filter((n) => n > keep);
    if (moved.length === 0) return [];
    const dest = join(this.dir, "rolled-back", `${new Date().toISOString().replace(/[:.]/g, "-")}-${process.pid}`);
    mkdirSync(dest, { recursive: true });
    // Newest first, so a concurrent reader never sees a gap below a surviving version.
    for (const n of [...moved].reverse()) {
      for (const f of [versionFileName(n, "json"), versionFileName(n, "txt")]) {
        if (existsSync(join(this.dir, f))) renameSync(join(this.dir, f), join(dest, f));
      }
    }
    syncDir(this.dir);
    return moved;
  }

  /** Run-dir-relative path of a version's JSON file (for logs). */
  relativePath(runDir: string, version: number): string {
    return relative(runDir, this.paths(version).json);
  }
}

function writeWhole(path: string, data: Buffer, flag: "w" | "wx"): void {
  const fd = openSync(path, flag);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Makes the new directory entry durable (best effort; not every platform can fsync a directory). */
function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* not supported here */
  }
}

export const rubricCodec: PayloadCodec<"rubric", Rubric> = {
  key: "rubric",
  dirName: "rubrics",
  label: "rubric",
  parse: parseRubricJson,
  toText: rubricToText,
};

export const guidelineCodec: PayloadCodec<"guidelines", GuidelineSet> = {
  key: "guidelines",
  dirName: "guidelines",
  label: "guideline set",
  parse: parseGuidelineSetJson,
  toText: guidelinesToText,
};

function checkRunDir(runDir: string): void {
  if (existsSync(runDir) && !statSync(runDir).isDirectory()) throw new UserError(`run directory is not a directory: ${runDir}`);
}

/** Rubric versions of a run: RUN/rubrics/vNNNN.{json,txt}. */
export class RubricStore extends VersionStore<"rubric", Rubric> {
  static open(runDir: string, kind?: "rubrics", options?: StoreOptions): RubricStore;
  static open(runDir: string, kind: "guidelines", options?: StoreOptions): GuidelineStore;
  static open(runDir: string, kind: "rubrics" | "guidelines" = "rubrics", options: StoreOptions = {}): RubricStore | GuidelineStore {
    if (kind === "guidelines") return GuidelineStore.open(runDir, options);
    checkRunDir(runDir);
    return new RubricStore(join(runDir, rubricCodec.dirName), rubricCodec, options);
  }
}

/** Guideline-set versions of a run (math): RUN/guidelines/vNNNN.{json,txt}. */
export class GuidelineStore extends VersionStore<"guidelines", GuidelineSet> {
  static open(runDir: string, options: StoreOptions = {}): GuidelineStore {
    checkRunDir(runDir);
    return new GuidelineStore(join(runDir, guidelineCodec.dirName), guidelineCodec, options);
  }
}
