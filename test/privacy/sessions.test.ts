/**
 * P6 session records over real sockets: the live list through the admin control channel (P21: the
 * socket is the admin boundary), the record stored at session end and deleted by the retention
 * sweeper after retention.detailedLogs (P13), and the counters folded into the anonymous statistics.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { createControlModule, controlRequest, controlSocketPath } from '../../server/admin/control.js';
import { ControlError } from '../../server/commands/command.js';
import { createSessionStatsModule, type LiveSession } from '../../server/modules/statistics/session-stats.js';
import { createStatisticsModule, statsFor } from '../../server/modules/statistics/statistics.js';
import { createRetentionModule, retentionSweeper } from '../../server/modules/retention/retention.js';
import { statsCommands } from '../../server/modules/statistics/cli-stats.js';
import { parseArgs } from '../../server/cli/kit.js';
import type { GatehouseModule } from '../../server/core/context.js';
import { modulesWith, startTestServer, type TestServer } from '../helpers/server.js';
import { ManualClock } from '../../shared/clock.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { commandContext } from '../../server/cli/commands.js';

const MIN = 60_000;
const HOUR = 60 * MIN;

function modules(): GatehouseModule[] {
  return modulesWith(createRetentionModule({ intervalMs: null }), createControlModule(), createStatisticsModule({ autoTick: false }), createSessionStatsModule({ autoTick: false }));
}

async function until<T>(fn: () => Promise<T | undefined | null | false>, what: string, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Runs a CLI command in-process (the lead wires statsCommands into server/cli.ts) and captures its output. */
async function cli(dataDir: string, argv: string[]): Promise<string> {
  const config = path.join(dataDir, 'cli.yaml');
  writeFileSync(config, stringify({ dataDir }));
  const [name, ...rest] = argv;
  const lines: string[] = [];
  const original = console.log;
  console.log = (...a: unknown[]) => void lines.push(a.join(' '));
  try {
    assert.equal(await statsCommands[name!]!.run(parseArgs([...rest, '--config', config]), commandContext()), 0);
  } finally {
    console.log = original;
  }
  return lines.join('\n');
}

/** One raw request line on the control socket; resolves with the parsed answer line. */
function rawControl(dataDir: string, line: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const s = connect(controlSocketPath(dataDir));
    let buf = '';
    s.setEncoding('utf8');
    s.on('connect', () => s.write(line + '\n'));
    s.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        s.destroy();
        resolve(JSON.parse(buf.slice(0, nl)));
      }
    });
    s.on('error', reject);
  });
}

