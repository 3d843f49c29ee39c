/**
 * Foreign channels as XEP-0045 (Multi-User Chat 1.35) rooms served by the transport:
 * `#chan%irc.example.org@irc.domain`, occupants `…/nick`.
 *
 * - Join: presence to room/nick (with or without <x xmlns='…muc'/>, password inside it) logs the
 *   user in if needed and calls joinRoom. When the network confirms (roomJoined) each joining
 *   resource gets the occupants' presence (muc#user item with affiliation and role, and the
 *   occupant's contact JID where the network exposes it), then its own presence with status 110
 *   (and 210 when the network gave another nick than asked for), then the subject message
 *   (an empty <subject/> when there is none: clients take it as "join complete"). No history: the
 *   transport stores no messages. roomJoinFailed becomes a presence error with the condition.
 * - Several resources of one user share the room (multi-session nick): a second resource gets
 *   the current state without a new network join; the network room is left when the last leaves.
 * - Groupchat both ways; the user's own message comes back with the id it was sent with (echoed
 *   by the kit once sendRoomMessage resolved, or the network's echo when the adapter says it
 *   echoes). Subject changes both ways. Nick changes: 303 unavailable + the new presence.
 *   Leaving: unavailable with 110. Kicks: 307 with actor and reason; a moderator kicks with the
 *   muc#admin role='none' IQ. Private messages to room/nick go to the occupant's contact.
 * - A dropped connection shows the other occupants leaving and rejoins after the reconnect; a
 *   transport shutdown removes the user with status 332. XEP-0410 self-pings are answered.
 */
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';
import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import { LegacyNetworkError, type LegacyRoom, type Occupant, type TextMessage } from './adapter.js';
import { errorText } from './context.js';
import type { Kit, KitRooms } from './kit-types.js';
import type { Address } from './addresses.js';
import { SessionUnavailableError, type LoginFailure, type UserSession } from './user-session.js';
import type { RoomState } from './room-state.js';
import { newId } from './contacts.js';
import { NS_SID, displayedMarker, displayedStanza, stanzaOf, textMessageOf } from './messages.js';
import {
  NS_CHATSTATES,
  NS_MUC,
  NS_MUC_ADMIN,
  NS_MUC_OWNER,
  NS_MUC_USER,
  chatStateOf,
  errorElement,
  iqError,
  iqResult,
  stanzaError,
  type ErrorType,
} from './stanzas.js';

type RoomAddress = Extract<Address, { kind: 'room' }>;

const JOIN_CONDITION_TYPES: Record<string, ErrorType> = {
  forbidden: 'auth',
  'not-authorized': 'auth',
  'registration-required': 'auth',
  'service-unavailable': 'wait',
  conflict: 'cancel',
  'item-not-found': 'cancel',
  'remote-server-timeout': 'wait',
  'internal-server-error': 'cancel',
};

interface PresenceOptions {
  type?: 'unavailable';
  codes?: number[];
  newNick?: string;
  actor?: string | null;
  reason?: string | null;
}

export class Rooms implements KitRooms {
  constructor(private readonly kit: Kit) {}

  private stateFor(s: UserSession, room: LegacyRoom): RoomState | undefined {
    const jid = this.kit.addresses.roomJid(room, s.server);
    return jid ? s.rooms.get(jid) : undefined;
  }

  /** The session and room state a user has for a room JID, if any. */
  private find(user: string, roomJid: string, server: string | undefined): { s: UserSession; state: RoomState } | null {
    const s = this.kit.sessions.get(user, server);
    const state = s?.rooms.get(roomJid);
    return s && state ? { s, state } : null;
  }

  private presence(state: RoomState, nick: string, to: string, occ: Pick<Occupant, 'role' | 'affiliation' | 'contact'> | undefined, o: PresenceOptions = {}): Element | null {
    const from = jidWithResource(state.jid, nick);
    if (!from) return null;
    const contactJid = occ?.contact ? this.kit.addresses.contactJid(occ.contact, state.room.server) : null;
    const item = x(
      'item',
      { affiliation: occ?.affiliation ?? 'none', role: o.type === 'unavailable' ? 'none' : (occ?.role ?? 'participant'), jid: contactJid ?? undefined, nick: o.newNick },
      o.actor ? x('actor', { nick: o.actor }) : null,
      o.reason ? x('reason', {}, o.reason) : null,
    );
    return x(
      'presence',
      { from, to, type: o.type },
      x('x', { xmlns: NS_MUC_USER }, item, (o.codes ?? []).map((c) => x('status', { code: c }))),
    );
  }

