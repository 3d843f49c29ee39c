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
import { x } from '../../shared/xml/element.js';
import type { LegacySession } from './adapter.js';
import type { KitSessions } from './kit-types.js';
import { errorText } from './context.js';
import { UserSession, type SessionState } from './user-session.js';
import { SessionEvents } from './session-events.js';

/**
 * The sessions of the kit, one class built in layers, one file each (no file imports a later
 * one): session-resources.ts (the user's resources and what they demand) → session-login.ts
 * (login, failures, backoff) → session-events.ts (the foreign session's events, dropped
 * connections) → this file (logging out, adopting a session registration tested, shutdown).
 */
export class SessionManager extends SessionEvents implements KitSessions {
  // ---- ending sessions ----

  /**
   * Logs a session out: the user sees the session's contacts and rooms go, the foreign connection
   * ends, and a 'disconnected' row is written. `statusCode` 332 marks a transport shutdown in MUC.
   */
  async logout(s: UserSession, reason: string, opts: { shutdown?: boolean; tellUser?: boolean } = {}): Promise<void> {
    this.clearTimers(s);
    if (this.sessions.get(s.key) === s) {
      this.sessions.delete(s.key);
      this.guestNicks.delete(s.key);
    }
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
    if (legacy) await this.flushSecretState(s, legacy);
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
  adopt(user: string, server: string | undefined, legacy: LegacySession, account: string | null, secrets: string[], keepAlive = false): UserSession {
    const old = this.get(user, server);
    if (old) void this.logout(old, 'registration changed');
    const s = new UserSession(user, server, this.kit.clock.now());
    s.account = account;
    s.secrets = secrets;
    s.keepAlive = keepAlive;
    this.sessions.set(s.key, s);
    const gen = ++s.generation;
    this.attach(s, legacy, gen);
    s.legacy = legacy;
    s.state = 'online';
    // What the session reported before it was adopted had no registration to go to.
    void this.flushSecretState(s, legacy);
    if (!this.wanted(s)) this.scheduleGrace(s);
    void this.kit.contacts.sessionOnline(s);
    return s;
  }

  /** At start: a session whose user chose to stay connected logs in without waiting for the user's presence. */
  restore(user: string, server: string | undefined): void {
    if (this.stopped || this.get(user, server)) return;
    this.create(user, server);
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
