/**
 * Connection limits on every listener, over real sockets: connections are counted when accepted
 * (before TLS), per address (IPv6 per /64) and in all, and a TLS handshake that never finishes is
 * closed after tls.handshakeTimeout.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { withTestServer } from '../helpers/server.js';
import { C2S_HEADER, firstData, handshake, openIdle, openRaw, waitClosed, type RawConnection } from '../helpers/raw-connections.js';
import { addressGroup, canonicalIp, cidrContains } from '../../shared/ip-addresses.js';
import { ConnectionLimits } from '../../server/net/listeners.js';
import { COMPONENT_MAX_CONNECTIONS } from '../../server/streams/component.js';

/** Long enough that no close in these tests can come from the authentication timeout. */
const NO_AUTH_TIMEOUT = { authTimeout: '10m' };
const NO_HANDSHAKE_TIMEOUT = { handshakeTimeout: '10m' };

const S2S_HEADER = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
const COMPONENT_HEADER = "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='irc.localhost'>";

async function closedAll(conns: RawConnection[], what: string): Promise<void> {
  await Promise.all(conns.map((c, i) => waitClosed(c, `${what} #${i + 1}`)));
}

function destroyAll(conns: RawConnection[]): void {
  for (const c of conns) c.socket.destroy();
}


// ---- grouping ------------------------------------------------------------------------------------

