/**
 * PostgreSQL: `pg_dump` (one repeatable-read snapshot) makes a plain SQL dump; `psql` loads it in
 * a single transaction.
 */
import { describeDatabase, redact, type StorageConfig } from '../datasource.js';
import { BackupError, serverTarget, truthy, type RawDb } from './common.js';
import { TOOLS, findTool, runTool, toolEnv, type RunningTool } from './tools.js';

/** A plain connection to the configured PostgreSQL database. */
export async function openPostgres(cfg: StorageConfig): Promise<RawDb> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: cfg.url, connectionTimeoutMillis: 10_000, application_name: 'gatehouse-backup' });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    throw new BackupError(redact(`cannot connect to ${describeDatabase(cfg)}: ${(err as Error).message}`, cfg));
  }
  return {
    kind: 'postgres',
    async query<T>(sql: string, params: unknown[] = []) {
      const r = await client.query(sql, params);
      return r.rows as T[];
    },
    async close() {
      await client.end().catch(() => undefined);
    },
  };
}

const PG_SYSTEM_SCHEMA = `nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%'`;

export const POSTGRES_TABLES = `SELECT CASE WHEN n.nspname = current_schema() THEN c.relname ELSE n.nspname || '.' || c.relname END AS name
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND ${PG_SYSTEM_SCHEMA} ORDER BY 1`;

/** Drops every schema but public, and every table, view, sequence, routine and type in public (restore --force). */
export async function wipePostgres(db: RawDb): Promise<void> {
  const schemas = await db.query<{ nspname: string }>(`SELECT nspname FROM pg_namespace WHERE ${PG_SYSTEM_SCHEMA}`);
  const q = (s: string) => '"' + s.replace(/"/g, '""') + '"';
  await db.query('BEGIN');
  try {
    for (const { nspname } of schemas) {
      if (nspname !== 'public') {
        await db.query(`DROP SCHEMA ${q(nspname)} CASCADE`);
        continue;
      }
      // public stays (with its owner and grants); everything in it goes.
      const objects = await db.query<{ kind: string; name: string }>(
        `SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind,
                c.relname AS name
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          ORDER BY c.relkind = 'S'`,
      );
      for (const o of objects) await db.query(`DROP ${o.kind} IF EXISTS public.${q(o.name)} CASCADE`);
      const routines = await db.query<{ sig: string }>(
        `SELECT p.oid::regprocedure::text AS sig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p')
            AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')`,
      );
      for (const r of routines) await db.query(`DROP ROUTINE IF EXISTS ${r.sig} CASCADE`);
      const types = await db.query<{ name: string }>(
        `SELECT t.typname AS name FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
          WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'r', 'm')
            AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')`,
      );
      for (const t of types) await db.query(`DROP TYPE IF EXISTS public.${q(t.name)} CASCADE`);
    }
    await db.query('COMMIT');
  } catch (err) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

export async function postgresSize(db: RawDb): Promise<number | null> {
  const [r] = await db.query<{ n: string }>(`SELECT pg_database_size(current_database()) AS n`);
  return r ? Number(r.n) : null;
}

function pgEnv(cfg: StorageConfig): NodeJS.ProcessEnv {
  const t = serverTarget(cfg);
  return toolEnv({
    PGHOST: t.params.get('host') ?? t.host,
    PGPORT: String(t.port),
    PGUSER: t.user,
    PGPASSWORD: t.password,
    PGDATABASE: t.database,
    PGSSLMODE: t.params.get('sslmode') ?? (truthy(t.params.get('ssl')) ? 'require' : undefined),
    PGAPPNAME: 'gatehouse-backup',
    PGCONNECT_TIMEOUT: '10',
    PGOPTIONS: '--client-min-messages=warning',
  });
}

/** Starts the dump: the SQL comes out of the tool's standard output. */
export function startPostgresDump(cfg: StorageConfig): RunningTool {
  const args = ['--format=plain', '--no-owner', '--no-privileges', '--encoding=UTF8', '--no-password'];
  return runTool(findTool(TOOLS.pgDump), args, pgEnv(cfg), cfg, { stdin: false, stdout: true });
}

/** Starts the load: the dump goes into the tool's standard input. */
export function startPostgresLoad(cfg: StorageConfig): RunningTool {
  return runTool(findTool(TOOLS.psql), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction', '--no-password', '-f', '-'], pgEnv(cfg), cfg, { stdin: true, stdout: false });
}
