/**
 * `npm run bench`: the same XMPP workload, in one run, against Gatehouse, Prosody and ejabberd.
 *
 *   node dist/scripts/bench/run.js [--servers gatehouse,prosody,ejabberd]
 *     [--scenarios logins,messages,idle,offline,pep] [--logins 2000] [--users 1000]
 *     [--rates 5000,10000,20000 | --rate R] [--duration 10] [--idle 10000] [--offline 10000]
 *     [--workers 2] [--login-concurrency 100] [--profile] [--keep] [--gatehouse DIR]
 *     [--offline-senders 100] [--offline-recipients 1000] [--offline-rate 2000]
 *     [--pep-contacts 1000] [--pep-rates 5,10,20] [--pep-items 100]
 *     [--muc-occupants 500] [--muc-rates 5,10,20] [--muc-duration 10]
 *     [--cert-key ec|rsa] [--no-install] [--out docs/benchmarks.md] [--json docs/benchmarks.json] [--smoke] [--render FILE.json]
 *     [--cluster-db URL] [--cluster-nats URL] [--cluster-messages 5000] [--cluster-rate 1000]
 *     [--cluster-clients 200] [--cluster-rates 2000,4000,...] [--cluster-step 4]
 *
 * Each server runs in its own temporary directory on a free 127.0.0.1 port, with one shared
 * self-signed certificate and the same accounts (SCRAM-SHA-1 verifiers, 4096 iterations). The load
 * generator is scripts/bench/loadgen-worker.ts in --workers processes.
 *
 * Prosody and ejabberd missing on the machine are installed with apt-get (as root) unless
 * --no-install is given; without them the run goes on with the servers it has.
 *
 * --render FILE.json: only write the report (--out) again from the raw results of an earlier run,
 * keeping the hand-written part of the existing report.
 *
 * --gatehouse DIR: benchmark the Gatehouse build in DIR (DIR/dist/server/cli.js) instead of this
 * checkout's, e.g. a snapshot built apart while others keep editing the tree.
 *
 * PEP scenario: one user (the publisher) with --pep-contacts online contacts, mutually subscribed
 * (rosters written into each server's storage before start, like the accounts), whose presence advertises +notify for the XEP-0172 nick node through
 * XEP-0115 caps; the publisher publishes --pep-items items at each of --pep-rates items per second.
 * A server that answers the publish with an error is reported as not supporting PEP.
 *
 * MUC scenario (XEP-0045): --muc-occupants users enter one room on conference.<domain> (the first
 * creates it as an instant room); then messages go to the room at each of --muc-rates per second
 * for --muc-duration seconds, each from an occupant picked at random (so no one occupant's rate
 * limit is what is measured), and every occupant records each copy it receives: deliveries per
 * second (rate x occupants offered) and latency from the scheduled send to receipt. Prosody runs
 * its muc component, ejabberd mod_muc with max_users raised to the occupants; a server whose
 * conference service does not answer disco#info as one is reported as skipped.
 *
 * Cluster scenario (--scenarios cluster; not in the default list, as it needs PostgreSQL or MariaDB
 * and NATS): Gatehouse nodes as separate processes sharing the database --cluster-db (default
 * $BENCH_CLUSTER_DB or postgres://postgres@127.0.0.1:5432/test_clusterbench) and the NATS server
 * --cluster-nats (default nats://127.0.0.1:4222) under a prefix of the run's own. CPU per message
 * delivered across two nodes versus within one (--cluster-messages at --cluster-rate per second, in
 * two alternating rounds), and the highest sustained delivery rate of --cluster-clients clients on 2
 * nodes versus 1 (--cluster-rates offered in turn for --cluster-step seconds each); about 2 minutes.
 * See scripts/bench/cluster.ts. Its figures are printed (and kept in --json under "cluster"); run
 * alone it writes no report file unless --out is given.
 *
 * --smoke: about 20 seconds, Gatehouse alone, 20 users; for CI. The exit status is non-zero when
 * the benchmark itself breaks (a server does not start, nobody can log in, nothing is delivered),
 * never because of a figure.
 */
