/**
 * P14: backups of the whole database and a tested restore, on SQLite always and on MariaDB and
 * PostgreSQL when GATEHOUSE_TEST_MYSQL_URL / GATEHOUSE_TEST_POSTGRES_URL are set.
 *
 * The comparison is generic: the tables come from the database catalog and every row of every table
 * is compared, so tables that other features add are covered without changing this test.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { BACKUP_KEY_ENV, BackupError, loadBackupKey, parseBackupKey } from '../../server/modules/backup/crypto.js';
import { BackupScheduler, createBackupModule } from '../../server/modules/backup/schedule.js';
import { backupFileName, listBackups, rotateBackups } from '../../server/modules/backup/files.js';
import { createBackup } from '../../server/modules/backup/backup.js';
import { listTables, openRawDb, type RawDb } from '../../storage/dump/index.js';
import { readBackupInfo, verifyBackup } from '../../server/modules/backup/format.js';
import { restoreBackup } from '../../server/modules/backup/restore.js';
import { backupCommands } from '../../server/modules/backup/cli-backup.js';
import { parseArgs } from '../../server/cli/kit.js';
import { openStorage, type StorageConfig } from '../../storage/datasource.js';
import { storageTargets } from '../../storage/test-databases.js';
import type { ScramVerifier, Storage } from '../../storage/types.js';
import { parseConfig } from '../../server/config/index.js';
import { ManualClock } from '../../shared/clock.js';
import { Logger } from '../../shared/logger.js';
import { startTestServer } from '../helpers/server.js';
import { runCli } from '../helpers/server-process.js';
import { allModules } from '../../server/modules/index.js';
import { commandContext } from '../../server/cli/commands.js';

const temps: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'gatehouse-backup-test-'));
  temps.push(d);
  return d;
}
after(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

function verifiers(): ScramVerifier[] {
  return [
    { hash: 'SHA-1', salt: randomBytes(16), iterations: 4096, storedKey: randomBytes(20), serverKey: randomBytes(20) },
    { hash: 'SHA-256', salt: Buffer.from([0, 1, 2, 0xff]), iterations: 10_000, storedKey: randomBytes(32), serverKey: randomBytes(32) },
  ];
}

/** Data in every repository, with text that stresses escaping and encodings in the dumps. */
async function fill(storage: Storage, tag = ''): Promise<void> {
  const t0 = new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 678));
  for (const name of [`alice${tag}`, `bob${tag}`, `zoë-${tag}😀`]) {
    const a = await storage.accounts.create(name, 'localhost', verifiers(), t0);
    assert.ok(a, `created ${name}`);
    await storage.accounts.touch(a.id, new Date(t0.getTime() + 1000));
    await storage.accounts.setWarnedAt(a.id, new Date(t0.getTime() + 2000));
    await storage.roster.put(a.id, { jid: 'romeo@example.net', name: "Romeo 'o' \"Montague\" \\ ;", subscription: 'both', ask: false, pendingIn: false, approved: false, groups: ['Friends', 'Ünïcødé 中文'] });
    await storage.roster.put(a.id, { jid: 'juliet@example.net', name: null, subscription: 'none', ask: true, pendingIn: true, approved: true, groups: [] });
    await storage.offline.store(a.id, `<message from="romeo@example.net/x" to="${name}@localhost" type="chat"><body>line1\nline2\ttab \u0001? 'q' "dq" \\ back; DROP TABLE accounts; --</body></message>`, t0);
    await storage.offline.store(a.id, `<message from="romeo@example.net/x" to="${name}@localhost"><body>${'x'.repeat(70_000)}</body></message>`, new Date(t0.getTime() + 5));
    await storage.vcards.set(a.id, 'vcard', `<vCard xmlns="vcard-temp"><FN>${name}</FN><PHOTO><BINVAL>${randomBytes(3000).toString('base64')}</BINVAL></PHOTO></vCard>`);
    await storage.privateXml.set(a.id, '{storage:bookmarks}storage', '<storage xmlns="storage:bookmarks"><conference jid="room@muc.example.net"/></storage>');
    await storage.accountState.set(a.id, 'last', '<last at="2026-01-02T03:04:05Z">gone 🌙</last>');
  }
}

function q(db: RawDb, name: string): string {
  return db.kind === 'mysql' ? '`' + name.replace(/`/g, '``') + '`' : '"' + name.replace(/"/g, '""') + '"';
}

function cell(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return `hex:${v.toString('hex')}`;
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'number') return String(v); // drivers differ in number vs string for BIGINT
  return v;
}

