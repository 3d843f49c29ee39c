/**
 * The HTTPS service and client streams over WebSocket (RFC 7395) on a real server: xmpp.js logs in
 * over wss and talks to a TCP client, stream management resumes on a new WebSocket, bad frames get
 * stream errors, XEP-0156 host-meta in both forms, 404/405 and the security headers, and the
 * per-address cap of the HTTPS listener.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { WebSocket } from 'ws';
import { startTestServer, withTestServer, type TestServer } from '../helpers/server.js';
import { WsTestClient } from '../helpers/websocket-client.js';
import { httpsListeners } from '../../server/http/module.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { declareNamespaces } from '../../server/streams/websocket.js';
import { createTestCa } from '../helpers/test-ca.js';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';

const NS_SM = 'urn:xmpp:sm:3';
const HTTPS = { https: [{ host: '127.0.0.1', port: 0 }] };

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** `promise`, or a rejection naming `what` after 15 s. */
function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 15_000)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function get(port: number, path: string, opts: { host?: string; method?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: opts.method ?? 'GET', rejectUnauthorized: false, servername: 'localhost', headers: { Host: opts.host ?? `localhost:${port}` } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('HTTPS service with WebSocket streams', () => {
  let ts: TestServer;
  let port: number;

  before(async () => {
    ts = await startTestServer({ config: { listen: HTTPS } });
    port = httpsListeners(ts.server.ctx)[0]!.port;
  });
  after(async () => {
    await ts.stop();
  });

  test('xmpp.js logs in over wss, exchanges messages with a TCP client, and resumes its session on a new WebSocket', async () => {
    const bob = await ts.user('bob', undefined, 'tcp');
    const reg = await ts.client();
    assert.equal((await reg.register('alice', 'alice-password')).attrs.type, 'result');
    await reg.close();

    // Node 20 has no global WebSocket, which @xmpp/websocket uses: the ws package's, trusting the test certificate.
    (globalThis as any).WebSocket = class extends WebSocket {
      constructor(url: string, protocols: string[]) {
        super(url, protocols, { rejectUnauthorized: false });
      }
    };
    const { client, xml } = await import('@xmpp/client');
    const alice = client({ service: `wss://localhost:${port}/xmpp-websocket`, domain: 'localhost', username: 'alice', password: 'alice-password', resource: 'web' });
    alice.on('error', () => {});
    const inbox: any[] = [];
    let notify: (() => void) | null = null;
    alice.on('stanza', (s: any) => {
      inbox.push(s);
      notify?.();
    });
    const next = (match: (s: any) => boolean): Promise<any> => within(waitFor(match), 'a stanza for xmpp.js');
    const waitFor = async (match: (s: any) => boolean): Promise<any> => {
      for (;;) {
        const i = inbox.findIndex(match);
        if (i >= 0) return inbox.splice(i, 1)[0];
        await new Promise<void>((r) => (notify = r));
      }
    };
    try {
      const jid = await alice.start();
      assert.equal(String(jid), 'alice@localhost/web');
      await alice.send(xml('message', { to: 'bob@localhost/tcp', type: 'chat' }, xml('body', {}, 'hello from the web')));
      const got = await bob.expect((el) => el.name === 'message' && el.getChildText('body') === 'hello from the web');
      assert.equal(got.attrs.from, 'alice@localhost/web');
      bob.send(x('message', { to: 'alice@localhost/web', type: 'chat' }, x('body', {}, 'hello from TCP')));
      const reply = await next((s) => s.is('message') && s.getChildText('body') === 'hello from TCP');
      assert.match(reply.attrs.from, /^bob@localhost\//);

      // Stream management: xmpp.js enabled it after binding (answered before this ping's result).
      await alice.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: NS.ping })));
      assert.ok(alice.streamManagement.id, 'stream management is enabled with resumption');
      const previd = alice.streamManagement.id;
      // The WebSocket breaks; xmpp.js reconnects on a new one and resumes.
      const resumed = new Promise<void>((resolve) => alice.streamManagement.once('resumed', resolve));
      alice.socket.socket.terminate();
      bob.send(x('message', { to: 'alice@localhost/web', type: 'chat' }, x('body', {}, 'while you were reconnecting')));
      await within(resumed, 'xmpp.js resuming its session');
      assert.equal(alice.streamManagement.id, previd, 'the same session');
      await next((s) => s.is('message') && s.getChildText('body') === 'while you were reconnecting');
      assert.equal(ts.server.ctx.sessions.ofAccount('alice@localhost').length, 1);
    } finally {
      await alice.stop().catch(() => {});
      delete (globalThis as any).WebSocket;
    }
  });

  test('stream features: SASL without STARTTLS, channel binding of the HTTPS connection, registration', async () => {
    const c = await WsTestClient.connect(port);
    const features = await c.open();
    assert.equal(features.getChild('starttls', NS.tls), undefined, 'no STARTTLS inside HTTPS');
    const mechs = features.getChild('mechanisms', NS.sasl)!.elements.map((m) => m.text());
    assert.ok(mechs.includes('SCRAM-SHA-256') && mechs.includes('PLAIN'), mechs.join(' '));
    assert.ok(mechs.includes('SCRAM-SHA-256-PLUS'), 'the TLS connection of the WebSocket is bound');
    assert.ok(features.getChild('register', 'http://jabber.org/features/iq-register'), 'in-band registration as on TCP');
    c.destroy();
  });

  test('in-band registration, a failed login seen by the login guard with the client address, then a login', async () => {
    const failures: { ip: string; username: string | null }[] = [];
    const off = ts.server.ctx.hooks.on('auth/failed', (e) => void failures.push({ ip: e.ip, username: e.username }));
    try {
      const c = await WsTestClient.connect(port);
      await c.open();
      c.send(x('iq', { xmlns: NS.client, type: 'set', id: 'reg' }, x('query', { xmlns: 'jabber:iq:register' }, x('username', {}, 'gina'), x('password', {}, 'gina-password'))));
      assert.equal((await c.expect((el) => el.attrs.id === 'reg')).attrs.type, 'result');
      await assert.rejects(c.authenticate('gina', 'wrong password', 'SCRAM-SHA-256'), /not-authorized/);
      assert.deepEqual(failures, [{ ip: '127.0.0.1', username: 'gina' }]);
      await c.authenticate('gina', 'gina-password', 'SCRAM-SHA-256');
      assert.match(await c.bind(), /^gina@localhost\//);
      c.destroy();
    } finally {
      off();
    }
  });

  test('SCRAM-SHA-256-PLUS binds to the TLS connection the WebSocket runs in (tls-exporter)', async () => {
    await ts.user('erin').then((c) => c.close());
    const c = await WsTestClient.connect(port);
    assert.equal(await c.login('erin', 'secret-erin', 'plus', 'SCRAM-SHA-256-PLUS'), 'erin@localhost/plus');
    c.destroy();
  });

  test('stream management: a session resumes on a new WebSocket and gets what it missed', async () => {
    const bob = await ts.user('bob2');
    await ts.user('carol').then((c) => c.close());
    const first = await WsTestClient.connect(port);
    const jid = await first.login('carol', 'secret-carol', 'phone');
    first.send(x('enable', { xmlns: NS_SM, resume: 'true' }));
    const enabled = await first.expect('enabled');
    assert.equal(enabled.attrs.resume, 'true');
    bob.send(x('message', { to: jid, type: 'chat' }, x('body', {}, 'one')));
    await first.expect((el) => el.name === 'message' && el.getChildText('body') === 'one');
    // The connection breaks without a stream close.
    first.destroy();
    await first.closed;
    bob.send(x('message', { to: jid, type: 'chat' }, x('body', {}, 'two')));

    const second = await WsTestClient.connect(port);
    await second.open();
    await second.authenticate('carol', 'secret-carol');
    second.send(x('resume', { xmlns: NS_SM, previd: enabled.attrs.id, h: '0' }));
    const resumed = await second.expect('resumed');
    assert.equal(resumed.attrs.previd, enabled.attrs.id);
    const again = await second.expect((el) => el.name === 'message' && el.getChildText('body') === 'one');
    assert.equal(again.attrs.xmlns, NS.client, 'a retransmitted stanza declares its namespace too');
    await second.expect((el) => el.name === 'message' && el.getChildText('body') === 'two');
    second.destroy();
  });

  test('RFC 3921 session establishment after binding succeeds, on TCP and on a WebSocket (Strophe.js sends it)', async () => {
    const tcp = await ts.user('dave');
    const answer = await tcp.iq(x('iq', { type: 'set', id: 'sess' }, x('session', { xmlns: NS.session })));
    assert.equal(answer.attrs.type, 'result', String(answer));
    const ws = await WsTestClient.connect(port);
    await ws.login('dave', 'secret-dave');
    ws.send(x('iq', { xmlns: NS.client, type: 'set', id: 'sess' }, x('session', { xmlns: NS.session })));
    const wsAnswer = await ws.expect((el) => el.name === 'iq' && el.attrs.id === 'sess');
    assert.equal(wsAnswer.attrs.type, 'result', String(wsAnswer));
    ws.destroy();
  });

  const badFrames: [string, (c: WsTestClient) => void, string][] = [
    ['a binary frame', (c) => c.sendRaw(Buffer.from("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>"), true), 'bad-format'],
    ['a partial element', (c) => c.sendRaw("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost'"), 'not-well-formed'],
    ['two elements in one message', (c) => c.sendRaw("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/><presence xmlns='jabber:client'/>"), 'not-well-formed'],
    ['text', (c) => c.sendRaw('hello'), 'not-well-formed'],
    ['a stream header instead of <open/>', (c) => c.sendRaw("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'/>"), 'invalid-namespace'],
    ['<open/> in another namespace', (c) => c.sendRaw("<open xmlns='jabber:client' to='localhost' version='1.0'/>"), 'invalid-namespace'],
    ['an undeclared prefix', (c) => c.sendRaw("<stream:features/>"), 'not-well-formed'],
  ];
  for (const [what, send, condition] of badFrames) {
    test(`bad frame: ${what} gets ${condition}, then <close/> and the WebSocket close`, async () => {
      const c = await WsTestClient.connect(port);
      send(c);
      assert.equal(await c.streamError(), condition);
    });
  }

  test('bad frames after <open/>: a second <open/>, half a stanza, an oversized stanza', async () => {
    const cases: [string, string][] = [
      ["<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>", 'bad-format'],
      ["<iq xmlns='jabber:client' type='get' id='1'><query xmlns='jabber:iq:register'/>", 'not-well-formed'],
      [`<iq xmlns='jabber:client' type='get' id='1'><query xmlns='jabber:iq:register'>${'x'.repeat(11 * 1024)}</query></iq>`, 'policy-violation'],
    ];
    for (const [frame, condition] of cases) {
      const c = await WsTestClient.connect(port);
      await c.open();
      c.sendRaw(frame);
      assert.equal(await c.streamError(), condition, frame.slice(0, 60));
    }
  });

  test('<close/> from the client is answered with <close/> and the WebSocket closes normally', async () => {
    const c = await WsTestClient.connect(port);
    await c.open();
    c.sendRaw("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>");
    await c.expect((el) => el.name === 'close');
    assert.equal(await c.closed, 1000);
  });

  test('a WebSocket without the xmpp subprotocol is refused (RFC 7395 3.3.1)', async () => {
    await assert.rejects(WsTestClient.connect(port, { protocols: ['chat'] }), { statusCode: 400 });
    await assert.rejects(WsTestClient.connect(port, { path: '/elsewhere' }), { statusCode: 404 });
  });

  test('XEP-0156: host-meta as XRD and JSON name the WebSocket URL, for any origin', async () => {
    const xrd = await get(port, '/.well-known/host-meta');
    assert.equal(xrd.status, 200);
    assert.match(String(xrd.headers['content-type']), /^application\/xrd\+xml/);
    assert.equal(xrd.headers['access-control-allow-origin'], '*');
    assert.match(xrd.body, new RegExp(`<Link rel='urn:xmpp:alt-connections:websocket' href='wss://localhost:${port}/xmpp-websocket'/>`));
    const json = await get(port, '/.well-known/host-meta.json');
    assert.equal(json.status, 200);
    assert.equal(json.headers['access-control-allow-origin'], '*');
    assert.deepEqual(JSON.parse(json.body), { links: [{ rel: 'urn:xmpp:alt-connections:websocket', href: `wss://localhost:${port}/xmpp-websocket` }] });
    assert.equal((await get(port, '/.well-known/host-meta', { host: 'elsewhere.example' })).status, 404, 'only for served hosts');
  });

  test('gatehouse status lists the HTTPS listener', async () => {
    const operator = ts.server.ctx.modules.find((m) => m.name === 'operator')!;
    const status = (await operator.commands!.control!.status!.handler({})) as { listeners: { kind: string; port: number }[] };
    assert.ok(status.listeners.some((l) => l.kind === 'https' && l.port === port), JSON.stringify(status.listeners));
  });

  test('unknown paths 404, wrong methods 405 with Allow, security headers, no listing', async () => {
    for (const path of ['/', '/.well-known/', '/upload/', '/../etc/passwd', '/xmpp-websocket/x', '//localhost/.well-known/host-meta', '/.well-known/host-meta/']) {
      const r = await get(port, path);
      assert.equal(r.status, 404, path);
      assert.equal(r.headers['x-content-type-options'], 'nosniff');
      assert.match(String(r.headers['strict-transport-security']), /max-age=\d+/);
    }
    const post = await get(port, '/.well-known/host-meta', { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
    assert.equal((await get(port, '/xmpp-websocket')).status, 426, 'a plain GET on the WebSocket path');
  });
});

test('http.publicUrl names the URL in host-meta', async () => {
  await withTestServer({ listen: HTTPS, http: { publicUrl: 'https://{host}/chat/' } }, async (ts) => {
    const port = httpsListeners(ts.server.ctx)[0]!.port;
    const json = JSON.parse((await get(port, '/.well-known/host-meta.json')).body);
    assert.equal(json.links[0].href, 'wss://localhost/chat/xmpp-websocket');
  });
});

function openTls(port: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => resolve(s));
    s.once('error', reject);
  });
}