import { fork, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { pbkdf2, createHash, createHmac, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Histogram, nowUs, PEP_NODE, type BenchAccount, type DiscoInfoResult, type IqAnswer, type MucJoinResult, type PepDiscoResult, type PepRosterResult, type PingResult, type PublishResult, type SendResult, type StatsResult } from './protocol.js';
import { WorkerPool, delay } from './workers.js';
import { renderCluster, runCluster, type ClusterResult } from './cluster.js';
import { DOMAIN, SERVER_LABEL, killAllAndWait, killAllNow, machineLoad, packageVersion, procSample, serverAvailable, startBenchServer, type CertFiles, type ProcSample, type RunningBenchServer, type ServerKind } from './servers.js';
import { renderMarkdown, type BenchResults, type Deliveries, type IdleResult, type LoadShare, type MucRateResult, type MucResult, type LoginsResult, type MessagesResult, type OfflineResult, type PepRateResult, type PepResult, type ScenarioSizes, type ServerResults, type TlsFloorResult } from './report.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** dist/scripts/bench -> repository root. */
const repoRoot = path.resolve(here, '../../..');

const ALL_SERVERS: ServerKind[] = ['gatehouse', 'prosody', 'ejabberd'];
const ALL_SCENARIOS = ['logins', 'messages', 'idle', 'offline', 'pep', 'muc', 'cluster'] as const;
/** What runs without --scenarios: the cluster scenario needs a shared database and NATS. */
const DEFAULT_SCENARIOS: readonly Scenario[] = ['logins', 'messages', 'idle', 'offline', 'pep', 'muc'];
type Scenario = (typeof ALL_SCENARIOS)[number];

const SCRAM_ITERATIONS = 4096;
const ACCOUNT_CACHE_VERSION = 1;

interface Options extends ScenarioSizes {
  servers: ServerKind[];
  scenarios: Scenario[];
  pepContacts: number;
  pepRates: number[];
  pepItems: number;
  mucOccupants: number;
  mucRates: number[];
  mucDurationS: number;
  smoke: boolean;
  profile: boolean;
  keep: boolean;
  out: string | null;
  json: string | null;
  /** Root of the Gatehouse build under test. */
  gatehouse: string;
  render: string | null;
  certKey: CertKey;
  /** Install missing servers from Debian's packages (default; --no-install turns it off). */
  install: boolean;
  cluster: { dbUrl: string; nats: string; messages: number; rate: number; clients: number; rates: number[]; stepS: number };
}

function parseOptions(argv: string[]): Options {
  const flags = new Map<string, string>();
  const bools = new Set(['smoke', 'profile', 'keep', 'help', 'no-install']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument: ${a}`);
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    if (bools.has(name)) flags.set(name, 'true');
    else if (eq > 0) flags.set(name, a.slice(eq + 1));
    else if (i + 1 < argv.length) flags.set(name, argv[++i]!);
    else throw new Error(`--${name} needs a value`);
  }
  if (flags.has('help')) {
    console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]);
    process.exit(0);
  }
  const known = new Set(['servers', 'scenarios', 'logins', 'users', 'rates', 'rate', 'duration', 'idle', 'offline', 'offline-senders', 'offline-recipients', 'offline-rate', 'pep-contacts', 'pep-rates', 'pep-items', 'muc-occupants', 'muc-rates', 'muc-duration', 'workers', 'login-concurrency', 'smoke', 'profile', 'keep', 'out', 'json', 'gatehouse', 'render', 'cert-key', 'no-install', 'cluster-db', 'cluster-nats', 'cluster-messages', 'cluster-rate', 'cluster-clients', 'cluster-rates', 'cluster-step']);
  for (const k of flags.keys()) if (!known.has(k)) throw new Error(`unknown option --${k}`);
  const smoke = flags.has('smoke');
  const num = (name: string, dflt: number, min = 1): number => {
    const v = flags.get(name);
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name}: expected a number >= ${min}, got ${v}`);
    return n;
  };
  const list = <T extends string>(name: string, all: readonly T[], dflt: readonly T[]): T[] => {
    const v = flags.get(name);
    if (v === undefined) return [...dflt];
    const items = v.split(',').map((s) => s.trim()).filter(Boolean);
    for (const it of items) if (!all.includes(it as T)) throw new Error(`--${name}: unknown ${it} (one of ${all.join(', ')})`);
    return items as T[];
  };
  const rates = flags.has('rate') ? [num('rate', 0)] : flags.has('rates') ? flags.get('rates')!.split(',').map(Number) : smoke ? [200] : [5000, 10000, 20000];
  if (rates.some((r) => !Number.isFinite(r) || r <= 0)) throw new Error('--rates: positive numbers, comma separated');
  const pepRates = flags.has('pep-rates') ? flags.get('pep-rates')!.split(',').map(Number) : smoke ? [10] : [5, 10, 20];
  if (pepRates.some((r) => !Number.isFinite(r) || r <= 0 || r > 1000)) throw new Error('--pep-rates: items per second (up to 1000), comma separated');
  const mucRates = flags.has('muc-rates') ? flags.get('muc-rates')!.split(',').map(Number) : smoke ? [5] : [5, 10, 20];
  if (mucRates.some((r) => !Number.isFinite(r) || r <= 0 || r > 1000)) throw new Error('--muc-rates: messages per second (up to 1000), comma separated');
  const clusterRates = flags.has('cluster-rates') ? flags.get('cluster-rates')!.split(',').map(Number) : smoke ? [200] : [2000, 4000, 6000, 8000, 12000, 16000, 24000];
  if (clusterRates.some((r) => !Number.isFinite(r) || r <= 0)) throw new Error('--cluster-rates: positive numbers, comma separated');
  const scenarios = list('scenarios', ALL_SCENARIOS, DEFAULT_SCENARIOS);
  const onlyCluster = scenarios.length === 1 && scenarios[0] === 'cluster';
  const clusterDb = flags.get('cluster-db') ?? process.env.BENCH_CLUSTER_DB ?? 'postgres://postgres@127.0.0.1:5432/test_clusterbench';
  if (scenarios.includes('cluster') && !/^(postgres|postgresql|mysql|mariadb):\/\//i.test(clusterDb)) throw new Error('--cluster-db: a postgres:// or mysql:// URL (cluster mode cannot share SQLite)');
  const clusterNats = flags.get('cluster-nats') ?? 'nats://127.0.0.1:4222';
  if (!/^(nats|tls):\/\/[^\s/]+(:\d{1,5})?\/?$/.test(clusterNats)) throw new Error('--cluster-nats: a NATS server URL such as nats://127.0.0.1:4222');
  return {
    servers: list('servers', ALL_SERVERS, smoke ? ['gatehouse'] : ALL_SERVERS),
    scenarios,
    logins: num('logins', smoke ? 20 : 2000),
    users: num('users', smoke ? 20 : 1000, 2),
    rates,
    durationS: num('duration', smoke ? 2 : 10),
    idle: num('idle', smoke ? 20 : 10000),
    offline: num('offline', smoke ? 100 : 10000),
    offlineSenders: num('offline-senders', smoke ? 5 : 100),
    offlineRecipients: num('offline-recipients', smoke ? 10 : 1000),
    offlineRate: num('offline-rate', smoke ? 200 : 2000),
    pepContacts: num('pep-contacts', smoke ? 10 : 1000),
    pepRates,
    pepItems: num('pep-items', smoke ? 20 : 100),
    mucOccupants: num('muc-occupants', smoke ? 20 : 500, 2),
    mucRates,
    mucDurationS: num('muc-duration', smoke ? 2 : 10),
    workers: num('workers', 2),
    loginConcurrency: num('login-concurrency', smoke ? 10 : 100),
    smoke,
    profile: flags.has('profile'),
    keep: flags.has('keep'),
    out: flags.get('out') ?? (smoke || onlyCluster ? null : 'docs/benchmarks.md'),
    json: flags.get('json') ?? (smoke || onlyCluster ? null : 'docs/benchmarks.json'),
    gatehouse: path.resolve(flags.get('gatehouse') ?? repoRoot),
    render: flags.get('render') ?? null,
    certKey: list('cert-key', ['ec', 'rsa'] as const, ['ec'])[0]!,
    install: !smoke && !flags.has('no-install'),
    cluster: {
      dbUrl: clusterDb,
      nats: clusterNats,
      messages: num('cluster-messages', smoke ? 200 : 5000),
      rate: num('cluster-rate', smoke ? 200 : 1000),
      clients: num('cluster-clients', smoke ? 20 : 200, 2),
      rates: clusterRates,
      stepS: num('cluster-step', smoke ? 1 : 4),
    },
  };
}

// ---- accounts ----

const pbkdf2Async = promisify(pbkdf2);

function accountName(i: number): string {
  return `u${i}`;
}

/** SCRAM-SHA-1 material for `n` accounts; cached in the temp directory because PBKDF2 takes a while. */
async function makeAccounts(n: number, log: (m: string) => void): Promise<BenchAccount[]> {
  const cacheFile = path.join(os.tmpdir(), `gatehouse-bench-accounts-v${ACCOUNT_CACHE_VERSION}.json`);
  let cached: BenchAccount[] = [];
  try {
    cached = JSON.parse(readFileSync(cacheFile, 'utf8')) as BenchAccount[];
    if (!Array.isArray(cached) || cached.some((a, i) => a.name !== accountName(i) || a.iterations !== SCRAM_ITERATIONS)) cached = [];
  } catch {
    cached = [];
  }
  if (cached.length >= n) return cached.slice(0, n);
  log(`computing SCRAM verifiers for ${n - cached.length} accounts (cached in ${cacheFile})`);
  const out = cached.slice();
  let next = out.length;
  const one = async () => {
    while (next < n) {
      const i = next++;
      const password = `pw-${i}-${randomBytes(6).toString('hex')}`;
      // Text salts, like Prosody's own (it keeps the salt as a Lua string).
      const salt = Buffer.from(randomBytes(12).toString('hex'), 'latin1');
      const salted = await pbkdf2Async(password, salt, SCRAM_ITERATIONS, 20, 'sha1');
      const clientKey = createHmac('sha1', salted).update('Client Key').digest();
      const storedKey = createHash('sha1').update(clientKey).digest();
      const serverKey = createHmac('sha1', salted).update('Server Key').digest();
      out[i] = {
        name: accountName(i),
        password,
        salt: salt.toString('base64'),
        iterations: SCRAM_ITERATIONS,
        salted: salted.toString('base64'),
        storedKey: storedKey.toString('base64'),
        serverKey: serverKey.toString('base64'),
      };
    }
  };
  await Promise.all(Array.from({ length: 8 }, one));
  try {
    writeFileSync(cacheFile, JSON.stringify(out), { mode: 0o600 });
  } catch {
    // no cache, no harm
  }
  return out;
}

/** Key types for the shared certificate: ECDSA P-256 (what Gatehouse makes by default) or RSA 2048. */
export const CERT_KEYS = { ec: ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], rsa: ['rsa:2048'] } as const;
export type CertKey = keyof typeof CERT_KEYS;
export const CERT_KEY_LABEL: Record<CertKey, string> = { ec: 'ECDSA P-256', rsa: 'RSA 2048' };

function makeCertificate(dir: string, keyType: CertKey): CertFiles {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', ...CERT_KEYS[keyType], '-nodes', '-keyout', key, '-out', cert, '-days', '30', '-subj', `/CN=${DOMAIN}`, '-addext', `subjectAltName=DNS:${DOMAIN}`], { stdio: 'ignore', timeout: 30_000 });
  const pem = readFileSync(cert, 'utf8');
  const combined = path.join(dir, 'combined.pem');
  writeFileSync(combined, pem + readFileSync(key, 'utf8'), { mode: 0o600 });
  return { cert, key, combined, pem };
}

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);
}

/** Samples the server's RSS every 500 ms; keeps the peak. */
function rssSampler(server: RunningBenchServer): { stop(): number } {
  let peak = 0;
  const t = setInterval(() => {
    try {
      peak = Math.max(peak, server.sample().rssBytes);
    } catch {
      // the process may be gone; the scenario will notice
    }
  }, 500);
  return {
    stop() {
      clearInterval(t);
      try {
        peak = Math.max(peak, server.sample().rssBytes);
      } catch {
        // gone
      }
      return peak;
    },
  };
}

function latencySummary(h: Histogram): { p50Ms: number; p99Ms: number; maxMs: number } {
  return { p50Ms: h.quantile(0.5) / 1000, p99Ms: h.quantile(0.99) / 1000, maxMs: h.max / 1000 };
}

function sumStats(stats: StatsResult[]): { received: number; inWindow: number; duplicates: number; stale: number; disconnects: number; streamErrors: string[]; latency: Histogram; lastReceiveUs: number; cpuUs: number; rssBytes: number; loopDelayP99Us: number; discoQueries: number } {
  return {
    received: stats.reduce((s, r) => s + r.received, 0),
    inWindow: stats.reduce((s, r) => s + r.receivedInWindow, 0),
    duplicates: stats.reduce((s, r) => s + r.duplicates, 0),
    stale: stats.reduce((s, r) => s + r.stale, 0),
    disconnects: stats.reduce((s, r) => s + r.disconnects, 0),
    streamErrors: stats.flatMap((r) => r.streamErrors).slice(0, 5),
    latency: Histogram.from(...stats.map((r) => r.latency)),
    lastReceiveUs: Math.max(0, ...stats.map((r) => r.lastReceiveUs)),
    cpuUs: stats.reduce((s, r) => s + r.cpuUs, 0),
    rssBytes: stats.reduce((s, r) => s + r.rssBytes, 0),
    loopDelayP99Us: Math.max(0, ...stats.map((r) => r.loopDelayP99Us)),
    discoQueries: stats.reduce((s, r) => s + r.discoQueries, 0),
  };
}