test('addresses: IPv4 counts per address, IPv4-mapped IPv6 as IPv4, IPv6 per /64', () => {
  assert.equal(addressGroup('192.0.2.7'), '192.0.2.7');
  assert.equal(addressGroup('::ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(addressGroup('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  assert.equal(addressGroup('2001:0DB8:0001:0002:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
  assert.equal(addressGroup('2001:db8:1:3::1'), '2001:db8:1:3::/64');
  assert.equal(addressGroup('::1'), '::/64');
  assert.equal(addressGroup('fe80::1%eth0'), 'fe80::/64');
  assert.equal(canonicalIp('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(canonicalIp('2001:DB8:0:0:0:0:0:1'), '2001:db8::1');
  assert.equal(canonicalIp(undefined), 'unknown');
  assert.ok(cidrContains('127.0.0.0/8', '::ffff:127.1.2.3'));
  assert.ok(cidrContains('2001:db8::/32', '2001:db8:ffff::1'));
  assert.ok(!cidrContains('2001:db8::/32', '2001:db9::1'));
  assert.ok(!cidrContains('10.0.0.0/8', '11.0.0.1'));

  const limits = new ConnectionLimits(100, 2);
  const slots = ['2001:db8:1:2::1', '2001:db8:1:2::2', '2001:db8:1:2:ffff::9'].map((ip) => limits.admit()!.claimAddress(ip));
  assert.deepEqual(slots, [true, true, false], 'three addresses of one /64 share its two slots');
  assert.equal(limits.admit()!.claimAddress('2001:db8:1:3::1'), true, 'the next /64 has its own');
  assert.equal(limits.admit()!.claimAddress('::ffff:198.51.100.1'), true);
  assert.equal(limits.admit()!.claimAddress('198.51.100.1'), true);
  assert.equal(limits.admit()!.claimAddress('198.51.100.1'), false, 'IPv4-mapped and plain IPv4 are one address');
});

// ---- c2s -----------------------------------------------------------------------------------------

test('c2s direct TLS: idle TCP connections beyond the per-address cap are closed at once, before any TLS; the cap is shared with the STARTTLS port', async () => {
  await withTestServer({ c2s: { maxConnectionsPerIp: 5, ...NO_AUTH_TIMEOUT }, tls: NO_HANDSHAKE_TIMEOUT }, async (ts) => {
    const held = await openIdle(5, ts.tlsPort);
    const excess = await openIdle(7, ts.tlsPort);
    try {
      await closedAll(excess, 'idle connection over the cap');
      const plain = await openRaw(ts.port);
      await waitClosed(plain, 'a sixth connection on the STARTTLS port');
      // The five held ones are served: a TLS handshake and a stream on one of them.
      const secure = await handshake(held[0]!.socket, ['xmpp-client']);
      const answer = firstData(secure, 'stream header');
      secure.write(C2S_HEADER);
      assert.match(await answer, /<stream:stream/);
    } finally {
      destroyAll([...held, ...excess]);
    }
  });
});

test('c2s: idle TCP connections beyond the per-address cap are closed at once on the STARTTLS port', async () => {
  await withTestServer({ c2s: { maxConnectionsPerIp: 3, ...NO_AUTH_TIMEOUT } }, async (ts) => {
    const held = await openIdle(3, ts.port);
    const excess = await openIdle(3, ts.port);
    try {
      await closedAll(excess, 'idle connection over the cap');
      const answer = firstData(held[2]!.socket, 'stream header');
      held[2]!.socket.write(C2S_HEADER);
      assert.match(await answer, /<stream:stream/);
    } finally {
      destroyAll([...held, ...excess]);
    }
  });
});

test('c2s direct TLS: a connection that never completes the TLS handshake is closed after tls.handshakeTimeout', async () => {
  await withTestServer({ c2s: NO_AUTH_TIMEOUT, tls: { handshakeTimeout: '300ms' } }, async (ts) => {
    const idle = await openRaw(ts.tlsPort);
    // A ClientHello cut short: the handshake starts and never ends.
    const partial = await openRaw(ts.tlsPort, '127.0.0.1', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
    await waitClosed(idle, 'a silent connection');
    await waitClosed(partial, 'a half-sent ClientHello');
  });
});

test('c2s direct TLS: the authentication timeout also covers a connection that never completes TLS', async () => {
  await withTestServer({ c2s: { authTimeout: '1s' }, tls: NO_HANDSHAKE_TIMEOUT }, async (ts) => {
    const idle = await openRaw(ts.tlsPort);
    await waitClosed(idle, 'a connection without a TLS handshake');
  });
});

test('c2s: c2s.maxConnections caps both client listeners together and refuses the excess at once', async () => {
  await withTestServer({ c2s: { maxConnections: 4, maxConnectionsPerIp: 50, ...NO_AUTH_TIMEOUT }, tls: NO_HANDSHAKE_TIMEOUT }, async (ts) => {
    const held = await openIdle(4, ts.port);
    const overTls = await openRaw(ts.tlsPort);
    const overPlain = await openRaw(ts.port);
    try {
      await waitClosed(overTls, 'a fifth connection (direct TLS port)');
      await waitClosed(overPlain, 'a fifth connection (STARTTLS port)');
      const warnings = ts.logLines.filter((l) => l.includes('at its connection cap'));
      assert.equal(warnings.length, 1, 'one warning, not one per refused connection');
      assert.match(warnings[0]!, /kind=c2s/);
      assert.doesNotMatch(warnings[0]!, /127\.0\.0\.1/, 'no client address');
      // A slot that frees up is taken by the next connection.
      held[0]!.socket.destroy();
      await held[0]!.closed;
      let next: RawConnection;
      for (;;) {
        next = await openRaw(ts.port);
        const answer = firstData(next.socket, 'stream header').catch(() => null);
        next.socket.write(C2S_HEADER);
        if ((await answer) !== null) break;
        // The server may not have seen the close yet: then this one was refused; try again.
      }
      next.socket.destroy();
    } finally {
      destroyAll(held);
    }
  });
});

test('c2s over IPv6 (::1): the per-address cap applies to IPv6 clients', async (t) => {
  if (!(await canBind('::1'))) return t.skip('no IPv6 loopback here');
  await withTestServer({ listen: { c2s: [{ host: '::1', port: 0 }], c2sDirectTls: [], https: [] }, c2s: { maxConnectionsPerIp: 2, ...NO_AUTH_TIMEOUT } }, async (ts) => {
    const held = await openIdle(2, ts.port, '::1');
    const excess = await openRaw(ts.port, '::1');
    try {
      await waitClosed(excess, 'a third connection from ::1');
      const answer = firstData(held[1]!.socket, 'stream header');
      held[1]!.socket.write(C2S_HEADER);
      assert.match(await answer, /<stream:stream/);
    } finally {
      destroyAll(held);
    }
  });
});

// ---- s2s -----------------------------------------------------------------------------------------

const S2S_LISTEN = { s2s: [{ host: '127.0.0.1', port: 0 }] };

test('s2s: idle connections beyond the per-address cap are closed at once', async () => {
  await withTestServer({ listen: S2S_LISTEN, c2s: { maxConnectionsPerIp: 2, ...NO_AUTH_TIMEOUT } }, async (ts) => {
    const held = await openIdle(2, ts.s2sPort);
    const excess = await openIdle(2, ts.s2sPort);
    try {
      await closedAll(excess, 'idle s2s connection over the cap');
      const answer = firstData(held[0]!.socket, 's2s stream header');
      held[0]!.socket.write(S2S_HEADER);
      assert.match(await answer, /<stream:stream/);
    } finally {
      destroyAll(held);
    }
  });
});

test('s2s: s2s.maxConnections refuses the excess at once', async () => {
  await withTestServer({ listen: S2S_LISTEN, s2s: { maxConnections: 3 }, c2s: NO_AUTH_TIMEOUT }, async (ts) => {
    const held = await openIdle(3, ts.s2sPort);
    const excess = await openRaw(ts.s2sPort);
    try {
      await waitClosed(excess, 'a fourth s2s connection');
    } finally {
      destroyAll(held);
    }
  });
});

test('s2s direct TLS: a handshake that never completes is closed after tls.handshakeTimeout', async () => {
  await withTestServer({ listen: S2S_LISTEN, c2s: NO_AUTH_TIMEOUT, tls: { handshakeTimeout: '300ms' } }, async (ts) => {
    // The first byte of a TLS record makes the port take the connection as direct TLS.
    const partial = await openRaw(ts.s2sPort, '127.0.0.1', Buffer.from([0x16, 0x03, 0x01]));
    await waitClosed(partial, 'a half-sent ClientHello on the s2s port');
  });
});

// ---- components ----------------------------------------------------------------------------------

const COMPONENTS = { components: [{ domain: 'irc.localhost', secret: 'component-secret-1' }], listen: { components: [{ host: '127.0.0.1', port: 0 }] } };

test('components: idle connections beyond the per-address cap are closed at once', async () => {
  await withTestServer({ ...COMPONENTS, c2s: { maxConnectionsPerIp: 2, ...NO_AUTH_TIMEOUT } }, async (ts) => {
    const held = await openIdle(2, ts.componentPort);
    const excess = await openIdle(2, ts.componentPort);
    try {
      await closedAll(excess, 'idle component connection over the cap');
      const answer = firstData(held[0]!.socket, 'component stream header');
      held[0]!.socket.write(COMPONENT_HEADER);
      assert.match(await answer, /<stream:stream/);
    } finally {
      destroyAll(held);
    }
  });
});

test(`components: at most ${COMPONENT_MAX_CONNECTIONS} component connections; the excess is refused at once`, async () => {
  await withTestServer({ ...COMPONENTS, c2s: { maxConnectionsPerIp: 1000, ...NO_AUTH_TIMEOUT } }, async (ts) => {
    const held = await openIdle(COMPONENT_MAX_CONNECTIONS, ts.componentPort);
    const excess = await openRaw(ts.componentPort);
    try {
      await waitClosed(excess, 'one component connection too many');
    } finally {
      destroyAll(held);
    }
  });
});

// ---- admin HTTP ----------------------------------------------------------------------------------

const ADMIN = { listen: { admin: [{ host: '127.0.0.1', port: 0 }] } };

async function healthz(conn: RawConnection): Promise<string> {
  const secure = await handshake(conn.socket, ['http/1.1']);
  const answer = firstData(secure, 'HTTP answer');
  secure.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
  return answer;
}

test('admin HTTP: idle connections beyond admin.maxConnectionsPerIp are closed at once, before TLS', async () => {
  await withTestServer({ ...ADMIN, admin: { maxConnectionsPerIp: 2 }, tls: NO_HANDSHAKE_TIMEOUT }, async (ts) => {
    const held = await openIdle(2, ts.adminPort);
    const excess = await openIdle(2, ts.adminPort);
    try {
      await closedAll(excess, 'idle admin connection over the cap');
      assert.match(await healthz(held[0]!), /^HTTP\/1\.1 200/);
    } finally {
      destroyAll(held);
    }
  });
});

test('admin HTTP: admin.maxConnections refuses the excess at once', async () => {
  await withTestServer({ ...ADMIN, admin: { maxConnections: 3, maxConnectionsPerIp: 50 }, tls: NO_HANDSHAKE_TIMEOUT }, async (ts) => {
    const held = await openIdle(3, ts.adminPort);
    const excess = await openRaw(ts.adminPort);
    try {
      await waitClosed(excess, 'a fourth admin connection');
    } finally {
      destroyAll(held);
    }
  });
});

test('admin HTTPS: a connection that never completes the TLS handshake is closed after tls.handshakeTimeout', async () => {
  await withTestServer({ ...ADMIN, tls: { handshakeTimeout: '300ms' } }, async (ts) => {
    const idle = await openRaw(ts.adminPort);
    await waitClosed(idle, 'a silent admin connection');
  });
});

function canBind(host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(0, host, () => srv.close(() => resolve(true)));
  });
}
