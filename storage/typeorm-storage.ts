/**
 * The repositories of types.ts on TypeORM. All SQL lives here; callers only see the interfaces.
 *
 * SQLite (better-sqlite3) has a single connection, so every operation is serialised through one
 * queue: otherwise the awaits inside one caller's transaction would let another caller's statements
 * run inside it. Write transactions there use BEGIN IMMEDIATE so that a second process (an admin
 * command) waits on busy_timeout instead of failing on lock upgrade. On MySQL/PostgreSQL operations
 * run concurrently on the pool; per-account roster writes serialise on the roster_versions row lock.
 */
import { In, type DataSource, type EntityManager } from 'typeorm';
import {
  AccountEntity,
  KvItemEntity,
  OfflineMessageEntity,
  RosterItemEntity,
  RosterVersionEntity,
  ScramVerifierEntity,
  ownedTables,
  type AccountRow,
  type RosterItemRow,
} from './entities.js';
import { TypeOrmPolicyVersionRepository } from './repos/policy-versions.js';
import { TypeOrmPrivacyLogRepository } from './repos/privacy-logs.js';
import { TypeOrmStatisticsRepository } from './repos/statistics.js';
import type { ModuleStorage } from './module-storage.js';
import { Db, ID_CHUNK, checkId, checkText, dateOrNull, isUniqueViolation, millis, type Kind } from './db.js';
import type {
  Account,
  AccountRepository,
  KeyValueRepository,
  OfflineMessage,
  OfflineRepository,
  RosterItem,
  RosterRepository,
  ScramVerifier,
  Storage,
  VerifierCoverage,
  StorageUsage,
  Subscription,
} from './types.js';
import { TypeOrmTransportRepository } from './repos/transports.js';

/** kv_items.kind: one key space per KeyValueRepository of Storage. */
type KvKind = 'vcard' | 'private' | 'state';

/** Column limits of the schema, enforced here so every database rejects the same values. */
export const LIMITS = {
  username: 255,
  host: 255,
  contact: 640,
  rosterName: 1023,
  kvKey: 512,
} as const;

const SUBSCRIPTIONS: readonly Subscription[] = ['none', 'to', 'from', 'both'];
const HASHES: readonly ScramVerifier['hash'][] = ['SHA-1', 'SHA-256'];
/** Rows as the hot statements (Db.sql) return them: column names, BIGINT possibly as a string. */
interface RawAccountRow {
  id: number | string;
  username: string;
  host: string;
  created_at: number | string;
  last_used_at: number | string | null;
  warned_at: number | string | null;
}

interface RawRosterRow {
  contact: string;
  name: string | null;
  subscription: string;
  ask: unknown;
  pending_in: unknown;
  approved: unknown;
  groups: string;
}

/** A LIKE pattern matching `s` literally, with '!' as the escape character (the same on every database). */
function likeEscape(s: string): string {
  return s.replace(/[!%_]/g, (c) => '!' + c);
}

/** SQLite and MySQL return booleans as 0/1 from a raw query, PostgreSQL as true/false. */
function bool(v: unknown): boolean {
  return v === true || v === 1 || v === '1';
}

function toAccount(row: { id: number | string; username: string; host: string; createdAt: number | string; lastUsedAt: number | string | null; warnedAt: number | string | null }): Account {
  return {
    id: Number(row.id),
    username: row.username,
    host: row.host,
    createdAt: new Date(Number(row.createdAt)),
    lastUsedAt: dateOrNull(row.lastUsedAt === null ? null : Number(row.lastUsedAt)),
    warnedAt: dateOrNull(row.warnedAt === null ? null : Number(row.warnedAt)),
  };
}

function toRosterItem(row: RosterItemRow): RosterItem {
  let groups: string[] = [];
  try {
    const parsed: unknown = JSON.parse(row.groups);
    if (Array.isArray(parsed)) groups = parsed.filter((g): g is string => typeof g === 'string');
  } catch {
    groups = [];
  }
  return {
    jid: row.contact,
    name: row.name ?? null,
    subscription: row.subscription as Subscription,
    ask: Boolean(row.ask),
    pendingIn: Boolean(row.pendingIn),
    approved: Boolean(row.approved),
    groups,
  };
}

