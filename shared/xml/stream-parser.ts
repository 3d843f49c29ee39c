/**
 * Streaming XML parser for XMPP streams (RFC 6120 section 11): no DTDs, comments, PIs or
 * non-predefined entities; namespace-well-formed (every prefix declared, no reserved
 * declarations), without resolving names: elements keep their qualified names and xmlns attributes. Input is decoded to a string buffer once per chunk and scanned
 * with indexOf/charCodeAt; elements are built without recursion.
 *
 * Events do not depend on how the input is split into chunks. The one exception is which of
 * two errors is reported when a stanza is both too large and malformed.
 */
import { isUtf8 } from 'node:buffer';
import { Element } from './element.js';

export interface ParserLimits {
  /** Largest stanza, and largest stream header (with any XML declaration), in bytes. */
  maxStanzaBytes: number;
  /** Deepest nesting, counting the stanza itself as depth 1. */
  maxDepth: number;
  /** Most attributes on one element. */
  maxAttributes: number;
}

export type ParserErrorCondition = 'not-well-formed' | 'restricted-xml' | 'policy-violation';

export interface ParserHandler {
  /** The stream root's start tag (whatever the first element is). */
  streamOpen(name: string, attrs: Record<string, string>): void;
  /** A complete child of the root, detached, with its size in the input in bytes. */
  stanza(el: Element, bytes: number): void;
  /** The root's closing tag. */
  streamClose(): void;
  /** Called at most once; the parser then ignores all input, even after reset(). */
  error(condition: ParserErrorCondition, text: string): void;
}

class ParseFailure {
  constructor(readonly condition: ParserErrorCondition, readonly text: string) {}
}

function fail(condition: ParserErrorCondition, text: string): never {
  throw new ParseFailure(condition, text);
}

const enum State { Start, Prolog, Stream, Closed, Failed }
/** Why parsing stopped before the end of the buffer: what the unconsumed rest is. */
const enum Wait { None, Short, Tag, Close, Cdata, Decl }

const LT = 0x3c, GT = 0x3e, SLASH = 0x2f, BANG = 0x21, QUESTION = 0x3f, EQ = 0x3d, QUOT = 0x22, APOS = 0x27;
const AMP = 0x26, SEMI = 0x3b, RBRACKET = 0x5d, CR = 0x0d, BOM = 0xfeff;
const CDATA_OPEN = '<![CDATA[';
// Shared empty constructor arguments: the constructor only reads them; attrs are assigned directly.
const NO_ATTRS: Record<string, string> = Object.freeze({}) as Record<string, string>;
const NO_CHILDREN = Object.freeze([]) as unknown as Element[];
/** Longest entity reference accepted, '&' to ';' ('&#x10FFFF;' is 10; longer ones are not-well-formed). */
const MAX_REF_LEN = 32;

const NAME_START = 1, NAME_CHAR = 2, COLON = 4;
const ASCII_NAME = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (ch === ':') ASCII_NAME[c] = NAME_START | NAME_CHAR | COLON;
  else if (/[A-Za-z_]/.test(ch)) ASCII_NAME[c] = NAME_START | NAME_CHAR;
  else if (/[0-9.-]/.test(ch)) ASCII_NAME[c] = NAME_CHAR;
}

// Surrogates are accepted as name characters: valid UTF-8 only yields them in pairs, and
// every supplementary plane up to U+EFFFF is allowed in names.
function isNameStartHi(c: number): boolean {
  return (c >= 0xc0 && c <= 0xd6) || (c >= 0xd8 && c <= 0xf6) || (c >= 0xf8 && c <= 0x2ff) ||
    (c >= 0x370 && c <= 0x37d) || (c >= 0x37f && c <= 0x1fff) || c === 0x200c || c === 0x200d ||
    (c >= 0x2070 && c <= 0x218f) || (c >= 0x2c00 && c <= 0x2fef) || (c >= 0x3001 && c <= 0xdb7f) ||
    (c >= 0xdc00 && c <= 0xdfff) || (c >= 0xf900 && c <= 0xfdcf) || (c >= 0xfdf0 && c <= 0xfffd);
}

function isNameCharHi(c: number): boolean {
  return isNameStartHi(c) || c === 0xb7 || (c >= 0x300 && c <= 0x36f) || c === 0x203f || c === 0x2040;
}

function isNameStart(c: number): boolean {
  return c < 128 ? (ASCII_NAME[c]! & NAME_START) !== 0 : isNameStartHi(c);
}

