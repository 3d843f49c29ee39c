/**
 * Privacy logs (PRIVACY.md P7, P8, P13): failed logins and registrations, delivery failures, and
 * the temporary blocks of the failed-login guard. Every table names an IP or a JID, so every row
 * has a timestamp and belongs to a retention class (deleted after retention.detailedLogs; blocks
 * once they expire).
 *
 * delivery_failures has, on purpose, no column that could hold a stanza's content: only the time,
 * the two bare JIDs, the stanza kind and the error condition (P8).
 *
 * Same portable Table API style as the initial schema: BIGINT millisecond timestamps, explicit
 * utf8mb4 binary collation on MySQL, no reserved words as column names (condition, from, to,
 * until are reserved in MySQL or PostgreSQL).
 */
import { Table, type MigrationInterface, type QueryRunner, type TableColumnOptions } from 'typeorm';
import { dialectOf, mysqlBinaryCollation } from './kit.js';

export class PrivacyLogs1732600000100 implements MigrationInterface {
  name = 'PrivacyLogs1732600000100';

  async up(queryRunner: QueryRunner): Promise<void> {
    const dialect = dialectOf(queryRunner);
    const collation = dialect === 'mysql' ? await mysqlBinaryCollation(queryRunner) : undefined;
    const varchar = (name: string, length: number, options: Partial<TableColumnOptions> = {}): TableColumnOptions => ({
      name,
      type: 'varchar',
      length: String(length),
      ...(collation ? { charset: 'utf8mb4', collation } : {}),
      ...options,
    });
    const millis = (name: string): TableColumnOptions => ({ name, type: 'bigint' });
    const id = (): TableColumnOptions => ({
      name: 'id',
      type: dialect === 'sqlite' ? 'integer' : 'bigint',
      isPrimary: true,
      isGenerated: true,
      generationStrategy: 'increment',
    });

    await queryRunner.createTable(
      new Table({
        name: 'failed_logins',
        columns: [
          id(),
          millis('at'),
          varchar('ip', 45),
          varchar('host', 255),
          varchar('username', 255, { isNullable: true }),
          varchar('mechanism', 64),
          varchar('kind', 16),
          varchar('error_condition', 64),
        ],
        indices: [
          { name: 'ix_failed_logins_at', columnNames: ['at'] },
          { name: 'ix_failed_logins_ip', columnNames: ['ip', 'at'] },
        ],
      }),
    );

    await queryRunner.createTable(
      new Table({
        name: 'delivery_failures',
        columns: [id(), millis('at'), varchar('sender', 3071), varchar('recipient', 3071), varchar('stanza_kind', 16), varchar('error_condition', 64)],
        indices: [{ name: 'ix_delivery_failures_at', columnNames: ['at'] }],
      }),
    );

    await queryRunner.createTable(
      new Table({
        name: 'auth_blocks',
        columns: [
          varchar('kind', 8, { isPrimary: true }),
          varchar('subject', 600, { isPrimary: true }),
          millis('created_at'),
          millis('expires_at'),
          { name: 'failures', type: 'integer' },
        ],
        indices: [{ name: 'ix_auth_blocks_expires_at', columnNames: ['expires_at'] }],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const table of ['auth_blocks', 'delivery_failures', 'failed_logins']) await queryRunner.dropTable(table, true);
  }
}
