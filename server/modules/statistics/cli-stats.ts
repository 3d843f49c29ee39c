/**
 * The statistics feature's commands: `gatehouse sessions` (P6, live, through the control channel),
 * declared by the session-stats module whose `sessions` control handler answers it, and `gatehouse
 * stats` (P12, from the database; with --chart an SVG line chart), declared by the statistics
 * module whose `stats.flush` handler writes what it holds in memory first.
 */
import { writeFileSync } from 'node:fs';
import { CONFIG_FLAG, UsageError, commandSet, configFrom, withStorage, type FlagDefinition, type ParsedArgs } from '../../cli/kit.js';
import type { Resolution, StatPoint, Storage } from '../../../storage/types.js';
import { controlHandlers, controlRequest } from '../../admin/control.js';
import type { CommandDefinition } from '../../commands/command.js';
import type { ServerContext } from '../../core/context.js';
import { RESOLUTION_MS } from '../../../storage/repos/statistics.js';
import { SERIES, rollupOf, seriesName } from './series.js';
import { renderChart, formatValue, PALETTE } from './chart.js';
import type { LiveComponent, LiveS2sLink, LiveSession } from './live-sessions.js';

/** Flags of these commands that take a value. */
const VALUE_FLAGS = ['series', 'resolution', 'since', 'chart', 'host', 'jid', 'kind'];

/**
 * Values of VALUE_FLAGS: strings as parsed by the definition, or `--name value` from a parse
 * without one, which reads as a bare flag followed by a positional (these commands take no
 * positionals, so the n-th bare value flag gets the n-th positional).
 */
export function valueFlags(args: ParsedArgs): Map<string, string> {
  const out = new Map<string, string>();
  let next = 0;
  for (const [name, value] of args.flags) {
    if (!VALUE_FLAGS.includes(name)) continue;
    if (typeof value === 'string') out.set(name, value);
    else {
      const v = args.positional[next++];
      if (v === undefined) throw new UsageError(`--${name} needs a value`);
      out.set(name, v);
    }
  }
  if (next < args.positional.length) throw new UsageError(`unexpected argument ${JSON.stringify(args.positional[next])}`);
  return out;
}

function table(rows: string[][], rightAligned: Set<number> = new Set()): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 && !rightAligned.has(i) ? c : rightAligned.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

const utc = (d: Date | number) => new Date(d).toISOString().slice(0, 19).replace('T', ' ');

// ---- sessions ----

const JSON_FLAG: FlagDefinition = { name: 'json', type: 'boolean', doc: 'print JSON instead of a table (the admin HTTP API answers the same)' };

const HOST_FLAG: FlagDefinition = { name: 'host', type: 'string', value: 'DOMAIN', doc: 'only the sessions of accounts on this host' };
const JID_FLAG: FlagDefinition = { name: 'jid', type: 'string', value: 'JID', doc: 'only the sessions of this account (user@domain), or this one session (user@domain/resource)' };
const KIND_FLAG: FlagDefinition = {
  name: 'kind',
  type: 'string',
  value: 'KIND',
  default: 'c2s',
  doc: 'c2s: client sessions; s2s: links to other servers (direction, their domains, since when); component: the configured components, connected or not',
};

const sessions = {
  name: 'sessions',
  summary: 'live client sessions: JID, IP, start, stanzas and bytes in/out (asks the running server)',
  description:
    'The client session list names JIDs and IP addresses: every read is logged by the server (P21). The server filters the list (--host, --jid), so what is read is what is shown. The links to other servers and the components (--kind) name no user.',
  flags: [CONFIG_FLAG, JSON_FLAG, HOST_FLAG, JID_FLAG, KIND_FLAG],
  server: 'yes',
  control: 'sessions',
  http: {
    // Links and components (--kind s2s, component) carry a kind and no user data.
    audit: (list) =>
      (list as { kind?: string }[]).some((s) => s.kind !== undefined) ? null : `live client sessions (JID, IP, counters) on the admin HTTP API: ${(list as unknown[]).length} shown`,
  },
  async run(args) {
    const config = configFrom(args);
    const filter = Object.fromEntries(valueFlags(args));
    const answer = (await controlRequest(config.dataDir, 'sessions', filter)) as unknown[];
    if (args.flags.has('json')) {
      console.log(JSON.stringify(answer, null, 2));
      return 0;
    }
    if (filter.kind === 's2s') {
      const links = answer as LiveS2sLink[];
      if (links.length === 0) console.log('no links to other servers');
      else console.log(table([['DIRECTION', 'SERVERS', 'SINCE (UTC)', 'TLS'], ...links.map((l) => [l.direction, l.remote.join(' '), utc(new Date(l.since)), l.secure ? 'yes' : 'no'])]));
      return 0;
    }
    if (filter.kind === 'component') {
      const list = answer as LiveComponent[];
      if (list.length === 0) console.log('no components configured');
      else console.log(table([['COMPONENT', 'CONNECTED SINCE (UTC)'], ...list.map((c) => [c.domain, c.connectedSince ? utc(new Date(c.connectedSince)) : 'not connected'])]));
      return 0;
    }
    const list = answer as LiveSession[];
    if (list.length === 0) {
      console.log(Object.keys(filter).length ? 'no client sessions online that match' : 'no client sessions online');
      return 0;
    }
    const rows = [['JID', 'IP', 'SINCE (UTC)', 'TLS', 'STANZAS IN', 'STANZAS OUT', 'BYTES IN', 'BYTES OUT']];
    for (const s of list) {
      rows.push([s.jid, s.ip, utc(new Date(s.startedAt)), s.secure ? 'yes' : 'no', String(s.stanzasIn), String(s.stanzasOut), String(s.bytesIn), String(s.bytesOut)]);
    }
    console.log(table(rows, new Set([4, 5, 6, 7])));
    console.log(`${list.length} session${list.length === 1 ? '' : 's'} online`);
    return 0;
  },
} satisfies CommandDefinition;

