/**
 * Making a backup (P14): a consistent snapshot of the whole database (storage/dump), compressed,
 * optionally encrypted (crypto.ts), in one file (format.ts), written under a temporary name and
 * renamed when complete.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { describeDatabase, redact, type StorageConfig } from '../../../storage/datasource.js';
import {
  BackupError,
  appliedMigrations,
  databaseSize,
  openRawDb,
  requireDumpTool,
  sqliteFile,
  sqliteSnapshot,
  startDump,
  type RawDb,
  type RunningTool,
} from '../../../storage/dump/index.js';
import { EncryptRecords, NONCE_PREFIX_BYTES, SALT_BYTES, deriveKeys } from './crypto.js';
import { buildPreamble, type BackupHeader } from './format.js';
import { backupFileName, syncDir } from './files.js';
import { Progress } from './progress.js';

export interface BackupOptions {
  storage: StorageConfig;
  /** Where the file goes: a directory (the name is made from the time) ... */
  dir?: string;
  /** ... or an exact file name. */
  file?: string;
  /** 32-byte key, or null for an unencrypted backup. */
  key: Buffer | null;
  now?: Date;
  progress?: Progress;
}

export interface BackupResult {
  file: string;
  bytes: number;
  dumpBytes: number;
  header: BackupHeader;
}

/** Makes a backup of the configured database. Writes to a temporary name and renames when complete. */
export async function createBackup(opts: BackupOptions): Promise<BackupResult> {
  const cfg = opts.storage;
  const now = opts.now ?? new Date();
  const progress = opts.progress ?? Progress.disabled();
  const dump = cfg.type === 'sqlite' ? 'sqlite3' : cfg.type === 'mysql' ? 'mariadb-dump' : 'pg_dump';
  const header: BackupHeader = { format: 'gatehouse-backup', kind: cfg.type, dump, compression: 'gzip', createdAt: now.toISOString() };

  // Check the tools and the connection before creating any file.
  let raw: RawDb | null = null;
  if (cfg.type === 'sqlite') {
    const file = sqliteFile(cfg);
    if (!existsSync(file)) throw new BackupError(`there is no database at ${file}`);
  } else {
    requireDumpTool(cfg);
  }
  raw = await openRawDb(cfg);
  let estimate: number | null = null;
  try {
    const m = await appliedMigrations(raw);
    if (m) header.migrations = m;
    estimate = await databaseSize(raw);
  } finally {
    await raw.close();
  }

  let target: string;
  if (opts.file) {
    target = path.resolve(opts.file);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
    if (existsSync(target)) throw new BackupError(`${target} already exists`);
  } else {
    const dir = path.resolve(opts.dir ?? 'backups');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    let seq = 0;
    do target = path.join(dir, backupFileName(now, seq++));
    while (existsSync(target));
  }
  const partial = `${target}.partial`;
  let cleanup: (() => Promise<void>) | null = null;
  let tool: RunningTool | null = null;
  let dumpBytes = 0;
  try {
    let source: Readable;
    if (cfg.type === 'sqlite') {
      const snap = await sqliteSnapshot(cfg, target, progress);
      cleanup = snap.cleanup;
      source = createReadStream(snap.file, { highWaterMark: 256 * 1024 });
      estimate = (await stat(snap.file)).size;
    } else {
      tool = startDump(cfg);
      source = tool.child.stdout!;
    }
    progress.start(`backing up ${cfg.type} database`, estimate);
    let crypto: { salt: Buffer; prefix: Buffer; check: Buffer; enc: Buffer } | null = null;
    if (opts.key) {
      const salt = randomBytes(SALT_BYTES);
      const { enc, check } = deriveKeys(opts.key, salt);
      crypto = { salt, prefix: randomBytes(NONCE_PREFIX_BYTES), check, enc };
    }
    const preamble = buildPreamble(header, crypto);
    const out = createWriteStream(partial, { flags: 'wx', mode: 0o600 });
    await new Promise<void>((resolve, reject) => {
      out.once('open', () => resolve());
      out.once('error', reject);
    });
    out.write(preamble);
    const counter = new Transform({
      transform(chunk: Buffer, _e, cb) {
        dumpBytes += chunk.length;
        progress.set(dumpBytes);
        cb(null, chunk);
      },
    });
    const stages: NodeJS.ReadWriteStream[] = [counter, zlib.createGzip({ level: 6 })];
    if (crypto) stages.push(new EncryptRecords(crypto.enc, crypto.prefix, preamble));
    const piped = pipeline([source, ...stages, out] as unknown as [Readable, Writable]);
    if (tool) {
      // A tool that fails early: stop writing at once instead of waiting for the pipe to drain.
      const failed = tool.exited.catch((err: unknown) => {
        source.destroy();
        throw err;
      });
      await Promise.all([piped, failed]);
    } else {
      await piped;
    }
    const fh = await open(partial, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(partial, target);
    await syncDir(path.dirname(target));
    progress.finish();
    const bytes = (await stat(target)).size;
    return { file: target, bytes, dumpBytes, header };
  } catch (err) {
    progress.finish();
    tool?.child.kill('SIGTERM');
    await rm(partial, { force: true });
    if (err instanceof BackupError) throw err;
    throw new BackupError(`backup of ${describeDatabase(cfg)} failed: ${redact((err as Error)?.message ?? String(err), cfg)}`);
  } finally {
    await cleanup?.();
  }
}
