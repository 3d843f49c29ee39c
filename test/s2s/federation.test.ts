/**
 * Server-to-server federation between two Gatehouse instances on loopback (P18), and a raw
 * hand-written peer for what no well-behaved server does (spoofed addresses, forged dialback).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { createTestCa, type TestCa, type CertFiles } from '../helpers/test-ca.js';
import { allModules } from '../../server/modules/index.js';
import { createS2sModule } from '../../server/modules/s2s.js';
import type { S2sOptions } from '../../server/federation/service.js';
import { s2sServiceOf } from '../../server/federation/service.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { XmlStreamParser } from '../../shared/xml/stream-parser.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { HookEvents } from '../../server/core/hooks.js';
import { policyFromConfig } from '../../server/modules/policy/render.js';
import { parseConfig } from '../../server/config/index.js';
import { statsFor } from '../../server/modules/statistics/statistics.js';
import { capsVer } from '../../shared/xml/caps-hash.js';
import { controlRequest } from '../../server/admin/control.js';
import type { LiveS2sLink } from '../../server/modules/statistics/live-sessions.js';

// ---- support ----

interface Gatehouse extends TestServer {
  auths: HookEvents['s2s/authenticated'][];
  closed: HookEvents['s2s/closed'][];
  failures: HookEvents['delivery/failed'][];
}

async function startGatehouse(
  domains: string[],
  opts: { s2s?: Record<string, unknown>; tls?: CertFiles; module?: S2sOptions; config?: Record<string, unknown> } = {},
): Promise<Gatehouse> {
  const ts = await startTestServer({
    modules: [...allModules().filter((m) => m.name !== 's2s'), createS2sModule(opts.module)],
    logLevel: 'info',
    config: {
      hosts: domains.map((domain) => ({ domain, registration: 'open' })),
      listen: { s2s: [{ host: '127.0.0.1', port: 0 }] },
      ...(opts.s2s ? { s2s: opts.s2s } : {}),
      ...(opts.tls ? { tls: { cert: opts.tls.cert, key: opts.tls.key } } : {}),
      ...(opts.config ?? {}),
    },
  });
  const g = ts as Gatehouse;
  g.auths = [];
  g.closed = [];
  g.failures = [];
  ts.server.ctx.hooks.on('s2s/authenticated', (e) => void g.auths.push(e));
  ts.server.ctx.hooks.on('s2s/closed', (e) => void g.closed.push(e));
  ts.server.ctx.hooks.on('delivery/failed', (e) => void g.failures.push(e));
  return g;
}

/** Points `from`'s federation at `to`'s s2s port for each of `to`'s domains. */
function route(from: TestServer, to: TestServer): void {
  for (const h of to.config.hosts) from.config.s2s.static[h.domain] = { host: '127.0.0.1', port: to.s2sPort };
}

/** Registers (or logs in again) and sends initial presence, so messages to the bare JID reach it. */
async function user(ts: TestServer, jid: string): Promise<TestClient> {
  const [name, domain] = jid.split('@') as [string, string];
  let c = await ts.client({ domain });
  const reg = await c.register(name, 'pw-' + name);
  if (reg.attrs.type !== 'result') {
    await c.close();
    c = await ts.client({ domain });
  }
  await c.login(name, 'pw-' + name);
  c.send(x('presence', {}));
  await c.expect((el) => el.name === 'presence' && el.attrs.from === c.jid && el.attrs.type === undefined);
  return c;
}

const isMessageFrom = (prefix: string) => (el: Element) => el.name === 'message' && (el.attrs.from ?? '').startsWith(prefix);
const isPresence = (from: string, type?: string) => (el: Element) => el.name === 'presence' && (el.attrs.from ?? '').split('/')[0] === from && el.attrs.type === type;

async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function freePortServer(handler: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port })));
}

/**
 * A hand-driven server-to-server peer: opens a stream to a Gatehouse s2s port, can STARTTLS (with
 * a client certificate), SASL EXTERNAL and dialback, and send whatever it likes afterwards.
 */
class RawPeer {
  readonly received: Element[] = [];
  headerAttrs: Record<string, string> = {};
  streamError: string | null = null;
  closed = false;
  private socket: Socket | TLSSocket;
  private parser: XmlStreamParser;
  private waiters: { match: (el: Element) => boolean; resolve: (el: Element) => void }[] = [];
  private headerWaiters: (() => void)[] = [];

