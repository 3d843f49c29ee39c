/**
 * Session records (PRIVACY.md P6) and anonymous statistics (P12).
 *
 * - session_records names a JID and an IP: every row has its end time (`ended_at`) and belongs to
 *   the retention class "detailed logs" (P13): deleted once older than retention.detailedLogs.
 * - stat_points is anonymous by construction: series name, resolution, bucket start and value, and
 *   no column that could hold a JID, an IP or content. Kept as an RRD would: minute points for a
 *   day, hourly rollups for about 60 days, daily rollups for retention.statistics (default forever).
 *
 * Same portable Table API style as the initial schema: BIGINT millisecond timestamps, explicit
 * utf8mb4 binary collation on MySQL, no reserved words as column names.
 */
import { Table, type MigrationInterface, type QueryRunner, type TableColumnOptions } from 'typeorm';
import { dialectOf, mysqlBinaryCollation } from './kit.js';

export class Statistics1732600000200 implements MigrationInterface {
  name = 'Statistics1732600000200';

  async up(queryRunner: QueryRunner): Promise<void> {
    const dialect = dialectOf(queryRunner);
    const collation = dialect === 'mysql' ? await mysqlBinaryCollation(queryRunner) : undefined;
    const str = (name: string, type: string, options: Partial<TableColumnOptions> = {}): TableColumnOptions => ({
      name,
      type,
      ...(collation ? { charset: 'utf8mb4', collation } : {}),
      ...options,
    });
    const bigint = (name: string, options: Partial<TableColumnOptions> = {}): TableColumnOptions => ({ name, type: 'bigint', ...options });

    await queryRunner.createTable(
      new Table({
        name: 'session_records',
        columns: [
          // SQLite only allows AUTOINCREMENT on INTEGER PRIMARY KEY (which is 64-bit there anyway).
          { name: 'id', type: dialect === 'sqlite' ? 'integer' : 'bigint', isPrimary: true, isGenerated: true, generationStrategy: 'increment' },
          // A full JID can be 3071 bytes (RFC 7622): text, never indexed.
          str('jid', 'text'),
          str('account', 'text'),
          str('ip', 'varchar', { length: '64' }),
          { name: 'secure', type: 'boolean' },
          bigint('started_at'),
          bigint('ended_at'),
          bigint('stanzas_in'),
          bigint('stanzas_out'),
          bigint('bytes_in'),
          bigint('bytes_out'),
          str('close_reason', 'varchar', { length: '64', isNullable: true }),
        ],
        indices: [{ name: 'ix_session_records_ended_at', columnNames: ['ended_at'] }],
      }),
    );

    await queryRunner.createTable(
      new Table({
        name: 'stat_points',
        columns: [
          // 191 characters: a utf8mb4 key part that fits every MySQL row format.
          str('series', 'varchar', { length: '191', isPrimary: true }),
          str('resolution', 'varchar', { length: '8', isPrimary: true }),
          bigint('bucket_start', { isPrimary: true }),
          { name: 'value', type: 'double precision' },
        ],
        indices: [{ name: 'ix_stat_points_resolution_bucket', columnNames: ['resolution', 'bucket_start'] }],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('stat_points', true);
    await queryRunner.dropTable('session_records', true);
  }
}
