/**
 * The admin HTTP API over real HTTPS on loopback: `GET /api/sessions` and `GET /api/stats`, the
 * commands marked for it in their definitions, answer JSON to a logged-in administrator only; the
 * query parameters are the command's flags, checked as on the command line; a read of personal data
 * is logged (P21).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTestServer, modulesWith, type TestServer } from '../helpers/server.js';
import { createAdminHttpModule } from '../../server/admin/http.js';
import { createStatisticsModule } from '../../server/modules/statistics/statistics.js';
import { createSessionStatsModule } from '../../server/modules/statistics/session-stats.js';
import { AdminClient } from './http-client.js';

const ADMIN_PW = 'correct horse battery staple';

async function until<T>(fn: () => T | undefined | null | false, what: string, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('admin HTTP API', () => {
  let ts: TestServer;
  let admin: AdminClient;

  before(async () => {
    ts = await startTestServer({
      modules: modulesWith(createAdminHttpModule(), createStatisticsModule({ autoTick: false }), createSessionStatsModule({ autoTick: false })),
      config: { admins: ['admin@localhost'], listen: { admin: [{ host: '127.0.0.1', port: 0 }] } },
      logLevel: 'info',
    });
    const a = await ts.user('admin', ADMIN_PW);
    await a.close();
    admin = new AdminClient(ts.adminPort);
    const login = await admin.login('admin@localhost', ADMIN_PW);
    assert.equal(login.status, 303, 'logged in');
  });
  after(() => ts.stop());

  test('P21 the API answers a logged-in administrator only, over HTTPS', async () => {
    const anon = new AdminClient(ts.adminPort);
    for (const path of ['/api/sessions', '/api/stats', '/api/nosuch']) {
      const res = await anon.get(path);
      assert.equal(res.status, 401, path);
      assert.match(String(res.headers['content-type']), /^application\/json/);
      assert.deepEqual(JSON.parse(res.body), { error: 'log in as an administrator' });
    }
    assert.equal((await admin.request('POST', '/api/sessions')).status, 405);
    const none = await admin.get('/api/nosuch');
    assert.equal(none.status, 404);
    assert.match(JSON.parse(none.body).error, /no API command/);
  });

  test('P6 GET /api/sessions lists the live client sessions as `gatehouse sessions --json` does; the read is logged (P21)', async () => {
    const alice = await ts.user('alice', 'alice-pw');
    const mark = ts.logLines.length;
    const res = await admin.get('/api/sessions');
    assert.equal(res.status, 200, res.body);
    assert.equal(res.headers['cache-control'], 'no-store');
    const list = JSON.parse(res.body) as { jid: string; ip: string; stanzasIn: number }[];
    const mine = list.find((s) => s.jid === alice.jid);
    assert.ok(mine, `alice is listed: ${res.body}`);
    assert.equal(mine.ip, '127.0.0.1');
    assert.equal(typeof mine.stanzasIn, 'number');
    const audit = await until(() => ts.logLines.slice(mark).find((l) => l.includes('audit data read') && l.includes('admin HTTP API')), 'the audit line');
    assert.ok(audit.includes('reader=xmpp:admin@localhost'), audit);
    await alice.close();
  });

  test('GET /api/status answers as `gatehouse status --json`, without personal data (no audit line); /api/sessions takes --jid as ?jid=', async () => {
    const alice = await ts.user('alice2', 'alice-pw');
    const mark = ts.logLines.length;
    const res = await admin.get('/api/status');
    assert.equal(res.status, 200, res.body);
    const status = JSON.parse(res.body) as { sessions: number; listeners: { kind: string; port: number }[]; database: string };
    assert.equal(status.sessions, ts.server.ctx.sessions.size);
    assert.ok(status.listeners.some((l) => l.kind === 'c2s' && l.port === ts.port));
    assert.equal(status.database, 'sqlite');
    assert.ok(!res.body.includes('@'), 'no JID');
    assert.ok(!ts.logLines.slice(mark).some((l) => l.includes('audit data read')), 'status is not a read of audit data');
    const only = JSON.parse((await admin.get(`/api/sessions?jid=${encodeURIComponent(alice.jid)}`)).body) as { jid: string }[];
    assert.deepEqual(only.map((s) => s.jid), [alice.jid]);
    await alice.close();
  });

  test('P12 GET /api/stats answers the series as `gatehouse stats --json` does; its flags are the query parameters', async () => {
    const bob = await ts.user('bob', 'bob-pw');
    await bob.close();
    const res = await admin.get('/api/stats?resolution=minute&since=1h');
    assert.equal(res.status, 200, res.body);
    const body = JSON.parse(res.body) as { resolution: string; since: string; series: Record<string, [string, number][]> };
    assert.equal(body.resolution, 'minute');
    assert.ok(Date.now() - Date.parse(body.since) >= 3_600_000 - 1000, body.since);
    const logins = body.series['logins'];
    assert.ok(logins && logins.reduce((n, [, v]) => n + v, 0) >= 1, `the logins of this test are counted (flushed first): ${res.body.slice(0, 300)}`);
    assert.ok(!res.body.includes('127.0.0.1') && !res.body.includes('bob@localhost'), 'no IP or JID (P12)');
    const one = JSON.parse((await admin.get('/api/stats?resolution=minute&series=logins')).body) as { series: Record<string, unknown> };
    assert.deepEqual(Object.keys(one.series), ['logins']);

    const typo = await admin.get('/api/stats?resolutoin=day');
    assert.equal(typo.status, 400);
    assert.deepEqual(JSON.parse(typo.body), { error: 'unknown parameter resolutoin; did you mean resolution?' });
    const bad = await admin.get('/api/stats?resolution=week');
    assert.equal(bad.status, 400);
    assert.deepEqual(JSON.parse(bad.body), { error: '--resolution is minute, hour or day' });
  });
});
