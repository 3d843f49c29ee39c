import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { Element, x } from '../../shared/xml/element.js';
import { Jid, normaliseLocal } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import { randomHex } from '../../shared/random.js';
import { XmlStreamParser, type ParserErrorCondition, type ParserLimits } from '../../shared/xml/stream-parser.js';
import type { TlsContexts } from '../net/tls.js';
import { SaslSession, availableMechanisms, type ChannelBinding, type FailureReason, type SaslStep } from '../auth/sasl.js';
import { tlsChannelBinding } from '../auth/channel-binding.js';
import { fakeSaltKey } from '../auth/server-secret.js';
import { BoundSession, type SessionCounters, type SessionTransport, type TransportEnd } from '../core/session.js';
import type { ServerContext, StreamInfo } from '../core/context.js';
import { errorReply, iqResult } from '../../shared/xml/stanza-errors.js';
import { streamErrorXml } from './stream-error.js';
import { coalescedWrite, flushNow, unsentFromEarlierTurns } from '../net/write-coalescer.js';
import type { Account, ScramVerifier } from '../../storage/types.js';
import { addMissingVerifiers } from '../accounts/service.js';

/** How far past c2s.maxSendBuffer the output of a single turn may go before the client is dropped. */
const BURST_FACTOR = 8;

export interface AuthFailure {
  at: Date;
  ip: string;
  host: string;
  username: string | null;
  mechanism: string;
  condition: string;
}

/** Lets a guard refuse an attempt before it is evaluated (P7 throttling). */
export interface AuthAttempt {
  ip: string;
  host: string;
  mechanism: string;
  /** Normalised localpart, once the SASL exchange has named it ('auth/identified'). */
  username?: string;
  deny?: { condition: 'temporary-auth-failure' | 'policy-violation'; text?: string };
}

declare module '../core/hooks.js' {
  interface HookEvents {
    'auth/before': AuthAttempt;
    /** The SASL exchange named its account; a guard may still refuse before credentials are checked. */
    'auth/identified': AuthAttempt;
    'auth/failed': AuthFailure;
    'auth/succeeded': { at: Date; ip: string; account: Account; mechanism: string };
    /** An IQ before authentication (in-band registration); handlers reply via stream.send. */
    'c2s/preauth-iq': { stream: StreamInfo; stanza: Element };
    /** Stream features being offered; handlers append children. */
    'c2s/features': { stream: StreamInfo; stage: 'pre-auth' | 'post-auth'; features: Element };
    /**
     * A top-level element that is not a stanza (stream management, client state indication), after
     * authentication; `session` is null before resource binding (XEP-0198 resumption). True if handled.
     */
    'c2s/nonza': { stream: ClientStream; session: BoundSession | null; element: Element };
    'session/bound': { session: BoundSession; account: Account };
    'session/closed': { session: BoundSession; condition?: string };
  }
}

type State = 'awaiting-stream' | 'negotiating' | 'authenticated' | 'bound' | 'closed';

const MAX_AUTH_ATTEMPTS = 5;

/** What modules may do with a client stream beyond StreamInfo (XEP-0198 needs the most). */
export interface ClientStream extends StreamInfo {
  /** The authenticated account, once SASL succeeded. */
  readonly account: Account | null;
  /** The session this stream carries, once bound (or resumed). */
  readonly session: BoundSession | null;
  /** Writes a nonza: outside the stanza flow, so no session layer counts or holds it. */
  writeNonza(element: Element): void;
  /** Ends the stream, with a stream error if given; `appCondition` is an application-specific child of it. */
  close(condition?: string, text?: string, appCondition?: Element): void;
  /**
   * Carries `session`, bound earlier by another stream of the same account, instead of binding a
   * resource (XEP-0198 resumption); `handover` writes the answer and the retransmitted stanzas before
   * anything else. False (and nothing changed) unless this stream is authenticated, unbound and of
   * the session's account, and the session has not ended.
   */
  resume(session: BoundSession, handover: () => void): boolean;
  /**
   * Carries a session that another cluster node held until now (XEP-0198 resumption there): binds
   * it here under its JID, session id and start time, without 'session/bound' (it is not a new
   * session). `handover` writes first, as for `resume`. Null unless authenticated and unbound.
   */
  adopt(taken: { id: string; jid: Jid; startedAt: Date }, handover: (session: BoundSession) => void): BoundSession | null;
}

