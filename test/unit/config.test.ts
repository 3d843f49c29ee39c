import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { ConfigError, loadConfig, parseConfig, renderConfigDocs, type Config } from '../../server/config/index.js';
import { formatDuration, formatSize, parseDuration, parseSize } from '../../shared/schema-kit.js';
import { EXAMPLE_CONFIG } from '../../server/config/docs.js';

const NO_ENV = {};

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-config-'));
}

function parse(raw: unknown, baseDir = '/srv/gh'): Config {
  return parseConfig(raw, baseDir);
}

/** Asserts that parsing fails with a one-line error for `key` and returns the message. */
function errorFor(raw: unknown, key: string, baseDir = '/srv/gh'): string {
  try {
    parse(raw, baseDir);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `not a ConfigError: ${String(e)}`);
    assertOneLine(e.message);
    assert.ok(e.message.startsWith(`config error: ${key}: `), `expected an error for ${key}, got: ${e.message}`);
    assert.equal(e.keyPath, key);
    return e.message;
  }
  assert.fail(`no error for ${key} in ${JSON.stringify(raw)}`);
}

function assertOneLine(msg: string): void {
  assert.ok(!/[\r\n]/.test(msg), `not one line: ${JSON.stringify(msg)}`);
}

function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    assert.notEqual(up, dir, 'package.json not found');
    dir = up;
  }
  return dir;
}

test('defaults', () => {
  const c = loadConfig(null, undefined, NO_ENV);
  const cwd = process.cwd();
  assert.equal(c.dataDir, path.join(cwd, 'data'));
  assert.deepEqual(c.hosts, [{ domain: 'localhost', registration: 'loopback' }]);
  assert.deepEqual(c.admins, []);
  assert.deepEqual(c.tls, { cert: null, key: null, minVersion: 'TLSv1.2', handshakeTimeout: 10_000 });
  assert.deepEqual(c.listen, {
    c2s: [{ host: '::', port: 5222, proxyProtocol: [] }],
    c2sDirectTls: [{ host: '::', port: 5223, proxyProtocol: [] }],
    components: [{ host: '127.0.0.1', port: 5347, proxyProtocol: [] }],
    s2s: [],
    admin: [],
    https: [{ host: '::', port: 5443, proxyProtocol: [] }],
  });
  assert.deepEqual(c.http, { publicUrl: null, maxConnections: 512, maxConnectionsPerIp: 32, headersTimeout: 10_000, requestTimeout: 300_000, idleTimeout: 60_000 });
  assert.deepEqual(c.c2s, {
    requireEncryption: true,
    allowPlain: true,
    maxStanzaBytes: 256 * 1024,
    maxStanzaBytesPreAuth: 10 * 1024,
    maxDepth: 64,
    maxAttributes: 64,
    idlePingAfter: 5 * 60_000,
    pingTimeout: 60_000,
    resumptionTimeout: 5 * 60_000,
    authTimeout: 60_000,
    maxSendBuffer: 1024 * 1024,
    maxConnectionsPerIp: 50,
    maxConnections: 10_000,
  });
  assert.deepEqual(c.auth, { scramIterations: 10000, hashes: ['SHA-1', 'SHA-256'], offerCoverage: 100, channelBindingDowngrade: 'reject' });
  assert.deepEqual(c.storage, { type: 'sqlite', path: path.join(cwd, 'data', 'gatehouse.sqlite'), migrateOnStart: true });
  assert.deepEqual(c.offline, { maxPerUser: 1000, maxBytesPerUser: 10 * 1024 * 1024 });
  assert.deepEqual(c.privateStorage, { maxBytesPerUser: 1024 * 1024 });
  assert.deepEqual(c.subscriptions, { maxPendingPerUser: 100, maxPendingPerDomain: 20 });
  assert.deepEqual(c.registrationLimit, { maxPerAddress: 3, window: 3_600_000, exempt: [] });
  assert.deepEqual(c.caps, { cacheSize: 1000, queryTimeout: 30_000, maxResourcesPerAccount: 5000, maxPendingQueries: 100 });
  assert.deepEqual(c.server, { name: 'Gatehouse', hideVersion: false, hideOs: true });
  assert.deepEqual(c.log, { level: 'info', format: 'text', file: null });
  const day = 86_400_000;
  assert.deepEqual(c.retention, {
    inactiveAccounts: 365 * day,
    inactiveWarning: 14 * day,
    offlineMessages: 30 * day,
    detailedLogs: 48 * 3_600_000,
    statistics: null,
    uploads: 30 * day,
  });
  assert.deepEqual(c.upload, { enabled: true, domain: 'upload.{host}', domains: {}, maxFileSize: 50 * 1024 * 1024, quotaPerUser: 500 * 1024 * 1024, slotLifetime: 300_000, maxOpenSlots: 10, componentQuota: 2 * 1024 * 1024 * 1024, componentMaxOpenSlots: 50 });
  assert.deepEqual(c.backups, { keep: 7, dir: path.join(cwd, 'data', 'backups'), schedule: 'daily', encryptionKeyFile: null });
  assert.deepEqual(c.components, []);
  assert.deepEqual(c.s2s, { requireEncryption: true, requireValidCertificates: false, allow: [], deny: [], static: {}, caFile: null, connectTimeout: 30_000, idleTimeout: 600_000, maxConnections: 1000 });
  assert.deepEqual(c.policy, { contact: null, language: 'en' });
  assert.deepEqual(c.admin, { metricsToken: null, tls: 'auto', maxConnections: 64, maxConnectionsPerIp: 16, trustedProxies: [] });
  // An empty document and parseConfig(null) mean the same.
  assert.deepEqual(parseConfig(null, cwd), c);
  assert.deepEqual(parseConfig({}, cwd), c);
});

