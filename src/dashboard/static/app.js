// mpo dashboard front end: a small hash-routed single-page app in plain JS modules (no build step, no CDN).
// Views: runs list, per-run curves / rubric lineage / rollouts, and several runs overlaid for comparison.
// All text from run logs goes into the DOM via textContent (never innerHTML): logs hold model output.
import uPlot from "/vendor/uplot.js";

const view = document.getElementById("view");
const state = { route: null, charts: [], rolloutFilter: {}, rubricSel: null, sseOpen: false, refreshers: new Map() };

// ------------------------------------------------------------------ helpers
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}
// replaceChildren that accepts nested arrays and skips null/false (optional parts of a view).
function put(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false && c !== ""));
  return el;
}
const enc = encodeURIComponent;
async function api(path) {
  const res = await fetch(path, { cache: "no-store" });
  const body = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body;
}
function fmt(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  return a >= 1000 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : x.toFixed(digits);
}
function ago(iso) {
  if (!iso) return "–";
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(iso).toLocaleString();
}
function problemsBox(problems, what = "this run") {
  if (!problems || problems.length === 0) return null;
  return h("details", { class: "problems", open: true },
    h("summary", {}, `${problems.length} problem${problems.length > 1 ? "s" : ""} reading ${what} (showing what could be read)`),
    h("ul", {}, problems.map((p) => h("li", {}, `${p.file}: ${p.message}`))));
}
function statusBadge(run) {
  const b = h("span", { class: `badge ${run.state}`, "data-state": run.state }, run.state);
  return run.stale ? [b, " ", h("span", { class: "badge stale", title: `${run.staleReason ?? "no recent writes"}: the writer may have died` }, "stale?")] : b;
}
function destroyCharts() {
  for (const c of state.charts) c.destroy();
  state.charts = [];
}

// ------------------------------------------------------------------ routing
function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  if (parts[0] === "run" && parts[1]) return { name: "run", id: decodeURIComponent(parts[1]), tab: parts[2] || "curves" };
  if (parts[0] === "compare" && parts[1]) return { name: "compare", ids: decodeURIComponent(parts[1]).split(",").filter(Boolean) };
  return { name: "runs" };
}
async function render() {
  state.route = parseRoute();
  destroyCharts();
  state.refreshers.clear();
  put(view, h("p", { class: "muted" }, "Loading…"));
  try {
    if (state.route.name === "run") await renderRun(state.route);
    else if (state.route.name === "compare") await renderCompare(state.route.ids);
    else await renderRuns();
  } catch (err) {
    put(view, h("div", { class: "problems" }, `Could not load: ${err.message}`));
  }
}
window.addEventListener("hashchange", render);
window.addEventListener("resize", () => {
  for (const c of state.charts) c.setSize({ width: chartWidth(c.root.parentElement), height: 200 });
});

