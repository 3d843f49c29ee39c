import type { ClientSession, SessionRegistry } from '../core/session.js';
import { BoundSession, LocalSessionRegistry } from '../core/session.js';
import type { RemoteSession } from './remote-session.js';

/** What the registry tells the node about its own sessions (to announce them). */
export interface LocalSessionEvents {
  up(session: BoundSession): void;
  changed(session: BoundSession): void;
  down(session: ClientSession): void;
}

/**
 * The session registry of a cluster node: this node's sessions, and stand-ins (RemoteSession) for
 * those bound on the other nodes, so that the router and every module apply their rules to all of
 * an account's resources wherever they are. `all()` and `size` are this node's sessions only.
 */
export class ClusterSessionRegistry implements SessionRegistry {
  private readonly local = new LocalSessionRegistry();
  private readonly remote = new Map<string, RemoteSession>();
  private readonly remoteByBare = new Map<string, Map<string, RemoteSession>>();

  constructor(private readonly events: LocalSessionEvents) {}

  add(session: ClientSession): ClientSession | undefined {
    const replaced = this.local.add(session);
    const remote = this.remote.get(session.jid.full);
    // The same full JID bound on another node: the new session takes the resource (RFC 6120
    // 7.7.2.2); the caller closes the old one with a conflict, which reaches its node.
    if (remote) this.removeRemote(remote);
    if (session instanceof BoundSession) {
      session.onStateChange = (s) => this.events.changed(s);
      this.events.up(session);
    }
    return replaced ?? remote;
  }

  remove(session: ClientSession): boolean {
    if (!this.local.remove(session)) return false;
    if (session instanceof BoundSession) session.onStateChange = undefined;
    this.events.down(session);
    return true;
  }

  get(fullJid: string): ClientSession | undefined {
    return this.local.get(fullJid) ?? this.remote.get(fullJid);
  }

  ofAccount(bareJid: string): ClientSession[] {
    const own = this.local.ofAccount(bareJid);
    const elsewhere = this.remoteByBare.get(bareJid);
    if (!elsewhere) return own;
    return [...own, ...elsewhere.values()];
  }

  all(): Iterable<ClientSession> {
    return this.local.all();
  }

  get size(): number {
    return this.local.size;
  }

  /** This node's session of a full JID. */
  localSession(fullJid: string): ClientSession | undefined {
    return this.local.get(fullJid);
  }

  localOfAccount(bareJid: string): ClientSession[] {
    return this.local.ofAccount(bareJid);
  }

  remoteSession(fullJid: string): RemoteSession | undefined {
    return this.remote.get(fullJid);
  }

  remoteSessions(): IterableIterator<RemoteSession> {
    return this.remote.values();
  }

  addRemote(session: RemoteSession): void {
    const old = this.remote.get(session.jid.full);
    if (old) this.removeRemote(old);
    this.remote.set(session.jid.full, session);
    let resources = this.remoteByBare.get(session.jid.bare);
    if (!resources) this.remoteByBare.set(session.jid.bare, (resources = new Map()));
    resources.set(session.jid.resource, session);
  }

  removeRemote(session: RemoteSession): boolean {
    if (this.remote.get(session.jid.full) !== session) return false;
    this.remote.delete(session.jid.full);
    const resources = this.remoteByBare.get(session.jid.bare);
    resources?.delete(session.jid.resource);
    if (resources && resources.size === 0) this.remoteByBare.delete(session.jid.bare);
    return true;
  }
}
