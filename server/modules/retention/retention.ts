/**
 * The retention sweeper (PRIVACY.md P4, P5, P13): one job that enforces every retention class,
 * in the server on a schedule and on demand with `gatehouse retention run [--dry-run]`.
 *
 * ## How a feature adds its retention class
 *
 * A retention class is a plain value (core/retention-class.ts), listed by the module that stores the
 * records, in its `retention` field; nothing registers itself by being imported:
 *
 *     import { inBatches, type RetentionClass } from '../../core/retention-class.js';
 *     const sessionRecords: RetentionClass = {
 *       name: 'session-records',            // unique, kebab-case; printed by the CLI
 *       clause: 'P6',                       // the PRIVACY.md clause it enforces
 *       describe: (config) => `session records older than ${formatDurationWords(config.retention.detailedLogs)}`,
 *       async run(env, now, { dryRun, batch }) {
 *         const before = new Date(now.getTime() - env.config.retention.detailedLogs);
 *         if (dryRun) return env.storage.sessions.countBefore(before);
 *         return inBatches(batch, (limit) => env.storage.sessions.deleteBefore(before, limit));
 *       },
 *     };
 *     export function createSessionStatsModule(): GatehouseModule {
 *       return { name: 'session-stats', specs: [], retention: [sessionRecords], load(ctx) { ... } };
 *     }
 *
 * - `run` returns how many records it deleted (in a dry run: would delete) and must be idempotent:
 *   the scheduled sweep and the CLI may run at the same time, and a crashed run is simply repeated.
 * - It works in bounded batches (`batch` rows per transaction) and yields between them (`inBatches`
 *   does both), so no big table is locked for long.
 * - `env` is the ServerContext in the server; in the CLI it has the same storage, config, clock,
 *   log and a fresh hook bus and session registry, and no router (nobody is connected there).
 * - The server's sweeper runs the classes of the modules it loaded (ctx.modules); `gatehouse
 *   retention run` those of the modules the command surface hands it (CommandContext.modules:
 *   every module in modules/index.ts). A test compares that list with PRIVACY.md
 *   (test/privacy/retention-classes.test.ts).
 * - Nothing about a record reaches the log: the sweeper logs counts per class only.
 *
 * Classes of this module: inactive-accounts and inactive-account-warnings (P4), offline-messages
 * (P5, each expired message becomes a P8 delivery-failure record). failed-logins and auth-blocks
 * (P7/P13) belong to the failed-login guard, delivery-failures (P8/P13) to delivery-failures.ts.
 *
 * ## P4: inactive accounts
 *
 * An account is inactive from its last use (last_used_at: a resource bound or a session ended;
 * created_at if never used). After `retention.inactiveAccounts - retention.inactiveWarning` the
 * sweeper warns it: warned_at is set and a headline message goes to its JID (delivered at once to
 * any available resource; headlines are never stored offline). At the next login (a resource binds)
 * warned_at is cleared, since the account is in use again, and that resource gets a headline saying
 * the deletion is cancelled. After `retention.inactiveAccounts` an account that was warned at least
 * `retention.inactiveWarning` ago is deleted through the AccountService (modules are told first, so
 * contacts are unsubscribed; every row it owns goes with it). An account that missed its warning
 * (the server was down during the warning window, or the retention settings were shortened) is
 * warned first and deleted a full warning period later, never without notice. With
 * `retention.inactiveWarning: 0` there is no warning and deletion is immediate.
 */
import type { Config } from '../../config/index.js';
import type { GatehouseModule, ServerContext } from '../../core/context.js';
import { retentionClassesOf } from '../../core/module.js';
import { inBatches, type RetentionClass, type RetentionEnv } from '../../core/retention-class.js';
import type { ClientSession } from '../../core/session.js';
import type { Account } from '../../../storage/types.js';
import { systemClock } from '../../../shared/clock.js';
import { AccountError, AccountService, NoSuchAccountError } from '../../accounts/service.js';
import { parseXmlText } from '../../../shared/xml/parse-xml.js';
import { Element, x } from '../../../shared/xml/element.js';
import { Jid } from '../../../shared/jid.js';
import { NS } from '../../../shared/ns.js';
import { formatDurationWords } from '../../../shared/format.js';

