import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { XmlStreamParser, type ParserErrorCondition, type ParserLimits } from '../../shared/xml/stream-parser.js';
import type { Element } from '../../shared/xml/element.js';

const LIMITS: ParserLimits = { maxStanzaBytes: 1 << 20, maxDepth: 64, maxAttributes: 64 };
const NS_STREAM = 'http://etherx.jabber.org/streams';
const HEADER = `<stream:stream xmlns='jabber:client' xmlns:stream='${NS_STREAM}' to='example.com' version='1.0'>`;
const HEADER_ATTRS = { xmlns: 'jabber:client', 'xmlns:stream': NS_STREAM, to: 'example.com', version: '1.0' };

type Event =
  | ['open', string, Record<string, string>]
  | ['stanza', string, number, string | undefined]
  | ['close']
  | ['error', ParserErrorCondition, string];

interface RecorderOptions {
  limits?: Partial<ParserLimits>;
  /** Serialize stanzas into the event log (off for very deep trees: serialization recurses). */
  serialize?: boolean;
  onStanza?: (el: Element, recorder: Recorder) => void;
}

class Recorder {
  readonly events: Event[] = [];
  readonly stanzas: Element[] = [];
  readonly parser: XmlStreamParser;
  eventsAfterError = 0;

  constructor(options: RecorderOptions = {}) {
    const serialize = options.serialize ?? true;
    const record = (event: Event): void => {
      if (this.errors.length > 0) this.eventsAfterError++;
      this.events.push(event);
    };
    this.parser = new XmlStreamParser(
      {
        streamOpen: (name, attrs) => record(['open', name, { ...attrs }]),
        stanza: (el, bytes) => {
          record(['stanza', serialize ? el.toString() : el.name, bytes, el.xmlns]);
          this.stanzas.push(el);
          options.onStanza?.(el, this);
        },
        streamClose: () => record(['close']),
        error: (condition, text) => record(['error', condition, text]),
      },
      { ...LIMITS, ...options.limits },
    );
  }

  get errors(): Event[] {
    return this.events.filter((e) => e[0] === 'error');
  }

  get conditions(): string[] {
    return this.errors.map((e) => e[1] as string);
  }

  write(input: string | Buffer): this {
    this.parser.write(typeof input === 'string' ? Buffer.from(input) : input);
    return this;
  }

