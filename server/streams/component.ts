/**
 * XEP-0114 (Jabber Component Protocol 1.6), the accept side: external components such as the
 * transports connect to the server, authenticate with a shared secret and then exchange stanzas
 * for their domain (and its subdomains) through the router.
 *
 * The exchange, byte for byte:
 *   component: <stream:stream xmlns='jabber:component:accept' xmlns:stream='…' to='gw.example.org'>
 *   server:    <stream:stream xmlns='jabber:component:accept' xmlns:stream='…' id='<random>' from='gw.example.org'>
 *   component: <handshake>lowercase hex SHA-1(id + secret)</handshake>
 *   server:    <handshake/>                       (or <not-authorized/> stream error)
 * No stream features and no 'version' in the reply: XEP-0114 predates them, and real components
 * (xmpp.js, slixmpp, Slidge, Spectrum) wait for <handshake/> as the next element.
 *
 * Decisions:
 * - 'to' must name a domain in config.components, else host-unknown (also when 'to' is missing),
 *   as Prosody does. The stream namespace must be jabber:component:accept (invalid-namespace).
 * - The handshake is compared in constant time over the decoded 20-byte digests; hex is
 *   accepted in either case (the XEP says lowercase; decoding both costs nothing). The secret is
 *   hashed as UTF-8. A wrong handshake is a not-authorized stream error and an 'auth/failed'
 *   event (P7: a failed authentication, with the component domain as host and no username).
 *   'auth/before' guards may refuse the attempt (policy-violation) like for clients.
 * - A second connection for a domain whose link is live gets a conflict stream error once its
 *   handshake is correct; the old link stays. This is Prosody's default ("kick_new"): a running
 *   transport is not cut off by a stray second instance (or a restarted one racing the old), and
 *   nobody without the secret can even learn whether the component is connected (the conflict
 *   only comes after a correct handshake). A restarted component whose old TCP connection is not
 *   yet seen dead retries (xmpp.js and slixmpp reconnect on their own).
 * - Stanzas from the component: message, presence and iq only, in jabber:component:accept (or
 *   jabber:client, which some libraries write), else unsupported-stanza-type.
 *   'from' must be present and its domain must be served by this component (its domain or a
 *   subdomain, unless a more specific component or a local host owns that subdomain), else
 *   invalid-from: a component may never speak for local users or other services. 'from' is
 *   normalised (RFC 7622) before routing, as c2s stamps its normalised JID.
 *   'to' must be present and a valid JID, else improper-addressing: the component link is a
 *   trusted server-like link, and RFC 6120 4.9.3.14 names exactly this condition for a
 *   server-to-server stanza without 'to' or with an invalid one. (Prosody answers a stanza error
 *   instead; a component that cannot address its stanzas is broken, and a clear stream error in
 *   its log is more useful than silently bounced stanzas.)
 * - Namespaces: stanzas are routed with xmlns='jabber:client' (local clients receive client
 *   stanzas; children that inherit the namespace follow). Stanzas written to the component lose
 *   their jabber:client / jabber:server xmlns (on the stanza and on direct children that repeat
 *   it, as cloned error payloads do) and so inherit the stream's jabber:component:accept. That
 *   substitution builds shallow copies for serialisation only; the routed stanza is never
 *   changed, since the same element may also go to other recipients.
 * - Limits: the c2s parser limits (pre-auth stanza size until the handshake, then the post-auth
 *   size), parser errors become the same stream errors as on c2s, unauthenticated connections
 *   time out after c2s.authTimeout. Links idle in our direction for c2s.idlePingAfter get a
 *   whitespace keepalive; the component may send whitespace too. A component that stops reading
 *   is disconnected once COMPONENT_SEND_BUFFER_FACTOR × c2s.maxSendBuffer bytes wait for it (a
 *   component carries many users' traffic, so it gets more room than one client).
 * - No TLS: XEP-0114 has none. The secret never crosses the wire (only its hash with the
 *   per-stream id), but stanzas do in clear, so the listener belongs on loopback; binding it
 *   elsewhere logs a warning. The listener only opens when at least one component is configured.
 * - No secret, handshake value or stanza content is ever logged.
 */