// ---- stats ----

/** Series not counted in events or sessions: left out of a chart unless chosen with --series. */
const OTHER_UNITS = /^(c2s\.bytes\.|sessions\.seconds$)/;

const DEFAULT_SINCE: Record<Resolution, number> = { minute: 3 * 3_600_000, hour: 48 * 3_600_000, day: 90 * 86_400_000 };
const DURATION = /^(\d+)\s*(m|min|h|d|w)$/i;
const UNIT_MS: Record<string, number> = { m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** `--since`: a duration back from now (`90m`, `48h`, `30d`, `2w`) or an ISO date/time (UTC if no zone). */
export function parseSince(value: string, now: Date): Date {
  const m = DURATION.exec(value.trim());
  if (m) return new Date(now.getTime() - Number(m[1]) * UNIT_MS[m[2]!.toLowerCase()]!);
  const text = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$/.test(value) ? (value.length === 10 ? `${value}T00:00:00Z` : `${value}Z`) : value;
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) throw new UsageError(`--since: not a duration (48h, 7d) or a date (2026-01-31, 2026-01-31T12:00): ${value}`);
  return d;
}

function selectSeries(keys: string[], selectors: string[] | null): string[] {
  if (!selectors) return keys;
  return keys.filter((k) => selectors.some((s) => k === s || seriesName(k) === s));
}

/** Points per series, counters filled with 0 for buckets without a point (gauges keep the gaps). */
export function seriesPoints(points: StatPoint[], keys: string[], resolution: Resolution, from: number, to: number): Map<string, { t: number; v: number }[]> {
  const step = RESOLUTION_MS[resolution];
  const start = Math.floor(from / step) * step;
  const byKey = new Map<string, Map<number, number>>();
  for (const p of points) {
    let m = byKey.get(p.series);
    if (!m) byKey.set(p.series, (m = new Map()));
    m.set(p.bucketStart.getTime(), p.value);
  }
  const out = new Map<string, { t: number; v: number }[]>();
  for (const key of keys) {
    const values = byKey.get(key) ?? new Map<number, number>();
    const counter = rollupOf(key) === 'sum';
    const pts: { t: number; v: number }[] = [];
    for (let t = start; t <= to; t += step) {
      const v = values.get(t);
      if (v !== undefined) pts.push({ t, v });
      else if (counter) pts.push({ t, v: 0 });
    }
    out.set(key, pts);
  }
  return out;
}

interface StatsQuery {
  resolution: Resolution;
  since: Date;
  now: Date;
  selectors: string[] | null;
}

function statsQuery(flags: Map<string, string>, now: Date): StatsQuery {
  const resolution = (flags.get('resolution') ?? 'hour') as Resolution;
  if (!['minute', 'hour', 'day'].includes(resolution)) throw new UsageError('--resolution is minute, hour or day');
  const since = flags.has('since') ? parseSince(flags.get('since')!, now) : new Date(now.getTime() - DEFAULT_SINCE[resolution]);
  const selectors = flags.has('series') ? flags.get('series')!.split(',').map((s) => s.trim()).filter(Boolean) : null;
  return { resolution, since, now, selectors };
}

async function loadStats(storage: Storage, q: StatsQuery) {
  const step = RESOLUTION_MS[q.resolution];
  const points = await storage.statistics.listPoints({ resolution: q.resolution, since: new Date(Math.floor(q.since.getTime() / step) * step) });
  const keys = selectSeries([...new Set(points.map((p) => p.series))].sort(), q.selectors);
  const selected = points.filter((p) => keys.includes(p.series));
  const perSeries = seriesPoints(selected, keys, q.resolution, q.since.getTime(), q.now.getTime());
  return { keys, selected, perSeries };
}

/** What `stats --json` prints and `GET /api/stats` answers. */
function statsJson(q: StatsQuery, perSeries: Map<string, { t: number; v: number }[]>) {
  return { resolution: q.resolution, since: q.since.toISOString(), series: Object.fromEntries([...perSeries].map(([k, v]) => [k, v.map((p) => [new Date(p.t).toISOString(), p.v])])) };
}

