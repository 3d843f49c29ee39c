/**
 * XEP-0352 Client State Indication end to end over real sockets: what waits while the client is
 * inactive, what goes at once, and in which order everything arrives.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { allModules } from '../../server/modules/index.js';
import type { GatehouseModule } from '../../server/core/context.js';
import { BoundSession } from '../../server/core/session.js';
import { createCsiModule, holdKey, MAX_HELD, NS_CSI } from '../../server/modules/csi.js';
import { createStreamManagementModule, NS_SM } from '../../server/modules/stream-management.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

const CHATSTATES = 'http://jabber.org/protocol/chatstates';

function modules(): GatehouseModule[] {
  const csi = createCsiModule();
  const others = allModules().filter((m) => m.name !== csi.name && m.name !== 'stream-management');
  return [...others, createStreamManagementModule({ resumptionTimeout: 60_000 }), csi];
}

const csi = (name: 'active' | 'inactive') => x(name, { xmlns: NS_CSI });
const isPresenceFrom = (from: string) => (el: Element) => el.name === 'presence' && el.attrs.from === from;

async function waitFor(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function mutual(ts: TestServer, a: string, b: string): Promise<void> {
  const { storage } = ts.server.ctx;
  const ida = (await storage.accounts.get(a, 'localhost'))!.id;
  const idb = (await storage.accounts.get(b, 'localhost'))!.id;
  const item = (jid: string) => ({ jid, name: null, subscription: 'both' as const, ask: false, pendingIn: false, approved: false, groups: [] });
  await storage.roster.put(ida, item(`${b}@localhost`));
  await storage.roster.put(idb, item(`${a}@localhost`));
}

async function online(c: TestClient, ...children: Element[]): Promise<void> {
  c.send(x('presence', {}, ...children));
  await c.expect((el) => el.name === 'presence' && el.attrs.from === c.jid && el.attrs.type === undefined);
}

/** A ping round trip: the server handled everything the client sent before. */
async function ping(c: TestClient): Promise<void> {
  const r = await c.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
  assert.equal(r.attrs.type, 'result');
}

/** alice with contacts, everybody online; alice has received their presence already. */
async function circle(ts: TestServer, prefix: string, ...contacts: string[]): Promise<{ alice: TestClient; others: TestClient[] }> {
  const alice = await ts.user(`${prefix}-alice`, undefined, 'phone');
  const others: TestClient[] = [];
  for (const name of contacts) {
    others.push(await ts.user(`${prefix}-${name}`, undefined, 'desk'));
    await mutual(ts, `${prefix}-alice`, `${prefix}-${name}`);
  }
  for (const o of others) await online(o);
  await online(alice);
  for (const o of others) {
    await alice.expect(isPresenceFrom(o.jid));
    await o.expect(isPresenceFrom(alice.jid));
  }
  return { alice, others };
}

function stanzasSince(c: TestClient, start: number): Element[] {
  return c.received.slice(start);
}

