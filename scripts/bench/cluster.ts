/**
 * The cluster scenario (`--scenarios cluster`): Gatehouse nodes as separate `gatehouse start`
 * processes on 127.0.0.1, sharing one PostgreSQL or MariaDB database (--cluster-db) and the NATS
 * server (--cluster-nats) under a subject prefix of this run's own.
 *
 * 1. CPU per message across nodes versus within a node: nodes A and B; senders and local recipients
 *    on A, remote recipients on B. The same number of messages at the same rate goes from the
 *    senders to the local recipients ("within": both on A), then to the remote ones ("across":
 *    sender on A, recipient on B), in alternating rounds. CPU is user+sys of each node process from
 *    /proc/<pid>/stat, from the first message sent to the last delivered, summed over both nodes,
 *    per delivered message; latency is scheduled send to receipt.
 * 2. Throughput of 2 nodes versus 1: --cluster-clients clients, half logged in on each node (all on
 *    the one node for 1), each sending to any of them at random (so with 2 nodes half the messages
 *    cross), at rising offered rates for --cluster-step seconds each until a rate is not sustained
 *    (a message lost, delivery under 95 % of the offered rate, or the load generator falling
 *    behind). The highest sustained delivery rate is reported, with the machine's core count.
 */
import { mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { Histogram, nowUs, type BenchAccount, type SendResult, type StatsResult } from './protocol.js';
import { machineLoad, procSample, provisionSharedAccounts, startGatehouseNode, type CertFiles, type ProcSample, type RunningBenchServer } from './servers.js';
import { WorkerPool, delay } from './workers.js';

export interface ClusterOptions {
  dbUrl: string;
  nats: string;
  /** Messages per phase (within, across) and round. */
  messages: number;
  /** Offered rate of the CPU phases, messages per second. */
  rate: number;
  rounds: number;
  /** Senders, local recipients and remote recipients: this many each. */
  group: number;
  clients: number;
  /** Offered rates of the throughput ramp, messages per second. */
  rates: number[];
  stepS: number;
  /** The nodes' `cluster.batchWindow` (--cluster-batch-window); absent: the default. */
  batchWindow?: string;
  /** The throughput part stops starting new steps after this many seconds of the scenario. */
  budgetS: number;
  gatehouse: string;
  /** V8 CPU profiles of the nodes (--profile) go here. */
  profileDir?: string;
}

export interface ClusterPhase {
  messages: number;
  delivered: number;
  lost: number;
  /** CPU seconds of each node (A, B) from the first send to the last delivery. */
  nodeCpuSec: number[];
  cpuUsPerMessage: number;
  latency: { p50Ms: number; p99Ms: number; maxMs: number };
  /** Busy share of the machine taken by processes other than the nodes and the load generator, cores. */
  otherCores: number;
  /**
   * CPU seconds of the local nats-server process meanwhile (null: NATS not on this machine, or not
   * found). It serves whatever else uses it as well (other tests, other clusters): an upper bound.
   */
  natsCpuSec: number | null;
}

export interface ClusterStep {
  offeredRate: number;
  sent: number;
  delivered: number;
  deliveredPerSec: number;
  lost: number;
  latency: { p50Ms: number; p99Ms: number; maxMs: number };
  /** Cores used by each node, by the load generator and by everything else while sending. */
  nodeCores: number[];
  generatorCores: number;
  otherCores: number;
  generatorKeptUp: boolean;
  sustained: boolean;
}

export interface ClusterResult {
  date: string;
  cores: number;
  cpu: string;
  database: string;
  nats: string;
  prefix: string;
  parameters: Omit<ClusterOptions, 'dbUrl' | 'gatehouse' | 'profileDir'>;
  /** Idle CPU of the two nodes (heartbeats), percent of a core each. */
  idleCpuPercent: number[];
  within: ClusterPhase;
  across: ClusterPhase;
  /** across.cpuUsPerMessage / within.cpuUsPerMessage: both nodes' CPU summed. */
  cpuRatio: number;
  /** Each node's CPU per message across (A, B) over node A's per message within: what each node spends on a crossing message against a local one. */
  perNodeRatio: number[];
  throughput: { nodes: number; steps: ClusterStep[]; maxSustainedPerSec: number }[];
  errors: string[];
}

let phaseCounter = 1000;

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);
}

