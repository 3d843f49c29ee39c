/**
 * P23: data export and import in the XEP-0227 format, and proof that deleting an account erases
 * every row about it in every table, on SQLite always and on MariaDB and PostgreSQL when
 * GATEHOUSE_TEST_MYSQL_URL / GATEHOUSE_TEST_POSTGRES_URL are set.
 *
 * The erasure check reads the database catalog: every table, every row, every column. A row is
 * about the account when a column that references accounts (or is named like an account id) holds
 * its id, when any text holds its JID, or when a row holds both its username and its host.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { exportAccounts, importAccounts, parseExport, renderExport, PIE_NS, PIE_SCRAM_NS, GATEHOUSE_PIE_NS, ExportError } from '../../server/modules/export/export.js';
import { exportCommands } from '../../server/modules/export/cli-export.js';
import { listTables, openRawDb, type RawDb } from '../../storage/dump/index.js';
import { parseArgs } from '../../server/cli/kit.js';
import { openStorage, type StorageConfig } from '../../storage/datasource.js';
import { storageTargets } from '../../storage/test-databases.js';
import { asTypeOrmStorage } from '../../storage/typeorm-storage.js';
import { ownedTables } from '../../storage/entities.js';
import type { Account, Storage } from '../../storage/types.js';
import { AccountService, makeVerifierAsync } from '../../server/accounts/service.js';
import { verifyPlainAsync } from '../../server/auth/scram.js';
import { parseConfig, type Config } from '../../server/config/index.js';
import { HookBus } from '../../server/core/hooks.js';
import { LocalSessionRegistry } from '../../server/core/session.js';
import { HIDDEN_GROUP } from '../../server/modules/roster.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import { systemClock } from '../../shared/clock.js';
import { NS } from '../../shared/ns.js';
import { x, type Element } from '../../shared/xml/element.js';
import { startTestServer } from '../helpers/server.js';
import { CLI } from '../helpers/server-process.js';
import { inactiveAccountsClass } from '../../server/modules/retention/retention.js';
import { silentLogger } from '../../shared/logger.js';
import { execFile } from 'node:child_process';
import { commandContext } from '../../server/cli/commands.js';

const PASSWORD = 'Correct-Horse-7-Battery';
const T0 = new Date(Date.UTC(2026, 4, 6, 7, 8, 9, 123));

const temps: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'gatehouse-export-test-'));
  temps.push(d);
  return d;
}
after(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

function configFor(storage: StorageConfig, dir = tempDir()): Config {
  const raw = storage.type === 'sqlite' ? { type: 'sqlite', path: storage.path } : { type: storage.type, url: storage.url };
  return parseConfig({ dataDir: dir, hosts: [{ domain: 'localhost' }, { domain: 'example.org' }], storage: raw, auth: { scramIterations: 4096 } }, dir);
}

async function createAccount(storage: Storage, username: string, host = 'localhost'): Promise<Account> {
  const verifiers = [await makeVerifierAsync(PASSWORD, 'SHA-1', 4096), await makeVerifierAsync(PASSWORD, 'SHA-256', 4096)];
  const a = await storage.accounts.create(username, host, verifiers, T0);
  assert.ok(a);
  return a;
}

/** Data of the account in every repository (every account-owned table), mentioning no other local account. */
async function fillAccount(storage: Storage, a: Account): Promise<void> {
  await storage.accounts.touch(a.id, new Date(T0.getTime() + 60_000));
  await storage.accounts.setWarnedAt(a.id, new Date(T0.getTime() + 120_000));
  await storage.roster.put(a.id, { jid: 'romeo@example.net', name: 'Romeo & "M"', subscription: 'both', ask: false, pendingIn: false, approved: false, groups: ['Friends', 'Ünïcødé'] });
  await storage.roster.put(a.id, { jid: 'mercutio@example.net', name: null, subscription: 'to', ask: false, pendingIn: true, approved: false, groups: [] });
  await storage.roster.put(a.id, { jid: 'nurse@example.net', name: 'Nurse', subscription: 'none', ask: true, pendingIn: false, approved: true, groups: ['Family'] });
  await storage.roster.put(a.id, { jid: 'tybalt@example.net', name: null, subscription: 'none', ask: false, pendingIn: true, approved: false, groups: [HIDDEN_GROUP] });
  await storage.vcards.set(a.id, 'vcard', `<vCard xmlns="vcard-temp"><FN>${a.username} Capulet</FN><NICKNAME>😀 &amp; &lt;x&gt;</NICKNAME></vCard>`);
  await storage.privateXml.set(a.id, '{storage:bookmarks}storage', '<storage xmlns="storage:bookmarks"><conference jid="room@muc.example.net" autojoin="true"/></storage>');
  await storage.privateXml.set(a.id, '{exodus:prefs}exodus', '<exodus xmlns="exodus:prefs"><defaultnick>Jules</defaultnick></exodus>');
  await storage.offline.store(a.id, `<message from="romeo@example.net/orchard" to="${a.username}@${a.host}" type="chat" id="m1"><body>Neither, fair saint 🌹</body></message>`, new Date(T0.getTime() + 1000));
  await storage.offline.store(
    a.id,
    `<message from="romeo@example.net/orchard" to="${a.username}@${a.host}" id="m2"><body>again</body><delay xmlns="urn:xmpp:delay" from="example.net" stamp="2026-05-06T07:00:00Z"/><encrypted xmlns="eu.siacs.conversations.axolotl"><payload>AAAA</payload></encrypted></message>`,
    new Date(T0.getTime() + 2000),
  );
  await storage.accountState.set(a.id, 'last', '<last at="2026-05-06T07:08:09Z">sleeping</last>');
}

