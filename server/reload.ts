/**
 * What a reload may change (SIGHUP, `gatehouse reload`): the configuration read again from its file
 * is compared with the running one, setting by setting. What the server set up once at start and
 * cannot change under running connections (RESTART_ONLY) keeps its running value and is named in
 * the answer ("needs a restart: listen.c2s, storage"); everything else is put in force. main.ts
 * does the applying (certificates, connection caps, log level; the policy module decides what is in force and 'config/in-force' tells the modules).
 */
import { isDeepStrictEqual } from 'node:util';
import type { Config } from './config/index.js';

/**
 * Settings that keep their running value until a restart: the listeners' addresses, where the data
 * is, the log's file and format, the admin console's TLS mode, federation's settings (the s2s
 * service is built from them at start), the server's name and version answer (disco identity),
 * the backup schedule, and the hosts when the list of domains changes (the router serves a fixed
 * set; the hosts' own settings, such as registration and certificates, change live when the list
 * stays the same).
 */
export const RESTART_ONLY = [
  'dataDir',
  'storage',
  'listen.c2s',
  'listen.c2sDirectTls',
  'listen.components',
  'listen.s2s',
  'listen.admin',
  'listen.https',
  'log.file',
  'log.format',
  'admin.tls',
  's2s',
  'server',
  'backups',
] as const;

type Json = Record<string, unknown>;

function get(o: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((v, k) => (v !== null && typeof v === 'object' ? (v as Json)[k] : undefined), o);
}

/** A copy of `o` with `path` set to `value` (objects along the path copied, the rest shared). */
function withValue<T>(o: T, path: string, value: unknown): T {
  const [head, ...rest] = path.split('.');
  const copy = { ...(o as Json) };
  copy[head!] = rest.length === 0 ? value : withValue(copy[head!], rest.join('.'), value);
  return copy as T;
}

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** The key paths that differ, one level into sections (`c2s.maxConnections`, `components`). */
export function changedSettings(before: Config, after: Config): string[] {
  const out: string[] = [];
  for (const key of Object.keys(after) as (keyof Config)[]) {
    const a: unknown = before[key];
    const b: unknown = after[key];
    if (isDeepStrictEqual(a, b)) continue;
    if (isObject(a) && isObject(b)) {
      for (const sub of new Set([...Object.keys(a), ...Object.keys(b)])) if (!isDeepStrictEqual(a[sub], b[sub])) out.push(`${key}.${sub}`);
    } else out.push(key);
  }
  return out;
}

const domainsOf = (c: Config) => c.hosts.map((h) => h.domain);

/**
 * The configuration a reload puts in force: `file` with the running value of every restart-only
 * setting that changed; those are named in `needsRestart`, the others in `changed`.
 */
export function reloadedConfig(running: Config, file: Config): { next: Config; changed: string[]; needsRestart: string[] } {
  let next = file;
  const needsRestart: string[] = [];
  for (const path of RESTART_ONLY) {
    if (isDeepStrictEqual(get(running, path), get(file, path))) continue;
    needsRestart.push(path);
    next = withValue(next, path, get(running, path));
  }
  if (!isDeepStrictEqual(domainsOf(running), domainsOf(file))) {
    needsRestart.push('hosts');
    next = { ...next, hosts: running.hosts };
  }
  return { next, changed: changedSettings(running, next), needsRestart };
}
