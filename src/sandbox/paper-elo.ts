/**
 * The paper's Elo results (policy 1.5B), copied as numbers from the authors' result files
 * (minnesotanlp/mpo `results/policy-1.5b/elo_scores/<task>/*-merged.scores.json`; mean over 5 tournaments,
 * spread = std over them), mapped onto the sandbox's arms: base = base-1.5b, fixed = iter0 (one-line rubric),
 * expert = expert rubric, autoprompt = AutoPrompt rubric, mpo = MPO (RM size _ MRM size). Shown next to the
 * sandbox's own table for orientation only: different policy, judges, task and scale.
 */
export interface PaperEloTable {
  title: string;
  source: string;
  rows: Array<{ arm: "base" | "fixed" | "expert" | "autoprompt" | "mpo"; system: string; elo: number; spread: number }>;
}

export const PAPER_ELO: PaperEloTable[] = [
  {
    title: "essay writing, RM 32B (MPO: RM 32B, MRM 72B)",
    source: "essay_writing/rm_32-merged.scores.json",
    rows: [
      { arm: "base", system: "base-1.5b", elo: 793.8, spread: 11.4 },
      { arm: "fixed", system: "iter0-32b", elo: 984.5, spread: 9.6 },
      { arm: "expert", system: "expert-32b", elo: 1083.6, spread: 16.9 },
      { arm: "autoprompt", system: "autoprompt-32b", elo: 970.4, spread: 15.4 },
      { arm: "mpo", system: "32b_72b", elo: 1167.8, spread: 7.2 },
    ],
  },
  {
    title: "essay writing, RM 72B (MPO: RM 72B, MRM 72B)",
    source: "essay_writing/rm_72-merged.scores.json",
    rows: [
      { arm: "base", system: "base-1.5b", elo: 888.6, spread: 10.0 },
      { arm: "fixed", system: "iter0-72b", elo: 1110.8, spread: 7.4 },
      { arm: "expert", system: "expert-72b", elo: 706.1, spread: 12.4 },
      { arm: "autoprompt", system: "autoprompt-72b", elo: 1050.5, spread: 15.3 },
      { arm: "mpo", system: "72b_72b", elo: 1243.9, spread: 8.4 },
    ],
  },
  {
    title: "summarization, RM 32B (MPO: RM 32B, MRM 32B; no expert arm)",
    source: "summarization/summarization-merged.scores.json",
    rows: [
      { arm: "base", system: "base", elo: 818.8, spread: 20.9 },
      { arm: "fixed", system: "iter0-32b", elo: 952.8, spread: 18.6 },
      { arm: "autoprompt", system: "autoprompt-32b", elo: 1149.5, spread: 11.9 },
      { arm: "mpo", system: "32b_32b", elo: 1078.9, spread: 12.0 },
    ],
  },
];
