/**
 * Inbound server-to-server streams (RFC 6120 4-6, XEP-0178, XEP-0220, XEP-0368): another server
 * is the initiating entity and sends stanzas for our domains.
 *
 * Decisions:
 * - One port (listen.s2s) takes both STARTTLS and direct TLS (XEP-0368): a connection whose first
 *   byte is a TLS handshake record (0x16) is TLS from the start, anything else is XML.
 * - Stream header: 'to' must be a host or component domain of this server (host-unknown), the
 *   namespaces jabber:server and the streams namespace (invalid-namespace), version 1.x when
 *   present. A pre-1.0 header (no version, no features) is only served when `s2s.requireEncryption`
 *   is off. A new stream id is issued at every (re)start; dialback keys are bound to it.
 * - Features before TLS: <starttls/> (with <required/> when encryption is required) and, only when
 *   plaintext is allowed, dialback. After TLS: SASL EXTERNAL exactly when the peer presented a
 *   certificate that chains to a trusted CA and names the domain in the header's 'from', and
 *   dialback (<errors/> supported). With encryption required, everything but <starttls/> before
 *   TLS is a policy-violation.
 * - SASL EXTERNAL: the authorization identity is empty or the header's 'from'; success proves the
 *   pair (from, to) and restarts the stream. A refusal is a <failure/>, so the peer may fall back
 *   to dialback on the same stream.
 * - Dialback <db:result>: the pair (from, to) is proved when the authoritative server of 'from'
 *   confirms the key (<db:verify> over an outbound link), or at once when the peer's certificate
 *   is valid for 'from' (XEP-0344). With `s2s.requireValidCertificates`, a domain without a valid
 *   certificate is refused (not-authorized). A key the authoritative server rejects is answered
 *   type='invalid' and, if the stream proved nothing else, the stream is closed. Any number of
 *   pairs may be proved on one stream (piggybacking), at most MAX_PENDING_DIALBACK at a time.
 * - <db:verify> (this server as authoritative server): answered from our own key, on any
 *   stream, authenticated or not.
 * - Stanzas: only message, presence and iq in jabber:server, only after a pair was proved
 *   (not-authorized). 'from' and 'to' must be valid JIDs (improper-addressing), 'to' a local
 *   domain (host-unknown), and (from domain, to domain) a proved pair (invalid-from): nothing a
 *   peer says is trusted beyond what it proved. Accepted stanzas are routed as jabber:client with
 *   origin { kind: 's2s', domain }.
 * - Limits as for clients: c2s.maxStanzaBytesPreAuth until a pair is proved, then
 *   c2s.maxStanzaBytes; depth and attribute limits; c2s.authTimeout to prove something (dialback
 *   checks still pending do not extend it) and tls.handshakeTimeout to finish a TLS handshake
 *   (direct or STARTTLS); s2s.maxConnections connections in all and c2s.maxConnectionsPerIp per
 *   address (IPv6: /64), counted at accept apart from clients (server/net/listeners.ts). A stream
 *   with no stanza for the idle timeout is closed.
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import type { Element } from '../../shared/xml/element.js';
import { Jid, normaliseDomain } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import type { ServerContext } from '../core/context.js';
import { errorReply } from '../../shared/xml/stanza-errors.js';
import { XmlStreamParser } from '../../shared/xml/stream-parser.js';
import { ConnectionLimits, listen, rejectionLogger, type BoundListener } from '../net/listeners.js';
import { isValidDialbackKey } from './dialback.js';
import { certificateValidFor, peerCertificateStatus, type PeerCertificateStatus } from './certificates.js';
import { s2sServiceOf, type InboundLink, type S2sService } from './service.js';
import {
  NS_DIALBACK,
  NS_DIALBACK_FEATURE,
  S2S_SEND_BUFFER_FACTOR,
  STANZA_NAMES,
  dialbackElement,
  dialbackError,
  fromServerWire,
  isValidIq,
  parseServerHeader,
  qualify,
  streamErrorCondition,
  streamHeaderXml,
  type S2sLinkInfo,
  type S2sMechanism,
} from './s2s-common.js';
import { streamErrorXml } from '../streams/stream-error.js';

/** Dialback requests waiting for their authoritative server, per stream. */
const MAX_PENDING_DIALBACK = 16;

