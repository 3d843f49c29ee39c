/**
 * Outbound server-to-server link (RFC 6120 4-6, XEP-0178, XEP-0220, XEP-0368): this server is the
 * initiating entity towards one remote domain.
 *
 *   resolve (static route / SRV xmpps-server + xmpp-server / domain:5269; targets from DNS only
 *   at public addresses, see server/federation/resolver.ts)
 *   -> connect each target in turn (direct TLS for xmpps-server records)
 *   -> <stream:stream from=local to=remote> -> features
 *   -> STARTTLS (when not yet encrypted) -> restart -> features
 *   -> SASL EXTERNAL when offered (our certificate for `local`) -> restart -> features: proved
 *      or dialback <db:result from=local to=remote>key</db:result> -> <db:result type=valid>: proved
 *   -> stanzas of proved local domains are written as jabber:server stanzas.
 *
 * Decisions:
 * - `s2s.requireEncryption`: a peer that offers no STARTTLS (or whose TLS fails) is not used; its
 *   stanzas bounce with remote-server-not-found. Without it, plaintext is used only when the peer
 *   offers no STARTTLS at all (never as a fallback after a failed handshake).
 * - `s2s.requireValidCertificates`: the peer's certificate must chain to a trusted CA and name the
 *   remote domain, else the link is dropped before anything is sent. Without it an untrusted
 *   certificate still gives an encrypted link, authenticated by dialback (which proves our
 *   identity to the peer; the peer's identity then rests on DNS, as with every dialback server).
 * - SASL EXTERNAL is tried whenever offered; on <failure/> dialback follows on the same stream if
 *   the peer supports it (as Prosody does).
 * - More local domains on the same link: once the stream is negotiated and the peer supports
 *   dialback, each sends its own <db:result>; a peer without dialback gets a link per local domain.
 * - <db:verify> requests (this server as receiving server checking a key with the authoritative
 *   server) go out as soon as the stream is negotiated, before or without our own authentication,
 *   so two servers verifying each other at the same time cannot wait on each other.
 * - Stanzas from the peer on this link are refused (unsupported-stanza-type): links are
 *   unidirectional (no XEP-0288 bidi).
 * - The link closes after `idleTimeout` without stanzas; a new stanza opens a new one.
 */
