/**
 * Byte quotas per account (core/quota.ts), over real client sockets: offline storage (XEP-0160)
 * and private XML storage (XEP-0049).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ensureAccount, loginAs as login, startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import type { DeliveryFailure } from '../../server/core/router.js';
import { checkQuota, xmlBytes } from '../../server/core/quota.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { storageTargets, type StorageTarget } from '../../storage/test-databases.js';

/** A ping round trip: everything the client sent before has been routed (and stored). */
async function barrier(c: TestClient): Promise<void> {
  const r = await c.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
  assert.equal(r.attrs.type, 'result');
}

async function online(c: TestClient): Promise<void> {
  c.send(x('presence', {}, x('priority', {}, '1')));
  await c.expect((el) => el.name === 'presence' && el.attrs.from === c.jid && el.attrs.type === undefined);
}

let seq = 0;
const chat = (to: string, body: string): Element => x('message', { to, type: 'chat', id: `q${++seq}` }, x('body', {}, body));
const isError = (id: string) => (el: Element) => el.name === 'message' && el.attrs.type === 'error' && el.attrs.id === id;
const isMessage = (body: string) => (el: Element) => el.name === 'message' && el.attrs.type !== 'error' && el.getChildText('body') === body;

describe('quota arithmetic', () => {
  test('items and bytes are checked separately; bytes are UTF-8 bytes', () => {
    assert.equal(xmlBytes('äb'), 3);
    assert.deepEqual(checkQuota({ items: 1, bytes: 10 }, { items: 1, bytes: 10 }, { maxItems: 2, maxBytes: 20 }, 'x'), { ok: true });
    const items = checkQuota({ items: 2, bytes: 0 }, { items: 1, bytes: 1 }, { maxItems: 2, maxBytes: 20 }, 'x');
    assert.equal(items.ok ? null : items.exceeded, 'items');
    const bytes = checkQuota({ items: 0, bytes: 15 }, { items: 1, bytes: 6 }, { maxItems: 2, maxBytes: 20 }, 'the store');
    assert.equal(bytes.ok ? null : bytes.exceeded, 'bytes');
    assert.equal(bytes.ok ? null : bytes.text, 'the store is full (at most 20 bytes)');
  });
});

// The same over every database: the usage sums must count the same bytes everywhere.
for (const target of storageTargets()) {
  describe(`offline storage byte quota (XEP-0160) on ${target.name}`, () => {
    let ts: TestServer;
    let db: Awaited<ReturnType<StorageTarget['make']>>;
    const failures: DeliveryFailure[] = [];
    before(async () => {
      db = await target.make();
      ts = await startTestServer({ storage: db.config, logLevel: 'info', config: { offline: { maxPerUser: 100, maxBytesPerUser: '4KiB' } } });
      ts.server.ctx.hooks.on('delivery/failed', (f) => void failures.push(f));
    });
    after(async () => {
      await ts?.stop();
      await db?.drop();
    });

    test('P5 P17 a message that would take the store over its byte quota bounces to the sender with service-unavailable and is not stored', async () => {
      const alice = await login(ts, 'alice');
      const bobId = await ensureAccount(ts, 'bob');
      const big = (n: number) => `${n} ${'x'.repeat(1500)}`;
      alice.send(chat('bob@localhost', big(1)));
      alice.send(chat('bob@localhost', big(2)));
      await barrier(alice);
      const before = await ts.server.ctx.storage.offline.usage(bobId);
      assert.equal(before.items, 2);

      const over = chat('bob@localhost', big(3));
      alice.send(over);
      const err = await alice.expect(isError(over.attrs.id!));
      assert.equal(errorCondition(err), 'service-unavailable');
      assert.equal(err.attrs.from, 'bob@localhost');
      assert.deepEqual(await ts.server.ctx.storage.offline.usage(bobId), before, 'nothing stored');
      // P17: the same error as for an account that does not exist.
      const nobody = chat('nobody@localhost', 'hello?');
      alice.send(nobody);
      const none = await alice.expect(isError(nobody.attrs.id!));
      assert.equal(err.getChild('error')!.toString(), none.getChild('error')!.toString());
      assert.ok(failures.some((f) => f.to === 'bob@localhost' && f.condition === 'service-unavailable'), 'P8 record');
      assert.ok(!ts.logLines.join('\n').includes('x'.repeat(100)), 'no body in any log line');

      // Far below the count limit: it is the bytes that were full. A small message still fits.
      const small = chat('bob@localhost', 'short');
      alice.send(small);
      await barrier(alice);
      assert.ok(await alice.expectNothing(isError(small.attrs.id!), 100));
      assert.equal((await ts.server.ctx.storage.offline.usage(bobId)).items, 3);

      const bob = await login(ts, 'bob');
      await online(bob);
      for (const body of [big(1), big(2), 'short']) await bob.expect(isMessage(body));
    });
  });

  describe(`private XML storage byte quota (XEP-0049) on ${target.name}`, () => {
    let ts: TestServer;
    let db: Awaited<ReturnType<StorageTarget['make']>>;
    let alice: TestClient;
    before(async () => {
      db = await target.make();
      ts = await startTestServer({ storage: db.config, logLevel: 'info', config: { privateStorage: { maxBytesPerUser: '2KiB' } } });
      alice = await login(ts, 'alice');
    });
    after(async () => {
      await ts?.stop();
      await db?.drop();
    });

    const priv = (type: 'get' | 'set', ...children: Element[]) => x('iq', { type }, x('query', { xmlns: NS.privateXml }, children));
    const note = (ns: string, size: number) => x('notes', { xmlns: ns }, x('note', {}, 'n'.repeat(size)));
    const stored = async (ns: string): Promise<string | undefined> => {
      const r = await alice.iq(priv('get', x('notes', { xmlns: ns })));
      assert.equal(r.attrs.type, 'result');
      return r.getChild('query', NS.privateXml)!.getChild('notes', ns)!.getChildText('note');
    };

    test('a set over the byte quota gets resource-constraint; what was stored stays intact', async () => {
      assert.equal((await alice.iq(priv('set', note('urn:a', 1000)))).attrs.type, 'result');
      const refused = await alice.iq(priv('set', note('urn:b', 1200)));
      assert.equal(refused.attrs.type, 'error');
      assert.equal(errorCondition(refused), 'resource-constraint');
      assert.match(refused.getChild('error')!.getChildText('text', NS.stanzas) ?? '', /private storage is full \(at most 2 KiB\)/);
      assert.equal(await stored('urn:b'), undefined, 'nothing stored');
      assert.equal(await stored('urn:a'), 'n'.repeat(1000), 'earlier data intact');
    });

    test('a set is all or nothing, and replacing an element frees its old bytes', async () => {
      const both = await alice.iq(priv('set', note('urn:c', 100), note('urn:a', 1900)));
      assert.equal(errorCondition(both), 'resource-constraint');
      assert.equal(await stored('urn:c'), undefined);
      assert.equal(await stored('urn:a'), 'n'.repeat(1000));
      // urn:a's 1000 bytes are replaced, not added to.
      assert.equal((await alice.iq(priv('set', note('urn:a', 1800)))).attrs.type, 'result');
      assert.equal(await stored('urn:a'), 'n'.repeat(1800));
    });
  });
}
