/**
 * Backups and restore (privacy clause P14): a consistent snapshot of the whole database, compressed,
 * optionally encrypted, in one file; restore into an empty database; a daily in-process schedule
 * that keeps `backups.keep` newest files.
 *
 * What is dumped is the whole database, never a hand-made list of tables, so tables that other
 * features add later are in every backup without anyone touching this file:
 * - SQLite: the online backup API on a second connection (consistent while the server writes);
 * - MariaDB/MySQL: `mariadb-dump --single-transaction` (one InnoDB snapshot, no table locks);
 * - PostgreSQL: `pg_dump` (one repeatable-read snapshot), plain SQL.
 * Database passwords go to the tools through MYSQL_PWD / PGPASSWORD, never on a command line.
 *
 * File format (version 1), all integers big-endian:
 *
 *   "GHBACKUP" | version u8 | flags u8 (bit 0: encrypted) | header length u32 | header (JSON, UTF-8)
 *   encrypted only: salt (16) | nonce prefix (7) | key check (16)
 *   body: the gzip-compressed dump; when encrypted, as records:
 *     u32 (bit 31: last record, bits 0-30: ciphertext length <= 64 KiB) | ciphertext | GCM tag (16)
 *
 * Encryption is AES-256-GCM with a per-file key HKDF-SHA256(master key, salt). The nonce of record i
 * is prefix | i (u32) | last (u8), and every record authenticates the whole preamble (magic to key
 * check) as additional data. So a changed header, a changed, removed, reordered or appended record
 * and a cut-off file are each a clear error on restore; a wrong key is told apart by the key check.
 * Without encryption the gzip CRC and length catch damage and truncation.
 *
 * Restore reads the whole file once to verify it before it touches the database, so a damaged file
 * never leaves a half-restored database behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Readable, Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import Database from 'better-sqlite3';
import type { GatehouseModule } from '../../core/context.js';
import type { Config } from '../../config/index.js';
import type { Clock } from '../../../shared/clock.js';
import type { Logger } from '../../../shared/logger.js';
import { DEFAULT_SQLITE_PATH, describeDatabase, redact, type StorageConfig } from '../../storage/datasource.js';
import { formatBytes } from '../../../shared/format.js';

export type DbKind = StorageConfig['type'];

/** The environment variable holding the backup key (64 hex digits or base64 of 32 bytes). */
export const BACKUP_KEY_ENV = 'GATEHOUSE_BACKUP_KEY';

const MAGIC = Buffer.from('GHBACKUP', 'ascii');
const FORMAT_VERSION = 1;
const FLAG_ENCRYPTED = 1;
const SALT_BYTES = 16;
const NONCE_PREFIX_BYTES = 7;
const KEY_CHECK_BYTES = 16;
const TAG_BYTES = 16;
const RECORD_PLAINTEXT = 64 * 1024;
const LAST_RECORD = 0x8000_0000;
const MAX_HEADER_BYTES = 64 * 1024;
const FILE_PREFIX = 'gatehouse-backup-';
const FILE_SUFFIX = '.ghb';
const FILE_RE = /^gatehouse-backup-(\d{8}T\d{6}\.\d{3}Z)(?:-(\d+))?\.ghb$/;

/** A backup or restore that cannot go on; the message is one line for the operator, without secrets. */
export class BackupError extends Error {
  override name = 'BackupError';
}

// ---------------------------------------------------------------------------------------------
// Keys

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
 * GATEHOUSE_BACKUP_KEY, else the configured `backups.encryptionKeyFile`.
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
  const configured = opts.config?.backups.encryptionKeyFile;
  if (configured) return readKeyFile(configured, `backups.encryptionKeyFile ${configured}`);
  return null;
}

