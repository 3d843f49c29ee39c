/**
 * Service discovery of the chat service and its rooms (XEP-0045 6): the service's identity and
 * its public rooms (hidden and locked rooms are never listed), a room's identity, features and
 * `muc#roominfo` form. No occupant is listed in a room's disco#items (6.5 allows it; nothing
 * needs it, and it would show members-only occupants to anyone).
 */
import { createHash } from 'node:crypto';
import { x, type Element } from '../../../shared/xml/element.js';
import { NS } from '../../../shared/ns.js';
import { roomInfoForm } from './config-form.js';
import type { Room } from './room.js';
import { NS_MODERATE, NS_MUC, NS_MUC_UNIQUE, NS_OCCUPANT_ID, NS_STANZA_ID } from './roles.js';
import { parseXmlText } from '../../../shared/xml/parse-xml.js';

export function serviceInfo(): Element {
  return x(
    'query',
    { xmlns: NS.discoInfo },
    x('identity', { category: 'conference', type: 'text', name: 'Chatrooms' }),
    [NS.discoInfo, NS.discoItems, NS_MUC, NS_MUC_UNIQUE, NS.ping].map((v) => x('feature', { var: v })),
  );
}

export function serviceItems(rooms: Iterable<Room>): Element {
  return listedItems([...rooms].filter((r) => !r.destroyed).map((r) => ({ jid: r.jid, name: r.config.name, public: r.config.public, locked: r.locked })));
}

/** The public, configured rooms as disco items (in a cluster, gathered from every node). */
export function listedItems(rooms: readonly { jid: string; name: string; public: boolean; locked: boolean }[]): Element {
  const listed = rooms.filter((r) => r.public && !r.locked).sort((a, b) => (a.jid < b.jid ? -1 : 1));
  return x('query', { xmlns: NS.discoItems }, listed.map((r) => x('item', { jid: r.jid, name: r.name || r.jid.slice(0, r.jid.indexOf('@')) })));
}

/** The SHA-1 of the room avatar's image (XEP-0486), or null without one. */
export function avatarHash(room: Room): string | null {
  if (!room.config.vcard) return null;
  const card = parseXmlText(room.config.vcard);
  const binval = card?.getChild('PHOTO')?.getChildText('BINVAL');
  if (!binval) return null;
  return createHash('sha1').update(Buffer.from(binval.replace(/\s+/g, ''), 'base64')).digest('hex');
}

export function roomInfo(room: Room): Element {
  const c = room.config;
  const features = [
    NS_MUC,
    'http://jabber.org/protocol/muc#stable_id',
    'http://jabber.org/protocol/muc#self-ping-optimization',
    NS.discoInfo,
    NS.discoItems,
    NS.ping,
    c.persistent ? 'muc_persistent' : 'muc_temporary',
    c.public ? 'muc_public' : 'muc_hidden',
    c.membersOnly ? 'muc_membersonly' : 'muc_open',
    c.password ? 'muc_passwordprotected' : 'muc_unsecured',
    c.moderated ? 'muc_moderated' : 'muc_unmoderated',
    room.nonAnonymous ? 'muc_nonanonymous' : 'muc_semianonymous',
    NS_STANZA_ID,
    NS_OCCUPANT_ID,
    NS_MODERATE,
    NS.vcard,
    'http://jabber.org/protocol/muc#request',
    'jabber:iq:register',
  ];
  return x(
    'query',
    { xmlns: NS.discoInfo },
    x('identity', { category: 'conference', type: 'text', name: c.name || room.name }),
    features.map((v) => x('feature', { var: v })),
    roomInfoForm(c, room.occupants.size, room.subject?.text ?? '', avatarHash(room)),
  );
}
