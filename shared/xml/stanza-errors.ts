import { Element, x } from './element.js';
import { NS } from '../ns.js';

export type ErrorType = 'auth' | 'cancel' | 'continue' | 'modify' | 'wait';

/** RFC 6120 8.3.3 conditions with their usual error type. */
export const DEFAULT_ERROR_TYPE: Record<string, ErrorType> = {
  'bad-request': 'modify',
  conflict: 'cancel',
  'feature-not-implemented': 'cancel',
  forbidden: 'auth',
  gone: 'cancel',
  'internal-server-error': 'cancel',
  'item-not-found': 'cancel',
  'jid-malformed': 'modify',
  'not-acceptable': 'modify',
  'not-allowed': 'cancel',
  'not-authorized': 'auth',
  'policy-violation': 'modify',
  'recipient-unavailable': 'wait',
  redirect: 'modify',
  'registration-required': 'auth',
  'remote-server-not-found': 'cancel',
  'remote-server-timeout': 'wait',
  'resource-constraint': 'wait',
  'service-unavailable': 'cancel',
  'subscription-required': 'auth',
  'undefined-condition': 'cancel',
  'unexpected-request': 'wait',
};

export function errorElement(condition: string, text?: string, type?: ErrorType, by?: string): Element {
  const err = x('error', { type: type ?? DEFAULT_ERROR_TYPE[condition] ?? 'cancel', by }, x(condition, { xmlns: NS.stanzas }));
  if (text) err.append(x('text', { xmlns: NS.stanzas, 'xml:lang': 'en' }, text));
  return err;
}

/**
 * The error reply to a stanza (RFC 6120 8.3.1): addresses swapped, original payload kept for
 * messages and presence, none for IQs. Null for an error stanza: an error never answers an error.
 */
export function errorReply(stanza: Element, condition: string, text?: string, type?: ErrorType): Element | null {
  if (stanza.attrs.type === 'error') return null;
  const reply = new Element(stanza.name, { xmlns: stanza.attrs.xmlns, type: 'error', id: stanza.attrs.id, from: stanza.attrs.to, to: stanza.attrs.from });
  if (stanza.name !== 'iq') for (const c of stanza.children) if (typeof c !== 'string') reply.append(c.clone());
  reply.append(errorElement(condition, text, type));
  return reply;
}

export function iqResult(iq: Element, payload?: Element): Element {
  const reply = new Element('iq', { xmlns: iq.attrs.xmlns, type: 'result', id: iq.attrs.id, from: iq.attrs.to, to: iq.attrs.from });
  if (payload) reply.append(payload);
  return reply;
}

/** The defined condition of an error stanza, or undefined. */
export function errorCondition(stanza: Element): string | undefined {
  const err = stanza.getChild('error');
  if (!err) return undefined;
  for (const c of err.elements) if (c.xmlns === NS.stanzas && c.name !== 'text') return c.name;
  return undefined;
}
