/**
 * XEP-0160 offline storage with XEP-0203 delay (privacy clause P5), end to end over real sockets.
 * The SIGKILL durability test lives with the CLI tests (it needs a separate server process).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ensureAccount as accountId, loginAs as login, startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import type { DeliveryFailure } from '../../server/core/router.js';
import { offlineDecision } from '../../server/modules/offline.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { ManualClock } from '../../shared/clock.js';

async function online(c: TestClient, priority?: number): Promise<void> {
  c.send(x('presence', {}, priority === undefined ? null : x('priority', {}, String(priority))));
  await c.expect((el) => el.name === 'presence' && el.attrs.from === c.jid && el.attrs.type === undefined);
}

/** A ping round trip: everything the client sent before has been routed (and stored). */
async function barrier(c: TestClient): Promise<void> {
  const r = await c.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
  assert.equal(r.attrs.type, 'result');
}

async function stored(ts: TestServer, name: string): Promise<number> {
  return ts.server.ctx.storage.offline.count(await accountId(ts, name));
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let seq = 0;
function chat(to: string, body: string, attrs: Record<string, string> = {}, ...extra: Element[]): Element {
  return x('message', { to, type: 'chat', id: `m${++seq}`, ...attrs }, x('body', {}, body), ...extra);
}

const isMessage = (body: string) => (el: Element) => el.name === 'message' && el.getChildText('body') === body;
const isError = (id: string) => (el: Element) => el.name === 'message' && el.attrs.type === 'error' && el.attrs.id === id;
const chatState = (state: string) => x(state, { xmlns: 'http://jabber.org/protocol/chatstates' });
const hint = (name: string) => x(name, { xmlns: 'urn:xmpp:hints' });

// ---- tests ----

describe('offline storage (XEP-0160, P5)', () => {
  const clock = new ManualClock(Date.UTC(2026, 2, 14, 9, 30, 0));
  let ts: TestServer;
  const failures: DeliveryFailure[] = [];
  before(async () => {
    ts = await startTestServer({ clock, logLevel: 'info', config: { offline: { maxPerUser: 3 } } });
    ts.server.ctx.hooks.on('delivery/failed', (f) => void failures.push(f));
  });
  after(async () => {
    await ts.stop();
  });

  test('P5 a message to an offline user is delivered at next login with its arrival time as delay stamp, then deleted', async () => {
    const alice = await login(ts, 'alice1');
    await accountId(ts, 'bob1');
    const first = chat('bob1@localhost', 'while you were out');
    alice.send(first);
    await barrier(alice);
    const arrivedFirst = clock.now();
    clock.advance(90_000);
    const second = chat('bob1@localhost', 'and a second one', { type: 'normal' });
    alice.send(second);
    await barrier(alice);
    const arrivedSecond = clock.now();
    assert.equal(await stored(ts, 'bob1'), 2);
    assert.ok(await alice.expectNothing((el) => el.name === 'message', 100), 'stored silently, no error');

    clock.advance(3_600_000);
    const bob = await login(ts, 'bob1', 'laptop');
    assert.ok(await bob.expectNothing((el) => el.name === 'message', 200), 'nothing before initial presence');
    await online(bob, 0);
    const got1 = await bob.expect((el) => el.name === 'message');
    const got2 = await bob.expect((el) => el.name === 'message');
    assert.equal(got1.getChildText('body'), 'while you were out', 'arrival order');
    assert.equal(got2.getChildText('body'), 'and a second one');
    for (const [got, sent, at] of [
      [got1, first, arrivedFirst],
      [got2, second, arrivedSecond],
    ] as const) {
      assert.equal(got.attrs.id, sent.attrs.id);
      assert.equal(got.attrs.type, sent.attrs.type);
      assert.equal(got.attrs.from, alice.jid);
      assert.equal(got.attrs.to, 'bob1@localhost');
      const delays = got.getChildren('delay', NS.delay);
      assert.equal(delays.length, 1);
      assert.equal(delays[0]!.attrs.from, 'localhost');
      assert.equal(delays[0]!.attrs.stamp, at.toISOString());
      assert.equal(new Date(delays[0]!.attrs.stamp!).getTime(), at.getTime());
      assert.equal(got.getChild('x', 'jabber:x:delay'), undefined, 'no legacy XEP-0091 delay');
    }
    await waitFor('stored messages to be deleted', async () => (await stored(ts, 'bob1')) === 0);

    // delivered once: the next login gets nothing
    await bob.close();
    const again = await login(ts, 'bob1', 'phone');
    await online(again, 0);
    assert.ok(await again.expectNothing((el) => el.name === 'message'));
  });

  test('P5 a full offline store bounces with service-unavailable and records a P8 delivery failure without content', async () => {
    const alice = await login(ts, 'alice2');
    await accountId(ts, 'bob2');
    for (let i = 1; i <= 3; i++) alice.send(chat('bob2@localhost', `fits ${i}`));
    const over = chat('bob2@localhost', 'secret overflow text');
    failures.length = 0;
    alice.send(over);
    const err = await alice.expect(isError(over.attrs.id!));
    assert.equal(errorCondition(err), 'service-unavailable');
    assert.equal(err.attrs.from, 'bob2@localhost');
    assert.equal(await stored(ts, 'bob2'), 3);
    await waitFor('the delivery failure record', async () => failures.length > 0);
    const failure = failures.find((f) => f.to === 'bob2@localhost')!;
    assert.equal(failure.from, 'alice2@localhost');
    assert.equal(failure.kind, 'message');
    assert.equal(failure.condition, 'service-unavailable');
    assert.ok(!JSON.stringify(failures).includes('secret overflow text'), 'P8: no content');
    assert.ok(!ts.logLines.join('\n').includes('secret overflow text'), 'no body in any log line');

    // after delivery there is room again
    const bob = await login(ts, 'bob2');
    await online(bob, 1);
    for (let i = 1; i <= 3; i++) await bob.expect(isMessage(`fits ${i}`));
    await waitFor('the store to empty', async () => (await stored(ts, 'bob2')) === 0);
  });

  test('P5 headline messages are not stored offline', async () => {
    const alice = await login(ts, 'alice3');
    await accountId(ts, 'bob3');
    alice.send(chat('bob3@localhost', 'breaking news', { type: 'headline' }));
    await barrier(alice);
    assert.equal(await stored(ts, 'bob3'), 0);
    assert.ok(await alice.expectNothing((el) => el.name === 'message', 100), 'silently ignored');
  });

  test('P5 error messages are not stored offline', async () => {
    const alice = await login(ts, 'alice4');
    await accountId(ts, 'bob4');
    alice.send(x('message', { to: 'bob4@localhost', type: 'error', id: 'e1' }, x('body', {}, 'x'), x('error', { type: 'cancel' }, x('item-not-found', { xmlns: NS.stanzas }))));
    alice.send(x('message', { to: 'bob4@localhost/res', type: 'error', id: 'e2' }, x('error', { type: 'cancel' }, x('item-not-found', { xmlns: NS.stanzas }))));
    await barrier(alice);
    assert.equal(await stored(ts, 'bob4'), 0);
    assert.ok(await alice.expectNothing((el) => el.name === 'message', 100));
  });

  test('P5 groupchat messages are not stored offline but answered with service-unavailable', async () => {
    const alice = await login(ts, 'alice5');
    await accountId(ts, 'bob5');
    const gc = chat('bob5@localhost', 'room talk', { type: 'groupchat' });
    alice.send(gc);
    assert.equal(errorCondition(await alice.expect(isError(gc.attrs.id!))), 'service-unavailable');
    assert.equal(await stored(ts, 'bob5'), 0);
  });

  test('P5 the XEP-0334 no-store hint is honoured', async () => {
    const alice = await login(ts, 'alice6');
    await accountId(ts, 'bob6');
    // content with no-store: not stored, and the sender learns it was not delivered
    const noStore = chat('bob6@localhost', 'ephemeral text', {}, hint('no-store'));
    alice.send(noStore);
    assert.equal(errorCondition(await alice.expect(isError(noStore.attrs.id!))), 'service-unavailable');
    // a typing notification with no-store: not stored and no error
    alice.send(x('message', { to: 'bob6@localhost', type: 'chat', id: 'typing' }, chatState('composing'), hint('no-store')));
    await barrier(alice);
    assert.equal(await stored(ts, 'bob6'), 0);
    assert.ok(await alice.expectNothing((el) => el.name === 'message', 100));
  });

  test('P5 chat states alone are not stored; a store hint or a receipt is', async () => {
    const alice = await login(ts, 'alice7');
    await accountId(ts, 'bob7');
    alice.send(x('message', { to: 'bob7@localhost', type: 'chat', id: 'cs' }, chatState('active'), x('thread', {}, 't1')));
    await barrier(alice);
    assert.equal(await stored(ts, 'bob7'), 0);
    assert.ok(await alice.expectNothing((el) => el.name === 'message', 100), 'dropped without an error');
    alice.send(x('message', { to: 'bob7@localhost', type: 'chat', id: 'rcpt' }, x('received', { xmlns: 'urn:xmpp:receipts', id: 'm0' })));
    alice.send(x('message', { to: 'bob7@localhost', type: 'chat', id: 'hinted' }, chatState('paused'), hint('store')));
    await barrier(alice);
    assert.equal(await stored(ts, 'bob7'), 2);
    const bob = await login(ts, 'bob7');
    await online(bob);
    assert.equal((await bob.expect('message')).attrs.id, 'rcpt');
    assert.equal((await bob.expect('message')).attrs.id, 'hinted');
  });

  test('P5 a message to the full JID of an offline resource falls back to the bare JID and is stored', async () => {
    const alice = await login(ts, 'alice8');
    await accountId(ts, 'bob8');
    const msg = chat('bob8@localhost/phone', 'to your phone');
    alice.send(msg);
    await barrier(alice);
    assert.equal(await stored(ts, 'bob8'), 1);
    const bob = await login(ts, 'bob8', 'laptop');
    await online(bob, 0);
    const got = await bob.expect(isMessage('to your phone'));
    assert.equal(got.attrs.to, 'bob8@localhost', 'stored as addressed to the bare JID');
    assert.ok(got.getChild('delay', NS.delay));
  });

  test('P5 with only a negative-priority resource online, messages are stored offline', async () => {
    const alice = await login(ts, 'alice9');
    const hidden = await login(ts, 'bob9', 'hidden');
    await online(hidden, -1);
    alice.send(chat('bob9@localhost', 'for a real client'));
    await barrier(alice);
    assert.equal(await stored(ts, 'bob9'), 1);
    assert.ok(await hidden.expectNothing(isMessage('for a real client')));
    // a non-negative resource comes online and gets it; the negative one still does not
    const real = await login(ts, 'bob9', 'real');
    await online(real, 0);
    await real.expect(isMessage('for a real client'));
    assert.ok(await hidden.expectNothing(isMessage('for a real client')));
    await waitFor('the store to empty', async () => (await stored(ts, 'bob9')) === 0);
  });

  test('P5 a connected resource without presence: bare-JID messages wait for its initial presence', async () => {
    const alice = await login(ts, 'alice10');
    const bob = await login(ts, 'bob10', 'slow');
    alice.send(chat('bob10@localhost', 'queued until presence'));
    await barrier(alice);
    assert.equal(await stored(ts, 'bob10'), 1);
    assert.ok(await bob.expectNothing(isMessage('queued until presence'), 150));
    await online(bob, 2);
    const got = await bob.expect(isMessage('queued until presence'));
    assert.ok(got.getChild('delay', NS.delay));
    await waitFor('the store to empty', async () => (await stored(ts, 'bob10')) === 0);
  });

  test('P20 an end-to-end encrypted message is stored and delivered untouched', async () => {
    const alice = await login(ts, 'alice11');
    await accountId(ts, 'bob11');
    const omemo = x(
      'encrypted',
      { xmlns: 'eu.siacs.conversations.axolotl' },
      x('header', { sid: '4242' }, x('key', { rid: '77', prekey: 'true' }, 'MwohBQ+/=='), x('iv', {}, 'aXZpdml2aXY=')),
      x('payload', {}, 'Y2lwaGVydGV4dA=='),
    );
    const ox = x('openpgp', { xmlns: 'urn:xmpp:openpgp:0' }, 'LS0tLS1CRUdJTiBQR1AgTUVTU0FHRS0tLS0t<&>');
    alice.send(x('message', { to: 'bob11@localhost', type: 'chat', id: 'e2e' }, omemo.clone(), hint('store')));
    alice.send(x('message', { to: 'bob11@localhost', type: 'chat', id: 'ox' }, ox.clone()));
    await barrier(alice);
    assert.equal(await stored(ts, 'bob11'), 2, 'body-less encrypted messages are stored');
    const bob = await login(ts, 'bob11');
    await online(bob, 0);
    const got = await bob.expect((el) => el.name === 'message' && el.attrs.id === 'e2e');
    assert.equal(got.getChild('encrypted', 'eu.siacs.conversations.axolotl')!.toString(), omemo.toString());
    const gotOx = await bob.expect((el) => el.name === 'message' && el.attrs.id === 'ox');
    assert.equal(gotOx.getChild('openpgp', 'urn:xmpp:openpgp:0')!.toString(), ox.toString());
  });

  test('msgoffline is announced as a server feature', () => {
    assert.ok(ts.server.ctx.disco.serverFeatures.has('msgoffline'));
  });
});

describe('offline storage disabled (maxPerUser 0)', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ logLevel: 'info', config: { offline: { maxPerUser: 0 } } });
  });
  after(async () => {
    await ts.stop();
  });

  test('P5 nothing is stored and the sender gets service-unavailable (XEP-0160)', async () => {
    const alice = await login(ts, 'alice');
    await accountId(ts, 'bob');
    const msg = chat('bob@localhost', 'nobody keeps this');
    alice.send(msg);
    assert.equal(errorCondition(await alice.expect(isError(msg.attrs.id!))), 'service-unavailable');
    assert.equal(await stored(ts, 'bob'), 0);
  });
});

