/**
 * Anonymous statistics (PRIVACY.md P12): time series of usage and load, with no JID, IP or content.
 *
 * Collection. Modules count through the per-server `Statistics` object, `statsFor(ctx)`:
 * - `increment(name, labels?, by?)` for events (logins, registrations, delivery failures ...);
 * - `counter(name, labels?)` for hot paths: a plain object whose `inc()` is one addition, read and
 *   reset once a minute (stanzas routed);
 * - `gauge(name, sample, { rollup })` for levels sampled once a minute (sessions online, s2s links).
 * Series names and label values are checked (`seriesKey`): lower-case words, dots, dashes and
 * underscores only, and a label value may not contain '@' or '/' or be an IP address, so no JID or
 * address can end up in a series name. The stored key is `name` or `name{label=value,...}`.
 *
 * Storage, as an RRD does it (table stat_points: series, resolution, bucket_start, value):
 * - 1-minute points, kept for a day;
 * - hourly rollups, kept for 60 days;
 * - daily rollups, kept for retention.statistics (null = forever); that limit cuts every resolution.
 * Buckets are UTC. Counters roll up as sums; gauges as the average ('avg') or the peak ('max').
 * Points are flushed from memory to the database once a minute (and when the server stops); a
 * completed hour (day) is rolled up at the first tick after it ends. The clock is the injected one;
 * `tick()` runs one collection step, so tests move a ManualClock and call it instead of sleeping.
 *
 * Series recorded today (SERIES in series.ts); later features use the reserved names for s2s links and
 * transport connections per network.
 */
import type { Clock } from '../../../shared/clock.js';
import type { Logger } from '../../../shared/logger.js';
import type { GatehouseModule, ServerContext } from '../../core/context.js';
import { RESOLUTION_MS } from '../../../storage/repos/statistics.js';
import type { StatisticsRepository, StatWrite } from '../../../storage/types.js';
import { SERIES, rollupOf, seriesKey, type Labels, type Rollup } from './series.js';
import { statsCommand } from './cli-stats.js';
import { statisticsPage } from './admin-statistics.js';

export { seriesKey };


/** A hot-path counter: `inc()` is a single addition; the collector reads and resets it each minute. */
export class Counter {
  value = 0;
  constructor(readonly key: string) {}
  inc(by = 1): void {
    this.value += by;
  }
}

const MINUTE = RESOLUTION_MS.minute;
const HOUR = RESOLUTION_MS.hour;
const DAY = RESOLUTION_MS.day;
/** How long each resolution is kept (before retention.statistics, which applies to all). */
export const KEEP = { minute: DAY, hour: 60 * DAY } as const;
/** In-memory points kept while the database is unreachable, at most (minutes). */
const MAX_PENDING_BUCKETS = 24 * 60;

const floorTo = (ms: number, step: number) => Math.floor(ms / step) * step;

export interface StatisticsEnv {
  repo: StatisticsRepository;
  clock: Clock;
  /** retention.statistics: milliseconds, or null = unlimited. */
  retention: number | null;
  log: Logger;
  /** Client sessions online now. */
  online(): number;
}

type TickListener = (bucket: Date, final: boolean) => void | Promise<void>;

interface Gauge {
  key: string;
  sample: () => number;
}

export class Statistics {
  /** bucket start (ms) -> series key -> value and how it is written. */
  private pending = new Map<number, Map<string, { value: number; mode: 'add' | 'set' }>>();
  private readonly counters = new Map<string, Counter>();
  /** Every counter series counted since the server started, in memory (/metrics reads it, never the database). */
  private readonly sinceStart = new Map<string, number>();
  private readonly gauges = new Set<Gauge>();
  private readonly rollups = new Map<string, Rollup>();
  private readonly listeners = new Set<TickListener>();
  private lastTick: number;
  private nextHour: number | undefined;
  private nextDay: number | undefined;
  private running: Promise<void> = Promise.resolve();
  private users = 0;
  private timer: NodeJS.Timeout | null = null;
  private autoTick = false;
  private retentionDone = false;

  constructor(private readonly env: StatisticsEnv) {
    this.lastTick = env.clock.now().getTime();
    this.gauge('sessions.online', () => env.online(), { rollup: 'avg' });
    this.gauge('sessions.online.peak', () => env.online(), { rollup: 'max' });
  }

