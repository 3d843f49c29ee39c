/**
 * Three cluster nodes as separate `gatehouse start` processes on one machine, each with its own
 * ports and data directory, sharing PostgreSQL or MariaDB (GATEHOUSE_TEST_POSTGRES_URL or
 * GATEHOUSE_TEST_MYSQL_URL) and the NATS server at 127.0.0.1:4222 under a prefix of their own (so
 * parallel tests do not meet). Users on different nodes subscribe, chat, get offline messages; a
 * component connected to one node serves a user on another; a node killed with SIGKILL while
 * messages flow: its users go offline for their contacts and no message the server accepted is lost.
 * The NATS restart test runs its own nats-server on a free port.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServerProcessWith, runCli, type ServerProcess } from '../helpers/server-process.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { reservedPort } from '../helpers/ports.js';
import {
  CLUSTER_TEST_COMPONENT,
  FAILURE_TIMEOUT_MS,
  announcePolicy,
  bare,
  barrier,
  nodeClients,
  nodeConfig,
  online,
  skipWithoutClusterDb as skip,
  startNode,
  stopNode,
  type ClusterNode as Node,
  type NodeOptions,
} from '../helpers/cluster-nodes.js';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

const NATS_SERVER = '/usr/sbin/nats-server';

const COMPONENT = CLUSTER_TEST_COMPONENT.domain;
const COMPONENT_SECRET = CLUSTER_TEST_COMPONENT.secret;
const withComponent: NodeOptions = { component: CLUSTER_TEST_COMPONENT };

const { account, login, destroyAll } = nodeClients();

const isBody = (body: string) => (el: Element) => el.name === 'message' && el.getChildText('body') === body;
const availableFrom = (c: TestClient) => (el: Element) => el.name === 'presence' && el.attrs.from === c.jid && el.attrs.type === undefined;

async function befriend(a: TestClient, b: TestClient): Promise<void> {
  a.send(x('presence', { to: bare(b), type: 'subscribe' }));
  await b.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === bare(a));
  b.send(x('presence', { to: bare(a), type: 'subscribed' }));
  b.send(x('presence', { to: bare(a), type: 'subscribe' }));
  await a.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === bare(b));
  a.send(x('presence', { to: bare(b), type: 'subscribed' }));
  await a.expect(availableFrom(b));
  await b.expect(availableFrom(a));
}

/** A XEP-0114 component written by hand: answers every message to it with an echo to the sender. */
class EchoComponent {
  private out = '';
  private constructor(private readonly socket: Socket) {
    socket.on('data', (d) => this.onData(d.toString('utf8')));
    socket.on('error', () => {});
  }
  static async connect(port: number): Promise<EchoComponent> {
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((r, j) => socket.once('connect', r).once('error', j));
    const c = new EchoComponent(socket);
    socket.write(`<?xml version='1.0'?><stream:stream xmlns='${NS.component}' xmlns:stream='${NS.stream}' to='${COMPONENT}'>`);
    const id = await c.waitFor(/ id='([^']+)'/);
    socket.write(`<handshake>${createHash('sha1').update(id[1]! + COMPONENT_SECRET).digest('hex')}</handshake>`);
    await c.waitFor(/<handshake\/>/);
    return c;
  }
  private seen = 0;
  private onData(s: string): void {
    this.out += s;
    const re = /<message\b([^>]*)>(.*?)<\/message>/gs;
    re.lastIndex = this.seen;
    for (let m = re.exec(this.out); m; m = re.exec(this.out)) {
      this.seen = re.lastIndex;
      const attr = (name: string) => new RegExp(`\\b${name}=['"]([^'"]+)['"]`).exec(m![1]!)?.[1];
      const body = /<body>([^<]*)<\/body>/.exec(m[2]!)?.[1];
      const from = attr('from');
      const to = attr('to');
      if (from && to && body !== undefined) this.socket.write(`<message from='${to}' to='${from}' type='chat'><body>echo: ${body}</body></message>`);
    }
  }
  async waitFor(re: RegExp, ms = 5000): Promise<RegExpExecArray> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = re.exec(this.out);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; got ${this.out.slice(0, 500)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  destroy(): void {
    this.socket.destroy();
  }
}