async function accountData(storage: Storage, a: Account) {
  const acc = (await storage.accounts.get(a.username, a.host))!;
  return {
    account: { createdAt: acc.createdAt.getTime(), lastUsedAt: acc.lastUsedAt?.getTime(), warnedAt: acc.warnedAt?.getTime() },
    verifiers: (await storage.accounts.getVerifiers(acc.id)).map((v) => ({ ...v, salt: v.salt.toString('hex'), storedKey: v.storedKey.toString('hex'), serverKey: v.serverKey.toString('hex') })),
    roster: await storage.roster.list(acc.id),
    vcard: await storage.vcards.get(acc.id, 'vcard'),
    bookmarks: await storage.privateXml.get(acc.id, '{storage:bookmarks}storage'),
    prefs: await storage.privateXml.get(acc.id, '{exodus:prefs}exodus'),
    last: await storage.accountState.get(acc.id, 'last'),
    offline: (await storage.offline.list(acc.id)).map((m) => ({ stanza: m.stanza, at: m.receivedAt.getTime() })),
  };
}

function parseDoc(xml: string): Element {
  const el = parseXmlText(xml.replace(/^<\?xml[^>]*\?>\s*/, ''));
  assert.ok(el, 'the export is well-formed XML');
  return el;
}

function q(db: RawDb, name: string): string {
  return db.kind === 'mysql' ? '`' + name.replace(/`/g, '``') + '`' : '"' + name.replace(/"/g, '""') + '"';
}

/** Columns (per table) that reference accounts.id, from the catalog's foreign keys. */
async function accountReferences(db: RawDb, tables: string[]): Promise<Map<string, Set<string>>> {
  const refs = new Map<string, Set<string>>();
  const add = (t: string, c: string) => (refs.get(t) ?? refs.set(t, new Set()).get(t)!).add(c);
  if (db.kind === 'sqlite') {
    for (const t of tables) {
      for (const fk of await db.query<{ table: string; from: string }>(`PRAGMA foreign_key_list(${q(db, t)})`)) if (fk.table === 'accounts') add(t, fk.from);
    }
  } else if (db.kind === 'mysql') {
    const rows = await db.query<{ t: string; c: string }>(
      `SELECT TABLE_NAME AS t, COLUMN_NAME AS c FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME = 'accounts'`,
    );
    for (const r of rows) add(r.t, r.c);
  } else {
    const rows = await db.query<{ t: string; c: string }>(
      `SELECT cl.relname AS t, a.attname AS c
         FROM pg_constraint con
         JOIN pg_class cl ON cl.oid = con.conrelid
         JOIN pg_class ref ON ref.oid = con.confrelid
         JOIN LATERAL unnest(con.conkey) AS k(attnum) ON true
         JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
        WHERE con.contype = 'f' AND ref.relname = 'accounts'`,
    );
    for (const r of rows) add(r.t, r.c);
  }
  return refs;
}

