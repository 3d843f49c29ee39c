/**
 * A feature module's own tables (the `storage` field of the module contract): the entity schemas
 * its repository reads and writes, the migrations that create and change its tables, and how to
 * build its repository on the shared database access layer (Db). The core tables stay in
 * entities.ts and /migrations; a module's tables travel with the module.
 *
 * Migrations are matched by name, so each module keeps its own chain: a module added to a server
 * that has run for years gets its tables on the next start (or `gatehouse migrate`), whatever the
 * timestamps of the core migrations. A module's tables that hold account data reference
 * accounts(id) ON DELETE CASCADE, so deleting an account (P23) deletes them without the module.
 */
import type { EntitySchema, MigrationInterface } from 'typeorm';
import type { Db } from './db.js';

export interface ModuleStorage<R = unknown> {
  /** Unique among modules; names the storage in errors (usually the module's name). */
  readonly name: string;
  readonly entities: readonly EntitySchema<any>[];
  /** Migration classes in order; each class's `name` must be unique across the whole server. */
  readonly migrations: readonly (new () => MigrationInterface)[];
  /** Builds the module's repository; called once per opened storage. */
  repository(db: Db): R;
}

/** Checks that module storages do not collide with each other (names, tables, migrations). */
export function checkModuleStorages(storages: readonly ModuleStorage[], coreMigrationNames: readonly string[]): void {
  const names = new Set<string>();
  const migrationOwner = new Map<string, string>(coreMigrationNames.map((n) => [n, 'core']));
  for (const s of storages) {
    if (names.has(s.name)) throw new Error(`module storage '${s.name}' is declared twice`);
    names.add(s.name);
    for (const M of s.migrations) {
      const name = new M().name ?? M.name;
      const other = migrationOwner.get(name);
      if (other) throw new Error(`migration ${name} of module storage '${s.name}' has the name of a migration of ${other === 'core' ? 'the core' : `'${other}'`}`);
      migrationOwner.set(name, s.name);
    }
  }
}