  /** Feeds input in chunks of the given sizes (cycled). */
  writeSplit(input: string | Buffer, sizes: (i: number) => number): this {
    const bytes = typeof input === 'string' ? Buffer.from(input) : input;
    for (let i = 0, n = 0; i < bytes.length; n++) {
      const size = Math.max(1, sizes(n));
      this.parser.write(bytes.subarray(i, i + size));
      i += size;
    }
    return this;
  }
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function events(input: string | Buffer, options: RecorderOptions = {}): Event[] {
  return new Recorder(options).write(input).events;
}

function eventsByteByByte(input: string | Buffer, options: RecorderOptions = {}): Event[] {
  return new Recorder(options).writeSplit(input, () => 1).events;
}

function eventsRandomSplit(input: string | Buffer, seed: number, options: RecorderOptions = {}): Event[] {
  const random = mulberry32(seed);
  const max = 1 + Math.floor(random() * 64);
  return new Recorder(options).writeSplit(input, () => 1 + Math.floor(random() * max)).events;
}

/** The error condition of a stream made of HEADER + body, and the stanzas seen before it. */
function outcome(body: string, options: RecorderOptions = {}): { condition: string | undefined; stanzas: number } {
  const recorder = new Recorder(options).write(HEADER + body);
  return { condition: recorder.conditions[0], stanzas: recorder.stanzas.length };
}

function depthOf(el: Element): number {
  let depth = 1;
  for (let child = el.firstElement(); child; child = child.firstElement()) depth++;
  return depth;
}

let gcFunction: (() => void) | undefined;
function gc(): void {
  if (!gcFunction) {
    v8.setFlagsFromString('--expose-gc');
    gcFunction = vm.runInNewContext('gc') as () => void;
  }
  gcFunction();
}

const STANZAS = [
  `<message to='jüliet@example.com' from="romeo@example.net/🏰" type='chat' id='a&amp;b&#x20;&#65;'>` +
    `<body>Grüße, 世界 🌍 &lt;tag&gt; &quot;q&quot; &apos;a&apos; &#169; &#x1F600; l1\r\nl2\rl3 ]] ]&gt;</body>` +
    `<thread>t1</thread>` +
    `<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>` +
    `<p>a<b>bold</b>c<![CDATA[<not a tag> & ]] ]>]]>d<![CDATA[]]></p></body></html>` +
    `<foo:bar xmlns:foo='urn:foo' foo:attr = "v>w" /></message>`,
  `<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq >`,
  `<presence/>`,
  `<r xmlns='urn:xmpp:sm:3'/>`,
  `<message xml:lang='zh'><body>\u{10000}\u{10FFFF}\uFFFD 中文 ascii</body></message>`,
];
const DOC = `\uFEFF<?xml version='1.0' encoding='UTF-8'?>\n${HEADER}\n  ${STANZAS[0]}\n \t\r\n${STANZAS.slice(1).join(' ')}</stream:stream>\n`;

test('parses the stream header, stanzas and the stream close', () => {
  const ev = events(DOC);
  assert.deepEqual(ev[0], ['open', 'stream:stream', HEADER_ATTRS]);
  assert.deepEqual(ev.map((e) => e[0]), ['open', 'stanza', 'stanza', 'stanza', 'stanza', 'stanza', 'close']);
  assert.deepEqual(ev[2], ['stanza', `<iq type="get" id="1" xmlns="jabber:client"><ping xmlns="urn:xmpp:ping"/></iq>`, Buffer.byteLength(STANZAS[1]!), 'jabber:client']);
  assert.deepEqual(ev[3], ['stanza', '<presence xmlns="jabber:client"/>', 11, 'jabber:client']);
  assert.deepEqual(ev[4], ['stanza', '<r xmlns="urn:xmpp:sm:3"/>', Buffer.byteLength(STANZAS[3]!), 'urn:xmpp:sm:3']);
});

test('builds elements with names, attributes, text and parents as written', () => {
  const recorder = new Recorder().write(DOC);
  const message = recorder.stanzas[0]!;
  assert.equal(message.name, 'message');
  assert.deepEqual(message.attrs, { to: 'jüliet@example.com', from: 'romeo@example.net/🏰', type: 'chat', id: 'a&b A', xmlns: 'jabber:client' });
  assert.equal(message.parent, null);
  const body = message.getChild('body')!;
  assert.equal(body.parent, message);
  assert.equal(body.xmlns, 'jabber:client');
  assert.equal(body.text(), `Grüße, 世界 🌍 <tag> "q" 'a' © 😀 l1\nl2\nl3 ]] ]>`);
  const p = message.getChild('html')!.getChild('body')!.getChild('p')!;
  assert.equal(p.xmlns, 'http://www.w3.org/1999/xhtml');
  assert.equal(p.children.length, 3);
  assert.equal(p.children[0], 'a');
  assert.equal((p.children[1] as Element).text(), 'bold');
  assert.equal(p.children[2], 'c<not a tag> & ]] ]>d');
  const foo = message.getChild('foo:bar')!;
  assert.deepEqual(foo.attrs, { 'xmlns:foo': 'urn:foo', 'foo:attr': 'v>w' });
  assert.equal(foo.parent, message);
  assert.equal(recorder.stanzas[4]!.getChildText('body'), '\u{10000}\u{10FFFF}\uFFFD 中文 ascii');
});

test('the whole stream parses identically when fed byte by byte', () => {
  assert.deepEqual(eventsByteByByte(DOC), events(DOC));
});

test('the whole stream parses identically in random splits (seeded)', () => {
  const expected = events(DOC);
  for (let seed = 1; seed <= 300; seed++) assert.deepEqual(eventsRandomSplit(DOC, seed), expected, `seed ${seed}`);
});

test('multi-byte characters split at every byte parse identically', () => {
  const input = `${HEADER}<ü a='é中🌍' 中='x'>é中🌍<![CDATA[é中🌍]]>&#x1F30D;</ü>`;
  const bytes = Buffer.from(input);
  const expected = events(bytes);
  assert.equal(expected.length, 2);
  assert.deepEqual(expected[1], ['stanza', `<ü a="é中🌍" 中="x" xmlns="jabber:client">é中🌍é中🌍🌍</ü>`, Buffer.byteLength(input) - Buffer.byteLength(HEADER), 'jabber:client']);
  for (let i = 1; i < bytes.length; i++) {
    for (let j = i; j < Math.min(bytes.length, i + 5); j++) {
      const recorder = new Recorder();
      recorder.write(bytes.subarray(0, i)).write(bytes.subarray(i, j)).write(bytes.subarray(j));
      assert.deepEqual(recorder.events, expected, `split at ${i}/${j}`);
    }
  }
});

test('invalid UTF-8 is not-well-formed, after the valid part before it is parsed', () => {
  const bad = [[0xff], [0x80], [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82, 0x41], [0xf0, 0x9f, 0x8c]];
  for (const seq of bad) {
    const input = Buffer.concat([Buffer.from(`${HEADER}<presence/><message><body>x`), Buffer.from(seq), Buffer.from('y</body></message><iq/>')]);
    const whole = events(input);
    assert.deepEqual(whole.map((e) => e[0]), ['open', 'stanza', 'error'], `bytes ${seq}`);
    assert.deepEqual(whole[2], ['error', 'not-well-formed', 'invalid UTF-8']);
    assert.deepEqual(eventsByteByByte(input), whole, `bytes ${seq}`);
  }
});

test('an incomplete UTF-8 sequence waits for the rest of the character', () => {
  const recorder = new Recorder().write(HEADER + '<a>');
  const euro = Buffer.from('€');
  recorder.write(euro.subarray(0, 1)).write(euro.subarray(1, 2)).write(euro.subarray(2)).write('</a>');
  assert.equal(recorder.stanzas[0]!.text(), '€');
  assert.deepEqual(recorder.errors, []);
});

test('the XML declaration is optional and allowed only at the very start', () => {
  assert.deepEqual(events(HEADER)[0], ['open', 'stream:stream', HEADER_ATTRS]);
  for (const decl of [`<?xml version='1.0'?>`, `<?xml version="1.0" encoding="utf-8" standalone='yes' ?>`, '\uFEFF<?xml version="1.0"?>', '<?xml version="1.0"?>\n\n']) {
    assert.deepEqual(events(decl + HEADER), [['open', 'stream:stream', HEADER_ATTRS]], decl);
    assert.deepEqual(eventsByteByByte(decl + HEADER), [['open', 'stream:stream', HEADER_ATTRS]], decl);
  }
  for (const decl of [`<?xml version='2.0'?>`, `<?xml encoding='UTF-8'?>`, `<?xml version='1.0' encoding='ISO-8859-1'?>`, `<?xml version=1.0?>`]) {
    const ev = events(decl + HEADER);
    assert.equal(ev.length, 1, decl);
    assert.equal(ev[0]![1], 'not-well-formed', decl);
  }
  assert.equal(events(` <?xml version='1.0'?>${HEADER}`)[0]![1], 'restricted-xml');
  assert.equal(events(`<?xml version='1.0'?><?xml version='1.0'?>${HEADER}`)[0]![1], 'restricted-xml');
  assert.equal(outcome(`<?xml version='1.0'?>`).condition, 'restricted-xml');
});

test('processing instructions are restricted-xml', () => {
  assert.deepEqual(events(`<?php echo 1; ?>${HEADER}`), [['error', 'restricted-xml', 'processing instructions are not allowed']]);
  assert.equal(events(`<?xml version='1.0'?><?xml-stylesheet href='a'?>${HEADER}`)[0]![1], 'restricted-xml');
  assert.equal(events(`<?xml-stylesheet href='a'?>${HEADER}`)[0]![1], 'restricted-xml');
  assert.equal(outcome(`<?foo?>`).condition, 'restricted-xml');
  assert.equal(outcome(`<message><?foo bar?></message>`).condition, 'restricted-xml');
  assert.equal(eventsByteByByte(`${HEADER}<message><?foo bar?></message>`)[1]![1], 'restricted-xml');
});

test('comments are restricted-xml', () => {
  assert.deepEqual(events(`<!-- hi -->${HEADER}`), [['error', 'restricted-xml', 'comments are not allowed']]);
  assert.equal(outcome(`<!-- keepalive -->`).condition, 'restricted-xml');
  assert.equal(outcome(`<message><!-- x --><body/></message>`).condition, 'restricted-xml');
  assert.equal(eventsByteByByte(`${HEADER}<message><!-- x --></message>`)[1]![1], 'restricted-xml');
});

test('billion laughs is rejected as restricted-xml without expanding anything', () => {
  const entities = ['<!ENTITY lol "lol">'];
  for (let i = 2; i <= 9; i++) entities.push(`<!ENTITY lol${i} "${`&lol${i === 2 ? '' : i - 1};`.repeat(10)}">`);
  const laughs = `<?xml version="1.0"?>\n<!DOCTYPE lolz [\n${entities.join('\n')}\n]>\n<lolz>&lol9;</lolz>`;
  assert.deepEqual(events(laughs), [['error', 'restricted-xml', 'document type declarations are not allowed']]);
  assert.deepEqual(eventsByteByByte(laughs), events(laughs));
  assert.equal(outcome(`<!DOCTYPE lolz [<!ENTITY lol "lol">]><message>&lol;</message>`).condition, 'restricted-xml');
  assert.equal(outcome(`<message><body>&lol9;</body></message>`).condition, 'restricted-xml');
});

test('external entities are restricted-xml', () => {
  const xxe = `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>${HEADER}<message><body>&e;</body></message>`;
  assert.deepEqual(events(xxe), [['error', 'restricted-xml', 'document type declarations are not allowed']]);
  assert.equal(outcome(`<!ENTITY e SYSTEM "file:///etc/passwd">`).condition, 'restricted-xml');
  assert.equal(outcome(`<message><!ELEMENT a ANY></message>`).condition, 'restricted-xml');
  assert.equal(outcome(`<message><![INCLUDE[ x ]]></message>`).condition, 'restricted-xml');
  assert.equal(outcome(`<message><![CDAT x ]]></message>`).condition, 'restricted-xml');
});

test('CDATA sections are text, and may be split anywhere', () => {
  const input = `${HEADER}<m><![CDATA[a<b>&amp;]]]]><![CDATA[>]]]></m>`;
  const expected = events(input);
  assert.deepEqual(expected[1]!.slice(0, 2), ['stanza', '<m xmlns="jabber:client">a&lt;b&gt;&amp;amp;]]&gt;]</m>']);
  assert.deepEqual(eventsByteByByte(input), expected);
  assert.equal(outcome(`<![CDATA[ ]]>`).condition, 'not-well-formed');
  assert.equal(events(`<![CDATA[x]]>${HEADER}`)[0]![1], 'not-well-formed');
});

test('predefined entities and character references are decoded in text and attributes', () => {
  const recorder = new Recorder().write(`${HEADER}<m a='&amp;&lt;&gt;&quot;&apos;&#65;&#x42;&#x1f600;&#9;'>&amp;&lt;&gt;&quot;&apos;&#65;&#x42;&#x1F600;&#13;</m>`);
  const el = recorder.stanzas[0]!;
  assert.equal(el.attrs.a, `&<>"'AB😀\t`);
  assert.equal(el.text(), `&<>"'AB😀\r`);
});

test('character references to illegal characters are not-well-formed', () => {
  for (const ref of ['&#0;', '&#x0;', '&#1;', '&#xD800;', '&#xDFFF;', '&#xFFFE;', '&#xFFFF;', '&#x110000;', '&#99999999999;', '&#;', '&#x;', '&#12a;', '&#x-1;', '&#-1;']) {
    assert.equal(outcome(`<m>${ref}</m>`).condition, 'not-well-formed', ref);
    assert.equal(outcome(`<m a='${ref}'/>`).condition, 'not-well-formed', ref);
  }
});

test('other entity references are restricted-xml; malformed ones not-well-formed', () => {
  for (const ref of ['&foo;', '&nbsp;', '&__proto__;', '&constructor;', '&AMP;', '&a:b;']) {
    assert.equal(outcome(`<m>${ref}</m>`).condition, 'restricted-xml', ref);
    assert.equal(outcome(`<m a='${ref}'/>`).condition, 'restricted-xml', ref);
  }
  for (const ref of ['&;', '& amp;', '&amp', '&1a;', `&${'a'.repeat(40)};`]) {
    assert.equal(outcome(`<m>${ref}</m>`).condition, 'not-well-formed', ref);
    assert.equal(outcome(`<m a='${ref}'/>`).condition, 'not-well-formed', ref);
  }
});

test('well-formedness violations are not-well-formed', () => {
  const cases = [
    '<message></iq>', '<message><body></message>', '<message></message >x', '<a></ a>', '<a></a x>',
    `<a x='1' x='2'/>`, `<a x='1' y='2' x='3'/>`, `<a x='1<'/>`, '<a x=1/>', '<a x/>', `<a x='1'y='2'/>`,
    '<1a/>', '<a:/>', '<:a/>', '<a:b:c/>', '<-a/>', `<a 1x='1'/>`, `<a x:='1'/>`, '< a/>', '<a/ >', '<>', '</>',
    'hello', '<a/>x<b/>', ' & ', '&amp;', '&#32;',
    '<a>\u0001</a>', `<a x='\u0001'/>`, '<a>\uFFFE</a>', '<a>]]></a>', '<a>x]]>y</a>',
    '</stream:streamx>', '</stream>', '</stream:stream><a/>', '</stream:stream>x', '</stream:stream></stream:stream>',
  ];
  for (const body of cases) assert.equal(outcome(body).condition, 'not-well-formed', JSON.stringify(body));
  assert.deepEqual(outcome('<a/>x<b/>'), { condition: 'not-well-formed', stanzas: 1 });
});

test('duplicate attribute check is not fooled by inherited names', () => {
  const recorder = new Recorder().write(`${HEADER}<a __proto__='p' constructor='c' toString='t' hasOwnProperty='h'/>`);
  assert.deepEqual(recorder.errors, []);
  const el = recorder.stanzas[0]!;
  assert.equal(Object.getPrototypeOf(el.attrs), Object.prototype);
  assert.deepEqual(Object.keys(el.attrs), ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'xmlns']);
  assert.equal(Object.getOwnPropertyDescriptor(el.attrs, '__proto__')!.value, 'p');
  assert.equal(outcome(`<a __proto__='p' __proto__='q'/>`).condition, 'not-well-formed');
});

