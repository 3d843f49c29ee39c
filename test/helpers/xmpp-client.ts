/**
 * A small raw-socket XMPP client for tests: it speaks the wire protocol itself (STARTTLS or direct
 * TLS, SCRAM, bind) so tests see exactly what a client would, and can misbehave on purpose.
 */
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { XmlStreamParser } from '../../shared/xml/stream-parser.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

export interface ConnectOptions {
  port: number;
  host?: string;
  domain?: string;
  directTls?: boolean;
  localAddress?: string;
  /** Skip STARTTLS (to test refusals). */
  plain?: boolean;
  /** Sent first, before TLS or XML (a PROXY protocol header, as a proxy would send it). */
  proxyHeader?: Buffer;
  /** Namespace prefixes declared on every stream header the client sends (prefix: namespace). */
  streamPrefixes?: Record<string, string>;
}

type Matcher = (el: Element) => boolean;

export class TestClient {
  readonly received: Element[] = [];
  streamFeatures: Element | null = null;
  streamError: string | null = null;
  closed = false;
  jid = '';
  private socket!: Socket | TLSSocket;
  private parser: XmlStreamParser;
  private waiters: { match: Matcher; resolve: (el: Element) => void }[] = [];
  private streamOpenWaiters: (() => void)[] = [];
  private closeWaiters: (() => void)[] = [];
  private idCounter = 0;
  readonly domain: string;

  private constructor(readonly opts: ConnectOptions) {
    this.domain = opts.domain ?? 'localhost';
    this.parser = new XmlStreamParser(
      {
        streamOpen: () => {
          for (const w of this.streamOpenWaiters.splice(0)) w();
        },
        stanza: (el) => this.onElement(el),
        streamClose: () => this.onClosed(),
        error: () => this.onClosed(),
      },
      { maxStanzaBytes: 10 * 1024 * 1024, maxDepth: 100, maxAttributes: 100 },
    );
  }

  static async connect(opts: ConnectOptions): Promise<TestClient> {
    const c = new TestClient(opts);
    await c.open();
    return c;
  }

  private async open(): Promise<void> {
    const host = this.opts.host ?? '127.0.0.1';
    let raw: Socket | undefined;
    if (this.opts.proxyHeader) {
      raw = tcpConnect({ host, port: this.opts.port, localAddress: this.opts.localAddress });
      raw.write(this.opts.proxyHeader);
    }
    if (this.opts.directTls) {
      this.socket = tlsConnect({
        ...(raw ? { socket: raw } : {}),
        host,
        port: this.opts.port,
        servername: this.domain,
        rejectUnauthorized: false,
        ALPNProtocols: ['xmpp-client'],
        ...(this.opts.localAddress ? { localAddress: this.opts.localAddress } : {}),
      } as ConnectionOptions);
      await new Promise<void>((resolve, reject) => {
        this.socket.once('secureConnect', resolve);
        this.socket.once('error', reject);
      });
    } else if (raw) {
      this.socket = raw;
    } else {
      this.socket = tcpConnect({ host, port: this.opts.port, localAddress: this.opts.localAddress });
      await new Promise<void>((resolve, reject) => {
        this.socket.once('connect', resolve);
        this.socket.once('error', reject);
      });
    }
    this.wire(this.socket);
    await this.startStream();
    if (!this.opts.directTls && !this.opts.plain) await this.startTls();
  }

  private wire(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('error', () => this.onClosed());
    socket.on('close', () => this.onClosed());
  }

  private readonly onData = (chunk: Buffer): void => this.parser.write(chunk);