function text(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  return null;
}

/** Every place in the database that still refers to the account: table, column and why. */
async function residue(cfg: StorageConfig, account: Account): Promise<string[]> {
  const db = await openRawDb(cfg);
  try {
    const tables = await listTables(db);
    assert.ok(tables.includes('accounts') && tables.length >= 6);
    const refs = await accountReferences(db, tables);
    const jid = `${account.username}@${account.host}`.toLowerCase();
    const found: string[] = [];
    for (const t of tables) {
      const idColumns = new Set(refs.get(t) ?? []);
      if (t === 'accounts') idColumns.add('id');
      for (const row of await db.query(`SELECT * FROM ${q(db, t)}`)) {
        const values = Object.entries(row);
        for (const [col, v] of values) {
          const isIdColumn = idColumns.has(col) || /(^|_)account(_?id)?$/i.test(col);
          if (isIdColumn && v !== null && Number(v) === account.id) found.push(`${t}.${col}: account id ${account.id}`);
          const s = text(v);
          if (s !== null && s.toLowerCase().includes(jid)) found.push(`${t}.${col}: contains ${jid}`);
        }
        const strings = values.map(([, v]) => text(v));
        if (strings.includes(account.username) && strings.includes(account.host)) found.push(`${t}: a row with username ${account.username} and host ${account.host}`);
      }
    }
    return found;
  } finally {
    await db.close();
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

for (const target of storageTargets()) {
  describe(`P23 on ${target.name}`, () => {
    test(`P23 export, delete, import and export again give the same XEP-0227 document and the same data (${target.name})`, async () => {
      const { config, drop } = await target.make();
      const storage = await openStorage(config);
      try {
        const alice = await createAccount(storage, 'alice');
        await fillAccount(storage, alice);
        const bob = await createAccount(storage, 'bob', 'example.org');
        await fillAccount(storage, bob);
        const before = { alice: await accountData(storage, alice), bob: await accountData(storage, bob) };

        const first = renderExport(await exportAccounts(storage, [alice, bob], []));
        assert.ok(!first.includes(PASSWORD), 'never the password');
        assert.doesNotMatch(first, /\spassword=/);

        await storage.accounts.delete(alice.id);
        await storage.accounts.delete(bob.id);
        assert.equal(await storage.accounts.get('alice', 'localhost'), null);

        const result = await importAccounts(storage, parseExport(first, []), { hosts: ['localhost', 'example.org'], now: new Date(), auth: { hashes: ['SHA-1', 'SHA-256'], scramIterations: 4096 } }, []);
        assert.deepEqual(result.imported, ['alice@localhost', 'bob@example.org']);
        assert.deepEqual(result.warnings, []);
        const alice2 = (await storage.accounts.get('alice', 'localhost'))!;
        const bob2 = (await storage.accounts.get('bob', 'example.org'))!;
        assert.deepEqual({ alice: await accountData(storage, alice2), bob: await accountData(storage, bob2) }, before);
        for (const v of await storage.accounts.getVerifiers(alice2.id)) assert.ok(await verifyPlainAsync(PASSWORD, v), `the ${v.hash} verifier still checks the password`);

        const second = renderExport(await exportAccounts(storage, [alice2, bob2], []));
        assert.equal(second, first);
      } finally {
        await storage.close();
        await drop();
      }
    });

    test(`P23 account deletion (AccountService) erases every row about the account in every table (${target.name})`, async () => {
      const { config, drop } = await target.make();
      const storage = await openStorage(config);
      try {
        const alice = await createAccount(storage, 'alice');
        await fillAccount(storage, alice);
        const bob = await createAccount(storage, 'bob');
        await fillAccount(storage, bob);
        const internals = asTypeOrmStorage(storage);
        const counts = await internals.tableCounts(alice.id);
        for (const { table } of ownedTables) assert.ok(counts[table]! > 0, `the account has rows in ${table}`);
        const bobBefore = await internals.tableCounts(bob.id);
        assert.ok((await residue(config, alice)).length > 0, 'the check finds the data before the deletion');

        const service = new AccountService({ storage, hooks: new HookBus(), config: configFor(config), clock: systemClock, sessions: new LocalSessionRegistry() });
        await service.delete('alice', 'localhost');

        assert.deepEqual(await residue(config, alice), []);
        assert.deepEqual(await internals.tableCounts(bob.id), bobBefore, 'other accounts keep their data');
      } finally {
        await storage.close();
        await drop();
      }
    });

    test(`P23 deletion of an inactive account (P4) erases every row about it in every table (${target.name})`, async () => {
      const { config, drop } = await target.make();
      const storage = await openStorage(config);
      try {
        const alice = await createAccount(storage, 'alice');
        await fillAccount(storage, alice);
        const bob = await createAccount(storage, 'bob');
        await fillAccount(storage, bob);
        const now = new Date(T0.getTime() + 400 * 86_400_000);
        await storage.accounts.touch(bob.id, now);
        const internals = asTypeOrmStorage(storage);
        const bobBefore = await internals.tableCounts(bob.id);
        const cfg = parseConfig(
          { dataDir: tempDir(), storage: config.type === 'sqlite' ? { type: 'sqlite', path: config.path } : { type: config.type, url: config.url }, retention: { inactiveAccounts: '365d', inactiveWarning: 0 } },
          tempDir(),
        );
        const env = { config: cfg, storage, log: silentLogger, clock: { now: () => now }, hooks: new HookBus(), sessions: new LocalSessionRegistry() };
        assert.equal(await inactiveAccountsClass.run(env, now, { dryRun: false, batch: 10 }), 1);
        assert.deepEqual(await residue(config, alice), []);
        assert.deepEqual(await internals.tableCounts(bob.id), bobBefore);
      } finally {
        await storage.close();
        await drop();
      }
    });

    test(`P23 gatehouse user del erases every row about the account in every table (${target.name})`, async () => {
      const { config, drop } = await target.make();
      try {
        const storage = await openStorage(config);
        const alice = await createAccount(storage, 'alice');
        await fillAccount(storage, alice);
        await storage.close();
        const dir = tempDir();
        const cfgFile = path.join(dir, 'gatehouse.yaml');
        writeFileSync(cfgFile, stringify({ dataDir: dir, storage: config.type === 'sqlite' ? { type: 'sqlite', path: config.path } : { type: config.type, url: config.url } }));
        const out = await new Promise<string>((resolve, reject) =>
          execFile(process.execPath, [CLI, 'user', 'del', 'alice@localhost', '--config', cfgFile], { env: { ...process.env, GATEHOUSE_STORAGE_URL: '' } }, (err, stdout, stderr) =>
            err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout),
          ),
        );
        assert.match(out, /deleted alice@localhost/);
        assert.deepEqual(await residue(config, alice), []);
      } finally {
        await drop();
      }
    });

    test(`P23 XEP-0077 <remove/> erases every row about the account in every table (${target.name})`, async () => {
      const { config, drop } = await target.make();
      const ts = await startTestServer({ storage: config });
      let accounts: { alice: Account; bob: Account };
      try {
        const alice = await ts.user('alice', PASSWORD, 'phone');
        const bob = await ts.user('bob', PASSWORD, 'desk');
        const storage = ts.server.ctx.storage;
        const a = (await storage.accounts.get('alice', 'localhost'))!;
        const b = (await storage.accounts.get('bob', 'localhost'))!;
        accounts = { alice: a, bob: b };

        // Data through the protocol where a module stores it, through the repositories otherwise.
        const vcard = await alice.iq(x('iq', { type: 'set' }, x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'Alice'))));
        assert.equal(vcard.attrs.type, 'result');
        const priv = await alice.iq(x('iq', { type: 'set' }, x('query', { xmlns: NS.privateXml }, x('prefs', { xmlns: 'urn:example:prefs' }, 'dark'))));
        assert.equal(priv.attrs.type, 'result');
        await storage.roster.put(a.id, { jid: 'romeo@example.net', name: 'Romeo', subscription: 'both', ask: false, pendingIn: false, approved: false, groups: ['Friends'] });
        await storage.accountState.set(a.id, 'note', '<note>x</note>');
        // Alice has sent no presence: a message for her is stored offline.
        bob.send(x('message', { to: 'alice@localhost', type: 'chat', id: 'o1' }, x('body', {}, 'for later')));
        await waitFor('the offline message', async () => (await storage.offline.count(a.id)) > 0);
        await storage.vcards.set(b.id, 'vcard', '<vCard xmlns="vcard-temp"><FN>Bob</FN></vCard>');

        const internals = asTypeOrmStorage(storage);
        const counts = await internals.tableCounts(a.id);
        for (const { table } of ownedTables) assert.ok(counts[table]! > 0, `alice has rows in ${table}`);

        const reply = await alice.iq(x('iq', { type: 'set' }, x('query', { xmlns: NS.register }, x('remove'))));
        assert.equal(reply.attrs.type, 'result');
        await alice.waitClosed();
        await waitFor('the deletion', async () => (await storage.accounts.get('alice', 'localhost')) === null);
        assert.equal(await storage.vcards.get(b.id, 'vcard'), '<vCard xmlns="vcard-temp"><FN>Bob</FN></vCard>', 'other accounts keep their data');
      } finally {
        await ts.stop();
      }
      try {
        // After the server stopped: also nothing written while sessions closed and modules unloaded.
        assert.deepEqual(await residue(config, accounts!.alice), []);
      } finally {
        await drop();
      }
    });
  });
}

