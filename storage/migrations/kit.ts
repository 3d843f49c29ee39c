/** Helpers every migration shares: which database it runs on, and MySQL's exact-match collation. */
import type { QueryRunner, TableColumnOptions } from 'typeorm';

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

/** The column builders of a migration, for the database it runs on. */
export interface ColumnKit {
  readonly dialect: Dialect;
  /** A UTF-8 text column, compared byte for byte on MySQL (exact-match collation). */
  text(name: string, options?: Partial<TableColumnOptions>): TableColumnOptions;
  varchar(name: string, length: number, options?: Partial<TableColumnOptions>): TableColumnOptions;
  /** Text that may exceed 64 KiB: MEDIUMTEXT on MySQL, TEXT elsewhere. */
  largeText(name: string): TableColumnOptions;
  /** UTC milliseconds since the epoch. */
  millis(name: string, nullable?: boolean): TableColumnOptions;
}

/**
 * The column conventions every migration follows, made once for the database it runs on. The core
 * migrations keep their own copies as they shipped; new ones (the modules' too) use this.
 */
export async function columnKit(queryRunner: QueryRunner): Promise<ColumnKit> {
  const dialect = dialectOf(queryRunner);
  const collation = dialect === 'mysql' ? await mysqlBinaryCollation(queryRunner) : undefined;
  const text = (name: string, options: Partial<TableColumnOptions> = {}): TableColumnOptions => ({
    name,
    type: 'text',
    ...(collation ? { charset: 'utf8mb4', collation } : {}),
    ...options,
  });
  return {
    dialect,
    text,
    varchar: (name, length, options = {}) => text(name, { type: 'varchar', length: String(length), ...options }),
    largeText: (name) => text(name, { type: dialect === 'mysql' ? 'mediumtext' : 'text' }),
    millis: (name, nullable = false) => ({ name, type: 'bigint', ...(nullable ? { isNullable: true } : {}) }),
  };
}
