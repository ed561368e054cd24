/**
 * Schemas of the trainer's state as read back from a checkpoint (policy/trainer_state.json). Objects are
 * "loose": fields this version does not know are kept as they are (a newer writer's extras survive), only
 * the fields the trainer relies on are checked — so a corrupt or hand-edited file fails at resume with the
 * file and field named, not later with an undefined somewhere in a step. The TypeScript shape of that
 * state (TrainerState) lives here too.
 */
import { z } from "zod";
import type { MetaDecision, WindowPoint } from "../meta/triggers.ts";
import type { MetaOutcome, RewardResult, RewardSample } from "./reward-types.ts";

const count = z.number().int().nonnegative();
const rngState = z.tuple([z.number(), z.number(), z.number(), z.number()]);

const rewardResultSchema = z.looseObject({
  score: z.number().nullable(),
  normalized: z.number().nullable(),
  flags: z.array(z.string()),
});

/** A scored rollout kept for the next meta step (RewardSample + its result). */
const metaSampleSchema = z.looseObject({
  record: z.looseObject({ id: z.string(), prompt: z.string() }),
  response: z.string(),
  finished: z.boolean(),
  result: rewardResultSchema,
});

export const metaOutcomeSchema = z.looseObject({
  ok: z.boolean(),
  step: count.optional(),
  fromVersion: count,
  toVersion: count,
  summary: z.string(),
  itemsBefore: count,
  itemsAfter: count,
  added: count,
  removed: count,
  error: z.string().optional(),
});

export const trainerStateSchema = z.looseObject({
  step: count,
  cursor: z.looseObject({ epoch: count, index: count }),
  genRng: rngState,
  mbRng: rngState,
  rubricVersion: count,
  rewardState: z.unknown(),
  metaBuffer: z.array(metaSampleSchema),
  pendingMeta: z.looseObject({ step: count, rollouts: z.array(metaSampleSchema) }).nullable(),
  completedMeta: metaOutcomeSchema.nullable().optional(),
  loraDropCounts: z.looseObject({ policy: count, critic: count.optional() }).optional(),
  elapsedSeconds: z.number().nonnegative(),
});

/** A scored rollout kept for the next meta step. */
export type MetaRolloutSample = RewardSample & { result: RewardResult };

/** Where the data cursor stands: position `index` of epoch `epoch`'s shuffled order. */
export interface DataCursor {
  epoch: number;
  index: number;
}

/** Everything besides tensors that a checkpoint must hold for an exact resume. */
export interface TrainerState {
  step: number;
  cursor: DataCursor;
  genRng: [number, number, number, number];
  mbRng: [number, number, number, number];
  rubricVersion: number;
  rewardState: unknown;
  /** Scored rollouts gathered since the last meta step. */
  metaBuffer: MetaRolloutSample[];
  /** A meta step decided at this step but not yet finished: re-run on resume. */
  pendingMeta: { step: number; rollouts: MetaRolloutSample[]; decision?: MetaDecision } | null;
  /** Adaptive schedule: one summary per step since the last meta step (what its triggers read). */
  metaPoints?: WindowPoint[];
  /** A meta step that finished while the run was stopping: reported with the next step's metrics. */
  completedMeta?: MetaOutcome | null;
  /** LoRA: the models' dropout-mask counters (TransformerLM.loraDropCount), so a resume draws the same masks. */
  loraDropCounts?: { policy: number; critic?: number };
  elapsedSeconds: number;
}

/** The meta-scheduler job of a pending meta step (its key is the step that decided it). */
export function pendingMetaJob(p: NonNullable<TrainerState["pendingMeta"]>) {
  return { key: p.step, input: p.rollouts, ...(p.decision ? { decision: p.decision } : {}) };
}
