/**
 * Offline storage in cluster mode, where a message is stored by one node while a resource of its
 * account is online on another: what is stored is deleted only by the node that wrote it to the
 * resource's stream. A cluster node on a fresh PostgreSQL or MariaDB database of its own (NATS under
 * a prefix of its own).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { loginAs, startTestServer, type TestServer } from '../helpers/server.js';
import { x } from '../../shared/xml/element.js';
import { RemoteSession } from '../../server/cluster/remote-session.js';
import type { ClusterSessionRegistry } from '../../server/cluster/registry.js';
import type { ClusterNode } from '../../server/cluster/node.js';
import { storageTargets } from '../../storage/test-databases.js';
import type { StorageConfig } from '../../storage/datasource.js';

const targets = storageTargets();
const TARGET = targets.find((t) => t.name === 'postgres') ?? targets.find((t) => t.name === 'mysql');
const skip = TARGET ? false : 'cluster mode needs GATEHOUSE_TEST_POSTGRES_URL or GATEHOUSE_TEST_MYSQL_URL';

describe('cluster: offline storage and resources on other nodes', { skip }, () => {
  const prefix = 'ghtest-' + randomBytes(4).toString('hex');
  const tag = randomBytes(3).toString('hex');
  let db: Awaited<ReturnType<NonNullable<typeof TARGET>['make']>>;
  let n1: TestServer;
  let n2: TestServer;
  before(async () => {
    db = await TARGET!.make();
    const node = (name: string) => ({
      storage: { ...db.config, migrateOnStart: true } as StorageConfig,
      // Failure detection is not under test: the node that stands for a crashed one below is never declared dead.
      config: { cluster: { enabled: true, node: name, prefix, heartbeatInterval: '200ms', failureTimeout: '5s', deliveryTimeout: '1s' } },
      logLevel: 'info' as const,
    });
    n1 = await startTestServer(node('o1'));
    n2 = await startTestServer(node('o2'));
  });
  after(async () => {
    await n2?.stop();
    await n1?.stop();
    await db?.drop();
  });

  test('a message stored offline just as the user came online on another node is delivered there at once', async () => {
    const sender = await loginAs(n1, `early-${tag}`);
    const user = await loginAs(n2, `late-${tag}`);
    user.send(x('presence'));
    await user.expect((el) => el.name === 'presence' && el.attrs.from === user.jid && el.attrs.type === undefined);
    while (!n1.server.ctx.sessions.get(user.jid!)?.available) await new Promise((r) => setTimeout(r, 10));
    // Node 1 hears of the resource only while it stores the message (the announcement comes in
    // between): its offline store finds the resource available right after writing the row.
    const registry = n1.server.ctx.sessions as ClusterSessionRegistry;
    const standIn = n1.server.ctx.sessions.get(user.jid!) as RemoteSession;
    registry.removeRemote(standIn);
    const off = n1.server.ctx.hooks.on('message/offline', () => void registry.addRemote(standIn), 'observe');
    try {
      sender.send(x('message', { to: `late-${tag}@localhost`, type: 'chat', id: 'window-1' }, x('body', {}, 'stored in the window')));
      const got = await user.expect((el) => el.name === 'message' && el.attrs.id === 'window-1');
      assert.equal(got.getChildren('delay', 'urn:xmpp:delay').length, 1, 'delivered from offline storage by its own node');
    } finally {
      off();
    }
  });

  test('a message stored offline while its node believes the user online on a node that crashed is kept once, stamped once', async () => {
    const sender = await loginAs(n1, `writer-${tag}`);
    const name = `reader-${tag}`;
    await loginAs(n1, name).then((c) => c.destroy());
    const bare = `${name}@localhost`;
    let stored = 0;
    const off = n1.server.ctx.hooks.on('message/offline', ({ to }) => void (to.bare === bare && stored++), 'observe');
    // The user's resource on a node that crashed a moment ago: node 1 still lists it (the node is
    // not declared dead yet), and nothing answers there (NATS: no responders).
    const cluster = n1.server.ctx.services.need('cluster') as ClusterNode;
    const standIn = new RemoteSession(
      'o-crashed',
      { jid: `${bare}/phone`, id: 'crashed-1', startedAt: Date.now(), available: true, priority: 0, presence: null, interested: true, capabilities: null, flags: [] },
      cluster,
    );
    (n1.server.ctx.sessions as ClusterSessionRegistry).addRemote(standIn);
    sender.send(x('message', { to: bare, type: 'chat', id: 'kept-1' }, x('body', {}, 'while the node was dying')));
    // Not confirmed by the crashed node: stored offline. Offline storage then finds the stand-in
    // available; it must not hand the stored message to it and delete it on the strength of that.
    while (stored === 0) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 1000));
    off();
    assert.equal(stored, 1, 'stored once, not stored, handed to the stand-in, deleted and stored again');
    // The node is declared dead; the user comes online on node 1.
    (n1.server.ctx.sessions as ClusterSessionRegistry).removeRemote(standIn);
    const reader = await loginAs(n1, name);
    reader.send(x('presence'));
    const got = await reader.expect((el) => el.name === 'message' && el.attrs.id === 'kept-1');
    assert.equal(got.getChildren('delay', 'urn:xmpp:delay').length, 1, String(got));
    const pong = await reader.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: 'urn:xmpp:ping' })));
    assert.equal(pong.attrs.type, 'result');
    assert.equal(reader.received.filter((el) => el.name === 'message' && el.attrs.id === 'kept-1').length, 0, 'delivered once');
  });
});
