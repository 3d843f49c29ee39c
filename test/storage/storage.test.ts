/**
 * Storage contract tests, run against every target of storageTargets(): SQLite always, MariaDB/MySQL
 * with GATEHOUSE_TEST_MYSQL_URL, PostgreSQL with GATEHOUSE_TEST_POSTGRES_URL.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import {
  StorageError,
  describeDatabase,
  openStorage,
  pendingMigrations,
  runMigrations,
  type StorageConfig,
} from '../../storage/datasource.js';
import { storageTargets } from '../../storage/test-databases.js';
import { asTypeOrmStorage, type TypeOrmStorage } from '../../storage/typeorm-storage.js';
import type { RosterItem, ScramVerifier, Storage } from '../../storage/types.js';
import { migrations } from '../../storage/migrations/index.js';

const MIGRATION_NAMES = migrations.map((m) => new m().name);
const SECRET = 'Sup3r-Secret-Pw';
const DATASOURCE_MODULE = fileURLToPath(new URL('../../storage/datasource.js', import.meta.url));

/** A fixed instant after every "expired" message of the takeExpired test. */
const T0 = new Date(Date.UTC(2031, 4, 6, 7, 8, 9, 123));

function verifiers(): ScramVerifier[] {
  return [
    { hash: 'SHA-1', salt: randomBytes(16), iterations: 4096, storedKey: randomBytes(20), serverKey: randomBytes(20) },
    {
      hash: 'SHA-256',
      // every byte value, including NUL and invalid UTF-8
      salt: Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
      iterations: 10_000,
      storedKey: Buffer.concat([Buffer.from([0, 0xff, 0xfe, 0x80]), randomBytes(28)]),
      serverKey: Buffer.alloc(32, 0),
    },
  ];
}

function item(jid: string, over: Partial<RosterItem> = {}): RosterItem {
  return { jid, name: null, subscription: 'none', ask: false, pendingIn: false, approved: false, groups: [], ...over };
}

let seq = 0;
function uname(prefix = 'user'): string {
  return `${prefix}${++seq}-${randomBytes(3).toString('hex')}`;
}

function byHash(v: ScramVerifier[]): ScramVerifier[] {
  return [...v].sort((a, b) => a.hash.localeCompare(b.hash));
}

/**
 * Child process: open the storage, store one offline message (a durable commit), record the
 * account's last use (a relaxed commit), report the message id, then hang until killed.
 */
const CHILD = `
const { openStorage } = await import(process.env.GH_DATASOURCE);
const storage = await openStorage(JSON.parse(process.env.GH_CONFIG), { migrate: false });
const at = new Date(Number(process.env.GH_AT));
const id = await storage.offline.store(Number(process.env.GH_ACCOUNT), process.env.GH_STANZA, at);
await storage.accounts.touch(Number(process.env.GH_ACCOUNT), at);
process.stdout.write('stored ' + id + '\\n');
setInterval(() => {}, 1000);
`;

function storeInChildThenKill(config: StorageConfig, accountId: number, stanza: string, at: Date): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
      env: {
        ...process.env,
        GH_DATASOURCE: DATASOURCE_MODULE,
        GH_CONFIG: JSON.stringify(config),
        GH_ACCOUNT: String(accountId),
        GH_STANZA: stanza,
        GH_AT: String(at.getTime()),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let id: number | null = null;
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /stored (\d+)\n/.exec(out);
      if (m && id === null) {
        id = Number(m[1]);
        child.kill('SIGKILL'); // no graceful shutdown: the write must already be durable
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      if (id !== null && signal === 'SIGKILL') resolve(id);
      else reject(new Error(`child did not store (signal ${signal}): ${err || out}`));
    });
  });
}

