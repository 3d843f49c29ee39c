/**
 * Routing a stream management journal again (sm-journal.ts): the records of a dead node's run, of
 * this node's previous runs at its start, or of this node's run before it was fenced (fencing.ts).
 *
 * Until done: a pass that fails (NATS away, the database refusing an offline message) is tried
 * again after a pause that doubles from half a second to half a minute, for as long as the records
 * are kept (the journal's maximum age). Records go only once routed: after each batch, up to the
 * last one routed, so a failure in the middle leaves the rest for the next pass and routes nothing
 * twice. A unit is routed by one node at a time (its claim in the `P-nodes` bucket); a claim of a
 * node that died passes to whichever node asks next, and the survivor that takes a dead node's
 * lease takes over the claims it held (adopt).
 */
import type { Logger } from '../../shared/logger.js';
import type { NodeLeases } from './fencing.js';
import type { JournalRecord, JournalUnit, SmJournal } from './sm-journal.js';

const BATCH = 200;
const FIRST_PAUSE_MS = 500;
const MAX_PAUSE_MS = 30_000;

/** Routes one record again; throws when it could not be routed or stored (tried again later). */
export type RouteAgain = (record: JournalRecord) => Promise<void>;

export class JournalRecovery {
  /** Units being routed (or waiting for their next pass) here. */
  private readonly running = new Set<string>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly journal: SmJournal,
    private readonly leases: NodeLeases,
    private readonly route: RouteAgain,
    /** Whether a node is alive (this one, or a peer heard lately): its claims stand. */
    private readonly alive: (node: string) => boolean,
    private readonly log: Logger,
  ) {}

  /** Routes the units of `node` whose run `epochs` accepts; resolves once each is routed or waits for its retry. */
  async recoverRuns(node: string, epochs: (epoch: string) => boolean): Promise<void> {
    let units: JournalUnit[];
    try {
      units = (await this.journal.units(node)).filter((u) => epochs(u.epoch));
    } catch (err) {
      this.log.warn('cluster: cannot list a stream management journal, trying again', { peer: node, error: message(err) });
      this.later(() => void this.recoverRuns(node, epochs), FIRST_PAUSE_MS);
      return;
    }
    await Promise.all(units.map((u) => this.recover(u)));
  }

  /** Routes the records of `unit` again, in passes until none is left. */
  recover(unit: JournalUnit, pause = FIRST_PAUSE_MS): Promise<void> {
    if (this.stopped || this.running.has(unit.name)) return Promise.resolve();
    this.running.add(unit.name);
    return this.pass(unit).then(
      (routed) => {
        if (routed === 'busy') {
          // Another living node routes it: it finishes, or its claim passes here once it died.
          this.later(() => void this.recover(unit, Math.min(pause * 2, MAX_PAUSE_MS)), pause, unit.name);
          return;
        }
        this.running.delete(unit.name);
        if (routed > 0) this.log.info('cluster: unacknowledged messages of a stream management journal routed again', { unit: unit.name, messages: routed });
      },
      (err: unknown) => {
        this.log.warn('cluster: routing a stream management journal again failed, trying again', { unit: unit.name, retryInMs: pause, error: message(err) });
        this.later(() => void this.recover(unit, Math.min(pause * 2, MAX_PAUSE_MS)), pause, unit.name);
      },
    );
  }

  /** The claims a dead node held: this node goes on with them. */
  async adopt(dead: string): Promise<void> {
    const units = await this.leases.claimsOf(dead).catch(() => []);
    for (const name of units) {
      const dot = name.indexOf('.');
      if (dot > 0) void this.recover(this.journal.unit(name.slice(0, dot), name.slice(dot + 1)));
    }
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private later(fn: () => void, ms: number, unit?: string): void {
    if (this.stopped) {
      if (unit) this.running.delete(unit);
      return;
    }
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (unit) this.running.delete(unit);
      fn();
    }, ms);
    t.unref();
    this.timers.add(t);
  }

  /** One pass: claims the unit, routes batch after batch, purging what was routed. */
  private async pass(unit: JournalUnit): Promise<number | 'busy'> {
    if (!(await this.leases.claimJournal(unit.name, this.alive))) return 'busy';
    let routed = 0;
    try {
      for (;;) {
        const batch = await this.journal.read(unit.filter, BATCH);
        if (batch.length === 0) return routed;
        let last = 0;
        try {
          for (const { seq, record } of batch) {
            if (record) await this.route(record);
            last = seq;
            if (record) routed++;
          }
        } finally {
          if (last > 0) await this.journal.purgeUpTo(unit.filter, last);
        }
      }
    } finally {
      await this.leases.releaseJournal(unit.name).catch(() => {});
    }
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
