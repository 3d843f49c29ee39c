/**
 * Stream management (XEP-0198) across the nodes of a cluster, with three `gatehouse start`
 * processes sharing PostgreSQL or MariaDB and NATS (as cluster-processes.test.ts): a client whose
 * node was killed with SIGKILL, or who reconnected to another node, sends <resume/> there; what it
 * had not acknowledged is not lost (it arrives as offline messages when it binds anew); the
 * directed presence of a killed node's user ends for its recipient.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { TestClient } from '../helpers/xmpp-client.js';
import {
  FAILURE_TIMEOUT_MS,
  announcePolicy,
  bare,
  barrier,
  nodeClients,
  online,
  skipWithoutClusterDb as skip,
  startNode,
  stopNode,
  type ClusterNode as Node,
} from '../helpers/cluster-nodes.js';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

const NS_SM = 'urn:xmpp:sm:3';

const { account, login, connect, destroyAll } = nodeClients();

/** Enables stream management with resumption; the client never acknowledges. */
async function enableSm(c: TestClient): Promise<string> {
  c.send(x('enable', { xmlns: NS_SM, resume: 'true' }));
  const enabled = await c.expect((el) => el.name === 'enabled' && el.attrs.xmlns === NS_SM);
  assert.ok(enabled.attrs.id);
  return enabled.attrs.id;
}

/** A new connection that resumes `previd`; `handled` counts the stanzas after <resumed/> (retransmitted ones included). */
async function resumeOn(node: Node, name: string, previd: string, h = 0): Promise<{ client: TestClient; answer: Element; handled: () => number }> {
  const client = await connect(node);
  await client.authenticateAndRestart(name, 'pw-' + name);
  let resumed = false;
  let n = 0;
  client.autoAnswer(
    (el) => {
      if (el.name === 'resumed' && el.attrs.xmlns === NS_SM) resumed = true;
      else if (resumed && (el.name === 'message' || el.name === 'presence' || el.name === 'iq')) n++;
      return false;
    },
    (el) => el,
  );
  client.send(x('resume', { xmlns: NS_SM, previd, h }));
  const answer = await client.expect((el) => el.attrs.xmlns === NS_SM && (el.name === 'resumed' || el.name === 'failed'));
  return { client, answer, handled: () => n };
}

const bodies = (els: Element[]) => els.filter((el) => el.name === 'message').map((el) => el.getChildText('body'));