for (const target of storageTargets()) {
  describe(`storage on ${target.name}`, () => {
    let db: { config: StorageConfig; drop(): Promise<void> };
    let storage: Storage;
    let internals: TypeOrmStorage;

    before(async () => {
      db = await target.make();
      storage = await openStorage(db.config);
      internals = asTypeOrmStorage(storage);
    });

    after(async () => {
      await storage?.close();
      await db?.drop();
    });

    async function newAccount(prefix = 'user', host = 'example.org') {
      const a = await storage.accounts.create(uname(prefix), host, verifiers(), T0);
      assert.ok(a);
      return a;
    }

    it('applies migrations from empty and is idempotent', async () => {
      const fresh = await target.make();
      try {
        const logs: string[] = [];
        await assert.rejects(openStorage(fresh.config, { migrate: false }), (err: Error) => {
          assert.ok(err instanceof StorageError);
          assert.match(err.message, /pending migration/);
          return true;
        });
        assert.deepEqual(await pendingMigrations(fresh.config), MIGRATION_NAMES);
        assert.deepEqual(await runMigrations(fresh.config, { logger: (m) => logs.push(m) }), MIGRATION_NAMES);
        assert.ok(logs.some((l) => l.includes(MIGRATION_NAMES[0]!)), logs.join('\n'));
        assert.deepEqual(await runMigrations(fresh.config), []);
        assert.deepEqual(await pendingMigrations(fresh.config), []);
        logs.length = 0;
        const s = await openStorage(fresh.config, { logger: (m) => logs.push(m) });
        try {
          assert.equal(s.kind, db.config.type);
          assert.deepEqual(logs.filter((l) => l.includes('applied')), []);
          const counts = await asTypeOrmStorage(s).tableCounts();
          assert.deepEqual(counts, {
            accounts: 0,
            scram_verifiers: 0,
            roster_items: 0,
            roster_versions: 0,
            offline_messages: 0,
            kv_items: 0,
          });
        } finally {
          await s.close();
        }
        // migrate:false opens a current schema
        const s2 = await openStorage(fresh.config, { migrate: false });
        await s2.close();
      } finally {
        await fresh.drop();
      }
    });

    if (target.name === 'sqlite') {
      it('SQLite uses WAL, synchronous=FULL, foreign keys and a busy timeout', async () => {
        assert.equal((await internals.rawQuery('PRAGMA journal_mode'))[0].journal_mode, 'wal');
        assert.equal((await internals.rawQuery('PRAGMA synchronous'))[0].synchronous, 2);
        assert.equal((await internals.rawQuery('PRAGMA foreign_keys'))[0].foreign_keys, 1);
        assert.ok((await internals.rawQuery('PRAGMA busy_timeout'))[0].timeout >= 5000);
      });
    }

    if (target.name === 'mysql') {
      it('MySQL tables are InnoDB, utf8mb4 with an exact collation, MEDIUMTEXT for large XML', async () => {
        const tables = await internals.rawQuery(
          `SELECT TABLE_NAME AS t, ENGINE AS e FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()`,
        );
        assert.ok(tables.length >= 6);
        for (const t of tables) assert.equal(t.e, 'InnoDB', t.t);
        const cols = await internals.rawQuery(
          `SELECT TABLE_NAME AS t, COLUMN_NAME AS c, DATA_TYPE AS d, CHARACTER_SET_NAME AS cs, COLLATION_NAME AS co
           FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME <> 'migrations' AND CHARACTER_SET_NAME IS NOT NULL`,
        );
        assert.ok(cols.length > 10);
        for (const c of cols) {
          assert.equal(c.cs, 'utf8mb4', `${c.t}.${c.c}`);
          assert.match(c.co, /_bin$/, `${c.t}.${c.c}`);
        }
        const type = (t: string, c: string) => cols.find((x) => x.t === t && x.c === c)?.d;
        assert.equal(type('offline_messages', 'stanza'), 'mediumtext');
        assert.equal(type('kv_items', 'xml'), 'mediumtext');
      });
    }

    it('accounts: create, duplicate, get', async () => {
      const name = uname();
      const a = await storage.accounts.create(name, 'example.org', verifiers(), T0);
      assert.ok(a);
      assert.ok(Number.isInteger(a.id) && a.id > 0);
      assert.deepEqual(a, { id: a.id, username: name, host: 'example.org', createdAt: T0, lastUsedAt: null, warnedAt: null });
      assert.equal(await storage.accounts.create(name, 'example.org', verifiers(), T0), null);
      assert.deepEqual(await storage.accounts.get(name, 'example.org'), a);
      assert.equal(await storage.accounts.get(name, 'example.net'), null);
      assert.equal(await storage.accounts.get(`${name}x`, 'example.org'), null);
      // same username on another host is another account
      const b = await storage.accounts.create(name, 'example.net', [], T0);
      assert.ok(b && b.id !== a.id);
      assert.deepEqual(await storage.accounts.getVerifiers(b.id), []);
      assert.equal(await storage.roster.version(a.id), '0');
    });

    it('accounts: concurrent creates of one name make exactly one account', async () => {
      const name = uname('race');
      const results = await Promise.all(Array.from({ length: 8 }, () => storage.accounts.create(name, 'race.example', verifiers(), T0)));
      assert.equal(results.filter((r) => r !== null).length, 1);
      assert.equal(await storage.accounts.count('race.example'), 1);
    });

    it('accounts: verifiers round-trip byte-exact and can be replaced', async () => {
      const v = verifiers();
      const a = await storage.accounts.create(uname(), 'example.org', v, T0);
      assert.ok(a);
      const got = await storage.accounts.getVerifiers(a.id);
      assert.deepEqual(byHash(got), byHash(v));
      for (const g of got) assert.ok(Buffer.isBuffer(g.salt) && Buffer.isBuffer(g.storedKey) && Buffer.isBuffer(g.serverKey));
      const v2 = [{ hash: 'SHA-256' as const, salt: randomBytes(24), iterations: 600_000, storedKey: randomBytes(32), serverKey: randomBytes(32) }];
      await storage.accounts.setVerifiers(a.id, v2);
      assert.deepEqual(await storage.accounts.getVerifiers(a.id), v2);
      await storage.accounts.setVerifiers(a.id, []);
      assert.deepEqual(await storage.accounts.getVerifiers(a.id), []);
    });

    it('accounts: touch, setWarnedAt, list, count, listInactiveSince', async () => {
      const host = `${uname('h')}.example`;
      const t1 = new Date(Date.UTC(2030, 0, 1, 0, 0, 0, 1));
      const t2 = new Date(Date.UTC(2030, 0, 2, 0, 0, 0, 2));
      const t3 = new Date(Date.UTC(2030, 0, 3, 0, 0, 0, 3));
      const a = (await storage.accounts.create('alice', host, [], t1))!;
      const b = (await storage.accounts.create('bob', host, [], t2))!;
      const c = (await storage.accounts.create('carol', host, [], t1))!;
      assert.ok(a && b && c);
      await storage.accounts.touch(c.id, t3); // carol: created early, used late
      const carol = await storage.accounts.get('carol', host);
      assert.equal(carol?.lastUsedAt?.getTime(), t3.getTime());
      await storage.accounts.setWarnedAt(a.id, t2);
      assert.equal((await storage.accounts.get('alice', host))?.warnedAt?.getTime(), t2.getTime());
      await storage.accounts.setWarnedAt(a.id, null);
      assert.equal((await storage.accounts.get('alice', host))?.warnedAt, null);

      assert.equal(await storage.accounts.count(host), 3);
      assert.ok((await storage.accounts.count()) >= 3);
      assert.deepEqual(
        (await storage.accounts.list(host)).map((x) => x.username),
        ['alice', 'bob', 'carol'],
      );
      assert.ok((await storage.accounts.list()).some((x) => x.id === b.id));

      const inactive = (before: Date, limit = 1000) =>
        storage.accounts.listInactiveSince(before, limit).then((l) => l.filter((x) => x.host === host).map((x) => x.username));
      assert.deepEqual(await inactive(new Date(t2.getTime() + 1)), ['alice', 'bob']);
      assert.deepEqual(await inactive(t2), ['alice']);
      assert.deepEqual(await inactive(new Date(t3.getTime() + 1)), ['alice', 'bob', 'carol']);
      const limited = await storage.accounts.listInactiveSince(new Date(t3.getTime() + 1), 1);
      assert.equal(limited.length, 1);
    });

    it('accounts: delete removes every owned row (ON DELETE CASCADE)', async () => {
      const fill = async () => {
        const a = await newAccount('del');
        await storage.roster.put(a.id, item('x@example.org'));
        await storage.roster.put(a.id, item('y@example.org'));
        await storage.offline.store(a.id, '<message/>', T0);
        await storage.offline.store(a.id, '<message/>', T0);
        await storage.vcards.set(a.id, 'vcard', '<vCard xmlns="vcard-temp"/>');
        await storage.privateXml.set(a.id, '{storage:bookmarks} storage', '<storage xmlns="storage:bookmarks"/>');
        await storage.accountState.set(a.id, 'last', '<last/>');
        return a;
      };
      const victim = await fill();
      const bystander = await fill();
      const expected = { accounts: 1, scram_verifiers: 2, roster_items: 2, roster_versions: 1, offline_messages: 2, kv_items: 3 };
      assert.deepEqual(await internals.tableCounts(victim.id), expected);
      const totals = await internals.tableCounts();

      assert.equal(await storage.accounts.delete(victim.id), true);
      assert.deepEqual(await internals.tableCounts(victim.id), {
        accounts: 0,
        scram_verifiers: 0,
        roster_items: 0,
        roster_versions: 0,
        offline_messages: 0,
        kv_items: 0,
      });
      assert.deepEqual(await internals.tableCounts(bystander.id), expected);
      const after = await internals.tableCounts();
      for (const [table, n] of Object.entries(expected)) assert.equal(after[table], totals[table]! - n, table);

      assert.equal(await storage.accounts.delete(victim.id), false);
      assert.equal(await storage.accounts.get(victim.username, victim.host), null);
      // the name is free again, with a fresh id
      const again = await storage.accounts.create(victim.username, victim.host, [], T0);
      assert.ok(again && again.id !== victim.id);
      assert.deepEqual(await storage.roster.list(again.id), []);
      assert.equal(await storage.roster.version(again.id), '0');
    });

    it('roster: put, get, list, replace, remove, versions', async () => {
      const a = await newAccount('roster');
      assert.equal(await storage.roster.version(a.id), '0');
      assert.deepEqual(await storage.roster.list(a.id), []);
      assert.equal(await storage.roster.get(a.id, 'juliet@example.com'), null);

      const juliet = item('juliet@example.com', { name: 'Juliet', subscription: 'both', groups: ['Friends', 'Capulets'] });
      assert.equal(await storage.roster.put(a.id, juliet), '1');
      const nurse = item('nurse@example.com', { subscription: 'from', ask: true, pendingIn: true, approved: true });
      assert.equal(await storage.roster.put(a.id, nurse), '2');
      assert.deepEqual(await storage.roster.get(a.id, 'juliet@example.com'), juliet);
      assert.deepEqual(await storage.roster.get(a.id, 'nurse@example.com'), nurse);
      assert.deepEqual(await storage.roster.list(a.id), [juliet, nurse]);

      const juliet2 = item('juliet@example.com', { name: null, subscription: 'to', ask: true, groups: [] });
      assert.equal(await storage.roster.put(a.id, juliet2), '3');
      assert.deepEqual(await storage.roster.get(a.id, 'juliet@example.com'), juliet2);
      assert.equal((await storage.roster.list(a.id)).length, 2);

      assert.equal(await storage.roster.remove(a.id, 'juliet@example.com'), '4');
      assert.equal(await storage.roster.get(a.id, 'juliet@example.com'), null);
      assert.equal(await storage.roster.remove(a.id, 'juliet@example.com'), '4', 'nothing removed: version unchanged');
      assert.equal(await storage.roster.version(a.id), '4');
      assert.deepEqual(await storage.roster.list(a.id), [nurse]);

      // versions are per account
      const b = await newAccount('roster');
      assert.equal(await storage.roster.put(b.id, juliet), '1');
      assert.equal(await storage.roster.version(a.id), '4');
    });

    it('roster: concurrent puts get distinct, consecutive versions', async () => {
      const a = await newAccount('rrace');
      const n = 16;
      const versions = await Promise.all(Array.from({ length: n }, (_, i) => storage.roster.put(a.id, item(`c${i % 4}@example.com`))));
      assert.deepEqual(
        versions.map(Number).sort((x, y) => x - y),
        Array.from({ length: n }, (_, i) => i + 1),
      );
      assert.equal(await storage.roster.version(a.id), String(n));
      assert.equal((await storage.roster.list(a.id)).length, 4);
    });

    it('roster: listByContact', async () => {
      const contact = `${uname('romeo')}@example.net`;
      const a = await newAccount('lbc');
      const b = await newAccount('lbc');
      const c = await newAccount('lbc');
      await storage.roster.put(a.id, item(contact, { subscription: 'both', groups: ['G'] }));
      await storage.roster.put(b.id, item(contact, { subscription: 'from', pendingIn: true }));
      await storage.roster.put(c.id, item(`other-${contact}`));
      const found = await storage.roster.listByContact(contact);
      assert.deepEqual(
        found.sort((x, y) => x.accountId - y.accountId),
        [
          { accountId: a.id, username: a.username, host: a.host, item: item(contact, { subscription: 'both', groups: ['G'] }) },
          { accountId: b.id, username: b.username, host: b.host, item: item(contact, { subscription: 'from', pendingIn: true }) },
        ],
      );
      assert.deepEqual(await storage.roster.listByContact(`nobody-${contact}`), []);
    });

    it('offline: stores made together are all committed, in order, and one that fails takes no other with it', async () => {
      const a = await newAccount('grp');
      const b = await newAccount('grp');
      // All issued in one turn of the event loop: they share one transaction (group commit).
      const stores = [];
      for (let i = 0; i < 40; i++) stores.push(storage.offline.store(i % 2 ? a.id : b.id, `<message id="g${i}"/>`, new Date(T0.getTime() + i)));
      const doomed = storage.offline.store(2_000_000_000, '<message id="nobody"/>', T0); // no such account
      stores.push(storage.offline.store(a.id, '<message id="after"/>', T0));
      const results = await Promise.allSettled([...stores, doomed]);
      const rejected = results.filter((r) => r.status === 'rejected');
      assert.equal(rejected.length, 1, 'only the store for the missing account fails');
      assert.ok((rejected[0] as PromiseRejectedResult).reason instanceof StorageError);
      assert.equal(await storage.offline.count(a.id), 21);
      assert.equal(await storage.offline.count(b.id), 20);
      const listed = (await storage.offline.list(a.id)).map((m) => m.stanza);
      assert.deepEqual(listed, [...Array.from({ length: 20 }, (_, k) => `<message id="g${2 * k + 1}"/>`), '<message id="after"/>']);
    });

    it('offline: store, list order, count, delete', async () => {
      const a = await newAccount('off');
      const b = await newAccount('off');
      const ids: number[] = [];
      for (let i = 0; i < 5; i++) ids.push(await storage.offline.store(a.id, `<message id="m${i}"/>`, new Date(T0.getTime() + i)));
      const other = await storage.offline.store(b.id, '<message id="other"/>', T0);
      for (let i = 1; i < ids.length; i++) assert.ok(ids[i]! > ids[i - 1]!, 'ids increase');
      assert.equal(await storage.offline.count(a.id), 5);
      const list = await storage.offline.list(a.id);
      assert.deepEqual(
        list,
        ids.map((id, i) => ({ id, stanza: `<message id="m${i}"/>`, receivedAt: new Date(T0.getTime() + i) })),
      );
      await storage.offline.delete(a.id, [ids[1]!, ids[3]!, other]); // someone else's id is ignored
      assert.deepEqual(
        (await storage.offline.list(a.id)).map((m) => m.id),
        [ids[0], ids[2], ids[4]],
      );
      assert.equal(await storage.offline.count(a.id), 3);
      assert.equal(await storage.offline.count(b.id), 1);
      await storage.offline.delete(a.id, []);
      await storage.offline.delete(a.id, [ids[0]!, ids[2]!, ids[4]!, ids[4]!]);
      assert.equal(await storage.offline.count(a.id), 0);
      assert.deepEqual(await storage.offline.list(a.id), []);
    });

    it('offline: takeExpired removes and returns in batches, without double takes', async () => {
      const a = await newAccount('exp');
      const b = await newAccount('exp');
      const old = (i: number) => new Date(Date.UTC(1990, 0, 1) + i * 1000);
      const expected = new Map<number, { accountId: number; stanza: string; receivedAt: Date }>();
      for (let i = 0; i < 25; i++) {
        const owner = i % 2 ? a : b;
        const stanza = `<message id="old${i}"/>`;
        const id = await storage.offline.store(owner.id, stanza, old(i));
        expected.set(id, { accountId: owner.id, stanza, receivedAt: old(i) });
      }
      const fresh = await storage.offline.store(a.id, '<message id="fresh"/>', new Date(Date.UTC(1995, 0, 1)));
      const before = new Date(Date.UTC(1991, 0, 1));

      const first = await storage.offline.takeExpired(before, 10);
      assert.equal(first.length, 10);
      // oldest first
      assert.deepEqual(
        first.map((m) => m.receivedAt.getTime()),
        Array.from({ length: 10 }, (_, i) => old(i).getTime()),
      );
      for (const m of first) assert.deepEqual({ accountId: m.accountId, stanza: m.stanza, receivedAt: m.receivedAt }, expected.get(m.id));

      // concurrent sweepers never return the same message twice
      const taken = new Set(first.map((m) => m.id));
      for (let round = 0; round < 10 && taken.size < 25; round++) {
        const batches = await Promise.all([1, 2, 3].map(() => storage.offline.takeExpired(before, 4)));
        for (const m of batches.flat()) {
          assert.ok(!taken.has(m.id), `message ${m.id} taken twice`);
          assert.ok(expected.has(m.id));
          taken.add(m.id);
        }
      }
      assert.equal(taken.size, 25);
      assert.deepEqual(await storage.offline.takeExpired(before, 10), []);
      assert.deepEqual(
        (await storage.offline.list(a.id)).map((m) => m.id),
        [fresh],
      );
      assert.equal(await storage.offline.count(b.id), 0);
    });

    it('kv: vcard, private and account state are separate; set, get, overwrite, delete', async () => {
      const a = await newAccount('kv');
      const b = await newAccount('kv');
      assert.equal(await storage.vcards.get(a.id, 'vcard'), null);
      await storage.vcards.set(a.id, 'vcard', '<vCard xmlns="vcard-temp"><FN>A</FN></vCard>');
      await storage.privateXml.set(a.id, 'vcard', '<private-one/>');
      await storage.accountState.set(a.id, 'vcard', '<state-one/>');
      await storage.vcards.set(b.id, 'vcard', '<vCard xmlns="vcard-temp"><FN>B</FN></vCard>');
      assert.equal(await storage.vcards.get(a.id, 'vcard'), '<vCard xmlns="vcard-temp"><FN>A</FN></vCard>');
      assert.equal(await storage.privateXml.get(a.id, 'vcard'), '<private-one/>');
      assert.equal(await storage.accountState.get(a.id, 'vcard'), '<state-one/>');
      assert.equal(await storage.vcards.get(b.id, 'vcard'), '<vCard xmlns="vcard-temp"><FN>B</FN></vCard>');

      await storage.vcards.set(a.id, 'vcard', '<vCard xmlns="vcard-temp"><FN>A2</FN></vCard>');
      assert.equal(await storage.vcards.get(a.id, 'vcard'), '<vCard xmlns="vcard-temp"><FN>A2</FN></vCard>');

      const k1 = '{storage:bookmarks} storage';
      const k2 = '{urn:example:prefs} prefs';
      await storage.privateXml.set(a.id, k1, '<storage xmlns="storage:bookmarks"/>');
      await storage.privateXml.set(a.id, k2, '<prefs xmlns="urn:example:prefs"/>');
      await storage.privateXml.set(a.id, k1, '<storage xmlns="storage:bookmarks"><conference/></storage>');
      assert.equal(await storage.privateXml.get(a.id, k1), '<storage xmlns="storage:bookmarks"><conference/></storage>');
      assert.equal(await storage.privateXml.get(a.id, k2), '<prefs xmlns="urn:example:prefs"/>');
      assert.equal(await storage.privateXml.get(b.id, k1), null);

      await storage.privateXml.delete(a.id, k1);
      assert.equal(await storage.privateXml.get(a.id, k1), null);
      assert.equal(await storage.privateXml.get(a.id, k2), '<prefs xmlns="urn:example:prefs"/>');
      await storage.privateXml.delete(a.id, k1); // deleting nothing is fine
      await storage.vcards.delete(a.id, 'vcard');
      assert.equal(await storage.vcards.get(a.id, 'vcard'), null);
      assert.equal(await storage.privateXml.get(a.id, 'vcard'), '<private-one/>');
      assert.equal(await storage.accountState.get(a.id, 'vcard'), '<state-one/>');

      // concurrent sets of one key: last writer wins, no duplicate-key error
      await Promise.all(Array.from({ length: 8 }, (_, i) => storage.accountState.set(a.id, 'last', `<last n="${i}"/>`)));
      assert.match((await storage.accountState.get(a.id, 'last')) ?? '', /^<last n="\d"\/>$/);
    });

    it('a 300 KiB stanza and a 300 KiB vCard are stored intact', async () => {
      const a = await newAccount('big');
      const chunk = 'Lorem ipsum dolor sit amet, 你好世界 😀 &amp; <b/> ';
      const body = chunk.repeat(Math.ceil((300 * 1024) / Buffer.byteLength(chunk)));
      const stanza = `<message to="x@example.org"><body>${body}</body></message>`;
      assert.ok(Buffer.byteLength(stanza) > 300 * 1024);
      const id = await storage.offline.store(a.id, stanza, T0);
      const [m] = await storage.offline.list(a.id);
      assert.equal(m?.id, id);
      assert.equal(m?.stanza.length, stanza.length);
      assert.ok(m?.stanza === stanza);
      const photo = `<vCard xmlns="vcard-temp"><PHOTO><BINVAL>${randomBytes(230 * 1024).toString('base64')}</BINVAL></PHOTO></vCard>`;
      assert.ok(photo.length > 300 * 1024);
      await storage.vcards.set(a.id, 'vcard', photo);
      assert.ok((await storage.vcards.get(a.id, 'vcard')) === photo);
    });

    it('unicode round-trips; keys differing only in case, accents or trailing space stay distinct', async () => {
      const host = `例え.${uname('h')}.テスト`;
      const name = `用户😀𝄞${uname('')}`;
      const a = await storage.accounts.create(name, host, [], T0);
      assert.ok(a);
      assert.deepEqual(await storage.accounts.get(name, host), a);

      const contact = `ロミオ🌹@例え.jp`;
      const ri = item(contact, { name: '👨‍👩‍👧 家族 Ünïcödé', groups: ['友達 🎉', 'Ελληνικά', 'עברית'] });
      await storage.roster.put(a.id, ri);
      assert.deepEqual(await storage.roster.get(a.id, contact), ri);
      assert.deepEqual((await storage.roster.listByContact(contact))[0]?.item, ri);

      const stanza = '<message><body>你好 🌍 𝄞 — «ç» ‮ \u00a0 </body></message>';
      await storage.offline.store(a.id, stanza, T0);
      assert.equal((await storage.offline.list(a.id))[0]?.stanza, stanza);
      const key = '{urn:x:😀} 名前';
      await storage.privateXml.set(a.id, key, '<名前 xmlns="urn:x:😀">🎉</名前>');
      assert.equal(await storage.privateXml.get(a.id, key), '<名前 xmlns="urn:x:😀">🎉</名前>');

      // exact comparison on every database (no case/accent folding, no PAD SPACE)
      const h = `${uname('exact')}.example`;
      const names = ['cafe', 'café', 'CAFE', 'cafe ', 'strasse', 'straße'];
      const accounts = [];
      for (const n of names) {
        const acc = await storage.accounts.create(n, h, [], T0);
        assert.ok(acc, `create ${JSON.stringify(n)}`);
        accounts.push(acc);
      }
      for (const [i, n] of names.entries()) assert.equal((await storage.accounts.get(n, h))?.id, accounts[i]!.id, n);
      await storage.privateXml.set(a.id, 'k', '<one/>');
      await storage.privateXml.set(a.id, 'k ', '<two/>');
      await storage.privateXml.set(a.id, 'K', '<three/>');
      assert.equal(await storage.privateXml.get(a.id, 'k'), '<one/>');
      assert.equal(await storage.privateXml.get(a.id, 'k '), '<two/>');
      assert.equal(await storage.privateXml.get(a.id, 'K'), '<three/>');
      await storage.roster.put(a.id, item('a@b.example'));
      await storage.roster.put(a.id, item('A@b.example'));
      assert.equal((await storage.roster.list(a.id)).length, 3);
    });

    it('timestamps round-trip to the millisecond', async () => {
      const instants = [
        new Date(Date.UTC(2024, 1, 29, 23, 59, 59, 987)),
        new Date(Date.UTC(2038, 0, 19, 3, 14, 8, 1)), // past 32-bit seconds
        new Date(Date.UTC(9999, 11, 31, 23, 59, 59, 999)),
        new Date(Date.UTC(2000, 0, 1, 0, 0, 0, 0) + 1),
      ];
      for (const t of instants) {
        const a = (await storage.accounts.create(uname('ts'), 'example.org', [], t))!;
        assert.equal(a.createdAt.getTime(), t.getTime());
        assert.equal((await storage.accounts.get(a.username, a.host))?.createdAt.getTime(), t.getTime());
        await storage.accounts.touch(a.id, new Date(t.getTime() + 1));
        await storage.accounts.setWarnedAt(a.id, new Date(t.getTime() + 2));
        const got = (await storage.accounts.get(a.username, a.host))!;
        assert.equal(got.lastUsedAt?.getTime(), t.getTime() + 1);
        assert.equal(got.warnedAt?.getTime(), t.getTime() + 2);
        await storage.offline.store(a.id, '<m/>', t);
        assert.equal((await storage.offline.list(a.id))[0]?.receivedAt.getTime(), t.getTime());
      }
    });

    it('rejects values the schema cannot hold, the same way on every database', async () => {
      const a = await newAccount('lim');
      const emoji = (n: number) => '😀'.repeat(n);
      // at the limit, in 4-byte characters: accepted
      assert.ok(await storage.accounts.create(emoji(255), `${uname('lim')}.example`, [], T0));
      await storage.roster.put(a.id, item(emoji(640), { name: emoji(1023) }));
      assert.equal((await storage.roster.get(a.id, emoji(640)))?.name, emoji(1023));
      await storage.privateXml.set(a.id, emoji(512), '<x/>');
      assert.equal(await storage.privateXml.get(a.id, emoji(512)), '<x/>');
      // one more: rejected before reaching the database
      await assert.rejects(storage.accounts.create(emoji(256), 'example.org', [], T0), RangeError);
      await assert.rejects(storage.roster.put(a.id, item(emoji(641))), RangeError);
      await assert.rejects(storage.roster.put(a.id, item('x@y', { name: emoji(1024) })), RangeError);
      await assert.rejects(storage.privateXml.set(a.id, emoji(513), '<x/>'), RangeError);
      await assert.rejects(storage.roster.put(a.id, item('x@y', { subscription: 'bogus' as never })), RangeError);
      await assert.rejects(storage.accounts.create(uname(), 'example.org', [], new Date(NaN)), TypeError);
    });

    it('foreign keys are enforced; database errors carry no user data', async () => {
      const missing = 2_000_000_000;
      await assert.rejects(storage.offline.store(missing, '<message><body>private words</body></message>', T0), (err: Error) => {
        assert.ok(err instanceof StorageError, String(err));
        assert.ok(err.message.includes(describeDatabase(db.config)), err.message);
        assert.ok(!inspect(err, { depth: 10 }).includes('private words'), inspect(err));
        return true;
      });
      await assert.rejects(storage.roster.put(missing, item('x@example.org')), StorageError);
      await assert.rejects(storage.vcards.set(missing, 'vcard', '<vCard/>'), StorageError);
      assert.equal(await storage.offline.count(missing), 0);
    });

    it('an offline message (durable commit) and a last-use time (relaxed commit) survive a writer killed with SIGKILL', async () => {
      const a = await newAccount('durable');
      const stanza = `<message id="durable-${randomBytes(4).toString('hex')}"><body>still here 😀</body></message>`;
      const id = await storeInChildThenKill(db.config, a.id, stanza, T0);
      assert.deepEqual(await storage.offline.list(a.id), [{ id, stanza, receivedAt: T0 }]);
      assert.equal((await storage.accounts.get(a.username, a.host))?.lastUsedAt?.getTime(), T0.getTime());
    });

    if (target.name === 'sqlite')
      it('a relaxed commit leaves the connection at synchronous=FULL for the durable writes after it', async () => {
        const a = await newAccount('sync');
        await Promise.all([storage.accounts.touch(a.id, T0), storage.accounts.touch(a.id, T0)]);
        await storage.offline.delete(a.id, [1]);
        const rows = (await internals.rawQuery('PRAGMA synchronous')) as Array<{ synchronous: number }>;
        assert.equal(Number(rows[0]?.synchronous), 2, 'FULL');
      });

    it('connection errors are one line naming the database, without the password', async () => {
      let config: StorageConfig;
      let cleanup = async () => {};
      if (db.config.type === 'sqlite') {
        const dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-bad-'));
        await writeFile(path.join(dir, 'file'), 'not a directory');
        config = { type: 'sqlite', path: path.join(dir, 'file', 'sub', 'gatehouse.sqlite') };
        cleanup = () => rm(dir, { recursive: true, force: true });
      } else {
        // an existing server, a database that does not exist, a password in the URL
        const u = new URL(db.config.url!);
        u.username = u.username || 'nobody';
        u.password = SECRET;
        u.pathname = `/gh_missing_${randomBytes(4).toString('hex')}`;
        config = { type: db.config.type, url: u.toString() };
      }
      try {
        await assert.rejects(openStorage(config), (err: Error) => {
          assert.ok(err instanceof StorageError, String(err));
          assert.ok(!err.message.includes(SECRET), err.message);
          assert.ok(!err.message.includes('\n'), err.message);
          assert.ok(err.message.includes(describeDatabase(config)), err.message);
          assert.ok(!describeDatabase(config).includes(SECRET));
          return true;
        });
      } finally {
        await cleanup();
      }
    });

    it('close is idempotent and later calls reject', async () => {
      const fresh = await target.make();
      try {
        const s = await openStorage(fresh.config);
        await Promise.all([s.close(), s.close()]);
        await s.close();
        await assert.rejects(s.accounts.count());
      } finally {
        await fresh.drop();
      }
    });
  });
}

