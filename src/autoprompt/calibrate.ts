/**
 * `mpo autoprompt`: offline rubric calibration in the spirit of Intent-based Prompt Calibration
 * (AutoPrompt, Levi et al. 2024). The junior judge's rubric plays the role of the prompt being calibrated;
 * each round
 *   (a) a generator (the senior model) writes boundary cases for sampled prompts — responses the current
 *       rubric is likely to mis-score, including exploit styles (title-only, filler, off-topic, repetition,
 *       truncation; the list is data: prompts/autoprompt/styles.md);
 *   (b) an annotator (the senior model by default) labels each case with a target score t ∈ [0, 1] and a reason;
 *   (c) the junior judge scores every case under every rubric version so far (memoized: only new pairs cost);
 *   (d) the senior analyses the largest disagreements of the best version and writes a revised rubric.
 * The best version is the one with the lowest MAE on the accumulated annotated set (rank correlation breaks
 * ties); it is re-chosen every round and once more after the last revision is scored.
 *
 * Run directory (like a training run's, docs/run-dir.md): config.json, rubrics/vNNNN.{json,txt} (lineage:
 * parent = the version it revised, author {kind: "autoprompt", round}), autoprompt/calls.jsonl (every
 * generation/annotation/analysis/revision request and reply), autoprompt/scores.jsonl (every junior
 * evaluation, raw replies included), autoprompt/round-NNN.json (cases, labels, agreement, analysis),
 * autoprompt/summary.json and rubric.txt (the best rubric).
 * Resume after a kill: finished rounds are read back; inside a round, journaled calls are replayed (same
 * request → same reply) and recorded junior scores reused, so a resumed run ends where an uninterrupted
 * one would.
 */
import type { ProtocolName } from "../judge/protocol.ts";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { mapLimit } from "../judge/concurrency.ts";
import { RubricJudge, type JudgeMode } from "../judge/rubric-judge.ts";
import { loadTemplates, type Templates } from "../judge/templates.ts";
import { JudgeUnavailableError, type Evaluation } from "../judge/types.ts";
import type { ChatModel, ChatRequest, Stage } from "../llm/types.ts";
import { rubricToText } from "../rubric/format.ts";
import { RubricStore } from "../rubric/store.ts";
import type { Rubric, RubricVersion } from "../rubric/types.ts";
import { appendJsonl, readJsonl, writeFileAtomic, writeJsonAtomic } from "../util/atomic.ts";
import { UserError } from "../util/errors.ts";
import { Rng } from "../util/rng.ts";
import { agreement, compareAgreement, type Agreement } from "./metrics.ts";
import { parseCases, parseLabel, parseRevision, parseStyles, stylesText, type Style } from "./parse.ts";

export interface AutoPromptOptions {
  runDir: string;
  /** Writes the boundary cases, the analysis and the revision (the senior judge). */
  senior: ChatModel;
  /** Labels the cases (default: the senior). */
  annotator?: ChatModel;
  /** The judge being calibrated. */
  junior: ChatModel;
  juniorMode?: JudgeMode;
  /** The junior's protocol profile (src/judge/protocol.ts); default "paper", as in training. */
  protocol?: ProtocolName;
  taskDescription: string;
  prompts: Array<{ id: string; prompt: string }>;
  initialRubric: Rubric;
  rounds: number;
  /** Prompts sampled per round; each gets one case per style. */
  promptsPerRound: number;
  /** Disagreements shown to the analyst (largest first). */
  maxDisagreements?: number;
  seed: number;
  templates?: Templates;
  concurrency?: number;
  wordCap?: number;
  /** Provenance written to config.json (endpoints, model names). */
  info?: Record<string, unknown>;
  log?: (line: string) => void;
}

export interface LabelledCase {
  id: string;
  round: number;
  promptId: string;
  prompt: string;
  style: string;
  response: string;
  /** Annotator's score on 0–10 and as a target in [0, 1]. */
  label: number;
  target: number;
  reason: string;
}

export interface VersionAgreement extends Agreement {
  version: number;
}

export interface RoundRecord {
  round: number;
  /** The version the round's cases were written against. */
  current: number;
  prompts: string[];
  cases: LabelledCase[];
  unreadable: { generations: number; annotations: number };
  /** Agreement of the current version on this round's cases and on all cases so far. */
  currentOnNew: Agreement;
  currentOnAll: Agreement;
  /** Every version so far on all cases so far, best first. */
  ranking: VersionAgreement[];
  best: VersionAgreement;
  analysis: string;
  /** The version written this round (null: revision unreadable or unchanged). */
  revised: number | null;
  revisionNote?: string;
}