test('valid but unusual syntax is accepted', () => {
  const recorder = new Recorder().write(`${HEADER}<a\n x = '1'\ty="it's" z='say "hi"' w='>'\r\n/><b></b\n><c\t></c >`);
  assert.deepEqual(recorder.errors, []);
  assert.deepEqual(recorder.stanzas[0]!.attrs, { x: '1', y: "it's", z: 'say "hi"', w: '>', xmlns: 'jabber:client' });
  assert.equal(recorder.stanzas.length, 3);
});

test('line ends are normalized in text and whitespace in attribute values', () => {
  const input = `${HEADER}<a x='a\tb\nc\r\nd&#10;e&#13;'>1\r\n2\r3\n4&#13;</a>`;
  const el = new Recorder().write(input).stanzas[0]!;
  assert.equal(el.attrs.x, 'a b c d\ne\r');
  assert.equal(el.text(), '1\n2\n3\n4\r');
  assert.deepEqual(eventsByteByByte(input), events(input));
});

test('whitespace keepalives between stanzas are ignored', () => {
  const recorder = new Recorder().write(HEADER);
  for (let i = 0; i < 100; i++) recorder.write(i % 2 ? ' ' : '\r\n\t ');
  recorder.write('<presence/>\n\n<presence/>  ');
  for (let i = 0; i < 100; i++) recorder.write(' ');
  recorder.write('</stream:stream>  \n');
  assert.deepEqual(recorder.events.map((e) => e[0]), ['open', 'stanza', 'stanza', 'close']);
});