describe('P6 session records', () => {
  let ts: TestServer;
  let clock: ManualClock;
  const start = Date.UTC(2026, 2, 1, 12, 0);

  before(async () => {
    clock = new ManualClock(start);
    ts = await startTestServer({ clock, modules: modules() });
  });
  after(async () => {
    await ts?.stop();
  });

  test('P6 the live session list over the control socket shows start, counters and IP while connected', async () => {
    const alice = await ts.user('alice', 'secret-alice', 'laptop');
    alice.send(x('presence', {}));
    await alice.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));

    const list = (await controlRequest(ts.dir, 'sessions')) as LiveSession[];
    assert.equal(list.length, 1);
    const s = list[0]!;
    assert.equal(s.jid, 'alice@localhost/laptop');
    assert.equal(s.ip, '127.0.0.1');
    assert.equal(s.startedAt, new Date(start).toISOString());
    assert.equal(s.secure, true);
    assert.ok(s.stanzasIn >= 3, `stanzas in: ${s.stanzasIn}`);
    assert.ok(s.stanzasOut >= 2, `stanzas out: ${s.stanzasOut}`);
    assert.ok(s.bytesIn > 100 && s.bytesOut > 100);

    // The counters move while the session lives.
    await alice.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
    const again = ((await controlRequest(ts.dir, 'sessions')) as LiveSession[])[0]!;
    assert.equal(again.stanzasIn, s.stanzasIn + 1);
    assert.equal(again.stanzasOut, s.stanzasOut + 1);

    // gatehouse sessions prints the same.
    const printed = await cli(ts.dir, ['sessions']);
    assert.match(printed, /^JID\s+IP\s+SINCE \(UTC\)\s+TLS\s+STANZAS IN\s+STANZAS OUT\s+BYTES IN\s+BYTES OUT$/m);
    assert.match(printed, /^alice@localhost\/laptop\s+127\.0\.0\.1\s+2026-03-01 12:00:00\s+yes\s+\d+\s+\d+\s+\d+\s+\d+$/m);
    assert.match(printed, /^1 session online$/m);
    // P21: the admin's read is logged (command name only).
    assert.ok(ts.logLines.some((l) => /control command/.test(l) && /command=sessions/.test(l)));
    await alice.close();
  });

  test('P6 a record is written at session end and deleted by the retention sweeper after 48 h', async () => {
    const storage = ts.server.ctx.storage;
    const bob = await ts.user('bob', 'secret-bob', 'phone');
    bob.send(x('presence', {}));
    await bob.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
    const live = ((await controlRequest(ts.dir, 'sessions')) as LiveSession[]).find((s) => s.jid.startsWith('bob@'))!;
    clock.advance(10 * MIN);
    await bob.close();
    const record = await until(async () => (await storage.statistics.listSessionRecords()).find((r) => r.account === 'bob@localhost'), 'the session record');
    assert.equal(record.jid, 'bob@localhost/phone');
    assert.equal(record.ip, '127.0.0.1');
    assert.equal(record.secure, true);
    assert.equal(record.startedAt.getTime(), start);
    assert.equal(record.endedAt.getTime(), start + 10 * MIN);
    assert.ok(record.stanzasIn >= live.stanzasIn && record.stanzasOut >= live.stanzasOut);
    assert.ok(record.bytesIn >= live.bytesIn && record.bytesOut >= live.bytesOut);

    const sweeper = retentionSweeper(ts.server.ctx)!;
    assert.ok(sweeper, 'the retention module is loaded');
    clock.advance(47 * HOUR);
    await sweeper.runNow();
    assert.ok((await storage.statistics.listSessionRecords()).some((r) => r.account === 'bob@localhost'), 'kept for 47 h');
    clock.advance(HOUR + MIN);
    const results = await sweeper.runNow();
    const cls = results.find((r) => r.name === 'session-records');
    assert.ok(cls && cls.count >= 1, JSON.stringify(results));
    assert.ok(!(await storage.statistics.listSessionRecords()).some((r) => r.account === 'bob@localhost'), 'deleted after 48 h');
  });

  test('P6 at session end the counters go into the anonymous statistics', async () => {
    const storage = ts.server.ctx.storage;
    const stats = statsFor(ts.server.ctx);
    await stats.tick();
    const t = clock.now().getTime();
    const dave = await ts.user('dave');
    await dave.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
    // A tick in the middle of the session takes its traffic so far ...
    clock.advance(MIN);
    await stats.tick();
    await dave.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
    clock.advance(MIN);
    await dave.close();
    const record = await until(async () => (await storage.statistics.listSessionRecords()).find((r) => r.account === 'dave@localhost'), 'the session record');
    // ... and the end of the session the rest, so the sums match the record exactly.
    await stats.tick();
    const pts = await storage.statistics.listPoints({ resolution: 'minute', since: new Date(Math.floor(t / MIN) * MIN) });
    const sum = (series: string) => pts.filter((p) => p.series === series).reduce((a, p) => a + p.value, 0);
    assert.equal(sum('c2s.stanzas.in'), record.stanzasIn);
    assert.equal(sum('c2s.stanzas.out'), record.stanzasOut);
    assert.equal(sum('c2s.bytes.in'), record.bytesIn);
    assert.equal(sum('c2s.bytes.out'), record.bytesOut);
    assert.equal(sum('sessions.closed'), 1);
    assert.equal(sum('sessions.seconds'), 120);
  });

  test('P23 deleting an account deletes its session records', async () => {
    const storage = ts.server.ctx.storage;
    const erin = await ts.user('erin');
    await erin.close();
    await until(async () => (await storage.statistics.listSessionRecords()).some((r) => r.account === 'erin@localhost'), 'the first record');
    const again = await ts.client();
    await again.login('erin', 'secret-erin');
    const removed = await again.iq(x('iq', { type: 'set' }, x('query', { xmlns: NS.register }, x('remove', {}))));
    assert.equal(removed.attrs.type, 'result');
    await until(async () => (await ts.server.ctx.storage.accounts.get('erin', 'localhost')) === null || null, 'the deletion');
    await until(async () => !(await storage.statistics.listSessionRecords()).some((r) => r.account === 'erin@localhost'), 'no records of erin');
  });
});

