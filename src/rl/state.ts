/**
 * Schemas of the trainer's state as read back from a checkpoint (policy/trainer_state.json). Objects are
 * "loose": fields this version does not know are kept as they are (a newer writer's extras survive), only
 * the fields the trainer relies on are checked — so a corrupt or hand-edited file fails at resume with the
 * file and field named, not later with an undefined somewhere in a step.
 */
import { z } from "zod";

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