/** Set by scanName: whether the name it scanned contains a colon (saves a second pass for checkQName). */
let scannedColon = false;

/** End of the name starting at i (i itself if there is no name there). */
function scanName(s: string, i: number): number {
  scannedColon = false;
  if (i >= s.length || !isNameStart(s.charCodeAt(i))) return i;
  const len = s.length;
  let flags = ASCII_NAME[s.charCodeAt(i)] ?? 0;
  for (i++; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128) {
      if (!isNameCharHi(c)) break;
    } else {
      const f = ASCII_NAME[c]!;
      if ((f & NAME_CHAR) === 0) break;
      flags |= f;
    }
  }
  scannedColon = (flags & COLON) !== 0;
  return i;
}

/** Namespaces in XML: at most one colon, with a non-empty prefix and local part. */
function checkQName(name: string): void {
  if (!scannedColon) return;
  const colon = name.indexOf(':');
  if (colon === 0 || colon === name.length - 1 || name.indexOf(':', colon + 1) !== -1) {
    fail('not-well-formed', `bad name '${name}'`);
  }
}

const XML_NS = 'http://www.w3.org/XML/1998/namespace';
const XMLNS_NS = 'http://www.w3.org/2000/xmlns/';

/** Namespaces in XML 1.0 section 3: a declaration of prefix (null: the default namespace) that may not be made. */
function checkDeclaration(prefix: string | null, uri: string): void {
  if (prefix === null) {
    if (uri === XML_NS || uri === XMLNS_NS) fail('not-well-formed', 'reserved namespace as the default namespace');
    return;
  }
  if (prefix === 'xmlns') fail('not-well-formed', "the prefix 'xmlns' cannot be declared");
  if (uri === '') fail('not-well-formed', `prefix '${prefix}' declared with an empty namespace`);
  if ((prefix === 'xml') !== (uri === XML_NS) || uri === XMLNS_NS) fail('not-well-formed', `prefix '${prefix}' bound to a reserved namespace`);
}

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d;
}

function skipWs(s: string, i: number): number {
  const len = s.length;
  while (i < len && isWs(s.charCodeAt(i))) i++;
  return i;
}

const ILLEGAL_CHARS = /[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/;
const TEXT_SPECIAL = /[&\r\]\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/;
const PREDEFINED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
const XML_DECL = /^<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(["'])1\.[0-9]+\1(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(["'])([A-Za-z][A-Za-z0-9._-]*)\2)?(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(["'])(?:yes|no)\4)?[ \t\r\n]*\?>$/;

