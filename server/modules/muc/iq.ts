/**
 * IQs to the service, a room or an occupant: disco, `muc#admin`, `muc#owner`, the room's vCard,
 * XEP-0425 moderation, pings; XEP-0410 self-ping (answered by the room for a joined session,
 * not-acceptable otherwise); and other IQs to an occupant, relayed to one of its sessions
 * (7.x "IQ to an occupant") with the answer relayed back.
 */
import { randomBytes } from 'node:crypto';
import { x } from '../../../shared/xml/element.js';
import { NS } from '../../../shared/ns.js';
import { parseXmlText } from '../../../shared/xml/parse-xml.js';
import type { StanzaEvent } from '../../core/hooks.js';
import type { MucService } from './service.js';
import type { Room } from './room.js';
import { NS_MODERATE, NS_MUC_ADMIN, NS_MUC_OWNER, NS_MUC_UNIQUE } from './roles.js';
import { serviceInfo, serviceItems, listedItems, roomInfo } from './disco.js';
import { adminGet, adminSet, ownerGet, ownerSet, vcardGet, MAX_ROOM_VCARD } from './admin.js';
import { moderate } from './messages.js';
import { registerGet, registerSet } from './registration.js';
import { serialize } from '../../../shared/xml/element.js';

interface Relayed {
  id: string;
  asker: string;
  /** The occupant JID the question was sent to (the answer comes from the real session). */
  occupantJid: string;
  /** Who must answer: the occupant's session, or its bare JID for a vCard. */
  answerer: string;
  /** The nick asked (the answer comes from it). */
  nick: string;
  at: number;
}

const RELAY_TTL_MS = 60_000;

export class IqHandler {
  private readonly relayed = new Map<string, Relayed>();

  constructor(private readonly svc: MucService) {}

  async handle(e: StanzaEvent): Promise<void> {
    const { svc } = this;
    const { stanza, to } = e;
    const type = stanza.attrs.type;
    if (type === 'result' || type === 'error') return this.answer(e);
    if (type !== 'get' && type !== 'set') return;
    const child = stanza.firstElement();
    if (!child) return svc.error(e, 'bad-request', 'an IQ needs a child element', 'modify');
    const what = `${type} ${child.xmlns ?? ''} ${child.name}`;
    if (!to.local) {
      if (child.attrs.node !== undefined && child.xmlns?.startsWith('http://jabber.org/protocol/disco')) return svc.error(e, 'item-not-found', 'no such node', 'cancel');
      if (what === `get ${NS.discoInfo} query`) return svc.result(e, serviceInfo());
      if (what === `get ${NS.discoItems} query`) {
        if (svc.cluster) return svc.result(e, listedItems((await svc.cluster.allRooms()).filter((r) => r.jid.endsWith(`@${to.domain}`))));
        return svc.result(e, serviceItems(svc.rooms.values()));
      }
      if (what === `get ${NS.ping} ping`) return svc.result(e);
      // XEP-0307 / XEP-0045 10.1.4: a room name nobody uses, for a client creating a private room.
      if (what === `get ${NS_MUC_UNIQUE} unique`) return svc.result(e, x('unique', { xmlns: NS_MUC_UNIQUE }, svc.uniqueRoomName()));
      return svc.error(e, 'service-unavailable', 'not supported by the chat service', 'cancel');
    }
    const room = svc.rooms.get(to.bare);
    const owner = room !== undefined && room.affiliationOf(e.from.bare) === 'owner';
    if (!room || (room.locked && !owner)) return svc.error(e, 'item-not-found', 'no such room', 'cancel');
    if (to.resource) return this.toOccupant(e, room, what);
    switch (what) {
      case `get ${NS.discoInfo} query`:
        if (child.attrs.node === 'x-roomuser-item') {
          // 7.12: the asker's reserved nickname, if any.
          const nick = room.affiliations.get(e.from.bare)?.nick;
          return svc.result(e, x('query', { xmlns: NS.discoInfo, node: 'x-roomuser-item' }, nick ? x('identity', { category: 'conference', type: 'text', name: nick }) : null));
        }
        if (child.attrs.node !== undefined) return svc.error(e, 'item-not-found', 'no such node', 'cancel');
        return svc.result(e, roomInfo(room));
      case `get ${NS.discoItems} query`:
        return svc.result(e, x('query', { xmlns: NS.discoItems }));
      case `get ${NS_MUC_ADMIN} query`:
        return adminGet(svc, e, room);
      case `set ${NS_MUC_ADMIN} query`:
        return adminSet(svc, e, room);
      case `get ${NS_MUC_OWNER} query`:
        return ownerGet(svc, e, room);
      case `set ${NS_MUC_OWNER} query`:
        return ownerSet(svc, e, room);
      case `get ${NS.vcard} vCard`:
        return vcardGet(svc, e, room, (xml) => parseXmlText(xml));
      case `set ${NS.vcard} vCard`:
        return this.vcardSet(e, room);
      case `get jabber:iq:register query`:
        return registerGet(svc, e, room);
      case `set jabber:iq:register query`:
        return registerSet(svc, e, room);
      case `set ${NS_MODERATE} moderate`:
        return moderate(svc, e, room);
      case `get ${NS.ping} ping`:
        return svc.result(e);
      default:
        return svc.error(e, 'service-unavailable', 'not supported by this room', 'cancel');
    }
  }

