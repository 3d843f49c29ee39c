/**
 * What the dump code of every dialect shares: the error it throws, the plain connection it queries
 * the catalog through, and the connection details it reads from the storage url.
 */
import { redact, type StorageConfig } from '../datasource.js';

export type DbKind = StorageConfig['type'];

/** The environment variable holding the backup key (64 hex digits or base64 of 32 bytes). */
export const BACKUP_KEY_ENV = 'GATEHOUSE_BACKUP_KEY';

/** A backup or restore that cannot go on; the message is one line for the operator, without secrets. */
export class BackupError extends Error {
  override name = 'BackupError';
}

/** A connection to the database without TypeORM (catalog queries, emptiness checks, wiping before --force). */
export interface RawDb {
  readonly kind: DbKind;
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

/** What a dump reports its progress to (the backup's progress bar). */
export interface DumpProgress {
  start(label: string, total: number | null): void;
  set(done: number): void;
  setTotal(total: number | null): void;
  finish(): void;
}

export interface ServerTarget {
  host: string;
  port: number;
  user?: string;
  password?: string;
  database: string;
  params: URLSearchParams;
}

export function serverTarget(cfg: StorageConfig): ServerTarget {
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

export function truthy(v: string | null): boolean {
  return v !== null && !['false', '0', 'disable', 'disabled', 'no', 'off'].includes(v.toLowerCase());
}
