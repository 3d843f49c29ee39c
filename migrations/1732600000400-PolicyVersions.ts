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

type Dialect = 'sqlite' | 'mysql' | 'postgres';

function dialectOf(queryRunner: QueryRunner): Dialect {
  const type = queryRunner.connection.options.type;
  if (type === 'better-sqlite3' || type === 'sqljs') return 'sqlite';
  if (type === 'mysql' || type === 'mariadb' || type === 'aurora-mysql') return 'mysql';
  if (type === 'postgres' || type === 'aurora-postgres') return 'postgres';
  throw new Error(`unsupported database type ${type}`);
}

async function mysqlBinaryCollation(queryRunner: QueryRunner): Promise<string> {
  const rows: { Collation: string }[] = await queryRunner.query(`SHOW COLLATION WHERE Collation IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin')`);
  const names = new Set(rows.map((r) => r.Collation));
  if (names.has('utf8mb4_nopad_bin')) return 'utf8mb4_nopad_bin';
  if (names.has('utf8mb4_0900_bin')) return 'utf8mb4_0900_bin';
  return 'utf8mb4_bin';
}

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
