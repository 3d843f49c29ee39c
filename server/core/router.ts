import { Element } from '../../shared/xml/element.js';
import { Jid } from '../../shared/jid.js';
import type { Logger } from '../../shared/logger.js';
import type { Clock } from '../../shared/clock.js';
import { HookBus, type Origin, type StanzaEvent } from './hooks.js';
import type { ClientSession, SessionRegistry } from './session.js';
import { errorReply, type ErrorType } from '../../shared/xml/stanza-errors.js';
import { randomBytes } from 'node:crypto';
import type { ClusterRouting } from './cluster.js';

export interface DeliveryFailure {
  at: Date;
  from: string;
  to: string;
  kind: string;
  condition: string;
}

declare module './hooks.js' {
  interface HookEvents {
    /** A local user's stanza could not be delivered (P8: addresses and condition only). */
    'delivery/failed': DeliveryFailure;
    /**
     * Every routed stanza, before any other handler (blocking, spam filters). A handler that
     * returns true has dealt with it (answered or dropped it); nothing else sees it.
     */
    'stanza/filter': StanzaEvent;
  }
}

/** Presence types that are dropped rather than bounced when their recipient cannot be reached. */
const SILENT_PRESENCE = new Set(['unavailable', 'probe', 'error']);

export type Target = 'host' | 'bare' | 'full' | 'remote';

/** A connected external entity serving a domain (a XEP-0114 component; later s2s links too). */
export interface DomainLink {
  send(stanza: Element): void;
}

/**
 * Moves stanzas between streams. Knows addresses and the hook bus, not features: every
 * decision about what a stanza means is made by a module handling the fired event.
 */
export class Router {
  /** Requests waiting for their answer, by id, with who asked (`from`) and who must answer (`to`). */
  private readonly pendingIq = new Map<string, { resolve: (el: Element) => void; timer: NodeJS.Timeout; from: string; to: string }>();
  /** Component domains: configured ones map to their link, or null while it is down. */
  private readonly components = new Map<string, DomainLink | null>();
  /** Domains a module of this server serves itself (the MUC service): federation treats them as local. */
  private readonly serviceDomains = new Set<string>();
  /** Set in cluster mode (server/cluster/); null on a single node. */
  cluster: ClusterRouting | null = null;

  constructor(
    readonly hosts: ReadonlySet<string>,
    readonly sessions: SessionRegistry,
    readonly hooks: HookBus,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    hooks.on('iq/full', (e) => this.deliverIqToFull(e), 'fallback');
    hooks.on('iq/host', (e) => this.answerUnhandledIq(e), 'fallback');
    hooks.on('iq/bare', (e) => this.answerUnhandledIq(e), 'fallback');
    // Modules see stanzas to other domains first (roster, directed presence, carbons); what is
    // left goes out to a component or a remote server here.
    hooks.on('iq/remote', (e) => this.toOtherDomain(e), 'fallback');
    hooks.on('message/remote', (e) => this.toOtherDomain(e), 'fallback');
    hooks.on('presence/remote', (e) => this.toOtherDomain(e), 'fallback');
  }

  isLocalHost(domain: string): boolean {
    return this.hosts.has(domain);
  }

  /**
   * Declares a domain that a module of this server answers for (its handlers take the stanzas
   * addressed to it at the 'handle' phase of '<kind>/remote'), so that other servers may send to
   * it and it may send to them, as for a host.
   */
  addServiceDomain(domain: string): void {
    this.serviceDomains.add(domain);
  }

  removeServiceDomain(domain: string): void {
    this.serviceDomains.delete(domain);
  }

  isServiceDomain(domain: string): boolean {
    return this.serviceDomains.has(domain);
  }

  /** Declares a component domain; stanzas to it (and its subdomains) bounce until it connects. */
  addComponentDomain(domain: string): void {
    if (!this.components.has(domain)) this.components.set(domain, null);
  }

  /** Forgets a component domain (removed by a reload): its stanzas go where other domains' go. */
  removeComponentDomain(domain: string): void {
    this.components.delete(domain);
  }

  /**
   * Attaches (or with null detaches) the live link of a component domain. In a cluster the other
   * nodes hear of this node's links (`remote`: a link to another node's component, set by the cluster).
   */
  setComponentLink(domain: string, link: DomainLink | null, remote = false): void {
    if (link === null && !this.components.has(domain)) return;
    this.components.set(domain, link);
    if (!remote) this.cluster?.componentLink(domain, link !== null);
  }

  /** The live link of a component domain, if any. */
  componentLink(domain: string): DomainLink | null {
    return this.components.get(domain) ?? null;
  }

  /** How many configured component domains have a live link now. */
  connectedComponents(): number {
    let n = 0;
    for (const link of this.components.values()) if (link) n++;
    return n;
  }

  componentDomains(): string[] {
    return [...this.components.keys()];
  }

  /** The component domain serving `domain` (itself or a parent), if any. */
  componentFor(domain: string): string | undefined {
    for (let d = domain; ; ) {
      if (this.components.has(d)) return d;
      const dot = d.indexOf('.');
      if (dot < 0) return undefined;
      d = d.slice(dot + 1);
    }
  }

  targetOf(to: Jid): Target {
    if (!this.hosts.has(to.domain)) return 'remote';
    if (!to.local) return 'host';
    return to.resource ? 'full' : 'bare';
  }

