/**
 * What the core and the modules know of cluster mode (server/cluster/ implements it; the core never
 * imports it). On a single node none of this is set: the router's `cluster` is null and no module
 * finds the `cluster` service, so a single node pays nothing for it.
 */
import type { Element } from '../../shared/xml/element.js';
import type { Jid } from '../../shared/jid.js';

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
  /** Hands a stanza (with its trusted addresses) to `service` on the node `node`. */
  forward(node: string, service: string, stanza: Element, from: Jid, to: Jid): void;
  /** Takes the stanzas other nodes forward to `service` here; returns the function that stops it. */
  serve(service: string, handler: (stanza: Element, from: Jid, to: Jid) => void): () => void;
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
