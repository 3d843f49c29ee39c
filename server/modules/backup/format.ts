/**
 * The backup file (P14), format version 1, all integers big-endian:
 *
 *   "GHBACKUP" | version u8 | flags u8 (bit 0: encrypted) | header length u32 | header (JSON, UTF-8)
 *   encrypted only: salt (16) | nonce prefix (7) | key check (16)
 *   body: the gzip-compressed dump; when encrypted, as records (crypto.ts)
 *
 * Without encryption the gzip CRC and length catch damage and truncation. Restore reads the whole
 * file once to verify it before it touches the database, so a damaged file never leaves a
 * half-restored database behind.
 */
import { timingSafeEqual } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { BACKUP_KEY_ENV, BackupError, type DbKind } from '../../../storage/dump/index.js';
import { DecryptRecords, KEY_CHECK_BYTES, NONCE_PREFIX_BYTES, SALT_BYTES, deriveKeys } from './crypto.js';
import type { Progress } from './progress.js';

const MAGIC = Buffer.from('GHBACKUP', 'ascii');
const FORMAT_VERSION = 1;
const FLAG_ENCRYPTED = 1;
const MAX_HEADER_BYTES = 64 * 1024;

export interface BackupHeader {
  /** Always 'gatehouse-backup'. */
  format: string;
  kind: DbKind;
  /** 'sqlite3' (database file), 'mariadb-dump' or 'pg_dump' (plain SQL). */
  dump: 'sqlite3' | 'mariadb-dump' | 'pg_dump';
  compression: 'gzip';
  /** ISO 8601 UTC. */
  createdAt: string;
  /** Migrations applied to the database when it was backed up (informational). */
  migrations?: string[];
}

export interface BackupInfo {
  header: BackupHeader;
  encrypted: boolean;
  /** Where the body starts. */
  bodyOffset: number;
  /** Magic to key check: authenticated by every encrypted record. */
  preamble: Buffer;
  salt?: Buffer;
  noncePrefix?: Buffer;
  keyCheck?: Buffer;
  fileBytes: number;
}

export function buildPreamble(header: BackupHeader, crypto: { salt: Buffer; prefix: Buffer; check: Buffer } | null): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const fixed = Buffer.alloc(MAGIC.length + 6);
  MAGIC.copy(fixed, 0);
  fixed[MAGIC.length] = FORMAT_VERSION;
  fixed[MAGIC.length + 1] = crypto ? FLAG_ENCRYPTED : 0;
  fixed.writeUInt32BE(json.length, MAGIC.length + 2);
  const parts: Buffer[] = [fixed, json];
  if (crypto) parts.push(crypto.salt, crypto.prefix, crypto.check);
  return Buffer.concat(parts);
}

