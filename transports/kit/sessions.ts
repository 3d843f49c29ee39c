/**
 * Foreign sessions, driven by presence (XEP-0100 §4.4/4.5).
 *
 * One UserSession per (user bare JID, server) on multi-server networks (IRC: one connection per
 * IRC server), per user elsewhere. The kit tracks the user's resources from the presence the XMPP
 * server sends to the component: available presence from a full JID to the gateway, to a server
 * JID or to a contact "demands" that server's session; a MUC join demands the room's server.
 *
 * - The first demand logs in; while the login runs, messages and room joins wait for it.
 * - When nothing demands a session any more (the user's last resource went unavailable, left
 *   its last room), it is logged out after `gracePeriod` (a phone reconnecting keeps its session).
 * - A login that fails with LegacyAuthError, or a connection the adapter ends with
 *   disconnected(final=true), is an 'auth-failed' audit row and a not-authorized presence error
 *   to the user; the kit does not retry until a new resource comes online or the registration is
 *   edited. Network failures and timeouts are an 'error' row and one remote-server-timeout
 *   presence error per failure streak, then retries with exponential backoff and jitter.
 *   A dropped connection (disconnected(final=false)) reconnects the same way.
 * - Every connection attempt and its end is written to the audit log (P10).
 */
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';
import type { Jid } from '../../shared/jid.js';
import { LegacyAuthError, type LegacySession, type LegacySessionEvents } from './adapter.js';
import type { Kit, KitSessions } from './kit-types.js';
import { errorText } from './context.js';
import { backoffDelay } from './backoff.js';
import { scrub } from './audit-log.js';
import { VaultError } from './vault.js';
import { errorElement, showOf } from './stanzas.js';
import { SessionUnavailableError, UserSession, sessionKey, type LoginFailure, type SessionState } from './user-session.js';
import { after, type Clock } from '../../shared/clock.js';

/** How long a new sync state may wait before it is stored (the adapter reports one per sync). */
const SYNC_STATE_DELAY = 5000;

interface ResourceState {
  /** Server keys ('' on single-server networks) this resource has general presence for. */
  servers: Set<string>;
  /** Joined rooms: bare room JID → server key. */
  rooms: Map<string, string>;
  show: 'available' | 'away' | 'dnd' | 'xa';
  status: string | null;
  priority: number;
}

function withTimeout<T>(clock: Clock, p: Promise<T>, ms: number, onLate: (value: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const timer = after(clock, ms, () => {
      done = true;
      reject(new Error(`no answer within ${Math.round(ms / 1000)}s`));
    });
    p.then(
      (v) => {
        if (done) return onLate(v);
        done = true;
        timer.cancel();
        resolve(v);
      },
      (err) => {
        if (done) return;
        done = true;
        timer.cancel();
        reject(err);
      },
    );
  });
}

export class SessionManager implements KitSessions {
  private readonly sessions = new Map<string, UserSession>();
  private readonly resources = new Map<string, Map<string, ResourceState>>();
  private stopped = false;

  constructor(private readonly kit: Kit) {}

  private serverKey(server: string | undefined): string {
    return server ?? '';
  }

  private fromKey(key: string): string | undefined {
    return key === '' ? undefined : key;
  }

  get(user: string, server: string | undefined): UserSession | undefined {
    return this.sessions.get(sessionKey(user, server));
  }

  ofUser(user: string): UserSession[] {
    return [...this.sessions.values()].filter((s) => s.user === user);
  }

  all(): UserSession[] {
    return [...this.sessions.values()];
  }

  /** The JID that speaks for a session towards the user: the gateway, or a server JID for non-default servers. */
  speakerFor(s: { user: string; server: string | undefined }): string {
    if (!this.kit.addresses.multiServer || s.server === undefined) return this.kit.domain;
    if (s.server === this.kit.registration.cachedDefaultServer(s.user)) return this.kit.domain;
    return this.kit.addresses.serverJid(s.server) ?? this.kit.domain;
  }

  // ---- the user's resources ----

  /** Full JIDs of the user's resources that have presence for the server (or any, with no server given). */
  resourcesOf(user: string, server?: string | undefined, anyServer = false): string[] {
    const map = this.resources.get(user);
    if (!map) return [];
    const key = this.serverKey(server);
    const out: string[] = [];
    for (const [full, rs] of map) {
      if (anyServer || rs.servers.has(key) || [...rs.rooms.values()].includes(key)) out.push(full);
    }
    return out;
  }

