/**
 * The whole database as one dump and back, for backups (P14): what is dumped is the whole
 * database, never a hand-made list of tables, so tables that features add later are in every
 * backup. Each dialect has its file (sqlite.ts, mysql.ts, postgres.ts); this one picks by the
 * configured storage type. Database passwords go to the tools through MYSQL_PWD / PGPASSWORD.
 */
import type { StorageConfig } from '../datasource.js';
import type { RawDb } from './common.js';
import { TOOLS, findTool, type RunningTool } from './tools.js';
import { SQLITE_TABLES, openSqlite } from './sqlite.js';
import { MYSQL_TABLES, mysqlSize, openMysql, startMysqlDump, startMysqlLoad, wipeMysql } from './mysql.js';
import { POSTGRES_TABLES, openPostgres, postgresSize, startPostgresDump, startPostgresLoad, wipePostgres } from './postgres.js';

export { BACKUP_KEY_ENV, BackupError, type DbKind, type RawDb } from './common.js';
export type { RunningTool } from './tools.js';
export { checkRestoredSqlite, sqliteFile, sqliteInUse, sqliteSnapshot } from './sqlite.js';

/** A plain connection to the configured database (for catalog queries; SQLite: the file must exist). */
export async function openRawDb(cfg: StorageConfig): Promise<RawDb> {
  switch (cfg.type) {
    case 'sqlite':
      return openSqlite(cfg);
    case 'mysql':
      return openMysql(cfg);
    case 'postgres':
      return openPostgres(cfg);
  }
}

/** Names of the base tables of the database (SQLite: without its internal sqlite_* tables). */
export async function listTables(db: RawDb): Promise<string[]> {
  const sql = db.kind === 'sqlite' ? SQLITE_TABLES : db.kind === 'mysql' ? MYSQL_TABLES : POSTGRES_TABLES;
  const rows = await db.query<{ name: string }>(sql);
  return rows.map((r) => String(r.name));
}

/** Wipes every table, view, sequence and type of the database (restore --force). */
export async function wipeDatabase(db: RawDb): Promise<void> {
  switch (db.kind) {
    case 'sqlite':
      throw new Error('SQLite is replaced as a file');
    case 'mysql':
      return wipeMysql(db);
    case 'postgres':
      return wipePostgres(db);
  }
}

export async function appliedMigrations(db: RawDb): Promise<string[] | undefined> {
  try {
    const rows = await db.query<{ name: string }>(`SELECT name FROM migrations ORDER BY timestamp`);
    return rows.map((r) => String(r.name));
  } catch {
    return undefined;
  }
}

/** The database's size in bytes, if it tells (only for the progress bar). */
export async function databaseSize(db: RawDb): Promise<number | null> {
  try {
    if (db.kind === 'mysql') return await mysqlSize(db);
    if (db.kind === 'postgres') return await postgresSize(db);
  } catch {
    // only for the progress bar
  }
  return null;
}

/** Fails with a BackupError naming the Debian package when the server database's dump tool is missing. */
export function requireDumpTool(cfg: StorageConfig): void {
  findTool(cfg.type === 'mysql' ? TOOLS.mysqlDump : TOOLS.pgDump);
}

/** Fails with a BackupError naming the Debian package when the server database's load tool is missing. */
export function requireLoadTool(cfg: StorageConfig): void {
  findTool(cfg.type === 'mysql' ? TOOLS.mysqlClient : TOOLS.psql);
}

/** Starts the dump tool of a server database (MariaDB/MySQL, PostgreSQL); the SQL is on its standard output. */
export function startDump(cfg: StorageConfig): RunningTool {
  return cfg.type === 'mysql' ? startMysqlDump(cfg) : startPostgresDump(cfg);
}

/** Starts the load tool of a server database; the dump goes to its standard input. */
export function startLoad(cfg: StorageConfig): RunningTool {
  return cfg.type === 'mysql' ? startMysqlLoad(cfg) : startPostgresLoad(cfg);
}
