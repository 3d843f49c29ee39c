/**
 * The moderator, admin and owner side of a room (XEP-0045 8-10): `muc#admin` lists and changes of
 * roles (kick 307, voice) and affiliations (ban 301, members, admins, owners; 321 and 322 for those
 * who lose their place, 101 by message to a user not in the room), the owner's `muc#owner`
 * configuration form (instant and reserved rooms, status codes 104/172/173 on changes) and room
 * destruction with an alternate venue.
 */
import { randomBytes } from 'node:crypto';
import { x, type Element } from '../../../shared/xml/element.js';
import { Jid } from '../../../shared/jid.js';
import type { StanzaEvent } from '../../core/hooks.js';
import type { MucService } from './service.js';
import type { Occupant, Room } from './room.js';
import {
  NS_MUC_ADMIN,
  NS_MUC_OWNER,
  NS_MUC_USER,
  affRank,
  defaultRole,
  isAffiliation,
  isRole,
  mayChangeAffiliation,
  mayChangeRole,
  type Affiliation,
  type Role,
} from './roles.js';
import { applyConfigForm, configChangeCodes, configForm } from './config-form.js';
import { NS } from '../../../shared/ns.js';

export async function adminGet(svc: MucService, e: StanzaEvent, room: Room): Promise<void> {
  const item = e.stanza.firstElement()!.getChild('item');
  const actor = room.sessions.get(e.from.full);
  const actorAff = room.affiliationOf(e.from.bare);
  if (item && isAffiliation(item.attrs.affiliation) && item.attrs.affiliation !== 'none') {
    const wanted = item.attrs.affiliation;
    // Occupants whose role muc#roomconfig_getmemberlist names see who belongs to the room (what
    // clients need for OMEMO in private rooms), but only where they may see real JIDs anyway;
    // the outcast list is for admins and owners.
    const memberView =
      wanted !== 'outcast' && actor !== undefined && room.config.getMemberList.includes(actor.role) && room.showsRealJidsTo(actor);
    if (affRank(actorAff) < affRank('admin') && !memberView) return svc.error(e, 'forbidden', 'only admins and owners may see this list', 'auth');
    const items = room.withAffiliation(wanted).map((jid) => {
      const a = room.affiliations.get(jid)!;
      return x('item', { affiliation: wanted, jid, nick: a.nick ?? undefined }, a.reason ? x('reason', {}, a.reason) : null);
    });
    return svc.result(e, x('query', { xmlns: NS_MUC_ADMIN }, items));
  }
  if (item && isRole(item.attrs.role) && item.attrs.role !== 'none') {
    const wanted = item.attrs.role;
    if (!actor || actor.role !== 'moderator') return svc.error(e, 'forbidden', 'only moderators may see this list', 'auth');
    const items = [...room.occupants.values()]
      .filter((o) => o.role === wanted)
      .map((o) => x('item', { role: o.role, affiliation: room.affiliationOf(o.bare), nick: o.nick, jid: room.showsRealJidsTo(actor) ? o.shown : undefined }));
    return svc.result(e, x('query', { xmlns: NS_MUC_ADMIN }, items));
  }
  return svc.error(e, 'bad-request', 'ask for one affiliation or role: <item affiliation="member"/>', 'modify');
}

interface RoleChange {
  kind: 'role';
  target: Occupant;
  role: Role;
  reason?: string;
}

interface AffChange {
  kind: 'affiliation';
  jid: string;
  affiliation: Affiliation;
  nick?: string;
  reason?: string;
}

