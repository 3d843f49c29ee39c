/**
 * Storage of the transports (transports/kit): registrations, the credential vault's records (P9)
 * and the connection audit log (P10). A transport opens the same storage layer as the server, with
 * its own database or the server's.
 *
 * Tables (migrations/1732600000500-Transports.ts):
 * - transport_registrations (network, user_jid): the user's non-secret state with the transport
 *   (settings, the contact JIDs the user has through it), created_at/updated_at. The user's own
 *   data: kept while the registration exists, deleted by `<remove/>` (XEP-0077).
 * - transport_credentials (network, user_jid): one AES-256-GCM record per registration: key id,
 *   nonce, ciphertext, tag (base64), updated_at. Deleted with its registration (foreign key,
 *   ON DELETE CASCADE). Nothing else about the foreign account is stored in clear.
 * - transport_sync_state (network, user_jid, server_key): where the user's foreign session stopped
 *   (the adapter's sync state, resumed at the next login; server_key '' for single-server
 *   networks, else the SHA-256 of the server name), updated_at. Deleted with its registration (foreign key, and deleteRegistration).
 * - transport_secret_state (network, user_jid, server_key): state the adapter keeps across
 *   restarts that is as sensitive as a credential (Matrix: the end-to-end encryption store),
 *   sealed by the vault (key id, nonce, ciphertext, tag), updated_at
 *   (migrations/1732600000760-TransportSecretState.ts). Deleted with its registration.
 * - transport_audit: time, user JID, network, foreign account, server, event, reason. Retention
 *   class "detailed logs" (P13): deleteAuditBefore() removes what is older than
 *   retention.detailedLogs.
 *
 * Conventions as in entities.ts: bigint milliseconds, base64 for binary, JSON in text columns.
 */
import { createHash } from 'node:crypto';
import { EntitySchema, In } from 'typeorm';
import { bigintNumber, Db, ID_CHUNK, checkText, millis } from '../db.js';
import type { TransportAuditEvent, TransportRegistration, VaultRecord, TransportAuditEntry, TransportAuditQuery, TransportRepository } from '../types.js';

export const TRANSPORT_AUDIT_EVENTS: readonly TransportAuditEvent[] = ['connecting', 'connected', 'disconnected', 'auth-failed', 'error'];

export const TRANSPORT_LIMITS = { network: 64, userJid: 640, account: 255, server: 255, reason: 512, keyId: 16, syncState: 1_000_000, secretState: 12_000_000 } as const;

interface RegistrationRow {
  network: string;
  userJid: string;
  settings: string;
  contacts: string;
  createdAt: number;
  updatedAt: number;
}

interface CredentialRow {
  network: string;
  userJid: string;
  keyId: string;
  nonce: string;
  ciphertext: string;
  tag: string;
  updatedAt: number;
}

interface SyncStateRow {
  network: string;
  userJid: string;
  serverKey: string;
  state: string;
  updatedAt: number;
}

interface SecretStateRow {
  network: string;
  userJid: string;
  serverKey: string;
  keyId: string;
  nonce: string;
  tag: string;
  ciphertext: string;
  updatedAt: number;
}

interface AuditRow {
  id: number;
  at: number;
  userJid: string;
  network: string;
  account: string | null;
  server: string | null;
  event: string;
  reason: string | null;
}

export const TransportRegistrationEntity = new EntitySchema<RegistrationRow>({
  name: 'TransportRegistration',
  tableName: 'transport_registrations',
  columns: {
    network: { type: 'varchar', length: 64, primary: true },
    userJid: { name: 'user_jid', type: 'varchar', length: 640, primary: true },
    settings: { type: 'text' },
    contacts: { type: 'text' },
    createdAt: { name: 'created_at', type: 'bigint', transformer: bigintNumber },
    updatedAt: { name: 'updated_at', type: 'bigint', transformer: bigintNumber },
  },
});

export const TransportCredentialEntity = new EntitySchema<CredentialRow>({
  name: 'TransportCredential',
  tableName: 'transport_credentials',
  columns: {
    network: { type: 'varchar', length: 64, primary: true },
    userJid: { name: 'user_jid', type: 'varchar', length: 640, primary: true },
    keyId: { name: 'key_id', type: 'varchar', length: 16 },
    nonce: { type: 'varchar', length: 32 },
    ciphertext: { type: 'text' },
    tag: { type: 'varchar', length: 32 },
    updatedAt: { name: 'updated_at', type: 'bigint', transformer: bigintNumber },
  },
});

