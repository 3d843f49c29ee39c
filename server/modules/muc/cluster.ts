/**
 * The chat service in cluster mode (docs/cluster.md, "Group chat"): each room is run by one node,
 * `ownerOf('muc', room JID)` among the living nodes. A stanza to a room or an occupant JID that
 * reaches another node is forwarded to the owner; the room's sends to occupants on other nodes
 * cross like any stanza to a full JID. Only the owner keeps a room in memory.
 *
 * When the living nodes change, a node drops the rooms it no longer owns: occupied ones end for
 * their occupants with status 332 (they join again and reach the new owner), and it loads the
 * persistent rooms it now owns from the database. A node stopping cleanly does the same for all its
 * rooms before the others hear it leave; after a crash the new owner has the stored configuration
 * and affiliations but no occupants (XEP-0410 self-ping tells them to join again). History is
 * memory only: it does not move with a room.
 *
 * A stanza handed to the owner waits for its confirmation. Without one (the owner died before the
 * others noticed, or is cut off) it is not lost: once the owner changes (failureTimeout later the
 * room moves) it goes to the room's new node, as if sent then; if the owner stays the same and
 * still does not confirm a second try, the sender gets `recipient-unavailable` (RFC 6120 8.3.3.13,
 * type wait: try again later).
 *
 * On a single node none of this exists (the module makes no MucCluster).
 */
import type { ClusterService } from '../../core/cluster.js';
import type { StanzaEvent } from '../../core/hooks.js';
import type { Jid } from '../../../shared/jid.js';
import type { Element } from '../../../shared/xml/element.js';
import { destroyHere, roomSummaries } from './commands.js';
import type { MucPlacement, MucService, RoomSummary } from './service.js';
import type { Room } from './room.js';

const SERVICE = 'muc';

export class MucCluster implements MucPlacement {
  private readonly cleanup: (() => void)[] = [];
  /** The cluster's totals at the last look (statistics sample them synchronously). */
  private totals = { rooms: 0, occupants: 0 };
  /** Stanzas another node handed here: run here even if this node's view of the owner differs (no ping-pong). */
  private readonly handedHere = new WeakSet<Element>();
  /** Stanzas whose owner did not confirm, waiting for the room to move (cancel functions). */
  private readonly waiting = new Set<() => void>();

  constructor(
    private readonly svc: MucService,
    private readonly cluster: ClusterService,
    private readonly dispatch: (e: StanzaEvent) => void,
  ) {
    const c = cluster;
    this.cleanup.push(
      c.serve(SERVICE, (stanza: Element, from: Jid, to: Jid) => {
        this.handedHere.add(stanza);
        dispatch({ stanza, from, to, origin: { kind: 'server' } });
      }),
      c.answer('muc.rooms', () => roomSummaries(svc)),
      c.answer('muc.owned', (bare) => (typeof bare === 'string' ? svc.roomsOwnedBy(bare) : 0)),
      c.answer('muc.destroy', (body) => {
        const b = body as { room?: unknown; reason?: unknown; alternate?: unknown } | null;
        if (typeof b?.room !== 'string') return null;
        return destroyHere(svc, b.room, typeof b.reason === 'string' ? b.reason : undefined, typeof b.alternate === 'string' ? b.alternate : undefined);
      }),
      // Loading the stored rooms reads the database: a failure (or the storage closing as the node
      // stops mid-way) is logged, not an unhandled rejection that would end the process.
      c.onMembership(() =>
        void this.rebalance().catch((err: unknown) => svc.ctx.log.warn('muc: moving rooms after a membership change failed', { error: err instanceof Error ? err.message : String(err) })),
      ),
      c.onLeave(() => this.handOverAll()),
      // The retention sweep ran on one node: the owner of an expired room forgets it too.
      c.onInvalidate('muc-expired', (key) => void svc.forgetExpired(key.split(',').map(Number).filter(Number.isInteger))),
    );
  }

  stop(): void {
    for (const f of this.cleanup.splice(0)) f();
    for (const cancel of [...this.waiting]) cancel();
  }

  owns(roomJid: string): boolean {
    return this.cluster.ownerOf(SERVICE, roomJid) === this.cluster.node;
  }

  /**
   * Sends a stanza for a room this node does not own to its owner; false when it is this node's
   * (or another node handed it here). Asked again when the stanza's turn comes: the room may have
   * moved while it waited.
   */
  forwarded(e: StanzaEvent): boolean {
    if (e.to.local === '' || this.handedHere.has(e.stanza)) return false;
    const owner = this.cluster.ownerOf(SERVICE, e.to.bare);
    if (owner === this.cluster.node) return false;
    this.handTo(owner, e, false);
    return true;
  }

