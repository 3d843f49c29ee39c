/** AccountService, on every configured test database (SQLite always). */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseConfig, type Config } from '../../server/config/index.js';
import { openStorage } from '../../storage/datasource.js';
import { storageTargets } from '../../storage/test-databases.js';
import type { Storage } from '../../storage/types.js';
import { HookBus } from '../../server/core/hooks.js';
import { LocalSessionRegistry, type ClientSession } from '../../server/core/session.js';
import {
  AccountError,
  AccountExistsError,
  AccountService,
  InvalidPasswordError,
  InvalidUsernameError,
  MAX_PASSWORD_BYTES,
  MAX_USERNAME_CHARS,
  NoSuchAccountError,
  UnknownHostError,
  makeVerifierAsync,
} from '../../server/accounts/service.js';
import { makeVerifier, verifyPlain } from '../../server/auth/scram.js';
import { ManualClock } from '../../shared/clock.js';
import { Jid } from '../../shared/jid.js';

function makeConfig(dir: string, auth: Record<string, unknown> = { scramIterations: 4096 }): Config {
  return parseConfig({ dataDir: dir, hosts: [{ domain: 'localhost' }, { domain: 'example.org' }], auth }, dir);
}

/** A bound session as the registry sees it, recording how it was closed. */
function fakeSession(full: string): ClientSession & { closedWith: (string | undefined)[] } {
  const closedWith: (string | undefined)[] = [];
  return {
    id: randomBytes(4).toString('hex'),
    jid: Jid.parse(full),
    ip: '127.0.0.1',
    secure: true,
    account: null,
    startedAt: new Date(),
    counters: { stanzasIn: 0, stanzasOut: 0, bytesIn: 0, bytesOut: 0 },
    available: false,
    priority: 0,
    presence: null,
    interested: false,
    directedPresence: new Set(),
    capabilities: undefined,
    hasFlag: () => false,
    setFlag() {},
    send() {},
    close(condition?: string) {
      closedWith.push(condition);
    },
    closedWith,
  };
}

test('makeVerifierAsync gives the same verifier as makeVerifier for the same salt', async () => {
  const salt = randomBytes(16);
  for (const hash of ['SHA-1', 'SHA-256'] as const) {
    const a = await makeVerifierAsync('pässwörd ﬁ', hash, 4096, salt);
    const b = makeVerifier('pässwörd ﬁ', hash, 4096, salt);
    assert.deepEqual(a, b);
    assert.ok(verifyPlain('pässwörd ﬁ', a));
  }
  await assert.rejects(makeVerifierAsync('x', 'SHA-256', 100), RangeError);
});

