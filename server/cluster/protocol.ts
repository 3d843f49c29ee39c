/**
 * What the nodes of a cluster say to each other over NATS: the subjects and the JSON messages.
 *
 * Subjects (P = cluster.prefix):
 * - `P.hb`                 every node's heartbeat (membership, failure detection, its component links)
 * - `P.sessions`           session announcements: one session up/changed/down, or a node's whole list
 * - `P.node.NAME.stanzas`  stanzas for sessions bound on NAME, gathered by the sending node for about
 *                          a millisecond into one NATS message (`StanzaBatch`); with messages or IQ
 *                          requests in it a request, which NAME answers with one `Confirmations`
 * - `P.node.NAME.stanza`   one stanza for a session bound on NAME, as a request (messages and IQ
 *                          requests: NAME answers DELIVERED or NOT_HERE); what nodes before batching
 *                          sent, still served for a rolling restart
 * - `P.node.NAME.close`    close a session on NAME (a resource conflict, `gatehouse kick` on another node)
 * - `P.node.NAME.stored`   messages were stored offline for a session on NAME just as it came online
 * - `P.node.NAME.component` a stanza for a component linked to NAME
 * - `P.node.NAME.answer`   an IQ answer for a request NAME's router is waiting for
 * - `P.node.NAME.service`  a stanza for a service owned per node on NAME (outgoing s2s links)
 * - `P.node.NAME.ask`      a question to NAME from another node (a module's `ask`: rooms for a listing)
 * - `P.invalidate`         a module's cached data about a key changed on one node (blocklists)
 */

export interface Subjects {
  heartbeat: string;
  sessions: string;
  invalidate: string;
  stanza(node: string): string;
  stanzas(node: string): string;
  close(node: string): string;
  stored(node: string): string;
  component(node: string): string;
  answer(node: string): string;
  service(node: string): string;
  ask(node: string): string;
}

export function subjects(prefix: string): Subjects {
  return {
    heartbeat: `${prefix}.hb`,
    sessions: `${prefix}.sessions`,
    invalidate: `${prefix}.invalidate`,
    stanza: (node) => `${prefix}.node.${node}.stanza`,
    stanzas: (node) => `${prefix}.node.${node}.stanzas`,
    close: (node) => `${prefix}.node.${node}.close`,
    stored: (node) => `${prefix}.node.${node}.stored`,
    component: (node) => `${prefix}.node.${node}.component`,
    answer: (node) => `${prefix}.node.${node}.answer`,
    service: (node) => `${prefix}.node.${node}.service`,
    ask: (node) => `${prefix}.node.${node}.ask`,
  };
}

/** A node's process: `epoch` tells a restarted node (same name) from its previous run. */
export interface NodeId {
  node: string;
  epoch: string;
}

export interface Heartbeat extends NodeId {
  startedAt: string;
  sessions: number;
  /** Component domains linked to this node now. */
  components: string[];
  /** Keyed fingerprints of the files every node must share (fingerprints.ts); absent from nodes before the check. */
  keys?: Record<string, string>;
  /** This node's lease revision at this heartbeat (fencing.ts); absent from nodes before fencing. */
  lease?: number;
}

/** A session as other nodes see it: enough to route to it and to apply RFC 6121's delivery rules. */
export interface SessionEntry {
  jid: string;
  id: string;
  startedAt: number;
  available: boolean;
  priority: number;
  /** The last available presence broadcast (serialised), for probes answered by any node. */
  presence: string | null;
  interested: boolean;
  capabilities: string[] | null;
  flags: string[];
  /** JIDs it sent directed presence to (RFC 6121 4.6): a dead node's survivors send them unavailable. */
  directed?: string[];
}

export type SessionAnnouncement =
  | (NodeId & { op: 'up'; session: SessionEntry })
  | (NodeId & { op: 'down'; jid: string; id: string })
  /**
   * A node's whole list, in parts that stay well below NATS's message size limit: `batch` names
   * one telling, `last` ends it (sessions of the node not told in it are gone).
   */
  | (NodeId & { op: 'all'; sessions: SessionEntry[]; batch: string; last: boolean })
  /** Asks every node for its whole list (after this node missed announcements: NATS was away, it was declared dead). */
  | (NodeId & { op: 'sync' });

/** A stanza for one session (`to` full JID, `sid` the session id it was meant for). */
export interface StanzaForSession {
  to: string;
  sid: string;
  xml: string;
}

/**
 * Stanzas from the node `node` (its run `epoch`) for sessions here, in the order they were sent.
 * An item with an `id` (a message, an IQ request) waits for its confirmation: the sending node keeps
 * it its responsibility until the id comes back as delivered, and falls back (other resources,
 * offline storage, an IQ error) when it comes back as gone or not at all within `cluster.deliveryTimeout`.
 */
export interface StanzaBatch extends NodeId {
  items: (StanzaForSession & { id?: number })[];
}

/** The reply to a batch: what became of its items with an `id` (one listed in neither was not handled). */
export interface Confirmations {
  delivered: number[];
  gone: number[];
}

export interface CloseSession {
  jid: string;
  sid: string;
  condition?: string;
  text?: string;
}

export interface ServiceStanza {
  service: string;
  xml: string;
  from: string;
  to: string;
}

export interface ComponentStanza {
  domain: string;
  xml: string;
}

/** The answer to a delivery request: delivered, or the session is not (any longer) here. */
export const DELIVERED = 'ok';
export const NOT_HERE = 'gone';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encode(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

export function decode<T>(data: Uint8Array): T {
  return JSON.parse(decoder.decode(data)) as T;
}

export function text(data: Uint8Array): string {
  return decoder.decode(data);
}