test('every type error names its key', () => {
  const cases: [unknown, string][] = [
    [{ dataDir: 5 }, 'dataDir'],
    [{ dataDir: '' }, 'dataDir'],
    [{ hosts: 'localhost' }, 'hosts'],
    [{ hosts: [] }, 'hosts'],
    [{ hosts: [{}] }, 'hosts[0].domain'],
    [{ hosts: [{ domain: 'a b' }] }, 'hosts[0].domain'],
    [{ hosts: [{ domain: 'x.org' }, { domain: 'y.org', registration: 'sometimes' }] }, 'hosts[1].registration'],
    [{ hosts: [{ domain: 'x.org', registration: true }] }, 'hosts[0].registration'],
    [{ hosts: [{ domain: 'x.org', tls: 'yes' }] }, 'hosts[0].tls'],
    [{ admins: 'admin@x.org' }, 'admins'],
    [{ admins: ['admin@x.org', 'x.org'] }, 'admins[1]'],
    [{ admins: ['admin@x.org/laptop'] }, 'admins[0]'],
    [{ tls: { minVersion: 'TLSv1.1' } }, 'tls.minVersion'],
    [{ tls: { ciphers: '' } }, 'tls.ciphers'],
    [{ tls: [] }, 'tls'],
    [{ listen: { c2s: [{ port: 70000 }] } }, 'listen.c2s[0].port'],
    [{ listen: { c2s: [{ port: 5222.5 }] } }, 'listen.c2s[0].port'],
    [{ listen: { c2sDirectTls: [{ host: '127.0.0.1' }] } }, 'listen.c2sDirectTls[0].port'],
    [{ listen: { components: [{ host: 1, port: 1 }] } }, 'listen.components[0].host'],
    [{ listen: { admin: {} } }, 'listen.admin'],
    [{ listen: { https: [{ host: '::' }] } }, 'listen.https[0].port'],
    [{ http: { publicUrl: 'ftp://{host}/' } }, 'http.publicUrl'],
    [{ http: { publicUrl: 'https://{host}/?x=1' } }, 'http.publicUrl'],
    [{ http: { publicUrl: 'example.org' } }, 'http.publicUrl'],
    [{ http: { maxConnectionsPerIp: 0 } }, 'http.maxConnectionsPerIp'],
    [{ c2s: { maxStanzaBytes: 'big' } }, 'c2s.maxStanzaBytes'],
    [{ c2s: { maxStanzaBytes: 100 } }, 'c2s.maxStanzaBytes'],
    [{ c2s: { requireEncryption: 'yes' } }, 'c2s.requireEncryption'],
    [{ c2s: { allowPlain: 1 } }, 'c2s.allowPlain'],
    [{ c2s: { maxDepth: 0 } }, 'c2s.maxDepth'],
    [{ c2s: { maxAttributes: '64' } }, 'c2s.maxAttributes'],
    [{ c2s: { idlePingAfter: 'soon' } }, 'c2s.idlePingAfter'],
    [{ c2s: { pingTimeout: -1 } }, 'c2s.pingTimeout'],
    [{ c2s: { authTimeout: 'unlimited' } }, 'c2s.authTimeout'],
    [{ c2s: { maxSendBuffer: '1 parsec' } }, 'c2s.maxSendBuffer'],
    [{ c2s: { maxConnectionsPerIp: 0 } }, 'c2s.maxConnectionsPerIp'],
    [{ c2s: { maxConnections: 0 } }, 'c2s.maxConnections'],
    [{ tls: { handshakeTimeout: '10ms' } }, 'tls.handshakeTimeout'],
    [{ listen: { c2s: [{ port: 1, proxyProtocol: ['10.0.0.0/33'] }] } }, 'listen.c2s[0].proxyProtocol[0]'],
    [{ listen: { admin: [{ port: 1, proxyProtocol: 'haproxy' }] } }, 'listen.admin[0].proxyProtocol'],
    [{ admin: { trustedProxies: ['proxy.example'] } }, 'admin.trustedProxies[0]'],
    [{ auth: { scramIterations: 1000 } }, 'auth.scramIterations'],
    [{ auth: { hashes: [] } }, 'auth.hashes'],
    [{ auth: { hashes: ['MD5'] } }, 'auth.hashes[0]'],
    [{ auth: { hashes: ['SHA-1', 'SHA-1'] } }, 'auth.hashes[1]'],
    [{ storage: { type: 'oracle' } }, 'storage.type'],
    [{ storage: { migrateOnStart: 'no' } }, 'storage.migrateOnStart'],
    [{ offline: { maxPerUser: -1 } }, 'offline.maxPerUser'],
    [{ caps: { cacheSize: 0 } }, 'caps.cacheSize'],
    [{ caps: { queryTimeout: '10ms' } }, 'caps.queryTimeout'],
    [{ server: { name: 5 } }, 'server.name'],
    [{ server: { hideVersion: null } }, 'server.hideVersion'],
    [{ server: { hideOs: 'true' } }, 'server.hideOs'],
    [{ log: { level: 'verbose' } }, 'log.level'],
    [{ log: { format: 'xml' } }, 'log.format'],
    [{ log: { file: 3 } }, 'log.file'],
    [{ retention: { inactiveAccounts: '5x' } }, 'retention.inactiveAccounts'],
    [{ retention: { inactiveAccounts: 'unlimited' } }, 'retention.inactiveAccounts'],
    [{ retention: { inactiveWarning: true } }, 'retention.inactiveWarning'],
    [{ retention: { offlineMessages: '1s' } }, 'retention.offlineMessages'],
    [{ retention: { detailedLogs: [] } }, 'retention.detailedLogs'],
    [{ retention: { statistics: 'forever' } }, 'retention.statistics'],
    [{ backups: { keep: 0 } }, 'backups.keep'],
    [{ backups: { dir: false } }, 'backups.dir'],
    [{ backups: { schedule: 'weekly' } }, 'backups.schedule'],
    [{ components: [{ domain: 'irc.x.org' }] }, 'components[0].secret'],
    [{ components: [{ domain: 'irc.x.org', secret: '' }] }, 'components[0].secret'],
    [{ components: [{ secret: 's3cret' }] }, 'components[0].domain'],
    [{ s2s: { requireEncryption: 'yes' } }, 's2s.requireEncryption'],
    [{ s2s: { requireValidCertificates: 0 } }, 's2s.requireValidCertificates'],
    [{ s2s: { allow: ['ok.org', 'not ok'] } }, 's2s.allow[1]'],
    [{ s2s: { deny: 'evil.org' } }, 's2s.deny'],
    [{ s2s: { static: { 'x.org': 'nohost' } } }, 's2s.static["x.org"]'],
    [{ s2s: { static: { 'x.org': 'h:0' } } }, 's2s.static["x.org"]'],
    [{ s2s: { static: [] } }, 's2s.static'],
    [{ policy: { contact: 5 } }, 'policy.contact'],
    [{ policy: { language: 'fr' } }, 'policy.language'],
  ];
  for (const [raw, key] of cases) errorFor(raw, key);

  assert.equal(
    errorFor({ c2s: { maxStanzaBytes: 'big' } }, 'c2s.maxStanzaBytes'),
    'config error: c2s.maxStanzaBytes: expected a size >= 1KiB (a number of bytes, or such as 10KiB or 1MiB), got "big"',
  );
  assert.equal(
    errorFor({ listen: { c2s: [{ port: 70000 }] } }, 'listen.c2s[0].port'),
    'config error: listen.c2s[0].port: expected an integer between 0 and 65535, got 70000',
  );
  assert.match(errorFor({ log: { level: 'verbose' } }, 'log.level'), /expected one of "debug", "info", "warn" or "error", got "verbose"$/);
  assert.match(errorFor({ hosts: [{}] }, 'hosts[0].domain'), /: missing; expected a domain name$/);
});

