/**
 * What the core and the modules know of cluster mode (server/cluster/ implements it; the core never
 * imports it). On a single node none of this is set: the router's `cluster` is null and no module
 * finds the `cluster` service, so a single node pays nothing for it.
 */
import type { Element } from '../../shared/xml/element.js';
import type { Jid } from '../../shared/jid.js';
import type { BoundSession, ClientSession } from './session.js';

/** The router's narrow window on the cluster: what cannot be decided from the session registry alone. */
export interface ClusterRouting {
  /** Starts the ids of the IQs this node's router sends (`request`), naming the node the answer must reach. */
  readonly iqIdPrefix: string;
  /** An IQ answer to a host or bare JID that no request here waits for: true when another node's request did, and it went there. */
  forwardAnswer(stanza: Element, from: Jid, to: Jid): boolean;
  /** A component (XEP-0114) link of this node came up or went down: the other nodes route its domain here. */
  componentLink(domain: string, up: boolean): void;
}

/** One node as `gatehouse cluster status` shows it. */
export interface ClusterNodeStatus {
  name: string;
  self: boolean;
  /** 'up'; 'dead' once not heard of for `cluster.failureTimeout` (kept in the list a while). */
  state: 'up' | 'dead';
  sessions: number;
  components: string[];
  /** Milliseconds since its last heartbeat (0 for this node). */
  lastSeenMs: number;
  /** When this node's process started. */
  startedAt: string;
}

export interface ClusterStatus {
  node: string;
  nats: { connected: boolean; server: string | null; reconnects: number };
  nodes: ClusterNodeStatus[];
  /** The tasks that run once per cluster and which node runs each now. */
  tasks: { name: string; holder: string | null }[];
}

/** The `cluster` service: what modules use of cluster mode (status, cluster-wide counters, once-per-cluster tasks). */
export interface ClusterService {
  readonly node: string;
  status(): ClusterStatus;
  /** Client sessions online on all living nodes (this node's now, the others' at their last heartbeat). */
  sessionsOnline(): number;
  /**
   * Counts one event under `key` in a window of `windowMs` across the cluster and returns the count
   * within the window (this one included).
   */
  count(kind: string, key: string, windowMs: number): Promise<number>;
  /** The count within the window without adding to it. */
  peek(kind: string, key: string, windowMs: number): Promise<number>;
  /** Whether this node holds the cluster-wide lock of the task now (the retention sweep, backups). */
  holds(task: string): boolean;
  /**
   * A service owned per node: the node that serves `key` (an outgoing s2s link's remote domain;
   * later a group chat room) among the living nodes, by rendezvous hashing, so every node picks the
   * same one without asking and a key moves only when its node leaves or one joins.
   */
  ownerOf(service: string, key: string): string;
  /**
   * Hands a stanza (with its trusted addresses) to `service` on the node `node`. With `untaken`, that
   * node confirms it took the stanza, and `untaken` is called when it did not: the service is not
   * served there (not loaded yet, held back, stopping), nobody listens there any more (a node that
   * died and is not declared dead yet), or no answer came within `cluster.deliveryTimeout`. The
   * caller then handles the stanza itself rather than lose it (it may then be handled twice).
   */
  forward(node: string, service: string, stanza: Element, from: Jid, to: Jid, untaken?: () => void): void;
  /**
   * forward() with a confirmation: resolves true once `node` has handed the stanza to the service,
   * false when it did not say so within `cluster.deliveryTimeout` (it died, or has no such service):
   * the caller decides again (the key's owner may have changed meanwhile) or bounces the stanza.
   */
  forwardConfirmed(node: string, service: string, stanza: Element, from: Jid, to: Jid): Promise<boolean>;
  /** cluster.failureTimeout: how long until a silent node is declared dead and what it owned moves. */
  readonly failureTimeout: number;
  /** Takes the stanzas other nodes forward to `service` here; returns the function that stops it. */
  serve(service: string, handler: (stanza: Element, from: Jid, to: Jid) => void): () => void;
  /**
   * For a stand-in of a session bound on another node: asks that node to deliver what offline
   * storage holds for the session's account (it deletes the rows it wrote to the stream) and
   * answers true; false for a session of this node.
   */
  deliverStoredThere(session: ClientSession): boolean;
  /** Tells the other nodes that what they keep in memory about `key` under `topic` is stale (a module's cache of stored data). */
  invalidate(topic: string, key: string): void;
  /** Hears the other nodes' invalidations of `topic`; returns the function that stops it. */
  onInvalidate(topic: string, handler: (key: string) => void): () => void;
  /**
   * Asks `topic` of every living node, this one included, and gathers the answers (JSON values);
   * a node that does not answer within `cluster.deliveryTimeout` is left out.
   */
  ask(topic: string, body: unknown): Promise<{ node: string; answer: unknown }[]>;
  /** Answers the `ask`s of `topic` here; returns the function that stops it. */
  answer(topic: string, handler: (body: unknown) => unknown): () => void;
  /** Called after the living nodes changed (one joined, left or was declared dead): what `ownerOf` says may have changed. */
  onMembership(handler: () => void): () => void;
  /**
   * Called (and awaited, at most `cluster.deliveryTimeout`) when this node stops cleanly, before the
   * others hear it leave: a module hands over what it owns while stanzas still cross.
   */
  onLeave(handler: () => Promise<void>): () => void;
}

