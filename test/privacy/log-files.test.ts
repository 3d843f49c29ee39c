/**
 * P13 log files: log lines name JIDs and IPs, so the file is rotated by date and rotated files are
 * deleted once older than retention.detailedLogs (48 h by default). ManualClock, no sleeping: the
 * rotating file on its own, and a real server started with log.file.
 */
import { test, describe, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { RotatingLogFile, deleteExpiredLogFiles, listRotatedLogFiles, rotatedName, rotationPeriod } from '../../server/modules/log-files/log-files.js';
import { runRetention } from '../../server/modules/retention/retention.js';
import { retentionClasses } from '../../server/modules/index.js';
import { parseConfig } from '../../server/config/index.js';
import { HookBus } from '../../server/core/hooks.js';
import { LocalSessionRegistry } from '../../server/core/session.js';
import type { Storage } from '../../storage/types.js';
import { ManualClock } from '../../shared/clock.js';
import { Logger, silentLogger } from '../../shared/logger.js';
import { startServer, type RunningServer } from '../../server/main.js';
import { TestClient } from '../helpers/xmpp-client.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 0, 1);

describe('P13 log files', () => {
  let dir: string;
  let file: string;
  let clock: ManualClock;
  let log: RotatingLogFile | null = null;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-logs-'));
    file = path.join(dir, 'gatehouse.log');
    clock = new ManualClock(T0 + 10 * HOUR);
  });
  afterEach(() => {
    log?.close();
    log = null;
    rmSync(dir, { recursive: true, force: true });
  });

  const files = () => readdirSync(dir).sort();
  const read = (name: string) => readFileSync(path.join(dir, name), 'utf8');

  test('P13 log files are rotated by date (file.YYYY-MM-DD, UTC) and readable only by the server user', () => {
    log = new RotatingLogFile(file, { retention: 48 * HOUR, clock, timers: false });
    const logger = new Logger({ level: 'info', format: 'text', sink: (l) => log!.write(l) });
    logger.info('login', { jid: 'alice@localhost/phone', ip: '192.0.2.1' });
    log.write('day one, second line');
    assert.deepEqual(files(), ['gatehouse.log']);
    assert.equal(statSync(file).mode & 0o777, 0o600);

    clock.advance(14 * HOUR); // 2026-01-02 00:00
    log.write('day two');
    assert.deepEqual(files(), ['gatehouse.log', 'gatehouse.log.2026-01-01']);
    assert.match(read('gatehouse.log.2026-01-01'), /login jid=alice@localhost\/phone ip=192\.0\.2\.1\nday one, second line\n$/);
    assert.equal(read('gatehouse.log'), 'day two\n');

    // A quiet day: at midnight the timer (rotateIfDue) moves the file aside without a new line,
    // and the file of 2026-01-01, whose first line is now 48 h old, is deleted.
    clock.advance(23 * HOUR);
    log.rotateIfDue();
    assert.deepEqual(files(), ['gatehouse.log', 'gatehouse.log.2026-01-01']);
    clock.advance(HOUR);
    log.rotateIfDue();
    assert.deepEqual(files(), ['gatehouse.log', 'gatehouse.log.2026-01-02']);
    assert.equal(read('gatehouse.log.2026-01-02'), 'day two\n');
    assert.equal(read('gatehouse.log'), '');
  });

  test('P13 log files older than 48 h are deleted', () => {
    log = new RotatingLogFile(file, { retention: 48 * HOUR, clock, timers: false });
    for (let d = 0; d < 5; d++) {
      log.write(`line of day ${d + 1}`);
      clock.advance(DAY);
    }
    // Now 2026-01-06 10:00; the write rotates day 5 and deletes what began 48 h ago or earlier.
    log.write('today');
    assert.deepEqual(files(), ['gatehouse.log', 'gatehouse.log.2026-01-05']);
    // 2026-01-05 00:00 + 48 h: the oldest line of that file reaches the retention, the file goes.
    clock.set(new Date(Date.UTC(2026, 0, 7) - 1));
    assert.equal(log.sweep(), 0, 'kept until exactly 48 h');
    clock.set(new Date(Date.UTC(2026, 0, 7)));
    assert.equal(log.sweep(), 1);
    assert.deepEqual(files(), ['gatehouse.log']);
    log.write('next day');
    assert.deepEqual(files(), ['gatehouse.log', 'gatehouse.log.2026-01-06']);
    assert.equal(read('gatehouse.log.2026-01-06'), 'today\n');
  });

  test('P13 no line is ever older than the retention: hourly files when it is shorter than a day', () => {
    assert.equal(rotationPeriod(48 * HOUR), 'day');
    assert.equal(rotationPeriod(DAY), 'day');
    assert.equal(rotationPeriod(6 * HOUR), 'hour');
    assert.equal(rotationPeriod(30 * MIN), 'minute');
    assert.equal(rotatedName('/x/g.log', T0 + 13 * HOUR + 5 * MIN, 'hour'), '/x/g.log.2026-01-01T13');
    assert.equal(rotatedName('/x/g.log', T0 + 13 * HOUR + 5 * MIN, 'minute'), '/x/g.log.2026-01-01T13-05');

    log = new RotatingLogFile(file, { retention: 6 * HOUR, clock, timers: false });
    for (let h = 0; h < 10; h++) {
      log.write(`hour ${h}`);
      clock.advance(HOUR);
    }
    log.write('now');
    // Now 20:00: files of 14:00 .. 19:00 began less than 6 h ago, except 14:00, which began exactly 6 h ago.
    assert.deepEqual(files(), ['gatehouse.log', ...[15, 16, 17, 18, 19].map((h) => `gatehouse.log.2026-01-01T${h}`)]);
    assert.deepEqual(listRotatedLogFiles(file).map((f) => [f.start.getTime(), f.period]), [15, 16, 17, 18, 19].map((h) => [T0 + h * HOUR, 'hour']));
  });

  test('P13 a log left by an earlier run is moved to its date, and expired files are deleted at start', () => {
    writeFileSync(file, 'from the last run\n');
    const lastWrite = new Date(T0 - DAY + 5 * HOUR); // 2025-12-31 05:00
    utimesSync(file, lastWrite, lastWrite);
    writeFileSync(path.join(dir, 'gatehouse.log.2025-12-20'), 'very old\n');
    writeFileSync(path.join(dir, 'gatehouse.log.backup'), 'not a rotated log: never touched\n');
    writeFileSync(path.join(dir, 'other.log.2025-12-20'), 'another file: never touched\n');
    log = new RotatingLogFile(file, { retention: 48 * HOUR, clock, timers: false });
    assert.deepEqual(files(), ['gatehouse.log', 'gatehouse.log.2025-12-31', 'gatehouse.log.backup', 'other.log.2025-12-20']);
    assert.equal(read('gatehouse.log.2025-12-31'), 'from the last run\n');
    log.write('new run');
    assert.equal(read('gatehouse.log'), 'new run\n');
  });

  test('P13 the retention sweeper deletes expired log files too (class log-files), also without a server', async () => {
    assert.ok(retentionClasses().some((c) => c.name === 'log-files' && c.clause === 'P13'));
    for (const day of ['2025-12-29', '2025-12-30', '2025-12-31']) writeFileSync(path.join(dir, `gatehouse.log.${day}`), `${day}\n`);
    writeFileSync(file, 'live\n');
    const config = parseConfig({ log: { file }, retention: { detailedLogs: '48h' } }, dir);
    const env = { config, storage: {} as Storage, log: silentLogger, clock, hooks: new HookBus(), sessions: new LocalSessionRegistry() };
    const cls = retentionClasses().filter((c) => c.name === 'log-files');
    // Now 2026-01-01 10:00: 12-29 and 12-30 began more than 48 h ago.
    const dry = await runRetention(env, { dryRun: true, classes: cls });
    assert.equal(dry[0]!.count, 2);
    assert.equal(files().length, 4);
    const done = await runRetention(env, { classes: cls });
    assert.equal(done[0]!.count, 2);
    assert.deepEqual(files(), ['gatehouse.log', 'gatehouse.log.2025-12-31']);
    assert.equal(deleteExpiredLogFiles(file, 48 * HOUR, clock.now()), 0, 'idempotent');
    assert.ok(existsSync(file), 'the live file is never deleted');
  });
});

