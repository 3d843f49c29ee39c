/**
 * The admin HTTP interface over real HTTPS on loopback: the public privacy policy (P22), login
 * with an admin's XMPP password (P21, P2: checked against the SCRAM verifiers), the live sessions
 * (P6), statistics charts and /metrics (P12), failed logins and blocks (P7), the transport audit
 * log (P10), CSRF, security headers and limits; every read of audit data is logged (P21).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTestServer, modulesWith, type TestServer } from '../helpers/server.js';
import { createAdminHttpModule, safeNext, isLoopback } from '../../server/admin/http.js';
import { AdminSessions, LOGIN_FAILED } from '../../server/admin/auth.js';
import { csvField, parseTime } from '../../server/modules/transports/admin-audit.js';
import { announcePolicy } from '../../server/modules/policy/announce.js';
import { createStatisticsModule } from '../../server/modules/statistics/statistics.js';
import { createSessionStatsModule } from '../../server/modules/statistics/session-stats.js';
import type { Config } from '../../server/config/index.js';
import { AdminClient } from './http-client.js';
import { x } from '../../shared/xml/element.js';

const ADMIN_PW = 'correct horse battery staple';
const BOB_PW = 'bobs-xmpp-password';
const METRICS_TOKEN = 'metrics-token-0123456789abcdef';
const DAY = 86_400_000;

async function until<T>(fn: () => T | undefined | null | false | Promise<T | undefined | null | false>, what: string, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Audit log lines (P21) written since `from` (an index into ts.logLines). */
function auditLines(ts: TestServer, from = 0): string[] {
  return ts.logLines.slice(from).filter((l) => l.includes('audit: audit data read'));
}

function headerChecks(res: { headers: Record<string, unknown> }): void {
  const csp = String(res.headers['content-security-policy']);
  for (const d of ["default-src 'none'", "style-src 'unsafe-inline'", "img-src 'self' data:", "frame-ancestors 'none'"]) assert.ok(csp.includes(d), `CSP has ${d}: ${csp}`);
  assert.equal(res.headers['x-content-type-options'], 'nosniff');
  assert.equal(res.headers['referrer-policy'], 'no-referrer');
}