function isXmlChar(cp: number): boolean {
  return cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) ||
    (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

function decodeRef(ref: string): string {
  const predefined = PREDEFINED[ref];
  if (predefined !== undefined && Object.hasOwn(PREDEFINED, ref)) return predefined;
  if (ref.charCodeAt(0) === 0x23 /* # */) {
    const hex = ref.charCodeAt(1) === 0x78 /* x */;
    const digits = ref.slice(hex ? 2 : 1);
    if (!(hex ? /^[0-9a-fA-F]+$/ : /^[0-9]+$/).test(digits)) fail('not-well-formed', `bad character reference '&${ref};'`);
    const cp = parseInt(digits, hex ? 16 : 10);
    if (!isXmlChar(cp)) fail('not-well-formed', `character reference to illegal character '&${ref};'`);
    return String.fromCodePoint(cp);
  }
  return fail('restricted-xml', `entity reference '&${ref};' not allowed`);
}

function isDigit(c: number, hex: boolean): boolean {
  return (c >= 0x30 && c <= 0x39) || (hex && ((c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46)));
}

/**
 * Index of the first character after s[amp] ('&') that cannot continue a reference (its ';' if
 * it is complete). A reference that does not end there is malformed whatever follows.
 */
function refPrefixEnd(s: string, amp: number): number {
  let i = amp + 1;
  if (s.charCodeAt(i) !== 0x23 /* # */) return scanName(s, i);
  i++;
  const hex = s.charCodeAt(i) === 0x78; /* x */
  if (hex) i++;
  while (i < s.length && isDigit(s.charCodeAt(i), hex)) i++;
  return i;
}

function decodeRefs(s: string): string {
  let out = '';
  let last = 0;
  for (let amp = s.indexOf('&'); amp !== -1; amp = s.indexOf('&', last)) {
    const end = refPrefixEnd(s, amp);
    if (end === amp + 1 || s.charCodeAt(end) !== SEMI || end - amp >= MAX_REF_LEN) fail('not-well-formed', 'bad entity reference');
    out += s.slice(last, amp) + decodeRef(s.slice(amp + 1, end));
    last = end + 1;
  }
  return out + s.slice(last);
}

function decodeText(raw: string): string {
  if (!TEXT_SPECIAL.test(raw)) return raw;
  // Errors are reported in input order whatever the chunking, so decode up to the first bad character first.
  const illegal = raw.search(ILLEGAL_CHARS);
  const cdataEnd = raw.indexOf(']]>');
  const bad = illegal === -1 ? cdataEnd : cdataEnd === -1 ? illegal : Math.min(illegal, cdataEnd);
  let s = bad === -1 ? raw : raw.slice(0, bad);
  if (s.includes('\r')) s = s.replace(/\r\n?/g, '\n');
  if (s.includes('&')) s = decodeRefs(s);
  if (bad !== -1) fail('not-well-formed', bad === illegal ? 'illegal character in text' : "']]>' in text");
  return s;
}

function decodeAttrValue(raw: string): string {
  if (raw.includes('<')) fail('not-well-formed', "'<' in attribute value");
  if (ILLEGAL_CHARS.test(raw)) fail('not-well-formed', 'illegal character in attribute value');
  // Attribute-value normalization (XML 1.0 section 3.3.3); references are decoded afterwards so &#10; survives.
  const s = raw.replace(/\r\n|[\t\n\r]/g, ' ');
  return s.includes('&') ? decodeRefs(s) : s;
}

function setAttr(attrs: Record<string, string>, name: string, value: string): void {
  if (name === '__proto__') Object.defineProperty(attrs, name, { value, enumerable: true, writable: true, configurable: true });
  else attrs[name] = value;
}

function appendText(el: Element, text: string): void {
  if (text.length === 0) return;
  const children = el.children;
  const last = children.length - 1;
  if (last >= 0 && typeof children[last] === 'string') children[last] += text;
  else children.push(text);
}

/** UTF-8 length of s[from, to). */
function utf8Length(s: string, from: number, to: number): number {
  let n = to - from;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    // Each half of a surrogate pair counts 2 of the pair's 4 bytes.
    if (c >= 0x80) n += c < 0x800 || (c >= 0xd800 && c <= 0xdfff) ? 1 : 2;
  }
  return n;
}

/** For a UTF-8 lead byte: [continuation bytes, range of the first continuation byte] (RFC 3629), or null. */
function utf8Lead(c: number): [number, number, number] | null {
  if (c >= 0xc2 && c <= 0xdf) return [1, 0x80, 0xbf];
  if (c === 0xe0) return [2, 0xa0, 0xbf];
  if (c === 0xed) return [2, 0x80, 0x9f]; // no surrogates
  if (c >= 0xe1 && c <= 0xef) return [2, 0x80, 0xbf];
  if (c === 0xf0) return [3, 0x90, 0xbf];
  if (c >= 0xf1 && c <= 0xf3) return [3, 0x80, 0xbf];
  if (c === 0xf4) return [3, 0x80, 0x8f]; // nothing above U+10FFFF
  return null;
}

/** Length of the longest valid UTF-8 prefix of b (only used once b is known to be invalid). */
function validUtf8Prefix(b: Buffer): number {
  let i = 0;
  while (i < b.length) {
    if (b[i]! < 0x80) {
      i++;
      continue;
    }
    const lead = utf8Lead(b[i]!);
    if (!lead || i + lead[0] >= b.length) return i;
    const [need, min, max] = lead;
    if (b[i + 1]! < min || b[i + 1]! > max) return i;
    for (let k = 2; k <= need; k++) if ((b[i + k]! & 0xc0) !== 0x80) return i;
    i += need + 1;
  }
  return i;
}

/** Length of the prefix of b that holds only complete UTF-8 sequences (an incomplete tail waits for the next chunk). */
function completeUtf8Length(b: Buffer): number {
  const n = b.length;
  for (let k = 1; k <= 3 && k <= n; k++) {
    const c = b[n - k]!;
    if (c < 0x80) return n;
    if (c >= 0xc0) {
      const need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
      return need > k ? n - k : n;
    }
  }
  return n;
}

/**
 * Finds the end of a token whose text arrives in pieces, remembering just enough state to
 * look only at each new piece: the quote state for a start tag, or the last few characters
 * for a fixed terminator ('>', ']]>', '?>'). A start tag also "ends" at any '<', where it is
 * certainly malformed.
 */
class TokenEndScanner {
  private quote = 0;
  private tail = '';
  constructor(private readonly terminator: string | null) {}

