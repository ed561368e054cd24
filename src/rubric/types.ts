/**
 * Rubrics: what the junior judge scores against and what the meta step rewrites.
 * Plain data; parsing/serialization lives in ./format.ts, versioning in ./store.ts.
 */

export interface RubricItem {
  /** Short name, e.g. "relevance". Unique within a rubric. */
  name: string;
  /** The criterion as the judge reads it; may contain score levels and deductions (markdown allowed). */
  text: string;
  /** Integer score range, inclusive. Default 0–5, or what the text states ("0 to 5", "1-10"). */
  min: number;
  max: number;
  /** Optional weight for the weighted total (default 1). */
  weight?: number;
}

export interface Rubric {
  items: RubricItem[];
}

/** Who created a rubric version. */
export type RubricAuthor =
  | { kind: "initial" }
  | { kind: "user"; note?: string }
  | { kind: "meta"; step: number }
  /** Written by `mpo autoprompt` (offline calibration) in the given round. */
  | { kind: "autoprompt"; round: number };

/** Lineage of one stored version (rubric or guideline set). */
export interface VersionMeta {
  /** 0, 1, 2, … in creation order; never reused or overwritten. */
  version: number;
  parent: number | null;
  /** Training step (or service sample count) at which this version was created. */
  step: number;
  author: RubricAuthor;
  createdAt: string;
  /** Run-dir-relative paths of the meta analyses that produced this version (empty for initial/user). */
  analyses: string[];
  /**
   * Set when the rubric acceptance guard (meta/guard.ts) refused this version: it stays in the lineage for
   * audit but is never current, so it never scores a rollout.
   */
  rejected?: { reasons: string[] };
}

export interface RubricVersion extends VersionMeta {
  rubric: Rubric;
}

/**
 * Grouped guidelines (math): free-text guidelines per group key (e.g. "algebra/1"), versioned like rubrics.
 */
export interface GuidelineSet {
  groups: Record<string, string>;
}

/** A stored guideline set (run dir `guidelines/vNNNN.json`), versioned like rubrics. */
export interface GuidelineVersion extends VersionMeta {
  guidelines: GuidelineSet;
}