  private handTo(owner: string, e: StanzaEvent, retried: boolean): void {
    void this.cluster.forwardConfirmed(owner, SERVICE, e.stanza, e.from, e.to).then((confirmed) => {
      if (!confirmed) this.unconfirmed(owner, e, retried);
    });
  }

  /** Its owner did not confirm the stanza: sent again once the room moved, or once more, then bounced. */
  private unconfirmed(owner: string, e: StanzaEvent, retried: boolean): void {
    const log = this.svc.ctx.log;
    let timer: NodeJS.Timeout | null = null;
    let stopWatching: (() => void) | null = null;
    const done = () => {
      if (timer) clearTimeout(timer);
      stopWatching?.();
      this.waiting.delete(done);
    };
    const moved = () => this.cluster.ownerOf(SERVICE, e.to.bare) !== owner;
    const decide = () => {
      done();
      if (moved()) {
        log.info('muc: a stanza its room\'s node did not confirm goes to the room\'s new node', { room: e.to.bare });
        this.dispatch(e);
      } else if (!retried) {
        this.handTo(owner, e, true);
      } else {
        log.warn('muc: a stanza its room\'s node did not confirm is bounced', { room: e.to.bare, node: owner });
        this.svc.ctx.router.bounce(e, 'recipient-unavailable');
      }
    };
    this.waiting.add(done);
    stopWatching = this.cluster.onMembership(() => {
      if (moved()) decide();
    });
    // A node that died is declared dead within failureTimeout (plus a heartbeat's margin).
    timer = setTimeout(decide, this.cluster.failureTimeout * 2);
    timer.unref();
  }

  /** The rooms of every node, each with the node running it. */
  async allRooms(): Promise<(RoomSummary & { node: string })[]> {
    const answers = await this.cluster.ask('muc.rooms', null);
    const out: (RoomSummary & { node: string })[] = [];
    for (const { node, answer } of answers) if (Array.isArray(answer)) for (const r of answer as RoomSummary[]) out.push({ ...r, node });
    out.sort((a, b) => (a.jid < b.jid ? -1 : a.jid > b.jid ? 1 : 0));
    let occupants = 0;
    for (const r of out) occupants += r.occupants;
    this.totals = { rooms: out.length, occupants };
    return out;
  }

  /** Rooms `bare` owns on all nodes (`muc.maxRoomsPerUser` counts across the cluster). */
  async roomsOwnedBy(bare: string): Promise<number> {
    const answers = await this.cluster.ask('muc.owned', bare);
    return answers.reduce((n, { answer }) => n + (typeof answer === 'number' ? answer : 0), 0);
  }

  /** Destroys a room on whichever node runs it; null when none does. */
  async destroy(room: string, reason?: string, alternate?: string): Promise<{ destroyed: string; occupants: number } | null> {
    const answers = await this.cluster.ask('muc.destroy', { room, reason, alternate });
    for (const { answer } of answers) if (answer && typeof answer === 'object') return answer as { destroyed: string; occupants: number };
    return null;
  }

  counts(): { rooms: number; occupants: number } {
    return this.totals;
  }

  /** Persistent rooms the retention sweep deleted here: the node running them is told. */
  expired(roomIds: readonly number[]): void {
    if (roomIds.length > 0) this.cluster.invalidate('muc-expired', roomIds.join(','));
  }

  /** The living nodes changed: rooms no longer this node's go, stored rooms now its own come. */
  async rebalance(): Promise<void> {
    for (const room of [...this.svc.rooms.values()]) {
      if (!this.owns(room.jid)) await this.svc.serial.run(room.jid, () => this.handOver(room));
    }
    await this.svc.loadAllStored();
  }

  private async handOverAll(): Promise<void> {
    await Promise.all([...this.svc.rooms.values()].map((room) => this.svc.serial.run(room.jid, () => this.handOver(room))));
  }

  /** Occupants are told the room shuts down here (332); they join again at its new node. */
  private async handOver(room: Room): Promise<void> {
    if (this.svc.rooms.get(room.jid) !== room) return;
    if (!room.empty) this.svc.ctx.log.info('muc room moves to another node', { room: room.jid, occupants: room.occupants.size });
    await this.svc.shutDown(room);
  }
}