export interface AutoPromptResult {
  best: RubricVersion;
  bestAgreement: VersionAgreement;
  rounds: RoundRecord[];
  /** All versions on the final accumulated set, best first. */
  finalRanking: VersionAgreement[];
  rubricFile: string;
  cases: number;
}

const pad = (n: number, w = 3) => String(n).padStart(w, "0");
const sha = (s: string) => createHash("sha256").update(s).digest("hex").slice(0, 16);
const fmt = (x: number | null, d = 3) => (x === null ? "n/a" : x.toFixed(d));

/** Every senior/annotator call, keyed by its place in the run; a resumed run replays identical requests. */
class CallJournal {
  private readonly done = new Map<string, { hash: string; reply: string }>();
  constructor(private readonly path: string) {
    for (const r of readJsonl<{ key: string; hash: string; reply: string }>(path).records) if (typeof r.key === "string") this.done.set(r.key, r);
  }

  async chat(model: ChatModel, key: string, req: ChatRequest, round: number): Promise<string> {
    const hash = sha(JSON.stringify(req.messages));
    const hit = this.done.get(key);
    if (hit && hit.hash === hash) return hit.reply;
    const res = await model.chat(req);
    const rec = { key, hash, round, stage: req.stage ?? "other", model: model.id, messages: req.messages, reply: res.text, promptTokens: res.promptTokens, completionTokens: res.completionTokens, finishReason: res.finishReason, at: new Date().toISOString() };
    // Not fsynced per line: a kill loses at most the unflushed tail, which is simply asked again.
    appendJsonl(this.path, rec, { durable: false });
    this.done.set(key, { hash, reply: res.text });
    return res.text;
  }
}

/** Junior evaluations keyed by (rubric version, case id). */
class ScoreBook {
  private readonly byKey = new Map<string, number>();
  constructor(private readonly path: string) {
    for (const r of readJsonl<{ version: number; caseId: string; normalized: number }>(path).records) {
      if (Number.isInteger(r.version) && typeof r.caseId === "string" && Number.isFinite(r.normalized)) this.byKey.set(`${r.version}\u0000${r.caseId}`, r.normalized);
    }
  }
  get(version: number, caseId: string): number | undefined {
    return this.byKey.get(`${version}\u0000${caseId}`);
  }
  put(version: number, caseId: string, ev: Evaluation): void {
    appendJsonl(this.path, { version, caseId, normalized: ev.normalized, total: ev.total, flags: ev.flags, items: ev.items.map((i) => ({ name: i.name, score: i.score, min: i.min, max: i.max, rationale: i.rationale, raw: i.raw, flags: i.flags })) }, { durable: false });
    this.byKey.set(`${version}\u0000${caseId}`, ev.normalized);
  }
}

/** The fields of config.json that must match when a run directory is resumed. */
function configRecord(o: AutoPromptOptions) {
  return {
    kind: "autoprompt",
    taskDescription: o.taskDescription,
    promptsHash: sha(JSON.stringify(o.prompts)),
    promptCount: o.prompts.length,
    initialRubric: rubricToText(o.initialRubric),
    promptsPerRound: o.promptsPerRound,
    seed: o.seed,
    juniorMode: o.juniorMode ?? "per-item",
    protocol: o.protocol ?? "paper",
  };
}