import type { Socket } from 'node:net';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Element } from '../../shared/xml/element.js';
import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import { XmlStreamParser, type ParserErrorCondition } from '../../shared/xml/stream-parser.js';
import { ConnectionLimits, listen, rejectionLogger, type BoundListener } from '../net/listeners.js';
import type { ServerContext } from '../core/context.js';
import type { DomainLink } from '../core/router.js';
import { errorReply } from '../../shared/xml/stanza-errors.js';
import { streamErrorXml } from './stream-error.js';
import type { AuthAttempt } from './c2s.js';

declare module '../core/hooks.js' {
  interface HookEvents {
    /** A component completed its handshake; stanzas for its domain now reach it. */
    'component/connected': { domain: string; ip: string; at: Date };
    /** A component's link went down; stanzas for its domain bounce until it is back. */
    'component/disconnected': { domain: string; at: Date; condition?: string };
  }
}

/** Open connections to the component listeners together (documented with listen.components). */
export const COMPONENT_MAX_CONNECTIONS = 32;

/** A component may have this many times a client's send buffer waiting before it is dropped. */
export const COMPONENT_SEND_BUFFER_FACTOR = 8;

const STANZA_NAMES = new Set(['message', 'presence', 'iq']);

type State = 'awaiting-stream' | 'handshake' | 'ready' | 'closed';

/** Shared by the component streams of all component listeners of one server. */
export interface ComponentEnvironment {
  ctx: ServerContext;
  /** Streams that completed their handshake, by component domain. */
  links: Map<string, ComponentStream>;
  /** Every open component stream, for the idle sweep and shutdown. */
  streams: Set<ComponentStream>;
}

/** The expected handshake digest: SHA-1 over the stream id followed by the secret (UTF-8). */
export function handshakeDigest(streamId: string, secret: string): Buffer {
  return createHash('sha1').update(streamId + secret, 'utf8').digest();
}

/** Whether `text` is the hex handshake for this stream and secret; constant time in the secret. */
export function verifyHandshake(streamId: string, secret: string, text: string): boolean {
  const expected = handshakeDigest(streamId, secret);
  const given = text.trim();
  const wellFormed = /^[0-9a-fA-F]{40}$/.test(given);
  // Compare equal-length buffers whatever was sent, so timing tells nothing about the digest.
  const received = wellFormed ? Buffer.from(given, 'hex') : Buffer.alloc(expected.length);
  return timingSafeEqual(expected, received) && wellFormed;
}

function isStanzaNamespace(ns: string | undefined): boolean {
  return ns === NS.client || ns === NS.server;
}

/**
 * A shallow stand-in for `el` whose stanza namespace is left to the component stream's default
 * (jabber:component:accept): no xmlns on the stanza or on direct children that repeat
 * jabber:client / jabber:server. Children are shared, not re-parented; use it only to serialise.
 */
export function forComponentWire(stanza: Element): Element {
  let children = stanza.children;
  for (let i = 0; i < children.length; i++) {
    const child = children[i]!;
    if (typeof child === 'string' || !isStanzaNamespace(child.attrs.xmlns)) continue;
    if (children === stanza.children) children = children.slice();
    children[i] = withoutXmlns(child, child.children);
  }
  if (!isStanzaNamespace(stanza.attrs.xmlns) && children === stanza.children) return stanza;
  return withoutXmlns(stanza, children);
}

function withoutXmlns(el: Element, children: Element['children']): Element {
  const copy = new Element(el.name);
  const { xmlns: _omitted, ...attrs } = el.attrs;
  copy.attrs = attrs;
  copy.children = children;
  return copy;
}

