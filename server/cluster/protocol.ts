/**
 * What the nodes of a cluster say to each other over NATS: the subjects, the JSON messages and the
 * frames of stanzas.
 *
 * Subjects (P = cluster.prefix):
 * - `P.hb`                 every node's heartbeat (membership, failure detection, its component links)
 * - `P.sessions`           session announcements: one session up/changed/down, or a node's whole list
 * - `P.node.NAME.frames`   stanzas for sessions bound on NAME, as one published frame (`encodeFrame`: a
 *                          JSON header line, then the stanzas' XML as serialised) per turn of the
 *                          sending node's event loop, at most one per `cluster.batchWindow`; and the
 *                          confirmations NAME owes the other way (ids delivered, ids with no session),
 *                          in its next frame to the sender or on their own after CONFIRM_DELAY_MS
 *                          (stanza-crossing.ts). A frame with messages or IQ requests carries the reply
 *                          subject `P.node.SENDER.unreached.NAME.FIRST.LAST` (its ids), which NAME never
 *                          answers: nats-server does, with a 503 status, when nobody listens on NAME's
 *                          subject (dead, stopped), and the sender falls back at once. A node says in
 *                          its heartbeat (`frames: true`) that it takes frames.
 * - `P.node.NAME.stanzas`  the previous protocol, for nodes whose heartbeat lacks `frames` (a rolling
 *                          restart): one JSON `StanzaBatch`, a request when it holds messages or IQ
 *                          requests, answered with one `Confirmations`; still served
 * - `P.node.NAME.stanza`   one stanza for a session bound on NAME, as a request (messages and IQ
 *                          requests: NAME answers DELIVERED or NOT_HERE); what nodes before batching
 *                          sent, still served and sent to a node that takes neither of the above
 * - `P.node.NAME.close`    close a session on NAME (a resource conflict, `gatehouse kick` on another node)
 * - `P.node.NAME.stored`   messages were stored offline for a session on NAME just as it came online
 * - `P.node.NAME.component` a stanza for a component linked to NAME
 * - `P.node.NAME.answer`   an IQ answer for a request NAME's router is waiting for
 * - `P.node.NAME.service`  a stanza for a service owned per node on NAME, published (and how nodes
 *                          before confirmations take the next one)
 * - `P.node.NAME.served`   the same as a request when the sender must know whether NAME took it
 *                          (forwardConfirmed: outgoing s2s links, group chat rooms): NAME answers
 *                          TAKEN or NOT_SERVED
 * - `P.node.NAME.ask`      a question to NAME from another node (a module's `ask`: rooms for a listing)
 * - `P.invalidate`         a module's cached data about a key changed on one node (blocklists)
 */

import type { SessionState } from '../core/cluster.js';

export interface Subjects {
  heartbeat: string;
  sessions: string;
  invalidate: string;
  stanza(node: string): string;
  stanzas(node: string): string;
  frames(node: string): string;
  /** The reply subject of a frame from `sender` to `node` with the ids first..last awaiting confirmation. */
  unreached(sender: string, node?: string, first?: number, last?: number): string;
  close(node: string): string;
  stored(node: string): string;
  component(node: string): string;
  answer(node: string): string;
  service(node: string): string;
  served(node: string): string;
  ask(node: string): string;
}