  isAvailable(full: string): boolean {
    const user = full.split('/')[0]!;
    return this.resources.get(user)?.has(full) ?? false;
  }

  private resource(full: Jid, create: boolean): ResourceState | undefined {
    let map = this.resources.get(full.bare);
    if (!map) {
      if (!create) return undefined;
      map = new Map();
      this.resources.set(full.bare, map);
    }
    let rs = map.get(full.full);
    if (!rs && create) {
      rs = { servers: new Set(), rooms: new Map(), show: 'available', status: null, priority: 0 };
      map.set(full.full, rs);
    }
    return rs;
  }

  private dropResourceIfIdle(full: Jid): void {
    const map = this.resources.get(full.bare);
    const rs = map?.get(full.full);
    if (map && rs && rs.servers.size === 0 && rs.rooms.size === 0) {
      map.delete(full.full);
      if (map.size === 0) this.resources.delete(full.bare);
    }
  }

  /**
   * Available presence from a user's resource to the gateway, a server JID or a contact, with the
   * sessions it demands (servers; undefined on single-server networks).
   */
  async userAvailable(full: Jid, servers: (string | undefined)[], presence: Element): Promise<void> {
    if (!full.resource) return;
    const existing = this.resource(full, false);
    const isNewResource = !existing;
    const rs = this.resource(full, true)!;
    for (const server of servers) rs.servers.add(this.serverKey(server));
    rs.show = showOf(presence);
    rs.status = presence.getChildText('status') ?? null;
    const p = Number.parseInt(presence.getChildText('priority') ?? '0', 10);
    rs.priority = Number.isFinite(p) ? p : 0;
    for (const server of servers) {
      const s = this.get(full.bare, server);
      // A new resource came online: try again (the user may have fixed the account meanwhile).
      if (s && s.state === 'failed' && isNewResource) this.startLogin(s);
    }
    await this.reevaluate(full.bare);
    this.applyOwnPresence(full.bare);
  }

  /** Unavailable presence from a resource to the gateway, a server JID or a contact. */
  async userUnavailable(full: Jid): Promise<void> {
    const rs = this.resource(full, false);
    if (!rs) return;
    rs.servers.clear();
    this.dropResourceIfIdle(full);
    await this.reevaluate(full.bare);
    this.applyOwnPresence(full.bare);
  }

  /** Unavailable presence from the bare JID (a probe answer for an offline user): every resource is gone. */
  async userGone(user: string): Promise<void> {
    const map = this.resources.get(user);
    if (!map) return;
    this.resources.delete(user);
    this.kit.rooms.userGone(user, [...map.keys()]);
    await this.reevaluate(user);
  }

  /** A resource joined a room (rooms.ts): the room's server is demanded. */
  async addRoomDemand(full: Jid, roomJid: string, server: string | undefined): Promise<void> {
    const rs = this.resource(full, true)!;
    rs.rooms.set(roomJid, this.serverKey(server));
    await this.reevaluate(full.bare);
  }

  async removeRoomDemand(full: Jid, roomJid: string): Promise<void> {
    const rs = this.resource(full, false);
    if (!rs) return;
    rs.rooms.delete(roomJid);
    this.dropResourceIfIdle(full);
    await this.reevaluate(full.bare);
  }

  /** The connection to the XMPP server was lost: presence is unknown until the probes are answered again. */
  linkLost(): void {
    const users = [...this.resources.keys()];
    this.resources.clear();
    for (const user of users) void this.reevaluate(user);
    for (const s of this.sessions.values()) if (!this.resources.has(s.user)) void this.reevaluate(s.user);
  }

  private demandedServers(user: string): Set<string> {
    const out = new Set<string>();
    for (const rs of this.resources.get(user)?.values() ?? []) {
      for (const k of rs.servers) out.add(k);
      for (const k of rs.rooms.values()) out.add(k);
    }
    return out;
  }