/** One connection from an external component. */
export class ComponentStream implements DomainLink {
  /** The stream id, also the handshake salt: 128 random bits. */
  readonly id = randomBytes(16).toString('hex');
  readonly startedAt: Date;
  readonly counters = { stanzasIn: 0, stanzasOut: 0, bytesIn: 0, bytesOut: 0 };
  /** The component domain, once the header named a configured one. */
  domain = '';
  private state: State = 'awaiting-stream';
  private secret = '';
  private readonly parser: XmlStreamParser;
  private headerSent = false;
  private linked = false;
  private closedNotified = false;
  private readonly openedAt = Date.now();
  private lastWrite = Date.now();
  private busy: Promise<void> = Promise.resolve();

  constructor(
    private readonly env: ComponentEnvironment,
    private readonly socket: Socket,
    readonly ip: string,
  ) {
    const { config, clock } = env.ctx;
    this.startedAt = clock.now();
    this.parser = new XmlStreamParser(
      {
        streamOpen: (name, attrs) => this.onStreamOpen(name, attrs),
        stanza: (el, bytes) => this.onElement(el, bytes),
        // Stanzas still being handled come first: a component often says goodbye right before closing.
        streamClose: () => void (this.busy = this.busy.then(() => this.close())),
        error: (condition, text) => this.onParserError(condition, text),
      },
      { maxStanzaBytes: config.c2s.maxStanzaBytesPreAuth, maxDepth: config.c2s.maxDepth, maxAttributes: config.c2s.maxAttributes },
    );
    socket.on('data', (chunk: Buffer) => this.parser.write(chunk));
    socket.on('error', () => this.destroy());
    socket.on('close', () => this.destroy());
    env.streams.add(this);
  }

  get authenticated(): boolean {
    return this.state === 'ready';
  }

  // ---- output ----

  private writeRaw(data: string): void {
    if (this.state === 'closed' || this.socket.destroyed) return;
    this.socket.write(data);
    this.lastWrite = Date.now();
    const { config, log } = this.env.ctx;
    if (this.socket.writableLength > config.c2s.maxSendBuffer * COMPONENT_SEND_BUFFER_FACTOR) {
      log.warn('closing a component that does not read', { domain: this.domain, stream: this.id });
      this.destroy();
    }
  }

  /** DomainLink: a stanza routed to the component's domain or one of its subdomains. */
  send(stanza: Element): void {
    if (this.state !== 'ready') return;
    const data = forComponentWire(stanza).toString();
    this.counters.stanzasOut++;
    this.counters.bytesOut += Buffer.byteLength(data);
    this.writeRaw(data);
  }

  private sendHeader(): void {
    this.headerSent = true;
    const from = this.domain ? ` from='${this.domain}'` : '';
    this.writeRaw(`<?xml version='1.0'?><stream:stream xmlns='${NS.component}' xmlns:stream='${NS.stream}' id='${this.id}'${from}>`);
  }