  private send(el: Element | null): void {
    if (el) this.kit.send(el);
  }

  private ownOccupant(state: RoomState): Occupant {
    return state.occupants.get(state.nick) ?? { nick: state.nick, role: 'participant', affiliation: 'none' };
  }

  /** The join sequence for one resource: occupants, self-presence (110, 210), subject. */
  private sendJoinSequence(state: RoomState, to: string, requestedNick: string): void {
    for (const [nick, occ] of state.occupants) {
      if (nick === state.nick) continue;
      this.send(this.presence(state, nick, to, occ));
    }
    const codes = [110];
    if (requestedNick !== state.nick) codes.push(210);
    this.send(this.presence(state, state.nick, to, this.ownOccupant(state), { codes }));
    const by = state.subjectBy && jidWithResource(state.jid, state.subjectBy);
    this.kit.send(x('message', { type: 'groupchat', from: by || state.jid, to, id: newId() }, x('subject', {}, state.subject ?? '')));
  }

  private joinError(state: { jid: string }, nick: string, to: string, condition: string, text: string): void {
    const from = jidWithResource(state.jid, nick) ?? state.jid;
    this.kit.send(x('presence', { type: 'error', from, to }, x('x', { xmlns: NS_MUC }), errorElement(condition, text, JOIN_CONDITION_TYPES[condition])));
  }