  private async vcardSet(e: StanzaEvent, room: Room): Promise<void> {
    const { svc } = this;
    if (room.affiliationOf(e.from.bare) !== 'owner') return svc.error(e, 'forbidden', 'only owners may set the room\'s vCard', 'auth');
    const card = e.stanza.firstElement()!;
    const text = serialize(card);
    if (text.length > MAX_ROOM_VCARD) return svc.error(e, 'not-acceptable', `a room vCard may be at most ${MAX_ROOM_VCARD} bytes`, 'modify');
    room.config = { ...room.config, vcard: card.elements.length === 0 ? '' : text };
    await svc.persist(room);
    await svc.result(e);
    await svc.statusMessage(room, [104]);
  }

  /** IQs to room@service/nick. */
  private async toOccupant(e: StanzaEvent, room: Room, what: string): Promise<void> {
    const { svc } = this;
    const sender = room.sessions.get(e.from.full);
    const target = room.occupants.get(e.to.resource);
    if (what === `get ${NS.ping} ping`) {
      // XEP-0410: the room answers for the asker's own nick; not-acceptable means "join again".
      if (!sender) return svc.error(e, 'not-acceptable', 'you are not in this room', 'cancel');
      if (sender === target) return svc.result(e);
    }
    if (!sender) return svc.error(e, 'not-acceptable', 'only occupants may send requests to occupants', 'cancel');
    if (!target) return svc.error(e, 'item-not-found', 'no occupant with that nickname', 'cancel');
    this.prune();
    const id = 'muc-' + randomBytes(9).toString('base64url');
    // vCard requests are for the occupant's account (XEP-0054 is per bare JID), the rest for a session.
    const dest = what === `get ${NS.vcard} vCard` ? target.bare : target.shown;
    this.relayed.set(id, { id: e.stanza.attrs.id ?? '', asker: e.from.full, occupantJid: `${room.jid}/${sender.nick}`, answerer: dest, nick: target.nick, at: Date.now() });
    const out = e.stanza.clone();
    out.attrs.id = id;
    out.attrs.from = `${room.jid}/${sender.nick}`;
    out.attrs.to = dest;
    await svc.send(out);
  }

  /** An answer to a relayed IQ: back to the asker, from the occupant JID it asked. */
  private async answer(e: StanzaEvent): Promise<void> {
    const id = e.stanza.attrs.id;
    const r = id ? this.relayed.get(id) : undefined;
    if (!r || r.answerer !== e.from.full || r.occupantJid !== e.to.full) return;
    this.relayed.delete(id!);
    const out = e.stanza.clone();
    out.attrs.id = r.id;
    out.attrs.from = `${e.to.bare}/${r.nick}`;
    out.attrs.to = r.asker;
    await this.svc.send(out);
  }

  private prune(): void {
    const cut = Date.now() - RELAY_TTL_MS;
    for (const [k, r] of this.relayed) if (r.at < cut) this.relayed.delete(k);
  }
}