function deriveKeys(master: Buffer, salt: Buffer): { enc: Buffer; check: Buffer } {
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
class EncryptRecords extends Transform {
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
class DecryptRecords extends Transform {
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

// ---------------------------------------------------------------------------------------------
// File preamble

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

function buildPreamble(header: BackupHeader, crypto: { salt: Buffer; prefix: Buffer; check: Buffer } | null): Buffer {
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

// ---------------------------------------------------------------------------------------------
// Progress bar

/**
 * A one-line progress bar on standard error, only when it is a terminal: a log file or a pipe
 * gets no escape codes and no carriage returns.
 */
export class Progress {
  private label = '';
  private total: number | null = null;
  private done = 0;
  private lastDraw = 0;
  private active = false;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    readonly enabled: boolean = Boolean(process.stderr.isTTY),
  ) {}

  static disabled(): Progress {
    return new Progress(process.stderr, false);
  }

  start(label: string, total: number | null): void {
    this.label = label;
    this.total = total && total > 0 ? total : null;
    this.done = 0;
    this.lastDraw = 0;
    this.active = true;
    this.draw(true);
  }

  add(n: number): void {
    this.set(this.done + n);
  }

  set(done: number): void {
    this.done = done;
    this.draw(false);
  }

  setTotal(total: number | null): void {
    this.total = total && total > 0 ? total : null;
  }

  finish(): void {
    if (!this.active) return;
    if (this.total !== null) this.done = Math.max(this.done, this.total);
    this.draw(true);
    if (this.enabled) this.stream.write('\n');
    this.active = false;
  }

  private draw(force: boolean): void {
    if (!this.enabled || !this.active) return;
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const width = Math.max(10, Math.min(40, (this.stream.columns ?? 80) - this.label.length - 30));
    let line = `${this.label} `;
    if (this.total !== null) {
      const f = Math.min(1, this.done / this.total);
      const filled = Math.round(f * width);
      line += `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.floor(f * 100)).padStart(3)}% `;
    }
    line += formatBytes(this.done);
    this.stream.write(`\r\x1b[K${line}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Database access without TypeORM (catalog queries, emptiness checks, wiping before --force)

export interface RawDb {
  readonly kind: DbKind;
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

interface ServerTarget {
  host: string;
  port: number;
  user?: string;
  password?: string;
  database: string;
  params: URLSearchParams;
}

function serverTarget(cfg: StorageConfig): ServerTarget {
  if (!cfg.url) throw new BackupError(`${cfg.type} storage needs a url`);
  let u: URL;
  try {
    u = new URL(cfg.url);
  } catch {
    throw new BackupError(`the storage url is not a valid URL: ${redact(cfg.url, cfg)}`);
  }
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!database) throw new BackupError(`the storage url names no database: ${redact(cfg.url, cfg)}`);
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost',
    port: u.port ? Number(u.port) : cfg.type === 'mysql' ? 3306 : 5432,
    user: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    database,
    params: u.searchParams,
  };
}

export function sqliteFile(cfg: StorageConfig): string {
  const file = cfg.path ?? DEFAULT_SQLITE_PATH;
  if (file === ':memory:') throw new BackupError('an in-memory SQLite database cannot be backed up or restored');
  return path.resolve(file);
}

function truthy(v: string | null): boolean {
  return v !== null && !['false', '0', 'disable', 'disabled', 'no', 'off'].includes(v.toLowerCase());
}

/** A plain connection to the configured database (for catalog queries; SQLite: the file must exist). */
export async function openRawDb(cfg: StorageConfig): Promise<RawDb> {
  switch (cfg.type) {
    case 'sqlite': {
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
    case 'mysql': {
      const { default: mysql } = await import('mysql2/promise');
      const t = serverTarget(cfg);
      const ssl = t.params.get('ssl') ?? t.params.get('sslmode');
      const conn = await mysql
        .createConnection({
          host: t.host,
          port: t.port,
          user: t.user,
          password: t.password,
          database: t.database,
          charset: 'utf8mb4',
          supportBigNumbers: true,
          bigNumberStrings: true,
          dateStrings: true,
          connectTimeout: 10_000,
          ...(t.params.get('socket') ? { socketPath: t.params.get('socket')! } : {}),
          ...(truthy(ssl) ? { ssl: {} } : {}),
        })
        .catch((err: unknown) => {
          throw new BackupError(redact(`cannot connect to ${describeDatabase(cfg)}: ${(err as Error).message}`, cfg));
        });
      return {
        kind: 'mysql',
        async query<T>(sql: string, params: unknown[] = []) {
          const [rows] = await conn.query(sql, params);
          return (Array.isArray(rows) ? rows : []) as T[];
        },
        async close() {
          await conn.end().catch(() => undefined);
        },
      };
    }
    case 'postgres': {
      const { default: pg } = await import('pg');
      const client = new pg.Client({ connectionString: cfg.url, connectionTimeoutMillis: 10_000, application_name: 'gatehouse-backup' });
      client.on('error', () => undefined);
      try {
        await client.connect();
      } catch (err) {
        throw new BackupError(redact(`cannot connect to ${describeDatabase(cfg)}: ${(err as Error).message}`, cfg));
      }
      return {
        kind: 'postgres',
        async query<T>(sql: string, params: unknown[] = []) {
          const r = await client.query(sql, params);
          return r.rows as T[];
        },
        async close() {
          await client.end().catch(() => undefined);
        },
      };
    }
  }
}

const PG_SYSTEM_SCHEMA = `nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%'`;

/** Names of the base tables of the database (SQLite: without its internal sqlite_* tables). */
export async function listTables(db: RawDb): Promise<string[]> {
  let rows: { name: string }[];
  switch (db.kind) {
    case 'sqlite':
      rows = await db.query(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name`);
      break;
    case 'mysql':
      rows = await db.query(`SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME`);
      break;
    case 'postgres':
      rows = await db.query(
        `SELECT CASE WHEN n.nspname = current_schema() THEN c.relname ELSE n.nspname || '.' || c.relname END AS name
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND ${PG_SYSTEM_SCHEMA} ORDER BY 1`,
      );
      break;
  }
  return rows.map((r) => String(r.name));
}

/** Wipes every table, view, sequence and type of the database (restore --force). */
async function wipeDatabase(db: RawDb): Promise<void> {
  switch (db.kind) {
    case 'sqlite':
      throw new Error('SQLite is replaced as a file');
    case 'mysql': {
      const rows = await db.query<{ name: string; type: string }>(
        `SELECT TABLE_NAME AS name, TABLE_TYPE AS type FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()`,
      );
      await db.query('SET FOREIGN_KEY_CHECKS = 0');
      try {
        for (const r of rows) {
          const id = '`' + r.name.replace(/`/g, '``') + '`';
          await db.query(r.type === 'VIEW' ? `DROP VIEW IF EXISTS ${id}` : `DROP TABLE IF EXISTS ${id}`);
        }
      } finally {
        await db.query('SET FOREIGN_KEY_CHECKS = 1');
      }
      return;
    }
    case 'postgres': {
      const schemas = await db.query<{ nspname: string }>(`SELECT nspname FROM pg_namespace WHERE ${PG_SYSTEM_SCHEMA}`);
      const q = (s: string) => '"' + s.replace(/"/g, '""') + '"';
      await db.query('BEGIN');
      try {
        for (const { nspname } of schemas) {
          if (nspname !== 'public') {
            await db.query(`DROP SCHEMA ${q(nspname)} CASCADE`);
            continue;
          }
          // public stays (with its owner and grants); everything in it goes.
          const objects = await db.query<{ kind: string; name: string }>(
            `SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind,
                    c.relname AS name
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
              ORDER BY c.relkind = 'S'`,
          );
          for (const o of objects) await db.query(`DROP ${o.kind} IF EXISTS public.${q(o.name)} CASCADE`);
          const routines = await db.query<{ sig: string }>(
            `SELECT p.oid::regprocedure::text AS sig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p')
                AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')`,
          );
          for (const r of routines) await db.query(`DROP ROUTINE IF EXISTS ${r.sig} CASCADE`);
          const types = await db.query<{ name: string }>(
            `SELECT t.typname AS name FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
              WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'r', 'm')
                AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')`,
          );
          for (const t of types) await db.query(`DROP TYPE IF EXISTS public.${q(t.name)} CASCADE`);
        }
        await db.query('COMMIT');
      } catch (err) {
        await db.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
      return;
    }
  }
}

async function appliedMigrations(db: RawDb): Promise<string[] | undefined> {
  try {
    const rows = await db.query<{ name: string }>(`SELECT name FROM migrations ORDER BY timestamp`);
    return rows.map((r) => String(r.name));
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// External tools

interface Tool {
  /** Candidates, first found wins. */
  names: string[];
  pkg: string;
}

const TOOLS = {
  mysqlDump: { names: ['mariadb-dump', 'mysqldump'], pkg: 'mariadb-client' },
  mysqlClient: { names: ['mariadb', 'mysql'], pkg: 'mariadb-client' },
  pgDump: { names: ['pg_dump'], pkg: 'postgresql-client' },
  psql: { names: ['psql'], pkg: 'postgresql-client' },
} satisfies Record<string, Tool>;

function findTool(tool: Tool): string {
  const dirs = (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(path.delimiter).filter(Boolean);
  for (const name of tool.names) {
    for (const dir of dirs) {
      const p = path.join(dir, name);
      try {
        if (statSync(p).isFile()) return p;
      } catch {
        // not here
      }
    }
  }
  throw new BackupError(`${tool.names.join(' or ')} not found: install the Debian package ${tool.pkg}`);
}

/** Environment for a database tool: the password in MYSQL_PWD / PGPASSWORD, never the backup key. */
function toolEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env[BACKUP_KEY_ENV];
  delete env.MYSQL_PWD;
  delete env.PGPASSWORD;
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

function mysqlArgs(t: ServerTarget): { args: string[]; env: NodeJS.ProcessEnv } {
  const args: string[] = [];
  const socket = t.params.get('socket');
  if (socket) args.push(`--socket=${socket}`, '--protocol=SOCKET');
  else args.push(`--host=${t.host}`, `--port=${t.port}`, '--protocol=TCP');
  if (t.user) args.push(`--user=${t.user}`);
  if (truthy(t.params.get('ssl') ?? t.params.get('sslmode'))) args.push('--ssl');
  args.push('--default-character-set=utf8mb4');
  return { args, env: toolEnv({ MYSQL_PWD: t.password }) };
}

function pgEnv(cfg: StorageConfig): NodeJS.ProcessEnv {
  const t = serverTarget(cfg);
  return toolEnv({
    PGHOST: t.params.get('host') ?? t.host,
    PGPORT: String(t.port),
    PGUSER: t.user,
    PGPASSWORD: t.password,
    PGDATABASE: t.database,
    PGSSLMODE: t.params.get('sslmode') ?? (truthy(t.params.get('ssl')) ? 'require' : undefined),
    PGAPPNAME: 'gatehouse-backup',
    PGCONNECT_TIMEOUT: '10',
    PGOPTIONS: '--client-min-messages=warning',
  });
}

interface RunningTool {
  child: ChildProcess;
  /** Resolves when the tool exited successfully; rejects with a one-line BackupError otherwise. */
  exited: Promise<void>;
}

function runTool(file: string, args: string[], env: NodeJS.ProcessEnv, cfg: StorageConfig, stdio: { stdin: boolean; stdout: boolean }): RunningTool {
  const child = spawn(file, args, { env, stdio: [stdio.stdin ? 'pipe' : 'ignore', stdio.stdout ? 'pipe' : 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    if (stderr.length < 64 * 1024) stderr += d;
  });
  const name = path.basename(file);
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', (err) => reject(new BackupError(`cannot run ${name}: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
    child.once('close', (code, signal) => {
      if (code === 0) return resolve();
      reject(new BackupError(`${name} failed (${signal ?? `exit code ${code}`}): ${toolMessage(stderr, cfg)}`));
    });
  });
  exited.catch(() => undefined);
  return { child, exited };
}

/**
 * The error lines of a tool's standard error, shortened: a failing statement's data (the rows of a
 * COPY, a value in a duplicate-key message) never needs to reach the operator's screen or log.
 */
function toolMessage(stderr: string, cfg: StorageConfig): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^(CONTEXT|DETAIL|LINE \d+|HINT|QUERY):/.test(l) && !/^\^/.test(l) && !/^Warning: Using a password/.test(l));
  const text = lines.slice(0, 3).join('; ').slice(0, 300);
  return redact(text || 'no message', cfg);
}

// ---------------------------------------------------------------------------------------------
// Backup

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

/** "gatehouse-backup-20260102T030405.678Z.ghb": sortable, without a host name. */
export function backupFileName(at: Date, seq = 0): string {
  const stamp = at.toISOString().replace(/[-:]/g, '');
  return `${FILE_PREFIX}${stamp}${seq ? `-${seq}` : ''}${FILE_SUFFIX}`;
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
    findTool(cfg.type === 'mysql' ? TOOLS.mysqlDump : TOOLS.pgDump);
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
    } else if (cfg.type === 'mysql') {
      const t = serverTarget(cfg);
      const { args, env } = mysqlArgs(t);
      args.push('--single-transaction', '--quick', '--hex-blob', '--no-tablespaces', '--triggers', '--skip-dump-date', t.database);
      tool = runTool(findTool(TOOLS.mysqlDump), args, env, cfg, { stdin: false, stdout: true });
      source = tool.child.stdout!;
    } else {
      const args = ['--format=plain', '--no-owner', '--no-privileges', '--encoding=UTF8', '--no-password'];
      tool = runTool(findTool(TOOLS.pgDump), args, pgEnv(cfg), cfg, { stdin: false, stdout: true });
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

async function databaseSize(db: RawDb): Promise<number | null> {
  try {
    if (db.kind === 'mysql') {
      const [r] = await db.query<{ n: string | number | null }>(
        `SELECT SUM(DATA_LENGTH + INDEX_LENGTH) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()`,
      );
      return r?.n ? Number(r.n) : null;
    }
    if (db.kind === 'postgres') {
      const [r] = await db.query<{ n: string }>(`SELECT pg_database_size(current_database()) AS n`);
      return r ? Number(r.n) : null;
    }
  } catch {
    // only for the progress bar
  }
  return null;
}

/** A consistent copy of a live SQLite database (online backup API), in a private temporary file. */
async function sqliteSnapshot(cfg: StorageConfig, near: string, progress: Progress): Promise<{ file: string; cleanup: () => Promise<void> }> {
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

async function syncDir(dir: string): Promise<void> {
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

// ---------------------------------------------------------------------------------------------
// Rotation

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

// ---------------------------------------------------------------------------------------------
// Restore

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

/** True if another connection has the SQLite database open (a running server). */
function sqliteInUse(file: string): boolean {
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
  if (cfg.type !== 'sqlite') findTool(cfg.type === 'mysql' ? TOOLS.mysqlClient : TOOLS.psql);
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

  let tool: RunningTool;
  if (cfg.type === 'mysql') {
    const t = serverTarget(cfg);
    const { args, env } = mysqlArgs(t);
    args.push('--binary-mode', '--batch', t.database);
    tool = runTool(findTool(TOOLS.mysqlClient), args, env, cfg, { stdin: true, stdout: false });
  } else {
    tool = runTool(findTool(TOOLS.psql), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction', '--no-password', '-f', '-'], pgEnv(cfg), cfg, { stdin: true, stdout: false });
  }
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
    let tables = 0;
    const check = new Database(tmp, { readonly: true, fileMustExist: true });
    try {
      const result = check.pragma('quick_check', { simple: true });
      if (result !== 'ok') throw new BackupError(`the restored SQLite database fails its integrity check (${String(result)})`);
      tables = (check.prepare(`SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'`).get() as { n: number }).n;
    } finally {
      check.close();
    }
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

// ---------------------------------------------------------------------------------------------
// The daily schedule

const DAY_MS = 24 * 3600_000;
/** How often the schedule looks whether a backup is due (also the delay before the first look). */
export const CHECK_INTERVAL_MS = 10 * 60_000;
/** A backup is due when the newest one is this old: a day less the check interval, so it does not drift later. */
const DUE_AFTER_MS = DAY_MS - CHECK_INTERVAL_MS;

export interface SchedulerDeps {
  config: Config;
  clock: Clock;
  log: Logger;
  /** Defaults to loadBackupKey({ config }). */
  key?: () => Buffer | null;
}

/**
 * Makes a backup when the newest file in backups.dir is about a day old (or there is none), then
 * deletes all but the backups.keep newest. The time comes from the injected clock, so tests move
 * the clock and call tick() instead of waiting a day.
 */
export class BackupScheduler {
  private running: Promise<BackupResult | null> | null = null;
  private lastFailureAt = 0;

  constructor(private readonly deps: SchedulerDeps) {}

  /** Whether a backup is due now. */
  async due(): Promise<boolean> {
    const now = this.deps.clock.now().getTime();
    // After a failure, try again at the next check, not in a tight loop.
    if (this.lastFailureAt && now - this.lastFailureAt < CHECK_INTERVAL_MS) return false;
    const newest = (await listBackups(this.deps.config.backups.dir)).at(-1);
    return !newest || now - newest.createdAt.getTime() >= DUE_AFTER_MS;
  }

  /** One look at the schedule: makes (and rotates) a backup if one is due; returns it, or null. */
  tick(): Promise<BackupResult | null> {
    if (this.running) return this.running;
    const run = (async () => {
      if (!(await this.due())) return null;
      return this.runNow();
    })();
    this.running = run.finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Resolves when no backup of this scheduler is running. */
  async idle(): Promise<void> {
    await this.running?.catch(() => undefined);
  }

  /** Makes a backup now (and rotates). Failures are logged and returned as null. */
  async runNow(): Promise<BackupResult | null> {
    const { config, clock, log } = this.deps;
    const started = Date.now();
    try {
      const key = (this.deps.key ?? (() => loadBackupKey({ config })))();
      const result = await createBackup({ storage: config.storage, dir: config.backups.dir, key, now: clock.now() });
      const removed = await rotateBackups(config.backups.dir, config.backups.keep);
      this.lastFailureAt = 0;
      log.info('backup written', {
        file: path.basename(result.file),
        size: result.bytes,
        encrypted: key !== null,
        ms: Date.now() - started,
        rotated: removed.length,
      });
      return result;
    } catch (err) {
      this.lastFailureAt = clock.now().getTime();
      log.error('backup failed', { error: err instanceof Error ? err.message : String(err) });
      return null;
    }
  }
}

/** Schedules of the servers running in this process (tests start several). */
const active = new Map<BackupScheduler, NodeJS.Timeout>();

/** P14: the daily backup inside the server (backups.schedule 'daily'). */
export function createBackupModule(): GatehouseModule {
  return {
    name: 'backup',
    clauses: ['P14'],
    specs: [],
    load(ctx) {
      const { config, log } = ctx;
      if (config.backups.schedule !== 'daily') return;
      if (config.storage.type === 'sqlite' && config.storage.path === ':memory:') {
        log.warn('backups are scheduled but the database is in memory: no backups are made');
        return;
      }
      const scheduler = new BackupScheduler({ config, clock: ctx.clock, log: log.child('backup') });
      const timer = setInterval(() => void scheduler.tick(), CHECK_INTERVAL_MS);
      timer.unref();
      active.set(scheduler, timer);
    },
    async unload() {
      const schedulers = [...active.keys()];
      for (const [s, timer] of active) {
        clearInterval(timer);
        active.delete(s);
      }
      // A backup in progress finishes first (storage closes after unload).
      await Promise.allSettled(schedulers.map((s) => s.idle()));
    },
  };
}