class TypeOrmAccountRepository implements AccountRepository {
  constructor(private readonly db: Db) {}

  async create(username: string, host: string, verifiers: ScramVerifier[], now: Date): Promise<Account | null> {
    checkText('username', username, LIMITS.username);
    checkText('host', host, LIMITS.host);
    const createdAt = millis('now', now);
    const rows = verifiers.map((v) => verifierRow(0, v));
    const duplicate = Symbol('duplicate');
    try {
      return await this.db.tx(async (m) => {
        if (await m.exists(AccountEntity, { where: { username, host } })) return null;
        let id: number;
        try {
          const r = await m.insert(AccountEntity, { username, host, createdAt, lastUsedAt: null, warnedAt: null });
          id = Number(r.identifiers[0]?.id);
        } catch (err) {
          if (isUniqueViolation(err)) throw duplicate;
          throw err;
        }
        if (!Number.isSafeInteger(id) || id <= 0) throw new Error('account insert returned no id');
        if (rows.length) await m.insert(ScramVerifierEntity, rows.map((r) => ({ ...r, accountId: id })));
        await m.insert(RosterVersionEntity, { accountId: id, version: 0 });
        return toAccount({ id, username, host, createdAt, lastUsedAt: null, warnedAt: null });
      });
    } catch (err) {
      if (err === duplicate) return null;
      throw err;
    }
  }

  async get(username: string, host: string): Promise<Account | null> {
    if (typeof username !== 'string' || typeof host !== 'string') return null;
    const rows = await this.db.sql<RawAccountRow>(
      'SELECT "id", "username", "host", "created_at", "last_used_at", "warned_at" FROM "accounts" WHERE "username" = ? AND "host" = ?',
      [username, host],
    );
    const row = rows[0];
    return row
      ? toAccount({ id: row.id, username: row.username, host: row.host, createdAt: row.created_at, lastUsedAt: row.last_used_at, warnedAt: row.warned_at })
      : null;
  }

  async getVerifiers(accountId: number): Promise<ScramVerifier[]> {
    checkId('accountId', accountId);
    const rows = await this.db.sql<{ hash: string; salt: string; iterations: number | string; stored_key: string; server_key: string }>(
      'SELECT "hash", "salt", "iterations", "stored_key", "server_key" FROM "scram_verifiers" WHERE "account_id" = ? ORDER BY "hash" ASC',
      [accountId],
    );
    return rows.map((r) => ({
      hash: r.hash as ScramVerifier['hash'],
      salt: Buffer.from(r.salt, 'base64'),
      iterations: Number(r.iterations),
      storedKey: Buffer.from(r.stored_key, 'base64'),
      serverKey: Buffer.from(r.server_key, 'base64'),
    }));
  }

  async setVerifiers(accountId: number, verifiers: ScramVerifier[]): Promise<void> {
    checkId('accountId', accountId);
    const rows = verifiers.map((v) => verifierRow(accountId, v));
    await this.db.tx(async (m) => {
      await m.delete(ScramVerifierEntity, { accountId });
      if (rows.length) await m.insert(ScramVerifierEntity, rows);
    });
  }

  async addVerifiers(accountId: number, verifiers: ScramVerifier[]): Promise<ScramVerifier['hash'][]> {
    checkId('accountId', accountId);
    const rows = verifiers.map((v) => verifierRow(accountId, v));
    const have = new Set((await this.getVerifiers(accountId)).map((v) => v.hash));
    const added: ScramVerifier['hash'][] = [];
    // One statement per row, no transaction: a row another login (or a password change) wrote in
    // the meantime is a unique violation here, and that row stays.
    for (const row of rows) {
      if (have.has(row.hash as ScramVerifier['hash'])) continue;
      try {
        await this.db.run((m) => m.insert(ScramVerifierEntity, row));
        added.push(row.hash as ScramVerifier['hash']);
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
      }
    }
    return added;
  }

