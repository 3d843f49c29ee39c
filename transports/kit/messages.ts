/**
 * Messages between XMPP stanzas and the adapter's TextMessage, both ways:
 *
 *   body, /me                       text, action
 *   id attribute                    id (the kit's id of a message the user sent; the network's id
 *                                   of a message from the network becomes the stanza id, and in
 *                                   rooms also the XEP-0359 stanza-id, by which clients refer to
 *                                   groupchat messages)
 *   XEP-0308 <replace id/>          editOf
 *   XEP-0424 <retract id/>          redacts (also the older fastened message-retract:0 form)
 *   XEP-0444 <reactions id/>        reactions (the sender's whole current set)
 *   XEP-0461 <reply id/>            replyTo
 *   XEP-0066 <x><url/></x>          attachments
 *   XEP-0203 <delay/>               timestamp (from the network only)
 *   XEP-0333 markers                markRead / 'displayed' (contacts.ts, rooms.ts)
 *
 * Nothing of a message is ever logged or stored by the kit.
 */
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { TextMessage } from './adapter.js';
import { delayElement } from './stanzas.js';

export const NS_CORRECT = 'urn:xmpp:message-correct:0';
export const NS_RETRACT = 'urn:xmpp:message-retract:1';
export const NS_RETRACT_0 = 'urn:xmpp:message-retract:0';
export const NS_FASTEN = 'urn:xmpp:fasten:0';
export const NS_REACTIONS = 'urn:xmpp:reactions:0';
export const NS_REPLY = 'urn:xmpp:reply:0';
export const NS_MARKERS = 'urn:xmpp:chat-markers:0';
export const NS_SID = 'urn:xmpp:sid:0';
export const NS_FALLBACK = 'urn:xmpp:fallback:0';
export const NS_HINTS = 'urn:xmpp:hints';
export const NS_CONFERENCE = 'jabber:x:conference';

/** The id of a message the kit sends: the network's id when it has one, else a fresh one. */
function idOf(msg: TextMessage, fresh: () => string): string {
  return msg.id && /^[\x21-\x7e\u00a0-\uffff]{1,256}$/u.test(msg.id) ? msg.id : fresh();
}

/**
 * What a user's message asks the network to do, or null when it carries nothing for it (a chat
 * state or a marker alone).
 */
export function textMessageOf(stanza: Element): TextMessage | null {
  const id = stanza.attrs.id || undefined;
  const retract = stanza.getChild('retract', NS_RETRACT);
  if (retract?.attrs.id) return { text: '', redacts: retract.attrs.id, ...(id ? { id } : {}) };
  const fastened = stanza.getChild('apply-to', NS_FASTEN);
  if (fastened?.attrs.id && fastened.getChild('retract', NS_RETRACT_0)) return { text: '', redacts: fastened.attrs.id, ...(id ? { id } : {}) };
  const reactions = stanza.getChild('reactions', NS_REACTIONS);
  if (reactions?.attrs.id) {
    const keys = [...new Set(reactions.getChildren('reaction').map((r) => r.text()).filter((k) => k.length > 0 && k.length <= 64))];
    return { text: '', reactions: { to: reactions.attrs.id, keys }, ...(id ? { id } : {}) };
  }
  const body = stanza.getChild('body')?.text();
  if (body === undefined || body === '') return null;
  const msg: TextMessage = body.startsWith('/me ') ? { text: body.slice(4), action: true } : { text: body };
  if (id) msg.id = id;
  const replace = stanza.getChild('replace', NS_CORRECT);
  if (replace?.attrs.id) msg.editOf = replace.attrs.id;
  const reply = stanza.getChild('reply', NS_REPLY);
  if (reply?.attrs.id) msg.replyTo = reply.attrs.id;
  const urls = stanza.getChildren('x', NS.oob).map((o) => o.getChildText('url')).filter((u): u is string => !!u);
  if (urls.length) msg.attachments = urls;
  return msg;
}

export interface StanzaOptions {
  type: 'chat' | 'groupchat';
  from: string;
  to: string;
  /** Who stamps delays and stanza-ids (the contact, or the room). */
  by: string;
  fresh: () => string;
  /** Ask the client for read markers (XEP-0333): the adapter takes them. */
  markable: boolean;
  /** Extra children (a nick, the muc#user element of a private message). */
  extra?: (Element | null)[];
  /** The id to use instead (the client's id of an echoed message). */
  id?: string;
}

/** The stanza for a message from the network (or the echo of the user's own). */
export function stanzaOf(msg: TextMessage, o: StanzaOptions): Element {
  const id = o.id ?? idOf(msg, o.fresh);
  const el = x('message', { type: o.type, from: o.from, to: o.to, id });
  if (msg.redacts) {
    el.append(x('retract', { xmlns: NS_RETRACT, id: msg.redacts }));
    el.append(x('fallback', { xmlns: NS_FALLBACK, for: NS_RETRACT }));
    el.append(x('body', {}, 'This message was retracted.'));
    el.append(x('store', { xmlns: NS_HINTS }));
  } else if (msg.reactions) {
    el.append(x('reactions', { xmlns: NS_REACTIONS, id: msg.reactions.to }, msg.reactions.keys.map((k) => x('reaction', {}, k))));
    el.append(x('store', { xmlns: NS_HINTS }));
  } else {
    el.append(x('body', {}, msg.action ? `/me ${msg.text}` : msg.text));
    if (msg.editOf) el.append(x('replace', { xmlns: NS_CORRECT, id: msg.editOf }));
    if (msg.replyTo) el.append(x('reply', { xmlns: NS_REPLY, id: msg.replyTo }));
    for (const url of msg.attachments ?? []) el.append(x('x', { xmlns: NS.oob }, x('url', {}, url)));
    if (o.markable && !msg.editOf) el.append(x('markable', { xmlns: NS_MARKERS }));
  }
  for (const e of o.extra ?? []) if (e) el.append(e);
  if (o.type === 'groupchat') el.append(x('stanza-id', { xmlns: NS_SID, id, by: o.by }));
  if (msg.timestamp) el.append(delayElement(o.by, msg.timestamp));
  return el;
}

/** A notice for the user about a message they sent (SendReport): from the room itself (groupchat) or the gateway (chat). */
export function noticeStanza(from: string, to: string, type: 'chat' | 'groupchat', text: string, id: string): Element {
  return x('message', { type, from, to, id }, x('body', {}, text));
}

/** The message id a user's read marker points at, if the message is a displayed marker. */
export function displayedMarker(stanza: Element): string | null {
  const d = stanza.getChild('displayed', NS_MARKERS);
  return d?.attrs.id ? d.attrs.id : null;
}

export function displayedStanza(from: string, to: string, type: 'chat' | 'groupchat', messageId: string, fresh: () => string): Element {
  return x('message', { type, from, to, id: fresh() }, x('displayed', { xmlns: NS_MARKERS, id: messageId }), x('store', { xmlns: NS_HINTS }));
}
