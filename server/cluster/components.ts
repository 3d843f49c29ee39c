/**
 * Components (XEP-0114) across the cluster: a component linked to one node serves every node; the
 * others route its domain there (the nodes tell their components in their heartbeats).
 */
import { NS } from '../../shared/ns.js';
import type { Element } from '../../shared/xml/element.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import type { Logger } from '../../shared/logger.js';
import type { DomainLink } from '../core/router.js';
import type { ComponentStanza, Subjects } from './protocol.js';
import type { NodeBasics, Peer } from './node-host.js';

/** What the components need of their node. */
export interface ComponentsHost extends Pick<NodeBasics, 'context' | 'publish'> {
  readonly peers: ReadonlyMap<string, Peer>;
  /** Tells the others this node's components now. */
  heartbeat(): void;
}

/** A link to a component connected to another node. */
class RemoteComponentLink implements DomainLink {
  constructor(
    readonly node: string,
    private readonly domain: string,
    private readonly cluster: { toComponent(node: string, domain: string, stanza: Element): void },
  ) {}
  send(stanza: Element): void {
    this.cluster.toComponent(this.node, this.domain, stanza);
  }
}

export class Components {
  /** The domains of the components linked to this node. */
  readonly localComponents = new Set<string>();

  constructor(
    private readonly host: ComponentsHost,
    private readonly subjects: Subjects,
    private readonly log: Logger,
  ) {}

  private get ctx() {
    return this.host.context();
  }

  private get peers() {
    return this.host.peers;
  }

  private heartbeat(): void {
    this.host.heartbeat();
  }

  private publish(subject: string, body: unknown): void {
    this.host.publish(subject, body);
  }

  componentLink(domain: string, up: boolean): void {
    if (up) this.localComponents.add(domain);
    else this.localComponents.delete(domain);
    this.heartbeat();
    if (!up) {
      // Linked on another node meanwhile? Route there.
      for (const p of this.peers.values()) if (p.state === 'up' && p.components.has(domain)) this.ctx?.router.setComponentLink(domain, new RemoteComponentLink(p.name, domain, this), true);
    }
  }

  syncComponents(p: Peer, now: Set<string>): void {
    const router = this.ctx?.router;
    if (!router) return;
    const configured = new Set(router.componentDomains());
    for (const d of p.components) {
      if (now.has(d)) continue;
      const link = router.componentLink(d);
      if (link instanceof RemoteComponentLink && link.node === p.name) router.setComponentLink(d, null, true);
    }
    for (const d of now) {
      if (!configured.has(d) || this.localComponents.has(d)) continue;
      const link = router.componentLink(d);
      if (!(link instanceof RemoteComponentLink && link.node === p.name)) router.setComponentLink(d, new RemoteComponentLink(p.name, d, this), true);
    }
    p.components = now;
  }

  toComponent(node: string, domain: string, stanza: Element): void {
    this.publish(this.subjects.component(node), { domain, xml: stanza.toString() } satisfies ComponentStanza);
  }

  onComponentStanza(m: ComponentStanza): void {
    const link = this.ctx?.router.componentLink(m.domain);
    const el = parseXmlText(m.xml, NS.client);
    if (!link || link instanceof RemoteComponentLink || !el) {
      this.log.debug('cluster: stanza for a component not linked here', { domain: m.domain });
      return;
    }
    link.send(el);
  }
}
