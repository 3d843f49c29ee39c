/**
 * Group chat rooms moving when the living nodes change (server/modules/muc/cluster.ts): a node that
 * cannot read the stored rooms it now owns (the database unreachable, or closing as the node stops)
 * logs it and keeps running. Cluster nodes on a fresh PostgreSQL or MariaDB database of their own.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { loginAs, startTestServer, type TestServer } from '../helpers/server.js';
import { x } from '../../shared/xml/element.js';
import { mucStorage } from '../../server/modules/muc/storage.js';
import { storageTargets } from '../../storage/test-databases.js';
import type { StorageConfig } from '../../storage/datasource.js';

const targets = storageTargets();
const TARGET = targets.find((t) => t.name === 'postgres') ?? targets.find((t) => t.name === 'mysql');
const skip = TARGET ? false : 'cluster mode needs GATEHOUSE_TEST_POSTGRES_URL or GATEHOUSE_TEST_MYSQL_URL';

/** The node of `nodes` that runs `room` (rendezvous hashing, as ClusterNode.ownerOf computes it). */
function ownerAmong(nodes: string[], room: string): string {
  const score = (node: string) => createHash('sha1').update(`muc\u0000${room}\u0000${node}`).digest().readUInt32BE(0);
  return [...nodes].sort((a, b) => score(b) - score(a) || (a < b ? -1 : 1))[0]!;
}

describe('cluster: group chat rooms moving after a membership change', { skip }, () => {
  const prefix = 'ghtest-' + randomBytes(4).toString('hex');
  let db: Awaited<ReturnType<NonNullable<typeof TARGET>['make']>>;
  let n1: TestServer;
  let n2: TestServer | undefined;
  const node = (name: string) => ({
    storage: { ...db.config, migrateOnStart: true } as StorageConfig,
    config: { cluster: { enabled: true, node: name, prefix, heartbeatInterval: '200ms', failureTimeout: '5s' } },
    logLevel: 'info' as const,
  });
  before(async () => {
    db = await TARGET!.make();
    n1 = await startTestServer(node('r1'));
  });
  after(async () => {
    await n2?.stop();
    await n1?.stop();
    await db?.drop();
  });

  test('a node that cannot read the stored rooms it is to run logs it and keeps serving', async () => {
    const service = n1.server.ctx.config.muc.domain.replace('{host}', 'localhost');
    let name = '';
    for (let i = 0; !name; i++) if (ownerAmong(['r1', 'r2'], `stored${i}@${service}`) === 'r1') name = `stored${i}`;
    const repo = n1.server.ctx.storage.repository(mucStorage);
    await repo.saveRoom(service, name, '{}', new Date());
    // The database goes away for node 1 as it loads the rooms a joining node leaves it.
    repo.affiliations = () => Promise.reject(new Error('database unreachable'));
    n2 = await startTestServer(node('r2'));
    while (!n1.logLines.some((l) => l.includes('moving rooms after a membership change failed'))) await new Promise((r) => setTimeout(r, 20));
    const c = await loginAs(n1, `still-${randomBytes(3).toString('hex')}`);
    const pong = await c.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: 'urn:xmpp:ping' })));
    assert.equal(pong.attrs.type, 'result');
  });
});
