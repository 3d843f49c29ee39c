/**
 * The upload module's table (server/modules/upload/storage.ts) on every target of storageTargets():
 * SQLite always, MariaDB/MySQL with GATEHOUSE_TEST_MYSQL_URL, PostgreSQL with
 * GATEHOUSE_TEST_POSTGRES_URL. Opened as main.ts opens it: with the module's storage declaration.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { openStorage, type StorageConfig } from '../../storage/datasource.js';
import { storageTargets } from '../../storage/test-databases.js';
import type { Storage } from '../../storage/types.js';
import { uploadStorage, type UploadRepository } from '../../server/modules/upload/storage.js';

for (const target of storageTargets()) {
  describe(`upload storage on ${target.name}`, () => {
    let db: { config: StorageConfig; drop(): Promise<void> };
    let storage: Storage;
    let repo: UploadRepository;
    before(async () => {
      db = await target.make();
      storage = await openStorage(db.config, { modules: [uploadStorage] });
      repo = storage.repository(uploadStorage);
    });
    after(async () => {
      await storage?.close();
      await db?.drop();
    });

    it('stores files per account with their UTF-8 names, sums sizes, finds the old ones, and cascades with the account', async () => {
      const a = (await storage.accounts.create('upload-a', 'localhost', [], new Date()))!;
      const b = (await storage.accounts.create('upload-b', 'localhost', [], new Date()))!;
      const t0 = new Date(Date.UTC(2026, 0, 1));
      const t1 = new Date(Date.UTC(2026, 1, 1));
      const big = 5 * 1024 ** 3;
      await repo.add({ id: 'A'.repeat(24), accountId: a.id, fileName: 'Grüße 🎉.jpg', size: big, contentType: 'image/jpeg', url: 'https://upload.localhost/upload/x.jpg', createdAt: t0 });
      await repo.add({ id: 'B'.repeat(24), accountId: a.id, fileName: 'b.txt', size: 10, contentType: 'text/plain', url: 'https://u/b', createdAt: t1 });
      await repo.add({ id: 'C'.repeat(24), accountId: b.id, fileName: 'c.txt', size: 7, contentType: 'text/plain', url: 'https://u/c', createdAt: t0 });
      const got = (await repo.get('A'.repeat(24)))!;
      assert.equal(got.fileName, 'Grüße 🎉.jpg');
      assert.equal(got.size, big);
      assert.equal(got.createdAt.getTime(), t0.getTime());
      assert.equal(await repo.usage(a.id), big + 10);
      assert.deepEqual((await repo.ofAccount(a.id)).map((f) => f.fileName), ['Grüße 🎉.jpg', 'b.txt']);
      assert.deepEqual((await repo.createdBefore(t1, 10)).sort(), ['A'.repeat(24), 'C'.repeat(24)]);
      assert.equal(await repo.countCreatedBefore(t1), 2);
      assert.deepEqual([...(await repo.existing(['A'.repeat(24), 'Z'.repeat(24)]))], ['A'.repeat(24)]);
      await storage.accounts.delete(a.id);
      assert.equal(await repo.get('A'.repeat(24)), null);
      assert.equal(await repo.usage(a.id), 0);
      await repo.delete(['C'.repeat(24)]);
      assert.deepEqual(await repo.ofAccount(b.id), []);
    });

    it("keeps a component's files apart from the accounts': usage per component, found by id and by age, deleted by id", async () => {
      const t0 = new Date(Date.UTC(2026, 0, 1));
      const t1 = new Date(Date.UTC(2026, 1, 1));
      const c = (await storage.accounts.create('upload-c', 'localhost', [], new Date()))!;
      await repo.add({ id: 'E'.repeat(24), accountId: c.id, fileName: 'e.txt', size: 5, contentType: 'text/plain', url: 'https://u/e', createdAt: t1 });
      await repo.addComponentFile('matrix.localhost', { id: 'M'.repeat(24), fileName: 'Kätzchen.png', size: 300, contentType: 'image/png', url: 'https://u/m.png', createdAt: t0 });
      await repo.addComponentFile('matrix.localhost', { id: 'N'.repeat(24), fileName: 'n.png', size: 20, contentType: 'image/png', url: 'https://u/n.png', createdAt: t1 });
      await repo.addComponentFile('discord.localhost', { id: 'D'.repeat(24), fileName: 'd.jpg', size: 1, contentType: 'image/jpeg', url: 'https://u/d.jpg', createdAt: t0 });
      assert.equal(await repo.componentUsage('matrix.localhost'), 320);
      assert.equal(await repo.componentUsage('discord.localhost'), 1);
      assert.equal(await repo.usage(c.id), 5, "the account's usage has none of them");
      const got = (await repo.get('M'.repeat(24)))!;
      assert.deepEqual([got.accountId, got.fileName, got.size, got.contentType], [0, 'Kätzchen.png', 300, 'image/png']);
      assert.deepEqual((await repo.createdBefore(t1, 10)).sort(), ['D'.repeat(24), 'M'.repeat(24)]);
      assert.equal(await repo.countCreatedBefore(t1), 2);
      assert.deepEqual([...(await repo.existing(['M'.repeat(24), 'E'.repeat(24), 'Z'.repeat(24)]))].sort(), ['E'.repeat(24), 'M'.repeat(24)]);
      await repo.delete(['M'.repeat(24), 'E'.repeat(24)]);
      assert.equal(await repo.get('M'.repeat(24)), null);
      assert.equal(await repo.get('E'.repeat(24)), null);
      assert.equal(await repo.componentUsage('matrix.localhost'), 20);
    });
  });
}
