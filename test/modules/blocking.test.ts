/**
 * XEP-0191 Blocking Command end to end over real sockets.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { allModules } from '../../server/modules/index.js';
import type { GatehouseModule } from '../../server/core/context.js';
import type { DeliveryFailure } from '../../server/core/router.js';
import { createCarbonsModule, NS_CARBONS } from '../../server/modules/carbons.js';
import { createBlockingModule, blocks, BLOCKLIST_KEY, NS_BLOCKING, NS_BLOCKING_ERRORS, parseBlocklist } from '../../server/modules/blocking.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { Element, x } from '../../shared/xml/element.js';
import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';

function modules(): GatehouseModule[] {
  const mine = [createBlockingModule(), createCarbonsModule()];
  return [...allModules().filter((m) => !mine.some((own) => own.name === m.name)), ...mine];
}

async function resource(ts: TestServer, name: string, res: string): Promise<TestClient> {
  const c = await ts.client();
  await c.login(name, 'secret-' + name, { resource: res });
  return c;
}

async function accountId(ts: TestServer, name: string): Promise<number> {
  return (await ts.server.ctx.storage.accounts.get(name, 'localhost'))!.id;
}

/** Mutual presence subscription written straight to storage (before either side is online). */
async function mutual(ts: TestServer, a: string, b: string): Promise<void> {
  const { storage } = ts.server.ctx;
  const item = (jid: string) => ({ jid, name: null, subscription: 'both' as const, ask: false, pendingIn: false, approved: false, groups: [] });
  await storage.roster.put(await accountId(ts, a), item(`${b}@localhost`));
  await storage.roster.put(await accountId(ts, b), item(`${a}@localhost`));
}

async function online(c: TestClient, ...children: Element[]): Promise<void> {
  c.send(x('presence', {}, ...children));
  await c.expect((el) => el.name === 'presence' && el.attrs.from === c.jid && el.attrs.type === undefined && el.getChildText('status') === children.find((ch) => ch.name === 'status')?.text());
}

async function blocklist(c: TestClient): Promise<string[]> {
  const r = await c.iq(x('iq', { type: 'get' }, x('blocklist', { xmlns: NS_BLOCKING })));
  assert.equal(r.attrs.type, 'result', String(r));
  return r.getChild('blocklist', NS_BLOCKING)!.getChildren('item').map((i) => i.attrs.jid!);
}

async function command(c: TestClient, name: 'block' | 'unblock', ...jids: string[]): Promise<Element> {
  return c.iq(x('iq', { type: 'set' }, x(name, { xmlns: NS_BLOCKING }, jids.map((jid) => x('item', { jid })))));
}

async function block(c: TestClient, ...jids: string[]): Promise<void> {
  const r = await command(c, 'block', ...jids);
  assert.equal(r.attrs.type, 'result', String(r));
}

async function unblock(c: TestClient, ...jids: string[]): Promise<void> {
  const r = await command(c, 'unblock', ...jids);
  assert.equal(r.attrs.type, 'result', String(r));
}

const isPush = (name: 'block' | 'unblock') => (el: Element) => el.name === 'iq' && el.attrs.type === 'set' && el.getChild(name, NS_BLOCKING) !== undefined;
const pushItems = (el: Element, name: 'block' | 'unblock') => el.getChild(name, NS_BLOCKING)!.getChildren('item').map((i) => i.attrs.jid);
const isMessage = (body: string) => (el: Element) => el.name === 'message' && el.getChildText('body') === body;
const presenceFrom = (prefix: string, type?: string) => (el: Element) => el.name === 'presence' && (el.attrs.from ?? '').startsWith(prefix) && el.attrs.type === type;

function chat(to: string, body: string): Element {
  return x('message', { to, type: 'chat', id: 'm-' + Math.random().toString(36).slice(2) }, x('body', {}, body));
}

