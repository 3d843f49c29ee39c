/**
 * XEP-0198 Stream Management end to end over real sockets: acks both ways, resumption after a
 * lost connection, and what happens to a hibernating session's queue when nobody resumes it.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { allModules } from '../../server/modules/index.js';
import type { GatehouseModule } from '../../server/core/context.js';
import { BoundSession } from '../../server/core/session.js';
import { createStreamManagementModule, NS_SM, type StreamManagementOptions } from '../../server/modules/stream-management.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { ManualClock } from '../../shared/clock.js';

// ---- support ----

/** The unacknowledged-queue bound in these tests (the real one, MAX_UNACKED_STANZAS, is 2000). */
const SMALL_QUEUE = 60;

function modules(opts: StreamManagementOptions): GatehouseModule[] {
  return [...allModules().filter((m) => m.name !== 'stream-management'), createStreamManagementModule(opts)];
}

const sm = (name: string, attrs: Record<string, string | number> = {}) => x(name, { xmlns: NS_SM, ...attrs });
const isSm = (name: string) => (el: Element) => el.name === name && el.attrs.xmlns === NS_SM;
const isMessage = (id: string) => (el: Element) => el.name === 'message' && el.attrs.id === id;
const isPresence = (from: string, type?: string) => (el: Element) => el.name === 'presence' && el.attrs.from === from && el.attrs.type === type;

