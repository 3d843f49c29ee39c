/**
 * Limits on pending inbound subscription requests (RFC 6121 3.1.3; config `subscriptions`), over
 * real sockets: local senders, stanzas as an s2s stream routes them, and two federated servers.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ensureAccount, loginAs as login, startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import type { DeliveryFailure } from '../../server/core/router.js';
import { allModules } from '../../server/modules/index.js';
import { createS2sModule } from '../../server/modules/s2s.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { Element, x } from '../../shared/xml/element.js';
import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import { makeVerifier } from '../../server/auth/scram.js';
import { storageTargets, type StorageTarget } from '../../storage/test-databases.js';

async function online(c: TestClient): Promise<void> {
  c.send(x('presence'));
  await c.expect((el) => el.name === 'presence' && el.attrs.from === c.jid && el.attrs.type === undefined);
}

/** A ping round trip: everything the client sent before has been processed. */
async function barrier(c: TestClient): Promise<void> {
  const r = await c.iq(x('iq', { type: 'get', to: c.domain }, x('ping', { xmlns: NS.ping })));
  assert.equal(r.attrs.type, 'result');
}

const isSubscribe = (from: string) => (el: Element) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === from;
const isPresenceError = (from: string) => (el: Element) => el.name === 'presence' && el.attrs.type === 'error' && el.attrs.from === from;

async function rosterRow(ts: TestServer, owner: string, contact: string) {
  const [name, domain] = owner.split('@') as [string, string];
  const account = await ts.server.ctx.storage.accounts.get(name, domain);
  return ts.server.ctx.storage.roster.get(account!.id, contact);
}