export const TransportSyncStateEntity = new EntitySchema<SyncStateRow>({
  name: 'TransportSyncState',
  tableName: 'transport_sync_state',
  columns: {
    network: { type: 'varchar', length: 64, primary: true },
    userJid: { name: 'user_jid', type: 'varchar', length: 640, primary: true },
    serverKey: { name: 'server_key', type: 'varchar', length: 43, primary: true },
    state: { type: 'text' },
    updatedAt: { name: 'updated_at', type: 'bigint', transformer: bigintNumber },
  },
});

export const TransportSecretStateEntity = new EntitySchema<SecretStateRow>({
  name: 'TransportSecretState',
  tableName: 'transport_secret_state',
  columns: {
    network: { type: 'varchar', length: 64, primary: true },
    userJid: { name: 'user_jid', type: 'varchar', length: 640, primary: true },
    serverKey: { name: 'server_key', type: 'varchar', length: 43, primary: true },
    keyId: { name: 'key_id', type: 'varchar', length: 16 },
    nonce: { type: 'varchar', length: 32 },
    tag: { type: 'varchar', length: 32 },
    ciphertext: { type: 'text' },
    updatedAt: { name: 'updated_at', type: 'bigint', transformer: bigintNumber },
  },
});

export const TransportAuditEntity = new EntitySchema<AuditRow>({
  name: 'TransportAudit',
  tableName: 'transport_audit',
  columns: {
    id: { type: 'bigint', primary: true, generated: 'increment', transformer: bigintNumber },
    at: { type: 'bigint', transformer: bigintNumber },
    userJid: { name: 'user_jid', type: 'varchar', length: 640 },
    network: { type: 'varchar', length: 64 },
    account: { type: 'varchar', length: 255, nullable: true },
    server: { type: 'varchar', length: 255, nullable: true },
    event: { type: 'varchar', length: 16 },
    reason: { type: 'varchar', length: 512, nullable: true },
  },
});

export const transportEntities = [TransportRegistrationEntity, TransportCredentialEntity, TransportSyncStateEntity, TransportSecretStateEntity, TransportAuditEntity];

function parseJson<T>(text: string, fallback: T, ok: (v: unknown) => v is T): T {
  try {
    const v: unknown = JSON.parse(text);
    return ok(v) ? v : fallback;
  } catch {
    return fallback;
  }
}

const isStringRecord = (v: unknown): v is Record<string, string> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

function toRegistration(r: RegistrationRow): TransportRegistration {
  return {
    network: r.network,
    userJid: r.userJid,
    settings: parseJson(r.settings, {}, isStringRecord),
    contacts: parseJson(r.contacts, [], isStringArray),
    createdAt: new Date(Number(r.createdAt)),
    updatedAt: new Date(Number(r.updatedAt)),
  };
}

function toRecord(r: CredentialRow): VaultRecord {
  return {
    network: r.network,
    userJid: r.userJid,
    keyId: r.keyId,
    nonce: Buffer.from(r.nonce, 'base64'),
    ciphertext: Buffer.from(r.ciphertext, 'base64'),
    tag: Buffer.from(r.tag, 'base64'),
    updatedAt: new Date(Number(r.updatedAt)),
  };
}

function credentialRow(v: VaultRecord): CredentialRow {
  checkText('network', v.network, TRANSPORT_LIMITS.network);
  checkText('user JID', v.userJid, TRANSPORT_LIMITS.userJid);
  checkText('key id', v.keyId, TRANSPORT_LIMITS.keyId);
  for (const [k, b] of [
    ['nonce', v.nonce],
    ['ciphertext', v.ciphertext],
    ['tag', v.tag],
  ] as const) {
    if (!Buffer.isBuffer(b)) throw new TypeError(`vault ${k} must be a Buffer`);
  }
  if (v.nonce.length > 24 || v.tag.length > 24) throw new RangeError('vault nonce or tag too long');
  return {
    network: v.network,
    userJid: v.userJid,
    keyId: v.keyId,
    nonce: v.nonce.toString('base64'),
    ciphertext: v.ciphertext.toString('base64'),
    tag: v.tag.toString('base64'),
    updatedAt: millis('updatedAt', v.updatedAt),
  };
}

/** The key column of a server name ('' stays ''): fixed-length, so the primary key fits MySQL's limit. */
function serverKeyOf(server: string): string {
  return server === '' ? '' : createHash('sha256').update(server, 'utf8').digest('base64url');
}