declare module './services.js' {
  interface Services {
    cluster: ClusterService;
  }
}

/**
 * Stream management's durable copy of what a node wrote to its clients and they have not
 * acknowledged yet (server/cluster/sm-journal.ts), so that a node killed with SIGKILL loses none of
 * it: another node routes it again (other resources or offline storage). Present in cluster mode only.
 */
export interface StreamManagementJournal {
  /** This node: the SM-IDs made here end with `.node`. */
  readonly node: string;
  /**
   * True while this node, declared dead by the others, closes its sessions: the others route what
   * the journal holds, so a session ending now routes again only what it does not (its records stay).
   */
  readonly fenced: boolean;
  /** Records a message written to the session with journal key `key`; resolves when stored (the value locates it). */
  record(key: string, data: string, at: Date): Promise<number>;
  /** The client acknowledged everything up to the record `upTo` resolves to. */
  acknowledged(key: string, upTo: Promise<number>): void;
  /** The session ended here and its queue was routed again: its records go. */
  discard(key: string): void;
  /** Resolves once the records made so far are stored (before a node confirms a delivery). */
  stored(): Promise<void> | null;
  /**
   * A <resume/> of an SM-ID made on `node`: that node hands the session over (it leaves there
   * without ending for contacts) or, when it cannot, ends it (its unacknowledged messages go to
   * other resources or offline storage) and answers the session's h; null when it has no such
   * session of that account, or cannot be reached (a dead node's journal is routed by a survivor).
   */
  takeOver(node: string, request: TakeOverRequest): Promise<TakeOverAnswer | null>;
  /** Serves the other nodes' takeOver for this node's sessions. */
  serveTakeOver(handler: (request: TakeOverRequest) => Promise<TakeOverAnswer | null>): void;
  /** The node that handed a session over: its journal records of `key` may go (the new node has its own now). */
  released(node: string, key: string): void;
}

export interface TakeOverRequest {
  smid: string;
  accountId: number;
  /** The client's h from <resume/>. */
  h: number;
  /** The node asking (where the session goes). */
  node: string;
}

/** What other nodes keep of a bound session: enough to route to it and apply RFC 6121 to it. */
export interface SessionState {
  id: string;
  jid: string;
  startedAt: number;
  available: boolean;
  priority: number;
  /** The last available presence broadcast (serialised). */
  presence: string | null;
  interested: boolean;
  capabilities: string[] | null;
  flags: string[];
  /** JIDs it sent directed presence to (RFC 6121 4.6). */
  directed: string[];
}

/** A bound session's state as other nodes keep it (session announcements, a resumption handed over). */
export function sessionState(s: BoundSession): SessionState {
  return {
    id: s.id,
    jid: s.jid.full,
    startedAt: s.startedAt.getTime(),
    available: s.available,
    priority: s.priority,
    presence: s.presence ? s.presence.toString() : null,
    interested: s.interested,
    capabilities: s.capabilities ? [...s.capabilities] : null,
    flags: s.flagNames(),
    directed: [...s.directedPresence],
  };
}

/** A session handed over between nodes (XEP-0198 resumption on another node). */
export interface SessionHandover extends SessionState {
  journalKey: string;
  maxMs: number;
  inbound: number;
  sent: number;
  acked: number;
  /** Written and not acknowledged, oldest first (`journaled`: a message kept in the journal). */
  queue: { data: string; at: string; journaled: boolean }[];
}

export type TakeOverAnswer =
  | { handover: SessionHandover }
  /** Ended instead (or acknowledged more than was sent: `tooHigh` with the node's send count). */
  | { h: number; tooHigh?: number };

declare module './services.js' {
  interface Services {
    'sm-journal': StreamManagementJournal;
  }
}
