/**
 * RFC 6121 delivery rules shared by the modules that deliver, store or copy messages (message,
 * offline, carbons, stream management): pure helpers over the session registry.
 */
import type { ClientSession, SessionRegistry } from './session.js';
import type { Element } from '../../shared/xml/element.js';

export type MessageType = 'normal' | 'chat' | 'groupchat' | 'headline' | 'error';

/** The message type; absent or unknown values mean 'normal' (RFC 6121 5.2.2). */
export function messageType(stanza: Element): MessageType {
  const t = stanza.attrs.type;
  return t === 'chat' || t === 'groupchat' || t === 'headline' || t === 'error' ? t : 'normal';
}

/** Resources that may receive messages to the bare JID: available with a non-negative priority. */
export function nonNegativeResources(sessions: SessionRegistry, bareJid: string): ClientSession[] {
  return sessions.ofAccount(bareJid).filter((s) => s.available && s.priority >= 0);
}

/** The "most available" resources (RFC 6121 8.5.2.1.1): all those sharing the highest non-negative priority. */
export function topResources(sessions: SessionRegistry, bareJid: string): ClientSession[] {
  const candidates = nonNegativeResources(sessions, bareJid);
  if (candidates.length <= 1) return candidates;
  const best = Math.max(...candidates.map((s) => s.priority));
  return candidates.filter((s) => s.priority === best);
}
