/**
 * Databases for tests. SQLite always (a fresh temporary directory per make()); MySQL/MariaDB when
 * GATEHOUSE_TEST_MYSQL_URL is set and PostgreSQL when GATEHOUSE_TEST_POSTGRES_URL is set. For those
 * every make() creates a fresh, uniquely named database on the URL's server (so test files can run
 * in parallel) and drop() removes it: close the storage before calling drop().
 *
 * If a URL is set but its server cannot be reached, make() throws: CI must fail, not skip.
 *
 * The MySQL test databases are created with the old latin1 default character set on purpose: the
 * migrations must not depend on the database default (every string column is utf8mb4 explicitly).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { redact, type StorageConfig } from './datasource.js';

export interface StorageTarget {
  name: string;
  make(): Promise<{ config: StorageConfig; drop(): Promise<void> }>;
}

const CONNECT_TIMEOUT_MS = 10_000;

function uniqueName(): string {
  return `gh_test_${randomBytes(6).toString('hex')}`;
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

function fail(what: string, url: string, err: unknown): Error {
  const msg = err instanceof AggregateError ? err.errors.map((e) => String((e as Error)?.message ?? e)).join('; ') : String((err as Error)?.message ?? err);
  return new Error(redact(`${what} (${url}): ${msg || String((err as { code?: unknown })?.code ?? err)}`.replace(/\s+/g, ' ')));
}

function sqliteTarget(): StorageTarget {
  return {
    name: 'sqlite',
    async make() {
      const dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-test-'));
      return {
        config: { type: 'sqlite', path: path.join(dir, 'gatehouse.sqlite') },
        drop: () => rm(dir, { recursive: true, force: true }),
      };
    },
  };
}

function mysqlTarget(url: string): StorageTarget {
  return {
    name: 'mysql',
    async make() {
      const { default: mysql } = await import('mysql2/promise');
      const u = new URL(url);
      const server = {
        host: u.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost',
        port: u.port ? Number(u.port) : 3306,
        user: u.username ? decodeURIComponent(u.username) : undefined,
        password: u.password ? decodeURIComponent(u.password) : undefined,
        connectTimeout: CONNECT_TIMEOUT_MS,
      };
      const exec = async (sql: string) => {
        const conn = await mysql.createConnection(server);
        try {
          await conn.query(sql);
        } finally {
          await conn.end().catch(() => undefined);
        }
      };
      const name = uniqueName();
      try {
        await exec(`CREATE DATABASE \`${name}\` CHARACTER SET latin1 COLLATE latin1_swedish_ci`);
      } catch (err) {
        throw fail('cannot create a MySQL test database', url, err);
      }
      let dropped = false;
      return {
        config: { type: 'mysql', url: withDatabase(url, name) },
        async drop() {
          if (dropped) return;
          dropped = true;
          await exec(`DROP DATABASE IF EXISTS \`${name}\``);
        },
      };
    },
  };
}

function postgresTarget(url: string): StorageTarget {
  return {
    name: 'postgres',
    async make() {
      const { default: pg } = await import('pg');
      const exec = async (sql: string) => {
        const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
        client.on('error', () => undefined);
        await client.connect();
        try {
          await client.query(sql);
        } finally {
          await client.end().catch(() => undefined);
        }
      };
      const name = uniqueName();
      try {
        await exec(`CREATE DATABASE "${name}" ENCODING 'UTF8' TEMPLATE template0`);
      } catch (err) {
        throw fail('cannot create a PostgreSQL test database', url, err);
      }
      let dropped = false;
      return {
        config: { type: 'postgres', url: withDatabase(url, name) },
        async drop() {
          if (dropped) return;
          dropped = true;
          try {
            await exec(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
          } catch (err) {
            if ((err as { code?: string }).code !== '42601') throw err; // before PostgreSQL 13: no WITH (FORCE)
            await exec(`DROP DATABASE IF EXISTS "${name}"`);
          }
        },
      };
    },
  };
}

export function storageTargets(): StorageTarget[] {
  const targets = [sqliteTarget()];
  const mysqlUrl = process.env.GATEHOUSE_TEST_MYSQL_URL;
  if (mysqlUrl) targets.push(mysqlTarget(mysqlUrl));
  const postgresUrl = process.env.GATEHOUSE_TEST_POSTGRES_URL;
  if (postgresUrl) targets.push(postgresTarget(postgresUrl));
  return targets;
}
