/**
 * The console page /statistics of the statistics module (P12): the anonymous time series as SVG line charts (server/modules/statistics/chart.ts), one
 * chart per group of related series, at a chosen resolution (minute: last 3 hours, hour: last 48
 * hours, day: last 90 days), and a table of totals. No JID or IP is in these series, so viewing
 * them is no read of audit data.
 */
import { RESOLUTIONS, RESOLUTION_MS } from '../../../storage/repos/statistics.js';
import type { Resolution } from '../../../storage/types.js';
import { SERIES, rollupOf, seriesName } from './series.js';
import { seriesPoints } from './cli-stats.js';
import { PALETTE, formatValue, renderChart } from './chart.js';
import { controlHandlers } from '../../admin/control.js';
import type { ServerContext } from '../../core/context.js';
import type { AdminPage } from '../../admin/contract.js';
import { html, query, raw, utc, type PageEnv, type PageResult } from '../../admin/pages/layout.js';

export const DEFAULT_WINDOW: Record<Resolution, number> = { minute: 3 * 3_600_000, hour: 48 * 3_600_000, day: 90 * 86_400_000 };

interface Group {
  title: string;
  match: (name: string) => boolean;
  unit?: string;
  /** Drawn even without data (an empty chart says "no data"). */
  always?: boolean;
}

/** Chart groups, in page order; a series goes into the first group that matches its name. */
export const GROUPS: readonly Group[] = [
  { title: 'Client sessions online', match: (n) => n === 'sessions.online' || n === 'sessions.online.peak', unit: 'sessions', always: true },
  { title: 'Logins, registrations and sessions ended', match: (n) => /^(logins|registrations|accounts\.deleted|components\.auth\.failed|sessions\.closed)(\.|$)/.test(n), unit: 'events' },
  { title: 'Stanzas', match: (n) => n === 'stanzas.routed' || n.startsWith('c2s.stanzas.'), unit: 'stanzas' },
  { title: 'Client traffic', match: (n) => n.startsWith('c2s.bytes.'), unit: 'bytes' },
  { title: 'Time spent online by ended sessions', match: (n) => n === 'sessions.seconds', unit: 'seconds' },
  { title: 'Offline messages and delivery failures', match: (n) => n.startsWith('offline.') || n === 'delivery.failed', unit: 'messages' },
  { title: 'Transports (per network)', match: (n) => n.startsWith('transport.') },
  { title: 'Federation (server-to-server links)', match: (n) => n.startsWith('s2s.') },
  { title: 'Other series', match: () => true },
];

function parseResolution(v: string | null): Resolution {
  return v && (RESOLUTIONS as readonly string[]).includes(v) ? (v as Resolution) : 'hour';
}

/** Writes what the statistics module holds in memory, when it runs (the current minute shows). */
export async function flushStatistics(ctx: ServerContext): Promise<void> {
  const flush = controlHandlers(ctx).get('stats.flush');
  if (!flush) return;
  try {
    await flush.handler({});
  } catch (err) {
    ctx.log.child('admin-http').warn('could not flush the statistics', { error: err instanceof Error ? err.message : String(err) });
  }
}

async function renderStatistics(env: PageEnv): Promise<PageResult> {
  const { ctx, url, now } = env;
  const resolution = parseResolution(url.searchParams.get('resolution'));
  const step = RESOLUTION_MS[resolution];
  const to = Math.floor(now.getTime() / step) * step;
  const from = Math.floor((now.getTime() - DEFAULT_WINDOW[resolution]) / step) * step;
  await flushStatistics(ctx);
  const points = await ctx.storage.statistics.listPoints({ resolution, since: new Date(from) });
  const keys = [...new Set(points.map((p) => p.series))].sort();
  const perSeries = seriesPoints(points, keys, resolution, from, now.getTime());

  const grouped = new Map<Group, string[]>(GROUPS.map((g) => [g, []]));
  for (const key of keys) {
    const g = GROUPS.find((x) => x.match(seriesName(key)))!;
    grouped.get(g)!.push(key);
  }

  const charts = GROUPS.filter((g) => g.always || grouped.get(g)!.length > 0).map((g) => {
    const all = grouped.get(g)!;
    const drawn = all.slice(0, PALETTE.length);
    const svg = renderChart({
      title: `${g.title} (per ${resolution})`,
      series: drawn.map((k) => ({ name: k, points: perSeries.get(k) ?? [] })),
      from,
      to,
      width: 900,
      height: 240,
      unit: g.unit,
    });
    const note = all.length > drawn.length ? ` The first ${drawn.length} of ${all.length} series are drawn.` : '';
    return html`<figure class="chart">${raw(svg)}<figcaption>${g.title}, per ${resolution}, ${utc(from)} to ${utc(to)} UTC.${note}</figcaption></figure>`;
  });

  const rows = keys.map((key) => {
    const values = points.filter((p) => p.series === key).map((p) => p.value);
    const how = rollupOf(key);
    const sum = values.reduce((a, b) => a + b, 0);
    const agg = how === 'sum' ? sum : how === 'max' ? Math.max(...values) : sum / Math.max(1, values.length);
    const doc = SERIES[seriesName(key)]?.doc ?? '';
    return html`<tr><td class="mono" title="${doc}">${key}</td><td>${how === 'sum' ? 'total' : how === 'max' ? 'peak' : 'average'}</td><td class="num">${formatValue(agg)}</td><td class="num">${formatValue(Math.max(...values))}</td><td class="num">${formatValue(values[values.length - 1] ?? 0)}</td></tr>`;
  });

  const body = html`<h1>Statistics</h1>
<p class="muted">Anonymous usage and load statistics (P12): counts and levels only, no JID, no IP, no content. Times are UTC.</p>
<p class="switch">Resolution: ${RESOLUTIONS.map((r) => html`<a href="/statistics${query({ resolution: r })}"${r === resolution ? raw(' class="current" aria-current="page"') : ''}>${r}</a> `)}
<span class="muted">(minute: last 3 hours, hour: last 48 hours, day: last 90 days)</span></p>
${charts}
<h2>Series</h2>
${
  rows.length === 0
    ? html`<p class="muted">No statistics stored for this range yet.</p>`
    : html`<table>
<thead><tr><th>Series</th><th>Rolls up as</th><th class="num">Total / average</th><th class="num">Highest</th><th class="num">Last</th></tr></thead>
<tbody>${rows}</tbody>
</table>`
}`;
  return { title: 'Statistics', body };
}

export const statisticsPage: AdminPage = { path: '/statistics', nav: { label: 'Statistics', order: 20 }, render: renderStatistics };