export async function runAutoPrompt(o: AutoPromptOptions): Promise<AutoPromptResult> {
  const log = o.log ?? ((l: string) => process.stderr.write(l + "\n"));
  if (!Number.isInteger(o.rounds) || o.rounds < 1) throw new UserError(`rounds must be a positive integer, got ${o.rounds}`);
  if (!Number.isInteger(o.promptsPerRound) || o.promptsPerRound < 1) throw new UserError(`prompts per round must be a positive integer, got ${o.promptsPerRound}`);
  if (o.prompts.length === 0) throw new UserError("autoprompt needs at least one task prompt to write cases for");
  const templates = o.templates ?? loadTemplates();
  const styles: Style[] = parseStyles(templates.raw("autoprompt/styles.md"), templates.sources.get("autoprompt/styles.md"));
  const annotator = o.annotator ?? o.senior;
  const concurrency = o.concurrency ?? 8;
  const wordCap = o.wordCap ?? 250;
  const maxDis = o.maxDisagreements ?? 8;
  const apDir = join(o.runDir, "autoprompt");
  mkdirSync(apDir, { recursive: true });

  // config.json: written once; a resume must use the same task, prompts, initial rubric and seed.
  const cfgPath = join(o.runDir, "config.json");
  const cfg = configRecord(o);
  if (existsSync(cfgPath)) {
    let old: Record<string, unknown>;
    try {
      old = JSON.parse(readFileSync(cfgPath, "utf8"));
    } catch (err) {
      throw new UserError(`${cfgPath} is not valid JSON (${(err as Error).message}); use a new --out directory`);
    }
    if (old.kind !== "autoprompt") throw new UserError(`${o.runDir} is not an autoprompt run directory (config.json kind '${String(old.kind)}'); use a new --out directory`);
    for (const [k, v] of Object.entries(cfg)) {
      if (JSON.stringify(old[k]) !== JSON.stringify(v)) throw new UserError(`cannot resume ${o.runDir}: '${k}' differs from the run's config.json (was ${JSON.stringify(old[k]).slice(0, 80)}, now ${JSON.stringify(v).slice(0, 80)}); use a new --out directory`);
    }
  }
  writeJsonAtomic(cfgPath, { ...cfg, rounds: o.rounds, maxDisagreements: maxDis, info: o.info ?? {} });

  const store = RubricStore.open(o.runDir);
  const v0 = store.initialize(o.initialRubric);
  const journal = new CallJournal(join(apDir, "calls.jsonl"));
  const scores = new ScoreBook(join(apDir, "scores.jsonl"));
  const judge = new RubricJudge({ model: o.junior, mode: o.juniorMode ?? "per-item", templates, concurrency, protocol: o.protocol ?? "paper" });
  const system = templates.render("autoprompt/system.md", {});
  const chat = (model: ChatModel, key: string, user: string, round: number, stage: Stage, maxTokens: number) =>
    journal.chat(model, key, { messages: [{ role: "system", content: system }, { role: "user", content: user }], temperature: 0, maxTokens, stage }, round);

  /** Junior scores of `v` on `cases` (only unscored pairs call the judge). */
  const scoreAll = async (versions: RubricVersion[], cases: LabelledCase[]) => {
    const todo: Array<{ v: RubricVersion; c: LabelledCase }> = [];
    for (const v of versions) for (const c of cases) if (scores.get(v.version, c.id) === undefined) todo.push({ v, c });
    await mapLimit(todo, concurrency, async ({ v, c }) => {
      let ev: Evaluation;
      try {
        ev = await judge.score({ taskDescription: o.taskDescription, prompt: c.prompt, response: c.response }, v);
      } catch (err) {
        if (err instanceof JudgeUnavailableError) throw new UserError(`the junior judge is unavailable (${err.message}); rerun the same command to resume`);
        throw err;
      }
      scores.put(v.version, c.id, ev);
    });
  };
  const agreeOf = (v: number, cases: LabelledCase[]): VersionAgreement => ({
    version: v,
    ...agreement(
      cases.map((c) => scores.get(v, c.id)!),
      cases.map((c) => c.target),
    ),
  });
  const rank = (versions: RubricVersion[], cases: LabelledCase[]) => versions.map((v) => agreeOf(v.version, cases)).sort(compareAgreement);

  const all: LabelledCase[] = [];
  const rounds: RoundRecord[] = [];
  let current: RubricVersion = v0;
  let lastDisagreements: Array<{ c: LabelledCase; j: number }> = [];

  for (let r = 1; r <= o.rounds; r++) {
    const roundPath = join(apDir, `round-${pad(r)}.json`);
    if (existsSync(roundPath)) {
      const rec = JSON.parse(readFileSync(roundPath, "utf8")) as RoundRecord;
      all.push(...rec.cases);
      rounds.push(rec);
      current = rec.revised !== null ? store.get(rec.revised) : store.get(rec.current);
      lastDisagreements = disagreementsOf(rec.best.version, all, scores).slice(0, maxDis);
      log(`mpo autoprompt: round ${r} already done (resumed)`);
      continue;
    }
    const rng = new Rng(`autoprompt-${o.seed}-round-${r}`);
    const sampled = rng.sample(o.prompts, Math.min(o.promptsPerRound, o.prompts.length));
    const rubricText = rubricToText(current.rubric);

    // (a) Boundary cases against the current rubric.
    const failures = lastDisagreements.length
      ? lastDisagreements.map(({ c, j }) => `- style ${c.style}: the grader gave ${j.toFixed(2)}, the reference grade is ${c.target.toFixed(2)} (${c.reason || "no reason given"})`).join("\n")
      : "";
    let badGen = 0;
    const generated = await mapLimit(sampled, concurrency, async (p, i) => {
      const user = templates.render("autoprompt/generate.md", { taskDescription: o.taskDescription, prompt: p.prompt, rubric: rubricText, failures, styles: stylesText(styles), batch: `${r}.${i + 1}` });
      const reply = await chat(o.senior, `r${r}/generate/${i}`, user, r, "other", 3000);
      const cs = parseCases(reply, styles);
      if (cs.length === 0) badGen++;
      return cs.map((c, j) => ({ id: `r${r}.p${i}.c${j}`, round: r, promptId: p.id, prompt: p.prompt, style: c.style, response: c.response }));
    });
    const newCases = generated.flat();

    // (b) Annotation: target scores with reasons.
    let badAnn = 0;
    const labelled = (
      await mapLimit(newCases, concurrency, async (c) => {
        const user = templates.render("autoprompt/annotate.md", { taskDescription: o.taskDescription, prompt: c.prompt, response: c.response });
        const lab = parseLabel(await chat(annotator, `r${r}/annotate/${c.id}`, user, r, "other", 300));
        if (!lab) {
          badAnn++;
          return null;
        }
        return { ...c, label: lab.score, target: lab.score / 10, reason: lab.reason } satisfies LabelledCase;
      })
    ).filter((c): c is LabelledCase => c !== null);
    all.push(...labelled);
    if (all.length === 0) throw new UserError(`round ${r}: no usable boundary case yet (${badGen} unreadable generations, ${badAnn} unreadable annotations); see ${join(apDir, "calls.jsonl")}`);

    // (c) Junior scores under every version so far; pick the best on the accumulated set.
    // Versions from this round's own revision (a kill after the add) are not candidates yet.
    const versions = store.list().filter((v) => !(v.author.kind === "autoprompt" && v.author.round >= r));
    await scoreAll(versions, all);
    const ranking = rank(versions, all);
    const best = ranking[0];
    const currentOnNew = agreeOf(current.version, labelled);
    const currentOnAll = agreeOf(current.version, all);

    // (d) Disagreement analysis of the best version, then a revision of it.
    const bestV = store.get(best.version);
    const dis = disagreementsOf(best.version, all, scores).slice(0, maxDis);
    const analysisUser = templates.render("autoprompt/analyze.md", {
      taskDescription: o.taskDescription,
      rubric: rubricToText(bestV.rubric),
      n: all.length,
      mae: fmt(best.mae),
      spearman: fmt(best.spearman),
      disagreements: dis.map(({ c, j }, i) => formatDisagreement(i + 1, c, j)).join("\n\n"),
      wordCap,
    });
    const analysis = await chat(o.senior, `r${r}/analyze`, analysisUser, r, "mrm-analyze", 800);
    const history = ranking.map((a) => `- v${a.version}: mean absolute error ${fmt(a.mae)}, rank correlation ${fmt(a.spearman)}, criteria: ${store.get(a.version).rubric.items.map((it) => it.name).join(", ")}`).join("\n");
    const reviseUser = templates.render("autoprompt/revise.md", { taskDescription: o.taskDescription, rubric: rubricToText(bestV.rubric), analysis: analysis.trim(), history });
    const revisionReply = await chat(o.senior, `r${r}/revise`, reviseUser, r, "mrm-refine", 2000);
    const parsed = parseRevision(revisionReply);
    let revised: RubricVersion | null = null;
    let revisionNote: string | undefined;
    const rel = `autoprompt/round-${pad(r)}.json`;
    if ("error" in parsed) revisionNote = `revision unreadable: ${parsed.error}`;
    else if (rubricToText(parsed.rubric) === rubricToText(bestV.rubric)) revisionNote = "revision identical to its parent; no new version";
    else {
      // A kill between the add and the round file leaves the version behind: reuse it instead of adding twice.
      revised = store.list().find((v) => v.author.kind === "autoprompt" && v.author.round === r) ?? store.add({ rubric: parsed.rubric, parent: bestV.version, step: r, author: { kind: "autoprompt", round: r }, analyses: [rel] });
    }
    const rec: RoundRecord = {
      round: r,
      current: current.version,
      prompts: sampled.map((p) => p.id),
      cases: labelled,
      unreadable: { generations: badGen, annotations: badAnn },
      currentOnNew,
      currentOnAll,
      ranking,
      best,
      analysis,
      revised: revised?.version ?? null,
      ...(revisionNote ? { revisionNote } : {}),
    };
    writeJsonAtomic(roundPath, rec);
    rounds.push(rec);
    log(
      `mpo autoprompt: round ${r}: ${labelled.length} labelled cases (${all.length} in all); v${current.version} on new cases MAE ${fmt(currentOnNew.mae)} rank corr ${fmt(currentOnNew.spearman)}; best v${best.version} on all: MAE ${fmt(best.mae)} rank corr ${fmt(best.spearman)}; ${revised ? `revised → v${revised.version}` : revisionNote}`,
    );
    lastDisagreements = dis;
    if (revised) current = revised;
  }

  // The last revision has not been scored yet: score every version on the final set and choose.
  const versions = store.list();
  await scoreAll(versions, all);
  const finalRanking = rank(versions, all);
  const bestAgreement = finalRanking[0];
  const best = store.get(bestAgreement.version);
  const rubricFile = join(o.runDir, "rubric.txt");
  writeFileAtomic(rubricFile, rubricToText(best.rubric));
  writeJsonAtomic(join(apDir, "summary.json"), {
    best: bestAgreement,
    cases: all.length,
    rounds: rounds.map((r) => ({ round: r.round, current: r.current, cases: r.cases.length, unreadable: r.unreadable, currentOnNew: r.currentOnNew, currentOnAll: r.currentOnAll, best: r.best, revised: r.revised, revisionNote: r.revisionNote })),
    finalRanking,
  });
  log(`mpo autoprompt: best rubric v${best.version} (MAE ${fmt(bestAgreement.mae)}, rank corr ${fmt(bestAgreement.spearman)} on ${all.length} cases) → ${rubricFile}`);
  return { best, bestAgreement, rounds, finalRanking, rubricFile, cases: all.length };
}

