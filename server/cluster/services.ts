/**
 * What modules use of the cluster to share work (ClusterService in core/cluster.ts): services owned
 * per node (ownerOf, forward, serve), questions to every node (ask, answer), cache invalidations,
 * and IQ answers that belong to another node's request.
 */
import { createHash } from 'node:crypto';
import type { Msg } from '@nats-io/transport-node';
import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import type { Element } from '../../shared/xml/element.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import type { Logger } from '../../shared/logger.js';
import { NOT_SERVED, TAKEN, decode, encode, isNoResponders, text, type ServiceStanza, type Subjects } from './protocol.js';
import type { NodeBasics, NodeLinks, Peer } from './node-host.js';
import type { ClusterConfig } from './types.js';

/** What the services need of their node. */
export interface ServicesHost extends Pick<NodeBasics, 'node' | 'context' | 'publish'>, NodeLinks {
  readonly peers: ReadonlyMap<string, Peer>;
}

export class NodeServices {
  private readonly services = new Map<string, (stanza: Element, from: Jid, to: Jid) => void>();
  private readonly invalidations = new Map<string, Set<(key: string) => void>>();
  private readonly answerers = new Map<string, (body: unknown) => unknown>();

  constructor(
    private readonly host: ServicesHost,
    private readonly config: ClusterConfig,
    private readonly subjects: Subjects,
    private readonly log: Logger,
  ) {}

  private get node() {
    return this.host.node;
  }

  private get ctx() {
    return this.host.context();
  }

  private get nc() {
    return this.host.connection();
  }

  private get leases() {
    return this.host.leases();
  }

  private get peers() {
    return this.host.peers;
  }

  private publish(subject: string, body: unknown): void {
    this.host.publish(subject, body);
  }

  private guard(what: string, fn: () => void | Promise<void>): void {
    this.host.guard(what, fn);
  }

  // ---- IQ answers to another node's requests ----

  forwardAnswer(stanza: Element, from: Jid, to: Jid): boolean {
    const id = stanza.attrs.id;
    if (!id || !id.startsWith('gh-')) return false;
    const colon = id.indexOf(':');
    if (colon < 0) return false;
    const node = id.slice(3, colon);
    if (node === this.node) return false;
    this.publish(this.subjects.answer(node), { xml: stanza.toString(), from: from.full, to: to.full });
    return true;
  }

  onAnswer(m: { xml: string; from: string; to: string }): void {
    const el = parseXmlText(m.xml, NS.client);
    const from = Jid.tryParse(m.from);
    const to = Jid.tryParse(m.to);
    if (el && from && to) this.ctx?.router.resolvePending(el, from, to);
  }

  // ---- services owned per node ----

  ownerOf(service: string, key: string): string {
    const score = (node: string) => createHash('sha1').update(`${service}\u0000${key}\u0000${node}`).digest().readUInt32BE(0);
    let best = this.node;
    let bestScore = score(this.node);
    for (const p of this.peers.values()) {
      if (p.state !== 'up') continue;
      const sc = score(p.name);
      if (sc > bestScore || (sc === bestScore && p.name < best)) {
        best = p.name;
        bestScore = sc;
      }
    }
    return best;
  }

  forward(node: string, service: string, stanza: Element, from: Jid, to: Jid, untaken?: () => void): void {
    if (!untaken) return this.publish(this.subjects.service(node), { service, xml: stanza.toString(), from: from.full, to: to.full } satisfies ServiceStanza);
    void this.forwardConfirmed(node, service, stanza, from, to).then((taken) => {
      if (taken) return;
      this.log.info('cluster: a stanza for a service not taken by its node', { peer: node, service });
      this.guard('service fallback', untaken);
    });
  }

  /**
   * A request on `P.node.NAME.served`, answered once the service there took the stanza. Not taken:
   * not served there (not loaded yet, held back, stopping, its lease in doubt), no answer within
   * deliveryTimeout, or nobody listening (a node that died). A node of the version before
   * confirmations (a rolling restart) does not listen there: it gets the stanza on the old subject
   * and takes it without answering (its silence counts as taken).
   */
  forwardConfirmed(node: string, service: string, stanza: Element, from: Jid, to: Jid): Promise<boolean> {
    const nc = this.nc;
    if (!nc || nc.isClosed()) return Promise.resolve(false);
    const data = encode({ service, xml: stanza.toString(), from: from.full, to: to.full } satisfies ServiceStanza);
    const timeout = this.config.deliveryTimeout;
    try {
      return nc.request(this.subjects.served(node), data, { timeout }).then(
        (reply) => text(reply.data) === TAKEN,
        (err: unknown) => {
          if (!isNoResponders(err)) return false;
          return nc.request(this.subjects.service(node), data, { timeout }).then(
            (reply) => text(reply.data) !== NOT_SERVED,
            (again: unknown) => !isNoResponders(again),
          );
        },
      );
    } catch {
      return Promise.resolve(false);
    }
  }

