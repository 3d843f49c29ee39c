/** Helpers every migration shares: which database it runs on, and MySQL's exact-match collation. */
import type { QueryRunner } from 'typeorm';

export type Dialect = 'sqlite' | 'mysql' | 'postgres';

export function dialectOf(queryRunner: QueryRunner): Dialect {
  const type = queryRunner.connection.options.type;
  if (type === 'better-sqlite3' || type === 'sqljs') return 'sqlite';
  if (type === 'mysql' || type === 'mariadb' || type === 'aurora-mysql') return 'mysql';
  if (type === 'postgres' || type === 'aurora-postgres') return 'postgres';
  throw new Error(`unsupported database type ${type}`);
}

/** The best exact (binary, no-pad) utf8mb4 collation the MySQL/MariaDB server offers. */
export async function mysqlBinaryCollation(queryRunner: QueryRunner): Promise<string> {
  const rows: { Collation: string }[] = await queryRunner.query(
    `SHOW COLLATION WHERE Collation IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin')`,
  );
  const names = new Set(rows.map((r) => r.Collation));
  if (names.has('utf8mb4_nopad_bin')) return 'utf8mb4_nopad_bin'; // MariaDB >= 10.2
  if (names.has('utf8mb4_0900_bin')) return 'utf8mb4_0900_bin'; // MySQL >= 8.0
  return 'utf8mb4_bin';
}
