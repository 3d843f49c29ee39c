/**
 * Group chats across a restart (issue #17): a persistent room keeps its configuration and its
 * affiliations (owner, admin, member, outcast) through a restart of the real `gatehouse start`
 * process, a temporary room does not come back, and history is kept in memory only. Afterwards no
 * message text sent in the test (group chat messages in both rooms, a private message between
 * occupants) is found in any file under the data directory, nor in any row of any table of the
 * database (SQLite always; MariaDB with GATEHOUSE_TEST_MYSQL_URL, PostgreSQL with
 * GATEHOUSE_TEST_POSTGRES_URL).
 *
 * With GATEHOUSE_MUC_TARGET=prosody the same steps run against Prosody's MUC (restarted in its
 * directory): that shows the check works; whether Prosody keeps message text is its own policy.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import Database from 'better-sqlite3';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.js';
import { startProsody, type Prosody } from '../helpers/prosody.js';
import { createTestCa } from '../helpers/test-ca.js';
import { TestClient } from '../helpers/xmpp-client.js';
import { MUC, mucTargetKind, statusCodes } from '../helpers/muc-target.js';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { storageTargets } from '../../storage/test-databases.js';

const MUCDOMAIN = 'conference.localhost';
const ROOM = `archive@${MUCDOMAIN}`;
const TEMPORARY = `tent@${MUCDOMAIN}`;

/** A server that can be stopped and started again on the same data. */
interface Restartable {
  label: string;
  dataDir: string;
  port(): number;
  register(name: string): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
  /** Every row of every table, as text (empty for storage without a database). */
  dumpDatabase(): Promise<string[]>;
  cleanup(): Promise<void>;
}

type Storage = { type: 'sqlite' } | { type: 'mysql' | 'postgres'; url: string };

/** SQLite in the data directory (the default, so the file scan covers it), and a fresh MariaDB/PostgreSQL database where configured. */
function storages(): [string, () => Promise<{ storage: Storage; drop(): Promise<void> }>][] {
  return storageTargets().map((t) => [
    t.name,
    async () => {
      if (t.name === 'sqlite') return { storage: { type: 'sqlite' }, drop: async () => {} };
      const { config, drop } = await t.make();
      return { storage: { type: config.type as 'mysql' | 'postgres', url: (config as { url: string }).url }, drop };
    },
  ]);
}

const textOf = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString('utf8') : v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v));
const rowText = (row: Record<string, unknown>) => Object.values(row).map(textOf).join(' | ');

async function dumpSql(storage: Storage, dataDir: string): Promise<string[]> {
  if (storage.type === 'sqlite') {
    const db = new Database(joinPath(dataDir, 'gatehouse.sqlite'), { readonly: true });
    try {
      const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).all() as { name: string }[];
      return tables.flatMap(({ name }) => (db.prepare(`SELECT * FROM "${name}"`).all() as Record<string, unknown>[]).map((r) => `${name}: ${rowText(r)}`));
    } finally {
      db.close();
    }
  }
  if (storage.type === 'mysql') {
    const mysql = await import('mysql2/promise');
    const conn = await mysql.createConnection(storage.url);
    try {
      const [tables] = (await conn.query('SHOW TABLES')) as unknown as [Record<string, string>[]];
      const out: string[] = [];
      for (const t of tables) {
        const name = Object.values(t)[0]!;
        const [rows] = (await conn.query(`SELECT * FROM \`${name}\``)) as unknown as [Record<string, unknown>[]];
        out.push(...rows.map((r) => `${name}: ${rowText(r)}`));
      }
      return out;
    } finally {
      await conn.end();
    }
  }
  const pg = await import('pg');
  const client = new pg.default.Client({ connectionString: storage.url });
  await client.connect();
  try {
    const tables = await client.query(`SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`);
    const out: string[] = [];
    for (const t of tables.rows as { schemaname: string; tablename: string }[]) {
      const rows = await client.query(`SELECT * FROM "${t.schemaname}"."${t.tablename}"`);
      out.push(...(rows.rows as Record<string, unknown>[]).map((r) => `${t.tablename}: ${rowText(r)}`));
    }
    return out;
  } finally {
    await client.end();
  }
}

