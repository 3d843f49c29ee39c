/**
 * Session records (PRIVACY.md P6): start, stanzas and bytes in/out, and IP of every client session.
 *
 * - Live: the counters live on the session itself (ClientSession.counters, kept by the stream);
 *   admins see them through the control channel: `gatehouse sessions` (control command
 *   `sessions`), with JID, IP, start, TLS, and stanzas/bytes in and out.
 * - Anonymous statistics (P12): once a minute the traffic of every live session since the last
 *   minute is added to the c2s.* series (no JID, no IP); at session end the rest is added, with
 *   sessions.closed and sessions.seconds.
 * - At session end a record is stored (table session_records: full JID, IP, start, end, counters,
 *   close reason). It is a detailed log (P13): the retention class `session-records` deletes it once
 *   its end is older than retention.detailedLogs (default 48 h). When an account is deleted its
 *   records go with it (P23), and a session that ends because its account was deleted leaves none.
 */
import type { GatehouseModule, ServerContext } from '../../core/context.js';
import type { ClientSession, SessionCounters } from '../../core/session.js';
import type { Services } from '../../core/services.js';
import { sessionsCommand } from './cli-stats.js';
import { listSessions, type LiveSession } from './live-sessions.js';
import { disconnectAction, sessionsPage } from './admin-sessions.js';

type Statistics = Services['statistics'];
import { formatDurationWords } from '../../../shared/format.js';
import { inBatches, type RetentionClass } from '../../core/retention-class.js';
import type { SessionRecord } from '../../../storage/types.js';

export type { LiveSession };

const ZERO: SessionCounters = { stanzasIn: 0, stanzasOut: 0, bytesIn: 0, bytesOut: 0 };

/** Adds a session's traffic since `seen` to the anonymous c2s series; returns the new snapshot. */
function fold(stats: Statistics, s: ClientSession, seen: SessionCounters, at: Date): SessionCounters {
  const now = { ...s.counters };
  stats.increment('c2s.stanzas.in', undefined, now.stanzasIn - seen.stanzasIn, at);
  stats.increment('c2s.stanzas.out', undefined, now.stanzasOut - seen.stanzasOut, at);
  stats.increment('c2s.bytes.in', undefined, now.bytesIn - seen.bytesIn, at);
  stats.increment('c2s.bytes.out', undefined, now.bytesOut - seen.bytesOut, at);
  return now;
}

export interface SessionStatsModuleOptions {
  /** Tick the statistics on a real-time timer (default). Tests turn it off and call tick(). */
  autoTick?: boolean;
}

/** A factory: each server gets its own instance (call it inside allModules()). */
export function createSessionStatsModule(opts: SessionStatsModuleOptions = {}): GatehouseModule {
  const cleanup: (() => void)[] = [];
  let stats: Statistics | null = null;
  /** Writes in order (records, account deletions), awaited at unload before storage closes. */
  let queue: Promise<void> = Promise.resolve();
  let loaded: ServerContext | null = null;
  /** Connected components, since when (for `sessions --kind component`). */
  const components = new Map<string, Date>();
  return {
    name: 'session-stats',
    needs: ['statistics'],
    retention: [sessionRecordsClass],
    specs: [],
    clauses: ['P6'],
    admin: { pages: [sessionsPage], actions: [disconnectAction] },
    commands: {
      cli: [sessionsCommand],
      control: {
        sessions: {
          summary: 'live client sessions: JID, IP, start, TLS, stanzas and bytes in/out (P6)',
          available: () => loaded !== null,
          handler: (args) => (loaded ? listSessions(loaded, args, components) : []),
        },
      },
    },
    load(ctx) {
      loaded = ctx;
      const { hooks, storage, clock, log, sessions } = ctx;
      const s = (stats = ctx.services.need('statistics'));
      s.acquire(opts.autoTick ?? true);
      const seen = new WeakMap<ClientSession, SessionCounters>();
      const enqueue = (work: () => Promise<unknown>) => {
        queue = queue.then(work).then(
          () => {},
          (err) => log.warn('could not store a session record', { error: err instanceof Error ? err.message : String(err) }),
        );
      };

      let pendingRecords: Array<{ record: SessionRecord; local: string; domain: string }> = [];
      const writePendingRecords = async () => {
        const batch = pendingRecords;
        pendingRecords = [];
        const results = await Promise.allSettled(
          batch.map(async ({ record, local, domain }) => {
            // A session that ended because its account was deleted leaves no record (P23).
            if (!(await storage.accounts.get(local, domain))) return;
            await storage.statistics.addSessionRecord(record);
          }),
        );
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      };

      cleanup.push(
        s.onTick((bucket) => {
          for (const session of sessions.all()) seen.set(session, fold(s, session, seen.get(session) ?? ZERO, bucket));
        }),
      );

      // The 'observe' phase and synchronous: the counters are read before anything else runs, and the
      // write is queued before the server's stop() goes on to unload the modules.
      cleanup.push(
        hooks.on(
          'session/closed',
          ({ session, condition }) => {
            const endedAt = clock.now();
            fold(s, session, seen.get(session) ?? ZERO, endedAt);
            seen.delete(session);
            s.increment('sessions.closed', undefined, 1, endedAt);
            s.increment('sessions.seconds', undefined, Math.max(0, Math.round((endedAt.getTime() - session.startedAt.getTime()) / 1000)), endedAt);
            const c = session.counters;
            const record = {
              jid: session.jid.full,
              account: session.jid.bare,
              ip: session.ip,
              secure: session.secure,
              startedAt: session.startedAt,
              endedAt,
              stanzasIn: c.stanzasIn,
              stanzasOut: c.stanzasOut,
              bytesIn: c.bytesIn,
              bytesOut: c.bytesOut,
              closeReason: condition && /^[a-z-]{1,64}$/.test(condition) ? condition : null,
            };
            // Records that end close together are written by one queued job, concurrently, so
            // their inserts share a commit (Db.group); deletions queued later still run after them.
            pendingRecords.push({ record, local: session.jid.local, domain: session.jid.domain });
            if (pendingRecords.length === 1) enqueue(writePendingRecords);
          },
          'observe',
        ),
      );

      cleanup.push(hooks.on('component/connected', ({ domain, at }) => void components.set(domain, at)));
      cleanup.push(hooks.on('component/disconnected', ({ domain }) => void components.delete(domain)));

      cleanup.push(
        hooks.on('account/deleted', ({ jid }) => {
          enqueue(() => storage.statistics.deleteSessionRecordsOf(jid.bare));
        }),
      );
    },
    async unload() {
      loaded = null;
      components.clear();
      for (const off of cleanup.splice(0).reverse()) off();
      await queue;
      await stats?.release();
      stats = null;
    },
  };
}

const sessionRecordsClass: RetentionClass = {
  name: 'session-records',
  clause: 'P6',
  describe: (config) => `session records (JID, IP, times, counters) older than ${formatDurationWords(config.retention.detailedLogs)}`,
  async run(env, now, { dryRun, batch }) {
    const before = new Date(now.getTime() - env.config.retention.detailedLogs);
    if (dryRun) return env.storage.statistics.countSessionRecordsBefore(before);
    return inBatches(batch, (limit) => env.storage.statistics.deleteSessionRecordsBefore(before, limit));
  },
};
