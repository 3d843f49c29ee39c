/**
 * Stanzas to sessions bound on other nodes, and the confirmations that keep a message the sending
 * node's responsibility until the recipient's node has handed it to the session (protocol.ts has
 * the subjects, docs/architecture.md "Cluster" the why).
 *
 * What one turn of the event loop routes to a node (or `cluster.batchWindow`) goes there as one
 * published frame. The receiving node does not answer each frame: it owes the sender the ids it
 * delivered (or has no session for) and pays them with the next frame going that way, or after
 * CONFIRM_DELAY_MS on their own. The sender keeps every message and IQ request awaiting its id, and
 * one timer falls back for those unconfirmed after `cluster.deliveryTimeout` (other resources,
 * offline storage, an IQ error); a frame to a node that no longer listens comes back at once as a
 * NATS 503 on its reply subject and falls back then. Per message the two nodes thus pay a share of
 * one socket write and one read, where a request per batch cost a write and a read each way plus
 * the NATS client's request machinery (docs/benchmarks.md, "Cluster").
 *
 * Nodes of the version before (no `frames` in their heartbeat) get batches as requests on
 * `P.node.NAME.stanzas`, and nodes before that one stanza per request; both are still served here.
 */
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import type { Element } from '../../shared/xml/element.js';
import { parseXmlElements, parseXmlText } from '../../shared/xml/parse-xml.js';
import type { Logger } from '../../shared/logger.js';
import type { ServerContext } from '../core/context.js';
import { messageType, topResources } from '../core/delivery.js';
import {
  DELIVERED,
  NOT_HERE,
  decode,
  decodeFrame,
  encode,
  encodeFrame,
  isNoResponders,
  text,
  type Confirmations,
  type FrameHeader,
  type FrameItem,
  type StanzaBatch,
  type StanzaForSession,
  type Subjects,
} from './protocol.js';
import type { ClusterSessionRegistry } from './registry.js';
import { RemoteSession } from './remote-session.js';
import type { SmJournal } from './sm-journal.js';
import type { ClusterConfig } from './types.js';

/** What the crossing needs of its node. */
export interface CrossingHost {
  readonly node: string;
  readonly epoch: string;
  readonly registry: ClusterSessionRegistry;
  /** The NATS connection while it is open. */
  nats(): NatsConnection | null;
  context(): ServerContext | null;
  journal(): SmJournal | null;
  /** Stopping: nothing falls back any more. */
  stopping(): boolean;
  /** The node says in its heartbeat that it takes frames. */
  takesFrames(node: string): boolean;
  /** False while this node may have been declared dead (fencing.ts): it delivers and confirms nothing, so the senders fall back. */
  trusted(): boolean;
}

/**
 * How long a node keeps the confirmations it owes another node when no frame goes there meanwhile.
 * Only the sender's memory and the window in which a crash of the receiving node makes the sender
 * deliver a message twice (at-least-once, as XEP-0198 allows) depend on it; `deliveryTimeout` is far longer.
 */
export const CONFIRM_DELAY_MS = 25;
/** A frame is sent at once when it grows past this (NATS refuses messages over 1 MiB by default). */
const FRAME_MAX_BYTES = 256 * 1024;
/** Owed confirmations are sent at once past this many ids. */
const MAX_OWED = 10_000;
const NS_CARBONS = 'urn:xmpp:carbons:2';

/**
 * A message or IQ request sent to another node, waiting for that node's confirmation. It keeps the
 * stanza as the XML that went (parsed again only to fall back): an element tree kept for the few
 * milliseconds until the confirmation outlives a young-generation collection more often than a
 * string, and the old generation's collections then cost the sending node more than the frames.
 */
interface Awaiting {
  session: RemoteSession;
  xml: string;
  /** The element itself once it was sent on to other resources after a failed delivery (`rerouted`). */
  stanza?: Element;
  iq: boolean;
  /** performance.now() when it was sent. */
  at: number;
}

/** Confirmations owed to another node's run `epoch`. */
interface Owed {
  epoch: string;
  delivered: number[];
  gone: number[];
}

