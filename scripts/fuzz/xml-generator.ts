/**
 * Generates XMPP-stream-like documents for the parser fuzzer: an optional BOM and XML
 * declaration, a stream header that stays open (usually), then stanzas with namespaces,
 * prefixes, attributes, references, CDATA, unicode (astral and illegal characters included),
 * and now and then what XMPP forbids (comments, PIs, DTDs, text between stanzas) or what is not
 * well-formed at all. About half of the documents are then mutated at the byte level.
 */
import { Prng } from './prng.js';

const NS_STREAM = 'http://etherx.jabber.org/streams';
const XML_NS = 'http://www.w3.org/XML/1998/namespace';

const NAMES = ['message', 'presence', 'iq', 'body', 'query', 'item', 'x', 'error', 'a', 'b', 'r', 'ping', 'vCard', 'FN', 'n.a-m_e', '_u', 'é', 'ñame', '名前', '\u{10000}x', 'a\u0300', 'x\u00b7y', 'z·1'];
const ATTR_NAMES = ['to', 'from', 'id', 'type', 'jid', 'name', 'node', 'ver', 'a', 'b', 'c-d', 'e.f', '_g', 'ünï', '\u{10400}'];
const NAMESPACES = ['jabber:client', 'jabber:iq:roster', 'urn:xmpp:ping', 'vcard-temp', 'http://jabber.org/protocol/disco#info', 'urn:x', 'urn:y', 'ns', NS_STREAM];
const PREFIXES = ['p', 'q', 'stream', 'db', 'x1'];
const TEXTS = ['hello', 'a b', ' ', '\n', '\t', '\r\n', '\r', 'x\ry', '>', ']', ']]', '] ]>', '"', "'", 'é', '日本語', '\u{1F600}', '\u{10FFFF}', '\u{E000}', '\uFFFD', 'a\u2028b', '\u0085', '-', '--', '?', '=', '/'];
const REFS = ['&amp;', '&lt;', '&gt;', '&quot;', '&apos;', '&#65;', '&#x41;', '&#x1F600;', '&#128512;', '&#10;', '&#13;', '&#9;', '&#32;', '&#x10FFFF;', '&#xD7FF;', '&#xE000;', '&#xFFFD;'];
const BAD_REFS = ['&#0;', '&#x1;', '&#xFFFE;', '&#xD800;', '&#x110000;', '&#;', '&#x;', '&nbsp;', '&foo;', '&', '&amp', '&#65', '&#x4G;', '&#99999999999;', '&lt ;', '& ;', '&1a;'];
const ILLEGAL_CHARS = ['\u0000', '\u0001', '\u0008', '\u000b', '\u000c', '\u001f', '\uFFFE', '\uFFFF'];
/** Byte sequences that are not UTF-8: overlong, surrogates, above U+10FFFF, stray continuation bytes. */
const BAD_UTF8 = [[0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xf4, 0x90, 0x80, 0x80], [0xf5, 0x80, 0x80, 0x80], [0xff], [0xfe], [0x80], [0xbf], [0xe2, 0x82], [0xf0, 0x9f, 0x98]];
const FORBIDDEN = ['<!-- c -->', '<!---->', '<?pi x?>', '<?xml-stylesheet href="a"?>', '<!DOCTYPE x>', '<!DOCTYPE x [<!ENTITY e "v">]>', '<!ELEMENT a ANY>', '<!-- - -->', '<!-- a -- b -->', '<?xml version="1.0"?>'];
const TOKENS = ['<', '>', '&', ';', '"', "'", '=', '/', ':', ']]>', '<![CDATA[', '<!--', '-->', '<?', '?>', '</', '/>', 'xmlns', 'xmlns:', 'xmlns:p="urn:p"', ' ', '\n', '\r', '\t', '\u0000', '&#x0;', '<a>', '</a>', '<a/>', '</stream:stream>', '<!DOCTYPE', '\u{1F600}', '\uFEFF'];

