/**
 * RFC 6121 section 2 (roster) end to end over real sockets, and the P3 clause: the roster with the
 * subscription state of each contact is stored once and every resource of the account sees it.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { allModules } from '../../server/modules/index.js';
import type { GatehouseModule } from '../../server/core/context.js';
import { createRosterModule, HIDDEN_GROUP } from '../../server/modules/roster.js';
import { createPresenceModule } from '../../server/modules/presence.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

// ---- support ----

function modules(): GatehouseModule[] {
  // Roster and presence in their places: blocking (and others) need the roster service.
  const mine = new Map<string, GatehouseModule>([createRosterModule(), createPresenceModule()].map((m) => [m.name, m]));
  return allModules().map((m) => mine.get(m.name) ?? m);
}

/** Another resource of an account that ts.user() registered. */
async function resource(ts: TestServer, name: string, res: string): Promise<TestClient> {
  const c = await ts.client();
  await c.login(name, 'secret-' + name, { resource: res });
  return c;
}

function rosterGet(c: TestClient, ver?: string): Promise<Element> {
  return c.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster, ver })));
}

function rosterSet(c: TestClient, ...items: Element[]): Promise<Element> {
  return c.iq(x('iq', { type: 'set' }, x('query', { xmlns: NS.roster }, items)));
}

function pushOf(jid: string, pred: (item: Element) => boolean = () => true) {
  return (el: Element): boolean => {
    if (el.name !== 'iq' || el.attrs.type !== 'set') return false;
    const item = el.getChild('query', NS.roster)?.getChild('item');
    return !!item && item.attrs.jid === jid && pred(item);
  };
}

function items(result: Element): Element[] {
  return result.getChild('query', NS.roster)?.getChildren('item') ?? [];
}

function itemFor(result: Element, jid: string): Element | undefined {
  return items(result).find((i) => i.attrs.jid === jid);
}

const isPresence = (from: string, type?: string) => (el: Element) => el.name === 'presence' && el.attrs.from === from && el.attrs.type === type;

/** The full subscription handshake in both directions (both available), waiting for each step. */
async function befriend(a: TestClient, aJid: string, b: TestClient, bJid: string): Promise<void> {
  a.send(x('presence', { to: bJid, type: 'subscribe' }));
  await b.expect(isPresence(aJid, 'subscribe'));
  b.send(x('presence', { to: aJid, type: 'subscribed' }));
  await a.expect(isPresence(bJid, 'subscribed'));
  b.send(x('presence', { to: aJid, type: 'subscribe' }));
  await a.expect(isPresence(bJid, 'subscribe'));
  a.send(x('presence', { to: bJid, type: 'subscribed' }));
  await b.expect(isPresence(aJid, 'subscribed'));
}

// ---- tests ----

