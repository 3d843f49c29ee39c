/**
 * How stanzas cross to another node (server/cluster/stanza-crossing.ts), against stand-in peers
 * speaking NATS directly: frames with confirmations owed and sent later, a node that never confirms,
 * a node that no longer listens, and a node of the previous protocol (batches as requests). The
 * client sees it as: a message confirmed by its node is not delivered a second time elsewhere, one
 * not confirmed reaches the account's other resource.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { loginAs, startTestServer, type TestServer } from '../helpers/server.js';
import { RemoteSession } from '../../server/cluster/remote-session.js';
import type { ClusterSessionRegistry } from '../../server/cluster/registry.js';
import type { ClusterNode } from '../../server/cluster/node.js';
import { decodeFrame, encodeFrame, type Confirmations, type StanzaBatch } from '../../server/cluster/protocol.js';
import { x, type Element } from '../../shared/xml/element.js';
import { clusterStorage, online, skipWithoutClusterDb as skip } from '../helpers/cluster-nodes.js';

const isMessage = (body: string) => (el: Element) => el.name === 'message' && el.getChildText('body') === body;

/** A peer that is only a NATS connection: it sends heartbeats (saying whether it takes frames) until closed. */
async function fakePeer(prefix: string, name: string, frames: boolean): Promise<{ nc: NatsConnection; close(): Promise<void> }> {
  const nc = await connect({ servers: 'nats://127.0.0.1:4222' });
  const hb = () => nc.publish(`${prefix}.hb`, new TextEncoder().encode(JSON.stringify({ node: name, epoch: 'fake', startedAt: new Date().toISOString(), sessions: 0, components: [], ...(frames ? { frames: true } : {}) })));
  hb();
  const timer = setInterval(hb, 100);
  await nc.flush();
  return {
    nc,
    async close() {
      clearInterval(timer);
      await nc.close();
    },
  };
}

/** A stand-in on `server` for `jid` bound on the node `node` (priority 0, as the account's resource here: both are its top resources). */
function standIn(server: TestServer, node: string, jid: string): void {
  const cluster = server.server.ctx.services.need('cluster') as ClusterNode;
  const entry = { jid, id: 's-' + node, startedAt: Date.now(), available: true, priority: 0, presence: null, interested: false, capabilities: null, flags: [] };
  (server.server.ctx.sessions as ClusterSessionRegistry).addRemote(new RemoteSession(node, entry, cluster));
}

/** Until `n` items arrived, at most a few seconds. */
async function until(got: unknown[], n: number): Promise<void> {
  for (let i = 0; i < 200 && got.length < n; i++) await new Promise((r) => setTimeout(r, 25));
}

