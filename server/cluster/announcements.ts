/**
 * This node's sessions, announced to the others (one at a time as they change, and the whole list
 * in parts when a node joins or asks), and the others' announcements, which keep the registry's
 * stand-ins (RemoteSession) true.
 */
import { randomBytes } from 'node:crypto';
import type { BoundSession, ClientSession } from '../core/session.js';
import { sessionState } from '../core/cluster.js';
import type { SessionAnnouncement, SessionEntry, Subjects } from './protocol.js';
import type { LocalSessionEvents } from './registry.js';
import { RemoteSession, type RemoteSessionLink } from './remote-session.js';
import type { NodeBasics, Peer } from './node-host.js';

/** Size of one part of a node's whole session list (NATS refuses messages over 1 MiB by default). */
const ALL_PART_BYTES = 256 * 1024;

/** What the announcements need of their node. */
export interface AnnouncementsHost extends Pick<NodeBasics, 'node' | 'epoch' | 'registry' | 'publish'> {
  /** How the stand-ins reach the node holding their session. */
  readonly link: RemoteSessionLink;
  /** The peer as a message from `node`/`epoch` shows it (membership.ts); null for this node or a run that left. */
  peer(node: string, epoch: string): Peer | null;
  /** A peer declared dead was heard again. */
  revive(p: Peer): void;
  /** A resource on another node became available (stored-offline.ts). */
  becameAvailable(session: RemoteSession): void;
}

export class Announcements implements LocalSessionEvents {
  private readonly dirty = new Set<BoundSession>();
  private announceAllSoon: NodeJS.Timeout | null = null;

  constructor(
    private readonly host: AnnouncementsHost,
    private readonly subjects: Subjects,
  ) {}

  private get node() {
    return this.host.node;
  }

  private get epoch() {
    return this.host.epoch;
  }

  private get registry() {
    return this.host.registry;
  }

  private publish(subject: string, body: unknown): void {
    this.host.publish(subject, body);
  }

  private peer(node: string, epoch: string): Peer | null {
    return this.host.peer(node, epoch);
  }

  private revive(p: Peer): void {
    this.host.revive(p);
  }

  private becameAvailable(session: RemoteSession): void {
    this.host.becameAvailable(session);
  }

  /** No whole list goes out any more (the node is leaving). */
  stop(): void {
    if (this.announceAllSoon) clearTimeout(this.announceAllSoon);
  }

  private entry(s: BoundSession): SessionEntry {
    const state = sessionState(s);
    return { ...state, directed: state.directed.length > 0 ? state.directed : undefined };
  }

  up(session: BoundSession): void {
    this.dirty.delete(session);
    this.publish(this.subjects.sessions, { node: this.node, epoch: this.epoch, op: 'up', session: this.entry(session) });
  }

  /** Several changes in one turn of the event loop (presence, then priority) go out as one announcement. */
  changed(session: BoundSession): void {
    if (this.dirty.size === 0) queueMicrotask(() => this.flushChanges());
    this.dirty.add(session);
  }

  flushChanges(): void {
    for (const s of this.dirty) if (!s.ended) this.publish(this.subjects.sessions, { node: this.node, epoch: this.epoch, op: 'up', session: this.entry(s) });
    this.dirty.clear();
  }

  down(session: ClientSession): void {
    this.dirty.delete(session as BoundSession);
    this.publish(this.subjects.sessions, { node: this.node, epoch: this.epoch, op: 'down', jid: session.jid.full, id: session.id });
  }

  announceAll(): void {
    const batch = randomBytes(4).toString('hex');
    let part: SessionEntry[] = [];
    let bytes = 0;
    const send = (last: boolean) => {
      this.publish(this.subjects.sessions, { node: this.node, epoch: this.epoch, op: 'all', sessions: part, batch, last });
      part = [];
      bytes = 0;
    };
    for (const s of this.registry.all()) {
      const e = this.entry(s as BoundSession);
      bytes += JSON.stringify(e).length;
      part.push(e);
      if (bytes > ALL_PART_BYTES) send(false);
    }
    send(true);
  }

  scheduleAnnounceAll(): void {
    if (this.announceAllSoon) return;
    this.announceAllSoon = setTimeout(() => {
      this.announceAllSoon = null;
      this.announceAll();
    }, 20);
    this.announceAllSoon.unref();
  }

  onAnnouncement(a: SessionAnnouncement): void {
    if (a.node === this.node) return;
    const p = this.peer(a.node, a.epoch);
    if (!p) return;
    p.lastSeen = Date.now();
    if (p.state === 'dead') this.revive(p);
    if (a.op === 'sync') this.scheduleAnnounceAll();
    else if (a.op === 'up') this.remoteUp(p, a.session);
    else if (a.op === 'down') {
      const s = this.registry.remoteSession(a.jid);
      if (s && s.node === p.name && s.id === a.id) this.registry.removeRemote(s);
    } else if (a.op === 'all') {
      if (p.told?.batch !== a.batch) p.told = { batch: a.batch, jids: new Set() };
      for (const e of a.sessions) {
        p.told.jids.add(e.jid);
        this.remoteUp(p, e);
      }
      if (!a.last) return;
      const listed = p.told.jids;
      p.told = null;
      for (const s of [...this.registry.remoteSessions()]) if (s.node === p.name && !listed.has(s.jid.full)) this.registry.removeRemote(s);
    }
  }

  private remoteUp(p: Peer, e: SessionEntry): void {
    const existing = this.registry.remoteSession(e.jid);
    if (existing && existing.node === p.name && existing.id === e.id) {
      const was = existing.available;
      existing.update(e);
      if (!was && existing.available) this.becameAvailable(existing);
      return;
    }
    const mine = this.registry.localSession(e.jid);
    if (mine) {
      // Bound on both nodes at once: the newer session keeps the resource (RFC 6120 7.7.2.2), the
      // older is closed with a conflict by the node that holds it. Both nodes decide alike.
      const mineNewer = mine.startedAt.getTime() > e.startedAt || (mine.startedAt.getTime() === e.startedAt && this.node > p.name);
      if (mineNewer) return;
      mine.close('conflict', 'replaced by a new session for the same resource');
    }
    const session = new RemoteSession(p.name, e, this.host.link);
    this.registry.addRemote(session);
    if (session.available) this.becameAvailable(session);
  }
}