/** Shared by all client streams of one listener set. */
export interface C2SEnvironment {
  ctx: ServerContext;
  tls: TlsContexts;
  /** Live streams, for the idle sweep and shutdown. */
  streams: Set<C2SStream>;
}

/**
 * One client connection: TLS, SASL, resource binding, then the transport of a BoundSession
 * (server/core/session.ts), which holds the session state and outlives the connection when stream
 * management keeps it (hibernation, resumption on another C2SStream).
 */
export class C2SStream implements StreamInfo, SessionTransport, ClientStream {
  readonly id = randomHex(8);
  readonly startedAt: Date;
  /** What this connection read and wrote before binding; the session's counters once bound (P6). */
  private counters: SessionCounters = { stanzasIn: 0, stanzasOut: 0, bytesIn: 0, bytesOut: 0 };
  host = '';
  account: Account | null = null;
  session: BoundSession | null = null;
  /** Real time for network timeouts; the injected clock is for stored records. */
  private readonly openedAt = Date.now();
  lastActivity: number;
  pingSentAt: number | null = null;
  private state: State = 'awaiting-stream';
  private socket: Socket;
  private secureSocket: TLSSocket | null = null;
  protected readonly parser: XmlStreamParser;
  protected headerSent = false;
  private sasl: SaslSession | null = null;
  private saslMechanism = '';
  private saslAccount: Account | null = null;
  private authFailures = 0;
  private closedNotified = false;
  /** The client sent </stream:stream>: the stream ends cleanly once what it sent before is handled. */
  private clientClosed = false;
  private busy: Promise<void> = Promise.resolve();

  constructor(
    protected readonly env: C2SEnvironment,
    socket: Socket,
    readonly ip: string,
    directTls: boolean,
  ) {
    const { config, clock } = env.ctx;
    this.socket = socket;
    if (directTls) this.secureSocket = socket as TLSSocket;
    this.startedAt = clock.now();
    this.lastActivity = Date.now();
    this.parser = this.createParser({ maxStanzaBytes: config.c2s.maxStanzaBytesPreAuth, maxDepth: config.c2s.maxDepth, maxAttributes: config.c2s.maxAttributes });
    this.attach(socket);
    env.streams.add(this);
  }

  /** The parser of the client's input; a framing other than a TCP byte stream (WebSocket) makes its own. */
  protected createParser(limits: ParserLimits): XmlStreamParser {
    return new XmlStreamParser(
      {
        streamOpen: (name, attrs) => this.onStreamOpen(name, attrs),
        stanza: (el, bytes) => this.onElement(el, bytes),
        streamClose: () => this.onStreamClose(),
        error: (condition, text) => this.onParserError(condition, text),
      },
      limits,
    );
  }

  get secure(): boolean {
    return this.secureSocket !== null;
  }

  protected get isClosed(): boolean {
    return this.state === 'closed';
  }

  get authenticated(): boolean {
    return this.state === 'authenticated' || this.state === 'bound';
  }

  /** Reads the client's bytes from `socket` (a WebSocket stream reads messages instead). */
  protected attach(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('error', () => this.destroy());
    socket.on('close', () => this.destroy());
  }

  private readonly onData = (chunk: Buffer): void => {
    this.lastActivity = Date.now();
    this.pingSentAt = null;
    try {
      this.parser.write(chunk);
    } catch (err) {
      // A bug in a handler must cost this connection, never the process.
      this.env.ctx.log.error('stream handler failed', { stream: this.id, error: err instanceof Error ? err.message : String(err) });
      this.close('internal-server-error');
    }
  };

  // ---- output ----

  /** Writes one unit: the stream header, one element, or the stream's end. */
  protected writeRaw(data: string): void {
    if (this.state === 'closed') return;
    const sock = this.secureSocket ?? this.socket;
    if (sock.destroyed) return;
    coalescedWrite(sock, data);
    // This turn's own output counts only far past the limit: a burst (a batch of the offline
    // backlog, a large roster) is still in flight to a client that reads it.
    const max = this.env.ctx.config.c2s.maxSendBuffer;
    if (unsentFromEarlierTurns(sock) > max || sock.writableLength > BURST_FACTOR * max) {
      this.env.ctx.log.info('closing a client that does not read', { stream: this.id });
      this.state = 'closed';
      sock.destroy();
    }
  }

