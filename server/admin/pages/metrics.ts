/**
 * /metrics in the Prometheus text exposition format (0.0.4), made with prom-client: the process's
 * metrics beside the server's anonymous counters (P12). Nothing here names a JID or an IP: the
 * series keys are checked when they are counted (modules/statistics/series.ts seriesKey: label
 * values are plain words, never an address), and everything else is a count.
 *
 * - Process metrics (prom-client's default metrics): CPU time, resident and virtual memory, heap
 *   and heap spaces, open and maximum file descriptors, start time, Node.js version, and the
 *   event-loop delay since the last scrape (our own gauges over one monitorEventLoopDelay
 *   histogram: without its sampling interval, which prom-client's include, and unchanged when no
 *   sample came in since the last scrape, where prom-client's report NaN). They are the
 *   process's, so one registry per process holds them (several servers in one process, as in the
 *   tests, share it); prom-client's global default registry is not used. Left out: the GC
 *   duration histogram and the active handles/requests/resources by type, which nobody asked for
 *   and whose labels are not the plain words this page promises.
 * - Server metrics: one registry per server (ServerMetrics). Counters (series that roll up as sums)
 *   are `gatehouse_<name>_total`: what the statistics counted since the server started, held in
 *   memory and updated as the events happen (Statistics.totals); a scrape reads no database. A
 *   restart starts them at 0 again, which Prometheus takes as a counter reset. Levels (averaged or
 *   peak series, e.g. s2s.links) are gauges `gatehouse_<name>` sampled at the scrape. Live gauges:
 *   sessions online, hosts, components configured and connected, login blocks in force (by kind,
 *   from the login guard's memory), accounts lacking a SCRAM verifier by hash (the counts the
 *   server keeps to choose the SCRAM mechanisms it offers, auth/scram-offer.ts), start time and
 *   uptime.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Registry, collectDefaultMetrics, contentType } from 'prom-client';
import type { ServerContext } from '../../core/context.js';
import { SERIES, seriesName } from '../../modules/statistics/series.js';
import { statsFor } from '../../modules/statistics/statistics.js';

/** The content type of the exposition format this page writes. */
export const METRICS_CONTENT_TYPE = contentType;

/** A Prometheus metric or label name from a series name ('c2s.stanzas.in' → 'c2s_stanzas_in'). */
export function promName(s: string): string {
  const n = s.replace(/[^a-zA-Z0-9_]/g, '_');
  return /^[a-zA-Z_]/.test(n) ? n : `_${n}`;
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

// ---- the process ----

/** Default metrics left out (see the file comment). */
const LEFT_OUT = [
  'nodejs_gc_duration_seconds',
  'nodejs_active_handles',
  'nodejs_active_requests',
  'nodejs_active_resources',
  'nodejs_eventloop_lag_seconds',
  'nodejs_eventloop_lag_min_seconds',
  'nodejs_eventloop_lag_max_seconds',
  'nodejs_eventloop_lag_mean_seconds',
  'nodejs_eventloop_lag_stddev_seconds',
  'nodejs_eventloop_lag_p50_seconds',
  'nodejs_eventloop_lag_p90_seconds',
  'nodejs_eventloop_lag_p99_seconds',
];

let processRegistry: Registry | null = null;
/** How often the event-loop delay is sampled. */
const LAG_RESOLUTION_MS = 10;

/**
 * The process's metrics: made once per process, with the first server's (its observers live as
 * long as the process). prom-client counts CPU time from then on.
 */
function processMetrics(): Registry {
  if (processRegistry) return processRegistry;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const name of LEFT_OUT) registry.removeSingleMetric(name);
  const lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
  lag.enable();
  // The histogram holds the time between its timer's runs, which includes the timer's own interval.
  const seconds = (ns: number) => Math.max(0, ns / 1e9 - LAG_RESOLUTION_MS / 1000);
  // The first of the four reads the histogram for all (a family's collect runs when it is written,
  // in registration order), then starts the samples over.
  const gauges: Record<'p50' | 'p99' | 'max', Gauge> = {} as Record<'p50' | 'p99' | 'max', Gauge>;
  new Gauge({
    name: 'nodejs_eventloop_lag_mean_seconds',
    help: 'Mean event-loop delay since the last scrape.',
    registers: [registry],
    collect() {
      if (lag.count === 0) return;
      this.set(seconds(lag.mean));
      gauges.p50.set(seconds(lag.percentile(50)));
      gauges.p99.set(seconds(lag.percentile(99)));
      gauges.max.set(seconds(lag.max));
      lag.reset();
    },
  });
  gauges.p50 = new Gauge({ name: 'nodejs_eventloop_lag_p50_seconds', help: 'Median event-loop delay since the last scrape.', registers: [registry] });
  gauges.p99 = new Gauge({ name: 'nodejs_eventloop_lag_p99_seconds', help: '99th percentile of the event-loop delay since the last scrape.', registers: [registry] });
  gauges.max = new Gauge({ name: 'nodejs_eventloop_lag_max_seconds', help: 'Longest event-loop delay since the last scrape.', registers: [registry] });
  processRegistry = registry;
  return registry;
}

