/**
 * The differential oracle for shared/xml/stream-parser.ts: what `saxes` (an XML 1.0 +
 * Namespaces parser) makes of the same bytes, turned into the events Gatehouse's parser emits
 * (stream open, complete stanzas with their size in bytes, stream close), with the places where
 * XMPP's restricted XML (RFC 6120 section 11) legitimately differs modelled explicitly:
 *
 * - comments, processing instructions and DTDs are well-formed XML but restricted-xml in XMPP;
 * - between stanzas only literal whitespace may appear (no text, references or CDATA);
 * - the XML declaration must name UTF-8 if it names an encoding, and the document is parsed as
 *   XML 1.0 whatever version it declares (saxes is told to do the same);
 * - a stanza without an xmlns attribute gets the stream header's (Gatehouse makes the inherited
 *   namespace explicit on each detached stanza), and so a declaration of each prefix it uses that
 *   only the stream header declares;
 * - saxes trims namespace names and Gatehouse does not; where that matters (a namespace
 *   declaration with surrounding whitespace) only "both reject or both accept" is not checked;
 * - the parser's depth and attribute-count limits (some inputs run with small ones) are
 *   policy-violation; within a start tag that also has an XML error, either may come first.
 *
 * A stream stays open, so neither parser sees an end of input: an incomplete token at the end is
 * "not decided yet" for both. When exactly one side has rejected, the other is fed a continuation
 * that completes any token it may be waiting in and must then reject too (see compare()).
 */
import { SaxesParser, type SaxesTagNS } from 'saxes';
import { XmlStreamParser, type ParserErrorCondition, type ParserLimits } from '../../shared/xml/stream-parser.js';
import { Element } from '../../shared/xml/element.js';

export const FUZZ_LIMITS: ParserLimits = { maxStanzaBytes: 1 << 20, maxDepth: 64, maxAttributes: 64 };

export type ParserEvent = string;

export interface OursResult {
  events: ParserEvent[];
  error: ParserErrorCondition | null;
}

/** Why the oracle expects a rejection: XML (saxes), XMPP's restrictions, or bytes that are not UTF-8. */
type ProblemKind = 'xml' | 'restricted' | 'xmpp' | 'utf8' | 'ns-whitespace' | 'limit' | 'limit-or-xml';

export interface OracleResult {
  events: ParserEvent[];
  problem: { kind: ProblemKind; detail: string } | null;
  /** Whether saxes ended between tokens (not inside a tag, reference, comment, ...). */
  settled: boolean;
  /** Whether saxes ended inside a comment, PI, DTD or other '<!' markup (which Gatehouse refuses at its start). */
  inRestricted: boolean;
  /** Whether saxes ended inside a start tag that exceeds a limit (decided once the tag ends). */
  pendingLimit: boolean;
}

// saxes's internal states between tokens: before the root (whitespace) and text.
const SAXES_SETTLED = new Set([1, 13]);
// saxes's states inside a DOCTYPE (2-12), '<!' markup or a comment (16-19), a PI (23-26).
// saxes's states inside a start tag (34-42).
const SAXES_IN_START_TAG = new Set([34, 35, 36, 37, 38, 39, 40, 41, 42]);
const SAXES_RESTRICTED = new Set([2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16, 17, 18, 19, 23, 24, 25, 26]);

function openEvent(name: string, attrs: Record<string, string>): ParserEvent {
  return `open ${name} ${JSON.stringify(Object.entries(attrs))}`;
}

function stanzaEvent(el: Element, bytes: number): ParserEvent {
  return `stanza ${bytes} ${el.toString()}`;
}

/** Runs Gatehouse's parser over input fed in chunks cut at the given byte offsets. */
export function runOurs(input: Buffer, cuts: number[], limits: ParserLimits = FUZZ_LIMITS): OursResult {
  const result: OursResult = { events: [], error: null };
  const parser = new XmlStreamParser(
    {
      streamOpen: (name, attrs) => result.events.push(openEvent(name, attrs)),
      stanza: (el, bytes) => result.events.push(stanzaEvent(el, bytes)),
      streamClose: () => result.events.push('close'),
      error: (condition) => {
        if (result.error !== null) throw new Error('parser reported a second error');
        result.error = condition;
      },
    },
    limits,
  );
  let from = 0;
  for (const cut of [...cuts, input.length]) {
    parser.write(input.subarray(from, cut));
    from = cut;
  }
  return result;
}