function summary(h: Histogram): { p50Ms: number; p99Ms: number; maxMs: number } {
  return { p50Ms: h.quantile(0.5) / 1000, p99Ms: h.quantile(0.99) / 1000, maxMs: h.max / 1000 };
}

function received(stats: StatsResult[]): number {
  return stats.reduce((s, r) => s + r.received, 0);
}

/** Waits until `target` messages arrived, or nothing arrived for `quietMs`, or `maxMs` passed. */
async function waitFor(pool: WorkerPool, target: number, quietMs: number, maxMs: number): Promise<StatsResult[]> {
  const start = Date.now();
  let last = -1;
  let lastChange = Date.now();
  for (;;) {
    const stats = await pool.stats(false);
    const got = received(stats);
    if (got >= target) return stats;
    if (got !== last) {
      last = got;
      lastChange = Date.now();
    }
    if (Date.now() - lastChange > quietMs || Date.now() - start > maxMs) return stats;
    await delay(100);
  }
}

/** The nats-server process on this machine, when the NATS URL is a loopback one. */
function localNatsPid(url: string): number | null {
  if (!/^(nats|tls):\/\/(127\.0\.0\.1|localhost|\[::1\])(:|\/|$)/.test(url)) return null;
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'nats-server') return Number(entry);
      } catch {
        // gone meanwhile
      }
    }
  } catch {
    // no /proc
  }
  return null;
}

function natsCpu(pid: number | null): number | null {
  if (pid === null) return null;
  try {
    return procSample(pid).cpuSec;
  } catch {
    return null;
  }
}

function samples(nodes: RunningBenchServer[]): ProcSample[] {
  return nodes.map((n) => n.sample());
}

function generatorCpu(pool: WorkerPool): number {
  let s = 0;
  for (const pid of pool.pids) {
    try {
      s += procSample(pid).cpuSec;
    } catch {
      // exited
    }
  }
  return s;
}

/** One batch of messages from `senders` (online on `worker`) to `recipients`, measured until the last arrives. */
async function cpuPhase(pool: WorkerPool, nodes: RunningBenchServer[], worker: number, senders: number[], recipients: number[], o: ClusterOptions): Promise<ClusterPhase> {
  const phase = ++phaseCounter;
  await pool.stats(true, { phase });
  const durationMs = (o.messages / o.rate) * 1000;
  const startAtUs = nowUs() + 200_000;
  const natsPid = localNatsPid(o.nats);
  const n0 = natsCpu(natsPid);
  const s0 = samples(nodes);
  const g0 = generatorCpu(pool);
  const self0 = process.cpuUsage();
  const send = await pool.call<SendResult>(worker, { type: 'send', rate: o.rate, durationMs, startAtUs, senders, recipients, maxBufferedBytes: 1 << 20, phase }, durationMs * 3 + 60_000);
  const stats = await waitFor(pool, send.sent, 3000, 30_000);
  const s1 = samples(nodes);
  const n1 = natsCpu(natsPid);
  const g1 = generatorCpu(pool);
  const self1 = process.cpuUsage(self0);
  const delivered = received(stats);
  const latency = Histogram.from(...stats.map((s) => s.latency));
  const nodeCpuSec = nodes.map((_, i) => s1[i]!.cpuSec - s0[i]!.cpuSec);
  const seconds = Math.max(0.001, s1[0]!.at - s0[0]!.at);
  const busyCores = (machineLoad(s0[0]!, s1[0]!).busyPercent / 100) * os.availableParallelism();
  const known = nodeCpuSec.reduce((a, b) => a + b, 0) + (g1 - g0) + (self1.user + self1.system) / 1e6;
  const phaseResult: ClusterPhase = {
    messages: send.sent,
    delivered,
    lost: Math.max(0, send.sent - delivered),
    nodeCpuSec,
    cpuUsPerMessage: delivered ? (nodeCpuSec.reduce((a, b) => a + b, 0) * 1e6) / delivered : 0,
    latency: summary(latency),
    otherCores: Math.max(0, busyCores - known / seconds),
    natsCpuSec: n0 === null || n1 === null ? null : n1 - n0,
  };
  histograms.set(phaseResult, latency);
  return phaseResult;
}