  private onClosed(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.closeWaiters.splice(0)) w();
  }

  /** Answer the server's XEP-0199 pings from now on, like a live client. */
  answerPings(): void {
    this.autoPong = true;
  }

  private autoPong = false;
  private readonly autoAnswers: { match: Matcher; answer: (el: Element) => Element }[] = [];

  /** Answer stanzas matching `match` with `answer(stanza)` from now on (a live client's disco#info). */
  autoAnswer(match: Matcher, answer: (el: Element) => Element): void {
    this.autoAnswers.push({ match, answer });
  }

  private onElement(el: Element): void {
    if (this.autoPong && el.name === 'iq' && el.attrs.type === 'get' && el.getChild('ping', NS.ping)) {
      this.send(x('iq', { type: 'result', id: el.attrs.id, to: el.attrs.from }));
      return;
    }
    const auto = this.autoAnswers.find((a) => a.match(el));
    if (auto) {
      this.send(auto.answer(el));
      return;
    }
    if (el.name === 'stream:features') this.streamFeatures = el;
    if (el.name === 'stream:error') this.streamError = el.elements.find((c) => c.name !== 'text')?.name ?? 'unknown';
    const i = this.waiters.findIndex((w) => w.match(el));
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1);
      w!.resolve(el);
    } else {
      this.received.push(el);
    }
  }

  writeRaw(data: string | Buffer): void {
    this.socket.write(data);
  }

  send(el: Element): void {
    this.socket.write(el.toString());
  }

  /** Waits for (or takes from what already arrived) the first element matching. */
  expect(match: Matcher | string, timeoutMs = 10_000): Promise<Element> {
    const m: Matcher = typeof match === 'string' ? (el) => el.name === match : match;
    const i = this.received.findIndex(m);
    if (i >= 0) return Promise.resolve(this.received.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const waiter = { match: m, resolve: (el: Element) => (clearTimeout(timer), resolve(el)) };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`timed out waiting for ${typeof match === 'string' ? match : 'a matching element'}; received: ${this.received.map(String).join(' ').slice(0, 2000)}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Resolves true if nothing matching arrives within the time. */
  async expectNothing(match: Matcher, ms = 300): Promise<boolean> {
    try {
      await this.expect(match, ms);
      return false;
    } catch {
      return true;
    }
  }

  waitClosed(timeoutMs = 5000): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('connection not closed')), timeoutMs);
      this.closeWaiters.push(() => (clearTimeout(timer), resolve()));
    });
  }

  nextId(): string {
    return `t${++this.idCounter}`;
  }

  /** Sends an IQ and resolves with the result or error of the same id. */
  async iq(iq: Element, timeoutMs = 10_000): Promise<Element> {
    if (!iq.attrs.id) iq.attrs.id = this.nextId();
    const id = iq.attrs.id;
    const reply = this.expect((el) => el.name === 'iq' && el.attrs.id === id && (el.attrs.type === 'result' || el.attrs.type === 'error'), timeoutMs);
    this.send(iq);
    return reply;
  }

  private async startStream(): Promise<void> {
    const opened = new Promise<void>((r) => this.streamOpenWaiters.push(r));
    this.streamFeatures = null;
    const prefixes = Object.entries(this.opts.streamPrefixes ?? {}).map(([p, ns]) => ` xmlns:${p}='${ns}'`).join('');
    this.writeRaw(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='${NS.stream}'${prefixes} to='${this.domain}' version='1.0'>`);
    await opened;
    await this.expect('stream:features');
  }

  private async startTls(): Promise<void> {
    this.writeRaw(`<starttls xmlns='${NS.tls}'/>`);
    await this.expect('proceed');
    const raw = this.socket;
    raw.removeListener('data', this.onData);
    const secure = tlsConnect({ socket: raw, servername: this.domain, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    this.socket = secure;
    this.wire(secure);
    this.parser.reset();
    await this.startStream();
  }

  get tlsSocket(): TLSSocket | null {
    return 'encrypted' in this.socket ? (this.socket as TLSSocket) : null;
  }

  mechanisms(): string[] {
    return this.streamFeatures?.getChild('mechanisms', NS.sasl)?.getChildren('mechanism').map((m) => m.text()) ?? [];
  }

  /** XEP-0077 in-band registration before authentication. */
  async register(username: string, password: string): Promise<Element> {
    return this.iq(x('iq', { type: 'set', to: this.domain }, x('query', { xmlns: NS.register }, x('username', {}, username), x('password', {}, password))));
  }

  /** SCRAM authentication (SHA-256 by default); returns the SASL outcome element. */
  async authenticate(username: string, password: string, mechanism = 'SCRAM-SHA-256'): Promise<Element> {
    return saslAuthenticate({ write: (data) => this.writeRaw(data), expect: (m) => this.expect(m), tls: this.tlsSocket }, username, password, mechanism);
  }

  /** Authenticates and restarts the stream without binding (e.g. to resume a XEP-0198 session); resolves with the new stream features. */
  async authenticateAndRestart(username: string, password: string, mechanism?: string): Promise<Element> {
    const outcome = await this.authenticate(username, password, mechanism);
    if (outcome.name !== 'success') throw new Error(`authentication failed: ${outcome.firstElement()?.name}`);
    this.parser.reset();
    await this.startStream();
    return this.streamFeatures!;
  }

  /** Authenticates, restarts the stream and binds; throws on failure. */
  async login(username: string, password: string, opts: { resource?: string; mechanism?: string } = {}): Promise<string> {
    await this.authenticateAndRestart(username, password, opts.mechanism);
    const bind = x('bind', { xmlns: NS.bind });
    if (opts.resource) bind.append(x('resource', {}, opts.resource));
    const reply = await this.iq(x('iq', { type: 'set' }, bind));
    const jid = reply.getChild('bind', NS.bind)?.getChildText('jid');
    if (!jid) throw new Error(`bind failed: ${reply}`);
    this.jid = jid;
    return jid;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      this.writeRaw('</stream:stream>');
    } catch {
      /* already gone */
    }
    await this.waitClosed(2000).catch(() => {});
    this.socket.destroy();
  }

  /** The socket currently carrying the stream (TLS once negotiated). */
  tlsSocketOrSocket(): Socket {
    return this.socket;
  }

  /** Stops reading from the socket, like a client that hangs. */
  pauseReading(): void {
    this.socket.pause();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** What a SASL exchange needs of a client: writing, waiting for an element, and the TLS socket for channel binding. */
export interface SaslIo {
  write(data: string): void;
  expect(match: Matcher): Promise<Element>;
  tls: TLSSocket | null;
}

/** PLAIN or SCRAM (-PLUS with tls-exporter); resolves with <success/> or <failure/>, checking the server's signature. */
export async function saslAuthenticate(io: SaslIo, username: string, password: string, mechanism = 'SCRAM-SHA-256'): Promise<Element> {
  if (mechanism === 'PLAIN') {
    io.write(`<auth xmlns='${NS.sasl}' mechanism='PLAIN'>${Buffer.from(`\0${username}\0${password}`).toString('base64')}</auth>`);
    return io.expect((el) => el.name === 'success' || el.name === 'failure');
  }
  const hash = mechanism.startsWith('SCRAM-SHA-256') ? 'sha256' : 'sha1';
  const plus = mechanism.endsWith('-PLUS');
  let gs2 = 'n,,';
  let cbData = Buffer.alloc(0);
  if (plus) {
    const sock = io.tls!;
    gs2 = 'p=tls-exporter,,';
    cbData = sock.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0));
  }
  const cnonce = randomBytes(18).toString('base64');
  const bare = `n=${username.replace(/=/g, '=3D').replace(/,/g, '=2C')},r=${cnonce}`;
  io.write(`<auth xmlns='${NS.sasl}' mechanism='${mechanism}'>${Buffer.from(gs2 + bare).toString('base64')}</auth>`);
  const challenge = await io.expect((el) => el.name === 'challenge' || el.name === 'failure');
  if (challenge.name === 'failure') return challenge;
  const serverFirst = Buffer.from(challenge.text(), 'base64').toString();
  const attrs = Object.fromEntries(serverFirst.split(',').map((p) => [p[0], p.slice(2)]));
  const salted = pbkdf2Sync(password.normalize('NFKC'), Buffer.from(attrs.s!, 'base64'), Number(attrs.i), hash === 'sha256' ? 32 : 20, hash);
  const clientKey = createHmac(hash, salted).update('Client Key').digest();
  const storedKey = createHash(hash).update(clientKey).digest();
  const withoutProof = `c=${Buffer.concat([Buffer.from(gs2), cbData]).toString('base64')},r=${attrs.r}`;
  const authMessage = `${bare},${serverFirst},${withoutProof}`;
  const signature = createHmac(hash, storedKey).update(authMessage).digest();
  const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]!));
  io.write(`<response xmlns='${NS.sasl}'>${Buffer.from(`${withoutProof},p=${proof.toString('base64')}`).toString('base64')}</response>`);
  const outcome = await io.expect((el) => el.name === 'success' || el.name === 'failure');
  if (outcome.name === 'success') {
    const serverKey = createHmac(hash, salted).update('Server Key').digest();
    const expected = createHmac(hash, serverKey).update(authMessage).digest('base64');
    const final = Buffer.from(outcome.text(), 'base64').toString();
    if (final !== `v=${expected}`) throw new Error('server signature mismatch');
  }
  return outcome;
}
