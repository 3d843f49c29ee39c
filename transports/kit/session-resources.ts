/**
 * The ground floor of the kit's foreign sessions (the whole class is SessionManager in
 * sessions.ts): the sessions by user and server, the user's resources and what each demands
 * (general presence for a server, joined rooms), and the grace period after the last demand
 * ends. XEP-0100 §4.4/4.5: the presence the XMPP server sends to the component drives it all.
 */
import type { Element } from '../../shared/xml/element.js';
import type { Jid } from '../../shared/jid.js';
import { after } from '../../shared/clock.js';
import type { Kit } from './kit-types.js';
import { errorText } from './context.js';
import { showOf } from './stanzas.js';
import { sessionKey, type UserSession } from './user-session.js';

interface ResourceState {
  /** Server keys ('' on single-server networks) this resource has general presence for. */
  servers: Set<string>;
  /** Joined rooms: bare room JID → server key. */
  rooms: Map<string, string>;
  show: 'available' | 'away' | 'dnd' | 'xa';
  status: string | null;
  priority: number;
}

export abstract class SessionResources {
  protected readonly sessions = new Map<string, UserSession>();
  /**
   * Join without registration: the nick of the room join that demanded a session, by session
   * key, used as the nick of a login without stored values for that server (adapter.guestCredentials).
   */
  protected readonly guestNicks = new Map<string, string>();
  private readonly resources = new Map<string, Map<string, ResourceState>>();
  protected stopped = false;

  constructor(protected readonly kit: Kit) {}

  /** Makes a session and starts its login (session-login.ts). */
  protected abstract create(user: string, server: string | undefined): UserSession;
  /** Starts (or restarts) the login of a session (session-login.ts). */
  abstract startLogin(s: UserSession): void;
  /** Logs a session out (sessions.ts). */
  abstract logout(s: UserSession, reason: string, opts?: { shutdown?: boolean; tellUser?: boolean }): Promise<void>;

  protected serverKey(server: string | undefined): string {
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

  /** A resource joined a room (room-membership.ts): the room's server is demanded. */
  async addRoomDemand(full: Jid, roomJid: string, server: string | undefined, nick?: string): Promise<void> {
    const key = sessionKey(full.bare, server);
    if (nick && !this.sessions.has(key)) this.guestNicks.set(key, nick);
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

  /** Whether a session is wanted: a resource demands it, or the user chose to stay connected. */
  protected wanted(s: UserSession): boolean {
    return s.keepAlive || this.demandedServers(s.user).has(this.serverKey(s.server));
  }

  protected demandedServers(user: string): Set<string> {
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
      if (!(await this.kit.registration.isRegistered(user)) && !this.guestNicks.has(sessionKey(user, this.fromKey(key)))) continue;
      if (this.sessions.has(sessionKey(user, this.fromKey(key))) || this.stopped) continue;
      this.create(user, this.fromKey(key));
    }
  }

  protected scheduleGrace(s: UserSession): void {
    if (s.state === 'failed') {
      this.forget(s);
      return;
    }
    if (s.graceTimer || s.state === 'closed') return;
    s.graceTimer = after(this.kit.clock, this.kit.settings.gracePeriod, () => {
      s.graceTimer = null;
      if (this.wanted(s)) return;
      void this.logout(s, 'the user went offline');
    });
  }

  /** The user's highest-priority presence, passed to every online session that takes it (IRC AWAY). */
  protected applyOwnPresence(user: string): void {
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

  protected clearTimers(s: UserSession): void {
    s.graceTimer?.cancel();
    s.retryTimer?.cancel();
    s.graceTimer = null;
    s.retryTimer = null;
  }

  /** Drops a session that has no connection (failed, or no longer wanted). */
  protected forget(s: UserSession): void {
    this.clearTimers(s);
    s.generation++;
    if (this.sessions.get(s.key) === s) {
      this.sessions.delete(s.key);
      this.guestNicks.delete(s.key);
    }
  }

}
