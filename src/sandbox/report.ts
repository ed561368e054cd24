/** Writes the sandbox's report.html: curves per arm, the rubric versions with diffs, sample responses. */
import { readFileSync, existsSync } from "node:fs";
import { join, relative } from "node:path";
import { diffRubrics, formatDiff } from "../rubric/diff.ts";
import { rubricToText } from "../rubric/format.ts";
import { RubricStore } from "../rubric/store.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { rolloutsFile, runPath } from "../util/run-layout.ts";
import { PAPER_ELO } from "./paper-elo.ts";
import type { Arm, ArmResult, SandboxOutcome } from "./run.ts";

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const COLORS: Record<string, string> = { fixed: "#d62728", mpo: "#2ca02c", expert: "#1f77b4", autoprompt: "#9467bd", base: "#7f7f7f" };

/** A small line chart as inline SVG (no scripts, no CDN). */
function lineChart(title: string, series: Array<{ name: string; color: string; points: Array<[number, number]>; markers?: number[] }>, yLabel: string): string {
  const W = 520, H = 260, L = 48, R = 12, T = 28, B = 36;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter(Number.isFinite);
  if (!xs.length || !ys.length) return `<p>${esc(title)}: no data</p>`;
  const [x0, x1] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y1 - y0 < 1e-6) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const pad = (y1 - y0) * 0.08;
  [y0, y1] = [y0 - pad, y1 + pad];
  const sx = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y: number) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const ticks = Array.from({ length: 5 }, (_, i) => y0 + ((y1 - y0) * i) / 4);
  const digits = y1 - y0 < 0.05 ? 3 : y1 - y0 < 5 ? 2 : 0;
  const xTicks = [...new Set(Array.from({ length: 6 }, (_, i) => Math.round(x0 + ((x1 - x0) * i) / 5)))];
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">`,
    `<text x="${W / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>`,
    ...ticks.map((t) => `<line x1="${L}" x2="${W - R}" y1="${sy(t)}" y2="${sy(t)}" stroke="#eee"/><text x="${L - 4}" y="${sy(t) + 4}" font-size="10" text-anchor="end">${t.toFixed(digits)}</text>`),
    ...xTicks.map((x) => `<text x="${sx(x)}" y="${H - B + 14}" font-size="10" text-anchor="middle">${x}</text>`),
    `<text x="${W / 2}" y="${H - 6}" font-size="11" text-anchor="middle">step</text>`,
    `<text x="12" y="${H / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 12 ${H / 2})">${esc(yLabel)}</text>`,
  ];
  series.forEach((s, k) => {
    for (const m of s.markers ?? []) parts.push(`<line x1="${sx(m)}" x2="${sx(m)}" y1="${T}" y2="${H - B}" stroke="${s.color}" stroke-dasharray="3,3" opacity="0.6"/>`);
    const d = s.points.filter((p) => Number.isFinite(p[1])).map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
    parts.push(`<rect x="${L + 8 + k * 150}" y="${T + 2}" width="10" height="10" fill="${s.color}"/><text x="${L + 22 + k * 150}" y="${T + 11}" font-size="11">${esc(s.name)}</text>`);
  });
  parts.push("</svg>");
  return parts.join("");
}

interface Sample {
  id: string;
  prompt: string;
  response: string;
  oracle: number;
}

