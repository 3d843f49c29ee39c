/**
 * Presence to a room (XEP-0045 7.1-7.2, 7.6, 7.14): entering (creating the room when it does not
 * exist, 10.1), presence updates, nick changes (303) and leaving; each refusal with the condition
 * of 7.2.6-7.2.11. Several sessions of one user may share a nick (7.2 multi-session).
 */
import { x, type Element } from '../../../shared/xml/element.js';
import type { StanzaEvent } from '../../core/hooks.js';
import type { MucService } from './service.js';
import type { Occupant, Room } from './room.js';
import { NS_MUC, NS_MUC_USER, defaultRole } from './roles.js';
import { historyRequest } from './history.js';
import { delayed, subjectMessage } from './join-messages.js';

const MAX_NICK = 255;
/** Errors an occupant's client or server sends back that mean the session is gone (7.14 / XEP-0410). */
const GONE_CONDITIONS = new Set(['gone', 'item-not-found', 'recipient-unavailable', 'remote-server-not-found', 'remote-server-timeout']);

export async function onPresence(svc: MucService, e: StanzaEvent): Promise<void> {
  const { stanza, to, from } = e;
  const type = stanza.attrs.type;
  if (!to.local) return; // presence to the service itself means nothing
  const room = svc.rooms.get(to.bare);
  if (type === 'error') {
    const occ = room?.sessions.get(from.full);
    const condition = stanza.getChild('error')?.elements[0]?.name;
    if (room && occ && GONE_CONDITIONS.has(condition ?? '')) await leave(svc, room, occ, from.full, [333]);
    return;
  }
  if (type === 'unavailable') {
    const occ = room?.sessions.get(from.full);
    if (room && occ) await leave(svc, room, occ, from.full, [], stanza.getChild('status'));
    return;
  }
  if (type !== undefined && type !== 'available') return; // subscriptions and probes: nothing to do
  if (!to.resource) return svc.error(e, 'jid-malformed', 'a nickname is needed to enter a room (send presence to room@service/nick)', 'modify');
  if ([...to.resource].length > MAX_NICK) return svc.error(e, 'not-acceptable', `nicknames are at most ${MAX_NICK} characters`, 'modify');
  const occ = room?.sessions.get(from.full);
  const rejoin = stanza.getChild('x', NS_MUC) !== undefined;
  if (room && occ) {
    if (occ.nick !== to.resource) return changeNick(svc, e, room, occ, to.resource);
    occ.sessions.set(from.full, stripped(stanza));
    occ.shown = from.full;
    if (rejoin) {
      for (const other of room.occupants.values()) {
        if (other === occ || !room.broadcasts(occ.role)) continue;
        for (const dest of other.sessions.keys()) await svc.send(svc.presenceOf(room, occ, other, dest));
      }
      return sendJoinState(svc, room, occ, from.full, stanza);
    }
    return svc.broadcastPresence(room, occ, (viewer, dest) => svc.presenceOf(room, occ, viewer, dest));
  }
  return join(svc, e, room);
}

function stripped(stanza: Element): Element {
  const p = stanza.clone();
  delete p.attrs.to;
  delete p.attrs.from;
  p.children = p.children.filter((c) => typeof c === 'string' || !(c.xmlns === NS_MUC || c.xmlns === NS_MUC_USER));
  return p;
}

