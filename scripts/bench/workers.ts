/** The load generator's worker processes (loadgen-worker.ts), driven over IPC by the scenarios. */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Histogram, type BenchAccount, type Command, type LoginResult, type PepRole, type Reply, type StatsResult } from './protocol.js';
import { DOMAIN } from './servers.js';

const here = path.dirname(fileURLToPath(import.meta.url));


export class WorkerPool {
  private readonly pending = new Map<number, { resolve: (r: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private nextId = 1;
  /** Account indices online, per worker. */
  online: number[][];

  private constructor(private readonly children: ChildProcess[]) {
    this.online = children.map(() => []);
    children.forEach((child) => {
      child.on('message', (msg: Reply) => {
        if (msg.type === 'ready') return;
        const p = this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.type === 'error') p.reject(new Error(`load generator: ${msg.message}`));
        else p.resolve(msg.result);
      });
      child.on('exit', (code, signal) => {
        for (const [id, p] of this.pending) {
          clearTimeout(p.timer);
          p.reject(new Error(`load generator worker exited (${code ?? signal})`));
          this.pending.delete(id);
        }
      });
    });
  }

  get size(): number {
    return this.children.length;
  }

  get pids(): number[] {
    return this.children.map((c) => c.pid!).filter(Boolean);
  }

  /** `n` workers; worker i connects to ports[i % ports.length] on 127.0.0.1 (several ports: a cluster's nodes). */
  static async start(n: number, ports: number[], ca: string, accounts: BenchAccount[]): Promise<WorkerPool> {
    const script = path.join(here, 'loadgen-worker.js');
    const children: ChildProcess[] = [];
    for (let i = 0; i < n; i++) {
      // BENCH_WORKER_PROFILE=dir: V8 CPU profiles of the load generator itself (to check it stays cheap).
      const prof = process.env.BENCH_WORKER_PROFILE ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_WORKER_PROFILE] : [];
      children.push(fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: ['--max-old-space-size=2048', ...prof] }));
    }
    const pool = new WorkerPool(children);
    await Promise.all(
      children.map(
        (child, i) =>
          new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error('load generator worker did not start')), 20_000);
            child.once('message', (m: Reply) => {
              clearTimeout(t);
              if (m.type === 'ready') resolve();
              else reject(new Error('unexpected first message from worker'));
            });
            child.send({ type: 'init', workerId: i, host: '127.0.0.1', port: ports[i % ports.length]!, domain: DOMAIN, ca, accounts });
          }),
      ),
    );
    return pool;
  }

  call<T>(worker: number, cmd: DistributiveOmit<Command, 'id'>, timeoutMs: number): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`load generator: ${cmd.type} did not finish within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (r: unknown) => void, reject, timer });
      this.children[worker]!.send({ ...cmd, id });
    });
  }

  /** Logs in the accounts, spread round-robin over the workers. */
  async login(accounts: number[], concurrency: number, pep?: PepRole): Promise<{ ok: number; failed: number; errors: string[]; latency: Histogram; pbkdf2: number; wallMs: number; workerCpuUs: number }> {
    const shares = this.children.map((_, w) => accounts.filter((_, i) => i % this.size === w));
    const per = Math.max(1, Math.ceil(concurrency / this.size));
    const timeoutMs = 60_000;
    const t0 = performance.now();
    const results = await Promise.all(shares.map((share, w) => this.call<LoginResult>(w, { type: 'login', accounts: share, concurrency: per, timeoutMs, pep }, timeoutMs * Math.ceil(share.length / per + 1) + 30_000)));
    const wallMs = performance.now() - t0;
    results.forEach((r, w) => this.online[w]!.push(...r.online));
    return {
      ok: results.reduce((s, r) => s + r.ok, 0),
      failed: results.reduce((s, r) => s + r.failed, 0),
      errors: results.flatMap((r) => r.errors).slice(0, 5),
      latency: Histogram.from(...results.map((r) => r.latency)),
      pbkdf2: results.reduce((s, r) => s + r.pbkdf2, 0),
      wallMs,
      workerCpuUs: results.reduce((s, r) => s + r.cpuUs, 0),
    };
  }

  /** Logs in the accounts on one worker (so on the node that worker is connected to). */
  async loginOn(worker: number, accounts: number[], concurrency: number): Promise<{ ok: number; failed: number; errors: string[] }> {
    const timeoutMs = 60_000;
    const r = await this.call<LoginResult>(worker, { type: 'login', accounts, concurrency, timeoutMs }, timeoutMs * Math.ceil(accounts.length / concurrency + 1) + 30_000);
    this.online[worker]!.push(...r.online);
    return { ok: r.ok, failed: r.failed, errors: r.errors.slice(0, 5) };
  }

  async logout(): Promise<void> {
    await Promise.all(this.children.map((_, w) => this.call(w, { type: 'logout', timeoutMs: 5000 }, 30_000)));
    this.online = this.children.map(() => []);
  }

  async stats(reset: boolean, extra: { windowEndUs?: number; phase?: number } = {}): Promise<StatsResult[]> {
    return Promise.all(this.children.map((_, w) => this.call<StatsResult>(w, { type: 'stats', reset, ...extra }, 30_000)));
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(async (child, w) => {
        if (child.exitCode !== null) return;
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        await this.call(w, { type: 'exit' }, 5000).catch(() => undefined);
        const timedOut = await Promise.race([exited.then(() => false), delay(5000).then(() => true)]);
        if (timedOut) child.kill('SIGKILL');
      }),
    );
  }

  kill(): void {
    for (const c of this.children) if (c.exitCode === null) c.kill('SIGKILL');
  }
}

export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

