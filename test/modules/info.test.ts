import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ensureAccount as account, loginAs as login, startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { LAST_KEY } from '../../server/modules/last-activity.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { ManualClock } from '../../shared/clock.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

async function subscribe(ts: TestServer, owner: string, contact: string, subscription: 'from' | 'both' | 'to' | 'none'): Promise<void> {
  const id = await account(ts, owner);
  await ts.server.ctx.storage.roster.put(id, { jid: `${contact}@localhost`, name: null, subscription, ask: false, pendingIn: false, approved: false, groups: [] });
}

function shape(el: Element): string {
  const copy = el.clone();
  delete copy.attrs.id;
  delete copy.attrs.from;
  delete copy.attrs.to;
  return copy.toString();
}

async function until(cond: () => boolean | Promise<boolean>, ms = 1000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return cond();
}

const packageVersion = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
const versionQuery = () => x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.version }));
const lastQuery = (to: string) => x('iq', { type: 'get', to }, x('query', { xmlns: NS.last }));

async function discoFeatures(c: TestClient): Promise<string[]> {
  const reply = await c.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.discoInfo })));
  return reply.getChild('query', NS.discoInfo)!.getChildren('feature').map((f) => f.attrs.var!);
}

describe('software version (XEP-0092)', () => {
  test('name and package.json version; no operating system by default', async () => {
    const ts = await startTestServer({});
    try {
      const c = await login(ts, 'alice');
      const reply = await c.iq(versionQuery());
      assert.equal(reply.attrs.type, 'result');
      assert.equal(reply.attrs.from, 'localhost');
      const q = reply.getChild('query', NS.version)!;
      assert.equal(q.getChildText('name'), 'Gatehouse');
      assert.equal(q.getChildText('version'), packageVersion);
      assert.equal(q.getChild('os'), undefined);
      assert.ok((await discoFeatures(c)).includes(NS.version));
    } finally {
      await ts.stop();
    }
  });

  test('operating system when server.hideOs is off', async () => {
    const ts = await startTestServer({ config: { server: { hideOs: false } } });
    try {
      const c = await login(ts, 'alice');
      const q = (await c.iq(versionQuery())).getChild('query', NS.version)!;
      assert.ok(q.getChildText('os'));
    } finally {
      await ts.stop();
    }
  });

  test('server.hideVersion: service-unavailable and the feature is not announced', async () => {
    const ts = await startTestServer({ config: { server: { hideVersion: true } } });
    try {
      const c = await login(ts, 'alice');
      const reply = await c.iq(versionQuery());
      assert.equal(reply.attrs.type, 'error');
      assert.equal(errorCondition(reply), 'service-unavailable');
      assert.ok(!reply.toString().includes(packageVersion));
      assert.ok(!(await discoFeatures(c)).includes(NS.version));
    } finally {
      await ts.stop();
    }
  });
});