describe('offline storage with a large backlog', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ logLevel: 'info', config: { offline: { maxPerUser: 1000 } } });
  });
  after(async () => {
    await ts.stop();
  });

  test('P5 a backlog larger than the send buffer is delivered completely and in order', async () => {
    const alice = await login(ts, 'alice');
    await accountId(ts, 'bob');
    const filler = 'x'.repeat(4096);
    const count = 400; // about 1.6 MiB, more than c2s.maxSendBuffer (1 MiB)
    for (let i = 0; i < count; i++) alice.send(x('message', { to: 'bob@localhost', type: 'chat', id: `b${i}` }, x('body', {}, `${i} ${filler}`)));
    await barrier(alice);
    assert.equal(await stored(ts, 'bob'), count);
    const bob = await login(ts, 'bob');
    await online(bob, 0);
    for (let i = 0; i < count; i++) {
      const got = await bob.expect('message', 10_000);
      assert.equal(got.attrs.id, `b${i}`);
    }
    await waitFor('the store to empty', async () => (await stored(ts, 'bob')) === 0);
    assert.equal(bob.closed, false);
  });
});

describe('offline storage with the smallest send buffer', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ logLevel: 'info', config: { c2s: { maxSendBuffer: '16KiB' } } });
  });
  after(async () => {
    await ts.stop();
  });

  // Output is gathered per event-loop turn before it is written; a client that reads must not be
  // taken for one that does not because a turn produced more than c2s.maxSendBuffer.
  test('P5 a client that reads gets a backlog flushed in 32 KiB batches although maxSendBuffer is 16 KiB', async () => {
    const alice = await login(ts, 'alice');
    await accountId(ts, 'bob');
    const filler = 'y'.repeat(3000);
    const count = 30; // about 90 KiB: three delivery batches of more than the send buffer each
    for (let i = 0; i < count; i++) alice.send(x('message', { to: 'bob@localhost', type: 'chat', id: `s${i}` }, x('body', {}, `${i} ${filler}`)));
    await barrier(alice);
    assert.equal(await stored(ts, 'bob'), count);
    const bob = await login(ts, 'bob');
    await online(bob, 0);
    for (let i = 0; i < count; i++) assert.equal((await bob.expect('message', 10_000)).attrs.id, `s${i}`);
    await waitFor('the store to empty', async () => (await stored(ts, 'bob')) === 0);
    assert.equal(bob.closed, false, 'still connected');
    assert.ok(!ts.logLines.some((l) => l.includes('closing a client that does not read')), 'not taken for a client that does not read');
  });
});