  private async reevaluate(user: string): Promise<void> {
    if (this.stopped) return;
    const wanted = this.demandedServers(user);
    for (const s of this.ofUser(user)) {
      if (wanted.has(this.serverKey(s.server))) {
        if (s.graceTimer) {
          s.graceTimer.cancel();
          s.graceTimer = null;
        }
      } else {
        this.scheduleGrace(s);
      }
    }
    for (const key of wanted) {
      if (this.sessions.has(sessionKey(user, this.fromKey(key)))) continue;
      if (!(await this.kit.registration.isRegistered(user))) return;
      if (this.sessions.has(sessionKey(user, this.fromKey(key))) || this.stopped) continue;
      this.create(user, this.fromKey(key));
    }
  }

  private scheduleGrace(s: UserSession): void {
    if (s.state === 'failed') {
      this.forget(s);
      return;
    }
    if (s.graceTimer || s.state === 'closed') return;
    s.graceTimer = after(this.kit.clock, this.kit.settings.gracePeriod, () => {
      s.graceTimer = null;
      if (this.demandedServers(s.user).has(this.serverKey(s.server))) return;
      void this.logout(s, 'the user went offline');
    });
  }

  /** The user's highest-priority presence, passed to every online session that takes it (IRC AWAY). */
  private applyOwnPresence(user: string): void {
    const map = this.resources.get(user);
    if (!map || map.size === 0) return;
    const best = [...map.values()].filter((r) => r.servers.size > 0).sort((a, b) => b.priority - a.priority)[0];
    if (!best) return;
    const key = `${best.show}\u0000${best.status ?? ''}`;
    for (const s of this.ofUser(user)) {
      if (s.state !== 'online' || !s.legacy?.setPresence || s.appliedPresence === key) continue;
      s.appliedPresence = key;
      s.legacy.setPresence(best.show, best.status).catch((err) => this.kit.log.debug('setPresence failed', { network: this.kit.adapter.network, error: errorText(err) }));
    }
  }

  // ---- establishing sessions ----

  private create(user: string, server: string | undefined): UserSession {
    const s = new UserSession(user, server, this.kit.clock.now());
    this.sessions.set(s.key, s);
    this.startLogin(s);
    return s;
  }

  /**
   * The user's session for the server, logged in: waits for a login in progress, starts one if
   * there is none. Throws SessionUnavailableError when it cannot be had now.
   */
  async ensure(user: string, server: string | undefined): Promise<UserSession> {
    let s = this.get(user, server);
    if (!s) {
      if (!(await this.kit.registration.isRegistered(user))) {
        throw new SessionUnavailableError({ condition: 'registration-required', text: `register with ${this.kit.domain} first` });
      }
      s = this.get(user, server) ?? this.create(user, server);
      if (!this.demandedServers(user).has(this.serverKey(server))) this.scheduleGrace(s);
    }
    if (s.state === 'connecting' && s.loginDone) await s.loginDone;
    if (s.state === 'online' && s.legacy) return s;
    throw new SessionUnavailableError(s.failure ?? { condition: 'remote-server-timeout', text: `not connected to ${this.kit.networkName}` });
  }

  /** Starts (or restarts) the login of a session. */
  startLogin(s: UserSession): void {
    if (this.stopped) return;
    if (s.retryTimer) {
      s.retryTimer.cancel();
      s.retryTimer = null;
    }
    s.state = 'connecting';
    s.loginDone = this.login(s).catch((err) => {
      this.kit.log.error('login handling failed', { network: this.kit.adapter.network, error: errorText(err) });
    });
  }

  private auditCtx(s: UserSession) {
    return { userJid: s.user, account: s.account, server: s.server ?? null, secrets: s.secrets };
  }