// ------------------------------------------------------------------ runs list
async function renderRuns() {
  const data = await api("/api/runs");
  document.getElementById("root-path").textContent = data.root;
  const selected = new Set();
  const compareBtn = h("button", { class: "primary", id: "compare-btn", disabled: true, onclick: () => { location.hash = `#/compare/${enc([...selected].join(","))}`; } }, "Compare selected");
  // Runs nested under a common parent (a sandbox with one directory per arm) get a group row with a compare link.
  const parentOf = (id) => (id.includes("/") ? id.slice(0, id.lastIndexOf("/")) : null);
  const groups = new Map();
  for (const r of data.runs) { const p = parentOf(r.id); if (p !== null) groups.set(p, [...(groups.get(p) || []), r]); }
  const shownGroups = new Set();
  const rows = data.runs.flatMap((r) => {
    const p = parentOf(r.id);
    const g = p !== null ? groups.get(p) : null;
    const head = g && g.length > 1 && !shownGroups.has(p)
      ? (shownGroups.add(p), h("tr", { class: "group", "data-group": p }, h("td", {}), h("td", { colspan: "8" },
          h("b", {}, p), ` · ${g.length} arms (${g.map((x) => x.arm ?? x.id.slice(p.length + 1)).join(", ")}) · `,
          h("a", { href: `#/compare/${enc(g.map((x) => x.id).join(","))}` }, "compare arms"))))
      : null;
    return [head, runRow(r)];
  }).filter(Boolean);
  function runRow(r) { return (
    h("tr", { "data-run": r.id },
      h("td", {}, h("input", { type: "checkbox", "aria-label": `select ${r.id}`, onchange: (e) => { e.target.checked ? selected.add(r.id) : selected.delete(r.id); compareBtn.disabled = selected.size < 1; } })),
      h("td", {}, h("a", { href: `#/run/${enc(r.id)}/curves` }, r.id)),
      h("td", {}, r.task ?? "–"), h("td", {}, r.algorithm ?? "–"), h("td", {}, r.arm ?? "–"),
      h("td", { class: "steps" }, `${r.lastStep ?? "–"}${r.totalSteps ? ` / ${r.totalSteps}` : ""}`),
      h("td", {}, statusBadge(r), r.message ? h("div", { class: "muted" }, r.message) : null),
      h("td", { title: r.lastUpdate ?? "" }, ago(r.lastUpdate)),
      h("td", {}, r.problems.length ? h("span", { class: "chip flag", title: r.problems.map((p) => `${p.file}: ${p.message}`).join("\n") }, `${r.problems.length} problem(s)`) : ""),
    )); }
  put(view, 
    h("h1", {}, "Runs"),
    h("div", { class: "toolbar" }, compareBtn, h("span", { class: "muted" }, "tick runs to overlay their curves (e.g. fixed rubric vs MPO)")),
    data.runs.length === 0
      ? h("p", { class: "muted" }, "No runs found here yet (a run is a directory with status.json or metrics.jsonl). This page updates when one appears.")
      : h("table", { class: "runs", id: "runs-table" },
          h("thead", {}, h("tr", {}, ["", "run", "task", "algorithm", "arms", "steps", "status", "last update", ""].map((t) => h("th", {}, t)))),
          h("tbody", {}, rows)),
  );
  state.refreshers.set("*", () => renderRuns());
}

// ------------------------------------------------------------------ one run
async function renderRun(route) {
  const { id, tab } = route;
  const summary = await api(`/api/runs/${enc(id)}`);
  const head = h("div", { id: "run-head" });
  const fillHead = (s) => put(head, 
    h("h1", {}, s.id, " ", statusBadge(s)),
    h("div", { class: "summary-line" },
      `task ${s.task ?? "–"} · ${s.algorithm ?? "–"} · arm ${s.arm ?? "–"} · `,
      h("span", { id: "run-steps" }, `step ${s.lastStep ?? "–"}`), s.totalSteps ? ` of ${s.totalSteps}` : "",
      ` · ${s.rubricVersions} rubric version(s) · updated ${ago(s.lastUpdate)}`, s.message ? ` · ${s.message}` : ""),
    problemsBox(s.problems));
  fillHead(summary);
  const tabs = h("nav", { class: "tabs" }, [["curves", "Curves"], ["rubrics", "Rubric lineage"], ["rollouts", "Rollouts"]].map(([t, label]) =>
    h("a", { href: `#/run/${enc(id)}/${t}`, class: t === tab ? "active" : "", "data-tab": t }, label)));
  const body = h("div", { id: "tab-body" });
  put(view, head, tabs, body);
  const refreshHead = async () => fillHead(await api(`/api/runs/${enc(id)}`));
  if (tab === "rubrics") {
    await renderRubrics(id, body);
    state.refreshers.set(id, async (parts) => {
      await refreshHead();
      if (parts.some((p) => p === "rubrics" || p === "meta")) await renderRubrics(id, body);
    });
  } else if (tab === "rollouts") {
    await renderRollouts(id, body);
    state.refreshers.set(id, async (parts) => {
      await refreshHead();
      if (parts.includes("rollouts")) await loadRollouts(id, body, false);
    });
  } else {
    await renderCurves([id], body);
    state.refreshers.set(id, async (parts) => {
      await refreshHead();
      if (parts.some((p) => p === "metrics" || p === "eval" || p === "rollouts" || p === "meta")) await renderCurves([id], body);
    });
  }
}

