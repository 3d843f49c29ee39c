/**
 * Failure detection and its aftermath (issue #19), with two cluster nodes in this process sharing
 * PostgreSQL or MariaDB and NATS under a prefix of their own:
 * - a node whose heartbeats stop reaching the others while it renews its lease (fencing.ts) is not
 *   declared dead: its users stay online for their contacts;
 * - routing a dead node's stream management journal again (journal-recovery.ts): the second node
 *   "dies" by losing its NATS connection without leaving (as a killed process does); the first
 *   takes its lease and routes what its client had not acknowledged. Routing fails for one of
 *   those messages twice (as when the database refuses it): it is tried again until done, and
 *   nothing routed before the failure is routed twice.
 * test/cluster/cluster-fencing.test.ts pauses a node process (SIGSTOP) past the failure timeout.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { loginAs, startTestServer, type TestServer } from '../helpers/server.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { clusterStorage, online, skipWithoutClusterDb as skip } from '../helpers/cluster-nodes.js';

const NS_SM = 'urn:xmpp:sm:3';

describe('cluster: failures of a node', { skip }, () => {
  const prefix = 'ghtest-' + randomBytes(4).toString('hex');
  const tag = randomBytes(3).toString('hex');
  let n1: TestServer;
  let n2: TestServer;
  before(async () => {
    const cluster = (node: string) => ({ cluster: { enabled: true, node, prefix, heartbeatInterval: '200ms', failureTimeout: '1s', deliveryTimeout: '1s' } });
    n1 = await startTestServer({ storage: clusterStorage(), config: cluster('j1'), logLevel: 'info' });
    n2 = await startTestServer({ storage: clusterStorage(), config: cluster('j2'), logLevel: 'info' });
  });
  after(async () => {
    await n2?.stop();
    await n1?.stop();
  });

  test('heartbeats that stop reaching the others while the node renews its lease: not declared dead, its users stay online', async () => {
    const alice = await loginAs(n1, `halice-${tag}`);
    const bob = await loginAs(n2, `hbob-${tag}`);
    await online(alice);
    await online(bob);
    // Directed presence: a node declared dead would send unavailable on bob's behalf.
    bob.send(x('presence', { to: alice.jid! }));
    await alice.expect((el) => el.name === 'presence' && el.attrs.from === bob.jid && el.attrs.type === undefined);
    // The node's membership (server/cluster/membership.ts) sends its heartbeats.
    const node2 = (n2.server.ctx.services.get('cluster') as unknown as { membership: { heartbeat: () => void } }).membership;
    const suspected = () => n1.logLines.filter((l) => l.includes('renewed its lease: not declared dead')).length;
    const before = suspected();
    // Node 2's heartbeats go nowhere (a lossy link, a slow NATS route) until node 1 has looked at its lease twice.
    node2.heartbeat = () => {};
    try {
      for (const until = Date.now() + 20_000; suspected() < before + 2 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 50));
    } finally {
      delete (node2 as { heartbeat?: unknown }).heartbeat;
    }
    assert.ok(suspected() >= before + 2, `node 1 found node 2 silent for the failure timeout, twice; ${n1.logLines.filter((l) => /dead|lease/.test(l)).join('\n')}`);
    assert.ok(!alice.received.some((el) => el.name === 'presence' && el.attrs.from === bob.jid && el.attrs.type === 'unavailable'), 'bob stayed online for alice');
    assert.ok(n1.server.ctx.services.get('cluster')!.status().nodes.some((n) => n.name === 'j2' && n.state === 'up'));
    alice.send(x('message', { to: bob.jid!, type: 'chat' }, x('body', {}, 'still there')));
    await bob.expect((el) => el.name === 'message' && el.getChildText('body') === 'still there');
    assert.equal(bob.streamError, null);
  });

  test('routing a dead node\'s unacknowledged messages fails for a while: it is tried again until done, each routed once, and all arrive', async () => {
    const alice = await loginAs(n1, `jalice-${tag}`);
    const bob = await loginAs(n2, `jbob-${tag}`, 'phone');
    bob.send(x('enable', { xmlns: NS_SM, resume: 'true' }));
    await bob.expect((el) => el.name === 'enabled' && el.attrs.xmlns === NS_SM);
    await online(bob);
    // Node 1 routes to bob once it knows his resource is available.
    while (!n1.server.ctx.sessions.get(bob.jid!)?.available) await new Promise((r) => setTimeout(r, 10));
    const sent = ['first', 'second', 'third', 'fourth'].map((w) => `journaled ${w}`);
    for (const body of sent) alice.send(x('message', { to: `jbob-${tag}@localhost`, type: 'chat' }, x('body', {}, body)));
    // Bob's client receives them and never acknowledges: they are in node 2's journal.
    for (const body of sent) await bob.expect((el) => el.name === 'message' && el.getChildText('body') === body);

    // Routing the journal's copies (they carry the delay of their first sending) fails for the
    // second message, twice: as when the database refuses to store it offline.
    const router = n1.server.ctx.router;
    const route = router.route.bind(router);
    const routed: string[] = [];
    router.route = async (stanza, from, origin) => {
      const journaled = stanza.name === 'message' && stanza.attrs.to?.startsWith(`jbob-${tag}@`) && stanza.getChild('delay', NS.delay)?.attrs.from === 'localhost';
      if (journaled) {
        routed.push(stanza.getChildText('body') ?? '');
        if (routed.length === 2 || routed.length === 3) throw new Error('database unavailable (test)');
      }
      return route(stanza, from, origin);
    };
    try {
      // Node 2 dies: its NATS connection goes without a word (a killed process says none either).
      await (n2.server.ctx.services.get('cluster') as unknown as { nc: NatsConnection }).nc.close();
      for (const until = Date.now() + 30_000; routed.length < 6 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(
        routed.map((b) => b.replace('journaled ', '')),
        ['first', 'second', 'second', 'second', 'third', 'fourth'],
        `tried again until routed, nothing routed twice; ${n1.logLines.filter((l) => /journal|dead|lease/.test(l)).join('\n')}`,
      );
    } finally {
      router.route = route;
    }
    // Bob logs in again: every message he had not acknowledged arrives (at least once: a delivery
    // node 2 had not confirmed when it died may also have been stored by node 1).
    const again = await loginAs(n1, `jbob-${tag}`, 'laptop');
    await online(again);
    for (const body of sent) {
      if (again.received.some((el) => el.name === 'message' && el.getChildText('body') === body)) continue;
      await again.expect((e) => e.name === 'message' && e.getChildText('body') === body, 20_000);
    }
  });
});