/** Runs ours over input and then a continuation (written as one more chunk). */
export function runOursWith(input: Buffer, cuts: number[], continuation: Buffer, limits: ParserLimits = FUZZ_LIMITS): OursResult {
  return runOurs(Buffer.concat([input, continuation]), [...cuts, input.length], limits);
}

interface Utf8Split {
  /** The decoded text of the longest prefix made of valid, complete UTF-8 sequences. */
  text: string;
  /** 'incomplete': the rest is the start of a valid sequence; 'invalid': the rest starts with a bad byte. */
  rest: 'none' | 'incomplete' | 'invalid';
  /** For 'incomplete': bytes that complete the sequence into an allowed name character. */
  completion: Buffer;
}

/** RFC 3629 UTF-8, written out independently of the parser's own validation. */
export function splitUtf8(b: Buffer): Utf8Split {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    let need: number, lo = 0x80, hi = 0xbf;
    if (c < 0x80) need = 0;
    else if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0) lo = 0xa0;
      if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f;
    } else return { text: b.subarray(0, i).toString('utf8'), rest: 'invalid', completion: Buffer.alloc(0) };
    let k = 1;
    for (; k <= need && i + k < b.length; k++) {
      const cont = b[i + k]!;
      const [min, max] = k === 1 ? [lo, hi] : [0x80, 0xbf];
      if (cont < min || cont > max) return { text: b.subarray(0, i).toString('utf8'), rest: 'invalid', completion: Buffer.alloc(0) };
    }
    if (k <= need) {
      // Complete with the smallest allowed bytes: U+0800, U+1000, U+10000, ... (all XML name characters).
      const missing: number[] = [];
      for (; k <= need; k++) missing.push(k === 1 ? lo : 0x80);
      return { text: b.subarray(0, i).toString('utf8'), rest: 'incomplete', completion: Buffer.from(missing) };
    }
    i += need + 1;
  }
  return { text: b.toString('utf8'), rest: 'none', completion: Buffer.alloc(0) };
}

function isS(s: string): boolean {
  return /^[ \t\r\n]*$/.test(s);
}

