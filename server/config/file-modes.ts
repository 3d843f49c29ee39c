/**
 * Which of the server's own files other users could read: the data directory (database, keys,
 * certificates, control socket), the SQLite database with its -wal and -shm files, and the log
 * file. New ones are created private (umask 077 in the CLI, explicit modes in the code); existing
 * ones are only reported, since an operator may have loosened them on purpose.
 */
import { statSync } from 'node:fs';
import type { Config } from '../config/index.js';
import { sqlitePath } from '../../storage/datasource.js';

export function dataFiles(config: Config): string[] {
  const files = [config.dataDir];
  if (config.storage.type === 'sqlite') {
    const db = sqlitePath(config.storage);
    if (db !== ':memory:') files.push(db, `${db}-wal`, `${db}-shm`);
  }
  if (config.log.file) files.push(config.log.file);
  return files;
}

/** The paths that exist and grant group or others any access, with their mode in octal. */
export function looseFiles(paths: string[]): { path: string; mode: string }[] {
  if (process.platform === 'win32') return [];
  const out: { path: string; mode: string }[] = [];
  for (const p of paths) {
    let mode: number;
    try {
      mode = statSync(p).mode & 0o777;
    } catch {
      continue;
    }
    if ((mode & 0o077) !== 0) out.push({ path: p, mode: mode.toString(8).padStart(3, '0') });
  }
  return out;
}
