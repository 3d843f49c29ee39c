/**
 * P18: where federation connects. A domain named by an unauthenticated peer (dialback) or by a
 * local user (a message to it) decides the DNS answers, so targets found through DNS are only
 * dialled at public addresses; `s2s.static` routes are the operator's and are used as given. And
 * an inbound stream cannot stay unauthenticated beyond the auth timeout by keeping checks pending.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect as tcpConnect, type AddressInfo, type Server, type Socket } from 'node:net';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { allModules } from '../../server/modules/index.js';
import { createS2sModule } from '../../server/modules/s2s.js';
import type { SrvSource } from '../../server/federation/resolver.js';
import { isInternalAddress } from '../../server/federation/resolver.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { XmlStreamParser } from '../../shared/xml/stream-parser.js';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { TestClient } from '../helpers/xmpp-client.js';

/** A TCP listener that records every connection and never answers. */
async function trap(): Promise<{ server: Server; port: number; connections: Socket[]; connected: Promise<void> }> {
  const connections: Socket[] = [];
  let onFirst!: () => void;
  const connected = new Promise<void>((r) => (onFirst = r));
  const server = createServer((s) => {
    connections.push(s);
    s.on('error', () => {});
    onFirst();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, port: (server.address() as AddressInfo).port, connections, connected };
}

/** An inbound server-to-server stream without TLS that asks for dialback (s2s.requireEncryption off). */
class PlainPeer {
  readonly received: Element[] = [];
  streamError: string | null = null;
  readonly closed: Promise<void>;
  private waiters: { match: (el: Element) => boolean; resolve: (el: Element) => void }[] = [];

  private constructor(private readonly socket: Socket) {
    const parser = new XmlStreamParser(
      {
        streamOpen: () => {},
        stanza: (el) => {
          if (el.name === 'stream:error') this.streamError = el.elements.find((c) => c.name !== 'text')?.name ?? 'unknown';
          const i = this.waiters.findIndex((w) => w.match(el));
          if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(el);
          else this.received.push(el);
        },
        streamClose: () => {},
        error: () => {},
      },
      { maxStanzaBytes: 1 << 20, maxDepth: 50, maxAttributes: 50 },
    );
    socket.on('data', (d: Buffer) => parser.write(d));
    socket.on('error', () => {});
    this.closed = new Promise((r) => socket.once('close', () => r()));
  }

  static async connect(port: number, from: string, to: string): Promise<PlainPeer> {
    const socket = tcpConnect({ host: '127.0.0.1', port });
    await new Promise<void>((r, j) => (socket.once('connect', r), socket.once('error', j)));
    const peer = new PlainPeer(socket);
    socket.write(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='${NS.stream}' xmlns:db='jabber:server:dialback' from='${from}' to='${to}' version='1.0'>`);
    await peer.expect((el) => el.name === 'stream:features');
    return peer;
  }

  write(data: string): void {
    this.socket.write(data);
  }

  expect(match: (el: Element) => boolean): Promise<Element> {
    const i = this.received.findIndex(match);
    if (i >= 0) return Promise.resolve(this.received.splice(i, 1)[0]!);
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

const KEY = 'ab'.repeat(32);
const notFound = (name: string) => Promise.reject(Object.assign(new Error(`queryNotFound ${name}`), { code: 'ENOTFOUND' }));

test('P18 isInternalAddress: loopback, private, link-local, unspecified, multicast and embedded IPv4 forms', () => {
  const internal = [
    '127.0.0.1', '127.1.2.3', '10.0.0.1', '172.16.5.4', '172.31.255.255', '192.168.1.1', '169.254.169.254', '0.0.0.0', '100.64.0.1',
    '224.0.0.1', '239.255.255.250', '255.255.255.255', '198.18.0.1', '192.0.2.1',
    '::', '::1', 'fe80::1', 'fe80::1%eth0', 'fc00::1', 'fd12:3456::1', 'ff02::1', 'fec0::1', '2001:db8::1',
    '::ffff:127.0.0.1', '::ffff:10.0.0.1', '::ffff:7f00:1', '64:ff9b::a00:1', '2002:7f00:1::1', '::127.0.0.1',
    'localhost', 'not an address',
  ];
  const external = ['93.184.216.34', '8.8.8.8', '172.32.0.1', '192.169.0.1', '2a01:4f8::1', '2001:4860:4860::8888', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1'];
  for (const a of internal) assert.equal(isInternalAddress(a), true, a);
  for (const a of external) assert.equal(isInternalAddress(a), false, a);
});

describe('federation targets from DNS (P18)', () => {
  let a: TestServer;
  let alice: TestClient;
  let srvTrap: Awaited<ReturnType<typeof trap>>;
  let nameTrap: Awaited<ReturnType<typeof trap>>;
  let staticTrap: Awaited<ReturnType<typeof trap>>;

  before(async () => {
    [srvTrap, nameTrap, staticTrap] = await Promise.all([trap(), trap(), trap()]);
    const dns: SrvSource = {
      resolveSrv: (name) => {
        // evil.test and loop.test: SRV straight at loopback; named.test: a host name whose A/AAAA are internal.
        if (name === '_xmpp-server._tcp.evil.test' || name === '_xmpp-server._tcp.loop.test') return Promise.resolve([{ name: '127.0.0.1', port: srvTrap.port, priority: 0, weight: 0 }]);
        if (name === '_xmpp-server._tcp.named.test') return Promise.resolve([{ name: 'xmpp.named.test', port: nameTrap.port, priority: 0, weight: 0 }]);
        return notFound(name);
      },
      lookup: async (host) => (host === 'xmpp.named.test' ? ['127.0.0.1', '::1', '::ffff:127.0.0.1', '10.9.8.7'] : notFound(host)),
    };
    a = await startTestServer({
      modules: [...allModules().filter((m) => m.name !== 's2s'), createS2sModule({ dns, connectTimeout: 2000, verifyTimeout: 60_000 })],
      logLevel: 'info',
      config: {
        hosts: [{ domain: 'a.test', registration: 'open' }],
        listen: { s2s: [{ host: '127.0.0.1', port: 0 }] },
        s2s: { requireEncryption: false, static: { 'ok.test': `127.0.0.1:${staticTrap.port}` } },
      },
    });
    const c = await a.client({ domain: 'a.test' });
    await c.register('alice', 'pw-alice');
    await c.close();
    alice = await a.client({ domain: 'a.test' });
    await alice.login('alice', 'pw-alice');
  });
  after(async () => {
    await a?.stop();
    for (const t of [srvTrap, nameTrap, staticTrap]) {
      for (const s of t?.connections ?? []) s.destroy();
      t?.server.close();
    }
  });

  test('P18 dialback for a domain whose SRV record points at loopback is answered with an error and nothing is dialled', async () => {
    const peer = await PlainPeer.connect(a.s2sPort, 'evil.test', 'a.test');
    peer.write(`<db:result from='evil.test' to='a.test'>${KEY}</db:result>`);
    const result = await peer.expect((el) => el.name === 'db:result');
    assert.equal(result.attrs.type, 'error', String(result));
    assert.equal(result.attrs.from, 'a.test');
    assert.equal(result.attrs.to, 'evil.test');
    assert.ok(result.getChild('error')?.getChild('remote-server-not-found', NS.stanzas), String(result));
    assert.equal(srvTrap.connections.length, 0, 'no connection reached the internal target');
    assert.ok(a.logLines.some((l) => l.includes('s2s target refused') && l.includes('remote=evil.test')));
    peer.destroy();
  });

  test('P18 dialback for a domain whose host name resolves to internal addresses dials none of them', async () => {
    const peer = await PlainPeer.connect(a.s2sPort, 'named.test', 'a.test');
    peer.write(`<db:result from='named.test' to='a.test'>${KEY}</db:result>`);
    const result = await peer.expect((el) => el.name === 'db:result');
    assert.equal(result.attrs.type, 'error', String(result));
    assert.equal(nameTrap.connections.length, 0);
    peer.destroy();
  });

  test('P18 a message to a domain whose SRV record points at loopback bounces without a connection', async () => {
    alice.send(x('message', { to: 'someone@loop.test', type: 'chat', id: 'loop1' }, x('body', {}, 'hello?')));
    const err = await alice.expect((el) => el.name === 'message' && el.attrs.id === 'loop1');
    assert.equal(err.attrs.type, 'error');
    assert.equal(errorCondition(err), 'remote-server-not-found');
    assert.equal(srvTrap.connections.length, 0);
  });

  test('P18 a domain named in s2s.static is dialled at its loopback address', async () => {
    alice.send(x('message', { to: 'someone@ok.test', type: 'chat', id: 'ok1' }, x('body', {}, 'hello')));
    await staticTrap.connected;
    assert.equal(staticTrap.connections.length, 1);
  });

});

describe('the auth timeout of inbound streams (P18)', () => {
  let a: TestServer;
  let slowTrap: Awaited<ReturnType<typeof trap>>;

  before(async () => {
    slowTrap = await trap();
    a = await startTestServer({
      // The link to the authoritative server would wait a minute: only the auth timeout can end the stream.
      modules: [...allModules().filter((m) => m.name !== 's2s'), createS2sModule({ connectTimeout: 60_000, verifyTimeout: 60_000 })],
      logLevel: 'info',
      config: {
        hosts: [{ domain: 'a.test', registration: 'open' }],
        listen: { s2s: [{ host: '127.0.0.1', port: 0 }] },
        s2s: { requireEncryption: false, static: { 'slow.test': `127.0.0.1:${slowTrap.port}` } },
        c2s: { authTimeout: '1s' },
      },
    });
  });
  after(async () => {
    await a?.stop();
    for (const s of slowTrap?.connections ?? []) s.destroy();
    slowTrap?.server.close();
  });

  test('P18 the auth timeout closes an inbound stream whose dialback check is still pending', { timeout: 20_000 }, async () => {
    const peer = await PlainPeer.connect(a.s2sPort, 'slow.test', 'a.test');
    peer.write(`<db:result from='slow.test' to='a.test'>${KEY}</db:result>`);
    // The check is under way: the authoritative server was reached and does not answer ...
    await slowTrap.connected;
    // ... and still the stream ends after c2s.authTimeout (1 s), not when the check gives up.
    await peer.closed;
    assert.equal(peer.streamError, 'connection-timeout');
  });
});