test('the first element is taken as the stream root; anything else first is not-well-formed', () => {
  assert.deepEqual(events(`<message to='x'><body>hi</body></message>`), [['open', 'message', { to: 'x' }], ['stanza', '<body>hi</body>', 15, undefined], ['close']]);
  assert.deepEqual(events(`<message/>`), [['open', 'message', {}], ['close']]);
  assert.deepEqual(events(`</stream:stream>`), [['error', 'not-well-formed', 'unexpected closing tag']]);
  for (const junk of ['hello', '&amp;', '<', ']]>', '\u0000']) {
    const ev = events(junk + HEADER);
    assert.equal(ev.length, 1, junk);
    assert.equal(ev[0]![1], 'not-well-formed', junk);
  }
});

test('stanzas inherit the stream default namespace unless they declare their own', () => {
  const recorder = new Recorder().write(`${HEADER}<message><body>x</body></message><iq xmlns='jabber:server'/><foo:bar xmlns:foo='urn:foo'/>`);
  const [message, iq, foobar] = recorder.stanzas;
  assert.equal(message!.attrs.xmlns, 'jabber:client');
  assert.equal(message!.getChild('body')!.xmlns, 'jabber:client');
  assert.equal(message!.getChild('body')!.attrs.xmlns, undefined);
  assert.equal(iq!.attrs.xmlns, 'jabber:server');
  assert.equal(foobar!.xmlns, 'jabber:client');
  const detached = message!.getChild('body')!;
  message!.remove(detached);
  assert.equal(message!.xmlns, 'jabber:client');

  const noDefault = new Recorder().write(`<stream:stream xmlns:stream='${NS_STREAM}'><message/>`);
  assert.equal(noDefault.stanzas[0]!.attrs.xmlns, undefined);
  const server = new Recorder().write(`<stream:stream xmlns='jabber:server' xmlns:stream='${NS_STREAM}'><message/>`);
  assert.equal(server.stanzas[0]!.xmlns, 'jabber:server');
});

