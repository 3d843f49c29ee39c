/**
 * The transport commands as processes: `transport NAME --config FILE` standalone against
 * Gatehouse, `audit transports` (formats, filters, P21 read logging), `vault rotate` (P9), and the
 * server's transport supervisor (child processes, restart with backoff, exit logging).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { reservedPort } from '../helpers/ports.js';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { openStorage, type StorageConfig } from '../../storage/datasource.js';
import { Vault, readKeyFile } from '../../transports/kit/vault.js';
import { startTestServer } from '../helpers/server.js';
import { createTransportsSupervisor } from '../../server/modules/transports/supervisor.js';
import { GW, SECRET, delay, errorOf, registerLegacy, serverModules, startServer, until } from './kit-harness.js';

const CLI = fileURLToPath(new URL('../../server/cli/transport.js', import.meta.url));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, GATEHOUSE_VAULT_KEY: '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

let dir: string;

before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-kit-cli-'));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeYaml(name: string, doc: unknown): string {
  const file = path.join(dir, name);
  writeFileSync(file, YAML.stringify(doc));
  return file;
}

const freePort = reservedPort;

describe('transport commands', () => {
  test('gatehouse transport fake --config FILE runs a transport standalone; SIGTERM says goodbye', async () => {
    const ts = await startServer();
    let child: ChildProcess | null = null;
    try {
      const config = writeYaml('standalone.yaml', {
        adapter: 'fake',
        component: { domain: GW, secret: SECRET, host: '127.0.0.1', port: ts.componentPort },
        storage: { type: 'sqlite', path: path.join(dir, 'standalone.sqlite') },
        vault: { keyFile: path.join(dir, 'standalone.key') },
        log: { level: 'debug' },
        network: { servers: ['irc.one'], accounts: { walter: 'pw-walter' } },
      });
      child = spawn(process.execPath, [CLI, 'transport', 'fake', '--config', config], { env: { ...process.env, GATEHOUSE_VAULT_KEY: '' } });
      let out = '';
      let err = '';
      child.stdout!.on('data', (d) => (out += d));
      child.stderr!.on('data', (d) => (err += d));
      await until(() => out.includes('transport fake running'), `the transport to start (${err})`, 15000);
      const walter = await ts.user('walter');
      await walter.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
      walter.send(x('presence'));
      const info = await walter.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoInfo })));
      assert.equal(info.getChild('query', NS.discoInfo)!.getChildren('identity').find((i) => i.attrs.category === 'gateway')!.attrs.type, 'fake');
      const bad = await registerLegacy(walter, { username: 'walter', password: 'nope' });
      assert.equal(errorOf(bad), 'not-acceptable');
      const ok = await registerLegacy(walter, { username: 'walter', password: 'pw-walter' });
      assert.equal(ok.attrs.type, 'result');
      assert.ok(existsSync(path.join(dir, 'standalone.key')));
      const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
      const bye = await walter.expect((el) => el.name === 'presence' && el.attrs.from === GW && el.attrs.type === 'unavailable');
      assert.match(bye.getChildText('status') ?? '', /going away/);
      assert.equal(err.includes('pw-walter') || out.includes('pw-walter'), false, 'no password in the output');
      // A bad secret is a clear, immediate error.
      const wrong = writeYaml('wrong-secret.yaml', { adapter: 'fake', component: { domain: GW, secret: 'wrong', port: ts.componentPort }, vault: { keyFile: path.join(dir, 'standalone.key') }, storage: { type: 'sqlite', path: path.join(dir, 'standalone.sqlite') } });
      const refused = await run(['transport', 'fake', '--config', wrong]);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /the XMPP server refused the component secret for gw\.localhost/);
      const unknown = await run(['transport', 'nosuch', '--config', wrong]);
      assert.equal(unknown.code, 2);
      assert.match(unknown.stderr, /adapter: the file is for adapter "fake"/);
    } finally {
      child?.kill('SIGKILL');
      await ts.stop();
    }
  });

  test('P13 a transport\'s log file is rotated and its old files deleted after retention.auditLog', async () => {
    const db: StorageConfig = { type: 'sqlite', path: path.join(dir, 'logrot.sqlite') };
    await (await openStorage(db)).close();
    const logFile = path.join(dir, 'logrot', 'irc.log');
    mkdirSync(path.dirname(logFile), { recursive: true });
    // Left from earlier runs: a rotated file long expired, and a current file whose lines are from yesterday.
    writeFileSync(path.join(dir, 'logrot', 'irc.log.2020-01-01T00'), 'old line naming alice@localhost\n');
    writeFileSync(logFile, 'yesterday naming bob@localhost\n');
    const yesterday = new Date(Date.now() - 86_400_000);
    utimesSync(logFile, yesterday, yesterday);
    const config = writeYaml('logrot.yaml', {
      adapter: 'irc',
      component: { domain: 'irc.localhost', secret: 'x' },
      storage: { type: 'sqlite', path: db.path },
      retention: { auditLog: '2h' },
      log: { file: logFile },
    });
    const res = await run(['audit', 'transports', '--config', config]);
    assert.equal(res.code, 0, res.stderr);
    const files = readdirSync(path.dirname(logFile)).sort();
    assert.ok(!files.includes('irc.log.2020-01-01T00'), `the expired file is deleted: ${files.join(', ')}`);
    // Yesterday's lines are older than 2 h: moved aside and deleted too; today's file has the P21 line.
    assert.ok(!files.some((f) => readFileSync(path.join(dir, 'logrot', f), 'utf8').includes('bob@localhost')), `yesterday's lines are gone: ${files.join(', ')}`);
    assert.match(readFileSync(logFile, 'utf8'), /transport connection log read/);
  });

  test('P10 P21 gatehouse audit transports: table, csv and json, filtered by user, network and time; the read is logged', async () => {
    const db: StorageConfig = { type: 'sqlite', path: path.join(dir, 'audit.sqlite') };
    const storage = await openStorage(db);
    const t = (m: number) => new Date(Date.UTC(2026, 5, 1, 12, m));
    try {
      await storage.transports.appendAudit({ at: t(0), userJid: 'alice@localhost', network: 'irc', account: 'alice', server: 'irc.libera.chat', event: 'connecting', reason: null });
      await storage.transports.appendAudit({ at: t(1), userJid: 'alice@localhost', network: 'irc', account: 'alice', server: 'irc.libera.chat', event: 'connected', reason: null });
      await storage.transports.appendAudit({ at: t(2), userJid: 'bob@localhost', network: 'matrix', account: '@bob:matrix.org', server: 'matrix.org', event: 'auth-failed', reason: 'M_FORBIDDEN, "invalid"' });
      await storage.transports.appendAudit({ at: t(3), userJid: 'alice@localhost', network: 'irc', account: 'alice', server: 'irc.libera.chat', event: 'disconnected', reason: 'Ping timeout' });
    } finally {
      await storage.close();
    }
    const transportConfig = writeYaml('audit-transport.yaml', { adapter: 'irc', component: { domain: 'irc.localhost', secret: 'x' }, storage: { type: 'sqlite', path: db.path } });
    const serverConfig = writeYaml('audit-server.yaml', { dataDir: path.join(dir, 'server-data'), storage: { type: 'sqlite', path: db.path } });

    const table = await run(['audit', 'transports', '--config', transportConfig]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trim().split('\n');
    assert.equal(lines.length, 5);
    assert.match(lines[0]!, /^TIME\s+USER\s+NETWORK\s+ACCOUNT\s+SERVER\s+EVENT\s+REASON$/);
    assert.match(lines[3]!, /bob@localhost\s+matrix\s+@bob:matrix.org\s+matrix.org\s+auth-failed\s+M_FORBIDDEN/);
    assert.match(table.stderr, /transport connection log read/, 'P21: the read is logged');

    const csv = await run(['audit', 'transports', '--config', serverConfig, '--jid', 'alice@localhost', '--format', 'csv']);
    assert.equal(csv.code, 0, csv.stderr);
    const rows = csv.stdout.trim().split('\r\n');
    assert.equal(rows[0], 'time,user,network,account,server,event,reason');
    assert.deepEqual(rows.slice(1).map((r) => r.split(',')[5]), ['connecting', 'connected', 'disconnected']);

    const json = await run(['audit', 'transports', '--config', serverConfig, '--network=matrix', '--format=json']);
    const parsed = JSON.parse(json.stdout);
    assert.deepEqual(parsed, [{ time: t(2).toISOString(), user: 'bob@localhost', network: 'matrix', account: '@bob:matrix.org', server: 'matrix.org', event: 'auth-failed', reason: 'M_FORBIDDEN, "invalid"' }]);

    const window = await run(['audit', 'transports', '--config', serverConfig, '--since', t(1).toISOString(), '--until', t(3).toISOString(), '--format', 'json']);
    assert.deepEqual(JSON.parse(window.stdout).map((r: { event: string }) => r.event), ['connected', 'auth-failed']);
    const recent = await run(['audit', 'transports', '--config', serverConfig, '--since', '1h', '--format', 'json']);
    assert.deepEqual(JSON.parse(recent.stdout), []);

    const badFormat = await run(['audit', 'transports', '--config', serverConfig, '--format', 'xml']);
    assert.equal(badFormat.code, 2);
    assert.match(badFormat.stderr, /--format must be table, csv or json/);
    const badTime = await run(['audit', 'transports', '--config', serverConfig, '--since', 'yesterday']);
    assert.equal(badTime.code, 2);
  });

  test('P9 gatehouse vault rotate re-encrypts every record with the new key in one go; a wrong key changes nothing', async () => {
    const db: StorageConfig = { type: 'sqlite', path: path.join(dir, 'vault.sqlite') };
    const oldKeyFile = path.join(dir, 'keys', 'old.key');
    const newKeyFile = path.join(dir, 'keys', 'new.key');
    const oldKey = readKeyFile(oldKeyFile, { create: true }).key;
    const marker = `rot-${randomBytes(6).toString('hex')}`;
    const storage = await openStorage(db);
    const users = ['a@localhost', 'b@localhost', 'c@example.org'];
    try {
      const v = new Vault(oldKey);
      for (const u of users) {
        await storage.transports.saveRegistration({ network: 'irc', userJid: u, settings: {}, contacts: [] }, v.seal(u, 'irc', { fields: { nick: u.split('@')[0]!, password: `${marker}-${u}` } }, new Date()), new Date());
      }
    } finally {
      await storage.close();
    }
    const config = writeYaml('rotate.yaml', { adapter: 'irc', component: { domain: 'irc.localhost', secret: 'x' }, storage: { type: 'sqlite', path: db.path }, vault: { keyFile: oldKeyFile } });
    const res = await run(['vault', 'rotate', '--config', config, '--new-key-file', newKeyFile]);
    assert.equal(res.code, 0, res.stderr);
    const newKey = readKeyFile(newKeyFile, { create: false }).key;
    assert.match(res.stdout, new RegExp(`re-encrypted 3 irc credential record\\(s\\): key id ${oldKey.id} -> ${newKey.id}`));
    assert.ok(existsSync(oldKeyFile), 'the old key is left in place');
    assert.equal(res.stdout.includes(marker) || res.stderr.includes(marker), false);
    const check = await openStorage(db);
    try {
      const recs = await check.transports.listCredentials();
      assert.deepEqual(recs.map((r) => r.keyId), [newKey.id, newKey.id, newKey.id]);
      const nv = new Vault(newKey);
      for (const r of recs) assert.equal(nv.open(r).fields.password, `${marker}-${r.userJid}`);
      assert.throws(() => new Vault(oldKey).open(recs[0]!), /key id [0-9a-f]+ expected/);
    } finally {
      await check.close();
    }
    // Rotating again with the old configuration (the old key): it no longer matches; nothing changes.
    const before = await openStorage(db);
    const snapshot = (await before.transports.listCredentials()).map((r) => r.ciphertext.toString('hex'));
    await before.close();
    const again = await run(['vault', 'rotate', '--config', config, '--new-key-file', path.join(dir, 'keys', 'third.key')]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /the vault key does not match the stored credentials \(key id [0-9a-f]{16} expected/);
    const after = await openStorage(db);
    assert.deepEqual((await after.transports.listCredentials()).map((r) => r.ciphertext.toString('hex')), snapshot);
    await after.close();
    // The same key as new: refused.
    const newConfig = writeYaml('rotate-new.yaml', { adapter: 'irc', component: { domain: 'irc.localhost', secret: 'x' }, storage: { type: 'sqlite', path: db.path }, vault: { keyFile: newKeyFile } });
    const same = await run(['vault', 'rotate', '--config', newConfig, '--new-key-file', newKeyFile]);
    assert.equal(same.code, 1);
    assert.match(same.stderr, /is the current key/);
    // With GATEHOUSE_VAULT_KEY as the current key.
    const viaEnv = await run(['vault', 'rotate', '--config', config, '--new-key-file', path.join(dir, 'keys', 'fourth.key')], { GATEHOUSE_VAULT_KEY: newKey.key.toString('base64') });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
  });

  test('the server runs configured transports as child processes, logs exits and restarts them with backoff', async () => {
    const port = await freePort();
    const config = writeYaml('supervised.yaml', {
      adapter: 'fake',
      component: { domain: GW, secret: SECRET, host: '127.0.0.1', port },
      storage: { type: 'sqlite', path: path.join(dir, 'supervised.sqlite') },
      vault: { keyFile: path.join(dir, 'supervised.key') },
      reconnect: { min: '100ms', max: '500ms' },
      network: { servers: ['irc.one'] },
    });
    const supervisor = createTransportsSupervisor({ transports: [{ name: 'fake', config }], restart: { min: 200, max: 1000 }, stopTimeout: 5000 });
    const ts = await startTestServer({
      modules: [...serverModules().filter((m) => m.name !== supervisor.name), supervisor],
      config: { components: [{ domain: GW, secret: SECRET }], listen: { components: [{ host: '127.0.0.1', port }] } },
    });
    try {
      await until(() => ts.logLines.some((l) => l.includes('component connected') && l.includes(GW)), 'the supervised transport to connect', 20000);
      const first = supervisor.running()[0]!;
      assert.ok(first.pid);
      // It crashes: logged, restarted, connected again.
      process.kill(first.pid, 'SIGKILL');
      await until(() => ts.logLines.some((l) => l.includes('transport exited') && l.includes('signal=SIGKILL')), 'the exit to be logged', 10000);
      await until(() => supervisor.running()[0]!.restarts >= 1 && supervisor.running()[0]!.pid !== null, 'a restart', 20000);
      await until(() => ts.logLines.filter((l) => l.includes('component connected') && l.includes(GW)).length >= 2, 'connected again', 20000);
      const alice = await ts.user('sup-alice');
      const info = await alice.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoInfo })));
      assert.equal(info.attrs.type, 'result');
    } finally {
      await ts.stop();
    }
    assert.ok(ts.logLines.some((l) => l.includes('transport exited') && l.includes('code=0')), 'a clean exit at shutdown');
  });

  test('a transport that keeps crashing is restarted with growing delays', async () => {
    const starts: number[] = [];
    const supervisor = createTransportsSupervisor({
      transports: [{ name: 'crashy', config: '/nonexistent.yaml' }],
      restart: { min: 100, max: 800 },
      command: () => {
        starts.push(Date.now());
        return { command: process.execPath, args: ['-e', 'process.exit(3)'] };
      },
    });
    const ts = await startTestServer({ modules: [...serverModules().filter((m) => m.name !== supervisor.name), supervisor] });
    try {
      await until(() => starts.length >= 4, 'four starts', 10000);
    } finally {
      await ts.stop();
    }
    const gaps = starts.slice(1, 4).map((s, i) => s - starts[i]!);
    // 100·2^n with jitter (half to all of it), plus the process start time.
    assert.ok(gaps[0]! >= 50 && gaps[1]! >= 100 && gaps[2]! >= 200, `gaps ${gaps.join(', ')}`);
    assert.ok(ts.logLines.some((l) => l.includes('transport exited') && l.includes('transport=crashy') && l.includes('code=3')));
    await delay(10);
  });
});
