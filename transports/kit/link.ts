/**
 * The transport's XEP-0114 connection to its XMPP server: any server that accepts external
 * components (Gatehouse, Prosody, ejabberd, Openfire).
 *
 * Built on xmpp.js: the Component class of @xmpp/component-core (the TCP connection, the
 * jabber:component:accept stream and the SHA-1 handshake that @xmpp/component 0.13 wraps). The
 * wrapper package's own iq-callee middleware is not used: it answers every IQ it has no handler for
 * and copies the request's payload into error replies, which for a registration would send the
 * user's password back. The kit dispatches every stanza itself instead, and reconnects with
 * exponential backoff and jitter (the wrapper's reconnect retries every second forever).
 *
 * Stanzas cross this boundary as shared/xml Elements; the component's stream namespace is left to
 * the server (outgoing stanzas carry no xmlns), incoming ones are given xmlns='jabber:client' so the
 * kit reads them like any client stanza.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { Logger } from '../../shared/logger.js';
import { backoffDelay, type BackoffBounds } from './backoff.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- @xmpp/component-core has no types */
type LtxElement = { name: string; attrs: Record<string, string>; children: (LtxElement | string)[] };

export interface StanzaLink extends EventEmitter<{ stanza: [Element]; online: []; offline: [] }> {
  readonly online: boolean;
  send(stanza: Element): void;
  /** Sends an IQ get/set and resolves with the result or error of the same id (rejects on timeout). */
  request(iq: Element, timeoutMs?: number): Promise<Element>;
}

export interface ComponentLinkOptions {
  host: string;
  port: number;
  domain: string;
  secret: string;
  reconnect: BackoffBounds;
  log: Logger;
}

/** Stream errors that a retry cannot fix: configuration problems. */
const FATAL_CONDITIONS = new Set(['not-authorized', 'host-unknown', 'invalid-namespace', 'invalid-from']);

export function fromLtx(el: LtxElement): Element {
  const out = new Element(el.name, el.attrs);
  for (const c of el.children) out.append(typeof c === 'string' ? c : fromLtx(c));
  return out;
}

/**
 * A shallow copy without xmlns='jabber:client' on the stanza and its direct children, so they
 * take the component stream's namespace (as server/streams/component.ts does the other way).
 */
export function forStream(stanza: Element): Element {
  const strip = (el: Element, children: Element['children']): Element => {
    const copy = new Element(el.name);
    const { xmlns, ...attrs } = el.attrs;
    copy.attrs = xmlns === NS.client || xmlns === NS.component ? attrs : el.attrs;
    copy.children = children;
    return copy;
  };
  const children = stanza.children.map((c) => (typeof c !== 'string' && (c.attrs.xmlns === NS.client || c.attrs.xmlns === NS.component) ? strip(c, c.children) : c));
  return strip(stanza, children);
}

export class ComponentLink extends EventEmitter<{ stanza: [Element]; online: []; offline: [] }> implements StanzaLink {
  private entity: any = null;
  private stopping = false;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private connecting = false;
  private readonly pending = new Map<string, { resolve: (el: Element) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }>();
  private firstOnline: { resolve: () => void; reject: (err: Error) => void } | null = null;
  private lastError: string | null = null;
  online = false;

  constructor(private readonly opts: ComponentLinkOptions) {
    super();
  }

  /** Connects; resolves once the handshake succeeded, rejects if the server refuses the first attempt for good (bad secret, unknown domain). */
  async start(): Promise<void> {
    const { Component } = (await import('@xmpp/component-core')) as { Component: any };
    const entity = new Component({ service: `xmpp://${this.opts.host}:${this.opts.port}`, domain: this.opts.domain });
    this.entity = entity;
    entity.on('open', (el: LtxElement) => {
      entity.authenticate(el.attrs.id, this.opts.secret).catch((err: Error) => this.onError(err));
    });
    entity.on('error', (err: Error) => this.onError(err));
    entity.on('online', () => {
      this.online = true;
      this.attempt = 0;
      this.lastError = null;
      this.opts.log.info('connected to the XMPP server', { domain: this.opts.domain, host: this.opts.host, port: this.opts.port });
      this.firstOnline?.resolve();
      this.firstOnline = null;
      this.emit('online');
    });
    entity.on('disconnect', () => this.onDisconnect());
    entity.on('stanza', (el: LtxElement) => this.onStanza(el));
    const first = new Promise<void>((resolve, reject) => (this.firstOnline = { resolve, reject }));
    void this.connect();
    return first;
  }

