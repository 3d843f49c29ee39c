/**
 * A real web client in a real browser (issue #15): Converse.js in Debian's headless Chromium logs
 * in over WebSocket (RFC 7395, wss on the HTTPS service with the self-signed test certificate) and
 * exchanges messages with a slixmpp user on TCP. The handle of test/helpers/converse.ts drives it;
 * further steps (an upload) extend this test with it.
 * GATEHOUSE_SCREENSHOTS=DIR keeps a screenshot of the chat in DIR.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer } from '../helpers/server.js';
import { skipWithout } from '../helpers/requirements.js';
import { SlixmppPeer } from './slixmpp-peer.js';
import { startConverse, type ConverseHandle } from '../helpers/converse.js';
import { httpsListeners } from '../../server/http/module.js';

const skip = skipWithout('chromium') || skipWithout('slixmpp');

test('Converse.js in headless Chromium logs in over WebSocket and exchanges messages with a slixmpp user', { skip, timeout: 120_000 }, async (t) => {
  const ts = await startTestServer({ config: { listen: { https: [{ host: '127.0.0.1', port: 0 }] } }, logLevel: 'info' });
  let converse: ConverseHandle | null = null;
  let bob: SlixmppPeer | null = null;
  try {
    for (const name of ['alice', 'bob']) {
      const c = await ts.client();
      assert.equal((await c.register(name, `${name}-password`)).attrs.type, 'result');
      await c.close();
    }
    bob = SlixmppPeer.spawn(['127.0.0.1', String(ts.port), 'bob@localhost', 'bob-password', 'alice@localhost']);
    await bob.expect((e) => e.event === 'session_start', 'slixmpp login');

    const port = httpsListeners(ts.server.ctx)[0]!.port;
    converse = await startConverse({ websocketUrl: `wss://localhost:${port}/xmpp-websocket`, jid: 'alice@localhost', password: 'alice-password' });
    const session = ts.server.ctx.sessions.ofAccount('alice@localhost');
    assert.equal(session.length, 1, 'alice has one session, on the WebSocket');

    // Converse to slixmpp, which echoes to the sender.
    await converse.sendMessage('bob@localhost', 'hello from the browser');
    const got = await bob.expect((e) => e.event === 'message' && e.body === 'hello from the browser', 'the message from Converse');
    assert.equal(got.frm, 'alice@localhost');
    const echo = await converse.message('echo: hello from the browser');
    assert.match(echo.from, /^bob@localhost\//);

    // slixmpp to Converse, to the bare JID.
    bob.command({ cmd: 'message', to: 'alice@localhost', body: 'hi from slixmpp' });
    const hi = await converse.message('hi from slixmpp');
    assert.match(hi.from, /^bob@localhost\//);

    const keep = process.env.GATEHOUSE_SCREENSHOTS;
    if (keep) {
      mkdirSync(keep, { recursive: true });
      await converse.screenshot(join(keep, 'converse.png'));
      t.diagnostic(`screenshot: ${join(keep, 'converse.png')}`);
    }
  } finally {
    bob?.command({ cmd: 'quit' });
    bob?.proc.kill();
    await converse?.close();
    await ts.stop();
  }
});