  /** A stanza to the client: through the session's layers once bound, straight out before. */
  send(stanza: Element): void {
    if (this.session) return this.session.send(stanza);
    const data = stanza.toString();
    this.counters.stanzasOut++;
    this.counters.bytesOut += Buffer.byteLength(data);
    this.writeRaw(data);
  }

  /** SessionTransport: serialised XML from the session. */
  write(data: string): void {
    this.writeRaw(data);
  }

  writeNonza(element: Element): void {
    const data = element.toString();
    this.counters.bytesOut += Buffer.byteLength(data);
    this.writeRaw(data);
  }

  protected sendHeader(from: string): void {
    this.headerSent = true;
    this.writeRaw(
      `<?xml version='1.0'?><stream:stream xmlns='${NS.client}' xmlns:stream='${NS.stream}' id='${randomHex(12)}' from='${from}' version='1.0' xml:lang='en'>`,
    );
  }

  /**
   * Closes the stream. For its session this is the end, except after a connection timeout: a silent
   * peer is a lost connection, which stream management may survive (hibernation).
   */
  close(condition?: string, text?: string, appCondition?: Element): void {
    if (this.state === 'closed') return;
    if (!this.headerSent) this.sendHeader(this.host || this.env.ctx.config.hosts[0]!.domain);
    if (condition) {
      const error = streamErrorXml(condition, text);
      this.writeRaw(appCondition ? error.replace(/<\/stream:error>$/, `${appCondition}</stream:error>`) : error);
    }
    this.writeRaw(this.closingTag());
    this.state = 'closed';
    this.endConnection();
    this.cleanup(condition === 'connection-timeout' ? 'lost' : 'closed', condition);
  }

  protected closingTag(): string {
    return '</stream:stream>';
  }

  /** Ends the connection once what was written is sent (destroyed after 2 s if the client does not close its side). */
  protected endConnection(): void {
    const sock = this.secureSocket ?? this.socket;
    sock.end();
    setTimeout(() => sock.destroy(), 2000).unref();
  }

  protected dropConnection(): void {
    (this.secureSocket ?? this.socket).destroy();
  }

  /** The connection broke (or was dropped because the client did not read). */
  protected destroy(): void {
    this.dropConnection();
    // After </stream:stream> from the client, the close() queued behind its last elements ends the stream cleanly.
    if (this.clientClosed) return;
    if (this.state !== 'closed') this.state = 'closed';
    this.cleanup('lost');
  }

  private cleanup(how: TransportEnd, condition?: string): void {
    if (this.closedNotified) return;
    this.closedNotified = true;
    this.env.streams.delete(this);
    // Ignored by a session that another stream has taken over or that ended already (replaced).
    this.session?.transportEnded(this, how, condition);
  }

  // ---- input ----

  /**
   * RFC 6120 4.4: the client closed its stream. What it sent before (a last presence, a XEP-0198
   * <a/>, often in the same packet) is handled first, then the stream is closed.
   */
  protected onStreamClose(): void {
    if (this.state === 'closed') return;
    this.clientClosed = true;
    this.busy = this.busy.then(() => this.close());
  }

  protected onParserError(condition: ParserErrorCondition, text: string): void {
    this.close(condition, text);
  }

  /** Whether the client's stream header is a stream header of the right namespaces (RFC 6120 4.8.1). */
  protected isStreamRoot(name: string, attrs: Record<string, string>): boolean {
    const prefix = name.includes(':') ? name.slice(0, name.indexOf(':')) : '';
    const local = prefix ? name.slice(prefix.length + 1) : name;
    const streamNs = prefix ? attrs[`xmlns:${prefix}`] : attrs.xmlns;
    return local === 'stream' && streamNs === NS.stream && attrs.xmlns === NS.client;
  }

  protected onStreamOpen(name: string, attrs: Record<string, string>): void {
    const { config } = this.env.ctx;
    const to = attrs.to?.toLowerCase();
    const host = to ?? config.hosts[0]!.domain;
    const known = config.hosts.some((h) => h.domain === host);
    this.host = known ? host : config.hosts[0]!.domain;
    this.sendHeader(this.host);
    if (!this.isStreamRoot(name, attrs)) return this.close('invalid-namespace');
    if (to !== undefined && !Jid.tryParse(to)?.isDomain) return this.close('bad-format', "'to' is not a domain");
    if (!known) return this.close('host-unknown');
    const version = attrs.version;
    if (!version || !/^1\.\d+$/.test(version)) return this.close('unsupported-version');
    if (this.state === 'awaiting-stream') this.state = 'negotiating';
    this.sendFeatures();
  }

