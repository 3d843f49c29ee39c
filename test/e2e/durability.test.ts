/**
 * P5: a message accepted for an offline user survives kill -9 of the server process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServerProcess } from '../helpers/server-process.js';
import { TestClient } from '../helpers/xmpp-client.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

test('P5 a message to an offline user is delivered after the server was killed with SIGKILL', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-kill-'));
  const config = {
    dataDir: dir,
    hosts: [{ domain: 'localhost', registration: 'open' }],
    listen: { c2s: [{ host: '127.0.0.1', port: 0 }], c2sDirectTls: [], https: [] },
    auth: { scramIterations: 4096 },
    log: { level: 'warn' },
  };
  try {
    let server = await startServerProcess(dir, config);
    const alice = await TestClient.connect({ port: server.port });
    assert.equal((await alice.register('alice', 'alice-pw')).attrs.type, 'result');
    await alice.login('alice', 'alice-pw');
    const bobReg = await TestClient.connect({ port: server.port });
    assert.equal((await bobReg.register('bob', 'bob-pw')).attrs.type, 'result');
    bobReg.destroy();

    const marker = `durable-${Date.now()}`;
    alice.send(x('message', { to: 'bob@localhost', type: 'chat', id: 'm1' }, x('body', {}, marker)));
    // Stanzas of one stream are handled in order, so the ping's answer means the message was accepted.
    const pong = await alice.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
    assert.equal(pong.attrs.type, 'result');
    server.proc.kill('SIGKILL');
    assert.equal(await server.exited, 'SIGKILL');
    alice.destroy();

    server = await startServerProcess(dir, config);
    try {
      const bob = await TestClient.connect({ port: server.port });
      await bob.login('bob', 'bob-pw');
      bob.send(x('presence'));
      const msg = await bob.expect((el) => el.name === 'message' && el.getChildText('body') === marker);
      assert.equal(msg.attrs.from?.split('/')[0], 'alice@localhost');
      assert.ok(msg.getChild('delay', NS.delay), 'no delay stamp on the offline message');
      bob.destroy();
    } finally {
      server.proc.kill('SIGTERM');
      await server.exited;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
