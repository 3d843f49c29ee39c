/**
 * Fencing: a node is dead only once the cluster has taken its lease, and a node that finds its
 * lease taken knows the others ended its sessions (docs/cluster.md, "Declared dead while alive").
 *
 * Each node keeps a lease, the key `lease.NODE` of the JetStream key-value bucket `P-nodes`
 * (no TTL: a NATS restart expires nothing), renewed with compare-and-set at each heartbeat; its
 * heartbeat tells the revision. A node that has not heard another for `failureTimeout` declares it
 * dead only after it has marked that lease dead with compare-and-set on the revision of the last
 * heartbeat it heard: a node whose heartbeats were late but that renewed its lease meanwhile is
 * alive, and of several survivors exactly one wins (it routes the dead node's stream management
 * journal). What that run still sends afterwards is ignored: it comes back as a new run. The node itself learns it was declared dead at its next renewal (cut off from NATS,
 * paused by the system or a debugger): it then closes its client streams and joins again as a new
 * run (fence() in node.ts). The others can only have taken its lease after hearing no heartbeat of
 * it for `failureTimeout`: while its heartbeats go out at least that often it trusts its lease;
 * after a longer gap (it was paused, or NATS was away) it confirms no delivery until a renewal sent
 * after the gap succeeded (slow renewals alone do not matter: its heartbeats went on).
 *
 * The same bucket holds the claims on journals being routed again (`journal.UNIT`, the node doing
 * it), so that two nodes never route the same records, and a claim of a node that died passes to
 * another one.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import type { Logger } from '../../shared/logger.js';

interface LeaseValue {
  epoch: string;
  state: 'alive' | 'dead';
  /** The node that declared it dead. */
  by?: string;
}

/** What a node that stopped hearing another learns from its lease. */
export type Verdict =
  | { dead: true; /** whether this node routes its journal (it took the lease); null: a node without a lease, decided as before fencing */ recover: boolean | null }
  | { dead: false; /** renewed after the last heartbeat heard: alive; or the bucket cannot be read */ revision: number | null };

export type RenewResult = 'renewed' | 'fenced' | 'failed';

const encoder = new TextEncoder();

function parse(data: Uint8Array): LeaseValue | null {
  try {
    const v = JSON.parse(new TextDecoder().decode(data)) as LeaseValue;
    return typeof v.epoch === 'string' ? v : null;
  } catch {
    return null;
  }
}

