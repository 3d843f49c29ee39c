/**
 * Stream management's journal (XEP-0198) in a cluster: the messages a node wrote to a session with
 * stream management and the client has not acknowledged yet, kept in a JetStream stream
 * (`<prefix>-sm`, subjects `<prefix>.smj.NODE.EPOCH.KEY`, file storage, at most the resumption
 * timeout plus a margin old), so that a node killed with SIGKILL loses none of them: the survivor
 * that took the dead node's lease (fencing.ts) routes its run's records again as stream management
 * does for a session that ends (another resource, or offline storage: journal-recovery.ts), and a
 * node restarting under the same name does so for its previous runs. The run (EPOCH) in the subject
 * keeps a run's records apart from those of the same node's next run (a restart, or a node that
 * was declared dead and joined again). An acknowledgement purges what it covers.
 * Cost: one JetStream publish (awaited before the node confirms a delivery from another node) per
 * message to a session with stream management, one purge per acknowledgement.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { Logger } from '../../shared/logger.js';
import type { StreamManagementJournal, TakeOverAnswer, TakeOverRequest } from '../core/cluster.js';
import { decode, encode, text } from './protocol.js';

export interface JournalRecord {
  key: string;
  data: string;
  at: string;
}

/** The records of one run of a node (or, from the version before runs were in the subject, one session's). */
export interface JournalUnit {
  /** `NODE.EPOCH`: names the unit in claims. */
  name: string;
  epoch: string;
  filter: string;
}

const MARGIN_MS = 60_000;