describe('roster (RFC 6121 section 2)', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ modules: modules(), logLevel: 'info' });
  });
  after(async () => {
    await ts?.stop();
  });

  test('stream features announce roster versioning and pre-approval after authentication', async () => {
    const c = await ts.user('featurecheck');
    // The features after authentication are those of the last stream restart.
    assert.ok(c.streamFeatures?.getChild('ver', NS.rosterver), 'rosterver feature');
    assert.ok(c.streamFeatures?.getChild('sub', NS.preApproval), 'pre-approval feature');
    await c.close();
  });

  test('an empty roster comes with a version', async () => {
    const c = await ts.user('empty');
    const r = await rosterGet(c);
    assert.equal(r.attrs.type, 'result');
    const q = r.getChild('query', NS.roster);
    assert.ok(q);
    assert.equal(q.elements.length, 0);
    assert.ok(q.attrs.ver !== undefined);
    await c.close();
  });

  test('roster set adds and updates an item; pushes reach every interested resource, not the others', async () => {
    const a1 = await ts.user('setter', undefined, 'one');
    const a2 = await resource(ts, 'setter', 'two');
    const a3 = await resource(ts, 'setter', 'three');
    await rosterGet(a1);
    await rosterGet(a2);
    // a3 never asked for the roster: not an interested resource.
    const reply = await rosterSet(a1, x('item', { jid: 'Friend@Localhost', name: 'A friend' }, x('group', {}, 'Friends'), x('group', {}, 'Work')));
    assert.equal(reply.attrs.type, 'result');
    for (const c of [a1, a2]) {
      const push = await c.expect(pushOf('friend@localhost'));
      const q = push.getChild('query', NS.roster)!;
      assert.ok(q.attrs.ver, 'push carries a version');
      assert.equal(push.attrs.from, undefined, 'push has no from (RFC 6121 2.1.6)');
      const item = q.getChild('item')!;
      assert.equal(item.attrs.name, 'A friend');
      assert.equal(item.attrs.subscription, 'none');
      assert.deepEqual(item.getChildren('group').map((g) => g.text()), ['Friends', 'Work']);
      c.send(x('iq', { type: 'result', id: push.attrs.id }));
    }
    assert.ok(await a3.expectNothing(pushOf('friend@localhost')), 'no push to a resource that did not request the roster');

    await rosterSet(a2, x('item', { jid: 'friend@localhost', name: 'Renamed' }, x('group', {}, 'Family')));
    const push = await a1.expect(pushOf('friend@localhost', (i) => i.attrs.name === 'Renamed'));
    assert.deepEqual(push.getChild('query', NS.roster)!.getChild('item')!.getChildren('group').map((g) => g.text()), ['Family']);
    const list = await rosterGet(a3);
    assert.equal(itemFor(list, 'friend@localhost')?.attrs.name, 'Renamed');
    for (const c of [a1, a2, a3]) await c.close();
  });

  test('versioning: the current ver gets an empty result, an old one the whole roster', async () => {
    const c = await ts.user('versioned');
    await rosterSet(c, x('item', { jid: 'v1@localhost' }));
    const first = await rosterGet(c, '');
    const ver = first.getChild('query', NS.roster)!.attrs.ver!;
    assert.equal(items(first).length, 1);
    const same = await rosterGet(c, ver);
    assert.equal(same.attrs.type, 'result');
    assert.equal(same.elements.length, 0, 'an empty IQ result when the version is current (RFC 6121 2.6.3)');
    await rosterSet(c, x('item', { jid: 'v2@localhost' }));
    const push = await c.expect(pushOf('v2@localhost'));
    const newVer = push.getChild('query', NS.roster)!.attrs.ver!;
    assert.notEqual(newVer, ver);
    const stale = await rosterGet(c, ver);
    assert.equal(stale.getChild('query', NS.roster)!.attrs.ver, newVer);
    assert.deepEqual(items(stale).map((i) => i.attrs.jid).sort(), ['v1@localhost', 'v2@localhost']);
    await c.close();
  });

  test('roster set validation (RFC 6121 2.3.3)', async () => {
    const c = await ts.user('validator');
    const cases: [string, Element[], string][] = [
      ['two items', [x('item', { jid: 'a@localhost' }), x('item', { jid: 'b@localhost' })], 'bad-request'],
      ['no item', [], 'bad-request'],
      ['duplicate groups', [x('item', { jid: 'a@localhost' }, x('group', {}, 'G'), x('group', {}, 'G'))], 'bad-request'],
      ['empty group', [x('item', { jid: 'a@localhost' }, x('group', {}))], 'not-acceptable'],
      ['over-long group', [x('item', { jid: 'a@localhost' }, x('group', {}, 'g'.repeat(1024)))], 'not-acceptable'],
      ['over-long name', [x('item', { jid: 'a@localhost', name: 'n'.repeat(1024) })], 'not-acceptable'],
      ['unknown subscription value', [x('item', { jid: 'a@localhost', subscription: 'bogus' })], 'bad-request'],
      ['no jid', [x('item', { name: 'x' })], 'bad-request'],
      ['malformed jid', [x('item', { jid: 'a@b@c' })], 'jid-malformed'],
      ['own jid', [x('item', { jid: 'validator@localhost' })], 'not-allowed'],
    ];
    for (const [what, list, condition] of cases) {
      const r = await rosterSet(c, ...list);
      assert.equal(r.attrs.type, 'error', what);
      assert.equal(errorCondition(r), condition, what);
    }
    // A client cannot set the subscription: none/to/from/both are ignored, not errors.
    const r = await rosterSet(c, x('item', { jid: 'echo@localhost', subscription: 'both', ask: 'subscribe' }));
    assert.equal(r.attrs.type, 'result');
    const item = itemFor(await rosterGet(c), 'echo@localhost')!;
    assert.equal(item.attrs.subscription, 'none');
    assert.equal(item.attrs.ask, undefined);
    assert.equal(items(await rosterGet(c)).length, 1, 'nothing stored by the failed sets');
    const missing = await rosterSet(c, x('item', { jid: 'nobody@localhost', subscription: 'remove' }));
    assert.equal(errorCondition(missing), 'item-not-found');
    await c.close();
  });

  test('only the account owner reads or changes its roster', async () => {
    const owner = await ts.user('owner');
    const other = await ts.user('intruder');
    await rosterSet(owner, x('item', { jid: 'secret-friend@localhost' }));
    const get = await other.iq(x('iq', { type: 'get', to: 'owner@localhost' }, x('query', { xmlns: NS.roster })));
    assert.equal(errorCondition(get), 'forbidden');
    assert.equal(get.getChild('query'), undefined, 'no roster content in the error');
    const set = await other.iq(x('iq', { type: 'set', to: 'owner@localhost' }, x('query', { xmlns: NS.roster }, x('item', { jid: 'x@localhost' }))));
    assert.equal(errorCondition(set), 'forbidden');
    const none = await other.iq(x('iq', { type: 'get', to: 'no-such-user@localhost' }, x('query', { xmlns: NS.roster })));
    assert.equal(errorCondition(none), 'forbidden', 'the same answer for an account that does not exist (P17)');
    assert.deepEqual(items(await rosterGet(owner)).map((i) => i.attrs.jid), ['secret-friend@localhost']);
    // Addressed to the own bare JID explicitly works like no 'to'.
    const own = await owner.iq(x('iq', { type: 'get', to: 'owner@localhost' }, x('query', { xmlns: NS.roster })));
    assert.equal(own.attrs.type, 'result');
    await owner.close();
    await other.close();
  });

  test('removing a contact cancels both subscriptions, pushes the removal and stops presence (RFC 6121 2.5.2)', async () => {
    const alice = await ts.user('rm-alice', undefined, 'desk');
    const alice2 = await resource(ts, 'rm-alice', 'phone');
    const bob = await ts.user('rm-bob');
    await rosterGet(alice);
    await rosterGet(alice2);
    await rosterGet(bob);
    bob.send(x('presence'));
    alice.send(x('presence'));
    await befriend(alice, 'rm-alice@localhost', bob, 'rm-bob@localhost');
    assert.equal(itemFor(await rosterGet(alice), 'rm-bob@localhost')?.attrs.subscription, 'both');
    await bob.expect(isPresence('rm-alice@localhost/desk'));

    const r = await rosterSet(alice, x('item', { jid: 'rm-bob@localhost', subscription: 'remove' }));
    assert.equal(r.attrs.type, 'result');
    for (const c of [alice, alice2]) await c.expect(pushOf('rm-bob@localhost', (i) => i.attrs.subscription === 'remove'));
    // Bob's server side: alice's unsubscribe and unsubscribed arrive, his item goes to 'none'.
    await bob.expect(isPresence('rm-alice@localhost', 'unsubscribe'));
    await bob.expect(isPresence('rm-alice@localhost', 'unsubscribed'));
    await bob.expect(isPresence('rm-alice@localhost/desk', 'unavailable'));
    await bob.expect(pushOf('rm-alice@localhost', (i) => i.attrs.subscription === 'none'));
    assert.equal(itemFor(await rosterGet(bob), 'rm-alice@localhost')?.attrs.subscription, 'none');
    assert.equal(itemFor(await rosterGet(alice), 'rm-bob@localhost'), undefined);
    // No presence flows any more.
    bob.send(x('presence', {}, x('show', {}, 'away')));
    assert.ok(await alice.expectNothing((el) => el.name === 'presence' && el.attrs.from === bob.jid && el.getChildText('show') === 'away'));
    for (const c of [alice, alice2, bob]) await c.close();
  });

  test('P3 two resources of one account see the same roster with subscription states', async () => {
    const a1 = await ts.user('p3-alice', undefined, 'laptop');
    const bob = await ts.user('p3-bob');
    const carol = await ts.user('p3-carol');
    const dave = await ts.user('p3-dave');
    for (const c of [a1, bob, carol, dave]) {
      c.send(x('presence'));
      await rosterGet(c);
    }
    // both with bob, to with carol (alice subscribed, carol did not), from with dave, and a pending request.
    await befriend(a1, 'p3-alice@localhost', bob, 'p3-bob@localhost');
    a1.send(x('presence', { to: 'p3-carol@localhost', type: 'subscribe' }));
    await carol.expect(isPresence('p3-alice@localhost', 'subscribe'));
    carol.send(x('presence', { to: 'p3-alice@localhost', type: 'subscribed' }));
    await a1.expect(pushOf('p3-carol@localhost', (i) => i.attrs.subscription === 'to'));
    dave.send(x('presence', { to: 'p3-alice@localhost', type: 'subscribe' }));
    await a1.expect(isPresence('p3-dave@localhost', 'subscribe'));
    a1.send(x('presence', { to: 'p3-dave@localhost', type: 'subscribed' }));
    await a1.expect(pushOf('p3-dave@localhost', (i) => i.attrs.subscription === 'from'));
    await rosterSet(a1, x('item', { jid: 'p3-erin@localhost', name: 'Erin' }, x('group', {}, 'Later')));
    a1.send(x('presence', { to: 'p3-erin@localhost', type: 'subscribe' }));
    await a1.expect(pushOf('p3-erin@localhost', (i) => i.attrs.ask === 'subscribe'));

    // A second resource, logging in afterwards, sees exactly the same roster.
    const a2 = await resource(ts, 'p3-alice', 'phone');
    const r1 = await rosterGet(a1);
    const r2 = await rosterGet(a2);
    const shape = (r: Element) =>
      items(r)
        .map((i) => `${i.attrs.jid} sub=${i.attrs.subscription} ask=${i.attrs.ask ?? '-'} name=${i.attrs.name ?? '-'} groups=${i.getChildren('group').map((g) => g.text()).join(',')}`)
        .sort();
    assert.deepEqual(shape(r2), shape(r1));
    assert.deepEqual(shape(r1), [
      'p3-bob@localhost sub=both ask=- name=- groups=',
      'p3-carol@localhost sub=to ask=- name=- groups=',
      'p3-dave@localhost sub=from ask=- name=- groups=',
      'p3-erin@localhost sub=none ask=subscribe name=Erin groups=Later',
    ]);
    assert.equal(r1.getChild('query', NS.roster)!.attrs.ver, r2.getChild('query', NS.roster)!.attrs.ver);
    // And the stored rows carry the subscription direction (what survives a restart).
    const account = await ts.server.ctx.storage.accounts.get('p3-alice', 'localhost');
    const stored = await ts.server.ctx.storage.roster.list(account!.id);
    assert.deepEqual(
      stored.map((i) => `${i.jid}:${i.subscription}`).sort(),
      ['p3-bob@localhost:both', 'p3-carol@localhost:to', 'p3-dave@localhost:from', 'p3-erin@localhost:none'],
    );
    // A change made on one resource is pushed to the other.
    await rosterSet(a2, x('item', { jid: 'p3-carol@localhost', name: 'Carol' }));
    const push = await a1.expect(pushOf('p3-carol@localhost', (i) => i.attrs.name === 'Carol'));
    assert.equal(push.getChild('query', NS.roster)!.getChild('item')!.attrs.subscription, 'to');
    for (const c of [a1, a2, bob, carol, dave]) await c.close();
  });

  test('a pending request from a stranger is not a roster item until the user acts on it (RFC 6121 3.1.3)', async () => {
    const alice = await ts.user('hid-alice');
    const bob = await ts.user('hid-bob');
    await rosterGet(alice);
    alice.send(x('presence'));
    bob.send(x('presence', { to: 'hid-alice@localhost', type: 'subscribe' }));
    await alice.expect(isPresence('hid-bob@localhost', 'subscribe'));
    assert.ok(await alice.expectNothing(pushOf('hid-bob@localhost')), 'no roster push for a pending request');
    assert.equal(itemFor(await rosterGet(alice), 'hid-bob@localhost'), undefined);
    // Removing what is not in the roster is item-not-found, even with a pending request.
    assert.equal(errorCondition(await rosterSet(alice, x('item', { jid: 'hid-bob@localhost', subscription: 'remove' }))), 'item-not-found');
    // Adding the contact makes it a normal item, the request still pending.
    await rosterSet(alice, x('item', { jid: 'hid-bob@localhost', name: 'Bob' }));
    const item = itemFor(await rosterGet(alice), 'hid-bob@localhost')!;
    assert.equal(item.attrs.name, 'Bob');
    assert.equal(item.getChildren('group').length, 0);
    const account = await ts.server.ctx.storage.accounts.get('hid-alice', 'localhost');
    const stored = await ts.server.ctx.storage.roster.get(account!.id, 'hid-bob@localhost');
    assert.equal(stored?.pendingIn, true);
    assert.ok(!stored?.groups.includes(HIDDEN_GROUP));
    await alice.close();
    await bob.close();
  });
});
