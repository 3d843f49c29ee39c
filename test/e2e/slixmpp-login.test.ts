/**
 * slixmpp (Debian's python3-slixmpp 1.8) chooses SCRAM-SHA-256-PLUS with tls-unique on TLS 1.3.
 * It must get in on its first attempt: a refused channel-binding type made it fall back twice per
 * login, each fallback a failed login (P7) that fed the guard until the user was locked out.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, ensureAccount, type TestServer } from '../helpers/server.js';
import { loginGuard } from '../../server/modules/login-guard/failed-login-guard.js';
import { SlixmppPeer } from './slixmpp-peer.js';
import { skipWithout } from '../helpers/requirements.js';

let ts: TestServer;

before(async () => {
  // The test's address (loopback) is an ordinary client address here, guarded like any other.
  ts = await startTestServer({ config: { loginGuard: { trustedProxies: [] } } });
});
after(async () => {
  await ts.stop();
});

test('P7 slixmpp from a non-trusted address logs in 8 times in a row, each on the first attempt, and no failed login is recorded', { skip: skipWithout('slixmpp') }, async () => {
  await ensureAccount(ts, 'carol');
  const guard = loginGuard(ts.server.ctx);
  assert.ok(guard, 'the failed-login guard is loaded');
  assert.equal(guard.trusted('127.0.0.1'), false);
  for (let i = 1; i <= 8; i++) {
    const peer = SlixmppPeer.spawn(['127.0.0.1', String(ts.port), 'carol@localhost', 'pw-carol', 'nobody@localhost', 'auto']);
    try {
      const started = await peer.expect((e) => e.event === 'session_start' || e.event === 'disconnected', `login ${i}`, 30_000);
      assert.equal(started.event, 'session_start', `login ${i}: ${JSON.stringify(peer.log)}`);
      assert.equal(started.mechanism, 'SCRAM-SHA-256-PLUS', `login ${i}`);
      assert.deepEqual(peer.log.filter((e) => e.event === 'failed_auth'), [], `login ${i} went through a failure round`);
      peer.command({ cmd: 'quit' });
      await peer.exited;
    } finally {
      peer.proc.kill();
    }
  }
  const failures = await ts.server.ctx.storage.privacyLogs.listFailedLogins({ limit: 100 });
  assert.deepEqual(failures, []);
  assert.equal(guard.failureCount('ip', '127.0.0.1'), 0);
  assert.equal(guard.failureCount('account', 'carol@localhost'), 0);
});