export interface GeneratedInput {
  bytes: Buffer;
  /** Whether byte-level mutations were applied after generation. */
  mutated: boolean;
}

class Doc {
  readonly parts: (string | Buffer)[] = [];
  add(s: string | Buffer): void {
    this.parts.push(s);
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)));
  }
}

/** Namespace prefixes in scope while generating (mostly honoured, so most documents are namespace-well-formed). */
type Scope = Set<string>;

export class XmlGenerator {
  /** Scales the chance of each deliberate fault in this document (0 for a clean one). */
  private hostility = 1;

  constructor(private readonly r: Prng) {}

  /** One input: a document, possibly mutated. */
  input(): GeneratedInput {
    const doc = new Doc();
    this.hostility = this.r.pick([0, 0, 0.1, 1]);
    this.document(doc);
    let bytes = doc.bytes();
    const mutated = this.r.chance(0.4);
    if (mutated) bytes = this.mutate(bytes);
    return { bytes, mutated };
  }

  /** A deliberate fault, with probability p scaled by the document's hostility. */
  private bad(p: number): boolean {
    return this.r.chance(p * this.hostility);
  }

  private document(doc: Doc): void {
    const r = this.r;
    if (r.chance(0.03)) doc.add('\uFEFF');
    if (r.chance(0.4)) doc.add(this.xmlDecl());
    if (r.chance(0.1)) doc.add(r.pick([' ', '\n', '\r\n', '\t ']));
    if (this.bad(0.02)) doc.add(r.pick(FORBIDDEN));
    const scope: Scope = new Set(['xml']);
    const root = r.chance(0.85) ? 'stream:stream' : r.pick(['stream', 'x:stream', 'root', 'stream:features']);
    let header = `<${root}`;
    if (r.chance(0.95)) header += ` xmlns${this.eq()}${this.quoted(r.pick(['jabber:client', 'jabber:server', 'jabber:component:accept', 'urn:x']))}`;
    if (r.chance(0.93)) {
      header += ` xmlns:stream${this.eq()}${this.quoted(NS_STREAM)}`;
      scope.add('stream');
    }
    if (r.chance(0.2)) {
      header += ` xmlns:db='jabber:server:dialback'`;
      scope.add('db');
    }
    for (const [name, value] of [['to', 'example.com'], ['version', '1.0'], ['from', 'a@b/c'], ['xml:lang', 'en']] as const) {
      if (r.chance(0.7)) header += `${this.ws()}${name}${this.eq()}${this.quoted(value)}`;
    }
    if (r.chance(0.1)) header += this.attributes(scope);
    header += r.chance(0.1) ? this.ws(true) : '';
    if (r.chance(0.02)) {
      doc.add(header + '/>');
      return;
    }
    doc.add(header + '>');
    const stanzas = r.range(0, 6);
    for (let i = 0; i < stanzas; i++) {
      if (r.chance(0.3)) doc.add(r.pick([' ', '\n', '\r\n', '  \t']));
      if (this.bad(0.02)) doc.add(r.pick(['x', '&#32;', '&amp;', '<![CDATA[ ]]>', '<![CDATA[]]>']));
      if (this.bad(0.02)) doc.add(r.pick(FORBIDDEN));
      this.element(doc, new Set(scope), 1, r.range(2, 6));
    }
    if (r.chance(0.25)) {
      doc.add(`</${root}${r.chance(0.1) ? ' ' : ''}>`);
      if (r.chance(0.2)) doc.add(this.bad(0.5) ? r.pick(['x', '<a/>', '<!-- -->']) : r.pick([' ', '\n']));
    }
  }

