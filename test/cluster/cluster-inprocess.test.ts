/**
 * Two cluster nodes in one test process (quick to start), sharing PostgreSQL or MariaDB and the
 * NATS server at 127.0.0.1:4222 under a prefix of their own: what crosses nodes, seen by clients.
 * test/cluster/cluster-processes.test.ts runs three nodes as separate processes.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { loginAs, modulesWith, startTestServer, type TestServer } from '../helpers/server.js';
import { createAdminHttpModule } from '../../server/admin/http.js';
import { AdminClient } from '../admin/http-client.js';
import { RemoteSession } from '../../server/cluster/remote-session.js';
import type { ClusterSessionRegistry } from '../../server/cluster/registry.js';
import type { ClusterNode } from '../../server/cluster/node.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { CLUSTER_SERVER_SECRET } from '../helpers/cluster-secrets.js';
import { x, type Element } from '../../shared/xml/element.js';
import type { StorageConfig } from '../../storage/datasource.js';
import { EVENT, contacts, online as onlineWithCaps, publish } from '../modules/pep-helpers.js';

const DB_URL = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? process.env.GATEHOUSE_TEST_MYSQL_URL;
const skip = DB_URL ? false : 'cluster mode needs GATEHOUSE_TEST_POSTGRES_URL or GATEHOUSE_TEST_MYSQL_URL';

function storage(): StorageConfig {
  const url = DB_URL!;
  return { type: url.startsWith('postgres') ? 'postgres' : 'mysql', url, migrateOnStart: true } as StorageConfig;
}

async function online(c: TestClient, priority?: number): Promise<void> {
  c.send(x('presence', {}, priority === undefined ? null : x('priority', {}, String(priority))));
  await c.expect((el) => el.name === 'presence' && el.attrs.from === c.jid && el.attrs.type === undefined);
}

const isMessage = (body: string) => (el: Element) => el.name === 'message' && el.getChildText('body') === body;

/** Mutual subscription of two accounts, each on its own node; resolves when both see the other available. */
async function befriend(a: TestClient, b: TestClient): Promise<void> {
  const aBare = a.jid!.split('/')[0]!;
  const bBare = b.jid!.split('/')[0]!;
  a.send(x('presence', { to: bBare, type: 'subscribe' }));
  await b.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === aBare);
  b.send(x('presence', { to: aBare, type: 'subscribed' }));
  b.send(x('presence', { to: aBare, type: 'subscribe' }));
  await a.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === bBare);
  a.send(x('presence', { to: bBare, type: 'subscribed' }));
  await a.expect((el) => el.name === 'presence' && el.attrs.from === b.jid && el.attrs.type === undefined);
  await b.expect((el) => el.name === 'presence' && el.attrs.from === a.jid && el.attrs.type === undefined);
}

const METRICS_TOKEN = 'cluster-metrics-token';

