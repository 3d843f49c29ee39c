/**
 * Messages through a room: group chat (XEP-0045 7.4) stamped with a stanza id (XEP-0359) and the
 * sender's occupant id (XEP-0421), the subject (8.1), private messages (7.5), mediated invitations
 * and declines (7.8.2), voice requests (8.6), and XEP-0425 moderation (a moderator retracts a
 * message for everyone). Each occupant is limited in message size and rate (`muc.maxMessageSize`,
 * `muc.messagesPerMinute`).
 */
import { randomBytes } from 'node:crypto';
import { Element, serialize, x } from '../../../shared/xml/element.js';
import { NS } from '../../../shared/ns.js';
import { Jid } from '../../../shared/jid.js';
import type { StanzaEvent } from '../../core/hooks.js';
import type { MucService } from './service.js';
import type { Occupant, Room } from './room.js';
import { NS_CONFERENCE, NS_MODERATE, NS_MUC_REQUEST, NS_MUC_USER, NS_OCCUPANT_ID, NS_RETRACT, NS_STANZA_ID, affRank } from './roles.js';
import { leave } from './occupants.js';

const NS_HINTS = 'urn:xmpp:hints';

function isLocalUser(svc: MucService, full: string): boolean {
  const jid = Jid.tryParse(full);
  return jid !== null && jid.local !== '' && svc.ctx.router.isLocalHost(jid.domain);
}

const GONE_CONDITIONS = new Set(['gone', 'item-not-found', 'recipient-unavailable', 'remote-server-not-found', 'remote-server-timeout']);

/** Whether the occupant may send one more message now (token bucket over `muc.messagesPerMinute`). */
function takeToken(svc: MucService, occ: Occupant): boolean {
  const perMinute = svc.ctx.config.muc.messagesPerMinute;
  const burst = Math.max(1, Math.ceil(perMinute / 5));
  const now = svc.ctx.clock.now().getTime();
  occ.tokens = Math.min(burst, occ.tokens + ((now - occ.refilledAt) * perMinute) / 60_000);
  occ.refilledAt = now;
  if (occ.tokens < 1) return false;
  occ.tokens -= 1;
  return true;
}

/** The size and rate checks every message an occupant sends through the room passes; false when refused. */
async function withinLimits(svc: MucService, e: StanzaEvent, occ: Occupant): Promise<boolean> {
  const max = svc.ctx.config.muc.maxMessageSize;
  if (Buffer.byteLength(serialize(e.stanza)) > max) {
    await svc.error(e, 'policy-violation', `messages in this room may be at most ${max} bytes`, 'modify');
    return false;
  }
  if (!takeToken(svc, occ)) {
    await svc.error(e, 'resource-constraint', 'too many messages: wait a moment', 'wait');
    return false;
  }
  return true;
}

export async function onMessage(svc: MucService, e: StanzaEvent): Promise<void> {
  const { stanza, to, from } = e;
  if (!to.local) {
    if (stanza.attrs.type !== 'error') await svc.error(e, 'service-unavailable', 'the chat service takes no messages; send them to a room', 'cancel');
    return;
  }
  const room = svc.rooms.get(to.bare);
  const type = stanza.attrs.type ?? 'normal';
  if (type === 'error') {
    const occ = room?.sessions.get(from.full);
    const condition = stanza.getChild('error')?.elements[0]?.name;
    if (room && occ && GONE_CONDITIONS.has(condition ?? '')) await leave(svc, room, occ, from.full, [333]);
    return;
  }
  if (!room || (room.locked && room.affiliationOf(from.bare) !== 'owner')) return svc.error(e, 'item-not-found', 'no such room', 'cancel');
  const occ = room.sessions.get(from.full);
  if (to.resource) return privateMessage(svc, e, room, occ, to.resource);
  if (type === 'groupchat') return groupchat(svc, e, room, occ);
  const userX = stanza.getChild('x', NS_MUC_USER);
  if (userX?.getChild('invite')) return invite(svc, e, room, occ, userX.getChild('invite')!);
  if (userX?.getChild('decline')) return decline(svc, e, room, userX.getChild('decline')!);
  const form = stanza.getChild('x', NS.dataForms);
  if (form && form.getChildren('field').some((f) => f.attrs.var === 'FORM_TYPE' && f.getChildText('value') === NS_MUC_REQUEST)) return voiceRequest(svc, e, room, occ, form);
  if (stanza.getChild('body')) return svc.error(e, 'bad-request', 'messages to the room must be of type groupchat', 'modify');
}