  /**
   * Routes a stanza whose 'from' the caller has already made trustworthy. `to` defaults to the
   * sender's bare JID when the stanza has none (RFC 6120 10.3).
   */
  async route(stanza: Element, from: Jid, origin: Origin): Promise<void> {
    const toAttr = stanza.attrs.to;
    let to: Jid | null;
    if (toAttr === undefined) {
      to = from.toBare();
    } else {
      to = Jid.tryParse(toAttr);
      if (!to) {
        const reply = errorReply(stanza, 'jid-malformed');
        if (reply && origin.kind === 'c2s') {
          delete reply.attrs.from;
          origin.session.send(reply);
        }
        return;
      }
    }
    const event: StanzaEvent = { stanza, from, to, origin };
    if (this.hooks.has('stanza/filter') && (await this.hooks.fire('stanza/filter', event))) return;
    const target = this.targetOf(to);
    const kind = stanza.name;
    if (kind === 'iq') {
      const type = stanza.attrs.type;
      if (type === 'get' || type === 'set') {
        const child = stanza.firstElement();
        if (child && (await this.hooks.fire(`iq-${type}/${target}/${child.xmlns ?? ''}:${child.name}`, event))) return;
      } else if ((type === 'result' || type === 'error') && (target === 'host' || target === 'bare')) {
        if (this.resolvePending(stanza, from, to)) return;
        if (this.cluster?.forwardAnswer(stanza, from, to)) return;
      }
    }
    await this.hooks.fire(`${kind as 'message' | 'presence' | 'iq'}/${target}`, event);
  }

  /** Sends a server-generated stanza (from a local host or account) to its recipient. */
  async send(stanza: Element): Promise<void> {
    const from = Jid.tryParse(stanza.attrs.from);
    if (!from) throw new Error('server stanza without a valid from');
    await this.route(stanza, from, { kind: 'server' });
  }

  /**
   * Sends an IQ from the server, a local host or (on its behalf) a local account's bare JID, and
   * waits for its result or error (null on timeout). Only an answer from the entity asked, to the
   * address that asked, counts: another entity cannot answer in its place by guessing the id.
   */
  request(iq: Element, timeoutMs = 30_000): Promise<Element | null> {
    const from = Jid.tryParse(iq.attrs.from);
    const to = Jid.tryParse(iq.attrs.to);
    if (!from || !to) return Promise.reject(new Error('request needs a valid from and to'));
    const id = iq.attrs.id ?? (iq.attrs.id = (this.cluster?.iqIdPrefix ?? 'gh-') + randomBytes(9).toString('hex'));
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pendingIq.delete(id);
        resolve(null);
      }, timeoutMs);
      timer.unref?.();
      this.pendingIq.set(id, { resolve, timer, from: from.full, to: to.full });
      this.send(iq).catch((err) => this.log.error('request failed', { error: String(err) }));
    });
  }

  /** Hands an answer to the request waiting for it here (one forwarded by another cluster node); false if none does. */
  resolvePending(stanza: Element, from: Jid, to: Jid): boolean {
    const id = stanza.attrs.id;
    const pending = id ? this.pendingIq.get(id) : undefined;
    if (!pending || !id || pending.to !== from.full || pending.from !== to.full) return false;
    this.pendingIq.delete(id);
    clearTimeout(pending.timer);
    pending.resolve(stanza);
    return true;
  }

  /** Hands a stanza to one bound resource. */
  deliver(session: ClientSession, stanza: Element): void {
    session.send(stanza);
  }

  /**
   * Answers a stanza with an error (unless it is one) and records the failure when a local
   * user was the sender (P8). Returns true so handlers can `return router.bounce(...)`.
   */
  bounce(event: StanzaEvent, condition: string, text?: string, type?: ErrorType): true {
    const { stanza, from, to } = event;
    if (stanza.attrs.type === 'error') return true;
    if (this.hosts.has(from.domain) && from.local) {
      void this.hooks.emit('delivery/failed', { at: this.clock.now(), from: from.bare, to: to.full, kind: stanza.name, condition });
    }
    const reply = errorReply(stanza, condition, text, type);
    if (!reply) return true;
    reply.attrs.from = to.full;
    reply.attrs.to = from.full;
    this.send(reply).catch((err) => this.log.error('bounce failed', { error: String(err) }));
    return true;
  }

  private toOtherDomain(event: StanzaEvent): true {
    const component = this.components.size ? this.componentFor(event.to.domain) : undefined;
    if (component === undefined) {
      // Federation is not built yet: presence is dropped, the rest bounces.
      return event.stanza.name === 'presence' ? true : this.bounce(event, 'remote-server-not-found');
    }
    const link = this.components.get(component);
    if (link) link.send(event.stanza);
    else if (!SILENT_PRESENCE.has(event.stanza.name === 'presence' ? (event.stanza.attrs.type ?? '') : '-')) this.bounce(event, 'service-unavailable', 'the service is not connected');
    return true;
  }

  private deliverIqToFull(event: StanzaEvent): boolean {
    const session = this.sessions.get(event.to.full);
    if (session) {
      this.deliver(session, event.stanza);
      return true;
    }
    const type = event.stanza.attrs.type;
    if (type === 'get' || type === 'set') return this.bounce(event, 'service-unavailable');
    return true;
  }

  private answerUnhandledIq(event: StanzaEvent): boolean {
    const type = event.stanza.attrs.type;
    if (type === 'get' || type === 'set') {
      const child = event.stanza.firstElement();
      const condition = child ? 'service-unavailable' : 'bad-request';
      const reply = errorReply(event.stanza, condition);
      if (reply) {
        reply.attrs.from = event.stanza.attrs.to;
        reply.attrs.to = event.from.full;
        if (reply.attrs.from === undefined) delete reply.attrs.from;
        this.send(withFrom(reply, event)).catch(() => {});
      }
    }
    return true;
  }
}

/** Server replies need a from: the addressed entity, or the sender's account for IQs without 'to'. */
function withFrom(reply: Element, event: StanzaEvent): Element {
  if (!reply.attrs.from) reply.attrs.from = event.to.full;
  return reply;
}
