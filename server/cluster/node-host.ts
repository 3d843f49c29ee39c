/**
 * What the parts of a cluster node (membership.ts, announcements.ts, services.ts, components.ts,
 * stored-offline.ts) share: another node as this one knows it, and what each part uses of the node
 * (ClusterNode in node.ts provides it; the parts never import node.ts).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { ServerContext } from '../core/context.js';
import type { NodeLeases } from './fencing.js';
import type { ClusterSessionRegistry } from './registry.js';

export interface Peer {
  name: string;
  epoch: string;
  startedAt: string;
  lastSeen: number;
  state: 'up' | 'dead';
  sessions: number;
  components: Set<string>;
  /** The whole list it is telling now, in parts. */
  told: { batch: string; jids: Set<string> } | null;
  /** It takes stanzas as frames (its heartbeat says so). */
  frames: boolean;
  /** Its lease revision at its last heartbeat (fencing.ts); undefined from a node before fencing. */
  leaseRev?: number;
  /** Its lease is being looked at (it was silent for failureTimeout). */
  suspected?: boolean;
}

/** What every part of a node uses of it. */
export interface NodeBasics {
  readonly node: string;
  /** This run (membership.ts starts a new one when the node was fenced). */
  readonly epoch: string;
  readonly registry: ClusterSessionRegistry;
  context(): ServerContext | null;
  publish(subject: string, body: unknown): void;
}

/** The NATS connection (null before start; it may be closed) and this node's lease (null before it joined). */
export interface NodeLinks {
  connection(): NatsConnection | null;
  leases(): NodeLeases | null;
  /** Runs `fn`, logging what it throws or rejects with. */
  guard(what: string, fn: () => void | Promise<void>): void;
}
