/**
 * P12 anonymous statistics: storage (every database target), collection and RRD-like rollups with a
 * ManualClock, the counters a real server records, the CLI and the SVG chart.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { openStorage } from '../../storage/datasource.js';
import { storageTargets } from '../../storage/test-databases.js';
import { asTypeOrmStorage } from '../../storage/typeorm-storage.js';
import type { StatPoint, StatWrite, Storage } from '../../storage/types.js';
import { Statistics, createStatisticsModule, seriesKey, statsFor } from '../../server/modules/statistics/statistics.js';
import { createSessionStatsModule } from '../../server/modules/statistics/session-stats.js';
import { createControlModule } from '../../server/admin/control.js';
import { statsCommands, parseSince, valueFlags } from '../../server/modules/statistics/cli-stats.js';
import { renderChart } from '../../server/modules/statistics/chart.js';
import { parseArgs } from '../../server/cli/kit.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import { modulesWith, startTestServer, type TestServer } from '../helpers/server.js';
import { ManualClock } from '../../shared/clock.js';
import { silentLogger } from '../../shared/logger.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { commandContext } from '../../server/cli/commands.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 0, 1);

function columnsQuery(kind: Storage['kind'], table: string): string {
  if (kind === 'sqlite') return `SELECT name FROM pragma_table_info('${table}')`;
  if (kind === 'mysql') return `SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '${table}'`;
  return `SELECT column_name AS name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '${table}'`;
}

async function columns(storage: Storage, table: string): Promise<string[]> {
  const rows = await asTypeOrmStorage(storage).rawQuery(columnsQuery(storage.kind, table));
  return rows.map((r: Record<string, unknown>) => String(r.name ?? r.NAME ?? r.COLUMN_NAME)).sort();
}

function valueOf(points: StatPoint[], series: string, at: number): number | undefined {
  return points.find((p) => p.series === series && p.bucketStart.getTime() === at)?.value;
}

for (const target of storageTargets()) {
  describe(`statistics storage on ${target.name}`, () => {
    let storage: Storage;
    let drop: () => Promise<void>;

    before(async () => {
      const db = await target.make();
      drop = db.drop;
      storage = await openStorage(db.config, { migrate: true });
    });
    after(async () => {
      await storage?.close();
      await drop?.();
    });

    test('P12 the statistics table has no column that could hold a JID, an IP or content', async () => {
      assert.deepEqual(await columns(storage, 'stat_points'), ['bucket_start', 'resolution', 'series', 'value']);
    });

    test('P12 points: add sums into a stored point, set replaces it', async () => {
      const repo = storage.statistics;
      const at = new Date(T0 - 7 * DAY);
      await repo.writePoints([
        { series: 'logins', resolution: 'minute', bucketStart: at, value: 2, mode: 'add' },
        { series: 'logins', resolution: 'minute', bucketStart: at, value: 3, mode: 'add' },
        { series: 'sessions.online', resolution: 'minute', bucketStart: at, value: 7, mode: 'set' },
      ]);
      await repo.writePoints([
        { series: 'logins', resolution: 'minute', bucketStart: at, value: 4, mode: 'add' },
        { series: 'sessions.online', resolution: 'minute', bucketStart: at, value: 5, mode: 'set' },
      ]);
      const pts = await repo.listPoints({ resolution: 'minute', since: at, until: new Date(at.getTime() + MIN) });
      assert.equal(valueOf(pts, 'logins', at.getTime()), 9);
      assert.equal(valueOf(pts, 'sessions.online', at.getTime()), 5);
      assert.deepEqual(await repo.listPoints({ resolution: 'minute', since: at, until: new Date(at.getTime() + MIN), series: ['logins'] }), [
        { series: 'logins', resolution: 'minute', bucketStart: at, value: 9 },
      ]);
      assert.equal(await repo.deletePointsBefore('minute', new Date(at.getTime() + MIN)), 2);
    });

    test('P12 rollup minute -> hour -> day, and each resolution expires like an RRD', async () => {
      const repo = storage.statistics;
      // A day of minute points: logins 1 a minute; a level that is h for the first half of hour h
      // and h+2 for the second (average h+1, peak h+2); three messages in one minute.
      const writes: StatWrite[] = [];
      for (let m = 0; m < 24 * 60; m++) {
        const h = Math.floor(m / 60);
        const level = m % 60 < 30 ? h : h + 2;
        const bucketStart = new Date(T0 + m * MIN);
        writes.push({ series: 'logins', resolution: 'minute' as const, bucketStart, value: 1, mode: 'set' as const });
        writes.push({ series: 'sessions.online', resolution: 'minute' as const, bucketStart, value: level, mode: 'set' as const });
        writes.push({ series: 'sessions.online.peak', resolution: 'minute' as const, bucketStart, value: level, mode: 'set' as const });
      }
      writes.push({ series: 'stanzas.routed{kind=message}', resolution: 'minute', bucketStart: new Date(T0 + 10 * HOUR + 15 * MIN), value: 3, mode: 'set' });
      await repo.writePoints(writes);

      const clock = new ManualClock(T0 + DAY + 30 * MIN);
      const online = 4;
      const stats = new Statistics({ repo, clock, retention: null, log: silentLogger, online: () => online });
      await stats.tick();

      const hours = await repo.listPoints({ resolution: 'hour', since: new Date(T0), until: new Date(T0 + DAY) });
      for (let h = 0; h < 24; h++) {
        const at = T0 + h * HOUR;
        assert.equal(valueOf(hours, 'logins', at), 60, `logins in hour ${h}`);
        assert.equal(valueOf(hours, 'sessions.online', at), h + 1, `average level in hour ${h}`);
        assert.equal(valueOf(hours, 'sessions.online.peak', at), h + 2, `peak level in hour ${h}`);
      }
      assert.equal(valueOf(hours, 'stanzas.routed{kind=message}', T0 + 10 * HOUR), 3);
      assert.equal(hours.filter((p) => p.series === 'stanzas.routed{kind=message}').length, 1);

      const days = await repo.listPoints({ resolution: 'day' });
      assert.equal(valueOf(days, 'logins', T0), 1440);
      assert.equal(valueOf(days, 'sessions.online', T0), 12.5);
      assert.equal(valueOf(days, 'sessions.online.peak', T0), 25);
      assert.equal(valueOf(days, 'stanzas.routed{kind=message}', T0), 3);

      // Minute points are kept for a day: the first 30 minutes of day 1 are gone, the rest is there.
      const minutes = await repo.listPoints({ resolution: 'minute', series: ['logins'] });
      assert.equal(minutes.length, 24 * 60 - 30);
      assert.equal(minutes[0]!.bucketStart.getTime(), T0 + 30 * MIN);
      // The tick sampled the level into the minute it closed.
      assert.equal(valueOf(await repo.listPoints({ resolution: 'minute', series: ['sessions.online'] }), 'sessions.online', T0 + DAY + 30 * MIN), online);

      // 61 days later: the minutes and the hourly rollups of day 1 are gone, the daily ones stay
      // (retention.statistics unlimited).
      clock.advance(61 * DAY);
      await stats.tick();
      assert.equal((await repo.listPoints({ resolution: 'hour', until: new Date(T0 + DAY) })).length, 0);
      assert.equal((await repo.listPoints({ resolution: 'minute', until: new Date(T0 + 2 * DAY) })).length, 0);
      assert.equal(valueOf(await repo.listPoints({ resolution: 'day' }), 'logins', T0), 1440);

      // With retention.statistics 30 days, the daily rollups of day 1 go too.
      const limited = new Statistics({ repo, clock, retention: 30 * DAY, log: silentLogger, online: () => 0 });
      await limited.tick();
      assert.equal(valueOf(await repo.listPoints({ resolution: 'day' }), 'logins', T0), undefined);
      for (const r of ['minute', 'hour', 'day'] as const) await repo.deletePointsBefore(r, new Date(T0 + 1000 * DAY));
    });

    test('P12 a tick closes the minute it started in: counters, hot counters and gauges', async () => {
      const repo = storage.statistics;
      const start = T0 + 400 * DAY;
      const clock = new ManualClock(start);
      let online = 3;
      const stats = new Statistics({ repo, clock, retention: null, log: silentLogger, online: () => online });
      const routed = stats.counter('stanzas.routed', { kind: 'iq' });
      clock.advance(10_000);
      stats.increment('logins');
      stats.increment('delivery.failed', { condition: 'service-unavailable' }, 2);
      routed.inc();
      routed.inc(4);
      clock.set(new Date(start + MIN + 50));
      await stats.tick();
      let pts = await repo.listPoints({ resolution: 'minute', since: new Date(start) });
      assert.equal(valueOf(pts, 'logins', start), 1);
      assert.equal(valueOf(pts, 'delivery.failed{condition=service-unavailable}', start), 2);
      assert.equal(valueOf(pts, 'stanzas.routed{kind=iq}', start), 5);
      assert.equal(valueOf(pts, 'sessions.online', start), 3);

      online = 1;
      stats.increment('logins');
      clock.set(new Date(start + 2 * MIN + 50));
      await stats.tick();
      pts = await repo.listPoints({ resolution: 'minute', since: new Date(start) });
      assert.equal(valueOf(pts, 'logins', start + MIN), 1);
      assert.equal(valueOf(pts, 'sessions.online', start + MIN), 1);
      assert.equal(valueOf(pts, 'stanzas.routed{kind=iq}', start + MIN), undefined, 'no point for a counter that did not move');

      // What is counted after the last tick is written by the final flush at stop.
      stats.acquire(false);
      stats.increment('logins', undefined, 5);
      await stats.release();
      pts = await repo.listPoints({ resolution: 'minute', since: new Date(start) });
      assert.equal(valueOf(pts, 'logins', start + 2 * MIN), 5);
    });
  });
}

test('P12 series names and labels cannot carry a JID, an IP or free text', () => {
  assert.equal(seriesKey('stanzas.routed', { kind: 'message' }), 'stanzas.routed{kind=message}');
  assert.equal(seriesKey('x', { b: '2', a: '1' }), 'x{a=1,b=2}');
  for (const bad of ['alice@localhost', 'localhost/res', '127.0.0.1', '::1', '2001:db8::1', 'hello world', '', 'a'.repeat(41)]) {
    assert.throws(() => seriesKey('delivery.failed', { condition: bad }), TypeError, bad);
  }
  for (const bad of ['Alice@localhost', 'a b', '1abc', 'x{y=z}']) assert.throws(() => seriesKey(bad), TypeError, bad);
});

test('P12 chart: well-formed SVG with axes, legend and one polyline per series', () => {
  const series = [
    { name: 'logins', points: [0, 1, 2, 3].map((i) => ({ t: T0 + i * HOUR, v: i * 10 })) },
    { name: 'stanzas.routed{kind=message}', points: [0, 1, 2, 3].map((i) => ({ t: T0 + i * HOUR, v: 1500 - i })) },
    { name: 'odd <&> "name"', points: [{ t: T0 + HOUR, v: 2 }] },
  ];
  const svg = renderChart({ title: 'Test & chart', series });
  const root = parseXmlText(svg);
  assert.ok(root, 'the SVG is well-formed XML');
  assert.equal(root.name, 'svg');
  assert.equal(root.attrs.xmlns, 'http://www.w3.org/2000/svg');
  const all: Element[] = [];
  const walk = (el: Element) => {
    all.push(el);
    for (const c of el.elements) walk(c);
  };
  walk(root);
  const polylines = all.filter((e) => e.name === 'polyline');
  assert.equal(polylines.length, 3);
  assert.deepEqual(
    polylines.map((p) => p.attrs['data-series']),
    series.map((s) => s.name),
  );
  assert.equal(polylines[0]!.attrs.points!.split(' ').length, 4);
  const texts = all.filter((e) => e.name === 'text').map((e) => e.text());
  assert.ok(texts.includes('Test & chart'));
  assert.ok(texts.includes('odd <&> "name"'), 'legend names are escaped and read back');
  assert.ok(texts.includes('time (UTC)'));
  assert.ok(texts.includes('1500'), `a y label at the top of the scale: ${texts.join('|')}`);
  // An empty chart is still well-formed.
  assert.ok(parseXmlText(renderChart({ series: [] })));
});

test('P12 stats CLI flags: --name value and --name=value, durations and dates', () => {
  const flags = valueFlags(parseArgs(['--series', 'logins', '--resolution=minute', '--chart', 'x.svg', '--config', 'c.yaml']));
  assert.deepEqual(Object.fromEntries(flags), { series: 'logins', resolution: 'minute', chart: 'x.svg' });
  const now = new Date(T0 + DAY);
  assert.equal(parseSince('48h', now).getTime(), T0 - DAY);
  assert.equal(parseSince('2026-01-01', now).getTime(), T0);
  assert.equal(parseSince('2026-01-01T12:00', now).getTime(), T0 + 12 * HOUR);
  assert.throws(() => parseSince('yesterday', now));
});

describe('P12 statistics of a running server', () => {
  let ts: TestServer;
  let clock: ManualClock;
  const start = Math.floor(Date.now() / MIN) * MIN - 5 * MIN;
  const out: string[] = [];
  const original = console.log;

  before(async () => {
    clock = new ManualClock(start);
    ts = await startTestServer({
      clock,
      modules: modulesWith(createControlModule(), createStatisticsModule({ autoTick: false }), createSessionStatsModule({ autoTick: false })),
    });
  });
  after(async () => {
    console.log = original;
    await ts?.stop();
  });

  async function cli(argv: string[]): Promise<string> {
    const config = path.join(ts.dir, 'cli.yaml');
    writeFileSync(config, stringify({ dataDir: ts.dir, storage: { type: 'sqlite', path: ts.config.storage.path } }));
    const [name, ...rest] = argv;
    out.length = 0;
    console.log = (...a: unknown[]) => void out.push(a.join(' '));
    try {
      const code = await statsCommands[name!]!.run(parseArgs([...rest, '--config', config]), commandContext());
      assert.equal(code, 0);
    } finally {
      console.log = original;
    }
    return out.join('\n');
  }

  test('P12 logins, failed logins, registrations, stanzas and delivery failures are counted without JID or IP', async () => {
    const alice = await ts.user('alice');
    const bob = await ts.user('bob');
    alice.send(x('presence', {}));
    bob.send(x('presence', {}));
    alice.send(x('message', { to: bob.jid, type: 'chat', id: 'm1' }, x('body', {}, 'hello bob')));
    await bob.expect((el) => el.name === 'message' && el.attrs.id === 'm1');
    alice.send(x('message', { to: 'nobody@localhost', type: 'chat', id: 'm2' }, x('body', {}, 'anyone?')));
    await alice.expect((el) => el.name === 'message' && el.attrs.type === 'error');
    await alice.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
    const intruder = await ts.client();
    await assert.rejects(intruder.login('alice', 'wrong password'));

    clock.advance(MIN);
    await statsFor(ts.server.ctx).tick();
    const pts = await ts.server.ctx.storage.statistics.listPoints({ resolution: 'minute', since: new Date(start) });
    const at = (series: string) => valueOf(pts, series, start);
    assert.equal(at('logins'), 2);
    assert.equal(at('logins.failed'), 1);
    assert.equal(at('registrations'), 2);
    assert.equal(at('sessions.online'), 2);
    assert.ok((at('stanzas.routed{kind=message}') ?? 0) >= 2, 'messages routed');
    assert.ok((at('stanzas.routed{kind=iq}') ?? 0) >= 1, 'IQs routed (the ping; registration and bind never reach the router)');
    assert.ok((at('stanzas.routed{kind=presence}') ?? 0) >= 2, 'presences routed');
    assert.equal(at('delivery.failed{condition=service-unavailable}'), 1);
    assert.ok((at('c2s.stanzas.in') ?? 0) >= 5, 'client traffic folded in each minute');
    assert.ok((at('c2s.bytes.out') ?? 0) > 0);

    // No JID, IP or content anywhere in the table.
    const rows = await asTypeOrmStorage(ts.server.ctx.storage).rawQuery('SELECT * FROM stat_points');
    assert.ok(rows.length > 0);
    const dump = JSON.stringify(rows);
    for (const needle of ['alice', 'bob', 'nobody', 'localhost', '127.0.0.1', '@', 'hello', 'anyone']) assert.ok(!dump.includes(needle), `stat_points contains ${needle}`);
    assert.deepEqual(Object.keys(rows[0]).sort(), ['bucket_start', 'resolution', 'series', 'value']);
  });

  test('P12 gatehouse stats prints the series and --chart draws them', async () => {
    const summary = await cli(['stats', '--resolution', 'minute', '--since', '1h']);
    assert.match(summary, /^logins\s+2\b/m);
    assert.match(summary, /^logins\.failed\s+1\b/m);
    assert.match(summary, /^registrations\s+2\b/m);
    assert.doesNotMatch(summary, /alice|127\.0\.0\.1/);

    const perMinute = await cli(['stats', '--resolution=minute', '--since', '1h', '--series', 'logins,stanzas.routed']);
    const lines = perMinute.split('\n');
    assert.match(lines[0]!, /^TIME \(UTC\)\s+logins\s+stanzas\.routed\{kind=iq\}\s+stanzas\.routed\{kind=message\}\s+stanzas\.routed\{kind=presence\}$/);
    const minuteLabel = new Date(start).toISOString().slice(0, 16).replace('T', ' ');
    assert.ok(lines.some((l) => l.startsWith(minuteLabel) && /\s2\s/.test(l)), perMinute);

    const file = path.join(ts.dir, 'stats.svg');
    const printed = await cli(['stats', '--resolution', 'minute', '--since', '1h', '--series', 'logins,logins.failed,sessions.online', '--chart', file]);
    assert.match(printed, /chart written to .*stats\.svg \(3 series\)/);
    const svg = parseXmlText(readFileSync(file, 'utf8'));
    assert.ok(svg);
    const polylines = svg.elements.flatMap(function all(e: Element): Element[] {
      return [e, ...e.elements.flatMap(all)];
    }).filter((e) => e.name === 'polyline');
    assert.deepEqual(polylines.map((p) => p.attrs['data-series']), ['logins', 'logins.failed', 'sessions.online']);
  });

  test('P12 registrations and deletions are counted', async () => {
    const carol = await ts.user('carol');
    const removed = await carol.iq(x('iq', { type: 'set' }, x('query', { xmlns: NS.register }, x('remove', {}))));
    assert.equal(removed.attrs.type, 'result');
    const from = clock.now().getTime();
    clock.advance(MIN);
    await statsFor(ts.server.ctx).tick();
    const pts = await ts.server.ctx.storage.statistics.listPoints({ resolution: 'minute', since: new Date(Math.floor(from / MIN) * MIN) });
    assert.equal(valueOf(pts, 'registrations', Math.floor(from / MIN) * MIN), 1);
    assert.equal(valueOf(pts, 'accounts.deleted', Math.floor(from / MIN) * MIN), 1);
  });
});