export function subjects(prefix: string): Subjects {
  return {
    heartbeat: `${prefix}.hb`,
    sessions: `${prefix}.sessions`,
    invalidate: `${prefix}.invalidate`,
    stanza: (node) => `${prefix}.node.${node}.stanza`,
    stanzas: (node) => `${prefix}.node.${node}.stanzas`,
    frames: (node) => `${prefix}.node.${node}.frames`,
    unreached: (sender, node, first, last) => (node === undefined ? `${prefix}.node.${sender}.unreached.>` : `${prefix}.node.${sender}.unreached.${node}.${first}.${last}`),
    close: (node) => `${prefix}.node.${node}.close`,
    stored: (node) => `${prefix}.node.${node}.stored`,
    component: (node) => `${prefix}.node.${node}.component`,
    answer: (node) => `${prefix}.node.${node}.answer`,
    service: (node) => `${prefix}.node.${node}.service`,
    served: (node) => `${prefix}.node.${node}.served`,
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
  /** It takes stanzas as frames on `P.node.NAME.frames` (absent: a node of the version before). */
  frames?: boolean;
  sessions: number;
  /** Component domains linked to this node now. */
  components: string[];
  /** Keyed fingerprints of the files every node must share (fingerprints.ts); absent from nodes before the check. */
  keys?: Record<string, string>;
  /** This node's lease revision at this heartbeat (fencing.ts); absent from nodes before fencing. */
  lease?: number;
}

/** A session as other nodes see it (core/cluster.ts SessionState); `directed` left out when empty. */
export type SessionEntry = Omit<SessionState, 'directed'> & { directed?: string[] };

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

/**
 * The header of a frame (`P.node.NAME.frames`), from the node `node` (its run `epoch`). `items`:
 * per stanza [id (0: no confirmation wanted), to (full JID), sid, length of its XML in UTF-8
 * bytes]; the XML follows the header's line, one stanza after the other, as it was serialised (the
 * receiving node parses them all with one parser). `confirm`: what the sender did with the
 * recipient's run `epoch`'s stanzas (ids delivered, ids with no session here).
 */
export interface FrameHeader extends NodeId {
  items: [number, string, string, number][];
  confirm?: { epoch: string; delivered: number[]; gone: number[] };
}

/** A stanza going into a frame. */
export interface FrameItem extends StanzaForSession {
  /** 0: a stanza whose delivery is not confirmed (presence, IQ results). */
  id: number;
}

/** A stanza read from a frame: its XML as the bytes it came as. */
export interface ReceivedFrameItem {
  id: number;
  to: string;
  sid: string;
  bytes: Buffer;
}

export function encodeFrame(header: Omit<FrameHeader, 'items'>, items: readonly FrameItem[]): Uint8Array {
  const h: FrameHeader = { ...header, items: items.map((i) => [i.id, i.to, i.sid, Buffer.byteLength(i.xml)]) };
  let body = JSON.stringify(h) + '\n';
  for (const i of items) body += i.xml;
  return Buffer.from(body, 'utf8');
}

/** A frame's header and stanzas (`xml`: all of them, in order); throws on a frame that does not parse (the sender then falls back, unconfirmed). */
export function decodeFrame(data: Uint8Array): { header: FrameHeader; xml: Buffer; items: ReceivedFrameItem[] } {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const nl = buf.indexOf(0x0a);
  if (nl < 0) throw new Error('frame without a header line');
  const header = JSON.parse(buf.toString('utf8', 0, nl)) as FrameHeader;
  if (typeof header !== 'object' || header === null || !Array.isArray(header.items)) throw new Error('frame header without items');
  const xml = buf.subarray(nl + 1);
  const items: ReceivedFrameItem[] = [];
  let at = 0;
  for (const [id, to, sid, length] of header.items) {
    if (typeof length !== 'number' || length < 0 || at + length > xml.length) throw new Error('frame shorter than its header says');
    items.push({ id, to, sid, bytes: xml.subarray(at, at + length) });
    at += length;
  }
  return { header, xml: xml.subarray(0, at), items };
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

/** The answer to a `served` request: the service took the stanza, or it is not served on that node (not loaded, held back, stopping). */
export const TAKEN = 'taken';
export const NOT_SERVED = 'not-served';

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

/** NATS answered a request at once that nobody listens on its subject (a node that died or never served it). */
export function isNoResponders(err: unknown): boolean {
  return typeof err === 'object' && err !== null && 'isNoResponders' in err && typeof err.isNoResponders === 'function' && err.isNoResponders() === true;
}