test('the HTTPS listener closes connections beyond http.maxConnectionsPerIp at once, and a reload changes the cap', async () => {
  await withTestServer({ listen: HTTPS, http: { maxConnectionsPerIp: 2 } }, async (ts) => {
    const port = httpsListeners(ts.server.ctx)[0]!.port;
    const open = [await openTls(port), await openTls(port)];
    await assert.rejects(openTls(port), 'the third connection from one address is closed before TLS');
    await ts.reload({ listen: HTTPS, http: { maxConnectionsPerIp: 3 } });
    open.push(await openTls(port));
    await assert.rejects(openTls(port));
    for (const s of open) s.destroy();
  });
});

test('a reload that raises c2s.maxStanzaBytes raises the WebSocket frame cap for new connections: the parser, not the WebSocket layer, refuses an oversized stanza with policy-violation', async () => {
  const limits = (max: string, preAuth: string) => ({ listen: HTTPS, c2s: { maxStanzaBytes: max, maxStanzaBytesPreAuth: preAuth } });
  await withTestServer(limits('16KiB', '16KiB'), async (ts) => {
    const port = httpsListeners(ts.server.ctx)[0]!.port;
    await ts.reload(limits('128KiB', '64KiB'));
    // 70 KB: over the new pre-authentication limit, and over the frame cap the first configuration gave (36 KiB).
    const c = await WsTestClient.connect(port);
    await c.open();
    c.sendRaw(`<iq xmlns='jabber:client' type='get' id='1'><query xmlns='jabber:iq:register'>${'x'.repeat(70_000)}</query></iq>`);
    assert.equal(await c.streamError(), 'policy-violation');
  });
});

