/**
 * A module's own tables (storage/module-storage.ts): opened with the module, migrated with the
 * core, erased with the account, and refused clearly when the storage was opened without them.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EntitySchema, Table, type MigrationInterface, type QueryRunner } from 'typeorm';
import { openStorage, pendingMigrations, type StorageConfig } from '../../storage/datasource.js';
import { storageTargets } from '../../storage/test-databases.js';
import type { Db } from '../../storage/db.js';
import type { ModuleStorage } from '../../storage/module-storage.js';
import type { Storage } from '../../storage/types.js';
import { dialectOf, mysqlBinaryCollation } from '../../storage/migrations/kit.js';

interface NoteRow {
  id: number;
  accountId: number;
  text: string;
}

const NoteEntity = new EntitySchema<NoteRow>({
  name: 'TestModuleNote',
  tableName: 'test_module_notes',
  columns: {
    id: { type: 'integer', primary: true, generated: 'increment' },
    accountId: { name: 'account_id', type: 'integer' },
    text: { type: 'varchar', length: 200 },
  },
});

class TestModuleNotes1900000000000 implements MigrationInterface {
  name = 'TestModuleNotes1900000000000';
  async up(q: QueryRunner): Promise<void> {
    const collation = dialectOf(q) === 'mysql' ? await mysqlBinaryCollation(q) : undefined;
    await q.createTable(
      new Table({
        name: 'test_module_notes',
        columns: [
          { name: 'id', type: 'integer', isPrimary: true, isGenerated: true, generationStrategy: 'increment' },
          { name: 'account_id', type: 'integer' },
          { name: 'text', type: 'varchar', length: '200', ...(collation ? { charset: 'utf8mb4', collation } : {}) },
        ],
        foreignKeys: [{ columnNames: ['account_id'], referencedTableName: 'accounts', referencedColumnNames: ['id'], onDelete: 'CASCADE' }],
      }),
    );
  }
  async down(q: QueryRunner): Promise<void> {
    await q.dropTable('test_module_notes', true);
  }
}

class NotesRepository {
  constructor(private readonly db: Db) {}
  add(accountId: number, text: string): Promise<unknown> {
    return this.db.tx((m) => m.insert(NoteEntity, { accountId, text }));
  }
  async list(accountId: number): Promise<string[]> {
    const rows = await this.db.run((m) => m.find(NoteEntity, { where: { accountId }, order: { id: 'ASC' } }));
    return rows.map((r) => r.text);
  }
}

const notes: ModuleStorage<NotesRepository> = {
  name: 'test-notes',
  entities: [NoteEntity],
  migrations: [TestModuleNotes1900000000000],
  repository: (db) => new NotesRepository(db),
};

const T0 = new Date('2026-01-01T00:00:00Z');

for (const target of storageTargets()) {
  describe(`a module's own tables on ${target.name}`, () => {
    let db: { config: StorageConfig; drop(): Promise<void> };
    let storage: Storage | undefined;

    before(async () => {
      db = await target.make();
      // An installation that ran without the module first: the module's tables come later.
      await (await openStorage(db.config)).close();
    });

    after(async () => {
      await storage?.close();
      await db?.drop();
    });

    it('opening without the module leaves its migration pending and refuses its repository by name', async () => {
      assert.deepEqual(await pendingMigrations(db.config, [notes]), ['TestModuleNotes1900000000000']);
      const plain = await openStorage(db.config, { migrate: false });
      try {
        assert.throws(() => plain.repository(notes), /tables of 'test-notes' were not opened/);
      } finally {
        await plain.close();
      }
      await assert.rejects(openStorage(db.config, { migrate: false, modules: [notes] }), /pending migration\(s\) \(TestModuleNotes1900000000000\)/);
    });

    it('opening with the module runs its migration after the core ones and gives one repository', async () => {
      storage = await openStorage(db.config, { modules: [notes] });
      assert.deepEqual(await pendingMigrations(db.config, [notes]), []);
      assert.equal(storage.repository(notes), storage.repository(notes));
      const a = await storage.accounts.create('notes-owner', 'example.org', [], T0);
      assert.ok(a);
      await storage.repository(notes).add(a.id, 'first');
      await storage.repository(notes).add(a.id, 'second');
      assert.deepEqual(await storage.repository(notes).list(a.id), ['first', 'second']);
    });

    it('P23 deleting the account deletes the module\'s rows with it', async () => {
      assert.ok(storage);
      const a = await storage.accounts.get('notes-owner', 'example.org');
      assert.ok(a);
      const other = await storage.accounts.create('notes-other', 'example.org', [], T0);
      assert.ok(other);
      await storage.repository(notes).add(other.id, 'kept');
      assert.equal(await storage.accounts.delete(a.id), true);
      assert.deepEqual(await storage.repository(notes).list(a.id), []);
      assert.deepEqual(await storage.repository(notes).list(other.id), ['kept']);
    });
  });
}

describe('module storages that collide', () => {
  it('a module migration named like a core migration is refused before anything runs', async () => {
    class Clash implements MigrationInterface {
      name = 'InitialSchema1732600000000';
      async up(): Promise<void> {}
      async down(): Promise<void> {}
    }
    const target = storageTargets()[0]!;
    const db = await target.make();
    try {
      await assert.rejects(
        openStorage(db.config, { modules: [{ ...notes, name: 'clash', migrations: [Clash] }] }),
        /migration InitialSchema1732600000000 of module storage 'clash' has the name of a migration of the core/,
      );
      await assert.rejects(openStorage(db.config, { modules: [notes, notes] }), /module storage 'test-notes' is declared twice/);
    } finally {
      await db.drop();
    }
  });
});
