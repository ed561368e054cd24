/**
 * Protocol profiles: everything that decides what a judge is shown, asked and allowed, as one plain
 * object per profile, so the code that talks to judges reads its templates, limits, temperatures and
 * turn structure from here instead of branching on a name.
 *
 *   paper     (default) reproduces the reference implementation (minnesotanlp/mpo) stage by stage: the
 *             task's own judge persona and view of the prompt, one-sentence rationales ending at an end
 *             marker, integer score turns that are not clamped, the junior's total shown to the senior
 *             judge, refinement and merge written as "how many criteria?" then one criterion per turn,
 *             math plan/execute at 2,000 tokens, the first \boxed{} answer and the reference's answer
 *             normalisation, guideline cases sampled 2 per score third. docs/paper-protocol.md lists
 *             every stage with the reference's file:line next to ours and each deviation.
 *   hardened  this project's stricter prompts (no rewards for length or confident tone, anti-gaming
 *             guidance for the senior judge, whole-rubric refinement with an example shape, clamped
 *             item ranges, last \boxed{} answer, lenient answer equivalence).
 *
 * Template names are relative to prompts/ and can be overridden per file like any other template.
 */
import { UserError } from "../util/errors.ts";

export type ProtocolName = "paper" | "hardened";
export const PROTOCOL_NAMES: readonly ProtocolName[] = ["paper", "hardened"];

/** How a refinement or merge is written: one reply holding a whole <rubric>, or a count turn then one turn per criterion. */
export type RubricWriting =
  | { structure: "whole"; maxTokens: number }
  | {
      structure: "count-then-each";
      /** Per criterion turn. */
      itemMaxTokens: number;
      /** Stated in the per-criterion turn. */
      itemWordCap: number;
      /** Stop writing criteria once the conversation is estimated at this many tokens (words × 1.5, as the reference estimates). */
      contextBudgetTokens: number;
      /** Safety cap on the stated count (the reference has none; a reply of "400" would otherwise mean 400 calls). */
      maxItems: number;
    };

export interface ProtocolProfile {
  name: ProtocolName;
  templates: {
    /** Junior system turn when the task gives no persona of its own. */
    rmSystem: string;
    rmResponse: string;
    rmItemRationale: string;
    rmItemScore: string;
    rmSingleCall: string;
    rmPlan: string;
    rmExecute: string;
    rmPlanScore: string;
    /** Senior system turn when the task gives no persona of its own. */
    mrmSystem: string;
    mrmPrescreen: string;
    mrmAnalyze: string;
    mrmRefine: string;
    /** count-then-each only: the count question, the "now write them" turn, the per-criterion turn. */
    mrmRefineCount?: string;
    mrmRefineStart?: string;
    mrmRefineEach?: string;
    mrmMerge: string;
    mrmMergeCount?: string;
    mrmMergeStart?: string;
    mrmMergeEach?: string;
    guidelinesAnalyze: string;
    guidelinesRefine: string;
  };
  junior: {
    temperature: number;
    rationaleMaxTokens: number;
    /** Stop strings of the rationale turn (the template asks the judge to end with the marker). */
    rationaleStop: string[];
    scoreMaxTokens: number;
    /** "digits": any non-negative integer, as the reference constrains it; "range": the item's inferred range. */
    scoreConstraint: "digits" | "range";
    /** Clamp a read score into the item's inferred range (hardened) or keep it and flag it (paper). */
    clamp: boolean;
    /** Score of an unreadable reply: 0 (the reference) or the item's minimum. */
    fallback: "min" | number;
    /** "task": the task's persona, instruction and bare prompt (see TaskDefinition.judgeView); "generic": our task summary and the whole policy prompt. */
    view: "task" | "generic";
    /** Whether the junior judge sees the reference answer (e.g. the gold summary). */
    seesReference: boolean;
  };
  senior: {
    temperature: number;
    analysisMaxTokens: number;
    analysisWordCap: number;
    /** Stop strings of analysis / criterion turns. */
    stop: string[];
    /** What the analysis shows of the junior's evaluation: its total (the reference) or every item's score and rationale. */
    evaluationShown: "total" | "items";
    /** How rubrics are shown to the senior: "plain" <item> blocks as in the rubric files, or with our name/range attributes. */
    rubricShown: "plain" | "attributed";
    /** Whether the senior judge sees the reference answer. */
    seesReference: boolean;
    refine: RubricWriting;
    merge: RubricWriting;
    /** Words of refinements handed to the merge. */
    mergeWordBudget: number;
    /** Separator between refinements in the merge input. */
    mergeSeparator: string;
  };
  math: {
    planMaxTokens: number;
    executeMaxTokens: number;
    stop: string[];
    /** Which \boxed{} of a response is its answer. */
    answerBox: "first" | "last";
    /** "reference": the reference's string normalisation; "lenient": ours (also equal rationals). */
    answerMatch: "reference" | "lenient";
    /** Guideline meta step: "thirds" sorts a group's cases by score and takes `perThird` from each third; "uniform" takes `perGroup` at random. */
    caseSampling: { kind: "thirds"; perThird: number } | { kind: "uniform"; perGroup: number };
    /** Answer-check cases go to the guideline meta step too (the reference), or only plan/execute ones. */
    includeAnswerChecks: boolean;
    analysisMaxTokens: number;
    refineMaxTokens: number;
    analysisWordCap: number;
    guidelineWordCap: number;
    /** "plain": the reply is the guideline; "tagged": the guideline is read from <guidelines>…</guidelines>. */
    guidelineReply: "plain" | "tagged";
  };
  service: {
    /** What `rewards` carries: the raw item sum (the reference's reward) or the [0, 1]-normalized score. */
    rewardScale: "raw" | "normalized";
  };
}

