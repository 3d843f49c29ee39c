/** Stanzas and client set-up shared by the PEP tests: what real clients send, and +notify caps. */
import { ensureAccount, loginAs, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { capsVer, type CapsInfo } from '../../shared/xml/caps-hash.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { Subscription } from '../../storage/types.js';

export const PUBSUB = 'http://jabber.org/protocol/pubsub';
export const OWNER = `${PUBSUB}#owner`;
export const EVENT = `${PUBSUB}#event`;
export const ERRORS = `${PUBSUB}#errors`;
const CAPS_NODE = 'https://client.example/caps';

export type Fields = Record<string, string | string[]>;

export function form(formType: string, fields: Fields, type = 'submit'): Element {
  const x1 = x('x', { xmlns: NS.dataForms, type }, x('field', { var: 'FORM_TYPE', type: 'hidden' }, x('value', {}, formType)));
  for (const [name, value] of Object.entries(fields)) x1.append(x('field', { var: name }, (Array.isArray(value) ? value : [value]).map((v) => x('value', {}, v))));
  return x1;
}

/** A publish as clients send it, with publish-options when given. */
export function publish(node: string, payload: Element, id?: string, options?: Fields, to?: string): Element {
  return x(
    'iq',
    { type: 'set', to },
    x(
      'pubsub',
      { xmlns: PUBSUB },
      x('publish', { node }, x('item', { id }, payload)),
      options ? x('publish-options', {}, form(`${PUBSUB}#publish-options`, options)) : undefined,
    ),
  );
}

export function items(to: string | undefined, node: string, opts: { ids?: string[]; max?: number } = {}): Element {
  return x('iq', { type: 'get', to }, x('pubsub', { xmlns: PUBSUB }, x('items', { node, max_items: opts.max }, (opts.ids ?? []).map((id) => x('item', { id })))));
}

export function owner(type: 'get' | 'set', child: Element): Element {
  return x('iq', { type }, x('pubsub', { xmlns: OWNER }, child));
}

/** The items of a result, as [id, payload] pairs. */
export function itemsOf(reply: Element): [string, string][] {
  const list = reply.getChild('pubsub', PUBSUB)?.getChild('items');
  return (list?.getChildren('item') ?? []).map((i) => [i.attrs.id!, i.firstElement()?.toString() ?? '']);
}

/** The defined condition and the pubsub#errors condition of an error reply. */
export function errorOf(reply: Element): [string | undefined, string | undefined] {
  const err = reply.getChild('error');
  const defined = err?.elements.find((c) => c.xmlns === NS.stanzas && c.name !== 'text')?.name;
  const app = err?.elements.find((c) => c.xmlns === ERRORS)?.name;
  return [defined, app];
}

export const isEvent = (node: string, what = 'items') => (el: Element) =>
  el.name === 'message' && el.getChild('event', EVENT)?.getChild(what)?.attrs.node === node;

/** Everything the client was sent before now has arrived (a round trip over its stream). */
export async function roundTrip(client: TestClient): Promise<void> {
  const reply = await client.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
  if (reply.attrs.type !== 'result') throw new Error('ping failed');
}

/** Whether a matching stanza arrived by now (after a round trip); takes it out if so. */
export async function arrived(client: TestClient, match: (el: Element) => boolean): Promise<boolean> {
  await roundTrip(client);
  const i = client.received.findIndex(match);
  if (i < 0) return false;
  client.received.splice(i, 1);
  return true;
}

function capsInfo(features: string[]): CapsInfo {
  return { identities: [{ category: 'client', type: 'phone', name: 'PEP test client' }], features: [NS.discoInfo, NS.caps, ...features].sort(), forms: [] };
}

/**
 * Logs `name` in and sends available presence with caps naming `notify` nodes (+notify), answering
 * the server's disco#info as a client does; resolves when the server knows the features.
 */
export async function online(ts: TestServer, name: string, notify: string[], resource?: string): Promise<TestClient> {
  const client = await loginAs(ts, name, resource);
  const info = capsInfo(notify.map((n) => `${n}+notify`));
  const ver = capsVer(info, 'sha-1')!;
  client.autoAnswer(
    (el) => el.name === 'iq' && el.attrs.type === 'get' && el.getChild('query', NS.discoInfo) !== undefined,
    (q) =>
      x(
        'iq',
        { type: 'result', id: q.attrs.id, to: q.attrs.from },
        x(
          'query',
          { xmlns: NS.discoInfo, node: q.getChild('query', NS.discoInfo)!.attrs.node },
          info.identities.map((i) => x('identity', { category: i.category, type: i.type, name: i.name })),
          info.features.map((f) => x('feature', { var: f })),
        ),
      ),
  );
  const caps = ts.server.ctx.services.need('caps');
  const bare = `${name}@localhost`;
  const known = new Promise<void>((resolve) => {
    const off = caps.onFeatures((e) => {
      if (e.jid === client.jid && e.observer === bare) {
        off();
        resolve();
      }
    });
  });
  client.send(x('presence', {}, x('c', { xmlns: NS.caps, hash: 'sha-1', node: CAPS_NODE, ver })));
  await known;
  return client;
}

/** Puts `contact` on `user`'s roster with the given subscription (and groups). */
export async function rosterItem(ts: TestServer, user: string, contact: string, subscription: Subscription, groups: string[] = []): Promise<void> {
  const id = await ensureAccount(ts, user);
  await ts.server.ctx.storage.roster.put(id, { jid: contact.includes('@') ? contact : `${contact}@localhost`, name: null, subscription, ask: false, pendingIn: false, approved: false, groups });
}

/** Two accounts with a mutual presence subscription. */
export async function contacts(ts: TestServer, a: string, b: string): Promise<void> {
  await rosterItem(ts, a, b, 'both');
  await rosterItem(ts, b, a, 'both');
}
