/**
 * File links said on IRC, re-hosted on the XMPP server's upload service (issue #18), end to end on
 * Gatehouse with its HTTPS upload service, a real ngIRCd and a local HTTPS origin:
 * - a channel link to an image arrives as the upload URL (body and OOB) with the same bytes; two
 *   XMPP users in the channel get the same URL and the origin is asked once; a private message
 *   with the same link gets it too;
 * - a file over media.maxSize stays the link, with a notice; a page (text/html) stays the link;
 * - the guard (link-guard.ts) against the same origin without media.links.allowPrivateAddresses:
 *   127.0.0.1, localhost, ::1 and ::ffff:127.0.0.1 are never connected to, a redirect to a private
 *   address is refused; the address check on its own for IPv4 and IPv6 special-use ranges.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpsServer, request, type Server } from 'node:https';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { Logger } from '../../shared/logger.js';
import { startNgircd, type Ircd } from '../helpers/ircd.js';
import { skipWithout } from '../helpers/requirements.js';
import { RawIrcClient } from '../helpers/irc-client.js';
import { startUploadServer, type UploadServer } from '../helpers/upload-server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { IrcAdapter } from '../../transports/irc/index.js';
import { startTransport, type RunningTransport } from '../../transports/kit/gateway.js';
import { guardedGet, isPublicAddress, LinkRefusedError } from '../../transports/kit/link-guard.js';
import { ExpiringCache } from '../../transports/kit/media.js';
import { GW, SECRET, serverModules, transportConfig } from './kit-harness.js';

const MUC = 'http://jabber.org/protocol/muc';
const LIMIT = 64 * 1024;
const STRICT = 'strict.localhost';

interface Origin {
  port: number;
  hits: Map<string, number>;
  server: Server;
}

/** The HTTPS server whose files people link to on IRC (a certificate for localhost from the test CA). */
async function startOrigin(cert: { cert: string; key: string }, files: Record<string, { type: string; body: Buffer } | { redirect: (port: number) => string }>): Promise<Origin> {
  const hits = new Map<string, number>();
  const server = createHttpsServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key) }, (req, res) => {
    const p = (req.url ?? '').split('?')[0]!;
    hits.set(p, (hits.get(p) ?? 0) + 1);
    const f = files[p];
    if (!f) return void res.writeHead(404).end();
    if ('redirect' in f) return void res.writeHead(302, { Location: f.redirect((server.address() as AddressInfo).port) }).end();
    res.writeHead(200, { 'Content-Type': f.type, 'Content-Length': f.body.length }).end(f.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, hits, server };
}

function fetchBytes(url: string, ca: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    request(url, { ca }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
    })
      .on('error', reject)
      .end();
  });
}

function oobUrls(el: Element): string[] {
  return el.getChildren('x', NS.oob).map((o) => o.getChildText('url') ?? '');
}

const picture = randomBytes(3000);
const big = randomBytes(LIMIT + 1);

