/**
 * The MUC module's tables (module contract `storage`): persistent rooms only, and of them only
 * what outlives a visit. No message, subject or occupant is ever stored.
 *
 * - muc_rooms: service domain, room name (the JID's local part), configuration as JSON
 *   (config-form.ts, with the room's vCard), created_at and last_used_at (when an occupant last
 *   left; the retention class `muc-rooms` deletes rooms unused for `muc.unusedRooms`).
 * - muc_affiliations: room_id (muc_rooms(id) ON DELETE CASCADE), the bare JID, the affiliation,
 *   the reserved nick and the reason given; account_id references accounts(id) ON DELETE CASCADE
 *   for JIDs of this server's accounts, so deleting an account erases its affiliations (P23).
 */
import { EntitySchema, Table, type MigrationInterface, type QueryRunner } from 'typeorm';
import { columnKit } from '../../../storage/migrations/kit.js';
import { bigintNumber, checkText, type Db } from '../../../storage/db.js';
import type { ModuleStorage } from '../../../storage/module-storage.js';
import type { Affiliation } from './roles.js';

export const MUC_LIMITS = { service: 255, name: 255, jid: 640, nick: 255, reason: 1000 } as const;

interface RoomEntityRow {
  id: number;
  service: string;
  name: string;
  config: string;
  createdAt: number;
  lastUsedAt: number;
}

interface AffEntityRow {
  roomId: number;
  jid: string;
  affiliation: string;
  nick: string | null;
  reason: string | null;
  accountId: number | null;
}

const MucRoomEntity = new EntitySchema<RoomEntityRow>({
  name: 'MucRoom',
  tableName: 'muc_rooms',
  columns: {
    id: { type: 'integer', primary: true, generated: 'increment' },
    service: { type: 'varchar', length: MUC_LIMITS.service },
    name: { type: 'varchar', length: MUC_LIMITS.name },
    config: { type: 'text' },
    createdAt: { name: 'created_at', type: 'bigint', transformer: bigintNumber },
    lastUsedAt: { name: 'last_used_at', type: 'bigint', transformer: bigintNumber },
  },
});

const MucAffiliationEntity = new EntitySchema<AffEntityRow>({
  name: 'MucAffiliation',
  tableName: 'muc_affiliations',
  columns: {
    roomId: { name: 'room_id', type: 'integer', primary: true },
    jid: { type: 'varchar', length: MUC_LIMITS.jid, primary: true },
    affiliation: { type: 'varchar', length: 16 },
    nick: { type: 'varchar', length: MUC_LIMITS.nick, nullable: true },
    reason: { type: 'varchar', length: MUC_LIMITS.reason, nullable: true },
    accountId: { name: 'account_id', type: 'integer', nullable: true },
  },
});

