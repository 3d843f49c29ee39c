import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ensureAccount, loginAs, startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import type { CapsFeaturesEvent, CapsService } from '../../server/modules/caps/caps.js';
import { capsVer, type CapsInfo } from '../../shared/xml/caps-hash.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

const NODE = 'https://client.example/caps';

function info(...features: string[]): CapsInfo {
  return { identities: [{ category: 'client', type: 'pc', name: 'Test client' }], features: [NS.discoInfo, NS.caps, ...features], forms: [] };
}

function capsPresence(i: CapsInfo, attrs: Record<string, string> = {}): Element {
  return x('presence', attrs, x('c', { xmlns: NS.caps, hash: 'sha-1', node: NODE, ver: capsVer(i, 'sha-1')! }));
}

function answerQuery(i: CapsInfo, node: string | undefined): Element {
  return x(
    'query',
    { xmlns: NS.discoInfo, node },
    i.identities.map((id) => x('identity', { category: id.category, type: id.type, name: id.name })),
    i.features.map((f) => x('feature', { var: f })),
  );
}

const isDiscoQuery = (el: Element) => el.name === 'iq' && el.attrs.type === 'get' && el.getChild('query', NS.discoInfo) !== undefined;

/** Waits for the server's disco#info query, checks who asks and for what, and answers it with `answer`. */
async function answer(client: TestClient, from: string, node: string | undefined, answerInfo: CapsInfo | Element): Promise<Element> {
  const q = await client.expect(isDiscoQuery);
  assert.equal(q.attrs.from, from);
  assert.equal(q.attrs.to, client.jid);
  assert.equal(q.getChild('query', NS.discoInfo)!.attrs.node, node);
  const payload = answerInfo instanceof Element ? answerInfo : answerQuery(answerInfo, node);
  client.send(x('iq', { type: 'result', id: q.attrs.id, to: q.attrs.from }, payload));
  return q;
}

/** A round trip through the client's stream: everything it sent before has been routed. */
async function roundTrip(client: TestClient): Promise<void> {
  const reply = await client.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
  assert.equal(reply.attrs.type, 'result');
}

async function subscribeBoth(ts: TestServer, a: string, b: string): Promise<void> {
  for (const [owner, contact] of [
    [a, b],
    [b, a],
  ] as const) {
    const id = await ensureAccount(ts, owner);
    await ts.server.ctx.storage.roster.put(id, { jid: `${contact}@localhost`, name: null, subscription: 'both', ask: false, pendingIn: false, approved: false, groups: [] });
  }
}