/** Cuts a free-text value to the column size (by code points), so a long reason never fails an insert. */
function clip(v: string | null | undefined, max: number): string | null {
  if (v === null || v === undefined) return null;
  const s = v.replace(/[\u0000-\u001f\u007f]+/g, ' ');
  const chars = [...s];
  return chars.length > max ? chars.slice(0, max - 1).join('') + '…' : s;
}

export class TypeOrmTransportRepository implements TransportRepository {
  constructor(private readonly db: Db) {}

  async getRegistration(network: string, userJid: string): Promise<TransportRegistration | null> {
    if (typeof network !== 'string' || typeof userJid !== 'string') return null;
    const row = await this.db.run((m) => m.findOne(TransportRegistrationEntity, { where: { network, userJid } }));
    return row ? toRegistration(row) : null;
  }

  async listRegistrations(network: string): Promise<TransportRegistration[]> {
    const rows = await this.db.run((m) => m.find(TransportRegistrationEntity, { where: { network }, order: { userJid: 'ASC' } }));
    return rows.map(toRegistration);
  }

  async saveRegistration(
    reg: { network: string; userJid: string; settings: Record<string, string>; contacts: string[] },
    credentials: VaultRecord,
    now: Date,
  ): Promise<void> {
    checkText('network', reg.network, TRANSPORT_LIMITS.network);
    checkText('user JID', reg.userJid, TRANSPORT_LIMITS.userJid);
    if (credentials.network !== reg.network || credentials.userJid !== reg.userJid) throw new RangeError('credentials belong to another registration');
    const at = millis('now', now);
    const cred = credentialRow(credentials);
    await this.db.tx(async (m) => {
      const existing = await m.findOne(TransportRegistrationEntity, { where: { network: reg.network, userJid: reg.userJid } });
      const row: RegistrationRow = {
        network: reg.network,
        userJid: reg.userJid,
        settings: JSON.stringify(reg.settings),
        contacts: JSON.stringify(reg.contacts),
        createdAt: existing ? Number(existing.createdAt) : at,
        updatedAt: at,
      };
      if (existing) await m.update(TransportRegistrationEntity, { network: reg.network, userJid: reg.userJid }, row);
      else await m.insert(TransportRegistrationEntity, row);
      await m.delete(TransportCredentialEntity, { network: reg.network, userJid: reg.userJid });
      await m.insert(TransportCredentialEntity, cred);
    });
  }

  async updateState(network: string, userJid: string, patch: { settings?: Record<string, string>; contacts?: string[] }, now: Date): Promise<boolean> {
    const set: Partial<RegistrationRow> = { updatedAt: millis('now', now) };
    if (patch.settings !== undefined) set.settings = JSON.stringify(patch.settings);
    if (patch.contacts !== undefined) set.contacts = JSON.stringify(patch.contacts);
    const r = await this.db.run((m) => m.update(TransportRegistrationEntity, { network, userJid }, set));
    return (r.affected ?? 0) > 0;
  }

  async updateCredentials(record: VaultRecord): Promise<boolean> {
    const row = credentialRow(record);
    return this.db.tx(async (m) => {
      if (!(await m.exists(TransportRegistrationEntity, { where: { network: row.network, userJid: row.userJid } }))) return false;
      await m.delete(TransportCredentialEntity, { network: row.network, userJid: row.userJid });
      await m.insert(TransportCredentialEntity, row);
      return true;
    });
  }

  async getSyncState(network: string, userJid: string, server: string): Promise<string | null> {
    if (typeof network !== 'string' || typeof userJid !== 'string' || typeof server !== 'string') return null;
    const row = await this.db.run((m) => m.findOne(TransportSyncStateEntity, { where: { network, userJid, serverKey: serverKeyOf(server) } }));
    return row ? row.state : null;
  }

  async saveSyncState(network: string, userJid: string, server: string, state: string, now: Date): Promise<boolean> {
    checkText('server', server, TRANSPORT_LIMITS.server);
    if (typeof state !== 'string') throw new TypeError('the sync state must be a string');
    if (state.length > TRANSPORT_LIMITS.syncState) throw new RangeError(`the sync state is longer than ${TRANSPORT_LIMITS.syncState} characters`);
    const at = millis('now', now);
    return this.db.tx(async (m) => {
      if (!(await m.exists(TransportRegistrationEntity, { where: { network, userJid } }))) return false;
      const where = { network, userJid, serverKey: serverKeyOf(server) };
      if (await m.exists(TransportSyncStateEntity, { where })) await m.update(TransportSyncStateEntity, where, { state, updatedAt: at });
      else await m.insert(TransportSyncStateEntity, { ...where, state, updatedAt: at });
      return true;
    });
  }