describe('cluster: stream management across nodes', { skip }, () => {
  const prefix = 'ghtest-' + randomBytes(4).toString('hex');
  const tag = randomBytes(3).toString('hex');
  const nodes: Node[] = [];
  before(async () => {
    await announcePolicy('cluster test configuration');
    for (const name of ['s1', 's2', 's3']) nodes.push(await startNode(name, prefix));
  });
  after(async () => {
    destroyAll();
    await Promise.all(nodes.map((n) => stopNode(n)));
  });

  test('<resume/> on another node while the session lives: the session moves there with its unacknowledged stanzas and stays available', async () => {
    const [n1, n2, n3] = nodes as [Node, Node, Node];
    const alice = await account(n2, `smalice-${tag}`);
    await online(alice);
    const bob = await account(n1, `smbob-${tag}`);
    const previd = await enableSm(bob);
    assert.match(previd, /\.s1$/, 'the SM-ID names the node holding the session');
    await online(bob);
    // Directed presence: a recipient would see unavailable if the session ended anywhere.
    bob.send(x('presence', { to: alice.jid! }));
    await alice.expect((el) => el.name === 'presence' && el.attrs.from === bob.jid && el.attrs.type === undefined);
    const sent = ['one', 'two', 'three'].map((w) => `living ${w}`);
    for (const body of sent) alice.send(x('message', { to: bob.jid!, type: 'chat' }, x('body', {}, body)));
    await barrier(alice);
    for (const body of sent) await bob.expect((el) => el.name === 'message' && el.getChildText('body') === body);
    bob.destroy();
    // The client saw its own presence (1) and acknowledges it; the three messages it does not.
    const { client, answer, handled } = await resumeOn(n2, `smbob-${tag}`, previd, 1).catch((err) => {
      throw new Error(`${err}; ${[n1, n2].map((n) => n.proc.output.join('').split('\n').filter((l) => /warn|error|cluster/i.test(l)).join('\n'))}`);
    });
    assert.equal(answer.name, 'resumed', `resumed, not ${answer}`);
    assert.equal(answer.attrs.previd, previd);
    // h: the stanzas the session had handled from the client (initial and directed presence).
    assert.equal(answer.attrs.h, '2');
    for (const body of sent) await client.expect((el) => el.name === 'message' && el.getChildText('body') === body);
    client.jid = bob.jid;
    alice.send(x('message', { to: bob.jid!, type: 'chat' }, x('body', {}, 'after the move')));
    await client.expect((el) => el.name === 'message' && el.getChildText('body') === 'after the move');
    assert.ok(await alice.expectNothing((el) => el.name === 'presence' && el.attrs.from === bob.jid && el.attrs.type === 'unavailable', 500), 'the session did not end for anyone');
    await barrier(client);
    // Once more, on a third node, with the same SM-ID (it still names s1, which sends the request on
    // to s2): the client acknowledges all but the last message and the ping's answer.
    client.destroy();
    const third = await resumeOn(n3, `smbob-${tag}`, previd, 1 + handled() - 2);
    assert.equal(third.answer.name, 'resumed', `resumed on the third node, not ${third.answer}`);
    // The ping above was handled too.
    assert.equal(third.answer.attrs.h, '3');
    await third.client.expect((el) => el.name === 'message' && el.getChildText('body') === 'after the move');
    assert.deepEqual(bodies(third.client.received), [], 'nothing acknowledged is sent again');
  });

  test('<resume/> with a wrong SM-ID of another node, or another account: <failed/> and the stream can bind', async () => {
    const [n1, n2] = nodes as [Node, Node, Node];
    const owner = await account(n1, `smowner-${tag}`);
    const previd = await enableSm(owner);
    await account(n2, `smother-${tag}`);
    const { client, answer } = await resumeOn(n2, `smother-${tag}`, previd);
    assert.equal(answer.name, 'failed');
    assert.ok(answer.getChild('item-not-found'));
    const bound = await client.iq(x('iq', { type: 'set' }, x('bind', { xmlns: NS.bind })));
    assert.equal(bound.attrs.type, 'result');
    const unknown = await resumeOn(n2, `smother-${tag}`, 'nosuchsession.s1');
    assert.equal(unknown.answer.name, 'failed');
    // The owner's session was not touched.
    await barrier(owner);
  });

  test('<resume/> on another node while the old connection is still open: the old stream ends with a conflict (XEP-0198 section 5)', async () => {
    const [n1, n2] = nodes as [Node, Node, Node];
    const carol = await account(n1, `smcarol-${tag}`);
    const previd = await enableSm(carol);
    await online(carol);
    const { client, answer } = await resumeOn(n2, `smcarol-${tag}`, previd, 1);
    assert.equal(answer.name, 'resumed');
    await carol.waitClosed();
    assert.equal(carol.streamError, 'conflict');
    client.jid = carol.jid;
    await barrier(client);
  });

  test('SIGKILL of the node holding a session with stream management: nothing unacknowledged is lost, and its directed presence ends', async () => {
    const [n1, n2, n3] = nodes as [Node, Node, Node];
    const erin = await account(n2, `smerin-${tag}`);
    const grace = await account(n2, `smgrace-${tag}`);
    await online(grace);
    const frank = await account(n3, `smfrank-${tag}`);
    const previd = await enableSm(frank);
    await online(frank);
    // Directed presence outside the roster (RFC 6121 4.6).
    frank.send(x('presence', { to: grace.jid! }));
    await grace.expect((el) => el.name === 'presence' && el.attrs.from === frank.jid && el.attrs.type === undefined);
    const sent: string[] = [];
    for (let i = 0; i < 20; i++) {
      const body = `unacked ${i}`;
      erin.send(x('message', { to: bare(frank), type: 'chat' }, x('body', {}, body)));
      sent.push(body);
    }
    await barrier(erin);
    await frank.expect((el) => el.name === 'message' && el.getChildText('body') === sent.at(-1));
    n3.proc.proc.kill('SIGKILL');
    await n3.proc.exited;
    await grace.expect((el) => el.name === 'presence' && el.attrs.from === frank.jid && el.attrs.type === 'unavailable', FAILURE_TIMEOUT_MS + 5000);
    const { answer } = await resumeOn(n2, `smfrank-${tag}`, previd);
    assert.equal(answer.name, 'failed');
    const again = await login(n2, `smfrank-${tag}`);
    await online(again);
    // Some come from the sending node (deliveries the killed node never confirmed), the others from
    // the killed node's journal, routed by a survivor once it has read it: each arrives, in time.
    const arrived: Element[] = [];
    for (const body of sent) {
      const already = again.received.find((el) => el.name === 'message' && el.getChildText('body') === body);
      if (already) continue;
      const el = await again.expect((e) => e.name === 'message' && e.getChildText('body') === body, 10_000).catch((err) => {
        throw new Error(`${err}; ${[n1, n2].map((n) => n.proc.output.join('').split('\n').filter((l) => /journal|dead/.test(l)).join('\n'))}`);
      });
      arrived.push(el);
    }
    const all = [...arrived, ...again.received.filter((el) => el.name === 'message')];
    assert.deepEqual(sent.filter((b) => !bodies(all).includes(b)), [], 'every unacknowledged message arrives');
    assert.ok(all.every((el) => el.getChild('delay', NS.delay)), 'with the delay of their first sending');
  });
});