export class NodeLeases {
  private kv: KV | null = null;
  private revision = 0;
  /** When this node last sent a heartbeat while connected, and since when it doubts its lease (0: it does not). */
  private beatAt = Date.now();
  private doubtSince = 0;
  private renewing: Promise<RenewResult> | null = null;
  /** Journal claims held here (unit → revision). */
  private readonly claims = new Map<string, number>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly prefix: string,
    private readonly node: string,
    private epoch: string,
    private readonly failureTimeout: number,
    private readonly log: Logger,
  ) {}

  private get key(): string {
    return `lease.${this.node}`;
  }

  private value(state: LeaseValue['state'], by?: string, epoch = this.epoch): Uint8Array {
    return encoder.encode(JSON.stringify({ epoch, state, by } satisfies LeaseValue));
  }

  async open(): Promise<void> {
    try {
      this.kv = await new Kvm(this.nc).create(`${this.prefix}-nodes`, { history: 1 });
    } catch (err) {
      throw new Error(`cluster: cannot open the key-value bucket ${this.prefix}-nodes: ${err instanceof Error ? err.message : String(err)}`);
    }
    await this.take();
  }

  /** This run's lease (a new run takes its name's lease whatever it held). */
  private async take(): Promise<void> {
    if (!this.kv) return;
    const started = Date.now();
    this.revision = await this.kv.put(this.key, this.value('alive'));
    this.renewed(started);
  }

  private renewed(started: number): void {
    if (this.doubtSince !== 0 && started >= this.doubtSince) this.doubtSince = 0;
  }

  /** A heartbeat went out (NATS connected): after a gap of failureTimeout the lease is in doubt. */
  beat(): void {
    const now = Date.now();
    if (now - this.beatAt >= this.failureTimeout && this.doubtSince === 0) this.doubtSince = now;
    this.beatAt = now;
  }

  /** A renewal is on its way. */
  get busy(): boolean {
    return this.renewing !== null;
  }

  /** This run as a journal claim names its holder. */
  get holder(): string {
    return `${this.node}/${this.epoch}`;
  }

  /** The revision the heartbeat tells (0 while this node holds no lease). */
  get held(): number {
    return this.revision;
  }

  /** Whether no other node can have taken this node's lease yet. */
  trusted(): boolean {
    return this.doubtSince === 0 && Date.now() - this.beatAt < this.failureTimeout;
  }

  /**
   * Renews the lease; 'fenced' when another node marked it dead (or a new run took it). One at a
   * time, unless `fresh` (NATS is back: a renewal sent before may wait for its timeout).
   */
  renew(fresh = false): Promise<RenewResult> {
    if (this.renewing && !fresh) return this.renewing;
    const kv = this.kv;
    if (!kv || this.nc.isClosed()) return Promise.resolve('failed');
    const started = Date.now();
    const run = (async (): Promise<RenewResult> => {
      try {
        this.revision = await kv.update(this.key, this.value('alive'), this.revision);
        this.renewed(started);
        return 'renewed';
      } catch {
        // Another revision, or NATS away: which one?
        const entry = await kv.get(this.key).catch(() => undefined);
        if (entry === undefined) return 'failed';
        const v = entry && entry.operation === 'PUT' ? parse(entry.value) : null;
        if (v && v.epoch === this.epoch && v.state === 'alive') {
          // Ours (an update whose reply was lost went through): renewed with that revision next time.
          this.revision = entry!.revision;
          return 'failed';
        }
        return 'fenced';
      }
    })();
    this.renewing = run;
    void run.finally(() => {
      if (this.renewing === run) this.renewing = null;
    });
    return run;
  }

  /** After being fenced: the new run's lease. */
  async rejoin(epoch: string): Promise<void> {
    this.epoch = epoch;
    this.claims.clear();
    await this.take();
  }

  /**
   * `peer` (run `epoch`) was not heard for failureTimeout; `heard` is the lease revision of its last
   * heartbeat (undefined: a node before fencing, which has no lease).
   */
  async claim(peer: string, epoch: string, heard: number | undefined): Promise<Verdict> {
    const kv = this.kv;
    if (!kv) return { dead: false, revision: null };
    const key = `lease.${peer}`;
    let entry;
    try {
      entry = await kv.get(key);
    } catch {
      return { dead: false, revision: null };
    }
    const v = entry && entry.operation === 'PUT' ? parse(entry.value) : null;
    // No lease (a node of the version before fencing), or a new run took it (that run routes the journal at its start).
    if (heard === undefined) return { dead: true, recover: null };
    if (!entry || !v) return { dead: true, recover: null };
    if (v.epoch !== epoch) return { dead: true, recover: false };
    if (v.state === 'dead') return { dead: true, recover: v.by === this.node && !this.nc.isClosed() };
    if (entry.revision !== heard) return { dead: false, revision: entry.revision };
    try {
      await kv.update(key, this.value('dead', this.node, epoch), entry.revision);
      this.log.info('cluster: took the lease of a silent node', { peer });
      return { dead: true, recover: true };
    } catch {
      // Renewed just now, or another node took it: read once more.
      const again = await kv.get(key).catch(() => null);
      const w = again && again.operation === 'PUT' ? parse(again.value) : null;
      if (w && w.epoch === epoch && w.state === 'dead') return { dead: true, recover: w.by === this.node };
      return { dead: false, revision: again?.revision ?? null };
    }
  }

  /**
   * Claims the routing of a journal unit: true when this node may route it now (nobody does, or the
   * run that did, `NODE/EPOCH`, is not `alive`).
   */
  async claimJournal(unit: string, alive: (node: string) => boolean): Promise<boolean> {
    const kv = this.kv;
    if (!kv) return true;
    const key = `journal.${unit}`;
    try {
      this.claims.set(unit, await kv.create(key, encoder.encode(this.holder)));
      return true;
    } catch {
      // Held (or being taken): by whom?
    }
    const entry = await kv.get(key);
    if (!entry || entry.operation !== 'PUT') return false;
    const holder = entry.string();
    if (holder !== this.holder && alive(holder)) return false;
    try {
      this.claims.set(unit, await kv.update(key, encoder.encode(this.holder), entry.revision));
      return true;
    } catch {
      return false;
    }
  }

  async releaseJournal(unit: string): Promise<void> {
    if (!this.claims.delete(unit)) return;
    await this.kv?.delete(`journal.${unit}`);
  }

  /** The journal units whose routing `holder` (`NODE/EPOCH`) had claimed. */
  async claimsOf(holder: string): Promise<string[]> {
    const kv = this.kv;
    if (!kv) return [];
    const out: string[] = [];
    for await (const key of await kv.keys('journal.>')) {
      const entry = await kv.get(key).catch(() => null);
      if (entry && entry.operation === 'PUT' && entry.string() === holder) out.push(key.slice('journal.'.length));
    }
    return out;
  }
}
