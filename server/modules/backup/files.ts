/**
 * The backup files in a directory (P14): their names (sortable, without a host name), the list,
 * and the rotation that keeps the `backups.keep` newest.
 */
import { open, readdir, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';

const FILE_PREFIX = 'gatehouse-backup-';
const FILE_SUFFIX = '.ghb';
const FILE_RE = /^gatehouse-backup-(\d{8}T\d{6}\.\d{3}Z)(?:-(\d+))?\.ghb$/;

/** "gatehouse-backup-20260102T030405.678Z.ghb": sortable, without a host name. */
export function backupFileName(at: Date, seq = 0): string {
  const stamp = at.toISOString().replace(/[-:]/g, '');
  return `${FILE_PREFIX}${stamp}${seq ? `-${seq}` : ''}${FILE_SUFFIX}`;
}

/** Makes a rename in `dir` durable (where the platform can). */
export async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // not supported on every platform
  }
}

export interface BackupFile {
  file: string;
  name: string;
  /** From the file name. */
  createdAt: Date;
  bytes: number;
}

/** The backup files in `dir` (by their names), oldest first. */
export async function listBackups(dir: string): Promise<BackupFile[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: (BackupFile & { seq: number; stamp: string })[] = [];
  for (const name of names) {
    const m = FILE_RE.exec(name);
    if (!m) continue;
    const stamp = m[1]!;
    const iso = `${stamp.slice(0, 4)}-${stamp.slice(4, 6)}-${stamp.slice(6, 8)}T${stamp.slice(9, 11)}:${stamp.slice(11, 13)}:${stamp.slice(13)}`;
    const createdAt = new Date(iso);
    if (Number.isNaN(createdAt.getTime())) continue;
    const file = path.join(dir, name);
    let bytes = 0;
    try {
      bytes = (await stat(file)).size;
    } catch {
      continue;
    }
    out.push({ file, name, createdAt, bytes, stamp, seq: m[2] ? Number(m[2]) : 0 });
  }
  out.sort((a, b) => (a.stamp < b.stamp ? -1 : a.stamp > b.stamp ? 1 : a.seq - b.seq));
  return out.map(({ file, name, createdAt, bytes }) => ({ file, name, createdAt, bytes }));
}

/** Deletes all but the `keep` newest backups in `dir`; returns the deleted files. */
export async function rotateBackups(dir: string, keep: number): Promise<string[]> {
  if (!Number.isSafeInteger(keep) || keep < 1) throw new RangeError('keep must be at least 1');
  const all = await listBackups(dir);
  const doomed = all.slice(0, Math.max(0, all.length - keep));
  for (const b of doomed) await unlink(b.file).catch(() => undefined);
  // Leftovers of an interrupted backup (older than a day) go too.
  try {
    for (const name of await readdir(dir)) {
      if (!(name.endsWith('.partial') && name.startsWith(FILE_PREFIX)) && !name.startsWith('.gatehouse-snapshot-')) continue;
      const f = path.join(dir, name);
      const s = await stat(f).catch(() => null);
      if (s && Date.now() - s.mtimeMs > 24 * 3600_000) await rm(f, { force: true });
    }
  } catch {
    // nothing to tidy
  }
  return doomed.map((b) => b.file);
}
