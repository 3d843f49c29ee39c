/**
 * The counting queries behind the per-account limits (pending subscription requests, offline and
 * private storage usage in bytes), on every target of storageTargets(): SQLite always,
 * MariaDB/MySQL with GATEHOUSE_TEST_MYSQL_URL, PostgreSQL with GATEHOUSE_TEST_POSTGRES_URL.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { openStorage, type StorageConfig } from '../../storage/datasource.js';
import { storageTargets } from '../../storage/test-databases.js';
import type { RosterItem, Storage } from '../../storage/types.js';
import { xmlBytes } from '../../server/core/quota.js';
import { HIDDEN_GROUP } from '../../server/modules/roster.js';

function item(jid: string, over: Partial<RosterItem> = {}): RosterItem {
  return { jid, name: null, subscription: 'none', ask: false, pendingIn: false, approved: false, groups: [], ...over };
}

for (const target of storageTargets()) {
  describe(`quota queries on ${target.name}`, () => {
    let db: { config: StorageConfig; drop(): Promise<void> };
    let storage: Storage;
    before(async () => {
      db = await target.make();
      storage = await openStorage(db.config);
    });
    after(async () => {
      await storage?.close();
      await db?.drop();
    });

    it('counts pending inbound requests per account and per domain, LIKE wildcards taken literally', async () => {
      const a = (await storage.accounts.create('counter', 'localhost', [], new Date()))!;
      const b = (await storage.accounts.create('other', 'localhost', [], new Date()))!;
      const pending = (jid: string) => item(jid, { pendingIn: true, groups: [HIDDEN_GROUP] });
      for (const jid of ['x1@evil.example', 'x2@evil.example', 'evil.example', 'y@evil_example.net', 'z@sub.evil.example', 'Q@other.example']) {
        await storage.roster.put(a.id, pending(jid));
      }
      await storage.roster.put(a.id, item('w@evil.example', { subscription: 'both' }));
      await storage.roster.put(a.id, item('v@evil.example', { subscription: 'to', pendingIn: true }));
      await storage.roster.put(b.id, pending('x9@evil.example'));
      assert.equal(await storage.roster.countPendingIn(a.id), 7);
      assert.equal(await storage.roster.countPendingIn(a.id, 'evil.example'), 4);
      assert.equal(await storage.roster.countPendingIn(a.id, 'evil_example.net'), 1);
      assert.equal(await storage.roster.countPendingIn(a.id, 'evil%example.net'), 0);
      assert.equal(await storage.roster.countPendingIn(a.id, 'sub.evil.example'), 1);
      assert.equal(await storage.roster.countPendingIn(a.id, 'nobody.example'), 0);
      assert.equal(await storage.roster.countPendingIn(b.id), 1);
    });

    it('sums offline usage in UTF-8 bytes', async () => {
      const a = (await storage.accounts.create('offline', 'localhost', [], new Date()))!;
      assert.deepEqual(await storage.offline.usage(a.id), { items: 0, bytes: 0 });
      const stanzas = ['<message><body>plain</body></message>', '<message><body>äöü €𝄞</body></message>'];
      for (const s of stanzas) await storage.offline.store(a.id, s, new Date());
      assert.deepEqual(await storage.offline.usage(a.id), { items: 2, bytes: stanzas.reduce((n, s) => n + xmlBytes(s), 0) });
    });

    it('sums private storage usage (keys and XML) per kind, leaving out replaced keys', async () => {
      const a = (await storage.accounts.create('private', 'localhost', [], new Date()))!;
      const entries: [string, string][] = [
        ['{urn:a}x', '<x xmlns="urn:a">ä</x>'],
        ['{urn:b}y', '<y xmlns="urn:b">𝄞𝄞</y>'],
      ];
      for (const [k, v] of entries) await storage.privateXml.set(a.id, k, v);
      await storage.vcards.set(a.id, 'vcard', '<vCard xmlns="vcard-temp"/>');
      const size = ([k, v]: [string, string]) => xmlBytes(k) + xmlBytes(v);
      assert.deepEqual(await storage.privateXml.usage(a.id), { items: 2, bytes: size(entries[0]!) + size(entries[1]!) });
      assert.deepEqual(await storage.privateXml.usage(a.id, ['{urn:a}x', '{urn:none}z']), { items: 1, bytes: size(entries[1]!) });
      const many = Array.from({ length: 1200 }, (_, i) => `{urn:k}${i}`);
      assert.deepEqual(await storage.privateXml.usage(a.id, [...many, '{urn:b}y']), { items: 1, bytes: size(entries[0]!) });
    });
  });
}
