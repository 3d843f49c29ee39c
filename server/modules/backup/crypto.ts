/**
 * Backup keys and the encryption of a backup's body (P14).
 *
 * Encryption is AES-256-GCM with a per-file key HKDF-SHA256(master key, salt). The body is cut into
 * records: u32 (bit 31: last record, bits 0-30: ciphertext length <= 64 KiB) | ciphertext | GCM tag
 * (16). The nonce of record i is prefix | i (u32) | last (u8), and every record authenticates the
 * whole preamble (magic to key check) as additional data. So a changed header, a changed, removed,
 * reordered or appended record and a cut-off file are each a clear error on restore; a wrong key
 * is told apart by the key check.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import type { Config } from '../../config/index.js';
import { BACKUP_KEY_ENV, BackupError } from '../../../storage/dump/index.js';
import { credentialFile } from '../../../shared/credentials.js';

export { BACKUP_KEY_ENV, BackupError } from '../../../storage/dump/index.js';

export const SALT_BYTES = 16;
export const NONCE_PREFIX_BYTES = 7;
export const KEY_CHECK_BYTES = 16;
const TAG_BYTES = 16;
const RECORD_PLAINTEXT = 64 * 1024;
const LAST_RECORD = 0x8000_0000;

/** Reads a key: 32 raw bytes, 64 hex digits, or base64 of 32 bytes (surrounding white space ignored). */
export function parseBackupKey(data: Buffer | string, what: string): Buffer {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  if (buf.length === 32 && typeof data !== 'string') {
    const text = buf.toString('latin1').trim();
    // 32 bytes that happen to be text are still taken as raw key material
    if (!/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(buf);
  }
  const text = buf.toString('utf8').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(text)) {
    const k = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (k.length === 32) return k;
  }
  throw new BackupError(`${what}: a backup key is 32 bytes: 64 hexadecimal digits or 44 characters of base64 (make one with: gatehouse backup keygen --out FILE)`);
}

/** A new random key, as the text a key file or GATEHOUSE_BACKUP_KEY holds. */
export function generateBackupKeyText(): string {
  return randomBytes(32).toString('base64') + '\n';
}

/**
 * A key file others can read (or replace) is refused, as the transports' vault does with its key:
 * mode 0600 or stricter, in a directory not writable by everyone (unless sticky, like /tmp).
 */
function checkKeyFilePrivate(file: string): void {
  const st = statSync(file);
  if (!st.isFile()) throw new BackupError(`the backup key file ${file} is not a regular file`);
  if (process.platform === 'win32') return;
  if ((st.mode & 0o077) !== 0) {
    throw new BackupError(`the backup key file ${file} can be read or written by other users (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 ${file}`);
  }
  const dir = statSync(path.dirname(path.resolve(file)));
  if ((dir.mode & 0o002) !== 0 && (dir.mode & 0o1000) === 0) {
    throw new BackupError(`the directory of the backup key file ${file} is writable by everyone; keep the key in a private directory`);
  }
}

/**
 * The backup key, or null (backups unencrypted): a key file given explicitly (`--key-file`), else
 * GATEHOUSE_BACKUP_KEY, else the systemd credential `backup-key` (shared/credentials.ts), else the
 * configured `backups.encryptionKeyFile`.
 */