  feed(s: string): boolean {
    if (this.terminator === null) return this.feedTag(s);
    const hay = this.tail + s;
    if (hay.includes(this.terminator)) return true;
    this.tail = hay.slice(hay.length - (this.terminator.length - 1));
    return false;
  }

  private feedTag(s: string): boolean {
    if (s.includes('<')) return true;
    const len = s.length;
    let i = 0;
    while (i < len) {
      if (this.quote !== 0) {
        const end = s.indexOf(this.quote === QUOT ? '"' : "'", i);
        if (end === -1) return false;
        this.quote = 0;
        i = end + 1;
        continue;
      }
      const c = s.charCodeAt(i++);
      if (c === GT) return true;
      if (c === QUOT || c === APOS) this.quote = c;
    }
    return false;
  }
}

export class XmlStreamParser {
  private limits: ParserLimits;
  private state = State.Start;
  /** Bumped by reset() so a parse loop interrupted by a handler's reset() stops. */
  private generation = 0;

  // Decoded input: buf[pos..] is unconsumed. Byte positions are absolute stream offsets.
  private buf = '';
  private pos = 0;
  private bufAscii = true;
  private bufBase = 0;
  private markIdx = 0;
  private markAbs = 0;
  private decodedBytes = 0;
  private carry: Buffer | null = null;
  /**
   * Characters put into the scan buffer or fed to a token-end scanner. Each character is handled a
   * bounded number of times, so this stays proportional to the input however it is chunked; tests
   * check that instead of timing (re-scanning a growing token per chunk would be quadratic).
   */
  charsHandled = 0;

  // An incomplete token too large to re-scan per chunk: its pieces, joined once it ends.
  private pending: string[] = [];
  private pendingAscii = true;
  private pendingAbs = 0;
  private scanner: TokenEndScanner | null = null;
  private wait = Wait.None;

  private streamStartAbs = 0;
  private declAllowed = true;
  private rootName = '';
  private rootNs: string | undefined;
  private rootAttrs: Record<string, string> = NO_ATTRS;
  private stack: Element[] = [];
  private stanzaStartAbs = 0;
  // The start tag last read by readStartTag.
  private tagName = '';
  private tagAttrs: Record<string, string> = NO_ATTRS;
  private tagSelfClosing = false;
  /** Whether a name in that tag has a prefix, so namespace checks are needed. */
  private tagPrefixed = false;

  constructor(private readonly handler: ParserHandler, limits: ParserLimits) {
    this.limits = { ...limits };
  }

  setLimits(limits: Partial<ParserLimits>): void {
    this.limits = { ...this.limits, ...limits };
  }

  /** Starts a new stream. Unparsed input is discarded: bytes after a STARTTLS/SASL restart must not leak into the new stream. */
  reset(): void {
    if (this.state === State.Failed) return;
    this.generation++;
    this.state = State.Start;
    this.carry = null;
    this.dropPending();
    this.setBuffer('', true, this.decodedBytes);
    this.streamStartAbs = this.decodedBytes;
    this.declAllowed = true;
    this.rootName = '';
    this.rootNs = undefined;
    this.rootAttrs = NO_ATTRS;
    this.stack = [];
  }

  /** Whether the input so far ends between two stanzas of an open stream: no element, tag or character half-read. */
  get betweenStanzas(): boolean {
    return this.state === State.Stream && this.stack.length === 0 && this.scanner === null && this.pos >= this.buf.length && this.carry === null;
  }

  write(chunk: Buffer): void {
    if (this.state === State.Failed || chunk.length === 0) return;
    try {
      this.feed(chunk);
    } catch (err) {
      if (!(err instanceof ParseFailure)) throw err;
      this.failWith(err.condition, err.text);
    }
  }

  private feed(chunk: Buffer): void {
    const { text, ascii, valid } = this.decode(chunk);
    if (valid) return this.consume(text, ascii, false);
    // Everything before a bad byte is parsed first (an incomplete token as far as it goes), so that
    // errors come in input order whatever the chunking.
    const generation = this.generation;
    this.consume(text, ascii, true);
    if (this.generation === generation && this.state !== State.Failed) fail('not-well-formed', 'invalid UTF-8');
  }