type State = 'sniffing' | 'header' | 'open' | 'closed';

export class IncomingS2S implements InboundLink {
  /** The current stream id (new at each restart). */
  id = '';
  private state: State = 'sniffing';
  private socket: Socket | Duplex;
  private secureSocket: TLSSocket | null = null;
  private readonly parser: XmlStreamParser;
  private decls: Record<string, string> = {};
  private headerFrom: string | undefined;
  private headerTo: string | undefined;
  private versioned = false;
  private saslDone = false;
  private cert: PeerCertificateStatus | null = null;
  /** Proved pairs: remote domain -> local domains it may send to. */
  private readonly proven = new Map<string, Set<string>>();
  private readonly pendingDialback = new Set<string>();
  private readonly openedAt = Date.now();
  private lastActivity = Date.now();
  private busy: Promise<void> = Promise.resolve();
  private everProved = false;
  private cleaned = false;

  constructor(
    private readonly service: S2sService,
    socket: Socket,
    readonly ip: string,
  ) {
    const { config } = service.ctx;
    this.socket = socket;
    this.parser = new XmlStreamParser(
      {
        streamOpen: (name, attrs) => this.onStreamOpen(name, attrs),
        stanza: (el) => this.onElement(el),
        streamClose: () => this.close(),
        error: (condition, text) => this.close(condition, text),
      },
      { maxStanzaBytes: config.c2s.maxStanzaBytesPreAuth, maxDepth: config.c2s.maxDepth, maxAttributes: config.c2s.maxAttributes },
    );
    socket.once('data', (first: Buffer) => this.sniff(socket, first));
    socket.on('error', () => this.destroy());
    socket.on('close', () => this.destroy());
    service.incoming.add(this);
  }

  get authenticated(): boolean {
    return this.proven.size > 0;
  }

  get secure(): boolean {
    return this.secureSocket !== null;
  }

  info(): S2sLinkInfo {
    return { direction: 'in', remote: [...this.proven.keys()], since: new Date(this.openedAt), secure: this.secure };
  }

  /** XEP-0368 on the same port: a TLS ClientHello starts with a handshake record (0x16). */
  private sniff(socket: Socket, first: Buffer): void {
    if (this.state === 'closed') return;
    this.state = 'header';
    if (first[0] !== 0x16) {
      socket.on('data', this.onData);
      this.onData(first);
      return;
    }
    // The first bytes were already read from the socket, so TLS runs over a stream that replays them.
    const replay = new Duplex({
      read() {
        socket.resume();
      },
      write(chunk, _enc, cb) {
        socket.write(chunk, cb);
      },
      final(cb) {
        socket.end();
        cb();
      },
      destroy(err, cb) {
        socket.destroy();
        cb(err);
      },
    });
    replay.push(first);
    socket.on('data', (chunk: Buffer) => {
      if (!replay.push(chunk)) socket.pause();
    });
    socket.on('end', () => replay.push(null));
    this.startServerTls(replay, ['xmpp-server']);
  }

  private startServerTls(transport: Socket | Duplex, alpn?: string[]): void {
    const tls = this.service.tls;
    const secure = new TLSSocket(transport as Socket, {
      isServer: true,
      secureContext: tls.defaultContext,
      SNICallback: tls.sniCallback,
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: alpn,
    });
    this.secureSocket = secure;
    // The authentication timeout waits for pending dialback checks, so the handshake needs its own.
    const handshakeTimer = setTimeout(() => this.destroy(), this.service.ctx.config.tls.handshakeTimeout);
    handshakeTimer.unref();
    secure.once('close', () => clearTimeout(handshakeTimer));
    secure.on('secure', () => {
      clearTimeout(handshakeTimer);
      this.cert = peerCertificateStatus(secure, this.service.tls.trust);
    });
    secure.on('data', this.onData);
    secure.on('error', () => this.destroy());
    secure.on('close', () => this.destroy());
  }

