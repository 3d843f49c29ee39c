/**
 * RFC 6121 section 8.5 message delivery to local accounts, end to end over real sockets.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { loginAs as login, startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

// ---- support (kept in this file: the task owns only its test files) ----

/** Sends available presence and waits for the server's echo of it (RFC 6121 4.2.2). */
async function online(c: TestClient, priority?: number): Promise<void> {
  c.send(x('presence', {}, priority === undefined ? null : x('priority', {}, String(priority))));
  await c.expect((el) => el.name === 'presence' && el.attrs.from === c.jid && el.attrs.type === undefined);
}

/** A ping round trip: everything the client sent before has been routed. */
async function barrier(c: TestClient): Promise<void> {
  const r = await c.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
  assert.equal(r.attrs.type, 'result');
}

function chat(to: string, body: string, attrs: Record<string, string> = {}): Element {
  return x('message', { to, type: 'chat', id: 'm-' + Math.random().toString(36).slice(2), ...attrs }, x('body', {}, body));
}

const isMessage = (body: string) => (el: Element) => el.name === 'message' && el.getChildText('body') === body;
const isError = (id: string) => (el: Element) => el.name === 'message' && el.attrs.type === 'error' && el.attrs.id === id;

// ---- tests ----

describe('message delivery (RFC 6121 8.5)', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ logLevel: 'info' });
  });
  after(async () => {
    await ts.stop();
  });

  test('P5 a bare-JID chat message goes only to the resource with the highest priority', async () => {
    const alice = await login(ts, 'alice1');
    const high = await login(ts, 'bob1', 'high');
    const low = await login(ts, 'bob1', 'low');
    await online(high, 5);
    await online(low, 1);
    alice.send(chat('bob1@localhost', 'to the most available'));
    const got = await high.expect(isMessage('to the most available'));
    assert.equal(got.attrs.from, alice.jid);
    assert.ok(await low.expectNothing(isMessage('to the most available')));
  });

  test('P5 every resource sharing the highest priority gets a bare-JID message', async () => {
    const alice = await login(ts, 'alice2');
    const a = await login(ts, 'bob2', 'a');
    const b = await login(ts, 'bob2', 'b');
    const lower = await login(ts, 'bob2', 'lower');
    await online(a, 3);
    await online(b, 3);
    await online(lower, 0);
    alice.send(x('message', { to: 'bob2@localhost' }, x('body', {}, 'normal to both')));
    await a.expect(isMessage('normal to both'));
    await b.expect(isMessage('normal to both'));
    assert.ok(await lower.expectNothing(isMessage('normal to both')));
  });

  test('P5 a message to the full JID of a resource that has not sent presence is delivered', async () => {
    const alice = await login(ts, 'alice3');
    const bob = await login(ts, 'bob3', 'quiet');
    alice.send(chat('bob3@localhost/quiet', 'before presence', { type: 'normal' }));
    const got = await bob.expect(isMessage('before presence'));
    assert.equal(got.attrs.to, 'bob3@localhost/quiet');
  });

  test('P5 a groupchat message to a bare JID is answered with service-unavailable', async () => {
    const alice = await login(ts, 'alice4');
    const bob = await login(ts, 'bob4');
    await online(bob, 1);
    const msg = chat('bob4@localhost', 'not a room', { type: 'groupchat' });
    alice.send(msg);
    const err = await alice.expect(isError(msg.attrs.id!));
    assert.equal(errorCondition(err), 'service-unavailable');
    assert.equal(err.attrs.from, 'bob4@localhost');
    assert.ok(await bob.expectNothing(isMessage('not a room')));
  });

  test('P5 a message to a non-existent account is answered with service-unavailable and nothing more (P17)', async () => {
    const alice = await login(ts, 'alice5');
    for (const type of ['chat', 'normal', 'groupchat']) {
      const msg = chat('nobody@localhost', 'anyone there?', { type });
      alice.send(msg);
      const err = await alice.expect(isError(msg.attrs.id!));
      assert.equal(errorCondition(err), 'service-unavailable');
      assert.equal(err.getChild('error')?.getChild('text', NS.stanzas), undefined, 'no explanatory text');
      assert.equal(err.attrs.from, 'nobody@localhost');
    }
    // to a full JID of a non-existent account: the same answer as to the bare JID
    const full = chat('nobody@localhost/res', 'anyone?');
    alice.send(full);
    assert.equal(errorCondition(await alice.expect(isError(full.attrs.id!))), 'service-unavailable');
    // headline and error are silently ignored, exactly as for an existing offline account
    alice.send(chat('nobody@localhost', 'news', { type: 'headline' }));
    alice.send(x('message', { to: 'nobody@localhost', type: 'error', id: 'e1' }, x('error', { type: 'cancel' }, x('item-not-found', { xmlns: NS.stanzas }))));
    await barrier(alice);
    assert.ok(await alice.expectNothing((el) => el.name === 'message'));
  });

  test('headline to a bare JID reaches every available resource with non-negative priority', async () => {
    const alice = await login(ts, 'alice6');
    const a = await login(ts, 'bob6', 'a');
    const b = await login(ts, 'bob6', 'b');
    const negative = await login(ts, 'bob6', 'neg');
    await online(a, 10);
    await online(b, 0);
    await online(negative, -1);
    alice.send(chat('bob6@localhost', 'headline news', { type: 'headline' }));
    await a.expect(isMessage('headline news'));
    await b.expect(isMessage('headline news'));
    assert.ok(await negative.expectNothing(isMessage('headline news')));
  });

  test('an error message to a bare JID is silently ignored (RFC 6121 8.5.2.1.1)', async () => {
    const alice = await login(ts, 'alice7');
    const bob = await login(ts, 'bob7');
    await online(bob, 1);
    alice.send(x('message', { to: 'bob7@localhost', type: 'error', id: 'err-1' }, x('body', {}, 'bounced'), x('error', { type: 'cancel' }, x('service-unavailable', { xmlns: NS.stanzas }))));
    await barrier(alice);
    assert.ok(await bob.expectNothing((el) => el.name === 'message'));
    assert.ok(await alice.expectNothing((el) => el.name === 'message'));
  });

  test('an error message to a connected full JID is delivered', async () => {
    const alice = await login(ts, 'alice8');
    const bob = await login(ts, 'bob8', 'r');
    alice.send(x('message', { to: 'bob8@localhost/r', type: 'error', id: 'err-2' }, x('error', { type: 'cancel' }, x('service-unavailable', { xmlns: NS.stanzas }))));
    const got = await bob.expect((el) => el.name === 'message' && el.attrs.id === 'err-2');
    assert.equal(got.attrs.type, 'error');
  });

  test('chat to the full JID of a resource that is gone goes to the bare JID', async () => {
    const alice = await login(ts, 'alice9');
    const bob = await login(ts, 'bob9', 'desk');
    await online(bob, 0);
    alice.send(chat('bob9@localhost/phone', 'follow me'));
    await bob.expect(isMessage('follow me'));
  });

  test('groupchat to an unknown full JID bounces; headline and error to it are dropped', async () => {
    const alice = await login(ts, 'alice10');
    const bob = await login(ts, 'bob10', 'desk');
    await online(bob, 0);
    const gc = chat('bob10@localhost/gone', 'room message', { type: 'groupchat' });
    alice.send(gc);
    const err = await alice.expect(isError(gc.attrs.id!));
    assert.equal(errorCondition(err), 'service-unavailable');
    assert.equal(err.attrs.from, 'bob10@localhost/gone');
    alice.send(chat('bob10@localhost/gone', 'old news', { type: 'headline' }));
    await barrier(alice);
    assert.ok(await bob.expectNothing((el) => el.name === 'message'));
    assert.ok(await alice.expectNothing((el) => el.name === 'message'));
  });

  test('a message without a to attribute goes to the sender\'s own available resources', async () => {
    const me = await login(ts, 'carol', 'one');
    const other = await login(ts, 'carol', 'two');
    await online(me, 1);
    await online(other, 1);
    me.send(x('message', { type: 'chat', id: 'self' }, x('body', {}, 'note to self')));
    await me.expect(isMessage('note to self'));
    await other.expect(isMessage('note to self'));
  });

  test('messages to the server itself are dropped without an answer', async () => {
    const alice = await login(ts, 'alice11');
    alice.send(chat('localhost', 'hello server'));
    await barrier(alice);
    assert.ok(await alice.expectNothing((el) => el.name === 'message'));
  });

  test('P20 end-to-end encrypted payloads are relayed untouched', async () => {
    const alice = await login(ts, 'alice12');
    const bob = await login(ts, 'bob12');
    await online(bob, 0);
    const omemo = x(
      'encrypted',
      { xmlns: 'eu.siacs.conversations.axolotl' },
      x('header', { sid: '12345' }, x('key', { rid: '67890', prekey: 'true' }, 'MwohBQ+/=='), x('iv', {}, 'aXZpdml2aXY=')),
      x('payload', {}, 'ZW5jcnlwdGVk<&>'),
    );
    const pgp = x('openpgp', { xmlns: 'urn:xmpp:openpgp:0' }, 'LS0tLS1CRUdJTiBQR1AgTUVTU0FHRS0tLS0t');
    const msg = x('message', { to: 'bob12@localhost', type: 'chat', id: 'e2e' }, omemo, pgp, x('store', { xmlns: 'urn:xmpp:hints' }), x('body', {}, 'I sent you an OMEMO encrypted message'));
    alice.send(msg);
    const got = await bob.expect((el) => el.name === 'message' && el.attrs.id === 'e2e');
    assert.deepEqual(
      got.elements.map((c) => c.toString()),
      msg.elements.map((c) => c.toString()),
    );
  });
});