  private consume(text: string, ascii: boolean, final: boolean): void {
    if (this.scanner) {
      this.charsHandled += text.length;
      this.pending.push(text);
      this.pendingAscii &&= ascii;
      if (!this.scanner.feed(text) && !final) return this.checkPendingLimit();
      const joined = this.pending.join('');
      const joinedAscii = this.pendingAscii;
      this.dropPending();
      this.setBuffer(joined, joinedAscii, this.pendingAbs);
    } else if (this.pos < this.buf.length) {
      this.setBuffer(this.buf.slice(this.pos) + text, this.bufAscii && ascii, this.at(this.pos));
    } else {
      this.setBuffer(text, ascii, this.at(this.pos));
    }
    const generation = this.generation;
    this.parse(generation);
    if (this.generation === generation && this.state !== State.Failed) {
      this.stashRest();
      this.checkPendingLimit();
    }
  }

  /** Decodes a chunk, holding back an incomplete trailing UTF-8 sequence; on invalid UTF-8, decodes the valid prefix. */
  private decode(chunk: Buffer): { text: string; ascii: boolean; valid: boolean } {
    let bytes = chunk;
    if (this.carry) {
      bytes = Buffer.concat([this.carry, chunk]);
      this.carry = null;
    }
    let length = completeUtf8Length(bytes);
    let whole = length === bytes.length ? bytes : bytes.subarray(0, length);
    const valid = isUtf8(whole);
    if (!valid) {
      length = validUtf8Prefix(whole);
      whole = whole.subarray(0, length);
    } else if (length < bytes.length) {
      this.carry = Buffer.from(bytes.subarray(length));
    }
    const text = whole.toString('utf8');
    this.decodedBytes += length;
    return { text, ascii: text.length === length, valid };
  }

  private setBuffer(text: string, ascii: boolean, baseAbs: number): void {
    this.charsHandled += text.length;
    this.buf = text;
    this.pos = 0;
    this.bufAscii = ascii;
    this.bufBase = baseAbs;
    this.markIdx = 0;
    this.markAbs = baseAbs;
  }

  /** Absolute byte offset of buf[i]; i must not decrease between calls (until the buffer is replaced). */
  private at(i: number): number {
    if (this.bufAscii) return this.bufBase + i;
    this.markAbs += utf8Length(this.buf, this.markIdx, i);
    this.markIdx = i;
    return this.markAbs;
  }

  private dropPending(): void {
    this.pending = [];
    this.pendingAscii = true;
    this.scanner = null;
    this.wait = Wait.None;
  }

  /** Moves an incomplete tag/CDATA/declaration into the pending pieces; short leftovers stay in buf. */
  private stashRest(): void {
    const wait = this.wait;
    this.wait = Wait.None;
    if (wait === Wait.None || wait === Wait.Short) return;
    const rest = this.buf.slice(this.pos);
    this.pendingAbs = this.at(this.pos);
    this.scanner = new TokenEndScanner(wait === Wait.Tag ? null : wait === Wait.Close ? '>' : wait === Wait.Cdata ? ']]>' : '?>');
    this.scanner.feed(rest.slice(wait === Wait.Cdata ? CDATA_OPEN.length : 1));
    this.charsHandled += rest.length;
    this.pending = [rest];
    this.pendingAscii = this.bufAscii;
    this.setBuffer('', true, this.decodedBytes);
  }

  /** Start offset of the unit (stream header or stanza) that the size limit applies to, or -1. */
  private unitStart(): number {
    if (this.state === State.Start || this.state === State.Prolog) return this.streamStartAbs;
    if (this.state !== State.Stream) return -1;
    if (this.stack.length > 0) return this.stanzaStartAbs;
    return this.scanner ? this.pendingAbs : -1;
  }

  private checkPendingLimit(): void {
    const start = this.unitStart();
    if (start >= 0 && this.decodedBytes - start > this.limits.maxStanzaBytes) this.tooLarge();
  }

  private tooLarge(): never {
    return fail('policy-violation', this.state === State.Stream ? 'stanza too large' : 'stream header too large');
  }

  private failWith(condition: ParserErrorCondition, text: string): void {
    if (this.state === State.Failed) return;
    this.state = State.Failed;
    this.carry = null;
    this.dropPending();
    this.setBuffer('', true, 0);
    this.stack = [];
    this.handler.error(condition, text);
  }

  private parse(generation: number): void {
    while (this.pos < this.buf.length) {
      const more = this.buf.charCodeAt(this.pos) === LT ? this.parseMarkup() : this.parseText();
      if (this.generation !== generation || this.state === State.Failed) return;
      const start = this.unitStart();
      if (start >= 0 && this.at(this.pos) - start > this.limits.maxStanzaBytes) this.tooLarge();
      if (!more) return;
    }
  }

