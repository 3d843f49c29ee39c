/**
 * Privacy policy versions (PRIVACY.md P22): every published version of the generated policy with
 * the hash of its text, the rendered document (both languages, and the facts it was rendered
 * from), when it was announced, from when it is in force, and the reason when it was a technical
 * change on short notice.
 *
 * Retention class: public record. A row holds no user data (no account JID, no IP): only what the
 * operator's configuration publishes (domains, contact, retention periods), so the table is kept
 * for as long as the server runs, like the policy history on a web site.
 *
 * Same portable Table API style as the initial schema: BIGINT millisecond timestamps, explicit
 * utf8mb4 binary collation on MySQL, MEDIUMTEXT on MySQL for the document.
 */
import { Table, type MigrationInterface, type QueryRunner, type TableColumnOptions } from 'typeorm';
import { dialectOf, mysqlBinaryCollation } from './kit.js';

export class PolicyVersions1732600000400 implements MigrationInterface {
  name = 'PolicyVersions1732600000400';

  async up(queryRunner: QueryRunner): Promise<void> {
    const dialect = dialectOf(queryRunner);
    const collation = dialect === 'mysql' ? await mysqlBinaryCollation(queryRunner) : undefined;
    const text = (name: string, type: string, options: Partial<TableColumnOptions> = {}): TableColumnOptions => ({
      name,
      type,
      ...(collation ? { charset: 'utf8mb4', collation } : {}),
      ...options,
    });
    const millis = (name: string): TableColumnOptions => ({ name, type: 'bigint' });

    await queryRunner.createTable(
      new Table({
        name: 'policy_versions',
        columns: [
          { name: 'id', type: 'integer', isPrimary: true, isGenerated: true, generationStrategy: 'increment' },
          text('text_hash', 'varchar', { length: '64' }),
          text('document', dialect === 'mysql' ? 'mediumtext' : 'text'),
          millis('announced_at'),
          millis('effective_at'),
          text('technical_reason', 'varchar', { length: '1000', isNullable: true }),
        ],
        indices: [{ name: 'ix_policy_versions_effective_at', columnNames: ['effective_at'] }],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('policy_versions', true);
  }
}
