/**
 * Client streams over WebSocket (RFC 7395): the c2s stream machinery of c2s.ts (SASL with the
 * same mechanisms and limits, the login guard, registration, binding, and whatever the modules
 * add: stream management with resumption, CSI, carbons) with another framing. Each WebSocket
 * message is one complete XML element: `<open/>` and `<close/>` of the framing namespace stand for
 * the stream header and its end, every other element is a stanza or nonza that declares its own
 * namespaces (RFC 7395 3.3.3). TLS is the HTTPS connection's, so STARTTLS is never offered, and
 * channel binding binds to that TLS connection (the WebSocket runs inside it).
 *
 * A message that is not exactly one complete element ends the stream with a stream error in one
 * message, then `<close/>`, then a WebSocket close (RFC 7395 3.6, RFC 6120 4.9):
 *   binary frame                                   bad-format
 *   partial element, two elements, text, bad XML   not-well-formed (the parser's own condition
 *                                                  for restricted XML and limits)
 *   first element not a framing <open/>            invalid-namespace (as a wrong TCP stream header)
 *   <open/> while the stream is open               bad-format
 * A message of whitespace only is ignored.
 */
import type { TLSSocket } from 'node:tls';
import type { WebSocket } from 'ws';
import { XmlStreamParser, type ParserLimits } from '../../shared/xml/stream-parser.js';
import type { Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { randomHex } from '../../shared/random.js';
import { C2SStream, type C2SEnvironment } from './c2s.js';

export const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';
/** The WebSocket subprotocol of RFC 7395 (section 3.3.1). */
export const XMPP_SUBPROTOCOL = 'xmpp';

/** Output of one turn beyond this many times c2s.maxSendBuffer drops a client that does not read. */
const SEND_BUFFER_FACTOR = 8;

/**
 * The parser's stream root, never sent by a client: each message is parsed as a child of it, so
 * one parser (with its limits) serves the whole connection. It declares no namespace, so an
 * element without its own xmlns has none, as a stand-alone document would (RFC 7395 3.3.3).
 */
const PARSER_ROOT = Buffer.from('<websocket>');

export class WebSocketC2SStream extends C2SStream {
  private ws: WebSocket | null = null;
  /** Elements of the message being parsed. */
  private message: { el: Element; bytes: number }[] = [];
  /** A framing <open/> is due: at the start and after SASL. */
  private awaitingOpen = true;

  constructor(env: C2SEnvironment, ws: WebSocket, tlsSocket: TLSSocket, ip: string) {
    super(env, tlsSocket, ip, true);
    this.ws = ws;
    ws.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
    ws.on('error', () => this.destroy());
    ws.on('close', () => this.destroy());
  }

  protected override createParser(limits: ParserLimits): XmlStreamParser {
    const parser = new XmlStreamParser(
      {
        streamOpen: () => {},
        stanza: (el, bytes) => void this.message.push({ el, bytes }),
        streamClose: () => {},
        error: (condition, text) => this.onParserError(condition, text),
      },
      limits,
    );
    parser.write(PARSER_ROOT);
    return parser;
  }

  /** The WebSocket reads the socket; messages arrive through onMessage. */
  protected override attach(): void {}

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.isClosed) return;
    this.lastActivity = Date.now();
    this.pingSentAt = null;
    try {
      if (isBinary) return this.close('bad-format', 'WebSocket messages must be text frames');
      this.message = [];
      this.parser.write(data);
      if (this.isClosed) return;
      const elements = this.message;
      this.message = [];
      if (!this.parser.betweenStanzas) return this.close('not-well-formed', 'a WebSocket message must hold one complete XML element');
      if (elements.length === 0) return;
      if (elements.length > 1) return this.close('not-well-formed', 'a WebSocket message must hold exactly one XML element');
      this.onFrame(elements[0]!.el, elements[0]!.bytes);
    } catch (err) {
      this.env.ctx.log.error('stream handler failed', { stream: this.id, error: err instanceof Error ? err.message : String(err) });
      this.close('internal-server-error');
    }
  }

  private onFrame(el: Element, bytes: number): void {
    const framing = el.attrs.xmlns === NS_FRAMING;
    if (this.awaitingOpen) {
      this.awaitingOpen = false;
      // A non-<open/> element is a wrong stream header, refused by the common check.
      return this.onStreamOpen(el.name, el.attrs);
    }
    if (framing && el.name === 'open') return this.close('bad-format', 'the stream is already open');
    if (framing && el.name === 'close') return this.onStreamClose();
    this.onElement(el, bytes);
  }

  protected override isStreamRoot(name: string, attrs: Record<string, string>): boolean {
    return name === 'open' && attrs.xmlns === NS_FRAMING;
  }

  protected override restartInput(limits: Partial<ParserLimits>): void {
    this.awaitingOpen = true;
    this.parser.setLimits(limits);
  }

  protected override sendHeader(from: string): void {
    this.headerSent = true;
    this.writeRaw(`<open xmlns='${NS_FRAMING}' id='${randomHex(12)}' from='${from}' version='1.0' xml:lang='en'/>`);
  }

  protected override closingTag(): string {
    return `<close xmlns='${NS_FRAMING}'/>`;
  }

  protected override writeRaw(data: string): void {
    const ws = this.ws;
    if (this.isClosed || !ws || ws.readyState !== ws.OPEN) return;
    ws.send(declareNamespaces(data));
    const max = this.env.ctx.config.c2s.maxSendBuffer;
    if (ws.bufferedAmount > SEND_BUFFER_FACTOR * max) {
      this.env.ctx.log.info('closing a client that does not read', { stream: this.id });
      this.destroy();
    }
  }

  protected override endConnection(): void {
    const ws = this.ws;
    if (!ws) return;
    ws.close(1000);
    setTimeout(() => ws.terminate(), 2000).unref();
  }

  protected override dropConnection(): void {
    this.ws?.terminate();
  }
}

/**
 * Makes one serialised element a stand-alone document (RFC 7395 3.3.3): a stanza written without
 * an xmlns (it inherits jabber:client from the header on TCP) gets it, and the stream prefix of
 * <stream:features/> and <stream:error/> is declared. The serialiser escapes quotes in attribute
 * values, so ` xmlns='` or ` xmlns="` in the start tag is an attribute, never part of a value.
 */
export function declareNamespaces(data: string): string {
  if (data.charCodeAt(0) !== 0x3c /* < */) return data;
  const nameEnd = data.slice(1).search(/[\s/>]/) + 1;
  if (nameEnd <= 0) return data;
  const name = data.slice(1, nameEnd);
  const startTag = data.slice(0, data.indexOf('>') + 1);
  if (name.startsWith('stream:')) {
    if (/\sxmlns:stream=["']/.test(startTag)) return data;
    return `<${name} xmlns:stream='${NS.stream}'${data.slice(nameEnd)}`;
  }
  if (name.includes(':') || /\sxmlns=["']/.test(startTag)) return data;
  return `<${name} xmlns='${NS.client}'${data.slice(nameEnd)}`;
}