export class StanzaCrossing {
  /** Stanzas for each other node, not sent yet. */
  private readonly outgoing = new Map<string, { items: FrameItem[]; bytes: number }>();
  private outgoingSoon: { timer: NodeJS.Timeout } | { immediate: NodeJS.Immediate } | null = null;
  /** performance.now() of the last frames sent at the end of a turn or window. */
  private lastFlush = -Infinity;
  private nextDeliveryId = 1;
  /** In the order sent, so the oldest is first. */
  private readonly awaiting = new Map<number, Awaiting>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private readonly owed = new Map<string, Owed>();
  private owedSoon: NodeJS.Timeout | null = null;
  /** Messages already sent on to other resources once after a failed delivery: a second failure stores them. */
  private readonly rerouted = new WeakSet<Element>();

  constructor(
    private readonly host: CrossingHost,
    private readonly config: ClusterConfig,
    private readonly subjects: Subjects,
    private readonly log: Logger,
  ) {}

  /** Listens for what other nodes send: frames, NATS's word that a frame found nobody, and the previous protocols. */
  listen(on: (subject: string, what: string, handle: (msg: Msg) => void) => void): void {
    const s = this.subjects;
    const node = this.host.node;
    on(s.frames(node), 'frames', (msg) => this.onFrame(msg));
    on(s.unreached(node), 'unreached', (msg) => this.onUnreached(msg));
    on(s.stanzas(node), 'stanzas', (msg) => this.onStanzas(msg));
    on(s.stanza(node), 'stanza', (msg) => this.onStanza(msg));
  }

  // ---- sending ----

  send(session: RemoteSession, stanza: Element): void {
    const item: FrameItem = { id: 0, to: session.jid.full, sid: session.id, xml: stanza.toString() };
    const iq = stanza.name === 'iq' && (stanza.attrs.type === 'get' || stanza.attrs.type === 'set');
    // A message stays this node's responsibility until the recipient's node confirms it delivered it;
    // a request its resource will never see gets its error at once (RFC 6120 8.5.3.1), not at the asker's timeout.
    if (stanza.name === 'message' || iq) {
      item.id = this.nextDeliveryId++;
      this.awaiting.set(item.id, this.rerouted.has(stanza) ? { session, xml: item.xml, stanza, iq, at: performance.now() } : { session, xml: item.xml, iq, at: performance.now() });
      if (!this.sweepTimer) this.sweepIn(this.config.deliveryTimeout);
    }
    let out = this.outgoing.get(session.node);
    if (!out) this.outgoing.set(session.node, (out = { items: [], bytes: 0 }));
    out.items.push(item);
    out.bytes += item.xml.length + item.to.length + 64;
    if (out.bytes > FRAME_MAX_BYTES) this.sendTo(session.node);
    // What this turn of the event loop routes goes as one frame per node at the end of the turn (a
    // busy node reads many sockets in a turn); but frames go at most one per `batchWindow`, so under
    // a steady flow of messages one frame carries what the window gathered, while a message after a
    // quiet moment goes at once.
    else if (!this.outgoingSoon) {
      const wait = this.lastFlush + this.config.batchWindow - performance.now();
      this.outgoingSoon = wait >= 1 ? { timer: setTimeout(() => this.flushOutgoing(), wait) } : { immediate: setImmediate(() => this.flushOutgoing()) };
    }
  }

  /** Sends what is gathered and what is owed, now (the node leaves, or a session there is closed). */
  flush(): void {
    this.flushOutgoing();
    this.flushOwed();
  }

  /** Sends what is gathered for `node` now: what was sent to one of its sessions goes before a close. */
  flushTo(node: string): void {
    this.sendTo(node);
  }

  stop(): void {
    this.flush();
    if (this.sweepTimer) clearTimeout(this.sweepTimer);
    this.sweepTimer = null;
  }

  private flushOutgoing(): void {
    const soon = this.outgoingSoon;
    if (soon && 'timer' in soon) clearTimeout(soon.timer);
    else if (soon) clearImmediate(soon.immediate);
    this.outgoingSoon = null;
    if (this.outgoing.size === 0) return;
    this.lastFlush = performance.now();
    for (const node of [...this.outgoing.keys()]) this.sendTo(node);
  }

