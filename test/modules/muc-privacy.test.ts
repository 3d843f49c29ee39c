/**
 * What group chats keep (issue #17): persistent rooms keep their configuration and affiliations
 * over a restart, on every database of storageTargets(); no message text is written anywhere
 * (data directory, database, log); an account's affiliations are in its export and erased with
 * it; the policy states it in both languages; `gatehouse muc list|destroy` on the control socket.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { runCli } from '../helpers/server-process.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, loginAs, modulesWith } from '../helpers/server.js';
import { AdminClient } from '../admin/http-client.js';
import { ManualClock } from '../../shared/clock.js';
import { retentionSweeper } from '../../server/modules/retention/retention.js';
import { createAdminHttpModule } from '../../server/admin/http.js';
import { createStatisticsModule, statsFor } from '../../server/modules/statistics/statistics.js';
import { storageTargets } from '../../storage/test-databases.js';
import { openStorage } from '../../storage/datasource.js';
import type { Db } from '../../storage/db.js';
import type { ModuleStorage } from '../../storage/module-storage.js';
import { mucStorage } from '../../server/modules/muc/storage.js';
import { accountDataParts, exportAccounts, importAccounts, parseExport, renderExport } from '../../server/modules/export/export.js';
import { allModules } from '../../server/modules/index.js';
import { controlRequest } from '../../server/admin/control.js';
import { parseConfig } from '../../server/config/index.js';
import { factsFromConfig } from '../../server/modules/policy/facts.js';
import { policyDe } from '../../server/modules/policy/texts-de.js';
import { policyEn } from '../../server/modules/policy/texts-en.js';
import { x } from '../../shared/xml/element.js';
import { MUC_ADMIN, MUC_USER, SERVICE, codes, configure, createInstant, enter, item } from './muc-helpers.js';

const SECRET = 'zebra-marker-7781';

/** A module storage that hands out the database access itself, to read every table of a test database. */
const rawDb: ModuleStorage<Db> = { name: 'raw-dump', entities: [], migrations: [], repository: (db) => db };