async function serveStats(ctx: ServerContext, args: ParsedArgs) {
  const q = statsQuery(valueFlags(args), ctx.clock.now());
  try {
    // Include the current minute, as the CLI and the console do.
    await controlHandlers(ctx).get('stats.flush')?.handler({});
  } catch (err) {
    ctx.log.child('admin-http').warn('could not flush the statistics', { error: err instanceof Error ? err.message : String(err) });
  }
  return statsJson(q, (await loadStats(ctx.storage, q)).perSeries);
}

const stats = {
  name: 'stats',
  summary: 'anonymous usage statistics (no JID, no IP): a summary, a table per series, or an SVG chart',
  description:
    'Without --series, a summary per series (total for counters, average for levels, peak, last); with it, the value of each bucket. A running server first writes what it holds in memory.',
  flags: [
    { name: 'series', type: 'string', value: 'NAME[,NAME...]', doc: 'only these series (a full key such as stanzas.routed{kind=message}, or a name for all its labels)' },
    { name: 'resolution', type: 'string', value: 'minute|hour|day', doc: 'the bucket size', default: 'hour' },
    { name: 'since', type: 'string', value: 'TIME', doc: 'a duration back from now (90m, 48h, 30d, 2w) or an ISO date or time in UTC (2026-01-31, 2026-01-31T12:00)', default: '3h, 48h or 90d by resolution' },
    { name: 'chart', type: 'string', value: 'FILE', doc: 'also write an SVG line chart to FILE (counts only unless --series chooses)' },
    JSON_FLAG,
    CONFIG_FLAG,
  ],
  server: 'if-running',
  control: 'stats.flush',
  http: { serve: serveStats },
  async run(args, ctx) {
    const config = configFrom(args);
    const flags = valueFlags(args);
    const q = statsQuery(flags, new Date());
    const { resolution, since, now, selectors } = q;
    // Include the current minute: a running server writes what it holds in memory first.
    await controlRequest(config.dataDir, 'stats.flush', {}, 3000).catch(() => undefined);
    const step = RESOLUTION_MS[resolution];
    const { keys, selected, perSeries } = await withStorage(config, ctx, (storage) => loadStats(storage, q));
    if (selectors && keys.length === 0) {
      const known = Object.keys(SERIES).join(', ');
      console.log(`no ${resolution} data for ${selectors.join(', ')} since ${utc(since)} UTC (series: ${known})`);
      return 0;
    }

    if (args.flags.has('json')) {
      console.log(JSON.stringify(statsJson(q, perSeries), null, 2));
    } else if (keys.length === 0) {
      console.log(`no statistics since ${utc(since)} UTC`);
    } else if (!selectors) {
      console.log(`Statistics per ${resolution} since ${utc(since)} UTC (total for counters, average for levels):`);
      const rows = [['SERIES', 'TOTAL/AVG', 'PEAK', 'LAST']];
      for (const key of keys) {
        const values = selected.filter((p) => p.series === key).map((p) => p.value);
        const how = rollupOf(key);
        const sum = values.reduce((a, b) => a + b, 0);
        const agg = how === 'sum' ? sum : how === 'max' ? Math.max(...values) : sum / values.length;
        rows.push([key, formatValue(agg), formatValue(Math.max(...values)), formatValue(values[values.length - 1] ?? 0)]);
      }
      console.log(table(rows, new Set([1, 2, 3])));
      console.log('Per-bucket values: gatehouse stats --series NAME; a chart: --chart out.svg');
    } else {
      const times = [...new Set([...perSeries.values()].flatMap((pts) => pts.map((p) => p.t)))].sort((a, b) => a - b);
      const rows = [['TIME (UTC)', ...keys]];
      const lookup = new Map([...perSeries].map(([k, pts]) => [k, new Map(pts.map((p) => [p.t, p.v]))]));
      for (const t of times) {
        const label = resolution === 'day' ? utc(t).slice(0, 10) : utc(t).slice(0, 16);
        rows.push([label, ...keys.map((k) => (lookup.get(k)!.has(t) ? formatValue(lookup.get(k)!.get(t)!) : '-'))]);
      }
      console.log(table(rows, new Set(keys.map((_, i) => i + 1))));
    }

    const chart = flags.get('chart');
    if (chart) {
      // By default, counts only: bytes and seconds would flatten every other line.
      let drawn = selectors ? keys : keys.filter((k) => !OTHER_UNITS.test(k) && (perSeries.get(k) ?? []).some((p) => p.v !== 0));
      if (drawn.length > PALETTE.length) {
        console.log(`the chart shows the first ${PALETTE.length} of ${drawn.length} series; choose with --series`);
        drawn = drawn.slice(0, PALETTE.length);
      }
      const svg = renderChart({
        title: `Gatehouse statistics per ${resolution}`,
        series: drawn.map((k) => ({ name: k, points: perSeries.get(k) ?? [] })),
        from: Math.floor(since.getTime() / step) * step,
        to: Math.floor(now.getTime() / step) * step,
      });
      writeFileSync(chart, svg);
      console.log(`chart written to ${chart} (${drawn.length} series)`);
    }
    return 0;
  },
} satisfies CommandDefinition;

export { sessions as sessionsCommand, stats as statsCommand };
export const statsCommands = commandSet(sessions, stats);