  private sendFeatures(): void {
    const { config, hooks } = this.env.ctx;
    const features = new Element('stream:features');
    if (this.authenticated) {
      features.append(x('bind', { xmlns: NS.bind }));
      features.append(x('session', { xmlns: NS.session }, x('optional')));
      void hooks.emit('c2s/features', { stream: this, stage: 'post-auth', features }).then(() => this.writeRaw(features.toString()));
      return;
    }
    const mayAuth = this.secure || !config.c2s.requireEncryption;
    if (!this.secure) features.append(x('starttls', { xmlns: NS.tls }, config.c2s.requireEncryption ? x('required') : null));
    if (mayAuth) {
      const cb = this.channelBinding();
      // Per host, the hashes its accounts can serve (auth/scram-offer.ts): mechanisms go out before the account is known.
      const hashes = this.env.ctx.services.get('scram-offer')?.hashes(this.host) ?? config.auth.hashes;
      const mechs = availableMechanisms({ secure: this.secure, channelBindingTypes: cb?.types ?? [], allowPlain: config.c2s.allowPlain, hashes });
      features.append(x('mechanisms', { xmlns: NS.sasl }, mechs.map((m) => x('mechanism', {}, m))));
      if (cb && cb.types.length) features.append(x('sasl-channel-binding', { xmlns: 'urn:xmpp:sasl-cb:0' }, cb.types.map((t) => x('channel-binding', { type: t }))));
    }
    const emit = mayAuth ? hooks.emit('c2s/features', { stream: this, stage: 'pre-auth', features }) : Promise.resolve();
    void emit.then(() => this.writeRaw(features.toString()));
  }

  protected onElement(el: Element, bytes: number): void {
    if (this.state === 'closed') return;
    this.counters.stanzasIn++;
    this.counters.bytesIn += bytes;
    // Stanzas are handled in arrival order even when a handler waits for storage.
    this.busy = this.busy.then(() => this.handle(el)).catch((err) => {
      this.env.ctx.log.error('stanza handling failed', { stream: this.id, error: err instanceof Error ? err.message : String(err) });
      const reply = errorReply(el, 'internal-server-error');
      if (reply && this.state === 'bound' && el.name === 'iq') this.send(reply);
    });
  }

  private async handle(el: Element): Promise<void> {
    if (this.state === 'closed') return;
    const ns = el.xmlns;
    if (this.state === 'negotiating') return this.handleNegotiation(el, ns);
    if (this.state === 'authenticated') return this.handleBinding(el, ns);
    if (this.state === 'bound') return this.handleStanza(el, ns);
  }

  private async handleNegotiation(el: Element, ns: string | undefined): Promise<void> {
    const { config } = this.env.ctx;
    if (el.name === 'starttls' && ns === NS.tls) return this.startTls();
    if (!this.secure && config.c2s.requireEncryption) return this.close('policy-violation', 'use STARTTLS first');
    if (ns === NS.sasl) return this.handleSasl(el);
    if (el.name === 'iq' && ns === NS.client) {
      const handled = await this.env.ctx.hooks.fire('c2s/preauth-iq', { stream: this, stanza: el });
      if (!handled) {
        const reply = errorReply(el, 'service-unavailable');
        if (reply) this.send(reply);
      }
      return;
    }
    this.close('not-authorized');
  }

  private startTls(): void {
    if (this.secure) return this.close('policy-violation', 'TLS already established');
    this.writeRaw(`<proceed xmlns='${NS.tls}'/>`);
    const raw = this.socket;
    flushNow(raw);
    raw.removeListener('data', this.onData);
    const secureSocket = new TLSSocket(raw, {
      isServer: true,
      secureContext: this.env.tls.defaultContext,
      SNICallback: this.env.tls.sniCallback,
    });
    this.secureSocket = secureSocket;
    this.parser.reset();
    this.state = 'awaiting-stream';
    this.attach(secureSocket);
  }

  private channelBinding(): ChannelBinding | null {
    return this.secureSocket ? tlsChannelBinding(this.secureSocket) : null;
  }