test('a non-mapping document is an error', () => {
  for (const raw of [5, 'text', [1, 2], true]) {
    assert.throws(() => parse(raw), (e: unknown) => e instanceof ConfigError && e.keyPath === '' && /^config error: expected a mapping/.test(e.message));
  }
});

test('unknown keys, at the top level and nested', () => {
  assert.equal(errorFor({ lisen: {} }, 'lisen'), 'config error: lisen: unknown key (did you mean "listen"?)');
  assert.equal(errorFor({ bogus: 1 }, 'bogus'), 'config error: bogus: unknown key');
  errorFor({ c2s: { maxStanzaByte: '1MiB' } }, 'c2s.maxStanzaByte');
  errorFor({ hosts: [{ domain: 'x.org', colour: 'red' }] }, 'hosts[0].colour');
  errorFor({ hosts: [{ domain: 'x.org', registration: { allow: ['10.0.0.0/8'], deny: [] } }] }, 'hosts[0].registration.deny');
  errorFor({ listen: { c2s: [{ port: 1, backlog: 5 }] } }, 'listen.c2s[0].backlog');
  errorFor({ tls: { cert: null, key: null, pass: 'x' } }, 'tls.pass');
  errorFor({ s2s: { static: {}, dynamic: {} } }, 's2s.dynamic');
  errorFor({ 'odd key': 1 }, '["odd key"]');
  errorFor({ storage: { 'my url': 1 } }, 'storage["my url"]');
});