/** The latency histogram behind each phase's summary, so that rounds add up. */
const histograms = new WeakMap<ClusterPhase, Histogram>();

function addPhase(a: ClusterPhase | null, b: ClusterPhase): ClusterPhase {
  if (!a) return b;
  const delivered = a.delivered + b.delivered;
  const nodeCpuSec = a.nodeCpuSec.map((x, i) => x + (b.nodeCpuSec[i] ?? 0));
  const latency = new Histogram();
  for (const h of [histograms.get(a), histograms.get(b)]) if (h) latency.add(h.toJSON());
  const sum: ClusterPhase = {
    messages: a.messages + b.messages,
    delivered,
    lost: a.lost + b.lost,
    nodeCpuSec,
    cpuUsPerMessage: delivered ? (nodeCpuSec.reduce((x, y) => x + y, 0) * 1e6) / delivered : 0,
    latency: summary(latency),
    otherCores: (a.otherCores + b.otherCores) / 2,
    natsCpuSec: a.natsCpuSec === null || b.natsCpuSec === null ? null : a.natsCpuSec + b.natsCpuSec,
  };
  histograms.set(sum, latency);
  return sum;
}

/** One offered rate for stepS seconds, every worker sending from its own clients to all of them. */
async function throughputStep(pool: WorkerPool, nodes: RunningBenchServer[], all: number[], rate: number, o: ClusterOptions): Promise<ClusterStep> {
  const phase = ++phaseCounter;
  await pool.stats(true, { phase });
  const durationMs = o.stepS * 1000;
  const startAtUs = nowUs() + 200_000;
  await pool.stats(false, { windowEndUs: startAtUs + durationMs * 1000 + 500_000 });
  await delay(100);
  const s0 = samples(nodes);
  const g0 = generatorCpu(pool);
  const sends = await Promise.all(
    pool.online.map((senders, w) =>
      pool.call<SendResult>(w, { type: 'send', rate: rate / pool.size, durationMs, startAtUs, senders, recipients: all, maxBufferedBytes: 1 << 20, phase }, durationMs * 3 + 60_000),
    ),
  );
  const s1 = samples(nodes);
  const g1 = generatorCpu(pool);
  const sent = sends.reduce((s, r) => s + r.sent, 0);
  const stats = await waitFor(pool, sent, 3000, 15_000);
  const delivered = received(stats);
  const inWindow = stats.reduce((s, r) => s + r.receivedInWindow, 0);
  const seconds = Math.max(0.001, s1[0]!.at - s0[0]!.at);
  const nodeCores = nodes.map((_, i) => (s1[i]!.cpuSec - s0[i]!.cpuSec) / seconds);
  const generatorCores = (g1 - g0) / seconds;
  const busyCores = (machineLoad(s0[0]!, s1[0]!).busyPercent / 100) * os.availableParallelism();
  const lag = Histogram.from(...sends.map((s) => s.lag));
  const skipped = sends.reduce((s, r) => s + r.skipped, 0);
  const elapsedMs = Math.max(...sends.map((s) => s.elapsedMs));
  const generatorKeptUp = skipped === 0 && lag.quantile(0.99) / 1000 < 100 && elapsedMs <= durationMs * 1.02 + 50;
  const deliveredPerSec = inWindow / o.stepS;
  const lost = Math.max(0, sent - delivered);
  return {
    offeredRate: rate,
    sent,
    delivered,
    deliveredPerSec,
    lost,
    latency: summary(Histogram.from(...stats.map((s) => s.latency))),
    nodeCores,
    generatorCores,
    otherCores: Math.max(0, busyCores - nodeCores.reduce((a, b) => a + b, 0) - generatorCores),
    generatorKeptUp,
    sustained: lost === 0 && generatorKeptUp && deliveredPerSec >= 0.95 * rate,
  };
}

/** Waits (bounded) until the nodes use under 5 % of a core each for half a second. */
async function quiesce(nodes: RunningBenchServer[], maxMs = 10_000): Promise<void> {
  const deadline = Date.now() + maxMs;
  let prev = samples(nodes);
  while (Date.now() < deadline) {
    await delay(500);
    const now = samples(nodes);
    if (now.every((s, i) => (s.cpuSec - prev[i]!.cpuSec) / Math.max(0.001, s.at - prev[i]!.at) < 0.05)) return;
    prev = now;
  }
}