/** Every row of every table in the catalog (SQLite: its sqlite_sequence too), sorted. */
async function snapshot(cfg: StorageConfig): Promise<Record<string, string[]>> {
  const db = await openRawDb(cfg);
  try {
    const tables = await listTables(db);
    if (db.kind === 'sqlite' && (await db.query(`SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'`)).length) tables.push('sqlite_sequence');
    const out: Record<string, string[]> = {};
    for (const t of tables) {
      const rows = await db.query(`SELECT * FROM ${q(db, t)}`);
      out[t] = rows.map((r) => JSON.stringify(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, cell(v)])))).sort();
    }
    return out;
  } finally {
    await db.close();
  }
}

/** Drops every table (deletes the file for SQLite). */
async function wipe(cfg: StorageConfig): Promise<void> {
  if (cfg.type === 'sqlite') {
    for (const f of [cfg.path!, `${cfg.path}-wal`, `${cfg.path}-shm`]) rmSync(f, { force: true });
    return;
  }
  const db = await openRawDb(cfg);
  try {
    const tables = await listTables(db);
    if (db.kind === 'mysql') await db.query('SET FOREIGN_KEY_CHECKS = 0');
    for (const t of tables) await db.query(`DROP TABLE ${q(db, t)}${db.kind === 'postgres' ? ' CASCADE' : ''}`);
    assert.deepEqual(await listTables(db), []);
  } finally {
    await db.close();
  }
}

for (const target of storageTargets()) {
  describe(`P14 backups on ${target.name}`, () => {
    test(`P14 backup, wipe and restore give back every table of the ${target.name} database row for row`, async () => {
      const { config, drop } = await target.make();
      try {
        const storage = await openStorage(config);
        await fill(storage);
        await storage.close();
        const before = await snapshot(config);
        assert.ok(Object.keys(before).length >= 6, 'the catalog lists the tables');
        assert.equal(before.accounts!.length, 3);
        assert.equal(before.offline_messages!.length, 6);

        const key = randomBytes(32);
        const dir = tempDir();
        const result = await createBackup({ storage: config, dir, key, now: new Date(Date.UTC(2026, 1, 3, 4, 5, 6, 7)) });
        assert.equal(path.basename(result.file), 'gatehouse-backup-20260203T040506.007Z.ghb');
        assert.equal(statSync(result.file).mode & 0o777, 0o600, 'a backup is readable by its owner only');
        assert.deepEqual(readdirSync(dir), [path.basename(result.file)], 'no temporary file is left behind');
        const info = await readBackupInfo(result.file);
        assert.equal(info.encrypted, true);
        assert.equal(info.header.kind, target.name);
        assert.ok(info.header.migrations?.includes('InitialSchema1732600000000'));
        // Encrypted: no user data is visible in the file.
        const bytes = readFileSync(result.file);
        assert.ok(!bytes.includes('romeo@example.net') && !bytes.includes('vcard-temp'));

        await assert.rejects(restoreBackup(result.file, { storage: config, key }), (err: Error) => err instanceof BackupError && /not empty/.test(err.message));
        assert.deepEqual(await snapshot(config), before, 'a refused restore changes nothing');

        await wipe(config);
        const restored = await restoreBackup(result.file, { storage: config, key });
        assert.equal(restored.tables, Object.keys(before).filter((t) => t !== 'sqlite_sequence').length);
        assert.deepEqual(await snapshot(config), before);

        // The restored database is usable as it is: no pending migration, and new rows get new ids.
        const again = await openStorage(config, { migrate: false });
        try {
          const carol = await again.accounts.create('carol', 'localhost', verifiers(), new Date());
          assert.ok(carol && carol.id > 3, 'the id sequence was restored too');
          const alice = await again.accounts.get('alice', 'localhost');
          assert.ok(alice);
          assert.deepEqual((await again.roster.list(alice.id)).map((i) => i.jid), ['juliet@example.net', 'romeo@example.net']);
          const msgs = await again.offline.list(alice.id);
          assert.equal(msgs[1]!.stanza.length, `<message from="romeo@example.net/x" to="alice@localhost"><body>${'x'.repeat(70_000)}</body></message>`.length);
          const id = await again.offline.store(alice.id, '<message/>', new Date());
          assert.ok(id > Math.max(...msgs.map((m) => m.id)));
        } finally {
          await again.close();
        }
      } finally {
        await drop();
      }
    });

    test(`P14 restore --force replaces a ${target.name} database that is not empty`, async () => {
      const { config, drop } = await target.make();
      try {
        const storage = await openStorage(config);
        await fill(storage);
        await storage.close();
        const before = await snapshot(config);
        const dir = tempDir();
        const { file } = await createBackup({ storage: config, dir, key: null });
        assert.equal((await readBackupInfo(file)).encrypted, false);

        const later = await openStorage(config);
        await fill(later, '-later');
        await later.close();
        assert.notDeepEqual(await snapshot(config), before);

        await restoreBackup(file, { storage: config, key: null, force: true });
        assert.deepEqual(await snapshot(config), before);
      } finally {
        await drop();
      }
    });
  });
}