  private readonly onData = (chunk: Buffer): void => {
    try {
      this.parser.write(chunk);
    } catch (err) {
      this.service.log.error('s2s stream handler failed', { error: err instanceof Error ? err.message : String(err) });
      this.close('internal-server-error');
    }
  };

  // ---- output ----

  private writeRaw(data: string): void {
    if (this.state === 'closed') return;
    const sock = this.secureSocket ?? this.socket;
    if (sock.destroyed) return;
    sock.write(data);
    if (sock.writableLength > this.service.ctx.config.c2s.maxSendBuffer * S2S_SEND_BUFFER_FACTOR) this.destroy();
  }

  close(condition?: string, text?: string): void {
    if (this.state === 'closed') return;
    if (this.state === 'sniffing' || (this.state === 'header' && !this.id)) this.sendHeader();
    if (condition) this.writeRaw(streamErrorXml(condition, text));
    this.writeRaw('</stream:stream>');
    this.state = 'closed';
    const sock = this.secureSocket ?? this.socket;
    sock.end();
    setTimeout(() => sock.destroy(), 2000).unref();
    if (condition) this.service.log.info('s2s inbound stream closed', { remote: this.headerFrom ?? '', condition });
    this.cleanup(condition);
  }

  private destroy(): void {
    this.state = 'closed';
    (this.secureSocket ?? this.socket).destroy();
    this.socket.destroy();
    this.cleanup();
  }

  private cleanup(condition?: string): void {
    if (this.cleaned) return;
    this.cleaned = true;
    this.service.incoming.delete(this);
    if (this.everProved) {
      const { ctx } = this.service;
      for (const domain of this.proven.keys()) void ctx.hooks.emit('s2s/closed', { direction: 'in', domain, condition, at: ctx.clock.now() });
    }
  }

  private sendHeader(): void {
    this.id = randomBytes(16).toString('hex');
    const from = this.headerTo && this.service.isLocalDomain(this.headerTo) ? this.headerTo : this.service.ctx.config.hosts[0]!.domain;
    this.writeRaw(streamHeaderXml({ from, to: this.headerFrom, id: this.id, version: this.versioned || this.state === 'sniffing' }));
  }

  // ---- input ----

  private onStreamOpen(name: string, attrs: Record<string, string>): void {
    const header = parseServerHeader(name, attrs);
    this.decls = header.decls;
    this.versioned = header.version !== undefined;
    const previousFrom = this.headerFrom;
    this.headerFrom = header.from && normaliseDomain(header.from) ? normaliseDomain(header.from)! : undefined;
    this.headerTo = header.to && normaliseDomain(header.to) ? normaliseDomain(header.to)! : undefined;
    this.sendHeader();
    if (!header.ok) return this.close(header.condition);
    if (header.to !== undefined && (!this.headerTo || !this.service.isLocalDomain(this.headerTo))) return this.close('host-unknown', 'this server does not serve that domain');
    if (header.from !== undefined && !this.headerFrom) return this.close('invalid-from');
    if (this.headerFrom && !this.service.isAllowed(this.headerFrom)) return this.close('policy-violation', 'federation with your domain is not allowed');
    if (this.saslDone && previousFrom && this.headerFrom !== previousFrom) return this.close('invalid-from');
    this.state = 'open';
    if (!this.versioned) {
      if (this.service.requireEncryption && !this.secure) return this.close('policy-violation', 'this server requires TLS');
      return;
    }
    this.sendFeatures();
  }

