/**
 * The admin console in a real browser: headless Chromium (Debian package `chromium`) logs in with
 * the form and opens the statistics page; the charts must render (P12) with the page's Content
 * Security Policy in force, and a screenshot is saved to a temporary directory for a look.
 *
 * Chromium is driven over the DevTools protocol (test/helpers/cdp-browser.ts). The test is skipped, saying why, when /usr/bin/chromium is not installed (a failure
 * when GATEHOUSE_TEST_REQUIRE names chromium).
 * GATEHOUSE_SCREENSHOTS=DIR keeps the screenshots (statistics, sessions, overview, blocks,
 * transports, policy, datenschutz) in DIR.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, modulesWith } from '../helpers/server.js';
import { createAdminHttpModule } from '../../server/admin/http.js';
import { createStatisticsModule } from '../../server/modules/statistics/statistics.js';
import { createSessionStatsModule } from '../../server/modules/statistics/session-stats.js';
import { skipWithout } from '../helpers/requirements.js';
import { Browser, evaluate } from '../helpers/cdp-browser.js';

const ADMIN_PW = 'browser-test-password';

const skip = skipWithout('chromium');

test('P12 in headless Chromium an admin logs in with the form and the statistics charts render under the CSP', { skip, timeout: 90_000 }, async (t) => {
  const ts = await startTestServer({
    modules: modulesWith(createAdminHttpModule(), createStatisticsModule({ autoTick: false }), createSessionStatsModule({ autoTick: false })),
    config: { admins: ['admin@localhost'], listen: { admin: [{ host: '127.0.0.1', port: 0 }] } },
    logLevel: 'info',
  });
  const profile = mkdtempSync(join(tmpdir(), 'gatehouse-chromium-'));
  // Screenshots go to a temporary directory that is removed afterwards, unless GATEHOUSE_SCREENSHOTS
  // names a directory to keep them in (to look at them).
  const keep = process.env.GATEHOUSE_SCREENSHOTS;
  if (keep) mkdirSync(keep, { recursive: true });
  const shots = keep ?? mkdtempSync(join(tmpdir(), 'gatehouse-screenshot-'));
  let browser: Browser | null = null;
  try {
    const admin = await ts.user('admin', ADMIN_PW);
    await admin.close();
    // Three hours of minute points, so the charts have lines to draw.
    const now = Date.now();
    const points = [];
    for (let i = 180; i >= 1; i--) {
      const bucketStart = new Date(Math.floor((now - i * 60_000) / 60_000) * 60_000);
      const wave = Math.round(20 + 15 * Math.sin(i / 20));
      points.push({ series: 'sessions.online', resolution: 'minute' as const, bucketStart, value: wave, mode: 'set' as const });
      points.push({ series: 'sessions.online.peak', resolution: 'minute' as const, bucketStart, value: wave + 4, mode: 'set' as const });
      points.push({ series: 'logins', resolution: 'minute' as const, bucketStart, value: i % 7, mode: 'set' as const });
      points.push({ series: 'stanzas.routed{kind=message}', resolution: 'minute' as const, bucketStart, value: 40 + (i % 13) * 3, mode: 'set' as const });
    }
    await ts.server.ctx.storage.statistics.writePoints(points);

    browser = Browser.launch(profile);
    const { targetId } = await browser.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await browser.send('Target.attachToTarget', { targetId, flatten: true });
    await browser.send('Page.enable', {}, sessionId);
    await browser.send('Runtime.enable', {}, sessionId);
    await browser.send('Log.enable', {}, sessionId);
    await browser.send('Emulation.setDeviceMetricsOverride', { width: 1280, height: 900, deviceScaleFactor: 1, mobile: false }, sessionId);

    const base = `https://127.0.0.1:${ts.adminPort}`;
    let loaded = browser.event('Page.loadEventFired', sessionId);
    await browser.send('Page.navigate', { url: `${base}/statistics?resolution=minute` }, sessionId);
    await loaded;
    assert.equal(await evaluate<string>(browser, sessionId, 'location.pathname'), '/login', 'redirected to the login form');

    loaded = browser.event('Page.loadEventFired', sessionId);
    await evaluate(
      browser,
      sessionId,
      `document.querySelector('#username').value = 'admin@localhost';
       document.querySelector('#password').value = ${JSON.stringify(ADMIN_PW)};
       document.querySelector('form button[type=submit]').click(); true`,
    );
    await loaded;
    assert.equal(await evaluate<string>(browser, sessionId, 'location.pathname + location.search'), '/statistics?resolution=minute', 'after the login, the page asked for');
    assert.equal(await evaluate<string>(browser, sessionId, 'document.querySelector("h1").textContent'), 'Statistics');

    const charts = await evaluate<{ w: number; h: number; lines: number }[]>(
      browser,
      sessionId,
      `[...document.querySelectorAll('figure.chart svg')].map((s) => ({ w: s.getBoundingClientRect().width, h: s.getBoundingClientRect().height, lines: s.querySelectorAll('polyline.series').length }))`,
    );
    assert.ok(charts.length >= 3, `charts on the page: ${JSON.stringify(charts)}`);
    for (const c of charts) assert.ok(c.w > 300 && c.h > 150, `a chart is laid out: ${JSON.stringify(c)}`);
    const sessionsChart = charts[0]!;
    assert.equal(sessionsChart.lines, 2, 'sessions online and peak');
    const drawn = await evaluate<number>(browser, sessionId, `document.querySelector('polyline.series').getAttribute('points').split(' ').length`);
    assert.ok(drawn >= 100, `the sessions line has its points: ${drawn}`);
    const styled = await evaluate<string>(browser, sessionId, `getComputedStyle(document.querySelector('header.top')).backgroundColor`);
    assert.equal(styled, 'rgb(22, 38, 61)', 'the inline CSS applies under the CSP');
    const cspErrors = browser.events.filter((e) => e.method === 'Log.entryAdded' && /Content Security Policy/i.test(String(e.params?.entry?.text)));
    assert.deepEqual(cspErrors, [], 'no CSP violation');

    const shot = await browser.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true }, sessionId);
    const file = join(shots, 'statistics.png');
    writeFileSync(file, Buffer.from(shot.data, 'base64'));
    assert.ok(Buffer.from(shot.data, 'base64').length > 10_000, 'a real screenshot');
    t.diagnostic(`screenshot: ${file}`);

    // P6: the sessions page lists a connected client; the Disconnect button (a POST form with the
    // CSRF token, as the browser sends it) ends its stream.
    const alice = await ts.user('alice', 'alice-pw');
    loaded = browser.event('Page.loadEventFired', sessionId);
    await browser.send('Page.navigate', { url: `${base}/sessions` }, sessionId);
    await loaded;
    assert.equal(await evaluate<string>(browser, sessionId, 'document.querySelector("h1").textContent'), 'Sessions');
    assert.ok((await evaluate<string>(browser, sessionId, 'document.querySelector("tbody").textContent')).includes(alice.jid));
    const sessionsShot = await browser.send('Page.captureScreenshot', { format: 'png' }, sessionId);
    writeFileSync(join(shots, 'sessions.png'), Buffer.from(sessionsShot.data, 'base64'));
    loaded = browser.event('Page.loadEventFired', sessionId);
    await evaluate(browser, sessionId, `document.querySelector('form[action="/sessions/disconnect"] button').click(); true`);
    await loaded;
    assert.ok(alice.streamError === 'policy-violation' || (await alice.expect('stream:error')), 'the client got its stream error');
    assert.equal(await evaluate<string>(browser, sessionId, 'document.querySelector(".flash").textContent'), `Disconnected ${alice.jid}.`);

    // Every other console page renders, too.
    await ts.server.ctx.storage.transports.appendAudit({ at: new Date(), userJid: 'alice@localhost', network: 'irc', account: 'alice_', server: 'irc.example.net', event: 'connected', reason: null });
    await ts.server.ctx.storage.privacyLogs.putBlock({ kind: 'ip', subject: '203.0.113.9', createdAt: new Date(), expiresAt: new Date(Date.now() + 600_000), failures: 10 });
    for (const [path, h1] of [['/', 'Overview'], ['/blocks', 'Failed logins & blocks'], ['/transports', 'Transport audit'], ['/policy', 'Privacy policy']] as const) {
      loaded = browser.event('Page.loadEventFired', sessionId);
      await browser.send('Page.navigate', { url: `${base}${path}` }, sessionId);
      await loaded;
      assert.equal(await evaluate<string>(browser, sessionId, 'document.querySelector("h1").textContent'), h1, path);
      const shotOf = await browser.send('Page.captureScreenshot', { format: 'png' }, sessionId);
      writeFileSync(join(shots, `${path === '/' ? 'overview' : path.slice(1)}.png`), Buffer.from(shotOf.data, 'base64'));
    }

    // The public policy page.
    loaded = browser.event('Page.loadEventFired', sessionId);
    await browser.send('Page.navigate', { url: `${base}/datenschutz` }, sessionId);
    await loaded;
    assert.match(await evaluate<string>(browser, sessionId, 'document.querySelector("h1").textContent'), /^Datenschutzerklärung für localhost$/);
    const policyShot = await browser.send('Page.captureScreenshot', { format: 'png' }, sessionId);
    writeFileSync(join(shots, 'datenschutz.png'), Buffer.from(policyShot.data, 'base64'));
    const cspLater = browser.events.filter((e) => e.method === 'Log.entryAdded' && /Content Security Policy/i.test(String(e.params?.entry?.text)));
    assert.deepEqual(cspLater, [], 'no CSP violation on any page');
  } finally {
    await browser?.close();
    await ts.stop();
    rmSync(profile, { recursive: true, force: true });
    if (!keep) rmSync(shots, { recursive: true, force: true });
  }
});
