/**
 * The shared database access layer under every repository: one queue on SQLite (single connection,
 * so one caller's awaits inside a transaction cannot let another caller's statements in), BEGIN
 * IMMEDIATE write transactions, deadlock retries, and errors without query parameters.
 * Repositories for other features (privacy logs, statistics, transports) build on Db too.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { DataSource, EntityManager, ValueTransformer } from 'typeorm';
import { StorageError, errorCode, errorText } from './errors.js';
/** The database dialects storage runs on. */
export type Kind = 'sqlite' | 'mysql' | 'postgres';

/**
 * For BIGINT columns read as numbers (millisecond timestamps, sizes): pg and mysql2 return them as
 * strings (bigNumberStrings), SQLite as numbers. Every entity schema uses this one.
 */
export const bigintNumber: ValueTransformer = {
  to: (v: number | null | undefined) => v,
  from: (v: string | number | null | undefined) => (v === null || v === undefined ? v : Number(v)),
};

/** Bound on the number of ids in one IN (...) list. */
export const ID_CHUNK = 500;

export function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

export function checkText(what: string, value: unknown, max: number): string {
  if (typeof value !== 'string') throw new TypeError(`${what} must be a string`);
  if (value.length > max && codePoints(value) > max) throw new RangeError(`${what} longer than ${max} characters`);
  return value;
}

export function checkId(what: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new TypeError(`${what} must be an integer`);
  return value;
}

export function millis(what: string, d: unknown): number {
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw new TypeError(`${what} must be a valid Date`);
  return d.getTime();
}

export function dateOrNull(ms: number | null | undefined): Date | null {
  return ms === null || ms === undefined ? null : new Date(Number(ms));
}

export function driverCode(err: unknown): { code?: string; errno?: number } {
  const e = err as { code?: unknown; errno?: unknown; driverError?: { code?: unknown; errno?: unknown } } | null;
  const d = e?.driverError ?? e;
  return {
    code: typeof d?.code === 'string' ? d.code : typeof e?.code === 'string' ? e.code : undefined,
    errno: typeof d?.errno === 'number' ? d.errno : undefined,
  };
}

export function isUniqueViolation(err: unknown): boolean {
  const { code, errno } = driverCode(err);
  return (
    code === '23505' || // PostgreSQL unique_violation
    code === 'ER_DUP_ENTRY' ||
    errno === 1062 ||
    code === 'SQLITE_CONSTRAINT_UNIQUE' ||
    code === 'SQLITE_CONSTRAINT_PRIMARYKEY'
  );
}

export function isRetryable(err: unknown): boolean {
  const { code, errno } = driverCode(err);
  return code === '40P01' || code === '40001' || code === 'ER_LOCK_DEADLOCK' || errno === 1213;
}

/** 'durable': on disk when the promise resolves. 'relaxed': see Db.group. */
export type Durability = 'durable' | 'relaxed';

interface GroupedWrite {
  fn: (m: EntityManager) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

export class Db {
  private queue: Promise<void> = Promise.resolve();

  constructor(
    readonly ds: DataSource,
    readonly kind: Kind,
    readonly description: string,
  ) {}

  /**
   * Database/driver errors become a StorageError: one line naming the database, with the driver's
   * code but without TypeORM's query parameters (which hold stanzas and other user data).
   */
  private wrap(err: unknown): unknown {
    if (!(err instanceof Error) || err instanceof StorageError || err instanceof TypeError || err instanceof RangeError) return err;
    return new StorageError(`storage error on ${this.description}: ${errorText(err)}`, errorCode(err));
  }

  /** Runs fn alone on SQLite (single connection); directly elsewhere. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.kind !== 'sqlite') return fn();
    const result = this.queue.then(fn);
    this.queue = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** A single statement (autocommit). */
  async run<T>(fn: (m: EntityManager) => Promise<T>): Promise<T> {
    try {
      return await this.exclusive(() => fn(this.ds.manager));
    } catch (err) {
      throw this.wrap(err);
    }
  }