/** 8.2-8.5 and 9.1-9.8: every item is checked before any is applied, so a list changes wholly or not at all. */
export async function adminSet(svc: MucService, e: StanzaEvent, room: Room): Promise<void> {
  const items = e.stanza.firstElement()!.getChildren('item');
  const actor = room.sessions.get(e.from.full);
  const actorAff = room.affiliationOf(e.from.bare);
  if (items.length === 0) return svc.error(e, 'bad-request', 'no item to change', 'modify');
  const changes: (RoleChange | AffChange)[] = [];
  const owners = new Set(room.withAffiliation('owner'));
  for (const item of items) {
    const reason = item.getChildText('reason') ?? undefined;
    if (item.attrs.affiliation !== undefined) {
      if (!isAffiliation(item.attrs.affiliation)) return svc.error(e, 'bad-request', 'unknown affiliation', 'modify');
      let jid: string | undefined;
      if (item.attrs.jid !== undefined) jid = Jid.tryParse(item.attrs.jid)?.bare;
      else if (item.attrs.nick !== undefined) jid = room.occupants.get(item.attrs.nick)?.bare;
      if (!jid) return svc.error(e, item.attrs.jid !== undefined ? 'jid-malformed' : 'item-not-found', 'the item needs a valid jid (or the nick of an occupant)', 'modify');
      if (affRank(actorAff) < affRank('admin')) return svc.error(e, 'forbidden', 'only admins and owners may change affiliations', 'auth');
      const current = room.affiliationOf(jid);
      if (!mayChangeAffiliation(actorAff, current, item.attrs.affiliation)) return svc.error(e, 'not-allowed', 'you may not change that affiliation', 'cancel');
      if (current === 'owner') owners.delete(jid);
      if (item.attrs.affiliation === 'owner') owners.add(jid);
      changes.push({ kind: 'affiliation', jid, affiliation: item.attrs.affiliation, nick: item.attrs.nick, reason });
    } else if (item.attrs.role !== undefined) {
      if (!isRole(item.attrs.role)) return svc.error(e, 'bad-request', 'unknown role', 'modify');
      const target = item.attrs.nick !== undefined ? room.occupants.get(item.attrs.nick) : undefined;
      if (!target) return svc.error(e, 'item-not-found', 'no occupant with that nickname', 'cancel');
      if (!actor || actor.role !== 'moderator') return svc.error(e, 'forbidden', 'only moderators may change roles', 'auth');
      if (!mayChangeRole(actor.role, actorAff, room.affiliationOf(target.bare), target.role, item.attrs.role)) {
        return svc.error(e, 'not-allowed', 'you may not change the role of that occupant', 'cancel');
      }
      changes.push({ kind: 'role', target, role: item.attrs.role, reason });
    } else {
      return svc.error(e, 'bad-request', 'each item needs a role or an affiliation', 'modify');
    }
  }
  if (owners.size === 0) return svc.error(e, 'conflict', 'a room keeps at least one owner', 'cancel');
  const actorNick = actor?.nick;
  let affChanged = false;
  for (const c of changes) {
    if (c.kind === 'role') await applyRole(svc, room, c.target, c.role, actorNick, c.reason);
    else {
      await applyAffiliation(svc, room, c.jid, c.affiliation, { actorNick, reason: c.reason, nick: c.nick });
      affChanged = true;
    }
  }
  // Stored before success is told: in a cluster the room may move to another node (from the database) at any moment.
  if (affChanged) await svc.persist(room);
  await svc.result(e);
}

async function applyRole(svc: MucService, room: Room, target: Occupant, role: Role, actorNick: string | undefined, reason: string | undefined): Promise<void> {
  if (room.occupants.get(target.nick) !== target) return;
  if (role === 'none') return svc.removeOccupant(room, target, { codes: [307], actorNick, reason });
  const oldRole = target.role;
  target.role = role;
  await svc.roleChanged(room, target, oldRole, { actorNick, reason });
}

