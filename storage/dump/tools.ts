/**
 * The database's own dump and load programs (mariadb-dump/mariadb, pg_dump/psql): found on PATH,
 * run with the password in the environment (never on a command line), failing with one line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';
import { redact, type StorageConfig } from '../datasource.js';
import { BACKUP_KEY_ENV, BackupError } from './common.js';

interface Tool {
  /** Candidates, first found wins. */
  names: string[];
  pkg: string;
}

export const TOOLS = {
  mysqlDump: { names: ['mariadb-dump', 'mysqldump'], pkg: 'mariadb-client' },
  mysqlClient: { names: ['mariadb', 'mysql'], pkg: 'mariadb-client' },
  pgDump: { names: ['pg_dump'], pkg: 'postgresql-client' },
  psql: { names: ['psql'], pkg: 'postgresql-client' },
} satisfies Record<string, Tool>;

export function findTool(tool: Tool): string {
  const dirs = (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(path.delimiter).filter(Boolean);
  for (const name of tool.names) {
    for (const dir of dirs) {
      const p = path.join(dir, name);
      try {
        if (statSync(p).isFile()) return p;
      } catch {
        // not here
      }
    }
  }
  throw new BackupError(`${tool.names.join(' or ')} not found: install the Debian package ${tool.pkg}`);
}

/** Environment for a database tool: the password in MYSQL_PWD / PGPASSWORD, never the backup key. */
export function toolEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env[BACKUP_KEY_ENV];
  delete env.MYSQL_PWD;
  delete env.PGPASSWORD;
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

export interface RunningTool {
  child: ChildProcess;
  /** Resolves when the tool exited successfully; rejects with a one-line BackupError otherwise. */
  exited: Promise<void>;
}

export function runTool(file: string, args: string[], env: NodeJS.ProcessEnv, cfg: StorageConfig, stdio: { stdin: boolean; stdout: boolean }): RunningTool {
  const child = spawn(file, args, { env, stdio: [stdio.stdin ? 'pipe' : 'ignore', stdio.stdout ? 'pipe' : 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    if (stderr.length < 64 * 1024) stderr += d;
  });
  const name = path.basename(file);
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', (err) => reject(new BackupError(`cannot run ${name}: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
    child.once('close', (code, signal) => {
      if (code === 0) return resolve();
      reject(new BackupError(`${name} failed (${signal ?? `exit code ${code}`}): ${toolMessage(stderr, cfg)}`));
    });
  });
  exited.catch(() => undefined);
  return { child, exited };
}

/**
 * The error lines of a tool's standard error, shortened: a failing statement's data (the rows of a
 * COPY, a value in a duplicate-key message) never needs to reach the operator's screen or log.
 */
function toolMessage(stderr: string, cfg: StorageConfig): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^(CONTEXT|DETAIL|LINE \d+|HINT|QUERY):/.test(l) && !/^\^/.test(l) && !/^Warning: Using a password/.test(l));
  const text = lines.slice(0, 3).join('; ').slice(0, 300);
  return redact(text || 'no message', cfg);
}