  /**
   * Group commit: fn runs in a transaction shared with every other group() call of the same
   * durability made in the same turn of the event loop, each in its own savepoint (one failing
   * rolls back only its own work). The promise resolves after the shared COMMIT, so what it
   * reports is as durable as with tx(), but a burst of small writes (offline messages, last-use
   * times, session records) costs one commit (one fsync on SQLite) instead of one each. Only for
   * short single-purpose writes: fn must not wait for anything but its own statements.
   *
   * 'relaxed' is for writes nobody was promised (last-use times, session records, deleting offline
   * messages already delivered): committed without waiting for the disk (SQLite synchronous=NORMAL
   * for that transaction, PostgreSQL synchronous_commit off). They survive a crash of the process
   * (kill -9) but may be lost with the last moments before a power failure; the next durable
   * commit makes them durable too.
   */
  group<T>(fn: (m: EntityManager) => Promise<T>, durability: Durability = 'durable'): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const pending = this.pendingGroups[durability];
      pending.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (pending.length === 1) setImmediate(() => void this.commitGroup(durability));
    });
  }

  private readonly pendingGroups: Record<Durability, GroupedWrite[]> = { durable: [], relaxed: [] };

  private async commitGroup(durability: Durability): Promise<void> {
    const batch = this.pendingGroups[durability];
    this.pendingGroups[durability] = [];
    if (batch.length === 1) {
      const only = batch[0]!;
      return this.tx(only.fn, durability).then(only.resolve, only.reject);
    }
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      await this.tx(async (m) => {
        outcomes.length = 0;
        for (let i = 0; i < batch.length; i++) {
          const name = `g${i}`;
          await m.query(`SAVEPOINT ${name}`);
          try {
            outcomes.push({ ok: true, value: await batch[i]!.fn(m) });
            await m.query(`RELEASE SAVEPOINT ${name}`);
          } catch (error) {
            await m.query(`ROLLBACK TO SAVEPOINT ${name}`);
            if (this.kind === 'sqlite') await m.query(`RELEASE SAVEPOINT ${name}`);
            outcomes.push({ ok: false, error: this.wrap(error) });
          }
        }
      }, durability);
    } catch (err) {
      // The shared commit failed: nothing of the batch is stored.
      for (const w of batch) w.reject(err);
      return;
    }
    batch.forEach((w, i) => {
      const o = outcomes[i]!;
      if (o.ok) w.resolve(o.value);
      else w.reject(o.error);
    });
  }

  /** fn in one transaction, committed before the promise resolves; retried on deadlock. */
  async tx<T>(fn: (m: EntityManager) => Promise<T>, durability: Durability = 'durable'): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.exclusive(() => this.txOnce(fn, durability));
      } catch (err) {
        if (attempt >= 4 || !isRetryable(err)) throw this.wrap(err);
        await delay(5 * attempt + Math.floor(Math.random() * 20));
      }
    }
  }

  private async txOnce<T>(fn: (m: EntityManager) => Promise<T>, durability: Durability): Promise<T> {
    const qr = this.ds.createQueryRunner();
    await qr.connect();
    const sqlite = this.kind === 'sqlite';
    const relaxed = durability === 'relaxed';
    try {
      // SQLite takes the setting only outside a transaction; exclusive() keeps other callers out meanwhile.
      if (sqlite && relaxed) await qr.query('PRAGMA synchronous = NORMAL');
      if (sqlite) await qr.query('BEGIN IMMEDIATE');
      else await qr.startTransaction();
      if (relaxed && this.kind === 'postgres') await qr.query('SET LOCAL synchronous_commit TO OFF');
      let result: T;
      try {
        result = await fn(qr.manager);
        if (sqlite) await qr.query('COMMIT');
        else await qr.commitTransaction();
      } catch (err) {
        try {
          if (sqlite) await qr.query('ROLLBACK');
          else if (qr.isTransactionActive) await qr.rollbackTransaction();
        } catch {
          // the transaction is already gone (failed commit, dropped connection)
        }
        throw err;
      }
      return result;
    } finally {
      if (sqlite && relaxed) await qr.query('PRAGMA synchronous = FULL');
      await qr.release();
    }
  }

  private readonly dialectSql = new Map<string, string>();

  /**
   * SQL text for this database from a portable form: identifiers in "double quotes" (backticks on
   * MySQL) and ? placeholders ($1, $2... on PostgreSQL). The text must hold no string literals.
   */
  dialect(text: string): string {
    let sql = this.dialectSql.get(text);
    if (sql === undefined) {
      let n = 0;
      sql = this.kind === 'mysql' ? text.replaceAll('"', '`') : this.kind === 'postgres' ? text.replace(/\?/g, () => `$${++n}`) : text;
      this.dialectSql.set(text, sql);
    }
    return sql;
  }

  /**
   * A hot statement as fixed SQL text (see dialect()): no query builder, and since the text is the
   * same every time the driver reuses its prepared statement. Values go only in params.
   */
  async sql<T>(text: string, params: unknown[]): Promise<T[]> {
    const sql = this.dialect(text);
    try {
      return await this.exclusive(() => this.ds.query(sql, params) as Promise<T[]>);
    } catch (err) {
      throw this.wrap(err);
    }
  }

  esc(name: string): string {
    return this.ds.driver.escape(name);
  }
}