/** Sets one affiliation and brings the occupants of that JID in line (ban 301, 321 in a members-only room, new roles). */
export async function applyAffiliation(
  svc: MucService,
  room: Room,
  jid: string,
  affiliation: Affiliation,
  d: { actorNick?: string; reason?: string; nick?: string } = {},
): Promise<void> {
  const before = room.affiliations.get(jid);
  if (affiliation === 'none') {
    room.affiliations.delete(jid);
    room.dropped.add(jid);
  } else room.affiliations.set(jid, { affiliation, nick: d.nick ?? before?.nick ?? null, reason: affiliation === 'outcast' ? (d.reason ?? null) : (before?.reason ?? null) });
  const present = [...room.occupants.values()].filter((o) => o.bare === jid);
  if (present.length === 0 && (before?.affiliation ?? 'none') !== affiliation) await tellAbsent(svc, room, jid, affiliation, d.reason);
  for (const occ of present) {
    if (affiliation === 'outcast') {
      await svc.removeOccupant(room, occ, { codes: [301], actorNick: d.actorNick, reason: d.reason, affiliation: 'outcast' });
    } else if (affiliation === 'none' && room.config.membersOnly) {
      await svc.removeOccupant(room, occ, { codes: [321], actorNick: d.actorNick, reason: d.reason });
    } else {
      const oldRole = occ.role;
      const role = defaultRole(affiliation, room.config.moderated);
      // A participant keeps voice it was given; a demoted moderator becomes a participant.
      occ.role = role === 'moderator' || occ.role === 'moderator' ? role : occ.role === 'visitor' && role === 'participant' && room.config.moderated ? 'visitor' : role;
      if (affiliation === 'member' && occ.role === 'visitor' && room.config.moderated) occ.role = 'participant';
      await svc.roleChanged(room, occ, oldRole, { actorNick: d.actorNick, reason: d.reason });
    }
  }
}

/** 101 (15.6): a user not in the room learns of a change of their affiliation, by a message to their bare JID. */
async function tellAbsent(svc: MucService, room: Room, jid: string, affiliation: Affiliation, reason: string | undefined): Promise<void> {
  if (room.locked || room.destroyed) return;
  const item = x('item', { affiliation, jid }, reason ? x('reason', {}, reason) : null);
  await svc.send(x('message', { from: room.jid, to: jid, id: randomBytes(9).toString('base64url') }, x('x', { xmlns: NS_MUC_USER }, item, x('status', { code: '101' }))));
}

export async function ownerGet(svc: MucService, e: StanzaEvent, room: Room): Promise<void> {
  if (room.affiliationOf(e.from.bare) !== 'owner') return svc.error(e, 'forbidden', 'only owners may configure the room', 'auth');
  const form = configForm(room.config, room.withAffiliation('admin'), room.withAffiliation('owner'), svc.limits);
  return svc.result(e, x('query', { xmlns: NS_MUC_OWNER }, form));
}

export async function ownerSet(svc: MucService, e: StanzaEvent, room: Room): Promise<void> {
  if (room.affiliationOf(e.from.bare) !== 'owner') return svc.error(e, 'forbidden', 'only owners may configure or destroy the room', 'auth');
  const query = e.stanza.firstElement()!;
  const destroyEl = query.getChild('destroy');
  if (destroyEl) {
    const alternate = destroyEl.attrs.jid !== undefined ? Jid.tryParse(destroyEl.attrs.jid)?.bare : undefined;
    if (destroyEl.attrs.jid !== undefined && !alternate) return svc.error(e, 'jid-malformed', 'the alternate venue must be a valid JID', 'modify');
    await svc.destroy(room, destroyEl.getChildText('reason') ?? undefined, alternate, destroyEl.getChildText('password') ?? undefined);
    return svc.result(e);
  }
  const form = query.getChild('x', NS.dataForms);
  if (!form) return svc.error(e, 'bad-request', 'send a data form or <destroy/>', 'modify');
  if (form.attrs.type === 'cancel') {
    // 10.1.3: cancelling the first configuration of a locked room destroys it.
    if (room.locked) await svc.destroy(room);
    return svc.result(e);
  }
  if (form.attrs.type !== 'submit') return svc.error(e, 'bad-request', 'the form must be of type submit or cancel', 'modify');
  const formType = form.getChildren('field').find((f) => f.attrs.var === 'FORM_TYPE')?.getChildText('value');
  if (formType !== undefined && formType !== 'http://jabber.org/protocol/muc#roomconfig') return svc.error(e, 'bad-request', 'not a muc#roomconfig form', 'modify');
  let submitted;
  try {
    submitted = applyConfigForm(form, room.config, svc.limits);
  } catch (err) {
    return svc.error(e, 'not-acceptable', (err as Error).message, 'modify');
  }
  const before = room.config;
  const changes = await validateLists(svc, e, room, submitted.owners, submitted.admins);
  if (!changes) return;
  room.config = submitted.config;
  room.history.setLimit(room.config.historyLength);
  const wasLocked = room.locked;
  room.locked = false;
  for (const [jid, aff] of changes) await applyAffiliation(svc, room, jid, aff);
  if (!wasLocked) await svc.statusMessage(room, configChangeCodes(before, room.config));
  await showBroadcastChange(svc, room, before.presenceBroadcast);
  if (room.config.membersOnly && !before.membersOnly) {
    for (const occ of [...room.occupants.values()]) if (room.affiliationOf(occ.bare) === 'none') await svc.removeOccupant(room, occ, { codes: [322] });
  }
  // Who sees real JIDs changed: everyone gets the presences again as they may now see them.
  if (before.whois !== room.config.whois) {
    for (const occ of room.occupants.values()) await svc.broadcastPresence(room, occ, (viewer, dest) => svc.presenceOf(room, occ, viewer, dest));
  }
  // Stored before success is told: in a cluster the room may move to another node (from the database) at any moment.
  await svc.persist(room);
  await svc.result(e);
  if (room.empty) await svc.roomEmptied(room);
}