async function groupchat(svc: MucService, e: StanzaEvent, room: Room, occ: Occupant | undefined): Promise<void> {
  const { stanza } = e;
  if (!occ) return svc.error(e, 'not-acceptable', 'you are not in this room', 'modify');
  if (occ.role === 'visitor' || occ.role === 'none') return svc.error(e, 'forbidden', 'you have no voice in this room', 'auth');
  if (!(await withinLimits(svc, e, occ))) return;
  const subject = stanza.getChild('subject');
  const body = stanza.getChild('body');
  if (subject && !body) {
    if (occ.role !== 'moderator' && !room.config.changeSubject) return svc.error(e, 'forbidden', 'only moderators may change the subject of this room', 'auth');
  }
  const out = stanza.clone();
  delete out.attrs.to;
  out.attrs.from = `${room.jid}/${occ.nick}`;
  out.attrs.type = 'groupchat';
  // Remove what only the room may say: its stanza ids and occupant ids (XEP-0359 3.1, XEP-0421 4).
  out.children = out.children.filter(
    (c) => typeof c === 'string' || !((c.is('stanza-id', NS_STANZA_ID) && c.attrs.by === room.jid) || c.xmlns === NS_OCCUPANT_ID || c.is('delay', NS.delay)),
  );
  const stanzaId = randomBytes(12).toString('base64url');
  out.append(x('stanza-id', { xmlns: NS_STANZA_ID, id: stanzaId, by: room.jid }));
  out.append(x('occupant-id', { xmlns: NS_OCCUPANT_ID, id: occ.occupantId }));
  const now = svc.ctx.clock.now().getTime();
  if (subject && !body) {
    room.subject = { text: subject.text(), nick: occ.nick, occupantId: occ.occupantId, at: now };
  } else if (body) {
    room.history.add(out, stanzaId, now);
  } else {
    // A retraction of one's own message (XEP-0424) also takes it out of the history.
    const retract = out.getChild('retract', NS_RETRACT);
    const target = retract?.attrs.id ? room.history.find(retract.attrs.id) : undefined;
    if (target && target.stanza.getChild('occupant-id', NS_OCCUPANT_ID)?.attrs.id === occ.occupantId) room.history.replace(target.stanzaId, null);
  }
  await svc.broadcast(room, out);
}

async function privateMessage(svc: MucService, e: StanzaEvent, room: Room, occ: Occupant | undefined, nick: string): Promise<void> {
  const { stanza } = e;
  if (stanza.attrs.type === 'groupchat') return svc.error(e, 'bad-request', 'group chat messages go to the room, not to an occupant', 'modify');
  if (!occ) return svc.error(e, 'not-acceptable', 'only occupants may send private messages in this room', 'modify');
  const target = room.occupants.get(nick);
  if (!target) return svc.error(e, 'item-not-found', 'no occupant with that nickname', 'cancel');
  const allow = room.config.allowPm;
  const permitted = allow === 'anyone' || (allow === 'participants' && (occ.role === 'participant' || occ.role === 'moderator')) || (allow === 'moderators' && occ.role === 'moderator');
  if (!permitted) return svc.error(e, 'forbidden', 'private messages are not allowed in this room', 'cancel');
  if (!(await withinLimits(svc, e, occ))) return;
  const out = stanza.clone();
  out.attrs.from = `${room.jid}/${occ.nick}`;
  out.children = out.children.filter((c) => typeof c === 'string' || c.xmlns !== NS_OCCUPANT_ID);
  if (!out.getChild('x', NS_MUC_USER)) out.append(x('x', { xmlns: NS_MUC_USER }));
  out.append(x('occupant-id', { xmlns: NS_OCCUPANT_ID, id: occ.occupantId }));
  for (const dest of target.sessions.keys()) {
    const copy = out.clone();
    copy.attrs.to = dest;
    // A session that is gone must not turn a room's private message into a stored offline
    // message on this server (nothing of a room's conversation on disk): XEP-0334 no-store.
    if (isLocalUser(svc, dest) && !copy.getChild('no-store', NS_HINTS)) copy.append(x('no-store', { xmlns: NS_HINTS }));
    await svc.send(copy);
  }
}

/** 7.8.2: a mediated invitation, sent on from the room; in a members-only room an admin's invitee becomes a member. */
async function invite(svc: MucService, e: StanzaEvent, room: Room, occ: Occupant | undefined, inv: Element): Promise<void> {
  const { from } = e;
  if (!occ) return svc.error(e, 'not-acceptable', 'only occupants may invite to this room', 'modify');
  const aff = room.affiliationOf(from.bare);
  // Anyone in an open room may point others to it; into a members-only room (the invitee becomes
  // a member) only admins and owners, or everyone when muc#roomconfig_allowinvites says so.
  const mayInvite = !room.config.membersOnly || room.config.allowInvites || affRank(aff) >= affRank('admin');
  if (!mayInvite) return svc.error(e, 'forbidden', 'only admins may invite others to this members-only room', 'auth');
  const toJid = inv.attrs.to;
  const invitee = toJid === undefined ? null : Jid.tryParse(toJid);
  if (!invitee) return svc.error(e, 'jid-malformed', 'the invitation needs a valid to address', 'modify');
  if (invitee.bare === room.jid) return svc.error(e, 'bad-request', 'a room cannot be invited to itself', 'modify');
  if (!(await withinLimits(svc, e, occ))) return;
  if (room.config.membersOnly && room.affiliationOf(invitee.bare) === 'none') {
    room.affiliations.set(invitee.bare, { affiliation: 'member', nick: null, reason: null });
    await svc.persist(room);
  }
  const reason = inv.getChildText('reason');
  await svc.send(
    x(
      'message',
      { from: room.jid, to: invitee.full, id: e.stanza.attrs.id ?? randomBytes(9).toString('base64url') },
      x(
        'x',
        { xmlns: NS_MUC_USER },
        x('invite', { from: from.bare }, reason ? x('reason', {}, reason) : null),
        room.config.password ? x('password', {}, room.config.password) : null,
      ),
      x('x', { xmlns: NS_CONFERENCE, jid: room.jid, reason, password: room.config.password || undefined }),
    ),
  );
}

