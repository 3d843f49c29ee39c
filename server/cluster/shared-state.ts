/**
 * What the nodes keep together in JetStream key-value buckets (P = cluster.prefix):
 * - `P-locks`: one key per once-per-cluster task (the retention sweep, backups, the transports),
 *   held by the node that created it and renewed at each heartbeat; the bucket's TTL
 *   (cluster.failureTimeout) lets another node take a dead holder's task.
 * - `P-counters`: sliding-window counters (failed logins, registrations per address), the times
 *   of the events within the window under one key, updated with compare-and-set.
 * When NATS cannot be reached, counters fall back to this node's own count and no lock is taken.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { Logger } from '../../shared/logger.js';
import type { ClusterConfig } from './types.js';

/** Most event times one counter keeps (a count above it is reported as this). */
const MAX_EVENTS = 1000;
const CAS_ATTEMPTS = 8;

interface Task {
  held: boolean;
  revision: number;
  holder: string | null;
}

function keyOf(kind: string, key: string): string {
  return `${kind.replace(/[^A-Za-z0-9_-]/g, '_')}.${Buffer.from(key, 'utf8').toString('base64url') || '_'}`;
}

export class SharedState {
  private locks: KV | null = null;
  private counters: KV | null = null;
  private readonly tasksWanted = new Map<string, Task>();
  private readonly localCounts = new Map<string, number[]>();
  private stopped = false;
  private renewing = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly config: ClusterConfig,
    private readonly node: string,
    private readonly log: Logger,
  ) {}

  async open(): Promise<void> {
    try {
      await (await jetstreamManager(this.nc)).getAccountInfo();
    } catch (err) {
      throw new Error(`cluster: NATS has no JetStream (start nats-server with -js): ${err instanceof Error ? err.message : String(err)}`);
    }
    const kvm = new Kvm(this.nc);
    try {
      this.locks = await kvm.create(`${this.config.prefix}-locks`, { ttl: Math.max(1000, this.config.failureTimeout), history: 1 });
      this.counters = await kvm.create(`${this.config.prefix}-counters`, { ttl: 24 * 3600_000, history: 1 });
    } catch (err) {
      throw new Error(`cluster: cannot open the key-value buckets: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  stop(): void {
    this.stopped = true;
    const held = [...this.tasksWanted.entries()].filter(([, t]) => t.held);
    for (const [name] of held) void this.locks?.delete(name).catch(() => {});
  }

  /** Whether this node runs the task now; the first call makes this node compete for it. */
  holds(task: string): boolean {
    let t = this.tasksWanted.get(task);
    if (!t) {
      this.tasksWanted.set(task, (t = { held: false, revision: 0, holder: null }));
      void this.renew();
    }
    return t.held;
  }

  tasks(): { name: string; holder: string | null }[] {
    return [...this.tasksWanted.entries()].map(([name, t]) => ({ name, holder: t.held ? this.node : t.holder }));
  }

  /** At each heartbeat: renew the tasks held, try to take the others. */
  tick(): void {
    void this.renew();
  }

  private async renew(): Promise<void> {
    if (this.renewing || this.stopped || !this.locks) return;
    this.renewing = true;
    try {
      for (const [name, t] of this.tasksWanted) {
        try {
          if (t.held) {
            t.revision = await this.locks.update(name, this.node, t.revision);
            continue;
          }
          t.revision = await this.locks.create(name, this.node);
          t.held = true;
          t.holder = this.node;
          this.log.info('cluster: running a once-per-cluster task here', { task: name });
        } catch {
          if (t.held) this.log.warn('cluster: lost a once-per-cluster task', { task: name });
          t.held = false;
          t.holder = (await this.locks.get(name).catch(() => null))?.string() || null;
        }
      }
    } finally {
      this.renewing = false;
    }
  }

  /** The events of `kind`/`key` within the window, after adding one when `add`. */
  async count(kind: string, key: string, windowMs: number, add: boolean): Promise<number> {
    const k = keyOf(kind, key);
    const now = Date.now();
    const fresh = (times: number[]) => times.filter((t) => now - t < windowMs);
    if (this.counters && !this.nc.isClosed()) {
      try {
        for (let i = 0; i < CAS_ATTEMPTS; i++) {
          const entry = await this.counters.get(k);
          const times = entry && entry.value.length > 0 ? fresh(entry.json<number[]>()) : [];
          if (!add) return times.length;
          times.push(now);
          const value = JSON.stringify(times.slice(-MAX_EVENTS));
          try {
            if (entry) await this.counters.update(k, value, entry.revision);
            else await this.counters.create(k, value);
            return times.length;
          } catch {
            // Another node counted meanwhile: read again.
          }
        }
      } catch (err) {
        this.log.warn('cluster: shared counter not reachable, counting on this node', { error: err instanceof Error ? err.message : String(err) });
      }
    }
    const times = fresh(this.localCounts.get(k) ?? []);
    if (add) times.push(now);
    this.localCounts.set(k, times.slice(-MAX_EVENTS));
    return times.length;
  }
}