test('durations', () => {
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('48h'), 48 * 3_600_000);
  assert.equal(parseDuration('14d'), 14 * 86_400_000);
  assert.equal(parseDuration('2w'), 14 * 86_400_000);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('1h30m'), 90 * 60_000);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration(90), 90_000);
  assert.equal(parseDuration('90'), 90_000);
  assert.equal(parseDuration(0), 0);
  for (const bad of ['', 'soon', '5M', '5 minutes', '-5s', '5s5', -1, NaN, Infinity, null, true, [], {}]) {
    assert.equal(parseDuration(bad), undefined, `accepted ${String(bad)}`);
  }
  assert.equal(formatDuration(300_000), '5m');
  assert.equal(formatDuration(90_000), '1m30s');

  const c = parse({
    c2s: { idlePingAfter: '10m', pingTimeout: 30, authTimeout: '1m30s' },
    retention: { statistics: '90d', detailedLogs: '1d', inactiveAccounts: '2w', inactiveWarning: '7d' },
  });
  assert.equal(c.c2s.idlePingAfter, 600_000);
  assert.equal(c.c2s.pingTimeout, 30_000);
  assert.equal(c.c2s.authTimeout, 90_000);
  assert.equal(c.retention.statistics, 90 * 86_400_000);
  assert.equal(c.retention.detailedLogs, 86_400_000);
  assert.equal(c.retention.inactiveAccounts, 14 * 86_400_000);
  assert.equal(parse({ retention: { statistics: 'unlimited' } }).retention.statistics, null);
  // 'unlimited' only where allowed
  assert.match(errorFor({ retention: { offlineMessages: 'unlimited' } }, 'retention.offlineMessages'), /got "unlimited"$/);
  errorFor({ retention: { inactiveWarning: '400d' } }, 'retention.inactiveWarning');
});

