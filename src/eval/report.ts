/**
 * Writes an Elo evaluation to a directory: the scores in the paper's merged-scores shape (so our
 * numbers sit next to `paper_results/*-merged.scores.json` and compare directly), a provenance file
 * (who judged, with which settings, on how many prompts and matches — a number without its origin is
 * not a result), the full match log, an SVG plot and, optionally, a Bradley–Terry fit.
 */
import { join } from "node:path";
import { writeFileAtomic, writeJsonAtomic } from "../util/atomic.ts";
import { eloScoresJson, runEloTournament, type EloOptions, type EloResult } from "./elo.ts";
import { fitBradleyTerry, type BradleyTerryResult } from "./bradley-terry.ts";
import { barChartSvg } from "./plot-svg.ts";
import type { LoadedSystem } from "./runs.ts";

export interface EloReportInput extends Omit<EloOptions, "systems"> {
  systems: LoadedSystem[];
  outDir: string;
  /** Also fit Bradley–Terry with bootstrap CIs. */
  bradleyTerry?: boolean | { bootstrap?: number; seed?: number };
  /** Where the judge lives (endpoint URL, model, server kind) for the provenance block. */
  judgeInfo?: Record<string, unknown>;
}

export interface EloReportFiles {
  scores: string;
  provenance: string;
  matches: string;
  plot: string;
  bradleyTerry?: string;
}

export interface EloReport {
  result: EloResult;
  bt?: BradleyTerryResult;
  files: EloReportFiles;
  provenance: Record<string, unknown>;
}

export async function runEloReport(input: EloReportInput): Promise<EloReport> {
  const startedAt = new Date().toISOString();
  const { outDir, bradleyTerry, judgeInfo, ...eloOpts } = input;
  const result = await runEloTournament(eloOpts);
  const files: EloReportFiles = {
    scores: join(outDir, "elo.scores.json"),
    provenance: join(outDir, "elo.provenance.json"),
    matches: join(outDir, "elo.matches.jsonl"),
    plot: join(outDir, "elo.plot.svg"),
  };
  writeJsonAtomic(files.scores, eloScoresJson(result));
  writeFileAtomic(files.matches, result.matches.map((m) => JSON.stringify(m)).join("\n") + "\n");

  let bt: BradleyTerryResult | undefined;
  if (bradleyTerry) {
    const o = typeof bradleyTerry === "object" ? bradleyTerry : {};
    bt = fitBradleyTerry(
      result.matches.filter((m) => m.scoreA !== null).map((m) => ({ a: m.systemA, b: m.systemB, scoreA: m.scoreA! })),
      { bootstrap: o.bootstrap ?? 200, seed: o.seed ?? 0, base: result.settings.base, scale: result.settings.scale },
    );
    files.bradleyTerry = join(outDir, "bt.json");
    writeJsonAtomic(files.bradleyTerry, bt);
  }

  const sum = (f: (s: EloResult["perSeed"][number]) => number) => result.perSeed.reduce((a, s) => a + f(s), 0);
  const provenance = {
    kind: "elo",
    protocol: "paper (minnesotanlp/mpo elo_simulation.py): random distinct pair + random prompt per match, anonymous labels, <winner> tag, unreadable verdicts re-drawn once",
    judge: { id: result.settings.judge, ...(judgeInfo ?? {}) },
    settings: result.settings,
    systems: input.systems.map((s) => ({ name: s.name, file: s.file, lines: s.lines, duplicateQueries: s.duplicates, prompts: s.responses.size })),
    promptsCompared: result.promptIds.length,
    counts: {
      matchesDrawn: result.matches.length,
      applied: sum((s) => s.applied),
      unreadable: sum((s) => s.unreadable),
      redrawn: sum((s) => s.redrawn),
      skipped: sum((s) => s.skipped),
      ties: sum((s) => s.ties),
      judgeErrors: sum((s) => s.judgeErrors),
    },
    perSeed: result.perSeed,
    ...(bt ? { bradleyTerry: { file: files.bradleyTerry, settings: bt.settings, matches: bt.matches } } : {}),
    startedAt,
    finishedAt: new Date().toISOString(),
  };
  writeJsonAtomic(files.provenance, provenance);

  const s = result.settings;
  writeFileAtomic(
    files.plot,
    barChartSvg(
      Object.keys(result.meanElo).map((n) => ({ label: n, value: result.meanElo[n], error: result.stdElo[n] })),
      {
        title: "Elo ratings (mean ± spread over seeds)",
        subtitle: `judge ${result.settings.judge}; ${s.seeds.length} seeds × ${s.matches} matches; K=${s.k}${s.bothOrders ? "; both orders" : ""}${s.allowTies ? "; ties" : ""}; ${result.promptIds.length} prompts`,
        yLabel: "Elo",
      },
    ),
  );
  return { result, bt, files, provenance };
}

/** A plain-text table of the ratings (highest first) for the terminal. */
export function formatEloTable(r: EloResult, bt?: BradleyTerryResult): string {
  const names = Object.keys(r.meanElo).sort((a, b) => r.meanElo[b] - r.meanElo[a]);
  const rows = [["system", "elo", "± spread", ...(bt ? ["BT", "BT 95% CI"] : [])]];
  for (const n of names)
    rows.push([
      n,
      r.meanElo[n].toFixed(1),
      r.stdElo[n].toFixed(1),
      ...(bt ? [bt.rating[n]?.toFixed(1) ?? "-", bt.ci?.[n] ? `[${bt.ci[n][0].toFixed(0)}, ${bt.ci[n][1].toFixed(0)}]` : "-"] : []),
    ]);
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  return rows.map((row) => row.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd()).join("\n") + "\n";
}
