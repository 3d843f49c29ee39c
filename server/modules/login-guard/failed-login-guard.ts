/**
 * P7: the failed-login guard. Every failed authentication (SASL on client streams, the XEP-0114
 * handshake of components) and every failed registration is recorded with its time, IP, host,
 * attempted account, mechanism and condition (never a password: no event carries one). From
 * those failures, per IP address (IPv6 aggregated per /64, since one host usually owns a whole
 * /64) and per account:
 *
 * - a growing delay: once `delayAfter` failures fall within `window`, every further attempt waits
 *   delayBase, 2×delayBase, 4×… (at most delayMax) before it is evaluated. The wait is a timer the
 *   attempt awaits, never a busy loop: other streams go on meanwhile;
 * - then a temporary block: `blockAfter` failures within `window` from one IP (or /64), or
 *   `accountBlockAfter` against one account, block it for `blockFor`. A blocked attempt gets SASL
 *   <temporary-auth-failure/> (a registration: a <policy-violation/> stanza error of type wait),
 *   both with a text saying when to retry; a component gets a policy-violation stream error.
 *   The account threshold is higher than the IP one, because anyone can fail logins against
 *   someone else's account on purpose to lock it.
 *
 * Addresses in `trustedProxies` (a load balancer, a web client gateway) are never delayed or
 * blocked by address: all their users share that address. Their failures are still recorded, and
 * per-account limits still apply. The default trusts none, loopback included: behind a proxy on
 * the same host every client would otherwise look trusted.
 *
 * A successful login forgives that account's failures, and those of the address that were against
 * that account (the user's own typos). Failures from the address against other accounts stay: a
 * login to an account of one's own must not reset the count of guesses at other people's.
 *
 * Only failures that tested credentials come here: c2s does not report a channel-binding
 * negotiation that did not work out (a client trying its -PLUS mechanisms first) as 'auth/failed'.
 *
 * Counters live in memory (fast, per process); blocks are also stored (auth_blocks), so they
 * survive a restart and `gatehouse blocks list|lift` sees and lifts them. A lift from the CLI
 * takes effect at the next attempt from that address (the stored block is checked before an
 * attempt is refused) and within `poll` anyway, when the guard reloads the stored blocks.
 * On start the guard re-reads the failures of the last window, so a restart resets nothing.
 *
 * Retention (P13): failed-login records are deleted after retention.detailedLogs, blocks once they
 * expire (retention classes failed-logins and auth-blocks).
 *
 * Limits: per-account delays and blocks need the username before the credentials are checked.
 * Today's c2s fires 'auth/before' before the SASL payload is read, so per-account limits are
 * counted, stored and listed, and enforced once c2s fires AUTH_IDENTIFIED ('auth/identified', an
 * AuthAttempt with `username`) from its SASL lookup. Per-IP limits apply fully now. The growing
 * delay postpones the evaluation of the next attempt (so its answer, success or failure, comes
 * later); postponing the failure answer itself needs c2s to await 'auth/failed' before writing it.
 */
import type { Config } from '../../config/index.js';
import { loginGuardConfigSection, type LoginGuardConfig } from './config.js';
import { defaultsOf } from '../../../shared/schema-kit.js';
import type { GatehouseModule, ServerContext, StreamInfo } from '../../core/context.js';
import type { HookPhase } from '../../core/hooks.js';
import type { ClusterService } from '../../core/cluster.js';
import type { AuthAttempt, AuthFailure } from '../../streams/c2s.js';
import { cidrContains } from '../../../shared/ip-addresses.js';
import { ipSubject } from './subjects.js';
import { blockCommands } from './cli-blocks.js';
import { blockActions, blocksPage } from './admin-blocks.js';
import type { AuthBlock, BlockKind, FailedLoginRecord } from '../../../storage/types.js';
import { errorReply } from '../../../shared/xml/stanza-errors.js';
import { normaliseLocal } from '../../../shared/jid.js';
import { NS } from '../../../shared/ns.js';
import type { Element } from '../../../shared/xml/element.js';
import { formatDurationWords } from '../../../shared/format.js';
import { after, type Timer } from '../../../shared/clock.js';
import { inBatches, type RetentionClass } from '../../core/retention-class.js';

export { ipSubject };

