/**
 * A bar chart with error bars as hand-written SVG, so `mpo eval elo` can draw its plot with no browser,
 * canvas or native dependency. Bars are sorted by value (highest first), like the paper's Elo plots.
 */

export interface BarDatum {
  label: string;
  value: number;
  /** Half-width of the error bar (e.g. std over seeds); or use `low`/`high` for asymmetric intervals. */
  error?: number;
  low?: number;
  high?: number;
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function niceStep(range: number, targetTicks = 6): number {
  const raw = range / targetTicks;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * mag) return m * mag;
  return 10 * mag;
}

export function barChartSvg(data: BarDatum[], opts: { title?: string; yLabel?: string; subtitle?: string; width?: number; height?: number } = {}): string {
  const rows = data.slice().sort((a, b) => b.value - a.value);
  // Wide enough for the bars and for the subtitle (≈ 6 px per character at 11 px).
  const width = opts.width ?? Math.max(480, 110 * rows.length + 140, Math.ceil((opts.subtitle?.length ?? 0) * 6.2) + 40);
  const height = opts.height ?? 420;
  const margin = { top: 60, right: 20, bottom: 110, left: 70 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const lows = rows.map((d) => d.low ?? d.value - (d.error ?? 0));
  const highs = rows.map((d) => d.high ?? d.value + (d.error ?? 0));
  let yMin = Math.min(...lows);
  let yMax = Math.max(...highs);
  if (!(yMax > yMin)) {
    yMin -= 50;
    yMax += 50;
  }
  const step = niceStep(yMax - yMin);
  yMin = Math.floor((yMin - step / 2) / step) * step;
  yMax = Math.ceil((yMax + step / 2) / step) * step;
  const y = (v: number) => margin.top + plotH - ((v - yMin) / (yMax - yMin)) * plotH;
  const band = plotW / Math.max(1, rows.length);
  const barW = band * 0.6;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="100%" height="100%" fill="white"/>`);
  if (opts.title) parts.push(`<text x="${width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${esc(opts.title)}</text>`);
  if (opts.subtitle) parts.push(`<text x="${width / 2}" y="42" text-anchor="middle" font-size="11" fill="#555">${esc(opts.subtitle)}</text>`);
  for (let v = yMin; v <= yMax + 1e-9; v += step) {
    const yy = y(v).toFixed(1);
    parts.push(`<line x1="${margin.left}" x2="${width - margin.right}" y1="${yy}" y2="${yy}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${margin.left - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle">${Number(v.toFixed(2))}</text>`);
  }
  parts.push(`<line x1="${margin.left}" x2="${margin.left}" y1="${margin.top}" y2="${margin.top + plotH}" stroke="#333"/>`);
  parts.push(`<line x1="${margin.left}" x2="${width - margin.right}" y1="${margin.top + plotH}" y2="${margin.top + plotH}" stroke="#333"/>`);
  if (opts.yLabel)
    parts.push(`<text transform="translate(16 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">${esc(opts.yLabel)}</text>`);
  rows.forEach((d, i) => {
    const cx = margin.left + band * i + band / 2;
    const top = y(d.value);
    parts.push(`<rect x="${(cx - barW / 2).toFixed(1)}" y="${top.toFixed(1)}" width="${barW.toFixed(1)}" height="${(margin.top + plotH - top).toFixed(1)}" fill="#7fb3d5"><title>${esc(d.label)}: ${d.value.toFixed(1)}</title></rect>`);
    const lo = y(lows[i]);
    const hi = y(highs[i]);
    if (Math.abs(lo - hi) > 0.01) {
      parts.push(`<line x1="${cx}" x2="${cx}" y1="${hi.toFixed(1)}" y2="${lo.toFixed(1)}" stroke="#222" stroke-width="1.5"/>`);
      for (const yy of [hi, lo]) parts.push(`<line x1="${cx - 6}" x2="${cx + 6}" y1="${yy.toFixed(1)}" y2="${yy.toFixed(1)}" stroke="#222" stroke-width="1.5"/>`);
    }
    parts.push(`<text x="${cx}" y="${(hi - 6).toFixed(1)}" text-anchor="middle" font-size="11">${d.value.toFixed(0)}</text>`);
    const ly = margin.top + plotH + 14;
    parts.push(`<text transform="translate(${cx} ${ly}) rotate(35)" text-anchor="start">${esc(d.label)}</text>`);
  });
  parts.push(`</svg>`);
  return parts.join("\n") + "\n";
}
