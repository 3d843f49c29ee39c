/**
 * XEP-0280 Message Carbons end to end over real sockets.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { allModules } from '../../server/modules/index.js';
import type { GatehouseModule } from '../../server/core/context.js';
import { createCarbonsModule, carbonsEligible, NS_CARBONS, NS_FORWARD, NS_HINTS } from '../../server/modules/carbons.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

function modules(): GatehouseModule[] {
  const carbons = createCarbonsModule();
  return [...allModules().filter((m) => m.name !== carbons.name), carbons];
}

async function resource(ts: TestServer, name: string, res: string): Promise<TestClient> {
  const c = await ts.client();
  await c.login(name, 'secret-' + name, { resource: res });
  return c;
}

/** A fresh account with one client per resource name (the first registers the account). */
async function account(ts: TestServer, name: string, ...resources: string[]): Promise<TestClient[]> {
  const [first, ...rest] = resources;
  const clients = [await ts.user(name, undefined, first)];
  for (const r of rest) clients.push(await resource(ts, name, r));
  return clients;
}

async function enable(c: TestClient, on = true): Promise<void> {
  const r = await c.iq(x('iq', { type: 'set' }, x(on ? 'enable' : 'disable', { xmlns: NS_CARBONS })));
  assert.equal(r.attrs.type, 'result', String(r));
}

/** Initial (or changed) presence, waiting for the server's echo. */
async function online(c: TestClient, priority = 0): Promise<void> {
  c.send(x('presence', {}, x('priority', {}, String(priority))));
  await c.expect((el) => el.name === 'presence' && el.attrs.from === c.jid && el.getChildText('priority') === String(priority));
}

function chat(to: string, body: string, ...extra: Element[]): Element {
  return x('message', { to, type: 'chat', id: 'm-' + Math.random().toString(36).slice(2) }, x('body', {}, body), ...extra);
}

const isMessage = (body: string) => (el: Element) => el.name === 'message' && el.getChildText('body') === body;

function carbonOf(direction: 'sent' | 'received', body: string) {
  return (el: Element) =>
    el.name === 'message' &&
    el.getChild(direction, NS_CARBONS)?.getChild('forwarded', NS_FORWARD)?.getChild('message')?.getChildText('body') === body;
}

const anyCarbon = (body: string) => (el: Element) => carbonOf('sent', body)(el) || carbonOf('received', body)(el);