describe('P14 backup files', () => {
  async function sqliteBackup(key: Buffer | null): Promise<{ config: StorageConfig; file: string; before: Record<string, string[]>; drop(): Promise<void> }> {
    const { config, drop } = await storageTargets()[0]!.make();
    const storage = await openStorage(config);
    await fill(storage);
    await storage.close();
    const before = await snapshot(config);
    const { file } = await createBackup({ storage: config, dir: tempDir(), key });
    return { config, file, before, drop };
  }

  test('P14 a tampered, truncated or wrongly keyed encrypted backup is refused and the database is left alone', async () => {
    const key = randomBytes(32);
    const { config, file, before, drop } = await sqliteBackup(key);
    try {
      const good = readFileSync(file);
      const info = await readBackupInfo(file);
      const variant = (name: string, data: Buffer) => {
        const f = path.join(path.dirname(file), name);
        writeFileSync(f, data);
        return f;
      };
      const flip = (at: number) => {
        const b = Buffer.from(good);
        b[at] = b[at]! ^ 0x01;
        return b;
      };
      const attempts: [string, string, RegExp, Buffer | null][] = [
        ['body', variant('body.ghb', flip(info.bodyOffset + 100)), /tampered/, key],
        ['last byte', variant('tag.ghb', flip(good.length - 1)), /tampered/, key],
        ['header', variant('header.ghb', flip(30)), /damaged|tampered|wrong backup key/, key],
        ['truncated', variant('short.ghb', good.subarray(0, good.length - 40)), /truncated/, key],
        ['cut at a record', variant('cut.ghb', good.subarray(0, info.bodyOffset)), /truncated/, key],
        ['appended', variant('long.ghb', Buffer.concat([good, Buffer.from('extra')])), /after its end/, key],
        ['wrong key', file, /wrong backup key/, randomBytes(32)],
        ['no key', file, /encrypted: give its key/, null],
        ['not a backup', variant('junk.ghb', Buffer.from('hello world, not a backup')), /not a Gatehouse backup/, key],
      ];
      for (const [what, f, message, k] of attempts) {
        await assert.rejects(verifyBackup(f, k), (err: Error) => err instanceof BackupError && message.test(err.message), `verify: ${what}`);
        await assert.rejects(restoreBackup(f, { storage: config, key: k, force: true }), (err: Error) => err instanceof BackupError && message.test(err.message), `restore: ${what}`);
      }
      assert.deepEqual(await snapshot(config), before, 'nothing was changed by the refused restores');
      assert.equal((await verifyBackup(file, key)).info.header.kind, 'sqlite');
    } finally {
      await drop();
    }
  });

  test('P14 a damaged or truncated unencrypted backup is refused', async () => {
    const { config, file, before, drop } = await sqliteBackup(null);
    try {
      const good = readFileSync(file);
      const info = await readBackupInfo(file);
      const short = path.join(path.dirname(file), 'short.ghb');
      writeFileSync(short, good.subarray(0, info.bodyOffset + Math.floor((good.length - info.bodyOffset) / 2)));
      await assert.rejects(restoreBackup(short, { storage: config, key: null, force: true }), /damaged or truncated/);
      const bad = Buffer.from(good);
      bad[good.length - 6] = bad[good.length - 6]! ^ 0xff; // the gzip CRC
      const damaged = path.join(path.dirname(file), 'damaged.ghb');
      writeFileSync(damaged, bad);
      await assert.rejects(restoreBackup(damaged, { storage: config, key: null, force: true }), /damaged/);
      assert.deepEqual(await snapshot(config), before);
    } finally {
      await drop();
    }
  });

  test('P14 a backup of a SQLite database that the server keeps writing is a consistent snapshot', async () => {
    const { config, drop } = await storageTargets()[0]!.make();
    const live = await openStorage(config);
    try {
      const a = (await live.accounts.create('busy', 'localhost', verifiers(), new Date()))!;
      const big = `<message><body>${'y'.repeat(20_000)}</body></message>`;
      for (let i = 0; i < 600; i++) await live.offline.store(a.id, big, new Date());
      let writing = true;
      let written = 0;
      const writer = (async () => {
        while (writing) {
          await live.offline.store(a.id, '<message><body>during</body></message>', new Date());
          written++;
          // Like a server, which writes when its sockets deliver data: between events.
          await new Promise((r) => setImmediate(r));
        }
      })();
      const { file } = await createBackup({ storage: config, dir: tempDir(), key: null });
      writing = false;
      await writer;
      assert.ok(written > 0, 'the server wrote during the backup');

      const copy: StorageConfig = { type: 'sqlite', path: path.join(tempDir(), 'restored.sqlite') };
      await restoreBackup(file, { storage: copy, key: null });
      const db = await openRawDb(copy);
      try {
        assert.deepEqual(await db.query('PRAGMA integrity_check'), [{ integrity_check: 'ok' }]);
        const [{ n }] = await db.query<{ n: number }>('SELECT COUNT(*) AS n FROM offline_messages');
        assert.ok(n >= 600 && n <= 600 + written, `a snapshot: ${n} messages`);
      } finally {
        await db.close();
      }
    } finally {
      await live.close();
      await drop();
    }
  });

  test('P14 restore refuses a SQLite database that a running server has open', async () => {
    const { config, file, drop } = await sqliteBackup(null);
    const live = await openStorage(config);
    try {
      await assert.rejects(restoreBackup(file, { storage: config, key: null, force: true }), /in use .*stop the server/);
    } finally {
      await live.close();
      await drop();
    }
  });

  test('P14 restore refuses while the server answers on its control socket', async () => {
    const { config, file, drop } = await sqliteBackup(null);
    const dataDir = tempDir();
    const net = await import('node:net');
    const server = net.createServer((s) => s.end());
    await new Promise<void>((r) => server.listen(path.join(dataDir, 'control.sock'), () => r()));
    try {
      await assert.rejects(restoreBackup(file, { storage: config, dataDir, key: null, force: true }), /server is running/);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
      await drop();
    }
  });

  test('P14 a backup of one database kind is not restored into another', async () => {
    const { file, drop } = await sqliteBackup(null);
    try {
      await assert.rejects(
        restoreBackup(file, { storage: { type: 'postgres', url: 'postgres://nobody@127.0.0.1:1/none' }, key: null }),
        /backup of a sqlite database; the configured storage is postgres/,
      );
    } finally {
      await drop();
    }
  });

  test('P14 keys: hex, base64, raw files; GATEHOUSE_BACKUP_KEY; bad keys are refused', () => {
    const raw = randomBytes(32);
    assert.deepEqual(parseBackupKey(raw.toString('hex'), 'k'), raw);
    assert.deepEqual(parseBackupKey(raw.toString('base64') + '\n', 'k'), raw);
    assert.deepEqual(parseBackupKey(raw, 'k'), raw);
    assert.throws(() => parseBackupKey('secret', 'k'), /32 bytes/);
    assert.deepEqual(loadBackupKey({ env: { [BACKUP_KEY_ENV]: raw.toString('hex') } }), raw);
    assert.equal(loadBackupKey({ env: {} }), null);
    const file = path.join(tempDir(), 'key');
    writeFileSync(file, raw.toString('base64'), { mode: 0o600 });
    assert.deepEqual(loadBackupKey({ keyFile: file, env: { [BACKUP_KEY_ENV]: randomBytes(32).toString('hex') } }), raw, 'an explicit key file wins');
    assert.throws(() => loadBackupKey({ keyFile: path.join(tempDir(), 'missing') }), /cannot read the backup key file/);
  });

  test('P14 keys: the systemd credential backup-key comes after GATEHOUSE_BACKUP_KEY and before backups.encryptionKeyFile', () => {
    const creds = tempDir();
    const dir = tempDir();
    const credential = randomBytes(32);
    const configured = randomBytes(32);
    writeFileSync(path.join(creds, 'backup-key'), credential.toString('base64') + '\n', { mode: 0o400 });
    writeFileSync(path.join(dir, 'key'), configured.toString('hex'), { mode: 0o600 });
    const config = parseConfig({ dataDir: dir, backups: { encryptionKeyFile: path.join(dir, 'key') } }, dir);
    const env = { CREDENTIALS_DIRECTORY: creds };
    assert.deepEqual(loadBackupKey({ env, config }), credential);
    assert.deepEqual(loadBackupKey({ env: {}, config }), configured);
    assert.deepEqual(loadBackupKey({ env: { CREDENTIALS_DIRECTORY: dir }, config }), configured, 'a credentials directory without backup-key');
    const fromEnv = randomBytes(32);
    assert.deepEqual(loadBackupKey({ env: { ...env, [BACKUP_KEY_ENV]: fromEnv.toString('hex') }, config }), fromEnv);
    writeFileSync(path.join(dir, 'backup-key'), 'secret words', { mode: 0o400 });
    assert.throws(
      () => loadBackupKey({ env: { CREDENTIALS_DIRECTORY: dir } }),
      (err: Error) => err instanceof BackupError && err.message.startsWith(`systemd credential ${path.join(dir, 'backup-key')}: a backup key is 32 bytes`) && !err.message.includes('secret'),
    );
  });
});