describe('P21 the control channel', () => {
  test('P21 the control socket is private to the server user, answers errors in one line and is removed at stop', async () => {
    // Commands declared by a module; a ControlError is shown as is, anything else is hidden.
    const testCommands: GatehouseModule = {
      name: 'test-commands',
      specs: [],
      commands: {
        control: {
          'test.echo': { summary: 'echo', handler: (args) => ({ echo: args.text }) },
          'test.fail': {
            summary: 'fail',
            handler: (args) => {
              if (args.mine) throw new ControlError('no such block');
              throw new Error('secret internals');
            },
          },
          'test.off': { summary: 'off', available: () => false, handler: () => 'on' },
        },
      },
      load() {},
    };
    const ts = await startTestServer({ modules: modulesWith(createControlModule(), testCommands) });
    const sock = controlSocketPath(ts.dir);
    try {
      assert.equal(statSync(sock).mode & 0o777, 0o600);
      const status = (await controlRequest(ts.dir, 'status')) as { pid: number; sessions: number };
      assert.equal(status.pid, process.pid);
      assert.equal(status.sessions, 0);
      const names = ((await controlRequest(ts.dir, 'commands')) as { name: string }[]).map((c) => c.name);
      assert.ok(names.includes('commands') && names.includes('status'));

      await assert.rejects(controlRequest(ts.dir, 'no-such-command'), (err: Error) => err instanceof ControlError && /unknown command/.test(err.message));
      assert.deepEqual(await rawControl(ts.dir, 'not json'), { id: null, ok: false, error: 'request is not valid JSON' });
      assert.deepEqual(await rawControl(ts.dir, JSON.stringify({ id: 7, command: 'status', args: [] })), { id: 7, ok: false, error: 'args must be a JSON object' });

      assert.deepEqual(await controlRequest(ts.dir, 'test.echo', { text: 'hi' }), { echo: 'hi' });
      await assert.rejects(controlRequest(ts.dir, 'test.fail', { mine: true }), /no such block/);
      await assert.rejects(controlRequest(ts.dir, 'test.fail'), (err: Error) => /internal error/.test(err.message) && !/secret/.test(err.message));
      await assert.rejects(controlRequest(ts.dir, 'test.off'), /unknown command/);
      const listed = ((await controlRequest(ts.dir, 'commands')) as { name: string }[]).map((c) => c.name);
      assert.ok(listed.includes('test.echo') && !listed.includes('test.off'));
    } finally {
      await ts.stop();
    }
    assert.equal(existsSync(sock), false);
  });

  test('P21 without a running server the CLI gives a clear one-line error', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-ctl-'));
    try {
      await assert.rejects(controlRequest(dir, 'sessions'), (err: Error) => err.message === `the server is not running (no control socket at ${controlSocketPath(dir)})`);
      await assert.rejects(cli(dir, ['sessions']), /the server is not running/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('P21 a socket left by a killed server is replaced; a live one stops a second server', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-ctl-'));
    const sock = controlSocketPath(dir);
    try {
      // A process that listens on the socket and is killed: the file stays behind.
      const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
      assert.ok(existsSync(sock), 'stale socket left behind');

      const ts = await startTestServer({ config: { dataDir: dir }, modules: modulesWith(createControlModule()) });
      try {
        assert.equal(((await controlRequest(dir, 'status')) as { pid: number }).pid, process.pid);
        await assert.rejects(startTestServer({ config: { dataDir: dir }, modules: [createControlModule()] }), /another Gatehouse server is running with this data directory/);
        assert.equal(((await controlRequest(dir, 'status')) as { pid: number }).pid, process.pid, 'the first server still answers');
      } finally {
        await ts.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