// ---- the server ----

/** A server's metrics registry (made by the admin HTTP module for its server). */
export class ServerMetrics {
  private readonly registry = new Registry();
  private readonly counters = new Map<string, Counter>();
  private readonly levels = new Map<string, Gauge>();

  /** `components`: configured component domains → connected since (null while down). */
  constructor(
    private readonly ctx: ServerContext,
    components: Map<string, Date | null>,
  ) {
    // Made now rather than at the first scrape: CPU time and the event-loop delay count from here.
    processMetrics();
    const registers = [this.registry];
    const gauge = (name: string, help: string, value: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(value());
        },
      });
    gauge('gatehouse_start_time_seconds', 'Unix time the server started.', () => ctx.startedAt.getTime() / 1000);
    gauge('gatehouse_uptime_seconds', 'Seconds since the server started.', () => Math.max(0, (ctx.clock.now().getTime() - ctx.startedAt.getTime()) / 1000));
    gauge('gatehouse_sessions_online', 'Client sessions online now.', () => ctx.sessions.size);
    gauge('gatehouse_hosts', 'XMPP domains served.', () => ctx.config.hosts.length);
    gauge('gatehouse_components_configured', 'External components (transports) configured.', () => ctx.config.components.length);
    gauge('gatehouse_components_connected', 'External components (transports) connected now.', () => [...components.values()].filter(Boolean).length);
    new Gauge({
      name: 'gatehouse_login_blocks',
      help: 'Temporary login blocks in force (P7), by kind.',
      labelNames: ['kind'],
      registers,
      collect() {
        const blocks = ctx.services.get('login-guard')?.blocksInForce() ?? { ip: 0, account: 0 };
        for (const kind of ['ip', 'account'] as const) this.set({ kind }, blocks[kind]);
      },
    });
    new Gauge({
      name: 'gatehouse_accounts_lacking_scram_verifier',
      help: 'Accounts without a SCRAM verifier for a hash of auth.hashes (imported with SCRAM-SHA-1 only), by hash (sha-1, sha-256), as last counted (every minute); they get it when their password is next seen in clear.',
      labelNames: ['hash'],
      registers,
      collect() {
        const lacking = ctx.services.get('scram-offer')?.lacking(ctx.config.hosts.map((h) => h.domain)) ?? {};
        this.reset();
        for (const [hash, n] of Object.entries(lacking)) this.set({ hash: hash.toLowerCase() }, n);
      },
    });
  }

  /** The exposition text: the process's metrics, then this server's. */
  async text(): Promise<string> {
    this.readStatistics();
    const merged = Registry.merge([processMetrics(), this.registry]);
    // In a cluster every series carries its node's name, so one Prometheus tells the nodes apart.
    const cluster = this.ctx.config.cluster;
    if (cluster.enabled) merged.setDefaultLabels({ node: cluster.node });
    const text = await merged.metrics();
    // prom-client separates families with an empty line; the format needs none.
    return text.replace(/\n{2,}/g, '\n');
  }

  /** Brings the counter and level families up to the statistics' in-memory values. */
  private readStatistics(): void {
    const stats = statsFor(this.ctx);
    const totals = [...stats.totals()].sort(([a], [b]) => (a < b ? -1 : 1));
    for (const c of this.counters.values()) c.reset();
    for (const [key, value] of totals) {
      const name = seriesName(key);
      const labels = labelsOf(key);
      const metric = `gatehouse_${promName(name)}_total`;
      let c = this.counters.get(metric);
      if (!c) {
        c = new Counter({ name: metric, help: SERIES[name]?.doc ?? `Statistics series ${name}.`, labelNames: Object.keys(labels), registers: [this.registry] });
        this.counters.set(metric, c);
      }
      c.inc(labels, Math.max(0, value));
    }
    for (const [key, value] of stats.levels()) {
      const name = seriesName(key);
      // The live count is gatehouse_sessions_online.
      if (name === 'sessions.online' || name === 'sessions.online.peak') continue;
      const labels = labelsOf(key);
      const metric = `gatehouse_${promName(name)}`;
      let g = this.levels.get(metric);
      if (!g) {
        g = new Gauge({ name: metric, help: SERIES[name]?.doc ?? `Statistics series ${name}.`, labelNames: Object.keys(labels), registers: [this.registry] });
        this.levels.set(metric, g);
      }
      g.set(labels, value);
    }
  }
}
