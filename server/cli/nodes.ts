/**
 * `gatehouse start --nodes N`: N cluster nodes on one machine, as worker processes of Node's cluster
 * module sharing the listening ports (the primary accepts and hands connections round-robin), so
 * one machine uses its cores. Each worker is a whole node: its name is `cluster.node` with `-1`,
 * `-2`, ... appended, its log file (if any) gets the same suffix. Only node 1 opens the control
 * socket of the data directory; `gatehouse cluster status` asked there shows every node.
 * The primary forwards SIGHUP (reload) and SIGTERM/SIGINT (stop) to the workers and starts a
 * worker again when it dies (after a second; the cluster sees a restarted node).
 */
import cluster, { type Worker } from 'node:cluster';
import path from 'node:path';
import type { Config } from '../config/index.js';
import { UsageError } from './kit.js';

/** Set in a worker's environment: its number (1..N). */
export const NODE_INDEX_VARIABLE = 'GATEHOUSE_NODE_INDEX';

/** The worker this process is (1..N), or null when it is not a `--nodes` worker. */
export function workerIndex(): number | null {
  if (!cluster.isWorker) return null;
  const n = Number(process.env[NODE_INDEX_VARIABLE]);
  return Number.isInteger(n) && n > 0 ? n : null;
}

/** The node's configuration as a `--nodes` worker runs it. */
export function workerConfig(config: Config, index: number): Config {
  const node = `${config.cluster.node}-${index}`.slice(0, 64);
  const file = config.log.file;
  const logFile = file ? path.join(path.dirname(file), `${path.basename(file, path.extname(file))}-${index}${path.extname(file)}`) : null;
  return { ...config, cluster: { ...config.cluster, node }, log: { ...config.log, file: logFile } };
}

/** Parses `--nodes N` (null without it). */
export function nodesFlag(value: string | undefined, config: Config): number | null {
  if (value === undefined) return null;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new UsageError(`--nodes: expected a number of nodes from 1 to 256, got ${JSON.stringify(value)}`);
  if (!config.cluster.enabled) throw new UsageError('--nodes runs cluster nodes: set cluster.enabled (with storage.type mysql or postgres, and a NATS server with JetStream)');
  return n;
}

/** Runs the primary: forks the workers (node 1 first: it makes the self-signed certificate if needed) and supervises them. */
export async function runPrimary(nodes: number, argv: string[]): Promise<number> {
  const args = [...argv];
  const i = args.findIndex((a) => a === '--nodes' || a.startsWith('--nodes='));
  if (i >= 0) args.splice(i, args[i] === '--nodes' ? 2 : 1);
  cluster.setupPrimary({ args });
  const workers = new Map<number, Worker>();
  let stopping = false;
  const fork = (index: number): Promise<void> =>
    new Promise((resolve) => {
      const w = cluster.fork({ [NODE_INDEX_VARIABLE]: String(index) });
      workers.set(index, w);
      w.on('message', (m: unknown) => {
        if (m && typeof m === 'object' && (m as { gatehouse?: string }).gatehouse === 'started') resolve();
      });
      w.on('exit', (code, signal) => {
        resolve();
        if (workers.get(index) === w) workers.delete(index);
        if (stopping) {
          if (workers.size === 0) process.exit(0);
          return;
        }
        console.error(`node ${index} exited (${signal ?? code}); starting it again in a second`);
        setTimeout(() => {
          if (!stopping) void fork(index);
        }, 1000);
      });
    });
  // Before any fork: a signal while the nodes are still starting stops those already forked, and no more start.
  process.on('SIGHUP', () => {
    for (const w of workers.values()) w.process.kill('SIGHUP');
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    console.log(`received ${signal}, stopping ${workers.size} nodes`);
    if (workers.size === 0) process.exit(0);
    for (const w of workers.values()) w.process.kill('SIGTERM');
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  for (let n = 1; n <= nodes && !stopping; n++) await fork(n);
  if (!stopping) console.log(`${nodes} nodes running (pids ${[...workers.values()].map((w) => w.process.pid).join(', ')})`);
  return new Promise<number>(() => {});
}

/** Tells the primary this worker listens (it then starts the next). */
export function reportStarted(): void {
  process.send?.({ gatehouse: 'started' });
}
