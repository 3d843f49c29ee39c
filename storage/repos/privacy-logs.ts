/**
 * Privacy logs (PRIVACY.md P7, P8, P13) and the queries the retention sweeper needs (P4, P5).
 *
 * - failed_logins: one row per failed authentication or registration (time, IP, host, attempted
 *   username, mechanism, kind, condition). No password, ever: nothing here accepts one.
 * - delivery_failures: time, sender and recipient (bare JIDs), stanza kind, error condition. There
 *   is no column for content, so no body, subject or payload can ever be stored (P8).
 * - auth_blocks: the failed-login guard's temporary blocks, per IP (an IPv6 /64) or per account, so
 *   that blocks survive a restart and an admin can list and lift them from the CLI.
 *
 * Every delete here works on one bounded batch (select ids, then delete those ids), so the
 * retention sweeper never holds a lock on a big table for long and can yield between batches.
 * The sweeper's reads of accounts and offline_messages are plain table queries (by name, not via
 * the core entities) so that this file does not import entities.ts, which imports it.
 */
import { EntitySchema, In, LessThan, MoreThanOrEqual } from 'typeorm';
import { bigintNumber, ID_CHUNK, checkId, millis, type Db } from '../db.js';
import type { Account, FailedLoginKind, FailedLoginRecord, DeliveryFailureRecord, BlockKind, AuthBlock, PrivacyLogRepository } from '../types.js';

// ------------------------------------------------------------------------------------------------
// Records

/** Column limits, enforced by truncation: a log record is never refused for a long value. */
export const PRIVACY_LOG_LIMITS = { ip: 45, host: 255, username: 255, mechanism: 64, kind: 16, condition: 64, jid: 3071, subject: 600 } as const;

// ------------------------------------------------------------------------------------------------
// Entities (tables created by migrations/1732600000100-PrivacyLogs.ts)

export interface FailedLoginRow {
  id: number;
  at: number;
  ip: string;
  host: string;
  username: string | null;
  mechanism: string;
  kind: string;
  errorCondition: string;
}

export interface DeliveryFailureRow {
  id: number;
  at: number;
  sender: string;
  recipient: string;
  stanzaKind: string;
  errorCondition: string;
}

export interface AuthBlockRow {
  kind: string;
  subject: string;
  createdAt: number;
  expiresAt: number;
  failures: number;
}

export const FailedLoginEntity = new EntitySchema<FailedLoginRow>({
  name: 'FailedLogin',
  tableName: 'failed_logins',
  columns: {
    id: { type: 'bigint', primary: true, generated: 'increment', transformer: bigintNumber },
    at: { type: 'bigint', transformer: bigintNumber },
    ip: { type: 'varchar', length: 45 },
    host: { type: 'varchar', length: 255 },
    username: { type: 'varchar', length: 255, nullable: true },
    mechanism: { type: 'varchar', length: 64 },
    kind: { type: 'varchar', length: 16 },
    errorCondition: { name: 'error_condition', type: 'varchar', length: 64 },
  },
});

export const DeliveryFailureEntity = new EntitySchema<DeliveryFailureRow>({
  name: 'DeliveryFailure',
  tableName: 'delivery_failures',
  columns: {
    id: { type: 'bigint', primary: true, generated: 'increment', transformer: bigintNumber },
    at: { type: 'bigint', transformer: bigintNumber },
    sender: { type: 'varchar', length: 3071 },
    recipient: { type: 'varchar', length: 3071 },
    stanzaKind: { name: 'stanza_kind', type: 'varchar', length: 16 },
    errorCondition: { name: 'error_condition', type: 'varchar', length: 64 },
  },
});

export const AuthBlockEntity = new EntitySchema<AuthBlockRow>({
  name: 'AuthBlock',
  tableName: 'auth_blocks',
  columns: {
    kind: { type: 'varchar', length: 8, primary: true },
    subject: { type: 'varchar', length: 600, primary: true },
    createdAt: { name: 'created_at', type: 'bigint', transformer: bigintNumber },
    expiresAt: { name: 'expires_at', type: 'bigint', transformer: bigintNumber },
    failures: { type: 'integer' },
  },
});

