/**
 * Joining and leaving MUC rooms (XEP-0045 §7.2, §7.14), on top of room-base.ts: the user's
 * presence to room/nick, the network's confirmation or refusal, several resources of one user in
 * one room, and what a session's login, dropped connection and end mean for its rooms (rooms.ts
 * describes what the user sees).
 */
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';
import type { Jid } from '../../shared/jid.js';
import { LegacyNetworkError, type LegacyRoom, type Occupant, type RoomHistoryItem } from './adapter.js';
import { errorText } from './context.js';
import type { LoginFailure, UserSession } from './user-session.js';
import type { RoomState } from './room-state.js';
import { NS_MUC, NS_MUC_USER, stanzaError } from './stanzas.js';
import { RoomBase, type RoomAddress } from './room-base.js';

export abstract class RoomMembership extends RoomBase {
  // ---- from the user ----

  async presenceIn(from: Jid, to: Jid, addr: RoomAddress, stanza: Element): Promise<void> {
    const { kit } = this;
    const type = stanza.attrs.type;
    const roomJid = to.bare;
    if (type === 'unavailable') return this.leave(from, roomJid, addr);
    if (type !== undefined) return;
    if (!from.resource) return;
    const nick = to.resource;
    if (!nick) {
      this.send(stanzaError(stanza, 'jid-malformed', 'a nickname is required to join', undefined, x('x', { xmlns: NS_MUC })));
      return;
    }
    if (!(await kit.registration.isRegistered(from.bare)) && !kit.registration.mayJoinWithoutRegistration(from)) {
      this.joinError({ jid: roomJid }, nick, from.full, 'registration-required', `register with ${kit.domain} first`);
      return;
    }
    const found = this.find(from.bare, roomJid, addr.server);
    if (found) {
      const { s, state } = found;
      if (state.resources.has(from.full)) {
        if (nick !== state.nick && state.joined) await this.changeNick(s, state, from, nick);
        return;
      }
      if (state.joined) {
        state.resources.set(from.full, nick);
        await kit.sessions.addRoomDemand(from, roomJid, addr.server, nick);
        this.sendJoinSequence(state, from.full, nick, { limit: historyLimit(stanza) });
      } else {
        state.pending.set(from.full, nick);
        await kit.sessions.addRoomDemand(from, roomJid, addr.server, nick);
      }
      return;
    }
    const password = stanza.getChild('x', NS_MUC)?.getChildText('password') ?? undefined;
    await kit.sessions.addRoomDemand(from, roomJid, addr.server, nick);
    const s = kit.sessions.get(from.bare, addr.server);
    if (!s) {
      this.joinError({ jid: roomJid }, nick, from.full, 'service-unavailable', 'the transport is shutting down');
      return;
    }
    const existing = s.rooms.get(roomJid);
    if (existing) {
      // Another stanza created it meanwhile.
      if (existing.joined) {
        existing.resources.set(from.full, nick);
        this.sendJoinSequence(existing, from.full, nick);
      } else existing.pending.set(from.full, nick);
      return;
    }
    const state: RoomState = {
      jid: roomJid,
      room: { id: addr.id, ...(addr.server !== undefined ? { server: addr.server } : {}) },
      nick,
      joined: false,
      occupants: new Map(),
      subject: null,
      subjectBy: null,
      resources: new Map(),
      pending: new Map([[from.full, nick]]),
      password,
      echoes: [],
      joinTimer: null,
    };
    s.rooms.set(roomJid, state);
    if (s.state === 'online' && s.legacy) this.startJoin(s, state);
    else if (s.state === 'failed' || s.state === 'retrying') this.failPending(s, state, s.failure ?? { condition: 'remote-server-timeout', text: `not connected to ${kit.networkName}` });
    // else: sessionOnline() joins it once the login is done.
  }