  private constructor(socket: Socket, readonly from: string, readonly to: string) {
    this.socket = socket;
    this.parser = this.newParser();
    this.wire(socket);
  }

  static async connect(port: number, from: string, to: string): Promise<RawPeer> {
    const socket = tcpConnect({ host: '127.0.0.1', port });
    await new Promise<void>((r, j) => (socket.once('connect', r), socket.once('error', j)));
    const p = new RawPeer(socket, from, to);
    await p.open();
    return p;
  }

  private newParser(): XmlStreamParser {
    return new XmlStreamParser(
      {
        streamOpen: (_n, attrs) => {
          this.headerAttrs = attrs;
          for (const w of this.headerWaiters.splice(0)) w();
        },
        stanza: (el) => {
          if (el.name === 'stream:error') this.streamError = el.elements.find((c) => c.name !== 'text')?.name ?? 'unknown';
          const i = this.waiters.findIndex((w) => w.match(el));
          if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(el);
          else this.received.push(el);
        },
        streamClose: () => (this.closed = true),
        error: () => (this.closed = true),
      },
      { maxStanzaBytes: 1 << 20, maxDepth: 50, maxAttributes: 50 },
    );
  }

  private readonly onData = (c: Buffer) => this.parser.write(c);

  private wire(s: Socket): void {
    s.on('data', this.onData);
    s.on('close', () => (this.closed = true));
    s.on('error', () => (this.closed = true));
  }

  write(data: string): void {
    this.socket.write(data);
  }

