/**
 * Entity capabilities with an independent client: slixmpp (Debian's python3-slixmpp) with its
 * xep_0115 and xep_0163 plugins advertises caps with '+notify' features in its presence; the
 * server asks it with disco#info node#ver, verifies slixmpp's own answer and learns the features.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, ensureAccount, type TestServer } from '../helpers/server.js';
import type { CapsFeaturesEvent } from '../../server/modules/caps/caps.js';
import { SlixmppPeer } from './slixmpp-peer.js';
import { skipWithout } from '../helpers/requirements.js';

let ts: TestServer;

before(async () => {
  ts = await startTestServer({ logLevel: 'info' });
});
after(async () => {
  await ts.stop();
});

test("slixmpp's xep_0115 caps are verified and its +notify interests learnt", { skip: skipWithout('slixmpp') }, async () => {
  await ensureAccount(ts, 'sam');
  const caps = ts.server.ctx.services.need('caps');
  const learnt = new Promise<CapsFeaturesEvent>((resolve) => {
    const off = caps.onFeatures((e) => {
      if (e.observer === 'sam@localhost' && e.jid.startsWith('sam@localhost/') && e.features.has('urn:xmpp:avatar:metadata+notify')) {
        off();
        resolve(e);
      }
    });
  });
  const peer = SlixmppPeer.spawn(['127.0.0.1', String(ts.port), 'sam@localhost', 'pw-sam', 'nobody@localhost', 'auto', 'urn:xmpp:avatar:metadata,urn:xmpp:omemo:2:devices']);
  try {
    const started = await peer.expect((e) => e.event === 'session_start' || e.event === 'disconnected', 'login', 30_000);
    assert.equal(started.event, 'session_start', JSON.stringify(peer.log));
    const event = await learnt;
    assert.equal(event.jid, started.jid);
    assert.equal(caps.wantsNotify(event.jid, 'urn:xmpp:avatar:metadata'), true);
    assert.equal(caps.wantsNotify(event.jid, 'urn:xmpp:omemo:2:devices'), true);
    assert.equal(caps.wantsNotify(event.jid, 'urn:xmpp:bookmarks:1'), false);
    assert.ok(event.features.has('http://jabber.org/protocol/caps'));
    assert.deepEqual(caps.availableResources('sam@localhost', 'sam@localhost').map((r) => r.jid), [event.jid]);
    peer.command({ cmd: 'quit' });
    await peer.exited;
  } finally {
    peer.proc.kill();
  }
});