// ------------------------------------------------------------------------------------------------
// Options

/** The guard's settings: the configuration section `loginGuard` (durations in milliseconds), and poll. */
export interface LoginGuardOptions extends LoginGuardConfig {
  /** How often stored blocks are re-read (lifts from the CLI, other processes). */
  poll: number;
}

/** The configuration section's defaults (config.ts), and the poll interval. */
export const DEFAULT_LOGIN_GUARD: Readonly<LoginGuardOptions> = Object.freeze({ ...defaultsOf(loginGuardConfigSection.schema), poll: 30_000 });

/** Defaults, then config.loginGuard, then explicit overrides (tests). */
export function loginGuardOptions(config: Config, overrides: Partial<LoginGuardOptions> = {}): LoginGuardOptions {
  const fromConfig: Partial<LoginGuardOptions> = config.loginGuard ?? {};
  const merged = { ...DEFAULT_LOGIN_GUARD, ...defined(fromConfig), ...defined(overrides) };
  return { ...merged, trustedProxies: [...merged.trustedProxies] };
}

function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The bare JID an attempted username is counted under, or null. */
export function accountSubject(username: string | null | undefined, host: string): string | null {
  if (!username) return null;
  const local = normaliseLocal(username);
  return local ? `${local}@${host}` : null;
}

// ------------------------------------------------------------------------------------------------
// The guard

/** What the guard counts is what P7 records. */
type Failure = FailedLoginRecord;

interface MemoryBlock {
  expiresAt: number;
  failures: number;
  /** Real time it was set here (a poll must not drop a block it could not have read yet). */
  setAt: number;
  /** Its row is written (or it was read from storage): a missing row now means it was lifted. */
  stored: boolean;
}

/** One counted failure: when, and against which account (bare JID), if any. */
interface Counted {
  at: number;
  account: string | null;
}

/** Bound on tracked counters (one per IP, /64 or account with recent failures). */
const MAX_TRACKED = 100_000;

export interface Denial {
  kind: BlockKind;
  subject: string;
  text: string;
}

/** One server's guard: counters, blocks, the checks before an attempt. */
export class LoginGuard {
  private readonly failures = new Map<string, Counted[]>();
  private blocks = new Map<string, MemoryBlock>();
  private readonly pending = new Set<Promise<unknown>>();
  private timer: NodeJS.Timeout | null = null;
  private readonly waits = new Set<{ timer: Timer; resolve: () => void }>();
  /**
   * In a cluster: the shared counters. Failures then count against the thresholds cluster-wide (an
   * attacker spreading guesses over the nodes gains nothing), and a block another node set is read
   * from storage at the next attempt.
   */
  cluster: () => ClusterService | undefined = () => undefined;

  constructor(
    private readonly ctx: Pick<ServerContext, 'storage' | 'clock' | 'log'>,
    /** Replaced by a reload; counts and blocks in force stay. */
    public options: LoginGuardOptions,
  ) {}

  /** How many blocks are in force now, by kind (counts only: /metrics, P12). */
  blocksInForce(): Record<BlockKind, number> {
    const now = this.ctx.clock.now().getTime();
    const out: Record<BlockKind, number> = { ip: 0, account: 0 };
    for (const [key, b] of this.blocks) if (b.expiresAt > now) out[key.startsWith('ip ') ? 'ip' : 'account']++;
    return out;
  }

  // ---- lifecycle ----

  async start(): Promise<void> {
    const { storage, clock, log } = this.ctx;
    const now = clock.now();
    try {
      for (const b of await storage.privacyLogs.listBlocks(now)) this.blocks.set(keyOf(b.kind, b.subject), { expiresAt: b.expiresAt.getTime(), failures: b.failures, setAt: 0, stored: true });
      const recent = await storage.privacyLogs.listFailedLogins({ since: new Date(now.getTime() - this.options.window), limit: 10_000 });
      for (const f of recent.reverse()) this.count(f);
    } catch (err) {
      log.warn('login guard could not load stored blocks', { error: err instanceof Error ? err.message : String(err) });
    }
    if (this.options.poll > 0) {
      this.timer = setInterval(() => void this.poll(), this.options.poll);
      this.timer.unref();
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const w of [...this.waits]) {
      w.timer.cancel();
      w.resolve();
    }
    this.waits.clear();
    await Promise.allSettled([...this.pending]);
  }