describe('cluster: two nodes in one process', { skip }, () => {
  const prefix = 'ghtest-' + randomBytes(4).toString('hex');
  const tag = randomBytes(3).toString('hex');
  let n1: TestServer;
  let n2: TestServer;
  before(async () => {
    const cluster = (node: string) => ({ cluster: { enabled: true, node, prefix, heartbeatInterval: '200ms', failureTimeout: '1s', deliveryTimeout: '1s' } });
    n1 = await startTestServer({
      storage: storage(),
      config: { ...cluster('n1'), listen: { admin: [{ host: '127.0.0.1', port: 0 }] } },
      modules: modulesWith(createAdminHttpModule({ metricsToken: METRICS_TOKEN })),
      logLevel: 'info',
    });
    n2 = await startTestServer({ storage: storage(), config: cluster('n2'), logLevel: 'info' });
  });
  after(async () => {
    await n2?.stop();
    await n1?.stop();
  });

  test('users on different nodes subscribe, see each other online and chat', async () => {
    const alice = await loginAs(n1, `alice-${tag}`);
    const bob = await loginAs(n2, `bob-${tag}`);
    await online(alice);
    await online(bob);
    await befriend(alice, bob);
    alice.send(x('message', { to: `bob-${tag}@localhost`, type: 'chat' }, x('body', {}, 'hello across nodes')));
    const got = await bob.expect(isMessage('hello across nodes'));
    assert.equal(got.attrs.from, alice.jid);
    bob.send(x('message', { to: alice.jid!, type: 'chat' }, x('body', {}, 'hello back')));
    await alice.expect(isMessage('hello back'));
  });

  test('a bare-JID message goes to the highest-priority resource, on whichever node it is', async () => {
    const alice = await loginAs(n1, `alice2-${tag}`);
    const low = await loginAs(n1, `bob2-${tag}`, 'low');
    const high = await loginAs(n2, `bob2-${tag}`, 'high');
    await online(low, 1);
    await online(high, 7);
    // Each resource sees its sibling's presence: the registry has both on both nodes.
    await low.expect((el) => el.name === 'presence' && el.attrs.from === high.jid);
    alice.send(x('message', { to: `bob2-${tag}@localhost`, type: 'chat' }, x('body', {}, 'to the top resource')));
    await high.expect(isMessage('to the top resource'));
    assert.ok(await low.expectNothing(isMessage('to the top resource')));
  });

  test('carbons reach the resource on the other node, both sent and received', async () => {
    const alice = await loginAs(n1, `alice3-${tag}`);
    await online(alice);
    const phone = await loginAs(n1, `bob3-${tag}`, 'phone');
    const desk = await loginAs(n2, `bob3-${tag}`, 'desk');
    for (const c of [phone, desk]) {
      const r = await c.iq(x('iq', { type: 'set' }, x('enable', { xmlns: 'urn:xmpp:carbons:2' })));
      assert.equal(r.attrs.type, 'result');
      await online(c);
    }
    await desk.expect((el) => el.name === 'presence' && el.attrs.from === phone.jid);
    alice.send(x('message', { to: phone.jid!, type: 'chat' }, x('body', {}, 'to the phone')));
    await phone.expect(isMessage('to the phone'));
    const received = await desk.expect((el) => el.name === 'message' && el.getChild('received', 'urn:xmpp:carbons:2') !== undefined);
    assert.equal(received.getChild('received')!.getChild('forwarded')!.getChild('message')!.getChildText('body'), 'to the phone');
    desk.send(x('message', { to: `alice3-${tag}@localhost`, type: 'chat' }, x('body', {}, 'from the desk')));
    await alice.expect(isMessage('from the desk'));
    const sent = await phone.expect((el) => el.name === 'message' && el.getChild('sent', 'urn:xmpp:carbons:2') !== undefined);
    assert.equal(sent.getChild('sent')!.getChild('forwarded')!.getChild('message')!.getChildText('body'), 'from the desk');
  });

  test('a message to a user with no available resource on any node is stored and delivered at the next login, on the other node', async () => {
    const alice = await loginAs(n1, `alice4-${tag}`);
    const bob = await loginAs(n2, `bob4-${tag}`);
    // Bound but without presence: offline for bare-JID delivery (RFC 6121 8.5.2.1.1).
    alice.send(x('message', { to: `bob4-${tag}@localhost`, type: 'chat' }, x('body', {}, 'kept for later')));
    assert.ok(await bob.expectNothing(isMessage('kept for later')));
    await bob.close();
    const later = await loginAs(n1, `bob4-${tag}`);
    await online(later);
    await later.expect(isMessage('kept for later'));
  });

  test('PEP: a contact on the other node with +notify gets the event', async () => {
    const owner = `pepa-${tag}`;
    const contact = `pepb-${tag}`;
    await contacts(n1, owner, contact);
    const watcher = await onlineWithCaps(n2, contact, ['urn:xmpp:tune']);
    const publisher = await onlineWithCaps(n1, owner, ['urn:xmpp:tune']);
    const r = await publisher.iq(publish('urn:xmpp:tune', x('tune', { xmlns: 'http://jabber.org/protocol/tune' }, x('title', {}, 'Cluster')), 'i1'));
    assert.equal(r.attrs.type, 'result');
    const ev = await watcher.expect((el) => el.name === 'message' && el.getChild('event', EVENT)?.getChild('items')?.attrs.node === 'urn:xmpp:tune');
    assert.equal(ev.attrs.from, `${owner}@localhost`);
  });

  test('an IQ to a full JID on the other node is answered back to the sender', async () => {
    const a = await loginAs(n1, `iqa-${tag}`);
    const b = await loginAs(n2, `iqb-${tag}`);
    b.autoAnswer(
      (el) => el.name === 'iq' && el.attrs.type === 'get' && el.getChild('ping', 'urn:xmpp:ping') !== undefined,
      (q) => x('iq', { type: 'result', id: q.attrs.id, to: q.attrs.from }),
    );
    const r = await a.iq(x('iq', { type: 'get', to: b.jid! }, x('ping', { xmlns: 'urn:xmpp:ping' })));
    assert.equal(r.attrs.type, 'result');
    assert.equal(r.attrs.from, b.jid);
  });

  test('an IQ to a resource its node no longer has is answered service-unavailable at once', async () => {
    const asker = await loginAs(n1, `asker-${tag}`);
    // A stand-in node 1 still holds for a session node 2 has not (an announcement lost in a race).
    const ghost = `ghost-${tag}@localhost/gone`;
    const node1 = n1.server.ctx.services.need('cluster') as ClusterNode;
    const entry = { jid: ghost, id: 'x', startedAt: Date.now(), available: true, priority: 0, presence: null, interested: false, capabilities: null, flags: [] };
    (n1.server.ctx.sessions as ClusterSessionRegistry).addRemote(new RemoteSession('n2', entry, node1));
    const r = await asker.iq(x('iq', { type: 'get', to: ghost }, x('query', { xmlns: 'jabber:iq:version' })));
    assert.equal(r.attrs.type, 'error');
    assert.ok(r.getChild('error')!.getChild('service-unavailable'));
    // Node 2 said it has no such session: node 1 forgot the stand-in.
    assert.equal(n1.server.ctx.sessions.get(ghost), undefined);
  });

  test('messages to the other node sent together: the one to a resource gone there goes to the account\'s other resource, the rest are delivered', async () => {
    const sender = await loginAs(n1, `batcher-${tag}`);
    const bob = await loginAs(n2, `batchee-${tag}`);
    const carol = await loginAs(n1, `batchgone-${tag}`, 'here');
    await online(carol);
    // A stand-in node 1 holds for a resource of carol's that node 2 no longer has.
    const ghost = `batchgone-${tag}@localhost/gone`;
    const node1 = n1.server.ctx.services.need('cluster') as ClusterNode;
    const entry = { jid: ghost, id: 'x', startedAt: Date.now(), available: true, priority: 5, presence: null, interested: false, capabilities: null, flags: [] };
    (n1.server.ctx.sessions as ClusterSessionRegistry).addRemote(new RemoteSession('n2', entry, node1));
    // One write: node 1 reads them in one turn and sends them to node 2 in one NATS message.
    const msg = (to: string, body: string) => x('message', { to, type: 'chat' }, x('body', {}, body)).toString();
    sender.writeRaw(msg(bob.jid!, 'batch one') + msg(ghost, 'batch to the gone resource') + msg(bob.jid!, 'batch two'));
    await bob.expect(isMessage('batch one'));
    await bob.expect(isMessage('batch two'));
    const fallback = await carol.expect(isMessage('batch to the gone resource'));
    assert.equal(fallback.attrs.from, sender.jid);
    assert.ok(await bob.expectNothing(isMessage('batch to the gone resource')));
  });

  test('a node of the version before batching (a rolling restart) gets messages one by one, and its confirmation keeps them out of offline storage', async () => {
    // The old node: it listens only for single stanzas, as requests, and confirms them.
    const nc = await connect({ servers: 'nats://127.0.0.1:4222' });
    const got: string[] = [];
    nc.subscribe(`${prefix}.node.old.stanza`, {
      callback: (_err, m) => {
        got.push((JSON.parse(new TextDecoder().decode(m.data)) as { xml: string }).xml);
        m.respond(new TextEncoder().encode('ok'));
      },
    });
    await nc.flush();
    try {
      const sender = await loginAs(n1, `oldsender-${tag}`);
      const onOld = `oldnode-${tag}@localhost/there`;
      const node1 = n1.server.ctx.services.need('cluster') as ClusterNode;
      const entry = { jid: onOld, id: 'y', startedAt: Date.now(), available: true, priority: 0, presence: null, interested: false, capabilities: null, flags: [] };
      (n1.server.ctx.sessions as ClusterSessionRegistry).addRemote(new RemoteSession('old', entry, node1));
      sender.send(x('message', { to: onOld, type: 'chat' }, x('body', {}, 'to the old node')));
      for (let i = 0; i < 50 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(got.length, 1);
      assert.match(got[0]!, /to the old node/);
      // Past deliveryTimeout: unconfirmed, it would have been stored offline for the account.
      await new Promise((r) => setTimeout(r, 1200));
      (n1.server.ctx.sessions as ClusterSessionRegistry).removeRemote((n1.server.ctx.sessions as ClusterSessionRegistry).remoteSession(onOld)!);
      const later = await loginAs(n2, `oldnode-${tag}`, 'later');
      await online(later);
      assert.ok(await later.expectNothing(isMessage('to the old node'), 500));
    } finally {
      await nc.close();
    }
  });

  test('binding a resource already bound on the other node replaces the older session with a conflict', async () => {
    const first = await loginAs(n1, `dup-${tag}`, 'same');
    const second = await loginAs(n2, `dup-${tag}`, 'same');
    const err = await first.expect((el) => el.name === 'stream:error' && el.getChild('conflict', 'urn:ietf:params:xml:ns:xmpp-streams') !== undefined);
    assert.ok(err);
    await online(second);
  });

  test('a roster change on one node is pushed to the interested resources on the other', async () => {
    const here = await loginAs(n1, `ros-${tag}`, 'here');
    const there = await loginAs(n2, `ros-${tag}`, 'there');
    for (const c of [here, there]) await c.iq(x('iq', { type: 'get' }, x('query', { xmlns: 'jabber:iq:roster' })));
    // The interest travels with the session's state: node 1 knows it once its stand-in says so.
    while (!n1.server.ctx.sessions.get(there.jid!)?.interested) await new Promise((r) => setTimeout(r, 10));
    const r = await here.iq(x('iq', { type: 'set' }, x('query', { xmlns: 'jabber:iq:roster' }, x('item', { jid: `friend-${tag}@localhost`, name: 'Friend' }))));
    assert.equal(r.attrs.type, 'result');
    const push = await there.expect((el) => el.name === 'iq' && el.attrs.type === 'set' && el.getChild('query', 'jabber:iq:roster') !== undefined);
    assert.equal(push.getChild('query')!.getChild('item')!.attrs.jid, `friend-${tag}@localhost`);
  });

  test('a second node started under a running node\'s name is refused: it would take half its stanzas', async () => {
    await assert.rejects(
      startTestServer({ storage: storage(), config: { cluster: { enabled: true, node: 'n2', prefix, heartbeatInterval: '200ms', failureTimeout: '1s' } }, logLevel: 'error' }),
      /node name "n2" is in use by a running node/,
    );
    // The running node goes on serving.
    const c = await loginAs(n2, `still-${tag}`);
    await online(c);
  });

  test('a node whose server-secret or muc-occupant-id.key differs from the running nodes\' refuses to join, naming the file (no secret in the message)', async () => {
    const cluster = (node: string) => ({ cluster: { enabled: true, node, prefix, heartbeatInterval: '200ms', failureTimeout: '1s' } });
    const otherSecret = 'e3'.repeat(32);
    await assert.rejects(startTestServer({ storage: storage(), config: cluster('n3'), files: { 'server-secret': otherSecret + '\n' }, logLevel: 'error' }), (err: Error) => {
      assert.match(err.message, /server-secret differs from the one of node n[12]/);
      assert.ok(!err.message.includes(otherSecret) && !err.message.includes(CLUSTER_SERVER_SECRET), 'no secret in the message');
      return true;
    });
    await assert.rejects(
      startTestServer({ storage: storage(), config: cluster('n3'), files: { 'muc-occupant-id.key': 'f4'.repeat(32) + '\n' }, logLevel: 'error' }),
      /muc-occupant-id\.key differs from the one of node n[12] \(every node needs the same muc-occupant-id\.key/,
    );
    // The running nodes go on serving, and did not count the refused node as a member.
    assert.deepEqual(n1.server.ctx.services.get('cluster')?.status().nodes.map((n) => n.name), ['n1', 'n2']);
    const c = await loginAs(n1, `samekeys-${tag}`);
    await online(c);
  });

    test('XEP-0191: a block set on one node holds on the other, whose copy of the list was read before', async () => {
    const user = await loginAs(n1, `blocker-${tag}`);
    const pest = await loginAs(n2, `pest-${tag}`);
    await online(user);
    // Node 2 routes to the user once it knows the resource is available (announcements take a moment).
    while (!n2.server.ctx.sessions.get(user.jid!)?.available) await new Promise((r) => setTimeout(r, 10));
    // Node 2 reads the user's (empty) list to filter this message, and keeps it.
    pest.send(x('message', { to: `blocker-${tag}@localhost`, type: 'chat' }, x('body', {}, 'before the block')));
    await user.expect(isMessage('before the block'));
    const r = await user.iq(x('iq', { type: 'set' }, x('block', { xmlns: 'urn:xmpp:blocking' }, x('item', { jid: `pest-${tag}@localhost` }))));
    assert.equal(r.attrs.type, 'result');
    // The invalidation travels to node 2; until then its copy may still let a message through.
    let refused: Element | null = null;
    for (let i = 0; i < 100 && !refused; i++) {
      const id = `after-${i}`;
      pest.send(x('message', { to: `blocker-${tag}@localhost`, type: 'chat', id }, x('body', {}, `after the block ${i}`)));
      refused = await pest.expect((el) => el.name === 'message' && el.attrs.type === 'error' && el.attrs.id === id, 100).catch(() => null);
    }
    assert.ok(refused, "the blocked contact's messages are refused on its node");
  });

  test('an account deleted and made again on one node is the new account on the other', async () => {
    const name = `phoenix-${tag}`;
    const friend = await loginAs(n2, `friend-${tag}`);
    await online(friend);
    const first = await loginAs(n1, name);
    await online(first);
    // Node 2 learns (and caches) the first account while handling a subscription request to it.
    friend.send(x('presence', { to: `${name}@localhost`, type: 'subscribe' }));
    await first.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribe');
    const removed = await first.iq(x('iq', { type: 'set' }, x('query', { xmlns: 'jabber:iq:register' }, x('remove'))));
    assert.equal(removed.attrs.type, 'result', String(removed));
    // The result comes first, the erasure after it (XEP-0077 3.2).
    while (await n1.server.ctx.storage.accounts.get(name, 'localhost')) await new Promise((r) => setTimeout(r, 20));
    const again = await n1.client();
    const reg = await again.register(name, 'pw-new');
    assert.equal(reg.attrs.type, 'result', String(reg));
    await again.login(name, 'pw-new');
    await online(again);
    friend.send(x('presence', { to: `${name}@localhost`, type: 'subscribe' }));
    const request = await again.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribe');
    assert.equal(request.attrs.from, `friend-${tag}@localhost`);
  });

  test('a message stored offline by a node that did not know yet the user came online elsewhere is delivered at once', async () => {
    const sender = await loginAs(n1, `early-${tag}`);
    const user = await loginAs(n2, `late-${tag}`);
    await online(user);
    while (!n1.server.ctx.sessions.get(user.jid!)?.available) await new Promise((r) => setTimeout(r, 10));
    // Node 1 as it was a moment before the announcement reached it: no resource of the user known.
    const standIn = n1.server.ctx.sessions.get(user.jid!) as RemoteSession;
    (n1.server.ctx.sessions as ClusterSessionRegistry).removeRemote(standIn);
    sender.send(x('message', { to: `late-${tag}@localhost`, type: 'chat' }, x('body', {}, 'written in the window')));
    const stored = await sender.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: 'urn:xmpp:ping' })));
    assert.equal(stored.attrs.type, 'result');
    // The next announcement of the resource (here: a presence change) makes node 1 ask node 2 to look again.
    user.send(x('presence', {}, x('show', {}, 'away')));
    const got = await user.expect(isMessage('written in the window'));
    assert.ok(got.getChild('delay', 'urn:xmpp:delay'), 'delivered from offline storage');
  });

  test("the node's metrics carry its name as the label node", async () => {
    const res = await new AdminClient(n1.adminPort).get('/metrics', { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    assert.equal(res.status, 200);
    assert.match(res.body, /^gatehouse_sessions_online\{node="n1"\} \d+$/m);
  });
});