  private startJoin(s: UserSession, state: RoomState): void {
    const legacy = s.legacy;
    if (!legacy || state.joinTimer) return;
    const timeout = Math.max(this.kit.settings.loginTimeout, 1000);
    state.joinTimer = setTimeout(() => {
      state.joinTimer = null;
      if (!state.joined) this.failPending(s, state, { condition: 'remote-server-timeout', text: `${this.kit.networkName} did not confirm the join` });
    }, timeout);
    state.joinTimer.unref?.();
    legacy.joinRoom(state.room, state.nick, state.password).catch((err) => {
      if (state.joined) return;
      this.failPending(s, state, { condition: err instanceof LegacyNetworkError ? 'remote-server-timeout' : 'internal-server-error', text: errorText(err) });
    });
  }

  private failPending(s: UserSession, state: RoomState, failure: { condition: string; text: string }): void {
    if (state.joinTimer) clearTimeout(state.joinTimer);
    state.joinTimer = null;
    const pending = [...state.pending];
    state.pending.clear();
    for (const [full, nick] of pending) this.joinError(state, nick, full, failure.condition, failure.text);
    if (state.resources.size === 0) {
      s.rooms.delete(state.jid);
      void this.dropDemand(s.user, pending.map(([f]) => f), state.jid);
    }
  }

  private async leave(from: Jid, roomJid: string, addr: RoomAddress): Promise<void> {
    const found = this.find(from.bare, roomJid, addr.server);
    if (!found) {
      // Not (or no longer) in the room: confirm anyway, so the client is not left waiting.
      if (from.resource && addr.nick) {
        this.kit.send(x('presence', { type: 'unavailable', from: `${roomJid}/${addr.nick}`, to: from.full }, x('x', { xmlns: NS_MUC_USER }, x('item', { affiliation: 'none', role: 'none' }), x('status', { code: 110 }))));
      }
      await this.kit.sessions.removeRoomDemand(from, roomJid);
      return;
    }
    const { s, state } = found;
    const wasIn = state.resources.delete(from.full) || state.pending.delete(from.full);
    if (wasIn) this.send(this.presence(state, state.nick, from.full, this.ownOccupant(state), { type: 'unavailable', codes: [110] }));
    if (state.resources.size === 0 && state.pending.size === 0 && !(s.keepAlive && state.joined)) {
      s.rooms.delete(roomJid);
      if (state.joinTimer) clearTimeout(state.joinTimer);
      if (s.legacy && (state.joined || state.joinTimer !== null)) {
        await s.legacy.leaveRoom(state.room).catch((err) => this.kit.log.debug('leaveRoom failed', { network: this.kit.adapter.network, error: errorText(err) }));
      }
    }
    await this.kit.sessions.removeRoomDemand(from, roomJid);
  }

  private async changeNick(s: UserSession, state: RoomState, from: Jid, nick: string): Promise<void> {
    try {
      await s.legacy!.changeNick(state.room, nick);
    } catch (err) {
      this.joinError(state, nick, from.full, 'conflict', errorText(err));
    }
  }

  // ---- session lifecycle ----

  /** Logged in (first time or after a reconnect): join what waits. */
  async sessionOnline(s: UserSession): Promise<void> {
    for (const state of s.rooms.values()) if (!state.joined) this.startJoin(s, state);
  }

  /**
   * A login failed: joins that wait get the error. While the kit keeps retrying, rooms that were
   * joined before the connection dropped stay waiting for the reconnect.
   */
  sessionFailed(s: UserSession, failure: LoginFailure, retrying = false): void {
    for (const state of [...s.rooms.values()]) {
      if (retrying && state.rejoin) continue;
      const joined = [...state.resources];
      for (const [full] of joined) state.pending.set(full, state.nick);
      state.resources.clear();
      this.failPending(s, state, failure);
    }
  }