  async getSecretState(network: string, userJid: string, server: string): Promise<VaultRecord | null> {
    if (typeof network !== 'string' || typeof userJid !== 'string' || typeof server !== 'string') return null;
    const row = await this.db.run((m) => m.findOne(TransportSecretStateEntity, { where: { network, userJid, serverKey: serverKeyOf(server) } }));
    return row ? toRecord(row) : null;
  }

  async saveSecretState(server: string, record: VaultRecord): Promise<boolean> {
    checkText('server', server, TRANSPORT_LIMITS.server);
    const row = { ...credentialRow(record), serverKey: serverKeyOf(server) };
    if (row.ciphertext.length > TRANSPORT_LIMITS.secretState) throw new RangeError(`the secret state is larger than ${TRANSPORT_LIMITS.secretState} characters (base64)`);
    return this.db.tx(async (m) => {
      const owner = { network: row.network, userJid: row.userJid };
      if (!(await m.exists(TransportRegistrationEntity, { where: owner }))) return false;
      const where = { ...owner, serverKey: row.serverKey };
      const set = { keyId: row.keyId, nonce: row.nonce, tag: row.tag, ciphertext: row.ciphertext, updatedAt: row.updatedAt };
      if (await m.exists(TransportSecretStateEntity, { where })) await m.update(TransportSecretStateEntity, where, set);
      else await m.insert(TransportSecretStateEntity, { ...where, ...set });
      return true;
    });
  }

  async listSecretStates(network: string): Promise<{ serverKey: string; record: VaultRecord }[]> {
    const rows = await this.db.run((m) => m.find(TransportSecretStateEntity, { where: { network }, order: { userJid: 'ASC', serverKey: 'ASC' } }));
    return rows.map((r) => ({ serverKey: r.serverKey, record: toRecord(r) }));
  }

  async reencryptSecretStates(records: { serverKey: string; record: VaultRecord; expectKeyId: string }[]): Promise<void> {
    if (records.length === 0) return;
    const rows = records.map(({ serverKey, record, expectKeyId }) => ({ row: credentialRow(record), serverKey, expectKeyId }));
    await this.db.tx(async (m) => {
      for (const { row, serverKey, expectKeyId } of rows) {
        const r = await m.update(
          TransportSecretStateEntity,
          { network: row.network, userJid: row.userJid, serverKey, keyId: expectKeyId },
          { keyId: row.keyId, nonce: row.nonce, ciphertext: row.ciphertext, tag: row.tag, updatedAt: row.updatedAt },
        );
        if ((r.affected ?? 0) !== 1) throw new Error(`the secret state of ${row.userJid} (${row.network}) changed during the rotation; nothing was changed, run it again`);
      }
    });
  }

  async deleteRegistration(network: string, userJid: string): Promise<boolean> {
    return this.db.tx(async (m) => {
      await m.delete(TransportCredentialEntity, { network, userJid });
      await m.delete(TransportSyncStateEntity, { network, userJid });
      await m.delete(TransportSecretStateEntity, { network, userJid });
      const r = await m.delete(TransportRegistrationEntity, { network, userJid });
      return (r.affected ?? 0) > 0;
    });
  }

  async getCredentials(network: string, userJid: string): Promise<VaultRecord | null> {
    if (typeof network !== 'string' || typeof userJid !== 'string') return null;
    const row = await this.db.run((m) => m.findOne(TransportCredentialEntity, { where: { network, userJid } }));
    return row ? toRecord(row) : null;
  }

  async listCredentials(network?: string): Promise<VaultRecord[]> {
    const rows = await this.db.run((m) =>
      m.find(TransportCredentialEntity, { where: network === undefined ? {} : { network }, order: { network: 'ASC', userJid: 'ASC' } }),
    );
    return rows.map(toRecord);
  }

  async keyIdCounts(network?: string): Promise<Map<string, number>> {
    const rows = await this.db.run((m) => {
      let qb = m.createQueryBuilder(TransportCredentialEntity, 'c').select('c.keyId', 'keyId').addSelect('COUNT(*)', 'n').groupBy('c.keyId');
      if (network !== undefined) qb = qb.where('c.network = :network', { network });
      return qb.getRawMany<{ keyId: string; n: string | number }>();
    });
    return new Map(rows.map((r) => [r.keyId, Number(r.n)]));
  }