import { connect as tcpConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { randomBytes } from 'node:crypto';
import type { Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { StanzaEvent } from '../core/hooks.js';
import { XmlStreamParser } from '../../shared/xml/stream-parser.js';
import { dialbackKey } from './dialback.js';
import { publicAddresses, resolveS2sTargets, type ConnectTarget, type SrvSource } from './resolver.js';
import { certificateValidFor, peerCertificateStatus, type PeerCertificateStatus, type S2sTls } from './certificates.js';
import type { ServerContext } from '../core/context.js';
import type { Logger } from '../../shared/logger.js';
import {
  NS_DIALBACK,
  NS_DIALBACK_FEATURE,
  S2S_SEND_BUFFER_FACTOR,
  dialbackElement,
  forServerWire,
  parseServerHeader,
  qualify,
  streamErrorCondition,
  streamHeaderXml,
  type S2sLinkInfo,
  type S2sMechanism,
} from './s2s-common.js';
import { streamErrorXml } from '../streams/stream-error.js';

export type VerifyOutcome = { type: 'valid' } | { type: 'invalid' } | { type: 'error'; condition: string };

/**
 * What a link needs from the link manager that creates and owns it (service.ts). An interface, so
 * that the links do not import the manager that imports them.
 */
export interface LinkManager {
  readonly ctx: ServerContext;
  readonly log: Logger;
  /** The dialback secret keys are made with. */
  readonly secret: string;
  readonly settings: { readonly connectTimeout: number; readonly idleTimeout: number; readonly verifyTimeout: number; readonly maxQueued: number; readonly allowInternalTargets: boolean };
  readonly dns: SrvSource;
  readonly tls: S2sTls;
  readonly requireEncryption: boolean;
  readonly requireValidCertificates: boolean;
  /** Sends a stanza again (over whichever link can carry it now). */
  send(event: StanzaEvent): void;
  bounce(event: StanzaEvent, condition: string, text?: string): void;
  linkOpened(direction: 'out'): void;
  linkClosed(link: OutgoingS2S): void;
}

type LinkState = 'resolving' | 'connecting' | 'header' | 'features' | 'starttls' | 'sasl' | 'open' | 'closed';

interface DomainState {
  state: 'waiting' | 'pending' | 'valid' | 'failed';
  queue: StanzaEvent[];
  since: number;
}

interface PendingVerify {
  from: string;
  to: string;
  id: string;
  key: string;
  resolve: (outcome: VerifyOutcome) => void;
  sent: boolean;
  at: number;
}

/** Per connection attempt: connect (TCP or TLS) within this time. */
const CONNECT_ATTEMPT_TIMEOUT = 10_000;

export class OutgoingS2S {
  /** For logs only. */
  readonly linkId = randomBytes(4).toString('hex');
  private state: LinkState = 'resolving';
  private socket: Socket | null = null;
  private secureSocket: TLSSocket | null = null;
  private parser: XmlStreamParser;
  private decls: Record<string, string> = {};
  /** The id the peer gave the current stream (dialback keys are bound to it). */
  private streamId = '';
  private headerDialback = false;
  /** Unknown until the first features after TLS. */
  private dialbackSupported: boolean | undefined;
  private saslDone = false;
  private negotiated = false;
  private cert: PeerCertificateStatus | null = null;
  private readonly domains = new Map<string, DomainState>();
  private readonly verifies: PendingVerify[] = [];
  private readonly startedAt = Date.now();
  private lastActivity = Date.now();
  private everProved = false;
  private closing = false;
  /** The socket was ended gracefully by close(). */
  private ended = false;

  constructor(
    private readonly service: LinkManager,
    readonly remote: string,
    /** The local domain that opens the stream (its 'from'). */
    readonly primary: string,
  ) {
    const { config } = service.ctx;
    this.parser = new XmlStreamParser(
      {
        streamOpen: (name, attrs) => this.onStreamOpen(name, attrs),
        stanza: (el) => this.onElement(el),
        streamClose: () => this.close(),
        error: (condition, text) => this.close(condition, text),
      },
      { maxStanzaBytes: config.c2s.maxStanzaBytesPreAuth, maxDepth: config.c2s.maxDepth, maxAttributes: config.c2s.maxAttributes },
    );
    this.domains.set(primary, { state: 'waiting', queue: [], since: Date.now() });
  }

  /** Proved at least one local domain. */
  get authenticated(): boolean {
    for (const d of this.domains.values()) if (d.state === 'valid') return true;
    return false;
  }

  info(): S2sLinkInfo {
    return { direction: 'out', remote: [this.remote], since: new Date(this.startedAt), secure: this.secure };
  }

  /** Not closed or closing: may take verify requests. */
  get usable(): boolean {
    return this.state !== 'closed' && !this.closing;
  }

  get secure(): boolean {
    return this.secureSocket !== null;
  }

  /**
   * Dialback elements may be written: the stream is negotiated and no SASL exchange is running
   * (bytes written between <auth/> and the restart after <success/> would hit the peer's new stream).
   */
  private get writable(): boolean {
    return this.negotiated && this.state === 'open';
  }

  hasProved(local: string): boolean {
    return this.usable && this.domains.get(local)?.state === 'valid';
  }

  /** Whether stanzas from `local` can use this link (now or once it is negotiated). */
  canServe(local: string): boolean {
    if (!this.usable) return false;
    const d = this.domains.get(local);
    if (d?.state === 'failed') return false;
    return local === this.primary || d !== undefined || this.dialbackSupported !== false;
  }

  // ---- connecting ----

  start(): void {
    void this.connectAll().catch((err) => {
      this.service.log.error('s2s connect failed', { remote: this.remote, error: err instanceof Error ? err.message : String(err) });
      this.fail('remote-server-not-found', 'internal error');
    });
  }

  private async connectAll(): Promise<void> {
    const { config } = this.service.ctx;
    const targets = await resolveS2sTargets(this.remote, config.s2s.static, this.service.dns);
    if (this.state === 'closed') return;
    if (targets.length === 0) return this.fail('remote-server-not-found', 'the domain has no XMPP server');
    this.state = 'connecting';
    let lastError = '';
    let attempted = false;
    let refused = false;
    for (const target of targets) {
      const found = await this.addressesOf(target);
      if (this.state !== 'connecting') return;
      refused ||= found.refused;
      for (const host of found.hosts) {
        if (this.state !== 'connecting') return;
        attempted = true;
        try {
          const socket = await this.connectTarget({ ...target, host });
          if (this.state !== 'connecting') {
            socket.destroy();
            return;
          }
          this.service.log.debug('s2s connected', { remote: this.remote, host, port: target.port, directTls: target.directTls, via: target.via, link: this.linkId });
          this.attach(socket, target.directTls);
          return;
        } catch (err) {
          lastError = err instanceof Error ? err.message : String(err);
          this.service.log.debug('s2s connection attempt failed', { remote: this.remote, host, port: target.port, error: lastError });
        }
      }
    }
    if (this.state !== 'connecting') return;
    if (refused && !attempted) return this.fail('remote-server-not-found', 'the remote server has no public address');
    this.fail('remote-server-not-found', 'could not connect to the remote server');
  }

  /**
   * Where to connect for one target: a static route as configured; a target from DNS (chosen by
   * whoever controls the remote domain's DNS, possibly an unauthenticated peer asking for dialback)
   * only at its public addresses, never loopback, private or link-local ones.
   */
  private async addressesOf(target: ConnectTarget): Promise<{ hosts: string[]; refused: boolean }> {
    if (target.via === 'static' || this.service.settings.allowInternalTargets) return { hosts: [target.host], refused: false };
    let found: { addresses: string[]; refused: string[] };
    try {
      found = await publicAddresses(target.host, this.service.dns);
    } catch (err) {
      this.service.log.debug('s2s target lookup failed', { remote: this.remote, host: target.host, error: (err as NodeJS.ErrnoException).code ?? 'error' });
      return { hosts: [], refused: false };
    }
    if (found.refused.length) {
      this.service.log.info('s2s target refused: not a public address (name the domain in s2s.static to allow it)', { remote: this.remote, host: target.host, addresses: found.refused.join(' ') });
    }
    return { hosts: found.addresses, refused: found.refused.length > 0 };
  }

  private connectTarget(target: ConnectTarget): Promise<Socket> {
    const timeout = Math.min(CONNECT_ATTEMPT_TIMEOUT, this.service.settings.connectTimeout);
    return new Promise<Socket>((resolve, reject) => {
      let socket: Socket;
      const done = (err?: Error) => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        if (err) {
          socket.destroy();
          reject(err);
        } else resolve(socket);
      };
      if (target.directTls) {
        socket = tlsConnect({
          host: target.host,
          port: target.port,
          servername: isIP(this.remote) ? undefined : this.remote,
          ALPNProtocols: ['xmpp-server'],
          secureContext: this.service.tls.contextFor(this.primary),
          rejectUnauthorized: false,
        });
        socket.once('secureConnect', () => done());
      } else {
        socket = tcpConnect({ host: target.host, port: target.port });
        socket.once('connect', () => done());
      }
      socket.once('error', (err) => done(err));
      const timer = setTimeout(() => done(new Error('connect timeout')), timeout);
    });
  }

  private attach(socket: Socket, directTls: boolean): void {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    if (directTls) {
      this.secureSocket = socket as TLSSocket;
      if (!this.checkCertificate()) return;
    }
    this.wire(socket);
    this.openStream();
  }

  private wire(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('error', () => this.destroy('remote-server-not-found', 'connection error'));
    socket.on('close', () => this.destroy('remote-server-not-found', 'connection closed'));
  }

  private readonly onData = (chunk: Buffer): void => {
    try {
      this.parser.write(chunk);
    } catch (err) {
      this.service.log.error('s2s handler failed', { remote: this.remote, error: err instanceof Error ? err.message : String(err) });
      this.close('internal-server-error');
    }
  };

  private openStream(): void {
    this.state = 'header';
    this.writeRaw(streamHeaderXml({ from: this.primary, to: this.remote }));
  }

  /** After TLS: what the peer's certificate proves; false (and closed) when it is not acceptable. */
  private checkCertificate(): boolean {
    this.cert = peerCertificateStatus(this.secureSocket!, this.service.tls.trust);
    const valid = certificateValidFor(this.cert, this.remote);
    if (!valid && this.service.requireValidCertificates) {
      this.service.log.info('s2s peer certificate not valid', { remote: this.remote, reason: this.cert.chainValid ? 'name mismatch' : this.cert.chainError });
      this.fail('remote-server-not-found', "the remote server's certificate is not valid");
      return false;
    }
    return true;
  }

  // ---- output ----

  private writeRaw(data: string): void {
    const sock = this.secureSocket ?? this.socket;
    if (!sock || sock.destroyed || this.state === 'closed') return;
    sock.write(data);
    if (sock.writableLength > this.service.ctx.config.c2s.maxSendBuffer * S2S_SEND_BUFFER_FACTOR) {
      this.service.log.warn('closing an s2s link that does not read', { remote: this.remote });
      this.destroy('remote-server-timeout', 'the remote server does not read');
    }
  }

  /** Queues or writes a stanza from `local`. */
  enqueue(local: string, event: StanzaEvent): void {
    let d = this.domains.get(local);
    if (!d) this.domains.set(local, (d = { state: 'waiting', queue: [], since: Date.now() }));
    if (d.state === 'valid') return this.writeStanza(event);
    if (d.state === 'failed') return this.service.bounce(event, 'remote-server-not-found');
    if (d.queue.length >= this.service.settings.maxQueued) return this.service.bounce(event, 'resource-constraint', 'too many stanzas waiting for the remote server');
    d.queue.push(event);
    if (d.state === 'waiting' && this.writable && local !== this.primary) this.startDialback(local);
  }

  private writeStanza(event: StanzaEvent): void {
    this.lastActivity = Date.now();
    this.writeRaw(forServerWire(event.stanza).toString());
  }

  /** As receiving server: ask the peer (authoritative for `originating`) about a key. */
  requestVerify(receiving: string, originating: string, streamId: string, key: string): Promise<VerifyOutcome> {
    return new Promise((resolve) => {
      const v: PendingVerify = { from: receiving, to: originating, id: streamId, key, resolve, sent: false, at: Date.now() };
      this.verifies.push(v);
      if (this.writable) this.sendVerify(v);
    });
  }

  private sendVerify(v: PendingVerify): void {
    v.sent = true;
    this.writeRaw(dialbackElement('verify', { from: v.from, to: v.to, id: v.id }, v.key));
  }

  private startDialback(local: string): void {
    const d = this.domains.get(local);
    if (!d || d.state !== 'waiting') return;
    if (!this.dialbackSupported) {
      if (local === this.primary) return this.failDomain(local, 'remote-server-not-found', 'the remote server does not support dialback');
      // No piggybacking with this peer: the stanzas get a link of their own.
      this.domains.delete(local);
      for (const e of d.queue.splice(0)) this.service.send(e);
      return;
    }
    d.state = 'pending';
    d.since = Date.now();
    this.writeRaw(dialbackElement('result', { from: local, to: this.remote }, dialbackKey(this.service.secret, this.remote, local, this.streamId)));
  }

  // ---- input ----

  private onStreamOpen(name: string, attrs: Record<string, string>): void {
    const header = parseServerHeader(name, attrs);
    if (!header.ok) return this.close(header.condition, 'bad stream header');
    this.decls = header.decls;
    this.streamId = header.id ?? '';
    this.headerDialback = header.dialback;
    if (header.version === undefined) {
      // A pre-1.0 server: no features, no TLS; only dialback, and only where plaintext is allowed.
      if (this.service.requireEncryption && !this.secure) return this.fail('remote-server-not-found', 'the remote server does not support TLS');
      this.dialbackSupported = header.dialback;
      this.onNegotiated();
      return;
    }
    this.state = 'features';
  }

  private onElement(el: Element): void {
    if (this.state === 'closed') return;
    const { local, ns } = qualify(el, this.decls);
    if (ns === NS.stream && local === 'error') {
      this.service.log.info('s2s stream error from peer', { remote: this.remote, condition: streamErrorCondition(el) });
      return this.destroy('remote-server-not-found', 'the remote server closed the link');
    }
    if (this.state === 'features' && ns === NS.stream && local === 'features') return this.onFeatures(el);
    if (this.state === 'starttls' && ns === NS.tls) return local === 'proceed' ? this.upgradeTls() : this.fail('remote-server-not-found', 'STARTTLS failed');
    if (this.state === 'sasl' && ns === NS.sasl) return this.onSaslOutcome(local);
    if (ns === NS_DIALBACK && local === 'result' && this.negotiated) return this.onDialbackResult(el);
    if (ns === NS_DIALBACK && local === 'verify' && this.negotiated) return this.onVerifyResult(el);
    this.close('unsupported-stanza-type');
  }

  private onFeatures(features: Element): void {
    const starttls = features.getChild('starttls', NS.tls);
    if (!this.secure) {
      if (starttls) {
        this.state = 'starttls';
        this.writeRaw(`<starttls xmlns='${NS.tls}'/>`);
        return;
      }
      if (this.service.requireEncryption) return this.fail('remote-server-not-found', 'the remote server does not offer TLS');
    }
    const dialback = !!features.getChild('dialback', NS_DIALBACK_FEATURE) || this.headerDialback;
    this.dialbackSupported = this.dialbackSupported || dialback;
    if (this.saslDone) {
      // Features after the SASL restart: the primary domain is proved.
      this.state = 'open';
      this.markValid(this.primary, 'EXTERNAL');
      this.onNegotiated();
      return;
    }
    const mechanisms = features.getChild('mechanisms', NS.sasl)?.getChildren('mechanism').map((m) => m.text().trim()) ?? [];
    if (this.secure && mechanisms.includes('EXTERNAL')) {
      this.state = 'sasl';
      this.negotiated = true;
      this.flushVerifies();
      this.writeRaw(`<auth xmlns='${NS.sasl}' mechanism='EXTERNAL'>${Buffer.from(this.primary).toString('base64')}</auth>`);
      return;
    }
    this.state = 'open';
    this.onNegotiated();
  }

  /** The stream is ready for dialback and verify requests. */
  private onNegotiated(): void {
    this.negotiated = true;
    this.state = 'open';
    this.flushVerifies();
    for (const [local, d] of this.domains) if (d.state === 'waiting') this.startDialback(local);
  }

  private flushVerifies(): void {
    for (const v of this.verifies) if (!v.sent) this.sendVerify(v);
  }

  private upgradeTls(): void {
    const raw = this.socket!;
    raw.removeListener('data', this.onData);
    raw.removeAllListeners('error');
    raw.removeAllListeners('close');
    raw.on('error', () => {});
    const secure = tlsConnect({
      socket: raw,
      servername: isIP(this.remote) ? undefined : this.remote,
      secureContext: this.service.tls.contextFor(this.primary),
      rejectUnauthorized: false,
    });
    this.secureSocket = secure;
    this.state = 'connecting';
    secure.once('secureConnect', () => {
      if (this.state === 'closed') return;
      if (!this.checkCertificate()) return;
      this.parser.reset();
      this.wire(secure);
      this.openStream();
    });
    secure.once('error', (err) => {
      this.service.log.info('s2s TLS handshake failed', { remote: this.remote, error: err.message });
      this.fail('remote-server-not-found', 'TLS handshake failed');
    });
  }

  private onSaslOutcome(local: string): void {
    if (local === 'success') {
      this.saslDone = true;
      this.parser.reset();
      this.openStream();
      return;
    }
    if (local === 'failure') {
      this.service.log.info('s2s SASL EXTERNAL refused', { remote: this.remote, local: this.primary });
      if (!this.dialbackSupported) return this.fail('remote-server-not-found', 'the remote server refused our certificate');
      this.onNegotiated();
      return;
    }
    this.close('unsupported-stanza-type');
  }

  private onDialbackResult(el: Element): void {
    const local = el.attrs.to?.toLowerCase() ?? '';
    const from = el.attrs.from?.toLowerCase();
    const d = this.domains.get(local);
    if (from !== this.remote || !d || d.state !== 'pending') return this.close('invalid-id', 'unexpected dialback result');
    if (el.attrs.type === 'valid') return this.markValid(local, 'dialback');
    const condition = el.getChild('error')?.elements.find((c) => c.xmlns === NS.stanzas && c.name !== 'text')?.name;
    this.service.log.info('s2s dialback refused', { remote: this.remote, local, type: el.attrs.type ?? '', condition: condition ?? '' });
    this.failDomain(local, 'remote-server-not-found', 'the remote server did not accept this server');
  }

  private onVerifyResult(el: Element): void {
    const i = this.verifies.findIndex(
      (v) => v.sent && v.id === el.attrs.id && v.from === el.attrs.to?.toLowerCase() && v.to === el.attrs.from?.toLowerCase(),
    );
    if (i < 0) return; // an answer nobody waits for (timed out): ignore
    const [v] = this.verifies.splice(i, 1);
    const type = el.attrs.type;
    if (type === 'valid') v!.resolve({ type: 'valid' });
    else if (type === 'invalid') v!.resolve({ type: 'invalid' });
    else v!.resolve({ type: 'error', condition: 'remote-server-not-found' });
  }

  private markValid(local: string, mechanism: S2sMechanism): void {
    const d = this.domains.get(local);
    if (!d) return;
    d.state = 'valid';
    const { ctx } = this.service;
    this.parser.setLimits({ maxStanzaBytes: ctx.config.c2s.maxStanzaBytes });
    if (!this.everProved) {
      this.everProved = true;
      this.service.linkOpened('out');
    }
    this.service.log.info('s2s link authenticated', { direction: 'out', remote: this.remote, local, mechanism, secure: this.secure });
    void ctx.hooks.emit('s2s/authenticated', { direction: 'out', domain: this.remote, local, mechanism, secure: this.secure, at: ctx.clock.now() });
    const queue = d.queue.splice(0);
    for (const e of queue) this.writeStanza(e);
  }

  private failDomain(local: string, condition: string, text: string): void {
    const d = this.domains.get(local);
    if (!d) return;
    d.state = 'failed';
    for (const e of d.queue.splice(0)) this.service.bounce(e, condition, text);
    const alive = [...this.domains.values()].some((x) => x.state !== 'failed');
    if (!alive && this.verifies.length === 0) this.close();
  }

  /** The whole link failed: everything waiting bounces, verify requests get an error. */
  private fail(condition: string, text: string): void {
    this.service.log.info('s2s link failed', { remote: this.remote, condition, reason: text });
    this.destroy(condition, text);
  }

  /** Called by the service's sweep. */
  sweep(t: number): void {
    if (this.state === 'closed') return;
    const { connectTimeout, idleTimeout, verifyTimeout } = this.service.settings;
    for (const v of [...this.verifies]) {
      if (t - v.at > verifyTimeout) {
        this.verifies.splice(this.verifies.indexOf(v), 1);
        v.resolve({ type: 'error', condition: 'remote-server-timeout' });
      }
    }
    if (!this.authenticated) {
      if (t - this.startedAt > connectTimeout) return this.fail('remote-server-timeout', 'the remote server did not answer in time');
      return;
    }
    for (const [local, d] of this.domains) {
      if ((d.state === 'pending' || d.state === 'waiting') && t - d.since > connectTimeout) this.failDomain(local, 'remote-server-timeout', 'the remote server did not answer in time');
    }
    if ((this.state as LinkState) === 'closed') return;
    const busy = this.verifies.length > 0 || [...this.domains.values()].some((d) => d.queue.length > 0);
    if (!busy && t - this.lastActivity > idleTimeout) {
      this.service.log.debug('closing idle s2s link', { direction: 'out', remote: this.remote });
      this.close();
    }
  }

  /** Closes the stream (with a stream error when given); queued stanzas bounce. */
  close(condition?: string, text?: string): void {
    if (this.state === 'closed' || this.closing) return;
    this.closing = true;
    const sock = this.secureSocket ?? this.socket;
    if (sock && !sock.destroyed && this.state !== 'resolving' && this.state !== 'connecting') {
      if (condition) this.writeRaw(streamErrorXml(condition, text));
      this.writeRaw('</stream:stream>');
      sock.end();
      this.ended = true;
      setTimeout(() => sock.destroy(), 2000).unref();
    }
    this.destroy(condition === 'remote-server-timeout' ? condition : 'remote-server-not-found', text ?? 'the link to the remote server was closed');
  }

  private destroy(condition: string, text: string): void {
    if (this.state === 'closed') return;
    const wasProved = this.everProved;
    this.state = 'closed';
    const sock = this.secureSocket ?? this.socket;
    if (sock && !this.ended) sock.destroy();
    if (this.socket && this.socket !== sock && !this.ended) this.socket.destroy();
    this.closing = true;
    this.service.linkClosed(this);
    for (const d of this.domains.values()) {
      for (const e of d.queue.splice(0)) this.service.bounce(e, condition, text);
      if (d.state !== 'valid') d.state = 'failed';
    }
    for (const v of this.verifies.splice(0)) v.resolve({ type: 'error', condition });
    if (wasProved) {
      const { ctx } = this.service;
      this.service.log.info('s2s link closed', { direction: 'out', remote: this.remote });
      void ctx.hooks.emit('s2s/closed', { direction: 'out', domain: this.remote, at: ctx.clock.now() });
    }
  }
}