describe('IRC file links re-hosted on the upload service (Gatehouse, ngIRCd, local HTTPS origin)', { skip: skipWithout('ngircd') }, () => {
  let web: UploadServer;
  let ircd: Ircd;
  let origin: Origin;
  let transport: RunningTransport;
  /** The same gateway as operators run it: media.links.allowPrivateAddresses at its default (false). */
  let strict: RunningTransport;
  let dir: string;
  const irc: RawIrcClient[] = [];
  const room = (chan: string, gw = GW) => `${chan}%127.0.0.1@${gw}`;

  async function joinAs(name: string, chan: string, nick: string, gw = GW): Promise<TestClient> {
    const c = await web.ts.user(name);
    c.send(x('presence'));
    c.send(x('presence', { to: `${room(chan, gw)}/${nick}` }, x('x', { xmlns: MUC })));
    await c.expect((el) => el.name === 'message' && el.attrs.from?.startsWith(room(chan, gw)) === true && !!el.getChild('subject'), 15000);
    return c;
  }

  before(async () => {
    web = await startUploadServer({
      modules: serverModules(),
      config: { components: [{ domain: GW, secret: SECRET }, { domain: STRICT, secret: SECRET }], listen: { components: [{ host: '127.0.0.1', port: 0 }] }, upload: { componentQuota: '1MiB' } },
    });
    origin = await startOrigin(web.ca.issue('localhost'), {
      '/pic.png': { type: 'image/png', body: picture },
      '/big.png': { type: 'image/png', body: big },
      '/page.png': { type: 'text/html; charset=utf-8', body: Buffer.from('<html>not a picture</html>') },
    });
    ircd = await startNgircd({ tls: true });
    dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-irc-links-'));
    transport = await startTransport({
      config: transportConfig(web.ts, dir, {
        loginTimeout: '10s',
        // The origin is on 127.0.0.1: only a test may allow that.
        media: { caFile: web.ca.caFile, maxSize: LIMIT, timeout: '10s', links: { allowPrivateAddresses: true } },
      }),
      adapter: new IrcAdapter({
        name: 'IRC gateway',
        ca: ircd.certPem!,
        flood: { burst: 10, intervalMs: 50 },
        commandTimeoutMs: 5000,
        joinTimeoutMs: 5000,
        serverDefaults: { '127.0.0.1': { tlsPorts: String(ircd.tlsPort) } },
      }),
      log: new Logger({ level: 'error', format: 'text', sink: () => {} }, 'transport-irc'),
      env: {},
    });
    const strictDir = path.join(dir, 'strict');
    strict = await startTransport({
      config: transportConfig(web.ts, strictDir, {
        component: { domain: STRICT, secret: SECRET, host: '127.0.0.1', port: web.ts.componentPort },
        loginTimeout: '10s',
        media: { caFile: web.ca.caFile, maxSize: LIMIT, timeout: '10s' },
      }),
      adapter: new IrcAdapter({ name: 'IRC gateway', ca: ircd.certPem!, flood: { burst: 10, intervalMs: 50 }, serverDefaults: { '127.0.0.1': { tlsPorts: String(ircd.tlsPort) } } }),
      log: new Logger({ level: 'error', format: 'text', sink: () => {} }, 'transport-irc-strict'),
      env: {},
    });
  });

  test('without media.links.allowPrivateAddresses a link to 127.0.0.1 (by name) is not fetched and stays the link', async () => {
    const bob = await RawIrcClient.connect({ port: ircd.port, nick: 'ssrfbob' });
    irc.push(bob);
    await bob.join('#ssrf');
    const dora = await joinAs('ssrf-dora', '#ssrf', 'dora_s', STRICT);
    const link = `https://localhost:${origin.port}/secret.png`;
    bob.send(`PRIVMSG #ssrf :${link}`);
    const m = await dora.expect((el) => el.name === 'message' && el.attrs.type === 'groupchat' && el.attrs.from === `${room('#ssrf', STRICT)}/ssrfbob`, 15000);
    assert.equal(m.getChildText('body'), link);
    assert.deepEqual(oobUrls(m), []);
    assert.equal(origin.hits.get('/secret.png'), undefined, 'the origin saw no request');
    await dora.close();
  });

  after(async () => {
    for (const c of irc) c.destroy();
    await transport?.stop().catch(() => undefined);
    await strict?.stop().catch(() => undefined);
    await web?.stop();
    await ircd?.stop();
    origin?.server.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a link to an image said in a channel reaches two XMPP users as the same upload URL, fetched from the origin once; a PM with it too', async () => {
    const bob = await RawIrcClient.connect({ port: ircd.port, nick: 'linkbob' });
    irc.push(bob);
    await bob.join('#links');
    const dora = await joinAs('links-dora', '#links', 'dora_l');
    const erin = await joinAs('links-erin', '#links', 'erin_l');
    const link = `https://localhost:${origin.port}/pic.png`;
    bob.send(`PRIVMSG #links :look at this (${link})`);
    const got = await Promise.all(
      [dora, erin].map((c) => c.expect((el) => el.name === 'message' && el.attrs.type === 'groupchat' && el.attrs.from === `${room('#links')}/linkbob`, 15000)),
    );
    const urls = got.map((m) => {
      const body = m.getChildText('body')!;
      const url = /https:\/\/\S+?(?=\))/.exec(body)?.[0];
      assert.ok(url && url.startsWith(`https://localhost:${web.port}/`), `the upload URL in place of the link: ${body}`);
      assert.ok(!body.includes(link), 'the origin link is replaced');
      assert.deepEqual(oobUrls(m), [url], 'and given as XEP-0066 OOB');
      return url;
    });
    assert.equal(urls[0], urls[1], 'both users get the same copy');
    assert.deepEqual(await fetchBytes(urls[0]!, web.caPem), picture, 'with the same bytes');
    assert.equal(origin.hits.get('/pic.png'), 1, 'the origin was asked once');

    bob.send(`PRIVMSG dora_l :${link}`);
    const pm = await dora.expect((el) => el.name === 'message' && el.attrs.type === 'chat' && el.attrs.from?.startsWith('linkbob%127.0.0.1@') === true, 15000);
    assert.equal(pm.getChildText('body'), urls[0], 'a private message with the link gets the same upload URL');
    assert.deepEqual(oobUrls(pm), [urls[0]]);
    assert.equal(origin.hits.get('/pic.png'), 1, 'still fetched once');
    await dora.close();
    await erin.close();
  });

  test('a file over media.maxSize stays the link, with a notice; a page that is not a file kind stays the link', async () => {
    const bob = await RawIrcClient.connect({ port: ircd.port, nick: 'bigbob' });
    irc.push(bob);
    await bob.join('#big');
    const dora = await joinAs('big-dora', '#big', 'dora_b');
    const bigLink = `https://localhost:${origin.port}/big.png`;
    bob.send(`PRIVMSG #big :${bigLink}`);
    const m = await dora.expect((el) => el.name === 'message' && el.attrs.type === 'groupchat' && el.attrs.from === `${room('#big')}/bigbob`, 15000);
    const body = m.getChildText('body')!;
    assert.ok(body.startsWith(bigLink), body);
    assert.match(body, /too large for the gateway to copy \(at most 64 KiB\)/);
    assert.deepEqual(oobUrls(m), []);
    const pageLink = `https://localhost:${origin.port}/page.png`;
    bob.send(`PRIVMSG #big :${pageLink}`);
    const p = await dora.expect((el) => el.name === 'message' && el.attrs.type === 'groupchat' && el.attrs.from === `${room('#big')}/bigbob`, 15000);
    assert.equal(p.getChildText('body'), pageLink, 'a text/html answer is not re-hosted');
    assert.deepEqual(oobUrls(p), []);
    await dora.close();
  });

  test('without allowPrivateAddresses the guard connects to no loopback address, by name or literal, IPv4 or IPv6', async () => {
    const before = [...origin.hits.values()].reduce((a, b) => a + b, 0);
    const opts = { allowHttp: false, allowPrivateAddresses: false, ca: readFileSync(web.ca.caFile) };
    for (const url of [`https://localhost:${origin.port}/pic.png`, `https://127.0.0.1:${origin.port}/pic.png`, `https://[::1]:${origin.port}/pic.png`, `https://[::ffff:127.0.0.1]:${origin.port}/pic.png`, `https://[::ffff:7f00:1]:${origin.port}/pic.png`]) {
      await assert.rejects(guardedGet(url, opts, new AbortController().signal), LinkRefusedError, url);
    }
    await assert.rejects(guardedGet(`http://localhost:${origin.port}/pic.png`, { ...opts, allowPrivateAddresses: true }, new AbortController().signal), /http links are not fetched/);
    assert.equal([...origin.hits.values()].reduce((a, b) => a + b, 0), before, 'the origin saw no request');
  });

  test('a redirect to a private address is refused (each hop is checked again)', async () => {
    const redirecting = await startOrigin(web.ca.issue('localhost'), { '/go.png': { redirect: (port) => `https://127.0.0.2:${port}/pic.png` } });
    try {
      // Here only localhost's own addresses count as "public", as a real public host would.
      const opts = { allowHttp: false, allowPrivateAddresses: false, ca: readFileSync(web.ca.caFile), allowAddress: (ip: string) => ip === '127.0.0.1' || ip === '::1' };
      await assert.rejects(guardedGet(`https://localhost:${redirecting.port}/go.png`, opts, new AbortController().signal), /private or special-use address/);
      assert.equal(redirecting.hits.get('/go.png'), 1, 'the first hop was fetched');
      assert.equal(redirecting.hits.get('/pic.png'), undefined, 'the redirect target never');
    } finally {
      redirecting.server.close();
    }
  });
});

