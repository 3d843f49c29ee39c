/**
 * TypeORM entity schemas (no decorators). These describe how rows are read and written; the
 * tables themselves are created only by the migrations in /migrations (never `synchronize`).
 *
 * Conventions shared with the migrations:
 * - timestamps are UTC milliseconds since the epoch in BIGINT columns;
 * - binary values (SCRAM salt and keys) are base64 text;
 * - roster groups are a JSON array in a text column;
 * - booleans are the driver's boolean type (INTEGER on SQLite, TINYINT(1) on MySQL).
 */
import { bigintNumber } from './db.js';
import { EntitySchema } from 'typeorm';
import { privacyLogEntities } from './repos/privacy-logs.js';
import { PolicyVersionEntity } from './repos/policy-versions.js';
import { statisticsEntities } from './repos/statistics.js';
import { transportEntities } from './repos/transports.js';

export interface AccountRow {
  id: number;
  username: string;
  host: string;
  createdAt: number;
  lastUsedAt: number | null;
  warnedAt: number | null;
}

export interface ScramVerifierRow {
  accountId: number;
  hash: string;
  /** base64 */
  salt: string;
  iterations: number;
  /** base64 */
  storedKey: string;
  /** base64 */
  serverKey: string;
}

export interface RosterItemRow {
  accountId: number;
  contact: string;
  name: string | null;
  subscription: string;
  ask: boolean;
  pendingIn: boolean;
  approved: boolean;
  /** JSON array of strings */
  groups: string;
}

export interface RosterVersionRow {
  accountId: number;
  version: number;
}

export interface OfflineMessageRow {
  id: number;
  accountId: number;
  stanza: string;
  receivedAt: number;
}

export interface KvItemRow {
  accountId: number;
  kind: string;
  itemKey: string;
  xml: string;
}

export const AccountEntity = new EntitySchema<AccountRow>({
  name: 'Account',
  tableName: 'accounts',
  columns: {
    id: { type: 'integer', primary: true, generated: 'increment' },
    username: { type: 'varchar', length: 255 },
    host: { type: 'varchar', length: 255 },
    createdAt: { name: 'created_at', type: 'bigint', transformer: bigintNumber },
    lastUsedAt: { name: 'last_used_at', type: 'bigint', nullable: true, transformer: bigintNumber },
    warnedAt: { name: 'warned_at', type: 'bigint', nullable: true, transformer: bigintNumber },
  },
});

export const ScramVerifierEntity = new EntitySchema<ScramVerifierRow>({
  name: 'ScramVerifier',
  tableName: 'scram_verifiers',
  columns: {
    accountId: { name: 'account_id', type: 'integer', primary: true },
    hash: { type: 'varchar', length: 16, primary: true },
    salt: { type: 'varchar', length: 512 },
    iterations: { type: 'integer' },
    storedKey: { name: 'stored_key', type: 'varchar', length: 255 },
    serverKey: { name: 'server_key', type: 'varchar', length: 255 },
  },
});

export const RosterItemEntity = new EntitySchema<RosterItemRow>({
  name: 'RosterItem',
  tableName: 'roster_items',
  columns: {
    accountId: { name: 'account_id', type: 'integer', primary: true },
    contact: { type: 'varchar', length: 640, primary: true },
    name: { type: 'varchar', length: 1023, nullable: true },
    subscription: { type: 'varchar', length: 8 },
    ask: { type: 'boolean' },
    pendingIn: { name: 'pending_in', type: 'boolean' },
    approved: { type: 'boolean' },
    groups: { type: 'text' },
  },
});

export const RosterVersionEntity = new EntitySchema<RosterVersionRow>({
  name: 'RosterVersion',
  tableName: 'roster_versions',
  columns: {
    accountId: { name: 'account_id', type: 'integer', primary: true },
    version: { type: 'bigint', transformer: bigintNumber },
  },
});

export const OfflineMessageEntity = new EntitySchema<OfflineMessageRow>({
  name: 'OfflineMessage',
  tableName: 'offline_messages',
  columns: {
    id: { type: 'bigint', primary: true, generated: 'increment', transformer: bigintNumber },
    accountId: { name: 'account_id', type: 'integer' },
    stanza: { type: 'text' },
    receivedAt: { name: 'received_at', type: 'bigint', transformer: bigintNumber },
  },
});

export const KvItemEntity = new EntitySchema<KvItemRow>({
  name: 'KvItem',
  tableName: 'kv_items',
  columns: {
    accountId: { name: 'account_id', type: 'integer', primary: true },
    kind: { type: 'varchar', length: 16, primary: true },
    itemKey: { name: 'item_key', type: 'varchar', length: 512, primary: true },
    xml: { type: 'text' },
  },
});

export const allEntities = [
  AccountEntity,
  ScramVerifierEntity,
  RosterItemEntity,
  RosterVersionEntity,
  OfflineMessageEntity,
  KvItemEntity,
  PolicyVersionEntity,
  ...privacyLogEntities,
  ...statisticsEntities,
  ...transportEntities,
];

/** Every account-owned table with the column that references accounts.id (used by tests/admin counts). */
export const ownedTables: { table: string; accountColumn: string }[] = [
  { table: 'accounts', accountColumn: 'id' },
  { table: 'scram_verifiers', accountColumn: 'account_id' },
  { table: 'roster_items', accountColumn: 'account_id' },
  { table: 'roster_versions', accountColumn: 'account_id' },
  { table: 'offline_messages', accountColumn: 'account_id' },
  { table: 'kv_items', accountColumn: 'account_id' },
];
