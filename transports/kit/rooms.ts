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
 *   transport stores no messages, except for sessions whose user chose to stay connected
 *   (UserSession.keepAlive): lines said while no resource was in the room are kept in memory
 *   (bouncer limits) and sent between the self-presence and the subject, with delay stamps.
 *   roomJoinFailed becomes a presence error with the condition.
 * - Several resources of one user share the room (multi-session nick): a second resource gets
 *   the current state without a new network join; the network room is left when the last leaves (not when the user stays connected).
 * - Groupchat both ways; the user's own message comes back with the id it was sent with (echoed
 *   by the kit once sendRoomMessage resolved, or the network's echo when the adapter says it
 *   echoes). Subject changes both ways. Nick changes: 303 unavailable + the new presence.
 *   Leaving: unavailable with 110. Kicks: 307 with actor and reason; a moderator kicks with the
 *   muc#admin role='none' IQ. Private messages to room/nick go to the occupant's contact.
 * - A dropped connection shows the other occupants leaving and rejoins after the reconnect; a
 *   transport shutdown removes the user with status 332. XEP-0410 self-pings are answered.
 */
import { x } from '../../shared/xml/element.js';
import type { LegacyRoom, Occupant, TextMessage } from './adapter.js';
import type { KitRooms } from './kit-types.js';
import type { UserSession } from './user-session.js';
import type { RoomState } from './room-state.js';
import { newId } from './contacts.js';
import { displayedStanza, stanzaOf } from './messages.js';
import { NS_CHATSTATES } from './stanzas.js';
import { jidWithResource } from './room-base.js';
import { RoomTraffic } from './room-traffic.js';

/**
 * The rooms of the kit, one class built in layers, one file each (no file imports a later one):
 * room-base.ts (room state, occupant presence, join sequence) → room-membership.ts (joining,
 * leaving, the session's ups and downs) → room-traffic.ts (messages and IQs from the user) → this
 * file (what the network reports: occupants, nicks, subject, messages, markers, typing).
 */
export class Rooms extends RoomTraffic implements KitRooms {
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
    if (state.resources.size === 0 && s.keepAlive) return this.keep(s, state, nick, msg);
    const markable = !!s.legacy?.markRead;
    // One id for every resource: the network's, the client's (echo), or one made up here.
    const fallback = newId();
    this.broadcast(state, (to) => stanzaOf(msg, { type: 'groupchat', from, to, by: state.jid, fresh: () => fallback, markable, id }));
  }

  /**
   * Staying connected, no resource in the room: the line is kept in memory for the next join
   * (at most bouncer.maxLines, none older than bouncer.maxAge); a line naming the user's nick also
   * goes to the bare JID as a private message (the XMPP server stores it while the user is offline).
   */
  private keep(s: UserSession, state: RoomState, nick: string, msg: TextMessage): void {
    const limits = this.kit.settings.bouncer ?? { maxLines: 0, maxAge: 0 };
    if (!msg.text || msg.redacts || msg.reactions || nick === state.nick) return;
    const now = this.kit.clock.now();
    if (limits.maxLines > 0) {
      const backlog = (state.backlog ??= []);
      backlog.push({ nick, msg, at: now });
      while (backlog.length > limits.maxLines || (backlog.length && now.getTime() - backlog[0]!.at.getTime() > limits.maxAge)) backlog.shift();
    }
    if (mentions(msg.text, state.nick)) {
      this.kit.send(
        x('message', { type: 'chat', from: state.jid, to: s.user, id: newId() }, x('body', {}, `${nick} in ${state.room.name ?? state.room.id}: ${msg.action ? `/me ${msg.text}` : msg.text}`), x('delay', { xmlns: 'urn:xmpp:delay', from: state.jid, stamp: now.toISOString() })),
      );
    }
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

/** Whether a line names the nick as a word of its own (any case), as IRC clients highlight. */
export function mentions(text: string, nick: string): boolean {
  if (!nick) return false;
  const escaped = nick.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\p{L}\\p{N}_\\-\\[\\]\\\\^{}|\`])${escaped}($|[^\\p{L}\\p{N}_\\-\\[\\]\\\\^{}|\`])`, 'iu').test(text);
}