const EOE = "<EOE>";

export const PAPER: ProtocolProfile = Object.freeze({
  name: "paper",
  templates: {
    rmSystem: "rm/paper/system.md",
    rmResponse: "rm/paper/response.md",
    rmItemRationale: "rm/paper/item-rationale.md",
    rmItemScore: "rm/paper/item-score.md",
    rmSingleCall: "rm/single-call.md",
    rmPlan: "rm/paper/plan.md",
    rmExecute: "rm/paper/execute.md",
    rmPlanScore: "rm/paper/plan-score.md",
    mrmSystem: "mrm/paper/system.md",
    mrmPrescreen: "mrm/prescreen.md",
    mrmAnalyze: "mrm/paper/analyze.md",
    mrmRefine: "mrm/paper/refine.md",
    mrmRefineCount: "mrm/paper/refine-count.md",
    mrmRefineStart: "mrm/paper/write-each.md",
    mrmRefineEach: "mrm/paper/refine-item.md",
    mrmMerge: "mrm/paper/merge.md",
    mrmMergeCount: "mrm/paper/merge-count.md",
    mrmMergeStart: "mrm/paper/write-each.md",
    mrmMergeEach: "mrm/paper/merge-item.md",
    guidelinesAnalyze: "mrm/paper/guidelines-analyze.md",
    guidelinesRefine: "mrm/paper/guidelines-refine.md",
  },
  junior: {
    temperature: 0.02,
    rationaleMaxTokens: 300,
    rationaleStop: [EOE],
    scoreMaxTokens: 16,
    scoreConstraint: "digits",
    clamp: false,
    fallback: 0,
    view: "task",
    seesReference: false,
  },
  senior: {
    temperature: 0.02,
    analysisMaxTokens: 2000,
    analysisWordCap: 1000,
    stop: [EOE, "</EOE>"],
    evaluationShown: "total",
    rubricShown: "plain",
    seesReference: false,
    refine: { structure: "count-then-each", itemMaxTokens: 500, itemWordCap: 300, contextBudgetTokens: 31300, maxItems: 20 },
    merge: { structure: "count-then-each", itemMaxTokens: 500, itemWordCap: 300, contextBudgetTokens: 31300, maxItems: 20 },
    mergeWordBudget: Math.floor(25000 / 1.5),
    mergeSeparator: "\n===\n",
  },
  math: {
    planMaxTokens: 2000,
    executeMaxTokens: 2000,
    stop: [EOE],
    answerBox: "first",
    answerMatch: "reference",
    caseSampling: { kind: "thirds", perThird: 2 },
    includeAnswerChecks: true,
    analysisMaxTokens: 2500,
    refineMaxTokens: 2500,
    analysisWordCap: 1000,
    guidelineWordCap: 1000,
    guidelineReply: "plain",
  },
  service: { rewardScale: "raw" },
}) as ProtocolProfile;

