/**
 * A raw XMPP-over-WebSocket test client (RFC 7395) on the `ws` package: every message it receives
 * must be one complete XML element (else the test sees an error element 'frame-error'), and it can
 * send anything, bad frames included.
 */
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { WebSocket } from 'ws';
import { Element, x } from '../../shared/xml/element.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import { NS } from '../../shared/ns.js';
import { saslAuthenticate } from './xmpp-client.js';

export const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';
type Matcher = (el: Element) => boolean;

export class WsTestClient {
  readonly received: Element[] = [];
  private readonly waiters: { match: Matcher; resolve: (el: Element) => void }[] = [];
  /** Resolves with the WebSocket close code once the connection is closed. */
  readonly closed: Promise<number>;

  /** The TLS connection the WebSocket runs in (channel binding). */
  tls: TLSSocket | null = null;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      const el = isBinary ? null : parseXmlText(String(data));
      this.onElement(el ?? x('frame-error', {}, String(data)));
    });
    this.closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
    ws.on('error', () => {});
  }

  /** `proxyHeader`: a PROXY protocol header written before TLS, as a proxy in front would. */
  static connect(port: number, opts: { protocols?: string[]; path?: string; proxyHeader?: string } = {}): Promise<WsTestClient> {
    let tls: TLSSocket | null = null;
    const ws = new WebSocket(`wss://127.0.0.1:${port}${opts.path ?? '/xmpp-websocket'}`, opts.protocols ?? ['xmpp'], {
      rejectUnauthorized: false,
      headers: { Host: 'localhost' },
      createConnection: (o: ConnectionOptions) => {
        if (!opts.proxyHeader) return (tls = tlsConnect({ ...o, servername: 'localhost' }));
        const raw = netConnect({ host: '127.0.0.1', port });
        raw.write(opts.proxyHeader);
        return (tls = tlsConnect({ ...o, socket: raw, servername: 'localhost' }));
      },
    } as object);
    const client = new WsTestClient(ws);
    ws.once('upgrade', () => (client.tls = tls));
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { statusCode: res.statusCode })));
      ws.once('error', reject);
    });
  }

  private onElement(el: Element): void {
    const i = this.waiters.findIndex((w) => w.match(el));
    if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(el);
    else this.received.push(el);
  }

  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  send(el: Element): void {
    this.ws.send(el.toString());
  }

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

  /** Sends <open/> and waits for the server's <open/> and stream features. */
  async open(domain = 'localhost'): Promise<Element> {
    this.send(x('open', { xmlns: NS_FRAMING, to: domain, version: '1.0' }));
    await this.expect((el) => el.name === 'open' && el.attrs.xmlns === NS_FRAMING);
    return this.expect('stream:features');
  }

  /** SASL (PLAIN unless named), the stream restart, and binding; returns the full JID. */
  async login(username: string, password: string, resource?: string, mechanism?: string): Promise<string> {
    await this.open();
    await this.authenticate(username, password, mechanism);
    return this.bind(resource);
  }

  /** SASL (PLAIN, SCRAM, SCRAM-PLUS over this connection's TLS) and the stream restart. */
  async authenticate(username: string, password: string, mechanism = 'PLAIN'): Promise<void> {
    const outcome = await saslAuthenticate({ write: (data) => this.sendRaw(data), expect: (m) => this.expect(m), tls: this.tls }, username, password, mechanism);
    if (outcome.name !== 'success') throw new Error(`login failed: ${outcome}`);
    await this.open();
  }

  async bind(resource?: string): Promise<string> {
    this.send(x('iq', { xmlns: NS.client, type: 'set', id: 'bind' }, x('bind', { xmlns: NS.bind }, resource ? x('resource', {}, resource) : null)));
    const bound = await this.expect((el) => el.name === 'iq' && el.attrs.id === 'bind');
    const jid = bound.getChild('bind', NS.bind)?.getChildText('jid');
    if (!jid) throw new Error(`bind failed: ${bound}`);
    return jid;
  }

  /** Waits for a stream error, the framing <close/> after it, and the WebSocket close; returns the condition. */
  async streamError(): Promise<string> {
    const error = await this.expect('stream:error');
    await this.expect((el) => el.name === 'close' && el.attrs.xmlns === NS_FRAMING);
    await this.closed;
    return error.elements.find((c) => c.name !== 'text')?.name ?? 'none';
  }

  destroy(): void {
    this.ws.terminate();
  }
}
