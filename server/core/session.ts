import type { Element } from '../../shared/xml/element.js';
import type { Jid } from '../../shared/jid.js';
import type { Account } from '../storage/types.js';

export interface SessionCounters {
  stanzasIn: number;
  stanzasOut: number;
  bytesIn: number;
  bytesOut: number;
}

/** A bound client resource, as the router and modules see it (P6: start time and counters). */
export interface ClientSession {
  readonly id: string;
  /** Full JID once bound. */
  readonly jid: Jid;
  readonly ip: string;
  /** The stream is encrypted (TLS). */
  readonly secure: boolean;
  /** The authenticated account. */
  readonly account: Account | null;
  readonly startedAt: Date;
  readonly counters: SessionCounters;
  /** Set by the presence module: true after initial presence until unavailable. */
  available: boolean;
  /** Priority from the last available presence (RFC 6121 4.7.2.3), 0 by default. */
  priority: number;
  /** The last available presence broadcast by this resource. */
  presence: Element | null;
  /** Requested the roster: an "interested resource" that gets roster pushes (RFC 6121 2.1.6). */
  interested: boolean;
  /** Full or bare JIDs this resource sent directed presence to, outside its subscriptions. */
  readonly directedPresence: Set<string>;
  send(stanza: Element): void;
  /** Ends the stream, with a stream error condition if given. */
  close(condition?: string, text?: string): void;
}

/**
 * Which resources are online for which accounts. Kept behind this interface so sessions can
 * later live in several processes or machines with the router asking a shared registry.
 */
export interface SessionRegistry {
  /** Adds the session; returns the session it replaced for the same full JID, if any. */
  add(session: ClientSession): ClientSession | undefined;
  remove(session: ClientSession): boolean;
  get(fullJid: string): ClientSession | undefined;
  /** Every bound resource of a bare JID. */
  ofAccount(bareJid: string): ClientSession[];
  all(): Iterable<ClientSession>;
  readonly size: number;
}

export class LocalSessionRegistry implements SessionRegistry {
  private readonly byFull = new Map<string, ClientSession>();
  private readonly byBare = new Map<string, Map<string, ClientSession>>();

  add(session: ClientSession): ClientSession | undefined {
    const previous = this.byFull.get(session.jid.full);
    this.byFull.set(session.jid.full, session);
    let resources = this.byBare.get(session.jid.bare);
    if (!resources) this.byBare.set(session.jid.bare, (resources = new Map()));
    resources.set(session.jid.resource, session);
    return previous !== session ? previous : undefined;
  }

  remove(session: ClientSession): boolean {
    if (this.byFull.get(session.jid.full) !== session) return false;
    this.byFull.delete(session.jid.full);
    const resources = this.byBare.get(session.jid.bare);
    resources?.delete(session.jid.resource);
    if (resources && resources.size === 0) this.byBare.delete(session.jid.bare);
    return true;
  }

  get(fullJid: string): ClientSession | undefined {
    return this.byFull.get(fullJid);
  }

  ofAccount(bareJid: string): ClientSession[] {
    const resources = this.byBare.get(bareJid);
    return resources ? [...resources.values()] : [];
  }

  all(): Iterable<ClientSession> {
    return this.byFull.values();
  }

  get size(): number {
    return this.byFull.size;
  }
}