  private async handleSasl(el: Element): Promise<void> {
    const { config, storage, hooks, clock, log } = this.env.ctx;
    if (el.name === 'abort') {
      this.sasl = null;
      return this.saslFailure('aborted', null);
    }
    let data: Buffer | null;
    try {
      data = decodeSaslPayload(el.text());
    } catch {
      return this.saslFailure('incorrect-encoding', null);
    }
    let step: SaslStep;
    let denied: AuthAttempt['deny'];
    if (el.name === 'auth') {
      const mechanism = el.attrs.mechanism ?? '';
      this.saslMechanism = mechanism;
      const attempt: AuthAttempt = { ip: this.ip, host: this.host, mechanism };
      await hooks.emit('auth/before', attempt);
      if (attempt.deny) return this.saslFailure(attempt.deny.condition, null, attempt.deny.text);
      if (!this.secure && config.c2s.requireEncryption) return this.saslFailure('encryption-required', null);
      let saltKey: Buffer;
      try {
        saltKey = fakeSaltKey(config);
      } catch (err) {
        log.error('cannot read or create the server secret', { error: err instanceof Error ? err.message : String(err) });
        return this.saslFailure('temporary-auth-failure', null);
      }
      this.sasl = new SaslSession(mechanism, {
        secure: this.secure,
        domain: this.host,
        channelBinding: this.channelBinding(),
        allowChannelBindingDowngrade: config.auth.channelBindingDowngrade === 'allow',
        iterationsForUnknownUser: config.auth.scramIterations,
        fakeSaltKey: saltKey,
        lookup: async (username) => {
          const local = normaliseLocal(username);
          if (!local) return null;
          const identified: AuthAttempt = { ip: this.ip, host: this.host, mechanism, username: local };
          await hooks.emit('auth/identified', identified);
          if (identified.deny) {
            denied = identified.deny;
            return null;
          }
          const account = await storage.accounts.get(local, this.host);
          this.saslAccount = account;
          if (!account) return null;
          return { verifiers: await storage.accounts.getVerifiers(account.id) };
        },
        passwordVerified: (_username, password, verifiers) => this.completeVerifiers(password, verifiers),
      });
      step = await this.sasl.start(data);
    } else if (el.name === 'response' && this.sasl) {
      step = await this.sasl.respond(data ?? Buffer.alloc(0));
    } else {
      return this.saslFailure('malformed-request', null);
    }
    if (denied) return this.saslFailure(denied.condition, null, denied.text);
    if (step.kind === 'challenge') {
      this.writeRaw(`<challenge xmlns='${NS.sasl}'>${step.data.length ? step.data.toString('base64') : '='}</challenge>`);
      return;
    }
    if (step.kind === 'failure') return this.saslFailure(step.condition, step.username ?? null, step.text, step.reason);
    const local = normaliseLocal(step.username);
    // The account the exchange looked up a moment ago (one query less per login), else read it.
    const known = this.saslAccount;
    const account = known && known.username === local ? known : local ? await storage.accounts.get(local, this.host) : null;
    this.saslAccount = null;
    if (!account) return this.saslFailure('not-authorized', step.username);
    this.sasl = null;
    this.account = account;
    this.writeRaw(`<success xmlns='${NS.sasl}'>${step.data ? step.data.toString('base64') : ''}</success>`);
    void hooks.emit('auth/succeeded', { at: clock.now(), ip: this.ip, account, mechanism: this.saslMechanism });
    this.state = 'authenticated';
    this.restartInput({ maxStanzaBytes: config.c2s.maxStanzaBytes });
  }

  /**
   * A PLAIN login matched: adds verifiers for the configured hashes the account lacks (accounts
   * imported with SCRAM-SHA-1 only), so that it can use SCRAM-SHA-256 next time.
   */
  private async completeVerifiers(password: string, verifiers: readonly ScramVerifier[]): Promise<void> {
    const { config, storage, hooks, log } = this.env.ctx;
    const account = this.saslAccount;
    if (!account) return;
    try {
      const added = await addMissingVerifiers(storage, account.id, password, verifiers, config.auth);
      if (added.length === 0) return;
      log.info('added SCRAM verifiers at a PLAIN login', { stream: this.id, account: `${account.username}@${account.host}`, hashes: added.join(',') });
      await hooks.emit('account/verifiers-changed', { account });
    } catch (err) {
      log.warn('could not add SCRAM verifiers at a PLAIN login', { stream: this.id, error: err instanceof Error ? err.message : String(err) });
    }
  }