  /** Re-reads the stored blocks: lifted ones end here too (with their counters). */
  async poll(): Promise<void> {
    const started = Date.now();
    try {
      const stored = await this.ctx.storage.privacyLogs.listBlocks(this.ctx.clock.now());
      const next = new Map<string, MemoryBlock>();
      for (const b of stored) next.set(keyOf(b.kind, b.subject), { expiresAt: b.expiresAt.getTime(), failures: b.failures, setAt: 0, stored: true });
      for (const [key, block] of this.blocks) {
        if (next.has(key)) continue;
        if (block.setAt >= started || !block.stored) next.set(key, block);
        else this.failures.delete(key);
      }
      this.blocks = next;
      this.prune(this.ctx.clock.now().getTime());
    } catch (err) {
      this.ctx.log.warn('login guard could not reload blocks', { error: err instanceof Error ? err.message : String(err) });
    }
  }

  // ---- events ----

  /** A failed authentication or registration: record it, count it, maybe block. */
  onFailure(f: Failure): void {
    // The attempted account as the server knows it (normalised), else as typed.
    const username = f.username ? (normaliseLocal(f.username) ?? f.username) : null;
    this.track(
      this.ctx.storage.privacyLogs.addFailedLogin({ ...f, username }).catch((err) => this.ctx.log.warn('could not record a failed login', { error: err instanceof Error ? err.message : String(err) })),
    );
    const counted = this.count(f);
    const now = this.ctx.clock.now().getTime();
    const cluster = this.cluster();
    if (cluster) {
      this.track(this.countInCluster(cluster, counted, now));
      return;
    }
    for (const { kind, subject, n } of counted) {
      const threshold = kind === 'ip' ? this.options.blockAfter : this.options.accountBlockAfter;
      if (threshold > 0 && n >= threshold && !this.activeBlock(kind, subject, now)) this.block(kind, subject, n, now);
    }
  }

  private async countInCluster(cluster: ClusterService, counted: { kind: BlockKind; subject: string }[], now: number): Promise<void> {
    for (const { kind, subject } of counted) {
      const n = await cluster.count('failed-login', keyOf(kind, subject), this.options.window);
      const threshold = kind === 'ip' ? this.options.blockAfter : this.options.accountBlockAfter;
      if (threshold > 0 && n >= threshold && !this.activeBlock(kind, subject, now)) this.block(kind, subject, n, now);
    }
  }

  /**
   * A successful login: the account's failures are forgiven, and the address's failures against
   * that account; the address's failures against other accounts are not.
   */
  onSuccess(username: string, host: string, ip?: string): void {
    const subject = accountSubject(username, host);
    if (!subject) return;
    this.failures.delete(keyOf('account', subject));
    if (ip === undefined) return;
    const key = keyOf('ip', ipSubject(ip));
    const list = this.failures.get(key);
    if (!list) return;
    const rest = list.filter((f) => f.account !== subject);
    if (rest.length) this.failures.set(key, rest);
    else this.failures.delete(key);
  }

  /**
   * Before an attempt: null to go ahead (after the growing delay, if any), or why it is refused.
   * `ip` null checks only the account (the address was checked in an earlier round); `username`
   * is known when the core passes it with the attempt.
   */
  async check(ip: string | null, host: string, username?: string | null): Promise<Denial | null> {
    const subjects: { kind: BlockKind; subject: string }[] = [];
    if (ip !== null && !this.trusted(ip)) subjects.push({ kind: 'ip', subject: ipSubject(ip) });
    const account = accountSubject(username, host);
    if (account) subjects.push({ kind: 'account', subject: account });
    const cluster = this.cluster();
    for (const { kind, subject } of subjects) {
      if (cluster) await this.adoptStoredBlock(kind, subject);
      const block = await this.confirmedBlock(kind, subject);
      if (block) return { kind, subject, text: denialText(kind, block.expiresAt.getTime() - this.ctx.clock.now().getTime()) };
    }
    let delay = Math.max(0, ...subjects.map(({ kind, subject }) => this.delayFor(keyOf(kind, subject))));
    if (cluster) {
      for (const { kind, subject } of subjects) delay = Math.max(delay, this.delayOf(await cluster.peek('failed-login', keyOf(kind, subject), this.options.window)));
    }
    if (delay > 0) await this.wait(delay);
    return null;
  }