// ------------------------------------------------------------------ curves
const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"];
const get = (path) => (r) => path.split(".").reduce((o, k) => (o && typeof o === "object" ? o[k] : undefined), r);
const BASE_CHARTS = [
  { key: "score", title: "Mean RM score (band: ± std)", get: get("score.mean"), band: (r) => [get("score.mean")(r) - (get("score.std")(r) ?? 0), get("score.mean")(r) + (get("score.std")(r) ?? 0)] },
  { key: "normalizedScore", title: "Normalized RM score", get: get("normalizedScore.mean") },
  { key: "kl", title: "KL to reference", get: get("kl") },
  { key: "entropy", title: "Entropy", get: get("entropy") },
  { key: "responseLength", title: "Mean response length", get: get("responseLength.mean") },
  { key: "eosRate", title: "EOS rate", get: get("eosRate") },
  { key: "excluded", title: "Excluded samples (no usable score)", get: get("excluded"), hideIfAllZero: true },
];
function chartWidth(el) {
  return Math.max(300, (el?.clientWidth || 460) - 18);
}
function numericLeaves(r, skip) {
  const out = {};
  for (const [k, v] of Object.entries(r)) {
    if (skip.has(k)) continue;
    if (typeof v === "number" && Number.isFinite(v)) out[k] = v;
    else if (v && typeof v === "object" && !Array.isArray(v)) for (const [k2, v2] of Object.entries(v)) if (typeof v2 === "number" && Number.isFinite(v2)) out[`${k}.${k2}`] = v2;
  }
  return out;
}
// Draws dashed vertical lines at meta steps (labelled with the version they produced) and shades warning ranges.
function markersPlugin(metaSteps, ranges) {
  return {
    hooks: {
      draw: (u) => {
        const ctx = u.ctx;
        const { top, height, left, width } = u.bbox;
        ctx.save();
        for (const r of ranges) {
          const x0 = Math.max(left, u.valToPos(r.from, "x", true));
          const x1 = Math.min(left + width, u.valToPos(r.to, "x", true));
          if (x1 > x0) { ctx.fillStyle = "rgba(251,146,60,0.12)"; ctx.fillRect(x0, top, x1 - x0, height); }
        }
        ctx.setLineDash([5, 4]);
        ctx.lineWidth = 1.5 * devicePixelRatio;
        ctx.font = `${11 * devicePixelRatio}px system-ui`;
        for (const m of metaSteps) {
          const x = u.valToPos(m.step, "x", true);
          if (x < left || x > left + width) continue;
          ctx.strokeStyle = m.ok === false ? "#dc2626" : "#7c3aed";
          ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
          ctx.fillStyle = "#7c3aed";
          const label = m.rejectedVersion !== undefined ? `meta: v${m.rejectedVersion} rejected` : m.toVersion !== null && m.toVersion !== undefined ? `meta→v${m.toVersion}` : "meta";
          ctx.fillText(label, x + 3 * devicePixelRatio, top + 12 * devicePixelRatio);
          // Adaptive schedule: what fired, under the version label.
          if (m.trigger) ctx.fillText(m.trigger, x + 3 * devicePixelRatio, top + 25 * devicePixelRatio);
        }
        ctx.restore();
      },
    },
  };
}