  private xmlDecl(): string {
    const r = this.r;
    const q = r.pick(['"', "'"]);
    let decl = `<?xml version=${q}${r.pick(['1.0', '1.0', '1.1', '1.5', '2.0', '1.'])}${q}`;
    if (r.chance(0.4)) decl += ` encoding=${q}${r.pick(['UTF-8', 'utf-8', 'utf8', 'UTF8', 'ISO-8859-1', 'UTF-16', 'ascii'])}${q}`;
    if (r.chance(0.2)) decl += ` standalone=${q}${r.pick(['yes', 'no', 'maybe'])}${q}`;
    return decl + (r.chance(0.2) ? ' ' : '') + '?>';
  }

  private ws(optional = false): string {
    const r = this.r;
    if (optional && r.chance(0.5)) return '';
    return r.chance(0.85) ? ' ' : r.pick(['\n', '\t', '\r\n', '  ', '\r']);
  }

  private eq(): string {
    return this.r.chance(0.9) ? '=' : this.r.pick([' =', '= ', ' = ', '\n=\t']);
  }

  private quoted(value: string): string {
    const q = this.r.pick(['"', "'"]);
    const escaped = value.replace(/&/g, '&amp;').replace(/</g, '&lt;').split(q).join(q === '"' ? '&quot;' : '&apos;');
    return q + escaped + q;
  }

  /** A qualified name from the pool; prefixed names usually use a prefix in scope. */
  private qname(pool: readonly string[], scope: Scope, prefixChance: number): string {
    const r = this.r;
    const local = r.pick(pool);
    if (!r.chance(prefixChance)) return local;
    const inScope = [...scope].filter((p) => p !== 'xml');
    const prefix = inScope.length > 0 && r.chance(0.85) ? r.pick(inScope) : r.pick(PREFIXES);
    return `${prefix}:${local}`;
  }

  private attributes(scope: Scope): string {
    const r = this.r;
    let out = '';
    const used = new Set<string>();
    const count = r.chance(0.5) ? r.range(0, 2) : r.range(0, 6);
    if (r.chance(0.3)) {
      out += `${this.ws()}xmlns${this.eq()}${this.quoted(r.chance(0.05) ? '' : r.pick(NAMESPACES))}`;
      used.add('xmlns');
    }
    if (r.chance(0.2)) {
      const prefix = r.pick(PREFIXES);
      const uri = this.bad(0.03) ? r.pick(['', XML_NS, 'http://www.w3.org/2000/xmlns/', ' urn:x']) : r.pick(NAMESPACES);
      out += `${this.ws()}xmlns:${this.bad(0.02) ? r.pick(['xml', 'xmlns']) : prefix}${this.eq()}${this.quoted(uri)}`;
      scope.add(prefix);
      used.add('xmlns:' + prefix);
    }
    for (let i = 0; i < count; i++) {
      let name = r.chance(0.05) ? 'xml:lang' : this.qname(ATTR_NAMES, scope, 0.1);
      if (used.has(name) && !this.bad(0.03)) continue; // now and then a duplicate
      used.add(name);
      if (this.bad(0.01)) name = r.pick(['1a', '-x', 'a:', ':a', 'a:b:c', '.x']);
      out += `${this.ws()}${name}${this.eq()}${this.attrValue()}`;
    }
    return out;
  }

  private attrValue(): string {
    const r = this.r;
    const q = r.pick(['"', "'"]);
    const other = q === '"' ? "'" : '"';
    let v = '';
    const n = r.range(0, 4);
    for (let i = 0; i < n; i++) {
      const k = this.bad(1) ? r.int(100) : r.int(80);
      if (k < 50) v += r.pick(TEXTS).replace(/[<&]/g, '').split(q).join(other);
      else if (k < 70) v += r.pick(REFS);
      else if (k < 75) v += other + '>';
      else if (k < 80) v += r.pick(['a', 'B', '1', ' ', 'urn:x', 'a@b/c']);
      else if (k < 88) v += r.pick(BAD_REFS);
      else if (k < 96) v += r.pick(ILLEGAL_CHARS);
      else v += '<';
    }
    return q + v + q;
  }