describe('pending subscription requests from local accounts', () => {
  let ts: TestServer;
  let carol: TestClient;
  const failures: DeliveryFailure[] = [];
  before(async () => {
    // The per-domain limit is for remote domains: local senders only meet the per-account cap.
    ts = await startTestServer({ logLevel: 'info', config: { subscriptions: { maxPendingPerUser: 3, maxPendingPerDomain: 1 } } });
    ts.server.ctx.hooks.on('delivery/failed', (f) => void failures.push(f));
    carol = await login(ts, 'carol');
    await online(carol);
  });
  after(() => ts.stop());

  test('the 4th request from distinct JIDs gets a resource-constraint presence error and leaves no roster row', async () => {
    for (const name of ['s1', 's2', 's3']) {
      const s = await login(ts, name);
      s.send(x('presence', { type: 'subscribe', to: 'carol@localhost' }));
      await carol.expect(isSubscribe(`${name}@localhost`));
      assert.equal((await rosterRow(ts, 'carol@localhost', `${name}@localhost`))?.pendingIn, true);
    }
    const s4 = await login(ts, 's4');
    await online(s4);
    s4.send(x('presence', { type: 'subscribe', to: 'carol@localhost', id: 'sub4' }));
    const err = await s4.expect(isPresenceError('carol@localhost'));
    assert.equal(errorCondition(err), 'resource-constraint');
    assert.equal(err.getChild('error')!.attrs.type, 'wait');
    assert.match(err.getChild('error')!.getChildText('text', NS.stanzas) ?? '', /too many subscription requests/);
    assert.equal(await rosterRow(ts, 'carol@localhost', 's4@localhost'), null, 'no roster row');
    assert.ok(await carol.expectNothing(isSubscribe('s4@localhost'), 100), 'not delivered');
    assert.ok(failures.some((f) => f.from === 's4@localhost' && f.condition === 'resource-constraint'), 'P8 record for the local sender');

    // Asking again while pending is not a new request: no error.
    const s1 = await login(ts, 's1', 'again');
    s1.send(x('presence', { type: 'subscribe', to: 'carol@localhost' }));
    await barrier(s1);
    assert.ok(await s1.expectNothing(isPresenceError('carol@localhost'), 100));
  });

  test('contacts on the roster still get their requests through; answering one makes room', async () => {
    // carol put dave on her roster (and asked for his presence): his request is not limited.
    const set = await carol.iq(x('iq', { type: 'set' }, x('query', { xmlns: NS.roster }, x('item', { jid: 'dave@localhost' }))));
    assert.equal(set.attrs.type, 'result');
    const dave = await login(ts, 'dave');
    await online(dave);
    dave.send(x('presence', { type: 'subscribe', to: 'carol@localhost' }));
    await carol.expect(isSubscribe('dave@localhost'));
    assert.ok(await dave.expectNothing(isPresenceError('carol@localhost'), 100));
    assert.equal((await rosterRow(ts, 'carol@localhost', 'dave@localhost'))?.pendingIn, true);

    // A contact with a subscription from carol asks again: the server answers for her, no error.
    carol.send(x('presence', { type: 'subscribed', to: 'dave@localhost' }));
    await dave.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribed');
    dave.send(x('presence', { type: 'subscribe', to: 'carol@localhost' }));
    await barrier(dave);
    assert.ok(await dave.expectNothing(isPresenceError('carol@localhost'), 100));
    assert.equal((await rosterRow(ts, 'carol@localhost', 'dave@localhost'))?.subscription, 'from');

    // carol denies s1: three pending are left (s2, s3 and nobody else), so s4 fits now.
    carol.send(x('presence', { type: 'unsubscribed', to: 's1@localhost' }));
    await barrier(carol);
    const s4 = await login(ts, 's4', 'again');
    s4.send(x('presence', { type: 'subscribe', to: 'carol@localhost' }));
    await carol.expect(isSubscribe('s4@localhost'));
    assert.equal((await rosterRow(ts, 'carol@localhost', 's4@localhost'))?.pendingIn, true);
  });

  test('at login only the requests that survived the cap are delivered again', async () => {
    const again = await login(ts, 'carol', 'phone');
    again.send(x('presence'));
    const seen = new Set<string>();
    for (let i = 0; i < 3; i++) seen.add((await again.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribe')).attrs.from!);
    assert.deepEqual([...seen].sort(), ['s2@localhost', 's3@localhost', 's4@localhost']);
    assert.ok(await again.expectNothing((el) => el.name === 'presence' && el.attrs.type === 'subscribe', 100));
  });
});

// The per-domain count is a LIKE query: the same over every database.
for (const target of storageTargets()) {
  describe(`pending subscription requests from remote domains (as an s2s stream routes them) on ${target.name}`, () => {
    let ts: TestServer;
    let db: Awaited<ReturnType<StorageTarget['make']>>;
    let carol: TestClient;
    before(async () => {
      db = await target.make();
      ts = await startTestServer({ storage: db.config, logLevel: 'info', config: { subscriptions: { maxPendingPerUser: 5, maxPendingPerDomain: 2 } } });
      carol = await login(ts, 'carol');
      await online(carol);
    });
    after(async () => {
      await ts?.stop();
      await db?.drop();
    });

    /**
     * Routes a subscribe from `from` as an s2s stream would: resolves with the error the server
     * sends back, or with 'delivered' once carol gets the request (exactly one of them happens).
     */
    async function remoteSubscribe(from: string): Promise<Element | 'delivered'> {
      let off = () => {};
      const error = new Promise<Element>((resolve) => {
        off = ts.server.ctx.hooks.on(
          'presence/remote',
          (e) => {
            if (e.stanza.attrs.to === from && e.stanza.attrs.type === 'error') resolve(e.stanza.clone());
            return true;
          },
          'observe',
        );
      });
      try {
        const jid = Jid.parse(from);
        await ts.server.ctx.router.route(x('presence', { type: 'subscribe', from, to: 'carol@localhost' }), jid, { kind: 's2s', domain: jid.domain });
        return await Promise.race([error, carol.expect(isSubscribe(from)).then(() => 'delivered' as const)]);
      } finally {
        off();
      }
    }

    const conditionOf = (r: Element | 'delivered') => (r === 'delivered' ? r : errorCondition(r));

    test('a third request from one remote domain gets policy-violation; other domains still get through up to the cap', async () => {
      assert.equal(await remoteSubscribe('a1@evil.example'), 'delivered');
      assert.equal(await remoteSubscribe('a2@evil.example'), 'delivered');
      const third = await remoteSubscribe('a3@evil.example');
      assert.notEqual(third, 'delivered');
      if (third === 'delivered') return;
      assert.equal(errorCondition(third), 'policy-violation');
      assert.equal(third.getChild('error')!.attrs.type, 'wait');
      assert.equal(third.attrs.from, 'carol@localhost');
      assert.equal(await rosterRow(ts, 'carol@localhost', 'a3@evil.example'), null, 'no roster row');
      // The domain itself (a server JID) counts for that domain too; a look-alike domain does not.
      assert.equal(conditionOf(await remoteSubscribe('evil.example')), 'policy-violation');
      assert.equal(await remoteSubscribe('b1@evil_example.net'), 'delivered');
      assert.equal(await remoteSubscribe('c1@other.example'), 'delivered');
      assert.equal(await remoteSubscribe('c2@other.example'), 'delivered');
      // Five pending in all: the cap.
      assert.equal(conditionOf(await remoteSubscribe('d1@third.example')), 'resource-constraint');
      assert.equal(await rosterRow(ts, 'carol@localhost', 'd1@third.example'), null, 'no roster row');
      const id = await ensureAccount(ts, 'carol');
      assert.equal(await ts.server.ctx.storage.roster.countPendingIn(id), 5);
    });

    test('a configured component (a transport adding legacy contacts) is not limited', async () => {
      for (const n of [1, 2, 3]) {
        const from = `contact${n}@gateway.localhost`;
        await ts.server.ctx.router.route(x('presence', { type: 'subscribe', from, to: 'carol@localhost' }), Jid.parse(from), { kind: 'component', domain: 'gateway.localhost' });
        await carol.expect(isSubscribe(from));
      }
      const id = await ensureAccount(ts, 'carol');
      assert.equal(await ts.server.ctx.storage.roster.countPendingIn(id), 8);
    });
  });
}

describe('pending subscription requests between two federated servers', () => {
  let home: TestServer;
  let remote: TestServer;
  before(async () => {
    const s2s = (domains: string[], config: Record<string, unknown> = {}) =>
      startTestServer({
        modules: [...allModules().filter((m) => m.name !== 's2s'), createS2sModule()],
        logLevel: 'info',
        config: { hosts: domains.map((domain) => ({ domain, registration: 'open' })), listen: { s2s: [{ host: '127.0.0.1', port: 0 }] }, ...config },
      });
    home = await s2s(['home.test'], { subscriptions: { maxPendingPerUser: 100, maxPendingPerDomain: 2 } });
    remote = await s2s(['r1.test', 'r2.test']);
    for (const [from, to] of [
      [home, remote],
      [remote, home],
    ] as const) {
      for (const h of to.config.hosts) from.config.s2s.static[h.domain] = { host: '127.0.0.1', port: to.s2sPort };
    }
  });
  after(async () => {
    await home?.stop();
    await remote?.stop();
  });

  async function user(ts: TestServer, jid: string): Promise<TestClient> {
    const [name, domain] = jid.split('@') as [string, string];
    await ts.server.ctx.storage.accounts.create(name, domain, [makeVerifier('pw-' + name, 'SHA-256', 4096)], new Date());
    const c = await ts.client({ domain });
    await c.login(name, 'pw-' + name);
    await online(c);
    return c;
  }

  test('the sender on the other server gets the policy-violation error; the user sees only the requests within the limit', async () => {
    const carol = await user(home, 'carol@home.test');
    const senders = await Promise.all(['u1@r1.test', 'u2@r1.test', 'u3@r1.test', 'v1@r2.test'].map((j) => user(remote, j)));
    for (const [i, s] of senders.entries()) {
      s.send(x('presence', { type: 'subscribe', to: 'carol@home.test' }));
      if (i === 2) {
        const err = await s.expect(isPresenceError('carol@home.test'));
        assert.equal(errorCondition(err), 'policy-violation');
      } else {
        await carol.expect(isSubscribe(s.jid.split('/')[0]!));
      }
    }
    assert.equal(await rosterRow(home, 'carol@home.test', 'u3@r1.test'), null);
    assert.ok(await carol.expectNothing(isSubscribe('u3@r1.test'), 100));
  });
});