async function renderCurves(ids, body) {
  const runs = await Promise.all(ids.map(async (id) => {
    const [m, s] = await Promise.all([api(`/api/runs/${enc(id)}/metrics`), api(`/api/runs/${enc(id)}/signals`).catch((e) => ({ signals: [], repetition: [], distinct2: [], problems: [{ file: "signals", message: e.message }] }))]);
    return { id, m, s };
  }));
  destroyCharts();
  const single = ids.length === 1;
  // Chart list: base metrics present in any run, then eval metrics, then rollout repetition.
  const defs = BASE_CHARTS.filter((d) => runs.some((r) => r.m.rows.some((row) => typeof d.get(row) === "number" && (!d.hideIfAllZero || d.get(row) !== 0))));
  const evalKeys = new Set();
  for (const r of runs) for (const e of r.m.eval) Object.keys(numericLeaves(e, new Set(["step", "time", "rubricVersion"]))).forEach((k) => evalKeys.add(k));
  for (const k of evalKeys) defs.push({ key: `eval:${k}`, title: `Eval: ${k}`, source: "eval", get: (row) => numericLeaves(row, new Set(["step", "time", "rubricVersion"]))[k] });
  if (runs.some((r) => r.s.repetition?.length)) defs.push({ key: "repetition", title: "Repeated-sentence rate (rollouts)", source: "repetition" });

  const signalsBox = h("div", { class: "signals", id: "signals" });
  for (const r of runs) {
    for (const s of r.s.signals) {
      signalsBox.append(h("div", { class: "signal", "data-kind": s.kind },
        h("span", { class: "kind" }, `⚠ ${s.kind}`), single ? "" : h("span", { class: "chip" }, r.id), " ", s.message,
        h("span", { class: "steps" }, `steps ${s.steps.from}–${s.steps.to}`)));
    }
  }
  if (!signalsBox.childElementCount) signalsBox.append(h("p", { class: "muted", id: "no-signals" }, "No reward-hacking signals in the logs so far."));
  const problems = runs.flatMap((r) => [...r.m.problems, ...(r.s.problems || [])].map((p) => ({ file: single ? p.file : `${r.id}/${p.file}`, message: p.message })));
  const seen = new Set();
  // In a single-run view the header already lists problems with metrics.jsonl/status.json/config.json.
  const inHeader = (p) => single && ["metrics.jsonl", "status.json", "config.json"].includes(p.file);
  const uniqProblems = problems.filter((p) => { const k = p.file + p.message; if (seen.has(k) || inHeader(p)) return false; seen.add(k); return true; });
  const grid = h("div", { class: "charts", id: "charts" });
  const lastSteps = runs.map((r) => (r.m.rows.length ? r.m.rows[r.m.rows.length - 1].step : null));
  put(body, 
    h("h2", {}, "Reward-hacking signals"), signalsBox,
    single ? null : problemsBox(uniqProblems, "these runs"),
    single && uniqProblems.length ? problemsBox(uniqProblems, "metrics / rollouts") : null,
    h("p", { class: "legend-note" }, "Dashed purple lines: meta steps (rubric refinements); orange bands: steps a warning refers to.",
      h("span", { id: "latest-step", "data-step": lastSteps.join(",") }, ` Latest step: ${lastSteps.map((s) => s ?? "–").join(", ")}`)),
    grid);

  if (defs.length === 0) grid.append(h("p", { class: "muted" }, "No metrics written yet (curves appear here as steps finish)."));
  for (const d of defs) {
    // Union of steps over the runs, so overlaid runs line up on a shared x axis (gaps as null).
    const pointsPerRun = runs.map((r) => {
      if (d.source === "repetition") return (r.s.repetition || []).map((p) => [p.step, p.value, null]);
      const rows = d.source === "eval" ? r.m.eval : r.m.rows;
      return rows.map((row) => [row.step, d.get(row), d.band ? d.band(row) : null]).filter((p) => typeof p[1] === "number" && Number.isFinite(p[1]));
    });
    const xs = [...new Set(pointsPerRun.flatMap((ps) => ps.map((p) => p[0])))].sort((a, b) => a - b);
    if (xs.length === 0) continue;
    const data = [xs];
    const series = [{ label: "step" }];
    const bands = [];
    runs.forEach((r, i) => {
      const byStep = new Map(pointsPerRun[i].map((p) => [p[0], p]));
      const color = PALETTE[i % PALETTE.length];
      data.push(xs.map((x) => byStep.get(x)?.[1] ?? null));
      series.push({ label: single ? d.key : r.id, stroke: color, width: 2, spanGaps: true, points: { show: xs.length < 60 } });
      if (d.band && pointsPerRun[i].some((p) => p[2])) {
        data.push(xs.map((x) => byStep.get(x)?.[2]?.[0] ?? null), xs.map((x) => byStep.get(x)?.[2]?.[1] ?? null));
        series.push({ label: `${single ? "" : r.id + " "}−std`, stroke: color + "55", width: 1, spanGaps: true, points: { show: false } },
          { label: `${single ? "" : r.id + " "}+std`, stroke: color + "55", width: 1, spanGaps: true, points: { show: false } });
        bands.push({ series: [series.length - 1, series.length - 2], fill: color + "22" });
      }
    });
    const metaSteps = runs.length === 1 ? runs[0].m.metaSteps : runs.flatMap((r) => r.m.metaSteps);
    const related = { score: ["rm-up-eval-down"], normalizedScore: ["rm-up-eval-down"], responseLength: ["length-explode", "length-collapse"], eosRate: ["eos-dropping"], repetition: ["repetition-rising"] };
    const ranges = runs.flatMap((r) => r.s.signals.filter((s) => (related[d.key] || []).includes(s.kind) || (d.key.startsWith("eval:") && s.kind === "rm-up-eval-down" && `eval:${s.metric}` === d.key)).map((s) => s.steps));
    const box = h("div", { class: "chart", "data-metric": d.key, "data-points": String(pointsPerRun.reduce((n, p) => n + p.length, 0)), "data-last-step": String(xs[xs.length - 1]) }, h("h3", {}, d.title));
    grid.append(box);
    const u = new uPlot({ width: chartWidth(box), height: 200, series, bands, scales: { x: { time: false } }, axes: [{ label: "step" }, {}], legend: { live: true }, plugins: [markersPlugin(metaSteps, ranges)] }, data, box);
    // The ± std edges are drawn but kept out of the legend (the band says it).
    const rows = u.root.querySelectorAll(".u-legend .u-series");
    series.forEach((sr, i) => { if (/[−+]std$/.test(sr.label) && rows[i]) rows[i].style.display = "none"; });
    state.charts.push(u);
  }
}

