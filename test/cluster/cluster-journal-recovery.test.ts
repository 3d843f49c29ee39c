/**
 * Routing a dead node's stream management journal again (server/cluster/journal-recovery.ts), with
 * two cluster nodes in this process sharing PostgreSQL or MariaDB and NATS under a prefix of their
 * own. The second node "dies" by losing its NATS connection without leaving (as a killed process
 * does); the first takes its lease and routes what its client had not acknowledged. The database
 * refuses the first attempts to store those messages offline: the routing is tried again until
 * done, and nothing routed before the failure comes twice.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { loginAs, startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { StorageConfig } from '../../storage/datasource.js';

const DB_URL = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? process.env.GATEHOUSE_TEST_MYSQL_URL;
const skip = DB_URL ? false : 'cluster mode needs GATEHOUSE_TEST_POSTGRES_URL or GATEHOUSE_TEST_MYSQL_URL';
const NS_SM = 'urn:xmpp:sm:3';

function storage(): StorageConfig {
  const url = DB_URL!;
  return { type: url.startsWith('postgres') ? 'postgres' : 'mysql', url, migrateOnStart: true } as StorageConfig;
}

async function online(c: TestClient): Promise<void> {
  c.send(x('presence'));
  await c.expect((el) => el.name === 'presence' && el.attrs.from === c.jid && el.attrs.type === undefined);
}

const bodies = (els: Element[]) => els.filter((el) => el.name === 'message').map((el) => el.getChildText('body'));

describe('cluster: a dead node\'s journal is routed again until done', { skip }, () => {
  const prefix = 'ghtest-' + randomBytes(4).toString('hex');
  const tag = randomBytes(3).toString('hex');
  let n1: TestServer;
  let n2: TestServer;
  before(async () => {
    const cluster = (node: string) => ({ cluster: { enabled: true, node, prefix, heartbeatInterval: '200ms', failureTimeout: '1s', deliveryTimeout: '1s' } });
    n1 = await startTestServer({ storage: storage(), config: cluster('j1'), logLevel: 'info' });
    n2 = await startTestServer({ storage: storage(), config: cluster('j2'), logLevel: 'info' });
  });
  after(async () => {
    await n2?.stop();
    await n1?.stop();
  });

  test('the database fails while a dead node\'s unacknowledged messages are stored offline: they are stored once it works again, each once', async () => {
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

    // The database refuses the second message offline, twice.
    const repo = n1.server.ctx.storage.offline;
    const store = repo.store.bind(repo);
    let calls = 0;
    repo.store = async (...args: Parameters<typeof store>) => {
      calls++;
      if (calls === 2 || calls === 3) throw new Error('database unavailable (test)');
      return store(...args);
    };
    try {
      // Node 2 dies: its NATS connection goes without a word (a killed process says none either).
      await (n2.server.ctx.services.get('cluster') as unknown as { nc: NatsConnection }).nc.close();
      // Bob stays away until node 1 has tried to store the second message twice (so the messages
      // go to offline storage, not to a resource of his on node 1).
      for (const until = Date.now() + 30_000; calls < 3 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 20));
      assert.equal(calls, 3, `the store that failed was tried again (${calls} calls); ${n1.logLines.filter((l) => /journal|dead|lease/.test(l)).join('\n')}`);
      const again = await loginAs(n1, `jbob-${tag}`, 'laptop');
      await online(again);
      // expect() takes what it matched out of `received`.
      const arrived: Element[] = [];
      for (const body of sent) {
        if (again.received.some((el) => el.name === 'message' && el.getChildText('body') === body)) continue;
        const el = await again.expect((e) => e.name === 'message' && e.getChildText('body') === body, 20_000).catch((err) => {
          throw new Error(`${err}; ${n1.logLines.filter((l) => /journal|dead|lease/.test(l)).join('\n')}`);
        });
        arrived.push(el);
      }
      const r = await again.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
      assert.equal(r.attrs.type, 'result');
      const all = [...arrived, ...again.received.filter((el) => el.name === 'message')];
      const got = bodies(all).filter((b) => b?.startsWith('journaled '));
      assert.deepEqual([...got].sort(), [...sent].sort(), 'each message once');
      assert.ok(all.every((el) => el.getChild('delay', NS.delay)), 'with the delay of its first sending');
    } finally {
      repo.store = store;
    }
  });
});
