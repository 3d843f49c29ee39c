import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ensureAccount as account, loginAs as login, startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

function shape(el: Element): string {
  const copy = el.clone();
  delete copy.attrs.id;
  delete copy.attrs.from;
  delete copy.attrs.to;
  return copy.toString();
}

const getVcard = (to?: string) => x('iq', { type: 'get', to }, x('vCard', { xmlns: NS.vcard }));
const setVcard = (vcard: Element, to?: string) => x('iq', { type: 'set', to }, vcard);
const aliceCard = () =>
  x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'Alice Liddell'), x('N', {}, x('FAMILY', {}, 'Liddell'), x('GIVEN', {}, 'Alice')), x('NICKNAME', {}, 'alice & <co>'));

describe('vcard-temp (XEP-0054)', () => {
  let ts: TestServer;
  let alice: TestClient;
  let bob: TestClient;

  before(async () => {
    ts = await startTestServer({});
    alice = await login(ts, 'alice');
    bob = await login(ts, 'bob');
  });
  after(async () => {
    await ts.stop();
  });

  test("the owner's vCard is empty before one is stored", async () => {
    for (const iq of [getVcard(), getVcard('alice@localhost')]) {
      const reply = await alice.iq(iq);
      assert.equal(reply.attrs.type, 'result');
      const card = reply.getChild('vCard', NS.vcard)!;
      assert.ok(card);
      assert.equal(card.children.length, 0);
    }
  });

  test('the owner stores a vCard and reads it back', async () => {
    const set = await alice.iq(setVcard(aliceCard()));
    assert.equal(set.attrs.type, 'result');
    const reply = await alice.iq(getVcard());
    const card = reply.getChild('vCard', NS.vcard)!;
    assert.equal(card.getChildText('FN'), 'Alice Liddell');
    assert.equal(card.getChild('N')!.getChildText('GIVEN'), 'Alice');
    assert.equal(card.getChildText('NICKNAME'), 'alice & <co>');
    // Replacing is whole-card.
    await alice.iq(setVcard(x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'Alice Liddell'), x('NICKNAME', {}, 'alice & <co>')), 'alice@localhost'));
    const again = (await alice.iq(getVcard())).getChild('vCard', NS.vcard)!;
    assert.equal(again.getChild('N'), undefined);
    assert.equal(again.getChildText('FN'), 'Alice Liddell');
  });

  test('P11 a vCard is public: another user reads it by JID', async () => {
    const reply = await bob.iq(getVcard('alice@localhost'));
    assert.equal(reply.attrs.type, 'result');
    assert.equal(reply.attrs.from, 'alice@localhost');
    assert.equal(reply.getChild('vCard', NS.vcard)!.getChildText('FN'), 'Alice Liddell');
  });

  test("setting someone else's vCard is forbidden and changes nothing", async () => {
    const reply = await bob.iq(setVcard(x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'Mallory')), 'alice@localhost'));
    assert.equal(reply.attrs.type, 'error');
    assert.equal(errorCondition(reply), 'forbidden');
    const card = (await bob.iq(getVcard('alice@localhost'))).getChild('vCard', NS.vcard)!;
    assert.equal(card.getChildText('FN'), 'Alice Liddell');
    const ghost = await bob.iq(setVcard(x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'Ghost')), 'nobody-here@localhost'));
    assert.equal(errorCondition(ghost), 'forbidden');
  });

  test('P17 vCard of an account without one and of a nonexistent account: identical answers', async () => {
    await account(ts, 'carol');
    const existing = await bob.iq(getVcard('carol@localhost'));
    const missing = await bob.iq(getVcard('nobody-here@localhost'));
    assert.equal(existing.attrs.type, 'error');
    assert.equal(errorCondition(existing), 'service-unavailable');
    assert.equal(shape(existing), shape(missing));
  });

  test('P16 vCards are fetched one JID at a time; there is no listing or search of users', async () => {
    // One JID, one vCard.
    assert.equal((await bob.iq(getVcard('alice@localhost'))).attrs.type, 'result');
    // No directory: the host has no vCard of its own listing anyone, no user search, no user items.
    const hostCard = await bob.iq(getVcard('localhost'));
    assert.equal(hostCard.attrs.type, 'error');
    assert.ok(!hostCard.toString().includes('alice'));
    const search = await bob.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: 'jabber:iq:search' })));
    assert.equal(search.attrs.type, 'error');
    const items = await bob.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.discoItems })));
    assert.ok(!items.getChild('query', NS.discoItems)!.toString().includes('@'));
    const features = (await bob.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.discoInfo }))))
      .getChild('query', NS.discoInfo)!
      .getChildren('feature')
      .map((f) => f.attrs.var);
    assert.ok(features.includes(NS.vcard), 'vcard-temp is announced');
    assert.ok(!features.includes('jabber:iq:search'), 'no user search');
  });

  test('a large photo (BINVAL) is stored and returned intact', async () => {
    const binval = Buffer.alloc(96 * 1024, 7).toString('base64');
    const card = x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'Bob'), x('PHOTO', {}, x('TYPE', {}, 'image/png'), x('BINVAL', {}, binval)));
    assert.equal((await bob.iq(setVcard(card))).attrs.type, 'result');
    const reply = await alice.iq(getVcard('bob@localhost'));
    assert.equal(reply.getChild('vCard', NS.vcard)!.getChild('PHOTO')!.getChildText('BINVAL'), binval);
  });

  test('an empty vCard clears it', async () => {
    await account(ts, 'dave');
    const dave = await login(ts, 'dave');
    await dave.iq(setVcard(x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'Dave'))));
    assert.equal((await bob.iq(getVcard('dave@localhost'))).attrs.type, 'result');
    assert.equal((await dave.iq(setVcard(x('vCard', { xmlns: NS.vcard })))).attrs.type, 'result');
    assert.equal(errorCondition(await bob.iq(getVcard('dave@localhost'))), 'service-unavailable');
    const own = await dave.iq(getVcard());
    assert.equal(own.getChild('vCard', NS.vcard)!.children.length, 0);
  });

  test('P11 deleting an account deletes its vCard', async () => {
    const { storage } = ts.server.ctx;
    const aliceId = await account(ts, 'alice');
    assert.notEqual(await storage.vcards.get(aliceId, 'vcard'), null);
    assert.equal(await storage.accounts.delete(aliceId), true);
    assert.equal(await storage.vcards.get(aliceId, 'vcard'), null);
    const reply = await bob.iq(getVcard('alice@localhost'));
    assert.equal(errorCondition(reply), 'service-unavailable');
  });
});
