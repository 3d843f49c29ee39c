/**
 * Stanza helpers for the kit. Error replies never copy the request's payload (RFC 6120 8.3.1
 * allows leaving it out): a registration payload holds a password, a message a body, and neither
 * should travel back.
 */
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { errorElement, type ErrorType } from '../../shared/xml/stanza-errors.js';

export { errorElement, type ErrorType };

export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
export const NS_MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';
export const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
export const NS_COMMANDS = 'http://jabber.org/protocol/commands';
export const NS_GATEWAY = 'jabber:iq:gateway';
export const NS_NICK = 'http://jabber.org/protocol/nick';
export const NS_ROSTERX = 'http://jabber.org/protocol/rosterx';
export const NS_CHATSTATES = 'http://jabber.org/protocol/chatstates';
export const NS_JID_ESCAPING = 'jid\\20escaping';

export function iqResult(iq: Element, payload?: Element | null): Element {
  return x('iq', { type: 'result', id: iq.attrs.id, from: iq.attrs.to, to: iq.attrs.from }, payload ?? null);
}

export function iqError(iq: Element, condition: string, text?: string, type?: ErrorType): Element {
  return x('iq', { type: 'error', id: iq.attrs.id, from: iq.attrs.to, to: iq.attrs.from }, errorElement(condition, text, type));
}

/** An error reply to a message or presence (null for an error: an error never answers an error). */
export function stanzaError(stanza: Element, condition: string, text?: string, type?: ErrorType, ...extra: Element[]): Element | null {
  if (stanza.attrs.type === 'error') return null;
  return x(stanza.name, { type: 'error', id: stanza.attrs.id, from: stanza.attrs.to, to: stanza.attrs.from }, ...extra, errorElement(condition, text, type));
}

/** The chat state (XEP-0085) of a message, if any. */
export function chatStateOf(stanza: Element): 'composing' | 'paused' | 'active' | 'inactive' | 'gone' | null {
  for (const el of stanza.elements) {
    if (el.xmlns === NS_CHATSTATES && ['composing', 'paused', 'active', 'inactive', 'gone'].includes(el.name)) return el.name as 'composing';
  }
  return null;
}

export function delayElement(from: string, at: Date): Element {
  return x('delay', { xmlns: NS.delay, from, stamp: at.toISOString().replace(/\.\d{3}Z$/, 'Z') });
}

/** show/status of an available presence: show is available, away, chat→available, dnd, xa. */
export function showOf(presence: Element): 'available' | 'away' | 'dnd' | 'xa' {
  const show = presence.getChildText('show')?.trim();
  return show === 'away' || show === 'dnd' || show === 'xa' ? show : 'available';
}