describe('entity capabilities of clients (XEP-0115)', () => {
  let ts: TestServer;
  let caps: CapsService;

  /** The next features event for `jid` as seen by `observer`. */
  function learnt(jid: () => string, observer: string): Promise<CapsFeaturesEvent> {
    return new Promise((resolve) => {
      const off = caps.onFeatures((e) => {
        if (e.jid === jid() && e.observer === observer) {
          off();
          resolve(e);
        }
      });
    });
  }

  before(async () => {
    ts = await startTestServer();
    caps = ts.server.ctx.services.need('caps');
  });
  after(async () => {
    await ts.stop();
  });

  test('router.request on an account\'s behalf: only the JID asked can answer, to the JID that asked', async () => {
    const owner = await loginAs(ts, 'olga');
    const mallory = await loginAs(ts, 'mallory2');
    const asked = ts.server.ctx.router.request(x('iq', { type: 'get', id: 'guessable-id', from: 'olga@localhost', to: owner.jid }, x('query', { xmlns: NS.discoInfo })), 10_000);
    const q = await owner.expect(isDiscoQuery);
    // Someone else answers first, with the same id, to the asking bare JID.
    mallory.send(x('iq', { type: 'result', id: 'guessable-id', to: 'olga@localhost' }, x('query', { xmlns: NS.discoInfo }, x('feature', { var: 'urn:forged' }))));
    await roundTrip(mallory);
    owner.send(x('iq', { type: 'result', id: q.attrs.id, to: q.attrs.from }, x('query', { xmlns: NS.discoInfo }, x('feature', { var: 'urn:real' }))));
    const reply = await asked;
    assert.equal(reply?.attrs.from, owner.jid);
    assert.equal(reply?.getChild('query', NS.discoInfo)?.getChild('feature')?.attrs.var, 'urn:real');
    await Promise.all([owner.close(), mallory.close()]);
  });

  const ALICE = info('urn:xmpp:avatar:metadata+notify', 'urn:xmpp:omemo:2:devices+notify');

  test("a client's caps: one disco#info from its own bare JID to node#ver, the verified features known", async () => {
    const alice = await loginAs(ts, 'alice', 'phone');
    const known = learnt(() => alice.jid, 'alice@localhost');
    alice.send(capsPresence(ALICE));
    await answer(alice, 'alice@localhost', `${NODE}#${capsVer(ALICE, 'sha-1')}`, ALICE);
    const event = await known;
    assert.deepEqual([...event.features].sort(), [...ALICE.features].sort());
    assert.deepEqual(caps.featuresOf(alice.jid), event.features);
    assert.equal(caps.wantsNotify(alice.jid, 'urn:xmpp:avatar:metadata'), true);
    assert.equal(caps.wantsNotify(alice.jid, 'urn:xmpp:avatar:data'), false);
    assert.deepEqual(caps.availableResources('alice@localhost', 'alice@localhost'), [{ jid: alice.jid, features: event.features }]);

    // A second client with the same ver: known from the cache at once, no second query.
    const dave = await loginAs(ts, 'dave');
    const cached = learnt(() => dave.jid, 'dave@localhost');
    dave.send(capsPresence(ALICE));
    assert.equal((await cached).features, event.features);
    await roundTrip(dave);
    assert.equal(dave.received.filter(isDiscoQuery).length, 0);

    // Unavailable forgets.
    alice.send(x('presence', { type: 'unavailable' }));
    await roundTrip(alice);
    assert.equal(caps.featuresOf(alice.jid), undefined);
    assert.deepEqual(caps.availableResources('alice@localhost', 'alice@localhost'), []);
    assert.ok(caps.featuresOf(dave.jid));
    await alice.close();
    await dave.close();
  });

  test('a wrong or ill-formed answer is not cached, and the right one from another resource is accepted', async () => {
    const good = info('urn:xmpp:bookmarks:1+notify');
    const ver = capsVer(good, 'sha-1')!;
    const bob = await loginAs(ts, 'bob');
    bob.send(capsPresence(good));
    // A lie (a feature more than the ver stands for) ...
    await answer(bob, 'bob@localhost', `${NODE}#${ver}`, info('urn:xmpp:bookmarks:1+notify', 'urn:evil'));
    await roundTrip(bob);
    assert.equal(caps.featuresOf(bob.jid), undefined);

    // ... is not cached: the next resource with that ver is asked, and its ill-formed answer
    // (a duplicate feature, whose set would otherwise match) is refused too.
    const carol = await loginAs(ts, 'carol');
    carol.send(capsPresence(good));
    const duplicate = answerQuery(good, `${NODE}#${ver}`).append(x('feature', { var: NS.caps }));
    await answer(carol, 'carol@localhost', `${NODE}#${ver}`, duplicate);
    await roundTrip(carol);
    assert.equal(caps.featuresOf(carol.jid), undefined);

    const erin = await loginAs(ts, 'erin');
    const known = learnt(() => erin.jid, 'erin@localhost');
    erin.send(capsPresence(good));
    await answer(erin, 'erin@localhost', `${NODE}#${ver}`, good);
    const event = await known;
    assert.deepEqual([...event.features].sort(), [...good.features].sort());
    // The verified features belong to the ver, so the liar's resource gets them, not its own.
    assert.equal(caps.featuresOf(bob.jid), event.features);
    assert.equal(caps.featuresOf(bob.jid)!.has('urn:evil'), false);
    await Promise.all([bob.close(), carol.close(), erin.close()]);
  });

  test("a contact's presence is learnt for the observing account, asked from that account's bare JID", async () => {
    await subscribeBoth(ts, 'frank', 'gina');
    const frank = await loginAs(ts, 'frank');
    frank.send(x('presence'));
    await roundTrip(frank);
    const gina = await loginAs(ts, 'gina', 'laptop');

    const ginaInfo = info('urn:xmpp:avatar:metadata+notify', 'eu.siacs.conversations.axolotl.devicelist+notify');
    const known = learnt(() => gina.jid, 'frank@localhost');
    // Directed presence, so only frank observes it (a broadcast would also be gina's own).
    gina.send(capsPresence(ginaInfo, { to: 'frank@localhost' }));
    await answer(gina, 'frank@localhost', `${NODE}#${capsVer(ginaInfo, 'sha-1')}`, ginaInfo);
    const event = await known;
    assert.deepEqual(caps.availableResources('frank@localhost', 'gina@localhost'), [{ jid: gina.jid, features: event.features }]);
    assert.equal(caps.wantsNotify(gina.jid, 'eu.siacs.conversations.axolotl.devicelist'), true);
    // The contact's own account saw no presence of its own resource.
    assert.deepEqual(caps.availableResources('gina@localhost', 'gina@localhost'), []);

    // The contact's session ends: the unavailable presence it leaves behind forgets it.
    const gone = frank.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === gina.jid);
    gina.destroy();
    await gone;
    assert.deepEqual(caps.availableResources('frank@localhost', 'gina@localhost'), []);
    assert.equal(caps.featuresOf(gina.jid), undefined);

    // The observing account's last resource goes offline: it forgets its local contacts (PEP sends
    // them the last items from their own presence); remote ones are kept (test/s2s/pep-federation).
    const henryInfo = info('urn:henry');
    await subscribeBoth(ts, 'frank', 'henry');
    const henry = await loginAs(ts, 'henry');
    const seen = learnt(() => henry.jid, 'frank@localhost');
    henry.send(capsPresence(henryInfo, { to: 'frank@localhost' }));
    await answer(henry, 'frank@localhost', `${NODE}#${capsVer(henryInfo, 'sha-1')}`, henryInfo);
    await seen;
    frank.send(x('presence', { type: 'unavailable' }));
    await roundTrip(frank);
    assert.deepEqual(caps.availableResources('frank@localhost', 'henry@localhost'), []);
    await Promise.all([frank.close(), henry.close()]);
  });

  test("P17 a stranger's directed presence with caps makes the account ask nothing (a query would tell it is online) and is not remembered", async () => {
    await subscribeBoth(ts, 'uma', 'victor');
    const uma = await loginAs(ts, 'uma');
    uma.send(x('presence'));
    await roundTrip(uma);
    const stranger = await loginAs(ts, 'walt');
    const victor = await loginAs(ts, 'victor');
    stranger.send(capsPresence(info('urn:stranger'), { to: 'uma@localhost' }));
    await roundTrip(stranger);
    // A contact's presence after it: its query shows the stranger's presence has been dealt with.
    const victorInfo = info('urn:victor');
    victor.send(capsPresence(victorInfo, { to: 'uma@localhost' }));
    await answer(victor, 'uma@localhost', `${NODE}#${capsVer(victorInfo, 'sha-1')}`, victorInfo);
    await roundTrip(stranger);
    assert.equal(stranger.received.filter(isDiscoQuery).length, 0);
    assert.deepEqual(caps.availableResources('uma@localhost', 'walt@localhost'), []);
    assert.equal(caps.featuresOf(stranger.jid), undefined);
    await Promise.all([uma.close(), stranger.close(), victor.close()]);
  });

  test('a flood of distinct vers from one resource: one query at a time, only its latest ver asked next; bogus caps ignored', async () => {
    const ivan = await loginAs(ts, 'ivan');
    // Caps that cannot be verified or used are ignored without a query.
    ivan.send(x('presence', {}, x('c', { xmlns: NS.caps, hash: 'sha-1', node: NODE, ver: 'A'.repeat(5000) })));
    ivan.send(x('presence', {}, x('c', { xmlns: NS.caps, hash: 'sha-1', node: NODE })));
    ivan.send(x('presence', {}, x('c', { xmlns: NS.caps, hash: 'sha-1', node: 'n'.repeat(5000), ver: capsVer(ALICE, 'sha-1')! })));
    const vers = Array.from({ length: 300 }, () => randomBytes(20).toString('base64'));
    for (const ver of vers) ivan.send(x('presence', {}, x('c', { xmlns: NS.caps, hash: 'sha-1', node: NODE, ver })));
    const first = await ivan.expect(isDiscoQuery);
    assert.equal(first.getChild('query', NS.discoInfo)!.attrs.node, `${NODE}#${vers[0]}`);
    await roundTrip(ivan);
    assert.equal(ivan.received.filter(isDiscoQuery).length, 0, 'one query at a time per resource');
    ivan.send(x('iq', { type: 'result', id: first.attrs.id, to: first.attrs.from }, answerQuery(info('urn:whatever'), undefined)));
    const next = await ivan.expect(isDiscoQuery);
    assert.equal(next.getChild('query', NS.discoInfo)!.attrs.node, `${NODE}#${vers.at(-1)}`);
    await ivan.close();
  });

  test('legacy caps (no hash attribute): the resource itself is asked, without node, and the answer kept for it alone', async () => {
    const judy = await loginAs(ts, 'judy');
    const legacy = info('urn:legacy+notify');
    const known = learnt(() => judy.jid, 'judy@localhost');
    judy.send(x('presence', {}, x('c', { xmlns: NS.caps, node: 'http://legacy.example/client', ver: '0.9' })));
    await answer(judy, 'judy@localhost', undefined, legacy);
    assert.equal((await known).features.has('urn:legacy+notify'), true);

    // Another resource with the same legacy caps is asked itself: nothing is shared between resources.
    const kim = await loginAs(ts, 'kim');
    const kimKnown = learnt(() => kim.jid, 'kim@localhost');
    kim.send(x('presence', {}, x('c', { xmlns: NS.caps, node: 'http://legacy.example/client', ver: '0.9' })));
    await answer(kim, 'kim@localhost', undefined, info('urn:other'));
    assert.equal((await kimKnown).features.has('urn:other'), true);
    assert.equal(caps.featuresOf(judy.jid)!.has('urn:other'), false);
    await Promise.all([judy.close(), kim.close()]);
  });
});