describe('XEP-0280 message carbons', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ modules: modules(), logLevel: 'info' });
  });
  after(async () => {
    await ts?.stop();
  });

  test('the server announces carbons and the copying rules it follows', async () => {
    const [c] = await account(ts, 'disco-user', 'r');
    const info = await c!.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.discoInfo })));
    const features = info.getChild('query', NS.discoInfo)!.getChildren('feature').map((f) => f.attrs.var);
    assert.ok(features.includes('urn:xmpp:carbons:2'));
    assert.ok(features.includes('urn:xmpp:carbons:rules:0'));
    await c!.close();
  });

  test('enable and disable are answered with a result, repeatedly; not for another account', async () => {
    const [a] = await account(ts, 'toggle-alice', 'a');
    const [b] = await account(ts, 'toggle-bob', 'b');
    await enable(a!);
    await enable(a!);
    await enable(a!, false);
    await enable(a!, false);
    // Addressed to the own bare JID explicitly: the same.
    const r = await a!.iq(x('iq', { type: 'set', to: 'toggle-alice@localhost' }, x('enable', { xmlns: NS_CARBONS })));
    assert.equal(r.attrs.type, 'result');
    const other = await b!.iq(x('iq', { type: 'set', to: 'toggle-alice@localhost' }, x('enable', { xmlns: NS_CARBONS })));
    assert.equal(other.attrs.type, 'error');
    assert.equal(errorCondition(other), 'not-allowed');
    for (const c of [a!, b!]) await c.close();
  });

  test('received: a message to one full JID is copied to the other enabled resources only', async () => {
    const [a, b, c] = await account(ts, 'rcv-alice', 'a', 'b', 'c');
    const [bob] = await account(ts, 'rcv-bob', 'phone');
    await enable(a!);
    await enable(b!);
    for (const cl of [a!, b!, c!, bob!]) await online(cl);

    bob!.send(chat('rcv-alice@localhost/a', 'to a only', x('thread', {}, 'th-1')));
    const original = await a!.expect(isMessage('to a only'));
    assert.equal(original.attrs.from, bob!.jid);
    const carbon = await b!.expect(carbonOf('received', 'to a only'));
    assert.equal(carbon.attrs.from, 'rcv-alice@localhost', 'from the bare JID (XEP-0280 7)');
    assert.equal(carbon.attrs.to, 'rcv-alice@localhost/b');
    assert.equal(carbon.attrs.type, 'chat', 'the type of the original');
    const inner = carbon.getChild('received', NS_CARBONS)!.getChild('forwarded', NS_FORWARD)!.getChild('message')!;
    assert.equal(inner.attrs.xmlns, NS.client);
    assert.equal(inner.attrs.from, bob!.jid);
    assert.equal(inner.attrs.to, 'rcv-alice@localhost/a');
    assert.equal(inner.getChildText('thread'), 'th-1', 'the original is forwarded whole');
    assert.ok(await a!.expectNothing(anyCarbon('to a only')), 'the addressed resource gets no copy');
    assert.ok(await c!.expectNothing(anyCarbon('to a only')), 'a resource without carbons gets none');
    assert.ok(await b!.expectNothing(isMessage('to a only')), 'and no original beyond the carbon');
    for (const cl of [a!, b!, c!, bob!]) await cl.close();
  });

  test('sent: a message from one resource is copied to the other enabled resources, whether or not the sender enabled carbons', async () => {
    const [a, b, c] = await account(ts, 'snd-alice', 'a', 'b', 'c');
    const [bob] = await account(ts, 'snd-bob', 'phone');
    await enable(b!);
    for (const cl of [a!, b!, c!, bob!]) await online(cl);

    a!.send(chat('snd-bob@localhost', 'from a'));
    await bob!.expect(isMessage('from a'));
    const carbon = await b!.expect(carbonOf('sent', 'from a'));
    assert.equal(carbon.attrs.from, 'snd-alice@localhost');
    assert.equal(carbon.attrs.to, 'snd-alice@localhost/b');
    const inner = carbon.getChild('sent', NS_CARBONS)!.getChild('forwarded', NS_FORWARD)!.getChild('message')!;
    assert.equal(inner.attrs.from, 'snd-alice@localhost/a');
    assert.equal(inner.attrs.to, 'snd-bob@localhost');
    assert.ok(await c!.expectNothing(anyCarbon('from a')), 'not to a resource without carbons');
    assert.ok(await a!.expectNothing(anyCarbon('from a')), 'not back to the sender');

    // The sender with carbons enabled gets no copy of its own message either.
    await enable(a!);
    a!.send(chat('snd-bob@localhost', 'from a again'));
    await b!.expect(carbonOf('sent', 'from a again'));
    assert.ok(await a!.expectNothing(anyCarbon('from a again')));
    for (const cl of [a!, b!, c!, bob!]) await cl.close();
  });

  test('a message to a remote JID is copied too (it left through another route)', async () => {
    const [a, b] = await account(ts, 'rem-alice', 'a', 'b');
    await enable(b!);
    for (const cl of [a!, b!]) await online(cl);
    const msg = chat('someone@elsewhere.example', 'over the wall');
    a!.send(msg);
    await b!.expect(carbonOf('sent', 'over the wall'));
    const err = await a!.expect((el) => el.name === 'message' && el.attrs.type === 'error' && el.attrs.id === msg.attrs.id);
    assert.equal(errorCondition(err), 'remote-server-not-found');
    for (const cl of [a!, b!]) await cl.close();
  });

  test('a bare-JID message: the resources that get the original get no carbon, the other enabled ones do', async () => {
    const [a, b, low, quiet] = await account(ts, 'bare-alice', 'a', 'b', 'low', 'quiet');
    const [bob] = await account(ts, 'bare-bob', 'phone');
    for (const cl of [a!, b!, low!, quiet!]) await enable(cl);
    await online(a!, 1);
    await online(b!, 1);
    await online(low!, 0);
    await online(bob!);
    // 'quiet' never sends presence, yet asked for carbons.

    bob!.send(chat('bare-alice@localhost', 'to the bare JID'));
    await a!.expect(isMessage('to the bare JID'));
    await b!.expect(isMessage('to the bare JID'));
    await low!.expect(carbonOf('received', 'to the bare JID'));
    await quiet!.expect(carbonOf('received', 'to the bare JID'));
    assert.ok(await a!.expectNothing(anyCarbon('to the bare JID')), 'no duplicate for a resource that got the original');
    assert.ok(await b!.expectNothing(anyCarbon('to the bare JID')));
    assert.ok(await low!.expectNothing(isMessage('to the bare JID')));

    await online(b!, 5);
    bob!.send(chat('bare-alice@localhost', 'now b is on top'));
    await b!.expect(isMessage('now b is on top'));
    await a!.expect(carbonOf('received', 'now b is on top'));
    await low!.expect(carbonOf('received', 'now b is on top'));
    assert.ok(await b!.expectNothing(anyCarbon('now b is on top')));
    for (const cl of [a!, b!, low!, quiet!, bob!]) await cl.close();
  });

  test('a disabled resource gets no carbons; carbons do not outlive the session', async () => {
    const [a, b] = await account(ts, 'dis-alice', 'a', 'b');
    const [bob] = await account(ts, 'dis-bob', 'phone');
    await enable(b!);
    for (const cl of [a!, b!, bob!]) await online(cl);
    bob!.send(chat('dis-alice@localhost/a', 'while enabled'));
    await b!.expect(carbonOf('received', 'while enabled'));

    await enable(b!, false);
    bob!.send(chat('dis-alice@localhost/a', 'after disable'));
    a!.send(chat('dis-bob@localhost', 'sent after disable'));
    await a!.expect(isMessage('after disable'));
    await bob!.expect(isMessage('sent after disable'));
    assert.ok(await b!.expectNothing(anyCarbon('after disable')));
    assert.ok(await b!.expectNothing(anyCarbon('sent after disable')));

    // A new session for the same resource starts without carbons.
    await enable(b!);
    await b!.close();
    const b2 = await resource(ts, 'dis-alice', 'b');
    await online(b2);
    bob!.send(chat('dis-alice@localhost/a', 'new session'));
    await a!.expect(isMessage('new session'));
    assert.ok(await b2.expectNothing(anyCarbon('new session')));
    for (const cl of [a!, b2, bob!]) await cl.close();
  });

  test('<private/> and the <no-copy/> hint keep a message out of carbons; <private/> is removed on delivery', async () => {
    const [a, b] = await account(ts, 'prv-alice', 'a', 'b');
    const [bob, bob2] = await account(ts, 'prv-bob', 'phone', 'desk');
    for (const cl of [a!, b!, bob!, bob2!]) await enable(cl);
    for (const cl of [a!, b!, bob!, bob2!]) await online(cl);

    bob!.send(chat('prv-alice@localhost/a', 'private one', x('private', { xmlns: NS_CARBONS })));
    const got = await a!.expect(isMessage('private one'));
    assert.equal(got.getChild('private', NS_CARBONS), undefined, 'the receiving server removes <private/> (XEP-0280 9)');
    assert.ok(await b!.expectNothing(anyCarbon('private one')), 'no received carbon');
    assert.ok(await bob2!.expectNothing(anyCarbon('private one')), 'no sent carbon');

    a!.send(chat('prv-bob@localhost/phone', 'no copy please', x('no-copy', { xmlns: NS_HINTS })));
    const hinted = await bob!.expect(isMessage('no copy please'));
    assert.ok(hinted.getChild('no-copy', NS_HINTS), 'hints are left alone');
    assert.ok(await b!.expectNothing(anyCarbon('no copy please')));
    assert.ok(await bob2!.expectNothing(anyCarbon('no copy please')));
    for (const cl of [a!, b!, bob!, bob2!]) await cl.close();
  });

  test('only IM messages are copied: groupchat, headline and body-less normal messages are not; receipts are', async () => {
    const [a, b] = await account(ts, 'elig-alice', 'a', 'b');
    const [bob] = await account(ts, 'elig-bob', 'phone');
    await enable(b!);
    for (const cl of [a!, b!, bob!]) await online(cl);

    bob!.send(x('message', { to: 'elig-alice@localhost/a', type: 'headline' }, x('body', {}, 'news')));
    await a!.expect(isMessage('news'));
    bob!.send(x('message', { to: 'elig-alice@localhost/a', type: 'groupchat' }, x('body', {}, 'room talk')));
    await a!.expect(isMessage('room talk'));
    bob!.send(x('message', { to: 'elig-alice@localhost/a', id: 'bare-normal' }, x('x', { xmlns: 'urn:example:custom' })));
    await a!.expect((el) => el.name === 'message' && el.attrs.id === 'bare-normal');
    bob!.send(x('message', { to: 'elig-alice@localhost/a' }, x('body', {}, 'a normal message')));
    await a!.expect(isMessage('a normal message'));
    await b!.expect(carbonOf('received', 'a normal message'));
    bob!.send(x('message', { to: 'elig-alice@localhost/a', id: 'rcpt' }, x('received', { xmlns: 'urn:xmpp:receipts', id: 'm1' })));
    await a!.expect((el) => el.name === 'message' && el.attrs.id === 'rcpt');
    const receipt = await b!.expect((el) => el.getChild('received', NS_CARBONS) !== undefined);
    assert.equal(receipt.getChild('received', NS_CARBONS)!.getChild('forwarded', NS_FORWARD)!.getChild('message')!.attrs.id, 'rcpt');
    assert.ok(await b!.expectNothing(anyCarbon('news')));
    assert.ok(await b!.expectNothing(anyCarbon('room talk')));
    assert.ok(await b!.expectNothing((el) => el.getChild('received', NS_CARBONS) !== undefined), 'nothing else was copied');

    // A private message from a MUC occupant reaches every joined resource through the room.
    bob!.send(chat('elig-alice@localhost/a', 'muc pm', x('x', { xmlns: 'http://jabber.org/protocol/muc#user' })));
    await a!.expect(isMessage('muc pm'));
    assert.ok(await b!.expectNothing(anyCarbon('muc pm')));
    for (const cl of [a!, b!, bob!]) await cl.close();
  });

  test('a message between two resources of the account: one sent carbon for the others, none for the recipient', async () => {
    const [a, b, c] = await account(ts, 'self-alice', 'a', 'b', 'c');
    for (const cl of [a!, b!, c!]) await enable(cl);
    for (const cl of [a!, b!, c!]) await online(cl);
    a!.send(chat('self-alice@localhost/b', 'note to b'));
    await b!.expect(isMessage('note to b'));
    await c!.expect(carbonOf('sent', 'note to b'));
    assert.ok(await b!.expectNothing(anyCarbon('note to b')), 'the recipient has the original');
    assert.ok(await c!.expectNothing(carbonOf('received', 'note to b')), 'one copy per resource');
    assert.ok(await a!.expectNothing(anyCarbon('note to b')));
    for (const cl of [a!, b!, c!]) await cl.close();
  });

  test('eligibility rules (XEP-0280 6.1)', () => {
    const m = (attrs: Record<string, string>, ...children: Element[]) => x('message', attrs, ...children);
    const body = () => x('body', {}, 'hi');
    assert.equal(carbonsEligible(m({ type: 'chat' }), true, true), true);
    assert.equal(carbonsEligible(m({}, body()), false, false), true);
    assert.equal(carbonsEligible(m({ type: 'normal' }), true, true), false);
    assert.equal(carbonsEligible(m({}, x('active', { xmlns: 'http://jabber.org/protocol/chatstates' })), true, true), true);
    assert.equal(carbonsEligible(m({}, x('displayed', { xmlns: 'urn:xmpp:chat-markers:0', id: '1' })), false, true), true);
    assert.equal(carbonsEligible(m({}, x('x', { xmlns: 'jabber:x:conference', jid: 'room@muc' })), true, false), true);
    assert.equal(carbonsEligible(m({}, x('x', { xmlns: 'http://jabber.org/protocol/muc#user' }, x('invite', { from: 'a@b' }))), true, false), true, 'mediated invitation');
    assert.equal(carbonsEligible(m({ type: 'groupchat' }, body()), true, true), false);
    assert.equal(carbonsEligible(m({ type: 'headline' }, body()), true, true), false);
    assert.equal(carbonsEligible(m({ type: 'chat' }, x('x', { xmlns: 'http://jabber.org/protocol/muc#user' })), true, true), false, 'incoming MUC PM');
    assert.equal(carbonsEligible(m({ type: 'chat' }, x('x', { xmlns: 'http://jabber.org/protocol/muc#user' })), false, true), true, 'outgoing MUC PM');
    assert.equal(carbonsEligible(m({ type: 'error' }), true, false), true, 'a bounce from a bare JID');
    assert.equal(carbonsEligible(m({ type: 'error' }), true, true), false);
    assert.equal(carbonsEligible(m({ type: 'error' }), false, false), false);
    assert.equal(carbonsEligible(m({ type: 'chat' }, x('private', { xmlns: NS_CARBONS })), true, true), false);
    assert.equal(carbonsEligible(m({ type: 'chat' }, x('no-copy', { xmlns: NS_HINTS })), false, true), false);
    assert.equal(carbonsEligible(m({ type: 'chat' }, x('sent', { xmlns: NS_CARBONS })), true, false), false, 'never a carbon of a carbon');
  });
});