export const HARDENED: ProtocolProfile = Object.freeze({
  name: "hardened",
  templates: {
    rmSystem: "rm/system.md",
    rmResponse: "rm/response.md",
    rmItemRationale: "rm/item-rationale.md",
    rmItemScore: "rm/item-score.md",
    rmSingleCall: "rm/single-call.md",
    rmPlan: "rm/plan.md",
    rmExecute: "rm/execute.md",
    rmPlanScore: "rm/plan-score.md",
    mrmSystem: "mrm/system.md",
    mrmPrescreen: "mrm/prescreen.md",
    mrmAnalyze: "mrm/analyze.md",
    mrmRefine: "mrm/refine.md",
    mrmMerge: "mrm/merge.md",
    guidelinesAnalyze: "mrm/guidelines-analyze.md",
    guidelinesRefine: "mrm/guidelines-refine.md",
  },
  junior: {
    temperature: 0,
    rationaleMaxTokens: 300,
    rationaleStop: [],
    scoreMaxTokens: 16,
    scoreConstraint: "range",
    clamp: true,
    fallback: "min",
    view: "generic",
    seesReference: true,
  },
  senior: {
    temperature: 0.02,
    analysisMaxTokens: 2000,
    analysisWordCap: 1000,
    stop: [],
    evaluationShown: "items",
    rubricShown: "attributed",
    seesReference: true,
    refine: { structure: "whole", maxTokens: 4000 },
    merge: { structure: "whole", maxTokens: 8000 },
    mergeWordBudget: 16000,
    mergeSeparator: "\n\n",
  },
  math: {
    planMaxTokens: 600,
    executeMaxTokens: 800,
    stop: [],
    answerBox: "last",
    answerMatch: "lenient",
    caseSampling: { kind: "uniform", perGroup: 4 },
    includeAnswerChecks: false,
    analysisMaxTokens: 2000,
    refineMaxTokens: 2000,
    analysisWordCap: 1000,
    guidelineWordCap: 600,
    guidelineReply: "tagged",
  },
  service: { rewardScale: "normalized" },
}) as ProtocolProfile;

export const PROFILES: Readonly<Record<ProtocolName, ProtocolProfile>> = { paper: PAPER, hardened: HARDENED };

/** The default profile everywhere a judge is called. */
export const DEFAULT_PROTOCOL: ProtocolName = "paper";

/** A profile by name or as given; undefined → the default. Unknown names are a UserError listing the known ones. */
export function resolveProtocol(p?: ProtocolName | ProtocolProfile | string): ProtocolProfile {
  if (p === undefined) return PROFILES[DEFAULT_PROTOCOL];
  if (typeof p === "object") return p;
  const profile = PROFILES[p as ProtocolName];
  if (!profile) throw new UserError(`protocol: expected one of ${PROTOCOL_NAMES.join(", ")}, got "${p}"`);
  return profile;
}

/** A copy of a profile with some junior/senior/math settings changed (library users, options such as --judge-sees-reference). */
export function withOverrides(
  base: ProtocolProfile,
  o: { junior?: Partial<ProtocolProfile["junior"]>; senior?: Partial<ProtocolProfile["senior"]>; math?: Partial<ProtocolProfile["math"]>; service?: Partial<ProtocolProfile["service"]> },
): ProtocolProfile {
  return {
    ...base,
    junior: { ...base.junior, ...o.junior },
    senior: { ...base.senior, ...o.senior },
    math: { ...base.math, ...o.math },
    service: { ...base.service, ...o.service },
  };
}