  expect(match: ((el: Element) => boolean) | string, ms = 5000): Promise<Element> {
    const m = typeof match === 'string' ? (el: Element) => el.name === match : match;
    const i = this.received.findIndex(m);
    if (i >= 0) return Promise.resolve(this.received.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const w = { match: m, resolve: (el: Element) => (clearTimeout(t), resolve(el)) };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`peer timed out; received ${this.received.map(String).join(' ').slice(0, 1500)}`));
      }, ms);
      this.waiters.push(w);
    });
  }

  async open(): Promise<Element> {
    const opened = new Promise<void>((r) => this.headerWaiters.push(r));
    this.write(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='${NS.stream}' xmlns:db='jabber:server:dialback' from='${this.from}' to='${this.to}' version='1.0'>`);
    await opened;
    return this.expect('stream:features');
  }

  async starttls(cert?: CertFiles): Promise<Element> {
    this.write(`<starttls xmlns='${NS.tls}'/>`);
    await this.expect('proceed');
    const raw = this.socket as Socket;
    raw.removeListener('data', this.onData);
    const { readFileSync } = await import('node:fs');
    const secure = tlsConnect({ socket: raw, servername: this.to, rejectUnauthorized: false, ...(cert ? { cert: readFileSync(cert.cert), key: readFileSync(cert.key) } : {}) });
    await new Promise<void>((r, j) => (secure.once('secureConnect', r), secure.once('error', j)));
    this.socket = secure;
    this.parser = this.newParser();
    this.wire(secure);
    return this.open();
  }

  async saslExternal(): Promise<Element> {
    this.write(`<auth xmlns='${NS.sasl}' mechanism='EXTERNAL'>${Buffer.from(this.from).toString('base64')}</auth>`);
    const outcome = await this.expect((el) => el.name === 'success' || el.name === 'failure');
    if (outcome.name === 'success') {
      this.parser = this.newParser();
      await this.open();
    }
    return outcome;
  }

  waitClosed(ms = 5000): Promise<void> {
    return until(() => this.closed, ms, 'the peer stream to close');
  }

  destroy(): void {
    this.socket.destroy();
  }
}

// ---- tests ----

describe('federation between two Gatehouse servers (P18)', () => {
  let a: Gatehouse;
  let b: Gatehouse;
  let alice: TestClient;
  let bob: TestClient;

  before(async () => {
    a = await startGatehouse(['a.test']);
    b = await startGatehouse(['b.test']);
    route(a, b);
    route(b, a);
    alice = await user(a, 'alice@a.test');
    bob = await user(b, 'bob@b.test');
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
  });

  test('P18 messages cross between two servers over TLS with dialback (untrusted certificates)', async () => {
    alice.send(x('message', { to: 'bob@b.test', type: 'chat', id: 'm1' }, x('body', {}, 'hello bob')));
    const m = await bob.expect(isMessageFrom('alice@a.test'));
    assert.equal(m.attrs.from, alice.jid);
    assert.equal(m.getChildText('body'), 'hello bob');
    assert.equal(m.attrs.xmlns, 'jabber:client');
    bob.send(x('message', { to: alice.jid, type: 'chat' }, x('body', {}, 'hello alice')));
    const r = await alice.expect(isMessageFrom('bob@b.test'));
    assert.equal(r.getChildText('body'), 'hello alice');
    // Both directions authenticated by dialback over TLS, each side once per direction.
    const outA = a.auths.find((e) => e.direction === 'out' && e.domain === 'b.test');
    const inB = b.auths.find((e) => e.direction === 'in' && e.domain === 'a.test');
    assert.equal(outA?.mechanism, 'dialback');
    assert.equal(outA?.secure, true);
    assert.equal(inB?.mechanism, 'dialback');
    assert.equal(inB?.local, 'b.test');
    assert.ok(b.auths.some((e) => e.direction === 'out' && e.domain === 'a.test'));
    // No body in any log line.
    assert.ok(!a.logLines.some((l) => l.includes('hello bob')) && !b.logLines.some((l) => l.includes('hello bob')));
  });

  test('P18 subscription and presence between servers', async () => {
    alice.send(x('presence', { to: 'bob@b.test', type: 'subscribe' }));
    await bob.expect(isPresence('alice@a.test', 'subscribe'));
    bob.send(x('presence', { to: 'alice@a.test', type: 'subscribed' }));
    await alice.expect(isPresence('bob@b.test', 'subscribed'));
    // Bob's current presence follows the approval.
    await alice.expect(isPresence('bob@b.test', undefined));
    const roster = await alice.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
    const item = roster.getChild('query', NS.roster)?.getChildren('item').find((i) => i.attrs.jid === 'bob@b.test');
    assert.equal(item?.attrs.subscription, 'to');
    bob.send(x('presence', {}, x('status', {}, 'away for lunch')));
    const p = await alice.expect((el) => isPresence('bob@b.test')(el) && el.getChildText('status') === 'away for lunch');
    assert.equal(p.attrs.from, bob.jid);
  });

  test('P18 vCard fetch and ping across servers', async () => {
    const set = await bob.iq(x('iq', { type: 'set' }, x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'Bob Builder'))));
    assert.equal(set.attrs.type, 'result');
    const v = await alice.iq(x('iq', { type: 'get', to: 'bob@b.test' }, x('vCard', { xmlns: NS.vcard })));
    assert.equal(v.attrs.type, 'result', String(v));
    assert.equal(v.getChild('vCard', NS.vcard)?.getChildText('FN'), 'Bob Builder');
    const ping = await alice.iq(x('iq', { type: 'get', to: 'b.test' }, x('ping', { xmlns: NS.ping })));
    assert.equal(ping.attrs.type, 'result');
    assert.equal(ping.attrs.from, 'b.test');
    const toFull = await bob.iq(x('iq', { type: 'get', to: alice.jid }, x('ping', { xmlns: NS.ping })), 5000).catch(() => null);
    // A client that does not answer pings is fine; what matters is that the IQ reached it.
    void toFull;
    const got = await alice.expect((el) => el.name === 'iq' && el.attrs.type === 'get' && el.attrs.from === bob.jid);
    assert.ok(got.getChild('ping', NS.ping));
  });

  test("P18 a remote contact's entity capabilities: the disco#info query goes from the account's bare JID over the link, the verified answer comes back", async () => {
    // Mutual subscription: caps are learnt only from contacts subscribed to the account's presence.
    bob.send(x('presence', { to: 'alice@a.test', type: 'subscribe' }));
    await alice.expect(isPresence('bob@b.test', 'subscribe'));
    alice.send(x('presence', { to: 'bob@b.test', type: 'subscribed' }));
    await bob.expect(isPresence('alice@a.test', 'subscribed'));
    const capsA = a.server.ctx.services.need('caps');
    const features = [NS.caps, NS.discoInfo, 'urn:xmpp:avatar:metadata+notify'];
    const ver = capsVer({ identities: [{ category: 'client', type: 'pc' }], features, forms: [] }, 'sha-1')!;
    const learnt = new Promise<ReadonlySet<string>>((resolve) => {
      const off = capsA.onFeatures((e) => {
        if (e.observer === 'alice@a.test' && e.jid === bob.jid) {
          off();
          resolve(e.features);
        }
      });
    });
    bob.send(x('presence', {}, x('c', { xmlns: NS.caps, hash: 'sha-1', node: 'https://client.example', ver })));
    // One query from bob's own server (his own resource) and one from alice's, over the link.
    const askers: string[] = [];
    for (let i = 0; i < 2; i++) {
      const q = await bob.expect((el) => el.name === 'iq' && el.attrs.type === 'get' && el.getChild('query', NS.discoInfo) !== undefined);
      askers.push(q.attrs.from!);
      assert.equal(q.getChild('query', NS.discoInfo)!.attrs.node, `https://client.example#${ver}`);
      bob.send(
        x('iq', { type: 'result', id: q.attrs.id, to: q.attrs.from }, x('query', { xmlns: NS.discoInfo, node: `https://client.example#${ver}` }, x('identity', { category: 'client', type: 'pc' }), features.map((f) => x('feature', { var: f })))),
      );
    }
    assert.deepEqual(askers.sort(), ['alice@a.test', 'bob@b.test']);
    assert.deepEqual([...(await learnt)].sort(), [...features].sort());
    assert.equal(capsA.wantsNotify(bob.jid, 'urn:xmpp:avatar:metadata'), true);
  });

  test('P18 anonymous statistics count the links; the policy says links are encrypted', async () => {
    const sa = s2sServiceOf(a.server.ctx)!;
    assert.equal(sa.countLinks('out'), 1);
    assert.ok(sa.countLinks('in') >= 1);
    await statsFor(a.server.ctx).tick();
    const pts = await a.server.ctx.storage.statistics.listPoints({ resolution: 'minute', since: new Date(Date.now() - 3_600_000) });
    const value = (series: string) => pts.filter((p) => p.series === series).reduce((m, p) => Math.max(m, p.value), 0);
    assert.equal(value('s2s.links{direction=out}'), 1);
    assert.ok(value('s2s.links{direction=in}') >= 1);
    assert.ok(value('s2s.links.opened{direction=out}') >= 1);
    assert.ok(!JSON.stringify(pts).includes('b.test'), 'no domain in the statistics');
    const cfg = parseConfig({ dataDir: a.dir, hosts: [{ domain: 'a.test' }], listen: { s2s: [{ host: '::', port: 5269 }] } }, a.dir);
    const { texts } = policyFromConfig(cfg);
    assert.match(JSON.stringify(texts), /Connections to other servers are always encrypted \(TLS\)/);
  });

  test('gatehouse sessions --kind s2s lists the links with the other server\'s domain, direction and TLS; no user', async () => {
    const links = (await controlRequest(a.dir, 'sessions', { kind: 's2s' })) as LiveS2sLink[];
    const out = links.filter((l) => l.direction === 'out');
    assert.deepEqual(out.map((l) => [l.kind, l.remote.join(' '), l.secure]), [['s2s', 'b.test', true]]);
    assert.ok(links.some((l) => l.direction === 'in' && l.remote.includes('b.test')));
    assert.ok(!JSON.stringify(links).includes('@'), 'no JID');
  });
});