async function renderCompare(ids) {
  put(view, 
    h("h1", {}, "Compare runs"),
    h("p", { class: "summary-line" }, ids.map((id, i) => [i ? " vs " : "", h("a", { href: `#/run/${enc(id)}/curves`, style: `color:${PALETTE[i % PALETTE.length]}` }, id)])),
  );
  const body = h("div", { id: "tab-body" });
  view.append(body);
  await renderCurves(ids, body);
  for (const id of ids) state.refreshers.set(id, async (parts) => { if (parts.some((p) => ["metrics", "eval", "rollouts", "meta"].includes(p))) await renderCurves(ids, body); });
}

// ------------------------------------------------------------------ rubric lineage
function authorText(v) {
  if (!v.author) return "unknown author";
  if (v.author.kind === "meta") return `meta step ${v.author.step}`;
  if (v.author.kind === "user") return `user${v.author.note ? `: ${v.author.note}` : ""}`;
  if (v.author.kind === "autoprompt") return `autoprompt round ${v.author.round}`;
  return "initial";
}
function renderValue(v) {
  if (v === null || v === undefined) return h("span", { class: "muted" }, "–");
  // A refinement or merge result that is a rubric: list its items instead of dumping JSON.
  if (v && typeof v === "object" && Array.isArray(v.items) && v.items.every((it) => it && typeof it.name === "string" && typeof it.text === "string"))
    return h("ul", {}, v.items.map((it) => h("li", {}, h("b", {}, it.name), ` (${it.min}–${it.max}) `, it.text)));
  if (v && typeof v === "object" && typeof v.verdict === "string") return h("pre", {}, `${v.verdict}${v.raw ? ` — ${v.raw}` : ""}`);
  if (typeof v === "string") return h("pre", {}, v);
  if (typeof v === "number" || typeof v === "boolean") return h("span", {}, String(v));
  if (Array.isArray(v) && v.every((x) => typeof x !== "object" || x === null)) return h("pre", {}, v.map(String).join("\n") || "(none)");
  return h("pre", {}, JSON.stringify(v, null, 2));
}
// Meta logs are written by the trainer; render the known parts readably and anything else generically.
function renderMetaLog(step, data) {
  const log = data.log || {};
  const box = h("div", { class: "meta-log", "data-meta-step": String(step) }, h("h3", {}, `Meta step ${step}`), problemsBox(data.problems, "this meta log"));
  const kv = h("div", { class: "kv" });
  for (const [k, v] of Object.entries(log)) {
    if (k === "samples") continue;
    kv.append(h("div", { class: "k" }, k), h("div", {}, renderValue(v)));
  }
  box.append(kv);
  if (Array.isArray(log.samples)) {
    box.append(h("h3", {}, `Per-sample analyses (${log.samples.length})`));
    for (const s of log.samples) {
      const skv = h("div", { class: "kv sample" });
      for (const [k, v] of Object.entries(s || {})) skv.append(h("div", { class: "k" }, k), h("div", {}, renderValue(v)));
      box.append(skv);
    }
  }
  return box;
}
function wordDiff(ops) {
  return h("pre", {}, ops.map((o) => (o.op === "add" ? h("ins", {}, o.text) : o.op === "del" ? h("del", {}, o.text) : o.text)));
}
function renderItemChange(c) {
  const it = c.after || c.before;
  const range = `${it.min}–${it.max}${it.weight !== undefined && it.weight !== 1 ? ` ×${it.weight}` : ""}`;
  const el = h("div", { class: `item ${c.kind}`, "data-item": c.name, "data-kind": c.kind },
    c.kind !== "unchanged" ? h("span", { class: "tag" }, c.kind) : null, h("span", { class: "label" }, c.name), h("span", { class: "muted" }, range));
  if (c.kind === "changed") {
    if (c.renamedFrom) el.append(h("div", { class: "muted" }, `renamed from ${c.renamedFrom}`));
    if (c.fields.includes("range") || c.fields.includes("weight")) el.append(h("div", { class: "muted" }, `was ${c.before.min}–${c.before.max}${c.before.weight ? ` ×${c.before.weight}` : ""}`));
    el.append(wordDiff(c.textDiff));
  } else el.append(h("pre", {}, it.text));
  return el;
}
async function renderRubrics(id, body) {
  const [data, metaList] = await Promise.all([api(`/api/runs/${enc(id)}/rubrics`), api(`/api/runs/${enc(id)}/meta`)]);
  const versions = data.versions;
  if (state.rubricSel === null || !versions.some((v) => v.version === state.rubricSel)) state.rubricSel = versions.length ? versions[versions.length - 1].version : null;
  const depth = new Map();
  for (const v of versions) depth.set(v.version, v.parent === null ? 0 : (depth.get(v.parent) ?? 0) + 1);
  const list = h("ul", { class: "versions", id: "versions" }, versions.map((v) =>
    h("li", { style: `margin-left:${Math.min(depth.get(v.version), 6) * 10}px` }, h("button", {
      class: v.version === state.rubricSel ? "active" : "", "data-version": String(v.version),
      onclick: () => { state.rubricSel = v.version; renderRubrics(id, body); },
    }, h("b", {}, `v${v.version}`), ` · ${authorText(v)} · ${v.items.length} items`,
      v.diff && v.parent !== null ? h("div", { class: "muted" }, `+${v.diff.added} −${v.diff.removed} ~${v.diff.changed} vs v${v.parent}`) : null))));
  const detail = h("div", { id: "version-detail" });
  const sel = versions.find((v) => v.version === state.rubricSel);
  if (sel) {
    detail.append(
      h("h2", {}, `Rubric v${sel.version}`),
      h("div", { class: "summary-line" }, `${authorText(sel)} · parent ${sel.parent === null ? "none" : `v${sel.parent}`} · created at step ${sel.step ?? "–"} · ${sel.createdAt ?? ""}`),
      sel.diff && sel.parent !== null ? h("p", { id: "diff-summary" }, `Against v${sel.parent}: ${sel.diff.added} added, ${sel.diff.removed} removed, ${sel.diff.changed} changed, ${sel.diff.unchanged} unchanged`) : h("p", { class: "muted" }, "Initial version (no parent)."),
      h("div", { id: "diff-items" }, (sel.diff ? sel.diff.items : sel.items.map((it) => ({ kind: "unchanged", name: it.name, after: it }))).map(renderItemChange)),
    );
    if (sel.analyses.length) detail.append(h("div", { class: "muted" }, `Analyses: ${sel.analyses.join(", ")}`));
    if (sel.metaSteps.length) {
      detail.append(h("h2", {}, "Meta analyses that produced it"));
      for (const s of sel.metaSteps) {
        try { detail.append(renderMetaLog(s, await api(`/api/runs/${enc(id)}/meta/${s}`))); } catch (err) { detail.append(problemsBox([{ file: `meta step ${s}`, message: err.message }], "the meta log")); }
      }
    }
  } else detail.append(h("p", { class: "muted" }, "No readable rubric versions in this run."));
  const produced = new Set(versions.flatMap((v) => v.metaSteps.map(String)));
  const others = metaList.meta.filter((m) => !produced.has(m.key));
  const otherBox = h("div", { id: "other-meta" });
  if (others.length) {
    otherBox.append(h("h2", {}, "Other meta steps (no new version)"));
    for (const m of others) {
      otherBox.append(h("button", { onclick: async (e) => {
        e.target.disabled = true;
        try { otherBox.append(renderMetaLog(m.key, await api(`/api/runs/${enc(id)}/meta/${enc(m.key)}`))); } catch (err) { otherBox.append(problemsBox([{ file: m.file, message: err.message }], "the meta log")); }
      } }, `step ${m.key}`), " ");
    }
  }
  put(body, h("div", { id: "rubric-problems" }, problemsBox(data.problems, "rubrics")), h("div", { class: "lineage" }, h("div", {}, h("h2", {}, "Versions"), list, otherBox), detail));
}