import { runRetention, type RetentionResult } from './sweep.js';
import { retentionCommands } from './cli-retention.js';

export type { RetentionClass, RetentionEnv } from '../../core/retention-class.js';
export { inBatches } from '../../core/retention-class.js';
export { runRetention, type RetentionResult };

// ------------------------------------------------------------------------------------------------
// P4: inactive accounts

function lastUse(a: Account): number {
  return (a.lastUsedAt ?? a.createdAt).getTime();
}

/**
 * Warned during the current period of inactivity: a warning is void once the account is used at
 * or after it (a session that was open when the warning went out and ended later, for instance).
 */
function warnedFor(a: Account): boolean {
  return a.warnedAt !== null && a.warnedAt.getTime() > lastUse(a);
}

function day(d: Date): string {
  return d.toISOString().slice(0, 10);
}

/** The inactivity warning (a headline: never stored offline, shown by clients as a notice). */
export function inactivityWarning(host: string, account: Account, config: Config, now: Date): Element {
  const jid = `${account.username}@${account.host}`;
  const deleteOn = new Date(now.getTime() + config.retention.inactiveWarning);
  return x(
    'message',
    { xmlns: NS.client, type: 'headline', from: host, to: jid, id: `retention-${now.getTime().toString(36)}` },
    x('subject', {}, 'Your account will be deleted'),
    x(
      'body',
      {},
      `Your account ${jid} has not been used since ${day(new Date(lastUse(account)))}. Accounts unused for ${formatDurationWords(config.retention.inactiveAccounts)} ` +
        `are deleted with all their data. Log in before ${day(deleteOn)} to keep it.`,
    ),
  );
}

/** Sent at the first login after a warning: the deletion is off. */
export function deletionCancelledNotice(session: ClientSession, config: Config): Element {
  return x(
    'message',
    { xmlns: NS.client, type: 'headline', from: session.jid.domain, to: session.jid.full, id: `retention-kept-${Date.now().toString(36)}` },
    x('subject', {}, 'Your account is kept'),
    x(
      'body',
      {},
      `Your account ${session.jid.bare} was going to be deleted because it had not been used for a long time. You have logged in, so it is kept. ` +
        `Accounts unused for ${formatDurationWords(config.retention.inactiveAccounts)} are deleted with all their data.`,
    ),
  );
}