async function join(svc: MucService, e: StanzaEvent, existing: Room | undefined): Promise<void> {
  const { stanza, from, to } = e;
  const nick = to.resource;
  const mucX = stanza.getChild('x', NS_MUC);
  let room = existing;
  let created = false;
  if (!room) {
    const refusal = svc.creationRefusal(from, to.domain);
    if (refusal) return svc.error(e, 'not-allowed', refusal, 'cancel');
    const max = svc.ctx.config.muc.maxRoomsPerUser;
    if (max > 0 && (await svc.roomsOwnedAnywhere(from.bare)) >= max) return svc.error(e, 'resource-constraint', `a user may own at most ${max} rooms here`, 'wait');
    room = svc.newRoom(to.local, to.domain);
    room.affiliations.set(from.bare, { affiliation: 'owner', nick: null, reason: null });
    // A client speaking MUC configures the room first (10.1.1); an old one gets an instant room.
    room.locked = mucX !== undefined;
    created = true;
  }
  const aff = room.affiliationOf(from.bare);
  if (room.locked && aff !== 'owner') return svc.error(e, 'item-not-found', 'the room is being set up by its owner', 'cancel');
  if (aff === 'outcast') return svc.error(e, 'forbidden', 'you are banned from this room', 'auth');
  if (room.config.membersOnly && aff === 'none') return svc.error(e, 'registration-required', 'this room is for members only', 'auth');
  if (room.config.password !== '' && aff !== 'owner' && aff !== 'admin') {
    const given = mucX?.getChildText('password');
    if (given !== room.config.password) return svc.error(e, 'not-authorized', 'a password is needed to enter this room', 'auth');
  }
  const holder = room.occupants.get(nick);
  if (holder && holder.bare !== from.bare) return svc.error(e, 'conflict', 'that nickname is in use in this room', 'cancel');
  const reserver = room.reservedBy(nick);
  if (reserver !== undefined && reserver !== from.bare) return svc.error(e, 'conflict', 'that nickname is reserved by a member of this room', 'cancel');
  if (!holder && room.occupants.size >= Math.min(room.config.maxUsers, svc.ctx.config.muc.maxOccupants) && aff !== 'owner' && aff !== 'admin') {
    return svc.error(e, 'service-unavailable', 'the room is full', 'wait');
  }

  let occ = holder;
  if (occ) {
    occ.sessions.set(from.full, stripped(stanza));
    occ.shown = from.full;
  } else {
    occ = {
      nick,
      bare: from.bare,
      sessions: new Map([[from.full, stripped(stanza)]]),
      shown: from.full,
      role: defaultRole(aff, room.config.moderated),
      occupantId: svc.occupantId(room, from.bare),
      tokens: burstOf(svc),
      refilledAt: svc.ctx.clock.now().getTime(),
    };
  }
  // 7.2.3: the others' presence to the newcomer, the newcomer's to the others, then self-presence.
  for (const other of room.occupants.values()) {
    if (other === occ || !room.broadcasts(other.role)) continue;
    await svc.send(svc.presenceOf(room, other, occ, from.full));
  }
  room.sessions.set(from.full, occ);
  const shown = room.broadcasts(occ.role);
  const codes = [...(room.nonAnonymous ? [100] : []), ...(created ? [201] : [])];
  if (!holder) {
    if (shown) for (const other of room.occupants.values()) for (const dest of other.sessions.keys()) await svc.send(svc.presenceOf(room, occ, other, dest));
    room.occupants.set(nick, occ);
  } else {
    for (const other of room.occupants.values()) {
      if (other === occ || !shown) continue;
      for (const dest of other.sessions.keys()) await svc.send(svc.presenceOf(room, occ, other, dest));
    }
  }
  await svc.send(svc.presenceOf(room, occ, occ, from.full, { codes }));
  if (created && !room.locked) await svc.persist(room);
  // A persistent room in use is not an unused one (retention class muc-rooms).
  if (room.storedId !== null && room.occupants.size === 1) await svc.repo.touch(room.storedId, svc.ctx.clock.now()).catch(() => {});
  await sendHistoryAndSubject(svc, room, from.full, mucX);
}

/** A rejoin of a session already in the room (a client that lost track, XEP-0410): the whole state again. */
async function sendJoinState(svc: MucService, room: Room, occ: Occupant, full: string, stanza: Element): Promise<void> {
  for (const other of room.occupants.values()) if (other !== occ && room.broadcasts(other.role)) await svc.send(svc.presenceOf(room, other, occ, full));
  const codes = room.nonAnonymous ? [100] : [];
  await svc.send(svc.presenceOf(room, occ, occ, full, { codes }));
  await sendHistoryAndSubject(svc, room, full, stanza.getChild('x', NS_MUC));
}

async function sendHistoryAndSubject(svc: MucService, room: Room, full: string, mucX: Element | undefined): Promise<void> {
  const now = svc.ctx.clock.now().getTime();
  for (const entry of room.history.select(historyRequest(mucX?.getChild('history')), now)) {
    await svc.send(delayed(entry.stanza, entry.at, room.jid, full));
  }
  await svc.send(subjectMessage(room, full));
}

function burstOf(svc: MucService): number {
  return Math.max(1, Math.ceil(svc.ctx.config.muc.messagesPerMinute / 5));
}

/** One session leaves (7.14); the occupant goes with its last session. */
export async function leave(svc: MucService, room: Room, occ: Occupant, full: string, codes: number[], status?: Element): Promise<void> {
  room.sessions.delete(full);
  occ.sessions.delete(full);
  if (occ.sessions.size > 0) {
    await svc.send(svc.unavailableOf(room, occ, occ, full, { codes }, status));
    if (occ.shown === full) {
      occ.shown = [...occ.sessions.keys()].pop()!;
      await svc.broadcastPresence(room, occ, (viewer, dest) => svc.presenceOf(room, occ, viewer, dest));
    }
    return;
  }
  // The unavailable presence shows the session that left.
  occ.sessions.set(full, x('presence'));
  occ.shown = full;
  room.occupants.delete(occ.nick);
  await svc.broadcastPresence(room, occ, (viewer, dest) => svc.unavailableOf(room, occ, viewer, dest, { codes }, status));
  occ.sessions.clear();
  await svc.roomEmptied(room);
}

/** 7.6: the nick changes for every session of the occupant. */
async function changeNick(svc: MucService, e: StanzaEvent, room: Room, occ: Occupant, nick: string): Promise<void> {
  const holder = room.occupants.get(nick);
  if (holder && holder !== occ) return svc.error(e, 'conflict', 'that nickname is in use in this room', 'cancel');
  const reserver = room.reservedBy(nick);
  if (reserver !== undefined && reserver !== occ.bare) return svc.error(e, 'conflict', 'that nickname is reserved by a member of this room', 'cancel');
  const old = occ.nick;
  occ.sessions.set(e.from.full, stripped(e.stanza));
  occ.shown = e.from.full;
  await svc.broadcastPresence(room, occ, (viewer, dest) => svc.unavailableOf(room, occ, viewer, dest, { codes: [303], newNick: nick, role: occ.role }));
  room.occupants.delete(old);
  occ.nick = nick;
  room.occupants.set(nick, occ);
  await svc.broadcastPresence(room, occ, (viewer, dest) => svc.presenceOf(room, occ, viewer, dest));
}
