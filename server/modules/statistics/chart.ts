/**
 * A small SVG line chart for the anonymous statistics (P12): `gatehouse stats --chart out.svg`.
 * Written by hand (no dependency): a title, a y axis from 0 with round ticks and grid lines, a time
 * axis in UTC, one <polyline> per series and a legend. The output is plain well-formed XML (no
 * declaration, comments or entities beyond the five predefined ones), so it can be embedded in a
 * web page as is and parsed by the server's own XML parser.
 */

export interface ChartSeries {
  name: string;
  /** t: milliseconds since the epoch; v: value. Sorted by t. */
  points: { t: number; v: number }[];
}

export interface ChartOptions {
  title?: string;
  series: ChartSeries[];
  width?: number;
  height?: number;
  /** Time range shown; defaults to the data's extent. */
  from?: number;
  to?: number;
  /** Label of the y axis. */
  unit?: string;
}

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22', '#393b79', '#637939'];

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TIME_STEPS = [MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 182 * DAY, 365 * DAY];

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** A round upper bound and step for a y axis from 0 to max, about `ticks` steps. */
export function niceScale(max: number, ticks = 5): { max: number; step: number } {
  if (!(max > 0) || !Number.isFinite(max)) return { max: 1, step: 0.2 };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  return { max: Math.ceil(max / step - 1e-9) * step, step };
}

/** 1234 -> '1.2k', 2500000 -> '2.5M', 0.25 -> '0.25'. */
export function formatValue(v: number): string {
  const a = Math.abs(v);
  const trim = (x: number) => String(Number(x.toFixed(x < 10 ? 2 : 1)));
  if (a >= 1e9) return trim(v / 1e9) + 'G';
  if (a >= 1e6) return trim(v / 1e6) + 'M';
  if (a >= 1e4) return trim(v / 1e3) + 'k';
  return trim(v);
}

function timeLabel(t: number, step: number, span: number): string {
  const iso = new Date(t).toISOString();
  if (step >= DAY) return iso.slice(0, 10);
  if (span > DAY) return `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
  return iso.slice(11, 16);
}

const r1 = (n: number) => String(Math.round(n * 10) / 10);

export function renderChart(opts: ChartOptions): string {
  const width = opts.width ?? 960;
  const plotHeight = opts.height ?? 420;
  const series = opts.series;
  const all = series.flatMap((s) => s.points);
  const from = opts.from ?? (all.length ? Math.min(...all.map((p) => p.t)) : 0);
  let to = opts.to ?? (all.length ? Math.max(...all.map((p) => p.t)) : from + HOUR);
  if (to <= from) to = from + HOUR;
  const maxValue = all.reduce((m, p) => Math.max(m, p.v), 0);
  const y = niceScale(maxValue);

  // Legend below the plot: as many columns as fit, each entry 12 px line + name.
  const longest = series.reduce((m, s) => Math.max(m, s.name.length), 4);
  const colWidth = Math.min(width - 40, 40 + longest * 7);
  const cols = Math.max(1, Math.floor((width - 40) / colWidth));
  const legendRows = Math.ceil(series.length / cols);

  const left = 70;
  const right = 20;
  const top = 40;
  const plotW = width - left - right;
  const plotH = plotHeight;
  const axisBottom = top + plotH;
  const height = axisBottom + 50 + legendRows * 18 + 10;
  const sx = (t: number) => left + ((t - from) / (to - from)) * plotW;
  const sy = (v: number) => axisBottom - (Math.max(0, v) / y.max) * plotH;

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  if (opts.title) out.push(`<text x="${width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(opts.title)}</text>`);

  // y grid and labels
  out.push('<g class="y-axis" stroke="#dddddd" stroke-width="1">');
  for (let v = 0; v <= y.max + y.step / 2; v += y.step) {
    const yy = r1(sy(v));
    out.push(`<line x1="${left}" y1="${yy}" x2="${left + plotW}" y2="${yy}"/>`);
  }
  out.push('</g>');
  out.push('<g class="y-labels" fill="#333333" text-anchor="end">');
  for (let v = 0; v <= y.max + y.step / 2; v += y.step) out.push(`<text x="${left - 6}" y="${r1(sy(v) + 4)}">${escapeXml(formatValue(v))}</text>`);
  out.push('</g>');
  if (opts.unit) out.push(`<text x="16" y="${top + plotH / 2}" text-anchor="middle" transform="rotate(-90 16 ${top + plotH / 2})" fill="#333333">${escapeXml(opts.unit)}</text>`);

  // x ticks
  const span = to - from;
  const step = TIME_STEPS.find((s) => span / s <= 8) ?? TIME_STEPS[TIME_STEPS.length - 1]!;
  out.push('<g class="x-labels" fill="#333333" text-anchor="middle">');
  for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
    const xx = r1(sx(t));
    out.push(`<line x1="${xx}" y1="${axisBottom}" x2="${xx}" y2="${axisBottom + 5}" stroke="#333333"/>`);
    out.push(`<text x="${xx}" y="${axisBottom + 18}">${escapeXml(timeLabel(t, step, span))}</text>`);
  }
  out.push('</g>');
  out.push(`<text x="${left + plotW / 2}" y="${axisBottom + 36}" text-anchor="middle" fill="#333333">time (UTC)</text>`);

  // axes
  out.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${axisBottom}" stroke="#333333"/>`);
  out.push(`<line x1="${left}" y1="${axisBottom}" x2="${left + plotW}" y2="${axisBottom}" stroke="#333333"/>`);

  // one polyline per series
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const pts = s.points.filter((p) => p.t >= from && p.t <= to && Number.isFinite(p.v));
    const coords = pts.map((p) => `${r1(sx(p.t))},${r1(sy(p.v))}`).join(' ');
    out.push(`<polyline class="series" data-series="${escapeXml(s.name)}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round" points="${coords}"/>`);
    if (pts.length === 1) out.push(`<circle cx="${r1(sx(pts[0]!.t))}" cy="${r1(sy(pts[0]!.v))}" r="3" fill="${color}"/>`);
  });

  // legend
  out.push('<g class="legend" fill="#333333">');
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const lx = 20 + (i % cols) * colWidth;
    const ly = axisBottom + 56 + Math.floor(i / cols) * 18;
    out.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 24}" y2="${ly - 4}" stroke="${color}" stroke-width="3"/>`);
    out.push(`<text x="${lx + 30}" y="${ly}">${escapeXml(s.name)}</text>`);
  });
  out.push('</g>');
  if (series.length === 0 || all.length === 0) out.push(`<text x="${left + plotW / 2}" y="${top + plotH / 2}" text-anchor="middle" fill="#999999">no data in this range</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
