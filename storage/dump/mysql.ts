/**
 * MariaDB/MySQL: `mariadb-dump --single-transaction` (one InnoDB snapshot, no table locks) makes
 * the dump; the `mariadb` client loads it.
 */
import { describeDatabase, redact, type StorageConfig } from '../datasource.js';
import { BackupError, serverTarget, truthy, type RawDb, type ServerTarget } from './common.js';
import { TOOLS, findTool, runTool, toolEnv, type RunningTool } from './tools.js';

/** A plain connection to the configured MariaDB/MySQL database. */
export async function openMysql(cfg: StorageConfig): Promise<RawDb> {
  const { default: mysql } = await import('mysql2/promise');
  const t = serverTarget(cfg);
  const ssl = t.params.get('ssl') ?? t.params.get('sslmode');
  const conn = await mysql
    .createConnection({
      host: t.host,
      port: t.port,
      user: t.user,
      password: t.password,
      database: t.database,
      charset: 'utf8mb4',
      supportBigNumbers: true,
      bigNumberStrings: true,
      dateStrings: true,
      connectTimeout: 10_000,
      ...(t.params.get('socket') ? { socketPath: t.params.get('socket')! } : {}),
      ...(truthy(ssl) ? { ssl: {} } : {}),
    })
    .catch((err: unknown) => {
      throw new BackupError(redact(`cannot connect to ${describeDatabase(cfg)}: ${(err as Error).message}`, cfg));
    });
  return {
    kind: 'mysql',
    async query<T>(sql: string, params: unknown[] = []) {
      const [rows] = await conn.query(sql, params);
      return (Array.isArray(rows) ? rows : []) as T[];
    },
    async close() {
      await conn.end().catch(() => undefined);
    },
  };
}

export const MYSQL_TABLES = `SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME`;

/** Drops every table and view (restore --force). */
export async function wipeMysql(db: RawDb): Promise<void> {
  const rows = await db.query<{ name: string; type: string }>(
    `SELECT TABLE_NAME AS name, TABLE_TYPE AS type FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()`,
  );
  await db.query('SET FOREIGN_KEY_CHECKS = 0');
  try {
    for (const r of rows) {
      const id = '`' + r.name.replace(/`/g, '``') + '`';
      await db.query(r.type === 'VIEW' ? `DROP VIEW IF EXISTS ${id}` : `DROP TABLE IF EXISTS ${id}`);
    }
  } finally {
    await db.query('SET FOREIGN_KEY_CHECKS = 1');
  }
}

export async function mysqlSize(db: RawDb): Promise<number | null> {
  const [r] = await db.query<{ n: string | number | null }>(
    `SELECT SUM(DATA_LENGTH + INDEX_LENGTH) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()`,
  );
  return r?.n ? Number(r.n) : null;
}

function mysqlArgs(t: ServerTarget): { args: string[]; env: NodeJS.ProcessEnv } {
  const args: string[] = [];
  const socket = t.params.get('socket');
  if (socket) args.push(`--socket=${socket}`, '--protocol=SOCKET');
  else args.push(`--host=${t.host}`, `--port=${t.port}`, '--protocol=TCP');
  if (t.user) args.push(`--user=${t.user}`);
  if (truthy(t.params.get('ssl') ?? t.params.get('sslmode'))) args.push('--ssl');
  args.push('--default-character-set=utf8mb4');
  return { args, env: toolEnv({ MYSQL_PWD: t.password }) };
}

/** Starts the dump: the SQL comes out of the tool's standard output. */
export function startMysqlDump(cfg: StorageConfig): RunningTool {
  const t = serverTarget(cfg);
  const { args, env } = mysqlArgs(t);
  args.push('--single-transaction', '--quick', '--hex-blob', '--no-tablespaces', '--triggers', '--skip-dump-date', t.database);
  return runTool(findTool(TOOLS.mysqlDump), args, env, cfg, { stdin: false, stdout: true });
}

/** Starts the load: the dump goes into the tool's standard input. */
export function startMysqlLoad(cfg: StorageConfig): RunningTool {
  const t = serverTarget(cfg);
  const { args, env } = mysqlArgs(t);
  args.push('--binary-mode', '--batch', t.database);
  return runTool(findTool(TOOLS.mysqlClient), args, env, cfg, { stdin: true, stdout: false });
}
