/**
 * Registering with a room (XEP-0045 7.10): a user reserves a nick and becomes a member. In an open
 * room anyone not banned may register; in a members-only room only members (to reserve their
 * nick). `<remove/>` gives the membership up. The reserved nick is what 7.12 reports and what
 * others may not take (occupants.ts).
 */
import { x } from '../../../shared/xml/element.js';
import { NS } from '../../../shared/ns.js';
import type { StanzaEvent } from '../../core/hooks.js';
import type { MucService } from './service.js';
import type { Room } from './room.js';
import { applyAffiliation } from './admin.js';

const NS_REGISTER = 'jabber:iq:register';
const FORM = 'http://jabber.org/protocol/muc#register';
const MAX_NICK = 255;

export async function registerGet(svc: MucService, e: StanzaEvent, room: Room): Promise<void> {
  const aff = room.affiliationOf(e.from.bare);
  if (aff === 'outcast') return svc.error(e, 'forbidden', 'you are banned from this room', 'auth');
  const nick = room.affiliations.get(e.from.bare)?.nick;
  if (nick) return svc.result(e, x('query', { xmlns: NS_REGISTER }, x('registered'), x('username', {}, nick)));
  if (room.config.membersOnly && aff === 'none') return svc.error(e, 'registration-required', 'this room is for members only', 'auth');
  return svc.result(
    e,
    x(
      'query',
      { xmlns: NS_REGISTER },
      x('instructions', {}, 'Reserve a nickname in this room; you become a member.'),
      x(
        'x',
        { xmlns: NS.dataForms, type: 'form' },
        x('title', {}, 'Room registration'),
        x('field', { var: 'FORM_TYPE', type: 'hidden' }, x('value', {}, FORM)),
        x('field', { var: 'muc#register_roomnick', type: 'text-single', label: 'Nickname' }, x('required')),
      ),
    ),
  );
}

export async function registerSet(svc: MucService, e: StanzaEvent, room: Room): Promise<void> {
  const query = e.stanza.firstElement()!;
  const bare = e.from.bare;
  const aff = room.affiliationOf(bare);
  if (aff === 'outcast') return svc.error(e, 'forbidden', 'you are banned from this room', 'auth');
  if (query.getChild('remove')) {
    if (aff !== 'member') return svc.error(e, 'not-allowed', aff === 'none' ? 'you are not registered with this room' : 'owners and admins keep their affiliation', 'cancel');
    await applyAffiliation(svc, room, bare, 'none');
    await svc.persist(room);
    await svc.result(e);
    return;
  }
  const form = query.getChild('x', NS.dataForms);
  if (form?.attrs.type === 'cancel') return svc.result(e);
  const nick = form?.getChildren('field').find((f) => f.attrs.var === 'muc#register_roomnick')?.getChildText('value')?.trim() ?? '';
  if (!form || form.attrs.type !== 'submit' || nick === '' || [...nick].length > MAX_NICK) {
    return svc.error(e, 'not-acceptable', `submit the muc#register form with a nickname of 1 to ${MAX_NICK} characters`, 'modify');
  }
  if (room.config.membersOnly && aff === 'none') return svc.error(e, 'registration-required', 'this room is for members only', 'auth');
  const reserver = room.reservedBy(nick);
  const holder = room.occupants.get(nick);
  if ((reserver !== undefined && reserver !== bare) || (holder && holder.bare !== bare)) return svc.error(e, 'conflict', 'that nickname is taken in this room', 'cancel');
  await applyAffiliation(svc, room, bare, aff === 'none' ? 'member' : aff, { nick });
  // Stored before success is told (a room may move to another node in a cluster).
  await svc.persist(room);
  await svc.result(e);
}