  async verifierCoverage(): Promise<VerifierCoverage[]> {
    const totals = await this.db.sql<{ host: string; n: number | string }>('SELECT "host", COUNT(*) AS "n" FROM "accounts" GROUP BY "host" ORDER BY "host"', []);
    const byHash = await this.db.sql<{ host: string; hash: string; n: number | string }>(
      'SELECT a."host" AS "host", v."hash" AS "hash", COUNT(*) AS "n" FROM "scram_verifiers" v JOIN "accounts" a ON a."id" = v."account_id" GROUP BY a."host", v."hash"',
      [],
    );
    const out = new Map<string, VerifierCoverage>();
    for (const t of totals) out.set(t.host, { host: t.host, accounts: Number(t.n), withHash: { 'SHA-1': 0, 'SHA-256': 0 } });
    for (const r of byHash) {
      const c = out.get(r.host);
      if (c && HASHES.includes(r.hash as ScramVerifier['hash'])) c.withHash[r.hash as ScramVerifier['hash']] = Number(r.n);
    }
    return [...out.values()];
  }

  async touch(accountId: number, now: Date): Promise<void> {
    checkId('accountId', accountId);
    const lastUsedAt = millis('now', now);
    const sql = this.db.dialect('UPDATE "accounts" SET "last_used_at" = ? WHERE "id" = ?');
    // P4 counts in months: a last-use time lost in a power failure changes nothing.
    await this.db.group((m) => m.query(sql, [lastUsedAt, accountId]), 'relaxed');
  }

  async setWarnedAt(accountId: number, at: Date | null): Promise<void> {
    checkId('accountId', accountId);
    const warnedAt = at === null ? null : millis('at', at);
    await this.db.run((m) => m.update(AccountEntity, { id: accountId }, { warnedAt }));
  }

  async delete(accountId: number): Promise<boolean> {
    checkId('accountId', accountId);
    // Every owned table references accounts(id) ON DELETE CASCADE.
    const r = await this.db.tx((m) => m.delete(AccountEntity, { id: accountId }));
    return (r.affected ?? 0) > 0;
  }

  async list(host?: string): Promise<Account[]> {
    const rows = await this.db.run((m) =>
      m.find(AccountEntity, { where: host === undefined ? {} : { host }, order: { host: 'ASC', username: 'ASC', id: 'ASC' } }),
    );
    return rows.map(toAccount);
  }

  async count(host?: string): Promise<number> {
    return this.db.run((m) => m.count(AccountEntity, { where: host === undefined ? {} : { host } }));
  }

  async listInactiveSince(before: Date, limit: number): Promise<Account[]> {
    const b = millis('before', before);
    if (!Number.isSafeInteger(limit) || limit <= 0) return [];
    const rows = await this.db.run((m) =>
      m
        .createQueryBuilder(AccountEntity, 'a')
        .where('COALESCE(a.lastUsedAt, a.createdAt) < :b', { b })
        .orderBy('COALESCE(a.lastUsedAt, a.createdAt)', 'ASC')
        .addOrderBy('a.id', 'ASC')
        .limit(limit)
        .getMany(),
    );
    return rows.map(toAccount);
  }
}

function verifierRow(accountId: number, v: ScramVerifier) {
  if (!HASHES.includes(v.hash)) throw new RangeError(`unknown SCRAM hash ${String(v.hash)}`);
  if (!Number.isSafeInteger(v.iterations) || v.iterations <= 0) throw new RangeError('SCRAM iterations must be a positive integer');
  for (const [k, b] of [
    ['salt', v.salt],
    ['storedKey', v.storedKey],
    ['serverKey', v.serverKey],
  ] as const) {
    if (!Buffer.isBuffer(b)) throw new TypeError(`SCRAM ${k} must be a Buffer`);
  }
  const row = {
    accountId,
    hash: v.hash,
    salt: v.salt.toString('base64'),
    iterations: v.iterations,
    storedKey: v.storedKey.toString('base64'),
    serverKey: v.serverKey.toString('base64'),
  };
  if (row.salt.length > 512) throw new RangeError('SCRAM salt longer than 384 bytes');
  if (row.storedKey.length > 255 || row.serverKey.length > 255) throw new RangeError('SCRAM key longer than 191 bytes');
  return row;
}