test('a prefix declared only on the stream root is declared on each stanza that uses it, so the stanza stands alone', () => {
  const header = `<stream:stream xmlns='jabber:client' xmlns:stream='${NS_STREAM}' xmlns:e='urn:example:ext' xmlns:f='urn:example:flags'>`;
  const recorder = new Recorder().write(`${header}<message><body>x</body><e:x><f:flag f:colour='red'/></e:x></message><iq e:attr='1'/><presence xmlns:e='urn:other'><e:y/></presence><message/>`);
  assert.deepEqual(recorder.conditions, []);
  const [message, iq, presence, plain] = recorder.stanzas;
  assert.equal(message!.attrs['xmlns:e'], 'urn:example:ext');
  assert.equal(message!.attrs['xmlns:f'], 'urn:example:flags');
  assert.equal(iq!.attrs['xmlns:e'], 'urn:example:ext');
  assert.equal(iq!.attrs['xmlns:f'], undefined);
  // A declaration of the stanza's own wins, and a stanza without prefixes is as written.
  assert.equal(presence!.attrs['xmlns:e'], 'urn:other');
  assert.deepEqual(plain!.attrs, { xmlns: 'jabber:client' });
  // Serialised on its own, each parses again under a header that declares nothing but the default.
  const again = new Recorder().write(`<stream:stream xmlns='jabber:client' xmlns:stream='${NS_STREAM}'>${recorder.stanzas.map(String).join('')}`);
  assert.deepEqual(again.conditions, []);
  assert.equal(again.stanzas.length, 4);
});

test('each stanza is reported with its exact size in bytes', () => {
  const stanzas = [...STANZAS, `<a\n\tb = "1" ></a  >`, '<x/>', `<é>€</é>`, `<y><![CDATA[🌍]]>&amp;</y>`];
  const input = `${HEADER}${stanzas.join('\n ')}`;
  const expected = stanzas.map((s) => Buffer.byteLength(s));
  const sizes = (ev: Event[]): number[] => ev.filter((e) => e[0] === 'stanza').map((e) => e[2] as number);
  assert.deepEqual(sizes(events(input)), expected);
  assert.deepEqual(sizes(eventsByteByByte(input)), expected);
  for (let seed = 1; seed <= 20; seed++) assert.deepEqual(sizes(eventsRandomSplit(input, seed)), expected);
});

