/**
 * RFC 6120 stream errors and hostile input: each condition is provoked over a real socket, and
 * after every attack another client must still be served.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { TestClient } from '../helpers/xmpp-client.js';
import { makeVerifier } from '../../server/auth/scram.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

const HEADER = (attrs = `to='localhost' version='1.0'`, ns = 'jabber:client') =>
  `<?xml version='1.0'?><stream:stream xmlns='${ns}' xmlns:stream='${NS.stream}' ${attrs}>`;

/** A raw TCP peer that reads everything the server says until it closes the connection. */
async function rawExchange(port: number, input: string | Buffer | (string | Buffer)[], timeoutMs = 5000): Promise<string> {
  const socket: Socket = connect({ host: '127.0.0.1', port });
  await new Promise<void>((r, j) => socket.once('connect', r).once('error', j));
  let out = '';
  socket.on('data', (d) => (out += d.toString('utf8')));
  for (const chunk of Array.isArray(input) ? input : [input]) socket.write(chunk);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`server did not close the connection; got: ${out.slice(0, 500)}`));
    }, timeoutMs);
    socket.on('close', () => (clearTimeout(timer), resolve()));
    socket.on('error', () => {});
  });
  return out;
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function streamErrorOf(output: string): string | null {
  const m = /<stream:error><([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-streams'/.exec(output);
  return m ? m[1]! : null;
}

describe('c2s stream errors', () => {
  let ts: TestServer;

  before(async () => {
    ts = await startTestServer({ config: { c2s: { requireEncryption: false, authTimeout: '2s' } } });
    const verifiers = [makeVerifier('pw', 'SHA-256', 4096), makeVerifier('pw', 'SHA-1', 4096)];
    await ts.server.ctx.storage.accounts.create('alice', 'localhost', verifiers, new Date());
    await ts.server.ctx.storage.accounts.create('bob', 'localhost', verifiers, new Date());
  });
  after(() => ts.stop());

  /** Another client can still log in and get a ping answered. */
  async function serverStillServes(): Promise<void> {
    const c = await ts.client();
    await c.login('bob', 'pw');
    const pong = await c.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
    assert.equal(pong.attrs.type, 'result');
    await c.close();
  }

  const cases: [string, string | string[], string][] = [
    ['not-well-formed for mismatched tags', HEADER() + '<message><body></message>', 'not-well-formed'],
    ['invalid-namespace for a jabber:server stream on c2s', HEADER(undefined, 'jabber:server'), 'invalid-namespace'],
    ['invalid-namespace for a wrong stream namespace', `<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='localhost' version='1.0'>`, 'invalid-namespace'],
    ['host-unknown for a domain not served', HEADER(`to='elsewhere.example' version='1.0'`), 'host-unknown'],
    ['bad-format for a stream to a non-domain', HEADER(`to='user@localhost' version='1.0'`), 'bad-format'],
    ['unsupported-version for version 2.0', HEADER(`to='localhost' version='2.0'`), 'unsupported-version'],
    ['unsupported-version without version', HEADER(`to='localhost'`), 'unsupported-version'],
    ['restricted-xml for a DOCTYPE', `<?xml version='1.0'?><!DOCTYPE stream>` + HEADER().replace(`<?xml version='1.0'?>`, ''), 'restricted-xml'],
    ['restricted-xml for a comment', HEADER() + '<!-- hello -->', 'restricted-xml'],
    ['restricted-xml for a processing instruction', HEADER() + `<?evil stuff?>`, 'restricted-xml'],
    ['restricted-xml for an undeclared entity', HEADER() + '<iq type="get" id="1">&ent;</iq>', 'restricted-xml'],
    ['not-authorized for a stanza before authentication', HEADER() + `<message to='bob@localhost'><body>x</body></message>`, 'not-authorized'],
    ['policy-violation for a stanza over the pre-auth limit', [HEADER(), `<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>${'a'.repeat(20_000)}</username></query></iq>`], 'policy-violation'],
  ];

  for (const [name, input, condition] of cases) {
    test(name, async () => {
      const out = await rawExchange(ts.port, input);
      assert.equal(streamErrorOf(out), condition, out.slice(0, 400));
      assert.match(out, /<\/stream:stream>$/);
      await serverStillServes();
    });
  }

  test('billion laughs is refused as restricted-xml without expanding anything', async () => {
    const doc =
      `<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">` +
      `<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>` +
      HEADER().replace(`<?xml version='1.0'?>`, '') + '<message>&lol3;</message>';
    const out = await rawExchange(ts.port, doc);
    assert.equal(streamErrorOf(out), 'restricted-xml');
    assert.doesNotMatch(out, /lollol/);
    await serverStillServes();
  });

  test('an external entity is never fetched', async () => {
    const doc = `<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>` + HEADER().replace(`<?xml version='1.0'?>`, '') + '<message>&e;</message>';
    const out = await rawExchange(ts.port, doc);
    assert.equal(streamErrorOf(out), 'restricted-xml');
    assert.doesNotMatch(out, /root:/);
  });

  test('random bytes get a stream error, never a crash', async () => {
    let seed = 42;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 256);
    for (let i = 0; i < 20; i++) {
      const bytes = Buffer.from(Array.from({ length: 200 + i * 50 }, rand));
      const out = await rawExchange(ts.port, i % 2 ? Buffer.concat([Buffer.from(HEADER()), bytes]) : bytes);
      assert.ok(streamErrorOf(out), `no stream error for random input ${i}: ${out.slice(0, 200)}`);
    }
    await serverStillServes();
  });

  test('a truncated stream is cleaned up when the peer goes away', async () => {
    const c = await ts.client();
    await c.login('alice', 'pw', { resource: 'trunc' });
    c.writeRaw(`<message to='bob@localhost'><body>half`);
    c.destroy();
    await waitFor('the session to end with its connection', () => !ts.server.ctx.sessions.get('alice@localhost/trunc'));
    await serverStillServes();
  });

  test('after authentication a stanza over 256 KiB is a policy-violation (a 100 MB stanza is not buffered)', async () => {
    const c = await ts.client();
    await c.login('alice', 'pw');
    const heapBefore = process.memoryUsage().heapUsed;
    c.writeRaw(`<message to='bob@localhost'><body>`);
    const chunk = 'A'.repeat(64 * 1024);
    let sent = 0;
    while (sent < 100 * 1024 * 1024 && !c.closed) {
      const ok = c.tlsSocketOrSocket().write(chunk);
      sent += chunk.length;
      if (!ok) await Promise.race([new Promise((r) => c.tlsSocketOrSocket().once('drain', r)), c.waitClosed(10_000).catch(() => {})]);
    }
    await c.waitClosed(10_000);
    assert.equal(c.streamError, 'policy-violation');
    assert.ok(sent < 100 * 1024 * 1024, 'the server read the whole 100 MB instead of refusing early');
    assert.ok(process.memoryUsage().heapUsed - heapBefore < 50 * 1024 * 1024, 'heap grew by more than 50 MB');
    await serverStillServes();
  });

  test('10,000 nested elements are refused as policy-violation', async () => {
    const c = await ts.client();
    await c.login('alice', 'pw');
    c.writeRaw(`<message to='bob@localhost'>` + '<a>'.repeat(10_000));
    await c.waitClosed();
    assert.equal(c.streamError, 'policy-violation');
    await serverStillServes();
  });

  test('conflict: a second session with the same resource replaces the first', async () => {
    const first = await ts.client();
    await first.login('alice', 'pw', { resource: 'same' });
    const second = await ts.client();
    await second.login('alice', 'pw', { resource: 'same' });
    await first.waitClosed();
    assert.equal(first.streamError, 'conflict');
    const pong = await second.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
    assert.equal(pong.attrs.type, 'result');
    await second.close();
  });

  test('invalid-from: a client cannot send as someone else', async () => {
    const c = await ts.client();
    await c.login('alice', 'pw');
    c.send(x('message', { to: 'bob@localhost', from: 'bob@localhost/x' }, x('body', {}, 'spoof')));
    await c.waitClosed();
    assert.equal(c.streamError, 'invalid-from');
  });

  test('unsupported-stanza-type for an unknown top-level element', async () => {
    const c = await ts.client();
    await c.login('alice', 'pw');
    c.writeRaw(`<foo xmlns='jabber:client'/>`);
    await c.waitClosed();
    assert.equal(c.streamError, 'unsupported-stanza-type');
  });

  test('connection-timeout for a peer that never authenticates', async () => {
    const socket = connect({ host: '127.0.0.1', port: ts.port });
    let out = '';
    socket.on('data', (d) => (out += d));
    await new Promise<void>((r) => socket.once('connect', r));
    socket.write(HEADER());
    await new Promise<void>((resolve) => socket.on('close', () => resolve()));
    assert.equal(streamErrorOf(out), 'connection-timeout');
  });

  test('a client that stops reading is disconnected instead of buffering without bound', async () => {
    const reader = await ts.client();
    await reader.login('bob', 'pw', { resource: 'stuck' });
    reader.send(x('presence'));
    reader.pauseReading();
    const sender = await ts.client();
    await sender.login('alice', 'pw', { resource: 'flood' });
    const body = 'B'.repeat(100_000);
    for (let i = 0; i < 300 && !reader.closed; i++) {
      sender.send(x('message', { to: 'bob@localhost/stuck', type: 'chat' }, x('body', {}, body)));
      if (i % 20 === 0) await sender.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
    }
    await waitFor('the non-reading client to be disconnected', () => !ts.server.ctx.sessions.get('bob@localhost/stuck'), 10_000);
    const pong = await sender.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
    assert.equal(pong.attrs.type, 'result');
  });
});

describe('c2s encryption policy', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(() => ts.stop());

  test('P20 authentication is not offered before TLS, and STARTTLS is required', async () => {
    const c = await TestClient.connect({ port: ts.port, plain: true });
    assert.deepEqual(c.mechanisms(), []);
    assert.ok(c.streamFeatures?.getChild('starttls', NS.tls)?.getChild('required'));
    c.writeRaw(`<auth xmlns='${NS.sasl}' mechanism='PLAIN'>AGFsaWNlAHB3</auth>`);
    await c.waitClosed();
    assert.equal(c.streamError, 'policy-violation');
  });

  test('P20 TLS 1.2 or newer is negotiated, and TLS 1.1 is refused', async () => {
    const c = await ts.client();
    const protocol = c.tlsSocket?.getProtocol();
    assert.ok(protocol === 'TLSv1.2' || protocol === 'TLSv1.3', String(protocol));
    const { connect: tlsConnect } = await import('node:tls');
    const refused = await new Promise<boolean>((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port: ts.tlsPort, rejectUnauthorized: false, maxVersion: 'TLSv1.1', minVersion: 'TLSv1' });
      s.once('secureConnect', () => (s.destroy(), resolve(false)));
      s.once('error', () => resolve(true));
    });
    assert.ok(refused, 'a TLS 1.1 handshake succeeded');
  });

  test('P20 direct TLS (XEP-0368) offers SCRAM with channel binding', async () => {
    const c = await ts.client({ directTls: true });
    assert.ok(c.mechanisms().includes('SCRAM-SHA-256-PLUS'));
    assert.ok(c.mechanisms().includes('SCRAM-SHA-1'));
  });
});

describe('direct TLS without a server name', () => {
  test('a client connecting by IP address (no SNI) still gets a certificate and a stream', async () => {
    const ts = await startTestServer();
    try {
      const { connect: tlsConnect } = await import('node:tls');
      const socket = tlsConnect({ host: '127.0.0.1', port: ts.tlsPort, rejectUnauthorized: false, ALPNProtocols: ['xmpp-client'] });
      await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
      let out = '';
      socket.on('data', (d) => (out += d));
      socket.write(HEADER());
      await waitFor('stream features', () => out.includes('<stream:features>'));
      socket.destroy();
    } finally {
      await ts.stop();
    }
  });
});
