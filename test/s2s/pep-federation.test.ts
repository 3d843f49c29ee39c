/**
 * PEP across two Gatehouse servers on loopback (P16, P18): a contact on another server gets the
 * last published item when his client comes online with +notify, and later notifications, through
 * the router and the server-to-server link; reads from the other server obey the access model; a
 * user of the other server subscribes explicitly (XEP-0060 6.1) and is notified at his bare JID.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { capsVer } from '../../shared/xml/caps-hash.js';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { EVENT, PUBSUB, errorOf, isEvent, items, itemsOf, publish } from '../modules/pep-helpers.js';

const NICK = 'http://jabber.org/protocol/nick';

async function startServer(domain: string): Promise<TestServer> {
  return startTestServer({ logLevel: 'info', config: { hosts: [{ domain, registration: 'open' }], listen: { s2s: [{ host: '127.0.0.1', port: 0 }] } } });
}

function route(from: TestServer, to: TestServer): void {
  for (const h of to.config.hosts) from.config.s2s.static[h.domain] = { host: '127.0.0.1', port: to.s2sPort };
}

async function account(ts: TestServer, jid: string, contact: string): Promise<TestClient> {
  const [name, domain] = jid.split('@') as [string, string];
  const c = await ts.client({ domain });
  const reg = await c.register(name, 'pw-' + name);
  assert.equal(reg.attrs.type, 'result');
  await c.login(name, 'pw-' + name);
  const id = (await ts.server.ctx.storage.accounts.get(name, domain))!.id;
  await ts.server.ctx.storage.roster.put(id, { jid: contact, name: null, subscription: 'both', ask: false, pendingIn: false, approved: false, groups: [] });
  return c;
}

describe('PEP between two servers (P16, P18)', () => {
  let a: TestServer;
  let b: TestServer;
  let alice: TestClient;
  let bob: TestClient;

  before(async () => {
    a = await startServer('a.test');
    b = await startServer('b.test');
    route(a, b);
    route(b, a);
    alice = await account(a, 'alice@a.test', 'bob@b.test');
    bob = await account(b, 'bob@b.test', 'alice@a.test');
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
  });

  test('P18 a remote contact gets the last item when his client comes online with +notify, then each new item; reads obey the access model', async () => {
    alice.send(x('presence'));
    await alice.expect((el) => el.name === 'presence' && el.attrs.from === alice.jid);
    assert.equal((await alice.iq(publish(NICK, x('nick', { xmlns: NICK }, 'Alice')))).attrs.type, 'result');
    assert.equal((await alice.iq(publish('urn:xmpp:bookmarks:1', x('conference', { xmlns: 'urn:xmpp:bookmarks:1' }), 'room@muc.a.test', { 'pubsub#access_model': 'whitelist' }))).attrs.type, 'result');

    // Bob's client comes online with caps; alice's server asks his client over the link.
    const info = { identities: [{ category: 'client', type: 'pc', name: 'remote' }], features: [NS.caps, NS.discoInfo, `${NICK}+notify`, 'urn:xmpp:bookmarks:1+notify'].sort(), forms: [] };
    bob.autoAnswer(
      (el) => el.name === 'iq' && el.attrs.type === 'get' && el.getChild('query', NS.discoInfo) !== undefined,
      (q) =>
        x('iq', { type: 'result', id: q.attrs.id, to: q.attrs.from }, x('query', { xmlns: NS.discoInfo, node: q.getChild('query', NS.discoInfo)!.attrs.node }, x('identity', { category: 'client', type: 'pc', name: 'remote' }), info.features.map((f) => x('feature', { var: f })))),
    );
    bob.send(x('presence', {}, x('c', { xmlns: NS.caps, hash: 'sha-1', node: 'https://remote.example', ver: capsVer(info, 'sha-1')! })));
    const last = await bob.expect(isEvent(NICK));
    assert.equal(last.attrs.from, 'alice@a.test');
    assert.ok(last.getChild('delay', NS.delay), 'the last item carries its delay');
    assert.equal(last.getChild('event', EVENT)!.getChild('items')!.getChild('item')!.firstElement()!.text(), 'Alice');

    await alice.iq(publish(NICK, x('nick', { xmlns: NICK }, 'Alice B.')));
    const next = await bob.expect(isEvent(NICK));
    assert.equal(next.getChild('event', EVENT)!.getChild('items')!.getChild('item')!.firstElement()!.text(), 'Alice B.');

    const read = await bob.iq(items('alice@a.test', NICK));
    assert.equal(read.attrs.type, 'result', String(read));
    assert.equal(itemsOf(read).length, 1);
    assert.deepEqual(errorOf(await bob.iq(items('alice@a.test', 'urn:xmpp:bookmarks:1'))), ['item-not-found', undefined]);
    assert.equal(bob.received.some(isEvent('urn:xmpp:bookmarks:1')), false, 'the private node never crossed the link');
  });

  test('XEP-0163 4.3.4 a remote contact coming online gets the last item while the owner has no resource online; its unavailable presence is forgotten', async () => {
    const dave = await account(a, 'dave@a.test', 'carol@b.test');
    dave.send(x('presence'));
    await dave.expect((el) => el.name === 'presence' && el.attrs.from === dave.jid);
    assert.equal((await dave.iq(publish(NICK, x('nick', { xmlns: NICK }, 'Dave')))).attrs.type, 'result');
    dave.send(x('presence', { type: 'unavailable' }));
    await dave.close();
    assert.equal(a.server.ctx.sessions.ofAccount('dave@a.test').some((s) => s.available), false);

    const carol = await account(b, 'carol@b.test', 'dave@a.test');
    const info = { identities: [{ category: 'client', type: 'phone', name: 'remote' }], features: [NS.caps, NS.discoInfo, `${NICK}+notify`].sort(), forms: [] };
    carol.autoAnswer(
      (el) => el.name === 'iq' && el.attrs.type === 'get' && el.getChild('query', NS.discoInfo) !== undefined,
      (q) =>
        x('iq', { type: 'result', id: q.attrs.id, to: q.attrs.from }, x('query', { xmlns: NS.discoInfo, node: q.getChild('query', NS.discoInfo)!.attrs.node }, x('identity', { category: 'client', type: 'phone', name: 'remote' }), info.features.map((f) => x('feature', { var: f })))),
    );
    carol.send(x('presence', {}, x('c', { xmlns: NS.caps, hash: 'sha-1', node: 'https://remote.example/phone', ver: capsVer(info, 'sha-1')! })));
    const last = await carol.expect(isEvent(NICK));
    assert.equal(last.attrs.from, 'dave@a.test');
    assert.equal(last.attrs.to, carol.jid);
    assert.ok(last.getChild('delay', NS.delay), 'the last item carries its delay');
    assert.equal(last.getChild('event', EVENT)!.getChild('items')!.getChild('item')!.firstElement()!.text(), 'Dave');

    // What dave's service learnt about carol's client lives until she goes unavailable.
    const caps = a.server.ctx.services.need('caps');
    assert.deepEqual(caps.availableResources('dave@a.test', 'carol@b.test').map((r) => r.jid), [carol.jid]);
    carol.send(x('presence', { type: 'unavailable' }));
    // The read is answered after dave's server has taken the presence sent before it on the same link.
    assert.equal((await carol.iq(items('dave@a.test', NICK))).attrs.type, 'result');
    assert.deepEqual(caps.availableResources('dave@a.test', 'carol@b.test'), []);
    await carol.close();
  });

  test('P18 P17 a user of the other server subscribes to an open node explicitly: the last item and each new one reach his bare JID over the link, the owner lists him, unsubscribe ends it; a presence node answers item-not-found', async () => {
    const MICROBLOG = 'urn:xmpp:microblog:0';
    const erin = await account(a, 'erin@a.test', 'nobody@b.test');
    const entry = (title: string) => x('entry', { xmlns: 'http://www.w3.org/2005/Atom' }, x('title', {}, title));
    assert.equal((await erin.iq(publish(MICROBLOG, entry('hello'), 'p1', { 'pubsub#access_model': 'open' }))).attrs.type, 'result');
    assert.equal((await erin.iq(publish(NICK, x('nick', { xmlns: NICK }, 'Erin')))).attrs.type, 'result');
    const sub = (node: string, type = 'subscribe') => x('iq', { type: 'set', to: 'erin@a.test' }, x('pubsub', { xmlns: PUBSUB }, x(type, { node, jid: 'bob@b.test' })));
    const isMicroblog = (el: Element) => isEvent(MICROBLOG)(el) && el.attrs.from === 'erin@a.test';

    const result = await bob.iq(sub(MICROBLOG));
    assert.equal(result.attrs.type, 'result', String(result));
    assert.equal(result.getChild('pubsub', PUBSUB)!.getChild('subscription')!.attrs.subscription, 'subscribed');
    const last = await bob.expect(isMicroblog);
    assert.equal(last.attrs.to, 'bob@b.test', "erin's server knows no presence of bob's: the bare JID");
    assert.ok(last.getChild('delay', NS.delay));
    await erin.iq(publish(MICROBLOG, entry('again'), 'p2'));
    const next = await bob.expect(isMicroblog);
    assert.equal(next.getChild('event', EVENT)!.getChild('items')!.getChild('item')!.attrs.id, 'p2');

    const list = await erin.iq(x('iq', { type: 'get' }, x('pubsub', { xmlns: `${PUBSUB}#owner` }, x('subscriptions', { node: MICROBLOG }))));
    assert.deepEqual(list.getChild('pubsub', `${PUBSUB}#owner`)!.getChild('subscriptions')!.getChildren('subscription').map((s) => s.attrs.jid), ['bob@b.test']);
    assert.deepEqual(errorOf(await bob.iq(sub(NICK))), ['item-not-found', undefined], 'not a contact: as if there were no such node');

    assert.equal((await bob.iq(sub(MICROBLOG, 'unsubscribe'))).attrs.type, 'result');
    await erin.iq(publish(MICROBLOG, entry('third'), 'p3'));
    // A read over the same link is answered after the notification would have crossed it.
    assert.equal((await bob.iq(items('erin@a.test', MICROBLOG))).attrs.type, 'result');
    assert.equal(bob.received.some(isMicroblog), false);
    await erin.close();
  });
});
