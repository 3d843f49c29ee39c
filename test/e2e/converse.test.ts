/**
 * A real web client in a real browser (issue #15): Converse.js in Debian's headless Chromium logs
 * in over WebSocket (RFC 7395, wss on the HTTPS service with the self-signed test certificate) and
 * exchanges messages with a slixmpp user on TCP, then uploads a file (XEP-0363: Converse finds the
 * upload service in disco, asks for a slot and PUTs from the page's origin, so CORS matters) and
 * the slixmpp user gets its URL and downloads it. The handle of test/helpers/converse.ts drives it.
 * GATEHOUSE_SCREENSHOTS=DIR keeps a screenshot of the chat in DIR.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { startUploadServer } from '../helpers/upload-server.js';
import { skipWithout } from '../helpers/requirements.js';
import { SlixmppPeer } from './slixmpp-peer.js';
import { startConverse, type ConverseHandle } from '../helpers/converse.js';

const skip = skipWithout('chromium') || skipWithout('slixmpp');

test('Converse.js in headless Chromium logs in over WebSocket, exchanges messages with a slixmpp user and uploads a file the user downloads', { skip, timeout: 120_000 }, async (t) => {
  const web = await startUploadServer({ logLevel: 'info' });
  const ts = web.ts;
  let converse: ConverseHandle | null = null;
  let bob: SlixmppPeer | null = null;
  try {
    for (const name of ['alice', 'bob']) {
      const c = await ts.client();
      assert.equal((await c.register(name, `${name}-password`)).attrs.type, 'result');
      await c.close();
    }
    bob = SlixmppPeer.spawn(['127.0.0.1', String(ts.port), 'bob@localhost', 'bob-password', 'alice@localhost'], { SSL_CERT_FILE: web.ca.caFile });
    await bob.expect((e) => e.event === 'session_start', 'slixmpp login');

    converse = await startConverse({ websocketUrl: `wss://localhost:${web.port}/xmpp-websocket`, jid: 'alice@localhost', password: 'alice-password' });
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

    // An upload from the page: Converse discovers upload.localhost, PUTs cross-origin and sends the URL.
    const content = 'a small file from the browser\n';
    await converse.evaluate(`(async () => {
      const chat = await window.gatehouseTest.api.chats.get('bob@localhost');
      const file = new File([${JSON.stringify(content)}], 'from the browser.txt', { type: 'text/plain' });
      await chat.sendFiles([file]);
      return true;
    })()`);
    const shared = await bob.expect((e) => e.event === 'message' && typeof e.body === 'string' && e.body.startsWith('https://'), 'the upload URL from Converse', 30_000);
    assert.match(String(shared.body), /^https:\/\/localhost:\d+\/upload\/[A-Za-z0-9_-]{24}\.txt$/);
    bob.command({ cmd: 'download', url: shared.body });
    const fetched = await bob.expect((e) => e.event === 'downloaded', 'the download by slixmpp', 30_000);
    assert.equal(fetched.status, 200);
    assert.equal(fetched.sha256, createHash('sha256').update(content).digest('hex'));
    assert.match(String(fetched.disposition), /^inline; filename="from the browser.txt"/);

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
    await web.stop();
  }
});