  /** Adds to a counter series at the current minute (or at `at`). */
  increment(name: string, labels?: Labels, by = 1, at?: Date): void {
    if (!Number.isFinite(by) || by === 0) return;
    const key = seriesKey(name, labels);
    this.add(key, by, floorTo((at ?? this.env.clock.now()).getTime(), MINUTE), 'add');
    this.sinceStart.set(key, (this.sinceStart.get(key) ?? 0) + by);
  }

  /** A counter for a hot path; the same object for the same series. */
  counter(name: string, labels?: Labels): Counter {
    const key = seriesKey(name, labels);
    let c = this.counters.get(key);
    if (!c) this.counters.set(key, (c = new Counter(key)));
    return c;
  }

  /** Registers a level sampled once a minute; returns a function that removes it. */
  gauge(name: string, sample: () => number, opts: { labels?: Labels; rollup?: 'avg' | 'max' } = {}): () => void {
    const key = seriesKey(name, opts.labels);
    this.rollups.set(name, opts.rollup ?? (SERIES[name]?.rollup === 'max' ? 'max' : 'avg'));
    const g: Gauge = { key, sample };
    this.gauges.add(g);
    return () => this.gauges.delete(g);
  }

  /** The counter series since the server started (series key → total), hot-path counts not yet collected included. */
  totals(): Map<string, number> {
    const out = new Map(this.sinceStart);
    for (const c of this.counters.values()) if (c.value !== 0) out.set(c.key, (out.get(c.key) ?? 0) + c.value);
    return out;
  }

  /** The levels (gauges) sampled now, by series key; a failing sample is left out. */
  levels(): Map<string, number> {
    const out = new Map<string, number>();
    for (const g of this.gauges) {
      try {
        const v = g.sample();
        if (Number.isFinite(v)) out.set(g.key, v);
      } catch {
        // as at a tick: a sample that fails is skipped
      }
    }
    return out;
  }

