/**
 * Two independent client implementations talk through a real Gatehouse: xmpp.js (@xmpp/client)
 * as alice and slixmpp (Debian's python3-slixmpp) as bob. Registration, SCRAM(-PLUS) over STARTTLS,
 * offline delivery, subscription, presence and messages both ways.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { SlixmppPeer } from './slixmpp-peer.js';
import { skipWithout } from '../helpers/requirements.js';

let ts: TestServer;

before(async () => {
  ts = await startTestServer();
});
after(async () => {
  await ts.stop();
});

test('xmpp.js and slixmpp register, subscribe, exchange presence and messages, and get offline messages', { skip: skipWithout('slixmpp') }, async () => {
  // In-band registration over the wire (slixmpp 1.8 cannot register before login).
  for (const name of ['alice', 'bob']) {
    const c = await ts.client();
    const reply = await c.register(name, `${name}-password`);
    assert.equal(reply.attrs.type, 'result', String(reply));
    await c.close();
  }

  const { client, xml } = await import('@xmpp/client');
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
  const alice = client({ service: `xmpp://127.0.0.1:${ts.port}`, domain: 'localhost', username: 'alice', password: 'alice-password', resource: 'xmppjs' });
  alice.reconnect.stop();
  const aliceStanzas: any[] = [];
  const aliceWaiters: { match: (s: any) => boolean; resolve: (s: any) => void }[] = [];
  alice.on('stanza', (s: any) => {
    const i = aliceWaiters.findIndex((w) => w.match(s));
    if (i >= 0) aliceWaiters.splice(i, 1)[0]!.resolve(s);
    else aliceStanzas.push(s);
  });
  alice.on('error', () => {});
  const aliceExpect = (match: (s: any) => boolean, what: string) => {
    const i = aliceStanzas.findIndex(match);
    if (i >= 0) return Promise.resolve(aliceStanzas.splice(i, 1)[0]);
    return new Promise<any>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`xmpp.js: timed out waiting for ${what}`)), 15_000);
      aliceWaiters.push({ match, resolve: (s) => (clearTimeout(timer), resolve(s)) });
    });
  };
  await alice.start();
  await alice.send(xml('presence'));

  // bob is offline: this message must wait in storage.
  await alice.send(xml('message', { to: 'bob@localhost', type: 'chat' }, xml('body', {}, 'while you were away')));
  await new Promise((r) => setTimeout(r, 300));

  const bob = SlixmppPeer.spawn(['127.0.0.1', String(ts.port), 'bob@localhost', 'bob-password', 'alice@localhost']);
  const proc = bob.proc;
  try {
    const started = await bob.expect((e) => e.event === 'session_start', 'login');
    assert.match(String(started.jid), /^bob@localhost\//);
    // slixmpp's own choice: channel binding with tls-unique (the only type it knows).
    assert.equal(started.mechanism, 'SCRAM-SHA-256-PLUS');

    const offline = await bob.expect((e) => e.event === 'message' && e.body === 'while you were away', 'the offline message');
    assert.equal(offline.frm, 'alice@localhost');
    assert.ok(offline.delay, 'offline message carries no XEP-0203 delay');

    // Subscription: alice asks, slixmpp approves and asks back, alice approves.
    await alice.send(xml('presence', { to: 'bob@localhost', type: 'subscribe' }));
    await aliceExpect((s) => s.is('presence') && s.attrs.type === 'subscribed' && s.attrs.from.startsWith('bob@localhost'), 'subscribed from bob');
    await aliceExpect((s) => s.is('presence') && s.attrs.type === 'subscribe' && s.attrs.from.startsWith('bob@localhost'), 'subscribe from bob');
    await alice.send(xml('presence', { to: 'bob@localhost', type: 'subscribed' }));
    await aliceExpect((s) => s.is('presence') && !s.attrs.type && s.attrs.from.startsWith('bob@localhost/'), "bob's available presence");
    await bob.expect((e) => e.event === 'presence' && String(e.frm).startsWith('alice@localhost/'), "alice's presence");

    // Messages both ways: slixmpp echoes what alice says, and speaks first on command.
    await alice.send(xml('message', { to: 'bob@localhost', type: 'chat' }, xml('body', {}, 'hello bob')));
    await bob.expect((e) => e.event === 'message' && e.body === 'hello bob', 'alice message');
    const echo = await aliceExpect((s) => s.is('message') && s.getChildText('body') === 'echo: hello bob', 'echo from bob');
    assert.match(echo.attrs.from, /^bob@localhost\//);
    bob.command({ cmd: 'message', to: 'alice@localhost', body: 'hi from slixmpp' });
    await aliceExpect((s) => s.is('message') && s.getChildText('body') === 'hi from slixmpp', 'message from slixmpp');

    bob.command({ cmd: 'roster' });
    const roster = await bob.expect((e) => e.event === 'roster', 'roster');
    assert.deepEqual((roster.items as Record<string, { subscription: string }>)['alice@localhost'], { subscription: 'both' });

    const aliceRoster = await alice.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })));
    const item = aliceRoster.getChild('query').getChildren('item').find((i: any) => i.attrs.jid === 'bob@localhost');
    assert.equal(item?.attrs.subscription, 'both');
  } finally {
    bob.command({ cmd: 'quit' });
    await new Promise((r) => setTimeout(r, 300));
    proc.kill();
    await alice.stop().catch(() => {});
  }
});