export class MucRooms1765100000000 implements MigrationInterface {
  name = 'MucRooms1765100000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const { varchar, largeText, millis } = await columnKit(queryRunner);
    await queryRunner.createTable(
      new Table({
        name: 'muc_rooms',
        columns: [
          { name: 'id', type: 'integer', isPrimary: true, isGenerated: true, generationStrategy: 'increment' },
          varchar('service', MUC_LIMITS.service),
          varchar('name', MUC_LIMITS.name),
          largeText('config'),
          millis('created_at'),
          millis('last_used_at'),
        ],
        indices: [{ name: 'uq_muc_rooms_service_name', columnNames: ['service', 'name'], isUnique: true }],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'muc_affiliations',
        columns: [
          { name: 'room_id', type: 'integer', isPrimary: true },
          varchar('jid', MUC_LIMITS.jid, { isPrimary: true }),
          varchar('affiliation', 16),
          varchar('nick', MUC_LIMITS.nick, { isNullable: true }),
          varchar('reason', MUC_LIMITS.reason, { isNullable: true }),
          { name: 'account_id', type: 'integer', isNullable: true },
        ],
        indices: [{ name: 'ix_muc_affiliations_account', columnNames: ['account_id'] }],
        foreignKeys: [
          { name: 'fk_muc_affiliations_room', columnNames: ['room_id'], referencedTableName: 'muc_rooms', referencedColumnNames: ['id'], onDelete: 'CASCADE' },
          { name: 'fk_muc_affiliations_account', columnNames: ['account_id'], referencedTableName: 'accounts', referencedColumnNames: ['id'], onDelete: 'CASCADE' },
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('muc_affiliations', true);
    await queryRunner.dropTable('muc_rooms', true);
  }
}

export interface StoredRoom {
  id: number;
  service: string;
  name: string;
  config: string;
  createdAt: Date;
  lastUsedAt: Date;
}

export interface StoredAffiliation {
  jid: string;
  affiliation: Affiliation;
  nick: string | null;
  reason: string | null;
}

type Raw = Record<string, unknown>;

const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

function roomRow(r: Raw): StoredRoom {
  return {
    id: Number(r.id),
    service: String(r.service),
    name: String(r.name),
    config: String(r.config),
    createdAt: new Date(Number(r.created_at)),
    lastUsedAt: new Date(Number(r.last_used_at)),
  };
}

export class MucRepository {
  constructor(private readonly db: Db) {}

  async rooms(service: string): Promise<StoredRoom[]> {
    const rows = await this.db.sql<Raw>('SELECT "id", "service", "name", "config", "created_at", "last_used_at" FROM "muc_rooms" WHERE "service" = ? ORDER BY "name"', [service]);
    return rows.map(roomRow);
  }

  /** One stored room (cluster mode: the node that just became its owner looks before creating it). */
  async room(service: string, name: string): Promise<StoredRoom | null> {
    const rows = await this.db.sql<Raw>('SELECT "id", "service", "name", "config", "created_at", "last_used_at" FROM "muc_rooms" WHERE "service" = ? AND "name" = ?', [service, name]);
    return rows[0] ? roomRow(rows[0]) : null;
  }

  async affiliations(roomId: number): Promise<StoredAffiliation[]> {
    const rows = await this.db.sql<Raw>('SELECT "jid", "affiliation", "nick", "reason" FROM "muc_affiliations" WHERE "room_id" = ?', [roomId]);
    return rows.map((r) => ({ jid: String(r.jid), affiliation: String(r.affiliation) as Affiliation, nick: str(r.nick), reason: str(r.reason) }));
  }

  /** Inserts or updates a room; returns its id. */
  async saveRoom(service: string, name: string, config: string, now: Date): Promise<number> {
    checkText('service', service, MUC_LIMITS.service);
    checkText('room name', name, MUC_LIMITS.name);
    return this.db.tx(async (m) => {
      const q = (text: string, params: unknown[]) => m.query(this.db.dialect(text), params) as Promise<Raw[]>;
      const found = await q('SELECT "id" FROM "muc_rooms" WHERE "service" = ? AND "name" = ?', [service, name]);
      if (found[0]) {
        await q('UPDATE "muc_rooms" SET "config" = ? WHERE "id" = ?', [config, Number(found[0].id)]);
        return Number(found[0].id);
      }
      await q('INSERT INTO "muc_rooms" ("service", "name", "config", "created_at", "last_used_at") VALUES (?, ?, ?, ?, ?)', [service, name, config, now.getTime(), now.getTime()]);
      const rows = await q('SELECT "id" FROM "muc_rooms" WHERE "service" = ? AND "name" = ?', [service, name]);
      return Number(rows[0]!.id);
    });
  }

  async touch(roomId: number, now: Date): Promise<void> {
    await this.db.sql('UPDATE "muc_rooms" SET "last_used_at" = ? WHERE "id" = ?', [now.getTime(), roomId]);
  }

  async deleteRoom(roomId: number): Promise<void> {
    await this.db.sql('DELETE FROM "muc_rooms" WHERE "id" = ?', [roomId]);
  }

  /** Replaces the whole affiliation list of a room (with the account ids of local JIDs). */
  async setAffiliations(roomId: number, list: readonly (StoredAffiliation & { accountId: number | null })[]): Promise<void> {
    await this.db.tx(async (m) => {
      const q = (text: string, params: unknown[]) => m.query(this.db.dialect(text), params) as Promise<Raw[]>;
      await q('DELETE FROM "muc_affiliations" WHERE "room_id" = ?', [roomId]);
      for (const a of list) {
        checkText('jid', a.jid, MUC_LIMITS.jid);
        await q('INSERT INTO "muc_affiliations" ("room_id", "jid", "affiliation", "nick", "reason", "account_id") VALUES (?, ?, ?, ?, ?, ?)', [
          roomId,
          a.jid,
          a.affiliation,
          a.nick === null ? null : a.nick.slice(0, MUC_LIMITS.nick),
          a.reason === null ? null : a.reason.slice(0, MUC_LIMITS.reason),
          a.accountId,
        ]);
      }
    });
  }

  /** The affiliations of one account, with the room's address (for the export). */
  async ofAccount(accountId: number): Promise<(StoredAffiliation & { room: string })[]> {
    const rows = await this.db.sql<Raw>(
      'SELECT "r"."service", "r"."name", "a"."jid", "a"."affiliation", "a"."nick", "a"."reason" FROM "muc_affiliations" "a" JOIN "muc_rooms" "r" ON "r"."id" = "a"."room_id" WHERE "a"."account_id" = ? ORDER BY "r"."service", "r"."name"',
      [accountId],
    );
    return rows.map((r) => ({ room: `${String(r.name)}@${String(r.service)}`, jid: String(r.jid), affiliation: String(r.affiliation) as Affiliation, nick: str(r.nick), reason: str(r.reason) }));
  }

  /** Adds (or replaces) one affiliation of an account in an existing room; false when the room is unknown. */
  async importAffiliation(service: string, name: string, a: StoredAffiliation, accountId: number): Promise<boolean> {
    const rows = await this.db.sql<Raw>('SELECT "id" FROM "muc_rooms" WHERE "service" = ? AND "name" = ?', [service, name]);
    if (!rows[0]) return false;
    const roomId = Number(rows[0].id);
    await this.db.sql('DELETE FROM "muc_affiliations" WHERE "room_id" = ? AND "jid" = ?', [roomId, a.jid]);
    checkText('jid', a.jid, MUC_LIMITS.jid);
    await this.db.sql('INSERT INTO "muc_affiliations" ("room_id", "jid", "affiliation", "nick", "reason", "account_id") VALUES (?, ?, ?, ?, ?, ?)', [
      roomId,
      a.jid,
      a.affiliation,
      a.nick === null ? null : a.nick.slice(0, MUC_LIMITS.nick),
      a.reason === null ? null : a.reason.slice(0, MUC_LIMITS.reason),
      accountId,
    ]);
    return true;
  }

  async unusedBefore(before: Date, limit: number): Promise<number[]> {
    const rows = await this.db.sql<Raw>(`SELECT "id" FROM "muc_rooms" WHERE "last_used_at" < ? ORDER BY "id" LIMIT ${Math.max(1, Math.floor(limit))}`, [before.getTime()]);
    return rows.map((r) => Number(r.id));
  }

  async countUnusedBefore(before: Date): Promise<number> {
    const rows = await this.db.sql<{ n: number | string }>('SELECT COUNT(*) AS "n" FROM "muc_rooms" WHERE "last_used_at" < ?', [before.getTime()]);
    return Number(rows[0]?.n ?? 0);
  }

  async roomName(roomId: number): Promise<string | null> {
    const rows = await this.db.sql<Raw>('SELECT "service", "name" FROM "muc_rooms" WHERE "id" = ?', [roomId]);
    return rows[0] ? `${String(rows[0].name)}@${String(rows[0].service)}` : null;
  }
}

export const mucStorage: ModuleStorage<MucRepository> = {
  name: 'muc',
  entities: [MucRoomEntity, MucAffiliationEntity],
  migrations: [MucRooms1765100000000],
  repository: (db) => new MucRepository(db),
};
