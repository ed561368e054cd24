/**
 * Names inside a run directory (docs/run-dir.md), in one place for the writers (trainer, reward service,
 * meta steps, rubric store) and the readers (dashboard, sandbox report, resume). Paths are run-dir-relative
 * with POSIX separators; join them onto the run directory with `runPath`.
 *
 *   status.json                       what the run is doing now (state, step, pid, rubric version)
 *   config.json                       the resolved trainer config (train) — the run's identity on --resume
 *   metrics.jsonl                     one line per committed training step
 *   serve-state.json                  the reward service's window counter and pending meta step
 *   rollouts/step-NNNNNN.jsonl        scored rollouts of a training step (train) or a meta window (serve)
 *   rollouts/unreadable.jsonl         samples the service's judge could not score readably (serve)
 *   meta/step-NNNNNN[-kind].json      the senior judge's log of one meta step (kind: "guidelines", …)
 *   meta/commits/step-NNNNNN.json     the meta step's commit marker: written last, it makes the step final
 *   rubrics/vNNNN.{json,txt}          rubric versions (guidelines/ likewise)
 *   checkpoints/step-NNNNNN/          a trainer checkpoint (policy/, critic/, manifest.json)
 *   checkpoints/latest.json           pointer to the newest committed checkpoint
 *   reference/                        the frozen reference policy
 *   moved-aside/<time>/               files `--overwrite` or a rollback moved out of the way (never deleted)
 */
import { join } from "node:path";

/** Zero-padded 6-digit step number, as in every step-NNNNNN name. */
export const pad6 = (n: number): string => String(n).padStart(6, "0");

export const STATUS_FILE = "status.json";
export const CONFIG_FILE = "config.json";
export const METRICS_FILE = "metrics.jsonl";
export const SERVE_STATE_FILE = "serve-state.json";
export const ROLLOUTS_DIR = "rollouts";
export const META_DIR = "meta";
export const META_COMMITS_DIR = "meta/commits";
export const RUBRICS_DIR = "rubrics";
export const GUIDELINES_DIR = "guidelines";
export const CHECKPOINTS_DIR = "checkpoints";
export const LATEST_CHECKPOINT = "checkpoints/latest.json";
export const REFERENCE_DIR = "reference";
export const MOVED_ASIDE_DIR = "moved-aside";

/** `step-NNNNNN` */
export const stepName = (step: number): string => `step-${pad6(step)}`;

/** rollouts/step-NNNNNN.jsonl */
export const rolloutsFile = (step: number): string => `${ROLLOUTS_DIR}/${stepName(step)}.jsonl`;
export const ROLLOUTS_FILE_RE = /^step-(\d+)\.jsonl$/;
/** rollouts/unreadable.jsonl (reward service) */
export const UNREADABLE_FILE = `${ROLLOUTS_DIR}/unreadable.jsonl`;

/** meta/step-NNNNNN.json (rubric) or meta/step-NNNNNN-<suffix>.json (suffix e.g. "-guidelines"). */
export const metaLogFile = (step: number, suffix = ""): string => `${META_DIR}/${stepName(step)}${suffix}.json`;
/** A meta log's file name inside meta/: step number and optional "-kind" suffix. */
export const META_LOG_RE = /^step-(\d+)(-[a-z][a-z0-9-]*)?\.json$/;

/** meta/commits/step-NNNNNN.json: the commit marker of the meta step with this key (see meta/scheduler.ts). */
export const metaCommitFile = (key: number): string => `${META_COMMITS_DIR}/${stepName(key)}.json`;

/** checkpoints/step-NNNNNN */
export const checkpointDir = (step: number): string => `${CHECKPOINTS_DIR}/${stepName(step)}`;
export const CHECKPOINT_DIR_RE = /^step-(\d+)$/;

/** vNNNN.json / vNNNN.txt inside rubrics/ or guidelines/ */
export const versionFileName = (version: number, ext: "json" | "txt" = "json"): string => `v${String(version).padStart(4, "0")}.${ext}`;
export const VERSION_FILE_RE = /^v(\d{4,})\.json$/;

/** Absolute path of a run-dir-relative name. */
export const runPath = (runDir: string, rel: string): string => join(runDir, ...rel.split("/"));

/** A fresh moved-aside/<time>-<pid> folder name (run-dir-relative) for files that must leave their place. */
export const movedAsideDir = (why: string): string =>
  `${MOVED_ASIDE_DIR}/${new Date().toISOString().replace(/[:.]/g, "-")}-${process.pid}-${why}`;