describe('federation with certificates from a trusted CA (P18, SASL EXTERNAL)', () => {
  let ca: TestCa;
  let a: Gatehouse;
  let b: Gatehouse;

  before(async () => {
    ca = createTestCa();
    const strict = { requireValidCertificates: true };
    a = await startGatehouse(['a.test'], { tls: ca.issue('a.test'), s2s: strict, module: { caFile: ca.caFile } });
    b = await startGatehouse(['b.test'], { tls: ca.issue('b.test'), s2s: strict, module: { caFile: ca.caFile } });
    route(a, b);
    route(b, a);
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    ca?.remove();
  });

  test('P18 both directions authenticate with SASL EXTERNAL and deliver', async () => {
    const alice = await user(a, 'alice@a.test');
    const bob = await user(b, 'bob@b.test');
    alice.send(x('message', { to: 'bob@b.test', type: 'chat' }, x('body', {}, 'over EXTERNAL')));
    assert.equal((await bob.expect(isMessageFrom('alice@a.test'))).getChildText('body'), 'over EXTERNAL');
    bob.send(x('message', { to: 'alice@a.test', type: 'chat' }, x('body', {}, 'and back')));
    assert.equal((await alice.expect(isMessageFrom('bob@b.test'))).getChildText('body'), 'and back');
    for (const [g, remote] of [[a, 'b.test'], [b, 'a.test']] as const) {
      assert.equal(g.auths.find((e) => e.direction === 'out' && e.domain === remote)?.mechanism, 'EXTERNAL');
      assert.equal(g.auths.find((e) => e.direction === 'in' && e.domain === remote)?.mechanism, 'EXTERNAL');
    }
  });

  test('P18 a peer with an untrusted certificate is refused when valid certificates are required', async () => {
    const c = await startGatehouse(['c.test'], { module: { connectTimeout: 3000 } });
    try {
      route(c, a);
      route(a, c);
      const carol = await user(c, 'carol@c.test');
      carol.send(x('message', { to: 'alice@a.test', type: 'chat', id: 'u1' }, x('body', {}, 'let me in')));
      const err = await carol.expect((el) => el.name === 'message' && el.attrs.type === 'error');
      assert.equal(errorCondition(err), 'remote-server-not-found');
      assert.ok(!a.auths.some((e) => e.domain === 'c.test'));
      // And a's stanzas to c (whose certificate a does not trust) bounce too.
      const alice = await user(a, 'alice@a.test');
      alice.send(x('message', { to: 'carol@c.test', type: 'chat', id: 'u2' }, x('body', {}, 'no')));
      const err2 = await alice.expect((el) => el.name === 'message' && el.attrs.type === 'error' && el.attrs.id === 'u2');
      assert.equal(errorCondition(err2), 'remote-server-not-found');
      assert.ok(a.failures.some((f) => f.to === 'carol@c.test' && f.condition === 'remote-server-not-found'));
    } finally {
      await c.stop();
    }
  });
});

