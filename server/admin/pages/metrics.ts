/**
 * /metrics: the anonymous statistics (P12) in the Prometheus text exposition format (0.0.4).
 * Nothing here names a JID or an IP: the series keys are checked when they are counted
 * (server/modules/statistics/statistics.ts seriesKey: label values are plain words, never an address), and
 * the live values are counts.
 *
 * - Counters (series that roll up as sums) are `gatehouse_<name>_total`: the sum of everything
 *   stored (daily rollups, then the hours after the last day, then the minutes after the last
 *   hour), after a flush of what the server holds in memory. They reset when the server's data
 *   is reset and drop when retention.statistics deletes old points (Prometheus sees a reset).
 * - Levels (averaged or peak series, e.g. transport.online) are gauges `gatehouse_<name>` with
 *   the latest minute's value, except sessions.online, which is the live count.
 * - Live gauges: sessions online, components connected, login blocks in force (by kind), start
 *   time and uptime.
 */
import type { ServerContext } from '../../core/context.js';
import { RESOLUTION_MS } from '../../../storage/repos/statistics.js';
import type { StatPoint } from '../../../storage/types.js';
import { SERIES, rollupOf, seriesName } from '../../modules/statistics/series.js';
import { flushStatistics } from '../../modules/statistics/admin-statistics.js';

interface Sample {
  labels: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  samples: Sample[];
}

/** A Prometheus metric or label name from a series name ('c2s.stanzas.in' → 'c2s_stanzas_in'). */
export function promName(s: string): string {
  const n = s.replace(/[^a-zA-Z0-9_]/g, '_');
  return /^[a-zA-Z_]/.test(n) ? n : `_${n}`;
}

function labelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function helpText(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** `name{a=b,c=d}` → labels. */
function labelsOf(key: string): Record<string, string> {
  const brace = key.indexOf('{');
  if (brace < 0 || !key.endsWith('}')) return {};
  const out: Record<string, string> = {};
  for (const part of key.slice(brace + 1, -1).split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) out[promName(part.slice(0, eq))] = part.slice(eq + 1);
  }
  return out;
}

function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v > 0 ? '+Inf' : '-Inf';
  return String(Math.round(v * 1e6) / 1e6);
}

export function formatFamilies(families: Family[]): string {
  const out: string[] = [];
  for (const f of families) {
    if (f.samples.length === 0) continue;
    out.push(`# HELP ${f.name} ${helpText(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, v]) => `${k}="${labelValue(v)}"`)
        .join(',');
      out.push(`${f.name}${labels ? `{${labels}}` : ''} ${num(s.value)}`);
    }
  }
  return out.join('\n') + '\n';
}

/** Totals of the counter series and the latest value of the level series, from storage. */
async function storedSeries(ctx: ServerContext, now: Date): Promise<{ totals: Map<string, number>; latest: Map<string, { t: number; v: number }> }> {
  const repo = ctx.storage.statistics;
  const days = await repo.listPoints({ resolution: 'day' });
  const dayEnd = days.length ? Math.max(...days.map((p) => p.bucketStart.getTime())) + RESOLUTION_MS.day : 0;
  const hours = await repo.listPoints({ resolution: 'hour', since: new Date(dayEnd) });
  const hourEnd = hours.length ? Math.max(...hours.map((p) => p.bucketStart.getTime())) + RESOLUTION_MS.hour : dayEnd;
  const recent = new Date(now.getTime() - 10 * RESOLUTION_MS.minute);
  const minutes = await repo.listPoints({ resolution: 'minute', since: new Date(Math.min(hourEnd, recent.getTime())) });
  const totals = new Map<string, number>();
  const latest = new Map<string, { t: number; v: number }>();
  const add = (p: StatPoint) => totals.set(p.series, (totals.get(p.series) ?? 0) + p.value);
  for (const p of days) if (rollupOf(p.series) === 'sum') add(p);
  for (const p of hours) if (rollupOf(p.series) === 'sum') add(p);
  for (const p of minutes) {
    const t = p.bucketStart.getTime();
    if (rollupOf(p.series) === 'sum') {
      if (t >= hourEnd) add(p);
    } else if (t >= recent.getTime()) {
      const prev = latest.get(p.series);
      if (!prev || prev.t <= t) latest.set(p.series, { t, v: p.value });
    }
  }
  return { totals, latest };
}

export async function metricsText(ctx: ServerContext, components: Map<string, Date | null>, now: Date): Promise<string> {
  await flushStatistics(ctx);
  const { totals, latest } = await storedSeries(ctx, now);
  const blocks = await ctx.storage.privacyLogs.listBlocks(now).catch(() => []);
  const families: Family[] = [
    { name: 'gatehouse_start_time_seconds', help: 'Unix time the server started.', type: 'gauge', samples: [{ labels: {}, value: ctx.startedAt.getTime() / 1000 }] },
    { name: 'gatehouse_uptime_seconds', help: 'Seconds since the server started.', type: 'gauge', samples: [{ labels: {}, value: Math.max(0, (now.getTime() - ctx.startedAt.getTime()) / 1000) }] },
    { name: 'gatehouse_sessions_online', help: 'Client sessions online now.', type: 'gauge', samples: [{ labels: {}, value: ctx.sessions.size }] },
    { name: 'gatehouse_hosts', help: 'XMPP domains served.', type: 'gauge', samples: [{ labels: {}, value: ctx.config.hosts.length }] },
    { name: 'gatehouse_components_configured', help: 'External components (transports) configured.', type: 'gauge', samples: [{ labels: {}, value: components.size }] },
    { name: 'gatehouse_components_connected', help: 'External components (transports) connected now.', type: 'gauge', samples: [{ labels: {}, value: [...components.values()].filter(Boolean).length }] },
    {
      name: 'gatehouse_login_blocks',
      help: 'Temporary login blocks in force (P7), by kind.',
      type: 'gauge',
      samples: (['ip', 'account'] as const).map((kind) => ({ labels: { kind }, value: blocks.filter((b) => b.kind === kind).length })),
    },
  ];
  const byName = new Map<string, Family>();
  const family = (name: string, type: 'counter' | 'gauge', help: string): Family => {
    let f = byName.get(name);
    if (!f) {
      f = { name, help, type, samples: [] };
      byName.set(name, f);
    }
    return f;
  };
  for (const key of [...totals.keys()].sort()) {
    const name = seriesName(key);
    family(`gatehouse_${promName(name)}_total`, 'counter', SERIES[name]?.doc ?? `Statistics series ${name}.`).samples.push({ labels: labelsOf(key), value: totals.get(key)! });
  }
  for (const key of [...latest.keys()].sort()) {
    const name = seriesName(key);
    if (name === 'sessions.online' || name === 'sessions.online.peak') continue;
    family(`gatehouse_${promName(name)}`, 'gauge', `${SERIES[name]?.doc ?? `Statistics series ${name}.`} Latest minute.`).samples.push({ labels: labelsOf(key), value: latest.get(key)!.v });
  }
  return formatFamilies([...families, ...[...byName.values()].sort((a, b) => (a.name < b.name ? -1 : 1))]);
}
