/**
 * What a session gets after its self-presence on entering (XEP-0045 7.2.15-7.2.16): the history,
 * each message with a XEP-0203 delay from the room, then the subject.
 */
import { randomBytes } from 'node:crypto';
import { x, type Element } from '../../../shared/xml/element.js';
import { NS } from '../../../shared/ns.js';
import type { Room } from './room.js';
import { NS_OCCUPANT_ID } from './roles.js';

function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A history message as a joining session gets it (7.2.15): with XEP-0203 delay from the room. */
export function delayed(stanza: Element, at: number, room: string, to: string): Element {
  const m = stanza.clone();
  m.attrs.to = to;
  m.append(x('delay', { xmlns: NS.delay, stamp: stamp(at), from: room }));
  return m;
}

/** The subject as sent after the history on entering (8.1): empty when none is set. */
export function subjectMessage(room: Room, to: string): Element {
  const s = room.subject;
  const m = x('message', { type: 'groupchat', from: s && s.nick ? `${room.jid}/${s.nick}` : room.jid, to, id: randomBytes(9).toString('base64url') }, x('subject', {}, s?.text ?? ''));
  if (s?.occupantId) m.append(x('occupant-id', { xmlns: NS_OCCUPANT_ID, id: s.occupantId }));
  if (s) m.append(x('delay', { xmlns: NS.delay, stamp: stamp(s.at), from: room.jid }));
  return m;
}