/** Walks every account inactive since `before`, in id order, one batch at a time. */
async function* inactiveAccounts(env: RetentionEnv, before: Date, batch: number): AsyncGenerator<Account> {
  let afterId = 0;
  for (;;) {
    const page = await env.storage.privacyLogs.inactiveAccounts(before, afterId, batch);
    for (const a of page) yield a;
    if (page.length < batch) return;
    afterId = page[page.length - 1]!.id;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

export const inactiveAccountsClass: RetentionClass = {
  name: 'inactive-accounts',
  clause: 'P4',
  describe: (config) =>
    `accounts unused for ${formatDurationWords(config.retention.inactiveAccounts)}, with everything they own` +
    (config.retention.inactiveWarning > 0 ? ` (warned ${formatDurationWords(config.retention.inactiveWarning)} before)` : ''),
  async run(env, now, { dryRun, batch }) {
    const { inactiveAccounts: maxIdle, inactiveWarning } = env.config.retention;
    const before = new Date(now.getTime() - maxIdle);
    const accounts = new AccountService({ storage: env.storage, hooks: env.hooks, config: env.config, clock: env.clock, sessions: env.sessions });
    const due = (a: Account) =>
      lastUse(a) < before.getTime() &&
      (inactiveWarning <= 0 || (warnedFor(a) && a.warnedAt!.getTime() <= now.getTime() - inactiveWarning)) &&
      env.sessions.ofAccount(`${a.username}@${a.host}`).length === 0;
    let count = 0;
    for await (const candidate of inactiveAccounts(env, before, batch)) {
      if (!due(candidate)) continue;
      if (dryRun) {
        count++;
        continue;
      }
      // Read again just before deleting: a login may have happened since the page was read.
      const fresh = await env.storage.accounts.get(candidate.username, candidate.host);
      if (!fresh || fresh.id !== candidate.id || !due(fresh)) continue;
      try {
        await accounts.delete(fresh.username, fresh.host);
      } catch (err) {
        if (err instanceof NoSuchAccountError) continue;
        // A host no longer configured: the service refuses it, but its accounts still expire.
        if (!(err instanceof AccountError)) throw err;
        if (!(await env.storage.accounts.delete(fresh.id))) continue;
      }
      count++;
    }
    return count;
  },
};

export const inactiveAccountWarningsClass: RetentionClass = {
  name: 'inactive-account-warnings',
  clause: 'P4',
  describe: (config) =>
    config.retention.inactiveWarning > 0
      ? `warn accounts unused for ${formatDurationWords(config.retention.inactiveAccounts - config.retention.inactiveWarning)} (headline message, and again at the next login)`
      : 'no inactivity warnings (retention.inactiveWarning is 0)',
  async run(env, now, { dryRun, batch }) {
    const { inactiveAccounts: maxIdle, inactiveWarning } = env.config.retention;
    if (inactiveWarning <= 0) return 0;
    const before = new Date(now.getTime() - (maxIdle - inactiveWarning));
    let count = 0;
    for await (const a of inactiveAccounts(env, before, batch)) {
      if (warnedFor(a)) continue;
      count++;
      if (dryRun) continue;
      await env.storage.accounts.setWarnedAt(a.id, now);
      const host = env.config.hosts.find((h) => h.domain === a.host)?.domain;
      if (env.router && host) {
        // Reaches available resources now; otherwise the next login brings the notice.
        await env.router.send(inactivityWarning(host, a, env.config, now)).catch((err) => env.log.warn('could not send an inactivity warning', { error: err instanceof Error ? err.message : String(err) }));
      }
    }
    return count;
  },
};

// ------------------------------------------------------------------------------------------------
// P5: offline messages

/** Bare JID of the stored stanza's sender ('' if unreadable). */
function senderOf(stanza: string): string {
  const el = parseXmlText(stanza, NS.client);
  const from = el?.attrs.from ?? /\sfrom=(?:'([^']*)'|"([^"]*)")/.exec(stanza)?.slice(1).find((v) => v !== undefined);
  const jid = Jid.tryParse(from);
  return jid ? jid.bare : '';
}

/** The condition recorded for an offline message that expired undelivered. */
export const OFFLINE_EXPIRED_CONDITION = 'recipient-unavailable';

export const offlineMessagesClass: RetentionClass = {
  name: 'offline-messages',
  clause: 'P5',
  describe: (config) => `offline messages not delivered within ${formatDurationWords(config.retention.offlineMessages)} (each becomes a delivery-failure record, P8)`,
  async run(env, now, { dryRun, batch }) {
    const before = new Date(now.getTime() - env.config.retention.offlineMessages);
    if (dryRun) return env.storage.privacyLogs.countOfflineBefore(before);
    return inBatches(batch, async (limit) => {
      const expired = await env.storage.offline.takeExpired(before, limit);
      if (expired.length === 0) return 0;
      const owners = await env.storage.privacyLogs.accountJids(expired.map((m) => m.accountId));
      for (const m of expired) {
        const owner = owners.get(m.accountId);
        await env.storage.privacyLogs.addDeliveryFailure({
          at: now,
          from: senderOf(m.stanza),
          to: owner ? `${owner.username}@${owner.host}` : '',
          kind: 'message',
          condition: OFFLINE_EXPIRED_CONDITION,
        });
      }
      return expired.length;
    });
  },
};


// ------------------------------------------------------------------------------------------------
// The in-process schedule

export interface RetentionScheduleOptions {
  /**
   * Milliseconds between runs; null: no schedule (tests call runNow()). Default 5 minutes, and no
   * schedule when the server runs on an injected clock unless this is set explicitly.
   */
  intervalMs?: number | null;
  /** Milliseconds after start for the first run. Default 30 seconds. */
  firstRunAfterMs?: number;
  batch?: number;
  /** Whether a scheduled run may run here now (in a cluster: this node holds the sweep). Default always. */
  mayRun?: () => boolean;
}

export const DEFAULT_RETENTION_INTERVAL_MS = 5 * 60_000;
export const DEFAULT_RETENTION_FIRST_RUN_MS = 30_000;

/** One server's sweeper: runs on a timer, never two runs at once. */
export class RetentionSweeper {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<RetentionResult[]> | null = null;
  private stopped = false;

  constructor(
    private readonly env: RetentionEnv,
    private readonly opts: RetentionScheduleOptions = {},
  ) {}

  start(): void {
    const interval = this.opts.intervalMs === undefined ? DEFAULT_RETENTION_INTERVAL_MS : this.opts.intervalMs;
    if (interval === null || interval <= 0) return;
    const schedule = (ms: number) => {
      if (this.stopped) return;
      this.timer = setTimeout(() => {
        if (this.opts.mayRun && !this.opts.mayRun()) return schedule(interval);
        void this.runNow().finally(() => schedule(interval));
      }, ms);
      this.timer.unref();
    };
    schedule(this.opts.firstRunAfterMs ?? DEFAULT_RETENTION_FIRST_RUN_MS);
  }

  /** Runs every class now (or joins the run in progress) with the injected clock's time. */
  runNow(opts: { dryRun?: boolean } = {}): Promise<RetentionResult[]> {
    if (this.running && !opts.dryRun) return this.running;
    const run = runRetention(this.env, { dryRun: opts.dryRun, batch: this.opts.batch });
    if (opts.dryRun) return run;
    this.running = run.finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Stops the schedule and waits for a run in progress (before storage closes). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.running) await this.running.catch(() => undefined);
  }
}