class TypeOrmRosterRepository implements RosterRepository {
  constructor(private readonly db: Db) {}

  async list(accountId: number): Promise<RosterItem[]> {
    checkId('accountId', accountId);
    const rows = await this.db.sql<RawRosterRow>(
      'SELECT "contact", "name", "subscription", "ask", "pending_in", "approved", "groups" FROM "roster_items" WHERE "account_id" = ? ORDER BY "contact" ASC',
      [accountId],
    );
    return rows.map((r) =>
      toRosterItem({ accountId, contact: r.contact, name: r.name, subscription: r.subscription, ask: bool(r.ask), pendingIn: bool(r.pending_in), approved: bool(r.approved), groups: r.groups }),
    );
  }

  async get(accountId: number, contact: string): Promise<RosterItem | null> {
    checkId('accountId', accountId);
    if (typeof contact !== 'string') return null;
    const row = await this.db.run((m) => m.findOne(RosterItemEntity, { where: { accountId, contact } }));
    return row ? toRosterItem(row) : null;
  }

  async put(accountId: number, item: RosterItem): Promise<string> {
    checkId('accountId', accountId);
    const row: RosterItemRow = {
      accountId,
      contact: checkText('roster jid', item.jid, LIMITS.contact),
      name: item.name === null || item.name === undefined ? null : checkText('roster name', item.name, LIMITS.rosterName),
      subscription: item.subscription,
      ask: Boolean(item.ask),
      pendingIn: Boolean(item.pendingIn),
      approved: Boolean(item.approved),
      groups: JSON.stringify(item.groups ?? []),
    };
    if (!SUBSCRIPTIONS.includes(item.subscription)) throw new RangeError(`invalid subscription ${String(item.subscription)}`);
    if (!Array.isArray(item.groups) || item.groups.some((g) => typeof g !== 'string')) throw new TypeError('roster groups must be strings');
    return this.db.tx(async (m) => {
      // Bumping first takes the row lock on roster_versions: roster writes of one account serialise.
      await this.bump(m, accountId);
      await m.upsert(RosterItemEntity, row, { conflictPaths: ['accountId', 'contact'] });
      return this.read(m, accountId);
    });
  }

  async remove(accountId: number, contact: string): Promise<string> {
    checkId('accountId', accountId);
    if (typeof contact !== 'string') throw new TypeError('contact must be a string');
    return this.db.tx(async (m) => {
      const r = await m.delete(RosterItemEntity, { accountId, contact });
      if ((r.affected ?? 0) > 0) await this.bump(m, accountId);
      return this.read(m, accountId);
    });
  }

  async version(accountId: number): Promise<string> {
    checkId('accountId', accountId);
    return this.db.run((m) => this.read(m, accountId));
  }

  async countPendingIn(accountId: number, domain?: string): Promise<number> {
    checkId('accountId', accountId);
    // The primary key (account_id, contact) bounds the scan to the account's own rows.
    const base = 'SELECT COUNT(*) AS "n" FROM "roster_items" WHERE "account_id" = ? AND "pending_in" = TRUE';
    const rows =
      domain === undefined
        ? await this.db.sql<{ n: number | string }>(base, [accountId])
        : await this.db.sql<{ n: number | string }>(`${base} AND ("contact" LIKE ? ESCAPE '!' OR "contact" = ?)`, [accountId, '%@' + likeEscape(domain), domain]);
    return Number(rows[0]?.n ?? 0);
  }