  private flushOwed(): void {
    if (this.owedSoon) clearTimeout(this.owedSoon);
    this.owedSoon = null;
    for (const node of [...this.owed.keys()]) this.sendTo(node);
  }

  /** One frame to `node`: the stanzas gathered for it and the confirmations owed to it. */
  private sendTo(node: string): void {
    const out = this.outgoing.get(node);
    const owed = this.owed.get(node);
    if (!out && !owed) return;
    this.outgoing.delete(node);
    let items = out?.items ?? [];
    if (items.length > 0 && !this.host.takesFrames(node)) {
      this.sendBatch(node, items);
      items = [];
    }
    if (owed) {
      this.owed.delete(node);
      if (this.owed.size === 0 && this.owedSoon) {
        clearTimeout(this.owedSoon);
        this.owedSoon = null;
      }
    }
    if (items.length === 0 && !owed) return;
    let first = 0;
    let last = 0;
    for (const i of items) {
      if (i.id === 0) continue;
      if (first === 0) first = i.id;
      last = i.id;
    }
    const nc = this.host.nats();
    const subject = this.subjects.frames(node);
    try {
      if (!nc) throw new Error('not connected');
      const header: Omit<FrameHeader, 'items'> = owed ? { node: this.host.node, epoch: this.host.epoch, confirm: owed } : { node: this.host.node, epoch: this.host.epoch };
      // The reply subject is never answered by the node: nats-server answers it with a 503 when
      // nobody listens there (onUnreached).
      nc.publish(subject, encodeFrame(header, items), first === 0 ? undefined : { reply: this.subjects.unreached(this.host.node, node, first, last) });
    } catch (err) {
      this.log.warn('cluster: publish failed', { subject, error: err instanceof Error ? err.message : String(err) });
      if (first !== 0) this.unreached(node, first, last);
    }
  }

  /** A 503 from nats-server: the frame with the ids first..last found nobody listening on its node (dead, stopped). */
  private onUnreached(msg: Msg): void {
    if (msg.headers?.code !== 503) return;
    const parts = msg.subject.split('.');
    const [node, first, last] = parts.slice(-3);
    if (node !== undefined) this.unreached(node, Number(first), Number(last));
  }

