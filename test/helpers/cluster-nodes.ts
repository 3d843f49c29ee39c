/**
 * Cluster nodes as separate `gatehouse start` processes on one machine, for the cluster tests: each
 * with its own ports and data directory, sharing PostgreSQL or MariaDB (GATEHOUSE_TEST_POSTGRES_URL
 * or GATEHOUSE_TEST_MYSQL_URL) and NATS under a prefix of the test's own (so parallel tests do not
 * meet); and the client steps those tests share.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startServerProcess, runCli, type ServerProcess } from './server-process.js';
import { TestClient } from './xmpp-client.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { StorageConfig } from '../../storage/datasource.js';

const DB_URL = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? process.env.GATEHOUSE_TEST_MYSQL_URL;
/** The `skip` option of a cluster test: cluster mode needs a database server. */
export const skipWithoutClusterDb = DB_URL ? false : 'cluster mode needs GATEHOUSE_TEST_POSTGRES_URL or GATEHOUSE_TEST_MYSQL_URL';
/** Heartbeats every 200 ms, a node silent for 1.5 s is dead. */
export const FAILURE_TIMEOUT_MS = 1500;
const LOCAL_NATS = ['nats://127.0.0.1:4222'];

/** The shared database, for nodes started in the test process (startTestServer). */
export function clusterStorage(): StorageConfig {
  const url = DB_URL!;
  return { type: url.startsWith('postgres') ? 'postgres' : 'mysql', url, migrateOnStart: true } as StorageConfig;
}

export interface ClusterNode {
  name: string;
  dir: string;
  proc: ServerProcess;
  port: number;
  /** The XEP-0114 listener's port (0 without a component). */
  componentPort: number;
}

export interface NodeOptions {
  /** The NATS servers (default the one at 127.0.0.1:4222). */
  nats?: string[];
  /** A component the nodes accept, with a listener for it. */
  component?: { domain: string; secret: string };
}

export function nodeConfig(dir: string, name: string, prefix: string, opts: NodeOptions = {}): Record<string, unknown> {
  const { type, url } = clusterStorage();
  return {
    dataDir: dir,
    hosts: [{ domain: 'localhost', registration: 'open' }],
    listen: { c2s: [{ host: '127.0.0.1', port: 0 }], c2sDirectTls: [], components: opts.component ? [{ host: '127.0.0.1', port: 0 }] : [], s2s: [], admin: [], https: [] },
    ...(opts.component ? { components: [opts.component] } : {}),
    auth: { scramIterations: 4096 },
    registrationLimit: { maxPerAddress: 0 },
    storage: { type, url },
    log: { level: 'info' },
    cluster: { enabled: true, node: name, prefix, nats: opts.nats ?? LOCAL_NATS, heartbeatInterval: '200ms', failureTimeout: `${FAILURE_TIMEOUT_MS}ms`, deliveryTimeout: '1s' },
  };
}

/** The component the cluster tests may configure; every announced policy names it (see announcePolicy). */
export const CLUSTER_TEST_COMPONENT = { domain: 'gw.localhost', secret: 'cluster-component-secret' };

/**
 * The shared test database keeps the privacy policy of earlier runs (and of other tests): the
 * policy is announced as a technical change, in force at once (P22), as an operator would. The
 * cluster test files run at the same time on that database and the latest announcement wins, so
 * all of them announce the same policy, that of the widest configuration they use (with the
 * component): a node started without it runs a narrower one, which needs no announcement. (Two
 * different policies raced: one file's announcement held back another's component or federation.)
 */
export async function announcePolicy(note: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-cluster-policy-'));
  try {
    const path = join(dir, 'gatehouse.yaml');
    writeFileSync(path, stringify(nodeConfig(dir, 'policy', 'unused', { component: CLUSTER_TEST_COMPONENT })));
    const r = await runCli(['policy', 'announce', '--effective', new Date().toISOString().slice(0, 10), '--technical', note, '--config', path]);
    // Announced already (by another cluster test file) is fine.
    if (r.code !== 0 && !/nothing to announce/.test(r.out)) throw new Error(`policy announce failed: ${r.out}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function startNode(name: string, prefix: string, opts: NodeOptions = {}): Promise<ClusterNode> {
  const dir = mkdtempSync(join(tmpdir(), `gatehouse-cluster-${name}-`));
  const proc = await startServerProcess(dir, nodeConfig(dir, name, prefix, opts));
  // Printed just after the client listener's line.
  let m: RegExpExecArray | null = null;
  for (let i = 0; opts.component && i < 200 && !m; i++) {
    m = /components \(XEP-0114\): \S+ port (\d+)/.exec(proc.output.join(''));
    if (!m) await new Promise((r) => setTimeout(r, 10));
  }
  return { name, dir, proc, port: proc.port, componentPort: m ? Number(m[1]) : 0 };
}

export async function stopNode(n: ClusterNode): Promise<void> {
  if (n.proc.proc.exitCode === null && n.proc.proc.signalCode === null) n.proc.proc.kill('SIGTERM');
  await n.proc.exited;
  rmSync(n.dir, { recursive: true, force: true });
}

/**
 * Clients on the nodes, each user with the password `pw-<name>`; `destroyAll` (in `after`) ends
 * every one of them.
 */
export function nodeClients() {
  const open: TestClient[] = [];
  const connect = async (node: { port: number }): Promise<TestClient> => {
    const c = await TestClient.connect({ port: node.port });
    open.push(c);
    return c;
  };
  return {
    connect,
    /** Registers `name` unless it exists, and logs in. */
    async account(node: { port: number }, name: string, resource?: string): Promise<TestClient> {
      const c = await connect(node);
      const r = await c.register(name, 'pw-' + name);
      if (r.attrs.type !== 'result' && !r.getChild('error')?.getChild('conflict')) throw new Error(`registration failed: ${r}`);
      await c.login(name, 'pw-' + name, { resource });
      return c;
    },
    async login(node: { port: number }, name: string, resource?: string): Promise<TestClient> {
      const c = await connect(node);
      await c.login(name, 'pw-' + name, { resource });
      return c;
    },
    destroyAll(): void {
      for (const c of open.splice(0)) c.destroy();
    },
  };
}

/** Available presence, resolved once the client sees its own. */
export async function online(c: TestClient): Promise<void> {
  c.send(x('presence'));
  await c.expect((el) => el.name === 'presence' && el.attrs.from === c.jid && el.attrs.type === undefined);
}

/** A round trip: everything the client sent before was accepted and routed by its node. */
export async function barrier(c: TestClient): Promise<void> {
  const r = await c.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
  assert.equal(r.attrs.type, 'result');
}

export const bare = (c: TestClient) => c.jid!.split('/')[0]!;