  private sendFeatures(): void {
    const parts: string[] = [];
    const requireTls = this.service.requireEncryption;
    if (!this.secure) {
      parts.push(`<starttls xmlns='${NS.tls}'>${requireTls ? '<required/>' : ''}</starttls>`);
      if (!requireTls) parts.push(`<dialback xmlns='${NS_DIALBACK_FEATURE}'><errors/></dialback>`);
    } else {
      if (!this.saslDone && this.headerFrom && certificateValidFor(this.cert, this.headerFrom)) {
        parts.push(`<mechanisms xmlns='${NS.sasl}'><mechanism>EXTERNAL</mechanism></mechanisms>`);
      }
      parts.push(`<dialback xmlns='${NS_DIALBACK_FEATURE}'><errors/></dialback>`);
    }
    this.writeRaw(`<stream:features>${parts.join('')}</stream:features>`);
  }

  private onElement(el: Element): void {
    if (this.state === 'closed') return;
    // A stanza that came in on an open stream is handled even when the stream ends (the peer's
    // </stream:stream> or socket close) before its turn: it was sent before the end.
    const arrivedOpen = this.state === 'open';
    this.busy = this.busy
      .then(() => this.handle(el, arrivedOpen))
      .catch((err) => {
        this.service.log.error('s2s stanza handling failed', { remote: this.headerFrom ?? '', error: err instanceof Error ? err.message : String(err) });
      });
  }

  private async handle(el: Element, arrivedOpen: boolean): Promise<void> {
    const { local, ns } = qualify(el, this.decls);
    if (this.state === 'closed' && arrivedOpen && STANZA_NAMES.has(el.name) && ns === NS.server) return this.handleStanza(el);
    if (this.state !== 'open') return;
    if (ns === NS.stream && local === 'error') {
      this.service.log.info('s2s stream error from peer', { remote: this.headerFrom ?? '', condition: streamErrorCondition(el) });
      return this.close();
    }
    if (ns === NS.tls && local === 'starttls') return this.startTls();
    if (!this.secure && this.service.requireEncryption) return this.close('policy-violation', 'use STARTTLS first');
    if (ns === NS.sasl) return this.handleSasl(el, local);
    if (ns === NS_DIALBACK && local === 'result') return this.handleDialbackResult(el);
    if (ns === NS_DIALBACK && local === 'verify') return this.handleDialbackVerify(el);
    if (STANZA_NAMES.has(el.name) && ns === NS.server) return this.handleStanza(el);
    this.close('unsupported-stanza-type');
  }

  private startTls(): void {
    if (this.secure) return this.close('policy-violation', 'TLS is already established');
    this.writeRaw(`<proceed xmlns='${NS.tls}'/>`);
    const raw = this.socket;
    raw.removeListener('data', this.onData);
    this.parser.reset();
    this.state = 'header';
    this.startServerTls(raw);
  }