  async reencrypt(records: { record: VaultRecord; expectKeyId: string }[]): Promise<void> {
    const rows = records.map(({ record, expectKeyId }) => ({ row: credentialRow(record), expectKeyId }));
    if (rows.length === 0) return;
    await this.db.tx(async (m) => {
      for (const { row, expectKeyId } of rows) {
        const r = await m.update(
          TransportCredentialEntity,
          { network: row.network, userJid: row.userJid, keyId: expectKeyId },
          { keyId: row.keyId, nonce: row.nonce, ciphertext: row.ciphertext, tag: row.tag, updatedAt: row.updatedAt },
        );
        if ((r.affected ?? 0) !== 1) throw new Error(`the credentials of ${row.userJid} (${row.network}) changed during the rotation; nothing was changed, run it again`);
      }
    });
  }

  async appendAudit(e: TransportAuditEntry): Promise<void> {
    if (!TRANSPORT_AUDIT_EVENTS.includes(e.event)) throw new RangeError(`unknown audit event ${String(e.event)}`);
    const row = {
      at: millis('at', e.at),
      userJid: checkText('user JID', e.userJid, TRANSPORT_LIMITS.userJid),
      network: checkText('network', e.network, TRANSPORT_LIMITS.network),
      account: clip(e.account, TRANSPORT_LIMITS.account),
      server: clip(e.server, TRANSPORT_LIMITS.server),
      event: e.event,
      reason: clip(e.reason, TRANSPORT_LIMITS.reason),
    };
    await this.db.run((m) => m.insert(TransportAuditEntity, row));
  }

  async queryAudit(q: TransportAuditQuery): Promise<TransportAuditEntry[]> {
    const rows = await this.db.run((m) => {
      let qb = m.createQueryBuilder(TransportAuditEntity, 'a').where('1 = 1');
      if (q.userJid !== undefined) qb = qb.andWhere('a.userJid = :userJid', { userJid: q.userJid });
      if (q.network !== undefined) qb = qb.andWhere('a.network = :network', { network: q.network });
      if (q.since !== undefined) qb = qb.andWhere('a.at >= :since', { since: millis('since', q.since) });
      if (q.until !== undefined) qb = qb.andWhere('a.at < :until', { until: millis('until', q.until) });
      qb = qb.orderBy('a.at', 'ASC').addOrderBy('a.id', 'ASC');
      if (q.limit !== undefined && Number.isSafeInteger(q.limit) && q.limit > 0) qb = qb.limit(q.limit);
      return qb.getMany();
    });
    return rows.map((r) => ({
      id: Number(r.id),
      at: new Date(Number(r.at)),
      userJid: r.userJid,
      network: r.network,
      account: r.account ?? null,
      server: r.server ?? null,
      event: r.event as TransportAuditEvent,
      reason: r.reason ?? null,
    }));
  }

  async countAuditBefore(before: Date): Promise<number> {
    const b = millis('before', before);
    return this.db.run((m) => m.createQueryBuilder(TransportAuditEntity, 'a').where('a.at < :b', { b }).getCount());
  }

  async deleteAuditBefore(before: Date, limit?: number): Promise<number> {
    const b = millis('before', before);
    if (limit === undefined) {
      const r = await this.db.run((m) => m.createQueryBuilder().delete().from(TransportAuditEntity).where('at < :b', { b }).execute());
      return r.affected ?? 0;
    }
    if (!Number.isSafeInteger(limit) || limit <= 0) return 0;
    return this.db.tx(async (m) => {
      const rows = await m
        .createQueryBuilder(TransportAuditEntity, 'a')
        .select('a.id', 'id')
        .where('a.at < :b', { b })
        .orderBy('a.at', 'ASC')
        .addOrderBy('a.id', 'ASC')
        .limit(limit)
        .getRawMany<{ id: string | number }>();
      const ids = rows.map((r) => Number(r.id));
      let n = 0;
      for (let i = 0; i < ids.length; i += ID_CHUNK) {
        const r = await m.delete(TransportAuditEntity, { id: In(ids.slice(i, i + ID_CHUNK)) });
        n += r.affected ?? 0;
      }
      return n;
    });
  }
}