describe('XEP-0191 blocking command', () => {
  let ts: TestServer;
  const failures: DeliveryFailure[] = [];
  before(async () => {
    ts = await startTestServer({ modules: modules(), logLevel: 'info' });
    ts.server.ctx.hooks.on('delivery/failed', (f) => void failures.push(f));
  });
  after(async () => {
    await ts?.stop();
  });

  test('the server announces urn:xmpp:blocking', async () => {
    const c = await ts.user('disco-user');
    const info = await c.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.discoInfo })));
    const features = info.getChild('query', NS.discoInfo)!.getChildren('feature').map((f) => f.attrs.var);
    assert.ok(features.includes('urn:xmpp:blocking'));
    await c.close();
  });

  test('block and unblock: results, pushes to the resources that asked for the list, the list itself', async () => {
    const a = await ts.user('list-alice', undefined, 'a');
    const b = await resource(ts, 'list-alice', 'b');
    const c = await resource(ts, 'list-alice', 'c');
    assert.deepEqual(await blocklist(a), [], 'an empty list at first');
    assert.deepEqual(await blocklist(b), []);

    await block(a, 'Spammer@LocalHost', 'troll@elsewhere.example/Desk', 'bad.example');
    const pa = await a.expect(isPush('block'));
    assert.equal(pa.attrs.to, a.jid);
    assert.deepEqual(pushItems(pa, 'block'), ['spammer@localhost', 'troll@elsewhere.example/Desk', 'bad.example'], 'JIDs normalised');
    const pb = await b.expect(isPush('block'));
    assert.equal(pb.attrs.to, b.jid);
    assert.ok(await c.expectNothing(isPush('block')), 'c never asked for the list: no push');
    assert.deepEqual(await blocklist(c), ['bad.example', 'spammer@localhost', 'troll@elsewhere.example/Desk']);

    await unblock(b, 'spammer@localhost');
    for (const cl of [a, b, c]) {
      const p = await cl.expect(isPush('unblock'));
      assert.deepEqual(pushItems(p, 'unblock'), ['spammer@localhost']);
    }
    assert.deepEqual(await blocklist(a), ['bad.example', 'troll@elsewhere.example/Desk']);

    // Unblock all: an empty <unblock/>, pushed as such.
    await unblock(c);
    for (const cl of [a, b, c]) {
      const p = await cl.expect(isPush('unblock'));
      assert.deepEqual(pushItems(p, 'unblock'), []);
    }
    assert.deepEqual(await blocklist(a), []);
    assert.equal(await ts.server.ctx.storage.accountState.get(await accountId(ts, 'list-alice'), BLOCKLIST_KEY), null, 'nothing stored for an empty list');
    for (const cl of [a, b, c]) await cl.close();
  });

  test('a block without items is a bad request; an invalid JID is jid-malformed and changes nothing', async () => {
    const a = await ts.user('err-alice');
    const empty = await command(a, 'block');
    assert.equal(empty.attrs.type, 'error');
    assert.equal(errorCondition(empty), 'bad-request');
    const bad = await command(a, 'block', 'ok@localhost', 'not@valid@jid');
    assert.equal(bad.attrs.type, 'error');
    assert.equal(errorCondition(bad), 'jid-malformed');
    const missing = await a.iq(x('iq', { type: 'set' }, x('block', { xmlns: NS_BLOCKING }, x('item', {}))));
    assert.equal(errorCondition(missing), 'jid-malformed');
    assert.deepEqual(await blocklist(a), []);
    await a.close();
  });

  test('P17 another account cannot read or change a blocklist; it learns nothing about the account', async () => {
    const alice = await ts.user('p17-alice');
    const bob = await ts.user('p17-bob');
    const conditions: (string | undefined)[] = [];
    for (const to of ['p17-alice@localhost', 'nobody-here@localhost']) {
      const get = await bob.iq(x('iq', { type: 'get', to }, x('blocklist', { xmlns: NS_BLOCKING })));
      const set = await bob.iq(x('iq', { type: 'set', to }, x('block', { xmlns: NS_BLOCKING }, x('item', { jid: 'x@localhost' }))));
      assert.equal(get.attrs.type, 'error');
      assert.equal(set.attrs.type, 'error');
      conditions.push(errorCondition(get), errorCondition(set));
    }
    assert.deepEqual(conditions, ['service-unavailable', 'service-unavailable', 'service-unavailable', 'service-unavailable']);
    assert.deepEqual(await blocklist(alice), []);
    await alice.close();
    await bob.close();
  });

  test('a blocked sender: messages bounce with service-unavailable and are not delivered; IQs too; the user appears offline', async () => {
    const alice = await ts.user('in-alice', undefined, 'a');
    const bob = await ts.user('in-bob', undefined, 'b');
    await mutual(ts, 'in-alice', 'in-bob');
    await online(alice);
    await online(bob);
    // Before: bob may see alice's last activity (he is subscribed).
    const lastBefore = await bob.iq(x('iq', { type: 'get', to: 'in-alice@localhost' }, x('query', { xmlns: NS.last })));
    assert.equal(lastBefore.attrs.type, 'result');

    await block(alice, 'in-bob@localhost');
    const msg = chat('in-alice@localhost', 'let me in');
    bob.send(msg);
    const err = await bob.expect((el) => el.name === 'message' && el.attrs.type === 'error' && el.attrs.id === msg.attrs.id);
    assert.equal(errorCondition(err), 'service-unavailable');
    assert.equal(err.attrs.from, 'in-alice@localhost');
    assert.equal(err.getChild('error')!.getChild('blocked', NS_BLOCKING_ERRORS), undefined, 'the contact is not told about the block');
    bob.send(chat('in-alice@localhost/a', 'to the full JID'));
    bob.send(x('message', { to: 'in-alice@localhost/a', type: 'headline' }, x('body', {}, 'headline')));
    await bob.expect((el) => el.name === 'message' && el.attrs.type === 'error');
    assert.ok(await alice.expectNothing((el) => el.name === 'message'), 'nothing reaches alice');

    const ping = await bob.iq(x('iq', { type: 'get', to: alice.jid }, x('ping', { xmlns: NS.ping })));
    assert.equal(errorCondition(ping), 'service-unavailable');
    const last = await bob.iq(x('iq', { type: 'get', to: 'in-alice@localhost' }, x('query', { xmlns: NS.last })));
    assert.equal(errorCondition(last), 'service-unavailable', 'IQs the server answers for the account are refused too');
    const info = await bob.iq(x('iq', { type: 'get', to: 'in-alice@localhost' }, x('query', { xmlns: NS.discoInfo })));
    assert.equal(errorCondition(info), 'service-unavailable');
    assert.ok(await alice.expectNothing((el) => el.name === 'iq' && el.attrs.from?.startsWith('in-bob@') === true));
    for (const c of [alice, bob]) await c.close();
  });

  test('presence from a blocked contact is dropped silently', async () => {
    const alice = await ts.user('pin-alice', undefined, 'a');
    const bob = await ts.user('pin-bob', undefined, 'b');
    await mutual(ts, 'pin-alice', 'pin-bob');
    await online(alice);
    await online(bob);
    await alice.expect(presenceFrom('pin-bob@localhost/b'));
    await bob.expect(presenceFrom('pin-alice@localhost/a'));
    await block(alice, 'pin-bob@localhost');
    await bob.expect(presenceFrom('pin-alice@localhost/a', 'unavailable'));
    alice.received.length = 0; // what arrived before the block (e.g. the answer to alice's first probe)
    bob.received.length = 0;

    bob.send(x('presence', {}, x('status', {}, 'anyone there?')));
    bob.send(x('presence', { to: 'pin-alice@localhost/a' }, x('status', {}, 'directed')));
    bob.send(x('presence', { to: 'pin-alice@localhost', type: 'probe' }));
    bob.send(x('presence', { to: 'pin-alice@localhost', type: 'subscribe' }));
    assert.ok(await alice.expectNothing((el) => el.name === 'presence' && el.attrs.from?.startsWith('pin-bob@') === true, 500));
    assert.ok(await bob.expectNothing((el) => el.name === 'presence' && el.attrs.from?.startsWith('pin-alice@') === true), 'no answer, no error');

    // A new resource of bob does not see alice either (her server answers his probe with nothing).
    const bob2 = await resource(ts, 'pin-bob', 'c');
    await online(bob2);
    assert.ok(await bob2.expectNothing(presenceFrom('pin-alice@localhost/')));
    for (const c of [alice, bob, bob2]) await c.close();
  });

  test('P8 the user sending to a blocked JID is refused with <blocked/>, nothing is routed, the failure is recorded without content', async () => {
    const alice = await ts.user('out-alice', undefined, 'a');
    const bob = await ts.user('out-bob', undefined, 'b');
    await online(alice);
    await online(bob);
    await block(alice, 'out-bob@localhost');
    failures.length = 0;

    const msg = chat('out-bob@localhost', 'secret words');
    alice.send(msg);
    const err = await alice.expect((el) => el.name === 'message' && el.attrs.type === 'error' && el.attrs.id === msg.attrs.id);
    assert.equal(errorCondition(err), 'not-acceptable');
    assert.ok(err.getChild('error')!.getChild('blocked', NS_BLOCKING_ERRORS), 'the <blocked/> application condition (XEP-0191 3.3)');
    assert.equal(err.attrs.from, 'out-bob@localhost');
    assert.equal(err.attrs.to, alice.jid);

    const iq = await alice.iq(x('iq', { type: 'get', to: bob.jid }, x('ping', { xmlns: NS.ping })));
    assert.equal(errorCondition(iq), 'not-acceptable');
    assert.ok(iq.getChild('error')!.getChild('blocked', NS_BLOCKING_ERRORS));
    const vcard = await alice.iq(x('iq', { type: 'get', to: 'out-bob@localhost' }, x('vCard', { xmlns: NS.vcard })));
    assert.equal(errorCondition(vcard), 'not-acceptable');

    const sub = x('presence', { to: 'out-bob@localhost', type: 'subscribe', id: 'sub1' });
    alice.send(sub);
    const perr = await alice.expect((el) => el.name === 'presence' && el.attrs.type === 'error' && el.attrs.id === 'sub1');
    assert.equal(errorCondition(perr), 'not-acceptable');

    assert.ok(await bob.expectNothing((el) => el.attrs.from?.startsWith('out-alice@') === true && el.attrs.type !== 'unavailable'), 'bob gets nothing from alice');
    const record = failures.find((f) => f.kind === 'message' && f.from === 'out-alice@localhost');
    assert.ok(record, 'a delivery failure record');
    assert.equal(record.to, 'out-bob@localhost');
    assert.equal(record.condition, 'not-acceptable');
    assert.ok(!JSON.stringify(failures).includes('secret words'), 'no content in the record');
    for (const c of [alice, bob]) await c.close();
  });

  test('blocking sends unavailable presence from every available resource to a subscribed contact (XEP-0191 3.3)', async () => {
    const a = await ts.user('una-alice', undefined, 'a');
    const b = await resource(ts, 'una-alice', 'b');
    const bob = await ts.user('una-bob', undefined, 'phone');
    const carol = await ts.user('una-carol', undefined, 'c');
    await mutual(ts, 'una-alice', 'una-bob');
    await mutual(ts, 'una-alice', 'una-carol');
    await online(a);
    await online(b);
    await online(bob);
    await online(carol);
    await bob.expect(presenceFrom('una-alice@localhost/a'));
    await bob.expect(presenceFrom('una-alice@localhost/b'));

    await block(a, 'una-bob@localhost');
    const ua = await bob.expect(presenceFrom('una-alice@localhost/a', 'unavailable'));
    assert.equal(ua.attrs.to, 'una-bob@localhost');
    await bob.expect(presenceFrom('una-alice@localhost/b', 'unavailable'));
    assert.ok(await carol.expectNothing(presenceFrom('una-alice@localhost/', 'unavailable')), 'other contacts are not affected');

    // Later presence changes do not reach bob; carol still sees them.
    a.send(x('presence', {}, x('status', {}, 'still here')));
    await carol.expect((el) => presenceFrom('una-alice@localhost/a')(el) && el.getChildText('status') === 'still here');
    assert.ok(await bob.expectNothing(presenceFrom('una-alice@localhost/')));

    // Blocking again changes nothing and sends nothing more.
    await block(a, 'una-bob@localhost');
    assert.ok(await bob.expectNothing((el) => el.name === 'presence'));
    for (const c of [a, b, bob, carol]) await c.close();
  });

  test('unblocking: the contact gets the current presence again, and stanzas flow both ways (XEP-0191 3.4)', async () => {
    const alice = await ts.user('unb-alice', undefined, 'a');
    const bob = await ts.user('unb-bob', undefined, 'b');
    await mutual(ts, 'unb-alice', 'unb-bob');
    await online(alice, x('status', {}, 'around'));
    await online(bob, x('status', {}, 'bob here'));
    await alice.expect(presenceFrom('unb-bob@localhost/b'));
    await bob.expect(presenceFrom('unb-alice@localhost/a'));
    await block(alice, 'unb-bob@localhost');
    await bob.expect(presenceFrom('unb-alice@localhost/a', 'unavailable'));

    await unblock(alice, 'unb-bob@localhost');
    const p = await bob.expect(presenceFrom('unb-alice@localhost/a'));
    assert.equal(p.getChildText('status'), 'around');
    // Alice's server probes bob, so her client learns his presence again.
    const back = await alice.expect(presenceFrom('unb-bob@localhost/b'));
    assert.equal(back.getChildText('status'), 'bob here');

    bob.send(chat('unb-alice@localhost', 'hello again'));
    await alice.expect(isMessage('hello again'));
    alice.send(chat('unb-bob@localhost', 'hi bob'));
    await bob.expect(isMessage('hi bob'));
    for (const c of [alice, bob]) await c.close();
  });

  test('a pending subscription request from a contact is dropped when the contact is blocked', async () => {
    const bob = await ts.user('pend-bob');
    const alice = await ts.user('pend-alice', undefined, 'a');
    await online(alice);
    await online(bob);
    bob.send(x('presence', { to: 'pend-alice@localhost', type: 'subscribe' }));
    await alice.expect(presenceFrom('pend-bob@localhost', 'subscribe'));
    await block(alice, 'pend-bob@localhost');
    await alice.close();

    const again = await resource(ts, 'pend-alice', 'later');
    again.send(x('presence'));
    assert.ok(await again.expectNothing(presenceFrom('pend-bob@localhost', 'subscribe'), 500), 'not re-delivered at the next login');
    for (const c of [again, bob]) await c.close();
  });

  test('the blocklist is stored with the account and holds across logins', async () => {
    const first = await ts.user('keep-alice', undefined, 'first');
    await block(first, 'keep-bob@localhost', 'noisy.example');
    await first.close();

    const stored = await ts.server.ctx.storage.accountState.get(await accountId(ts, 'keep-alice'), BLOCKLIST_KEY);
    assert.ok(stored, 'stored in accountState');
    assert.deepEqual([...parseBlocklist(stored)].sort(), ['keep-bob@localhost', 'noisy.example']);

    const later = await resource(ts, 'keep-alice', 'second');
    assert.deepEqual(await blocklist(later), ['keep-bob@localhost', 'noisy.example']);
    const bob = await ts.user('keep-bob');
    const msg = chat('keep-alice@localhost/second', 'still blocked?');
    bob.send(msg);
    const err = await bob.expect((el) => el.name === 'message' && el.attrs.type === 'error' && el.attrs.id === msg.attrs.id);
    assert.equal(errorCondition(err), 'service-unavailable');
    for (const c of [later, bob]) await c.close();
  });

  test('blocked messages are not carbon-copied either way', async () => {
    const a = await ts.user('cc-alice', undefined, 'a');
    const b = await resource(ts, 'cc-alice', 'b');
    const bob = await ts.user('cc-bob', undefined, 'phone');
    for (const c of [a, b]) {
      const r = await c.iq(x('iq', { type: 'set' }, x('enable', { xmlns: NS_CARBONS })));
      assert.equal(r.attrs.type, 'result');
    }
    for (const c of [a, b, bob]) await online(c);
    await block(a, 'cc-bob@localhost');
    a.send(chat('cc-bob@localhost', 'refused out'));
    await a.expect((el) => el.name === 'message' && el.attrs.type === 'error');
    bob.send(chat('cc-alice@localhost/a', 'refused in'));
    await bob.expect((el) => el.name === 'message' && el.attrs.type === 'error');
    assert.ok(await b.expectNothing((el) => el.name === 'message'), 'no sent or received carbon');
    // The same messages once unblocked are copied.
    await unblock(a, 'cc-bob@localhost');
    a.send(chat('cc-bob@localhost', 'allowed out'));
    await b.expect((el) => el.getChild('sent', NS_CARBONS) !== undefined);
    for (const c of [a, b, bob]) await c.close();
  });

  test('JID matching (XEP-0191 section 6)', () => {
    const list = (...jids: string[]) => new Set(jids);
    const j = (s: string) => Jid.parse(s);
    assert.ok(blocks(list('bob@example.com'), j('bob@example.com/phone')), 'a bare JID matches every resource');
    assert.ok(blocks(list('bob@example.com'), j('Bob@Example.com')), 'normalised');
    assert.ok(!blocks(list('bob@example.com/phone'), j('bob@example.com/desk')), 'a full JID matches only itself');
    assert.ok(blocks(list('bob@example.com/phone'), j('bob@example.com/phone')));
    assert.ok(!blocks(list('bob@example.com/phone'), j('bob@example.com')));
    assert.ok(blocks(list('example.com'), j('anyone@example.com/x')), 'a domain matches everything at it');
    assert.ok(blocks(list('example.com'), j('example.com')));
    assert.ok(blocks(list('example.com'), j('muc.example.com')), 'and at its subdomains');
    assert.ok(blocks(list('example.com'), j('room@muc.example.com/nick')));
    assert.ok(!blocks(list('example.com'), j('bob@notexample.com')));
    assert.ok(blocks(list('example.com/res'), j('example.com/res')), 'domain/resource matches that resource of the domain');
    assert.ok(!blocks(list('example.com/res'), j('bob@example.com/res')));
    assert.ok(!blocks(list(), j('bob@example.com')));
  });
});