async function gatehouse(make: () => Promise<{ storage: Storage; drop(): Promise<void> }>): Promise<Restartable> {
  const { storage, drop } = await make();
  const dir = mkdtempSync(joinPath(tmpdir(), 'gatehouse-muc-restart-'));
  const config = {
    dataDir: dir,
    hosts: [{ domain: 'localhost', registration: 'open' }],
    listen: { c2s: [{ host: '127.0.0.1', port: 0 }], c2sDirectTls: [], https: [] },
    auth: { scramIterations: 4096 },
    registrationLimit: { maxPerAddress: 0 },
    log: { level: 'warn' },
    ...(storage.type === 'sqlite' ? {} : { storage: { type: storage.type, url: storage.url } }),
  };
  let server: ServerProcess = await startServerProcess(dir, config);
  const stop = async () => {
    if (server.proc.exitCode !== null || server.proc.signalCode !== null) return;
    server.proc.kill('SIGTERM');
    await server.exited;
  };
  return {
    label: `Gatehouse on ${storage.type}`,
    dataDir: dir,
    port: () => server.port,
    async register(name) {
      const c = await TestClient.connect({ port: server.port });
      const reg = await c.register(name, `pw-${name}`);
      c.destroy();
      assert.equal(reg.attrs.type, 'result', String(reg));
    },
    async restart() {
      await stop();
      server = await startServerProcess(dir, config);
    },
    stop,
    dumpDatabase: () => dumpSql(storage, dir),
    async cleanup() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
      await drop();
    },
  };
}

async function prosody(): Promise<Restartable> {
  const ca = createTestCa();
  const cert = ca.selfSigned('localhost');
  const opts = { domain: 'localhost', cert, secureAuth: false, keepDir: true, components: [{ domain: MUCDOMAIN, module: 'muc', options: { restrict_room_creation: false } }] };
  let p: Prosody = await startProsody(opts);
  const dir = p.dir;
  return {
    label: 'Prosody',
    dataDir: p.dataDir,
    port: () => p.c2sPort,
    async register(name) {
      p.register(name, `pw-${name}`);
    },
    async restart() {
      await p.stop();
      p = await startProsody({ ...opts, dir });
    },
    stop: () => p.stop(),
    dumpDatabase: async () => [],
    async cleanup() {
      await p.stop();
      rmSync(dir, { recursive: true, force: true });
      ca.remove();
    },
  };
}

async function login(server: Restartable, name: string): Promise<TestClient> {
  const c = await TestClient.connect({ port: server.port() });
  await c.login(name, `pw-${name}`, { mechanism: 'SCRAM-SHA-1', resource: 'r' });
  c.send(x('presence'));
  return c;
}

async function join(c: TestClient, room: string, nick: string, maxstanzas?: number): Promise<Element> {
  const self = c.expect((el) => el.name === 'presence' && (el.attrs.from ?? '').startsWith(`${room}/`) && (el.attrs.type === 'error' || (el.attrs.type === undefined && statusCodes(el).includes(110))));
  c.send(x('presence', { to: `${room}/${nick}` }, x('x', { xmlns: MUC.base }, ...(maxstanzas === undefined ? [] : [x('history', { maxstanzas: String(maxstanzas) })]))));
  return self;
}

function submit(fields: Record<string, string>): Element {
  return x(
    'query',
    { xmlns: MUC.owner },
    x('x', { xmlns: 'jabber:x:data', type: 'submit' }, x('field', { var: 'FORM_TYPE', type: 'hidden' }, x('value', {}, MUC.roomconfig)), ...Object.entries(fields).map(([k, v]) => x('field', { var: k }, x('value', {}, v)))),
  );
}

async function ok(c: TestClient, iq: Element): Promise<Element> {
  const reply = await c.iq(iq);
  assert.equal(reply.attrs.type, 'result', String(reply));
  return reply;
}

