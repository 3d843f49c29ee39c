/**
 * The PROXY protocol (v1 and v2) on listeners that name trusted proxies, over real sockets: the
 * proxied address is the client's for connection limits and failed-login records; connections
 * from trusted proxies must send a valid header, others are taken as direct. Also the admin
 * console's X-Forwarded-For, believed only from admin.trustedProxies.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { ensureAccount, withTestServer } from '../helpers/server.js';
import { TestClient } from '../helpers/xmpp-client.js';
import { AdminClient } from '../admin/http-client.js';
import { C2S_HEADER, firstData, handshake, openRaw, proxyV1, proxyV2, waitClosed } from '../helpers/raw-connections.js';
import { parseProxyHeader, PROXY_V2_SIGNATURE } from '../../server/net/proxy-protocol.js';
import { ConnectionLimits, listen } from '../../server/net/listeners.js';


async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const BEHIND_PROXY = { proxyProtocol: ['127.0.0.1'] };

// ---- the header ----------------------------------------------------------------------------------

test('PROXY headers: v1 and v2 parsed, LOCAL and UNKNOWN mean the connection itself, malformed ones refused', () => {
  const done = (b: Buffer) => {
    const r = parseProxyHeader(b);
    assert.equal(r.status, 'done', JSON.stringify(r));
    return r as Extract<typeof r, { status: 'done' }>;
  };
  const v1 = proxyV1('198.51.100.7', 40001);
  assert.deepEqual(done(Buffer.concat([v1, Buffer.from('<stream')])), { status: 'done', length: v1.length, source: { address: '198.51.100.7', port: 40001 } });
  assert.deepEqual(done(proxyV1('2001:DB8::7')).source, { address: '2001:db8::7', port: 40000 });
  assert.deepEqual(done(Buffer.from('PROXY UNKNOWN\r\n')).source, null);
  const v2 = proxyV2('203.0.113.9', 1234, { tlv: Buffer.from([0x04, 0x00, 0x02, 0xab, 0xcd]) });
  assert.deepEqual(done(v2), { status: 'done', length: v2.length, source: { address: '203.0.113.9', port: 1234 } });
  assert.deepEqual(done(proxyV2('2001:db8:1:2::9')).source, { address: '2001:db8:1:2::9', port: 40000 });
  const local = Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  assert.deepEqual(done(local).source, null);

  for (const cut of [1, 5, 11, 14, 20]) assert.equal(parseProxyHeader(v2.subarray(0, cut)).status, 'incomplete', `v2 cut at ${cut}`);
  for (const cut of [1, 6, 20]) assert.equal(parseProxyHeader(v1.subarray(0, cut)).status, 'incomplete', `v1 cut at ${cut}`);

  const invalid = [
    Buffer.from("<?xml version='1.0'?>"),
    Buffer.from('PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n'),
    Buffer.from('PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\n'),
    Buffer.from('PROXY TCP4 192.0.2.1 127.0.0.1 1 99999\r\n'),
    Buffer.from('PROXY UDP4 192.0.2.1 127.0.0.1 1 2\r\n'),
    Buffer.from('PROXY TCP4 192.0.2.1 127.0.0.1 1\r\n'),
    Buffer.from('PROXY ' + 'x'.repeat(200)),
    Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x31, 0x11, 0x00, 0x0c])]),
    Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x22, 0x11, 0x00, 0x0c])]),
    Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff])]),
    Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4])]),
  ];
  for (const b of invalid) assert.equal(parseProxyHeader(b).status, 'invalid', JSON.stringify(b.toString('latin1')));
});

test('listen(): the client address handed to the stream is the PROXY header\'s; LOCAL keeps the proxy\'s; a silent proxy is cut off after the header timeout', async () => {
  const seen: string[] = [];
  const bound = await listen({
    kind: 'test',
    address: { host: '127.0.0.1', port: 0, proxyProtocol: ['127.0.0.0/8'] },
    limits: new ConnectionLimits(100, 100),
    proxyHeaderTimeout: 200,
    onConnection(socket, ip) {
      seen.push(ip);
      socket.end(ip);
    },
  });
  try {
    const ask = async (header: Buffer): Promise<string> => {
      const c = await openRaw(bound.port, '127.0.0.1', header);
      return firstData(c.socket, 'the address');
    };
    assert.equal(await ask(proxyV1('198.51.100.7')), '198.51.100.7');
    assert.equal(await ask(proxyV2('2001:db8::7')), '2001:db8::7');
    assert.equal(await ask(proxyV2('::ffff:c000:204')), '192.0.2.4');
    assert.equal(await ask(Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])])), '127.0.0.1');
    const silent = await openRaw(bound.port);
    await waitClosed(silent, 'a proxy that never sends its header');
    assert.equal(seen.length, 4, 'the silent connection never reached a stream');
  } finally {
    bound.server.close();
  }
});

// ---- c2s -----------------------------------------------------------------------------------------

test('c2s with PROXY v1: the per-address limit counts the proxied address, not the proxy\'s', async () => {
  await withTestServer({ listen: { c2s: [{ host: '127.0.0.1', port: 0, ...BEHIND_PROXY }] }, c2s: { maxConnectionsPerIp: 2, requireEncryption: false } }, async (ts) => {
    const open = async (client: string) => {
      const c = await openRaw(ts.port, '127.0.0.1', Buffer.concat([proxyV1(client), Buffer.from(C2S_HEADER)]));
      return { c, answer: firstData(c.socket, `stream of ${client}`).catch(() => null) };
    };
    const first = await open('198.51.100.7');
    const second = await open('198.51.100.7');
    assert.match((await first.answer) ?? '', /<stream:stream/);
    assert.match((await second.answer) ?? '', /<stream:stream/);
    const third = await open('198.51.100.7');
    await waitClosed(third.c, 'a third connection of the same proxied client');
    assert.equal(await third.answer, null, 'refused before any stream');
    // Another client behind the same proxy (the same peer address) is served.
    const other = await open('198.51.100.8');
    assert.match((await other.answer) ?? '', /<stream:stream/);
    for (const x of [first, second, other]) x.c.socket.destroy();
  });
});

test('P7 c2s direct TLS with PROXY v2 (IPv6 client): a failed login is recorded with the proxied address', async () => {
  await withTestServer({ listen: { c2sDirectTls: [{ host: '127.0.0.1', port: 0, ...BEHIND_PROXY }] } }, async (ts) => {
    await ensureAccount(ts, 'alice');
    const c = await TestClient.connect({ port: ts.tlsPort, directTls: true, proxyHeader: proxyV2('2001:db8:5:6::7') });
    try {
      const outcome = await c.authenticate('alice', 'not-the-password');
      assert.equal(outcome.name, 'failure');
      const logs = ts.server.ctx.storage.privacyLogs;
      await waitFor('the failed-login record', async () => (await logs.listFailedLogins()).length === 1);
      const [record] = await logs.listFailedLogins();
      assert.equal(record!.ip, '2001:db8:5:6::7');
    } finally {
      c.destroy();
    }
  });
});

test('c2s: a trusted proxy that sends no PROXY header or a malformed one is disconnected', async () => {
  await withTestServer({ listen: { c2s: [{ host: '127.0.0.1', port: 0, ...BEHIND_PROXY }] } }, async (ts) => {
    const bad = [
      Buffer.from(C2S_HEADER),
      Buffer.from('PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n' + C2S_HEADER),
      Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x31, 0x11, 0x00, 0x0c]), Buffer.alloc(12)]),
      Buffer.from('PROXY ' + 'x'.repeat(200)),
    ];
    for (const [i, first] of bad.entries()) {
      const c = await openRaw(ts.port, '127.0.0.1', first);
      const answer = firstData(c.socket, 'anything').catch(() => null);
      await waitClosed(c, `malformed header #${i + 1}`);
      assert.equal(await answer, null, `no stream for malformed header #${i + 1}`);
    }
  });
});

test('c2s: a PROXY header from an address that is not a trusted proxy is not believed', async () => {
  await withTestServer({ listen: { c2s: [{ host: '127.0.0.1', port: 0, proxyProtocol: ['192.0.2.0/24'] }] } }, async (ts) => {
    const c = await openRaw(ts.port, '127.0.0.1', Buffer.concat([proxyV1('198.51.100.7'), Buffer.from(C2S_HEADER)]));
    let answer = '';
    c.socket.on('data', (d: Buffer) => (answer += d.toString()));
    await waitClosed(c, 'a direct client that sent a PROXY header');
    assert.match(answer, /not-well-formed/, 'the header is stream content, and not XML');
  });
});

// ---- s2s -----------------------------------------------------------------------------------------

test('s2s with PROXY v2 then direct TLS: the header is read before the TLS sniffing, and the limit counts the proxied address', async () => {
  await withTestServer({ listen: { s2s: [{ host: '127.0.0.1', port: 0, ...BEHIND_PROXY }] }, c2s: { maxConnectionsPerIp: 1 } }, async (ts) => {
    const first = await openRaw(ts.s2sPort, '127.0.0.1', proxyV2('198.51.100.7'));
    const secure = await handshake(first.socket, ['xmpp-server']);
    assert.equal(secure.alpnProtocol, 'xmpp-server');
    const second = await openRaw(ts.s2sPort, '127.0.0.1', proxyV2('198.51.100.7'));
    await waitClosed(second, 'a second connection of the same proxied server');
    const other = await openRaw(ts.s2sPort, '127.0.0.1', proxyV2('198.51.100.8'));
    const otherSecure = await handshake(other.socket, ['xmpp-server']);
    secure.destroy();
    otherSecure.destroy();
  });
});

// ---- admin HTTP ----------------------------------------------------------------------------------

test('P7 admin HTTPS with PROXY v1: a failed console login is recorded with the proxied address', async () => {
  await withTestServer({ listen: { admin: [{ host: '127.0.0.1', port: 0, ...BEHIND_PROXY }] } }, async (ts) => {
    const client = new AdminClient(ts.adminPort, true, () => {
      const raw = tcpConnect({ host: '127.0.0.1', port: ts.adminPort });
      raw.write(proxyV1('203.0.113.5'));
      return tlsConnect({ socket: raw, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    });
    await client.login('mallory@localhost', 'wrong');
    const logs = ts.server.ctx.storage.privacyLogs;
    await waitFor('the failed-login record', async () => (await logs.listFailedLogins()).length === 1);
    assert.equal((await logs.listFailedLogins())[0]!.ip, '203.0.113.5');
  });
});

test('P7 admin: X-Forwarded-For names the client only when the peer is in admin.trustedProxies', async () => {
  await withTestServer({ listen: { admin: [{ host: '127.0.0.1', port: 0 }] }, admin: { trustedProxies: ['127.0.0.2'] } }, async (ts) => {
    const viaTrusted = new AdminClient(ts.adminPort, true, () =>
      tlsConnect({ socket: tcpConnect({ host: '127.0.0.1', port: ts.adminPort, localAddress: '127.0.0.2' }), servername: 'localhost', rejectUnauthorized: false }),
    );
    const direct = new AdminClient(ts.adminPort);
    const forwarded = { headers: { 'x-forwarded-for': '192.0.2.50, 203.0.113.77, 127.0.0.2' } };
    const form = await viaTrusted.get('/login', forwarded);
    assert.equal(form.status, 200);
    await viaTrusted.post('/login', { username: 'mallory@localhost', password: 'wrong' }, forwarded);
    await direct.get('/login', forwarded);
    await direct.post('/login', { username: 'mallory@localhost', password: 'wrong' }, forwarded);
    const logs = ts.server.ctx.storage.privacyLogs;
    await waitFor('two failed-login records', async () => (await logs.listFailedLogins()).length === 2);
    const ips = (await logs.listFailedLogins()).map((r) => r.ip).sort();
    // The last address that is not a trusted proxy; from an untrusted peer the header counts for nothing.
    assert.deepEqual(ips, ['127.0.0.1', '203.0.113.77']);
  });
});
