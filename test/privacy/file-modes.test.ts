/**
 * The data directory holds everything the server stores (accounts, rosters, offline messages, logs
 * naming JIDs and IPs): it and its files are for the server's user only. Fresh ones are created
 * 0700/0600 (the CLI runs with umask 077); looser existing ones are reported at start.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServerProcess } from '../helpers/server-process.js';
import { startTestServer } from '../helpers/server.js';
import { TestClient } from '../helpers/xmpp-client.js';

// What most shells give a process; the server must not depend on a stricter one.
process.umask(0o022);

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'gatehouse-modes-'));
  dirs.push(d);
  return d;
}

/** Every path under `root` (itself included) with its permission bits, as 'relative: 755'. */
function modes(root: string): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    const st = lstatSync(p);
    out.push(`${path.relative(root, p) || '.'}: ${(st.mode & 0o777).toString(8)}`);
    if (st.isDirectory()) for (const name of readdirSync(p)) walk(path.join(p, name));
  };
  walk(root);
  return out.sort();
}

const open = (list: string[]) => list.filter((l) => (parseInt(l.split(': ')[1]!, 8) & 0o077) !== 0);

test('P21 gatehouse start creates a fresh data directory 0700 with its database, certificate and log files 0600', async () => {
  const dir = tempDir();
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'logs', 'gatehouse.log');
  const server = await startServerProcess(dir, {
    dataDir,
    hosts: [{ domain: 'localhost', registration: 'open' }],
    listen: { c2s: [{ host: '127.0.0.1', port: 0 }], c2sDirectTls: [], https: [] },
    auth: { scramIterations: 4096 },
    log: { level: 'info', file: logFile },
  });
  try {
    // A write, so the SQLite WAL and shared-memory files exist.
    const c = await TestClient.connect({ port: server.port });
    assert.equal((await c.register('alice', 'alice-pw')).attrs.type, 'result');
    c.destroy();
    const list = modes(dataDir);
    for (const f of ['gatehouse.sqlite', 'gatehouse.sqlite-wal', 'gatehouse.sqlite-shm', 'certs/selfsigned.key']) assert.ok(list.some((l) => l.startsWith(`${f}: `)), `${f} in ${list.join(', ')}`);
    assert.ok(list.includes('.: 700'), list.join(', '));
    assert.deepEqual(open(list), [], 'nothing in the data directory is open to group or others');
    assert.deepEqual(open(modes(path.dirname(logFile))), [], 'the log directory and file are private');
  } finally {
    server.proc.kill('SIGTERM');
    await server.exited;
  }
});

test('P21 a server started in-process (any umask) creates the data directory 0700 and the SQLite files 0600', async () => {
  const dataDir = path.join(tempDir(), 'data');
  const ts = await startTestServer({ config: { dataDir } });
  try {
    const c = await ts.user('bob', 'bob-pw');
    await c.close();
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    for (const f of ['gatehouse.sqlite', 'gatehouse.sqlite-wal', 'gatehouse.sqlite-shm']) assert.equal(statSync(path.join(dataDir, f)).mode & 0o777, 0o600, f);
  } finally {
    await ts.stop();
  }
});

test('P21 an existing data directory or database that others can read is reported at start (path and mode)', async () => {
  const dataDir = path.join(tempDir(), 'data');
  mkdirSync(dataDir);
  chmodSync(dataDir, 0o755);
  const db = path.join(dataDir, 'gatehouse.sqlite');
  writeFileSync(db, '');
  chmodSync(db, 0o644);
  const ts = await startTestServer({ config: { dataDir } });
  try {
    const warnings = ts.logLines.filter((l) => /warn/i.test(l) && /other users/.test(l));
    assert.ok(warnings.some((l) => l.includes(dataDir) && /mode=0?755/.test(l)), ts.logLines.join('\n'));
    assert.ok(warnings.some((l) => l.includes(db) && /mode=0?644/.test(l)), ts.logLines.join('\n'));
    // Reported, not changed: the operator may have a reason (a backup user in the group).
    assert.equal(statSync(dataDir).mode & 0o777, 0o755);
  } finally {
    await ts.stop();
  }
});