async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Mutual subscription written straight to storage (the handshake is the presence tests' business). */
async function mutual(ts: TestServer, a: string, b: string): Promise<void> {
  const { storage } = ts.server.ctx;
  const ida = (await storage.accounts.get(a, 'localhost'))!.id;
  const idb = (await storage.accounts.get(b, 'localhost'))!.id;
  const item = (jid: string) => ({ jid, name: null, subscription: 'both' as const, ask: false, pendingIn: false, approved: false, groups: [] });
  await storage.roster.put(ida, item(`${b}@localhost`));
  await storage.roster.put(idb, item(`${a}@localhost`));
}

async function online(c: TestClient): Promise<void> {
  c.send(x('presence'));
  await c.expect(isPresence(c.jid));
}

async function ping(c: TestClient): Promise<void> {
  const r = await c.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
  assert.equal(r.attrs.type, 'result');
}

async function enable(c: TestClient, resume = true): Promise<Element> {
  c.send(sm('enable', resume ? { resume: 'true' } : {}));
  return c.expect(isSm('enabled'));
}

function chat(to: string, id: string, body = `text ${id}`): Element {
  return x('message', { to, type: 'chat', id }, x('body', {}, body));
}

function sessionOf(ts: TestServer, fullJid: string): BoundSession {
  const s = ts.server.ctx.sessions.get(fullJid);
  assert.ok(s instanceof BoundSession, `a bound session for ${fullJid}`);
  return s;
}

async function offlineIds(ts: TestServer, name: string): Promise<string[]> {
  const account = await ts.server.ctx.storage.accounts.get(name, 'localhost');
  const stored = await ts.server.ctx.storage.offline.list(account!.id);
  return stored.map((m) => /^<message[^>]* id=['"]([^'"]+)/.exec(m.stanza)?.[1] ?? m.stanza);
}

async function offlineCount(ts: TestServer, name: string): Promise<number> {
  const account = await ts.server.ctx.storage.accounts.get(name, 'localhost');
  return ts.server.ctx.storage.offline.count(account!.id);
}

/** A new connection of the account that resumes `previd` (or fails to). */
async function resumeAs(ts: TestServer, name: string, previd: string, h: number): Promise<{ client: TestClient; answer: Element }> {
  const client = await ts.client();
  const features = await client.authenticateAndRestart(name, 'secret-' + name);
  assert.ok(features.getChild('sm', NS_SM), 'stream management is offered after authentication');
  client.send(sm('resume', { previd, h }));
  const answer = await client.expect((el) => el.attrs.xmlns === NS_SM && (el.name === 'resumed' || el.name === 'failed'));
  return { client, answer };
}

// ---- acks and resumption ----

describe('XEP-0198 stream management', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ modules: modules({ resumptionTimeout: 60_000, maxUnackedStanzas: SMALL_QUEUE }), logLevel: 'info' });
  });
  after(async () => {
    if (process.env.SHOW_LOG) console.log(ts.logLines.filter((l) => /error|warn|fail/i.test(l)).join('\n'));
    await ts?.stop();
  });

  test('the feature is offered after authentication only; <enable/> before binding fails and binding still works', async () => {
    const c = await ts.client();
    assert.equal(c.streamFeatures?.getChild('sm', NS_SM), undefined, 'not before authentication');
    await c.register('feat', 'secret-feat');
    const features = await c.authenticateAndRestart('feat', 'secret-feat');
    assert.ok(features.getChild('sm', NS_SM));
    c.send(sm('enable'));
    const failed = await c.expect(isSm('failed'));
    assert.ok(failed.getChild('unexpected-request', NS.stanzas));
    const bound = await c.iq(x('iq', { type: 'set' }, x('bind', { xmlns: NS.bind })));
    assert.equal(bound.attrs.type, 'result');
    const enabled = await enable(c, false);
    assert.equal(enabled.attrs.id, undefined, 'no SM-ID without resumption');
    assert.equal(enabled.attrs.resume, undefined);
  });

  test('<enabled/> with resumption: an id, resume and the maximum hibernation in seconds', async () => {
    const c = await ts.user('maxi');
    const enabled = await enable(c);
    assert.ok((enabled.attrs.id ?? '').length >= 16);
    assert.equal(enabled.attrs.resume, 'true');
    assert.equal(enabled.attrs.max, '60');
    const c2 = await ts.user('maxi2');
    c2.send(sm('enable', { resume: '1', max: 5 }));
    assert.equal((await c2.expect(isSm('enabled'))).attrs.max, '5', "the client's shorter maximum wins");
  });

  test('h counts the stanzas the server handled: N stanzas, then <r/>, answer <a h=N/>', async () => {
    const c = await ts.user('counter');
    c.send(sm('r'));
    // Handled in order: an answer would come before the ping's result.
    await ping(c);
    assert.equal(c.received.filter(isSm('a')).length, 0, 'no answer before stream management is enabled');
    await enable(c);
    c.send(sm('r'));
    assert.equal((await c.expect(isSm('a'))).attrs.h, '0');
    await online(c);
    await ping(c);
    await ping(c);
    c.send(sm('r'));
    assert.equal((await c.expect(isSm('a'))).attrs.h, '3');
    c.send(chat('nobody-here@localhost', 'x1'));
    await c.expect((el) => el.name === 'message' && el.attrs.type === 'error');
    c.send(sm('r'));
    assert.equal((await c.expect(isSm('a'))).attrs.h, '4', 'a stanza that bounced was handled too');
  });

  test('the server requests acks after 5 unacknowledged stanzas and drops what the client acknowledged', async () => {
    const alice = await ts.user('req-alice', undefined, 'phone');
    const bob = await ts.user('req-bob');
    const enabled = await enable(alice);
    for (let i = 1; i <= 5; i++) bob.send(chat(alice.jid, `m${i}`));
    for (let i = 1; i <= 5; i++) await alice.expect(isMessage(`m${i}`));
    await alice.expect(isSm('r'));
    alice.send(sm('a', { h: 5 }));
    await ping(alice); // the ack is handled
    // Lose the connection: nothing acknowledged comes again.
    alice.destroy();
    await waitFor('hibernation', () => sessionOf(ts, alice.jid).hibernating);
    const { client, answer } = await resumeAs(ts, 'req-alice', enabled.attrs.id!, 5);
    assert.equal(answer.name, 'resumed');
    assert.equal(answer.attrs.h, '1', 'one stanza (the ping) handled from the client');
    // A retransmission is written right after <resumed/>, before the answer to this ping.
    await ping(client);
    assert.equal(client.received.filter((el) => el.name === 'message').length, 0, 'nothing acknowledged comes again');
  });

  test('an <a/> acknowledging more than was sent ends the stream with handled-count-too-high', async () => {
    const c = await ts.user('toohigh');
    await enable(c);
    await ping(c);
    c.send(sm('a', { h: 3 }));
    const error = await c.expect('stream:error');
    assert.ok(error.getChild('undefined-condition', NS.streams));
    const detail = error.getChild('handled-count-too-high', NS_SM);
    assert.ok(detail);
    assert.equal(detail.attrs.h, '3');
    assert.equal(detail.attrs['send-count'], '1');
    await c.waitClosed();
  });

  test('resumption after a lost connection: the session stays bound and available, and what was sent meanwhile arrives after <resumed/>', async () => {
    const alice = await ts.user('res-alice', undefined, 'phone');
    const bob = await ts.user('res-bob', undefined, 'desk');
    await mutual(ts, 'res-alice', 'res-bob');
    await online(bob);
    const enabled = await enable(alice);
    await online(alice);
    await bob.expect(isPresence(alice.jid));
    await ping(alice);
    await ping(alice);
    bob.send(chat('res-alice@localhost', 'm1'));
    await alice.expect(isMessage('m1'));
    const session = sessionOf(ts, alice.jid);

    alice.destroy();
    await waitFor('hibernation', () => session.hibernating);
    // Still bound and available: delivered into its queue, nothing bounces, no unavailable presence.
    bob.send(chat('res-alice@localhost', 'm2'));
    bob.send(chat(alice.jid, 'm3'));
    await ping(bob);
    assert.equal(bob.received.filter((el) => el.attrs.type === 'error' || isPresence(alice.jid, 'unavailable')(el)).length, 0);
    assert.equal(ts.server.ctx.sessions.get(alice.jid), session);
    assert.equal(session.available, true);

    // The client says it handled 3 stanzas (of the presence echo, bob's presence and two ping results).
    const { client, answer } = await resumeAs(ts, 'res-alice', enabled.attrs.id!, 3);
    assert.equal(answer.name, 'resumed');
    assert.equal(answer.attrs.previd, enabled.attrs.id);
    assert.equal(answer.attrs.h, '3', 'presence and two pings handled from the client');
    await waitFor('the retransmission', () => client.received.filter((el) => el.name === 'message').length === 3);
    assert.deepEqual(
      client.received.filter((el) => el.name === 'message').map((el) => el.attrs.id),
      ['m1', 'm2', 'm3'],
    );
    assert.equal(ts.server.ctx.sessions.get(alice.jid), session, 'the same session, now on the new connection');
    assert.equal(session.hibernating, false);

    // Counting goes on from where it was, both ways.
    await ping(client);
    client.send(sm('r'));
    assert.equal((await client.expect(isSm('a'))).attrs.h, '4');
    // Sent: the presence echo, bob's presence, two ping results, three messages and a ping result.
    client.send(sm('a', { h: 8 }));
    await ping(client);
    assert.equal(client.closed, false);
    bob.send(chat(alice.jid, 'm4'));
    await client.expect(isMessage('m4'));
    await ping(bob);
    assert.equal(bob.received.filter(isPresence(alice.jid, 'unavailable')).length, 0);
  });

  test('a stale or unknown SM-ID fails with item-not-found, and the client binds on the same stream', async () => {
    await ts.user('stale');
    const { client, answer } = await resumeAs(ts, 'stale', 'no-such-session', 0);
    assert.equal(answer.name, 'failed');
    assert.ok(answer.getChild('item-not-found', NS.stanzas));
    const bound = await client.iq(x('iq', { type: 'set' }, x('bind', { xmlns: NS.bind })));
    assert.equal(bound.attrs.type, 'result');
    await enable(client);
  });

  test("P17 another account cannot resume a session, and learns nothing about it", async () => {
    const alice = await ts.user('own-alice', undefined, 'phone');
    await ts.user('own-mallory');
    const enabled = await enable(alice);
    alice.destroy();
    await waitFor('hibernation', () => sessionOf(ts, alice.jid).hibernating);
    const { answer } = await resumeAs(ts, 'own-mallory', enabled.attrs.id!, 0);
    assert.equal(answer.name, 'failed');
    assert.ok(answer.getChild('item-not-found', NS.stanzas));
    assert.equal(answer.attrs.h, undefined);
    assert.equal(sessionOf(ts, alice.jid).hibernating, true, "alice's session is untouched");
    const { answer: own } = await resumeAs(ts, 'own-alice', enabled.attrs.id!, 0);
    assert.equal(own.name, 'resumed');
  });

  test('resuming while the old connection still looks open closes it with a conflict stream error', async () => {
    const old = await ts.user('dup', undefined, 'phone');
    const enabled = await enable(old);
    await ping(old);
    const { client, answer } = await resumeAs(ts, 'dup', enabled.attrs.id!, 1);
    assert.equal(answer.name, 'resumed');
    await old.waitClosed();
    assert.equal(old.streamError, 'conflict');
    await ping(client);
    assert.equal(sessionOf(ts, old.jid).currentTransport !== null, true);
  });

  test('resume after binding, and a second <enable/>, are refused', async () => {
    const c = await ts.user('twice');
    const enabled = await enable(c);
    c.send(sm('resume', { previd: enabled.attrs.id!, h: 0 }));
    assert.ok((await c.expect(isSm('failed'))).getChild('unexpected-request', NS.stanzas));
    c.send(sm('enable'));
    await c.expect('stream:error');
    assert.equal(c.streamError, 'policy-violation');
  });

  test('a clean close ends a resumable session at once; an <a/> sent just before it counts', async () => {
    const alice = await ts.user('clean-alice', undefined, 'phone');
    const bob = await ts.user('clean-bob');
    await mutual(ts, 'clean-alice', 'clean-bob');
    await online(bob);
    await enable(alice);
    await online(alice);
    await bob.expect(isPresence(alice.jid));
    bob.send(chat(alice.jid, 'c1'));
    await alice.expect(isMessage('c1'));
    // The presence echo, bob's presence and c1.
    alice.writeRaw(`<a xmlns='${NS_SM}' h='3'/></stream:stream>`);
    await bob.expect(isPresence(alice.jid, 'unavailable'));
    assert.equal(ts.server.ctx.sessions.get(alice.jid), undefined);
    // c1 was acknowledged: it is not stored again. A marker stored after the session ended
    // (anything requeued from it was routed before bob saw the unavailable).
    bob.send(chat('clean-alice@localhost', 'c2'));
    await waitFor('the marker in offline storage', async () => (await offlineCount(ts, 'clean-alice')) > 0);
    assert.deepEqual(await offlineIds(ts, 'clean-alice'), ['c2']);
  });

  test('a new session for the same resource replaces a hibernating one and gets its unacknowledged messages', async () => {
    const alice = await ts.user('repl-alice', undefined, 'phone');
    const bob = await ts.user('repl-bob');
    await enable(alice);
    alice.destroy();
    await waitFor('hibernation', () => sessionOf(ts, alice.jid).hibernating);
    bob.send(chat(alice.jid, 'r1'));
    await waitFor('r1 queued', () => sessionOf(ts, alice.jid).counters.stanzasOut >= 2);
    const fresh = await ts.client();
    await fresh.login('repl-alice', 'secret-repl-alice', { resource: 'phone' });
    const got = await fresh.expect(isMessage('r1'));
    const delay = got.getChild('delay', NS.delay);
    assert.equal(delay?.attrs.from, 'localhost', 'stamped with the time it first reached the old session');
  });

  test('P5 the unacknowledged queue is bounded: one stanza more ends a hibernating session, and every message goes to offline storage in order', async () => {
    const alice = await ts.user('full-alice', undefined, 'phone');
    const bob = await ts.user('full-bob');
    await enable(alice);
    alice.destroy();
    const session = sessionOf(ts, alice.jid);
    await waitFor('hibernation', () => session.hibernating);
    for (let i = 0; i < SMALL_QUEUE; i++) bob.send(chat(alice.jid, `q${i}`, 'x'));
    await ping(bob);
    assert.equal(session.ended, false, 'exactly full');
    bob.send(chat(alice.jid, `q${SMALL_QUEUE}`, 'x'));
    await ping(bob);
    assert.equal(session.ended, true);
    await waitFor('offline storage', async () => (await offlineCount(ts, 'full-alice')) === SMALL_QUEUE + 1);
    const fresh = await ts.client();
    await fresh.login('full-alice', 'secret-full-alice');
    await online(fresh);
    await waitFor('offline delivery', () => fresh.received.filter((el) => el.name === 'message').length === SMALL_QUEUE + 1);
    assert.deepEqual(
      fresh.received.filter((el) => el.name === 'message').map((el) => el.attrs.id),
      Array.from({ length: SMALL_QUEUE + 1 }, (_, i) => `q${i}`),
    );
  });
});