/** What Gatehouse's parser should emit for `text` (already decoded), according to saxes and the XMPP rules above. */
export function runOracle(text: string, byteLength: (from: number, to: number) => number, limits: ParserLimits = FUZZ_LIMITS): OracleResult {
  const result: OracleResult = { events: [], problem: null, settled: false, inRestricted: false, pendingLimit: false };
  const parser = new SaxesParser({ xmlns: true, position: true, defaultXMLVersion: '1.0', forceXMLVersion: true });
  const stack: Element[] = [];
  let rootOpen = false;
  let rootNs: string | undefined;
  let rootAttrs: Record<string, string> = {};
  let depth = 0;
  let stanzaStart = 0;
  /** String index after the last markup seen while inside the root and outside stanzas. */
  let betweenFrom = -1;
  let nsWhitespace = false;
  // The parser refuses an element nested too deeply at '<' and its name's first character, and
  // counts attributes as it reads them, but reports an error inside a start tag only once the tag
  // ends (whatever comes first in it). So a limit exceeded within a start tag is decided at its end.
  let inTag = false;
  /** The first problem came from an XML error in the current start tag: more attributes there make it limit-or-xml. */
  let errorInTag = false;
  let tagAttributes = 0;
  let tagTooDeep = false;
  const saxesState = (): number => (parser as unknown as { state: number }).state;
  // In an attribute value (or a reference in one) the parser has already counted that attribute.
  const attributesSoFar = (): number => tagAttributes + ([14, 40].includes(saxesState()) ? 1 : 0);
  const overLimit = (): boolean =>
    (inTag && (tagTooDeep || attributesSoFar() > limits.maxAttributes)) || (SAXES_IN_START_TAG.has(saxesState()) && rootOpen && depth > limits.maxDepth);
  // saxes reports a mismatched end tag only after calling the closetag handler for the open
  // element(s), so events from a closetag are held until the next callback shows no error came.
  let held: ParserEvent[] = [];
  let heldAt = -1;
  const commit = (): void => {
    if (held.length > 0 && result.problem === null) result.events.push(...held);
    held = [];
  };
  const problem = (kind: ProblemKind, detail: string): void => {
    if (result.problem === null) result.problem = { kind, detail };
  };
  const live = (): boolean => result.problem === null;
  /** XMPP allows only literal whitespace between stanzas: check the raw text since the last markup there. */
  const checkBetween = (): void => {
    if (!live() || betweenFrom < 0) return;
    const lt = text.indexOf('<', betweenFrom);
    const raw = text.slice(betweenFrom, lt === -1 ? text.length : lt);
    if (!isS(raw)) problem('xmpp', 'text between stanzas');
  };

  parser.on('error', (err) => {
    if (parser.position === heldAt) held = [];
    else commit();
    const kind = nsWhitespace && /namespace|prefix|undefine|duplicate attribute/.test(err.message) ? 'ns-whitespace' : overLimit() ? 'limit-or-xml' : 'xml';
    if (result.problem === null && kind === 'xml' && (inTag || SAXES_IN_START_TAG.has(saxesState()))) errorInTag = true;
    problem(kind, err.message);
  });
  parser.on('opentagstart', () => {
    if (depth === 1) checkBetween();
    inTag = true;
    errorInTag = false;
    tagAttributes = 0;
    // depth counts the open elements with the stream root, so it is the new element's depth as a stanza's descendant.
    tagTooDeep = rootOpen && depth > limits.maxDepth;
    if (tagTooDeep) problem('limit', 'nested too deeply');
  });
  parser.on('attribute', (attr) => {
    if (++tagAttributes > limits.maxAttributes && errorInTag && result.problem) result.problem.kind = 'limit-or-xml';
    if ((attr.name === 'xmlns' || attr.name.startsWith('xmlns:')) && attr.value !== attr.value.trim()) nsWhitespace = true;
  });
  parser.on('xmldecl', (decl) => {
    commit();
    if (live() && decl.encoding !== undefined && !/^utf-?8$/i.test(decl.encoding)) problem('xml', `encoding ${decl.encoding}`);
  });
  parser.on('comment', () => {
    commit();
    checkBetween();
    problem('restricted', 'comment');
  });
  parser.on('processinginstruction', () => {
    commit();
    checkBetween();
    problem('restricted', 'processing instruction');
  });
  parser.on('doctype', () => (commit(), problem('restricted', 'doctype')));
  parser.on('opentag', (tag: SaxesTagNS) => {
    commit();
    inTag = false;
    errorInTag = false;
    if (tagAttributes > limits.maxAttributes) problem('limit', 'too many attributes');
    const attrs: Record<string, string> = {};
    for (const attr of Object.values(tag.attributes)) {
      attrs[attr.name] = attr.value;
    }
    if (depth === 1) checkBetween();
    if (!live()) return;
    const end = parser.position;
    if (!rootOpen) {
      rootOpen = true;
      rootNs = attrs.xmlns;
      rootAttrs = attrs;
      result.events.push(openEvent(tag.name, attrs));
      if (tag.isSelfClosing) result.events.push('close');
    } else {
      // Modelled: a prefix only the stream header declares is declared on the stanza that uses it.
      const declare = (prefix: string): void => {
        const key = `xmlns:${prefix}`;
        if (prefix === '' || prefix === 'xml' || prefix === 'xmlns' || attrs[key] !== undefined || stack.some((e) => e.attrs[key] !== undefined)) return;
        if (rootAttrs[key] !== undefined) (stack[0]?.attrs ?? attrs)[key] = rootAttrs[key]!;
      };
      declare(tag.prefix);
      for (const attr of Object.values(tag.attributes)) declare(attr.prefix);
      const el = new Element(tag.name);
      el.attrs = attrs;
      const parent = stack[stack.length - 1];
      if (parent) parent.append(el);
      else {
        stanzaStart = text.lastIndexOf('<', end - 1);
        if (rootNs !== undefined && attrs.xmlns === undefined) attrs.xmlns = rootNs;
      }
      if (!tag.isSelfClosing) stack.push(el);
      else if (!parent) result.events.push(stanzaEvent(el, byteLength(stanzaStart, end)));
    }
    if (!tag.isSelfClosing) depth++;
    if (depth === 1) betweenFrom = end;
  });
  parser.on('closetag', (tag) => {
    commit();
    heldAt = parser.position;
    if (tag.isSelfClosing) return; // handled at opentag
    depth--;
    if (depth === 0) {
      checkBetween();
      betweenFrom = -1;
      if (live()) held.push('close');
      return;
    }
    if (!live()) return;
    const el = stack.pop()!;
    if (stack.length === 0) {
      held.push(stanzaEvent(el, byteLength(stanzaStart, parser.position)));
      betweenFrom = parser.position;
    }
  });
  const onText = (t: string): void => {
    commit();
    const top = stack[stack.length - 1];
    if (!live() || !top) return;
    const last = top.children.length - 1;
    if (last >= 0 && typeof top.children[last] === 'string') top.children[last] += t;
    else if (t.length > 0) top.children.push(t);
  };
  parser.on('text', onText);
  parser.on('cdata', (t) => {
    commit();
    if (depth === 1) {
      checkBetween();
      problem('xmpp', 'CDATA between stanzas');
    }
    onText(t);
  });
  parser.write(text);
  commit();
  if (depth === 1) checkBetween();
  const state = (parser as unknown as { state: number }).state;
  result.settled = SAXES_SETTLED.has(state);
  result.inRestricted = SAXES_RESTRICTED.has(state);
  result.pendingLimit = overLimit();
  return result;
}

