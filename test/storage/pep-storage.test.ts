/**
 * The PEP module's tables (server/modules/pep/storage.ts) on every target of storageTargets():
 * SQLite always, MariaDB/MySQL with GATEHOUSE_TEST_MYSQL_URL, PostgreSQL with
 * GATEHOUSE_TEST_POSTGRES_URL. Opened as main.ts opens them: with the module's storage declaration.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { openStorage, type StorageConfig } from '../../storage/datasource.js';
import { storageTargets } from '../../storage/test-databases.js';
import { asTypeOrmStorage } from '../../storage/typeorm-storage.js';
import type { Storage } from '../../storage/types.js';
import { xmlBytes } from '../../server/core/quota.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import { pepStorage, type PepRepository } from '../../server/modules/pep/storage.js';
import { createPepModule } from '../../server/modules/pep/pep.js';
import { exportAccounts, importAccounts, parseExport, renderExport } from '../../server/modules/export/export.js';

for (const target of storageTargets()) {
  describe(`PEP storage on ${target.name}`, () => {
    let db: { config: StorageConfig; drop(): Promise<void> };
    let storage: Storage;
    let repo: PepRepository;
    before(async () => {
      db = await target.make();
      storage = await openStorage(db.config, { modules: [pepStorage] });
      repo = storage.repository(pepStorage);
    });
    after(async () => {
      await storage?.close();
      await db?.drop();
    });

    it('keeps nodes per account, items in publication order, and the newest max items', async () => {
      const a = (await storage.accounts.create('pep-order', 'localhost', [], new Date()))!;
      const node = (await repo.createNode(a.id, 'urn:xmpp:omemo:2:bundles', '{"maxItems":"max"}', new Date()))!;
      assert.equal(await repo.createNode(a.id, 'urn:xmpp:omemo:2:bundles', '{}', new Date()), null, 'a node name once per account');
      for (const id of ['1', '2', '3']) await repo.publish(node.id, { itemId: id, payload: `<b xmlns='x'>${id}</b>`, publisher: 'pep-order@localhost' }, new Date(), 10);
      await repo.publish(node.id, { itemId: '1', payload: "<b xmlns='x'>1 again</b>", publisher: null }, new Date(), 10);
      assert.deepEqual((await repo.items(node.id)).map((i) => i.itemId), ['2', '3', '1']);
      assert.deepEqual((await repo.items(node.id, 2)).map((i) => i.itemId), ['3', '1']);
      assert.equal((await repo.item(node.id, '1'))!.payload, "<b xmlns='x'>1 again</b>");
      const dropped = await repo.publish(node.id, { itemId: '4', payload: "<b xmlns='x'>4</b>", publisher: null }, new Date(), 2);
      assert.deepEqual(dropped.sort(), ['2', '3']);
      assert.deepEqual((await repo.items(node.id)).map((i) => i.itemId), ['1', '4']);
      assert.equal(await repo.retract(node.id, '1'), true);
      assert.equal(await repo.retract(node.id, '1'), false);
      assert.equal(await repo.countNodes(a.id), 1);
      assert.deepEqual(await repo.nodesOver(0), [node.id]);
      const other = (await storage.accounts.create('pep-order-2', 'localhost', [], new Date()))!;
      await repo.createNode(other.id, 'http://jabber.org/protocol/nick', '{}', new Date());
      await repo.createNode(other.id, 'urn:example:unwanted', '{}', new Date());
      const found = await repo.nodesOfAccounts('localhost', ['pep-order', 'pep-order-2', 'nobody'], ['urn:xmpp:omemo:2:bundles', 'http://jabber.org/protocol/nick']);
      assert.deepEqual(found.map((n) => `${n.username} ${n.node}`).sort(), ['pep-order urn:xmpp:omemo:2:bundles', 'pep-order-2 http://jabber.org/protocol/nick']);
      assert.deepEqual(await repo.nodesOfAccounts('elsewhere.example', ['pep-order'], ['urn:xmpp:omemo:2:bundles']), []);
    });

    it('counts usage in UTF-8 bytes across nodes, leaving out a replaced item', async () => {
      const a = (await storage.accounts.create('pep-usage', 'localhost', [], new Date()))!;
      const config = '{"access":"open"}';
      const node = (await repo.createNode(a.id, 'urn:example:ünïcode', config, new Date()))!;
      const payload = "<n xmlns='urn:example'>äöü €𝄞</n>";
      await repo.publish(node.id, { itemId: 'ü', payload, publisher: null }, new Date(), 5);
      const expected = xmlBytes('urn:example:ünïcode') + xmlBytes(config) + xmlBytes('ü') + xmlBytes(payload);
      assert.deepEqual(await repo.usage(a.id), { items: 1, bytes: expected });
      assert.deepEqual(await repo.usage(a.id, { nodeId: node.id, itemId: 'ü' }), { items: 0, bytes: expected - xmlBytes('ü') - xmlBytes(payload) });
    });

    it('P23 deleting the account deletes its PEP nodes and items (foreign key cascade)', async () => {
      const a = (await storage.accounts.create('pep-gone', 'localhost', [], new Date()))!;
      const b = (await storage.accounts.create('pep-stays', 'localhost', [], new Date()))!;
      for (const acc of [a, b]) {
        const node = (await repo.createNode(acc.id, 'urn:xmpp:avatar:data', '{}', new Date()))!;
        await repo.publish(node.id, { itemId: 'x', payload: "<data xmlns='urn:xmpp:avatar:data'>AAAA</data>", publisher: null }, new Date(), 1);
      }
      const raw = asTypeOrmStorage(storage);
      const count = async (table: string, accountId: number) => {
        const [p] = storage.kind === 'postgres' ? ['$1'] : ['?'];
        const sql =
          table === 'pep_nodes'
            ? `SELECT COUNT(*) AS n FROM pep_nodes WHERE account_id = ${p}`
            : `SELECT COUNT(*) AS n FROM pep_items i JOIN pep_nodes n ON n.id = i.node_id WHERE n.account_id = ${p}`;
        return Number((await raw.rawQuery(sql, [accountId]))[0].n);
      };
      const before = await count('pep_items', a.id);
      assert.equal(before, 1);
      const itemsTotal = async () => Number((await raw.rawQuery('SELECT COUNT(*) AS n FROM pep_items'))[0].n);
      const total = await itemsTotal();
      await storage.accounts.delete(a.id);
      assert.equal(await count('pep_nodes', a.id), 0);
      assert.equal(await itemsTotal(), total - 1, 'the items of the deleted account are gone, no orphans');
      assert.equal(await count('pep_items', b.id), 1, "another account's data stays");
    });

    it('P23 the XEP-0227 export carries nodes, configuration and items, and an import restores them', async () => {
      const part = createPepModule().accountData!;
      const a = (await storage.accounts.create('pep-export', 'localhost', [], new Date()))!;
      const node = (await repo.createNode(a.id, 'urn:xmpp:bookmarks:1', JSON.stringify({ access: 'whitelist', maxItems: 'max', sendLast: 'never' }), new Date()))!;
      const bookmark = "<conference xmlns='urn:xmpp:bookmarks:1' autojoin='true' name='Ünïcode &amp; more'><nick>JC</nick></conference>";
      await repo.publish(node.id, { itemId: 'theplay@conference.localhost', payload: bookmark, publisher: 'pep-export@localhost' }, new Date(), 100);
      await repo.publish(node.id, { itemId: 'orchard@conference.localhost', payload: "<conference xmlns='urn:xmpp:bookmarks:1'/>", publisher: null }, new Date(), 100);
      await repo.createNode(a.id, 'urn:example:empty', '{}', new Date());

      const xml = renderExport(await exportAccounts(storage, [{ username: 'pep-export', host: 'localhost' }], [part]));
      assert.match(xml, /<pubsub xmlns=['"]http:\/\/jabber\.org\/protocol\/pubsub#owner['"]>/);
      assert.match(xml, /<configure node=['"]urn:xmpp:bookmarks:1['"]>/);
      assert.match(xml, /pubsub#access_model['"]><value>whitelist<\/value>/);
      assert.match(xml, /<items node=['"]urn:xmpp:bookmarks:1['"]><item id=['"]theplay@conference\.localhost['"]/);
      // Without the module's part, the core export knows nothing of PEP.
      assert.doesNotMatch(renderExport(await exportAccounts(storage, [{ username: 'pep-export', host: 'localhost' }], [])), /pubsub/);

      const parsed = parseExport(xml, [part]);
      assert.deepEqual(parsed.warnings, []);
      const result = await importAccounts(storage, parsed, { hosts: ['localhost'], force: true, now: new Date(), auth: { hashes: ['SHA-256'], scramIterations: 4096 } }, [part]);
      assert.deepEqual(result.replaced, ['pep-export@localhost']);
      const b = (await storage.accounts.get('pep-export', 'localhost'))!;
      assert.notEqual(b.id, a.id);
      assert.deepEqual((await repo.nodes(b.id)).map((n) => n.node), ['urn:example:empty', 'urn:xmpp:bookmarks:1']);
      const restored = (await repo.node(b.id, 'urn:xmpp:bookmarks:1'))!;
      assert.equal(JSON.parse(restored.config).access, 'whitelist');
      assert.equal(JSON.parse(restored.config).maxItems, 'max');
      const items = await repo.items(restored.id);
      assert.deepEqual(items.map((i) => i.itemId), ['theplay@conference.localhost', 'orchard@conference.localhost']);
      assert.equal(items[0]!.payload, parseXmlText(bookmark)!.toString(), 'the same XML (the serialiser quotes its own way)');
      assert.equal(items[0]!.publisher, 'pep-export@localhost');
      // A second round trip gives the same document.
      assert.equal(renderExport(await exportAccounts(storage, [{ username: 'pep-export', host: 'localhost' }], [part])).replace(/createdAt=['"][^'"]*['"]/, ''), xml.replace(/createdAt=['"][^'"]*['"]/, ''));
    });

    it('P11 the retention class trims nodes over a lowered pep.maxItemsPerNode, oldest first; a dry run only counts', async () => {
      const cls = createPepModule().retention![0]!;
      const a = (await storage.accounts.create('pep-sweep', 'localhost', [], new Date()))!;
      const node = (await repo.createNode(a.id, 'urn:example:many', '{"maxItems":"max"}', new Date()))!;
      for (const id of ['1', '2', '3', '4', '5']) await repo.publish(node.id, { itemId: id, payload: `<n xmlns='urn:example'>${id}</n>`, publisher: null }, new Date(), 100);
      const env = { config: { pep: { maxItemsPerNode: 2 } }, storage } as unknown as Parameters<typeof cls.run>[0];
      assert.equal(cls.clause, 'P11');
      assert.ok((await cls.run(env, new Date(), { dryRun: true, batch: 10 })) >= 3);
      assert.equal((await repo.items(node.id)).length, 5, 'a dry run deletes nothing');
      await cls.run(env, new Date(), { dryRun: false, batch: 10 });
      assert.deepEqual((await repo.items(node.id)).map((i) => i.itemId), ['4', '5']);
      await cls.run(env, new Date(), { dryRun: false, batch: 10 });
      assert.deepEqual((await repo.items(node.id)).map((i) => i.itemId), ['4', '5'], 'idempotent');
    });

    it('P23 explicit subscriptions: renewed not doubled, bounded per node, listed by node and by subscriber, deleted with the node, with the owner\'s account and with the subscriber', async () => {
      const owner = (await storage.accounts.create('pep-subs-owner', 'localhost', [], new Date()))!;
      const other = (await storage.accounts.create('pep-subs-other', 'localhost', [], new Date()))!;
      const blog = (await repo.createNode(owner.id, 'urn:xmpp:microblog:0', '{"access":"open"}', new Date()))!;
      const nick = (await repo.createNode(owner.id, 'http://jabber.org/protocol/nick', '{}', new Date()))!;
      const elsewhere = (await repo.createNode(other.id, 'urn:xmpp:microblog:0', '{}', new Date()))!;
      const t0 = new Date(Date.UTC(2026, 0, 1));
      const t1 = new Date(Date.UTC(2026, 0, 2));
      assert.equal(await repo.subscribe(blog.id, 'reader@localhost', 'reader@localhost', t0, 3), true);
      assert.equal(await repo.subscribe(blog.id, 'reader@localhost/movim', 'reader@localhost', t0, 3), true);
      assert.equal(await repo.subscribe(blog.id, 'reader@localhost', 'reader@localhost', t1, 3), true, 'renewed');
      assert.equal(await repo.subscribe(blog.id, 'romeo@montague.example', 'romeo@montague.example', t0, 3), true);
      assert.equal(await repo.subscribe(blog.id, 'juliet@capulet.example', 'juliet@capulet.example', t0, 3), false, 'over the limit: nothing stored');
      assert.equal(await repo.subscribe(nick.id, 'reader@localhost', 'reader@localhost', t0, 3), true);
      assert.equal(await repo.subscribe(elsewhere.id, 'reader@localhost', 'reader@localhost', t0, 3), true);
      assert.deepEqual((await repo.subscriptions(blog.id)).map((s) => `${s.jid} ${s.bare} ${s.subscribedAt.toISOString()}`), [
        'reader@localhost/movim reader@localhost 2026-01-01T00:00:00.000Z',
        'romeo@montague.example romeo@montague.example 2026-01-01T00:00:00.000Z',
        'reader@localhost reader@localhost 2026-01-02T00:00:00.000Z',
      ]);
      assert.deepEqual((await repo.nodeSubscriptions(owner.id, 'urn:xmpp:microblog:0')).length, 3);
      assert.deepEqual((await repo.subscriptionsOf(owner.id, 'reader@localhost')).map((s) => `${s.node} ${s.jid}`), [
        'http://jabber.org/protocol/nick reader@localhost',
        'urn:xmpp:microblog:0 reader@localhost',
        'urn:xmpp:microblog:0 reader@localhost/movim',
      ]);
      assert.equal((await repo.subscriptionsOf(owner.id, 'reader@localhost'))[0]!.config, '{}');
      // Remote ones made before a time, local hosts left out (as the retention class asks).
      assert.deepEqual((await repo.remoteSubscriptionsBefore(t1, ['localhost'], 10)).map((s) => s.jid), ['romeo@montague.example']);
      assert.deepEqual((await repo.remoteSubscriptionsBefore(t0, ['localhost'], 10)).map((s) => s.jid), []);
      assert.equal(await repo.unsubscribe(blog.id, 'romeo@montague.example'), true);
      assert.equal(await repo.unsubscribe(blog.id, 'romeo@montague.example'), false);

      await repo.deleteNode(nick.id);
      assert.deepEqual((await repo.subscriptionsOf(owner.id, 'reader@localhost')).map((s) => s.node), ['urn:xmpp:microblog:0', 'urn:xmpp:microblog:0'], 'gone with the node');
      assert.equal(await repo.deleteSubscriber('reader@localhost'), 3, 'the subscriber\'s account deleted: every subscription it held');
      assert.deepEqual(await repo.subscriptions(blog.id), []);
      assert.deepEqual(await repo.subscriptions(elsewhere.id), []);
      for (let i = 0; i < 8; i++) assert.equal(await repo.subscribe(blog.id, `someone@localhost/r${i}`, 'someone@localhost', t0, 100), true);
      assert.equal(await repo.subscribe(blog.id, 'someone@localhost', 'someone@localhost', t0, 100), false, 'at most 8 of one bare JID');
      assert.equal(await repo.subscribe(blog.id, 'someone-else@localhost', 'someone-else@localhost', t0, 100), true);
      await storage.accounts.delete(owner.id);
      const raw = asTypeOrmStorage(storage);
      const [p] = storage.kind === 'postgres' ? ['$1'] : ['?'];
      assert.equal(Number((await raw.rawQuery(`SELECT COUNT(*) AS n FROM pep_subscriptions WHERE node_id = ${p}`, [blog.id]))[0].n), 0, "gone with the owner's account");
    });

    it('P23 the XEP-0227 export carries a node\'s subscriptions (XEP-0060 8.8.1 form) and an import makes them again; a subscriber\'s export names whom it follows', async () => {
      const part = createPepModule().accountData!;
      const a = (await storage.accounts.create('pep-export-subs', 'localhost', [], new Date()))!;
      const node = (await repo.createNode(a.id, 'urn:xmpp:microblog:0', '{"access":"open"}', new Date()))!;
      await repo.subscribe(node.id, 'romeo@montague.example', 'romeo@montague.example', new Date(), 10);
      await repo.subscribe(node.id, 'nurse@localhost/phone', 'nurse@localhost', new Date(), 10);
      // The subscriber's own export names whom it follows; its import leaves that to the owner's.
      await storage.accounts.create('nurse', 'localhost', [], new Date());
      const nurseXml = renderExport(await exportAccounts(storage, [{ username: 'nurse', host: 'localhost' }], [part]));
      assert.match(nurseXml, /<subscribed xmlns=['"]urn:gatehouse:pep-subscribed:0['"]><subscription service=['"]pep-export-subs@localhost['"] node=['"]urn:xmpp:microblog:0['"] jid=['"]nurse@localhost\/phone['"]\/><\/subscribed>/);
      const nurseParsed = parseExport(nurseXml, [part]);
      assert.deepEqual(nurseParsed.warnings, []);
      await importAccounts(storage, nurseParsed, { hosts: ['localhost'], force: true, now: new Date(), auth: { hashes: ['SHA-256'], scramIterations: 4096 } }, [part]);
      assert.equal((await repo.subscriptions(node.id)).length, 2, 'the import wrote nothing of it');
      const xml = renderExport(await exportAccounts(storage, [{ username: 'pep-export-subs', host: 'localhost' }], [part]));
      // Listed in the order they were made (the same millisecond: by JID).
      assert.match(xml, /<subscriptions node=['"]urn:xmpp:microblog:0['"]>(<subscription [^>]*\/>)*<subscription jid=['"]romeo@montague\.example['"] subscription=['"]subscribed['"]\/>/);
      const parsed = parseExport(xml, [part]);
      assert.deepEqual(parsed.warnings, []);
      await importAccounts(storage, parsed, { hosts: ['localhost'], force: true, now: new Date(), auth: { hashes: ['SHA-256'], scramIterations: 4096 } }, [part]);
      const b = (await storage.accounts.get('pep-export-subs', 'localhost'))!;
      const restored = (await repo.node(b.id, 'urn:xmpp:microblog:0'))!;
      assert.deepEqual((await repo.subscriptions(restored.id)).map((s) => `${s.jid} ${s.bare}`).sort(), ['nurse@localhost/phone nurse@localhost', 'romeo@montague.example romeo@montague.example']);
      const bad = `<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='pep-bad-subs'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><subscriptions node='urn:x'><subscription jid='a@b' subscription='pending'/></subscriptions></pubsub></user></host></server-data>`;
      assert.throws(() => parseExport(bad, [part]), /PEP node urn:x: subscription state pending/);
    });

    it('P11 P23 the pep-subscriptions retention class deletes remote subscriptions past their lifetime, in batches, those of local accounts that no longer exist, and all of them while the feature is off', async () => {
      const cls = createPepModule().retention!.find((c) => c.name === 'pep-subscriptions')!;
      const a = (await storage.accounts.create('pep-subs-sweep', 'localhost', [], new Date()))!;
      const node = (await repo.createNode(a.id, 'urn:xmpp:microblog:0', '{"access":"open"}', new Date()))!;
      const old = new Date(Date.UTC(2026, 0, 1));
      await storage.accounts.create('local', 'localhost', [], new Date());
      for (const jid of ['a@remote.example', 'b@remote.example/r', 'remote.example', 'local@localhost', 'deleted-offline@localhost/r']) await repo.subscribe(node.id, jid, jid.split('/')[0]!, old, 10);
      const env = (subscriptions: boolean) => ({ config: { hosts: [{ domain: 'localhost' }], pep: { subscriptions, remoteSubscriptionLifetime: 86_400_000 } }, storage }) as unknown as Parameters<typeof cls.run>[0];
      const now = new Date(old.getTime() + 2 * 86_400_000);
      assert.equal(await cls.run(env(true), now, { dryRun: true, batch: 2 }), 4);
      assert.equal((await repo.subscriptions(node.id)).length, 5);
      assert.equal(await cls.run(env(true), now, { dryRun: false, batch: 2 }), 4, 'the remote ones, and the one of an account deleted without the PEP module (P23)');
      assert.deepEqual((await repo.subscriptions(node.id)).map((s) => s.jid), ['local@localhost']);
      assert.equal(await cls.run(env(true), now, { dryRun: false, batch: 2 }), 0, 'idempotent');
      assert.ok((await cls.run(env(false), now, { dryRun: false, batch: 2 })) >= 1);
      assert.deepEqual(await repo.subscriptions(node.id), []);
    });

    it('P23 an import with a broken PEP part is refused before anything is written', async () => {
      const part = createPepModule().accountData!;
      const doc = `<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='pep-bad'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:x'><item id='1'><a xmlns='urn:x'/><b xmlns='urn:x'/></item></items></pubsub></user></host></server-data>`;
      assert.throws(() => parseExport(doc, [part]), /pep-bad@localhost: PEP node urn:x: item 1 must have exactly one payload element/);
      assert.equal(await storage.accounts.get('pep-bad', 'localhost'), null);
    });
  });
}
