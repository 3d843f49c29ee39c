/**
 * Stream management's journal (XEP-0198) in a cluster: the messages a node wrote to a session with
 * stream management and the client has not acknowledged yet, kept in a JetStream stream
 * (`<prefix>-sm`, subjects `<prefix>.smj.NODE.KEY`, file storage, at most the resumption timeout
 * plus a margin old), so that a node killed with SIGKILL loses none of them: the node chosen among
 * the survivors reads the dead node's records and routes them again as stream management does for
 * a session that ends (another resource, or offline storage), and a node restarting under the same
 * name does so for its previous run. An acknowledgement purges what it covers.
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

  constructor(
    private readonly nc: NatsConnection,
    private readonly prefix: string,
    readonly node: string,
    private readonly maxAgeMs: number,
    private readonly log: Logger,
  ) {
    this.stream = `${prefix}-sm`;
  }

  private subject(node: string, key: string): string {
    return `${this.prefix}.smj.${node}.${key}`;
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
    const p = this.js.publish(this.subject(this.node, key), encode({ key, data, at: at.toISOString() } satisfies JournalRecord)).then(
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
              await this.jsm?.streams.purge(this.stream, { filter: this.subject(this.node, key) });
            } else {
              const seq = await next;
              if (seq > 0) await this.jsm?.streams.purge(this.stream, { filter: this.subject(this.node, key), seq: seq + 1 });
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

  /** Reads and removes a node's records (a dead node, or this node's previous run), oldest first. */
  async readNode(node: string): Promise<JournalRecord[]> {
    const js = this.js;
    const jsm = this.jsm;
    if (!js || !jsm) return [];
    const filter = `${this.prefix}.smj.${node}.>`;
    const consumer = await js.consumers.get(this.stream, { filter_subjects: filter });
    const records: JournalRecord[] = [];
    let pending = (await consumer.info()).num_pending;
    while (pending > 0) {
      const batch = await consumer.fetch({ max_messages: Math.min(pending, 500), expires: 2000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        try {
          records.push(JSON.parse(text(m.data)) as JournalRecord);
        } catch {
          // A record that does not parse is skipped.
        }
      }
      if (got === 0) break;
      pending -= got;
    }
    await consumer.delete().catch(() => {});
    return records;
  }

  /** Removes a node's records once they were routed again. */
  async purgeNode(node: string): Promise<void> {
    await this.jsm?.streams.purge(this.stream, { filter: `${this.prefix}.smj.${node}.>` });
  }
}