  private unreached(node: string, first: number, last: number): void {
    if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last)) return;
    for (let id = first; id <= last; id++) if (this.awaiting.get(id)?.session.node === node) this.settle(id, 'no answer');
  }

  /** Falls back for what waited `deliveryTimeout` unconfirmed; one timer, for the oldest. */
  private sweep(): void {
    this.sweepTimer = null;
    const now = performance.now();
    for (const [id, a] of this.awaiting) {
      const due = a.at + this.config.deliveryTimeout;
      if (due > now) {
        this.sweepIn(due - now);
        return;
      }
      this.settle(id, 'no answer');
    }
  }

  private sweepIn(ms: number): void {
    if (this.sweepTimer) clearTimeout(this.sweepTimer);
    this.sweepTimer = setTimeout(() => this.sweep(), Math.max(1, Math.ceil(ms)));
    this.sweepTimer.unref();
  }

  /** Confirmations from `node` for this run's stanzas. */
  private confirmed(node: string, c: NonNullable<FrameHeader['confirm']>): void {
    if (c.epoch !== this.host.epoch) return;
    for (const id of c.delivered) if (this.awaiting.get(id)?.session.node === node) this.awaiting.delete(id);
    for (const id of c.gone) if (this.awaiting.get(id)?.session.node === node) this.settle(id, 'gone');
  }

  // ---- receiving ----

  /** Stanzas (and confirmations) from another node: each stanza is delivered or found gone on its own; what became of them is owed back. */
  private onFrame(msg: Msg): void {
    const { header, xml, items } = decodeFrame(msg.data);
    if (header.confirm) this.confirmed(header.node, header.confirm);
    if (items.length === 0 || !this.host.trusted()) return;
    // All with one parser; should one of them not parse, each on its own (that one then not delivered).
    let parsed = parseXmlElements(xml, NS.client);
    if (parsed?.length !== items.length) parsed = null;
    const delivered: number[] = [];
    const gone: number[] = [];
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      let ok = false;
      try {
        ok = this.deliverElement(item.to, parsed ? parsed[i]! : parseXmlText(item.bytes.toString('utf8'), NS.client));
      } catch (err) {
        // Not confirmed: the sending node falls back, as for a node that did not answer.
        this.log.error('cluster: handling failed', { what: 'stanza', error: err instanceof Error ? err.message : String(err) });
        continue;
      }
      if (item.id !== 0) (ok ? delivered : gone).push(item.id);
    }
    if (delivered.length === 0 && gone.length === 0) return;
    // Written to a session with stream management: confirmed once its journal has it.
    const stored = this.host.journal()?.stored();
    if (!stored) this.owe(header.node, header.epoch, delivered, gone);
    else void stored.then(() => this.owe(header.node, header.epoch, delivered, gone));
  }

  private owe(node: string, epoch: string, delivered: number[], gone: number[]): void {
    let o = this.owed.get(node);
    // Owed to an earlier run of that node: nobody waits for them any more.
    if (!o || o.epoch !== epoch) this.owed.set(node, (o = { epoch, delivered: [], gone: [] }));
    for (const id of delivered) o.delivered.push(id);
    for (const id of gone) o.gone.push(id);
    if (o.delivered.length + o.gone.length > MAX_OWED) this.sendTo(node);
    else if (!this.owedSoon) {
      this.owedSoon = setTimeout(() => this.flushOwed(), CONFIRM_DELAY_MS);
      this.owedSoon.unref();
    }
  }

  private deliverHere(item: StanzaForSession): boolean {
    return this.deliverElement(item.to, this.host.registry.localSession(item.to) ? parseXmlText(item.xml, NS.client) : null);
  }

  private deliverElement(to: string, el: Element | null): boolean {
    const session = this.host.registry.localSession(to);
    if (!session || !el) return false;
    session.send(el);
    return true;
  }

  // ---- what was not confirmed ----

  /** A delivery its node did not confirm ('gone': it has no such session; 'no answer': within deliveryTimeout, or nobody listens there) falls back. */
  private settle(id: number, why: 'gone' | 'no answer'): void {
    const a = this.awaiting.get(id);
    if (!a) return;
    this.awaiting.delete(id);
    // Its node has no such session: the stand-in must not be chosen again (as the top resource of a fallback).
    if (why === 'gone' && this.host.registry.removeRemote(a.session)) this.log.debug('cluster: a stand-in its node did not know removed', { peer: a.session.node });
    const stanza = a.stanza ?? parseXmlText(a.xml, NS.client);
    if (!stanza) return;
    if (a.iq) this.unanswerable(stanza);
    else void this.undelivered(a.session, stanza, why);
  }

  /**
   * A message the recipient's node did not confirm: its other resources get it (RFC 6121 8.5.3.2.1
   * for a resource that is gone), or offline storage keeps it. Copies (carbons) and messages that
   * are never stored are dropped, as for a resource that went away.
   */
  private async undelivered(session: RemoteSession, stanza: Element, why: string): Promise<void> {
    const ctx = this.host.context();
    if (!ctx || this.host.stopping()) return;
    const type = messageType(stanza);
    if (type !== 'chat' && type !== 'normal') return;
    if (stanza.getChild('received', NS_CARBONS) || stanza.getChild('sent', NS_CARBONS)) return;
    const from = Jid.tryParse(stanza.attrs.from);
    if (!from) return;
    this.log.info('cluster: message not confirmed by its node', { peer: session.node, why });
    const failedNode = why === 'gone' ? null : session.node;
    const others = this.rerouted.has(stanza) ? [] : topResources(this.host.registry, session.jid.bare).filter((s) => s !== session && !(s instanceof RemoteSession && s.node === failedNode));
    if (others.length > 0) {
      this.rerouted.add(stanza);
      for (const s of others) s.send(stanza);
      return;
    }
    const to = session.jid.toBare();
    const stored = await ctx.hooks.fire('message/offline', { stanza, from, to, origin: { kind: 'server' } });
    if (!stored) this.log.warn('cluster: an unconfirmed message could not be stored offline', { peer: session.node });
  }

  private unanswerable(iq: Element): void {
    const ctx = this.host.context();
    const from = Jid.tryParse(iq.attrs.from);
    const to = Jid.tryParse(iq.attrs.to);
    if (!ctx || this.host.stopping() || !from || !to) return;
    ctx.router.bounce({ stanza: iq, from, to, origin: { kind: 'server' } }, 'service-unavailable');
  }

  // ---- the previous protocols (a rolling restart) ----

  /**
   * Stanzas for a node of the version before frames: one NATS request per batch, whose reply lists
   * what was delivered and what found no session; what it does not list, or all of it when no reply
   * comes within `deliveryTimeout`, falls back. A node that does not take batches either (nobody
   * listens: the version before batching, or a node that died) gets them one by one.
   */
  private sendBatch(node: string, items: FrameItem[]): void {
    const batchItems: StanzaBatch['items'] = items.map(({ id, ...rest }) => (id === 0 ? rest : { ...rest, id }));
    const subject = this.subjects.stanzas(node);
    const batch: StanzaBatch = { node: this.host.node, epoch: this.host.epoch, items: batchItems };
    const ids = items.flatMap((i) => (i.id === 0 ? [] : [i.id]));
    const nc = this.host.nats();
    if (ids.length === 0) {
      nc?.publish(subject, encode(batch));
      return;
    }
    const unconfirmed = () => {
      for (const id of ids) this.settle(id, 'no answer');
    };
    if (!nc) {
      unconfirmed();
      return;
    }
    try {
      nc.request(subject, encode(batch), { timeout: this.config.deliveryTimeout }).then(
        (reply) => {
          const c = decode<Confirmations>(reply.data);
          for (const id of c.delivered) this.awaiting.delete(id);
          for (const id of c.gone) this.settle(id, 'gone');
          unconfirmed();
        },
        (err: unknown) => {
          if (isNoResponders(err)) this.sendSingly(node, batchItems);
          else unconfirmed();
        },
      );
    } catch (err) {
      this.log.warn('cluster: publish failed', { subject, error: err instanceof Error ? err.message : String(err) });
      unconfirmed();
    }
  }

  /** The stanzas of a batch as nodes before batching take them: one request per message or IQ request. */
  private sendSingly(node: string, items: StanzaBatch['items']): void {
    const nc = this.host.nats();
    const subject = this.subjects.stanza(node);
    for (const { id, ...single } of items) {
      if (id === undefined || !nc) {
        nc?.publish(subject, encode(single));
        if (id !== undefined) this.settle(id, 'no answer');
        continue;
      }
      nc.request(subject, encode(single), { timeout: this.config.deliveryTimeout }).then(
        (reply) => {
          if (text(reply.data) === DELIVERED) this.awaiting.delete(id);
          else this.settle(id, 'gone');
        },
        () => this.settle(id, 'no answer'),
      );
    }
  }

  /** A batch from a node of the version before frames: each stanza is delivered (or found gone) on its own, and the reply confirms them together. */
  private onStanzas(msg: Msg): void {
    if (!this.host.trusted()) return;
    const batch = decode<StanzaBatch>(msg.data);
    const c: Confirmations = { delivered: [], gone: [] };
    for (const item of batch.items) {
      let delivered = false;
      try {
        delivered = this.deliverHere(item);
      } catch (err) {
        this.log.error('cluster: handling failed', { what: 'stanza', error: err instanceof Error ? err.message : String(err) });
        continue;
      }
      if (item.id !== undefined) (delivered ? c.delivered : c.gone).push(item.id);
    }
    if (!msg.reply) return;
    const stored = this.host.journal()?.stored();
    if (!stored) msg.respond(encode(c));
    else void stored.then(() => msg.respond(encode(c)));
  }

  /** One stanza as a node of the version before batching sends it. */
  private onStanza(msg: Msg): void {
    if (!this.host.trusted()) return;
    const delivered = this.deliverHere(decode<StanzaForSession>(msg.data));
    if (!msg.reply) return;
    if (!delivered) {
      msg.respond(NOT_HERE);
      return;
    }
    const stored = this.host.journal()?.stored();
    if (!stored) msg.respond(DELIVERED);
    else void stored.then(() => msg.respond(DELIVERED));
  }
}