/** What the oracle expects for the raw bytes: saxes on the valid UTF-8 prefix, then a rejection if there are bad bytes. */
export function oracleForBytes(input: Buffer, limits: ParserLimits = FUZZ_LIMITS): OracleResult & { utf8: Utf8Split } {
  const utf8 = splitUtf8(input);
  const text = utf8.text;
  const byteLength = (from: number, to: number): number => Buffer.byteLength(text.slice(from, to), 'utf8');
  const result = runOracle(text, byteLength, limits);
  if (utf8.rest === 'invalid' && result.problem === null) result.problem = { kind: result.pendingLimit ? 'limit-or-xml' : 'utf8', detail: 'invalid UTF-8' };
  return { ...result, utf8 };
}

/** Completes any token Gatehouse's parser may be waiting in (start or end tag, CDATA, declaration, reference) in a way that cannot be valid. */
export const OURS_FLUSH = Buffer.from('<]]>?>>');
/**
 * Continuations that complete a token saxes may be waiting in. If saxes accepts the input
 * followed by one of them and ends between tokens, a rejection by Gatehouse's parser was premature.
 */
const CONTINUATIONS = ['', '>', '/>', '">', "'>", '"/>', "'/>", '="">', "=''/>", ';', 'amp;', '65;', '1;', 'p;', ']]>', 'x>'];

const ALLOWED: Record<ProblemKind, readonly ParserErrorCondition[]> = {
  xml: ['not-well-formed', 'restricted-xml'],
  restricted: ['restricted-xml'],
  xmpp: ['not-well-formed'],
  utf8: ['not-well-formed'],
  'ns-whitespace': ['not-well-formed', 'restricted-xml'],
  limit: ['policy-violation'],
  'limit-or-xml': ['policy-violation', 'not-well-formed', 'restricted-xml'],
};

/** Whether the last markup in text starts with '<!' (not CDATA) or '<?', possibly followed by one more '<'. */
function endsInBangOrQuestion(text: string): boolean {
  const at = Math.max(text.lastIndexOf('<!'), text.lastIndexOf('<?'));
  return at >= 0 && at >= text.lastIndexOf('<') - 2 && !text.startsWith('<![CDATA[', at);
}