/** For allEntities in entities.ts. */
export const privacyLogEntities = [FailedLoginEntity, DeliveryFailureEntity, AuthBlockEntity];

// ------------------------------------------------------------------------------------------------
// Implementation

/** Cuts a string to at most `max` code points (never splits a surrogate pair). */
function cut(value: unknown, max: number): string {
  const s = typeof value === 'string' ? value : String(value ?? '');
  if (s.length <= max) return s;
  return Array.from(s).slice(0, max).join('');
}

function limitOf(limit: number | undefined, dflt: number): number {
  return limit !== undefined && Number.isSafeInteger(limit) && limit > 0 ? Math.min(limit, 100_000) : dflt;
}

function toBlock(r: AuthBlockRow): AuthBlock {
  return {
    kind: r.kind as BlockKind,
    subject: r.subject,
    createdAt: new Date(Number(r.createdAt)),
    expiresAt: new Date(Number(r.expiresAt)),
    failures: Number(r.failures),
  };
}

export class TypeOrmPrivacyLogRepository implements PrivacyLogRepository {
  constructor(private readonly db: Db) {}

  async addFailedLogin(r: FailedLoginRecord): Promise<void> {
    const L = PRIVACY_LOG_LIMITS;
    const row = {
      at: millis('at', r.at),
      ip: cut(r.ip, L.ip),
      host: cut(r.host, L.host),
      username: r.username === null || r.username === undefined ? null : cut(r.username, L.username),
      mechanism: cut(r.mechanism, L.mechanism),
      kind: cut(r.kind, L.kind),
      errorCondition: cut(r.condition, L.condition),
    };
    await this.db.run((m) => m.insert(FailedLoginEntity, row));
  }

  async listFailedLogins(opts: { since?: Date; ip?: string; limit?: number } = {}): Promise<(FailedLoginRecord & { id: number })[]> {
    const where: Record<string, unknown> = {};
    if (opts.since) where.at = MoreThanOrEqual(millis('since', opts.since));
    if (opts.ip !== undefined) where.ip = opts.ip;
    const rows = await this.db.run((m) => m.find(FailedLoginEntity, { where, order: { at: 'DESC', id: 'DESC' }, take: limitOf(opts.limit, 1000) }));
    return rows.map((r) => ({
      id: Number(r.id),
      at: new Date(Number(r.at)),
      ip: r.ip,
      host: r.host,
      username: r.username ?? null,
      mechanism: r.mechanism,
      kind: r.kind as FailedLoginKind,
      condition: r.errorCondition,
    }));
  }

  async addDeliveryFailure(r: DeliveryFailureRecord): Promise<void> {
    const L = PRIVACY_LOG_LIMITS;
    const row = {
      at: millis('at', r.at),
      sender: cut(r.from, L.jid),
      recipient: cut(r.to, L.jid),
      stanzaKind: cut(r.kind, L.kind),
      errorCondition: cut(r.condition, L.condition),
    };
    await this.db.run((m) => m.insert(DeliveryFailureEntity, row));
  }

  async listDeliveryFailures(opts: { since?: Date; limit?: number } = {}): Promise<(DeliveryFailureRecord & { id: number })[]> {
    const where = opts.since ? { at: MoreThanOrEqual(millis('since', opts.since)) } : {};
    const rows = await this.db.run((m) => m.find(DeliveryFailureEntity, { where, order: { at: 'DESC', id: 'DESC' }, take: limitOf(opts.limit, 1000) }));
    return rows.map((r) => ({ id: Number(r.id), at: new Date(Number(r.at)), from: r.sender, to: r.recipient, kind: r.stanzaKind, condition: r.errorCondition }));
  }