  /** A block another cluster node stored: in force here too. */
  private async adoptStoredBlock(kind: BlockKind, subject: string): Promise<void> {
    const now = this.ctx.clock.now().getTime();
    if (this.activeBlock(kind, subject, now)) return;
    const stored = await this.ctx.storage.privacyLogs.getBlock(kind, subject).catch(() => null);
    if (stored && stored.expiresAt.getTime() > now) this.blocks.set(keyOf(kind, subject), { expiresAt: stored.expiresAt.getTime(), failures: stored.failures, setAt: 0, stored: true });
  }

  /** The delay the next attempt under this key gets (0 if none). */
  delayFor(key: string): number {
    return this.delayOf(this.recent(key, this.ctx.clock.now().getTime()));
  }

  private delayOf(n: number): number {
    const { delayAfter, delayBase, delayMax } = this.options;
    if (delayAfter <= 0 || n < delayAfter || delayBase <= 0) return 0;
    return Math.min(delayMax, delayBase * 2 ** Math.min(n - delayAfter, 30));
  }

  trusted(ip: string): boolean {
    return this.options.trustedProxies.some((cidr) => cidrContains(cidr, ip));
  }

  /** Failures within the window for an IP (as given; aggregated here) or an account JID. */
  failureCount(kind: BlockKind, subjectOrIp: string): number {
    const subject = kind === 'ip' ? ipSubject(subjectOrIp) : subjectOrIp;
    return this.recent(keyOf(kind, subject), this.ctx.clock.now().getTime());
  }

  isBlocked(kind: BlockKind, subjectOrIp: string): boolean {
    const subject = kind === 'ip' ? ipSubject(subjectOrIp) : subjectOrIp;
    return this.activeBlock(kind, subject, this.ctx.clock.now().getTime()) !== null;
  }

  // ---- internals ----

