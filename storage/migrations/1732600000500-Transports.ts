/**
 * Transport tables (transports/kit, server/storage/repos/transports.ts): registrations, the
 * credential vault (P9) and the connection audit log (P10, retention class "detailed logs", P13).
 * Same portable Table API conventions as the initial schema.
 */
import { Table, type MigrationInterface, type QueryRunner, type TableColumnOptions } from 'typeorm';
import { dialectOf, mysqlBinaryCollation } from './kit.js';

export class Transports1732600000500 implements MigrationInterface {
  name = 'Transports1732600000500';

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
    const millis = (name: string): TableColumnOptions => ({ name, type: 'bigint' });

    await queryRunner.createTable(
      new Table({
        name: 'transport_registrations',
        columns: [
          varchar('network', 64, { isPrimary: true }),
          varchar('user_jid', 640, { isPrimary: true }),
          text('settings'),
          largeText('contacts'),
          millis('created_at'),
          millis('updated_at'),
        ],
      }),
    );

    await queryRunner.createTable(
      new Table({
        name: 'transport_credentials',
        columns: [
          varchar('network', 64, { isPrimary: true }),
          varchar('user_jid', 640, { isPrimary: true }),
          varchar('key_id', 16),
          varchar('nonce', 32),
          largeText('ciphertext'),
          varchar('tag', 32),
          millis('updated_at'),
        ],
        indices: [{ name: 'ix_transport_credentials_key_id', columnNames: ['key_id'] }],
        foreignKeys: [
          {
            name: 'fk_transport_credentials_registration',
            columnNames: ['network', 'user_jid'],
            referencedTableName: 'transport_registrations',
            referencedColumnNames: ['network', 'user_jid'],
            onDelete: 'CASCADE',
          },
        ],
      }),
    );

    await queryRunner.createTable(
      new Table({
        name: 'transport_audit',
        columns: [
          {
            name: 'id',
            type: dialect === 'sqlite' ? 'integer' : 'bigint',
            isPrimary: true,
            isGenerated: true,
            generationStrategy: 'increment',
          },
          millis('at'),
          varchar('user_jid', 640),
          varchar('network', 64),
          varchar('account', 255, { isNullable: true }),
          varchar('server', 255, { isNullable: true }),
          varchar('event', 16),
          varchar('reason', 512, { isNullable: true }),
        ],
        indices: [
          { name: 'ix_transport_audit_at', columnNames: ['at'] },
          { name: 'ix_transport_audit_user', columnNames: ['user_jid', 'at'] },
          { name: 'ix_transport_audit_network', columnNames: ['network', 'at'] },
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const table of ['transport_audit', 'transport_credentials', 'transport_registrations']) await queryRunner.dropTable(table, true);
  }
}