test('the address check: public unicast only, IPv4 and IPv6, IPv4 inside IPv6 included', () => {
  for (const ok of ['93.184.216.34', '1.1.1.1', '2606:4700:4700::1111', '2a00:1450:4001:80b::200e', '::ffff:93.184.216.34', '2002:5db8:d822::1']) assert.equal(isPublicAddress(ok), true, ok);
  for (const no of [
    '127.0.0.1', '127.8.9.1', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '100.127.255.254',
    '0.0.0.0', '224.0.0.1', '239.255.255.250', '255.255.255.255', '240.0.0.1', '192.0.2.1', '198.18.0.1', '203.0.113.9', '192.0.0.8',
    '::', '::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1', '::ffff:169.254.169.254', '::127.0.0.1', '64:ff9b::a00:1', '64:ff9b::7f00:1',
    '2002:7f00:1::1', '2002:a00:1::', 'fc00::1', 'fd12:3456::1', 'fe80::1', 'fe80::1%eth0', 'fec0::1', 'ff02::1', '2001:db8::1', '2001::1', '100::1',
    '3fff::1', 'not an address', '',
  ])
    assert.equal(isPublicAddress(no), false, no);
});

test('the link cache is bounded by count and by age (its entries must not outlive the uploaded copies)', () => {
  const cache = new ExpiringCache<string>(2);
  cache.set('a', 'A', 0, 1000);
  cache.set('b', 'B', 0, 1000);
  assert.equal(cache.get('a', 999), 'A');
  assert.equal(cache.get('a', 1000), undefined, 'gone at its age');
  cache.set('a', 'A', 0, 1000);
  cache.set('c', 'C', 0, 1000);
  assert.equal(cache.size, 2);
  assert.equal(cache.get('b', 1), undefined, 'the oldest went when a third came');
  assert.equal(cache.get('c', 1), 'C');
  cache.shorten('c', 'C', 10);
  assert.equal(cache.get('c', 10), undefined, 'a failure is tried again sooner');
  cache.shorten('a', 'other', 5);
  assert.equal(cache.get('a', 6), 'A', 'shorten leaves a newer value alone');
  const none = new ExpiringCache<string>(0);
  none.set('a', 'A', 0, 1000);
  assert.equal(none.get('a', 1), undefined, 'cacheSize 0 keeps nothing');
});