  async putBlock(b: AuthBlock): Promise<void> {
    const row: AuthBlockRow = {
      kind: cut(b.kind, 8),
      subject: cut(b.subject, PRIVACY_LOG_LIMITS.subject),
      createdAt: millis('createdAt', b.createdAt),
      expiresAt: millis('expiresAt', b.expiresAt),
      failures: Number.isSafeInteger(b.failures) ? Math.min(Math.max(b.failures, 0), 2_000_000_000) : 0,
    };
    await this.db.run((m) => m.upsert(AuthBlockEntity, row, { conflictPaths: ['kind', 'subject'] }));
  }

  async getBlock(kind: BlockKind, subject: string): Promise<AuthBlock | null> {
    if (typeof subject !== 'string') return null;
    const row = await this.db.run((m) => m.findOne(AuthBlockEntity, { where: { kind, subject } }));
    return row ? toBlock(row) : null;
  }

  async listBlocks(now?: Date): Promise<AuthBlock[]> {
    const where = now ? { expiresAt: MoreThanOrEqual(millis('now', now)) } : {};
    const rows = await this.db.run((m) => m.find(AuthBlockEntity, { where, order: { expiresAt: 'ASC', kind: 'ASC', subject: 'ASC' } }));
    return rows.map(toBlock);
  }

  async liftBlock(kind: BlockKind, subject: string): Promise<boolean> {
    if (typeof subject !== 'string') return false;
    const r = await this.db.run((m) => m.delete(AuthBlockEntity, { kind, subject }));
    return (r.affected ?? 0) > 0;
  }

  async liftAllBlocks(): Promise<number> {
    return this.db.tx(async (m) => {
      const n = await m.count(AuthBlockEntity);
      await m.createQueryBuilder().delete().from(AuthBlockEntity).execute();
      return n;
    });
  }

  // ---- retention ----

  /** Deletes at most `limit` rows of `entity` whose `at` is before `before`: select ids, delete them. */
  private async deleteBatch(entity: typeof FailedLoginEntity | typeof DeliveryFailureEntity, before: Date, limit: number): Promise<number> {
    const b = millis('before', before);
    if (!Number.isSafeInteger(limit) || limit <= 0) return 0;
    return this.db.tx(async (m) => {
      const rows: { id: number }[] = await m.find(entity as typeof FailedLoginEntity, {
        select: { id: true },
        where: { at: LessThan(b) },
        order: { at: 'ASC', id: 'ASC' },
        take: limit,
      });
      if (rows.length === 0) return 0;
      const ids = rows.map((r) => Number(r.id));
      let n = 0;
      for (let i = 0; i < ids.length; i += ID_CHUNK) {
        // The `at` condition again: idempotent with a concurrent sweeper (CLI and server at once).
        const r = await m.delete(entity as typeof FailedLoginEntity, { id: In(ids.slice(i, i + ID_CHUNK)), at: LessThan(b) });
        n += r.affected ?? 0;
      }
      return n;
    });
  }

  deleteFailedLoginsBefore(before: Date, limit: number): Promise<number> {
    return this.deleteBatch(FailedLoginEntity, before, limit);
  }

  countFailedLoginsBefore(before: Date): Promise<number> {
    const b = millis('before', before);
    return this.db.run((m) => m.count(FailedLoginEntity, { where: { at: LessThan(b) } }));
  }

  deleteDeliveryFailuresBefore(before: Date, limit: number): Promise<number> {
    return this.deleteBatch(DeliveryFailureEntity, before, limit);
  }

  countDeliveryFailuresBefore(before: Date): Promise<number> {
    const b = millis('before', before);
    return this.db.run((m) => m.count(DeliveryFailureEntity, { where: { at: LessThan(b) } }));
  }