const affiliation = (room: string, attrs: Record<string, string>) => x('iq', { type: 'set', to: room }, x('query', { xmlns: MUC.admin }, x('item', attrs)));
const affiliationList = async (c: TestClient, room: string, aff: string) =>
  (await ok(c, x('iq', { type: 'get', to: room }, x('query', { xmlns: MUC.admin }, x('item', { affiliation: aff })))))
    .getChild('query', MUC.admin)!
    .getChildren('item')
    .map((i) => i.attrs.jid)
    .sort();

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = joinPath(dir, name);
    const st = statSync(path);
    return st.isDirectory() ? filesUnder(path) : st.isFile() ? [path] : [];
  });
}

const targets: [string, () => Promise<Restartable>][] =
  mucTargetKind() === 'prosody' ? [['Prosody', prosody]] : storages().map(([name, make]) => [`Gatehouse on ${name}`, () => gatehouse(make)]);

for (const [label, start] of targets) {
  describe(`group chats across a restart (${label})`, () => {
    test('a persistent room keeps its configuration and affiliations, a temporary one is gone, history is not kept; no message text in any file under the data directory or any database row', async () => {
      const server = await start();
      const clients: TestClient[] = [];
      const online = async (name: string) => {
        const c = await login(server, name);
        clients.push(c);
        return c;
      };
      try {
        for (const name of ['prospero', 'ariel', 'miranda', 'caliban', 'ferdinand']) await server.register(name);
        const owner = await online('prospero');
        const info = await owner.iq(x('iq', { type: 'get', to: MUCDOMAIN }, x('query', { xmlns: NS.discoInfo })));
        assert.ok(info.attrs.type === 'result' && info.getChild('query', NS.discoInfo)?.getChildren('feature').some((f) => f.attrs.var === MUC.base), `${server.label}: no multi-user chat service at ${MUCDOMAIN} (issue #17): ${info}`);

        const marker = () => `spell-${randomBytes(9).toString('hex')}`;
        const markers: string[] = [];

        // The persistent room, configured and with each affiliation.
        assert.deepEqual(statusCodes(await join(owner, ROOM, 'Prospero')), [110, 201]);
        await ok(owner, x('iq', { type: 'set', to: ROOM }, submit({ 'muc#roomconfig_persistentroom': '1', 'muc#roomconfig_membersonly': '1', 'muc#roomconfig_roomname': 'The Island', 'muc#roomconfig_whois': 'moderators' })));
        await ok(owner, affiliation(ROOM, { jid: 'ariel@localhost', affiliation: 'admin' }));
        await ok(owner, affiliation(ROOM, { jid: 'miranda@localhost', affiliation: 'member' }));
        await ok(owner, affiliation(ROOM, { jid: 'ferdinand@localhost', affiliation: 'member' }));
        await ok(owner, affiliation(ROOM, { jid: 'caliban@localhost', affiliation: 'outcast' }));
        const miranda = await online('miranda');
        const ferdinand = await online('ferdinand');
        assert.equal((await join(miranda, ROOM, 'Miranda')).attrs.type, undefined);
        assert.equal((await join(ferdinand, ROOM, 'Ferdinand')).attrs.type, undefined);
        for (const who of [owner, miranda]) {
          const body = marker();
          markers.push(body);
          const echo = ferdinand.expect((el) => el.name === 'message' && el.getChildText('body') === body);
          who.send(x('message', { to: ROOM, type: 'groupchat' }, x('body', {}, body)));
          await echo;
        }
        const pm = marker();
        markers.push(pm);
        const pmArrived = ferdinand.expect((el) => el.name === 'message' && el.getChildText('body') === pm);
        miranda.send(x('message', { to: `${ROOM}/Ferdinand`, type: 'chat' }, x('body', {}, pm), x('x', { xmlns: MUC.user })));
        await pmArrived;

        // A temporary room with a message of its own.
        assert.deepEqual(statusCodes(await join(miranda, TEMPORARY, 'Miranda')), [110, 201]);
        await ok(miranda, x('iq', { type: 'set', to: TEMPORARY }, x('query', { xmlns: MUC.owner }, x('x', { xmlns: 'jabber:x:data', type: 'submit' }))));
        const tentBody = marker();
        markers.push(tentBody);
        const tentEcho = miranda.expect((el) => el.name === 'message' && el.getChildText('body') === tentBody);
        miranda.send(x('message', { to: TEMPORARY, type: 'groupchat' }, x('body', {}, tentBody)));
        await tentEcho;

        for (const c of clients.splice(0)) c.destroy();
        await server.restart();

        const back = await online('prospero');
        const config = (await ok(back, x('iq', { type: 'get', to: ROOM }, x('query', { xmlns: MUC.owner })))).getChild('query', MUC.owner)!.getChild('x', 'jabber:x:data')!;
        const value = (v: string) => config.getChildren('field').find((f) => f.attrs.var === v)?.getChildText('value');
        assert.ok(['1', 'true'].includes(value('muc#roomconfig_persistentroom') ?? ''), String(config));
        assert.ok(['1', 'true'].includes(value('muc#roomconfig_membersonly') ?? ''), String(config));
        assert.equal(value('muc#roomconfig_roomname'), 'The Island');
        assert.deepEqual(await affiliationList(back, ROOM, 'owner'), ['prospero@localhost']);
        assert.deepEqual(await affiliationList(back, ROOM, 'admin'), ['ariel@localhost']);
        assert.deepEqual(await affiliationList(back, ROOM, 'member'), ['ferdinand@localhost', 'miranda@localhost']);
        assert.deepEqual(await affiliationList(back, ROOM, 'outcast'), ['caliban@localhost']);
        const roomInfo = await back.iq(x('iq', { type: 'get', to: ROOM }, x('query', { xmlns: NS.discoInfo })));
        assert.equal(roomInfo.attrs.type, 'result', String(roomInfo));
        const tent = await back.iq(x('iq', { type: 'get', to: TEMPORARY }, x('query', { xmlns: NS.discoInfo })));
        assert.equal(tent.attrs.type, 'error', `the temporary room did not survive the restart: ${tent}`);

        // The affiliations act: the member is let in, the outcast is not.
        const caliban = await online('caliban');
        const refused = await join(caliban, ROOM, 'Caliban');
        assert.equal(refused.attrs.type, 'error', String(refused));
        const miranda2 = await online('miranda');
        assert.equal((await join(miranda2, ROOM, 'Miranda', 50)).attrs.type, undefined);
        await miranda2.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
        const history = miranda2.received.filter((el) => el.name === 'message' && el.getChildText('body'));
        if (server.label.startsWith('Gatehouse')) assert.deepEqual(history.map(String), [], 'history is kept in memory only');

        for (const c of clients.splice(0)) c.destroy();
        await server.stop();

        const found: string[] = [];
        for (const file of filesUnder(server.dataDir)) {
          const bytes = readFileSync(file);
          for (const m of markers) if (bytes.includes(Buffer.from(m))) found.push(`${m} in ${file}`);
        }
        const rows = await server.dumpDatabase();
        if (server.label.startsWith('Gatehouse')) assert.ok(rows.some((r) => r.includes('prospero')), 'the dump reads the database (the owner affiliation is in it)');
        for (const row of rows) for (const m of markers) if (row.includes(m)) found.push(`${m} in the row ${row.slice(0, 200)}`);
        if (server.label === 'Prosody') {
          // Prosody 0.12 saves a hibernating room's history in its state store (data/<muc>/state/): the
          // scan finds it there, which shows the scan does find text written to disk.
          assert.ok(found.some((f) => f.includes('/state/')), `Prosody's room state holds the history: ${JSON.stringify(found)}`);
        } else {
          assert.deepEqual(found, [], `${server.label}: message text written to disk`);
        }
      } finally {
        for (const c of clients) c.destroy();
        await server.cleanup();
      }
    });
  });
}