  private track(p: Promise<unknown>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  /** Adds the failure to its counters; returns the subjects counted with their new totals. */
  private count(f: Failure): { kind: BlockKind; subject: string; n: number }[] {
    // Our own refusals (and server-side trouble) are not guesses.
    if (f.condition === 'temporary-auth-failure') return [];
    const at = f.at.getTime();
    const out: { kind: BlockKind; subject: string; n: number }[] = [];
    if (!this.trusted(f.ip)) out.push({ kind: 'ip', subject: ipSubject(f.ip), n: 0 });
    // Per account: failed logins, and wrong old passwords in a password change. Not refused
    // registrations: asking for a taken name is no attack on that account.
    const account = accountSubject(f.username, f.host);
    if ((f.kind === 'auth' || f.condition === 'not-authorized') && account) out.push({ kind: 'account', subject: account, n: 0 });
    const now = this.ctx.clock.now().getTime();
    for (const c of out) {
      const key = keyOf(c.kind, c.subject);
      let list = this.failures.get(key);
      if (!list) {
        if (this.failures.size >= MAX_TRACKED) this.prune(now, true);
        list = [];
        this.failures.set(key, list);
      }
      list.push({ at, account });
      c.n = this.recent(key, now);
    }
    return out;
  }

  private recent(key: string, now: number): number {
    const list = this.failures.get(key);
    if (!list) return 0;
    const from = now - this.options.window;
    let i = 0;
    while (i < list.length && list[i]!.at < from) i++;
    if (i > 0) list.splice(0, i);
    if (list.length === 0) this.failures.delete(key);
    return list.length;
  }

  private prune(now: number, hard = false): void {
    for (const key of [...this.failures.keys()]) this.recent(key, now);
    if (hard) {
      // Still full: forget the oldest counters (insertion order) rather than grow without bound.
      for (const key of this.failures.keys()) {
        if (this.failures.size < MAX_TRACKED * 0.9) break;
        this.failures.delete(key);
      }
    }
    for (const [key, b] of this.blocks) if (b.expiresAt <= now) this.blocks.delete(key);
  }

  private activeBlock(kind: BlockKind, subject: string, now: number): MemoryBlock | null {
    const key = keyOf(kind, subject);
    const b = this.blocks.get(key);
    if (!b) return null;
    if (b.expiresAt > now) return b;
    // Expired: a fresh start for this subject.
    this.blocks.delete(key);
    this.failures.delete(key);
    return null;
  }

  /** The block in force, checked against storage so that a lift from the CLI counts at once. */
  private async confirmedBlock(kind: BlockKind, subject: string): Promise<AuthBlock | null> {
    const now = this.ctx.clock.now().getTime();
    const mem = this.activeBlock(kind, subject, now);
    if (!mem) return null;
    const key = keyOf(kind, subject);
    let stored: AuthBlock | null;
    try {
      stored = await this.ctx.storage.privacyLogs.getBlock(kind, subject);
    } catch {
      // Storage trouble: keep the block (fail closed).
      return { kind, subject, createdAt: new Date(now), expiresAt: new Date(mem.expiresAt), failures: mem.failures };
    }
    if (!stored && !mem.stored) {
      // Set a moment ago; its row is still on its way.
      return { kind, subject, createdAt: new Date(now), expiresAt: new Date(mem.expiresAt), failures: mem.failures };
    }
    if (!stored || stored.expiresAt.getTime() <= now) {
      this.blocks.delete(key);
      this.failures.delete(key);
      if (!stored) this.ctx.log.info('login block lifted', { kind, subject });
      return null;
    }
    mem.expiresAt = stored.expiresAt.getTime();
    return stored;
  }

  private block(kind: BlockKind, subject: string, failures: number, now: number): void {
    const expiresAt = now + this.options.blockFor;
    const mem: MemoryBlock = { expiresAt, failures, setAt: Date.now(), stored: false };
    this.blocks.set(keyOf(kind, subject), mem);
    this.ctx.log.warn('temporary block after failed logins', { kind, subject, failures, minutes: Math.ceil(this.options.blockFor / 60_000) });
    this.track(
      this.ctx.storage.privacyLogs
        .putBlock({ kind, subject, createdAt: new Date(now), expiresAt: new Date(expiresAt), failures })
        .then(() => {
          mem.stored = true;
        })
        .catch((err) => this.ctx.log.warn('could not store a login block', { error: err instanceof Error ? err.message : String(err) })),
    );
  }

  /** A timer on the server clock (tests move a ManualClock through it). */
  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = {
        resolve,
        timer: after(this.ctx.clock, ms, () => {
          this.waits.delete(entry);
          resolve();
        }),
      };
      this.waits.add(entry);
    });
  }
}

function keyOf(kind: BlockKind, subject: string): string {
  return `${kind} ${subject}`;
}

function denialText(kind: BlockKind, remainingMs: number): string {
  const minutes = Math.max(1, Math.ceil(remainingMs / 60_000));
  const who = kind === 'ip' ? 'your address' : 'this account';
  return `too many failed attempts from ${who}; try again in ${minutes} minute${minutes === 1 ? '' : 's'}`;
}

// ------------------------------------------------------------------------------------------------
// The module

declare module '../../core/services.js' {
  interface Services {
    'login-guard': LoginGuard;
  }
}

/** The guard of a running server (tests, admin console). */
export function loginGuard(ctx: ServerContext): LoginGuard | undefined {
  return ctx.services.get('login-guard');
}

/**
 * The event the guard needs from c2s for per-account limits (not in the core yet): payload an
 * AuthAttempt with `username` (normalised localpart), fired when the SASL username is known and
 * before the credentials are evaluated; a `deny` set by a handler fails the attempt with it.
 */
export const AUTH_IDENTIFIED = 'auth/identified';

interface UntypedHooks {
  on(event: string, handler: (payload: any) => unknown, phase?: HookPhase): () => void;
}

function registrationDenied(stream: StreamInfo, iq: Element, text: string): true {
  const reply = errorReply(iq, 'policy-violation', text, 'wait');
  if (reply) {
    delete reply.attrs.to;
    if (iq.attrs.to !== undefined) reply.attrs.from = stream.host;
    else delete reply.attrs.from;
    stream.send(reply);
  }
  return true;
}

/**
 * The module; `overrides` replace defaults and configuration (tests use small delays). unload()
 * has no context, so it stops every guard this module object started.
 */