async function decline(svc: MucService, e: StanzaEvent, room: Room, dec: Element): Promise<void> {
  const inviter = dec.attrs.to === undefined ? null : Jid.tryParse(dec.attrs.to);
  if (!inviter) return svc.error(e, 'jid-malformed', 'the decline needs a valid to address', 'modify');
  const reason = dec.getChildText('reason');
  await svc.send(
    x('message', { from: room.jid, to: inviter.full }, x('x', { xmlns: NS_MUC_USER }, x('decline', { from: e.from.bare }, reason ? x('reason', {}, reason) : null))),
  );
}

/** 8.6: a visitor asks for voice; the form goes on to the moderators, with the visitor's nick. */
async function voiceRequest(svc: MucService, e: StanzaEvent, room: Room, occ: Occupant | undefined, form: Element): Promise<void> {
  if (!occ) return svc.error(e, 'not-acceptable', 'only occupants may ask for voice', 'modify');
  const value = (v: string) => form.getChildren('field').find((f) => f.attrs.var === v)?.getChildText('value');
  if (occ.role === 'moderator' && form.attrs.type === 'submit') {
    // 8.6: a moderator's answer; an approval gives the visitor voice.
    const allow = value('muc#request_allow');
    const target = room.occupants.get(value('muc#roomnick') ?? '');
    if ((allow === 'true' || allow === '1') && target && target.role === 'visitor') {
      target.role = 'participant';
      await svc.roleChanged(room, target, 'visitor', { actorNick: occ.nick });
    }
    return;
  }
  if (!room.config.moderated || occ.role !== 'visitor') return;
  if (!(await withinLimits(svc, e, occ))) return;
  if (value('muc#role') !== 'participant') return;
  const request = x(
    'x',
    { xmlns: NS.dataForms, type: 'form' },
    x('title', {}, 'Voice request'),
    x('field', { var: 'FORM_TYPE', type: 'hidden' }, x('value', {}, NS_MUC_REQUEST)),
    x('field', { var: 'muc#role', type: 'list-single', label: 'Requested role' }, x('value', {}, 'participant')),
    x('field', { var: 'muc#roomnick', type: 'text-single', label: 'Nickname' }, x('value', {}, occ.nick)),
    x('field', { var: 'muc#request_allow', type: 'boolean', label: 'Grant voice?' }, x('value', {}, 'false')),
  );
  for (const mod of room.occupants.values()) {
    if (mod.role !== 'moderator') continue;
    for (const dest of mod.sessions.keys()) await svc.send(x('message', { from: room.jid, to: dest }, request.clone()));
  }
}

/** XEP-0425 (urn:xmpp:message-moderate:1): a moderator retracts a message by its stanza id. */
export async function moderate(svc: MucService, e: StanzaEvent, room: Room): Promise<void> {
  const occ = room.sessions.get(e.from.full);
  if (!occ || occ.role !== 'moderator') return svc.error(e, 'forbidden', 'only moderators may retract messages', 'auth');
  const req = e.stanza.getChild('moderate', NS_MODERATE)!;
  const id = req.attrs.id;
  if (!id || !req.getChild('retract', NS_RETRACT)) return svc.error(e, 'bad-request', 'moderate needs the stanza id and a <retract/>', 'modify');
  const reason = req.getChildText('reason');
  const target = room.history.find(id);
  const tombstoneFor = (original: Element | undefined) => {
    const m = x('message', { type: 'groupchat', from: room.jid, id: randomBytes(9).toString('base64url') });
    const retract = x(
      'retract',
      { xmlns: NS_RETRACT, id },
      x('moderated', { xmlns: NS_MODERATE, by: `${room.jid}/${occ.nick}` }, x('occupant-id', { xmlns: NS_OCCUPANT_ID, id: occ.occupantId })),
      reason ? x('reason', {}, reason) : null,
    );
    m.append(retract);
    const sender = original?.getChild('occupant-id', NS_OCCUPANT_ID);
    if (sender) m.append(sender.clone());
    return m;
  };
  const announce = tombstoneFor(target?.stanza);
  const stanzaId = randomBytes(12).toString('base64url');
  announce.append(x('stanza-id', { xmlns: NS_STANZA_ID, id: stanzaId, by: room.jid }));
  // The history keeps the retraction in the message's place, so later joiners learn of it too.
  if (target) room.history.replace(id, announce);
  await svc.result(e);
  await svc.broadcast(room, announce);
}