  async listByContact(contact: string): Promise<{ accountId: number; username: string; host: string; item: RosterItem }[]> {
    if (typeof contact !== 'string') return [];
    return this.db.run(async (m) => {
      const rows = await m.find(RosterItemEntity, { where: { contact }, order: { accountId: 'ASC' } });
      if (rows.length === 0) return [];
      const accounts = new Map<number, AccountRow>();
      const ids = [...new Set(rows.map((r) => Number(r.accountId)))];
      for (let i = 0; i < ids.length; i += ID_CHUNK) {
        for (const a of await m.find(AccountEntity, { where: { id: In(ids.slice(i, i + ID_CHUNK)) } })) accounts.set(Number(a.id), a);
      }
      return rows.flatMap((r) => {
        const a = accounts.get(Number(r.accountId));
        return a ? [{ accountId: Number(a.id), username: a.username, host: a.host, item: toRosterItem(r) }] : [];
      });
    });
  }

  private async bump(m: EntityManager, accountId: number): Promise<void> {
    const v = this.db.esc('version');
    const r = await m
      .createQueryBuilder()
      .update(RosterVersionEntity)
      .set({ version: () => `${v} + 1` })
      .where({ accountId })
      .execute();
    if (!r.affected) await m.insert(RosterVersionEntity, { accountId, version: 1 });
  }

  private async read(m: EntityManager, accountId: number): Promise<string> {
    const row = await m.findOne(RosterVersionEntity, { where: { accountId } });
    return String(row ? Number(row.version) : 0);
  }
}

class TypeOrmOfflineRepository implements OfflineRepository {
  constructor(private readonly db: Db) {}

  async store(accountId: number, stanza: string, receivedAt: Date): Promise<number> {
    checkId('accountId', accountId);
    if (typeof stanza !== 'string') throw new TypeError('stanza must be a string');
    const at = millis('receivedAt', receivedAt);
    // Committed (on SQLite fsynced, synchronous=FULL) before the promise resolves; the commit is
    // shared with the other writes of this event-loop turn (group commit).
    let id: number;
    if (this.db.kind === 'mysql') {
      // MySQL has no INSERT ... RETURNING; TypeORM reads the new id from the driver.
      const r = await this.db.group((m) => m.insert(OfflineMessageEntity, { accountId, stanza, receivedAt: at }));
      id = Number(r.identifiers[0]?.id);
    } else {
      const sql = this.db.dialect('INSERT INTO "offline_messages" ("account_id", "stanza", "received_at") VALUES (?, ?, ?) RETURNING "id"');
      const rows = (await this.db.group((m) => m.query(sql, [accountId, stanza, at]))) as Array<{ id: number | string }>;
      id = Number(rows[0]?.id);
    }
    if (!Number.isSafeInteger(id) || id <= 0) throw new Error('offline insert returned no id');
    return id;
  }

  async list(accountId: number): Promise<OfflineMessage[]> {
    checkId('accountId', accountId);
    const rows = await this.db.sql<{ id: number | string; stanza: string; received_at: number | string }>(
      'SELECT "id", "stanza", "received_at" FROM "offline_messages" WHERE "account_id" = ? ORDER BY "id" ASC',
      [accountId],
    );
    return rows.map((r) => ({ id: Number(r.id), stanza: r.stanza, receivedAt: new Date(Number(r.received_at)) }));
  }

  async count(accountId: number): Promise<number> {
    checkId('accountId', accountId);
    const rows = await this.db.sql<{ n: number | string }>('SELECT COUNT(*) AS "n" FROM "offline_messages" WHERE "account_id" = ?', [accountId]);
    return Number(rows[0]?.n ?? 0);
  }

  async usage(accountId: number): Promise<StorageUsage> {
    checkId('accountId', accountId);
    const rows = await this.db.sql<{ n: number | string; b: number | string | null }>(
      'SELECT COUNT(*) AS "n", SUM(OCTET_LENGTH("stanza")) AS "b" FROM "offline_messages" WHERE "account_id" = ?',
      [accountId],
    );
    return { items: Number(rows[0]?.n ?? 0), bytes: Number(rows[0]?.b ?? 0) };
  }