  serve(service: string, handler: (stanza: Element, from: Jid, to: Jid) => void): () => void {
    this.services.set(service, handler);
    return () => {
      if (this.services.get(service) === handler) this.services.delete(service);
    };
  }

  /** Whether the service took the stanza. */
  private takeServiceStanza(m: ServiceStanza): boolean {
    const handler = this.services.get(m.service);
    const el = parseXmlText(m.xml, NS.client);
    const from = Jid.tryParse(m.from);
    const to = Jid.tryParse(m.to);
    if (!handler || !el || !from || !to) {
      this.log.warn('cluster: a stanza for a service not served here', { service: m.service });
      return false;
    }
    handler(el, from, to);
    return true;
  }

  /** A stanza forwarded without confirmation (forward without `untaken`), or the request of a node's fallback for older nodes. */
  onServiceStanza(msg: Msg): void {
    const taken = this.takeServiceStanza(decode<ServiceStanza>(msg.data));
    if (msg.reply) msg.respond(taken ? TAKEN : NOT_SERVED);
  }

  /** A service stanza whose sender waits to know whether it was taken (forwardConfirmed). */
  onServed(msg: Msg): void {
    // Possibly declared dead already (fencing.ts): what it owned may have moved; the sender decides
    // again (a room's new owner) or handles the stanza itself (its own s2s link).
    const taken = this.leases?.trusted() !== false && this.takeServiceStanza(decode<ServiceStanza>(msg.data));
    if (msg.reply) msg.respond(taken ? TAKEN : NOT_SERVED);
  }

  // ---- cache invalidations ----

  invalidate(topic: string, key: string): void {
    this.publish(this.subjects.invalidate, { node: this.node, topic, key });
  }

  onInvalidate(topic: string, handler: (key: string) => void): () => void {
    let set = this.invalidations.get(topic);
    if (!set) this.invalidations.set(topic, (set = new Set()));
    set.add(handler);
    return () => set.delete(handler);
  }

  onInvalidation(m: { node: string; topic: string; key: string }): void {
    if (m.node === this.node) return;
    for (const handler of this.invalidations.get(m.topic) ?? []) handler(m.key);
  }

  // ---- questions to every node ----

  ask(topic: string, body: unknown): Promise<{ node: string; answer: unknown }[]> {
    const own = this.answerers.get(topic);
    const mine = own ? Promise.resolve(own(body)).then((answer) => [{ node: this.node, answer }]) : Promise.resolve([]);
    const nc = this.nc;
    const others = [...this.peers.values()]
      .filter((p) => p.state === 'up')
      .map((p) =>
        !nc || nc.isClosed()
          ? Promise.resolve([])
          : nc.request(this.subjects.ask(p.name), encode({ topic, body }), { timeout: this.config.deliveryTimeout }).then(
              (reply) => {
                const r = decode<{ answer?: unknown }>(reply.data);
                return 'answer' in r ? [{ node: p.name, answer: r.answer }] : [];
              },
              () => [],
            ),
      );
    return Promise.all([mine, ...others]).then((parts) => parts.flat());
  }

  answer(topic: string, handler: (body: unknown) => unknown): () => void {
    this.answerers.set(topic, handler);
    return () => {
      if (this.answerers.get(topic) === handler) this.answerers.delete(topic);
    };
  }

  async onAsk(msg: Msg): Promise<void> {
    const m = decode<{ topic: string; body: unknown }>(msg.data);
    const handler = this.answerers.get(m.topic);
    if (!msg.reply) return;
    if (!handler) {
      msg.respond(encode({}));
      return;
    }
    try {
      msg.respond(encode({ answer: await handler(m.body) }));
    } catch (err) {
      this.log.warn('cluster: answering a question failed', { topic: m.topic, error: String(err).slice(0, 200) });
      msg.respond(encode({}));
    }
  }
}
