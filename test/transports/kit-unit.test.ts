/** Units of the transport kit: XEP-0106 escaping, address mapping, backoff, the vault's keys, configuration, audit output. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Jid } from '../../shared/jid.js';
import { escapeLocal, unescapeLocal } from '../../transports/kit/jid-escaping.js';
import { Addresses } from '../../transports/kit/addresses.js';
import { backoffDelay } from '../../transports/kit/backoff.js';
import { Vault, VaultError, VaultKeyMismatchError, keyIdOf, parseKeyText, readKeyFile, resolveVaultKey, vaultKey, type KeyringModule } from '../../transports/kit/vault.js';
import { parseTransportConfig } from '../../transports/kit/config.js';
import { formatAudit, scrub } from '../../transports/kit/audit-log.js';
import { ConfigError } from '../../shared/schema-kit.js';
import type { TransportAuditEntry } from '../../storage/types.js';
import { LegacySessionEmitter } from '../../transports/kit/session-emitter.js';
import type { AdapterLogger } from '../../transports/kit/adapter.js';

describe('XEP-0106 escaping', () => {
  test('the XEP examples', () => {
    const cases: [string, string][] = [
      ['space cadet', 'space\\20cadet'],
      ['call me "ishmael"', 'call\\20me\\20\\22ishmael\\22'],
      ['at&t guy', 'at\\26t\\20guy'],
      ["d'artagnan", 'd\\27artagnan'],
      ['/.fanboy', '\\2f.fanboy'],
      ['::foo::', '\\3a\\3afoo\\3a\\3a'],
      ['<foo>', '\\3cfoo\\3e'],
      ['user@host', 'user\\40host'],
      ['c:\\net', 'c\\3a\\5cnet'],
      ['c:\\\\net', 'c\\3a\\5c\\5cnet'],
      ['c:\\cool stuff', 'c\\3a\\5ccool\\20stuff'],
      ['c:\\5commas', 'c\\3a\\5c5commas'],
    ];
    for (const [raw, escaped] of cases) {
      assert.equal(escapeLocal(raw), escaped, raw);
      assert.equal(unescapeLocal(escaped), raw, escaped);
      assert.ok(Jid.of(escaped, 'gw.example'), `valid localpart ${escaped}`);
    }
  });

  test('partial and unknown sequences are left alone; leading or trailing spaces cannot be mapped', () => {
    assert.equal(unescapeLocal('\\2plus\\2is\\4'), '\\2plus\\2is\\4');
    assert.equal(unescapeLocal('foo\\bar'), 'foo\\bar');
    assert.equal(unescapeLocal('foob\\41r'), 'foob\\41r');
    assert.equal(unescapeLocal('a\\2F'), 'a\\2F', 'case is significant');
    assert.equal(escapeLocal(' x'), null);
    assert.equal(escapeLocal('x '), null);
    assert.equal(escapeLocal(''), null);
  });
});

describe('address mapping', () => {
  const irc = new Addresses('irc.example', { multiServer: true, isRoomId: (id) => /^[#&+!]/.test(id) });
  const single = new Addresses('gw.example', { multiServer: false, isRoomId: (id) => id.startsWith('#') });

  test('contacts, rooms, occupants and servers on a multi-server network', () => {
    assert.equal(irc.contactJid({ id: 'Nick', server: 'irc.libera.chat' }), 'nick%irc.libera.chat@irc.example');
    assert.equal(irc.contactJid({ id: 'nick' }), null, 'a multi-server contact needs a server');
    assert.equal(irc.contactJid({ id: 'nick' }, 'irc.oftc.net'), 'nick%irc.oftc.net@irc.example');
    assert.equal(irc.roomJid({ id: '#Chan', server: 'irc.libera.chat' }), '#chan%irc.libera.chat@irc.example');
    assert.equal(irc.occupantJid({ id: '#chan', server: 's' }, 'Bob'), '#chan%s@irc.example/Bob');
    assert.equal(irc.serverJid('irc.libera.chat'), 'irc.libera.chat@irc.example');
    assert.deepEqual(irc.parse(Jid.parse('nick%irc.libera.chat@irc.example')), { kind: 'contact', id: 'nick', server: 'irc.libera.chat' });
    assert.deepEqual(irc.parse(Jid.parse('#chan%irc.libera.chat@irc.example/Bob')), { kind: 'room', id: '#chan', server: 'irc.libera.chat', nick: 'Bob' });
    assert.deepEqual(irc.parse(Jid.parse('irc.libera.chat@irc.example')), { kind: 'server', server: 'irc.libera.chat' });
    assert.deepEqual(irc.parse(Jid.parse('irc.example')), { kind: 'gateway' });
    assert.equal(irc.parse(Jid.parse('x@other.example')), null);
    // The last % separates the server: ids may contain %.
    assert.deepEqual(irc.parse(Jid.parse('50%off%s@irc.example')), { kind: 'contact', id: '50%off', server: 's' });
    assert.deepEqual(irc.parse(Jid.parse('d\\27art%s@irc.example')), { kind: 'contact', id: "d'art", server: 's' });
  });

  test('a single network: no server part', () => {
    assert.equal(single.contactJid({ id: 'user@matrix.org' }), 'user\\40matrix.org@gw.example');
    assert.deepEqual(single.parse(Jid.parse('user\\40matrix.org@gw.example')), { kind: 'contact', id: 'user@matrix.org', server: undefined });
    assert.deepEqual(single.parse(Jid.parse('#room@gw.example/me')), { kind: 'room', id: '#room', server: undefined, nick: 'me' });
    assert.deepEqual(single.parse(Jid.parse('50%off@gw.example')), { kind: 'contact', id: '50%off', server: undefined });
  });
});

describe('backoff', () => {
  test('doubles from min to max, with jitter between half and all of it', () => {
    const b = { min: 1000, max: 60_000 };
    assert.equal(backoffDelay(0, b, () => 0), 500);
    assert.equal(backoffDelay(0, b, () => 1), 1000);
    assert.equal(backoffDelay(3, b, () => 1), 8000);
    assert.equal(backoffDelay(20, b, () => 1), 60_000);
    assert.equal(backoffDelay(20, b, () => 0), 30_000);
    const samples = Array.from({ length: 50 }, () => backoffDelay(2, b));
    assert.ok(samples.every((d) => d >= 2000 && d <= 4000));
    assert.ok(new Set(samples).size > 5, 'jitter spreads the delays');
  });
});

describe('vault keys', () => {
  test('P9 a key file is created with mode 0600 (its directory 0700) and read back; a shared one is refused', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-vault-'));
    try {
      const file = path.join(dir, 'sub', 'vault.key');
      const { key, created } = readKeyFile(file, { create: true });
      assert.equal(created, true);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.equal(statSync(path.dirname(file)).mode & 0o777, 0o700);
      assert.equal(key.id, keyIdOf(key.key));
      assert.equal(key.id.length, 16);
      const again = readKeyFile(file, { create: true });
      assert.equal(again.created, false);
      assert.equal(again.key.id, key.id);
      chmodSync(file, 0o644);
      assert.throws(() => readKeyFile(file, { create: true }), (err: Error) => err instanceof VaultError && /chmod 600/.test(err.message));
      chmodSync(file, 0o600);
      writeFileSync(path.join(dir, 'bad.key'), 'not a key\n', { mode: 0o600 });
      assert.throws(() => readKeyFile(path.join(dir, 'bad.key'), { create: false }), /does not hold a 32-byte key/);
      assert.throws(() => readKeyFile(path.join(dir, 'missing.key'), { create: false }), /does not exist/);
      // Nothing about the key reaches the error messages.
      const text = readFileSync(file, 'utf8').trim();
      assert.ok(parseKeyText(text));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('P9 key resolution: GATEHOUSE_VAULT_KEY, else the key file, else the OS keyring (if @napi-rs/keyring is there), else a clear error', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-vault-'));
    try {
      const envKey = randomBytes(32);
      const fromEnv = await resolveVaultKey({ env: { GATEHOUSE_VAULT_KEY: envKey.toString('base64') }, keyFile: path.join(dir, 'k') });
      assert.equal(fromEnv.source, 'GATEHOUSE_VAULT_KEY');
      assert.equal(fromEnv.id, keyIdOf(envKey));
      const fromFile = await resolveVaultKey({ env: {}, keyFile: path.join(dir, 'k') });
      assert.match(fromFile.source, /^key file /);
      // No key file configured: the keyring, when the package exists.
      const store = new Map<string, string>();
      const keyring: KeyringModule = {
        Entry: class {
          constructor(
            private service: string,
            private account: string,
          ) {}
          getPassword() {
            return store.get(`${this.service}/${this.account}`) ?? null;
          }
          setPassword(p: string) {
            store.set(`${this.service}/${this.account}`, p);
          }
        },
      };
      const k1 = await resolveVaultKey({ env: {}, keyFile: null, keyringAccount: 'irc', loadKeyring: async () => keyring });
      const k2 = await resolveVaultKey({ env: {}, keyFile: null, keyringAccount: 'irc', loadKeyring: async () => keyring });
      assert.equal(k1.source, 'OS keyring');
      assert.equal(k1.id, k2.id);
      const debug: string[] = [];
      await assert.rejects(
        resolveVaultKey({ env: {}, keyFile: null, loadKeyring: async () => null, log: { debug: (m) => debug.push(m), info: () => {} } }),
        /no vault key: set GATEHOUSE_VAULT_KEY, or vault.keyFile/,
      );
      assert.ok(debug.some((m) => m.includes('@napi-rs/keyring is not installed')));
      // The real import: the package is not installed here, so the step is skipped with the same error.
      await assert.rejects(resolveVaultKey({ env: {}, keyFile: null }), /no vault key/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('P9 key resolution: a systemd credential (vault-key.NAME, else vault-key) comes after GATEHOUSE_VAULT_KEY and before the key file, which is then not created', async () => {
    const creds = mkdtempSync(path.join(tmpdir(), 'gatehouse-creds-'));
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-vault-'));
    try {
      const shared = randomBytes(32);
      const own = randomBytes(32);
      writeFileSync(path.join(creds, 'vault-key'), shared.toString('base64') + '\n', { mode: 0o400 });
      const env = { CREDENTIALS_DIRECTORY: creds };
      const keyFile = path.join(dir, 'k');

      const fromCredential = await resolveVaultKey({ env, keyFile, keyringAccount: 'irc' });
      assert.equal(fromCredential.id, keyIdOf(shared));
      assert.equal(fromCredential.source, `key file ${path.join(creds, 'vault-key')}`);
      assert.equal(existsSync(keyFile), false, 'the configured key file is not created');

      writeFileSync(path.join(creds, 'vault-key.irc'), own.toString('hex'), { mode: 0o400 });
      assert.equal((await resolveVaultKey({ env, keyFile, keyringAccount: 'irc' })).id, keyIdOf(own), 'the transport\'s own credential first');
      assert.equal((await resolveVaultKey({ env, keyFile, keyringAccount: 'matrix' })).id, keyIdOf(shared));

      const envKey = randomBytes(32);
      assert.equal((await resolveVaultKey({ env: { ...env, GATEHOUSE_VAULT_KEY: envKey.toString('base64') }, keyFile, keyringAccount: 'irc' })).id, keyIdOf(envKey));

      // A directory without the credential: the key file as before.
      assert.match((await resolveVaultKey({ env: { CREDENTIALS_DIRECTORY: dir }, keyFile: path.join(dir, 'sub', 'k') })).source, /^key file .*sub/);

      writeFileSync(path.join(creds, 'vault-key.discord'), 'not a key', { mode: 0o400 });
      await assert.rejects(resolveVaultKey({ env, keyFile, keyringAccount: 'discord' }), (err: Error) => err instanceof VaultError && /vault-key\.discord does not hold a 32-byte key/.test(err.message));
    } finally {
      rmSync(creds, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('P9 records: a fresh nonce each time, bound to user and network, readable only with a known key', () => {
    const k = vaultKey(randomBytes(32), 'test');
    const v = new Vault(k);
    const a = v.seal('alice@localhost', 'irc', { fields: { password: 'hunter2' } }, new Date());
    const b = v.seal('alice@localhost', 'irc', { fields: { password: 'hunter2' } }, new Date());
    assert.notDeepEqual(a.nonce, b.nonce);
    assert.notDeepEqual(a.ciphertext, b.ciphertext);
    assert.equal(a.ciphertext.includes(Buffer.from('hunter2')), false);
    assert.equal(v.open(a).fields.password, 'hunter2');
    assert.throws(() => v.open({ ...a, userJid: 'bob@localhost' }), VaultError);
    // Rotation: the new vault knows the old key only as a previous one.
    const next = new Vault(vaultKey(randomBytes(32), 'next'), [k]);
    assert.equal(next.open(a).fields.password, 'hunter2');
    const err = (() => {
      try {
        new Vault(vaultKey(randomBytes(32), 'other')).open(a);
      } catch (e) {
        return e as Error;
      }
      return null;
    })();
    assert.ok(err instanceof VaultKeyMismatchError);
    assert.match(err.message, new RegExp(`the vault key does not match the stored credentials \\(key id ${a.keyId} expected`));
    assert.throws(() => new Vault(vaultKey(randomBytes(32), 'x')).checkKeyIds([a.keyId]), VaultKeyMismatchError);
  });
});

describe('transport configuration', () => {
  const base = { adapter: 'irc', component: { domain: 'IRC.Example.org', secret: 's3cret-value' } };

  test('defaults, normalisation and environment overrides', () => {
    const c = parseTransportConfig(base, '/etc/gatehouse', undefined, {});
    assert.equal(c.adapter, 'irc');
    assert.equal(c.component.domain, 'irc.example.org');
    assert.equal(c.component.host, '127.0.0.1');
    assert.equal(c.component.port, 5347);
    assert.deepEqual(c.storage, { type: 'sqlite', path: '/etc/gatehouse/irc-transport.sqlite' });
    assert.equal(c.gracePeriod, 30_000);
    assert.deepEqual(c.reconnect, { min: 5000, max: 300_000 });
    assert.equal(c.retention.auditLog, 48 * 3600_000);
    assert.equal(c.vault.keyFile, null);
    const env = parseTransportConfig(base, '/x', 'irc', { GATEHOUSE_COMPONENT_SECRET: 'from-env', GATEHOUSE_TRANSPORT_STORAGE_URL: 'postgres://u:p@db/t' });
    assert.equal(env.component.secret, 'from-env');
    assert.deepEqual(env.storage, { type: 'postgres', url: 'postgres://u:p@db/t' });
  });

  test('one-line errors naming the key; secrets never shown', () => {
    const bad = (raw: unknown, name?: string) => {
      try {
        parseTransportConfig(raw, '/x', name, {});
      } catch (e) {
        assert.ok(e instanceof ConfigError, String(e));
        return e.message;
      }
      throw new Error('accepted');
    };
    assert.match(bad({ ...base, gracePeriod: 'soon' }), /^config error: gracePeriod: expected a duration/);
    assert.match(bad({ ...base, reconnect: { min: '10s', max: '1s' } }), /reconnect.max: must not be shorter/);
    assert.match(bad({ ...base, admins: ['not a jid'] }), /admins\[0\]: expected a bare JID/);
    assert.match(bad({ ...base, compnent: {} }), /unknown key \(did you mean "component"\?\)/);
    assert.match(bad({ component: { domain: 'x.example', secret: 's' } }), /^config error: adapter: missing/);
    assert.match(bad(base, 'matrix'), /adapter: the file is for adapter "irc", the command line asks for "matrix"/);
    assert.match(bad({ adapter: 'irc', component: { domain: 'x.example' } }), /component.secret: missing/);
    const secretMsg = bad({ adapter: 'irc', component: { domain: 'x.example', secret: 12345 } });
    assert.equal(secretMsg.includes('12345'), false, secretMsg);
  });
});

describe('audit output', () => {
  const rows: TransportAuditEntry[] = [
    { at: new Date('2026-03-01T10:00:00Z'), userJid: 'alice@example.org', network: 'irc', account: 'alice', server: 'irc.libera.chat', event: 'connecting', reason: null },
    { at: new Date('2026-03-01T10:00:01Z'), userJid: 'alice@example.org', network: 'irc', account: 'alice', server: 'irc.libera.chat', event: 'auth-failed', reason: 'bad password, "really"' },
    { at: new Date('2026-03-01T10:00:02Z'), userJid: 'bob@example.org', network: 'irc', account: '=cmd()', server: null, event: 'error', reason: 'line\nbreak' },
  ];

  test('table, CSV (quoted, formula-safe) and JSON', () => {
    const table = formatAudit(rows, 'table');
    assert.match(table.split('\n')[0]!, /^TIME\s+USER\s+NETWORK\s+ACCOUNT\s+SERVER\s+EVENT\s+REASON$/);
    assert.equal(table.trim().split('\n').length, 4);
    const csv = formatAudit(rows, 'csv').split('\r\n');
    assert.equal(csv[0], 'time,user,network,account,server,event,reason');
    assert.equal(csv[2], '2026-03-01T10:00:01.000Z,alice@example.org,irc,alice,irc.libera.chat,auth-failed,"bad password, ""really"""');
    assert.ok(csv[3]!.includes("'=cmd()"), 'formula prefix neutralised');
    const json = JSON.parse(formatAudit(rows, 'json'));
    assert.equal(json.length, 3);
    assert.deepEqual(Object.keys(json[0]), ['time', 'user', 'network', 'account', 'server', 'event', 'reason']);
    assert.equal(formatAudit([], 'table'), 'no connection log entries\n');
  });

  test('P10 reasons are scrubbed of credentials', () => {
    assert.equal(scrub('login failed for bob (password "hunter2")', ['hunter2', 'ab']), 'login failed for bob (password "***")');
  });
});

describe('network session base', () => {
  class ProbeSession extends LegacySessionEmitter {
    protected readonly network = 'probe';
    readonly lines: { msg: string; fields?: Record<string, unknown> }[] = [];
    protected readonly log: AdapterLogger = {
      debug: () => {},
      info: () => {},
      warn: (msg, fields) => this.lines.push({ msg, fields }),
    };
    protected override logContext(): Record<string, string> {
      return { server: 'irc.example.org' };
    }
    emitMessage(body: string): void {
      this.safeEmit('message', { id: 'bob', server: 'irc.example.org' }, { text: body });
    }
    libraryCallback(fn: () => void): void {
      this.guard('privmsg', fn);
    }
  }

  test('a throwing kit listener or library handler is logged with the connection, without the message text', () => {
    const s = new ProbeSession();
    s.on('message', () => {
      throw new Error('listener broke');
    });
    assert.doesNotThrow(() => s.emitMessage('secret body text'));
    assert.doesNotThrow(() =>
      s.libraryCallback(() => {
        throw new Error('handler broke');
      }),
    );
    assert.deepEqual(
      s.lines.map((l) => [l.msg, l.fields?.server, l.fields?.error]),
      [
        ['probe session listener failed', 'irc.example.org', 'listener broke'],
        ['probe event handler failed', 'irc.example.org', 'handler broke'],
      ],
    );
    assert.ok(!JSON.stringify(s.lines).includes('secret body text'));
  });
});
