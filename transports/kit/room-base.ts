/**
 * The ground floor of the kit's MUC rooms (XEP-0045; the whole class is Rooms in rooms.ts): a
 * user's state for a room, the occupant presence the user is sent (muc#user item with affiliation,
 * role and the occupant's contact JID where the network exposes it), the join sequence, join
 * errors, and the room demands the sessions keep (sessions.ts).
 */
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';
import { Jid } from '../../shared/jid.js';
import type { LegacyRoom, Occupant, RoomHistoryItem } from './adapter.js';
import { stanzaOf } from './messages.js';
import type { Kit } from './kit-types.js';
import type { Address } from './addresses.js';
import type { UserSession } from './user-session.js';
import type { RoomState } from './room-state.js';
import { newId } from './contacts.js';
import { NS_MUC, NS_MUC_USER, errorElement, type ErrorType } from './stanzas.js';
import { avatarUpdateElement } from './avatars.js';

export type RoomAddress = Extract<Address, { kind: 'room' }>;

/** History for a joining resource: the network's (RoomHistoryItem) and the client's <history maxstanzas/>. */
export interface JoinHistory {
  items?: RoomHistoryItem[];
  /** null or absent: no limit. */
  limit?: number | null;
}

const JOIN_CONDITION_TYPES: Record<string, ErrorType> = {
  forbidden: 'auth',
  'not-authorized': 'auth',
  'registration-required': 'auth',
  'service-unavailable': 'wait',
  conflict: 'cancel',
  'item-not-found': 'cancel',
  'not-acceptable': 'cancel',
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

export abstract class RoomBase {
  constructor(protected readonly kit: Kit) {}

  protected stateFor(s: UserSession, room: LegacyRoom): RoomState | undefined {
    const jid = this.kit.addresses.roomJid(room, s.server);
    return jid ? s.rooms.get(jid) : undefined;
  }

  /** The session and room state a user has for a room JID, if any. */
  protected find(user: string, roomJid: string, server: string | undefined): { s: UserSession; state: RoomState } | null {
    const s = this.kit.sessions.get(user, server);
    const state = s?.rooms.get(roomJid);
    return s && state ? { s, state } : null;
  }

  protected presence(state: RoomState, nick: string, to: string, occ: Pick<Occupant, 'role' | 'affiliation' | 'contact'> | undefined, o: PresenceOptions = {}): Element | null {
    const from = jidWithResource(state.jid, nick);
    if (!from) return null;
    const contactJid = occ?.contact ? this.kit.addresses.contactJid(occ.contact, state.room.server) : null;
    const item = x(
      'item',
      { affiliation: occ?.affiliation ?? 'none', role: o.type === 'unavailable' ? 'none' : (occ?.role ?? 'participant'), jid: contactJid ?? undefined, nick: o.newNick },
      o.actor ? x('actor', { nick: o.actor }) : null,
      o.reason ? x('reason', {}, o.reason) : null,
    );
    const contact = o.type !== 'unavailable' && this.kit.avatars ? occ?.contact : undefined;
    let avatar: Element | null = null;
    if (contact?.avatar) {
      const hash = this.kit.avatars!.hashOf(contact);
      avatar = avatarUpdateElement(hash);
      if (hash === undefined) this.fetchAvatar(state, nick, contact, to);
    }
    return x(
      'presence',
      { from, to, type: o.type },
      x('x', { xmlns: NS_MUC_USER }, item, (o.codes ?? []).map((c) => x('status', { code: c }))),
      avatar,
    );
  }

  /** Occupants whose picture is being fetched (room JID + nick). */
  private readonly avatarsWanted = new Set<string>();

  /** Fetches an occupant's picture in the background, then sends its presence again with the XEP-0153 hash. */
  private fetchAvatar(state: RoomState, nick: string, contact: NonNullable<Occupant['contact']>, to: string): void {
    const key = `${state.jid}/${nick}`;
    const user = Jid.tryParse(to)?.bare;
    const legacy = user ? this.kit.sessions.get(user, state.room.server)?.legacy : undefined;
    if (!legacy?.fetchAvatar || this.avatarsWanted.has(key)) return;
    this.avatarsWanted.add(key);
    void this.kit.avatars!.get(legacy, contact)
      .then((got) => {
        const now = state.occupants.get(nick);
        if (!got || !state.joined || now?.contact?.avatar !== contact.avatar) return;
        for (const resource of state.resources.keys()) this.send(this.presence(state, nick, resource, now));
      })
      .finally(() => this.avatarsWanted.delete(key));
  }

  protected send(el: Element | null): void {
    if (el) this.kit.send(el);
  }

  protected ownOccupant(state: RoomState): Occupant {
    return state.occupants.get(state.nick) ?? { nick: state.nick, role: 'participant', affiliation: 'none' };
  }

  /**
   * The join sequence for one resource: occupants, self-presence (110, 210), history (the
   * network's own, then lines kept while staying connected; at most the client's maxstanzas, with
   * delays), subject.
   */
  protected sendJoinSequence(state: RoomState, to: string, requestedNick: string, history: JoinHistory = {}): void {
    for (const [nick, occ] of state.occupants) {
      if (nick === state.nick) continue;
      this.send(this.presence(state, nick, to, occ));
    }
    const codes = [110];
    if (requestedNick !== state.nick) codes.push(210);
    this.send(this.presence(state, state.nick, to, this.ownOccupant(state), { codes }));
    const limit = history.limit ?? null;
    const items = history.items ?? [];
    const fromNetwork = limit === null ? items : items.slice(Math.max(0, items.length - Math.max(0, limit - this.backlogSize(state))));
    for (const h of fromNetwork) {
      const from = jidWithResource(state.jid, h.nick);
      if (from) this.kit.send(stanzaOf(h.message, { type: 'groupchat', from, to, by: state.jid, fresh: newId, markable: false }));
    }
    this.sendBacklog(state, to, limit);
    const by = state.subjectBy && jidWithResource(state.jid, state.subjectBy);
    this.kit.send(x('message', { type: 'groupchat', from: by || state.jid, to, id: newId() }, x('subject', {}, state.subject ?? '')));
  }

  /**
   * Staying connected: the lines kept while no resource was in the room, as MUC history with
   * their time (XEP-0203), to the first resource that joins; then they are forgotten.
   * `limit`: the client's <history maxstanzas/> (null: all).
   */
  private backlogSize(state: RoomState): number {
    return state.backlog?.length ?? 0;
  }

  private sendBacklog(state: RoomState, to: string, limit: number | null): void {
    const lines = state.backlog;
    if (!lines?.length) return;
    state.backlog = [];
    const maxAge = this.kit.settings.bouncer?.maxAge ?? 0;
    const now = this.kit.clock.now().getTime();
    const fresh = lines.filter((l) => now - l.at.getTime() <= maxAge);
    for (const l of limit === null ? fresh : fresh.slice(Math.max(0, fresh.length - limit))) {
      const from = jidWithResource(state.jid, l.nick);
      if (!from) continue;
      this.kit.send(stanzaOf({ ...l.msg, timestamp: l.msg.timestamp ?? l.at }, { type: 'groupchat', from, to, by: state.jid, fresh: newId, markable: false }));
    }
  }

  protected joinError(state: { jid: string }, nick: string, to: string, condition: string, text: string): void {
    const from = jidWithResource(state.jid, nick) ?? state.jid;
    this.kit.send(x('presence', { type: 'error', from, to }, x('x', { xmlns: NS_MUC }), errorElement(condition, text, JOIN_CONDITION_TYPES[condition])));
  }

  protected async dropDemand(user: string, fulls: Iterable<string>, roomJid: string): Promise<void> {
    for (const full of fulls) {
      const jid = parseFull(full);
      if (jid) await this.kit.sessions.removeRoomDemand(jid, roomJid);
    }
    void user;
  }

  protected broadcast(state: RoomState, build: (to: string) => Element | null): void {
    for (const full of state.resources.keys()) this.send(build(full));
  }
}

export function jidWithResource(bare: string, resource: string): string | null {
  const j = Jid.tryParse(bare);
  if (!j) return null;
  return Jid.of(j.local, j.domain, resource)?.full ?? null;
}

export function parseFull(full: string): Jid | null {
  return Jid.tryParse(full);
}