describe('P14 rotation and schedule', () => {
  test('P14 rotation keeps the backups.keep newest backups and nothing else is touched', async () => {
    const dir = tempDir();
    const day = 24 * 3600_000;
    const t0 = Date.UTC(2026, 2, 1, 3, 0, 0);
    const names: string[] = [];
    for (let i = 0; i < 9; i++) {
      const name = backupFileName(new Date(t0 + i * day));
      names.push(name);
      writeFileSync(path.join(dir, name), 'x');
    }
    writeFileSync(path.join(dir, 'notes.txt'), 'operator file');
    const removed = await rotateBackups(dir, 7);
    assert.deepEqual(removed.map((f) => path.basename(f)), names.slice(0, 2));
    assert.deepEqual((await listBackups(dir)).map((b) => b.name), names.slice(2));
    assert.ok(existsSync(path.join(dir, 'notes.txt')));
    assert.deepEqual(await rotateBackups(dir, 7), []);
  });

  test('P14 the daily schedule makes a backup when one is due and keeps backups.keep of them', async () => {
    const dir = tempDir();
    const config = parseConfig({ dataDir: dir, backups: { keep: 3, schedule: 'daily' } }, dir);
    const storage = await openStorage(config.storage);
    await fill(storage);
    await storage.close();
    const clock = new ManualClock(Date.UTC(2026, 3, 1, 2, 0, 0));
    const lines: string[] = [];
    const log = new Logger({ level: 'info', format: 'text', sink: (l) => lines.push(l) });
    const scheduler = new BackupScheduler({ config, clock, log, key: () => null });

    assert.ok(await scheduler.tick(), 'no backup yet: one is made');
    assert.equal(await scheduler.tick(), null, 'not due again at once');
    clock.advance(12 * 3600_000);
    assert.equal(await scheduler.tick(), null, 'not due after half a day');
    for (let day = 0; day < 5; day++) {
      clock.advance(12 * 3600_000);
      assert.ok(await scheduler.tick(), `due again a day later (${day})`);
      clock.advance(12 * 3600_000);
      assert.equal(await scheduler.tick(), null);
    }
    const files = await listBackups(config.backups.dir);
    assert.equal(files.length, 3, 'rotation keeps backups.keep files');
    assert.equal(files.at(-1)!.createdAt.getTime(), Date.UTC(2026, 3, 6, 2, 0, 0));
    assert.ok(lines.some((l) => l.includes('backup written')));
    assert.ok(!lines.some((l) => l.includes('romeo')), 'no user data in the log');
  });

  test('P14 a failing scheduled backup is logged and retried at a later check', async () => {
    const dir = tempDir();
    const config = parseConfig({ dataDir: dir, storage: { type: 'sqlite', path: path.join(dir, 'missing', 'db.sqlite') } }, dir);
    const clock = new ManualClock();
    const lines: string[] = [];
    const log = new Logger({ level: 'info', format: 'text', sink: (l) => lines.push(l) });
    const scheduler = new BackupScheduler({ config, clock, log, key: () => null });
    assert.equal(await scheduler.tick(), null);
    assert.ok(lines.some((l) => l.includes('backup failed') && l.includes('no database')));
    assert.equal(await scheduler.due(), false, 'not retried in a tight loop');
    clock.advance(11 * 60_000);
    assert.equal(await scheduler.due(), true);
  });

  test('P14 the backup module loads into the server and makes no backup at start', async () => {
    const ts = await startTestServer({ modules: [...allModules().filter((m) => m.name !== 'backup'), createBackupModule()], config: { backups: { schedule: 'daily' } } });
    try {
      assert.deepEqual(await listBackups(ts.config.backups.dir), []);
    } finally {
      await ts.stop();
    }
  });
});

