/**
 * A user of another server in a Gatehouse room (P18, XEP-0045 over federation): two Gatehouse
 * servers on loopback; bob@b.test enters a room on conference.a.test, talks, gets a private
 * message and is kicked, all through the server-to-server link of the service domain.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { x } from '../../shared/xml/element.js';
import { MUC_ADMIN, codes, createInstant, enter, item } from '../modules/muc-helpers.js';

async function startServer(domain: string): Promise<TestServer> {
  return startTestServer({ logLevel: 'warn', config: { hosts: [{ domain, registration: 'open' }], listen: { s2s: [{ host: '127.0.0.1', port: 0 }] } } });
}

function route(from: TestServer, to: TestServer, domains: string[]): void {
  for (const d of domains) from.config.s2s.static[d] = { host: '127.0.0.1', port: to.s2sPort };
}

async function account(ts: TestServer, jid: string): Promise<TestClient> {
  const [name, domain] = jid.split('@') as [string, string];
  const c = await ts.client({ domain });
  assert.equal((await c.register(name, 'pw-' + name)).attrs.type, 'result');
  await c.login(name, 'pw-' + name);
  return c;
}

test('P18 XEP-0045 a user of another server enters a room over federation, talks, gets a private message and is kicked', async () => {
  const a = await startServer('a.test');
  const b = await startServer('b.test');
  try {
    route(a, b, ['b.test', 'conference.b.test']);
    route(b, a, ['a.test', 'conference.a.test']);
    const alice = await account(a, 'alice@a.test');
    const bob = await account(b, 'bob@b.test');
    const room = 'fed@conference.a.test';
    await createInstant(alice, room, 'Alice');

    const self = await enter(bob, room, 'Bob');
    assert.ok(codes(self).includes(110), String(self));
    assert.equal(item(self)?.attrs.role, 'participant');
    const arrived = await alice.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Bob`);
    assert.match(item(arrived)?.attrs.jid ?? '', /^bob@b\.test\//);

    bob.send(x('message', { type: 'groupchat', to: room }, x('body', {}, 'hello from b')));
    await alice.expect((el) => el.name === 'message' && el.getChildText('body') === 'hello from b');
    await bob.expect((el) => el.name === 'message' && el.getChildText('body') === 'hello from b');
    alice.send(x('message', { type: 'chat', to: `${room}/Bob` }, x('body', {}, 'just you')));
    const pm = await bob.expect((el) => el.name === 'message' && el.getChildText('body') === 'just you');
    assert.equal(pm.attrs.from, `${room}/Alice`);

    const kick = await alice.iq(x('iq', { type: 'set', to: room }, x('query', { xmlns: MUC_ADMIN }, x('item', { nick: 'Bob', role: 'none' }))));
    assert.equal(kick.attrs.type, 'result');
    const out = await bob.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `${room}/Bob`);
    assert.ok(codes(out).includes(307));
  } finally {
    await a.stop();
    await b.stop();
  }
});

test('XEP-0045 the server stops: a user of another server in a room gets the unavailable presence with 332 before the link closes, as a local one does', async () => {
  const a = await startServer('a.test');
  const b = await startServer('b.test');
  try {
    route(a, b, ['b.test', 'conference.b.test']);
    route(b, a, ['a.test', 'conference.a.test']);
    const alice = await account(a, 'alice@a.test');
    const bob = await account(b, 'bob@b.test');
    const room = 'closing@conference.a.test';
    await createInstant(alice, room, 'Alice');
    assert.ok(codes(await enter(bob, room, 'Bob')).includes(110));
    // The running server itself stops (the test helper's stop would disconnect Alice first).
    await a.server.stop();
    const out = await bob.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `${room}/Bob`);
    assert.deepEqual(codes(out).sort(), [110, 332]);
    const aliceOut = await alice.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `${room}/Alice`);
    assert.deepEqual(codes(aliceOut).sort(), [110, 332]);
  } finally {
    await a.stop();
    await b.stop();
  }
});