  /** The connection dropped: the user sees the others leave; everyone rejoins after the reconnect. */
  connectionLost(s: UserSession): void {
    for (const state of s.rooms.values()) {
      if (state.joinTimer) clearTimeout(state.joinTimer);
      state.joinTimer = null;
      if (state.joined) {
        for (const full of state.resources.keys()) {
          for (const [nick, occ] of state.occupants) {
            if (nick !== state.nick) this.send(this.presence(state, nick, full, occ, { type: 'unavailable' }));
          }
        }
      }
      for (const [full, nick] of state.resources) state.pending.set(full, nick);
      if (state.resources.size || s.keepAlive) state.rejoin = true;
      state.resources.clear();
      state.joined = false;
      const own = state.occupants.get(state.nick);
      state.occupants.clear();
      if (own) state.occupants.set(state.nick, own);
      state.echoes = [];
    }
  }

  /** Logout or shutdown: every resource leaves (status 332 at a shutdown); joins that wait fail. */
  sessionClosed(s: UserSession, statusCode: number | null): void {
    for (const state of s.rooms.values()) {
      if (state.joinTimer) clearTimeout(state.joinTimer);
      const codes = statusCode ? [110, statusCode] : [110];
      for (const full of state.resources.keys()) this.send(this.presence(state, state.nick, full, this.ownOccupant(state), { type: 'unavailable', codes }));
      for (const [full, nick] of state.pending) this.joinError(state, nick, full, 'service-unavailable', `the ${this.kit.networkName} session ended`);
      void this.dropDemand(s.user, [...state.resources.keys(), ...state.pending.keys()], state.jid);
    }
    s.rooms.clear();
  }

  /** All the user's resources are gone (unavailable from the bare JID). */
  userGone(user: string, fulls: string[]): void {
    const gone = new Set(fulls);
    for (const s of this.kit.sessions.ofUser(user)) {
      for (const state of [...s.rooms.values()]) {
        for (const f of gone) {
          state.resources.delete(f);
          state.pending.delete(f);
        }
        if (state.resources.size === 0 && state.pending.size === 0 && !(s.keepAlive && state.joined)) {
          s.rooms.delete(state.jid);
          if (state.joined && s.legacy) void s.legacy.leaveRoom(state.room).catch(() => undefined);
        }
      }
    }
  }

  // ---- the network's answer to a join ----

  joined(s: UserSession, room: LegacyRoom, ownNick: string, occupants: Occupant[], subject: string | null, history: RoomHistoryItem[] = []): void {
    let state = this.stateFor(s, room);
    if (!state) {
      // Joined by the network or the adapter itself (IRC autojoin, a forced join): kept, so a
      // resource that joins later (bookmarks) gets the room at once, without another network join.
      const jid = this.kit.addresses.roomJid(room, s.server);
      if (!jid) return;
      state = {
        jid,
        room,
        nick: ownNick,
        joined: true,
        occupants: new Map(),
        subject: null,
        subjectBy: null,
        resources: new Map(),
        pending: new Map(),
        password: undefined,
        echoes: [],
        joinTimer: null,
      };
      s.rooms.set(jid, state);
    }
    if (state.joinTimer) clearTimeout(state.joinTimer);
    state.joinTimer = null;
    state.room = { ...state.room, ...room };
    state.nick = ownNick;
    state.joined = true;
    state.rejoin = false;
    state.occupants = new Map(occupants.map((o) => [o.nick, o]));
    if (!state.occupants.has(ownNick)) state.occupants.set(ownNick, { nick: ownNick, role: 'participant', affiliation: 'none' });
    state.subject = subject;
    const waiting = [...state.pending];
    state.pending.clear();
    for (const [full, requested] of waiting) {
      state.resources.set(full, requested);
      this.sendJoinSequence(state, full, requested, { items: history });
    }
  }

  joinFailed(s: UserSession, room: LegacyRoom, reason: string, condition: string): void {
    const state = this.stateFor(s, room);
    if (!state) return;
    this.failPending(s, state, { condition, text: reason });
  }
}

/** The client's <history maxstanzas='N'/> in a join, or null (everything kept). */
function historyLimit(stanza: Element): number | null {
  const h = stanza.getChild('x', NS_MUC)?.getChild('history');
  const n = Number.parseInt(h?.attrs.maxstanzas ?? '', 10);
  return Number.isFinite(n) && n >= 0 ? n : null;
}