describe('P23 XEP-0227 format', () => {
  async function withSqlite<T>(fn: (storage: Storage, config: StorageConfig) => Promise<T>): Promise<T> {
    const { config, drop } = await storageTargets()[0]!.make();
    const storage = await openStorage(config);
    try {
      return await fn(storage, config);
    } finally {
      await storage.close();
      await drop();
    }
  }

  test('P23 the export is XEP-0227 1.1: SCRAM verifiers (no password), roster, pending requests, vCard, private XML, offline messages with delay', async () => {
    await withSqlite(async (storage) => {
      const alice = await createAccount(storage, 'alice');
      await fillAccount(storage, alice);
      const verifiers = await storage.accounts.getVerifiers(alice.id);
      const doc = parseDoc(renderExport(await exportAccounts(storage, [alice], [])));

      assert.equal(doc.name, 'server-data');
      assert.equal(doc.attrs.xmlns, PIE_NS);
      const host = doc.getChild('host')!;
      assert.equal(host.attrs.jid, 'localhost');
      const user = host.getChild('user')!;
      assert.equal(user.attrs.name, 'alice');
      assert.equal(user.attrs.createdAt, T0.toISOString());
      assert.equal(user.attrs.password, undefined);

      const creds = user.getChildren('scram-credentials', PIE_SCRAM_NS);
      assert.deepEqual(creds.map((c) => c.attrs.mechanism).sort(), ['SCRAM-SHA-1', 'SCRAM-SHA-256']);
      for (const c of creds) {
        const v = verifiers.find((w) => `SCRAM-${w.hash}` === c.attrs.mechanism)!;
        assert.equal(c.getChildText('iter-count'), '4096');
        assert.equal(c.getChildText('salt'), v.salt.toString('base64'));
        assert.equal(c.getChildText('server-key'), v.serverKey.toString('base64'));
        assert.equal(c.getChildText('stored-key'), v.storedKey.toString('base64'));
      }

      const roster = user.getChild('query', NS.roster)!;
      const items = roster.getChildren('item');
      assert.deepEqual(items.map((i) => i.attrs.jid), ['mercutio@example.net', 'nurse@example.net', 'romeo@example.net'], 'hidden pending-in records are no roster items');
      const romeo = items.find((i) => i.attrs.jid === 'romeo@example.net')!;
      assert.deepEqual(romeo.attrs, { jid: 'romeo@example.net', name: 'Romeo & "M"', subscription: 'both' });
      assert.deepEqual(romeo.getChildren('group').map((g) => g.text()), ['Friends', 'Ünïcødé']);
      const nurse = items.find((i) => i.attrs.jid === 'nurse@example.net')!;
      assert.equal(nurse.attrs.ask, 'subscribe');
      assert.equal(nurse.attrs.approved, 'true');
      const requests = user.getChildren('presence', NS.client);
      assert.deepEqual(requests.map((p) => [p.attrs.type, p.attrs.from]).sort(), [
        ['subscribe', 'mercutio@example.net'],
        ['subscribe', 'tybalt@example.net'],
      ]);

      assert.equal(user.getChild('vCard', NS.vcard)!.getChildText('FN'), 'alice Capulet');
      const priv = user.getChild('query', NS.privateXml)!;
      assert.deepEqual(priv.elements.map((e) => `${e.xmlns} ${e.name}`).sort(), ['exodus:prefs exodus', 'storage:bookmarks storage']);

      const box = user.getChild('offline-messages')!;
      const msgs = box.getChildren('message');
      assert.equal(msgs.length, 2);
      assert.equal(msgs[0]!.attrs.xmlns, NS.client);
      assert.equal(msgs[0]!.getChildText('body'), 'Neither, fair saint 🌹');
      const delay = msgs[0]!.getChildren('delay', NS.delay).at(-1)!;
      assert.equal(delay.attrs.from, 'localhost');
      assert.equal(delay.attrs.stamp, new Date(T0.getTime() + 1000).toISOString());
      assert.equal(msgs[1]!.getChildren('delay', NS.delay).length, 2, "the sender's own delay stays");
      assert.ok(msgs[1]!.getChild('encrypted', 'eu.siacs.conversations.axolotl'), 'encrypted payloads untouched');

      const ext = user.getChild('account', GATEHOUSE_PIE_NS)!;
      assert.equal(ext.attrs.lastUsedAt, new Date(T0.getTime() + 60_000).toISOString());
      assert.ok(ext.getChildren('value').some((v) => v.attrs.store === 'state' && v.attrs.key === 'last'));
    });
  });

  test('P23 import refuses an existing account unless forced, and an unknown host, writing nothing', async () => {
    await withSqlite(async (storage) => {
      const alice = await createAccount(storage, 'alice');
      await fillAccount(storage, alice);
      const xml = renderExport(await exportAccounts(storage, [alice], []));
      const withNew = xml.replace('</host>', "<user name='newcomer'/></host>");
      const opts = { hosts: ['localhost'], now: new Date(), auth: { hashes: ['SHA-256' as const], scramIterations: 4096 } };

      await assert.rejects(importAccounts(storage, parseExport(withNew, []), opts, []), (err: Error) => err instanceof ExportError && /account exists: alice@localhost .*--force/.test(err.message));
      assert.equal(await storage.accounts.get('newcomer', 'localhost'), null, 'nothing of the file was written');

      await assert.rejects(importAccounts(storage, parseExport(xml.replace("jid='localhost'", "jid='elsewhere.example'").replace('jid="localhost"', 'jid="elsewhere.example"'), []), opts, []), /hosts this server does not serve: elsewhere\.example/);

      await storage.roster.put(alice.id, { jid: 'extra@example.net', name: null, subscription: 'none', ask: false, pendingIn: false, approved: false, groups: [] });
      const r = await importAccounts(storage, parseExport(withNew, []), { ...opts, force: true }, []);
      assert.deepEqual(r.replaced, ['alice@localhost']);
      assert.deepEqual(r.imported, ['alice@localhost', 'newcomer@localhost']);
      assert.match(r.warnings.join('\n'), /newcomer@localhost: no usable credentials/);
      const replaced = (await storage.accounts.get('alice', 'localhost'))!;
      assert.notEqual(replaced.id, alice.id);
      assert.equal(await storage.roster.get(replaced.id, 'extra@example.net'), null, 'the replaced account is exactly the file');
    });
  });

  test("P23 import of another server's file: a plaintext password becomes verifiers and is stored nowhere; unknown data is reported", async () => {
    await withSqlite(async (storage, config) => {
      const foreign = `<?xml version='1.0' encoding='UTF-8'?>
<server-data xmlns='http://www.xmpp.org/extensions/xep-0227.html#ns'>
  <host jid='LocalHost'>
    <user name='Juliet' password='${PASSWORD}'>
      <query xmlns='jabber:iq:roster'>
        <item jid='romeo@montague.net' name='Romeo' subscription='both'><group>Friends</group></item>
      </query>
      <scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-512'><iter-count>4096</iter-count><salt>AAAA</salt><server-key>AAAA</server-key><stored-key>AAAA</stored-key></scram-credentials>
      <query xmlns='jabber:iq:privacy'><list name='x'/></query>
      <offline-messages>
        <message xmlns='jabber:client' from='romeo@montague.net/orchard' to='juliet@localhost/balcony' type='chat'>
          <body>Neither, fair saint, if either thee dislike.</body>
          <delay xmlns='urn:xmpp:delay' from='localhost' stamp='1469-07-21T00:32:29Z'>Offline Storage</delay>
        </message>
      </offline-messages>
    </user>
  </host>
</server-data>`;
      const parsed = parseExport(foreign, []);
      const r = await importAccounts(storage, parsed, { hosts: ['localhost'], now: new Date(), auth: { hashes: ['SHA-1', 'SHA-256'], scramIterations: 4096 } }, []);
      assert.deepEqual(r.imported, ['juliet@localhost'], 'names are normalised (P1)');
      assert.match(r.warnings.join('\n'), /SCRAM-SHA-512/);
      assert.match(r.warnings.join('\n'), /jabber:iq:privacy/);
      assert.ok(!r.warnings.join('\n').includes(PASSWORD));
      const juliet = (await storage.accounts.get('juliet', 'localhost'))!;
      const vs = await storage.accounts.getVerifiers(juliet.id);
      assert.deepEqual(vs.map((v) => v.hash), ['SHA-1', 'SHA-256']);
      for (const v of vs) assert.ok(await verifyPlainAsync(PASSWORD, v));
      const [msg] = await storage.offline.list(juliet.id);
      assert.equal(msg!.receivedAt.toISOString(), '1469-07-21T00:32:29.000Z');
      assert.ok(!msg!.stanza.includes('Offline Storage'), 'the delay of the old server is the arrival time, not content');
      assert.equal((await storage.roster.list(juliet.id))[0]!.jid, 'romeo@montague.net');

      // P2: the plaintext password is nowhere in the database.
      const db = await openRawDb(config);
      try {
        for (const t of await listTables(db)) {
          for (const row of await db.query(`SELECT * FROM "${t}"`)) assert.ok(!JSON.stringify(row).includes(PASSWORD), `no password in ${t}`);
        }
      } finally {
        await db.close();
      }
    });
  });

  test('P23 import refuses malformed or foreign files with a clear error', async () => {
    const cases: [string, RegExp][] = [
      ['<server-data xmlns="urn:xmpp:pie:0"><host jid="localhost"><user name="a">', /truncated/],
      ['<other xmlns="urn:example"/>', /not an XEP-0227 file/],
      ['<server-data xmlns="urn:xmpp:pie:0"><!-- hi --></server-data>', /not a readable XML file/],
      ['<!DOCTYPE x [<!ENTITY a "b">]><server-data xmlns="urn:xmpp:pie:0"/>', /not a readable XML file/],
      ['', /no XML document/],
      ['<server-data xmlns="urn:xmpp:pie:0"><host jid="localhost"><user name="a"/><user name="A"/></host></server-data>', /appears twice/],
      ['<server-data xmlns="urn:xmpp:pie:0"><host jid="localhost"><user name="a"><scram-credentials xmlns="urn:xmpp:pie:0#scram" mechanism="SCRAM-SHA-256"><iter-count>x</iter-count></scram-credentials></user></host></server-data>', /iteration count/],
      ['<server-data xmlns="urn:xmpp:pie:0"><host jid="localhost"><user name="a"><query xmlns="jabber:iq:roster"><item jid="a@b" subscription="sometimes"/></query></user></host></server-data>', /subscription/],
    ];
    for (const [doc, message] of cases) assert.throws(() => parseExport(doc, []), (err: Error) => err instanceof ExportError && message.test(err.message), doc);
  });

  test('P23 an imported account logs in over XMPP with its old password', async () => {
    const ts = await startTestServer();
    try {
      const first = await ts.user('alice', PASSWORD);
      await first.close();
      const storage = ts.server.ctx.storage;
      const account = (await storage.accounts.get('alice', 'localhost'))!;
      const xml = renderExport(await exportAccounts(storage, [account], []));
      await storage.accounts.delete(account.id);
      const again = await ts.client();
      assert.notEqual((await again.authenticate('alice', PASSWORD)).name, 'success');
      await importAccounts(storage, parseExport(xml, []), { hosts: ['localhost'], now: new Date(), auth: ts.config.auth }, []);
      const c = await ts.client();
      assert.match(await c.login('alice', PASSWORD), /^alice@localhost\//);
    } finally {
      await ts.stop();
    }
  });
});

describe('P23 commands', () => {
  async function run(name: string, argv: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const log = console.log;
    const error = console.error;
    const write = process.stdout.write.bind(process.stdout);
    console.log = (...a: unknown[]) => void out.push(a.join(' '));
    console.error = (...a: unknown[]) => void err.push(a.join(' '));
    process.stdout.write = ((chunk: string | Uint8Array) => (out.push(String(chunk)), true)) as typeof process.stdout.write;
    try {
      const code = await exportCommands[name]!.run(parseArgs(argv), commandContext());
      return { code, out: out.join('\n'), err: err.join('\n') };
    } finally {
      console.log = log;
      console.error = error;
      process.stdout.write = write;
    }
  }

  test('P23 gatehouse user export and user import', async () => {
    const dir = tempDir();
    const cfgFile = path.join(dir, 'gatehouse.yaml');
    writeFileSync(cfgFile, stringify({ dataDir: path.join(dir, 'data'), hosts: [{ domain: 'localhost' }], auth: { scramIterations: 4096 } }));
    const config = parseConfig({ dataDir: path.join(dir, 'data'), hosts: [{ domain: 'localhost' }] }, dir);
    const storage = await openStorage(config.storage);
    const alice = await createAccount(storage, 'alice');
    await fillAccount(storage, alice);
    await storage.close();

    const out = path.join(dir, 'alice.xml');
    const r = await run('user export', ['alice@localhost', '--out', out, '--config', cfgFile]);
    assert.equal(r.code, 0);
    assert.equal(statSync(out).mode & 0o777, 0o600, 'the export is readable by its owner only');
    const xml = readFileSync(out, 'utf8');
    assert.match(xml, /^<\?xml version='1.0' encoding='UTF-8'\?>\n<server-data xmlns="urn:xmpp:pie:0">/);
    await assert.rejects(run('user export', ['alice@localhost', `--out=${out}`, '--config', cfgFile]), /already exists/);
    const toStdout = await run('user export', ['alice', '--config', cfgFile]);
    assert.equal(toStdout.out, xml);
    await assert.rejects(run('user export', ['nobody@localhost', '--config', cfgFile]), /no account nobody@localhost/);

    await assert.rejects(run('user import', [out, '--config', cfgFile]), /account exists: alice@localhost/);
    const forced = await run('user import', [out, '--config', cfgFile, '--force']);
    assert.match(forced.out, /replaced alice@localhost: the existing account and all its data were deleted/);
    const again = await run('user export', ['alice@localhost', '--config', cfgFile]);
    assert.equal(again.out, xml);
  });
});