describe('XEP-0352 client state indication', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ modules: modules(), logLevel: 'info' });
  });
  after(async () => {
    if (process.env.SHOW_LOG) console.log(ts.logLines.filter((l) => /error|warn|fail/i.test(l)).join('\n'));
    await ts?.stop();
  });

  test('the csi feature is offered after authentication', async () => {
    const c = await ts.client();
    assert.equal(c.streamFeatures?.getChild('csi', NS_CSI), undefined);
    await c.register('feat', 'secret-feat');
    const features = await c.authenticateAndRestart('feat', 'secret-feat');
    assert.ok(features.getChild('csi', NS_CSI));
  });

  test('while inactive, presence waits (the latest per contact) and so do chat states; <active/> flushes them in order before the next answer', async () => {
    const { alice, others } = await circle(ts, 'hold', 'bob', 'carol');
    const [bob, carol] = others as [TestClient, TestClient];
    alice.send(csi('inactive'));
    await ping(alice);
    // Each ping makes the order in which the server sends to alice certain.
    bob.send(x('presence', {}, x('show', {}, 'away')));
    await ping(bob);
    carol.send(x('presence', {}, x('show', {}, 'xa')));
    await ping(carol);
    bob.send(x('message', { to: alice.jid, type: 'chat', id: 'cs1' }, x('composing', { xmlns: CHATSTATES })));
    bob.send(x('presence', {}, x('show', {}, 'dnd')));
    await ping(bob);
    assert.ok(await alice.expectNothing((el) => el.name === 'presence' || el.name === 'message', 300), 'nothing while inactive');

    const start = alice.received.length;
    alice.send(csi('active'));
    await ping(alice);
    const got = stanzasSince(alice, start);
    assert.deepEqual(
      got.map((el) => `${el.name} ${el.attrs.from} ${el.getChildText('show') ?? el.attrs.id ?? ''}`),
      [`presence ${carol.jid} xa`, `message ${bob.jid} cs1`, `presence ${bob.jid} dnd`],
      'one presence per contact, the latest; everything before the answer to the ping',
    );
  });

  test('a message with a body goes at once, after what was held', async () => {
    const { alice, others } = await circle(ts, 'body', 'bob');
    const bob = others[0]!;
    alice.send(csi('inactive'));
    await ping(alice);
    const start = alice.received.length;
    bob.send(x('presence', {}, x('show', {}, 'away')));
    await ping(bob);
    bob.send(x('message', { to: 'body-alice@localhost', type: 'chat', id: 'b1' }, x('body', {}, 'hello')));
    await waitFor('the message', () => alice.received.some((el) => el.attrs.id === 'b1'));
    const got = stanzasSince(alice, start).filter((el) => el.name !== 'r');
    assert.deepEqual(
      got.map((el) => `${el.name} ${el.attrs.id ?? el.getChildText('show')}`),
      ['presence away', 'message b1'],
    );
    // Still inactive: the next presence waits again.
    bob.send(x('presence', {}, x('show', {}, 'chat')));
    await ping(bob);
    assert.ok(await alice.expectNothing((el) => isPresenceFrom(bob.jid)(el) && el.getChildText('show') === 'chat', 300));
  });

  test('subscription requests, receipts and IQs are not held back', async () => {
    const alice = await ts.user('imp-alice', undefined, 'phone');
    const dave = await ts.user('imp-dave');
    await online(alice);
    alice.send(csi('inactive'));
    await ping(alice);
    dave.send(x('presence', { to: 'imp-alice@localhost', type: 'subscribe' }));
    await alice.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribe');
    dave.send(x('message', { to: alice.jid, id: 'rcpt' }, x('received', { xmlns: 'urn:xmpp:receipts', id: 'm0' })));
    await alice.expect((el) => el.attrs.id === 'rcpt');
    await ping(alice);
  });

  test('the queue is bounded: the 501st held stanza flushes them all', async () => {
    const alice = await ts.user('many-alice', undefined, 'phone');
    const bob = await ts.user('many-bob');
    alice.send(csi('inactive'));
    await ping(alice);
    for (let i = 0; i < MAX_HELD; i++) bob.send(x('message', { to: alice.jid, type: 'chat', id: `s${i}` }, x('paused', { xmlns: CHATSTATES })));
    await ping(bob);
    assert.ok(await alice.expectNothing((el) => el.name === 'message', 200));
    bob.send(x('message', { to: alice.jid, type: 'chat', id: `s${MAX_HELD}` }, x('active', { xmlns: CHATSTATES })));
    await waitFor('the flush', () => alice.received.filter((el) => el.name === 'message').length === MAX_HELD + 1);
    const ids = alice.received.filter((el) => el.name === 'message').map((el) => el.attrs.id);
    assert.deepEqual(ids, Array.from({ length: MAX_HELD + 1 }, (_, i) => `s${i}`));
  });

  test('a resumed stream starts active: what was held arrives after <resumed/> and the retransmission', async () => {
    const { alice, others } = await circle(ts, 'res', 'bob');
    const bob = others[0]!;
    alice.send(x('enable', { xmlns: NS_SM, resume: 'true' }));
    const enabled = await alice.expect((el) => el.name === 'enabled');
    bob.send(x('message', { to: alice.jid, type: 'chat', id: 'before' }, x('body', {}, 'unacked')));
    await alice.expect((el) => el.attrs.id === 'before');
    alice.send(csi('inactive'));
    await ping(alice);
    const session = ts.server.ctx.sessions.get(alice.jid) as BoundSession;
    alice.destroy();
    await waitFor('hibernation', () => session.hibernating);
    bob.send(x('presence', {}, x('show', {}, 'away')));
    await ping(bob);

    const fresh = await ts.client();
    await fresh.authenticateAndRestart('res-alice', 'secret-res-alice');
    // Acknowledge nothing: the message and the ping result come again.
    fresh.send(x('resume', { xmlns: NS_SM, previd: enabled.attrs.id!, h: 0 }));
    await waitFor('the presence', () => fresh.received.some(isPresenceFrom(bob.jid)));
    const names = fresh.received.filter((el) => el.name !== 'r').map((el) => (el.name === 'presence' ? `presence ${el.getChildText('show')}` : el.attrs.id ?? el.name));
    assert.equal(names[0], 'resumed');
    assert.ok(names.indexOf('before') > 0);
    assert.equal(names[names.length - 1], 'presence away', 'held presence last');
  });
});

describe('XEP-0352 what waits (unit)', () => {
  test('presence and content-free messages wait; the rest is important', () => {
    const m = (attrs: Record<string, string>, ...children: Element[]) => x('message', { xmlns: NS.client, from: 'b@localhost/r', ...attrs }, ...children);
    assert.equal(holdKey(x('presence', { from: 'b@localhost/r' })), 'presence b@localhost/r');
    assert.equal(holdKey(x('presence', { from: 'b@localhost/r', type: 'unavailable' })), 'presence b@localhost/r');
    assert.equal(holdKey(x('presence', { from: 'b@localhost', type: 'subscribe' })), null);
    assert.equal(holdKey(m({ type: 'chat' }, x('composing', { xmlns: CHATSTATES }), x('thread', {}, 't'))), '');
    assert.equal(holdKey(m({ type: 'chat' }, x('body', {}, 'hi'), x('active', { xmlns: CHATSTATES }))), null);
    assert.equal(holdKey(m({ type: 'chat' }, x('displayed', { xmlns: 'urn:xmpp:chat-markers:0', id: 'x' }))), null);
    assert.equal(holdKey(m({ type: 'error' }, x('composing', { xmlns: CHATSTATES }))), null);
    assert.equal(holdKey(m({ type: 'headline' }, x('event', { xmlns: 'http://jabber.org/protocol/pubsub#event' }))), '');
    assert.equal(holdKey(m({ type: 'headline' }, x('body', {}, 'news'))), null);
    const carbon = (inner: Element) => m({ type: 'chat' }, x('sent', { xmlns: 'urn:xmpp:carbons:2' }, x('forwarded', { xmlns: 'urn:xmpp:forward:0' }, inner)));
    assert.equal(holdKey(carbon(x('message', { xmlns: NS.client }, x('composing', { xmlns: CHATSTATES })))), '', 'typing on another device');
    assert.equal(holdKey(carbon(x('message', { xmlns: NS.client }, x('body', {}, 'hi')))), null);
    assert.equal(holdKey(x('iq', { type: 'get' }, x('ping', { xmlns: NS.ping }))), null);
  });
});