  private handleSasl(el: Element, local: string): void {
    const failure = (condition: string) => this.writeRaw(`<failure xmlns='${NS.sasl}'><${condition}/></failure>`);
    if (local !== 'auth') return failure('malformed-request');
    if (this.saslDone) return this.close('policy-violation', 'already authenticated');
    if (el.attrs.mechanism !== 'EXTERNAL') return failure('invalid-mechanism');
    if (!this.secure) return failure('encryption-required');
    const text = el.text().trim();
    let authzid = '';
    if (text && text !== '=') {
      if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 !== 0) return failure('incorrect-encoding');
      authzid = Buffer.from(text, 'base64').toString('utf8');
    }
    const claimed = normaliseDomain(authzid || this.headerFrom || '');
    if (!claimed || (authzid && this.headerFrom && claimed !== this.headerFrom)) return failure('invalid-authzid');
    if (!this.headerTo || !this.service.isAllowed(claimed) || !certificateValidFor(this.cert, claimed)) {
      this.service.log.info('s2s SASL EXTERNAL refused', { remote: claimed });
      return failure('not-authorized');
    }
    this.writeRaw(`<success xmlns='${NS.sasl}'/>`);
    this.saslDone = true;
    this.headerFrom = claimed;
    this.prove(claimed, this.headerTo, 'EXTERNAL');
    this.parser.reset();
    this.state = 'header';
  }

  private async handleDialbackResult(el: Element): Promise<void> {
    if (el.attrs.type !== undefined) return; // answers go to outbound links, not here
    const from = normaliseDomain(el.attrs.from ?? '');
    const to = normaliseDomain(el.attrs.to ?? '');
    const key = el.text().trim();
    if (!from || !to) return this.close('improper-addressing', 'dialback needs from and to');
    const reply = { from: to, to: from };
    if (!this.service.isLocalDomain(to)) return this.writeRaw(dialbackError('result', reply, 'item-not-found', 'this server does not serve that domain'));
    if (!this.service.isAllowed(from)) return this.writeRaw(dialbackError('result', reply, 'policy-violation', 'federation with your domain is not allowed'));
    if (this.proven.get(from)?.has(to)) return this.writeRaw(dialbackElement('result', { ...reply, type: 'valid' }));
    const pairKey = `${from} ${to}`;
    if (this.pendingDialback.has(pairKey)) return;
    if (this.pendingDialback.size >= MAX_PENDING_DIALBACK) return this.close('policy-violation', 'too many dialback requests');
    if (this.secure && certificateValidFor(this.cert, from)) {
      this.writeRaw(dialbackElement('result', { ...reply, type: 'valid' }));
      return this.prove(from, to, 'dialback+certificate');
    }
    if (this.service.requireValidCertificates) {
      this.service.log.info('s2s dialback refused: no valid certificate', { remote: from, reason: this.cert?.chainValid ? 'name mismatch' : (this.cert?.chainError ?? 'no TLS') });
      return this.close('not-authorized', `your server's certificate is not valid for ${from}`);
    }
    if (!key) return this.writeRaw(dialbackElement('result', { ...reply, type: 'invalid' }));
    this.pendingDialback.add(pairKey);
    const streamId = this.id;
    // Not awaited in the stanza chain: other requests and stanzas on this stream go on meanwhile.
    void this.service.verifyKey(to, from, streamId, key).then((outcome) => {
      this.pendingDialback.delete(pairKey);
      if (this.state === 'closed') return;
      if (outcome.type === 'valid') {
        this.writeRaw(dialbackElement('result', { ...reply, type: 'valid' }));
        return this.prove(from, to, 'dialback');
      }
      if (outcome.type === 'error') return this.writeRaw(dialbackError('result', reply, outcome.condition, 'could not verify the key with your server'));
      this.service.log.info('s2s dialback key rejected by the authoritative server', { remote: from, local: to });
      this.writeRaw(dialbackElement('result', { ...reply, type: 'invalid' }));
      if (!this.authenticated) this.close('not-authorized', 'dialback failed');
    });
  }

  private handleDialbackVerify(el: Element): void {
    if (el.attrs.type !== undefined) return;
    const receiving = normaliseDomain(el.attrs.from ?? '');
    const originating = normaliseDomain(el.attrs.to ?? '');
    const id = el.attrs.id ?? '';
    if (!receiving || !originating || !id) return this.close('improper-addressing', 'dialback verify needs from, to and id');
    const reply = { from: originating, to: receiving, id };
    if (!this.service.isLocalDomain(originating)) return this.writeRaw(dialbackError('verify', reply, 'item-not-found'));
    const valid = isValidDialbackKey(this.service.secret, receiving, originating, id, el.text());
    if (!valid) this.service.log.warn('asked to verify a dialback key this server did not make', { local: originating, remote: receiving });
    this.writeRaw(dialbackElement('verify', { ...reply, type: valid ? 'valid' : 'invalid' }));
  }

  private prove(remote: string, local: string, mechanism: S2sMechanism): void {
    let set = this.proven.get(remote);
    if (!set) this.proven.set(remote, (set = new Set()));
    set.add(local);
    const { ctx } = this.service;
    this.parser.setLimits({ maxStanzaBytes: ctx.config.c2s.maxStanzaBytes });
    if (!this.everProved) {
      this.everProved = true;
      this.service.linkOpened('in');
    }
    this.service.log.info('s2s link authenticated', { direction: 'in', remote, local, mechanism, secure: this.secure });
    void ctx.hooks.emit('s2s/authenticated', { direction: 'in', domain: remote, local, mechanism, secure: this.secure, at: ctx.clock.now() });
  }

  private async handleStanza(el: Element): Promise<void> {
    const { router } = this.service.ctx;
    if (!this.authenticated) return this.close('not-authorized', 'authenticate first');
    const from = Jid.tryParse(el.attrs.from);
    const to = Jid.tryParse(el.attrs.to);
    if (!from || !to) return this.close('improper-addressing', "stanzas between servers need valid 'from' and 'to'");
    if (!this.service.isLocalDomain(to.domain)) return this.close('host-unknown', `this server does not serve ${to.domain}`);
    if (!this.proven.get(from.domain)?.has(to.domain)) {
      this.service.log.warn('s2s stanza from a domain the link did not prove', { remote: [...this.proven.keys()].join(','), claimed: from.domain });
      return this.close('invalid-from', `this link is not authenticated for ${from.domain} to ${to.domain}`);
    }
    this.lastActivity = Date.now();
    if (el.name === 'iq' && !isValidIq(el)) {
      const reply = errorReply(fromServerWire(el), 'bad-request');
      if (reply) void router.send(reply).catch(() => {});
      return;
    }
    fromServerWire(el);
    el.attrs.from = from.full;
    el.attrs.to = to.full;
    await router.route(el, from, { kind: 's2s', domain: from.domain });
  }

  /** Called by the service's sweep. */
  sweep(t: number): void {
    if (this.state === 'closed') return;
    const { ctx, settings } = this.service;
    if (!this.authenticated) {
      // Pending dialback checks do not hold the timeout: a peer could otherwise keep a stream
      // unauthenticated for ever by asking for checks that never finish.
      if (t - this.openedAt > ctx.config.c2s.authTimeout) this.close('connection-timeout');
      return;
    }
    if (t - this.lastActivity > settings.idleTimeout) this.close();
  }
}