test('sizes', () => {
  assert.equal(parseSize('256KiB'), 256 * 1024);
  assert.equal(parseSize('10KiB'), 10 * 1024);
  assert.equal(parseSize('1MiB'), 1024 * 1024);
  assert.equal(parseSize('1GiB'), 1024 ** 3);
  assert.equal(parseSize('1kB'), 1000);
  assert.equal(parseSize('2MB'), 2_000_000);
  assert.equal(parseSize('512B'), 512);
  assert.equal(parseSize('1.5KiB'), 1536);
  assert.equal(parseSize(2048), 2048);
  assert.equal(parseSize('2048'), 2048);
  for (const bad of ['', 'big', '1 parsec', '0.5B', '-1KiB', 1.5, -1, null, {}]) assert.equal(parseSize(bad), undefined, `accepted ${String(bad)}`);
  assert.equal(formatSize(262144), '256KiB');
  assert.equal(formatSize(1000), '1000B');

  const c = parse({ c2s: { maxStanzaBytes: '1MiB', maxStanzaBytesPreAuth: 4096, maxSendBuffer: '4MiB' } });
  assert.equal(c.c2s.maxStanzaBytes, 1024 * 1024);
  assert.equal(c.c2s.maxStanzaBytesPreAuth, 4096);
  assert.equal(c.c2s.maxSendBuffer, 4 * 1024 * 1024);
  // pre-auth limit may not exceed the post-auth one
  errorFor({ c2s: { maxStanzaBytes: '16KiB', maxStanzaBytesPreAuth: '32KiB' } }, 'c2s.maxStanzaBytesPreAuth');
});