/** Waits until `target` messages arrived, or nothing arrived for `quietMs`, or `maxMs` passed. */
async function waitForDeliveries(pool: WorkerPool, target: number, quietMs: number, maxMs: number): Promise<StatsResult[]> {
  const start = Date.now();
  let last = -1;
  let lastChange = Date.now();
  for (;;) {
    const stats = await pool.stats(false);
    const got = stats.reduce((s, r) => s + r.received, 0);
    if (got >= target) return stats;
    if (got !== last) {
      last = got;
      lastChange = Date.now();
    }
    if (Date.now() - lastChange > quietMs || Date.now() - start > maxMs) return stats;
    await delay(250);
  }
}

let phaseCounter = 0;

interface Ctx {
  opts: Options;
  /** Pauses and quiet periods: short in smoke mode. */
  waits: { settleMs: number; idleMs: number; quietMs: number; offlineQuietMs: number; quiescenceMaxMs: number };
  server: RunningBenchServer;
  pool: WorkerPool;
  log: (m: string) => void;
}

/** CPU of everything on the machine at one moment. */
interface Meter {
  server: ProcSample;
  generatorCpuSec: number;
  selfCpuSec: number;
}

function meter(c: Ctx): Meter {
  let generatorCpuSec = 0;
  for (const pid of c.pool.pids) {
    try {
      generatorCpuSec += procSample(pid).cpuSec;
    } catch {
      // exited
    }
  }
  const self = process.cpuUsage();
  return { server: c.server.sample(), generatorCpuSec, selfCpuSec: (self.user + self.system) / 1e6 };
}

/** Who used the CPU between two meters, in cores (1 = one core fully busy). */
function loadShare(a: Meter, b: Meter): LoadShare {
  const seconds = Math.max(0.001, b.server.at - a.server.at);
  const m = machineLoad(a.server, b.server);
  const busyCores = (m.busyPercent / 100) * os.availableParallelism();
  const serverCores = (b.server.cpuSec - a.server.cpuSec) / seconds;
  const generatorCores = (b.generatorCpuSec - a.generatorCpuSec) / seconds;
  const orchestratorCores = (b.selfCpuSec - a.selfCpuSec) / seconds;
  return {
    seconds,
    serverCores,
    generatorCores,
    otherCores: Math.max(0, busyCores - serverCores - generatorCores - orchestratorCores),
    machineBusyPercent: m.busyPercent,
    stealPercent: m.stealPercent,
  };
}

function cpuSec(a: Meter, b: Meter): number {
  return b.server.cpuSec - a.server.cpuSec;
}

/** Waits until the server has used under 5 % of a core for a second (a backlog worked off), bounded. */
async function waitForQuiescence(c: Ctx): Promise<boolean> {
  if (c.waits.quiescenceMaxMs <= 0) return true; // smoke: no time for it
  const deadline = Date.now() + c.waits.quiescenceMaxMs;
  let prev = c.server.sample();
  while (Date.now() < deadline) {
    await delay(1000);
    const now = c.server.sample();
    if ((now.cpuSec - prev.cpuSec) / Math.max(0.001, now.at - prev.at) < 0.05) return true;
    prev = now;
  }
  return false;
}

/** A measured sending window of the messages, PEP or MUC scenario. */
interface DeliveryWindow {
  phase: number;
  /** The first send is scheduled 300 ms ahead, for every worker to have its orders by then. */
  startAtUs: number;
  windowEndUs: number;
  sampler: { stop(): number };
  /** Read as the window opens. */
  m0: Meter;
}

/** Resets the workers' counters for a new phase, tells them when the window ends, and starts sampling the server. */
async function openDeliveryWindow(c: Ctx, windowMs: number): Promise<DeliveryWindow> {
  const phase = ++phaseCounter;
  await c.pool.stats(true, { phase });
  const startAtUs = nowUs() + 300_000;
  const windowEndUs = startAtUs + windowMs * 1000;
  await c.pool.stats(false, { windowEndUs });
  const sampler = rssSampler(c.server);
  await delay(300);
  return { phase, startAtUs, windowEndUs, sampler, m0: meter(c) };
}

/**
 * After the sending (`mEnd` read as it ended): waits up to 20 s for `expected` deliveries; when some
 * are still missing, until the server is idle again, and counts them as delivered late, not lost.
 */
async function closeDeliveryWindow(c: Ctx, w: DeliveryWindow, mEnd: Meter, expected: number, quietBefore: boolean): Promise<{ deliveries: Deliveries; inWindow: number; loopDelayP99Ms: number }> {
  const inTime = sumStats(await waitForDeliveries(c.pool, expected, c.waits.quietMs, 20_000));
  const m1 = meter(c);
  const peak = w.sampler.stop();
  let stats = inTime;
  let quietAfter = true;
  if (inTime.received < expected) {
    quietAfter = await waitForQuiescence(c);
    stats = sumStats(await c.pool.stats(false));
  }
  const load = loadShare(w.m0, mEnd);
  return {
    inWindow: inTime.inWindow,
    loopDelayP99Ms: stats.loopDelayP99Us / 1000,
    deliveries: {
      received: stats.received,
      receivedInWait: inTime.received,
      lost: Math.max(0, expected - stats.received),
      duplicates: stats.duplicates,
      stale: stats.stale,
      latency: latencySummary(stats.latency),
      serverCpuSec: cpuSec(w.m0, m1),
      serverCpuSecSending: cpuSec(w.m0, mEnd),
      serverCpuPercent: 100 * load.serverCores,
      serverRssPeakBytes: peak,
      serverQuietBefore: quietBefore,
      serverQuietAfter: quietAfter,
      load,
      disconnects: stats.disconnects,
      streamErrors: stats.streamErrors,
    },
  };
}

// ---- scenarios ----

async function scenarioLogins(c: Ctx): Promise<LoginsResult> {
  const n = c.opts.logins;
  c.log(`logins: ${n} accounts, ${c.opts.loginConcurrency} at a time`);
  const m0 = meter(c);
  const r = await c.pool.login(range(0, n), c.opts.loginConcurrency);
  const m1 = meter(c);
  await c.pool.logout();
  const cpu = cpuSec(m0, m1);
  c.log(`  ${(r.ok / (r.wallMs / 1000)).toFixed(0)} logins/s, p50 ${(r.latency.quantile(0.5) / 1000).toFixed(0)} ms, server ${((cpu * 1000) / Math.max(1, r.ok)).toFixed(1)} ms CPU per login`);
  return {
    attempted: n,
    ok: r.ok,
    failed: r.failed,
    errors: r.errors,
    loginsPerSec: r.ok / (r.wallMs / 1000),
    wallMs: r.wallMs,
    latency: latencySummary(r.latency),
    serverCpuSec: cpu,
    serverCpuMsPerLogin: r.ok ? (cpu * 1000) / r.ok : 0,
    serverRssBytes: m1.server.rssBytes,
    generatorCpuSec: m1.generatorCpuSec - m0.generatorCpuSec,
    clientPbkdf2: r.pbkdf2,
    load: loadShare(m0, m1),
  };
}

/** Logs in the message scenario's users; they stay online for every rate. */
async function messagesLogin(c: Ctx): Promise<number[]> {
  const { users } = c.opts;
  c.log(`messages: logging in ${users} users`);
  const login = await c.pool.login(range(0, users), c.opts.loginConcurrency);
  const allOnline = c.pool.online.flat();
  if (allOnline.length < 2) throw new Error(`messages: only ${allOnline.length} of ${users} users could log in (${login.errors.join('; ')})`);
  await delay(c.waits.settleMs);
  return allOnline;
}