  private async login(s: UserSession): Promise<void> {
    const gen = ++s.generation;
    const { kit } = this;
    let prepared;
    try {
      prepared = await kit.registration.loginRequestFor(s.user, s.server);
    } catch (err) {
      if (gen !== s.generation) return;
      const vault = err instanceof VaultError;
      kit.log.error('cannot read the stored credentials', { network: kit.adapter.network, user: s.user, error: errorText(err) });
      if (vault) await kit.audit.record('error', this.auditCtx(s), errorText(err));
      return this.failed(s, { condition: 'internal-server-error', text: 'the transport cannot read your stored credentials; ask the administrator' }, false);
    }
    if (gen !== s.generation) return;
    if (!prepared) {
      const where = s.server !== undefined && kit.addresses.multiServer ? (kit.addresses.serverJid(s.server) ?? kit.domain) : kit.domain;
      return this.failed(s, { condition: 'registration-required', text: `register with ${where} first` }, false);
    }
    s.account = prepared.account;
    s.secrets = prepared.secrets;
    await kit.audit.record('connecting', this.auditCtx(s));
    let legacy: LegacySession;
    try {
      legacy = await withTimeout(
        kit.clock,
        kit.adapter.login({
          userJid: s.user,
          credentials: prepared.credentials,
          server: s.server,
          log: kit.log.child(`${kit.adapter.network}-adapter`),
          settings: prepared.settings,
          ...((s.syncState ?? prepared.state) !== undefined ? { state: s.syncState ?? prepared.state } : {}),
        }),
        kit.settings.loginTimeout,
        (late) => void late.logout('login timed out').catch(() => undefined),
      );
    } catch (err) {
      if (gen !== s.generation) return;
      const reason = scrub(errorText(err), s.secrets);
      if (err instanceof LegacyAuthError) {
        await kit.audit.record('auth-failed', this.auditCtx(s), reason);
        return this.failed(s, { condition: 'not-authorized', text: `${kit.networkName} refused the login: ${reason}` }, false);
      }
      await kit.audit.record('error', this.auditCtx(s), reason);
      return this.failed(s, { condition: 'remote-server-timeout', text: `cannot connect to ${kit.networkName}${s.server ? ` (${s.server})` : ''}: ${reason}` }, true);
    }
    if (gen !== s.generation || s.state === 'closed' || this.stopped) {
      await legacy.logout('no longer needed').catch(() => undefined);
      return;
    }
    this.attach(s, legacy, gen);
    s.legacy = legacy;
    s.account = prepared.account ?? legacy.account ?? null;
    s.state = 'online';
    s.attempt = 0;
    s.failure = null;
    s.failureNotified = false;
    s.since = kit.clock.now();
    s.appliedPresence = null;
    await kit.audit.record('connected', this.auditCtx(s));
    kit.log.info('logged in', { network: kit.adapter.network, user: s.user, server: s.server ?? null });
    kit.send(x('presence', { from: this.speakerFor(s), to: s.user }, x('status', {}, `Connected to ${kit.networkName}${s.server ? ` (${s.server})` : ''}`)));
    this.applyOwnPresence(s.user);
    await kit.contacts.sessionOnline(s);
    await kit.rooms.sessionOnline(s);
  }

  /** Ends a failed attempt: tells the user (presence error), fails waiting room joins, and retries network failures. */
  private failed(s: UserSession, failure: LoginFailure, retry: boolean): void {
    s.failure = failure;
    s.legacy = null;
    if (!s.failureNotified || !retry) this.notifyFailure(s, failure);
    s.failureNotified = true;
    const demanded = this.demandedServers(s.user).has(this.serverKey(s.server));
    this.kit.rooms.sessionFailed(s, failure, retry && demanded && !this.stopped);
    if (retry && demanded && !this.stopped) {
      s.state = 'retrying';
      this.scheduleRetry(s);
    } else {
      s.state = 'failed';
      if (!demanded) this.forget(s);
    }
  }

  private notifyFailure(s: UserSession, failure: LoginFailure): void {
    const targets = this.resourcesOf(s.user, s.server);
    for (const to of targets.length ? targets : [s.user]) {
      this.kit.send(x('presence', { type: 'error', from: this.speakerFor(s), to }, errorElement(failure.condition, failure.text)));
    }
  }

  private scheduleRetry(s: UserSession): void {
    if (s.retryTimer || this.stopped) return;
    const delay = backoffDelay(s.attempt++, this.kit.settings.reconnect);
    this.kit.log.debug('reconnecting later', { network: this.kit.adapter.network, user: s.user, server: s.server ?? null, delayMs: delay });
    s.retryTimer = after(this.kit.clock, delay, () => {
      s.retryTimer = null;
      if (s.state !== 'retrying') return;
      if (!this.demandedServers(s.user).has(this.serverKey(s.server))) return this.forget(s);
      this.startLogin(s);
    });
  }