describe('storage configuration', () => {
  for (const [type, url, where] of [
    ['mysql', `mysql://gate:${SECRET}@127.0.0.1:1/gatehouse`, 'MySQL database 127.0.0.1:1/gatehouse'],
    ['postgres', `postgres://gate:${encodeURIComponent(SECRET + '@/:')}@127.0.0.1:1/gatehouse`, 'PostgreSQL database 127.0.0.1:1/gatehouse'],
  ] as const) {
    it(`an unreachable ${type} server is one clear line without the password`, async () => {
      await assert.rejects(openStorage({ type, url }), (err: Error) => {
        assert.ok(err instanceof StorageError);
        assert.ok(err.message.includes(where), err.message);
        assert.match(err.message, /ECONNREFUSED/);
        assert.ok(!err.message.includes(SECRET), err.message);
        assert.ok(!err.message.includes('\n'));
        return true;
      });
    });
  }

  it('redacts passwords in URLs', async () => {
    const { redact } = await import('../../storage/datasource.js');
    assert.equal(redact(`x mysql://u:${SECRET}@h:1/d y`), 'x mysql://u:***@h:1/d y');
    assert.equal(redact(`boom ${SECRET}`, { type: 'postgres', url: `postgres://u:${SECRET}@h/d` }), 'boom ***');
    assert.equal(describeDatabase({ type: 'postgres', url: `postgres://u:${SECRET}@db.example:6543/gh` }), 'PostgreSQL database db.example:6543/gh');
    assert.equal(describeDatabase({ type: 'mysql', url: `mysql://u:${SECRET}@[::1]/gh` }), 'MySQL database [::1]:3306/gh');
  });

  it('a server url is required', async () => {
    await assert.rejects(openStorage({ type: 'postgres' }), /needs a url/);
    await assert.rejects(openStorage({ type: 'mysql', url: 'mysql://h:3306/' }), /names no database/);
  });
});