  close(condition?: string, text?: string): void {
    if (this.state === 'closed') return;
    if (!this.headerSent) this.sendHeader();
    if (condition) this.writeRaw(streamErrorXml(condition, text));
    this.writeRaw('</stream:stream>');
    this.state = 'closed';
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 2000).unref();
    this.cleanup(condition);
  }

  private destroy(): void {
    this.state = 'closed';
    this.socket.destroy();
    this.cleanup();
  }

  private cleanup(condition?: string): void {
    if (this.closedNotified) return;
    this.closedNotified = true;
    this.env.streams.delete(this);
    if (!this.linked) return;
    this.linked = false;
    const { ctx, links } = this.env;
    if (links.get(this.domain) === this) {
      links.delete(this.domain);
      ctx.router.setComponentLink(this.domain, null);
    }
    ctx.log.info('component disconnected', { domain: this.domain, condition: condition ?? 'closed' });
    void ctx.hooks.emit('component/disconnected', { domain: this.domain, at: ctx.clock.now(), condition });
  }

  // ---- input ----

  private onParserError(condition: ParserErrorCondition, text: string): void {
    this.close(condition, text);
  }

  private onStreamOpen(name: string, attrs: Record<string, string>): void {
    const { config } = this.env.ctx;
    const to = Jid.tryParse(attrs.to);
    const component = to?.isDomain ? config.components.find((c) => c.domain === to.domain) : undefined;
    if (component) {
      this.domain = component.domain;
      this.secret = component.secret;
    }
    this.sendHeader();
    const prefix = name.includes(':') ? name.slice(0, name.indexOf(':')) : '';
    const local = prefix ? name.slice(prefix.length + 1) : name;
    const streamNs = prefix ? attrs[`xmlns:${prefix}`] : attrs.xmlns;
    if (local !== 'stream' || streamNs !== NS.stream) return this.close('invalid-namespace');
    if (attrs.xmlns !== NS.component) return this.close('invalid-namespace');
    // The same words for both, so a connection without the secret learns nothing of the configuration.
    if (!component) return this.close('host-unknown', 'no component is configured for this domain, or it is held back until a privacy policy change takes effect');
    this.state = 'handshake';
  }

  private onElement(el: Element, bytes: number): void {
    if (this.state === 'closed') return;
    this.counters.stanzasIn++;
    this.counters.bytesIn += bytes;
    // In arrival order, even when a handler waits for storage.
    this.busy = this.busy
      .then(() => this.handle(el))
      .catch((err) => {
        this.env.ctx.log.error('component stanza handling failed', { domain: this.domain, error: err instanceof Error ? err.message : String(err) });
        if (el.name === 'iq' && this.state === 'ready') {
          const reply = errorReply(el, 'internal-server-error');
          if (reply) this.send(reply);
        }
      });
  }

  private async handle(el: Element): Promise<void> {
    if (this.state === 'handshake') return this.handleHandshake(el);
    if (this.state === 'ready') return this.handleStanza(el);
  }

  private async handleHandshake(el: Element): Promise<void> {
    const { ctx, links } = this.env;
    if (el.name !== 'handshake' || el.xmlns !== NS.component) return this.close('not-authorized', 'handshake first');
    const attempt: AuthAttempt = { ip: this.ip, host: this.domain, mechanism: 'XEP-0114 handshake' };
    await ctx.hooks.emit('auth/before', attempt);
    if (this.state !== 'handshake') return;
    if (attempt.deny) return this.close('policy-violation', attempt.deny.text);
    if (!verifyHandshake(this.id, this.secret, el.text())) {
      void ctx.hooks.emit('auth/failed', { at: ctx.clock.now(), ip: this.ip, host: this.domain, username: null, mechanism: attempt.mechanism, condition: 'not-authorized' });
      ctx.log.info('component handshake failed', { domain: this.domain, ip: this.ip });
      return this.close('not-authorized');
    }
    this.secret = '';
    // Also when it is connected to another node of the cluster: one link per domain in the cluster.
    if (links.has(this.domain) || ctx.router.componentLink(this.domain) !== null) {
      ctx.log.warn('second component connection refused', { domain: this.domain, ip: this.ip });
      return this.close('conflict', 'the component is already connected');
    }
    this.writeRaw('<handshake/>');
    this.state = 'ready';
    this.parser.setLimits({ maxStanzaBytes: ctx.config.c2s.maxStanzaBytes });
    this.linked = true;
    links.set(this.domain, this);
    ctx.router.setComponentLink(this.domain, this);
    ctx.log.info('component connected', { domain: this.domain, ip: this.ip });
    void ctx.hooks.emit('component/connected', { domain: this.domain, ip: this.ip, at: ctx.clock.now() });
  }

  private async handleStanza(el: Element): Promise<void> {
    const { router } = this.env.ctx;
    const ns = el.xmlns;
    if (!STANZA_NAMES.has(el.name) || (ns !== NS.component && ns !== NS.client)) {
      return this.close('unsupported-stanza-type');
    }
    const from = Jid.tryParse(el.attrs.from);
    if (!from || router.isLocalHost(from.domain) || router.componentFor(from.domain) !== this.domain) {
      return this.close('invalid-from', `'from' must be an address at ${this.domain}`);
    }
    if (el.attrs.to === undefined || !Jid.tryParse(el.attrs.to)) {
      return this.close('improper-addressing', "stanzas from a component need a valid 'to'");
    }
    if (el.name === 'iq' && !isValidIq(el)) {
      const reply = errorReply(el, 'bad-request');
      if (reply) this.send(reply);
      return;
    }
    // Local clients receive jabber:client stanzas; inheriting children follow the stanza.
    el.attrs.xmlns = NS.client;
    for (const child of el.children) if (typeof child !== 'string' && child.attrs.xmlns === NS.component) delete child.attrs.xmlns;
    el.attrs.from = from.full;
    await router.route(el, from, { kind: 'component', domain: this.domain });
  }

  /** Called by the sweep: time out connections that never authenticate, keep idle links alive. */
  sweep(now: number): void {
    const { c2s } = this.env.ctx.config;
    if (this.state === 'closed') return;
    if (this.state !== 'ready') {
      if (now - this.openedAt > c2s.authTimeout) this.close('connection-timeout');
      return;
    }
    if (now - this.lastWrite > c2s.idlePingAfter) this.writeRaw(' ');
  }
}