export class SmJournal implements StreamManagementJournal {
  private js: JetStreamClient | null = null;
  private jsm: JetStreamManager | null = null;
  private readonly stream: string;
  private latest: Promise<unknown> | null = null;
  private writing = 0;
  private lastWarned = 0;
  /** The purge each key waits for (the latest acknowledgement, or everything), and the keys being purged now. */
  private readonly wantedPurge = new Map<string, Promise<number> | 'all'>();
  private readonly purging = new Set<string>();
  private takeOverHandler: ((request: TakeOverRequest) => Promise<TakeOverAnswer | null>) | null = null;
  /**
   * This node was declared dead by the others (fencing.ts), who route its journal: a session ending
   * now must route again only what the journal does not hold, and keep its records.
   */
  fenced = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly prefix: string,
    readonly node: string,
    private epoch: string,
    private readonly maxAgeMs: number,
    private readonly log: Logger,
  ) {
    this.stream = `${prefix}-sm`;
  }

  private subject(key: string): string {
    return `${this.prefix}.smj.${this.node}.${this.epoch}.${key}`;
  }

  /** A new run of this node (after being fenced): its records go apart from the previous run's. */
  setEpoch(epoch: string): void {
    this.epoch = epoch;
  }

  async open(): Promise<void> {
    this.jsm = await jetstreamManager(this.nc);
    this.js = jetstream(this.nc);
    const config = { name: this.stream, subjects: [`${this.prefix}.smj.>`], storage: StorageType.File, max_age: (this.maxAgeMs + MARGIN_MS) * 1_000_000 };
    try {
      await this.jsm.streams.add(config);
    } catch {
      await this.jsm.streams.update(this.stream, { subjects: config.subjects, max_age: config.max_age });
    }
    this.nc.subscribe(`${this.prefix}.node.${this.node}.sm-takeover`, {
      callback: (err, msg) => {
        if (err) return;
        const handler = this.takeOverHandler;
        const answer = handler ? handler(decode<TakeOverRequest>(msg.data)) : Promise.resolve(null);
        void answer.then(
          (a) => msg.respond(encode({ answer: a })),
          () => msg.respond(encode({ answer: null })),
        );
      },
    });
    this.nc.subscribe(`${this.prefix}.node.${this.node}.sm-released`, {
      callback: (err, msg) => {
        if (!err) this.discard(decode<{ key: string }>(msg.data).key);
      },
    });
  }

  record(key: string, data: string, at: Date): Promise<number> {
    if (!this.js) return Promise.resolve(0);
    this.writing++;
    const p = this.js.publish(this.subject(key), encode({ key, data, at: at.toISOString() } satisfies JournalRecord)).then(
      (ack) => ack.seq,
      (err) => {
        // Once a minute at most: NATS away fails every write.
        const now = Date.now();
        if (now - this.lastWarned > 60_000) {
          this.lastWarned = now;
          this.log.warn('cluster: a stream management journal write failed', { error: err instanceof Error ? err.message : String(err) });
        }
        return 0;
      },
    );
    this.latest = p;
    void p.finally(() => this.writing--);
    return p;
  }

  stored(): Promise<void> | null {
    if (this.writing === 0 || !this.latest) return null;
    return this.latest.then(() => undefined);
  }

  acknowledged(key: string, upTo: Promise<number>): void {
    this.purge(key, upTo);
  }

  discard(key: string): void {
    this.purge(key, 'all');
  }

  /**
   * Purges run one at a time per key; acknowledgements arriving meanwhile are folded into the next
   * purge (only the latest counts), so a busy session costs one purge per round trip, not per <a/>.
   */
  private purge(key: string, upTo: Promise<number> | 'all'): void {
    const wanted = this.wantedPurge.get(key);
    if (wanted !== 'all') this.wantedPurge.set(key, upTo);
    if (this.purging.has(key)) return;
    this.purging.add(key);
    void (async () => {
      try {
        for (let next = this.wantedPurge.get(key); next !== undefined; next = this.wantedPurge.get(key)) {
          this.wantedPurge.delete(key);
          try {
            if (next === 'all') {
              await this.latest?.catch(() => {});
              await this.jsm?.streams.purge(this.stream, { filter: this.subject(key) });
            } else {
              const seq = await next;
              if (seq > 0) await this.jsm?.streams.purge(this.stream, { filter: this.subject(key), seq: seq + 1 });
            }
          } catch (err) {
            this.log.debug('cluster: a stream management journal purge failed', { error: err instanceof Error ? err.message : String(err) });
          }
        }
      } finally {
        this.purging.delete(key);
      }
    })();
  }

  async takeOver(node: string, request: TakeOverRequest): Promise<TakeOverAnswer | null> {
    try {
      const reply = await this.nc.request(`${this.prefix}.node.${node}.sm-takeover`, encode(request), { timeout: 5000 });
      return decode<{ answer: TakeOverAnswer | null }>(reply.data).answer;
    } catch {
      return null;
    }
  }

  serveTakeOver(handler: (request: TakeOverRequest) => Promise<TakeOverAnswer | null>): void {
    this.takeOverHandler = handler;
  }

  released(node: string, key: string): void {
    const stored = this.stored() ?? Promise.resolve();
    void stored.then(() => {
      if (!this.nc.isClosed()) this.nc.publish(`${this.prefix}.node.${node}.sm-released`, encode({ key }));
    });
  }

  /** The units of `node` that hold records now. */
  async units(node: string): Promise<JournalUnit[]> {
    const jsm = this.jsm;
    if (!jsm) return [];
    const base = `${this.prefix}.smj.${node}.`;
    const info = await jsm.streams.info(this.stream, { subjects_filter: `${base}>` });
    const units = new Map<string, JournalUnit>();
    for (const subject of Object.keys(info.state.subjects ?? {})) {
      const rest = subject.slice(base.length);
      const dot = rest.indexOf('.');
      const epoch = dot < 0 ? rest : rest.slice(0, dot);
      if (!units.has(epoch)) units.set(epoch, { name: `${node}.${epoch}`, epoch, filter: dot < 0 ? subject : `${base}${epoch}.>` });
    }
    return [...units.values()];
  }

  /** The unit of one run of `node` (which may hold no records). */
  unit(node: string, epoch: string): JournalUnit {
    return { name: `${node}.${epoch}`, epoch, filter: `${this.prefix}.smj.${node}.${epoch}.>` };
  }

  /** The oldest records (at most `max`) under `filter`, with their stream sequence. */
  async read(filter: string, max: number): Promise<{ seq: number; record: JournalRecord | null }[]> {
    const js = this.js;
    if (!js) return [];
    const consumer = await js.consumers.get(this.stream, { filter_subjects: filter });
    try {
      const pending = (await consumer.info()).num_pending;
      if (pending === 0) return [];
      const out: { seq: number; record: JournalRecord | null }[] = [];
      const batch = await consumer.fetch({ max_messages: Math.min(pending, max), expires: 2000 });
      for await (const m of batch) {
        let record: JournalRecord | null = null;
        try {
          record = JSON.parse(text(m.data)) as JournalRecord;
        } catch {
          // A record that does not parse is skipped (and purged with the others).
        }
        out.push({ seq: m.seq, record });
      }
      return out;
    } finally {
      await consumer.delete().catch(() => {});
    }
  }

  /** Removes the records under `filter` up to and including sequence `seq` (those routed again). */
  async purgeUpTo(filter: string, seq: number): Promise<void> {
    await this.jsm?.streams.purge(this.stream, { filter, seq: seq + 1 });
  }
}