export function createFailedLoginGuardModule(overrides: Partial<LoginGuardOptions> = {}): GatehouseModule {
  const active = new Set<LoginGuard>();
  return {
    name: 'failed-login-guard',
    config: loginGuardConfigSection,
    clauses: ['P7'],
    specs: [],
    provides: ['login-guard'],
    retention: [failedLoginsClass, authBlocksClass],
    commands: { cli: Object.values(blockCommands) },
    admin: { pages: [blocksPage], actions: blockActions },
    async load(ctx) {
      const { hooks } = ctx;
      const guard = new LoginGuard(ctx, loginGuardOptions(ctx.config, overrides));
      guard.cluster = () => ctx.services.get('cluster');
      ctx.services.provide('login-guard', guard);
      active.add(guard);
      await guard.start();

      hooks.on('config/in-force', ({ after }) => {
        guard.options = { ...loginGuardOptions(after, overrides), poll: guard.options.poll };
      });
      hooks.on('auth/failed', (f: AuthFailure) => {
        guard.onFailure({ at: f.at, ip: f.ip, host: f.host, username: f.username, mechanism: f.mechanism, kind: 'auth', condition: f.condition });
      });
      hooks.on('register/failed', (f) => {
        guard.onFailure({ at: f.at, ip: f.ip, host: f.host, username: f.username, mechanism: 'XEP-0077', kind: 'register', condition: f.condition });
      });
      hooks.on('auth/succeeded', ({ account, ip }) => guard.onSuccess(account.username, account.host, ip));
      // Before the attempt is evaluated: the address (and the account, if the core names it here).
      hooks.on('auth/before', async (attempt: AuthAttempt & { username?: string | null }) => {
        if (attempt.deny) return;
        const denial = await guard.check(attempt.ip, attempt.host, attempt.username);
        if (denial) attempt.deny = { condition: 'temporary-auth-failure', text: denial.text };
      });
      // Proposed core event, fired once the username is known and before the credentials are
      // checked (see AUTH_IDENTIFIED): the account's own delay and block.
      (hooks as unknown as UntypedHooks).on(AUTH_IDENTIFIED, async (attempt: AuthAttempt & { username?: string | null }) => {
        if (attempt.deny || !attempt.username) return;
        const denial = await guard.check(null, attempt.host, attempt.username);
        if (denial) attempt.deny = { condition: 'temporary-auth-failure', text: denial.text };
      });
      // In-band registration submissions (XEP-0077) before authentication.
      hooks.on(
        'c2s/preauth-iq',
        async ({ stream, stanza }) => {
          const query = stanza.getChild('query', NS.register);
          if (!query || stanza.attrs.type !== 'set' || query.getChild('remove')) return;
          const denial = await guard.check(stream.ip, stream.host);
          if (denial) return registrationDenied(stream, stanza, denial.text);
        },
        // Before the register module answers (it handles in the default phase).
        'intercept',
      );
    },
    async unload() {
      const stopping = [...active];
      active.clear();
      await Promise.all(stopping.map((g) => g.stop()));
    },
  };
}


// ------------------------------------------------------------------------------------------------
// Retention (P13)

const failedLoginsClass: RetentionClass = {
  name: 'failed-logins',
  clause: 'P13',
  describe: (config) => `failed-login and failed-registration records (P7) older than ${formatDurationWords(config.retention.detailedLogs)}`,
  async run(env, now, { dryRun, batch }) {
    const before = new Date(now.getTime() - env.config.retention.detailedLogs);
    if (dryRun) return env.storage.privacyLogs.countFailedLoginsBefore(before);
    return inBatches(batch, (limit) => env.storage.privacyLogs.deleteFailedLoginsBefore(before, limit));
  },
};

const authBlocksClass: RetentionClass = {
  name: 'auth-blocks',
  clause: 'P13',
  describe: (config) => `temporary login blocks (P7) once expired, at most ${formatDurationWords(config.retention.detailedLogs)} after they were set`,
  async run(env, now, { dryRun, batch }) {
    const createdBefore = new Date(now.getTime() - env.config.retention.detailedLogs);
    if (dryRun) return env.storage.privacyLogs.countStaleBlocks(now, createdBefore);
    return inBatches(batch, (limit) => env.storage.privacyLogs.deleteStaleBlocks(now, createdBefore, limit));
  },
};