/** One offered rate for the configured duration, with everyone from messagesLogin online. */
async function messagesAtRate(c: Ctx, rate: number, allOnline: number[], quietBefore: boolean): Promise<MessagesResult> {
  const { durationS } = c.opts;
  const durationMs = durationS * 1000;
  c.log(`messages: offered ${rate}/s for ${durationS} s to ${allOnline.length} online users`);
  const w = await openDeliveryWindow(c, durationMs);
  const { m0, phase, startAtUs } = w;
  const perWorker = rate / c.pool.size;
  const sends = await Promise.all(
    c.pool.online.map((senders, i) =>
      c.pool.call<SendResult>(i, { type: 'send', rate: perWorker, durationMs, startAtUs, senders, recipients: allOnline, maxBufferedBytes: 1 << 20, phase }, durationMs * 3 + 60_000),
    ),
  );
  const mEnd = meter(c);
  const sent = sends.reduce((s, r) => s + r.sent, 0);
  const { deliveries, inWindow, loopDelayP99Ms } = await closeDeliveryWindow(c, w, mEnd, sent, quietBefore);
  const lag = Histogram.from(...sends.map((s) => s.lag));
  const elapsedMs = Math.max(...sends.map((s) => s.elapsedMs));
  const skipped = sends.reduce((s, r) => s + r.skipped, 0);
  const offered = Math.round((rate * durationMs) / 1000);
  const lagP99Ms = lag.quantile(0.99) / 1000;
  const keptUp = skipped === 0 && lagP99Ms < 100 && elapsedMs <= durationMs * 1.02 + 50;
  const { load } = deliveries;
  const genCpuSec = mEnd.generatorCpuSec - m0.generatorCpuSec;
  const result: MessagesResult = {
    offeredRate: rate,
    durationS,
    online: allOnline.length,
    offered,
    sent,
    skippedBackpressure: skipped,
    deliveredPerSec: inWindow / durationS,
    ...deliveries,
    generator: {
      workers: c.pool.size,
      cpuSec: genCpuSec,
      cpuPercentOfOneCore: (100 * genCpuSec) / (c.pool.size * Math.max(0.001, elapsedMs / 1000)),
      lagP99Ms,
      lagMaxMs: lag.max / 1000,
      elapsedMs,
      keptUp,
      loopDelayP99Ms,
    },
  };
  c.log(
    `  delivered ${result.deliveredPerSec.toFixed(0)}/s, p50 ${result.latency.p50Ms.toFixed(1)} ms, p99 ${result.latency.p99Ms.toFixed(1)} ms, lost ${result.lost}, ` +
      `server ${result.serverCpuPercent.toFixed(0)} % of a core, generator ${(100 * load.generatorCores).toFixed(0)} %, other processes ${(100 * load.otherCores).toFixed(0)} %` +
      (keptUp ? '' : ` (generator did not keep up: lag p99 ${lagP99Ms.toFixed(0)} ms, skipped ${skipped})`),
  );
  return result;
}

async function scenarioIdle(c: Ctx): Promise<IdleResult> {
  const n = c.opts.idle;
  await delay(c.waits.settleMs);
  await waitForQuiescence(c);
  const m0 = meter(c);
  c.log(`idle: ${n} TLS connections (logged in, bound, available), server RSS before ${(m0.server.rssBytes / 2 ** 20).toFixed(1)} MiB`);
  const r = await c.pool.login(range(0, n), c.opts.loginConcurrency);
  const m1 = meter(c);
  await delay(c.waits.idleMs);
  const m2 = meter(c);
  await delay(c.waits.idleMs);
  const m3 = meter(c);
  const w = sumStats(await c.pool.stats(false));
  await c.pool.logout();
  const result: IdleResult = {
    connections: r.ok,
    failed: r.failed,
    errors: r.errors,
    loginsPerSec: r.ok / (r.wallMs / 1000),
    rssBeforeBytes: m0.server.rssBytes,
    rssAfterBytes: m3.server.rssBytes,
    rssPerConnectionBytes: r.ok ? (m3.server.rssBytes - m0.server.rssBytes) / r.ok : 0,
    idleCpuSecPer5s: (cpuSec(m2, m3) * 5000) / c.waits.idleMs,
    serverCpuSecLogins: cpuSec(m0, m1),
    loadDuringLogins: loadShare(m0, m1),
    generatorRssBytes: w.rssBytes,
    disconnects: w.disconnects,
  };
  c.log(`  ${r.ok} connected (${r.failed} failed), RSS ${(m3.server.rssBytes / 2 ** 20).toFixed(1)} MiB, ${(result.rssPerConnectionBytes / 1024).toFixed(1)} KiB per connection`);
  return result;
}

/**
 * Installs the servers to compare with from Debian's packages (as root; otherwise it says what to
 * run). The packages' own services are stopped again where an init system started them: the
 * benchmark starts its own copies on free ports, and an idle extra server would only take memory.
 */
function installDebianPackages(packages: string[], log: (m: string) => void): void {
  if (process.getuid?.() !== 0) {
    log(`not root: cannot install ${packages.join(', ')} (sudo apt-get install -y ${packages.join(' ')})`);
    return;
  }
  log(`installing ${packages.join(', ')} from Debian (apt-get)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => execFileSync('apt-get', ['install', '-y', '-qq', ...packages], { env, stdio: ['ignore', 'ignore', 'pipe'], timeout: 600_000 });
  try {
    try {
      install();
    } catch {
      execFileSync('apt-get', ['update', '-qq'], { env, stdio: ['ignore', 'ignore', 'pipe'], timeout: 600_000 });
      install();
    }
  } catch (err) {
    log(`apt-get failed: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    return;
  }
  for (const p of packages) {
    try {
      execFileSync('service', [p, 'stop'], { stdio: 'ignore', timeout: 60_000 });
    } catch {
      // not started (no init system in a container), or already stopped
    }
  }
}

