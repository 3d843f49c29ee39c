/**
 * RFC 6121 sections 3 (subscriptions) and 4 (presence) end to end over real sockets.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { allModules } from '../../server/modules/index.js';
import type { GatehouseModule } from '../../server/core/context.js';
import { createRosterModule } from '../../server/modules/roster.js';
import { createPresenceModule, parsePriority } from '../../server/modules/presence.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { Element, x } from '../../shared/xml/element.js';
import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';

// ---- support ----

/** Stands in for s2s: records what the server sends to other domains. */
const federated: Element[] = [];
const fakeFederation: GatehouseModule = {
  name: 'test-fake-federation',
  specs: [],
  load({ hooks }) {
    hooks.on('presence/remote', (e) => {
      federated.push(e.stanza.clone());
      return true;
    });
  },
};

function modules(): GatehouseModule[] {
  // Roster and presence in their places: blocking (and others) need the roster service.
  const mine = new Map<string, GatehouseModule>([createRosterModule(), createPresenceModule()].map((m) => [m.name, m]));
  return [...allModules().map((m) => mine.get(m.name) ?? m), fakeFederation];
}

/** A stanza arriving from another server, as an s2s stream would route it. */
async function fromRemote(ts: TestServer, stanza: Element): Promise<void> {
  const from = Jid.parse(stanza.attrs.from!);
  await ts.server.ctx.router.route(stanza, from, { kind: 's2s', domain: from.domain });
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A round trip on c's stream: everything c sent before has been handled. */
async function ping(c: TestClient): Promise<void> {
  await c.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
}

async function resource(ts: TestServer, name: string, res: string): Promise<TestClient> {
  const c = await ts.client();
  await c.login(name, 'secret-' + name, { resource: res });
  return c;
}

function rosterGet(c: TestClient): Promise<Element> {
  return c.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
}

async function subscriptionOf(c: TestClient, jid: string): Promise<string | undefined> {
  const r = await rosterGet(c);
  const item = r.getChild('query', NS.roster)?.getChildren('item').find((i) => i.attrs.jid === jid);
  if (!item) return undefined;
  return item.attrs.subscription + (item.attrs.ask ? '+ask' : '') + (item.attrs.approved ? '+approved' : '');
}

const isPresence = (from: string, type?: string) => (el: Element) => el.name === 'presence' && el.attrs.from === from && el.attrs.type === type;
const anyPresenceFrom = (prefix: string) => (el: Element) => el.name === 'presence' && (el.attrs.from ?? '').startsWith(prefix);

function pushOf(jid: string, pred: (item: Element) => boolean = () => true) {
  return (el: Element): boolean => {
    if (el.name !== 'iq' || el.attrs.type !== 'set') return false;
    const item = el.getChild('query', NS.roster)?.getChild('item');
    return !!item && item.attrs.jid === jid && pred(item);
  };
}

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

/** Mutual subscription written straight to storage (the handshake itself is tested separately). */
async function mutual(ts: TestServer, a: string, b: string): Promise<void> {
  const { storage } = ts.server.ctx;
  const ida = (await storage.accounts.get(a, 'localhost'))!.id;
  const idb = (await storage.accounts.get(b, 'localhost'))!.id;
  const item = (jid: string) => ({ jid, name: null, subscription: 'both' as const, ask: false, pendingIn: false, approved: false, groups: [] });
  await storage.roster.put(ida, item(`${b}@localhost`));
  await storage.roster.put(idb, item(`${a}@localhost`));
}

/** Sends initial presence and waits for its echo (RFC 6121 4.2.2: to the sender too). */
async function online(c: TestClient, ...children: Element[]): Promise<void> {
  c.send(x('presence', {}, ...children));
  await c.expect((el) => el.name === 'presence' && el.attrs.from === c.jid && el.attrs.type === undefined);
}

// ---- tests ----

describe('presence and subscriptions (RFC 6121 sections 3 and 4)', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ modules: modules(), logLevel: 'info' });
  });
  after(async () => {
    if (process.env.SHOW_LOG) console.log(ts.logLines.filter((l) => /error|warn|fail/i.test(l)).join('\n'));
    await ts?.stop();
  });

  test('the full subscription handshake, then presence flows both ways', async () => {
    const alice = await ts.user('hs-alice', undefined, 'a');
    const bob = await ts.user('hs-bob', undefined, 'b');
    await rosterGet(alice);
    await rosterGet(bob);
    await online(alice);
    await online(bob);
    // Not subscribed yet: nothing from each other.
    assert.ok(await bob.expectNothing(anyPresenceFrom('hs-alice@localhost/')));

    alice.send(x('presence', { to: 'hs-bob@localhost', type: 'subscribe' }, x('status', {}, 'hi, it is alice')));
    await alice.expect(pushOf('hs-bob@localhost', (i) => i.attrs.subscription === 'none' && i.attrs.ask === 'subscribe'));
    const request = await bob.expect(isPresence('hs-alice@localhost', 'subscribe'));
    assert.equal(request.getChildText('status'), 'hi, it is alice', 'the request is delivered as sent, stamped with the bare JID');
    assert.equal(request.attrs.to, 'hs-bob@localhost');

    bob.send(x('presence', { to: 'hs-alice@localhost', type: 'subscribed' }));
    await bob.expect(pushOf('hs-alice@localhost', (i) => i.attrs.subscription === 'from'));
    await alice.expect(isPresence('hs-bob@localhost', 'subscribed'));
    await alice.expect(pushOf('hs-bob@localhost', (i) => i.attrs.subscription === 'to' && i.attrs.ask === undefined));
    // Approval sends bob's current presence to alice (RFC 6121 3.1.5).
    await alice.expect(isPresence('hs-bob@localhost/b'));

    bob.send(x('presence', { to: 'hs-alice@localhost', type: 'subscribe' }));
    await alice.expect(isPresence('hs-bob@localhost', 'subscribe'));
    alice.send(x('presence', { to: 'hs-bob@localhost', type: 'subscribed' }));
    await bob.expect(isPresence('hs-alice@localhost', 'subscribed'));
    await bob.expect(isPresence('hs-alice@localhost/a'));
    assert.equal(await subscriptionOf(alice, 'hs-bob@localhost'), 'both');
    assert.equal(await subscriptionOf(bob, 'hs-alice@localhost'), 'both');

    alice.send(x('presence', {}, x('show', {}, 'dnd'), x('status', {}, 'busy')));
    const p = await bob.expect((el) => isPresence('hs-alice@localhost/a')(el) && el.getChildText('show') === 'dnd');
    assert.equal(p.getChildText('status'), 'busy');
    bob.send(x('presence', {}, x('show', {}, 'chat')));
    await alice.expect((el) => isPresence('hs-bob@localhost/b')(el) && el.getChildText('show') === 'chat');
    await alice.close();
    await bob.close();
  });

  test('a subscription request to an offline user is delivered when the user comes online (RFC 6121 3.1.3)', async () => {
    const alice = await ts.user('pend-alice');
    await ts.user('pend-bob').then((c) => c.close());
    await rosterGet(alice);
    await online(alice);
    alice.send(x('presence', { to: 'pend-bob@localhost', type: 'subscribe' }));
    await alice.expect(pushOf('pend-bob@localhost', (i) => i.attrs.ask === 'subscribe'));

    const bob = await resource(ts, 'pend-bob', 'later');
    assert.ok(await bob.expectNothing(isPresence('pend-alice@localhost', 'subscribe'), 200), 'not before initial presence');
    bob.send(x('presence'));
    await bob.expect(isPresence('pend-alice@localhost', 'subscribe'));
    // Every new resource gets it again until bob answers.
    const bob2 = await resource(ts, 'pend-bob', 'other');
    bob2.send(x('presence'));
    await bob2.expect(isPresence('pend-alice@localhost', 'subscribe'));
    bob.send(x('presence', { to: 'pend-alice@localhost', type: 'subscribed' }));
    await alice.expect(isPresence('pend-bob@localhost', 'subscribed'));
    await alice.expect(isPresence('pend-bob@localhost/later'));
    const bob3 = await resource(ts, 'pend-bob', 'third');
    bob3.send(x('presence'));
    assert.ok(await bob3.expectNothing(isPresence('pend-alice@localhost', 'subscribe')), 'answered requests are not re-delivered');
    for (const c of [alice, bob, bob2, bob3]) await c.close();
  });

  test('pre-approval: the later request is approved by the server, the user is not asked (RFC 6121 3.4)', async () => {
    const alice = await ts.user('pre-alice', undefined, 'a');
    const bob = await ts.user('pre-bob');
    await rosterGet(alice);
    await online(alice);
    await online(bob);
    alice.send(x('presence', { to: 'pre-bob@localhost', type: 'subscribed' }));
    await alice.expect(pushOf('pre-bob@localhost', (i) => i.attrs.approved === 'true' && i.attrs.subscription === 'none'));
    assert.ok(await bob.expectNothing(isPresence('pre-alice@localhost', 'subscribed')), 'a pre-approval is not routed');

    bob.send(x('presence', { to: 'pre-alice@localhost', type: 'subscribe' }));
    await bob.expect(isPresence('pre-alice@localhost', 'subscribed'));
    await bob.expect(isPresence('pre-alice@localhost/a'));
    await alice.expect(pushOf('pre-bob@localhost', (i) => i.attrs.subscription === 'from' && i.attrs.approved === undefined));
    assert.ok(await alice.expectNothing(isPresence('pre-bob@localhost', 'subscribe')), 'alice is not asked');
    assert.equal(await subscriptionOf(bob, 'pre-alice@localhost'), 'to');
    await alice.close();
    await bob.close();
  });

  test('a subscribe from an already subscribed contact is answered by the server (RFC 6121 3.1.3)', async () => {
    const alice = await ts.user('auto-alice', undefined, 'a');
    const bob = await ts.user('auto-bob');
    // Bob's side lost the subscription alice granted him (say, a restored backup).
    const { storage } = ts.server.ctx;
    const ida = (await storage.accounts.get('auto-alice', 'localhost'))!.id;
    await storage.roster.put(ida, { jid: 'auto-bob@localhost', name: null, subscription: 'from', ask: false, pendingIn: false, approved: false, groups: [] });
    await rosterGet(bob);
    await online(alice);
    await online(bob);
    bob.send(x('presence', { to: 'auto-alice@localhost', type: 'subscribe' }));
    await bob.expect(isPresence('auto-alice@localhost', 'subscribed'));
    await bob.expect(pushOf('auto-alice@localhost', (i) => i.attrs.subscription === 'to'));
    await bob.expect(isPresence('auto-alice@localhost/a'));
    assert.ok(await alice.expectNothing(isPresence('auto-bob@localhost', 'subscribe')), 'alice is not asked again');
    await alice.close();
    await bob.close();
  });

  test('unsubscribe and unsubscribed: roster states and presence (RFC 6121 3.2, 3.3)', async () => {
    const alice = await ts.user('un-alice', undefined, 'a');
    const bob = await ts.user('un-bob', undefined, 'b');
    await rosterGet(alice);
    await rosterGet(bob);
    await online(alice);
    await online(bob);
    await befriend(alice, 'un-alice@localhost', bob, 'un-bob@localhost');
    await alice.expect(isPresence('un-bob@localhost/b'));

    // Alice stops following bob: bob's server sends her bob's unavailable presence.
    alice.send(x('presence', { to: 'un-bob@localhost', type: 'unsubscribe' }));
    await alice.expect(pushOf('un-bob@localhost', (i) => i.attrs.subscription === 'from'));
    await bob.expect(isPresence('un-alice@localhost', 'unsubscribe'));
    await bob.expect(pushOf('un-alice@localhost', (i) => i.attrs.subscription === 'to'));
    await alice.expect(isPresence('un-bob@localhost/b', 'unavailable'));
    bob.send(x('presence', {}, x('show', {}, 'away')));
    assert.ok(await alice.expectNothing((el) => isPresence('un-bob@localhost/b')(el) && el.getChildText('show') === 'away'));
    // Bob still gets alice's presence.
    alice.send(x('presence', {}, x('show', {}, 'xa')));
    await bob.expect((el) => isPresence('un-alice@localhost/a')(el) && el.getChildText('show') === 'xa');

    // Alice cancels bob's subscription: he gets her unavailable presence, then nothing.
    alice.send(x('presence', { to: 'un-bob@localhost', type: 'unsubscribed' }));
    await alice.expect(pushOf('un-bob@localhost', (i) => i.attrs.subscription === 'none'));
    await bob.expect(isPresence('un-alice@localhost', 'unsubscribed'));
    await bob.expect(pushOf('un-alice@localhost', (i) => i.attrs.subscription === 'none'));
    await bob.expect(isPresence('un-alice@localhost/a', 'unavailable'));
    alice.send(x('presence', {}, x('show', {}, 'chat')));
    assert.ok(await bob.expectNothing((el) => isPresence('un-alice@localhost/a')(el) && el.getChildText('show') === 'chat'));
    // A denied request (unsubscribed while pending) routes the denial.
    bob.send(x('presence', { to: 'un-alice@localhost', type: 'subscribe' }));
    await alice.expect(isPresence('un-bob@localhost', 'subscribe'));
    alice.send(x('presence', { to: 'un-bob@localhost', type: 'unsubscribed' }));
    await bob.expect(isPresence('un-alice@localhost', 'unsubscribed'));
    assert.equal(await subscriptionOf(bob, 'un-alice@localhost'), 'none');
    await alice.close();
    await bob.close();
  });

  test('presence goes to subscribers only; a non-subscriber gets nothing', async () => {
    const alice = await ts.user('bc-alice', undefined, 'a');
    const bob = await ts.user('bc-bob');
    const mallory = await ts.user('bc-mallory');
    await mutual(ts, 'bc-alice', 'bc-bob');
    await online(bob);
    await online(mallory);
    // Mallory only asked (pending, not approved): still no presence.
    mallory.send(x('presence', { to: 'bc-alice@localhost', type: 'subscribe' }));
    await online(alice, x('status', {}, 'here'));
    await bob.expect(isPresence('bc-alice@localhost/a'));
    alice.send(x('presence', {}, x('status', {}, 'still here')));
    await bob.expect((el) => isPresence('bc-alice@localhost/a')(el) && el.getChildText('status') === 'still here');
    alice.send(x('presence', { type: 'unavailable' }));
    await bob.expect(isPresence('bc-alice@localhost/a', 'unavailable'));
    assert.ok(await mallory.expectNothing(anyPresenceFrom('bc-alice@localhost/')), 'no presence for a non-subscriber');
    // Mallory's probe is answered with unsubscribed, revealing nothing.
    mallory.send(x('presence', { to: 'bc-alice@localhost', type: 'probe' }));
    assert.ok(await mallory.expectNothing(anyPresenceFrom('bc-alice@localhost/')));
    for (const c of [alice, bob, mallory]) await c.close();
  });

  test('directed presence reaches a non-contact, and its unavailable follows at disconnect (RFC 6121 4.6)', async () => {
    const alice = await ts.user('dp-alice', undefined, 'a');
    const carol = await ts.user('dp-carol', undefined, 'c');
    await online(alice);
    await online(carol);
    alice.send(x('presence', { to: 'dp-carol@localhost' }, x('status', {}, 'just for you')));
    const p = await carol.expect(isPresence('dp-alice@localhost/a'));
    assert.equal(p.getChildText('status'), 'just for you');
    // Directed to a full JID as well.
    alice.send(x('presence', { to: 'dp-carol@localhost/c' }, x('show', {}, 'chat')));
    await carol.expect((el) => isPresence('dp-alice@localhost/a')(el) && el.getChildText('show') === 'chat');
    // Subsequent broadcast presence does not go to directed-presence recipients.
    alice.send(x('presence', {}, x('show', {}, 'away')));
    assert.ok(await carol.expectNothing((el) => isPresence('dp-alice@localhost/a')(el) && el.getChildText('show') === 'away'));
    // Disconnect without unavailable: carol gets the unavailable presence.
    alice.destroy();
    await carol.expect(isPresence('dp-alice@localhost/a', 'unavailable'));
    assert.ok(await carol.expectNothing(isPresence('dp-alice@localhost/a', 'unavailable')), 'only once, though sent to bare and full JID');
    await carol.close();
  });

  test('disconnecting without unavailable presence broadcasts it (RFC 6121 4.5.2)', async () => {
    const alice = await ts.user('dc-alice', undefined, 'a');
    const alice2 = await resource(ts, 'dc-alice', 'b');
    const bob = await ts.user('dc-bob');
    await mutual(ts, 'dc-alice', 'dc-bob');
    await online(bob);
    await online(alice2);
    await online(alice);
    await bob.expect(isPresence('dc-alice@localhost/a'));
    await alice2.expect(isPresence('dc-alice@localhost/a'));
    const events: string[] = [];
    ts.server.ctx.hooks.on('session/unavailable', ({ session }) => void events.push(session.jid.full));
    alice.destroy();
    await bob.expect(isPresence('dc-alice@localhost/a', 'unavailable'));
    await alice2.expect(isPresence('dc-alice@localhost/a', 'unavailable'));
    assert.deepEqual(events, ['dc-alice@localhost/a']);
    await alice2.close();
    await bob.expect(isPresence('dc-alice@localhost/b', 'unavailable'));
    await bob.close();
  });

  test('probes: an online contact answers with its resources, an offline one with unavailable (RFC 6121 4.3.2)', async () => {
    const alice = await ts.user('pr-alice', undefined, 'a');
    const bob = await ts.user('pr-bob', undefined, 'b1');
    const carol = await ts.user('pr-carol');
    await mutual(ts, 'pr-alice', 'pr-bob');
    await mutual(ts, 'pr-alice', 'pr-carol');
    await carol.close();
    const bob2 = await resource(ts, 'pr-bob', 'b2');
    await online(bob, x('show', {}, 'away'));
    await online(bob2, x('priority', {}, '5'));
    await alice.close();

    const a = await resource(ts, 'pr-alice', 'again');
    a.send(x('presence'));
    const p1 = await a.expect(isPresence('pr-bob@localhost/b1'));
    assert.equal(p1.getChildText('show'), 'away');
    assert.equal(p1.attrs.to, 'pr-alice@localhost/again');
    const p2 = await a.expect(isPresence('pr-bob@localhost/b2'));
    assert.equal(p2.getChildText('priority'), '5');
    const off = await a.expect(isPresence('pr-carol@localhost', 'unavailable'));
    assert.equal(off.attrs.to, 'pr-alice@localhost/again');
    for (const c of [a, bob, bob2]) await c.close();
  });

  test('negative priority is accepted and broadcast; invalid priority is bad-request (RFC 6121 4.7.2.3)', async () => {
    const alice = await ts.user('np-alice', undefined, 'a');
    const bob = await ts.user('np-bob');
    await mutual(ts, 'np-alice', 'np-bob');
    await online(bob);
    await online(alice, x('priority', {}, '-5'));
    const p = await bob.expect(isPresence('np-alice@localhost/a'));
    assert.equal(p.getChildText('priority'), '-5');
    const session = ts.server.ctx.sessions.get('np-alice@localhost/a')!;
    assert.equal(session.priority, -5);
    assert.equal(session.available, true);
    alice.send(x('presence', {}, x('priority', {}, '128')));
    const err = await alice.expect((el) => el.name === 'presence' && el.attrs.type === 'error');
    assert.equal(errorCondition(err), 'bad-request');
    assert.equal(session.priority, -5, 'an invalid priority changes nothing');
    assert.equal(parsePriority(x('presence', {}, x('priority', {}, '-128'))), -128);
    assert.equal(parsePriority(x('presence', {}, x('priority', {}, '1.5'))), null);
    assert.equal(parsePriority(x('presence')), 0);
    await alice.close();
    await bob.close();
  });

  test("presence between one account's own resources (RFC 6121 4.2.2)", async () => {
    const a1 = await ts.user('own-alice', undefined, 'one');
    const a2 = await resource(ts, 'own-alice', 'two');
    const events: string[] = [];
    ts.server.ctx.hooks.on('session/available', ({ session }) => void events.push(session.jid.full));
    await online(a1, x('show', {}, 'away'));
    a2.send(x('presence', {}, x('status', {}, 'second')));
    // The new resource gets its own presence, and the other resource's.
    await a2.expect(isPresence('own-alice@localhost/two'));
    const other = await a2.expect(isPresence('own-alice@localhost/one'));
    assert.equal(other.getChildText('show'), 'away');
    // The first resource sees the second come online, change and go.
    const seen = await a1.expect(isPresence('own-alice@localhost/two'));
    assert.equal(seen.getChildText('status'), 'second');
    a2.send(x('presence', {}, x('status', {}, 'changed')));
    await a1.expect((el) => isPresence('own-alice@localhost/two')(el) && el.getChildText('status') === 'changed');
    a2.send(x('presence', { type: 'unavailable' }));
    await a1.expect(isPresence('own-alice@localhost/two', 'unavailable'));
    assert.deepEqual(events, ['own-alice@localhost/one', 'own-alice@localhost/two'], "'session/available' once per initial presence");
    await a1.close();
    await a2.close();
  });

  test('deleting an account unsubscribes its contacts and leaves their rosters (XEP-0077)', async () => {
    const alice = await ts.user('del-alice', undefined, 'a');
    const bob = await ts.user('del-bob');
    const carol = await ts.user('del-carol');
    await mutual(ts, 'del-alice', 'del-bob');
    await rosterGet(bob);
    await rosterGet(carol);
    // Carol has alice in her roster without any subscription.
    await carol.iq(x('iq', { type: 'set' }, x('query', { xmlns: NS.roster }, x('item', { jid: 'del-alice@localhost' }))));
    await online(bob);
    await online(alice);
    await bob.expect(isPresence('del-alice@localhost/a'));

    const r = await alice.iq(x('iq', { type: 'set' }, x('query', { xmlns: NS.register }, x('remove'))));
    assert.equal(r.attrs.type, 'result');
    await bob.expect(isPresence('del-alice@localhost/a', 'unavailable'));
    await bob.expect(isPresence('del-alice@localhost', 'unsubscribe'));
    await bob.expect(isPresence('del-alice@localhost', 'unsubscribed'));
    await bob.expect(pushOf('del-alice@localhost', (i) => i.attrs.subscription === 'remove'));
    await carol.expect(pushOf('del-alice@localhost', (i) => i.attrs.subscription === 'remove'));
    assert.equal(await subscriptionOf(bob, 'del-alice@localhost'), undefined);
    assert.equal(await subscriptionOf(carol, 'del-alice@localhost'), undefined);
    assert.deepEqual(await ts.server.ctx.storage.roster.listByContact('del-alice@localhost'), []);
    await bob.close();
    await carol.close();
  });

  test('P19 remote contacts: subscriptions, probes and presence go out through router.send and carry no client IP', async () => {
    federated.length = 0;
    const alice = await ts.user('fed-alice', undefined, 'home');
    await rosterGet(alice);
    await online(alice);
    const sent = (type: string | undefined, to = 'rob@remote.example') => federated.find((el) => el.attrs.type === type && el.attrs.to === to);

    alice.send(x('presence', { to: 'rob@remote.example/laptop', type: 'subscribe' }));
    await alice.expect(pushOf('rob@remote.example', (i) => i.attrs.ask === 'subscribe'));
    const subscribe = sent('subscribe')!;
    assert.equal(subscribe.attrs.from, 'fed-alice@localhost', 'stamped with the bare JID, to the bare JID (RFC 6121 3.1.2)');

    await fromRemote(ts, x('presence', { from: 'rob@remote.example', to: 'fed-alice@localhost', type: 'subscribed' }));
    await alice.expect(isPresence('rob@remote.example', 'subscribed'));
    await alice.expect(pushOf('rob@remote.example', (i) => i.attrs.subscription === 'to'));
    await fromRemote(ts, x('presence', { from: 'rob@remote.example/laptop', to: 'fed-alice@localhost' }, x('show', {}, 'away')));
    await alice.expect(isPresence('rob@remote.example/laptop'));

    // Initial presence probes the remote contact from the bare JID.
    alice.send(x('presence', { type: 'unavailable' }));
    await ping(alice);
    federated.length = 0;
    await online(alice);
    assert.equal(sent('probe')?.attrs.from, 'fed-alice@localhost');
    assert.equal(sent(undefined), undefined, 'no presence to a contact without a subscription from alice');

    // Rob asks; alice approves: 'subscribed' and her presence go out.
    await fromRemote(ts, x('presence', { from: 'rob@remote.example', to: 'fed-alice@localhost', type: 'subscribe' }));
    await alice.expect(isPresence('rob@remote.example', 'subscribe'));
    alice.send(x('presence', { to: 'rob@remote.example', type: 'subscribed' }));
    await alice.expect(pushOf('rob@remote.example', (i) => i.attrs.subscription === 'both'));
    assert.equal(sent('subscribed')?.attrs.from, 'fed-alice@localhost');
    assert.equal(sent(undefined)?.attrs.from, 'fed-alice@localhost/home');

    // A probe from rob's server is answered; a probe from a stranger gets 'unsubscribed'.
    federated.length = 0;
    await fromRemote(ts, x('presence', { from: 'rob@remote.example', to: 'fed-alice@localhost', type: 'probe' }));
    assert.equal(sent(undefined)?.attrs.from, 'fed-alice@localhost/home');
    await fromRemote(ts, x('presence', { from: 'eve@remote.example', to: 'fed-alice@localhost', type: 'probe' }));
    assert.equal(sent('unsubscribed', 'eve@remote.example')?.attrs.from, 'fed-alice@localhost');
    assert.equal(sent(undefined, 'eve@remote.example'), undefined);

    // Updates and the final unavailable reach the remote subscriber.
    alice.send(x('presence', {}, x('status', {}, 'update')));
    await alice.expect((el) => isPresence(alice.jid)(el) && el.getChildText('status') === 'update');
    assert.ok(federated.some((el) => el.attrs.to === 'rob@remote.example' && el.getChildText('status') === 'update'));
    alice.destroy();
    await waitFor('unavailable at disconnect', () => sent('unavailable') !== undefined);

    // P19: nothing that left for the other server names the client's address.
    assert.ok(federated.length > 0);
    for (const el of federated) assert.ok(!el.toString().includes('127.0.0.1'), el.toString());
  });
});
