/**
 * The servers under test: Gatehouse (this tree, dist/), Prosody and ejabberd (Debian packages),
 * each started in its own temporary directory on a free loopback port with equivalent settings,
 * its accounts written beforehand, and its process measured through /proc.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, writeFileSync, copyFileSync, chmodSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BenchAccount } from './protocol.js';

export type ServerKind = 'gatehouse' | 'prosody' | 'ejabberd';
export const SERVER_LABEL: Record<ServerKind, string> = { gatehouse: 'Gatehouse', prosody: 'Prosody', ejabberd: 'ejabberd' };

export const DOMAIN = 'bench.local';

export interface CertFiles {
  cert: string;
  key: string;
  /** Certificate and key in one file (ejabberd). */
  combined: string;
  pem: string;
}

export interface ProcSample {
  /** utime + stime, seconds. */
  cpuSec: number;
  rssBytes: number;
  /** Seconds since boot, from /proc/uptime. */
  at: number;
  /** Whole machine, from /proc/stat, in clock ticks summed over all cores. */
  machineBusy: number;
  machineTotal: number;
  machineSteal: number;
}

/** Busy and steal shares of the whole machine between two samples, percent of all cores. */
export function machineLoad(a: ProcSample, b: ProcSample): { busyPercent: number; stealPercent: number } {
  const total = b.machineTotal - a.machineTotal;
  if (total <= 0) return { busyPercent: 0, stealPercent: 0 };
  return { busyPercent: (100 * (b.machineBusy - a.machineBusy)) / total, stealPercent: (100 * (b.machineSteal - a.machineSteal)) / total };
}

export interface RunningBenchServer {
  kind: ServerKind;
  port: number;
  /** The process that does the work (beam.smp for ejabberd). */
  pid: number;
  dir: string;
  /** How the accounts were created, for the report. */
  provisioning: string;
  provisionMs: number;
  /** Open-files limit of the measured process. */
  openFilesLimit: string;
  /** PEP scenario: how the mutual rosters were written, and how long it took. */
  rosters?: { how: string; ms: number };
  sample(): ProcSample;
  stop(): Promise<void>;
}

export interface StartOptions {
  dir: string;
  /** Where Gatehouse's build is: <repoRoot>/dist/server/cli.js. */
  repoRoot: string;
  cert: CertFiles;
  accounts: BenchAccount[];
  /**
   * HTTP File Upload (XEP-0363) at upload.<DOMAIN> on this HTTPS port on 127.0.0.1 (Gatehouse: the
   * upload module; Prosody: mod_http_file_share), files up to 20 MiB, no quotas in the way.
   */
  upload?: { httpsPort: number };
  /** Gatehouse only: write a V8 CPU profile (node --cpu-prof) into this directory. */
  cpuProfileDir?: string;
  /**
   * The PEP scenario: Prosody loads mod_pep, ejabberd mod_caps and mod_pubsub with the pep plugin,
   * as their packaged configurations do (Gatehouse runs as it is: PEP is its own module there),
   * and the publisher and each contact have each other in their rosters with subscription=both,
   * written into the server's storage before the clients connect (as the accounts are). Absent
   * for the other scenarios, whose figures predate it.
   */
  pep?: { publisher: string; contacts: string[] };
  /**
   * The MUC scenario: Prosody loads its muc component on conference.<DOMAIN> (room creation open to
   * local users), ejabberd mod_muc with max_users raised to maxOccupants for the service and for
   * new rooms (default_room_options; both default to 200).
   * Gatehouse runs as it is: its service is on by default, up to 1000 occupants a room.
   */
  muc?: { maxOccupants: number };
  log: (msg: string) => void;
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

// ---- /proc ----

export function procSample(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime is field 14, stime field 15.
  const cpuSec = (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] ?? 0) * 1024;
  const at = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  // cpu  user nice system idle iowait irq softirq steal guest guest_nice
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
  const machineTotal = cpu.slice(0, 8).reduce((x, y) => x + y, 0);
  return { cpuSec, rssBytes: rss, at, machineBusy: machineTotal - idle, machineTotal, machineSteal: cpu[7] ?? 0 };
}

function openFilesLimit(pid: number): string {
  try {
    const line = readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const parts = line?.trim().split(/\s{2,}/) ?? [];
    return parts.length >= 3 ? `${parts[1]} (hard ${parts[2]})` : '?';
  } catch {
    return '?';
  }
}

