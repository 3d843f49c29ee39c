/** `gatehouse user del` against a running server goes through the server (control socket). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, startServerProcess } from '../helpers/server-process.js';
import { TestClient } from '../helpers/xmpp-client.js';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

const isPresence = (from: string, type?: string) => (el: Element) => el.name === 'presence' && el.attrs.from === from && el.attrs.type === type;

test('P23 gatehouse user del on a running server closes the account\'s sessions and takes it off its contacts\' rosters', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-userdel-'));
  const config = {
    dataDir: dir,
    hosts: [{ domain: 'localhost', registration: 'open' }],
    listen: { c2s: [{ host: '127.0.0.1', port: 0 }], c2sDirectTls: [], https: [], components: [], s2s: [], admin: [] },
    auth: { scramIterations: 4096 },
    log: { level: 'warn' },
  };
  const server = await startServerProcess(dir, config);
  try {
    const login = async (name: string) => {
      const c = await TestClient.connect({ port: server.port });
      assert.equal((await c.register(name, `${name}-pw`)).attrs.type, 'result');
      await c.login(name, `${name}-pw`);
      c.send(x('presence'));
      return c;
    };
    const alice = await login('alice');
    const bob = await login('bob');
    // Roster pushes go to resources that asked for the roster (RFC 6121 2.1.6).
    assert.equal((await bob.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })))).attrs.type, 'result');
    alice.send(x('presence', { to: 'bob@localhost', type: 'subscribe' }));
    await bob.expect(isPresence('alice@localhost', 'subscribe'));
    bob.send(x('presence', { to: 'alice@localhost', type: 'subscribed' }));
    await alice.expect(isPresence('bob@localhost', 'subscribed'));

    const del = await runCli(['user', 'del', 'alice@localhost', '--config', join(dir, 'gatehouse.yaml')]);
    assert.equal(del.code, 0, del.out);
    assert.match(del.stdout, /deleted alice@localhost/);

    // The live session ends with a stream error instead of running on for a deleted account.
    await waitFor(() => alice.closed);
    assert.equal(alice.streamError, 'not-authorized');
    // Bob is told, and his roster loses alice at once (a roster push), as with an in-band <remove/>.
    await bob.expect(isPresence('alice@localhost', 'unsubscribe'));
    const push = await bob.expect((el) => el.name === 'iq' && el.attrs.type === 'set' && el.getChild('query', NS.roster)?.getChild('item')?.attrs.subscription === 'remove');
    assert.equal(push.getChild('query', NS.roster)?.getChild('item')?.attrs.jid, 'alice@localhost');

    const again = await runCli(['user', 'del', 'alice@localhost', '--config', join(dir, 'gatehouse.yaml')]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /no account alice@localhost/);
    const relogin = await TestClient.connect({ port: server.port });
    await assert.rejects(relogin.login('alice', 'alice-pw'));
    relogin.destroy();
    bob.destroy();
  } finally {
    server.proc.kill('SIGTERM');
    await server.exited;
    rmSync(dir, { recursive: true, force: true });
  }
});

async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