describe('what a remote server may not do (P18)', () => {
  let ca: TestCa;
  let a: Gatehouse;
  let b: Gatehouse;
  let alice: TestClient;

  before(async () => {
    ca = createTestCa();
    a = await startGatehouse(['a.test'], { module: { caFile: ca.caFile } });
    b = await startGatehouse(['b.test']);
    route(a, b);
    route(b, a);
    alice = await user(a, 'alice@a.test');
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    ca?.remove();
  });

  test('P18 a spoofed from closes the link with invalid-from and reaches nobody', async () => {
    const evil = ca.issue('evil.test');
    const peer = await RawPeer.connect(a.s2sPort, 'evil.test', 'a.test');
    const features = await peer.starttls(evil);
    assert.ok(features.getChild('mechanisms', NS.sasl)?.getChildren('mechanism').some((m) => m.text() === 'EXTERNAL'));
    const outcome = await peer.saslExternal();
    assert.equal(outcome.name, 'success');
    // What it proved is accepted ...
    peer.write(`<message from='eve@evil.test/x' to='alice@a.test' type='chat'><body>legit</body></message>`);
    const m = await alice.expect(isMessageFrom('eve@evil.test'));
    assert.equal(m.getChildText('body'), 'legit');
    // ... anything else is not.
    peer.write(`<message from='bob@b.test/x' to='alice@a.test' type='chat'><body>spoofed</body></message>`);
    await peer.waitClosed();
    assert.equal(peer.streamError, 'invalid-from');
    assert.ok(await alice.expectNothing((el) => el.name === 'message' && el.getChildText('body') === 'spoofed', 500));
  });

  test('P18 stanzas a peer sent just before ending its stream are delivered, not dropped with the stream', async () => {
    const evil = ca.issue('evil.test');
    const peer = await RawPeer.connect(a.s2sPort, 'evil.test', 'a.test');
    await peer.starttls(evil);
    assert.equal((await peer.saslExternal()).name, 'success');
    // One write: the stanzas and the end of the stream reach the server together (as at a peer's shutdown).
    peer.write(`<message from='eve@evil.test/x' to='alice@a.test' type='chat'><body>last 1</body></message><message from='eve@evil.test/x' to='alice@a.test' type='chat'><body>last 2</body></message></stream:stream>`);
    for (const body of ['last 1', 'last 2']) assert.equal((await alice.expect((el) => el.name === 'message' && el.getChildText('body') === body)).attrs.from, 'eve@evil.test/x');
    await peer.waitClosed();
  });

  test('P18 a stanza before authentication is refused with not-authorized', async () => {
    const peer = await RawPeer.connect(a.s2sPort, 'b.test', 'a.test');
    await peer.starttls();
    peer.write(`<message from='bob@b.test' to='alice@a.test'><body>sneak</body></message>`);
    await peer.waitClosed();
    assert.equal(peer.streamError, 'not-authorized');
    assert.ok(await alice.expectNothing((el) => el.getChildText('body') === 'sneak', 300));
  });

  test('P18 a forged dialback key for another server is rejected by that server', async () => {
    const peer = await RawPeer.connect(a.s2sPort, 'b.test', 'a.test');
    const features = await peer.starttls();
    assert.ok(features.getChild('dialback', 'urn:xmpp:features:dialback'));
    // No EXTERNAL: the certificate (none) proves nothing.
    assert.equal(features.getChild('mechanisms', NS.sasl), undefined);
    peer.write(`<db:result from='b.test' to='a.test'>${'ab'.repeat(32)}</db:result>`);
    const res = await peer.expect((el) => el.name === 'db:result');
    assert.equal(res.attrs.type, 'invalid');
    await peer.waitClosed();
    assert.equal(peer.streamError, 'not-authorized');
    // (b.test itself may meanwhile have authenticated a link of its own to a.test: it answers
    // a's verify request over a link it opens with dialback, as any server would.)
    assert.ok(a.logLines.some((l) => l.includes('dialback key rejected by the authoritative server') && l.includes('remote=b.test')));
  });

  test('P18 a stream to a domain this server does not serve gets host-unknown', async () => {
    const socket = tcpConnect({ host: '127.0.0.1', port: a.s2sPort });
    let data = '';
    socket.on('data', (d) => (data += d));
    socket.write(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='${NS.stream}' from='b.test' to='nowhere.test' version='1.0'>`);
    await until(() => data.includes('</stream:stream>'), 3000, 'stream end');
    assert.match(data, /host-unknown/);
    socket.destroy();
  });

  test('P18 without STARTTLS nothing but starttls is accepted when encryption is required', async () => {
    const peer = await RawPeer.connect(a.s2sPort, 'b.test', 'a.test');
    peer.write(`<db:result from='b.test' to='a.test'>00</db:result>`);
    await peer.waitClosed();
    assert.equal(peer.streamError, 'policy-violation');
  });
});

describe('links that cannot be established (P18, P8)', () => {
  let a: Gatehouse;
  let alice: TestClient;
  const servers: Server[] = [];

  before(async () => {
    a = await startGatehouse(['a.test'], { module: { connectTimeout: 800 } });
    alice = await user(a, 'alice@a.test');
  });
  after(async () => {
    for (const s of servers) s.close();
    await a?.stop();
  });

  test('P18 an unreachable domain bounces with remote-server-not-found, recorded as a delivery failure', async () => {
    const { server, port } = await freePortServer(() => {});
    await new Promise<void>((r) => server.close(() => r()));
    a.config.s2s.static['down.test'] = { host: '127.0.0.1', port };
    alice.send(x('message', { to: 'dave@down.test', type: 'chat', id: 'd1' }, x('body', {}, 'anyone there?')));
    alice.send(x('iq', { to: 'down.test', type: 'get', id: 'd2' }, x('ping', { xmlns: NS.ping })));
    const err = await alice.expect((el) => el.name === 'message' && el.attrs.id === 'd1');
    assert.equal(err.attrs.type, 'error');
    assert.equal(errorCondition(err), 'remote-server-not-found');
    assert.equal(err.attrs.from, 'dave@down.test');
    const iqErr = await alice.expect((el) => el.name === 'iq' && el.attrs.id === 'd2');
    assert.equal(errorCondition(iqErr), 'remote-server-not-found');
    await until(() => a.failures.filter((f) => f.to.endsWith('down.test')).length === 2, 2000, 'P8 records');
    const f = a.failures.find((x) => x.to === 'dave@down.test')!;
    assert.deepEqual({ from: f.from, kind: f.kind, condition: f.condition }, { from: 'alice@a.test', kind: 'message', condition: 'remote-server-not-found' });
    assert.ok(!JSON.stringify(a.failures).includes('anyone there'));
  });

  test('P18 a domain whose server does not answer bounces with remote-server-timeout', async () => {
    const { server, port } = await freePortServer(() => {});
    servers.push(server);
    a.config.s2s.static['silent.test'] = { host: '127.0.0.1', port };
    const t0 = Date.now();
    alice.send(x('message', { to: 'sam@silent.test', type: 'chat', id: 's1' }, x('body', {}, 'hello?')));
    const err = await alice.expect((el) => el.name === 'message' && el.attrs.id === 's1', 5000);
    assert.equal(errorCondition(err), 'remote-server-timeout');
    assert.ok(Date.now() - t0 >= 700);
    assert.ok(a.failures.some((f) => f.to === 'sam@silent.test' && f.condition === 'remote-server-timeout'));
  });

  test('P18 a server that offers no TLS is not used while encryption is required', async () => {
    const { server, port } = await freePortServer((s) => {
      s.once('data', () => {
        s.write(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='${NS.stream}' xmlns:db='jabber:server:dialback' id='x1' from='plain.test' version='1.0'><stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>`);
      });
    });
    servers.push(server);
    a.config.s2s.static['plain.test'] = { host: '127.0.0.1', port };
    alice.send(x('message', { to: 'pat@plain.test', type: 'chat', id: 'p1' }, x('body', {}, 'cleartext?')));
    const err = await alice.expect((el) => el.name === 'message' && el.attrs.id === 'p1');
    assert.equal(errorCondition(err), 'remote-server-not-found');
  });

  test('P18 denied domains are not contacted', async () => {
    let contacted = false;
    const { server, port } = await freePortServer(() => (contacted = true));
    servers.push(server);
    a.config.s2s.static['denied.test'] = { host: '127.0.0.1', port };
    a.config.s2s.deny.push('denied.test');
    alice.send(x('message', { to: 'x@denied.test', type: 'chat', id: 'n1' }, x('body', {}, 'no')));
    const err = await alice.expect((el) => el.name === 'message' && el.attrs.id === 'n1');
    assert.equal(errorCondition(err), 'remote-server-not-found');
    assert.equal(contacted, false);
  });
});