describe('cluster: three nodes as separate processes', { skip }, () => {
  const prefix = 'ghtest-' + randomBytes(4).toString('hex');
  const tag = randomBytes(3).toString('hex');
  const nodes: Node[] = [];
  before(async () => {
    await announcePolicy('cluster test configuration');
    for (const name of ['p1', 'p2', 'p3']) nodes.push(await startNode(name, prefix, withComponent));
  });
  after(async () => {
    destroyAll();
    await Promise.all(nodes.map((n) => stopNode(n)));
  });

  test('users on three nodes subscribe, see each other online and chat; the cluster status lists the nodes', async () => {
    const [n1, n2, n3] = nodes as [Node, Node, Node];
    const alice = await account(n1, `alice-${tag}`);
    const bob = await account(n2, `bob-${tag}`);
    const carol = await account(n3, `carol-${tag}`);
    for (const c of [alice, bob, carol]) await online(c);
    await befriend(alice, bob);
    await befriend(bob, carol);
    alice.send(x('message', { to: bare(bob), type: 'chat' }, x('body', {}, 'alice to bob')));
    carol.send(x('message', { to: bare(bob), type: 'chat' }, x('body', {}, 'carol to bob')));
    assert.equal((await bob.expect(isBody('alice to bob'))).attrs.from, alice.jid);
    assert.equal((await bob.expect(isBody('carol to bob'))).attrs.from, carol.jid);
    bob.send(x('message', { to: carol.jid!, type: 'chat' }, x('body', {}, 'bob to carol')));
    await carol.expect(isBody('bob to carol'));
    // Carol goes offline: Bob (another node) sees it; a message to her waits in offline storage,
    // and she gets it logging in on a third node.
    await carol.close();
    await bob.expect((el) => el.name === 'presence' && el.attrs.from === carol.jid && el.attrs.type === 'unavailable');
    bob.send(x('message', { to: bare(carol), type: 'chat' }, x('body', {}, 'while you were away')));
    await barrier(bob);
    const again = await login(n1, `carol-${tag}`);
    await online(again);
    await again.expect(isBody('while you were away'));

    const status = await runCli(['cluster', 'status', '--json', '--config', join(n2.dir, 'gatehouse.yaml')]);
    assert.equal(status.code, 0, status.out);
    const parsed = JSON.parse(status.stdout) as { node: string; nodes: { name: string; state: string }[] };
    assert.equal(parsed.node, 'p2');
    assert.deepEqual(
      parsed.nodes.map((n) => [n.name, n.state]),
      [
        ['p1', 'up'],
        ['p2', 'up'],
        ['p3', 'up'],
      ],
    );
  });

  test('a component connected to one node serves a user on another', async () => {
    const [n1, , n3] = nodes as [Node, Node, Node];
    const component = await EchoComponent.connect(n1.componentPort);
    try {
      const dave = await account(n3, `dave-${tag}`);
      await online(dave);
      // The link is announced with node 1's next heartbeat; until then node 3 answers service-unavailable.
      let echoed: Element | null = null;
      for (let i = 0; i < 50 && !echoed; i++) {
        dave.send(x('message', { to: `echo@${COMPONENT}`, type: 'chat', id: `e${i}` }, x('body', {}, `ping ${i}`)));
        echoed = await dave.expect((el) => el.name === 'message' && (el.getChildText('body')?.startsWith('echo: ping') ?? false), 200).catch(() => null);
      }
      assert.ok(echoed, 'the component on node 1 answered a user on node 3');
      assert.equal(echoed!.attrs.from, `echo@${COMPONENT}`);
      // A second link for the same domain, on another node, is refused: one link per domain in the cluster.
      const second = connect({ host: '127.0.0.1', port: n3.componentPort });
      let out = '';
      second.on('data', (d) => (out += d.toString()));
      await new Promise<void>((r) => second.once('connect', r));
      second.write(`<?xml version='1.0'?><stream:stream xmlns='${NS.component}' xmlns:stream='${NS.stream}' to='${COMPONENT}'>`);
      while (!/ id='([^']+)'/.test(out)) await new Promise((r) => setTimeout(r, 10));
      const id = / id='([^']+)'/.exec(out)![1]!;
      second.write(`<handshake>${createHash('sha1').update(id + COMPONENT_SECRET).digest('hex')}</handshake>`);
      while (!/conflict|<handshake\/>/.test(out)) await new Promise((r) => setTimeout(r, 10));
      assert.match(out, /conflict/);
      second.destroy();
    } finally {
      component.destroy();
    }
  });

  test('SIGKILL of a node while messages flow: its users go offline for their contacts, no accepted message is lost', async () => {
    const [n1, n2, n3] = nodes as [Node, Node, Node];
    const erin = await account(n1, `erin-${tag}`);
    const frank = await account(n3, `frank-${tag}`);
    await online(erin);
    await online(frank);
    await befriend(erin, frank);
    const sent: string[] = [];
    let flowing = true;
    const flow = (async () => {
      for (let i = 0; flowing; i++) {
        const body = `flow ${i}`;
        erin.send(x('message', { to: bare(frank), type: 'chat' }, x('body', {}, body)));
        // Accepted once the ping after it is answered (its node routed it).
        await barrier(erin);
        sent.push(body);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await frank.expect(isBody('flow 5'));
    const killedAt = Date.now();
    n3.proc.proc.kill('SIGKILL');
    await n3.proc.exited;
    const gone = await erin.expect((el) => el.name === 'presence' && el.attrs.from === frank.jid && el.attrs.type === 'unavailable', FAILURE_TIMEOUT_MS + 5000);
    assert.ok(gone);
    const noticedMs = Date.now() - killedAt;
    // Some more messages after the node is known dead: these go straight to offline storage.
    await new Promise((r) => setTimeout(r, 300));
    flowing = false;
    await flow;
    // 'flow 5' was taken by the expect above.
    const got = new Set(['flow 5', ...frank.received.filter((el) => el.name === 'message').map((el) => el.getChildText('body'))]);
    const again = await login(n2, `frank-${tag}`);
    await online(again);
    const last = sent.at(-1)!;
    await again.expect(isBody(last), 10_000);
    got.add(last);
    for (const el of again.received) if (el.name === 'message') got.add(el.getChildText('body'));
    const lost = sent.filter((b) => !got.has(b));
    assert.deepEqual(lost, [], `messages lost (${sent.length} sent, the node's death noticed after ${noticedMs} ms)`);
  });

  test('a rolling restart: a node stopped with SIGTERM ends its sessions for contacts on other nodes, and rejoins', async () => {
    const n1 = nodes[0]!;
    const index = nodes.findIndex((n) => n.name === 'p2');
    const n2 = nodes[index]!;
    const ivy = await account(n1, `ivy-${tag}`);
    const jack = await account(n2, `jack-${tag}`);
    await online(ivy);
    await online(jack);
    await befriend(ivy, jack);
    n2.proc.proc.kill('SIGTERM');
    await n2.proc.exited;
    await ivy.expect((el) => el.name === 'presence' && el.attrs.from === jack.jid && el.attrs.type === 'unavailable');
    // Back under the same name (a new run): its users log in there again and are seen online.
    const again = await startNode('p2', prefix, withComponent);
    nodes[index] = again;
    rmSync(n2.dir, { recursive: true, force: true });
    const jack2 = await login(again, `jack-${tag}`);
    await online(jack2);
    await ivy.expect(availableFrom(jack2));
    ivy.send(x('message', { to: bare(jack2), type: 'chat' }, x('body', {}, 'welcome back')));
    await jack2.expect(isBody('welcome back'));
  });
});

describe('cluster: gatehouse start --nodes N on one machine', { skip }, () => {
  const prefix = 'ghtest-' + randomBytes(4).toString('hex');
  const tag = randomBytes(3).toString('hex');
  let dir = '';
  let primary: ServerProcess | null = null;
  before(async () => {
    await announcePolicy('cluster test configuration');
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-nodes-'));
  });
  after(async () => {
    destroyAll();
    if (primary && primary.proc.exitCode === null) primary.proc.kill('SIGTERM');
    if (primary) await primary.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  test('two nodes share the client port; both show in cluster status; users chat whichever node they reached; SIGTERM stops both', async () => {
    const config = nodeConfig(dir, 'multi', prefix, withComponent);
    const path = join(dir, 'gatehouse.yaml');
    writeFileSync(path, stringify(config));
    primary = await startServerProcessWith(['start', '--nodes', '2', '--config', path]);
    let names: string[] = [];
    for (let i = 0; i < 100 && names.length < 2; i++) {
      const r = await runCli(['cluster', 'status', '--json', '--config', path]);
      if (r.code === 0) names = (JSON.parse(r.stdout) as { nodes: { name: string; state: string }[] }).nodes.filter((n) => n.state === 'up').map((n) => n.name);
      if (names.length < 2) await new Promise((r2) => setTimeout(r2, 100));
    }
    assert.deepEqual(names, ['multi-1', 'multi-2']);
    const node = { name: 'multi', dir, proc: primary, port: primary.port, componentPort: 0 };
    const kim = await account(node, `kim-${tag}`);
    const lee = await account(node, `lee-${tag}`);
    await online(kim);
    await online(lee);
    await befriend(kim, lee);
    kim.send(x('message', { to: bare(lee), type: 'chat' }, x('body', {}, 'one machine, two nodes')));
    await lee.expect(isBody('one machine, two nodes'));
    primary.proc.kill('SIGTERM');
    assert.equal(await primary.exited, 0);
  });

  test('SIGTERM while the nodes are still starting (node 1 listens, node 2 not yet started): the primary stops every node it forked and exits 0, starting no more', async () => {
    const config = nodeConfig(dir, 'early', prefix, withComponent);
    const path = join(dir, 'early.yaml');
    writeFileSync(path, stringify(config));
    const early = await startServerProcessWith(['start', '--nodes', '3', '--config', path]);
    const forked = () => listChildren(early.proc.pid!);
    early.proc.kill('SIGTERM');
    const children = forked();
    assert.equal(await early.exited, 0, early.output.join(''));
    assert.ok(children.length >= 1, 'node 1 was running');
    for (const pid of children) assert.equal(alive(pid), false, `node process ${pid} ended with the primary`);
  });
});

function listChildren(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function startNats(port: number, dir: string): ChildProcess {
  const proc = spawn(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], { stdio: 'ignore' });
  return proc;
}

async function natsListening(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('nats-server did not start');
}

describe('cluster: NATS restarted under two running nodes', { skip: skip || (!existsSync(NATS_SERVER) && `${NATS_SERVER} not installed (apt-get install nats-server)`) }, () => {
  const prefix = 'ghtest-' + randomBytes(4).toString('hex');
  const tag = randomBytes(3).toString('hex');
  const store = mkdtempSync(join(tmpdir(), 'gatehouse-nats-'));
  let port = 0;
  let nats: ChildProcess;
  const nodes: Node[] = [];
  before(async () => {
    await announcePolicy('cluster test configuration');
    port = await reservedPort();
    nats = startNats(port, store);
    await natsListening(port);
    for (const name of ['r1', 'r2']) nodes.push(await startNode(name, prefix, { ...withComponent, nats: [`nats://127.0.0.1:${port}`] }));
  });
  after(async () => {
    destroyAll();
    await Promise.all(nodes.map((n) => stopNode(n)));
    nats.kill('SIGTERM');
    rmSync(store, { recursive: true, force: true });
  });

  test('the nodes reconnect by themselves; sessions and routing go on, and nobody was declared offline', async () => {
    const [n1, n2] = nodes as [Node, Node];
    const gina = await account(n1, `gina-${tag}`);
    const hank = await account(n2, `hank-${tag}`);
    await online(gina);
    await online(hank);
    await befriend(gina, hank);
    nats.kill('SIGTERM');
    await new Promise<void>((r) => nats.once('exit', () => r()));
    // Longer than the failure timeout: the nodes cannot hear each other meanwhile.
    await new Promise((r) => setTimeout(r, FAILURE_TIMEOUT_MS + 500));
    nats = startNats(port, store);
    await natsListening(port);
    // Once both are back (each re-announces its sessions), a message crosses again.
    let through: Element | null = null;
    for (let i = 0; i < 100 && !through; i++) {
      gina.send(x('message', { to: hank.jid!, type: 'chat' }, x('body', {}, `after restart ${i}`)));
      through = await hank.expect((el) => el.name === 'message' && (el.getChildText('body')?.startsWith('after restart') ?? false), 200).catch(() => null);
    }
    assert.ok(through, 'a message crossed the nodes after NATS came back');
    assert.ok(!hank.received.some((el) => el.name === 'presence' && el.attrs.from === gina.jid && el.attrs.type === 'unavailable'), 'no unavailable presence for a user who never left');
    // Presence still crosses: gina changes her status, hank sees it.
    gina.send(x('presence', {}, x('show', {}, 'away')));
    await hank.expect((el) => el.name === 'presence' && el.attrs.from === gina.jid && el.getChildText('show') === 'away');
  });
});