async function ramp(pool: WorkerPool, nodes: RunningBenchServer[], all: number[], o: ClusterOptions, deadline: number, log: (m: string) => void): Promise<{ nodes: number; steps: ClusterStep[]; maxSustainedPerSec: number }> {
  const out = { nodes: nodes.length, steps: [] as ClusterStep[], maxSustainedPerSec: 0 };
  for (const rate of o.rates) {
    if (Date.now() + o.stepS * 1000 > deadline) {
      log(`  ${nodes.length} node(s): offered ${rate}/s and above not run (the scenario's time is up)`);
      break;
    }
    await quiesce(nodes);
    const step = await throughputStep(pool, nodes, all, rate, o);
    out.steps.push(step);
    log(
      `  ${nodes.length} node(s), offered ${rate}/s: delivered ${step.deliveredPerSec.toFixed(0)}/s, lost ${step.lost}, p50 ${step.latency.p50Ms.toFixed(1)} ms, p99 ${step.latency.p99Ms.toFixed(1)} ms; ` +
        `nodes ${step.nodeCores.map((c) => `${(100 * c).toFixed(0)} %`).join(' + ')} of a core, generator ${(100 * step.generatorCores).toFixed(0)} %, other ${(100 * step.otherCores).toFixed(0)} %` +
        (step.generatorKeptUp ? '' : ' (generator fell behind)'),
    );
    if (!step.sustained) break;
    out.maxSustainedPerSec = Math.max(out.maxSustainedPerSec, step.deliveredPerSec);
  }
  return out;
}