function isValidIq(iq: Element): boolean {
  const type = iq.attrs.type;
  if (!iq.attrs.id) return false;
  if (type === 'get' || type === 'set') return iq.elements.length === 1;
  return type === 'result' || type === 'error';
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.') || host.startsWith('::ffff:127.');
}

/**
 * Opens the component listeners (config.listen.components) when components are configured.
 * `stop()` ends every component stream with system-shutdown and stops the sweep; the caller
 * closes the listeners with its own.
 */
export async function startComponentListeners(ctx: ServerContext): Promise<{ listeners: BoundListener[]; stop(): void }> {
  const { config, log } = ctx;
  // Open while the file names components, even if all are held back (P22): they come into force
  // without a restart, and their connections are refused until then.
  if (ctx.configInForce.file.components.length === 0 || config.listen.components.length === 0) return { listeners: [], stop() {} };
  const env: ComponentEnvironment = { ctx, links: new Map(), streams: new Set() };
  // Its own count: component connections neither use up nor are refused by client slots.
  const limits = new ConnectionLimits(COMPONENT_MAX_CONNECTIONS, config.c2s.maxConnectionsPerIp);
  const onRejected = rejectionLogger(log, 'component');
  const bound: BoundListener[] = [];
  try {
    for (const address of config.listen.components) {
      if (!isLoopback(address.host)) log.warn('the component listener is not on loopback: component traffic is not encrypted', { address: address.host });
      bound.push(
        await listen({
          kind: 'component',
          address,
          limits,
          onConnection: (socket, ip) => void new ComponentStream(env, socket, ip),
          onRejected,
        }),
      );
    }
  } catch (err) {
    for (const l of bound) l.server.close();
    throw err;
  }
  const c2s = config.c2s;
  const interval = Math.max(100, Math.min(5_000, Math.floor(Math.min(c2s.authTimeout, c2s.idlePingAfter) / 2)));
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const s of env.streams) s.sweep(now);
  }, interval);
  sweep.unref();
  // A component removed by a reload loses its link; a changed secret applies to the next handshake.
  const off = ctx.hooks.on('config/in-force', ({ after }) => {
    const configured = new Set(after.components.map((c) => c.domain));
    for (const [domain, link] of env.links) if (!configured.has(domain)) link.close('host-unknown', 'the component was removed from the configuration');
  });
  return {
    listeners: bound,
    stop() {
      off();
      clearInterval(sweep);
      for (const s of [...env.streams]) s.close('system-shutdown');
    },
  };
}