/** scripts/bench/tls-floor.ts in its own process: what Node.js's TLS alone needs per idle connection. */
function measureTlsFloor(cert: CertFiles, connections: number, settleMs: number): Promise<TlsFloorResult> {
  return new Promise((resolve, reject) => {
    const child = fork(path.join(here, 'tls-floor.js'), [cert.cert, cert.key, String(connections), String(settleMs)], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      try {
        if (code !== 0) throw new Error(`exited with ${code}`);
        resolve(JSON.parse(out.trim().split('\n').pop()!) as TlsFloorResult);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

async function scenarioOffline(c: Ctx): Promise<OfflineResult> {
  const { offline: total, offlineSenders, offlineRecipients, offlineRate } = c.opts;
  const senders = range(0, offlineSenders);
  const recipients = range(offlineSenders, offlineSenders + offlineRecipients);
  c.log(`offline: ${total} messages from ${offlineSenders} users to ${offlineRecipients} offline users at ${offlineRate}/s`);
  const login = await c.pool.login(senders, c.opts.loginConcurrency);
  if (login.ok === 0) throw new Error(`offline: no sender could log in (${login.errors.join('; ')})`);
  await delay(c.waits.settleMs / 2);
  await waitForQuiescence(c);
  const phase = ++phaseCounter;
  await c.pool.stats(true, { phase });
  const m0 = meter(c);
  const durationMs = (total / offlineRate) * 1000;
  const startAtUs = nowUs() + 200_000;
  const t0 = performance.now() + 200;
  const sends = await Promise.all(
    c.pool.online.map((mine, w) =>
      c.pool.call<SendResult>(w, { type: 'send', rate: offlineRate / c.pool.size, durationMs, startAtUs, senders: mine, recipients, maxBufferedBytes: 1 << 20, phase }, durationMs * 3 + 60_000),
    ),
  );
  const sent = sends.reduce((s, r) => s + r.sent, 0);
  // A ping round trip per sender: each server answers it after the messages sent before it.
  const pings = await Promise.all(c.pool.online.map((mine, w) => c.pool.call<PingResult>(w, { type: 'ping', accounts: mine, timeoutMs: 120_000 }, 150_000)));
  const storeMs = performance.now() - t0;
  const m1 = meter(c);
  const pingFailures = pings.reduce((s, p) => s + p.failed, 0);
  c.log(`  stored (acknowledged) in ${(storeMs / 1000).toFixed(1)} s; now ${offlineRecipients} recipients log in`);
  // Anything the server still does in the background (Mnesia dumps, WAL checkpoints) is not drain work.
  await waitForQuiescence(c);
  const m1b = meter(c);
  const drainStartUs = nowUs();
  const rl = await c.pool.login(recipients, c.opts.loginConcurrency);
  const stats = sumStats(await waitForDeliveries(c.pool, sent, c.waits.offlineQuietMs, 180_000));
  const m2 = meter(c);
  await c.pool.logout();
  const drainMs = stats.lastReceiveUs > drainStartUs ? (stats.lastReceiveUs - drainStartUs) / 1000 : 0;
  const result: OfflineResult = {
    offered: total,
    sent,
    skipped: sends.reduce((s, r) => s + r.skipped, 0),
    storeMs,
    storedPerSec: sent / (storeMs / 1000),
    pingFailures,
    serverCpuSecStore: cpuSec(m0, m1),
    serverCpuSecAfterStore: cpuSec(m1, m1b),
    loadStore: loadShare(m0, m1),
    loadDrain: loadShare(m1b, m2),
    recipientLogins: rl.ok,
    recipientLoginFailures: rl.failed,
    delivered: stats.received,
    lost: Math.max(0, sent - stats.received),
    duplicates: stats.duplicates,
    drainMs,
    drainedPerSec: drainMs > 0 ? stats.received / (drainMs / 1000) : 0,
    serverCpuSecDrain: cpuSec(m1b, m2),
    serverRssBytes: m2.server.rssBytes,
    disconnects: stats.disconnects,
  };
  c.log(`  ${result.delivered} of ${sent} delivered, drained in ${(drainMs / 1000).toFixed(1)} s`);
  return result;
}

// ---- PEP ----

/** Account index of the PEP publisher; its contacts are 1..pepContacts. */
const PEP_PUBLISHER = 0;

interface PepSession {
  /** Worker holding the publisher's connection. */
  pubWorker: number;
  contacts: number[];
  result: PepResult;
}

/** Account names of the PEP publisher and its contacts, for the servers' rosters. */
function pepRosters(contacts: number): { publisher: string; contacts: string[] } {
  return { publisher: accountName(PEP_PUBLISHER), contacts: range(PEP_PUBLISHER + 1, PEP_PUBLISHER + 1 + contacts).map(accountName) };
}

/**
 * Logs in the publisher, then its contacts (mutual subscriptions already in the server's storage:
 * their caps presence reaches the publisher's account as it would on any login), checks the
 * publisher's roster, and checks with an unmeasured item that the notifications reach every
 * contact. A publish answered with an error marks the server as not supporting PEP.
 */
async function pepSetup(c: Ctx): Promise<PepSession> {
  const n = c.opts.pepContacts;
  c.log(`pep: the publisher and ${n} contacts log in`);
  const pub = await c.pool.login([PEP_PUBLISHER], 1, 'publisher');
  if (pub.ok !== 1) throw new Error(`pep: the publisher could not log in (${pub.errors.join('; ')})`);
  const pubWorker = c.pool.online.findIndex((l) => l.includes(PEP_PUBLISHER));
  const cl = await c.pool.login(range(PEP_PUBLISHER + 1, PEP_PUBLISHER + 1 + n), c.opts.loginConcurrency, 'contact');
  const contacts = c.pool.online.flat().filter((i) => i !== PEP_PUBLISHER);
  if (contacts.length === 0) throw new Error(`pep: no contact could log in (${cl.errors.join('; ')})`);
  const roster = await c.pool.call<PepRosterResult | null>(pubWorker, { type: 'pep-roster', publisher: PEP_PUBLISHER, timeoutMs: 60_000 }, 70_000);
  if (!roster) throw new Error('pep: the publisher\'s roster request was not answered within 60 s');
  const disco = await c.pool.call<PepDiscoResult>(pubWorker, { type: 'pep-disco', publisher: PEP_PUBLISHER, timeoutMs: 10_000 }, 20_000);
  await delay(c.waits.settleMs);
  await waitForQuiescence(c);
  const discoQueries = sumStats(await c.pool.stats(false)).discoQueries;

  const result: PepResult = {
    node: PEP_NODE,
    contacts: n,
    contactsOnline: contacts.length,
    mutualSubscriptions: roster.both,
    rosterProvisioning: c.server.rosters?.how ?? '?',
    rosterProvisionMs: c.server.rosters?.ms ?? 0,
    discoQueries,
    advertisesPep: disco.pepIdentity,
    supported: true,
    warmupNotified: 0,
    warmupTries: 0,
    rates: [],
  };
  // Warm-up: one item, until every contact gets it (a server may still be resolving caps).
  for (let tries = 1; tries <= 3; tries++) {
    result.warmupTries = tries;
    const phase = ++phaseCounter;
    await c.pool.stats(true, { phase });
    const p = await c.pool.call<PublishResult>(pubWorker, { type: 'pep-publish', publisher: PEP_PUBLISHER, count: 1, rate: 1, startAtUs: nowUs() + 50_000, phase, timeoutMs: 15_000 }, 40_000);
    if (p.ok === 0) {
      result.supported = false;
      result.unsupportedReason = p.errors ? `publish answered with ${p.firstError ?? 'an error'}` : 'publish not answered within 15 s';
      c.log(`  PEP not supported: ${result.unsupportedReason}`);
      break;
    }
    result.warmupNotified = sumStats(await waitForDeliveries(c.pool, contacts.length, Math.min(3000, c.waits.quietMs), 15_000)).received;
    if (result.warmupNotified >= contacts.length) break;
    await waitForQuiescence(c);
    await delay(1000);
  }
  if (result.supported) c.log(`  warm-up item reached ${result.warmupNotified} of ${contacts.length} contacts (${result.warmupTries} tries); ${discoQueries} caps queries answered`);
  return { pubWorker, contacts, result };
}

/** The publisher publishes --pep-items items at `rate` per second; every contact records the notifications. */
async function pepAtRate(c: Ctx, s: PepSession, rate: number, quietBefore: boolean): Promise<PepRateResult> {
  const items = c.opts.pepItems;
  const windowS = items / rate;
  const n = s.contacts.length;
  c.log(`pep: ${items} items at ${rate}/s to ${n} contacts (${rate * n} notifications/s)`);
  const w = await openDeliveryWindow(c, windowS * 1000);
  const publishing = c.pool.call<PublishResult>(
    s.pubWorker,
    { type: 'pep-publish', publisher: PEP_PUBLISHER, count: items, rate, startAtUs: w.startAtUs, phase: w.phase, timeoutMs: 20_000 },
    windowS * 1000 + 60_000,
  );
  await delay(Math.max(0, (w.windowEndUs - nowUs()) / 1000));
  const mEnd = meter(c);
  const p = await publishing;
  const expected = (p.sent - p.errors) * n;
  const { deliveries, inWindow, loopDelayP99Ms } = await closeDeliveryWindow(c, w, mEnd, expected, quietBefore);
  const lag = Histogram.from(p.lag);
  const lagP99Ms = lag.quantile(0.99) / 1000;
  const result: PepRateResult = {
    itemsPerSec: rate,
    items,
    windowS,
    published: p.sent,
    publishOk: p.ok,
    publishErrors: p.errors,
    publishUnanswered: p.unanswered,
    firstPublishError: p.firstError,
    publishAck: latencySummary(Histogram.from(p.ack)),
    expected,
    notificationsPerSec: inWindow / windowS,
    ...deliveries,
    generator: { cpuSec: mEnd.generatorCpuSec - w.m0.generatorCpuSec, lagP99Ms, keptUp: lagP99Ms < 100 && p.sent === items, loopDelayP99Ms },
  };
  c.log(
    `  delivered ${result.notificationsPerSec.toFixed(0)} notifications/s, p50 ${result.latency.p50Ms.toFixed(1)} ms, p99 ${result.latency.p99Ms.toFixed(1)} ms, lost ${result.lost}, ` +
      `publish errors ${p.errors}, server ${result.serverCpuPercent.toFixed(0)} % of a core, other processes ${(100 * result.load.otherCores).toFixed(0)} %`,
  );
  return result;
}

/** A scenario set up once per server, then measured at several rates (PEP, MUC). */
interface RatedScenario<S extends { result: { supported: boolean; rates: R[] } }, R> {
  name: 'pep' | 'muc';
  rates: number[];
  /** As in "pep at 10 items/s". */
  unit: string;
  setup(c: Ctx): Promise<S>;
  /** Puts the set-up's result into the server's results. */
  record(sr: ServerResults, s: S): void;
  atRate(c: Ctx, s: S, rate: number, quietBefore: boolean): Promise<R>;
}

/**
 * Sets up every server in turn, then each rate goes through them one after the other (as the
 * messages scenario does), the others idle first; a server that fails a rate does no more.
 */
async function runRated<S extends { result: { supported: boolean; rates: R[] } }, R>(benches: Bench[], scenario: RatedScenario<S, R>, fail: (b: Bench, what: string, err: unknown) => void): Promise<void> {
  const sessions = new Map<Bench, S>();
  for (const b of benches) {
    if (!b.ctx) continue;
    try {
      const s = await scenario.setup(b.ctx);
      scenario.record(b.sr, s);
      if (s.result.supported) sessions.set(b, s);
    } catch (err) {
      fail(b, scenario.name, err);
      await b.ctx.pool.logout().catch(() => undefined);
    }
  }
  for (const rate of scenario.rates) {
    for (const b of benches) {
      const s = sessions.get(b);
      if (!s || !b.ctx) continue;
      await Promise.all(benches.filter((o) => o !== b && o.ctx).map((o) => waitForQuiescence(o.ctx!)));
      const quietBefore = await waitForQuiescence(b.ctx);
      try {
        s.result.rates.push(await scenario.atRate(b.ctx, s, rate, quietBefore));
      } catch (err) {
        fail(b, `${scenario.name} at ${rate} ${scenario.unit}`, err);
        sessions.delete(b);
      }
    }
  }
  for (const b of benches) if (b.ctx) await b.ctx.pool.logout().catch(() => undefined);
}

async function runPep(benches: Bench[], opts: Options, fail: (b: Bench, what: string, err: unknown) => void): Promise<void> {
  await runRated(benches, { name: 'pep', rates: opts.pepRates, unit: 'items/s', setup: pepSetup, record: (sr, s) => (sr.scenarios.pep = s.result), atRate: pepAtRate }, fail);
}

// ---- MUC ----

const MUC_ROOM = `bench@conference.${DOMAIN}`;

interface MucSession {
  occupants: number[];
  result: MucResult;
}

/** Occupants log in; the service is asked whether it is one; the first occupant creates the room (instant), then the others enter. */
async function mucSetup(c: Ctx): Promise<MucSession> {
  const n = c.opts.mucOccupants;
  const service = `conference.${DOMAIN}`;
  c.log(`muc: ${n} occupants log in`);
  const li = await c.pool.login(range(0, n), c.opts.loginConcurrency, 'occupant');
  const loggedIn = c.pool.online.flat();
  if (loggedIn.length === 0) throw new Error(`muc: nobody could log in (${li.errors.join('; ')})`);
  const result: MucResult = { room: MUC_ROOM, occupants: n, loggedIn: loggedIn.length, supported: true, joined: 0, joinRefused: 0, joinTimedOut: 0, joinMs: 0, warmupDelivered: 0, rates: [] };
  const first = loggedIn[0]!;
  const firstWorker = c.pool.online.findIndex((l) => l.includes(first));
  const disco = await c.pool.call<DiscoInfoResult>(firstWorker, { type: 'disco-info', from: first, jid: service, timeoutMs: 10_000 }, 20_000);
  if (!disco.answered || disco.error || !disco.identities.includes('conference/text') || !disco.features.includes('http://jabber.org/protocol/muc')) {
    result.supported = false;
    result.unsupportedReason = `${service} does not answer disco#info as a multi-user chat service (${!disco.answered ? 'no answer within 10 s' : disco.error ?? `identities ${disco.identities.join(' ') || 'none'}`})`;
    c.log(`  skipped: ${result.unsupportedReason}`);
    return { occupants: [], result };
  }
  const t0 = Date.now();
  const created = await c.pool.call<MucJoinResult>(firstWorker, { type: 'muc-join', room: MUC_ROOM, accounts: [first], concurrency: 1, timeoutMs: 15_000 }, 30_000);
  if (created.joined !== 1) throw new Error(`muc: the room could not be created (${created.firstError ?? 'no answer within 15 s'})`);
  // XEP-0045 10.1.2: an instant room, unlocked by the empty form (a server that does not lock new rooms answers it as well).
  const unlock = await c.pool.call<IqAnswer>(
    firstWorker,
    { type: 'iq', from: first, stanza: `<iq type='set' id='{id}' to='${MUC_ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`, timeoutMs: 15_000 },
    30_000,
  );
  if (unlock.answer === null || /\btype=['"]error['"]/.test(unlock.answer.slice(0, unlock.answer.indexOf('>')))) c.log(`  the instant-room form was answered with ${unlock.answer?.slice(0, 300) ?? 'nothing'}`);
  const joins = await Promise.all(
    c.pool.online.map((accounts, w) =>
      c.pool.call<MucJoinResult>(w, { type: 'muc-join', room: MUC_ROOM, accounts: accounts.filter((i) => i !== first), concurrency: 10, timeoutMs: 30_000 }, 600_000),
    ),
  );
  result.joinMs = Date.now() - t0;
  const occupants = [first, ...joins.flatMap((j) => j.occupants)];
  result.joined = occupants.length;
  result.joinRefused = joins.reduce((x, j) => x + j.refused, 0);
  result.joinTimedOut = joins.reduce((x, j) => x + j.timedOut, 0);
  result.firstJoinError = joins.find((j) => j.firstError)?.firstError;
  c.log(`  ${result.joined} of ${loggedIn.length} in the room after ${(result.joinMs / 1000).toFixed(1)} s` + (result.joinRefused ? `, ${result.joinRefused} refused (${result.firstJoinError})` : '') + (result.joinTimedOut ? `, ${result.joinTimedOut} unanswered` : ''));
  await delay(c.waits.settleMs);
  await waitForQuiescence(c);
  // Warm-up: one message, unmeasured.
  const phase = ++phaseCounter;
  await c.pool.stats(true, { phase });
  const w0 = c.pool.online.findIndex((l) => l.includes(first));
  await c.pool.call<SendResult>(w0, { type: 'send', rate: 1, durationMs: 1000, startAtUs: nowUs() + 50_000, senders: [first], recipients: [], maxBufferedBytes: 1 << 20, phase, groupchat: MUC_ROOM }, 30_000);
  result.warmupDelivered = sumStats(await waitForDeliveries(c.pool, occupants.length, Math.min(3000, c.waits.quietMs), 15_000)).received;
  return { occupants, result };
}

/** Messages to the room at `rate` per second for --muc-duration seconds, from occupants picked at random; every occupant records each copy. */
async function mucAtRate(c: Ctx, s: MucSession, rate: number, quietBefore: boolean): Promise<MucRateResult> {
  const durationS = c.opts.mucDurationS;
  const durationMs = durationS * 1000;
  const n = s.occupants.length;
  c.log(`muc: ${rate} messages/s for ${durationS} s to ${n} occupants (${rate * n} deliveries/s offered)`);
  const w = await openDeliveryWindow(c, durationMs);
  const inRoom = new Set(s.occupants);
  const sends = await Promise.all(
    c.pool.online.map((accounts, i) =>
      c.pool.call<SendResult>(
        i,
        { type: 'send', rate: rate / c.pool.size, durationMs, startAtUs: w.startAtUs, senders: accounts.filter((a) => inRoom.has(a)), recipients: [], maxBufferedBytes: 1 << 20, phase: w.phase, groupchat: MUC_ROOM },
        durationMs * 3 + 60_000,
      ),
    ),
  );
  const mEnd = meter(c);
  const sent = sends.reduce((x, r) => x + r.sent, 0);
  const expected = sent * n;
  const { deliveries, inWindow, loopDelayP99Ms } = await closeDeliveryWindow(c, w, mEnd, expected, quietBefore);
  const lag = Histogram.from(...sends.map((x) => x.lag));
  const lagP99Ms = lag.quantile(0.99) / 1000;
  const result: MucRateResult = {
    messagesPerSec: rate,
    durationS,
    occupants: n,
    sent,
    skippedBackpressure: sends.reduce((x, r) => x + r.skipped, 0),
    expected,
    deliveredPerSec: inWindow / durationS,
    ...deliveries,
    generator: { cpuSec: mEnd.generatorCpuSec - w.m0.generatorCpuSec, lagP99Ms, keptUp: lagP99Ms < 100, loopDelayP99Ms },
  };
  c.log(
    `  delivered ${result.deliveredPerSec.toFixed(0)}/s, p50 ${result.latency.p50Ms.toFixed(1)} ms, p99 ${result.latency.p99Ms.toFixed(1)} ms, lost ${result.lost}, ` +
      `server ${result.serverCpuPercent.toFixed(0)} % of a core, other processes ${(100 * result.load.otherCores).toFixed(0)} %` +
      (result.streamErrors.length ? `; ${result.streamErrors.slice(0, 2).join('; ')}` : ''),
  );
  return result;
}

async function runMuc(benches: Bench[], opts: Options, fail: (b: Bench, what: string, err: unknown) => void): Promise<void> {
  await runRated(benches, { name: 'muc', rates: opts.mucRates, unit: 'messages/s', setup: mucSetup, record: (sr, s) => (sr.scenarios.muc = s.result), atRate: mucAtRate }, fail);
}

// ---- main ----

function machineInfo(): BenchResults['machine'] {
  const cpuinfo = (() => {
    try {
      return readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return '';
    }
  })();
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? '?';
  const mhz = /cpu MHz\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim();
  return {
    nproc: os.availableParallelism(),
    cpu: mhz ? `${model} (${Math.round(Number(mhz))} MHz)` : model,
    memoryBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()}`,
    os: (() => {
      try {
        return /PRETTY_NAME="([^"]*)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? '?';
      } catch {
        return '?';
      }
    })(),
    openFilesLimit: (() => {
      try {
        return execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
      } catch {
        return '?';
      }
    })(),
  };
}

function gatehouseVersion(): string {
  let v = '?';
  try {
    v = (JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    // unknown
  }
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'server', 'shared', 'migrations'], { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    v += ` (git ${rev}${dirty ? ' + uncommitted changes' : ''})`;
  } catch {
    // not a git checkout
  }
  return v;
}

/** One server under test, with its load generator; restarted when a backlog will not go away. */
interface Bench {
  kind: ServerKind;
  label: string;
  sr: ServerResults;
  ctx: Ctx | null;
  starts: number;
  /** Set when the remaining message rates are not run for this server. */
  ratesDone: boolean;
}

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  if (opts.render) {
    const out = opts.out ?? 'docs/benchmarks.md';
    const earlier = JSON.parse(readFileSync(opts.render, 'utf8')) as BenchResults;
    writeFileSync(out, renderMarkdown(earlier, existsSync(out) ? readFileSync(out, 'utf8') : null));
    console.log(`report ${out} written from ${opts.render}`);
    return 0;
  }
  const started = Date.now();
  const log = (m: string) => console.log(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${m}`);
  if (!existsSync(path.join(opts.gatehouse, 'dist/server/cli.js'))) throw new Error(`${path.join(opts.gatehouse, 'dist/server/cli.js')} missing: build first (npx tsc -p tsconfig.json)`);
  // The cluster scenario starts Gatehouse nodes of its own: alone, it needs none of the servers.
  const serverScenarios = opts.scenarios.filter((x) => x !== 'cluster');
  const missing = serverScenarios.length ? opts.servers.filter((s) => !serverAvailable(s)) : [];
  if (missing.length && opts.install) installDebianPackages(missing, log);
  const servers = (serverScenarios.length ? opts.servers : []).filter((s) => {
    if (serverAvailable(s)) return true;
    log(`${SERVER_LABEL[s]} is not installed: skipped (apt-get install -y ${s})`);
    return false;
  });
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-'));
  // Outside `tmp`, which is removed at the end.
  const profilesDir = path.join(os.tmpdir(), `gatehouse-bench-profile-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  if (opts.profile) mkdirSync(profilesDir, { recursive: true });
  const pools = new Set<WorkerPool>();
  const emergency = async (code: number) => {
    for (const p of pools) p.kill();
    await killAllAndWait();
    if (!opts.keep) rmSync(tmp, { recursive: true, force: true });
    process.exit(code);
  };
  process.once('SIGINT', () => {
    log('interrupted: stopping servers');
    void emergency(130);
  });
  process.once('SIGTERM', () => void emergency(143));
  process.once('exit', () => killAllNow());

  const results: BenchResults = {
    date: new Date().toISOString(),
    command: commandLine(),
    smoke: opts.smoke,
    machine: machineInfo(),
    versions: {
      node: process.version,
      gatehouse:
        opts.gatehouse === repoRoot
          ? gatehouseVersion()
          : `build in ${opts.gatehouse} made ${statSync(path.join(opts.gatehouse, 'dist/server/cli.js')).mtime.toISOString().slice(0, 16).replace('T', ' ')} UTC (this checkout: ${gatehouseVersion()})`,
      prosody: packageVersion('prosody'),
      ejabberd: packageVersion('ejabberd'),
      erlang: packageVersion('erlang-base'),
      lua: packageVersion('lua5.4'),
      openssl: packageVersion('openssl'),
    },
    parameters: {
      logins: opts.logins,
      users: opts.users,
      rates: opts.rates,
      durationS: opts.durationS,
      idle: opts.idle,
      offline: opts.offline,
      offlineSenders: opts.offlineSenders,
      offlineRecipients: opts.offlineRecipients,
      offlineRate: opts.offlineRate,
      pepContacts: opts.pepContacts,
      pepRates: opts.pepRates,
      pepItems: opts.pepItems,
      mucOccupants: opts.mucOccupants,
      mucRates: opts.mucRates,
      mucDurationS: opts.mucDurationS,
      workers: opts.workers,
      loginConcurrency: opts.loginConcurrency,
      scramIterations: SCRAM_ITERATIONS,
      scenarios: opts.scenarios,
      certificate: CERT_KEY_LABEL[opts.certKey],
    },
    servers: [],
  };
  const waits = opts.smoke
    ? { settleMs: 200, idleMs: 500, quietMs: 5000, offlineQuietMs: 5000, quiescenceMaxMs: 0 }
    : { settleMs: 2000, idleMs: 5000, quietMs: 5000, offlineQuietMs: 10_000, quiescenceMaxMs: 30_000 };
  const benches: Bench[] = servers.map((kind) => {
    const sr: ServerResults = { kind, label: SERVER_LABEL[kind], scenarios: {} };
    results.servers.push(sr);
    return { kind, label: SERVER_LABEL[kind], sr, ctx: null, starts: 0, ratesDone: false };
  });
  const note = (b: Bench, text: string) => {
    log(`${b.label}: ${text}`);
    (b.sr.notes ??= []).push(text);
  };
  const fail = (b: Bench, what: string, err: unknown) => {
    const msg = err instanceof Error ? err.message : String(err);
    log(`${b.label}: ${what} failed: ${msg}`);
    (b.sr.errors ??= []).push(`${what}: ${msg}`);
  };

  try {
    const cert = makeCertificate(tmp, opts.certKey);
    const needed = Math.max(
      opts.scenarios.includes('logins') ? opts.logins : 0,
      opts.scenarios.includes('messages') ? opts.users : 0,
      opts.scenarios.includes('idle') ? opts.idle : 0,
      opts.scenarios.includes('offline') ? opts.offlineSenders + opts.offlineRecipients : 0,
      opts.scenarios.includes('pep') ? opts.pepContacts + 1 : 0,
      opts.scenarios.includes('muc') ? opts.mucOccupants : 0,
      opts.scenarios.includes('cluster') ? Math.max(3 * clusterGroup(opts), opts.cluster.clients) : 0,
      2,
    );
    const accounts = await makeAccounts(needed, log);

    const start = async (b: Bench): Promise<void> => {
      const n = b.starts++;
      log(`${b.label}: starting${n ? ' afresh' : ''}, ${accounts.length} accounts`);
      const profileDir = opts.profile && b.kind === 'gatehouse' ? profilesDir : undefined;
      const server = await startBenchServer(b.kind, { dir: path.join(tmp, n ? `${b.kind}-${n + 1}` : b.kind), repoRoot: opts.gatehouse, cert, accounts, cpuProfileDir: profileDir, pep: scenarioNow === 'pep' ? pepRosters(opts.pepContacts) : undefined, muc: scenarioNow === 'muc' ? { maxOccupants: opts.mucOccupants } : undefined, log });
      if (n === 0) {
        b.sr.port = server.port;
        b.sr.provisioning = server.provisioning;
        b.sr.provisionMs = server.provisionMs;
        b.sr.openFilesLimit = server.openFilesLimit;
        b.sr.startRssBytes = server.sample().rssBytes;
      }
      log(`${b.label}: pid ${server.pid} on 127.0.0.1:${server.port} (accounts ready in ${(server.provisionMs / 1000).toFixed(1)} s)`);
      let pool: WorkerPool;
      try {
        pool = await WorkerPool.start(opts.workers, [server.port], cert.pem, accounts);
      } catch (err) {
        await server.stop();
        throw err;
      }
      pools.add(pool);
      b.ctx = { opts, server, pool, waits, log: (m) => log(`${b.label}: ${m}`) };
    };
    const stop = async (b: Bench): Promise<void> => {
      const c = b.ctx;
      if (!c) return;
      b.ctx = null;
      await c.pool.stop().catch(() => c.pool.kill());
      pools.delete(c.pool);
      try {
        b.sr.endRssBytes = c.server.sample().rssBytes;
      } catch {
        // gone
      }
      await c.server.stop();
    };
    const restart = async (b: Bench, why: string): Promise<void> => {
      note(b, why);
      await stop(b);
      try {
        await start(b);
      } catch (err) {
        fail(b, 'restart', err);
      }
    };
    /**
     * Between message rates, every other server must be idle: one still working off a backlog
     * would take CPU from the one under test. One that stays busy is started afresh and runs no
     * further rates (its users are gone).
     */
    const settleOthers = async (current: Bench): Promise<void> => {
      const live = benches.filter((b) => b.ctx && b !== current);
      const quiet = await Promise.all(live.map((b) => waitForQuiescence(b.ctx!)));
      for (let i = 0; i < live.length; i++) {
        if (quiet[i]) continue;
        const b = live[i]!;
        const done = b.sr.scenarios.messages ?? [];
        const remaining = opts.rates.slice(done.length);
        b.ratesDone = true;
        await restart(b, `restarted during the messages scenario: still busy ${waits.quiescenceMaxMs / 1000} s after its ${done[done.length - 1]?.offeredRate ?? '?'}/s phase` + (remaining.length ? `; offered ${remaining.join(', ')}/s not run` : ''));
      }
    };
    /** A freshly started server for every scenario: nothing one scenario leaves behind (heaps, backlogs, closing sessions) weighs on the next. */
    const fresh = async (b: Bench): Promise<void> => {
      await stop(b);
      try {
        await start(b);
      } catch (err) {
        fail(b, 'start', err);
      }
    };

    // All servers run side by side (idle when not measured) and each scenario, each message rate,
    // goes through them one after the other: on a shared machine, load from other processes then
    // changes little between the servers of one comparison.
    const order: Scenario[] = ['logins', 'idle', 'messages', 'offline', 'pep', 'muc'];
    // The servers' configuration depends on the scenario (PEP on only for its own).
    let scenarioNow: Scenario = order.find((x) => opts.scenarios.includes(x)) ?? 'logins';
    for (const b of benches) {
      try {
        await start(b);
      } catch (err) {
        fail(b, 'start', err);
      }
    }
    let firstScenario = true;
    for (const scenario of order.filter((x) => opts.scenarios.includes(x))) {
      scenarioNow = scenario;
      if (!firstScenario) for (const b of benches) if (b.starts > 0) await fresh(b);
      firstScenario = false;
      if (scenario === 'pep') {
        await runPep(benches, opts, fail);
        continue;
      }
      if (scenario === 'muc') {
        await runMuc(benches, opts, fail);
        continue;
      }
      if (scenario !== 'messages') {
        for (const b of benches) {
          const c = b.ctx;
          if (!c) continue;
          try {
            if (scenario === 'logins') b.sr.scenarios.logins = await scenarioLogins(c);
            if (scenario === 'idle') b.sr.scenarios.idle = await scenarioIdle(c);
            if (scenario === 'offline') b.sr.scenarios.offline = await scenarioOffline(c);
          } catch (err) {
            fail(b, scenario, err);
            await c.pool.logout().catch(() => undefined);
          }
        }
        if (scenario === 'idle' && benches.some((b) => b.kind === 'gatehouse')) {
          try {
            results.tlsFloor = await measureTlsFloor(cert, opts.idle, waits.idleMs);
            log(`Node.js TLS floor: ${(results.tlsFloor.rssPerConnectionBytes / 1024).toFixed(1)} KiB per idle TLS connection (bare tls.createServer)`);
          } catch (err) {
            log(`Node.js TLS floor not measured: ${err instanceof Error ? err.message : String(err)}`);
          }
        }
        continue;
      }
      const online = new Map<Bench, number[]>();
      for (const b of benches) {
        if (!b.ctx) continue;
        try {
          online.set(b, await messagesLogin(b.ctx));
        } catch (err) {
          fail(b, 'messages', err);
          await b.ctx.pool.logout().catch(() => undefined);
        }
      }
      for (const rate of opts.rates) {
        for (const b of benches) {
          const users = online.get(b);
          if (!users || b.ratesDone || !b.ctx) continue;
          await settleOthers(b);
          if (!b.ctx) continue;
          const quietBefore = await waitForQuiescence(b.ctx);
          const done = b.sr.scenarios.messages ?? [];
          if (!quietBefore && done.length) {
            b.ratesDone = true;
            const skipped = opts.rates.slice(opts.rates.indexOf(rate));
            note(b, `messages at offered ${skipped.join(', ')}/s not run: the server was still working off the ${done[done.length - 1]!.offeredRate}/s backlog ${waits.quiescenceMaxMs / 1000} s after it ended`);
            continue;
          }
          try {
            (b.sr.scenarios.messages ??= []).push(await messagesAtRate(b.ctx, rate, users, quietBefore));
          } catch (err) {
            fail(b, `messages at ${rate}/s`, err);
            b.ratesDone = true;
          }
        }
      }
      for (const b of benches) if (b.ctx && online.has(b)) await b.ctx.pool.logout().catch(() => undefined);
    }
    if (opts.scenarios.includes('cluster')) {
      // Nothing else may run meanwhile: the servers of the other scenarios are stopped first.
      for (const b of benches) {
        const c = b.ctx;
        if (!c) continue;
        b.ctx = null;
        await c.pool.stop().catch(() => c.pool.kill());
        pools.delete(c.pool);
        await c.server.stop();
      }
      results.cluster = await runCluster(
        { ...opts.cluster, rounds: opts.smoke ? 1 : 2, group: clusterGroup(opts), budgetS: opts.smoke ? 60 : 110, gatehouse: opts.gatehouse, profileDir: opts.profile ? profilesDir : undefined },
        cert,
        accounts,
        tmp,
        log,
      );
    }
  } finally {
    for (const b of benches) {
      const c = b.ctx;
      if (!c) continue;
      b.ctx = null;
      await c.pool.stop().catch(() => c.pool.kill());
      try {
        b.sr.endRssBytes = c.server.sample().rssBytes;
      } catch {
        // gone
      }
      await c.server.stop().catch(() => undefined);
    }
    killAllNow();
    if (!opts.keep) rmSync(tmp, { recursive: true, force: true });
    else log(`kept ${tmp}`);
  }
  const broken = benches.flatMap((b) => checkBroken(b.sr, opts));
  if (results.cluster) broken.push(...checkClusterBroken(results.cluster));
  results.totalSeconds = (Date.now() - started) / 1000;
  results.broken = broken;
  const markdown = renderMarkdown(results, opts.out && existsSync(opts.out) ? readFileSync(opts.out, 'utf8') : null);
  if (opts.json) {
    mkdirSync(path.dirname(path.resolve(opts.json)), { recursive: true });
    writeFileSync(opts.json, JSON.stringify(results, null, 2) + '\n');
    log(`raw results: ${opts.json}`);
  }
  if (opts.out) {
    mkdirSync(path.dirname(path.resolve(opts.out)), { recursive: true });
    writeFileSync(opts.out, markdown);
    log(`report: ${opts.out}`);
  } else if (serverScenarios.length) {
    console.log(markdown.split('<!-- end of generated part')[0]);
  }
  if (results.cluster) console.log(renderCluster(results.cluster));
  if (opts.profile) log(`Gatehouse CPU profile in ${profilesDir} (node dist/scripts/bench/profile-summary.js FILE)`);
  if (broken.length) {
    for (const b of broken) console.error(`bench broken: ${b}`);
    return 1;
  }
  log(`done in ${results.totalSeconds.toFixed(0)} s`);
  return 0;
}

/** Senders, local and remote recipients of the cluster scenario's CPU comparison: this many each. */
function clusterGroup(opts: Options): number {
  return opts.smoke ? 5 : 50;
}

/** The cluster scenario broke: it failed, or a phase delivered nothing (never a slow figure). */
function checkClusterBroken(r: ClusterResult): string[] {
  const out = r.errors.map((e) => `cluster: ${e}`);
  if (r.within && r.within.delivered === 0) out.push('cluster: no message delivered within a node');
  if (r.across && r.across.delivered === 0) out.push('cluster: no message delivered across nodes');
  for (const t of r.throughput) if (t.steps.length && t.steps[0]!.delivered === 0) out.push(`cluster: no message delivered with ${t.nodes} node(s)`);
  return out;
}

/** What makes the benchmark itself unusable (never a slow figure). */
function checkBroken(sr: ServerResults, opts: Options): string[] {
  const out: string[] = [];
  const s = sr.scenarios;
  for (const e of sr.errors ?? []) out.push(`${sr.label}: ${e}`);
  if (opts.scenarios.includes('logins') && s.logins && s.logins.ok === 0) out.push(`${sr.label}: no login succeeded (${s.logins.errors.join('; ')})`);
  if (opts.scenarios.includes('messages')) for (const m of s.messages ?? []) if (m.received === 0) out.push(`${sr.label}: no message delivered at offered ${m.offeredRate}/s`);
  if (opts.scenarios.includes('idle') && s.idle && s.idle.connections === 0) out.push(`${sr.label}: no idle connection`);
  if (opts.scenarios.includes('offline') && s.offline && s.offline.delivered === 0) out.push(`${sr.label}: no offline message delivered`);
  // A server without PEP is a result (reported as not supported), not a broken benchmark.
  if (opts.scenarios.includes('pep') && s.pep) {
    if (s.pep.contactsOnline === 0) out.push(`${sr.label}: no PEP contact could log in`);
    else if (s.pep.mutualSubscriptions === 0) out.push(`${sr.label}: no mutual presence subscription for the PEP scenario`);
    for (const x of s.pep.rates) if (x.received === 0) out.push(`${sr.label}: no PEP notification delivered at ${x.itemsPerSec} items/s`);
  }
  // A server without a MUC service is reported as skipped; one that has it must deliver.
  if (opts.scenarios.includes('muc') && s.muc?.supported) {
    if (s.muc.joined === 0) out.push(`${sr.label}: nobody could enter the MUC room (${s.muc.firstJoinError ?? 'no answer'})`);
    for (const x of s.muc.rates) if (x.received === 0) out.push(`${sr.label}: no group chat message delivered at ${x.messagesPerSec}/s`);
  }
  return out;
}

function commandLine(): string {
  const args = process.argv.slice(2).map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`));
  return ['node', path.relative(repoRoot, fileURLToPath(import.meta.url)), ...args].join(' ');
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    killAllNow();
    process.exit(1);
  },
);