for (const target of storageTargets()) {
  describe(`AccountService on ${target.name}`, () => {
    let dir: string;
    let db: Awaited<ReturnType<typeof target.make>>;
    let storage: Storage;
    let hooks: HookBus;
    let sessions: LocalSessionRegistry;
    let clock: ManualClock;
    let config: Config;
    let service: AccountService;

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'gatehouse-accounts-'));
      db = await target.make();
      storage = await openStorage(db.config);
      hooks = new HookBus();
      sessions = new LocalSessionRegistry();
      clock = new ManualClock(Date.UTC(2026, 2, 1));
      config = makeConfig(dir);
      service = new AccountService({ storage, hooks, config, clock, sessions });
    });

    after(async () => {
      await storage.close();
      await db.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    test('P1 accounts are keyed by the normalised username: Alice, ALICE and alice are one account', async () => {
      const created: string[] = [];
      const off = hooks.on('account/created', ({ jid, ip }) => void created.push(`${jid.bare} ${ip}`));
      const account = await service.create('Alice', 'LocalHost', 'pw-alice', '192.0.2.1');
      off();
      assert.equal(account.username, 'alice');
      assert.equal(account.host, 'localhost');
      assert.deepEqual(created, ['alice@localhost 192.0.2.1']);
      await assert.rejects(service.create('ALICE', 'localhost', 'other', null), AccountExistsError);
      await assert.rejects(service.create('alice', 'localhost', 'other', null), (err: unknown) => err instanceof AccountError && err.code === 'exists');
      assert.equal(await service.exists('aLiCe', 'localhost'), true);
      assert.equal((await service.get('ALICE', 'localhost'))?.id, account.id);
      // The same localpart on another host is another account.
      const other = await service.create('alice', 'example.org', 'pw', null);
      assert.notEqual(other.id, account.id);
      assert.deepEqual((await service.list('localhost')).map((a) => a.username), ['alice']);
      assert.deepEqual((await service.list()).map((a) => `${a.username}@${a.host}`).sort(), ['alice@example.org', 'alice@localhost']);
    });

    test('P1 invalid usernames are refused with a typed error and nothing is stored', async () => {
      const before = await storage.accounts.count();
      for (const bad of ['a@b', 'a/b', 'a b', '', ' ', 'tab\there', 'x'.repeat(1024), 'ü'.repeat(512), 'z'.repeat(MAX_USERNAME_CHARS + 1), 'quote"', 'colon:']) {
        await assert.rejects(service.create(bad, 'localhost', 'pw', null), InvalidUsernameError, JSON.stringify(bad).slice(0, 40));
      }
      // RFC 7622 allows 1023 bytes; the accounts table holds 255 characters (inclusive).
      await service.create('y'.repeat(MAX_USERNAME_CHARS - 1) + 'ü', 'localhost', 'pw', null);
      assert.equal(await storage.accounts.count(), before + 1);
      assert.equal(await service.exists('a@b', 'localhost'), false);
    });

    test('unknown hosts are refused', async () => {
      await assert.rejects(service.create('carol', 'elsewhere.net', 'pw', null), UnknownHostError);
      await assert.rejects(service.create('carol', 'bad host', 'pw', null), UnknownHostError);
      await assert.rejects(service.changePassword('carol', 'elsewhere.net', 'pw'), UnknownHostError);
    });

    test('P2 only SCRAM verifiers are stored, one per configured hash, with the configured iterations', async () => {
      const account = await service.create('dave', 'localhost', 'correct horse', null);
      const verifiers = await storage.accounts.getVerifiers(account.id);
      assert.deepEqual(verifiers.map((v) => v.hash).sort(), ['SHA-1', 'SHA-256']);
      for (const v of verifiers) {
        assert.equal(v.iterations, 4096);
        assert.ok(v.salt.length >= 16);
        assert.equal(v.storedKey.length, v.hash === 'SHA-1' ? 20 : 32);
        assert.ok(verifyPlain('correct horse', v));
        assert.ok(!verifyPlain('correct horse!', v));
        for (const buf of [v.salt, v.storedKey, v.serverKey]) assert.ok(!buf.includes(Buffer.from('correct horse')));
      }
      // Salts differ between the hashes and between accounts.
      assert.notDeepEqual(verifiers[0]!.salt, verifiers[1]!.salt);

      const only256 = new AccountService({ storage, hooks, config: makeConfig(dir, { scramIterations: 5000, hashes: ['SHA-256'] }), clock, sessions });
      const e = await only256.create('erin', 'localhost', 'pw', null);
      const ev = await storage.accounts.getVerifiers(e.id);
      assert.deepEqual(ev.map((v) => [v.hash, v.iterations]), [['SHA-256', 5000]]);
    });

    test('P2 unusable passwords are refused and no error message contains the password', async () => {
      const marker = 'MARKER' + randomBytes(6).toString('hex');
      const bad = ['', marker + '\u0007', marker + '\u{E0001}', marker + 'x'.repeat(MAX_PASSWORD_BYTES)];
      for (const pw of bad) {
        const err = await service.create('frank', 'localhost', pw, null).then(
          () => null,
          (e: unknown) => e,
        );
        assert.ok(err instanceof InvalidPasswordError, `expected InvalidPasswordError for a ${pw.length}-character password`);
        assert.ok(!err.message.includes(marker) && !String(err.stack).includes(marker));
      }
      assert.equal(await service.exists('frank', 'localhost'), false);
      const acc = await service.create('frank', 'localhost', marker, null);
      await assert.rejects(service.changePassword('frank', 'localhost', ''), InvalidPasswordError);
      // An empty new password keeps the old one (XEP-0077 3.3).
      assert.ok(verifyPlain(marker, (await storage.accounts.getVerifiers(acc.id))[0]!));
    });

    test('P2 changePassword replaces every verifier', async () => {
      const acc = await service.create('grace', 'localhost', 'old-pw', null);
      await service.changePassword('GRACE', 'localhost', 'new-pw');
      const verifiers = await storage.accounts.getVerifiers(acc.id);
      assert.equal(verifiers.length, 2);
      for (const v of verifiers) {
        assert.ok(verifyPlain('new-pw', v));
        assert.ok(!verifyPlain('old-pw', v));
      }
      await assert.rejects(service.changePassword('nobody', 'localhost', 'x'), NoSuchAccountError);
    });

    test('P4 created_at comes from the clock and last use starts empty', async () => {
      clock.set(new Date(Date.UTC(2026, 4, 5, 6, 7, 8)));
      const acc = await service.create('heidi', 'localhost', 'pw', null);
      assert.equal(acc.createdAt.toISOString(), '2026-05-05T06:07:08.000Z');
      assert.equal(acc.lastUsedAt, null);
    });

    test('P23 delete tells modules first, ends every session with not-authorized, then erases every row', async () => {
      const acc = await service.create('ivan', 'localhost', 'pw', null);
      const peer = await service.create('judy', 'localhost', 'pw', null);
      await storage.vcards.set(acc.id, 'vcard', '<vCard xmlns="vcard-temp"><FN>Ivan</FN></vCard>');
      await storage.privateXml.set(acc.id, '{storage:bookmarks} storage', '<storage xmlns="storage:bookmarks"/>');
      await storage.accountState.set(acc.id, 'last', '<last/>');
      await storage.roster.put(acc.id, { jid: 'judy@localhost', name: 'Judy', subscription: 'both', ask: false, pendingIn: false, approved: false, groups: ['Friends'] });
      await storage.offline.store(acc.id, '<message to="ivan@localhost"><body>hi</body></message>', clock.now());
      await storage.roster.put(peer.id, { jid: 'ivan@localhost', name: null, subscription: 'both', ask: false, pendingIn: false, approved: false, groups: [] });

      const s1 = fakeSession('ivan@localhost/phone');
      const s2 = fakeSession('ivan@localhost/laptop');
      const other = fakeSession('judy@localhost/desk');
      for (const s of [s1, s2, other]) sessions.add(s);

      const events: string[] = [];
      const offs = [
        hooks.on('account/deleting', async ({ account, jid }) => {
          // The account, its roster and its sessions still exist while modules clean up.
          assert.ok(await storage.accounts.get('ivan', 'localhost'));
          assert.equal((await storage.roster.list(account.id)).length, 1);
          assert.equal(s1.closedWith.length, 0);
          events.push(`deleting ${jid.bare}`);
        }),
        hooks.on('account/deleted', ({ jid }) => void events.push(`deleted ${jid.bare}`)),
      ];
      await service.delete('Ivan', 'localhost');
      offs.forEach((off) => off());

      assert.deepEqual(events, ['deleting ivan@localhost', 'deleted ivan@localhost']);
      assert.deepEqual(s1.closedWith, ['not-authorized']);
      assert.deepEqual(s2.closedWith, ['not-authorized']);
      assert.deepEqual(other.closedWith, []);
      assert.equal(await storage.accounts.get('ivan', 'localhost'), null);
      assert.deepEqual(await storage.accounts.getVerifiers(acc.id), []);
      assert.equal(await storage.vcards.get(acc.id, 'vcard'), null);
      assert.equal(await storage.privateXml.get(acc.id, '{storage:bookmarks} storage'), null);
      assert.equal(await storage.accountState.get(acc.id, 'last'), null);
      assert.deepEqual(await storage.roster.list(acc.id), []);
      assert.equal(await storage.offline.count(acc.id), 0);
      // Other accounts are untouched (their roster entry is the presence module's business).
      assert.ok(await storage.accounts.get('judy', 'localhost'));
      await assert.rejects(service.delete('ivan', 'localhost'), NoSuchAccountError);
      // The name is free again.
      await service.create('ivan', 'localhost', 'pw', null);
    });
  });
}