test('a stanza larger than maxStanzaBytes is a policy-violation, one at the limit is fine', () => {
  const stanza = `<message><body>${'é'.repeat(100)}x</body></message>`;
  const size = Buffer.byteLength(stanza);
  for (const feed of [events, eventsByteByByte]) {
    assert.deepEqual(feed(HEADER + stanza, { limits: { maxStanzaBytes: size } }).map((e) => e[0]), ['open', 'stanza']);
    assert.deepEqual(feed(HEADER + stanza, { limits: { maxStanzaBytes: size - 1 } })[1], ['error', 'policy-violation', 'stanza too large']);
  }
  const selfClosing = `<presence to='${'x'.repeat(200)}'/>`;
  assert.equal(outcome(selfClosing, { limits: { maxStanzaBytes: 200 } }).condition, 'policy-violation');
  assert.equal(outcome(selfClosing, { limits: { maxStanzaBytes: Buffer.byteLength(selfClosing) } }).condition, undefined);
});

test('the stream header is limited by maxStanzaBytes too', () => {
  const header = `<?xml version='1.0'?>${HEADER}`;
  const size = Buffer.byteLength(header);
  assert.deepEqual(events(header, { limits: { maxStanzaBytes: size } }).map((e) => e[0]), ['open']);
  assert.deepEqual(events(header, { limits: { maxStanzaBytes: size - 1 } }), [['error', 'policy-violation', 'stream header too large']]);
  assert.deepEqual(eventsByteByByte(header, { limits: { maxStanzaBytes: size - 1 } }), [['error', 'policy-violation', 'stream header too large']]);
  const recorder = new Recorder({ limits: { maxStanzaBytes: 1000 } }).write(`<stream:stream a='`);
  for (let i = 0; i < 20 && recorder.errors.length === 0; i++) recorder.write('x'.repeat(100));
  assert.deepEqual(recorder.events, [['error', 'policy-violation', 'stream header too large']]);
  assert.deepEqual(events(' '.repeat(2000) + HEADER, { limits: { maxStanzaBytes: 1000 } })[0]![1], 'policy-violation');
});

test('setLimits raises the stanza size limit (after authentication)', () => {
  const big = `<message><body>${'x'.repeat(5000)}</body></message>`;
  const recorder = new Recorder({ limits: { maxStanzaBytes: 4096 } }).write(HEADER);
  recorder.parser.setLimits({ maxStanzaBytes: 10000 });
  recorder.write(big);
  assert.deepEqual(recorder.events.map((e) => e[0]), ['open', 'stanza']);
  recorder.parser.setLimits({ maxDepth: 1 });
  recorder.write('<a><b/></a>');
  assert.deepEqual(recorder.conditions, ['policy-violation']);
});

test('nesting deeper than maxDepth is a policy-violation', () => {
  const limits = { maxDepth: 3 };
  assert.equal(outcome('<a><b><c/></b></a>', { limits }).condition, undefined);
  assert.equal(outcome('<a><b><c><d/></c></b></a>', { limits }).condition, 'policy-violation');
  assert.equal(outcome('<a><b><c></c><c/><c>x</c></b></a>', { limits }).condition, undefined);
});

test('more than maxAttributes attributes on one element is a policy-violation', () => {
  const limits = { maxAttributes: 2 };
  const header = `<stream:stream xmlns='jabber:client' xmlns:stream='${NS_STREAM}'>`;
  assert.deepEqual(events(`${header}<a x='1' y='2'><b x='1' y='2'/></a>`, { limits }).map((e) => e[0]), ['open', 'stanza']);
  assert.deepEqual(events(`${header}<a><b x='1' y='2' z='3'/></a>`, { limits }).at(-1), ['error', 'policy-violation', 'too many attributes']);
  assert.deepEqual(events(`<stream:stream a='1' b='2' c='3'>`, { limits }), [['error', 'policy-violation', 'too many attributes']]);
});

test('10,000 nested elements are rejected early and parse without recursion when allowed', () => {
  const deep = `${HEADER}${'<a>'.repeat(10000)}${'</a>'.repeat(10000)}`;
  // Rejected at the 101st level: fed in small pieces, the parser stops reading right there.
  const rejected = new Recorder({ limits: { maxDepth: 100 }, serialize: false });
  let fed = 0;
  for (let i = 0; i < deep.length && rejected.errors.length === 0; i += 3) {
    rejected.write(deep.slice(i, i + 3));
    fed = i + 3;
  }
  assert.deepEqual(rejected.conditions, ['policy-violation']);
  assert.ok(fed <= HEADER.length + 101 * 3 + 3, `rejected after ${fed} characters`);

  const accepted = new Recorder({ limits: { maxDepth: 20000 }, serialize: false }).write(deep);
  assert.deepEqual(accepted.conditions, []);
  assert.equal(depthOf(accepted.stanzas[0]!), 10000);
  assert.ok(accepted.parser.charsHandled <= 4 * deep.length, `${accepted.parser.charsHandled} for ${deep.length}`);
  const byteByByte = new Recorder({ limits: { maxDepth: 20000 }, serialize: false });
  feedLinearly(byteByByte, Buffer.from(deep), 3);
  assert.equal(depthOf(byteByByte.stanzas[0]!), 10000);
});