describe('admin HTTP interface', () => {
  let ts: TestServer;
  let anon: AdminClient;

  before(async () => {
    ts = await startTestServer({
      modules: modulesWith(createAdminHttpModule({ metricsToken: METRICS_TOKEN }), createStatisticsModule({ autoTick: false }), createSessionStatsModule({ autoTick: false })),
      config: {
        admins: ['admin@localhost'],
        listen: { admin: [{ host: '127.0.0.1', port: 0 }] },
        policy: { contact: 'mailto:privacy@example.org' },
        retention: { detailedLogs: '36h' },
      },
      logLevel: 'info',
    });
    assert.ok(ts.adminPort > 0, 'the admin listener is bound');
    const admin = await ts.user('admin', ADMIN_PW);
    await admin.close();
    const bob = await ts.user('bob', BOB_PW);
    await bob.close();
    anon = new AdminClient(ts.adminPort);
  });
  after(() => ts.stop());

  test('P22 /privacy and /datenschutz are public HTML pages rendered from the configuration, with a language switch and Markdown', async () => {
    const en = await anon.get('/privacy');
    assert.equal(en.status, 200);
    assert.match(String(en.headers['content-type']), /^text\/html; charset=utf-8/);
    headerChecks(en);
    assert.ok(en.body.includes('<html lang="en">'));
    assert.ok(en.body.includes('<h1>Privacy policy of localhost</h1>'));
    assert.ok(en.body.includes('<a href="mailto:privacy@example.org">mailto:privacy@example.org</a>'), 'policy.contact is shown as a link');
    assert.ok(en.body.includes('deleted after 36 hours'), 'retention.detailedLogs is stated');
    assert.ok(en.body.includes('href="/datenschutz" hreflang="de" lang="de">Deutsch</a>'), 'language switch');
    assert.ok(en.body.includes('<style>'), 'inline CSS');
    assert.ok(!/<script|<link rel="stylesheet"|src="http/i.test(en.body), 'no script and no external asset');

    const de = await anon.get('/datenschutz');
    assert.equal(de.status, 200);
    assert.ok(de.body.includes('<html lang="de">'));
    assert.ok(de.body.includes('<h1>Datenschutzerklärung für localhost</h1>'));
    assert.ok(de.body.includes('href="/privacy" hreflang="en" lang="en">English</a>'));
    assert.ok(de.body.includes('36 Stunden'));

    const md = await anon.get('/datenschutz?format=md');
    assert.equal(md.status, 200);
    assert.match(String(md.headers['content-type']), /^text\/markdown; charset=utf-8/);
    assert.ok(md.body.startsWith('# Datenschutzerklärung für localhost\n'));
    assert.equal((await anon.get('/privacy?format=pdf')).status, 400);
    const head = await anon.request('HEAD', '/privacy');
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
  });

  test('P22 an announced change is shown with its effective date, the current text in force until then', async () => {
    const now = new Date();
    const effective = new Date(now.getTime() + 35 * DAY).toISOString().slice(0, 10);
    const changed: Config = { ...ts.config, retention: { ...ts.config.retention, offlineMessages: 14 * DAY } };
    const r = await announcePolicy(ts.server.ctx.storage, changed, { effective, now });
    assert.equal(r.version.id, 2);
    const en = await anon.get('/privacy');
    assert.ok(en.body.includes(`Announced change: a new version of this policy takes effect on ${effective}`), 'the notice names the date');
    const [current, upcoming] = en.body.split('<hr>');
    assert.ok(current!.includes('In force since') && current!.includes('(version 1)'));
    assert.ok(current!.includes('within 30 days'), 'the text in force keeps the old period');
    assert.ok(upcoming!.includes(`New version, in force from ${effective} (version 2)`));
    assert.ok(upcoming!.includes('within 14 days'), 'the announced text follows');
    const de = await anon.get('/datenschutz');
    assert.ok(de.body.includes('Angekündigte Änderung: Ab '), 'German notice');
    const md = await anon.get('/privacy?format=md');
    assert.ok(md.body.includes('> **Announced change'));
  });

  test('health check is public; admin pages redirect to the login without a session; POSTs are refused', async () => {
    const health = await anon.get('/healthz');
    assert.equal(health.status, 200);
    assert.equal(health.body, 'ok\n');
    headerChecks(health);
    for (const path of ['/', '/sessions', '/statistics?resolution=day', '/blocks', '/transports?network=irc', '/transports.csv', '/policy']) {
      const res = await anon.get(path);
      assert.equal(res.status, 303, path);
      assert.equal(res.headers.location, `/login?next=${encodeURIComponent(path)}`, path);
      headerChecks(res);
    }
    for (const path of ['/sessions/disconnect', '/blocks/lift', '/blocks/lift-all', '/logout']) {
      assert.equal((await anon.post(path, { csrf: 'x' })).status, 403, path);
    }
    assert.equal((await anon.get('/nothing-here')).status, 404);
    const metrics = await anon.get('/metrics');
    assert.equal(metrics.status, 401);
    assert.match(String(metrics.headers['www-authenticate']), /^Bearer/);
    assert.equal((await anon.request('PUT', '/privacy')).status, 405);
  });

  test('P2 an admin console login adds the SCRAM-SHA-256 verifier an imported SCRAM-SHA-1-only account lacks; /metrics counts the accounts lacking one', async () => {
    const { storage } = ts.server.ctx;
    const admin = (await storage.accounts.get('admin', 'localhost'))!;
    const sha1 = (await storage.accounts.getVerifiers(admin.id)).find((v) => v.hash === 'SHA-1')!;
    // As `gatehouse import` leaves an account from Prosody: SCRAM-SHA-1 only.
    await storage.accounts.setVerifiers(admin.id, [sha1]);
    // Written behind the server's back (as `gatehouse import` does): seen at the next count.
    await ts.server.ctx.services.need('scram-offer').refresh();
    const bearer = new AdminClient(ts.adminPort);
    const scrape = async () => (await bearer.get('/metrics', { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).body;
    assert.match(await scrape(), /^gatehouse_accounts_lacking_scram_verifier\{hash="sha-256"\} 1$/m);
    assert.match(await scrape(), /^gatehouse_accounts_lacking_scram_verifier\{hash="sha-1"\} 0$/m);
    const refused = await ts.client();
    assert.equal((await refused.authenticate('admin', ADMIN_PW, 'SCRAM-SHA-256')).name, 'failure');
    await refused.close();
    const c = new AdminClient(ts.adminPort);
    assert.equal((await c.login('admin@localhost', ADMIN_PW)).status, 303);
    const now = await storage.accounts.getVerifiers(admin.id);
    assert.deepEqual(now.map((v) => v.hash).sort(), ['SHA-1', 'SHA-256']);
    assert.ok(now.find((v) => v.hash === 'SHA-1')!.storedKey.equals(sha1.storedKey), 'the imported verifier is kept');
    const xmpp = await ts.client();
    await xmpp.login('admin', ADMIN_PW, { mechanism: 'SCRAM-SHA-256' });
    await xmpp.close();
    await ts.server.ctx.services.need('scram-offer').refresh();
    assert.match(await scrape(), /^gatehouse_accounts_lacking_scram_verifier\{hash="sha-256"\} 0$/m);
    assert.ok(!ts.logLines.some((l) => l.includes(ADMIN_PW)), 'no password in any log line');
  });

  test('P21 a user who is not an administrator cannot log in, even with the right XMPP password; the failure is recorded like an XMPP one (P7)', async () => {
    const c = new AdminClient(ts.adminPort);
    const res = await c.login('bob@localhost', BOB_PW);
    assert.equal(res.status, 403);
    assert.ok(res.body.includes(LOGIN_FAILED));
    assert.ok(!res.setCookies.some((s) => s.startsWith('__Host-gatehouse-admin=')), 'no session cookie');
    assert.equal((await c.get('/')).status, 303, 'still not logged in');
    const wrong = await c.login('admin@localhost', 'not the password');
    assert.equal(wrong.status, 403);
    assert.ok(wrong.body.includes(LOGIN_FAILED), 'the same answer for a wrong admin password');
    const unknown = await c.login('nobody@localhost', 'whatever');
    assert.ok(unknown.body.includes(LOGIN_FAILED), 'and for an unknown account');
    const records = await until(async () => {
      const r = (await ts.server.ctx.storage.privacyLogs.listFailedLogins({})).filter((f) => f.mechanism === 'HTTP');
      return r.length >= 3 ? r : null;
    }, 'three failed-login records');
    assert.deepEqual(new Set(records.map((r) => r.username)), new Set(['bob', 'admin', 'nobody']));
    for (const r of records) {
      assert.equal(r.ip, '127.0.0.1');
      assert.equal(r.kind, 'auth');
      assert.equal(r.condition, 'not-authorized');
    }
    assert.ok(!ts.logLines.some((l) => l.includes(BOB_PW) || l.includes('not the password')), 'no password in any log line');
  });

  test('the login form needs its CSRF token (double submit)', async () => {
    const c = new AdminClient(ts.adminPort);
    await c.get('/login');
    assert.equal((await c.post('/login', { csrf: null, username: 'admin@localhost', password: ADMIN_PW })).status, 403, 'no token');
    assert.equal((await c.post('/login', { csrf: 'A'.repeat(43), username: 'admin@localhost', password: ADMIN_PW })).status, 403, 'another token');
    const fresh = new AdminClient(ts.adminPort);
    assert.equal((await fresh.post('/login', { csrf: 'A'.repeat(43), username: 'admin@localhost', password: ADMIN_PW })).status, 403, 'no cookie');
  });

  test('P21 an administrator logs in with the XMPP password; the session cookie is HttpOnly, SameSite=Strict, Secure; logout ends it', async () => {
    const c = new AdminClient(ts.adminPort);
    const res = await c.login('admin@localhost', ADMIN_PW, '/policy');
    assert.equal(res.status, 303);
    assert.equal(res.headers.location, '/policy', 'back to the page asked for');
    const cookie = res.setCookies.find((s) => s.startsWith('__Host-gatehouse-admin='));
    assert.ok(cookie, 'session cookie set');
    assert.match(cookie, /^__Host-gatehouse-admin=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Secure$/);
    const overview = await c.get('/');
    assert.equal(overview.status, 200);
    headerChecks(overview);
    assert.equal(overview.headers['cache-control'], 'no-store');
    assert.ok(overview.body.includes('admin@localhost'));
    assert.ok(overview.body.includes('client sessions online'));
    assert.ok(!overview.body.includes('<script'));
    // The local part alone works with a single host.
    const short = new AdminClient(ts.adminPort);
    assert.equal((await short.login('admin', ADMIN_PW)).status, 303);
    // Logout needs the CSRF token, then ends the session.
    assert.equal((await c.post('/logout', { csrf: 'wrong' })).status, 403);
    assert.equal((await c.get('/')).status, 200, 'a refused logout keeps the session');
    const out = await c.post('/logout');
    assert.equal(out.status, 303);
    assert.equal(out.headers.location, '/login?loggedout=1');
    assert.ok(out.setCookies.some((s) => s.startsWith('__Host-gatehouse-admin=;') && /Max-Age=0/.test(s)));
    c.cookies.set('__Host-gatehouse-admin', cookie.split(';')[0]!.split('=')[1]!);
    assert.equal((await c.get('/')).status, 303, 'the old token no longer works');
  });

  test('P6 the sessions page lists a connected client with its JID, IP and counters, and disconnects it (P21: the read is logged)', async () => {
    const alice = await ts.user('alice', 'alice-pw');
    const c = new AdminClient(ts.adminPort);
    await c.login('admin@localhost', ADMIN_PW);
    const mark = ts.logLines.length;
    const page = await c.get('/sessions');
    assert.equal(page.status, 200);
    assert.ok(page.body.includes(alice.jid), `the page shows ${alice.jid}`);
    assert.ok(page.body.includes('<td class="mono">127.0.0.1</td>'), 'and its IP');
    assert.ok(/Stanzas in/.test(page.body));
    const audit = await until(() => auditLines(ts, mark).find((l) => l.includes('live client sessions')), 'the audit line');
    assert.ok(audit.includes('reader=xmpp:admin@localhost'), audit);

    const id = [...ts.server.ctx.sessions.all()].find((s) => s.jid.full === alice.jid)!.id;
    // Without the CSRF token nothing happens.
    assert.equal((await c.post('/sessions/disconnect', { csrf: null, id, jid: alice.jid })).status, 403);
    assert.ok(ts.server.ctx.sessions.get(alice.jid), 'still online');
    const res = await c.post('/sessions/disconnect', { id, jid: alice.jid });
    assert.equal(res.status, 303);
    assert.equal(res.headers.location, '/sessions');
    const err = await alice.expect('stream:error');
    assert.ok(err.getChild('policy-violation', 'urn:ietf:params:xml:ns:xmpp-streams'));
    assert.equal(err.getChildText('text', 'urn:ietf:params:xml:ns:xmpp-streams'), 'disconnected by an administrator');
    await until(() => !ts.server.ctx.sessions.get(alice.jid), 'the session to end');
    const after = await c.get('/sessions');
    assert.ok(after.body.includes(`Disconnected ${alice.jid}.`), 'flash message');
    assert.ok(!after.body.includes(`<td class="mono">${alice.jid}`));
    assert.ok(ts.logLines.some((l) => l.includes('admin disconnected a client session') && l.includes('admin=admin@localhost')));
  });

  test('P12 the statistics page shows SVG charts per series group, at each resolution', async () => {
    const c = new AdminClient(ts.adminPort);
    await c.login('admin@localhost', ADMIN_PW);
    const page = await c.get('/statistics');
    assert.equal(page.status, 200);
    assert.ok(page.body.includes('<svg xmlns="http://www.w3.org/2000/svg"'), 'an inline SVG chart');
    assert.ok(page.body.includes('Client sessions online (per hour)'));
    const minute = await c.get('/statistics?resolution=minute');
    assert.ok(minute.body.includes('Client sessions online (per minute)'));
    assert.ok(minute.body.includes('class="series" data-series="logins"'), 'the logins of this test are drawn');
    assert.ok(minute.body.includes('<td class="mono" title="Successful logins (resources bound).">logins</td>'));
    assert.ok(!minute.body.includes('127.0.0.1') && !minute.body.includes('bob@localhost'), 'no IP or JID (P12)');
    const day = await c.get('/statistics?resolution=day');
    assert.ok(day.body.includes('(per day)'));
    assert.ok((await c.get('/statistics?resolution=<script>')).body.includes('(per hour)'), 'a bad value falls back to hours');
  });

  test('P12 /metrics gives the anonymous counters in Prometheus format, without any JID or IP, to admins or the bearer token', async () => {
    const eve = await ts.user('eve', 'eve-pw');
    await eve.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: 'urn:xmpp:ping' })));
    await eve.close();
    const bearer = new AdminClient(ts.adminPort);
    const res = await bearer.get('/metrics', { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    headerChecks(res);
    const text = res.body;
    assert.match(text, /^# HELP gatehouse_start_time_seconds /m);
    assert.match(text, /^gatehouse_sessions_online \d+$/m);
    assert.match(text, /^# TYPE gatehouse_logins_total counter$/m);
    assert.match(text, /^gatehouse_logins_total [1-9]\d*$/m);
    assert.match(text, /^gatehouse_logins_failed_total [1-9]\d*$/m, 'the failed console logins are counted');
    assert.match(text, /^gatehouse_stanzas_routed_total\{kind="iq"\} [1-9]\d*$/m, 'a labelled counter');
    assert.match(text, /^gatehouse_login_blocks\{kind="ip"\} \d+$/m);
    for (const line of text.trimEnd().split('\n')) assert.match(line, /^(# (HELP|TYPE) [a-z_][a-z0-9_]* .+|[a-z_][a-z0-9_]*(\{[a-z_]+="[a-z0-9_.-]*"(,[a-z_]+="[a-z0-9_.-]*")*\})? [0-9.e+-]+)$/, line);
    assert.ok(!text.includes('@'), 'no JID');
    assert.ok(!/\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b/.test(text) && !text.includes('127.0.0.1') && !text.includes('::1'), 'no IP');
    // Process metrics beside the server's (prom-client's default metrics and the event-loop lag).
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'process_open_fds', 'nodejs_eventloop_lag_max_seconds']) {
      assert.match(text, new RegExp(`^${name} [0-9.e+-]+$`, 'm'), name);
    }
    assert.equal((await bearer.get('/metrics', { headers: { authorization: 'Bearer wrong-token' } })).status, 401);
    const c = new AdminClient(ts.adminPort);
    await c.login('admin@localhost', ADMIN_PW);
    assert.equal((await c.get('/metrics')).status, 200, 'an admin session may read it too');
  });

  test('P12 /metrics counts in memory as events happen: a login shows at once, and no stored statistics are read', async () => {
    const scrape = async () => (await new AdminClient(ts.adminPort).get('/metrics', { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).body;
    const logins = (text: string) => Number(/^gatehouse_logins_total (\d+)$/m.exec(text)?.[1] ?? 0);
    const before = logins(await scrape());
    // Every stored point gone: the counters do not come from the database.
    const { statistics } = ts.server.ctx.storage;
    for (const r of ['minute', 'hour', 'day'] as const) await statistics.deletePointsBefore(r, new Date(Date.now() + 86_400_000));
    const c = await ts.user('metrics-user');
    await c.close();
    assert.equal(logins(await scrape()), before + 1);
  });

  test('P10 the transport audit log is filtered by JID, network and time, escaped, and downloadable as CSV (P21: each read is logged)', async () => {
    const repo = ts.server.ctx.storage.transports;
    const t0 = Date.UTC(2026, 0, 10, 12);
    await repo.appendAudit({ at: new Date(t0), userJid: 'carol@localhost', network: 'irc', account: 'carol_irc', server: 'irc.example.net', event: 'connected', reason: null });
    await repo.appendAudit({ at: new Date(t0 + 60_000), userJid: 'carol@localhost', network: 'irc', account: 'carol_irc', server: 'irc.example.net', event: 'disconnected', reason: '<script>alert(1)</script>' });
    await repo.appendAudit({ at: new Date(t0 + 120_000), userJid: 'dave@localhost', network: 'matrix', account: '@dave:example.org', server: 'example.org', event: 'auth-failed', reason: '=HYPERLINK("http://evil")' });
    const c = new AdminClient(ts.adminPort);
    await c.login('admin@localhost', ADMIN_PW);

    let mark = ts.logLines.length;
    const all = await c.get('/transports');
    assert.equal(all.status, 200);
    assert.ok(all.body.includes('carol@localhost') && all.body.includes('dave@localhost'));
    assert.ok(all.body.includes('&lt;script&gt;alert(1)&lt;/script&gt;') && !all.body.includes('<script>'), 'reasons are escaped');
    assert.ok(auditLines(ts, mark).some((l) => l.includes('transport connection log on the admin console (no filter)')));

    mark = ts.logLines.length;
    const carol = await c.get('/transports?jid=Carol%40LOCALHOST&network=irc');
    assert.ok(carol.body.includes('carol_irc') && !carol.body.includes('dave@localhost'), 'filtered by JID (normalised) and network');
    assert.ok(carol.body.includes('value="Carol@LOCALHOST"'), 'the filter is shown again');
    assert.ok(auditLines(ts, mark).some((l) => l.includes('user carol@localhost, network irc')));
    const window = await c.get('/transports?since=2026-01-10T12:00:30&until=2026-01-10T12:01:30');
    assert.ok(window.body.includes('disconnected') && !window.body.includes('>connected<') && !window.body.includes('dave@localhost'), 'time range (UTC)');
    const bad = await c.get('/transports?jid=%40%40&since=yesterday');
    assert.ok(bad.body.includes('Not a JID') && bad.body.includes('since: expected a time'));

    mark = ts.logLines.length;
    const csv = await c.get('/transports.csv?network=matrix');
    assert.equal(csv.status, 200);
    assert.match(String(csv.headers['content-type']), /^text\/csv; charset=utf-8/);
    assert.match(String(csv.headers['content-disposition']), /^attachment; filename="transport-audit-\d{8}-\d{6}\.csv"$/);
    const lines = csv.body.trimEnd().split('\r\n');
    assert.equal(lines[0], 'time,user_jid,network,account,server,event,reason');
    assert.equal(lines.length, 2);
    assert.equal(lines[1], `2026-01-10T12:02:00.000Z,dave@localhost,matrix,'@dave:example.org,example.org,auth-failed,"'=HYPERLINK(""http://evil"")"`);
    assert.ok(auditLines(ts, mark).some((l) => l.includes('downloaded as CSV') && l.includes('network matrix')));
    assert.equal((await c.get('/transports.csv?since=bogus')).status, 400);
  });

  test('P21 every read of audit data on the console leaves an audit log line naming the admin', async () => {
    const c = new AdminClient(ts.adminPort);
    await c.login('admin@localhost', ADMIN_PW);
    const reads: [string, string][] = [
      ['/sessions', 'live client sessions'],
      ['/blocks', 'failed logins and login blocks'],
      ['/transports', 'transport connection log on the admin console'],
      ['/transports.csv', 'transport connection log downloaded as CSV'],
    ];
    for (const [path, what] of reads) {
      const mark = ts.logLines.length;
      assert.equal((await c.get(path)).status, 200, path);
      const lines = auditLines(ts, mark);
      assert.equal(lines.length, 1, `${path}: one audit line`);
      assert.ok(lines[0]!.includes(what) && lines[0]!.includes('reader=xmpp:admin@localhost'), lines[0]);
    }
    // Anonymous pages are no audit reads.
    for (const path of ['/', '/statistics', '/policy', '/metrics']) {
      const mark = ts.logLines.length;
      assert.equal((await c.get(path)).status, 200, path);
      assert.equal(auditLines(ts, mark).length, 0, path);
    }
  });

  test('P22 the policy page lists the versions and tells whether the configuration needs an announcement', async () => {
    const c = new AdminClient(ts.adminPort);
    await c.login('admin@localhost', ADMIN_PW);
    const page = await c.get('/policy');
    assert.equal(page.status, 200);
    assert.ok(page.body.includes('The running configuration renders version 1, not the latest announced version 2.'));
    assert.ok(page.body.includes('retention.offlineMessages: 14 days → 30 days'));
    assert.ok(page.body.includes('<td>in force</td>'));
    assert.ok(/announced: takes effect \d{4}-\d{2}-\d{2} 00:00:00 UTC/.test(page.body));
    assert.ok(page.body.includes('Users are being told about version 2'));
    assert.ok(page.body.includes('Nothing in the configuration is held back.'), 'the configuration renders version 1: nothing to hold back');
  });

  test('forms from another origin, oversized bodies and other content types are refused', async () => {
    const c = new AdminClient(ts.adminPort);
    await c.login('admin@localhost', ADMIN_PW);
    await c.get('/blocks');
    assert.equal((await c.post('/blocks/lift-all', {}, { headers: { origin: 'https://evil.example' } })).status, 403);
    assert.equal((await c.post('/blocks/lift-all', {}, { headers: { 'sec-fetch-site': 'cross-site' } })).status, 403);
    assert.equal((await c.post('/blocks/lift-all', {}, { headers: { origin: 'null', 'sec-fetch-site': 'same-origin' } })).status, 303, 'Origin: null (no-referrer) with a valid token is fine');
    const big = await c.post('/blocks/lift-all', { padding: 'x'.repeat(20_000) });
    assert.equal(big.status, 413);
    const json = await c.request('POST', '/blocks/lift-all', { body: JSON.stringify({ csrf: c.csrf }), headers: { 'content-type': 'application/json' } });
    assert.equal(json.status, 415);
    const login = await new AdminClient(ts.adminPort).post('/login', { padding: 'x'.repeat(20_000) });
    assert.equal(login.status, 413);
  });
});

describe('console logins and the failed-login guard', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({
      modules: modulesWith(createAdminHttpModule()),
      config: {
        admins: ['admin@localhost'],
        listen: { admin: [{ host: '127.0.0.1', port: 0 }] },
        // Loopback is not trusted here, so the test's own address can be blocked.
        loginGuard: { trustedProxies: [], blockAfter: 3, delayAfter: 100 },
      },
      logLevel: 'info',
    });
    const admin = await ts.user('admin', ADMIN_PW);
    await admin.close();
  });
  after(() => ts.stop());

  test('P7 failed console logins block the address; the blocks page lists the block and lifting it lets the admin in again', async () => {
    const admin = new AdminClient(ts.adminPort);
    assert.equal((await admin.login('admin@localhost', ADMIN_PW)).status, 303);

    const attacker = new AdminClient(ts.adminPort);
    for (let i = 0; i < 3; i++) assert.equal((await attacker.login('admin@localhost', `guess-${i}`)).status, 403);
    await until(async () => (await ts.server.ctx.storage.privacyLogs.listBlocks(new Date())).length > 0, 'the block to be stored');
    const refused = await new AdminClient(ts.adminPort).login('admin@localhost', ADMIN_PW);
    assert.equal(refused.status, 429, 'even the right password is refused while the address is blocked');
    assert.ok(refused.body.includes('Too many failed attempts from your address'));

    const mark = ts.logLines.length;
    const page = await admin.get('/blocks');
    assert.equal(page.status, 200);
    assert.ok(page.body.includes('<td class="mono">127.0.0.1</td>'), 'the blocked address is listed');
    assert.ok(page.body.includes('>HTTP<'), 'the failed console logins are listed with mechanism HTTP');
    assert.ok(auditLines(ts, mark).some((l) => l.includes('failed logins and login blocks')), 'P21 audit line');

    const lifted = await admin.post('/blocks/lift', { kind: 'ip', subject: '127.0.0.1' });
    assert.equal(lifted.status, 303);
    assert.equal(lifted.headers.location, '/blocks');
    const after = await admin.get('/blocks');
    assert.ok(after.body.includes('Lifted the block of 127.0.0.1.'));
    assert.ok(after.body.includes('<p>No blocks.</p>'));
    assert.deepEqual(await ts.server.ctx.storage.privacyLogs.listBlocks(new Date()), []);
    assert.equal((await new AdminClient(ts.adminPort).login('admin@localhost', ADMIN_PW)).status, 303, 'the admin gets in again');
    assert.ok(ts.logLines.some((l) => l.includes('admin lifted a login block') && l.includes('admin=admin@localhost')));
  });
});

describe('admin listener TLS and addresses', () => {
  test('a non-loopback admin listener without TLS refuses to start, with a clear error', async () => {
    await assert.rejects(
      startTestServer({ modules: modulesWith(createAdminHttpModule({ tls: 'off' })), config: { listen: { admin: [{ host: '0.0.0.0', port: 0 }] } } }),
      /listen\.admin: refusing to serve the admin interface on 0\.0\.0\.0 without TLS/,
    );
    await assert.rejects(
      startTestServer({
        modules: modulesWith(createAdminHttpModule({ loadTls: async () => Promise.reject(new Error('no certificate')) })),
        config: { listen: { admin: [{ host: '0.0.0.0', port: 0 }] } },
      }),
      /without TLS \(no certificate\)/,
    );
  });

  test('on loopback without TLS it serves plain HTTP, with cookies that are not marked Secure', async () => {
    const ts = await startTestServer({
      modules: modulesWith(createAdminHttpModule({ tls: 'off' })),
      config: { admins: ['admin@localhost'], listen: { admin: [{ host: '127.0.0.1', port: 0 }] } },
      logLevel: 'info',
    });
    try {
      const admin = await ts.user('admin', ADMIN_PW);
      await admin.close();
      const c = new AdminClient(ts.adminPort, false);
      assert.equal((await c.get('/privacy')).status, 200);
      const res = await c.login('admin@localhost', ADMIN_PW);
      assert.equal(res.status, 303);
      const cookie = res.setCookies.find((s) => s.startsWith('gatehouse-admin='))!;
      assert.match(cookie, /HttpOnly; SameSite=Strict$/);
      assert.equal((await c.get('/sessions')).status, 200);
    } finally {
      await ts.stop();
    }
  });

  test('without listen.admin there is no HTTP listener at all', async () => {
    const ts = await startTestServer({ modules: modulesWith(createAdminHttpModule()) });
    try {
      assert.equal(ts.adminPort, 0);
    } finally {
      await ts.stop();
    }
  });
});

describe('admin console units', () => {
  test('sessions end after 30 minutes without a request, and after 12 hours in any case', () => {
    let now = 0;
    const sessions = new AdminSessions(() => now);
    const { token, session } = sessions.create('admin@localhost', '127.0.0.1');
    assert.equal(sessions.get(token), session);
    now += 29 * 60_000;
    assert.equal(sessions.get(token), session, 'used within 30 minutes');
    now += 29 * 60_000;
    assert.equal(sessions.get(token), session, 'idle time counts from the last request');
    now += 30 * 60_000;
    assert.equal(sessions.get(token), null, 'idle for 30 minutes: gone');
    const b = sessions.create('admin@localhost', '127.0.0.1');
    for (let i = 0; i < 12 * 4; i++) {
      now += 15 * 60_000;
      if (i < 12 * 4 - 1) assert.ok(sessions.get(b.token), `active at ${i}`);
    }
    assert.equal(sessions.get(b.token), null, 'at most 12 hours');
    assert.equal(sessions.get('not a token'), null);
  });

  test('redirect targets stay on this site; loopback addresses are recognised', () => {
    assert.equal(safeNext('/sessions?x=1'), '/sessions?x=1');
    for (const bad of ['//evil.example/', 'https://evil.example/', '/\\evil', '', null, '/login', 'sessions']) assert.equal(safeNext(bad), '/', String(bad));
    assert.ok(isLoopback('127.0.0.1') && isLoopback('::1') && isLoopback('localhost') && isLoopback('127.1.2.3'));
    assert.ok(!isLoopback('0.0.0.0') && !isLoopback('::') && !isLoopback('192.168.1.1'));
  });

  test('CSV cells that a spreadsheet would run as formulas are defused; times parse as UTC', () => {
    assert.equal(csvField('=1+1'), `'=1+1`);
    assert.equal(csvField('a,b'), '"a,b"');
    assert.equal(csvField('say "hi"'), '"say ""hi"""');
    assert.equal(csvField(null), '');
    const now = new Date(Date.UTC(2026, 0, 2));
    assert.equal(parseTime('2026-01-01', now)!.toISOString(), '2026-01-01T00:00:00.000Z');
    assert.equal(parseTime('2026-01-01T10:30', now)!.toISOString(), '2026-01-01T10:30:00.000Z');
    assert.equal(parseTime('2026-01-01T10:30+02:00', now)!.toISOString(), '2026-01-01T08:30:00.000Z');
    assert.equal(parseTime('2h', now)!.toISOString(), '2026-01-01T22:00:00.000Z');
    assert.equal(parseTime('yesterday', now), null);
  });
});