/** Runs the whole scenario; the nodes and workers it starts are stopped before it returns. */
export async function runCluster(o: ClusterOptions, cert: CertFiles, accounts: BenchAccount[], tmp: string, log: (m: string) => void): Promise<ClusterResult> {
  const started = Date.now();
  const prefix = `bench-${randomBytes(4).toString('hex')}`;
  const database = o.dbUrl.replace(/\/\/[^@/]*@/, '//');
  if (o.profileDir) mkdirSync(o.profileDir, { recursive: true });
  const node = (name: string, announcePolicy = false) =>
    startGatehouseNode({ dir: path.join(tmp, `cluster-${name}`), repoRoot: o.gatehouse, cert, dbUrl: o.dbUrl, nats: o.nats, prefix, node: name, cpuProfileDir: o.profileDir, announcePolicy, batchWindow: o.batchWindow });
  const nodes: RunningBenchServer[] = [];
  const pools: WorkerPool[] = [];
  const { dbUrl: _db, gatehouse: _g, profileDir: _p, ...parameters } = o;
  const result: ClusterResult = {
    date: new Date().toISOString(),
    cores: os.availableParallelism(),
    cpu: os.cpus()[0]?.model ?? '?',
    database,
    nats: o.nats,
    prefix,
    parameters,
    idleCpuPercent: [],
    within: null as unknown as ClusterPhase,
    across: null as unknown as ClusterPhase,
    cpuRatio: 0,
    perNodeRatio: [],
    throughput: [],
    errors: [],
  };
  try {
    log(`cluster: accounts in ${database}`);
    const provisionMs = await provisionSharedAccounts(o.gatehouse, o.dbUrl, accounts);
    log(`cluster: ${accounts.length} accounts ready in ${(provisionMs / 1000).toFixed(1)} s; NATS ${o.nats}, prefix ${prefix}`);
    // B starts once A has announced the policy and migrated the database.
    nodes.push(await node('bench-a', true));
    nodes.push(await node('bench-b'));
    log(`cluster: nodes bench-a (pid ${nodes[0]!.pid}, port ${nodes[0]!.port}) and bench-b (pid ${nodes[1]!.pid}, port ${nodes[1]!.port})`);
    // Worker 0 is connected to node A, worker 1 to node B.
    let pool = await WorkerPool.start(2, nodes.map((n) => n.port), cert.pem, accounts);
    pools.push(pool);
    const g = o.group;
    const senders = range(0, g);
    const local = range(g, 2 * g);
    const remote = range(2 * g, 3 * g);
    const la = await pool.loginOn(0, [...senders, ...local], 20);
    const lb = await pool.loginOn(1, remote, 20);
    if (la.failed || lb.failed) throw new Error(`cluster: logins failed (${[...la.errors, ...lb.errors].join('; ')})`);
    // Both nodes must know each other's sessions before the first message.
    await delay(1000);
    await quiesce(nodes);
    const i0 = samples(nodes);
    await delay(2000);
    const i1 = samples(nodes);
    result.idleCpuPercent = nodes.map((_, i) => (100 * (i1[i]!.cpuSec - i0[i]!.cpuSec)) / Math.max(0.001, i1[i]!.at - i0[i]!.at));
    // Warm-up (JIT, connection pools), unmeasured. B's delivery path runs only in the across phases:
    // after 500 messages V8's optimising compiler still took a fifth of B's CPU in the first measured
    // round (perf record, 2026-12-06), so each path gets 3,000.
    await cpuPhase(pool, nodes, 0, senders, local, { ...o, messages: Math.min(o.messages, 3000) });
    await cpuPhase(pool, nodes, 0, senders, remote, { ...o, messages: Math.min(o.messages, 3000) });
    let within: ClusterPhase | null = null;
    let across: ClusterPhase | null = null;
    for (let r = 0; r < o.rounds; r++) {
      await quiesce(nodes);
      const w = await cpuPhase(pool, nodes, 0, senders, local, o);
      within = addPhase(within, w);
      await quiesce(nodes);
      const a = await cpuPhase(pool, nodes, 0, senders, remote, o);
      across = addPhase(across, a);
      // Each round on its own as well: the machine's other load changes from minute to minute.
      log(`  round ${r + 1}: within ${w.cpuUsPerMessage.toFixed(0)} µs, across ${a.cpuUsPerMessage.toFixed(0)} µs per message: ${(w.cpuUsPerMessage ? a.cpuUsPerMessage / w.cpuUsPerMessage : 0).toFixed(2)}x`);
    }
    result.within = within!;
    result.across = across!;
    result.cpuRatio = within!.cpuUsPerMessage ? across!.cpuUsPerMessage / within!.cpuUsPerMessage : 0;
    result.perNodeRatio = perNode(within!, across!);
    for (const [what, p] of [['within node A', within!], ['across A -> B', across!]] as const) {
      log(
        `  ${what}: ${p.delivered} of ${p.messages} delivered at ${o.rate}/s, ${p.cpuUsPerMessage.toFixed(0)} µs CPU per message (A ${p.nodeCpuSec[0]!.toFixed(2)} s, B ${p.nodeCpuSec[1]!.toFixed(2)} s), ` +
          `p50 ${p.latency.p50Ms.toFixed(1)} ms, p99 ${p.latency.p99Ms.toFixed(1)} ms, other processes ${(100 * p.otherCores).toFixed(0)} %` +
          (p.natsCpuSec === null ? '' : `, nats-server ${p.natsCpuSec.toFixed(2)} s`),
      );
    }
    log(
      `  across / within: ${result.cpuRatio.toFixed(2)}x CPU per message, both nodes summed; per node ${result.perNodeRatio.map((x, i) => `${'AB'[i]} ${x.toFixed(2)}x`).join(', ')} of A's per local message (target at most 1.5x)`,
    );
    await pool.logout();

    const deadline = started + o.budgetS * 1000;
    const all = range(0, o.clients);
    // 2 nodes: half the clients on each.
    const half = Math.ceil(o.clients / 2);
    await pool.loginOn(0, all.slice(0, half), 50);
    await pool.loginOn(1, all.slice(half), 50);
    await delay(1000);
    result.throughput.push(await ramp(pool, nodes, all, o, deadline, log));
    await pool.stop();
    pools.pop();
    // 1 node: B stops, every client on A.
    await nodes[1]!.stop();
    nodes.pop();
    pool = await WorkerPool.start(2, [nodes[0]!.port], cert.pem, accounts);
    pools.push(pool);
    await pool.loginOn(0, all.slice(0, half), 50);
    await pool.loginOn(1, all.slice(half), 50);
    await delay(1000);
    result.throughput.push(await ramp(pool, nodes, all, o, deadline + 30_000, log));
    log(`  max sustained: ${result.throughput.map((t) => `${t.nodes} node(s) ${t.maxSustainedPerSec.toFixed(0)}/s`).join(', ')} on ${result.cores} cores`);
  } catch (err) {
    result.errors.push(err instanceof Error ? err.message : String(err));
    log(`cluster: ${result.errors[result.errors.length - 1]}`);
  } finally {
    for (const p of pools) await p.stop().catch(() => p.kill());
    for (const n of nodes) await n.stop().catch(() => undefined);
  }
  return result;
}