function eventsDiffer(ours: ParserEvent[], expected: ParserEvent[]): string | null {
  const n = Math.max(ours.length, expected.length);
  for (let i = 0; i < n; i++) {
    if (ours[i] !== expected[i]) return `event ${i}: parser ${JSON.stringify(ours[i] ?? '(none)')}, oracle ${JSON.stringify(expected[i] ?? '(none)')}`;
  }
  return null;
}

/**
 * Compares Gatehouse's parser (fed whole and in the given chunks) with the oracle. Returns a
 * description of the first discrepancy, or null. `stats` counts how inputs were classified.
 */
export function compare(input: Buffer, cuts: number[], stats?: Map<string, number>, limits: ParserLimits = FUZZ_LIMITS): string | null {
  const whole = runOurs(input, [], limits);
  const split = runOurs(input, cuts, limits);
  const chunking = eventsDiffer(split.events, whole.events);
  if (chunking || split.error !== whole.error) {
    return `chunking changes the outcome: whole ${whole.error ?? 'accepted'}, split ${split.error ?? 'accepted'}${chunking ? `; ${chunking}` : ''}`;
  }
  const oracle = oracleForBytes(input, limits);
  const count = (key: string): void => void stats?.set(key, (stats.get(key) ?? 0) + 1);
  const differ = eventsDiffer(whole.events, oracle.events);

  if (oracle.problem === null && whole.error === null) {
    count('both accept');
    return differ && `both accept, but ${differ}`;
  }
  if (oracle.problem !== null && whole.error !== null) {
    count(`both reject (${oracle.problem.kind})`);
    if (oracle.problem.kind === 'ns-whitespace') return null; // documented: saxes trims namespace names
    // Bytes that are not UTF-8 after '<!' or '<?' (not a CDATA section or the XML declaration): the parser reports what comes first.
    const restrictedFirst = oracle.problem.kind === 'utf8' && whole.error === 'restricted-xml' && (oracle.inRestricted || endsInBangOrQuestion(oracle.utf8.text));
    if (!restrictedFirst && !ALLOWED[oracle.problem.kind].includes(whole.error)) {
      return `parser says ${whole.error}, oracle expects ${ALLOWED[oracle.problem.kind].join(' or ')} (${oracle.problem.kind}: ${oracle.problem.detail})`;
    }
    return differ && `both reject, but ${differ}`;
  }
  if (oracle.problem !== null) {
    // The parser has not rejected yet: it must be waiting in a token that cannot be completed validly.
    if (oracle.problem.kind === 'ns-whitespace') {
      count('documented difference (namespace name with whitespace)');
      return null;
    }
    count(`oracle rejects, parser waits (${oracle.problem.kind})`);
    if (differ) return `oracle rejects (${oracle.problem.detail}), parser has not yet, and ${differ}`;
    const flushed = runOursWith(input, cuts, OURS_FLUSH, limits);
    if (flushed.error === null) return `oracle rejects (${oracle.problem.kind}: ${oracle.problem.detail}), parser accepts even after more input`;
    if (eventsDiffer(flushed.events, whole.events)) return `oracle rejects (${oracle.problem.detail}); parser emitted events after it`;
    return null;
  }
  // The parser rejected, saxes has not: saxes must reject (or meet a restricted construct) once its pending token is completed.
  count(`parser rejects, oracle waits (${whole.error})`);
  if (differ) return `parser rejects (${whole.error}), oracle has not, and ${differ}`;
  const prefix = oracle.utf8.text + oracle.utf8.completion.toString('utf8');
  for (const continuation of CONTINUATIONS) {
    const continued = runOracle(prefix + continuation, (a, b) => Buffer.byteLength(prefix.slice(a, b)), limits);
    if (continued.problem === null && continued.settled) return `parser rejects (${whole.error}) what the oracle accepts followed by ${JSON.stringify(continuation)}`;
  }
  return null;
}