describe('link sharing, direct TLS and idle links (P18)', () => {
  let a: Gatehouse;
  let b: Gatehouse;

  before(async () => {
    b = await startGatehouse(['b.test'], { module: { idleTimeout: 1500 } });
    a = await startGatehouse(['a.test', 'a2.test'], {
      module: {
        idleTimeout: 1500,
        // The SRV records below point at loopback, which federation refuses unless told otherwise.
        allowInternalTargets: true,
        // b.test only through DNS: an xmpps-server record (direct TLS) before an xmpp-server one.
        dns: {
          resolveSrv: async (name) => {
            if (name === '_xmpps-server._tcp.b.test') return [{ name: '127.0.0.1', port: b.s2sPort, priority: 5, weight: 0 }];
            if (name === '_xmpp-server._tcp.b.test') return [{ name: '127.0.0.1', port: 1, priority: 10, weight: 0 }];
            throw Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' });
          },
        },
      },
    });
    route(b, a);
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
  });

  test('P18 one link serves several local domains (dialback piggybacking) over direct TLS from SRV', async () => {
    const alice = await user(a, 'alice@a.test');
    const anna = await user(a, 'anna@a2.test');
    const bob = await user(b, 'bob@b.test');
    alice.send(x('message', { to: 'bob@b.test', type: 'chat' }, x('body', {}, 'from a')));
    await bob.expect(isMessageFrom('alice@a.test'));
    anna.send(x('message', { to: 'bob@b.test', type: 'chat' }, x('body', {}, 'from a2')));
    await bob.expect(isMessageFrom('anna@a2.test'));
    const sa = s2sServiceOf(a.server.ctx)!;
    assert.equal(sa.outgoing.get('b.test')?.length, 1, 'one outbound link to b.test');
    assert.equal(sa.countLinks('out'), 1);
    const inB = b.auths.filter((e) => e.direction === 'in');
    assert.deepEqual(inB.map((e) => e.domain).sort(), ['a.test', 'a2.test']);
    assert.equal(s2sServiceOf(b.server.ctx)!.countLinks('in'), 1, 'both domains on one inbound stream');
    // Replies go back to both.
    bob.send(x('message', { to: 'anna@a2.test', type: 'chat' }, x('body', {}, 'hi anna')));
    await anna.expect(isMessageFrom('bob@b.test'));
  });

  test('P18 idle links are closed and reopened on demand', async () => {
    await until(() => s2sServiceOf(a.server.ctx)!.countLinks('out') === 0 && s2sServiceOf(b.server.ctx)!.countLinks('in') === 0, 6000, 'idle links to close');
    assert.ok(a.closed.some((e) => e.direction === 'out' && e.domain === 'b.test'));
    const alice = await user(a, 'alice@a.test');
    const bob = await user(b, 'bob@b.test');
    alice.send(x('message', { to: 'bob@b.test', type: 'chat' }, x('body', {}, 'again')));
    await bob.expect((el) => isMessageFrom('alice@a.test')(el) && el.getChildText('body') === 'again');
  });
});