/** Descendants of `root` (itself included) whose command name is `comm`. */
function findDescendant(root: number, comm: string): number | null {
  const children = new Map<number, number[]>();
  const names = new Map<number, string>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const pid = Number(entry);
      names.set(pid, stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid)!.push(pid);
    } catch {
      // the process ended meanwhile
    }
  }
  const queue = [root];
  while (queue.length) {
    const p = queue.shift()!;
    if (names.get(p) === comm) return p;
    queue.push(...(children.get(p) ?? []));
  }
  return null;
}

// ---- helpers ----

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits until something accepts TCP connections on the port, or the child exits, or the time is up. */
async function waitForPort(port: number, child: ChildProcess, timeoutMs: number, what: string, logFile: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited during start-up (${child.exitCode ?? child.signalCode}); see ${logFile}:\n${tail(logFile)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
      s.setTimeout(1000, () => {
        s.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    await delay(200);
  }
  throw new Error(`${what} did not listen on port ${port} within ${timeoutMs / 1000} s; see ${logFile}:\n${tail(logFile)}`);
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Starts `cmd` in its own process group, output to a log file. */
function launch(cmd: string, args: string[], opts: { cwd: string; log: string; env?: NodeJS.ProcessEnv }): ChildProcess {
  const fd = openSync(opts.log, 'a');
  try {
    return spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', fd, fd], detached: true, env: opts.env ?? process.env });
  } finally {
    closeSync(fd);
  }
}

/**
 * SIGTERM to `worker` (default: the whole process group), SIGKILL to the group after the grace
 * time. Signalling the working process first lets wrapper scripts (ejabberdctl) wait for it, so
 * nothing is left orphaned.
 */
async function stopGroup(child: ChildProcess, graceMs: number, worker?: number): Promise<void> {
  const pid = child.pid;
  if (!pid || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    process.kill(worker ?? -pid, 'SIGTERM');
  } catch {
    return;
  }
  const timedOut = await Promise.race([exited.then(() => false), delay(graceMs).then(() => true)]);
  if (timedOut) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone
    }
    await Promise.race([exited, delay(2000)]);
  }
  // Whatever is left in the group (erl helpers), without waiting.
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // gone
  }
}

/** Every server process group started here (leader → its ChildProcess), for the emergency exit path. */
const liveGroups = new Map<number, ChildProcess>();