  private async connect(): Promise<void> {
    if (this.stopping || this.connecting) return;
    this.connecting = true;
    try {
      const service = `xmpp://${this.opts.host}:${this.opts.port}`;
      await this.entity.connect(service);
      await this.entity.open({ domain: this.opts.domain });
    } catch (err) {
      this.onError(err as Error);
      // A refused TCP connection leaves the entity without a socket 'close': retry from here.
      if (this.entity.status !== 'online' && this.entity.status !== 'open' && !this.entity.socket) this.scheduleRetry();
    } finally {
      this.connecting = false;
    }
  }

  private onError(err: Error & { condition?: string }): void {
    const what = err.condition ?? (err as NodeJS.ErrnoException).code ?? err.message;
    if (what !== this.lastError) this.opts.log.warn('XMPP server connection problem', { domain: this.opts.domain, error: what });
    this.lastError = what;
    if (err.condition && FATAL_CONDITIONS.has(err.condition) && this.firstOnline) {
      const text =
        err.condition === 'not-authorized'
          ? `the XMPP server refused the component secret for ${this.opts.domain}`
          : err.condition === 'host-unknown'
            ? `the XMPP server has no component ${this.opts.domain} configured`
            : `the XMPP server refused the component connection (${err.condition})`;
      this.firstOnline.reject(new Error(text));
      this.firstOnline = null;
      this.stopping = true;
      void this.entity?.stop().catch(() => undefined);
    }
  }

  private onDisconnect(): void {
    const wasOnline = this.online;
    this.online = false;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error('the connection to the XMPP server was lost'));
      this.pending.delete(id);
    }
    if (wasOnline) {
      this.opts.log.warn('disconnected from the XMPP server', { domain: this.opts.domain });
      this.emit('offline');
    }
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.stopping || this.retryTimer) return;
    const delay = backoffDelay(this.attempt++, this.opts.reconnect);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, delay);
  }

  private onStanza(el: LtxElement): void {
    const stanza = fromLtx(el);
    if (stanza.attrs.xmlns === undefined || stanza.attrs.xmlns === NS.component) stanza.attrs.xmlns = NS.client;
    if (stanza.name === 'iq' && (stanza.attrs.type === 'result' || stanza.attrs.type === 'error')) {
      const id = stanza.attrs.id;
      const p = id ? this.pending.get(id) : undefined;
      if (p) {
        this.pending.delete(id!);
        clearTimeout(p.timer);
        p.resolve(stanza);
        return;
      }
    }
    this.emit('stanza', stanza);
  }

  send(stanza: Element): void {
    if (!this.online || !this.entity) {
      this.opts.log.debug('dropping a stanza: not connected to the XMPP server', { kind: stanza.name });
      return;
    }
    if (!stanza.attrs.from) stanza.attrs.from = this.opts.domain;
    // The one place a transport's stanzas are serialised, by shared/xml: it writes what XML 1.0
    // forbids (a network's control characters) as U+FFFD, where ltx would pass it through and the
    // server would close the link for every user.
    const text = forStream(stanza).toString();
    // @xmpp/connection only needs name/attrs, a settable parent and toString().
    const wire = { name: stanza.name, attrs: stanza.attrs, parent: null, children: [], toString: () => text };
    this.entity.send(wire).catch((err: Error) => this.opts.log.debug('send failed', { error: err.message }));
  }

  request(iq: Element, timeoutMs = 15_000): Promise<Element> {
    const id = iq.attrs.id ?? `gh-${randomBytes(6).toString('hex')}`;
    iq.attrs.id = id;
    return new Promise((resolve, reject) => {
      if (!this.online) return reject(new Error('not connected to the XMPP server'));
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error('no answer'));
      }, timeoutMs);
      timer.unref?.();
      this.pending.set(id, { resolve, reject, timer });
      this.send(iq);
    });
  }

  /**
   * Waits until the server has handled what was sent: a ping to the server (the parent domain)
   * is answered after the stanzas before it. Servers may drop stanzas that are still queued when
   * the stream closes, and the goodbye presences at shutdown must not be lost.
   */
  async drain(timeoutMs = 1500): Promise<void> {
    if (!this.online) return;
    const dot = this.opts.domain.indexOf('.');
    const server = dot > 0 ? this.opts.domain.slice(dot + 1) : this.opts.domain;
    try {
      await this.request(new Element('iq', { type: 'get', from: this.opts.domain, to: server }, [new Element('ping', { xmlns: NS.ping })]), timeoutMs);
    } catch {
      // no answer in time: close anyway
    }
  }

  async stop(): Promise<void> {
    await this.drain();
    this.stopping = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.firstOnline?.reject(new Error('stopped'));
    this.firstOnline = null;
    const wasOnline = this.online;
    this.online = false;
    if (this.entity) {
      this.entity.removeAllListeners('disconnect');
      await Promise.race([this.entity.stop().catch(() => undefined), new Promise((r) => setTimeout(r, 3000).unref())]);
    }
    if (wasOnline) this.emit('offline');
  }
}