  /** Runs `fn` at each tick, before the flush, with the minute being closed. */
  onTick(fn: TickListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private add(key: string, value: number, bucket: number, mode: 'add' | 'set'): void {
    let points = this.pending.get(bucket);
    if (!points) this.pending.set(bucket, (points = new Map()));
    const p = points.get(key);
    if (p && mode === 'add') p.value += value;
    else points.set(key, { value, mode });
  }

  /** Starts (reference-counted) collection; with autoTick, a timer ticks at every minute boundary. */
  acquire(autoTick: boolean): void {
    this.users++;
    if (autoTick && !this.autoTick) {
      this.autoTick = true;
      this.schedule();
    }
  }

  /** Stops collection when the last user releases it, after a final flush. */
  async release(): Promise<void> {
    if (this.users === 0) return;
    this.users--;
    if (this.users > 0) return;
    this.autoTick = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.tick({ final: true });
  }

  private schedule(): void {
    if (!this.autoTick) return;
    const now = Date.now();
    // Just after the next minute boundary, so a tick closes exactly the minute that ended.
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.tick().finally(() => this.schedule());
    }, floorTo(now, MINUTE) + MINUTE - now + 50);
    this.timer.unref();
  }

  /**
   * One collection step: what was counted since the last tick goes into that tick's minute, gauges
   * are sampled, everything pending is written, completed hours and days are rolled up and expired
   * points deleted. `final` (at stop) only flushes: no gauge samples, no rollup.
   */
  tick(opts: { final?: boolean } = {}): Promise<void> {
    const run = this.running.then(() => this.tickOnce(opts.final === true));
    this.running = run.catch(() => {});
    return run;
  }

  private async tickOnce(final: boolean): Promise<void> {
    const { clock, log } = this.env;
    const now = clock.now().getTime();
    const bucket = floorTo(this.lastTick, MINUTE);
    for (const fn of this.listeners) {
      try {
        await fn(new Date(bucket), final);
      } catch (err) {
        log.warn('statistics tick listener failed', { error: err instanceof Error ? err.message : String(err) });
      }
    }
    for (const c of this.counters.values()) {
      if (c.value !== 0) {
        this.add(c.key, c.value, bucket, 'add');
        this.sinceStart.set(c.key, (this.sinceStart.get(c.key) ?? 0) + c.value);
      }
      c.value = 0;
    }
    if (!final) {
      for (const g of this.gauges) {
        let v: number;
        try {
          v = g.sample();
        } catch {
          continue;
        }
        if (Number.isFinite(v)) this.add(g.key, v, bucket, 'set');
      }
    }
    this.lastTick = Math.max(this.lastTick, now);
    await this.flush();
    if (final) return;
    try {
      const rolled = await this.rollup(now);
      if (rolled || !this.retentionDone) {
        await this.expire(now);
        this.retentionDone = true;
      }
    } catch (err) {
      log.warn('statistics rollup failed', { error: err instanceof Error ? err.message : String(err) });
    }
  }

  /** Writes every pending minute point; on failure they stay in memory for the next tick. */
  private async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    const writes: StatWrite[] = [];
    for (const [bucket, points] of batch) {
      for (const [series, p] of points) writes.push({ series, resolution: 'minute', bucketStart: new Date(bucket), value: p.value, mode: p.mode });
    }
    try {
      await this.env.repo.writePoints(writes);
    } catch (err) {
      this.env.log.warn('could not store statistics; keeping them for the next minute', { error: err instanceof Error ? err.message : String(err) });
      for (const [bucket, points] of batch) for (const [key, p] of points) this.add(key, p.value, bucket, p.mode);
      while (this.pending.size > MAX_PENDING_BUCKETS) this.pending.delete(Math.min(...this.pending.keys()));
    }
  }

  /** Rolls completed hours up from minutes and completed days from hours; true if any was. */
  private async rollup(now: number): Promise<boolean> {
    const { repo } = this.env;
    const hourEnd = floorTo(now, HOUR);
    if (this.nextHour === undefined) {
      const latest = await repo.latestBucket('hour');
      const earliest = latest ? null : await repo.earliestBucket('minute');
      this.nextHour = latest ? latest.getTime() + HOUR : earliest ? floorTo(earliest.getTime(), HOUR) : hourEnd;
    }
    let rolled = false;
    if (this.nextHour < hourEnd) {
      const minutes = await repo.listPoints({ resolution: 'minute', since: new Date(this.nextHour), until: new Date(hourEnd) });
      await repo.writePoints(this.aggregate(minutes, HOUR, 'hour'));
      this.nextHour = hourEnd;
      rolled = true;
    }
    const dayEnd = floorTo(now, DAY);
    if (this.nextDay === undefined) {
      const latest = await repo.latestBucket('day');
      const earliest = latest ? null : await repo.earliestBucket('hour');
      this.nextDay = latest ? latest.getTime() + DAY : earliest ? floorTo(earliest.getTime(), DAY) : dayEnd;
    }
    if (this.nextDay < dayEnd) {
      const hours = await repo.listPoints({ resolution: 'hour', since: new Date(this.nextDay), until: new Date(dayEnd) });
      await repo.writePoints(this.aggregate(hours, DAY, 'day'));
      this.nextDay = dayEnd;
      rolled = true;
    }
    return rolled;
  }

  private aggregate(points: { series: string; bucketStart: Date; value: number }[], step: number, resolution: 'hour' | 'day'): StatWrite[] {
    const groups = new Map<string, { series: string; bucket: number; sum: number; n: number; max: number }>();
    for (const p of points) {
      const bucket = floorTo(p.bucketStart.getTime(), step);
      const k = `${bucket}\u0000${p.series}`;
      const g = groups.get(k);
      if (g) {
        g.sum += p.value;
        g.n++;
        g.max = Math.max(g.max, p.value);
      } else groups.set(k, { series: p.series, bucket, sum: p.value, n: 1, max: p.value });
    }
    return [...groups.values()].map((g) => {
      const how = rollupOf(g.series, this.rollups);
      const value = how === 'sum' ? g.sum : how === 'max' ? g.max : g.sum / g.n;
      return { series: g.series, resolution, bucketStart: new Date(g.bucket), value, mode: 'set' as const };
    });
  }

  /** Deletes points past their resolution's lifetime, never minutes or hours not yet rolled up. */
  private async expire(now: number): Promise<void> {
    const { repo, retention } = this.env;
    const minuteCut = Math.min(now - KEEP.minute, this.nextHour ?? 0);
    const hourCut = Math.min(now - KEEP.hour, this.nextDay ?? 0);
    await repo.deletePointsBefore('minute', new Date(minuteCut));
    await repo.deletePointsBefore('hour', new Date(hourCut));
    if (retention !== null) {
      const cut = new Date(now - retention);
      for (const r of ['minute', 'hour', 'day'] as const) await repo.deletePointsBefore(r, cut);
    }
  }
}

