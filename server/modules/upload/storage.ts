/**
 * The upload module's own table (module contract `storage`, storage/module-storage.ts):
 *
 * upload_files: one row per completed upload: the random id (also the file's name on disk and in
 * its URL), account_id (accounts(id) ON DELETE CASCADE, P23), the original file name (personal
 * data: only shown in Content-Disposition and the account's export, never logged), size, content
 * type, the GET URL as handed out (for the export) and created_at. Open slots are not stored: they
 * live for minutes, in memory.
 *
 * upload_component_files: the same for files a local component (a transport re-hosting a Matrix or
 * Discord attachment) uploaded: `component` (its domain) instead of an account. They belong to no
 * account, so only `retention.uploads` deletes them.
 *
 * Conventions of /migrations (migrations/kit.ts): BIGINT milliseconds, utf8mb4 with a binary
 * collation on MySQL.
 */
import { EntitySchema, Table, type MigrationInterface, type QueryRunner } from 'typeorm';
import { columnKit } from '../../../storage/migrations/kit.js';
import { bigintNumber, checkId, checkText, type Db } from '../../../storage/db.js';
import type { ModuleStorage } from '../../../storage/module-storage.js';

export const UPLOAD_LIMITS = { id: 64, fileName: 255, contentType: 255, url: 2048, component: 255 } as const;

interface FileEntityRow {
  id: string;
  accountId: number;
  fileName: string;
  size: number;
  contentType: string;
  url: string;
  createdAt: number;
}

const UploadFileEntity = new EntitySchema<FileEntityRow>({
  name: 'UploadFile',
  tableName: 'upload_files',
  columns: {
    id: { type: 'varchar', length: UPLOAD_LIMITS.id, primary: true },
    accountId: { name: 'account_id', type: 'integer' },
    fileName: { name: 'file_name', type: 'varchar', length: UPLOAD_LIMITS.fileName },
    size: { type: 'bigint', transformer: bigintNumber },
    contentType: { name: 'content_type', type: 'varchar', length: UPLOAD_LIMITS.contentType },
    url: { type: 'text' },
    createdAt: { name: 'created_at', type: 'bigint', transformer: bigintNumber },
  },
});