  async delete(accountId: number, ids: number[]): Promise<void> {
    checkId('accountId', accountId);
    const unique = [...new Set(ids)].filter((id) => Number.isSafeInteger(id));
    if (unique.length === 0) return;
    // Shares its commit with the other deliveries of this turn (group commit), without waiting for
    // the disk: if a power failure undoes the deletion, the messages come once more (never lost).
    await this.db.group(async (m) => {
      for (let i = 0; i < unique.length; i += ID_CHUNK) {
        const chunk = unique.slice(i, i + ID_CHUNK);
        await m.query(this.db.dialect(`DELETE FROM "offline_messages" WHERE "account_id" = ? AND "id" IN (${chunk.map(() => '?').join(', ')})`), [accountId, ...chunk]);
      }
    }, 'relaxed');
  }

  async takeExpired(before: Date, limit: number): Promise<{ id: number; accountId: number; stanza: string; receivedAt: Date }[]> {
    const b = millis('before', before);
    if (!Number.isSafeInteger(limit) || limit <= 0) return [];
    const lock = this.db.kind !== 'sqlite';
    return this.db.tx(async (m) => {
      let qb = m
        .createQueryBuilder(OfflineMessageEntity, 'o')
        .where('o.receivedAt < :b', { b })
        .orderBy('o.receivedAt', 'ASC')
        .addOrderBy('o.id', 'ASC')
        .limit(limit);
      // FOR UPDATE: a concurrent sweeper waits and then skips what this one deleted.
      if (lock) qb = qb.setLock('pessimistic_write');
      const rows = await qb.getMany();
      if (rows.length === 0) return [];
      const ids = rows.map((r) => Number(r.id));
      for (let i = 0; i < ids.length; i += ID_CHUNK) {
        await m.delete(OfflineMessageEntity, { id: In(ids.slice(i, i + ID_CHUNK)) });
      }
      return rows.map((r) => ({
        id: Number(r.id),
        accountId: Number(r.accountId),
        stanza: r.stanza,
        receivedAt: new Date(Number(r.receivedAt)),
      }));
    });
  }
}

class TypeOrmKeyValueRepository implements KeyValueRepository {
  constructor(
    private readonly db: Db,
    private readonly kind: KvKind,
  ) {}

  async get(accountId: number, key: string): Promise<string | null> {
    checkId('accountId', accountId);
    if (typeof key !== 'string') return null;
    const rows = await this.db.sql<{ xml: string }>('SELECT "xml" FROM "kv_items" WHERE "account_id" = ? AND "kind" = ? AND "item_key" = ?', [accountId, this.kind, key]);
    return rows[0]?.xml ?? null;
  }

  async set(accountId: number, key: string, xml: string): Promise<void> {
    checkId('accountId', accountId);
    checkText('key', key, LIMITS.kvKey);
    if (typeof xml !== 'string') throw new TypeError('xml must be a string');
    await this.db.group((m) =>
      m.upsert(KvItemEntity, { accountId, kind: this.kind, itemKey: key, xml }, { conflictPaths: ['accountId', 'kind', 'itemKey'] }),
    );
  }

  async delete(accountId: number, key: string): Promise<void> {
    checkId('accountId', accountId);
    if (typeof key !== 'string') return;
    await this.db.run((m) => m.delete(KvItemEntity, { accountId, kind: this.kind, itemKey: key }));
  }

  async usage(accountId: number, except: string[] = []): Promise<StorageUsage> {
    checkId('accountId', accountId);
    const sum = 'SELECT COUNT(*) AS "n", SUM(OCTET_LENGTH("item_key") + OCTET_LENGTH("xml")) AS "b" FROM "kv_items" WHERE "account_id" = ? AND "kind" = ?';
    const read = async (sql: string, params: unknown[]): Promise<StorageUsage> => {
      const rows = await this.db.sql<{ n: number | string; b: number | string | null }>(sql, params);
      return { items: Number(rows[0]?.n ?? 0), bytes: Number(rows[0]?.b ?? 0) };
    };
    const total = await read(sum, [accountId, this.kind]);
    // The excepted keys' own rows, subtracted chunk by chunk (IN lists stay short).
    const keys = [...new Set(except.filter((k) => typeof k === 'string'))];
    for (let i = 0; i < keys.length; i += ID_CHUNK) {
      const chunk = keys.slice(i, i + ID_CHUNK);
      const part = await read(`${sum} AND "item_key" IN (${chunk.map(() => '?').join(', ')})`, [accountId, this.kind, ...chunk]);
      total.items -= part.items;
      total.bytes -= part.bytes;
    }
    return total;
  }

}