  /** The stream restarts after SASL (RFC 6120 6.4.6): a new header is expected, with new limits. */
  protected restartInput(limits: Partial<ParserLimits>): void {
    this.parser.reset();
    this.parser.setLimits(limits);
  }

  private saslFailure(condition: string, username: string | null, text?: string, reason?: FailureReason): void {
    const { hooks, clock, log } = this.env.ctx;
    this.sasl = null;
    const textXml = text ? `<text xml:lang='en'>${text.replace(/[<&]/g, '')}</text>` : '';
    this.writeRaw(`<failure xmlns='${NS.sasl}'><${condition}/>${textXml}</failure>`);
    if (condition === 'aborted') return;
    if (reason === 'unusable-verifier') {
      log.warn('login refused: the stored SCRAM verifier has an iteration count outside 4096..10000000; set a new password', { stream: this.id, account: `${username}@${this.host}` });
    }
    // A channel-binding negotiation tested no credentials: not a failed login (P7), just the client
    // trying its next mechanism. It still counts towards this stream's attempts.
    if (reason === 'channel-binding') {
      log.debug('SASL channel-binding negotiation failed', { stream: this.id, mechanism: this.saslMechanism, condition });
    } else {
      void hooks.emit('auth/failed', { at: clock.now(), ip: this.ip, host: this.host, username, mechanism: this.saslMechanism, condition });
    }
    if (++this.authFailures >= MAX_AUTH_ATTEMPTS) this.close('policy-violation', 'too many failed authentication attempts');
  }

  private async handleBinding(el: Element, ns: string | undefined): Promise<void> {
    if (ns !== NS.client) {
      // A nonza before binding: XEP-0198 resumption takes the place of binding.
      if (await this.env.ctx.hooks.fire('c2s/nonza', { stream: this, session: null, element: el })) return;
      return this.close('not-authorized', 'bind a resource first');
    }
    if (el.name !== 'iq') return this.close('not-authorized', 'bind a resource first');
    const bind = el.getChild('bind', NS.bind);
    if (el.attrs.type === 'set' && bind) return this.bindResource(el, bind);
    if (el.attrs.type === 'set' && el.getChild('session', NS.session)) return this.send(iqResult(el));
    const reply = errorReply(el, 'not-authorized');
    if (reply) this.send(reply);
  }

  private bindResource(iq: Element, bind: Element): void {
    const { sessions, hooks } = this.env.ctx;
    const account = this.account!;
    const requested = bind.getChildText('resource')?.trim();
    const bare = Jid.of(account.username, account.host);
    if (!bare) return this.close('internal-server-error');
    let jid: Jid;
    try {
      jid = bare.withResource(requested || `gh-${randomHex(6)}`);
    } catch {
      const reply = errorReply(iq, 'bad-request', 'invalid resource');
      if (reply) this.send(reply);
      return;
    }
    const session = new BoundSession({
      id: this.id,
      jid,
      account,
      startedAt: this.startedAt,
      transport: this,
      counters: this.counters,
      onEnd: (s, condition, moved) => sessionEnded(this.env.ctx, s, condition, moved),
    });
    this.session = session;
    const replaced = sessions.add(session);
    // Also a hibernating one (XEP-0198): the new session takes the resource.
    if (replaced) replaced.close('conflict', 'replaced by a new session for the same resource');
    this.state = 'bound';
    this.send(iqResult(iq, x('bind', { xmlns: NS.bind }, x('jid', {}, jid.full))));
    void hooks.emit('session/bound', { session, account });
  }

  resume(session: BoundSession, handover: () => void): boolean {
    if (this.state !== 'authenticated' || !this.account || session.ended || session.account.id !== this.account.id) return false;
    const c = session.counters;
    c.stanzasIn += this.counters.stanzasIn;
    c.stanzasOut += this.counters.stanzasOut;
    c.bytesIn += this.counters.bytesIn;
    c.bytesOut += this.counters.bytesOut;
    this.counters = c;
    this.session = session;
    this.state = 'bound';
    session.attach(this, handover);
    return true;
  }