/**
 * Feeds input in fixed chunks and fails as soon as the parser has handled more than a few
 * characters per input byte: quadratic re-scanning fails at once instead of running for minutes.
 */
function feedLinearly(recorder: Recorder, input: Buffer, chunk: number): void {
  for (let i = 0; i < input.length; i += chunk) {
    recorder.write(input.subarray(i, i + chunk));
    const fed = Math.min(i + chunk, input.length);
    const handled = recorder.parser.charsHandled;
    if (handled > 4 * fed + 1024) assert.fail(`${handled} characters handled for ${fed} bytes of input`);
  }
}

/** Feeds a 100 MB stanza in 64 KiB chunks: prefix, then filler until the parser gives up. */
function feedHugeStanza(prefix: string, filler: number): { recorder: Recorder; fedWhenFailed: number; heapGrowth: number } {
  const limit = 1 << 20;
  const recorder = new Recorder({ limits: { maxStanzaBytes: limit } });
  const chunk = Buffer.alloc(64 * 1024, filler);
  gc();
  const baseline = process.memoryUsage().heapUsed;
  let peak = 0;
  let fed = Buffer.byteLength(HEADER + prefix);
  let fedWhenFailed = -1;
  recorder.write(HEADER + prefix);
  for (let i = 0; i < 1600; i++) {
    recorder.write(chunk);
    fed += chunk.length;
    if (fedWhenFailed < 0 && recorder.errors.length > 0) fedWhenFailed = fed;
    // Full collections are slow: one per chunk until the parser gives up (the peak), then a few.
    if (fedWhenFailed < 0 || fedWhenFailed === fed || i % 200 === 0) {
      gc();
      peak = Math.max(peak, process.memoryUsage().heapUsed - baseline);
    }
  }
  return { recorder, fedWhenFailed, heapGrowth: peak };
}

for (const [what, prefix, filler] of [
  ['text', '<message><body>', 0x61],
  ['an attribute value', `<message to='`, 0x62],
  ['a CDATA section', '<message><body><![CDATA[', 0x63],
  ['a tag name', '<message', 0x64],
] as const) {
  test(`a 100 MB stanza (${what}) in 64 KiB chunks fails early with bounded memory`, () => {
    const { recorder, fedWhenFailed, heapGrowth } = feedHugeStanza(prefix, filler);
    assert.deepEqual(recorder.events, [['open', 'stream:stream', HEADER_ATTRS], ['error', 'policy-violation', 'stanza too large']]);
    assert.ok(fedWhenFailed > 0 && fedWhenFailed <= (1 << 20) + 2 * 64 * 1024 + 1000, `failed after ${fedWhenFailed} bytes`);
    assert.ok(heapGrowth < 30 * 1024 * 1024, `heap grew by ${heapGrowth} bytes`);
    // Only what came before the failure was looked at; after it the input is ignored.
    assert.ok(recorder.parser.charsHandled <= 4 * fedWhenFailed, `${recorder.parser.charsHandled} characters handled`);
  });
}

test('a large stanza arriving in small chunks is parsed in linear work', () => {
  const size = 4 * 1024 * 1024;
  for (const [prefix, suffix] of [
    [`<message to='`, `'/>`],
    ['<message><body>', '</body></message>'],
    ['<message><![CDATA[', ']]></message>'],
    [`<message><x a='1' b='`, `'/></message>`],
  ] as const) {
    const input = Buffer.from(`${HEADER}${prefix}${'x'.repeat(size)}${suffix}`);
    const recorder = new Recorder({ limits: { maxStanzaBytes: 2 * size }, serialize: false });
    // Re-scanning the growing token per 256-byte chunk would handle ~n²/512 characters (tens of billions).
    feedLinearly(recorder, input, 256);
    assert.deepEqual(recorder.conditions, [], prefix);
    assert.equal(recorder.stanzas.length, 1, prefix);
    assert.equal(recorder.events[1]![2], input.length - Buffer.byteLength(HEADER));
  }
});