export class UploadFiles1765100000000 implements MigrationInterface {
  name = 'UploadFiles1765100000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const { text, varchar, millis } = await columnKit(queryRunner);
    await queryRunner.createTable(
      new Table({
        name: 'upload_files',
        columns: [
          varchar('id', UPLOAD_LIMITS.id, { isPrimary: true }),
          { name: 'account_id', type: 'integer' },
          varchar('file_name', UPLOAD_LIMITS.fileName),
          { name: 'size', type: 'bigint' },
          varchar('content_type', UPLOAD_LIMITS.contentType),
          text('url'),
          millis('created_at'),
        ],
        indices: [
          { name: 'ix_upload_files_account', columnNames: ['account_id'] },
          { name: 'ix_upload_files_created', columnNames: ['created_at'] },
        ],
        foreignKeys: [{ name: 'fk_upload_files_account', columnNames: ['account_id'], referencedTableName: 'accounts', referencedColumnNames: ['id'], onDelete: 'CASCADE' }],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('upload_files', true);
  }
}

const ComponentFileEntity = new EntitySchema<Omit<FileEntityRow, 'accountId'> & { component: string }>({
  name: 'UploadComponentFile',
  tableName: 'upload_component_files',
  columns: {
    id: { type: 'varchar', length: UPLOAD_LIMITS.id, primary: true },
    component: { type: 'varchar', length: UPLOAD_LIMITS.component },
    fileName: { name: 'file_name', type: 'varchar', length: UPLOAD_LIMITS.fileName },
    size: { type: 'bigint', transformer: bigintNumber },
    contentType: { name: 'content_type', type: 'varchar', length: UPLOAD_LIMITS.contentType },
    url: { type: 'text' },
    createdAt: { name: 'created_at', type: 'bigint', transformer: bigintNumber },
  },
});

export class UploadComponentFiles1765200000000 implements MigrationInterface {
  name = 'UploadComponentFiles1765200000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const { text, varchar, millis } = await columnKit(queryRunner);
    await queryRunner.createTable(
      new Table({
        name: 'upload_component_files',
        columns: [
          varchar('id', UPLOAD_LIMITS.id, { isPrimary: true }),
          varchar('component', UPLOAD_LIMITS.component),
          varchar('file_name', UPLOAD_LIMITS.fileName),
          { name: 'size', type: 'bigint' },
          varchar('content_type', UPLOAD_LIMITS.contentType),
          text('url'),
          millis('created_at'),
        ],
        indices: [
          { name: 'ix_upload_component_files_component', columnNames: ['component'] },
          { name: 'ix_upload_component_files_created', columnNames: ['created_at'] },
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('upload_component_files', true);
  }
}

export interface UploadFileRow {
  id: string;
  accountId: number;
  fileName: string;
  size: number;
  contentType: string;
  url: string;
  createdAt: Date;
}

type Raw = Record<string, unknown>;

function fileRow(r: Raw): UploadFileRow {
  return {
    id: String(r.id),
    accountId: Number(r.account_id),
    fileName: String(r.file_name),
    size: Number(r.size),
    contentType: String(r.content_type),
    url: String(r.url),
    createdAt: new Date(Number(r.created_at)),
  };
}

const COLUMNS = '"id", "account_id", "file_name", "size", "content_type", "url", "created_at"';
const COMPONENT_COLUMNS = '"id", "component", "file_name", "size", "content_type", "url", "created_at"';
const TABLES = ['upload_files', 'upload_component_files'] as const;

export class UploadRepository {
  constructor(private readonly db: Db) {}

  /** A stored file, of an account (`accountId`) or of a component (`accountId` 0). */
  async get(id: string): Promise<UploadFileRow | null> {
    const rows = await this.db.sql<Raw>(`SELECT ${COLUMNS} FROM "upload_files" WHERE "id" = ?`, [id]);
    if (rows[0]) return fileRow(rows[0]);
    const own = await this.db.sql<Raw>(`SELECT ${COMPONENT_COLUMNS} FROM "upload_component_files" WHERE "id" = ?`, [id]);
    return own[0] ? fileRow({ ...own[0], account_id: 0 }) : null;
  }

  /** Bytes of the files a component uploaded. */
  async componentUsage(component: string): Promise<number> {
    const rows = await this.db.sql<{ b: number | string | null }>('SELECT SUM("size") AS "b" FROM "upload_component_files" WHERE "component" = ?', [component]);
    return Number(rows[0]?.b ?? 0);
  }

  async addComponentFile(component: string, row: Omit<UploadFileRow, 'accountId'>): Promise<void> {
    checkText('component', component, UPLOAD_LIMITS.component);
    checkText('id', row.id, UPLOAD_LIMITS.id);
    checkText('file name', row.fileName, UPLOAD_LIMITS.fileName);
    checkText('content type', row.contentType, UPLOAD_LIMITS.contentType);
    await this.db.sql(`INSERT INTO "upload_component_files" (${COMPONENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`, [
      row.id,
      component,
      row.fileName,
      row.size,
      row.contentType,
      row.url,
      row.createdAt.getTime(),
    ]);
  }

  async ofAccount(accountId: number): Promise<UploadFileRow[]> {
    checkId('accountId', accountId);
    const rows = await this.db.sql<Raw>(`SELECT ${COLUMNS} FROM "upload_files" WHERE "account_id" = ? ORDER BY "created_at", "id"`, [accountId]);
    return rows.map(fileRow);
  }

  /** Bytes of the account's stored files. */
  async usage(accountId: number): Promise<number> {
    const rows = await this.db.sql<{ b: number | string | null }>('SELECT SUM("size") AS "b" FROM "upload_files" WHERE "account_id" = ?', [accountId]);
    return Number(rows[0]?.b ?? 0);
  }

  async add(row: UploadFileRow): Promise<void> {
    checkId('accountId', row.accountId);
    checkText('id', row.id, UPLOAD_LIMITS.id);
    checkText('file name', row.fileName, UPLOAD_LIMITS.fileName);
    checkText('content type', row.contentType, UPLOAD_LIMITS.contentType);
    await this.db.sql(`INSERT INTO "upload_files" (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`, [
      row.id,
      row.accountId,
      row.fileName,
      row.size,
      row.contentType,
      row.url,
      row.createdAt.getTime(),
    ]);
  }

  /** The ids of files created before `before`, at most `limit`. */
  /** The ids of files (of accounts and of components) created before `before`, at most `limit`. */
  async createdBefore(before: Date, limit: number): Promise<string[]> {
    const n = Math.max(1, Math.floor(limit));
    const out: string[] = [];
    for (const table of TABLES) {
      if (out.length >= n) break;
      const rows = await this.db.sql<Raw>(`SELECT "id" FROM "${table}" WHERE "created_at" < ? ORDER BY "created_at" LIMIT ${n - out.length}`, [before.getTime()]);
      out.push(...rows.map((r) => String(r.id)));
    }
    return out;
  }

  async countCreatedBefore(before: Date): Promise<number> {
    let n = 0;
    for (const table of TABLES) {
      const rows = await this.db.sql<{ n: number | string }>(`SELECT COUNT(*) AS "n" FROM "${table}" WHERE "created_at" < ?`, [before.getTime()]);
      n += Number(rows[0]?.n ?? 0);
    }
    return n;
  }

  async delete(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    for (const table of TABLES) await this.db.sql(`DELETE FROM "${table}" WHERE "id" IN (${ids.map(() => '?').join(', ')})`, [...ids]);
  }

  /** Which of `ids` have a row (to find files on disk that have none). */
  async existing(ids: readonly string[]): Promise<Set<string>> {
    const out = new Set<string>();
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      for (const table of TABLES) {
        const rows = await this.db.sql<Raw>(`SELECT "id" FROM "${table}" WHERE "id" IN (${chunk.map(() => '?').join(', ')})`, chunk);
        for (const r of rows) out.add(String(r.id));
      }
    }
    return out;
  }
}

export const uploadStorage: ModuleStorage<UploadRepository> = {
  name: 'upload',
  entities: [UploadFileEntity, ComponentFileEntity],
  migrations: [UploadFiles1765100000000, UploadComponentFiles1765200000000],
  repository: (db) => new UploadRepository(db),
};