/** SIGKILL to every server process group still running. */
export function killAllNow(): void {
  for (const pgid of liveGroups.keys()) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** killAllNow, then waits (bounded) until the group leaders have exited, so none is left a zombie. */
export async function killAllAndWait(timeoutMs = 3000): Promise<void> {
  const waiting = [...liveGroups.values()].filter((c) => c.exitCode === null && c.signalCode === null);
  killAllNow();
  await Promise.race([Promise.all(waiting.map((c) => new Promise<void>((r) => c.once('exit', () => r())))), delay(timeoutMs)]);
  liveGroups.clear();
}

function track(child: ChildProcess): void {
  if (!child.pid) return;
  const pid = child.pid;
  liveGroups.set(pid, child);
  // If this process is killed outright (SIGKILL, a test timeout), nothing here runs: a small
  // watchdog then ends the server's process group. It exits by itself once the group is gone.
  const watchdog = spawn(
    'sh',
    ['-c', `while kill -0 ${process.pid} 2>/dev/null && kill -0 -${pid} 2>/dev/null; do sleep 1; done; kill -KILL -${pid} 2>/dev/null; exit 0`],
    { stdio: 'ignore', detached: true },
  );
  watchdog.unref();
  child.once('exit', () => {
    // Helpers left in the group (erl's) are killed by stopGroup; epmd detaches and is left alone.
    if (liveGroups.get(pid) === child) liveGroups.delete(pid);
  });
}

// ---- Gatehouse ----

/**
 * Where a finished account database for these accounts and migrations is kept. One fsync per
 * account makes 10,000 of them take half a minute, so the file is made once and copied; the
 * server applies any newer migration to the copy when it starts.
 */
function gatehouseTemplatePath(o: StartOptions): string {
  const migrationsDir = path.join(o.repoRoot, 'dist/storage/migrations');
  const key = createHash('sha1')
    .update(o.accounts.map((a) => `${a.name}:${a.storedKey}`).join(','))
    .update(existsSync(migrationsDir) ? readdirSync(migrationsDir).sort().join(',') : '')
    .digest('hex')
    .slice(0, 16);
  return path.join(os.tmpdir(), `gatehouse-bench-db-${o.accounts.length}-${key}.sqlite`);
}

/** The server's own storage layer (migrations included), then plain account rows through it. */
async function createGatehouseAccounts(root: string, dbPath: string, accounts: BenchAccount[]): Promise<void> {
  // From the build under test (--gatehouse), which need not be the one this script belongs to.
  const { openStorage } = (await import(pathToFileURL(path.join(root, 'dist/storage/datasource.js')).href)) as typeof import('../../storage/datasource.js');
  const { verifyPlain } = (await import(pathToFileURL(path.join(root, 'dist/server/auth/scram.js')).href)) as typeof import('../../server/auth/scram.js');
  const verifierOf = (a: BenchAccount) => ({
    hash: 'SHA-1' as const,
    salt: Buffer.from(a.salt, 'base64'),
    iterations: a.iterations,
    storedKey: Buffer.from(a.storedKey, 'base64'),
    serverKey: Buffer.from(a.serverKey, 'base64'),
  });
  if (!verifyPlain(accounts[0]!.password, verifierOf(accounts[0]!))) throw new Error('benchmark verifier does not match Gatehouse SCRAM');
  const storage = await openStorage({ type: 'sqlite', path: dbPath }, { migrate: true });
  try {
    const now = new Date();
    // SQLite serialises the writes; a few in flight keep it busy without piling up promises.
    let next = 0;
    const one = async () => {
      while (next < accounts.length) {
        const a = accounts[next++]!;
        if (!(await storage.accounts.create(a.name, DOMAIN, [verifierOf(a)], now))) throw new Error(`account ${a.name} exists twice`);
      }
    };
    await Promise.all(Array.from({ length: 8 }, one));
  } finally {
    await storage.close();
  }
}

async function startGatehouse(o: StartOptions): Promise<RunningBenchServer> {
  const port = await freePort();
  const dataDir = path.join(o.dir, 'data');
  mkdirSync(dataDir, { recursive: true });
  const dbPath = path.join(dataDir, 'gatehouse.sqlite');
  const t0 = Date.now();
  const template = gatehouseTemplatePath(o);
  const cached = existsSync(template);
  if (cached) copyFileSync(template, dbPath);
  else {
    await createGatehouseAccounts(o.repoRoot, dbPath, o.accounts);
    try {
      copyFileSync(dbPath, template);
    } catch {
      // no cache, no harm
    }
  }
  const provisionMs = Date.now() - t0;
  let rosters: RunningBenchServer['rosters'];
  if (o.pep) {
    const r0 = Date.now();
    await createGatehouseRosters(o.repoRoot, dbPath, o.pep);
    rosters = { how: "roster items written through Gatehouse's own storage API (openStorage + roster.put) into the SQLite file before start", ms: Date.now() - r0 };
  }
  const config = [
    `# Written by scripts/bench/run.ts`,
    `dataDir: ${JSON.stringify(dataDir)}`,
    `hosts:`,
    `  - domain: ${DOMAIN}`,
    `    registration: open`,
    `tls:`,
    `  cert: ${JSON.stringify(o.cert.cert)}`,
    `  key: ${JSON.stringify(o.cert.key)}`,
    `listen:`,
    `  c2s: [{ host: "127.0.0.1", port: ${port} }]`,
    `  c2sDirectTls: []`,
    `  components: []`,
    `  s2s: []`,
    `  admin: []`,
    o.upload ? `  https: [{ host: "127.0.0.1", port: ${o.upload.httpsPort} }]` : `  https: []`,
    ...(o.upload
      ? [`http:`, `  maxConnections: 4000`, `  maxConnectionsPerIp: 4000`, `upload:`, `  maxFileSize: 20MiB`, `  quotaPerUser: 0`, `  maxOpenSlots: 10000`]
      : []),
    `c2s:`,
    `  requireEncryption: true`,
    `  maxConnectionsPerIp: 100000`,
    `  idlePingAfter: 1h`,
    `auth:`,
    `  scramIterations: 4096`,
    `  hashes: [SHA-1]`,
    `storage:`,
    `  type: sqlite`,
    `  path: ${JSON.stringify(dbPath)}`,
    `log:`,
    `  level: warn`,
    `  file: ${JSON.stringify(path.join(o.dir, 'gatehouse.log'))}`,
    `backups:`,
    `  schedule: "off"`,
    '',
  ].join('\n');
  const configFile = path.join(o.dir, 'gatehouse.yaml');
  writeFileSync(configFile, config);
  const log = path.join(o.dir, 'stdout.log');
  // BENCH_GATEHOUSE_NODE_ARGS: extra Node.js options for the server under test, e.g.
  // "--heapsnapshot-signal=SIGUSR2" to take heap snapshots while a scenario runs.
  const extra = (process.env.BENCH_GATEHOUSE_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const execArgv = [...extra, ...(o.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', o.cpuProfileDir] : [])];
  const child = launch(process.execPath, [...execArgv, path.join(o.repoRoot, 'dist/server/cli.js'), 'start', '--config', configFile], { cwd: o.dir, log });
  track(child);
  await waitForPort(port, child, 30_000, 'Gatehouse', log);
  const pid = child.pid!;
  return {
    kind: 'gatehouse',
    port,
    pid,
    dir: o.dir,
    provisioning:
      "SCRAM-SHA-1 verifiers written through Gatehouse's own storage API (openStorage + accounts.create) into the SQLite file before start; " +
      (cached ? 'this run copied the file made by an earlier run (cached in the temp directory)' : 'the file is cached in the temp directory for later runs'),
    provisionMs,
    openFilesLimit: openFilesLimit(pid),
    rosters,
    sample: () => procSample(pid),
    stop: async () => {
      await stopGroup(child, 10_000);
    },
  };
}

/** The PEP scenario's mutual rosters, through the storage layer of the build under test. */
async function createGatehouseRosters(root: string, dbPath: string, pep: NonNullable<StartOptions['pep']>): Promise<void> {
  const { openStorage } = (await import(pathToFileURL(path.join(root, 'dist/storage/datasource.js')).href)) as typeof import('../../storage/datasource.js');
  const storage = await openStorage({ type: 'sqlite', path: dbPath }, { migrate: true });
  try {
    const idOf = async (name: string): Promise<number> => {
      const a = await storage.accounts.get(name, DOMAIN);
      if (!a) throw new Error(`Gatehouse: account ${name} missing`);
      return a.id;
    };
    const both = (jid: string) => ({ jid, name: null, subscription: 'both' as const, ask: false, pendingIn: false, approved: false, groups: [] });
    const publisherId = await idOf(pep.publisher);
    const publisherJid = `${pep.publisher}@${DOMAIN}`;
    let next = 0;
    const one = async () => {
      while (next < pep.contacts.length) {
        const contact = pep.contacts[next++]!;
        await storage.roster.put(publisherId, both(`${contact}@${DOMAIN}`));
        await storage.roster.put(await idOf(contact), both(publisherJid));
      }
    };
    await Promise.all(Array.from({ length: 8 }, one));
  } finally {
    await storage.close();
  }
}

// ---- Gatehouse cluster nodes (the cluster scenario) ----

/** `storage.type` for a database URL. */
function storageTypeOf(dbUrl: string): 'postgres' | 'mysql' {
  if (/^postgres(ql)?:\/\//i.test(dbUrl)) return 'postgres';
  if (/^(mysql|mariadb):\/\//i.test(dbUrl)) return 'mysql';
  throw new Error('the cluster database must be a postgres:// or mysql:// URL (cluster mode refuses SQLite)');
}

/**
 * The benchmark accounts in a shared database, through the storage layer of the build under test
 * (migrations included): created where missing, their verifiers replaced where an earlier run left
 * other ones (the account cache in the temp directory may have been made afresh since).
 */
export async function provisionSharedAccounts(root: string, dbUrl: string, accounts: BenchAccount[]): Promise<number> {
  const { openStorage } = (await import(pathToFileURL(path.join(root, 'dist/storage/datasource.js')).href)) as typeof import('../../storage/datasource.js');
  const t0 = Date.now();
  const storage = await openStorage({ type: storageTypeOf(dbUrl), url: dbUrl }, { migrate: true });
  try {
    const now = new Date();
    let next = 0;
    const one = async () => {
      while (next < accounts.length) {
        const a = accounts[next++]!;
        const v = { hash: 'SHA-1' as const, salt: Buffer.from(a.salt, 'base64'), iterations: a.iterations, storedKey: Buffer.from(a.storedKey, 'base64'), serverKey: Buffer.from(a.serverKey, 'base64') };
        if (await storage.accounts.create(a.name, DOMAIN, [v], now)) continue;
        const existing = await storage.accounts.get(a.name, DOMAIN);
        if (!existing) throw new Error(`account ${a.name} could neither be created nor found`);
        const have = await storage.accounts.getVerifiers(existing.id);
        if (!have.some((h) => h.hash === 'SHA-1' && Buffer.compare(h.storedKey, v.storedKey) === 0)) await storage.accounts.setVerifiers(existing.id, [v]);
      }
    };
    await Promise.all(Array.from({ length: 8 }, one));
  } finally {
    await storage.close();
  }
  return Date.now() - t0;
}

export interface ClusterNodeOptions {
  dir: string;
  repoRoot: string;
  cert: CertFiles;
  dbUrl: string;
  nats: string;
  /** NATS subject prefix of this run's cluster. */
  prefix: string;
  node: string;
  /** Write a V8 CPU profile (node --cpu-prof) into this directory. */
  cpuProfileDir?: string;
  /** Announce this configuration's privacy policy before the start (once per run is enough). */
  announcePolicy?: boolean;
  /** `cluster.batchWindow` (e.g. "2ms"); absent: the default. */
  batchWindow?: string;
}

/** One `gatehouse start` process as a node of a cluster, configured as the single-server benchmark's Gatehouse is, apart from storage and `cluster`. */
const secretsOfRuns = new Map<string, Record<string, string>>();

/** The secret files of a cluster run (its prefix), made once. */
function runSecrets(prefix: string): Record<string, string> {
  let secrets = secretsOfRuns.get(prefix);
  if (!secrets) secretsOfRuns.set(prefix, (secrets = Object.fromEntries(['server-secret', 'muc-occupant-id.key'].map((f) => [f, randomBytes(32).toString('hex') + '\n']))));
  return secrets;
}

export async function startGatehouseNode(o: ClusterNodeOptions): Promise<RunningBenchServer> {
  const port = await freePort();
  const dataDir = path.join(o.dir, 'data');
  mkdirSync(dataDir, { recursive: true });
  // Every node of a cluster needs the same secret files (a node whose copies differ refuses to join):
  // random, the same for all nodes of this run.
  for (const [file, secret] of Object.entries(runSecrets(o.prefix))) writeFileSync(path.join(dataDir, file), secret, { mode: 0o600 });
  const config = [
    `# Written by scripts/bench/cluster.ts`,
    `dataDir: ${JSON.stringify(dataDir)}`,
    `hosts:`,
    `  - domain: ${DOMAIN}`,
    `tls:`,
    `  cert: ${JSON.stringify(o.cert.cert)}`,
    `  key: ${JSON.stringify(o.cert.key)}`,
    `listen:`,
    `  c2s: [{ host: "127.0.0.1", port: ${port} }]`,
    `  c2sDirectTls: []`,
    `  components: []`,
    `  s2s: []`,
    `  admin: []`,
    `  https: []`,
    `c2s:`,
    `  requireEncryption: true`,
    `  maxConnectionsPerIp: 100000`,
    `  idlePingAfter: 1h`,
    `auth:`,
    `  scramIterations: 4096`,
    `  hashes: [SHA-1]`,
    `storage:`,
    `  type: ${storageTypeOf(o.dbUrl)}`,
    `  url: ${JSON.stringify(o.dbUrl)}`,
    `log:`,
    `  level: warn`,
    `  file: ${JSON.stringify(path.join(o.dir, 'gatehouse.log'))}`,
    `backups:`,
    `  schedule: "off"`,
    `cluster:`,
    `  enabled: true`,
    `  node: ${o.node}`,
    `  prefix: ${o.prefix}`,
    `  nats: [${JSON.stringify(o.nats)}]`,
    ...(o.batchWindow === undefined ? [] : [`  batchWindow: ${JSON.stringify(o.batchWindow)}`]),
    '',
  ].join('\n');
  const configFile = path.join(o.dir, 'gatehouse.yaml');
  writeFileSync(configFile, config);
  const log = path.join(o.dir, 'stdout.log');
  // The shared database keeps the privacy policy in force from whatever ran on it before (another
  // domain, other modules): this configuration's policy is announced as a technical change, in
  // force at once (P22), as the cluster tests do. Both nodes have the same configuration.
  if (o.announcePolicy) {
    const today = new Date().toISOString().slice(0, 10);
    try {
      execFileSync(process.execPath, [path.join(o.repoRoot, 'dist/server/cli.js'), 'policy', 'announce', '--effective', today, '--technical', 'benchmark configuration', '--config', configFile], { cwd: o.dir, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    } catch (err) {
      const e = err as { stdout?: Buffer; stderr?: Buffer; message: string };
      // Already in force (an earlier run announced the same): fine.
      if (/nothing to announce/.test(`${e.stderr?.toString() ?? ''}${e.stdout?.toString() ?? ''}`)) return startNodeProcess(o, port, configFile, log);
      throw new Error(`gatehouse policy announce failed: ${(e.stderr?.toString() || e.stdout?.toString() || e.message).trim().split('\n').slice(-3).join(' ')}`);
    }
  }
  return startNodeProcess(o, port, configFile, log);
}

async function startNodeProcess(o: ClusterNodeOptions, port: number, configFile: string, log: string): Promise<RunningBenchServer> {
  const extra = (process.env.BENCH_GATEHOUSE_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const execArgv = [...extra, ...(o.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', o.cpuProfileDir] : [])];
  const child = launch(process.execPath, [...execArgv, path.join(o.repoRoot, 'dist/server/cli.js'), 'start', '--config', configFile], { cwd: o.dir, log });
  track(child);
  await waitForPort(port, child, 30_000, `Gatehouse node ${o.node}`, log);
  const pid = child.pid!;
  return {
    kind: 'gatehouse',
    port,
    pid,
    dir: o.dir,
    provisioning: 'accounts in the shared database (provisionSharedAccounts)',
    provisionMs: 0,
    openFilesLimit: openFilesLimit(pid),
    sample: () => procSample(pid),
    stop: async () => {
      await stopGroup(child, 10_000);
    },
  };
}

// ---- Prosody ----

function luaString(s: string): string {
  return JSON.stringify(s); // the strings written here are plain ASCII: JSON escaping is valid Lua
}

/** Prosody's datamanager file name encoding: everything but [a-zA-Z0-9] becomes %xx. */
function prosodyEncode(s: string): string {
  return s.replace(/[^a-zA-Z0-9]/g, (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0'));
}

async function startProsody(o: StartOptions): Promise<RunningBenchServer> {
  const port = await freePort();
  const dataDir = path.join(o.dir, 'data');
  const t0 = Date.now();
  const accountsDir = path.join(dataDir, prosodyEncode(DOMAIN), 'accounts');
  mkdirSync(accountsDir, { recursive: true });
  for (const a of o.accounts) {
    const file = [
      'return {',
      `\t["iteration_count"] = ${a.iterations};`,
      `\t["salt"] = ${luaString(Buffer.from(a.salt, 'base64').toString('latin1'))};`,
      `\t["server_key"] = ${luaString(Buffer.from(a.serverKey, 'base64').toString('hex'))};`,
      `\t["stored_key"] = ${luaString(Buffer.from(a.storedKey, 'base64').toString('hex'))};`,
      '};',
      '',
    ].join('\n');
    writeFileSync(path.join(accountsDir, `${prosodyEncode(a.name)}.dat`), file);
  }
  const provisionMs = Date.now() - t0;
  let rosters: RunningBenchServer['rosters'];
  if (o.pep) {
    const r0 = Date.now();
    const rosterDir = path.join(dataDir, prosodyEncode(DOMAIN), 'roster');
    mkdirSync(rosterDir, { recursive: true });
    const rosterFile = (contacts: string[]) =>
      ['return {', '\t[false] = {', '\t\t["pending"] = {};', '\t\t["version"] = 1;', '\t};']
        .concat(contacts.flatMap((c) => [`\t[${luaString(`${c}@${DOMAIN}`)}] = {`, '\t\t["groups"] = {};', '\t\t["subscription"] = "both";', '\t};']))
        .concat(['};', ''])
        .join('\n');
    writeFileSync(path.join(rosterDir, `${prosodyEncode(o.pep.publisher)}.dat`), rosterFile(o.pep.contacts));
    for (const c of o.pep.contacts) writeFileSync(path.join(rosterDir, `${prosodyEncode(c)}.dat`), rosterFile([o.pep.publisher]));
    rosters = { how: 'roster files written in Prosody\'s internal format (`data/bench%2elocal/roster/*.dat`) before start', ms: Date.now() - r0 };
  }
  mkdirSync(path.join(o.dir, 'certs'), { recursive: true });
  const logFile = path.join(o.dir, 'prosody.log');
  const config = `-- Written by scripts/bench/run.ts
daemonize = false
run_as_root = true
pidfile = ${luaString(path.join(o.dir, 'prosody.pid'))}
data_path = ${luaString(dataDir)}
certificates = ${luaString(path.join(o.dir, 'certs'))}
interfaces = { "127.0.0.1" }
c2s_ports = { ${port} }
c2s_direct_tls_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { ${o.upload ? o.upload.httpsPort : ''} }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "register"${o.pep ? '; "pep"' : ''} }${
    o.upload
      ? `
https_interfaces = { "127.0.0.1" }
https_ssl = { certificate = ${luaString(o.cert.cert)}; key = ${luaString(o.cert.key)}; }
http_file_share_size_limit = 20*1024*1024
http_file_share_daily_quota = 100*1024*1024*1024`
      : ''
  }
modules_disabled = { "s2s"; "s2s_auth_certs" }
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
default_iteration_count = 4096
allow_registration = true
-- no registration throttle: min_seconds_between_registrations and registration_throttle_max unset
network_settings = { tcp_backlog = 1024 }
-- no mod_limits: no traffic shaping
log = { { levels = { min = "warn" }, to = "file", filename = ${luaString(logFile)} } }
ssl = { certificate = ${luaString(o.cert.cert)}; key = ${luaString(o.cert.key)}; }

VirtualHost "${DOMAIN}"
  ssl = { certificate = ${luaString(o.cert.cert)}; key = ${luaString(o.cert.key)}; }
${o.upload ? `
Component "upload.${DOMAIN}" "http_file_share"
  ssl = { certificate = ${luaString(o.cert.cert)}; key = ${luaString(o.cert.key)}; }
` : ''}${o.muc ? `
Component "conference.${DOMAIN}" "muc"
  ssl = { certificate = ${luaString(o.cert.cert)}; key = ${luaString(o.cert.key)}; }
  restrict_room_creation = "local"
` : ''}`;
  const configFile = path.join(o.dir, 'prosody.cfg.lua');
  writeFileSync(configFile, config);
  const log = path.join(o.dir, 'stdout.log');
  const child = launch('prosody', ['-F', '--config', configFile], { cwd: o.dir, log });
  track(child);
  await waitForPort(port, child, 30_000, 'Prosody', log);
  const pid = child.pid!;
  return {
    kind: 'prosody',
    port,
    pid,
    dir: o.dir,
    provisioning: 'the same SCRAM-SHA-1 verifiers written as Prosody internal_hashed account files (`data/bench%2elocal/accounts/*.dat`: stored_key, server_key, salt, iteration_count) before start',
    provisionMs,
    openFilesLimit: openFilesLimit(pid),
    rosters,
    sample: () => procSample(pid),
    stop: async () => {
      await stopGroup(child, 10_000);
    },
  };
}

// ---- ejabberd ----

async function startEjabberd(o: StartOptions): Promise<RunningBenchServer> {
  const port = await freePort();
  const spool = path.join(o.dir, 'spool');
  const logs = path.join(o.dir, 'logs');
  mkdirSync(spool, { recursive: true });
  mkdirSync(logs, { recursive: true });
  // ejabberdctl switches to the 'ejabberd' user (open-files limit 1024): a copy with the install user emptied runs as we do.
  const ctl = path.join(o.dir, 'ejabberdctl');
  const original = readFileSync('/usr/sbin/ejabberdctl', 'utf8');
  if (!/^INSTALLUSER=.*$/m.test(original)) throw new Error('/usr/sbin/ejabberdctl has no INSTALLUSER line');
  writeFileSync(ctl, original.replace(/^INSTALLUSER=.*$/m, 'INSTALLUSER='));
  chmodSync(ctl, 0o755);
  if (existsSync('/etc/ejabberd/inetrc')) copyFileSync('/etc/ejabberd/inetrc', path.join(o.dir, 'inetrc'));
  writeFileSync(path.join(o.dir, 'ejabberdctl.cfg'), 'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"\n');
  const config = `# Written by scripts/bench/run.ts
loglevel: warning
log_rotate_count: 0
hosts:
  - ${DOMAIN}
certfiles:
  - ${JSON.stringify(o.cert.combined)}
listen:
  -
    port: ${port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    access: c2s
    starttls_required: true
    backlog: 1024
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
acl:
  loopback:
    ip:
      - 127.0.0.0/8
access_rules:
  c2s:
    allow: all
  register:
    allow: all
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
# no c2s_shaper, no shaper on the listener: no traffic limits
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 1000
registration_timeout: infinity
modules:
  mod_disco: {}
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_ping: {}
  mod_roster: {}
  mod_register:
    ip_access: all
    access: register
${o.pep ? '  mod_caps: {}\n  mod_pubsub:\n    plugins:\n      - flat\n      - pep\n' : ''}${o.muc ? `  mod_muc:\n    host: "conference.@HOST@"\n    access_create: all\n    max_users: ${Math.max(o.muc.maxOccupants, 200)}\n    max_users_presence: ${Math.max(o.muc.maxOccupants, 1000)}\n    default_room_options:\n      max_users: ${Math.max(o.muc.maxOccupants, 200)}\n` : ''}`;
  const configFile = path.join(o.dir, 'ejabberd.yml');
  writeFileSync(configFile, config);
  const node = `ghbench${process.pid}x${Date.now() % 100000}@localhost`;
  const common = ['--config-dir', o.dir, '--config', configFile, '--ctl-config', path.join(o.dir, 'ejabberdctl.cfg'), '--logs', logs, '--spool', spool, '--node', node];
  const log = path.join(o.dir, 'stdout.log');
  const child = launch(ctl, [...common, 'foreground'], { cwd: o.dir, log });
  track(child);
  await waitForPort(port, child, 60_000, 'ejabberd', log);
  // Wait until the node answers ejabberdctl, then import the accounts (XEP-0227) in one call.
  const t0 = Date.now();
  const xml = [`<?xml version='1.0' encoding='UTF-8'?>`, `<server-data xmlns='urn:xmpp:pie:0'>`, `<host jid='${DOMAIN}'>`];
  // ejabberd keeps SCRAM keys and salt base64-encoded, but 23.01's importer decodes them once
  // before storing (logins then fail in base64:decode): hence base64 of the base64 text.
  const b64twice = (b64: string) => Buffer.from(b64, 'latin1').toString('base64');
  const rosterOf = new Map<string, string[]>();
  if (o.pep) {
    rosterOf.set(o.pep.publisher, o.pep.contacts);
    for (const c of o.pep.contacts) rosterOf.set(c, [o.pep.publisher]);
  }
  for (const a of o.accounts) {
    const password = `scram:${b64twice(a.storedKey)},${b64twice(a.serverKey)},${b64twice(a.salt)},${a.iterations}`;
    const roster = rosterOf.get(a.name);
    if (!roster) xml.push(`<user name='${a.name}' password='${password}'/>`);
    else xml.push(`<user name='${a.name}' password='${password}'><query xmlns='jabber:iq:roster'>${roster.map((c) => `<item jid='${c}@${DOMAIN}' subscription='both'/>`).join('')}</query></user>`);
  }
  xml.push('</host>', '</server-data>', '');
  const importFile = path.join(o.dir, 'accounts.xml');
  writeFileSync(importFile, xml.join('\n'));
  const ctlRun = (args: string[], timeoutMs: number): string =>
    execFileSync(ctl, [...common, ...args], { cwd: o.dir, encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  let started = false;
  for (let i = 0; i < 30 && !started; i++) {
    try {
      ctlRun(['status'], 20_000);
      started = true;
    } catch {
      await delay(1000);
    }
  }
  if (!started) throw new Error(`ejabberd does not answer ejabberdctl; see ${logs}`);
  ctlRun(['import_piefxis', importFile], 600_000);
  const registered = ctlRun(['registered_users', DOMAIN], 60_000).split('\n').filter((l) => l.trim()).length;
  if (registered !== o.accounts.length) throw new Error(`ejabberd import: ${registered} accounts registered, expected ${o.accounts.length}`);
  const provisionMs = Date.now() - t0;
  // The import carried the PEP scenario's rosters with the accounts: one call, timed as a whole.
  const rosters = o.pep ? { how: 'roster items (subscription both) in the same XEP-0227 file as the accounts, imported with them by `ejabberdctl import_piefxis`; the time is that of the whole import', ms: provisionMs } : undefined;
  const pid = findDescendant(child.pid!, 'beam.smp');
  if (!pid) throw new Error('ejabberd: no beam.smp process found under ejabberdctl');
  return {
    kind: 'ejabberd',
    port,
    pid,
    dir: o.dir,
    provisioning:
      'the same SCRAM-SHA-1 verifiers imported in one `ejabberdctl import_piefxis` call (XEP-0227 file with `scram:` passwords) after start; ' +
      "23.01's importer decodes the base64 keys before storing them where ejabberd expects base64, so the file carries them base64-encoded twice",
    provisionMs,
    openFilesLimit: openFilesLimit(pid),
    rosters,
    sample: () => procSample(pid),
    stop: async () => {
      await stopGroup(child, 15_000, pid);
    },
  };
}

export function startBenchServer(kind: ServerKind, o: StartOptions): Promise<RunningBenchServer> {
  mkdirSync(o.dir, { recursive: true });
  switch (kind) {
    case 'gatehouse':
      return startGatehouse(o);
    case 'prosody':
      return startProsody(o);
    case 'ejabberd':
      return startEjabberd(o);
  }
}

/** True if the server's programs are installed. */
export function serverAvailable(kind: ServerKind): boolean {
  switch (kind) {
    case 'gatehouse':
      return true;
    case 'prosody':
      return existsSync('/usr/bin/prosody');
    case 'ejabberd':
      return existsSync('/usr/sbin/ejabberdctl');
  }
}

export function packageVersion(pkg: string): string | null {
  try {
    return execFileSync('dpkg-query', ['-W', '-f', '${Version}', pkg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || null;
  } catch {
    return null;
  }
}
