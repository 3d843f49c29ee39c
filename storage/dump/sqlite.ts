/**
 * SQLite: the database is a file. A backup copies it with the online backup API on a second
 * connection (consistent while the server writes); a restore replaces the file.
 */
import { randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { DEFAULT_SQLITE_PATH, describeDatabase, type StorageConfig } from '../datasource.js';
import { BackupError, type DumpProgress, type RawDb } from './common.js';

export function sqliteFile(cfg: StorageConfig): string {
  const file = cfg.path ?? DEFAULT_SQLITE_PATH;
  if (file === ':memory:') throw new BackupError('an in-memory SQLite database cannot be backed up or restored');
  return path.resolve(file);
}

/** A plain connection to the SQLite file, which must exist. */
export function openSqlite(cfg: StorageConfig): RawDb {
  const db = new Database(sqliteFile(cfg), { fileMustExist: true, timeout: 10_000 });
  return {
    kind: 'sqlite',
    async query<T>(sql: string, params: unknown[] = []) {
      const stmt = db.prepare(sql);
      if (stmt.reader) return stmt.all(...params) as T[];
      stmt.run(...params);
      return [];
    },
    async close() {
      db.close();
    },
  };
}

export const SQLITE_TABLES = `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name`;

/** A consistent copy of a live SQLite database (online backup API), in a private temporary file. */
export async function sqliteSnapshot(cfg: StorageConfig, near: string, progress: DumpProgress): Promise<{ file: string; cleanup: () => Promise<void> }> {
  const src = sqliteFile(cfg);
  const tmp = path.join(path.dirname(near), `.gatehouse-snapshot-${randomBytes(6).toString('hex')}.sqlite`);
  const cleanup = async () => {
    for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`, `${tmp}-journal`]) await rm(f, { force: true });
  };
  // Created first so that the copy is private (0600) from its first byte.
  const fh = await open(tmp, 'wx', 0o600);
  await fh.close();
  let db: Database.Database | null = null;
  try {
    db = new Database(src, { readonly: true, fileMustExist: true, timeout: 10_000 });
    const pageSize = Number(db.pragma('page_size', { simple: true })) || 4096;
    progress.start('copying sqlite database', null);
    // Steps of 1024 pages let the server work in between. A write by the server restarts the copy
    // (the remaining count goes up); after a few restarts the rest is copied in one step, which
    // holds only a read snapshot (WAL: the server's writes go on) and so always finishes.
    let lastRemaining = Infinity;
    let restarts = 0;
    await db.backup(tmp, {
      progress({ totalPages, remainingPages }) {
        if (remainingPages > lastRemaining) restarts++;
        lastRemaining = remainingPages;
        progress.setTotal(totalPages * pageSize);
        progress.set((totalPages - remainingPages) * pageSize);
        return restarts >= 3 ? 0x7fffffff : 1024;
      },
    });
    progress.finish();
  } catch (err) {
    await cleanup();
    throw new BackupError(`cannot copy ${describeDatabase(cfg)}: ${(err as Error).message}`);
  } finally {
    db?.close();
  }
  return { file: tmp, cleanup };
}

/** True if another connection has the SQLite database open (a running server). */
export function sqliteInUse(file: string): boolean {
  let db: Database.Database | null = null;
  try {
    db = new Database(file, { fileMustExist: true, timeout: 250 });
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
    db.exec('COMMIT');
    return false;
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return true;
    throw new BackupError(`cannot open the SQLite database ${file}: ${(err as Error).message}`);
  } finally {
    db?.close();
  }
}

/** Checks a restored database file (quick_check); returns its number of tables. */
export function checkRestoredSqlite(file: string): number {
  const check = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const result = check.pragma('quick_check', { simple: true });
    if (result !== 'ok') throw new BackupError(`the restored SQLite database fails its integrity check (${String(result)})`);
    return (check.prepare(`SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'`).get() as { n: number }).n;
  } finally {
    check.close();
  }
}
