/** Shared steps of the MUC tests: entering a room, the owner's forms, reading status codes. */
import assert from 'node:assert/strict';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { TestClient } from '../helpers/xmpp-client.js';

export const MUC = 'http://jabber.org/protocol/muc';
export const MUC_USER = 'http://jabber.org/protocol/muc#user';
export const MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';
export const MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
export const SERVICE = 'conference.localhost';

export function codes(el: Element): number[] {
  return (el.getChild('x', MUC_USER)?.getChildren('status') ?? []).map((s) => Number(s.attrs.code));
}

export function item(el: Element): Element | undefined {
  return el.getChild('x', MUC_USER)?.getChild('item');
}

export const selfPresence = (room: string) => (el: Element) => el.name === 'presence' && el.attrs.from?.startsWith(room + '/') === true && codes(el).includes(110);

/** Sends initial presence, then enters `room` as `nick`; resolves with the self-presence (or the error presence). */
export async function enter(c: TestClient, room: string, nick: string, opts: { password?: string; history?: Record<string, string>; initial?: boolean } = {}): Promise<Element> {
  if (opts.initial !== false) c.send(x('presence'));
  c.send(x('presence', { to: `${room}/${nick}` }, x('x', { xmlns: MUC }, opts.history ? x('history', opts.history) : null, opts.password ? x('password', {}, opts.password) : null)));
  return c.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/${nick}` && (el.attrs.type === 'error' || codes(el).includes(110)));
}

/** Creates `room` as an instant room (10.1.2) by `c` with `nick`; returns the self-presence (201). */
export async function createInstant(c: TestClient, room: string, nick: string, fields: Record<string, string | string[]> = {}): Promise<Element> {
  const self = await enter(c, room, nick);
  assert.ok(codes(self).includes(201), `room ${room} was created: ${self}`);
  await configure(c, room, fields);
  // The subject message ends the entering sequence.
  await c.expect((el) => el.name === 'message' && el.attrs.from?.startsWith(room) === true && el.getChild('subject') !== undefined);
  return self;
}

export async function configure(c: TestClient, room: string, fields: Record<string, string | string[]>): Promise<Element> {
  const form = x(
    'x',
    { xmlns: NS.dataForms, type: 'submit' },
    x('field', { var: 'FORM_TYPE' }, x('value', {}, 'http://jabber.org/protocol/muc#roomconfig')),
    Object.entries(fields).map(([k, v]) => x('field', { var: k }, (Array.isArray(v) ? v : [v]).map((one) => x('value', {}, one)))),
  );
  const reply = await c.iq(x('iq', { type: 'set', to: room }, x('query', { xmlns: MUC_OWNER }, form)));
  assert.equal(reply.attrs.type, 'result', `configuration accepted: ${reply}`);
  return reply;
}

export function errorOf(el: Element): string | undefined {
  return el.getChild('error')?.elements.find((e) => e.xmlns === 'urn:ietf:params:xml:ns:xmpp-stanzas' && e.name !== 'text')?.name;
}