  adopt(taken: { id: string; jid: Jid; startedAt: Date }, handover: (session: BoundSession) => void): BoundSession | null {
    const account = this.account;
    if (this.state !== 'authenticated' || !account || taken.jid.bare !== Jid.of(account.username, account.host)?.bare) return null;
    const session = new BoundSession({
      id: taken.id,
      jid: taken.jid,
      account,
      startedAt: taken.startedAt,
      transport: this,
      counters: this.counters,
      onEnd: (s, condition, moved) => sessionEnded(this.env.ctx, s, condition, moved),
    });
    this.session = session;
    const replaced = this.env.ctx.sessions.add(session);
    // Not the stand-in of the node it came from (same session id): that one has left already.
    if (replaced && replaced !== session && replaced.id !== session.id) replaced.close('conflict', 'replaced by a new session for the same resource');
    this.state = 'bound';
    handover(session);
    return session;
  }

  private async handleStanza(el: Element, ns: string | undefined): Promise<void> {
    const { router, hooks } = this.env.ctx;
    const session = this.session!;
    if (ns !== NS.client) {
      if (await hooks.fire('c2s/nonza', { stream: this, session, element: el })) return;
      return this.close('unsupported-stanza-type');
    }
    if (el.name !== 'message' && el.name !== 'presence' && el.name !== 'iq') return this.close('unsupported-stanza-type');
    const jid = session.jid;
    const claimed = el.attrs.from;
    if (claimed !== undefined && claimed !== jid.full) {
      const parsed = Jid.tryParse(claimed);
      if (!parsed || (parsed.full !== jid.full && parsed.full !== jid.bare)) return this.close('invalid-from');
    }
    // Counted when accepted, before routing: a resumption that overtakes the routing still counts it.
    session.handled(el);
    if (el.name === 'iq' && !isValidIq(el)) {
      const reply = errorReply(el, 'bad-request');
      if (reply) {
        delete reply.attrs.from;
        this.send(reply);
      }
      return;
    }
    // RFC 3921 session establishment, offered as optional and still sent after binding by some
    // clients (Strophe.js, so Converse.js): a no-op that succeeds (RFC 6121 appendix E).
    if (el.name === 'iq' && el.attrs.type === 'set' && (claimedTo(el) === null || claimedTo(el) === this.host) && el.getChild('session', NS.session)) {
      return this.send(iqResult(el));
    }
    el.attrs.from = jid.full;
    await router.route(el, jid, { kind: 'c2s', session });
  }

  /** Called by the idle sweep: ping idle clients (XEP-0199), time out silent ones. */
  sweep(now: number): void {
    const c2s = this.env.ctx.config.c2s;
    if (!this.authenticated) {
      if (now - this.openedAt > c2s.authTimeout) this.close('connection-timeout');
      return;
    }
    if (this.pingSentAt !== null) {
      if (now - this.pingSentAt > c2s.pingTimeout) this.close('connection-timeout');
      return;
    }
    if (this.state === 'bound' && this.session && now - this.lastActivity > c2s.idlePingAfter) {
      this.pingSentAt = now;
      this.send(x('iq', { type: 'get', id: `ping-${now}`, from: this.host, to: this.session.jid.full }, x('ping', { xmlns: NS.ping })));
    }
  }
}

/** A session ended (whichever stream carried it last): it leaves the registry, modules hear of it. */
function sessionEnded(ctx: ServerContext, session: BoundSession, condition?: string, moved?: boolean): void {
  // A session replaced by a new one with the same JID is already gone from the registry.
  ctx.sessions.remove(session);
  if (!moved) void ctx.hooks.emit('session/closed', { session, condition });
}

function decodeSaslPayload(text: string): Buffer | null {
  const t = text.trim();
  if (t === '') return null;
  if (t === '=') return Buffer.alloc(0);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(t) || t.length % 4 !== 0) throw new Error('bad base64');
  return Buffer.from(t, 'base64');
}

/** The stanza's 'to', lower-cased, or null without one. */
function claimedTo(el: Element): string | null {
  return el.attrs.to === undefined ? null : el.attrs.to.toLowerCase();
}

function isValidIq(iq: Element): boolean {
  const type = iq.attrs.type;
  if (!iq.attrs.id) return false;
  if (type === 'get' || type === 'set') return iq.elements.length === 1;
  return type === 'result' || type === 'error';
}