export function loadBackupKey(opts: { keyFile?: string | null; config?: Config | null; env?: NodeJS.ProcessEnv } = {}): Buffer | null {
  const env = opts.env ?? process.env;
  const readKeyFile = (file: string, what: string) => {
    let data: Buffer;
    try {
      checkKeyFilePrivate(file);
      data = readFileSync(file);
    } catch (err) {
      if (err instanceof BackupError) throw err;
      throw new BackupError(`cannot read the backup key file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    return parseBackupKey(data, what);
  };
  if (opts.keyFile) return readKeyFile(opts.keyFile, `key file ${opts.keyFile}`);
  const fromEnv = env[BACKUP_KEY_ENV];
  if (fromEnv && fromEnv.trim() !== '') return parseBackupKey(fromEnv, BACKUP_KEY_ENV);
  const credential = credentialFile(['backup-key'], env);
  if (credential) return readKeyFile(credential, `systemd credential ${credential}`);
  const configured = opts.config?.backups.encryptionKeyFile;
  if (configured) return readKeyFile(configured, `backups.encryptionKeyFile ${configured}`);
  return null;
}

export function deriveKeys(master: Buffer, salt: Buffer): { enc: Buffer; check: Buffer } {
  const enc = Buffer.from(hkdfSync('sha256', master, salt, 'gatehouse backup v1 encryption', 32));
  const check = Buffer.from(hkdfSync('sha256', master, salt, 'gatehouse backup v1 key check', KEY_CHECK_BYTES));
  return { enc, check };
}

function nonce(prefix: Buffer, index: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  prefix.copy(n, 0);
  n.writeUInt32BE(index, NONCE_PREFIX_BYTES);
  n[11] = last ? 1 : 0;
  return n;
}

/** Plaintext in, encrypted records out (see the file comment). */
export class EncryptRecords extends Transform {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private index = 0;

  constructor(
    private readonly key: Buffer,
    private readonly prefix: Buffer,
    private readonly aad: Buffer,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    // Keep at least one byte back so that the last record is written by _flush with the last flag.
    if (this.pendingBytes > RECORD_PLAINTEXT) {
      const all = Buffer.concat(this.pending, this.pendingBytes);
      let at = 0;
      while (all.length - at > RECORD_PLAINTEXT) {
        this.push(this.seal(all.subarray(at, at + RECORD_PLAINTEXT), false));
        at += RECORD_PLAINTEXT;
      }
      const rest = all.subarray(at);
      this.pending = [rest];
      this.pendingBytes = rest.length;
    }
    done();
  }

  override _flush(done: TransformCallback): void {
    this.push(this.seal(Buffer.concat(this.pending, this.pendingBytes), true));
    this.pending = [];
    done();
  }

  private seal(plain: Buffer, last: boolean): Buffer {
    if (this.index >= 0x7fff_ffff) throw new BackupError('backup too large for one file');
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce(this.prefix, this.index++, last));
    cipher.setAAD(this.aad);
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    const head = Buffer.alloc(4);
    head.writeUInt32BE((last ? LAST_RECORD : 0) + body.length);
    return Buffer.concat([head, body, cipher.getAuthTag()]);
  }
}

/** Encrypted records in, plaintext out; any damage, reordering or truncation is a BackupError. */
export class DecryptRecords extends Transform {
  private buf: Buffer = Buffer.alloc(0);
  private index = 0;
  private done = false;

  constructor(
    private readonly key: Buffer,
    private readonly prefix: Buffer,
    private readonly aad: Buffer,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      if (this.done) {
        if (chunk.length > 0) throw new BackupError('the backup file has unexpected data after its end: it is damaged or has been tampered with');
        return cb();
      }
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      while (!this.done && this.buf.length >= 4) {
        const head = this.buf.readUInt32BE(0);
        const last = (head & LAST_RECORD) !== 0;
        const len = head & ~LAST_RECORD;
        if (len > RECORD_PLAINTEXT) throw new BackupError(`the backup file is damaged or has been tampered with (bad record ${this.index})`);
        if (this.buf.length < 4 + len + TAG_BYTES) break;
        const body = this.buf.subarray(4, 4 + len);
        const tag = this.buf.subarray(4 + len, 4 + len + TAG_BYTES);
        const decipher = createDecipheriv('aes-256-gcm', this.key, nonce(this.prefix, this.index, last), { authTagLength: TAG_BYTES });
        decipher.setAAD(this.aad);
        decipher.setAuthTag(tag);
        let plain: Buffer;
        try {
          plain = Buffer.concat([decipher.update(body), decipher.final()]);
        } catch {
          throw new BackupError(`the backup file is damaged or has been tampered with (record ${this.index} fails authentication)`);
        }
        this.index++;
        this.buf = this.buf.subarray(4 + len + TAG_BYTES);
        if (plain.length) this.push(plain);
        if (last) {
          this.done = true;
          if (this.buf.length > 0) throw new BackupError('the backup file has unexpected data after its end: it is damaged or has been tampered with');
        }
      }
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    if (!this.done) return cb(new BackupError('the backup file is truncated (its last record is missing)'));
    cb();
  }
}
