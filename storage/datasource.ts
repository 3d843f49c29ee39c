/**
 * Opening the database: SQLite (better-sqlite3, the default), MariaDB/MySQL (mysql2) or PostgreSQL
 * (pg), all through TypeORM. The schema is only ever changed by the migrations in /migrations
 * (never `synchronize`). Nothing outside server/storage sees TypeORM.
 */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { DataSource, MigrationExecutor, type DataSourceOptions, type Logger as OrmLogger } from 'typeorm';
import { migrations } from './migrations/index.js';
import { allEntities } from './entities.js';
import { checkModuleStorages, type ModuleStorage } from './module-storage.js';
import { StorageError, errorCode, errorText } from './errors.js';
import { TypeOrmStorage } from './typeorm-storage.js';
import type { Storage } from './types.js';

export { StorageError };

export interface StorageConfig {
  type: 'sqlite' | 'mysql' | 'postgres';
  /** SQLite database file (default data/gatehouse.sqlite, relative to the working directory). */
  path?: string;
  /** mysql://user:password@host:port/database or postgres://user:password@host:port/database */
  url?: string;
}

export interface OpenStorageOptions {
  /** Apply pending migrations (default true). When false, pending migrations are an error. */
  migrate?: boolean;
  logger?: (msg: string) => void;
  /** The tables of the feature modules (their `storage`): their entities and migrations join the core's. */
  modules?: readonly ModuleStorage[];
}

export const DEFAULT_SQLITE_PATH = 'data/gatehouse.sqlite';
/** How long a connection waits for a locked SQLite database (another process writing) before failing. */
const SQLITE_BUSY_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 10_000;

interface ParsedUrl {
  host: string;
  port: number;
  user: string | undefined;
  password: string | undefined;
  database: string;
  params: URLSearchParams;
}

function parseServerUrl(cfg: StorageConfig, defaultPort: number): ParsedUrl {
  const label = cfg.type === 'mysql' ? 'MySQL' : 'PostgreSQL';
  if (!cfg.url) throw new StorageError(`${label} storage needs a url (${cfg.type}://user:password@host:port/database)`);
  let u: URL;
  try {
    u = new URL(cfg.url);
  } catch {
    throw new StorageError(`${label} storage url is not a valid URL: ${redact(cfg.url, cfg)}`);
  }
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!database) throw new StorageError(`${label} storage url names no database: ${redact(cfg.url, cfg)}`);
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost',
    port: u.port ? Number(u.port) : defaultPort,
    user: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    database,
    params: u.searchParams,
  };
}

/** "SQLite database /abs/file", "MySQL database host:3306/db", "PostgreSQL database host:5432/db". */
export function describeDatabase(cfg: StorageConfig): string {
  try {
    switch (cfg.type) {
      case 'sqlite':
        return `SQLite database ${sqlitePath(cfg)}`;
      case 'mysql': {
        const p = parseServerUrl(cfg, 3306);
        return `MySQL database ${hostPort(p)}/${p.database}`;
      }
      case 'postgres': {
        const p = parseServerUrl(cfg, 5432);
        return `PostgreSQL database ${hostPort(p)}/${p.database}`;
      }
    }
  } catch {
    // fall through: an unparsable url still gets a (redacted) name
  }
  return `${cfg.type} database ${cfg.url ? redact(cfg.url, cfg) : '(no url)'}`;
}

function hostPort(p: ParsedUrl): string {
  return `${p.host.includes(':') ? `[${p.host}]` : p.host}:${p.port}`;
}

export function sqlitePath(cfg: StorageConfig): string {
  const file = cfg.path ?? DEFAULT_SQLITE_PATH;
  return file === ':memory:' ? file : path.resolve(file);
}