function disagreementsOf(version: number, cases: LabelledCase[], scores: ScoreBook): Array<{ c: LabelledCase; j: number }> {
  return cases
    .map((c) => ({ c, j: scores.get(version, c.id) ?? NaN }))
    .filter((d) => Number.isFinite(d.j))
    .sort((a, b) => Math.abs(b.j - b.c.target) - Math.abs(a.j - a.c.target) || (a.c.id < b.c.id ? -1 : 1));
}

function formatDisagreement(i: number, c: LabelledCase, j: number): string {
  return [
    `### Case ${i} (style: ${c.style})`,
    `Prompt: ${c.prompt}`,
    "<response>",
    c.response,
    "</response>",
    `Reference grade: ${c.target.toFixed(2)} — ${c.reason || "no reason given"}`,
    `Grader score: ${j.toFixed(2)} (${j > c.target ? "too high" : j < c.target ? "too low" : "exact"})`,
  ].join("\n");
}

/** One line per round for terminals and READMEs. */
export function formatRounds(res: AutoPromptResult): string {
  const rows = [["round", "rubric", "cases (new/all)", "MAE new", "rank corr new", "MAE all", "rank corr all", "best so far", "revised"]];
  for (const r of res.rounds)
    rows.push([
      String(r.round),
      `v${r.current}`,
      `${r.cases.length}/${r.currentOnAll.n}`,
      fmt(r.currentOnNew.mae),
      fmt(r.currentOnNew.spearman),
      fmt(r.currentOnAll.mae),
      fmt(r.currentOnAll.spearman),
      `v${r.best.version} (${fmt(r.best.mae)})`,
      r.revised !== null ? `v${r.revised}` : "-",
    ]);
  rows.push(["final", `v${res.bestAgreement.version}`, `-/${res.cases}`, "", "", fmt(res.bestAgreement.mae), fmt(res.bestAgreement.spearman), "", ""]);
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  return rows.map((row) => row.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd()).join("\n");
}