  /** Parses the markup at pos (buf[pos] is '<'); false if it is incomplete. */
  private parseMarkup(): boolean {
    const buf = this.buf;
    const pos = this.pos;
    if (pos + 1 >= buf.length) return this.waitFor(Wait.Short);
    const c = buf.charCodeAt(pos + 1);
    if (isNameStart(c)) return this.parseStartTag();
    if (c === SLASH) return this.parseCloseTag();
    if (c === BANG) return this.parseBang();
    if (c === QUESTION) return this.parseQuestion();
    return fail('not-well-formed', "bad character after '<'");
  }

  private waitFor(wait: Wait): false {
    this.wait = wait;
    return false;
  }

  /** True if the rest of buf from pos is a prefix of s (so more input may still match s). */
  private restIsPrefixOf(s: string): boolean {
    const rest = this.buf.length - this.pos;
    return rest <= s.length && s.startsWith(this.buf.slice(this.pos));
  }

  private parseBang(): boolean {
    const buf = this.buf;
    if (buf.startsWith(CDATA_OPEN, this.pos)) return this.parseCdata();
    if (this.restIsPrefixOf(CDATA_OPEN)) return this.waitFor(Wait.Short);
    if (buf.startsWith('<!-', this.pos)) fail('restricted-xml', 'comments are not allowed');
    if (buf.startsWith('<!D', this.pos)) fail('restricted-xml', 'document type declarations are not allowed');
    return fail('restricted-xml', 'markup declarations are not allowed');
  }

  private parseCdata(): boolean {
    if (this.stack.length === 0) fail('not-well-formed', 'character data outside a stanza');
    const start = this.pos + CDATA_OPEN.length;
    const end = this.buf.indexOf(']]>', start);
    if (end === -1) return this.waitFor(Wait.Cdata);
    const raw = this.buf.slice(start, end);
    if (ILLEGAL_CHARS.test(raw)) fail('not-well-formed', 'illegal character in CDATA section');
    appendText(this.stack[this.stack.length - 1]!, raw.includes('\r') ? raw.replace(/\r\n?/g, '\n') : raw);
    this.pos = end + 3;
    return true;
  }

  private parseQuestion(): boolean {
    if (!this.declAllowed) fail('restricted-xml', 'processing instructions are not allowed');
    const buf = this.buf;
    const pos = this.pos;
    if (buf.length - pos < 6) {
      if (this.restIsPrefixOf('<?xml')) return this.waitFor(Wait.Short);
      fail('restricted-xml', 'processing instructions are not allowed');
    }
    if (!buf.startsWith('<?xml', pos) || !isWs(buf.charCodeAt(pos + 5))) fail('restricted-xml', 'processing instructions are not allowed');
    const end = buf.indexOf('?>', pos + 5);
    if (end === -1) return this.waitFor(Wait.Decl);
    const match = XML_DECL.exec(buf.slice(pos, end + 2));
    if (!match) fail('not-well-formed', 'bad XML declaration');
    const encoding = match[3];
    if (encoding !== undefined && !/^utf-?8$/i.test(encoding)) fail('not-well-formed', `unsupported encoding '${encoding}'`);
    this.pos = end + 2;
    this.declAllowed = false;
    this.state = State.Prolog;
    return true;
  }

  private parseText(): boolean {
    if (this.stack.length === 0) return this.skipWhitespace();
    const buf = this.buf;
    const lt = buf.indexOf('<', this.pos);
    const end = lt === -1 ? this.safeTextEnd() : lt;
    if (end > this.pos) appendText(this.stack[this.stack.length - 1]!, decodeText(buf.slice(this.pos, end)));
    this.pos = end;
    return lt === -1 ? this.waitFor(Wait.Short) : true;
  }

  /**
   * How much of the text running to the end of buf can be decoded now: a trailing partial
   * entity reference, a '\r' that may start '\r\n', or ']' that may start ']]>' wait for more input.
   */
  private safeTextEnd(): number {
    const buf = this.buf;
    let end = buf.length;
    for (let i = end - 1; i >= this.pos && i > end - MAX_REF_LEN; i--) {
      if (buf.charCodeAt(i) !== AMP) continue;
      if (refPrefixEnd(buf, i) === end) end = i;
      break;
    }
    if (end > this.pos && buf.charCodeAt(end - 1) === CR) return end - 1;
    let held = 0;
    while (held < 2 && end - held > this.pos && buf.charCodeAt(end - held - 1) === RBRACKET) held++;
    return end - held;
  }