  private attach(s: UserSession, legacy: LegacySession, gen: number): void {
    const { kit } = this;
    const on = <K extends keyof LegacySessionEvents>(event: K, fn: (...args: LegacySessionEvents[K]) => unknown) => {
      legacy.on(event, ((...args: LegacySessionEvents[K]) => {
        if (gen !== s.generation || s.legacy !== legacy) return;
        try {
          const r = fn(...args);
          if (r instanceof Promise) r.catch((err) => kit.log.error('event handling failed', { network: kit.adapter.network, event, error: errorText(err) }));
        } catch (err) {
          kit.log.error('event handling failed', { network: kit.adapter.network, event, error: errorText(err) });
        }
      }) as never);
    };
    on('message', (from, msg) => kit.contacts.legacyMessage(s, from, msg));
    on('contactPresence', (contact, show, status) => kit.contacts.legacyPresence(s, contact, show, status));
    on('typing', (from, state) => ('room' in from ? kit.rooms.typing(s, from.room, from.nick, state) : kit.contacts.legacyTyping(s, from, state)));
    on('serverMessage', (server, msg) => kit.contacts.serverMessage(s, server, msg));
    on('roster', (contacts) => kit.contacts.legacyRoster(s, contacts));
    on('roomJoined', (room, ownNick, occupants, subject) => kit.rooms.joined(s, room, ownNick, occupants, subject));
    on('roomJoinFailed', (room, reason, condition) => kit.rooms.joinFailed(s, room, reason, condition));
    on('occupantJoined', (room, occupant) => kit.rooms.occupantJoined(s, room, occupant));
    on('occupantLeft', (room, nick, reason, kickedBy) => kit.rooms.occupantLeft(s, room, nick, reason, kickedBy));
    on('occupantChanged', (room, occupant) => kit.rooms.occupantChanged(s, room, occupant));
    on('nickChanged', (room, oldNick, newNick) => kit.rooms.nickChanged(s, room, oldNick, newNick));
    on('subject', (room, subject, by) => kit.rooms.subject(s, room, subject, by));
    on('roomMessage', (room, nick, msg) => kit.rooms.message(s, room, nick, msg));
    // The login's own 'connected' row is written when login() resolves; the first event after it
    // (adapters that announce the initial connection too) is part of that, later ones are an
    // adapter re-establishing the connection on its own.
    let announced = false;
    on('displayed', (from, messageId) => ('room' in from ? kit.rooms.displayed(s, from.room, from.nick, messageId) : kit.contacts.legacyDisplayed(s, from, messageId)));
    on('invited', (room, by, reason) => kit.contacts.legacyInvited(s, room, by, reason));
    on('syncState', (state) => this.noteSyncState(s, state));
    on('connected', (server, account) => {
      if (!announced) {
        announced = true;
        return;
      }
      if (s.state !== 'online') return;
      return kit.audit.record('connected', { ...this.auditCtx(s), server: server || s.server || null, account: account || s.account });
    });
    on('disconnected', (reason, final) => this.disconnected(s, reason, final));
  }

  /** The adapter's position in its event stream: kept, and stored a few seconds later (once per burst). */
  private noteSyncState(s: UserSession, state: string): void {
    if (typeof state !== 'string') return;
    s.syncState = state;
    if (s.syncTimer) return;
    s.syncTimer = after(this.kit.clock, SYNC_STATE_DELAY, () => void this.flushSyncState(s));
  }

  private async flushSyncState(s: UserSession): Promise<void> {
    s.syncTimer?.cancel();
    s.syncTimer = null;
    if (s.syncState === undefined) return;
    try {
      await this.kit.registration.saveSyncState(s.user, s.server, s.syncState);
    } catch (err) {
      this.kit.log.warn('cannot store the sync state', { network: this.kit.adapter.network, error: errorText(err) });
    }
  }

  private async disconnected(s: UserSession, reason: string, final: boolean): Promise<void> {
    const { kit } = this;
    const text = scrub(reason, s.secrets);
    s.legacy = null;
    s.generation++;
    await this.flushSyncState(s);
    await kit.audit.record('disconnected', this.auditCtx(s), text);
    kit.log.info('foreign connection lost', { network: kit.adapter.network, user: s.user, server: s.server ?? null, final });
    kit.rooms.connectionLost(s);
    kit.contacts.connectionLost(s);
    if (final) {
      await kit.audit.record('auth-failed', this.auditCtx(s), text);
      return this.failed(s, { condition: 'not-authorized', text: `${kit.networkName} ended the session: ${text}` }, false);
    }
    if (!this.demandedServers(s.user).has(this.serverKey(s.server))) return this.forget(s);
    s.state = 'retrying';
    s.failureNotified = false;
    this.scheduleRetry(s);
  }