test('the error is reported exactly once and later input is ignored', () => {
  const recorder = new Recorder().write(`${HEADER}<message><body>x</bodyy>`);
  assert.deepEqual(recorder.conditions, ['not-well-formed']);
  recorder.write('</body></message><presence/>').write('<!-- -->').write(Buffer.from([0xff])).write('</stream:stream>');
  recorder.parser.reset();
  recorder.write(HEADER + '<presence/>');
  assert.equal(recorder.errors.length, 1);
  assert.equal(recorder.eventsAfterError, 0);
  assert.deepEqual(recorder.events.map((e) => e[0]), ['open', 'error']);
});

test('reset() expects a new declaration and stream header', () => {
  const recorder = new Recorder().write(`<?xml version='1.0'?>${HEADER}<presence/>`);
  recorder.parser.reset();
  recorder.write(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='${NS_STREAM}'><message/></stream:stream>`);
  assert.deepEqual(recorder.events.map((e) => e[0]), ['open', 'stanza', 'open', 'stanza', 'close']);
  assert.equal(recorder.stanzas[1]!.xmlns, 'jabber:server');
  recorder.parser.reset();
  recorder.write('\uFEFF' + HEADER);
  assert.deepEqual(recorder.errors, []);
  recorder.parser.reset();
  recorder.write('</stream:stream>');
  assert.deepEqual(recorder.conditions, ['not-well-formed']);
});

test('reset() discards buffered partial input', () => {
  const recorder = new Recorder().write(`${HEADER}<message><body>hello`);
  recorder.parser.reset();
  recorder.write(HEADER + '<presence/>');
  assert.deepEqual(recorder.events.map((e) => e[0]), ['open', 'open', 'stanza']);
  assert.equal(recorder.stanzas[0]!.name, 'presence');

  const pendingTag = new Recorder().write(`${HEADER}<message to='${'x'.repeat(100)}`);
  pendingTag.write('y'.repeat(100));
  pendingTag.parser.reset();
  pendingTag.write(HEADER + '<iq/>');
  assert.deepEqual(pendingTag.events.map((e) => e[0]), ['open', 'open', 'stanza']);

  const partialChar = new Recorder().write(HEADER);
  partialChar.write(Buffer.from([0xe2, 0x82]));
  partialChar.parser.reset();
  partialChar.write(HEADER);
  assert.deepEqual(partialChar.events.map((e) => e[0]), ['open', 'open']);
});

test('reset() from a stanza handler drops the rest of the chunk (no STARTTLS injection)', () => {
  const recorder = new Recorder({
    onStanza: (el, r) => {
      if (el.name === 'starttls') r.parser.reset();
    },
  });
  recorder.write(`${HEADER}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message to='injected'/>`);
  recorder.write(`<?xml version='1.0'?>${HEADER}<presence/>`);
  assert.deepEqual(recorder.events.map((e) => e[0]), ['open', 'stanza', 'open', 'stanza']);
  assert.deepEqual(recorder.stanzas.map((s) => s.name), ['starttls', 'presence']);
});

test('random bytes never throw: events or exactly one error, independent of chunking', () => {
  const random = mulberry32(12345);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const vocabulary = [
    '<', '>', '/', '</', '/>', 'a', 'b:c', 'message', ' x', '=', "'", '"', ' ', '\n', '\r', '&amp;', '&', ';', '&#', 'x41', '&#x1F600;',
    '<![CDATA[', ']]>', ']', '<?xml ', "version='1.0'", '?>', '<!--', '<!DOCTYPE', 'é', '🌍', '\u0000', '\uFFFE', HEADER, '</stream:stream>', '<a>', '</a>',
  ];
  const docBytes = Buffer.from(DOC);
  for (let n = 0; n < 2000; n++) {
    let input: Buffer;
    const kind = n % 3;
    if (kind === 0) {
      input = Buffer.alloc(Math.floor(random() * 200));
      for (let i = 0; i < input.length; i++) input[i] = Math.floor(random() * 256);
      if (random() < 0.5) input = Buffer.concat([Buffer.from(HEADER), input]);
    } else if (kind === 1) {
      const parts: string[] = [];
      for (let i = Math.floor(random() * 40); i > 0; i--) parts.push(pick(vocabulary));
      input = Buffer.from((random() < 0.7 ? HEADER : '') + parts.join(''));
    } else {
      input = Buffer.from(docBytes);
      for (let i = 1 + Math.floor(random() * 4); i > 0; i--) input[Math.floor(random() * input.length)] = Math.floor(random() * 256);
    }
    const whole = new Recorder().write(input);
    assert.ok(whole.errors.length <= 1, `input ${n}`);
    if (whole.errors.length === 1) assert.equal(whole.events.at(-1)![0], 'error', `input ${n}`);
    assert.deepEqual(eventsRandomSplit(input, n), whole.events, `input ${n}: ${JSON.stringify(input.toString('latin1'))}`);
    const small = new Recorder({ limits: { maxStanzaBytes: 64, maxDepth: 2, maxAttributes: 1 } }).writeSplit(input, () => 1 + Math.floor(random() * 16));
    assert.ok(small.errors.length <= 1 && small.eventsAfterError === 0, `input ${n} with small limits`);
  }
});