describe('cluster: stanzas crossing to other nodes, confirmations', { skip }, () => {
  const tag = randomBytes(3).toString('hex');
  // Node 1 waits 1 s for confirmations; node 2 (a cluster of its own) 30 s, so what it does within
  // the tests' few seconds cannot be its delivery timeout.
  const prefix1 = 'ghframes-' + randomBytes(4).toString('hex');
  const prefix2 = 'ghframes-' + randomBytes(4).toString('hex');
  let n1: TestServer;
  let n2: TestServer;
  before(async () => {
    const cluster = (node: string, prefix: string, deliveryTimeout: string) => ({ cluster: { enabled: true, node, prefix, heartbeatInterval: '200ms', failureTimeout: '1s', deliveryTimeout } });
    n1 = await startTestServer({ storage: clusterStorage(), config: cluster('n1', prefix1, '1s'), logLevel: 'warn' });
    n2 = await startTestServer({ storage: clusterStorage(), config: cluster('n2', prefix2, '30s'), logLevel: 'warn' });
  });
  after(async () => {
    await n2?.stop();
    await n1?.stop();
  });

  test('a node that takes frames gets the message in one, and its confirmation, sent later on its own, keeps the message from going elsewhere', async () => {
    const peer = await fakePeer(prefix1, 'fconfirm', true);
    const frames: { epoch: string; ids: number[]; xml: string[] }[] = [];
    peer.nc.subscribe(`${prefix1}.node.fconfirm.frames`, {
      callback: (_err, m) => {
        const { header, items } = decodeFrame(m.data);
        // Only the test's message (a privacy policy notice may go to the account's resources at login).
        const ours = items.filter((i) => i.bytes.toString('utf8').includes('confirmed in a frame'));
        if (ours.length > 0) frames.push({ epoch: header.epoch, ids: ours.map((i) => i.id), xml: ours.map((i) => i.bytes.toString('utf8')) });
        const confirm = { epoch: header.epoch, delivered: items.map((i) => i.id).filter((id) => id !== 0), gone: [] };
        // Owed, as a node does: a moment later, in a frame with no stanzas.
        setTimeout(() => {
          if (!peer.nc.isClosed()) peer.nc.publish(`${prefix1}.node.n1.frames`, encodeFrame({ node: 'fconfirm', epoch: 'fake', confirm }, []));
        }, 50);
      },
    });
    try {
      const sender = await loginAs(n1, `fsender-${tag}`);
      const here = await loginAs(n1, `frecip-${tag}`, 'here');
      await online(here);
      const there = `frecip-${tag}@localhost/there`;
      standIn(n1, 'fconfirm', there);
      sender.send(x('message', { to: there, type: 'chat' }, x('body', {}, 'confirmed in a frame')));
      await until(frames, 1);
      assert.equal(frames.length, 1);
      assert.equal(frames[0]!.ids.length, 1);
      assert.notEqual(frames[0]!.ids[0], 0);
      assert.match(frames[0]!.xml[0]!, /confirmed in a frame/);
      // Unconfirmed after deliveryTimeout (1 s), it would go to the account's resource here.
      assert.ok(await here.expectNothing(isMessage('confirmed in a frame'), 2500));
    } finally {
      await peer.close();
    }
  });

  test('a node that takes frames but never confirms: after deliveryTimeout the message goes to the account\'s other resource', async () => {
    const peer = await fakePeer(prefix1, 'fsilent', true);
    const got: unknown[] = [];
    peer.nc.subscribe(`${prefix1}.node.fsilent.frames`, {
      callback: (_err, m) => {
        for (const i of decodeFrame(m.data).items) if (i.bytes.toString('utf8').includes('never confirmed')) got.push(i);
      },
    });
    try {
      const sender = await loginAs(n1, `ssender-${tag}`);
      const here = await loginAs(n1, `srecip-${tag}`, 'here');
      await online(here);
      const there = `srecip-${tag}@localhost/there`;
      standIn(n1, 'fsilent', there);
      sender.send(x('message', { to: there, type: 'chat' }, x('body', {}, 'never confirmed')));
      const fallback = await here.expect(isMessage('never confirmed'));
      assert.equal(fallback.attrs.from, sender.jid);
      assert.equal(got.length, 1);
    } finally {
      await peer.close();
    }
  });

  test('a node whose heartbeat says it takes frames but that no longer listens: NATS says so at once and the message goes to the account\'s other resource, long before deliveryTimeout', async () => {
    // Node 2 waits 30 s for confirmations: the fallback within expect's 10 s is NATS's 503.
    const peer = await fakePeer(prefix2, 'fgone', true);
    try {
      const sender = await loginAs(n2, `gsender-${tag}`);
      const here = await loginAs(n2, `grecip-${tag}`, 'here');
      await online(here);
      const there = `grecip-${tag}@localhost/there`;
      standIn(n2, 'fgone', there);
      sender.send(x('message', { to: there, type: 'chat' }, x('body', {}, 'to a node not listening')));
      const fallback = await here.expect(isMessage('to a node not listening'));
      assert.equal(fallback.attrs.from, sender.jid);
    } finally {
      await peer.close();
    }
  });

  test('a node of the previous protocol (no frames in its heartbeat) gets a batch as a request, and its reply confirms the message', async () => {
    const peer = await fakePeer(prefix1, 'fold', false);
    const batches: StanzaBatch[] = [];
    peer.nc.subscribe(`${prefix1}.node.fold.stanzas`, {
      callback: (_err, m) => {
        const batch = JSON.parse(new TextDecoder().decode(m.data)) as StanzaBatch;
        if (batch.items.some((i) => i.xml.includes('to the previous version'))) batches.push(batch);
        const c: Confirmations = { delivered: batch.items.flatMap((i) => (i.id === undefined ? [] : [i.id])), gone: [] };
        m.respond(new TextEncoder().encode(JSON.stringify(c)));
      },
    });
    await peer.nc.flush();
    try {
      const sender = await loginAs(n1, `osender-${tag}`);
      const here = await loginAs(n1, `orecip-${tag}`, 'here');
      await online(here);
      const there = `orecip-${tag}@localhost/there`;
      standIn(n1, 'fold', there);
      sender.send(x('message', { to: there, type: 'chat' }, x('body', {}, 'to the previous version')));
      await until(batches, 1);
      assert.equal(batches.length, 1);
      assert.equal(batches[0]!.node, 'n1');
      assert.ok(batches[0]!.items.some((i) => /to the previous version/.test(i.xml)));
      assert.ok(await here.expectNothing(isMessage('to the previous version'), 2500));
    } finally {
      await peer.close();
    }
  });

  test('a frame that does not parse is logged and dropped; the node goes on taking frames', async () => {
    const peer = await fakePeer(prefix1, 'fbad', true);
    try {
      peer.nc.publish(`${prefix1}.node.n1.frames`, new TextEncoder().encode('{"node":"fbad","epoch":"fake","items":[[1,"a@localhost/x","s",99999]]}\n<message/>'));
      peer.nc.publish(`${prefix1}.node.n1.frames`, new TextEncoder().encode('not a frame'));
      await peer.nc.flush();
      // A real stanza afterwards still crosses: n1 delivers a frame to its local session.
      const bob = await loginAs(n1, `fbob-${tag}`);
      const xml = x('message', { to: bob.jid!, from: `someone-${tag}@localhost/r`, type: 'chat' }, x('body', {}, 'after the bad frames')).toString();
      peer.nc.publish(`${prefix1}.node.n1.frames`, encodeFrame({ node: 'fbad', epoch: 'fake' }, [{ id: 0, to: bob.jid!, sid: 'x', xml }]));
      await bob.expect(isMessage('after the bad frames'));
    } finally {
      await peer.close();
    }
  });
});
