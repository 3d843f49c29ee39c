import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { ensureAccount as account, loginAs as login, startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { CAPS_NODE } from '../../server/modules/disco.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

async function subscribe(ts: TestServer, owner: string, contact: string, subscription: 'from' | 'both' | 'to' | 'none'): Promise<void> {
  const id = await account(ts, owner);
  await ts.server.ctx.storage.roster.put(id, { jid: `${contact}@localhost`, name: null, subscription, ask: false, pendingIn: false, approved: false, groups: [] });
}

/** A reply with its addressing removed, for comparing two answers. */
function shape(el: Element): string {
  const copy = el.clone();
  delete copy.attrs.id;
  delete copy.attrs.from;
  delete copy.attrs.to;
  return copy.toString();
}

function capsHash(query: Element): string {
  const ids = query.getChildren('identity').map((i) => `${i.attrs.category}/${i.attrs.type}/${i.attrs['xml:lang'] ?? ''}/${i.attrs.name ?? ''}`).sort();
  const features = query.getChildren('feature').map((f) => f.attrs.var!).sort();
  return createHash('sha1').update(ids.map((i) => i + '<').join('') + features.map((f) => f + '<').join(''), 'utf8').digest('base64');
}

const infoQuery = (to: string, node?: string) => x('iq', { type: 'get', to }, x('query', { xmlns: NS.discoInfo, node }));
const itemsQuery = (to: string, node?: string) => x('iq', { type: 'get', to }, x('query', { xmlns: NS.discoItems, node }));

describe('service discovery (XEP-0030) and server caps (XEP-0115)', () => {
  let ts: TestServer;
  let alice: TestClient;
  let bob: TestClient;
  let mallory: TestClient;

  before(async () => {
    ts = await startTestServer({ config: { server: { name: 'Gatehouse Test' } } });
    alice = await login(ts, 'alice');
    bob = await login(ts, 'bob');
    mallory = await login(ts, 'mallory');
    await account(ts, 'carol');
    await account(ts, 'dave');
    // alice and bob are mutual contacts; mallory has nothing.
    await subscribe(ts, 'alice', 'bob', 'both');
    await subscribe(ts, 'bob', 'alice', 'both');
  });
  after(async () => {
    await ts.stop();
  });

  test('host disco#info: server/im identity with the configured name and the announced features', async () => {
    const reply = await alice.iq(infoQuery('localhost'));
    assert.equal(reply.attrs.type, 'result');
    assert.equal(reply.attrs.from, 'localhost');
    const query = reply.getChild('query', NS.discoInfo)!;
    const identity = query.getChildren('identity').find((i) => i.attrs.category === 'server');
    assert.ok(identity, 'server identity');
    assert.equal(identity.attrs.type, 'im');
    assert.equal(identity.attrs.name, 'Gatehouse Test');
    const features = query.getChildren('feature').map((f) => f.attrs.var);
    for (const f of [NS.discoInfo, NS.discoItems, NS.ping, NS.vcard, NS.version, NS.time, NS.last]) assert.ok(features.includes(f), `feature ${f}`);
    assert.deepEqual(features, [...ts.server.ctx.disco.serverFeatures].sort());
    assert.equal(new Set(features).size, features.length, 'no duplicate features');
  });

  test('caps in stream features before and after authentication match the disco#info answer', async () => {
    const fresh = await ts.client();
    const pre = fresh.streamFeatures!.getChild('c', NS.caps);
    assert.ok(pre, 'caps before authentication');
    await account(ts, 'erin');
    await fresh.login('erin', 'pw-erin');
    const post = fresh.streamFeatures!.getChild('c', NS.caps);
    assert.ok(post, 'caps after authentication');
    for (const c of [pre, post]) {
      assert.equal(c.attrs.hash, 'sha-1');
      assert.equal(c.attrs.node, CAPS_NODE);
      assert.equal(c.attrs.ver, ts.server.ctx.disco.serverCapsHash());
    }
    const ver = post.attrs.ver!;
    const plain = (await fresh.iq(infoQuery('localhost'))).getChild('query', NS.discoInfo)!;
    assert.equal(capsHash(plain), ver, 'the verification string is the hash of the disco#info answer');
    const reply = await fresh.iq(infoQuery('localhost', `${CAPS_NODE}#${ver}`));
    assert.equal(reply.attrs.type, 'result');
    const query = reply.getChild('query', NS.discoInfo)!;
    assert.equal(query.attrs.node, `${CAPS_NODE}#${ver}`);
    assert.equal(capsHash(query), ver);
  });

  test('host disco#info for an unknown node: item-not-found', async () => {
    const reply = await alice.iq(infoQuery('localhost', 'urn:nothing:here'));
    assert.equal(reply.attrs.type, 'error');
    assert.equal(errorCondition(reply), 'item-not-found');
  });

  test('host disco#items lists the services registered with the disco registry', async () => {
    ts.server.ctx.disco.serverItems.set('upload.localhost', 'File upload');
    try {
      const reply = await alice.iq(itemsQuery('localhost'));
      assert.equal(reply.attrs.type, 'result');
      const items = reply.getChild('query', NS.discoItems)!.getChildren('item');
      assert.deepEqual(
        items.map((i) => [i.attrs.jid, i.attrs.name]),
        [
          ['conference.localhost', 'Chatrooms'],
          ['upload.localhost', 'File upload'],
        ],
      );
    } finally {
      ts.server.ctx.disco.serverItems.delete('upload.localhost');
    }
  });

  test('P17 host disco#items contains no user JIDs, however many accounts exist', async () => {
    assert.ok((await ts.server.ctx.storage.accounts.count('localhost')) >= 5);
    for (const client of [alice, mallory]) {
      const reply = await client.iq(itemsQuery('localhost'));
      assert.equal(reply.attrs.type, 'result');
      const text = reply.getChild('query', NS.discoItems)!.toString();
      for (const name of ['alice', 'bob', 'carol', 'dave', 'mallory', 'erin']) assert.ok(!text.includes(`${name}@`), `no ${name}`);
      for (const item of reply.getChild('query', NS.discoItems)!.getChildren('item')) assert.ok(!item.attrs.jid!.includes('@'), `item ${item.attrs.jid}`);
    }
  });

  test('account disco#info for the owner: account/registered identity and account features', async () => {
    const reply = await alice.iq(infoQuery('alice@localhost'));
    assert.equal(reply.attrs.type, 'result');
    const query = reply.getChild('query', NS.discoInfo)!;
    assert.ok(query.getChildren('identity').some((i) => i.attrs.category === 'account' && i.attrs.type === 'registered'));
    const features = query.getChildren('feature').map((f) => f.attrs.var);
    assert.deepEqual(features, [...ts.server.ctx.disco.accountFeatures].sort());
    assert.ok(features.includes(NS.discoInfo));
    // Without 'to' the IQ is addressed to the sender's own account too.
    const noTo = await alice.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.discoInfo })));
    assert.equal(noTo.attrs.type, 'result');
    assert.ok(noTo.getChild('query', NS.discoInfo)!.getChild('identity'));
  });

  test('account disco#info for a contact with a subscription', async () => {
    const reply = await bob.iq(infoQuery('alice@localhost'));
    assert.equal(reply.attrs.type, 'result');
    assert.equal(reply.attrs.from, 'alice@localhost');
    assert.ok(reply.getChild('query', NS.discoInfo)!.getChildren('identity').some((i) => i.attrs.category === 'account'));
  });

  test("a 'to' subscription (the contact does not get the owner's presence) is not enough", async () => {
    await subscribe(ts, 'carol', 'bob', 'to');
    const reply = await bob.iq(infoQuery('carol@localhost'));
    assert.equal(reply.attrs.type, 'error');
    assert.equal(errorCondition(reply), 'service-unavailable');
  });

  test('P17 account disco#info without subscription is identical for existing and nonexistent accounts', async () => {
    const existing = await mallory.iq(infoQuery('alice@localhost'));
    const missing = await mallory.iq(infoQuery('nobody-here@localhost'));
    assert.equal(existing.attrs.type, 'error');
    assert.equal(errorCondition(existing), 'service-unavailable');
    assert.equal(shape(existing), shape(missing));
    assert.equal(existing.toString().includes('registered'), false);
    // and the same as what any other IQ to a nonexistent account gets from the router
    const other = await mallory.iq(x('iq', { type: 'get', to: 'nobody-here@localhost' }, x('query', { xmlns: 'urn:example:unhandled' })));
    assert.equal(errorCondition(other), errorCondition(missing));
  });

  test('P17 account disco#items without subscription is identical for existing and nonexistent accounts', async () => {
    const existing = await mallory.iq(itemsQuery('alice@localhost'));
    const missing = await mallory.iq(itemsQuery('nobody-here@localhost'));
    assert.equal(existing.attrs.type, 'error');
    assert.equal(shape(existing), shape(missing));
  });

  test('account disco#items for the owner is empty', async () => {
    const reply = await alice.iq(itemsQuery('alice@localhost'));
    assert.equal(reply.attrs.type, 'result');
    assert.equal(reply.getChild('query', NS.discoItems)!.elements.length, 0);
  });

  test('account disco#info for an unknown node: item-not-found for the owner', async () => {
    const reply = await alice.iq(infoQuery('alice@localhost', 'urn:nothing'));
    assert.equal(errorCondition(reply), 'item-not-found');
  });
});