/** Reads and checks a backup file's preamble (not its body: see verifyBackup). */
export async function readBackupInfo(file: string): Promise<BackupInfo> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    throw new BackupError(`cannot open ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  try {
    const size = (await fh.stat()).size;
    const read = async (pos: number, len: number): Promise<Buffer> => {
      const b = Buffer.alloc(len);
      const { bytesRead } = await fh.read(b, 0, len, pos);
      if (bytesRead < len) throw new BackupError(`${file} is not a complete Gatehouse backup file (it ends inside its header)`);
      return b;
    };
    if (size < MAGIC.length) throw new BackupError(`${file} is not a Gatehouse backup file`);
    const fixed = await read(0, MAGIC.length + 6);
    if (!fixed.subarray(0, MAGIC.length).equals(MAGIC)) throw new BackupError(`${file} is not a Gatehouse backup file`);
    const version = fixed[MAGIC.length]!;
    if (version !== FORMAT_VERSION) throw new BackupError(`${file} is a backup of format version ${version}; this Gatehouse reads version ${FORMAT_VERSION}`);
    const flags = fixed[MAGIC.length + 1]!;
    if ((flags & ~FLAG_ENCRYPTED) !== 0) throw new BackupError(`${file}: unknown backup flags ${flags}: the file is damaged`);
    const headerLen = fixed.readUInt32BE(MAGIC.length + 2);
    if (headerLen === 0 || headerLen > MAX_HEADER_BYTES) throw new BackupError(`${file}: the backup header is damaged`);
    const json = await read(fixed.length, headerLen);
    let header: BackupHeader;
    try {
      header = JSON.parse(json.toString('utf8')) as BackupHeader;
    } catch {
      throw new BackupError(`${file}: the backup header is damaged`);
    }
    if (header?.format !== 'gatehouse-backup' || !['sqlite', 'mysql', 'postgres'].includes(header.kind) || header.compression !== 'gzip') {
      throw new BackupError(`${file}: the backup header is damaged or of an unknown kind`);
    }
    let offset = fixed.length + headerLen;
    const info: BackupInfo = { header, encrypted: (flags & FLAG_ENCRYPTED) !== 0, bodyOffset: 0, preamble: Buffer.alloc(0), fileBytes: size };
    const parts: Buffer[] = [fixed, json];
    if (info.encrypted) {
      const extra = await read(offset, SALT_BYTES + NONCE_PREFIX_BYTES + KEY_CHECK_BYTES);
      info.salt = extra.subarray(0, SALT_BYTES);
      info.noncePrefix = extra.subarray(SALT_BYTES, SALT_BYTES + NONCE_PREFIX_BYTES);
      info.keyCheck = extra.subarray(SALT_BYTES + NONCE_PREFIX_BYTES);
      parts.push(extra);
      offset += extra.length;
    }
    info.preamble = Buffer.concat(parts);
    info.bodyOffset = offset;
    return info;
  } finally {
    await fh.close();
  }
}

/**
 * The decompressed (and decrypted) dump of a backup file as a stream; any damage surfaces as a
 * BackupError on the stream. `onBytes` counts file bytes read (for a progress bar).
 */
export function openBackupBody(file: string, info: BackupInfo, key: Buffer | null, onBytes?: (n: number) => void): Readable {
  const source = createReadStream(file, { start: info.bodyOffset, highWaterMark: 256 * 1024 });
  if (onBytes) source.on('data', (c: Buffer | string) => onBytes(c.length));
  const stages: NodeJS.ReadWriteStream[] = [];
  if (info.encrypted) {
    if (!key) throw new BackupError(`this backup is encrypted: give its key (${BACKUP_KEY_ENV}, --key-file FILE or backups.encryptionKeyFile)`);
    const { enc, check } = deriveKeys(key, info.salt!);
    if (!timingSafeEqual(check, info.keyCheck!)) throw new BackupError('wrong backup key: this backup was encrypted with another key');
    stages.push(new DecryptRecords(enc, info.noncePrefix!, info.preamble));
  }
  const gunzip = zlib.createGunzip();
  stages.push(gunzip);
  const fail = (err: unknown) => {
    if (err instanceof BackupError) return err;
    const code = (err as NodeJS.ErrnoException)?.code;
    if (typeof code === 'string' && code.startsWith('Z_')) {
      return new BackupError(`the backup file is damaged or truncated (${code === 'Z_BUF_ERROR' ? 'unexpected end of data' : 'invalid compressed data'})`);
    }
    return new BackupError(`cannot read the backup file: ${(err as Error)?.message ?? String(err)}`);
  };
  // The consumer reads the last stage; an error anywhere reaches it there, as a BackupError.
  pipeline([source, ...stages] as unknown as [Readable, Writable]).catch(() => undefined);
  async function* body(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of gunzip) yield chunk as Buffer;
    } catch (err) {
      throw fail(err);
    }
  }
  return Readable.from(body(), { objectMode: false, highWaterMark: 256 * 1024 });
}

/** Reads a whole backup, checking every record (and the gzip checksum); returns the dump's size. */
export async function verifyBackup(file: string, key: Buffer | null, progress?: Progress): Promise<{ info: BackupInfo; dumpBytes: number }> {
  const info = await readBackupInfo(file);
  progress?.start('verifying', info.fileBytes - info.bodyOffset);
  let dumpBytes = 0;
  const body = openBackupBody(file, info, key, (n) => progress?.add(n));
  await pipeline(
    body,
    new Writable({
      write(chunk: Buffer, _e, cb) {
        dumpBytes += chunk.length;
        cb();
      },
    }),
  );
  progress?.finish();
  return { info, dumpBytes };
}
