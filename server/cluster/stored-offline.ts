/**
 * Offline messages stored here while their recipient's resource was coming online on another node:
 * that node is asked to deliver what is stored once more (its delivery at initial presence may
 * have run before they were written).
 */
import type { ClientSession } from '../core/session.js';
import type { Subjects } from './protocol.js';
import { RemoteSession } from './remote-session.js';
import type { NodeBasics, NodeLinks } from './node-host.js';

/** How long after storing an offline message a resource coming online elsewhere is asked to look again. */
const STORED_WINDOW_MS = 10_000;
const MAX_RECENTLY_STORED = 10_000;

/** What the stored-offline glue needs of its node. */
export type StoredOfflineHost = Pick<NodeBasics, 'registry' | 'context' | 'publish'> & Pick<NodeLinks, 'leases'>;

export class StoredOffline {
  /** Accounts this node stored offline messages for lately, with when (oldest first). */
  private readonly recentlyStored = new Map<string, number>();

  constructor(
    private readonly host: StoredOfflineHost,
    private readonly subjects: Subjects,
  ) {}

  private get registry() {
    return this.host.registry;
  }

  private get ctx() {
    return this.host.context();
  }

  private get leases() {
    return this.host.leases();
  }

  private publish(subject: string, body: unknown): void {
    this.host.publish(subject, body);
  }

  storedOffline(bare: string): void {
    const now = Date.now();
    this.recentlyStored.delete(bare);
    this.recentlyStored.set(bare, now);
    // Oldest first: drop what is older than the window, and keep the map bounded.
    for (const [k, t] of this.recentlyStored) {
      if (now - t <= STORED_WINDOW_MS && this.recentlyStored.size <= MAX_RECENTLY_STORED) break;
      this.recentlyStored.delete(k);
    }
  }

  /**
   * A resource on another node became available: if this node stored offline messages for its
   * account a moment ago, that node's delivery at initial presence may have run before they were
   * written, so it is asked to deliver what is stored once more.
   */
  becameAvailable(session: RemoteSession): void {
    const at = this.recentlyStored.get(session.jid.bare);
    if (at === undefined || Date.now() - at > STORED_WINDOW_MS) return;
    this.publish(this.subjects.stored(session.node), { jid: session.jid.full });
  }

  deliverStoredThere(session: ClientSession): boolean {
    if (!(session instanceof RemoteSession)) return false;
    this.publish(this.subjects.stored(session.node), { jid: session.jid.full });
    return true;
  }

  onStored(m: { jid: string }): void {
    // Possibly declared dead already (fencing.ts): its clients are about to be told to reconnect, and
    // what is stored waits for them there instead of reaching a session the others gave up on.
    if (this.leases?.trusted() === false) return;
    const session = this.registry.localSession(m.jid);
    if (session) void this.ctx?.hooks.emit('session/stored-messages', { session });
  }
}