test('relative paths resolve against the config file directory', () => {
  const dir = tmpDir();
  try {
    fs.mkdirSync(path.join(dir, 'etc'));
    fs.writeFileSync(path.join(dir, 'etc', 'cert.pem'), 'x');
    fs.writeFileSync(path.join(dir, 'etc', 'key.pem'), 'x');
    const file = path.join(dir, 'etc', 'gatehouse.yaml');
    fs.writeFileSync(
      file,
      YAML.stringify({
        dataDir: '../var',
        tls: { cert: 'cert.pem', key: './key.pem' },
        log: { file: 'logs/gatehouse.log' },
        backups: { dir: '<dataDir>/snapshots' },
      }),
    );
    const c = loadConfig(file, undefined, NO_ENV);
    assert.equal(c.dataDir, path.join(dir, 'var'));
    assert.equal(c.tls.cert, path.join(dir, 'etc', 'cert.pem'));
    assert.equal(c.tls.key, path.join(dir, 'etc', 'key.pem'));
    assert.equal(c.log.file, path.join(dir, 'etc', 'logs', 'gatehouse.log'));
    assert.equal(c.backups.dir, path.join(dir, 'var', 'snapshots'));
    assert.equal(c.storage.type === 'sqlite' && c.storage.path, path.join(dir, 'var', 'gatehouse.sqlite'));

    // The default dataDir is relative too: next to the config file.
    fs.writeFileSync(file, 'hosts: [{ domain: Example.ORG }]\n');
    const d = loadConfig(file, undefined, NO_ENV);
    assert.equal(d.dataDir, path.join(dir, 'etc', 'data'));
    assert.equal(d.hosts[0].domain, 'example.org');

    // Absolute paths stay; ':memory:' stays.
    const e = parse({ dataDir: '/abs/data', storage: { path: ':memory:' } }, dir);
    assert.equal(e.dataDir, '/abs/data');
    assert.equal(e.storage.path, ':memory:');
    assert.equal(parse({ storage: { path: 'db.sqlite' } }, dir).storage.path, path.join(dir, 'db.sqlite'));

    // Without a file: against the working directory.
    assert.equal(loadConfig(null, { dataDir: 'x' }, NO_ENV).dataDir, path.join(process.cwd(), 'x'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('missing certificate and key files', () => {
  const dir = tmpDir();
  try {
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    fs.writeFileSync(cert, 'x');
    fs.writeFileSync(key, 'x');
    assert.equal(
      errorFor({ hosts: [{ domain: 'x.org', tls: { cert: '/x/y.pem', key } }] }, 'hosts[0].tls.cert', dir),
      'config error: hosts[0].tls.cert: file not found: /x/y.pem',
    );
    assert.equal(
      errorFor({ hosts: [{ domain: 'x.org', tls: { cert, key: 'nokey.pem' } }] }, 'hosts[0].tls.key', dir),
      `config error: hosts[0].tls.key: file not found: ${path.join(dir, 'nokey.pem')}`,
    );
    errorFor({ tls: { cert: 'missing.pem', key } }, 'tls.cert', dir);
    errorFor({ tls: { cert, key: dir } }, 'tls.key', dir); // a directory is not a key file
    const ok = parse({ hosts: [{ domain: 'x.org', tls: { cert: 'cert.pem', key: 'key.pem' } }, { domain: 'y.org' }] }, dir);
    assert.deepEqual(ok.hosts[0].tls, { cert, key });
    assert.equal(ok.hosts[1].tls, undefined);
    assert.ok(!('tls' in ok.hosts[1]));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('cert and key must be given together', () => {
  const dir = tmpDir();
  try {
    const cert = path.join(dir, 'cert.pem');
    fs.writeFileSync(cert, 'x');
    assert.equal(errorFor({ tls: { cert } }, 'tls.key', dir), 'config error: tls.key: missing; required when tls.cert is set');
    errorFor({ tls: { key: cert } }, 'tls.cert', dir);
    errorFor({ hosts: [{ domain: 'x.org', tls: { cert } }] }, 'hosts[0].tls.key', dir);
    errorFor({ hosts: [{ domain: 'x.org', tls: { key: cert } }] }, 'hosts[0].tls.cert', dir);
    assert.deepEqual(parse({ tls: { cert, key: cert, minVersion: 'TLSv1.3', ciphers: 'HIGH' } }, dir).tls, {
      cert,
      key: cert,
      minVersion: 'TLSv1.3',
      handshakeTimeout: 10_000,
      ciphers: 'HIGH',
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('duplicate hosts and other cross-checks', () => {
  assert.equal(
    errorFor({ hosts: [{ domain: 'example.org' }, { domain: 'EXAMPLE.org.' }] }, 'hosts[1].domain'),
    'config error: hosts[1].domain: duplicate host "example.org" (already hosts[0])',
  );
  errorFor({ components: [{ domain: 'irc.x.org', secret: 'a' }, { domain: 'IRC.x.org', secret: 'b' }] }, 'components[1].domain');
  errorFor({ hosts: [{ domain: 'x.org' }], components: [{ domain: 'x.org', secret: 'a' }] }, 'components[0].domain');
  errorFor({ admins: ['a@x.org', 'A@x.org'] }, 'admins[1]');
  assert.match(
    errorFor({ listen: { c2s: [{ host: '::', port: 5222 }], c2sDirectTls: [{ port: 5222 }] } }, 'listen.c2sDirectTls[0]'),
    /already used by listen\.c2s\[0\]$/,
  );
  // Port 0 may repeat (random ports, for tests).
  const c = parse({ listen: { c2s: [{ host: '127.0.0.1', port: 0 }], c2sDirectTls: [{ host: '127.0.0.1', port: 0 }] } });
  assert.deepEqual(c.listen.c2s, [{ host: '127.0.0.1', port: 0, proxyProtocol: [] }]);
  errorFor({ storage: { type: 'mysql' } }, 'storage.url');
  errorFor({ storage: { type: 'postgres', url: 'mysql://u@db/gh' } }, 'storage.url');
  errorFor({ storage: { url: 'postgres://u@db/gh' } }, 'storage.url'); // type is sqlite
  errorFor({ storage: { type: 'postgres', url: 'postgres://u@db/gh', path: 'x.sqlite' } }, 'storage.path');
  errorFor({ storage: { type: 'postgres', url: 'postgres://u@db' } }, 'storage.url'); // no database
});

test('normalisation of hosts, admins, components and s2s', () => {
  const c = parse({
    hosts: [{ domain: 'Example.ORG' }],
    admins: ['Admin@Example.org'],
    components: [{ domain: 'IRC.example.org', secret: 'x' }],
    s2s: { allow: ['Friend.NET'], static: { 'Remote.net': 'XMPP.remote.net:5269', 'v6.net': '[2001:DB8::1]:5270' } },
  });
  assert.equal(c.hosts[0].domain, 'example.org');
  assert.equal(c.hosts[0].registration, 'loopback');
  assert.deepEqual(c.admins, ['admin@example.org']);
  assert.deepEqual(c.components, [{ domain: 'irc.example.org', secret: 'x' }]);
  assert.deepEqual(c.s2s.allow, ['friend.net']);
  assert.deepEqual(c.s2s.static, { 'remote.net': { host: 'xmpp.remote.net', port: 5269 }, 'v6.net': { host: '2001:db8::1', port: 5270 } });
  errorFor({ s2s: { static: { 'a.net': 'h:1', 'A.net': 'h:2' } } }, 's2s.static["A.net"]');
});

test('registration policies and CIDR validation', () => {
  for (const r of ['closed', 'open', 'loopback'] as const) assert.equal(parse({ hosts: [{ domain: 'x.org', registration: r }] }).hosts[0].registration, r);
  const c = parse({ hosts: [{ domain: 'x.org', registration: { allow: ['10.0.0.0/8', '192.168.1.5', '::1', 'FD00::/8', '0.0.0.0/0'] } }] });
  assert.deepEqual(c.hosts[0].registration, { allow: ['10.0.0.0/8', '192.168.1.5/32', '::1/128', 'fd00::/8', '0.0.0.0/0'] });
  const bad = ['10.0.0.0/33', 'fe80::/129', '10.0.0/8', '10.0.0.0/8/8', 'example.org', '300.1.1.1', '10.0.0.0/-1', 'fe80::1%eth0', ''];
  for (const cidr of bad) {
    errorFor({ hosts: [{ domain: 'x.org', registration: { allow: ['127.0.0.1', cidr] } }] }, 'hosts[0].registration.allow[1]');
  }
  errorFor({ hosts: [{ domain: 'x.org', registration: { allow: [] } }] }, 'hosts[0].registration.allow');
  errorFor({ hosts: [{ domain: 'x.org', registration: { allow: '10.0.0.0/8' } }] }, 'hosts[0].registration.allow');
  errorFor({ hosts: [{ domain: 'x.org', registration: {} }] }, 'hosts[0].registration.allow');
});

test('GATEHOUSE_STORAGE_URL overrides storage.url and type', () => {
  const dir = tmpDir();
  try {
    const file = path.join(dir, 'c.yaml');
    fs.writeFileSync(file, 'storage:\n  type: sqlite\n  path: my.sqlite\n  migrateOnStart: false\n');
    assert.deepEqual(loadConfig(file, undefined, NO_ENV).storage, { type: 'sqlite', path: path.join(dir, 'my.sqlite'), migrateOnStart: false });
    const pg = loadConfig(file, undefined, { GATEHOUSE_STORAGE_URL: 'postgresql://gh:pw@db.local:5433/gatehouse' });
    assert.deepEqual(pg.storage, { type: 'postgres', url: 'postgresql://gh:pw@db.local:5433/gatehouse', migrateOnStart: false });
    const my = loadConfig(null, undefined, { GATEHOUSE_STORAGE_URL: 'mariadb://gh:pw@db/gatehouse' });
    assert.equal(my.storage.type, 'mysql');
    assert.equal(my.storage.url, 'mariadb://gh:pw@db/gatehouse');
    // empty = not set
    assert.equal(loadConfig(null, undefined, { GATEHOUSE_STORAGE_URL: '' }).storage.type, 'sqlite');
    // process.env is the default
    const saved = process.env.GATEHOUSE_STORAGE_URL;
    process.env.GATEHOUSE_STORAGE_URL = 'mysql://gh:pw@db/gatehouse';
    try {
      assert.equal(loadConfig(null).storage.type, 'mysql');
    } finally {
      if (saved === undefined) delete process.env.GATEHOUSE_STORAGE_URL;
      else process.env.GATEHOUSE_STORAGE_URL = saved;
    }
    // a bad URL from the environment: named as such, password hidden
    assert.throws(
      () => loadConfig(null, undefined, { GATEHOUSE_STORAGE_URL: 'oracle://gh:hunter2@db/gatehouse' }),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.message.startsWith('config error: storage.url (from GATEHOUSE_STORAGE_URL): ') &&
        !e.message.includes('hunter2'),
    );
    assert.throws(
      () => loadConfig(null, undefined, { GATEHOUSE_STORAGE_URL: 'postgres://gh:hunter2@/gatehouse' }),
      (e: unknown) => e instanceof ConfigError && /^config error: storage\.url \(from GATEHOUSE_STORAGE_URL\): /.test(e.message) && !e.message.includes('hunter2'),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('secrets are redacted in errors', () => {
  const secret = 'hunter2';
  const urls = [
    `mysqlx://gh:${secret}@db/gatehouse`,
    `mysql//gh:${secret}@db/gatehouse`,
    `postgres://gh:${secret}@`,
    `postgres://gh:p@${secret}@db`,
    `ftp://gh:${secret}@db/x`,
    `postgres:/db/gatehouse?password=${secret}`,
  ];
  for (const url of urls) {
    const msg = errorFor({ storage: { type: 'postgres', url } }, 'storage.url');
    assert.ok(!msg.includes(secret), `password shown: ${msg}`);
  }
  assert.ok(!errorFor({ storage: { type: 'mysql', url: `postgres://gh:${secret}@db/x` } }, 'storage.url').includes(secret));
  for (const raw of [12345, [secret], { v: secret }, '']) {
    const msg = errorFor({ components: [{ domain: 'irc.x.org', secret: raw }] }, 'components[0].secret');
    assert.ok(!msg.includes('12345') && !msg.includes(secret), msg);
  }
  // other errors in a component never show its secret
  assert.ok(!errorFor({ components: [{ domain: 'bad domain', secret }] }, 'components[0].domain').includes(secret));
  assert.ok(!errorFor({ components: [{ domain: 'irc.x.org', secret, extra: 1 }] }, 'components[0].extra').includes(secret));
});

test('loadConfig: YAML files, syntax errors, missing file, overrides', () => {
  const dir = tmpDir();
  try {
    const file = path.join(dir, 'gatehouse.yaml');
    fs.writeFileSync(file, '');
    assert.equal(loadConfig(file, undefined, NO_ENV).hosts[0].domain, 'localhost');

    fs.writeFileSync(file, 'c2s:\n  maxStanzaBytes: big\n');
    assert.throws(() => loadConfig(file, undefined, NO_ENV), { message: /^config error: c2s\.maxStanzaBytes: expected a size/ });

    fs.writeFileSync(file, 'components:\n  - domain: irc.x.org\n    secret: "hunter2\n  bad: [\n');
    assert.throws(
      () => loadConfig(file, undefined, NO_ENV),
      (e: unknown) => e instanceof ConfigError && e.message.startsWith(`config error: ${file}: invalid YAML`) && !/[\n]/.test(e.message) && !e.message.includes('hunter2'),
    );
    fs.writeFileSync(file, 'log: {}\nlog: {}\n');
    assert.throws(() => loadConfig(file, undefined, NO_ENV), (e: unknown) => e instanceof ConfigError && /invalid YAML/.test(e.message));
    fs.writeFileSync(file, '- a\n- b\n');
    assert.throws(() => loadConfig(file, undefined, NO_ENV), { message: /^config error: expected a mapping of settings at the top level, got a list$/ });

    assert.throws(() => loadConfig(path.join(dir, 'nope.yaml'), undefined, NO_ENV), {
      message: `config error: cannot read ${path.join(dir, 'nope.yaml')}: file not found`,
    });

    fs.writeFileSync(file, 'hosts: [{ domain: a.org }, { domain: b.org }]\nc2s:\n  maxDepth: 32\n  maxAttributes: 16\n');
    const c = loadConfig(file, { c2s: { maxDepth: 8 }, hosts: [{ domain: 'c.org' }], listen: { c2s: [{ host: '127.0.0.1', port: 0 }] } }, NO_ENV);
    assert.equal(c.c2s.maxDepth, 8);
    assert.equal(c.c2s.maxAttributes, 16); // merged, not replaced
    assert.deepEqual(c.hosts.map((h) => h.domain), ['c.org']); // lists replace
    assert.deepEqual(c.listen.c2s, [{ host: '127.0.0.1', port: 0, proxyProtocol: [] }]);
    assert.deepEqual(c.listen.c2sDirectTls, [{ host: '::', port: 5223, proxyProtocol: [] }]);
    assert.throws(() => loadConfig(file, { c2s: { bogus: 1 } }, NO_ENV), { message: 'config error: c2s.bogus: unknown key' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the example in the docs is valid', () => {
  const c = parseConfig(YAML.parse(EXAMPLE_CONFIG), '/etc/gatehouse');
  assert.deepEqual(c.hosts.map((h) => h.domain), ['example.org', 'chat.example.org']);
  assert.equal(c.storage.type, 'postgres');
  assert.equal(c.policy.language, 'de');
});

test('docs/configuration.md is in sync with renderConfigDocs()', () => {
  const file = path.join(repoRoot(), 'docs', 'configuration.md');
  const rendered = renderConfigDocs();
  assert.ok(fs.existsSync(file), `${file} is missing; run: node dist/server/config/docs.js --write`);
  const current = fs.readFileSync(file, 'utf8');
  assert.ok(current === rendered, `${file} is out of date; run: npx tsc -p tsconfig.json && node dist/server/config/docs.js --write`);
  // Every key of the default configuration is documented.
  const flat = (v: unknown, prefix: string): string[] =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.entries(v).flatMap(([k, x]) => [`${prefix}${k}`, ...(k === 'static' ? [] : flat(x, `${prefix}${k}.`))])
      : [];
  for (const key of flat(loadConfig(null, undefined, NO_ENV), '')) assert.ok(rendered.includes(`\`${key}\``), `${key} is not documented`);
});