declare module '../../core/services.js' {
  interface Services {
    statistics: Statistics;
  }
}

/** The statistics of one running server (a shared service: created on first use, whatever the module order). */
export function statsFor(ctx: ServerContext): Statistics {
  return ctx.services.shared(
    'statistics',
    () =>
      new Statistics({
        repo: ctx.storage.statistics,
        clock: ctx.clock,
        retention: ctx.config.retention.statistics,
        log: ctx.log.child('statistics'),
        // In a cluster every node samples the cluster's total (the series are shared), not its own.
        online: () => ctx.services.get('cluster')?.sessionsOnline() ?? ctx.sessions.size,
      }),
  );
}

export interface StatisticsModuleOptions {
  /** Tick on a real-time timer once a minute (default). Tests turn it off and call tick(). */
  autoTick?: boolean;
}

/**
 * The module that counts server events into the statistics. A factory: each server gets its own
 * instance (call it inside allModules()).
 */
export function createStatisticsModule(opts: StatisticsModuleOptions = {}): GatehouseModule {
  const cleanup: (() => void)[] = [];
  let stats: Statistics | null = null;
  return {
    name: 'statistics',
    specs: [],
    clauses: ['P12'],
    provides: ['statistics'],
    admin: { pages: [statisticsPage] },
    commands: {
      cli: [statsCommand],
      control: {
        'stats.flush': {
          summary: 'write the statistics collected in memory to the database now',
          available: () => stats !== null,
          handler: async () => {
            await stats?.tick();
            return { flushed: true };
          },
        },
      },
    },
    load(ctx) {
      const s = (stats = statsFor(ctx));
      s.acquire(opts.autoTick ?? true);
      const { hooks, router } = ctx;
      cleanup.push(hooks.on('session/bound', () => s.increment('logins')));
      cleanup.push(
        hooks.on('auth/failed', (f) => {
          // A component's handshake is not a user's login.
          if (/XEP-0114/.test(f.mechanism)) s.increment('components.auth.failed');
          else s.increment('logins.failed');
        }),
      );
      cleanup.push(hooks.on('register/failed', () => s.increment('registrations.failed')));
      cleanup.push(hooks.on('account/created', () => s.increment('registrations')));
      cleanup.push(hooks.on('account/deleted', () => s.increment('accounts.deleted')));
      cleanup.push(
        hooks.on('delivery/failed', (f) => {
          s.increment('delivery.failed', { condition: /^[a-z-]{1,40}$/.test(f.condition) ? f.condition : 'other' });
        }),
      );
      cleanup.push(hooks.on('offline/stored', (e) => s.increment('offline.stored', undefined, e.count)));
      cleanup.push(hooks.on('offline/delivered', (e) => s.increment('offline.delivered', undefined, e.count)));

      // Stanzas routed, by kind. Counted where every stanza passes (Router.route, including the
      // server's own stanzas), since IQs handled by an iq-get/iq-set handler never fire iq/<target>.
      // One addition per stanza on the hot path. (Proposed core change: counters in the Router.)
      const byKind = { message: s.counter('stanzas.routed', { kind: 'message' }), presence: s.counter('stanzas.routed', { kind: 'presence' }), iq: s.counter('stanzas.routed', { kind: 'iq' }) };
      const original = router.route;
      const counted: typeof router.route = function (this: typeof router, stanza, from, origin) {
        const c = byKind[stanza.name as keyof typeof byKind];
        if (c) c.value++;
        return original.call(this, stanza, from, origin);
      };
      router.route = counted;
      cleanup.push(() => {
        if (router.route === counted) router.route = original;
      });
    },
    async unload() {
      for (const off of cleanup.splice(0).reverse()) off();
      await stats?.release();
      stats = null;
    },
  };
}