/** The Elo section: the sandbox's table, then the paper's tables with the same arms for orientation. */
function eloSection(elo: NonNullable<SandboxOutcome["elo"]>): string[] {
  const s = elo.settings;
  const html = [
    `<h2>Elo (pairwise judge), next to the oracle</h2>`,
    `<p>Per training seed, every arm's first sample on each held-out test prompt meets the others in the paper's tournament (the code of <code>mpo eval elo</code>): a random pair and prompt per match, K ${s.k}, start ${s.initial}, single order, ${s.seeds.length} Elo seeds × ${s.matches} matches. The judge is the sim-server's evaluation judge: it prefers the oracle-better response with probability ${s.agreement} and answers A ${s.positionBias} more often (position bias). Spread = population std over all tournaments. Match logs: ${elo.dirs.map((d) => `<code>${esc(d)}</code>`).join(", ")}.</p>`,
    `<table><tr><th>arm</th><th>what</th><th>Elo ± spread</th><th>oracle (test)</th><th>tournaments</th></tr>`,
    ...elo.rows.map((r) => `<tr><td class="arm-${r.arm}">${r.arm}</td><td style="text-align:left">${esc(r.label)}</td><td><b>${r.elo.toFixed(1)}</b> ± ${r.spread.toFixed(1)}</td><td>${r.oracle.toFixed(3)}</td><td>${r.tournaments}</td></tr>`),
    `</table>`,
    `<h3>The paper's Elo (policy Qwen2-1.5B; authors' result files)</h3><div class="charts">`,
  ];
  for (const t of PAPER_ELO) {
    html.push(`<table><tr><th colspan="3">${esc(t.title)}</th></tr><tr><th>arm</th><th>system</th><th>Elo ± spread</th></tr>`);
    for (const r of t.rows) html.push(`<tr><td class="arm-${r.arm}">${r.arm}</td><td>${esc(r.system)}</td><td>${r.elo.toFixed(1)} ± ${r.spread.toFixed(1)}</td></tr>`);
    html.push(`<tr><td colspan="3" style="text-align:left;font-size:11px">${esc(t.source)}</td></tr></table>`);
  }
  html.push(
    `</div><p>What the simulation can and cannot say: it shows each method's mechanism (which rubric closes which exploit, and how that moves a pairwise ranking) under judges whose perception and the oracle share one built-in world vocabulary; it cannot say how real LLM judges and real policies would rank these methods — the paper's numbers above are the measurement of that.</p>`,
  );
  return html;
}