/** Where this suite's failed logins and registrations come from (all of 127.0.0.0/8 is loopback on Linux). */
const FAILING_ADDRESS = '127.0.0.2';

describe('cluster: limits counted across nodes', { skip }, () => {
  const prefix = 'ghtest-' + randomBytes(4).toString('hex');
  const tag = randomBytes(3).toString('hex');
  let n1: TestServer;
  let n2: TestServer;
  before(async () => {
    const config = (node: string) => ({
      cluster: { enabled: true, node, prefix, heartbeatInterval: '200ms', failureTimeout: '1s' },
      // Per account only (the failures below come from 127.0.0.2, recorded in the shared database,
      // which other tests connecting from 127.0.0.1 never meet).
      loginGuard: { trustedProxies: ['127.0.0.0/8'], delayAfter: 100, accountBlockAfter: 3 },
      // Three per address: the victim's account below, then two more on two nodes.
      registrationLimit: { maxPerAddress: 3, window: '1h' },
    });
    n1 = await startTestServer({ storage: storage(), config: config('l1'), logLevel: 'warn' });
    n2 = await startTestServer({ storage: storage(), config: config('l2'), logLevel: 'warn' });
    const reg = await (await n1.client({ localAddress: FAILING_ADDRESS })).register(`victim-${tag}`, 'right-password');
    assert.equal(reg.attrs.type, 'result');
  });
  after(async () => {
    await n2?.stop();
    await n1?.stop();
  });

  test('P7 failed logins against one account add up over the nodes: the third blocks it on every node', async () => {
    const victim = `victim-${tag}`;
    for (const node of [n1, n2, n1]) {
      const outcome = await (await node.client({ localAddress: FAILING_ADDRESS })).authenticate(victim, 'wrong-password');
      assert.equal(outcome.name, 'failure');
    }
    // Each node alone saw fewer than three; the right password is refused now, on the other node too.
    let refused: Element | null = null;
    for (let i = 0; i < 50 && !refused; i++) {
      const outcome = await (await n2.client({ localAddress: FAILING_ADDRESS })).authenticate(victim, 'right-password');
      if (outcome.name === 'failure') refused = outcome;
      else await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(refused, 'the account is blocked on the node that saw one failure');
    assert.ok(refused!.getChild('temporary-auth-failure'));
  });

  test('the registration limit per address counts the registrations of every node', async () => {
    assert.equal((await (await n1.client({ localAddress: FAILING_ADDRESS })).register(`reg1-${tag}`, 'pw-reg1')).attrs.type, 'result');
    assert.equal((await (await n2.client({ localAddress: FAILING_ADDRESS })).register(`reg2-${tag}`, 'pw-reg2')).attrs.type, 'result');
    const third = await (await n1.client({ localAddress: FAILING_ADDRESS })).register(`reg3-${tag}`, 'pw-reg3');
    assert.equal(third.attrs.type, 'error');
    assert.ok(third.getChild('error')!.getChild('policy-violation'));
  });
});