declare module '../../core/services.js' {
  interface Services {
    retention: RetentionSweeper;
  }
}

/** The sweeper of a running server (for tests and the admin console). */
export function retentionSweeper(ctx: ServerContext): RetentionSweeper | undefined {
  return ctx.services.get('retention');
}

/**
 * The retention module: the schedule, and the P4 warning's bookkeeping at login. Module objects may
 * be loaded by several servers in one process (tests); unload() has no context, so it stops every
 * sweeper this module object started.
 */
export function createRetentionModule(opts: RetentionScheduleOptions = {}): GatehouseModule {
  const active = new Set<RetentionSweeper>();
  const pending = new Set<Promise<unknown>>();
  return {
    name: 'retention',
    clauses: ['P4', 'P5', 'P13'],
    specs: [],
    provides: ['retention'],
    // Deletions before warnings: an account warned in this sweep is never deleted in the same one.
    retention: [inactiveAccountsClass, inactiveAccountWarningsClass, offlineMessagesClass],
    commands: { cli: Object.values(retentionCommands) },
    load(ctx) {
      const { hooks, storage, router, config, log } = ctx;
      // An injected clock (tests) never moves by itself: its owner calls runNow() after moving it,
      // and a timer firing mid-test would only interfere. The schedule runs on the system clock.
      const injected = ctx.clock !== systemClock && opts.intervalMs === undefined;
      // The classes of every module of this server, whatever their order (main.ts knows them all).
      const env = { ...ctx, retentionClasses: retentionClassesOf(ctx.modules) };
      // In a cluster the sweep runs once per cluster, on the node holding its task (KV lock).
      const mayRun = () => ctx.services.get('cluster')?.holds('retention') ?? true;
      const sweeper = new RetentionSweeper(env, injected ? { ...opts, intervalMs: null } : { mayRun, ...opts });
      active.add(sweeper);
      ctx.services.provide('retention', sweeper);
      hooks.on('session/bound', ({ session, account }) => {
        if (account.warnedAt === null) return;
        // The account is in use again: the warning is void, and this resource is told so.
        const work = storage.accounts
          .setWarnedAt(account.id, null)
          .then(() => router.deliver(session, deletionCancelledNotice(session, config)))
          .catch((err) => log.warn('could not clear an inactivity warning', { error: err instanceof Error ? err.message : String(err) }));
        pending.add(work);
        void work.finally(() => pending.delete(work));
      });
      sweeper.start();
    },
    async unload() {
      const stopping = [...active];
      active.clear();
      await Promise.all(stopping.map((s) => s.stop()));
      await Promise.allSettled([...pending]);
    },
  };
}