  /** Outside stanzas only whitespace is allowed (keepalives); it is skipped. */
  private skipWhitespace(): boolean {
    const buf = this.buf;
    if (this.declAllowed && buf.charCodeAt(this.pos) === BOM && this.at(this.pos) === this.streamStartAbs) this.pos++;
    const end = skipWs(buf, this.pos);
    if (end > this.pos) {
      this.declAllowed = false;
      if (this.state === State.Start) this.state = State.Prolog;
    }
    this.pos = end;
    if (end < buf.length && buf.charCodeAt(end) !== LT) {
      fail('not-well-formed', this.state === State.Stream ? 'text outside a stanza' : 'text outside the stream root');
    }
    return true;
  }

  private parseStartTag(): boolean {
    if (this.state === State.Closed) fail('not-well-formed', 'element after the end of the stream');
    if (this.state === State.Stream && this.stack.length >= this.limits.maxDepth) fail('policy-violation', 'elements nested too deeply');
    let end: number;
    try {
      end = this.readStartTag();
    } catch (err) {
      // An error inside a start tag counts only once the tag has ended (or reached a '<'), as it
      // does when the tag arrives in pieces; otherwise the outcome would depend on chunking.
      if (err instanceof ParseFailure && !new TokenEndScanner(null).feed(this.buf.slice(this.pos + 1))) return this.waitFor(Wait.Tag);
      throw err;
    }
    if (end < 0) return this.waitFor(Wait.Tag);
    return this.openElement(this.tagName, this.tagAttrs, this.tagSelfClosing, end);
  }

  /** Reads the start tag at pos into tagName, tagAttrs and tagSelfClosing; returns the index after it, or -1 if incomplete. */
  private readStartTag(): number {
    const buf = this.buf;
    const len = buf.length;
    const nameEnd = scanName(buf, this.pos + 1);
    if (nameEnd === len) return -1;
    const name = buf.slice(this.pos + 1, nameEnd);
    checkQName(name);
    let prefixed = scannedColon;
    const attrs: Record<string, string> = {};
    let count = 0;
    let i = nameEnd;
    for (;;) {
      const afterName = i;
      i = skipWs(buf, i);
      if (i === len) return -1;
      const c = buf.charCodeAt(i);
      if (c === GT || c === SLASH) {
        if (c === SLASH && i + 1 === len) return -1;
        if (c === SLASH && buf.charCodeAt(i + 1) !== GT) fail('not-well-formed', "expected '>' after '/'");
        // A duplicate overwrote its twin; counting keys is cheaper than a lookup per attribute.
        if (count > 1 && Object.keys(attrs).length !== count) fail('not-well-formed', 'duplicate attribute');
        this.tagName = name;
        this.tagAttrs = attrs;
        this.tagSelfClosing = c === SLASH;
        this.tagPrefixed = prefixed;
        return c === SLASH ? i + 2 : i + 1;
      }
      if (i === afterName) fail('not-well-formed', 'missing whitespace before attribute');
      const attrEnd = scanName(buf, i);
      if (attrEnd === i) fail('not-well-formed', 'bad attribute name');
      if (attrEnd === len) return -1;
      const attrName = buf.slice(i, attrEnd);
      checkQName(attrName);
      // xml:lang, on most messages, needs no check: the xml prefix is always declared.
      if (scannedColon && attrName !== 'xml:lang') prefixed = true;
      i = skipWs(buf, attrEnd);
      if (i === len) return -1;
      if (buf.charCodeAt(i) !== EQ) fail('not-well-formed', `attribute '${attrName}' without value`);
      i = skipWs(buf, i + 1);
      if (i === len) return -1;
      const quote = buf.charCodeAt(i);
      if (quote !== QUOT && quote !== APOS) fail('not-well-formed', 'unquoted attribute value');
      let valueEnd = i + 1;
      let special = false;
      for (; valueEnd < len; valueEnd++) {
        const v = buf.charCodeAt(valueEnd);
        if (v === quote) break;
        if (v < 0x20 || v === AMP || v === LT || v >= 0xfffe) {
          if (v === LT) fail('not-well-formed', "'<' in attribute value");
          special = true;
        }
      }
      if (valueEnd === len) return -1;
      if (++count > this.limits.maxAttributes) fail('policy-violation', 'too many attributes');
      const raw = buf.slice(i + 1, valueEnd);
      setAttr(attrs, attrName, special ? decodeAttrValue(raw) : raw);
      i = valueEnd + 1;
    }
  }