  private element(doc: Doc, scope: Scope, depth: number, maxDepth: number): void {
    const r = this.r;
    const name = this.bad(0.01) ? r.pick(['1x', '-a', 'a:b:c', ':a', 'xmlns:a', 'a:']) : this.qname(NAMES, scope, 0.08);
    const attrs = this.attributes(scope);
    doc.add(`<${name}${attrs}${this.ws(true)}`);
    if (r.chance(0.25)) {
      doc.add('/>');
      return;
    }
    doc.add('>');
    const children = depth >= maxDepth ? 0 : r.range(0, 4);
    for (let i = 0; i < children; i++) {
      if (r.chance(0.45)) this.element(doc, new Set(scope), depth + 1, maxDepth);
      else this.content(doc);
    }
    if (r.chance(0.4)) this.content(doc);
    doc.add(this.bad(0.01) ? `</${name}x>` : `</${name}${r.chance(0.05) ? this.ws() : ''}>`);
  }

  private content(doc: Doc): void {
    const r = this.r;
    const k = this.bad(1) ? r.int(1000) : r.int(840);
    if (k < 500) doc.add(r.pick(TEXTS));
    else if (k < 700) doc.add(r.pick(REFS));
    else if (k < 800) doc.add(`<![CDATA[${r.pick(TEXTS)}${r.pick(['', '<a>', '&amp;', ']]', ']', '\r\n'])}]]>`);
    else if (k < 840) doc.add(r.pick(['x'.repeat(r.range(1, 300)), '\u{1F600}'.repeat(r.range(1, 50)), 'é'.repeat(r.range(1, 100))]));
    else if (k < 860) doc.add(r.pick(BAD_REFS));
    else if (k < 880) doc.add(r.pick(ILLEGAL_CHARS));
    else if (k < 890) doc.add(Buffer.from(r.pick(BAD_UTF8)));
    else if (k < 900) doc.add(r.pick(FORBIDDEN));
    else if (k < 910) doc.add(r.pick(['<', '<>', '< a>', '</>', '<a', '&<', ']]>', '<![CDATA[', '<!-x', '<!', '<!D']));
    else doc.add(r.pick(['a', 'ü', '\u{10000}', '0', ' ', '\u00a0']));
  }

  /** Byte-level mutations: deletions, duplications, insertions of syntax tokens or random bytes, truncation. */
  private mutate(input: Buffer): Buffer {
    const r = this.r;
    let b = input;
    const rounds = r.range(1, 4);
    for (let i = 0; i < rounds; i++) {
      const at = r.int(b.length + 1);
      const len = r.range(1, Math.min(16, Math.max(1, b.length - at)));
      switch (r.int(6)) {
        case 0:
          b = Buffer.concat([b.subarray(0, at), b.subarray(at + len)]);
          break;
        case 1:
          b = Buffer.concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]);
          break;
        case 2:
          b = Buffer.concat([b.subarray(0, at), Buffer.from(r.pick(TOKENS)), b.subarray(at)]);
          break;
        case 3:
          b = Buffer.concat([b.subarray(0, at), Buffer.from([r.int(256)]), b.subarray(at)]);
          break;
        case 4:
          if (at < b.length) {
            b = Buffer.from(b);
            b[at] = r.chance(0.5) ? r.int(256) : r.pick([0x3c, 0x3e, 0x26, 0x22, 0x27, 0x3a, 0x20, 0x2f, 0x3d, 0x5d]);
          }
          break;
        default:
          b = b.subarray(0, Math.max(at, b.length - r.range(1, 8)));
      }
    }
    return b;
  }
}

/** Random byte boundaries for feeding an input in chunks (inside multi-byte characters too). */
export function randomSplit(r: Prng, length: number): number[] {
  const cuts: number[] = [];
  const style = r.int(4);
  const max = style === 0 ? 1 : style === 1 ? 4 : style === 2 ? 32 : 512;
  for (let at = 0; at < length; ) {
    at += r.range(1, max);
    if (at < length) cuts.push(at);
  }
  return cuts;
}