  async deleteStaleBlocks(now: Date, createdBefore: Date, limit: number): Promise<number> {
    const n = millis('now', now);
    const c = millis('createdBefore', createdBefore);
    if (!Number.isSafeInteger(limit) || limit <= 0) return 0;
    return this.db.tx(async (m) => {
      const rows = await m.find(AuthBlockEntity, {
        select: { kind: true, subject: true },
        where: [{ expiresAt: LessThan(n) }, { createdAt: LessThan(c) }],
        order: { expiresAt: 'ASC' },
        take: limit,
      });
      let deleted = 0;
      for (const r of rows) {
        const a = await m.delete(AuthBlockEntity, [
          { kind: r.kind, subject: r.subject, expiresAt: LessThan(n) },
          { kind: r.kind, subject: r.subject, createdAt: LessThan(c) },
        ]);
        deleted += Math.min(a.affected ?? 0, 1);
      }
      return deleted;
    });
  }

  countStaleBlocks(now: Date, createdBefore: Date): Promise<number> {
    const n = millis('now', now);
    const c = millis('createdBefore', createdBefore);
    return this.db.run((m) => m.count(AuthBlockEntity, { where: [{ expiresAt: LessThan(n) }, { createdAt: LessThan(c) }] }));
  }

  async countOfflineBefore(before: Date): Promise<number> {
    const b = millis('before', before);
    const row = await this.db.run((m) =>
      m.createQueryBuilder().select('COUNT(*)', 'n').from('offline_messages', 'o').where('o.received_at < :b', { b }).getRawOne<{ n: string | number }>(),
    );
    return Number(row?.n ?? 0);
  }

  async inactiveAccounts(before: Date, afterId: number, limit: number): Promise<Account[]> {
    const b = millis('before', before);
    checkId('afterId', afterId);
    if (!Number.isSafeInteger(limit) || limit <= 0) return [];
    const rows = await this.db.run((m) =>
      m
        .createQueryBuilder()
        .select('a.id', 'id')
        .addSelect('a.username', 'username')
        .addSelect('a.host', 'host')
        .addSelect('a.created_at', 'created_at')
        .addSelect('a.last_used_at', 'last_used_at')
        .addSelect('a.warned_at', 'warned_at')
        .from('accounts', 'a')
        .where('COALESCE(a.last_used_at, a.created_at) < :b', { b })
        .andWhere('a.id > :afterId', { afterId })
        .orderBy('a.id', 'ASC')
        .limit(limit)
        .getRawMany<{ id: unknown; username: string; host: string; created_at: unknown; last_used_at: unknown; warned_at: unknown }>(),
    );
    const date = (v: unknown) => (v === null || v === undefined ? null : new Date(Number(v)));
    return rows.map((r) => ({
      id: Number(r.id),
      username: r.username,
      host: r.host,
      createdAt: new Date(Number(r.created_at)),
      lastUsedAt: date(r.last_used_at),
      warnedAt: date(r.warned_at),
    }));
  }

  async flushDeleted(): Promise<void> {
    if (this.db.kind !== 'sqlite') return;
    await this.db.run((m) => m.query('PRAGMA wal_checkpoint(TRUNCATE)'));
  }

  async accountJids(ids: number[]): Promise<Map<number, { username: string; host: string }>> {
    const unique = [...new Set(ids)].filter((id) => Number.isSafeInteger(id));
    const out = new Map<number, { username: string; host: string }>();
    if (unique.length === 0) return out;
    await this.db.run(async (m) => {
      for (let i = 0; i < unique.length; i += ID_CHUNK) {
        const rows = await m
          .createQueryBuilder()
          .select('a.id', 'id')
          .addSelect('a.username', 'username')
          .addSelect('a.host', 'host')
          .from('accounts', 'a')
          .where('a.id IN (:...ids)', { ids: unique.slice(i, i + ID_CHUNK) })
          .getRawMany<{ id: unknown; username: string; host: string }>();
        for (const r of rows) out.set(Number(r.id), { username: r.username, host: r.host });
      }
    });
    return out;
  }
}