describe('entity capabilities: the configured bounds', () => {
  let ts: TestServer;
  let caps: CapsService;
  before(async () => {
    ts = await startTestServer({ config: { caps: { maxResourcesPerAccount: 2, cacheSize: 1 } } });
    caps = ts.server.ctx.services.need('caps');
  });
  after(async () => {
    await ts.stop();
  });

  function learnt(jid: string): Promise<CapsFeaturesEvent> {
    return new Promise((resolve) => {
      const off = caps.onFeatures((e) => {
        if (e.jid === jid) {
          off();
          resolve(e);
        }
      });
    });
  }

  test('caps.maxResourcesPerAccount forgets the resource seen least recently; caps.cacheSize drops the least recently used ver', async () => {
    const one = info('urn:one');
    const two = info('urn:two');
    const a = await loginAs(ts, 'xavier', 'a');
    const b = await loginAs(ts, 'xavier', 'b');
    const c = await loginAs(ts, 'xavier', 'c');
    let known = learnt(a.jid);
    a.send(capsPresence(one));
    await answer(a, 'xavier@localhost', `${NODE}#${capsVer(one, 'sha-1')}`, one);
    await known;
    known = learnt(b.jid);
    b.send(capsPresence(one));
    await known;
    known = learnt(c.jid);
    c.send(capsPresence(two));
    await answer(c, 'xavier@localhost', `${NODE}#${capsVer(two, 'sha-1')}`, two);
    await known;
    assert.deepEqual(caps.availableResources('xavier@localhost', 'xavier@localhost').map((r) => r.jid).sort(), [b.jid, c.jid]);
    assert.equal(caps.featuresOf(a.jid), undefined);

    // 'one' left the cache (size 1) when 'two' was verified: a's presence with it is asked again.
    known = learnt(a.jid);
    a.send(capsPresence(one));
    await answer(a, 'xavier@localhost', `${NODE}#${capsVer(one, 'sha-1')}`, one);
    await known;
    assert.deepEqual(caps.availableResources('xavier@localhost', 'xavier@localhost').map((r) => r.jid).sort(), [a.jid, c.jid]);
    await Promise.all([a.close(), b.close(), c.close()]);
  });
});