  private openElement(name: string, attrs: Record<string, string>, selfClosing: boolean, end: number): boolean {
    const ns = attrs.xmlns;
    if (ns !== undefined) checkDeclaration(null, ns);
    if (this.tagPrefixed) this.checkPrefixes(name, attrs);
    if (this.state !== State.Stream) return this.openStream(name, attrs, selfClosing, end);
    const el = new Element(name, NO_ATTRS, NO_CHILDREN);
    el.attrs = attrs;
    const parent = this.stack[this.stack.length - 1];
    if (parent) parent.append(el);
    else {
      this.stanzaStartAbs = this.at(this.pos);
      if (this.rootNs !== undefined && attrs.xmlns === undefined) attrs.xmlns = this.rootNs;
    }
    this.pos = end;
    if (!selfClosing) this.stack.push(el);
    else if (!parent) this.emitStanza(el);
    return true;
  }

  private openStream(name: string, attrs: Record<string, string>, selfClosing: boolean, end: number): boolean {
    if (this.at(end) - this.streamStartAbs > this.limits.maxStanzaBytes) this.tooLarge();
    this.pos = end;
    this.declAllowed = false;
    this.state = selfClosing ? State.Closed : State.Stream;
    this.rootName = name;
    this.rootNs = attrs.xmlns;
    this.rootAttrs = attrs;
    this.handler.streamOpen(name, attrs);
    if (selfClosing && this.state === State.Closed) this.handler.streamClose();
    return true;
  }

  /** Checks the tag's prefix declarations and that every prefix it uses is declared (on it, an open ancestor or the stream root). */
  private checkPrefixes(name: string, attrs: Record<string, string>): void {
    let qualified = 0;
    for (const key in attrs) {
      if (key.startsWith('xmlns:')) checkDeclaration(key.slice(6), attrs[key]!);
      else if (key.includes(':')) qualified++;
    }
    const colon = name.indexOf(':');
    if (colon !== -1) {
      const prefix = name.slice(0, colon);
      if (prefix === 'xmlns') fail('not-well-formed', "element with the prefix 'xmlns'");
      this.resolvePrefix(prefix, attrs);
    }
    if (qualified === 0) return;
    // Expanded names must be unique too: p:a and q:a clash when p and q name the same namespace.
    const seen = qualified > 1 ? new Set<string>() : null;
    for (const key in attrs) {
      const at = key.indexOf(':');
      if (at === -1 || key.startsWith('xmlns:')) continue;
      const uri = this.resolvePrefix(key.slice(0, at), attrs);
      if (!seen) continue;
      const expanded = `{${uri}}${key.slice(at + 1)}`;
      if (seen.has(expanded)) fail('not-well-formed', 'duplicate attribute');
      seen.add(expanded);
    }
  }

  private resolvePrefix(prefix: string, attrs: Record<string, string>): string {
    if (prefix === 'xml') return XML_NS;
    const key = 'xmlns:' + prefix;
    let uri = attrs[key];
    for (let i = this.stack.length - 1; uri === undefined && i >= 0; i--) uri = this.stack[i]!.attrs[key];
    if (uri === undefined && this.state === State.Stream) {
      uri = this.rootAttrs[key];
      // Declared on the stream root only: the stanza declares it too, so that it stays
      // namespace-well-formed when it is routed, stored or copied on its own.
      if (uri !== undefined) (this.stack[0]?.attrs ?? attrs)[key] = uri;
    }
    if (uri === undefined) fail('not-well-formed', `undeclared namespace prefix '${prefix}'`);
    return uri;
  }

  private emitStanza(el: Element): void {
    const bytes = this.at(this.pos) - this.stanzaStartAbs;
    if (bytes > this.limits.maxStanzaBytes) this.tooLarge();
    this.handler.stanza(el, bytes);
  }

  private parseCloseTag(): boolean {
    const top = this.stack[this.stack.length - 1];
    if (!top && this.state !== State.Stream) fail('not-well-formed', 'unexpected closing tag');
    const expected = top ? top.name : this.rootName;
    const buf = this.buf;
    const gt = buf.indexOf('>', this.pos + 2);
    if (gt === -1) return this.waitFor(Wait.Close);
    const nameEnd = this.pos + 2 + expected.length;
    if (!buf.startsWith(expected, this.pos + 2) || skipWs(buf, nameEnd) !== gt) {
      fail('not-well-formed', `mismatched closing tag, expected '</${expected}>'`);
    }
    this.pos = gt + 1;
    if (!top) {
      this.state = State.Closed;
      this.handler.streamClose();
      return true;
    }
    this.stack.pop();
    if (this.stack.length === 0) this.emitStanza(top);
    return true;
  }
}
