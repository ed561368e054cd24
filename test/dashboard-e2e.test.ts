/**
 * End-to-end: the dashboard in a real browser (Debian's chromium driven by playwright-core) against a
 * server on a generated fixture runs directory. Checks that curves render, a rubric diff shows an added
 * item, rollout filters work, and a metrics line appended while the page is open shows up without reload.
 * Screenshots go to test-artifacts/dashboard/ (look at them). Skips when /usr/bin/chromium is missing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Browser, Page } from "playwright-core";
import { createDashboard, type Dashboard } from "../src/dashboard/server.ts";
import { appendMetricsStep, makeFixtureRuns, type FixtureRuns } from "./helpers/make-fixture-run.ts";

const CHROMIUM = process.env.MPO_CHROMIUM ?? "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`[dashboard-e2e] skipped: ${CHROMIUM} not found (apt-get install chromium; CI installs it)`);
const ARTIFACTS = resolve(import.meta.dirname, "..", "test-artifacts", "dashboard");
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

describe.skipIf(!haveChromium)("dashboard in a browser", () => {
  let tmp: string;
  let fx: FixtureRuns;
  let dash: Dashboard;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), "mpo-dash-e2e-"));
    fx = makeFixtureRuns(join(tmp, "runs"));
    mkdirSync(ARTIFACTS, { recursive: true });
    dash = await createDashboard({ runsDir: fx.root, port: 0, pollMs: 200 });
    const { chromium } = await import("playwright-core");
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    page.on("console", (m) => {
      if (m.type() === "error") pageErrors.push(m.text());
    });
  });

  afterAll(async () => {
    await browser?.close();
    await dash?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

  it("lists runs with their status, including the unreadable one", async () => {
    await page.goto(`${dash.url}/#/`);
    await page.waitForSelector("#runs-table tbody tr");
    const ids = await page.$$eval("#runs-table tbody tr[data-run]", (rows) => rows.map((r) => r.getAttribute("data-run")));
    expect(ids).toEqual(["broken", "sandbox/fixed", "sandbox/mpo"]);
    expect(await page.textContent('tr[data-run="sandbox/mpo"] [data-state]')).toBe("running");
    expect(await page.textContent('tr[data-run="sandbox/fixed"] [data-state]')).toBe("finished");
    expect(await page.textContent('tr[data-run="broken"]')).toContain("problem");
    expect(await page.textContent('tr[data-group="sandbox"]')).toContain("2 arms (fixed, mpo)");
    await shot("runs");
  });

  it("shows a run that appears while the list is open", async () => {
    await page.goto(`${dash.url}/#/`);
    await page.waitForSelector('#live[data-state="open"]');
    const dir = join(fx.root, "late-run");
    mkdirSync(dir);
    writeFileSync(join(dir, "status.json"), JSON.stringify({ state: "running", step: 0, totalSteps: 5, task: "essay", algorithm: "grpo", updatedAt: new Date().toISOString() }));
    await page.waitForSelector('tr[data-run="late-run"]', { timeout: 20_000 });
    expect(await page.textContent('tr[data-run="late-run"]')).toContain("grpo");
  });

  it("renders curves with meta markers and reward-hacking warnings", async () => {
    await page.goto(`${dash.url}/#/run/${encodeURIComponent(fx.fixed)}/curves`);
    await page.waitForSelector('.chart[data-metric="score"] canvas');
    const metrics = await page.$$eval(".chart", (els) => els.map((e) => e.getAttribute("data-metric")));
    for (const m of ["score", "kl", "entropy", "responseLength", "eosRate", "eval:oracle", "repetition"]) expect(metrics).toContain(m);
    expect(await page.getAttribute('.chart[data-metric="score"]', "data-points")).toBe("30");
    // The canvas actually has a drawn line (not just an empty element): count painted pixels.
    const painted = await page.$eval('.chart[data-metric="score"] canvas', (c) => {
      // (tsconfig has no DOM lib; this callback runs in the page)
      const cv = c as unknown as { width: number; height: number; getContext(k: "2d"): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } };
      const d = cv.getContext("2d").getImageData(0, 0, cv.width, cv.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
      return n;
    });
    expect(painted).toBeGreaterThan(500);
    const kinds = await page.$$eval("#signals .signal", (els) => els.map((e) => e.getAttribute("data-kind")));
    expect(kinds).toContain("rm-up-eval-down");
    expect(kinds).toContain("length-explode");
    await shot("curves-fixed");
  });

  it("overlays several runs for comparison", async () => {
    await page.goto(`${dash.url}/#/`);
    await page.click('tr[data-group="sandbox"] a');
    await page.waitForSelector('.chart[data-metric="score"] canvas');
    const legend = await page.textContent('.chart[data-metric="normalizedScore"] .u-legend');
    expect(legend).toContain("sandbox/fixed");
    expect(legend).toContain("sandbox/mpo");
    await shot("compare");
  });

  it("shows the rubric lineage with an added item and the meta analysis behind it", async () => {
    await page.goto(`${dash.url}/#/run/${encodeURIComponent(fx.mpo)}/rubrics`);
    await page.click('#versions button[data-version="1"]');
    await page.waitForSelector('#version-detail .item.added[data-item="conciseness"]');
    expect(await page.textContent("#diff-summary")).toContain("1 added");
    expect(await page.textContent('.meta-log[data-meta-step="10"]')).toContain("no criterion for conciseness");
    await page.click('#versions button[data-version="2"]');
    await page.waitForSelector('#version-detail .item.changed[data-item="relevance"] ins');
    expect(await page.textContent('#version-detail .item.added[data-item="non-repetition"]')).toContain("repeated sentence");
    // The corrupt rubric file is reported, not fatal.
    expect(await page.textContent("#rubric-problems")).toContain("rubrics/v0003.json");
    await shot("rubrics");
  });

  it("filters and pages rollouts", async () => {
    await page.goto(`${dash.url}/#/run/${encodeURIComponent(fx.mpo)}/rollouts`);
    await page.waitForSelector(".rollout");
    const total = Number(await page.getAttribute("#rollout-count", "data-total"));
    expect(total).toBe(232); // 29 readable step files × 8 (step 7 is unreadable and reported)
    expect(await page.textContent("#rollout-problems")).toContain("step-000007.jsonl");
    await page.fill('input[name="minScore"]', "18");
    await page.click('#rollout-filter button[type="submit"]');
    await page.waitForSelector(`#rollout-count:not([data-total="${total}"])`);
    const filtered = Number(await page.getAttribute("#rollout-count", "data-total"));
    expect(filtered).toBeGreaterThan(0);
    expect(filtered).toBeLessThan(total);
    const scores = await page.$$eval(".rollout", (els) => els.map((e) => Number(e.getAttribute("data-score"))));
    expect(scores.length).toBe(Math.min(25, filtered));
    for (const s of scores) expect(s).toBeGreaterThanOrEqual(18);
    // Narrow further by step, then by flag.
    await page.fill('input[name="minScore"]', "");
    await page.selectOption('select[name="step"]', "12");
    await page.click('#rollout-filter button[type="submit"]');
    await page.waitForSelector('#rollout-count[data-total="8"]');
    const steps = await page.$$eval(".rollout", (els) => els.map((e) => e.getAttribute("data-step")));
    expect(new Set(steps)).toEqual(new Set(["12"]));
    // Each rollout shows its prompt, response and per-item rationale.
    expect(await page.textContent(".rollout .prompt")).toContain("Prompt");
    expect(await page.textContent(".rollout table.evals")).toContain("relevance");
    expect(await page.textContent(".rollout table.evals")).toContain("The response");
    await shot("rollouts");
    // Flag filter: only rollouts carrying the flag remain.
    await page.selectOption('select[name="step"]', "");
    await page.selectOption('select[name="flag"]', "truncated");
    await page.click('#rollout-filter button[type="submit"]');
    await page.waitForSelector('#rollout-count:not([data-total="8"])');
    const flagged = Number(await page.getAttribute("#rollout-count", "data-total"));
    expect(flagged).toBeGreaterThan(0);
    const chips = await page.$$eval(".rollout", (els) => els.map((e) => e.textContent ?? ""));
    for (const c of chips) expect(c).toContain("truncated");
    // Paging: clear filters, go to the second page.
    await page.click('#rollout-filter button[type="button"]');
    await page.waitForSelector(`#rollout-count[data-total="${total}"]`);
    await page.click('#pager button:has-text("Next")');
    await page.waitForSelector('#pager:has-text("26–50 of 232")');
  });

  it("shows a metrics line appended while the page is open, without reload", async () => {
    await page.goto(`${dash.url}/#/run/${encodeURIComponent(fx.mpo)}/curves`);
    await page.waitForSelector('.chart[data-metric="score"][data-last-step="30"]');
    await page.waitForSelector('#live[data-state="open"]');
    const navigations: string[] = [];
    page.on("framenavigated", (f) => navigations.push(f.url()));
    appendMetricsStep(fx.root, fx.mpo, 31);
    await page.waitForSelector('.chart[data-metric="score"][data-last-step="31"]', { timeout: 20_000 });
    expect(await page.textContent("#run-steps")).toContain("31");
    expect(navigations).toEqual([]);
    await shot("live-append");
  });

  it("ran without page errors", () => {
    expect(pageErrors).toEqual([]);
  });
});