// ------------------------------------------------------------------ rollouts
async function renderRollouts(id, body) {
  const f = state.rolloutFilter;
  const input = (name, attrs) => h("input", { name, value: f[name] ?? "", ...attrs });
  const form = h("form", { class: "toolbar", id: "rollout-filter", onsubmit: (e) => { e.preventDefault(); readForm(form); f.offset = 0; loadRollouts(id, body, true); } },
    h("label", {}, "step ", h("select", { name: "step" }, h("option", { value: "" }, "any"))),
    h("label", {}, "score ≥ ", input("minScore", { type: "number", step: "any", style: "width:80px" })),
    h("label", {}, "≤ ", input("maxScore", { type: "number", step: "any", style: "width:80px" })),
    h("label", {}, "rubric ", h("select", { name: "version" }, h("option", { value: "" }, "any"))),
    h("label", {}, "flag ", h("select", { name: "flag" }, h("option", { value: "" }, "any"))),
    h("button", { type: "submit", class: "primary" }, "Apply"),
    h("button", { type: "button", onclick: () => { for (const k of ["step", "minScore", "maxScore", "version", "flag"]) delete f[k]; f.offset = 0; renderRollouts(id, body); } }, "Clear"));
  put(body, form, h("div", { id: "rollout-problems" }), h("div", { class: "toolbar", id: "pager" }), h("div", { id: "rollouts" }));
  await loadRollouts(id, body, true);
}
function readForm(form) {
  const f = state.rolloutFilter;
  for (const el of form.querySelectorAll("input, select")) { if (el.value === "") delete f[el.name]; else f[el.name] = el.value; }
}
function fillSelect(sel, values, current, label) {
  put(sel, h("option", { value: "" }, "any"), values.map((v) => h("option", { value: String(v), selected: String(v) === String(current ?? "") }, label(v))));
}
async function loadRollouts(id, body, scrollTop) {
  const f = state.rolloutFilter;
  const limit = 25;
  const q = new URLSearchParams();
  for (const k of ["step", "minScore", "maxScore", "version", "flag"]) if (f[k] !== undefined && f[k] !== "") q.set(k, f[k]);
  q.set("offset", String(f.offset || 0));
  q.set("limit", String(limit));
  const page = await api(`/api/runs/${enc(id)}/rollouts?${q}`);
  const form = body.querySelector("#rollout-filter");
  fillSelect(form.querySelector("[name=step]"), page.facets.steps, f.step, (v) => `${v}`);
  fillSelect(form.querySelector("[name=version]"), page.facets.versions, f.version, (v) => `v${v}`);
  fillSelect(form.querySelector("[name=flag]"), page.facets.flags, f.flag, (v) => v);
  put(body.querySelector("#rollout-problems"), problemsBox(page.problems, "rollouts") || "");
  const from = page.total ? page.offset + 1 : 0;
  const to = page.offset + page.rollouts.length;
  put(body.querySelector("#pager"), 
    h("button", { disabled: page.offset === 0, onclick: () => { f.offset = Math.max(0, page.offset - limit); loadRollouts(id, body, true); } }, "← Prev"),
    h("span", { id: "rollout-count", "data-total": String(page.total) }, `${from}–${to} of ${page.total} matching (${page.facets.count} rollouts in run; score range ${fmt(page.facets.scoreMin)}–${fmt(page.facets.scoreMax)})`),
    h("button", { disabled: to >= page.total, onclick: () => { f.offset = page.offset + limit; loadRollouts(id, body, true); } }, "Next →"));
  put(body.querySelector("#rollouts"), page.rollouts.length ? page.rollouts.map(renderRollout)
    : h("p", { class: "muted" }, page.facets.count ? "No rollouts match these filters." : "No rollouts written yet (this page updates when they appear)."));
  if (scrollTop) window.scrollTo(0, 0);
}
function renderRollout(r) {
  const ev = r.evaluation;
  const flags = [...new Set([...(r.flags || []), ...((ev && ev.flags) || [])])];
  return h("div", { class: "rollout", "data-id": String(r.id ?? ""), "data-score": String(r.score ?? ""), "data-step": String(r.step ?? "") },
    h("div", { class: "head" },
      h("span", { class: "score" }, `score ${fmt(r.score)}`), h("span", { class: "muted" }, `normalized ${fmt(r.normalized)}`),
      h("span", {}, `step ${r.step}`), h("span", { class: "chip" }, `rubric v${r.rubricVersion ?? "?"}`),
      r.eos === false ? h("span", { class: "chip flag" }, "no EOS") : null, r.length !== undefined ? h("span", { class: "muted" }, `${r.length} tokens`) : null,
      flags.map((x) => h("span", { class: "chip flag" }, x)), h("span", { class: "muted" }, `${r.id ?? ""} · ${r._file}:${r._line}`)),
    h("details", { class: "prompt", open: true }, h("summary", {}, "Prompt"), h("pre", {}, String(r.prompt ?? ""))),
    h("div", { class: "response" }, h("pre", {}, String(r.response ?? ""))),
    r.reference ? h("details", {}, h("summary", {}, "Reference"), h("pre", {}, String(r.reference))) : null,
    ev && Array.isArray(ev.items)
      ? h("table", { class: "evals" }, h("thead", {}, h("tr", {}, ["item", "score", "rationale", "flags"].map((t) => h("th", {}, t)))),
          h("tbody", {}, ev.items.map((it) => h("tr", {}, h("td", {}, it.name), h("td", {}, `${it.score} / ${it.max}`), h("td", {}, h("pre", {}, it.rationale || "")), h("td", {}, (it.flags || []).map((x) => h("span", { class: "chip flag" }, x)))))))
      : h("p", { class: "muted" }, "No evaluation recorded for this rollout."));
}

// ------------------------------------------------------------------ live updates
// SSE first; if the stream drops, poll every few seconds until it is back (EventSource reconnects on its own).
function refreshFor(change) {
  for (const [key, fn] of state.refreshers) {
    if (key === "*" || key === change.run) Promise.resolve(fn(change.parts || [])).catch((err) => console.warn("refresh failed", err));
  }
}
function connectLive() {
  const live = document.getElementById("live");
  const es = new EventSource("/api/events");
  es.addEventListener("hello", () => { state.sseOpen = true; live.dataset.state = "open"; });
  es.addEventListener("change", (e) => refreshFor(JSON.parse(e.data)));
  es.addEventListener("runs", () => refreshFor({ run: "*", parts: ["runs"] }));
  es.onerror = () => { state.sseOpen = false; live.dataset.state = "polling"; };
  setInterval(() => {
    if (!state.sseOpen) for (const key of state.refreshers.keys()) refreshFor({ run: key, parts: ["status", "metrics", "eval", "rollouts", "rubrics", "meta"] });
  }, 5000);
}

connectLive();
api("/api/runs").then((d) => { document.getElementById("root-path").textContent = d.root; }).catch(() => {});
render();