describe('P14 commands', () => {
  async function run(name: string, argv: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const log = console.log;
    const error = console.error;
    console.log = (...a: unknown[]) => void out.push(a.join(' '));
    console.error = (...a: unknown[]) => void err.push(a.join(' '));
    try {
      const code = await backupCommands[name]!.run(parseArgs(argv), commandContext());
      return { code, out: out.join('\n'), err: err.join('\n') };
    } finally {
      console.log = log;
      console.error = error;
    }
  }

  test('P14 gatehouse backup, backup verify, backup list, backup keygen and restore', async () => {
    const dir = tempDir();
    const cfgFile = path.join(dir, 'gatehouse.yaml');
    writeFileSync(cfgFile, stringify({ dataDir: path.join(dir, 'data'), backups: { keep: 2 } }));
    const config = parseConfig({ dataDir: path.join(dir, 'data'), backups: { keep: 2 } }, dir);
    const storage = await openStorage(config.storage);
    await fill(storage);
    await storage.close();
    const before = await snapshot(config.storage);

    const keyFile = path.join(dir, 'backup.key');
    assert.equal((await run('backup keygen', ['--out', keyFile])).code, 0);
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    await assert.rejects(run('backup keygen', ['--out', keyFile]), /never overwritten/);

    for (let i = 0; i < 3; i++) {
      const r = await run('backup', ['--config', cfgFile, '--key-file', keyFile, '--quiet']);
      assert.equal(r.code, 0);
      assert.match(r.out, /backup written: .*gatehouse-backup-.*\.ghb \(.*, encrypted\)/);
      assert.doesNotMatch(r.err, /\x1b/, 'no escape codes when standard error is not a terminal');
      await new Promise((res) => setTimeout(res, 5));
    }
    const files = await listBackups(config.backups.dir);
    assert.equal(files.length, 2, 'backups.keep');
    const listed = await run('backup list', ['--config', cfgFile]);
    assert.equal(listed.out.split('\n').length, 2);
    assert.match(listed.out, /sqlite\tencrypted/);

    const newest = files.at(-1)!.file;
    assert.match((await run('backup verify', [newest, `--key-file=${keyFile}`])).out, /OK, sqlite backup/);

    // Unencrypted backups say so.
    const plain = await run('backup', ['--config', cfgFile, '--out', path.join(dir, 'plain.ghb'), '--quiet']);
    assert.match(plain.err, /not encrypted/);

    await assert.rejects(run('restore', [newest, '--config', cfgFile, '--key-file', keyFile]), /not empty/);
    rmSync(config.storage.path!, { force: true });
    const restored = await run('restore', [newest, '--config', cfgFile, '--key-file', keyFile, '--quiet']);
    assert.equal(restored.code, 0);
    assert.match(restored.out, /restored the backup of/);
    assert.deepEqual(await snapshot(config.storage), before);
  });

  test('P14 under systemd: gatehouse backup encrypts with the credential backup-key, and only that key opens the backup', async () => {
    const dir = tempDir();
    const creds = tempDir();
    const cfgFile = path.join(dir, 'gatehouse.yaml');
    writeFileSync(cfgFile, stringify({ dataDir: path.join(dir, 'data') }));
    const storage = await openStorage(parseConfig({ dataDir: path.join(dir, 'data') }, dir).storage);
    await fill(storage);
    await storage.close();
    const keyText = (await runCli(['backup', 'keygen'])).stdout;
    writeFileSync(path.join(creds, 'backup-key'), keyText, { mode: 0o400 });
    const plainEnv = { ...process.env };
    delete plainEnv[BACKUP_KEY_ENV];
    const systemdEnv = { ...plainEnv, CREDENTIALS_DIRECTORY: creds };

    const out = path.join(dir, 'b.ghb');
    const made = await runCli(['backup', '--config', cfgFile, '--out', out, '--quiet'], systemdEnv);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /backup written: .*b\.ghb \(.*, encrypted\)/);
    assert.doesNotMatch(made.stderr, /not encrypted/);

    const withoutKey = await runCli(['backup', 'verify', out], plainEnv);
    assert.equal(withoutKey.code, 1);
    assert.match(withoutKey.stderr, /this backup is encrypted: give its key/);
    const verified = await runCli(['backup', 'verify', out], systemdEnv);
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.stdout, /OK, sqlite backup/);
  });
});