/**
 * Opens the s2s listeners (config.listen.s2s) when the s2s module is loaded. `stop()` ends every
 * inbound stream; the caller closes the listeners with its own.
 */
export async function startS2sListeners(ctx: ServerContext): Promise<{ listeners: BoundListener[]; stop(): void }> {
  const { config, log } = ctx;
  if (config.listen.s2s.length === 0) return { listeners: [], stop() {} };
  const service = s2sServiceOf(ctx);
  if (!service) {
    log.warn('listen.s2s is set but the s2s module is not loaded: federation is off');
    return { listeners: [], stop() {} };
  }
  const limits = new ConnectionLimits(config.s2s.maxConnections, config.c2s.maxConnectionsPerIp);
  const onRejected = rejectionLogger(log, 's2s');
  const bound: BoundListener[] = [];
  try {
    for (const address of config.listen.s2s) {
      bound.push(
        await listen({
          kind: 's2s',
          address,
          limits,
          onConnection: (socket, ip) => void new IncomingS2S(service, socket, ip),
          onRejected,
        }),
      );
    }
  } catch (err) {
    for (const l of bound) l.server.close();
    throw err;
  }
  const off = ctx.hooks.on('config/in-force', ({ after }) => limits.setCaps(after.s2s.maxConnections, after.c2s.maxConnectionsPerIp));
  return {
    listeners: bound,
    stop() {
      off();
      for (const l of [...service.incoming]) l.close('system-shutdown');
    },
  };
}