// ---- when nobody resumes ----

describe('XEP-0198 hibernation timeout', () => {
  let ts: TestServer;
  // The module's timers run on the server clock: the tests move it instead of racing it.
  const clock = new ManualClock();
  before(async () => {
    ts = await startTestServer({ modules: modules({ resumptionTimeout: 700, requestAfterMs: 200 }), logLevel: 'info', clock });
  });
  after(async () => {
    if (process.env.SHOW_LOG) console.log(ts.logLines.filter((l) => /error|warn|fail/i.test(l)).join('\n'));
    await ts?.stop();
  });

  test('the server requests an ack shortly after a lone stanza', async () => {
    const alice = await ts.user('lone-alice');
    const bob = await ts.user('lone-bob');
    await enable(alice, false);
    bob.send(chat(alice.jid, 'l1'));
    await alice.expect(isMessage('l1'));
    // Set when l1 was written; until it fires, no request.
    assert.deepEqual(clock.pending(), [200]);
    clock.advance(199);
    await ping(alice);
    assert.equal(alice.received.filter(isSm('r')).length, 0, 'no request before requestAfterMs');
    clock.advance(1);
    await alice.expect(isSm('r'));
    // l1 and the ping's result
    alice.send(sm('a', { h: 2 }));
    await waitFor('the request answered', () => clock.pending().length === 0);
  });

  test('P5 after the timeout: unavailable to contacts, IQs answered with an error, unacknowledged chat messages stored offline and delivered at the next login', async () => {
    const alice = await ts.user('to-alice', undefined, 'phone');
    const bob = await ts.user('to-bob', undefined, 'desk');
    await mutual(ts, 'to-alice', 'to-bob');
    await online(bob);
    const enabled = await enable(alice);
    await online(alice);
    await bob.expect(isPresence(alice.jid));
    bob.send(chat('to-alice@localhost', 'u1'));
    await alice.expect(isMessage('u1'));
    const session = sessionOf(ts, alice.jid);

    alice.destroy();
    await waitFor('hibernation', () => session.hibernating);
    bob.send(chat('to-alice@localhost', 'u2'));
    bob.send(x('message', { to: alice.jid, type: 'chat', id: 'typing' }, x('composing', { xmlns: 'http://jabber.org/protocol/chatstates' })));
    bob.send(x('iq', { type: 'get', to: alice.jid, id: 'v1' }, x('query', { xmlns: NS.version })));
    await ping(bob);
    assert.deepEqual(clock.pending(), [700], 'the hibernation timer');
    clock.advance(699);
    await ping(bob);
    assert.equal(bob.received.filter(isPresence(alice.jid, 'unavailable')).length, 0, 'still available while hibernating');
    assert.equal(session.ended, false);

    clock.advance(1);
    await bob.expect(isPresence(alice.jid, 'unavailable'));
    // The queue is routed again in order: the IQ bounce comes after the chat state's turn.
    const iqError = await bob.expect((el) => el.name === 'iq' && el.attrs.id === 'v1');
    assert.equal(errorCondition(iqError), 'service-unavailable');
    assert.equal(ts.server.ctx.sessions.get(alice.jid), undefined);
    await waitFor('offline storage', async () => (await offlineCount(ts, 'to-alice')) === 2);
    assert.deepEqual(await offlineIds(ts, 'to-alice'), ['u1', 'u2'], 'a chat state alone is not stored');

    // Too late to resume; the answer says what the server had handled (the initial presence).
    const { client: late, answer } = await resumeAs(ts, 'to-alice', enabled.attrs.id!, 1);
    assert.equal(answer.name, 'failed');
    assert.ok(answer.getChild('item-not-found', NS.stanzas));
    assert.equal(answer.attrs.h, '1');

    const bound = await late.iq(x('iq', { type: 'set' }, x('bind', { xmlns: NS.bind }, x('resource', {}, 'phone'))));
    assert.equal(bound.attrs.type, 'result');
    late.jid = alice.jid;
    await online(late);
    await waitFor('offline delivery', () => late.received.filter((el) => el.name === 'message').length >= 2);
    const delivered = late.received.filter((el) => el.name === 'message');
    assert.deepEqual(
      delivered.map((m) => m.attrs.id),
      ['u1', 'u2'],
    );
    for (const m of delivered) {
      assert.equal(m.getChildText('body'), `text ${m.attrs.id}`);
      assert.ok(m.getChildren('delay', NS.delay).length >= 1, 'delay-stamped');
    }
    await waitFor('the store to empty', async () => (await offlineCount(ts, 'to-alice')) === 0);
  });

  test('a lost connection without resumption ends the session at once; its unacknowledged messages are stored', async () => {
    const alice = await ts.user('nr-alice', undefined, 'phone');
    const bob = await ts.user('nr-bob');
    await enable(alice, false);
    await online(alice);
    bob.send(chat('nr-alice@localhost', 'n1'));
    await alice.expect(isMessage('n1'));
    alice.destroy();
    await waitFor('the session to end', () => ts.server.ctx.sessions.get(alice.jid) === undefined);
    await waitFor('offline storage', async () => (await offlineCount(ts, 'nr-alice')) === 1);
  });
});
