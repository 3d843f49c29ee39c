import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import type { Element } from '../../shared/xml/element.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import type { ClientSession, SessionCounters } from '../core/session.js';
import type { SessionEntry } from './protocol.js';

/** How a stand-in reaches its node (the ClusterNode). */
export interface RemoteSessionLink {
  send(session: RemoteSession, stanza: Element): void;
  close(session: RemoteSession, condition?: string, text?: string): void;
}

/**
 * A session bound on another node, as this node's router and modules see it: the state RFC 6121's
 * delivery rules need (availability, priority, last presence, roster interest), the client's
 * capabilities and the modules' flags, kept up to date by that node's announcements. What is sent
 * to it goes to its node over NATS. It has no account row, connection address or counters here.
 */
export class RemoteSession implements ClientSession {
  readonly jid: Jid;
  readonly id: string;
  readonly ip = '';
  readonly secure = true;
  readonly account = null;
  readonly startedAt: Date;
  readonly counters: SessionCounters = { stanzasIn: 0, stanzasOut: 0, bytesIn: 0, bytesOut: 0 };
  /** As its node last announced them: sent unavailable on its behalf if the node dies. */
  readonly directedPresence = new Set<string>();
  available = false;
  priority = 0;
  presence: Element | null = null;
  interested = false;
  capabilities: ReadonlySet<string> | undefined;
  private flags = new Set<string>();

  constructor(
    readonly node: string,
    entry: SessionEntry,
    private readonly link: RemoteSessionLink,
  ) {
    this.jid = Jid.parse(entry.jid);
    this.id = entry.id;
    this.startedAt = new Date(entry.startedAt);
    this.update(entry);
  }

  update(entry: SessionEntry): void {
    this.available = entry.available;
    this.priority = entry.priority;
    this.presence = entry.presence ? parseXmlText(entry.presence, NS.client) : null;
    this.interested = entry.interested;
    this.capabilities = entry.capabilities ? new Set(entry.capabilities) : undefined;
    this.flags = new Set(entry.flags);
    this.directedPresence.clear();
    for (const target of entry.directed ?? []) this.directedPresence.add(target);
  }

  hasFlag(name: string): boolean {
    return this.flags.has(name);
  }

  /** Flags belong to the node holding the session; set there, they arrive here with its announcement. */
  setFlag(): void {}

  send(stanza: Element): void {
    this.link.send(this, stanza);
  }

  close(condition?: string, text?: string): void {
    this.link.close(this, condition, text);
  }
}