describe('entity time (XEP-0202) and last activity (XEP-0012)', () => {
  let ts: TestServer;
  let clock: ManualClock;
  let alice: TestClient;
  let bob: TestClient;
  let mallory: TestClient;

  before(async () => {
    clock = new ManualClock(Date.UTC(2026, 2, 14, 9, 26, 53, 589));
    ts = await startTestServer({ clock });
    alice = await login(ts, 'alice');
    bob = await login(ts, 'bob');
    mallory = await login(ts, 'mallory');
    await subscribe(ts, 'alice', 'bob', 'both');
    await subscribe(ts, 'bob', 'alice', 'both');
  });
  after(async () => {
    await ts.stop();
  });

  test('the host tells its time in UTC from the server clock', async () => {
    const reply = await alice.iq(x('iq', { type: 'get', to: 'localhost' }, x('time', { xmlns: NS.time })));
    assert.equal(reply.attrs.type, 'result');
    const t = reply.getChild('time', NS.time)!;
    assert.equal(t.getChildText('tzo'), '+00:00');
    assert.equal(t.getChildText('utc'), clock.now().toISOString().replace(/\.\d+Z$/, 'Z'));
    assert.ok((await discoFeatures(alice)).includes(NS.time));
  });

  test('last activity of the host is the server uptime', async () => {
    const before = Math.floor((clock.now().getTime() - ts.server.ctx.startedAt.getTime()) / 1000);
    clock.advance(3600_000);
    const reply = await alice.iq(lastQuery('localhost'));
    assert.equal(reply.attrs.type, 'result');
    assert.equal(reply.getChild('query', NS.last)!.attrs.seconds, String(before + 3600));
    assert.ok((await discoFeatures(alice)).includes(NS.last));
  });

  test('P17 last activity without subscription: forbidden, identical for existing and nonexistent accounts', async () => {
    const existing = await mallory.iq(lastQuery('alice@localhost'));
    const missing = await mallory.iq(lastQuery('nobody-here@localhost'));
    assert.equal(existing.attrs.type, 'error');
    assert.equal(errorCondition(existing), 'forbidden');
    assert.equal(shape(existing), shape(missing));
    await subscribe(ts, 'alice', 'mallory', 'to');
    const toOnly = await mallory.iq(lastQuery('alice@localhost'));
    assert.equal(errorCondition(toOnly), 'forbidden', "a 'to' subscription does not show the owner's presence");
  });

  test('last activity is 0 for a subscribed contact while the user has an available resource', async () => {
    const session = ts.server.ctx.sessions.get(alice.jid)!;
    alice.send(x('presence'));
    // With the presence module loaded the presence makes the resource available; without it, do so by hand.
    if (!(await until(() => session.available, 300))) session.available = true;
    const reply = await bob.iq(lastQuery('alice@localhost'));
    assert.equal(reply.attrs.type, 'result');
    assert.equal(reply.getChild('query', NS.last)!.attrs.seconds, '0');
  });

  test('after the last resource goes away: seconds since then and the unavailable status text', async () => {
    const { storage, sessions, hooks } = ts.server.ctx;
    const session = sessions.get(alice.jid)!;
    const aliceId = await account(ts, 'alice');
    alice.send(x('presence', { type: 'unavailable' }, x('status', {}, 'Gone fishing')));
    if (!(await until(() => !session.available, 300))) {
      // No presence module: do what it does.
      session.available = false;
      await hooks.emit('session/unavailable', { session });
    }
    assert.ok(await until(async () => (await storage.accountState.get(aliceId, LAST_KEY)) !== null));
    clock.advance(90_000);
    const reply = await bob.iq(lastQuery('alice@localhost'));
    assert.equal(reply.attrs.type, 'result');
    const q = reply.getChild('query', NS.last)!;
    assert.equal(q.attrs.seconds, '90');
    assert.equal(q.text(), 'Gone fishing');
    // The owner may ask too.
    const own = await alice.iq(lastQuery('alice@localhost'));
    assert.equal(own.getChild('query', NS.last)!.attrs.seconds, '90');
  });

  test("a 'from' subscription is enough, and a disconnect without presence is recorded too", async () => {
    const carolId = await account(ts, 'carol');
    await subscribe(ts, 'carol', 'bob', 'from');
    const carol = await login(ts, 'carol');
    await carol.close();
    assert.ok(await until(async () => (await ts.server.ctx.storage.accountState.get(carolId, LAST_KEY)) !== null));
    clock.advance(30_000);
    const reply = await bob.iq(lastQuery('carol@localhost'));
    assert.equal(reply.attrs.type, 'result');
    const q = reply.getChild('query', NS.last)!;
    assert.equal(q.attrs.seconds, '30');
    assert.equal(q.text(), '');
  });

  test('deleting an account removes its last activity record', async () => {
    const { storage } = ts.server.ctx;
    const carolId = await account(ts, 'carol');
    assert.notEqual(await storage.accountState.get(carolId, LAST_KEY), null);
    assert.equal(await storage.accounts.delete(carolId), true);
    assert.equal(await storage.accountState.get(carolId, LAST_KEY), null);
    const reply = await bob.iq(lastQuery('carol@localhost'));
    assert.equal(errorCondition(reply), 'forbidden');
  });
});