/** Removes passwords from text: user:password@ in any URL, and the configured password itself. */
export function redact(text: string, cfg?: StorageConfig): string {
  let out = text.replace(/([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*):[^\s@/]*@/gi, '$1:***@');
  if (cfg?.url) {
    let pw: string | undefined;
    try {
      pw = new URL(cfg.url).password;
    } catch {
      pw = /^[^:]+:\/\/[^:/@]*:([^@]*)@/.exec(cfg.url)?.[1];
    }
    if (pw) {
      const forms = new Set([pw]);
      try {
        forms.add(decodeURIComponent(pw));
      } catch {
        // not URI-encoded
      }
      for (const form of forms) if (form.length >= 3) out = out.split(form).join('***');
    }
  }
  return out;
}

function wrapError(cfg: StorageConfig, what: string, err: unknown): StorageError {
  if (err instanceof StorageError) return err;
  return new StorageError(redact(`${what} ${describeDatabase(cfg)}: ${errorText(err)}`, cfg), errorCode(err));
}

function ormLogger(log: ((msg: string) => void) | undefined, cfg: StorageConfig): OrmLogger {
  const emit = (msg: unknown) => log?.(redact(String(msg), cfg));
  return {
    logQuery: () => undefined,
    logQueryError: () => undefined,
    logQuerySlow: () => undefined,
    logSchemaBuild: () => undefined,
    logMigration: (message) => emit(`storage: ${message}`),
    log: (level, message) => {
      if (level === 'warn') emit(`storage: ${message}`);
    },
  };
}

function dataSourceOptions(cfg: StorageConfig, modules: readonly ModuleStorage[], log?: (msg: string) => void): DataSourceOptions {
  checkModuleStorages(modules, migrations.map((M) => new M().name));
  const common = {
    entities: [...allEntities, ...modules.flatMap((m) => m.entities)],
    migrations: [...migrations, ...modules.flatMap((m) => m.migrations)],
    migrationsRun: false,
    migrationsTransactionMode: 'each' as const,
    synchronize: false,
    logging: ['warn', 'migration'] as ('warn' | 'migration')[],
    logger: ormLogger(log, cfg),
  };
  switch (cfg.type) {
    case 'sqlite': {
      const database = sqlitePath(cfg);
      return {
        ...common,
        type: 'better-sqlite3',
        database,
        timeout: SQLITE_BUSY_TIMEOUT_MS,
        enableWAL: true,
        prepareDatabase: (db: { pragma(source: string, options?: { simple?: boolean }): unknown }) => {
          if (database !== ':memory:') {
            const mode = db.pragma('journal_mode = WAL', { simple: true });
            if (String(mode).toLowerCase() !== 'wal') throw new Error(`cannot enable WAL journal mode (got ${String(mode)})`);
          }
          // Durable on commit: an acknowledged write survives kill -9 and power loss.
          db.pragma('synchronous = FULL');
          db.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
          db.pragma('foreign_keys = ON');
          // Deleted rows (expired messages, erased accounts) must not linger in free pages.
          db.pragma('secure_delete = ON');
        },
      };
    }
    case 'mysql': {
      const p = parseServerUrl(cfg, 3306);
      const ssl = p.params.get('ssl') ?? p.params.get('sslmode');
      return {
        ...common,
        type: 'mysql',
        host: p.host,
        port: p.port,
        username: p.user,
        password: p.password,
        database: p.database,
        charset: 'utf8mb4',
        timezone: 'Z',
        connectTimeout: CONNECT_TIMEOUT_MS,
        ...(p.params.get('socket') ? { socketPath: p.params.get('socket')! } : {}),
        ...(ssl && !['false', '0', 'disable', 'disabled'].includes(ssl) ? { ssl: {} } : {}),
      };
    }
    case 'postgres': {
      parseServerUrl(cfg, 5432); // validates; pg itself parses sslmode, host=/socket, etc.
      return {
        ...common,
        type: 'postgres',
        url: cfg.url,
        connectTimeoutMS: CONNECT_TIMEOUT_MS,
        applicationName: 'gatehouse',
      };
    }
    default:
      throw new StorageError(`unknown storage type ${JSON.stringify((cfg as { type: unknown }).type)} (sqlite, mysql or postgres)`);
  }
}

/** Connects (creating the SQLite file and its directory if needed); errors are one redacted line. */
async function connect(cfg: StorageConfig, modules: readonly ModuleStorage[], log?: (msg: string) => void): Promise<DataSource> {
  let ds: DataSource | undefined;
  try {
    if (cfg.type === 'sqlite') {
      const file = sqlitePath(cfg);
      if (file !== ':memory:') {
        mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        // Created here (empty is a valid new database) so that it is private whatever the umask:
        // SQLite gives the -wal and -shm files the database file's permissions.
        closeSync(openSync(file, 'a', 0o600));
      }
    }
    ds = new DataSource(dataSourceOptions(cfg, modules, log));
    await ds.initialize();
    return ds;
  } catch (err) {
    if (ds?.isInitialized) await ds.destroy().catch(() => undefined);
    throw wrapError(cfg, 'cannot open', err);
  }
}

async function applyMigrations(ds: DataSource, cfg: StorageConfig, log?: (msg: string) => void): Promise<string[]> {
  try {
    const applied = await ds.runMigrations({ transaction: 'each' });
    for (const m of applied) log?.(`storage: applied migration ${m.name} to ${describeDatabase(cfg)}`);
    return applied.map((m) => m.name);
  } catch (err) {
    throw wrapError(cfg, 'migration failed on', err);
  }
}

async function pending(ds: DataSource, cfg: StorageConfig): Promise<string[]> {
  try {
    const list = await new MigrationExecutor(ds).getPendingMigrations();
    return list.map((m) => m.name);
  } catch (err) {
    throw wrapError(cfg, 'cannot read migrations of', err);
  }
}

/**
 * Opens the storage. By default applies pending migrations first; with `migrate: false` a database
 * that still has pending migrations is refused (run `runMigrations` first).
 */
export async function openStorage(cfg: StorageConfig, opts: OpenStorageOptions = {}): Promise<Storage> {
  const ds = await connect(cfg, opts.modules ?? [], opts.logger);
  try {
    if (opts.migrate ?? true) {
      await applyMigrations(ds, cfg, opts.logger);
    } else {
      const names = await pending(ds, cfg);
      if (names.length > 0) {
        throw new StorageError(`${describeDatabase(cfg)} has ${names.length} pending migration(s) (${names.join(', ')}); run the migrations first`);
      }
    }
  } catch (err) {
    await ds.destroy().catch(() => undefined);
    throw err;
  }
  return new TypeOrmStorage(ds, cfg.type, describeDatabase(cfg), opts.modules ?? []);
}

/** Applies pending migrations; returns the names applied (empty when the schema is current). */
export async function runMigrations(cfg: StorageConfig, opts: { logger?: (msg: string) => void; modules?: readonly ModuleStorage[] } = {}): Promise<string[]> {
  const ds = await connect(cfg, opts.modules ?? [], opts.logger);
  try {
    return await applyMigrations(ds, cfg, opts.logger);
  } finally {
    await ds.destroy().catch(() => undefined);
  }
}

/** Names of the migrations not yet applied. */
export async function pendingMigrations(cfg: StorageConfig, modules: readonly ModuleStorage[] = []): Promise<string[]> {
  const ds = await connect(cfg, modules);
  try {
    return await pending(ds, cfg);
  } finally {
    await ds.destroy().catch(() => undefined);
  }
}