  private async dropDemand(user: string, fulls: Iterable<string>, roomJid: string): Promise<void> {
    for (const full of fulls) {
      const jid = parseFull(full);
      if (jid) await this.kit.sessions.removeRoomDemand(jid, roomJid);
    }
    void user;
  }

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
    if (!(await kit.registration.isRegistered(from.bare))) {
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
        await kit.sessions.addRoomDemand(from, roomJid, addr.server);
        this.sendJoinSequence(state, from.full, nick);
      } else {
        state.pending.set(from.full, nick);
        await kit.sessions.addRoomDemand(from, roomJid, addr.server);
      }
      return;
    }
    const password = stanza.getChild('x', NS_MUC)?.getChildText('password') ?? undefined;
    await kit.sessions.addRoomDemand(from, roomJid, addr.server);
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
    if (state.resources.size === 0 && state.pending.size === 0) {
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

  async messageIn(from: Jid, to: Jid, addr: RoomAddress, stanza: Element): Promise<void> {
    const { kit } = this;
    const type = stanza.attrs.type ?? 'normal';
    if (type === 'error') return;
    const roomJid = to.bare;
    const found = this.find(from.bare, roomJid, addr.server);
    if (addr.nick) return this.privateMessage(from, addr, stanza, found?.state);
    const mediated = stanza.getChild('x', NS_MUC_USER)?.getChild('invite');
    if (mediated) return this.mediatedInvitation(from, to, addr, stanza, mediated, found);
    if (type !== 'groupchat') {
      const reply = stanzaError(stanza, 'bad-request', 'only groupchat messages go to the room');
      if (reply) kit.send(reply);
      return;
    }
    if (!found || !found.state.resources.has(from.full) || !found.s.legacy) {
      const reply = stanzaError(stanza, 'not-acceptable', 'you are not in this room');
      if (reply) kit.send(reply);
      return;
    }
    const { s, state } = found;
    const legacy = s.legacy!;
    const subject = stanza.getChild('subject');
    const msg = textMessageOf(stanza);
    // The id the echo and the network share: the client's, or one given here.
    const id = stanza.attrs.id || newId();
    try {
      if (subject && !msg) {
        await legacy.setSubject(state.room, subject.text());
        return;
      }
      if (!msg) {
        const marker = displayedMarker(stanza);
        if (marker && legacy.markRead) await legacy.markRead(state.room, marker);
        const cs = chatStateOf(stanza);
        if ((cs === 'composing' || cs === 'paused' || cs === 'active') && legacy.sendTyping) await legacy.sendTyping(state.room, cs);
        return;
      }
      msg.id = id;
      if (kit.adapter.echoesRoomMessages) state.echoes.push({ text: msg.text, id });
      await legacy.sendRoomMessage(state.room, msg);
    } catch (err) {
      const reply = stanzaError(stanza, err instanceof LegacyNetworkError ? 'remote-server-timeout' : 'not-acceptable', errorText(err));
      if (reply) kit.send(reply);
      return;
    }
    if (!kit.adapter.echoesRoomMessages) {
      // XEP-0045 §7.4: the sender gets its own message back, from its occupant JID, with its id,
      // and the room's stanza-id (XEP-0359) by which reactions and retractions refer to it.
      for (const full of state.resources.keys()) {
        const echo = stanza.clone();
        echo.attrs = { ...echo.attrs, id, from: jidWithResource(state.jid, state.nick) ?? state.jid, to: full, type: 'groupchat' };
        delete echo.attrs.xmlns;
        for (const old of echo.getChildren('stanza-id', NS_SID)) echo.remove(old);
        echo.append(x('stanza-id', { xmlns: NS_SID, id, by: state.jid }));
        kit.send(echo);
      }
    }
  }

  /** XEP-0045 §7.8.2: a mediated invitation through the room, to a contact of this network. */
  private async mediatedInvitation(from: Jid, to: Jid, addr: RoomAddress, stanza: Element, invite: Element, found: { s: UserSession; state: RoomState } | null): Promise<void> {
    const { kit } = this;
    const fail = (condition: string, text: string) => {
      const reply = stanzaError(stanza, condition, text);
      if (reply) kit.send(reply);
    };
    const target = Jid.tryParse(invite.attrs.to);
    const contact = target ? kit.addresses.parse(target) : null;
    if (!contact || contact.kind !== 'contact' || contact.server !== addr.server) return fail('not-acceptable', `only ${kit.networkName} contacts on the same server can be invited`);
    if (!found?.s.legacy) return fail('not-acceptable', 'you are not in this room');
    if (!found.s.legacy.invite) return fail('feature-not-implemented', `${kit.networkName} invitations are not supported`);
    try {
      const known = found.s.contacts.get(target!.bare) ?? { id: contact.id, ...(contact.server !== undefined ? { server: contact.server } : {}) };
      await found.s.legacy.invite(found.state.room, known, invite.getChildText('reason') || undefined);
    } catch (err) {
      fail(err instanceof LegacyNetworkError ? 'remote-server-timeout' : 'not-allowed', errorText(err));
    }
    void to;
  }

  private async privateMessage(from: Jid, addr: RoomAddress, stanza: Element, state: RoomState | undefined): Promise<void> {
    const { kit } = this;
    const type = stanza.attrs.type ?? 'normal';
    if (type === 'groupchat') {
      const reply = stanzaError(stanza, 'bad-request', 'groupchat messages go to the room');
      if (reply) kit.send(reply);
      return;
    }
    const msg = textMessageOf(stanza);
    if (!msg) return;
    if (!state || !state.resources.has(from.full)) {
      const reply = stanzaError(stanza, 'not-acceptable', 'join the room to send private messages');
      if (reply) kit.send(reply);
      return;
    }
    const nick = addr.nick!;
    const contact = state.occupants.get(nick)?.contact ?? { id: nick, ...(addr.server !== undefined ? { server: addr.server } : {}) };
    try {
      const s = await kit.sessions.ensure(from.bare, addr.server);
      await s.legacy!.sendMessage(contact, msg);
    } catch (err) {
      const condition = err instanceof SessionUnavailableError ? err.failure.condition : err instanceof LegacyNetworkError ? 'remote-server-timeout' : 'item-not-found';
      const reply = stanzaError(stanza, condition, errorText(err));
      if (reply) kit.send(reply);
    }
  }

  /** IQs to a room or an occupant; returns the reply. */
  async iqIn(from: Jid, to: Jid, addr: RoomAddress, iq: Element): Promise<Element> {
    const { kit } = this;
    const child = iq.elements[0];
    const ns = child?.xmlns;
    const found = this.find(from.bare, to.bare, addr.server);
    if (iq.attrs.type === 'get' && ns === NS.ping) {
      if (!addr.nick) return iqResult(iq);
      // XEP-0410: answered for a joined resource; not-acceptable tells the client to rejoin.
      if (found?.state.resources.has(from.full) && found.state.joined) return iqResult(iq);
      return iqError(iq, 'not-acceptable', 'not in this room');
    }
    if (addr.nick) return iqError(iq, 'service-unavailable');
    if (iq.attrs.type === 'get' && ns === NS.discoInfo && child?.name === 'query') {
      if (child.attrs.node) return iqError(iq, 'item-not-found');
      const name = found?.state.room.name ?? addr.id;
      return iqResult(
        iq,
        x(
          'query',
          { xmlns: NS.discoInfo },
          x('identity', { category: 'conference', type: kit.adapter.network, name }),
          [NS.discoInfo, NS_MUC, 'muc_open', 'muc_persistent', 'muc_public', 'muc_semianonymous', 'muc_unmoderated', 'muc_unsecured', NS.ping].map((v) => x('feature', { var: v })),
        ),
      );
    }
    if (iq.attrs.type === 'get' && ns === NS.discoItems && child?.name === 'query') return iqResult(iq, x('query', { xmlns: NS.discoItems }));
    if (iq.attrs.type === 'set' && ns === NS_MUC_ADMIN && child?.name === 'query') {
      const items = child.getChildren('item');
      if (items.length !== 1 || items[0]!.attrs.role !== 'none' || !items[0]!.attrs.nick) return iqError(iq, 'feature-not-implemented', 'only kicking (role none) is supported');
      if (!found || !found.state.resources.has(from.full) || !found.s.legacy) return iqError(iq, 'not-acceptable', 'you are not in this room');
      try {
        await found.s.legacy.kick(found.state.room, items[0]!.attrs.nick, items[0]!.getChildText('reason') ?? undefined);
        return iqResult(iq);
      } catch (err) {
        return iqError(iq, err instanceof LegacyNetworkError ? 'remote-server-timeout' : 'not-allowed', errorText(err));
      }
    }
    if (ns === NS_MUC_ADMIN || ns === NS_MUC_OWNER) return iqError(iq, 'feature-not-implemented');
    return iqError(iq, 'service-unavailable');
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
      if (state.resources.size) state.rejoin = true;
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
        if (state.resources.size === 0 && state.pending.size === 0) {
          s.rooms.delete(state.jid);
          if (state.joined && s.legacy) void s.legacy.leaveRoom(state.room).catch(() => undefined);
        }
      }
    }
  }

  // ---- from the network ----

  private broadcast(state: RoomState, build: (to: string) => Element | null): void {
    for (const full of state.resources.keys()) this.send(build(full));
  }

  joined(s: UserSession, room: LegacyRoom, ownNick: string, occupants: Occupant[], subject: string | null): void {
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
      this.sendJoinSequence(state, full, requested);
    }
  }

  joinFailed(s: UserSession, room: LegacyRoom, reason: string, condition: string): void {
    const state = this.stateFor(s, room);
    if (!state) return;
    this.failPending(s, state, { condition, text: reason });
  }

  occupantJoined(s: UserSession, room: LegacyRoom, occupant: Occupant): void {
    const state = this.stateFor(s, room);
    if (!state?.joined || occupant.nick === state.nick) return;
    state.occupants.set(occupant.nick, occupant);
    this.broadcast(state, (to) => this.presence(state, occupant.nick, to, occupant));
  }

  occupantChanged(s: UserSession, room: LegacyRoom, occupant: Occupant): void {
    const state = this.stateFor(s, room);
    if (!state?.joined) return;
    state.occupants.set(occupant.nick, occupant);
    const self = occupant.nick === state.nick;
    this.broadcast(state, (to) => this.presence(state, occupant.nick, to, occupant, { codes: self ? [110] : [] }));
  }

  occupantLeft(s: UserSession, room: LegacyRoom, nick: string, reason: string | null, kickedBy: string | null): void {
    const state = this.stateFor(s, room);
    if (!state) return;
    const occ = state.occupants.get(nick);
    const kicked = kickedBy !== null;
    if (nick === state.nick) {
      // We are out: kicked, or parted by the network.
      const codes = kicked ? [110, 307] : [110];
      this.broadcast(state, (to) => this.presence(state, nick, to, occ, { type: 'unavailable', codes, actor: kickedBy, reason }));
      for (const [full, n] of state.pending) this.joinError(state, n, full, 'service-unavailable', reason ?? 'removed from the room');
      s.rooms.delete(state.jid);
      if (state.joinTimer) clearTimeout(state.joinTimer);
      void this.dropDemand(s.user, [...state.resources.keys(), ...state.pending.keys()], state.jid);
      return;
    }
    if (!state.joined) return;
    state.occupants.delete(nick);
    this.broadcast(state, (to) => {
      const p = this.presence(state, nick, to, occ, { type: 'unavailable', codes: kicked ? [307] : [], actor: kickedBy, reason: kicked ? reason : null });
      if (p && reason && !kicked) p.append(x('status', {}, reason));
      return p;
    });
  }

  nickChanged(s: UserSession, room: LegacyRoom, oldNick: string, newNick: string): void {
    const state = this.stateFor(s, room);
    if (!state?.joined) return;
    const self = oldNick === state.nick;
    const occ = state.occupants.get(oldNick) ?? { nick: oldNick, role: 'participant' as const, affiliation: 'none' as const };
    const moved: Occupant = { ...occ, nick: newNick };
    if (!jidWithResource(state.jid, newNick)) return;
    state.occupants.delete(oldNick);
    state.occupants.set(newNick, moved);
    if (self) state.nick = newNick;
    const extra = self ? [110] : [];
    this.broadcast(state, (to) => this.presence(state, oldNick, to, occ, { type: 'unavailable', codes: [303, ...extra], newNick }));
    this.broadcast(state, (to) => this.presence(state, newNick, to, moved, { codes: extra }));
  }

  subject(s: UserSession, room: LegacyRoom, subject: string, by: string | null): void {
    const state = this.stateFor(s, room);
    if (!state) return;
    state.subject = subject;
    state.subjectBy = by;
    if (!state.joined) return;
    const from = (by && jidWithResource(state.jid, by)) || state.jid;
    this.broadcast(state, (to) => x('message', { type: 'groupchat', from, to, id: newId() }, x('subject', {}, subject)));
  }

  message(s: UserSession, room: LegacyRoom, nick: string, msg: TextMessage): void {
    const state = this.stateFor(s, room);
    if (!state?.joined) return;
    let id: string | undefined;
    if (nick === state.nick) {
      if (!this.kit.adapter.echoesRoomMessages) return; // the kit echoed it already
      const i = state.echoes.findIndex((e) => (msg.id !== undefined && e.id === msg.id) || e.text === msg.text);
      if (i >= 0) id = state.echoes.splice(i, 1)[0]!.id;
    }
    const from = jidWithResource(state.jid, nick);
    if (!from) return;
    const markable = !!s.legacy?.markRead;
    // One id for every resource: the network's, the client's (echo), or one made up here.
    const fallback = newId();
    this.broadcast(state, (to) => stanzaOf(msg, { type: 'groupchat', from, to, by: state.jid, fresh: () => fallback, markable, id }));
  }

  /** An occupant read up to this message (XEP-0333, in the room). */
  displayed(s: UserSession, room: LegacyRoom, nick: string, messageId: string): void {
    const state = this.stateFor(s, room);
    if (!state?.joined) return;
    const from = jidWithResource(state.jid, nick);
    if (!from) return;
    this.broadcast(state, (to) => displayedStanza(from, to, 'groupchat', messageId, newId));
  }

  typing(s: UserSession, room: LegacyRoom, nick: string, chatState: 'composing' | 'paused' | 'active'): void {
    const state = this.stateFor(s, room);
    if (!state?.joined || nick === state.nick) return;
    const from = jidWithResource(state.jid, nick);
    if (!from) return;
    this.broadcast(state, (to) => x('message', { type: 'groupchat', from, to, id: newId() }, x(chatState, { xmlns: NS_CHATSTATES })));
  }

  /** Rooms a user is in, for disco#items of the gateway. */
  roomsOf(user: string): { jid: string; name: string }[] {
    const out: { jid: string; name: string }[] = [];
    for (const s of this.kit.sessions.ofUser(user)) for (const st of s.rooms.values()) if (st.joined) out.push({ jid: st.jid, name: st.room.name ?? st.room.id });
    return out;
  }
}

function jidWithResource(bare: string, resource: string): string | null {
  const j = Jid.tryParse(bare);
  if (!j) return null;
  return Jid.of(j.local, j.domain, resource)?.full ?? null;
}

function parseFull(full: string): Jid | null {
  return Jid.tryParse(full);
}