/** The roles whose presence is broadcast changed: the others now see, or see leave, the occupants of those roles. */
async function showBroadcastChange(svc: MucService, room: Room, before: readonly string[]): Promise<void> {
  for (const occ of [...room.occupants.values()]) {
    const was = before.includes(occ.role);
    if (was === room.broadcasts(occ.role)) continue;
    for (const viewer of [...room.occupants.values()]) {
      if (viewer === occ) continue;
      for (const dest of viewer.sessions.keys()) await svc.send(was ? svc.unavailableOf(room, occ, viewer, dest) : svc.presenceOf(room, occ, viewer, dest));
    }
  }
}

/** The changes the form's owner and admin lists make; null (after answering) when they would leave no owner. */
async function validateLists(svc: MucService, e: StanzaEvent, room: Room, owners?: string[], admins?: string[]): Promise<[string, Affiliation][] | null> {
  const out: [string, Affiliation][] = [];
  const parse = (list: string[]) => list.map((j) => Jid.tryParse(j)?.bare ?? null);
  for (const [list, aff] of [
    [owners, 'owner'],
    [admins, 'admin'],
  ] as const) {
    if (!list) continue;
    const jids = parse(list);
    if (jids.some((j) => j === null)) {
      await svc.error(e, 'jid-malformed', `muc#roomconfig_room${aff}s holds an invalid JID`, 'modify');
      return null;
    }
    const want = new Set(jids as string[]);
    for (const j of room.withAffiliation(aff)) if (!want.has(j)) out.push([j, 'none']);
    for (const j of want) if (room.affiliationOf(j) !== aff) out.push([j, aff]);
  }
  const finalOwners = new Set(room.withAffiliation('owner'));
  for (const [j, aff] of out) {
    if (aff === 'owner') finalOwners.add(j);
    else if (room.affiliationOf(j) === 'owner' && !out.some(([k, a]) => k === j && a === 'owner')) finalOwners.delete(j);
  }
  if (finalOwners.size === 0) {
    await svc.error(e, 'conflict', 'a room keeps at least one owner', 'cancel');
    return null;
  }
  // Removals first, so a JID moved from owners to admins ends as admin.
  return out.sort((a, b) => (a[1] === 'none' ? 0 : 1) - (b[1] === 'none' ? 0 : 1));
}

/** The room's vCard (avatar): anyone reads it, owners set it (XEP-0054 on the room JID, XEP-0486). */
export async function vcardGet(svc: MucService, e: StanzaEvent, room: Room, parse: (xml: string) => Element | null): Promise<void> {
  const stored = room.config.vcard ? parse(room.config.vcard) : null;
  return svc.result(e, stored ?? x('vCard', { xmlns: NS.vcard }));
}

export const MAX_ROOM_VCARD = 128 * 1024;