describe('P13 log files of a running server', () => {
  let dir: string;
  let server: RunningServer | null = null;
  const clients: TestClient[] = [];

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-server-logs-'));
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await server?.stop();
    server = null;
    rmSync(dir, { recursive: true, force: true });
  });

  async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  test('P13 a server started with log.file writes JIDs and IPs there, rotates by day on its clock, and deletes the old file after retention.detailedLogs', async () => {
    const logDir = path.join(dir, 'logs');
    const file = path.join(logDir, 'gatehouse.log');
    const logs = () => readdirSync(logDir).sort();
    const text = (name: string) => (existsSync(path.join(logDir, name)) ? readFileSync(path.join(logDir, name), 'utf8') : '');
    const clock = new ManualClock(T0 + 10 * HOUR); // 2026-01-01 10:00 UTC
    const config = parseConfig(
      {
        dataDir: path.join(dir, 'data'),
        hosts: [{ domain: 'localhost', registration: 'open' }],
        listen: { c2s: [{ host: '127.0.0.1', port: 0 }], c2sDirectTls: [], https: [], components: [], s2s: [], admin: [] },
        auth: { scramIterations: 4096 },
        registrationLimit: { maxPerAddress: 0 },
        log: { level: 'info', file },
        retention: { detailedLogs: '48h' },
      },
      dir,
    );
    server = await startServer(config, { clock });
    const port = server.port('c2s');
    const register = async (name: string) => {
      const c = await TestClient.connect({ port });
      clients.push(c);
      const reply = await c.register(name, `pw-${name}-long-enough`);
      assert.equal(reply.attrs.type, 'result', String(reply));
    };

    // Day 1: the lines name an address (the listener) and a JID (the registration).
    await register('alice');
    await until('the registration in the log file', () => text('gatehouse.log').includes('alice@localhost'));
    assert.match(text('gatehouse.log'), /127\.0\.0\.1/);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(logs(), ['gatehouse.log']);

    // Day 2: the first line of the day moves day 1 aside, under its date.
    clock.advance(DAY);
    await register('bob');
    await until('the day-2 line', () => text('gatehouse.log').includes('bob@localhost'));
    assert.deepEqual(logs(), ['gatehouse.log', 'gatehouse.log.2026-01-01']);
    assert.match(text('gatehouse.log.2026-01-01'), /alice@localhost/);
    assert.doesNotMatch(text('gatehouse.log'), /alice@localhost/);

    // Day 3, 10:00: day 1 began 58 h ago, past the 48 h retention; the server deletes its file.
    clock.advance(DAY);
    await register('carol');
    await until('the day-1 file to be deleted', () => !existsSync(`${file}.2026-01-01`));
    assert.deepEqual(logs(), ['gatehouse.log', 'gatehouse.log.2026-01-02']);
    assert.ok(!logs().some((name) => text(name).includes('alice@localhost')), 'no log file names alice any more');
    assert.match(text('gatehouse.log.2026-01-02'), /bob@localhost/);
    assert.match(text('gatehouse.log'), /carol@localhost/);
  });
});
