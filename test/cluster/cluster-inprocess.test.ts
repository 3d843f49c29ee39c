/**
 * Two cluster nodes in one test process (quick to start), sharing PostgreSQL or MariaDB and the
 * NATS server at 127.0.0.1:4222 under a prefix of their own: what crosses nodes, seen by clients.
 * test/cluster/cluster-processes.test.ts runs three nodes as separate processes.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { loginAs, startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { x, type Element } from '../../shared/xml/element.js';
import type { StorageConfig } from '../../storage/datasource.js';

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

describe('cluster: two nodes in one process', { skip }, () => {
  const prefix = 'ghtest-' + randomBytes(4).toString('hex');
  const tag = randomBytes(3).toString('hex');
  let n1: TestServer;
  let n2: TestServer;
  before(async () => {
    const cluster = (node: string) => ({ cluster: { enabled: true, node, prefix, heartbeatInterval: '200ms', failureTimeout: '1s', deliveryTimeout: '1s' } });
    n1 = await startTestServer({ storage: storage(), config: cluster('n1'), logLevel: 'info' });
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
});
