/**
 * Restoring a backup (P14) into an empty database (or, with --force, one whose contents it
 * replaces); never while the server runs. The file is verified completely first.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, statSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { describeDatabase, redact, type StorageConfig } from '../../../storage/datasource.js';
import {
  BackupError,
  checkRestoredSqlite,
  listTables,
  openRawDb,
  requireLoadTool,
  sqliteFile,
  sqliteInUse,
  startLoad,
  wipeDatabase,
  type RunningTool,
} from '../../../storage/dump/index.js';
import { openBackupBody, readBackupInfo, verifyBackup, type BackupHeader, type BackupInfo } from './format.js';
import { syncDir } from './files.js';
import { Progress } from './progress.js';

export interface RestoreOptions {
  storage: StorageConfig;
  /** The server's data directory: a running server's control socket there stops the restore. */
  dataDir?: string;
  key: Buffer | null;
  /** Replace a database that is not empty. */
  force?: boolean;
  progress?: Progress;
}

export interface RestoreResult {
  header: BackupHeader;
  tables: number;
}

/** The name of the running server's control socket in its data directory. */
export const CONTROL_SOCKET = 'control.sock';

async function refuseIfServerRunning(dataDir: string | undefined): Promise<void> {
  if (!dataDir) return;
  const sock = path.join(dataDir, CONTROL_SOCKET);
  if (!existsSync(sock)) return;
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect(sock);
    const t = setTimeout(() => {
      c.destroy();
      resolve(true);
    }, 1000);
    c.once('connect', () => {
      clearTimeout(t);
      c.destroy();
      resolve(true);
    });
    c.once('error', () => {
      clearTimeout(t);
      resolve(false);
    });
  });
  if (alive) throw new BackupError(`the server is running (its control socket ${sock} answers): stop it before restoring`);
}

/**
 * Restores a backup into the configured database, which must be empty (no tables) unless `force`.
 * The file is verified completely first; nothing is changed if it is damaged or the key is wrong.
 */
export async function restoreBackup(file: string, opts: RestoreOptions): Promise<RestoreResult> {
  const cfg = opts.storage;
  const progress = opts.progress ?? Progress.disabled();
  const info = await readBackupInfo(file);
  if (info.header.kind !== cfg.type) {
    throw new BackupError(`this is a backup of a ${info.header.kind} database; the configured storage is ${cfg.type} (restore it into a ${info.header.kind} database)`);
  }
  if (cfg.type !== 'sqlite') requireLoadTool(cfg);
  await refuseIfServerRunning(opts.dataDir);
  // Reads the key check and every record before anything is touched.
  await verifyBackup(file, opts.key, progress);

  if (cfg.type === 'sqlite') return restoreSqlite(file, info, cfg, opts, progress);

  const raw = await openRawDb(cfg);
  try {
    const tables = await listTables(raw);
    if (tables.length > 0) {
      if (!opts.force) throw new BackupError(`${describeDatabase(cfg)} is not empty (${tables.length} tables): restore into an empty database, or use --force to replace its contents`);
      await wipeDatabase(raw);
    }
  } finally {
    await raw.close();
  }

  const tool: RunningTool = startLoad(cfg);
  progress.start(`restoring ${cfg.type} database`, info.fileBytes - info.bodyOffset);
  const body = openBackupBody(file, info, opts.key, (n) => progress.add(n));
  try {
    const stdin = tool.child.stdin!;
    stdin.on('error', () => undefined); // EPIPE when the tool stops early: its exit status tells why
    const fed = pipeline(body, stdin).catch((err: unknown) => {
      // Never let a tool commit a partial load: psql's single transaction dies with it.
      tool.child.kill('SIGKILL');
      throw err;
    });
    await Promise.all([fed, tool.exited]);
  } catch (err) {
    progress.finish();
    if (err instanceof BackupError) throw err;
    throw new BackupError(`restore into ${describeDatabase(cfg)} failed: ${redact((err as Error)?.message ?? String(err), cfg)}`);
  }
  progress.finish();
  const after = await openRawDb(cfg);
  try {
    return { header: info.header, tables: (await listTables(after)).length };
  } finally {
    await after.close();
  }
}

async function restoreSqlite(file: string, info: BackupInfo, cfg: StorageConfig, opts: RestoreOptions, progress: Progress): Promise<RestoreResult> {
  const target = sqliteFile(cfg);
  if (existsSync(target) && statSync(target).size > 0) {
    if (sqliteInUse(target)) throw new BackupError(`the SQLite database ${target} is in use (is the server running?): stop the server before restoring`);
    const raw = await openRawDb(cfg);
    let tables: string[];
    try {
      tables = await listTables(raw);
    } finally {
      await raw.close();
    }
    if (tables.length > 0 && !opts.force) {
      throw new BackupError(`the SQLite database ${target} is not empty (${tables.length} tables): restore into an empty database, or use --force to replace it`);
    }
  }
  await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
  const tmp = `${target}.restore-${randomBytes(6).toString('hex')}`;
  try {
    progress.start('restoring sqlite database', info.fileBytes - info.bodyOffset);
    const body = openBackupBody(file, info, opts.key, (n) => progress.add(n));
    await pipeline(body, createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
    progress.finish();
    const fh = await open(tmp, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    const tables = checkRestoredSqlite(tmp);
    // Last look right before the swap: a server started meanwhile keeps its database.
    if (existsSync(target) && sqliteInUse(target)) throw new BackupError(`the SQLite database ${target} is in use (is the server running?): stop the server before restoring`);
    // A write-ahead log of the old database would be replayed into the new one: it goes first.
    for (const f of [`${target}-wal`, `${target}-shm`, `${target}-journal`]) await rm(f, { force: true });
    await rename(tmp, target);
    await syncDir(path.dirname(target));
    return { header: info.header, tables };
  } catch (err) {
    progress.finish();
    await rm(tmp, { force: true });
    for (const f of [`${tmp}-wal`, `${tmp}-shm`]) await rm(f, { force: true });
    if (err instanceof BackupError) throw err;
    throw new BackupError(`restore of ${target} failed: ${(err as Error)?.message ?? String(err)}`);
  }
}