async function dumpTables(db: Db): Promise<string> {
  let tables: string[];
  try {
    tables = (await db.sql<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'", [])).map((r) => r.name);
  } catch {
    try {
      tables = (await db.sql<{ tablename: string }>("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", [])).map((r) => r.tablename);
    } catch {
      tables = (await db.sql<Record<string, string>>('SHOW TABLES', [])).map((r) => Object.values(r)[0]!);
    }
  }
  let out = '';
  for (const t of tables) out += JSON.stringify(await db.sql(`SELECT * FROM "${t}"`, []));
  return out;
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

for (const target of storageTargets()) {
  test(`P11 P23 persistent rooms and affiliations survive a restart on ${target.name}; no message text is in the data directory, the database or the log`, async () => {
    const db = await target.make();
    const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-muc-'));
    try {
      const config = { dataDir, listen: { c2s: [{ host: '127.0.0.1', port: 0 }] } };
      const first = await startTestServer({ logLevel: 'debug', storage: db.config, config });
      let firstLog: string[];
      try {
        const alice = await loginAs(first, 'alice');
        const bob = await loginAs(first, 'bob');
        const room = `keep@${SERVICE}`;
        await createInstant(alice, room, 'Alice', {
          'muc#roomconfig_persistentroom': '1',
          'muc#roomconfig_roomname': 'Kept room',
          'muc#roomconfig_membersonly': '1',
          'muc#roomconfig_presencebroadcast': ['moderator', 'participant'],
        });
        const set = await alice.iq(x('iq', { type: 'set', to: room }, x('query', { xmlns: MUC_ADMIN }, x('item', { jid: 'bob@localhost', affiliation: 'member', nick: 'Bobby' }), x('item', { jid: 'mallory@elsewhere.example', affiliation: 'outcast' }))));
        assert.equal(set.attrs.type, 'result');
        await enter(bob, room, 'Bobby');
        bob.send(x('message', { type: 'groupchat', to: room }, x('body', {}, `the word is ${SECRET}`)));
        await alice.expect((el) => el.name === 'message' && el.getChildText('body')?.includes(SECRET) === true);
        alice.send(x('message', { type: 'groupchat', to: room }, x('subject', {}, `subject ${SECRET}`)));
        await bob.expect((el) => el.name === 'message' && el.getChild('subject') !== undefined && el.getChild('body') === undefined);
        bob.send(x('message', { type: 'chat', to: `${room}/Alice` }, x('body', {}, `private ${SECRET}`)));
        await alice.expect((el) => el.name === 'message' && el.getChildText('body')?.includes(SECRET) === true);
        // A temporary room does not survive.
        await createInstant(alice, `brief@${SERVICE}`, 'Alice');
      } finally {
        firstLog = [...first.logLines];
        await first.stop();
      }
      assert.ok(!firstLog.some((l) => l.includes(SECRET)), 'no message text in the log');

      const second = await startTestServer({ logLevel: 'warn', storage: db.config, config });
      try {
        const alice = await loginAs(second, 'alice');
        const bob = await loginAs(second, 'bob');
        const items = await alice.iq(x('iq', { type: 'get', to: SERVICE }, x('query', { xmlns: 'http://jabber.org/protocol/disco#items' })));
        const listed = items.getChild('query')!.getChildren('item').map((i) => `${i.attrs.jid} ${i.attrs.name}`);
        assert.deepEqual(listed, [`keep@${SERVICE} Kept room`]);
        const members = await alice.iq(x('iq', { type: 'get', to: `keep@${SERVICE}` }, x('query', { xmlns: MUC_ADMIN }, x('item', { affiliation: 'member' }))));
        assert.deepEqual(members.getChild('query', MUC_ADMIN)!.getChildren('item').map((i) => `${i.attrs.jid} ${i.attrs.nick}`), ['bob@localhost Bobby']);
        const form = await alice.iq(x('iq', { type: 'get', to: `keep@${SERVICE}` }, x('query', { xmlns: 'http://jabber.org/protocol/muc#owner' })));
        const broadcast = form.getChild('query')?.getChild('x', 'jabber:x:data')?.getChildren('field').find((f) => f.attrs.var === 'muc#roomconfig_presencebroadcast');
        assert.deepEqual(broadcast?.getChildren('value').map((v) => v.text()), ['moderator', 'participant'], 'the roles broadcast are stored with the room');
        const self = await enter(bob, `keep@${SERVICE}`, 'Bobby');
        assert.equal(item(self)?.attrs.affiliation, 'member');
        assert.ok(!codes(self).includes(201));
        // The history did not survive: the subject message comes first, and empty.
        const next = await bob.expect((el) => el.name === 'message');
        assert.equal(next.getChildText('subject'), '');
      } finally {
        await second.stop();
      }

      for (const f of filesUnder(dataDir)) assert.ok(!readFileSync(f).includes(SECRET), `no message text in ${f}`);
      const storage = await openStorage(db.config, { modules: [mucStorage, rawDb] });
      try {
        const dump = await dumpTables(storage.repository(rawDb));
        assert.ok(dump.includes('Kept room'), 'the dump sees the stored configuration');
        assert.ok(!dump.includes(SECRET), 'no message text in any table');
      } finally {
        await storage.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      await db.drop();
    }
  });
}

test('P23 an account\'s room affiliations are in its export, erased with the account, and restored by an import', async () => {
  const ts = await startTestServer({ logLevel: 'warn' });
  try {
    const alice = await loginAs(ts, 'alice');
    const bob = await ts.user('bob');
    const room = `club@${SERVICE}`;
    await createInstant(alice, room, 'Alice', { 'muc#roomconfig_persistentroom': '1' });
    await alice.iq(x('iq', { type: 'set', to: room }, x('query', { xmlns: MUC_ADMIN }, x('item', { jid: 'bob@localhost', affiliation: 'admin' }))));
    const { storage } = ts.server.ctx;
    const root = await exportAccounts(storage, [{ username: 'bob', host: 'localhost' }], accountDataParts(allModules()));
    const text = renderExport(root);
    assert.match(text, /<muc-affiliations xmlns="urn:gatehouse:muc:0"><room jid="club@conference\.localhost" affiliation="admin"\/><\/muc-affiliations>/);
    const bobId = (await storage.accounts.get('bob', 'localhost'))!.id;
    bob.send(x('iq', { type: 'set', id: 'rm' }, x('query', { xmlns: 'jabber:iq:register' }, x('remove'))));
    await bob.waitClosed().catch(() => {});
    for (let i = 0; i < 50 && (await storage.accounts.get('bob', 'localhost')); i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(await storage.repository(mucStorage).ofAccount(bobId), []);
    const admins = await alice.iq(x('iq', { type: 'get', to: room }, x('query', { xmlns: MUC_ADMIN }, x('item', { affiliation: 'admin' }))));
    assert.deepEqual(admins.getChild('query', MUC_ADMIN)!.getChildren('item'), [], 'the room in memory forgot it too');
    // A later change to the room does not bring it back.
    await configure(alice, room, { 'muc#roomconfig_roomname': 'Club' });
    const rows = await storage.repository(mucStorage).affiliations((await storage.repository(mucStorage).rooms(SERVICE))[0]!.id);
    assert.deepEqual(rows.map((r) => r.jid), ['alice@localhost']);

    // The export imported again (the server running): the affiliation is back, and the room keeps
    // it through its next change instead of writing over it.
    const parts = accountDataParts(allModules());
    const parsed = parseExport(text, parts);
    assert.deepEqual(parsed.warnings, []);
    await importAccounts(storage, parsed, { hosts: ['localhost'], now: new Date(), auth: { hashes: ['SHA-256'], scramIterations: 4096 } }, parts);
    await configure(alice, room, { 'muc#roomconfig_roomname': 'Club again' });
    const back = await alice.iq(x('iq', { type: 'get', to: room }, x('query', { xmlns: MUC_ADMIN }, x('item', { affiliation: 'admin' }))));
    assert.deepEqual(back.getChild('query', MUC_ADMIN)!.getChildren('item').map((i) => i.attrs.jid), ['bob@localhost']);
  } finally {
    await ts.stop();
  }
});

test('P11 P22 the policy states what group chats keep and for how long, in both languages, only while the service is on', () => {
  const on = factsFromConfig(parseConfig({ muc: { historyMaxAge: '3d', unusedRooms: '90d' } }, '/tmp'));
  const en = JSON.stringify(policyEn(on));
  const de = JSON.stringify(policyDe(on));
  assert.match(en, /multi-user chat/);
  assert.match(en, /in memory only[^"]*3 days/);
  assert.match(en, /90 days/);
  assert.match(de, /Multi-User Chat/);
  assert.match(de, /3 Tage lang/);
  assert.match(de, /90 Tage lang/);
  const off = factsFromConfig(parseConfig({ muc: { enabled: false } }, '/tmp'));
  assert.doesNotMatch(JSON.stringify(policyEn(off)), /multi-user chat/);
  assert.doesNotMatch(JSON.stringify(policyDe(off)), /Multi-User Chat/);
});

test('P12 P21 gatehouse muc list and destroy on the control socket: rooms with occupant counts, no occupant named; destroy tells the occupants', async () => {
  const ts = await startTestServer({ logLevel: 'warn' });
  try {
    const alice = await loginAs(ts, 'alice');
    const room = `board@${SERVICE}`;
    await createInstant(alice, room, 'Alice', { 'muc#roomconfig_roomname': 'Board' });
    // The command line asks the running server through its control socket.
    const file = join(ts.dir, 'cli.yaml');
    writeFileSync(file, `dataDir: ${JSON.stringify(ts.dir)}\nhosts: [{ domain: localhost }]\n`);
    const cli = await runCli(['muc', 'list', '--config', file]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, new RegExp(`^${room.replace(/\./g, '\\.')} +1 occupant +temporary, public +"Board"$`, 'm'));
    const usage = await runCli(['muc', 'destroy', '--config', file]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /give the room to destroy/);
    const list = (await controlRequest(ts.dir, 'muc.list')) as { rooms: { jid: string; occupants: number; name: string }[] };
    assert.deepEqual(list.rooms.map((r) => `${r.jid} ${r.occupants} ${r.name}`), [`${room} 1 Board`]);
    assert.ok(!JSON.stringify(list).includes('alice'));
    const out = (await controlRequest(ts.dir, 'muc.destroy', { room, reason: 'maintenance' })) as { destroyed: string; occupants: number };
    assert.deepEqual(out, { destroyed: room, occupants: 1 });
    const gone = await alice.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `${room}/Alice`);
    assert.equal(gone.getChild('x', MUC_USER)!.getChild('destroy')!.getChildText('reason'), 'maintenance');
    await assert.rejects(controlRequest(ts.dir, 'muc.destroy', { room }), /no room/);
  } finally {
    await ts.stop();
  }
});

test('P12 P21 the statistics count rooms and occupants (no names); the console page /muc lists rooms with occupant counts', async () => {
  const clock = new ManualClock(new Date(Date.UTC(2026, 5, 1, 12, 0, 30)));
  const ts = await startTestServer({
    clock,
    logLevel: 'warn',
    modules: modulesWith(createAdminHttpModule(), createStatisticsModule({ autoTick: false })),
    config: { admins: ['admin@localhost'], listen: { admin: [{ host: '127.0.0.1', port: 0 }] } },
  });
  try {
    const alice = await loginAs(ts, 'alice');
    const bob = await loginAs(ts, 'bob');
    const room = `stats@${SERVICE}`;
    await createInstant(alice, room, 'Alice', { 'muc#roomconfig_roomname': 'Numbers' });
    await enter(bob, room, 'Bob');
    const stats = statsFor(ts.server.ctx);
    await stats.tick();
    clock.advance(60_000);
    await stats.tick();
    const points = await ts.server.ctx.storage.statistics.listPoints({ resolution: 'minute', since: new Date(0) });
    const last = (series: string) => points.filter((p) => p.series === series).pop()?.value;
    assert.equal(last('muc.rooms'), 1);
    assert.equal(last('muc.occupants'), 2);
    assert.ok(!points.some((p) => p.series.includes('stats@') || p.series.includes('alice')));

    const a = await ts.user('admin', 'admin-pw');
    await a.close();
    const web = new AdminClient(ts.adminPort);
    assert.equal((await web.login('admin@localhost', 'admin-pw')).status, 303);
    const page = await web.get('/muc');
    assert.equal(page.status, 200);
    assert.ok(page.body.includes(room) && page.body.includes('Numbers'), page.body);
    assert.match(page.body, /<td class="num">2<\/td>/);
    assert.ok(!page.body.includes('alice@localhost') && !page.body.includes('Bob'), 'no occupant is named');
    const api = await web.get('/api/muc-list');
    assert.equal(api.status, 200, api.body);
    assert.deepEqual((JSON.parse(api.body) as { rooms: { jid: string; occupants: number }[] }).rooms.map((r) => `${r.jid} ${r.occupants}`), [`${room} 2`]);
  } finally {
    await ts.stop();
  }
});

test('P11 a room forgets its messages after muc.historyMaxAge: a later joiner gets none of them', async () => {
  const clock = new ManualClock(new Date(Date.UTC(2026, 5, 1, 12, 0, 0)));
  const ts = await startTestServer({ clock, logLevel: 'warn', config: { muc: { historyMaxAge: '1h' } } });
  try {
    const alice = await loginAs(ts, 'alice');
    const room = `fleeting@${SERVICE}`;
    await createInstant(alice, room, 'Alice');
    alice.send(x('message', { type: 'groupchat', to: room }, x('body', {}, 'old news')));
    await alice.expect((el) => el.name === 'message' && el.getChildText('body') === 'old news');
    clock.advance(30 * 60_000);
    alice.send(x('message', { type: 'groupchat', to: room }, x('body', {}, 'recent news')));
    await alice.expect((el) => el.name === 'message' && el.getChildText('body') === 'recent news');
    clock.advance(31 * 60_000);
    const bob = await loginAs(ts, 'bob');
    await enter(bob, room, 'Bob');
    const first = await bob.expect((el) => el.name === 'message');
    assert.equal(first.getChildText('body'), 'recent news');
    const next = await bob.expect((el) => el.name === 'message');
    assert.equal(next.getChildText('subject'), '', 'then the subject: the older message is gone');
  } finally {
    await ts.stop();
  }
});

test('P11 retention class muc-rooms: a persistent room nobody entered for muc.unusedRooms is deleted with its affiliations; one in use stays', async () => {
  const DAY = 86_400_000;
  const clock = new ManualClock(new Date(Date.UTC(2026, 5, 1, 12, 0, 0)));
  const ts = await startTestServer({ clock, logLevel: 'warn', config: { muc: { unusedRooms: '30d' } } });
  try {
    const alice = await loginAs(ts, 'alice');
    const bob = await loginAs(ts, 'bob');
    await createInstant(alice, `idle@${SERVICE}`, 'Alice', { 'muc#roomconfig_persistentroom': '1' });
    await createInstant(bob, `busy@${SERVICE}`, 'Bob', { 'muc#roomconfig_persistentroom': '1' });
    alice.send(x('presence', { to: `idle@${SERVICE}/Alice`, type: 'unavailable' }));
    await alice.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `idle@${SERVICE}/Alice`);
    clock.advance(31 * DAY);
    const results = await retentionSweeper(ts.server.ctx)!.runNow();
    assert.equal(results.find((r) => r.name === 'muc-rooms')?.count, 2, JSON.stringify(results));
    const repo = ts.server.ctx.storage.repository(mucStorage);
    assert.deepEqual((await repo.rooms(SERVICE)).map((r) => r.name), ['busy'], 'the room in use is stored afresh');
    const items = await alice.iq(x('iq', { type: 'get', to: SERVICE }, x('query', { xmlns: 'http://jabber.org/protocol/disco#items' })));
    assert.deepEqual(items.getChild('query')!.getChildren('item').map((i) => i.attrs.jid), [`busy@${SERVICE}`]);
    // The affiliations of the busy room are stored again with it.
    assert.deepEqual((await repo.affiliations((await repo.rooms(SERVICE))[0]!.id)).map((a) => `${a.jid} ${a.affiliation}`), ['bob@localhost owner']);
  } finally {
    await ts.stop();
  }
});

test('P22 muc.enabled off is in force at once: occupants leave with 332, the service leaves disco; on again, persistent rooms come back', async () => {
  const ts = await startTestServer({ logLevel: 'warn' });
  try {
    const alice = await loginAs(ts, 'alice');
    const room = `lasting@${SERVICE}`;
    await createInstant(alice, room, 'Alice', { 'muc#roomconfig_persistentroom': '1' });
    const hostItems = async () => (await alice.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: 'http://jabber.org/protocol/disco#items' })))).getChild('query')!.getChildren('item').map((i) => i.attrs.jid);
    const off = await ts.reload({ muc: { enabled: false } });
    assert.deepEqual(off.heldBack, []);
    const out = await alice.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `${room}/Alice`);
    assert.deepEqual(codes(out).sort(), [110, 332]);
    assert.ok(!(await hostItems()).includes(SERVICE));
    const on = await ts.reload({ muc: { enabled: true } });
    assert.deepEqual(on.heldBack, []);
    assert.ok((await hostItems()).includes(SERVICE));
    const self = await enter(alice, room, 'Alice', { initial: false });
    assert.ok(!codes(self).includes(201), 'the stored room, not a new one');
  } finally {
    await ts.stop();
  }
});
