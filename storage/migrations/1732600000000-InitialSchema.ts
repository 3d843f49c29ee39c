/**
 * Initial schema. Written only with the QueryRunner Table API so that the same migration runs on
 * SQLite, MariaDB/MySQL and PostgreSQL. Migrations are frozen once released: later schema changes
 * get a new migration class, never an edit here.
 *
 * Portable choices:
 * - timestamps: BIGINT milliseconds since the epoch (UTC);
 * - binary (SCRAM salt/keys): base64 text;
 * - large XML (offline stanzas, vCards, private XML): TEXT on SQLite/PostgreSQL, MEDIUMTEXT (16 MiB)
 *   on MySQL, whose TEXT holds only 64 KiB;
 * - on MySQL every string column is utf8mb4 with a binary, no-pad collation (whatever the database
 *   default is), so emoji/CJK are stored, and keys compare exactly as on SQLite and PostgreSQL: a
 *   case- or accent-insensitive collation would make "café" and "cafe" the same account.
 */
import { Table, type MigrationInterface, type QueryRunner, type TableColumnOptions } from 'typeorm';
import { dialectOf, mysqlBinaryCollation } from './kit.js';

export class InitialSchema1732600000000 implements MigrationInterface {
  name = 'InitialSchema1732600000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const dialect = dialectOf(queryRunner);
    const collation = dialect === 'mysql' ? await mysqlBinaryCollation(queryRunner) : undefined;

    const text = (name: string, options: Partial<TableColumnOptions> = {}): TableColumnOptions => ({
      name,
      type: 'text',
      ...(collation ? { charset: 'utf8mb4', collation } : {}),
      ...options,
    });
    const varchar = (name: string, length: number, options: Partial<TableColumnOptions> = {}): TableColumnOptions =>
      text(name, { type: 'varchar', length: String(length), ...options });
    const largeText = (name: string): TableColumnOptions => text(name, { type: dialect === 'mysql' ? 'mediumtext' : 'text' });
    const int = (name: string, options: Partial<TableColumnOptions> = {}): TableColumnOptions => ({ name, type: 'integer', ...options });
    const millis = (name: string, nullable = false): TableColumnOptions => ({ name, type: 'bigint', isNullable: nullable });
    const bool = (name: string): TableColumnOptions => ({ name, type: 'boolean' });
    const accountFk = (table: string, column = 'account_id') => ({
      name: `fk_${table}_account`,
      columnNames: [column],
      referencedTableName: 'accounts',
      referencedColumnNames: ['id'],
      onDelete: 'CASCADE',
    });

    await queryRunner.createTable(
      new Table({
        name: 'accounts',
        columns: [
          int('id', { isPrimary: true, isGenerated: true, generationStrategy: 'increment' }),
          varchar('username', 255),
          varchar('host', 255),
          millis('created_at'),
          millis('last_used_at', true),
          millis('warned_at', true),
        ],
        indices: [{ name: 'uq_accounts_host_username', columnNames: ['host', 'username'], isUnique: true }],
      }),
    );

    await queryRunner.createTable(
      new Table({
        name: 'scram_verifiers',
        columns: [
          int('account_id', { isPrimary: true }),
          varchar('hash', 16, { isPrimary: true }),
          varchar('salt', 512),
          int('iterations'),
          varchar('stored_key', 255),
          varchar('server_key', 255),
        ],
        foreignKeys: [accountFk('scram_verifiers')],
      }),
    );

    await queryRunner.createTable(
      new Table({
        name: 'roster_items',
        columns: [
          int('account_id', { isPrimary: true }),
          varchar('contact', 640, { isPrimary: true }),
          varchar('name', 1023, { isNullable: true }),
          varchar('subscription', 8),
          bool('ask'),
          bool('pending_in'),
          bool('approved'),
          text('groups'),
        ],
        indices: [{ name: 'ix_roster_items_contact', columnNames: ['contact'] }],
        foreignKeys: [accountFk('roster_items')],
      }),
    );

    await queryRunner.createTable(
      new Table({
        name: 'roster_versions',
        columns: [int('account_id', { isPrimary: true }), { name: 'version', type: 'bigint' }],
        foreignKeys: [accountFk('roster_versions')],
      }),
    );

    await queryRunner.createTable(
      new Table({
        name: 'offline_messages',
        columns: [
          // SQLite only allows AUTOINCREMENT on INTEGER PRIMARY KEY (which is 64-bit there anyway).
          {
            name: 'id',
            type: dialect === 'sqlite' ? 'integer' : 'bigint',
            isPrimary: true,
            isGenerated: true,
            generationStrategy: 'increment',
          },
          int('account_id'),
          largeText('stanza'),
          millis('received_at'),
        ],
        indices: [
          { name: 'ix_offline_messages_account_id', columnNames: ['account_id', 'id'] },
          { name: 'ix_offline_messages_received_at', columnNames: ['received_at'] },
        ],
        foreignKeys: [accountFk('offline_messages')],
      }),
    );

    await queryRunner.createTable(
      new Table({
        name: 'kv_items',
        columns: [
          int('account_id', { isPrimary: true }),
          varchar('kind', 16, { isPrimary: true }),
          varchar('item_key', 512, { isPrimary: true }),
          largeText('xml'),
        ],
        foreignKeys: [accountFk('kv_items')],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const table of ['kv_items', 'offline_messages', 'roster_versions', 'roster_items', 'scram_verifiers', 'accounts']) {
      await queryRunner.dropTable(table, true);
    }
  }
}