  // ---- ending sessions ----

  private clearTimers(s: UserSession): void {
    s.graceTimer?.cancel();
    s.retryTimer?.cancel();
    s.graceTimer = null;
    s.retryTimer = null;
  }

  /** Drops a session that has no connection (failed, or no longer wanted). */
  private forget(s: UserSession): void {
    this.clearTimers(s);
    s.generation++;
    if (this.sessions.get(s.key) === s) this.sessions.delete(s.key);
  }

  /**
   * Logs a session out: the user sees the session's contacts and rooms go, the foreign connection
   * ends, and a 'disconnected' row is written. `statusCode` 332 marks a transport shutdown in MUC.
   */
  async logout(s: UserSession, reason: string, opts: { shutdown?: boolean; tellUser?: boolean } = {}): Promise<void> {
    this.clearTimers(s);
    if (this.sessions.get(s.key) === s) this.sessions.delete(s.key);
    const legacy = s.legacy;
    const wasConnected = s.state === 'online' || s.state === 'connecting' || s.state === 'retrying';
    s.state = 'closed';
    s.generation++;
    s.legacy = null;
    this.kit.rooms.sessionClosed(s, opts.shutdown ? 332 : null);
    this.kit.contacts.connectionLost(s);
    if (legacy) {
      try {
        await legacy.logout(reason);
      } catch (err) {
        this.kit.log.debug('logout failed', { network: this.kit.adapter.network, error: errorText(err) });
      }
    }
    await this.flushSyncState(s);
    if (wasConnected && (legacy || s.account !== null)) await this.kit.audit.record('disconnected', this.auditCtx(s), reason);
    if ((legacy || opts.tellUser) && !opts.shutdown) {
      this.kit.send(x('presence', { type: 'unavailable', from: this.speakerFor(s), to: s.user }, opts.tellUser ? x('status', {}, reason) : null));
    }
    this.kit.log.info('logged out', { network: this.kit.adapter.network, user: s.user, server: s.server ?? null, reason });
  }

  /** Logs out every session of a user (registration removed, admin command). */
  async logoutUser(user: string, reason: string, opts: { tellUser?: boolean } = {}): Promise<number> {
    const list = this.ofUser(user);
    for (const s of list) await this.logout(s, reason, opts);
    return list.length;
  }

  /** Re-logs in a user's sessions (after a registration edit). */
  restartUser(user: string): void {
    for (const s of this.ofUser(user)) {
      if (s.state === 'failed' || s.state === 'retrying') {
        s.failureNotified = false;
        this.startLogin(s);
      }
    }
  }

  /** Adopts a session that registration logged in to test the credentials. */
  adopt(user: string, server: string | undefined, legacy: LegacySession, account: string | null, secrets: string[]): UserSession {
    const old = this.get(user, server);
    if (old) void this.logout(old, 'registration changed');
    const s = new UserSession(user, server, this.kit.clock.now());
    s.account = account;
    s.secrets = secrets;
    this.sessions.set(s.key, s);
    const gen = ++s.generation;
    this.attach(s, legacy, gen);
    s.legacy = legacy;
    s.state = 'online';
    if (!this.demandedServers(user).has(this.serverKey(server))) this.scheduleGrace(s);
    void this.kit.contacts.sessionOnline(s);
    return s;
  }

  /** Transport shutdown: every session logs out (MUC status 332), nothing reconnects. */
  async closeAll(reason: string): Promise<void> {
    const list = [...this.sessions.values()];
    this.stopped = true;
    await Promise.all(list.map((s) => this.logout(s, reason, { shutdown: true })));
  }

  /** Users with at least one session, for the admin list. */
  connectedUsers(): { user: string; server: string | undefined; state: SessionState; since: Date; account: string | null; rooms: number }[] {
    return [...this.sessions.values()].map((s) => ({ user: s.user, server: s.server, state: s.state, since: s.since, account: s.account, rooms: s.rooms.size }));
  }
}