describe('limits and plaintext (P18)', () => {
  let a: Gatehouse;
  let alice: TestClient;
  const servers: Server[] = [];

  before(async () => {
    a = await startGatehouse(['a.test'], { s2s: { requireEncryption: false }, config: { c2s: { authTimeout: '1s' } } });
    alice = await user(a, 'alice@a.test');
  });
  after(async () => {
    for (const s of servers) s.close();
    await a?.stop();
  });

  test('P18 without requireEncryption a peer without TLS gets dialback over plaintext, stanzas in jabber:server', async () => {
    const got: string[] = [];
    const { server, port } = await freePortServer((s) => {
      let buf = '';
      s.on('data', (d) => {
        buf += d;
        if (buf.includes('<stream:stream') && !buf.includes('SENT')) {
          buf += 'SENT';
          s.write(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='${NS.stream}' xmlns:db='jabber:server:dialback' id='plain1' from='old.test' version='1.0'><stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>`);
        }
        if (/<db:result[^>]*>[0-9a-f]{64}<\/db:result>/.test(buf) && !buf.includes('VALID')) {
          buf += 'VALID';
          s.write(`<db:result from='old.test' to='a.test' type='valid'/>`);
        }
        const m = /<message[\s\S]*?<\/message>/.exec(buf);
        if (m) {
          got.push(m[0]);
          buf = buf.replace(m[0], '');
        }
      });
    });
    servers.push(server);
    a.config.s2s.static['old.test'] = { host: '127.0.0.1', port };
    alice.send(x('message', { to: 'olga@old.test', type: 'chat' }, x('body', {}, 'plain')));
    await until(() => got.length === 1, 3000, 'the message at the plaintext peer');
    assert.match(got[0]!, /^<message to="olga@old.test"/);
    assert.ok(!got[0]!.includes('jabber:client'), 'the stanza takes the stream namespace jabber:server');
    const auth = a.auths.find((e) => e.domain === 'old.test');
    assert.equal(auth?.secure, false);
  });

  test('P18 inbound limits: oversized stanzas before authentication and silent peers are cut off', async () => {
    const big = await RawPeer.connect(a.s2sPort, 'b.test', 'a.test');
    big.write(`<db:result from='b.test' to='a.test'>${'a'.repeat(12 * 1024)}</db:result>`);
    await big.waitClosed();
    assert.equal(big.streamError, 'policy-violation');
    const idle = await RawPeer.connect(a.s2sPort, 'b.test', 'a.test');
    await idle.waitClosed(4000);
    assert.equal(idle.streamError, 'connection-timeout');
  });
});