describe('offline storage rules (unit)', () => {
  test('what is stored, dropped or refused', () => {
    const m = (attrs: Record<string, string>, ...children: Element[]) => x('message', { xmlns: NS.client, ...attrs }, ...children);
    const body = () => x('body', {}, 'hi');
    assert.equal(offlineDecision(m({ type: 'chat' }, body())), 'store');
    assert.equal(offlineDecision(m({}, body())), 'store');
    assert.equal(offlineDecision(m({ type: 'bogus' }, body())), 'store', 'unknown type means normal');
    assert.equal(offlineDecision(m({ type: 'headline' }, body())), 'refuse');
    assert.equal(offlineDecision(m({ type: 'groupchat' }, body())), 'refuse');
    assert.equal(offlineDecision(m({ type: 'error' }, body())), 'refuse');
    assert.equal(offlineDecision(m({ type: 'chat' })), 'discard');
    assert.equal(offlineDecision(m({ type: 'chat' }, chatState('gone'), x('origin-id', { xmlns: 'urn:xmpp:sid:0', id: 'o' }))), 'discard');
    assert.equal(offlineDecision(m({ type: 'chat' }, body(), hint('no-store'))), 'refuse');
    assert.equal(offlineDecision(m({ type: 'chat' }, hint('store'))), 'store');
    assert.equal(offlineDecision(m({ type: 'chat' }, x('displayed', { xmlns: 'urn:xmpp:chat-markers:0', id: 'a' }))), 'store');
    assert.equal(offlineDecision(m({ type: 'chat' }, x('subject', {}, 'topic'))), 'store');
  });

  test('stored stanzas parse back exactly', () => {
    const msg = x('message', { xmlns: NS.client, to: 'b@localhost', from: 'a@localhost/r', type: 'chat', id: 'x' }, x('body', {}, 'a < b & "c" \u{1F600}'), x('x', { xmlns: 'jabber:x:oob' }, x('url', {}, 'https://e.example/?a=1&b=2')));
    assert.equal(parseXmlText(msg.toString(), 'jabber:client')?.toString(), msg.toString());
    assert.equal(parseXmlText('<message><body>unclosed'), null);
    assert.equal(parseXmlText('<message/><message/>'), null);
  });
});