const f0 = (n: number) => n.toFixed(0);
const f1 = (n: number) => n.toFixed(1);

/** What each node spends per message across, over what node A (sender and recipient both there) spends per message within. */
function perNode(within: ClusterPhase, across: ClusterPhase): number[] {
  const local = within.delivered ? within.nodeCpuSec[0]! / within.delivered : 0;
  return across.nodeCpuSec.map((sec) => (local && across.delivered ? sec / across.delivered / local : 0));
}

/** The scenario's figures as Markdown (printed by the run; docs/benchmarks.md's Cluster section is written by hand from them). */
export function renderCluster(r: ClusterResult): string {
  const lines = [
    `Cluster scenario, ${r.date.slice(0, 16).replace('T', ' ')} UTC, ${r.cores} cores (${r.cpu}), database ${r.database}, NATS ${r.nats}`,
    '',
  ];
  if (r.within && r.across) {
    lines.push(
      `| ${r.parameters.messages * r.parameters.rounds} messages at ${r.parameters.rate}/s | within node A | across A → B |`,
      '|---|---|---|',
      `| delivered / lost | ${r.within.delivered} / ${r.within.lost} | ${r.across.delivered} / ${r.across.lost} |`,
      `| CPU per message (A + B) | ${f0(r.within.cpuUsPerMessage)} µs | ${f0(r.across.cpuUsPerMessage)} µs (${r.cpuRatio.toFixed(2)}x) |`,
      `| CPU per message of each node, over node A's within | A 1.00x | ${(r.perNodeRatio ?? []).map((x, i) => `${'AB'[i]} ${x.toFixed(2)}x`).join(', ')} |`,
      `| CPU seconds A / B | ${r.within.nodeCpuSec.map((x) => x.toFixed(2)).join(' / ')} | ${r.across.nodeCpuSec.map((x) => x.toFixed(2)).join(' / ')} |`,
      `| latency p50 / p99 | ${f1(r.within.latency.p50Ms)} / ${f1(r.within.latency.p99Ms)} ms | ${f1(r.across.latency.p50Ms)} / ${f1(r.across.latency.p99Ms)} ms |`,
      `| other processes on the machine | ${f0(100 * r.within.otherCores)} % of a core | ${f0(100 * r.across.otherCores)} % of a core |`,
      `| nats-server CPU seconds (all its clients) | ${r.within.natsCpuSec?.toFixed(2) ?? '?'} | ${r.across.natsCpuSec?.toFixed(2) ?? '?'} |`,
      '',
      `Idle nodes (heartbeats): ${r.idleCpuPercent.map((x) => `${x.toFixed(1)} %`).join(', ')} of a core.`,
      '',
    );
  }
  if (r.throughput.length) {
    lines.push(`| ${r.parameters.clients} clients | offered/s | delivered/s | lost | p50 / p99 ms | node CPU (cores) | generator | other |`, '|---|---|---|---|---|---|---|---|');
    for (const t of r.throughput)
      for (const s of t.steps)
        lines.push(
          `| ${t.nodes} node${t.nodes > 1 ? 's' : ''} | ${s.offeredRate} | ${f0(s.deliveredPerSec)}${s.sustained ? '' : ' (not sustained)'} | ${s.lost} | ${f1(s.latency.p50Ms)} / ${f1(s.latency.p99Ms)} | ${s.nodeCores.map((c) => c.toFixed(2)).join(' + ')} | ${s.generatorCores.toFixed(2)} | ${s.otherCores.toFixed(2)} |`,
        );
    lines.push('', `Max sustained: ${r.throughput.map((t) => `${t.nodes} node${t.nodes > 1 ? 's' : ''} ${f0(t.maxSustainedPerSec)}/s`).join(', ')} (${r.cores} cores).`, '');
  }
  for (const e of r.errors) lines.push(`Error: ${e}`);
  return lines.join('\n');
}
