import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ensureAccount as account, loginAs as login, startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
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

const BOOKMARKS = 'storage:bookmarks';
const priv = (type: 'get' | 'set', children: Element[], to?: string) => x('iq', { type, to }, x('query', { xmlns: NS.privateXml }, children));
const bookmarks = () =>
  x('storage', { xmlns: BOOKMARKS }, x('conference', { name: 'Council of Oberon', autojoin: 'true', jid: 'council@conference.localhost' }, x('nick', {}, 'Puck')));

describe('private XML storage (XEP-0049)', () => {
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

  test('nothing stored: the empty requested element comes back', async () => {
    const reply = await alice.iq(priv('get', [x('storage', { xmlns: BOOKMARKS })]));
    assert.equal(reply.attrs.type, 'result');
    const stored = reply.getChild('query', NS.privateXml)!.getChild('storage', BOOKMARKS)!;
    assert.ok(stored);
    assert.equal(stored.children.length, 0);
  });

  test('the owner stores and retrieves data, keyed by namespace and element name', async () => {
    const set = await alice.iq(priv('set', [bookmarks()]));
    assert.equal(set.attrs.type, 'result');
    const reply = await alice.iq(priv('get', [x('storage', { xmlns: BOOKMARKS })], 'alice@localhost'));
    assert.equal(reply.attrs.type, 'result');
    const conf = reply.getChild('query', NS.privateXml)!.getChild('storage', BOOKMARKS)!.getChild('conference')!;
    assert.equal(conf.attrs.jid, 'council@conference.localhost');
    assert.equal(conf.getChildText('nick'), 'Puck');
    // Same namespace, other element name: a different item.
    const other = await alice.iq(priv('get', [x('other', { xmlns: BOOKMARKS })]));
    assert.equal(other.getChild('query', NS.privateXml)!.getChild('other', BOOKMARKS)!.children.length, 0);
  });

  test('a set with several elements stores each; a later set replaces one', async () => {
    const set = await alice.iq(priv('set', [x('prefs', { xmlns: 'exodus:prefs' }, x('defaultnick', {}, 'Hamlet')), x('notes', { xmlns: 'storage:rosternotes' }, x('note', { jid: 'bob@localhost' }, 'friend'))]));
    assert.equal(set.attrs.type, 'result');
    const prefs = await alice.iq(priv('get', [x('prefs', { xmlns: 'exodus:prefs' })]));
    assert.equal(prefs.getChild('query', NS.privateXml)!.getChild('prefs', 'exodus:prefs')!.getChildText('defaultnick'), 'Hamlet');
    await alice.iq(priv('set', [x('prefs', { xmlns: 'exodus:prefs' }, x('defaultnick', {}, 'Macbeth'))]));
    const again = await alice.iq(priv('get', [x('prefs', { xmlns: 'exodus:prefs' })]));
    assert.equal(again.getChild('query', NS.privateXml)!.getChild('prefs', 'exodus:prefs')!.getChildText('defaultnick'), 'Macbeth');
    const notes = await alice.iq(priv('get', [x('notes', { xmlns: 'storage:rosternotes' })]));
    assert.equal(notes.getChild('query', NS.privateXml)!.getChild('notes', 'storage:rosternotes')!.getChildText('note'), 'friend');
  });

  test('errors: empty query, reserved namespaces, several elements in a get', async () => {
    for (const type of ['get', 'set'] as const) {
      assert.equal(errorCondition(await alice.iq(priv(type, []))), 'not-acceptable', `${type} without child`);
      for (const ns of ['vcard-temp', 'jabber:iq:roster', 'http://jabber.org/protocol/muc']) {
        assert.equal(errorCondition(await alice.iq(priv(type, [x('x', { xmlns: ns })]))), 'not-acceptable', `${type} ${ns}`);
      }
      // A child without its own namespace is in jabber:iq:private, which is reserved too.
      assert.equal(errorCondition(await alice.iq(priv(type, [x('plain')]))), 'not-acceptable');
    }
    const two = await alice.iq(priv('get', [x('storage', { xmlns: BOOKMARKS }), x('prefs', { xmlns: 'exodus:prefs' })]));
    assert.equal(errorCondition(two), 'bad-request');
  });

  test('P11 private storage is readable and writable by its owner only', async () => {
    const read = await bob.iq(priv('get', [x('storage', { xmlns: BOOKMARKS })], 'alice@localhost'));
    assert.equal(read.attrs.type, 'error');
    assert.equal(errorCondition(read), 'forbidden');
    assert.ok(!read.toString().includes('Oberon'), 'no data in the error');
    assert.equal(read.getChild('query'), undefined);
    const write = await bob.iq(priv('set', [x('storage', { xmlns: BOOKMARKS }, x('conference', { jid: 'evil@conference.localhost' }))], 'alice@localhost'));
    assert.equal(errorCondition(write), 'forbidden');
    const mine = await alice.iq(priv('get', [x('storage', { xmlns: BOOKMARKS })]));
    const conf = mine.getChild('query', NS.privateXml)!.getChild('storage', BOOKMARKS)!.getChildren('conference');
    assert.deepEqual(conf.map((c) => c.attrs.jid), ['council@conference.localhost']);
    // bob's own storage is separate and empty
    const bobs = await bob.iq(priv('get', [x('storage', { xmlns: BOOKMARKS })]));
    assert.equal(bobs.getChild('query', NS.privateXml)!.getChild('storage', BOOKMARKS)!.children.length, 0);
  });

  test('P17 private storage of existing and nonexistent accounts: identical refusals', async () => {
    for (const type of ['get', 'set'] as const) {
      const ask = (to: string) => bob.iq(priv(type, [x('storage', { xmlns: BOOKMARKS })], to));
      const existing = await ask('alice@localhost');
      const missing = await ask('nobody-here@localhost');
      // Both refused (two identical results would leak nothing but refuse nothing either) ...
      for (const [who, reply] of [['existing', existing], ['nonexistent', missing]] as const) {
        assert.equal(reply.attrs.type, 'error', `${type} to the ${who} account: ${reply}`);
        assert.equal(errorCondition(reply), 'forbidden', `${type} to the ${who} account: ${reply}`);
      }
      // ... and indistinguishable.
      assert.equal(shape(existing), shape(missing), type);
    }
  });

  test('P11 deleting an account deletes its private data', async () => {
    const { storage } = ts.server.ctx;
    const aliceId = await account(ts, 'alice');
    const key = `{${BOOKMARKS}}storage`;
    const stored = await storage.privateXml.get(aliceId, key);
    assert.ok(stored);
    assert.equal(parseXmlText(stored)!.name, 'storage');
    assert.equal(await storage.accounts.delete(aliceId), true);
    assert.equal(await storage.privateXml.get(aliceId, key), null);
    assert.equal(await storage.privateXml.get(aliceId, '{exodus:prefs}prefs'), null);
  });
});