export function writeReport(
  out: string,
  results: ArmResult[],
  base: { mean: number; samples: Sample[] },
  extra: { arms?: Arm[]; elo?: SandboxOutcome["elo"] } = {},
): string {
  const seeds = [...new Set(results.map((r) => r.seed))];
  const html: string[] = [
    `<!doctype html><html><head><meta charset="utf-8"><title>mpo sandbox report</title><style>
body{font-family:system-ui,sans-serif;margin:24px;max-width:1100px;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f4f4f4}td:first-child{text-align:left}pre{background:#f7f7f7;padding:8px;white-space:pre-wrap;font-size:12px}.charts{display:flex;flex-wrap:wrap;gap:12px}
.arm-fixed{color:${COLORS.fixed}}.arm-mpo{color:${COLORS.mpo}}.arm-expert{color:${COLORS.expert}}.arm-autoprompt{color:${COLORS.autoprompt}}.arm-base{color:${COLORS.base}}details{margin:6px 0}</style></head><body>`,
    `<h1>mpo sandbox: reward hacking and MPO</h1>`,
    `<p>Base policy oracle score on held-out test prompts: <b>${base.mean.toFixed(3)}</b>. Arms trained from the same base policy; the judges are simulated LLMs, the oracle is never seen by the judges or the reward.</p>`,
    `<h2>Results</h2><table><tr><th>seed</th><th>arm</th><th>RM score step 1 → last</th><th>oracle, training rollouts (first 5 → last 5 steps)</th><th>oracle (test) before → after</th><th>KL</th><th>mean words</th><th>rubric versions</th><th>seconds</th></tr>`,
    ...results.map(
      (r) =>
        `<tr><td>${r.seed}</td><td class="arm-${r.arm}">${r.arm}</td><td>${r.rmScoreFirst.toFixed(3)} → ${r.rmScore.toFixed(3)}</td><td>${r.oracleTrainFirst.toFixed(3)} → ${r.oracleTrainLast.toFixed(3)}</td><td>${r.oracleBefore.toFixed(3)} → <b>${r.oracleAfter.toFixed(3)}</b></td><td>${r.kl.toFixed(3)}</td><td>${r.lengthWords.toFixed(1)}</td><td>${r.rubricVersions}</td><td>${r.seconds.toFixed(0)}</td></tr>`,
    ),
    `</table>`,
    ...(extra.elo ? eloSection(extra.elo) : []),
  ];
  for (const r of results.filter((x) => x.calibration)) {
    const c = r.calibration!;
    html.push(
      `<h3 class="arm-autoprompt">Seed ${r.seed}: AutoPrompt calibration of the weak rubric</h3>`,
      `<p>${c.cases} annotated boundary cases; chosen version v${c.version} (${c.items.map(esc).join(", ")}), agreement with the annotator on all cases: MAE ${c.mae?.toFixed(3) ?? "n/a"}, rank correlation ${c.spearman?.toFixed(3) ?? "n/a"}. Log: <code>${esc(relative(out, c.dir))}</code></p>`,
      `<table><tr><th>round</th><th>rubric</th><th>MAE on the round's new cases</th><th>rank correlation</th></tr>${c.rounds.map((x) => `<tr><td>${x.round}</td><td>v${x.version}</td><td>${x.maeNew?.toFixed(3) ?? "n/a"}</td><td>${x.spearmanNew?.toFixed(3) ?? "n/a"}</td></tr>`).join("")}</table>`,
    );
  }
  for (const seed of seeds) {
    const rs = results.filter((r) => r.seed === seed);
    const series = (key: "rm" | "oracle" | "length") =>
      rs.map((r) => ({
        name: r.arm,
        color: COLORS[r.arm] ?? "#555",
        points: r.perStep.map((p) => [p.step, p[key]] as [number, number]),
        markers: r.perStep.filter((p) => p.meta).map((p) => p.step),
      }));
    html.push(
      `<h2>Seed ${seed}: curves</h2><div class="charts">`,
      lineChart("RM score (normalized, training rollouts)", series("rm"), "RM score"),
      lineChart("Oracle score (training rollouts)", series("oracle"), "oracle"),
      lineChart("Response length", series("length"), "words"),
      `</div><p>Dashed lines: meta steps (new rubric versions take effect at the next step).</p>`,
    );
    for (const r of rs) {
      const store = RubricStore.open(r.runDir);
      const versions = store.list();
      html.push(`<h3 class="arm-${r.arm}">Seed ${seed}, arm ${r.arm}: rubric versions (${versions.length})</h3>`);
      versions.forEach((v, i) => {
        const body =
          i === 0 || v.parent === null ? rubricToText(v.rubric) : formatDiff(diffRubrics(store.get(v.parent).rubric, v.rubric));
        html.push(`<details${i === versions.length - 1 ? " open" : ""}><summary>v${v.version} — ${esc(v.author.kind)}${v.author.kind === "meta" ? ` at step ${v.step}` : v.author.kind === "autoprompt" ? ` round ${v.author.round}` : ""}, ${v.rubric.items.length} items: ${esc(v.rubric.items.map((it) => it.name).join(", "))}</summary><pre>${esc(body)}</pre></details>`);
      });
      const first = readRollouts(runPath(r.runDir, rolloutsFile(1))).slice(0, 2);
      const finalEval = existsSync(join(r.runDir, "final-eval.json")) ? (JSON.parse(readFileSync(join(r.runDir, "final-eval.json"), "utf8")).samples as Sample[]).slice(0, 3) : [];
      html.push(`<details><summary>Sample responses: start (step 1) and end (test prompts after training)</summary>`);
      for (const s of first) html.push(`<p><b>step 1</b> — ${esc(s.prompt)} (RM ${Number(s.normalized ?? 0).toFixed(2)})</p><pre>${esc(s.response)}</pre>`);
      for (const s of finalEval) html.push(`<p><b>end</b> — ${esc(s.prompt)} (oracle ${s.oracle.toFixed(2)})</p><pre>${esc(s.response)}</pre>`);
      html.push(`</details><p>Run directory: <code>${esc(relative(out, r.runDir))}</code></p>`);
    }
  }
  html.push(`</body></html>`);
  const path = join(out, "report.html");
  writeFileAtomic(path, html.join("\n"));
  return path;
}

function readRollouts(path: string): Array<{ prompt: string; response: string; normalized?: number }> {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .flatMap((l) => {
      try {
        return [JSON.parse(l)];
      } catch {
        return [];
      }
    });
}