export class TypeOrmStorage implements Storage {
  readonly kind: Kind;
  readonly accounts: AccountRepository;
  readonly roster: RosterRepository;
  readonly offline: OfflineRepository;
  readonly vcards: KeyValueRepository;
  readonly privateXml: KeyValueRepository;
  readonly accountState: KeyValueRepository;
  readonly policyVersions: TypeOrmPolicyVersionRepository;
  readonly privacyLogs: TypeOrmPrivacyLogRepository;
  readonly statistics: TypeOrmStatisticsRepository;
  readonly transports: TypeOrmTransportRepository;
  private readonly db: Db;
  private closing: Promise<void> | null = null;
  private readonly moduleRepositories = new Map<ModuleStorage, unknown>();

  constructor(ds: DataSource, kind: Kind, description = `${kind} database`, private readonly modules: readonly ModuleStorage[] = []) {
    this.kind = kind;
    this.db = new Db(ds, kind, description);
    this.accounts = new TypeOrmAccountRepository(this.db);
    this.roster = new TypeOrmRosterRepository(this.db);
    this.offline = new TypeOrmOfflineRepository(this.db);
    this.vcards = new TypeOrmKeyValueRepository(this.db, 'vcard');
    this.privateXml = new TypeOrmKeyValueRepository(this.db, 'private');
    this.accountState = new TypeOrmKeyValueRepository(this.db, 'state');
    this.privacyLogs = new TypeOrmPrivacyLogRepository(this.db);
    this.statistics = new TypeOrmStatisticsRepository(this.db);
    this.policyVersions = new TypeOrmPolicyVersionRepository(this.db);
    this.transports = new TypeOrmTransportRepository(this.db);
  }

  repository<R>(storage: ModuleStorage<R>): R {
    if (!this.moduleRepositories.has(storage)) {
      if (!this.modules.includes(storage as ModuleStorage)) {
        throw new Error(`the tables of '${storage.name}' were not opened with this storage (pass the module's storage to openStorage)`);
      }
      this.moduleRepositories.set(storage, storage.repository(this.db));
    }
    return this.moduleRepositories.get(storage) as R;
  }

  close(): Promise<void> {
    this.closing ??= this.db.exclusive(async () => {
      if (this.db.ds.isInitialized) await this.db.ds.destroy();
    });
    return this.closing;
  }

  /** Test/diagnostic use only: a raw statement in the database's own dialect (? or $1 placeholders). */
  rawQuery(sql: string, params: unknown[] = []): Promise<any[]> {
    return this.db.exclusive(() => this.db.ds.query(sql, params));
  }

  /**
   * Test/diagnostic use only: row count of every account-owned table (accounts itself included),
   * for one account or in total.
   */
  tableCounts(accountId?: number): Promise<Record<string, number>> {
    if (accountId !== undefined) checkId('accountId', accountId);
    return this.db.run(async (m) => {
      const out: Record<string, number> = {};
      for (const { table, accountColumn } of ownedTables) {
        let qb = m.createQueryBuilder().select('COUNT(*)', 'n').from(table, 't');
        if (accountId !== undefined) qb = qb.where(`t.${this.db.esc(accountColumn)} = :id`, { id: accountId });
        const row = await qb.getRawOne<{ n: string | number }>();
        out[table] = Number(row?.n ?? 0);
      }
      return out;
    });
  }
}

/** The TypeORM implementation behind a Storage, for tests and diagnostics (throws for other implementations). */
export function asTypeOrmStorage(storage: Storage): TypeOrmStorage {
  if (!(storage instanceof TypeOrmStorage)) throw new TypeError('not a TypeORM storage');
  return storage;
}