test('a reload: new HTTPS connections get the renewed certificate (SNI), a WebSocket session from before stays', async () => {
  const ca = createTestCa();
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-https-cert-'));
  const cert = join(dir, 'localhost.crt');
  const key = join(dir, 'localhost.key');
  const first = ca.issue('localhost');
  copyFileSync(first.cert, cert);
  copyFileSync(first.key, key);
  const fingerprint = (file: string) => new X509Certificate(readFileSync(file)).fingerprint256;
  const ts = await startTestServer({ config: { listen: HTTPS, hosts: [{ domain: 'localhost', registration: 'open', tls: { cert, key } }] } });
  try {
    const port = httpsListeners(ts.server.ctx)[0]!.port;
    await ts.user('frank').then((c) => c.close());
    const before = await WsTestClient.connect(port);
    await before.login('frank', 'secret-frank');
    assert.equal(before.tls!.getPeerCertificate().fingerprint256, fingerprint(first.cert));
    const renewed = ca.issue('localhost');
    copyFileSync(renewed.cert, cert);
    copyFileSync(renewed.key, key);
    await ts.reload();
    const after = await openTls(port);
    assert.equal(after.getPeerCertificate().fingerprint256, fingerprint(renewed.cert));
    after.destroy();
    before.send(x('iq', { xmlns: NS.client, type: 'get', id: 'p', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
    assert.equal((await before.expect((el) => el.attrs.id === 'p')).attrs.type, 'result', 'the WebSocket session is still served');
    before.destroy();
  } finally {
    await ts.stop();
    ca.remove();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('behind a proxy named in listen.https[].proxyProtocol, the PROXY header gives the WebSocket stream its client address', async () => {
  await withTestServer({ listen: { https: [{ host: '127.0.0.1', port: 0, proxyProtocol: ['127.0.0.1/32'] }] } }, async (ts) => {
    const port = httpsListeners(ts.server.ctx)[0]!.port;
    await ts.user('proxied').then((c) => c.close());
    const c = await WsTestClient.connect(port, { proxyHeader: 'PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n' });
    const jid = await c.login('proxied', 'secret-proxied');
    assert.equal(ts.server.ctx.sessions.get(jid)?.ip, '203.0.113.7');
    c.destroy();
    await assert.rejects(WsTestClient.connect(port), 'a connection from the proxy without a header is closed');
  });
});

test('declareNamespaces makes each written element a stand-alone document', () => {
  assert.equal(declareNamespaces("<message to='a@b'><body>x</body></message>"), "<message xmlns='jabber:client' to='a@b'><body>x</body></message>");
  assert.equal(declareNamespaces('<iq xmlns="jabber:client" id="1"/>'), '<iq xmlns="jabber:client" id="1"/>');
  assert.equal(declareNamespaces('<presence/>'), "<presence xmlns='jabber:client'/>");
  assert.equal(declareNamespaces('<message a="x xmlns=&quot;y"/>'), `<message xmlns='jabber:client' a="x xmlns=&quot;y"/>`);
  assert.equal(declareNamespaces('<stream:features><bind/></stream:features>'), "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind/></stream:features>");
  assert.equal(declareNamespaces("<r xmlns='urn:xmpp:sm:3'/>"), "<r xmlns='urn:xmpp:sm:3'/>");
});
