/**
 * The shared XML serialiser (shared/xml/element.ts), which writes every stanza of the server and
 * of the transports: what it writes is always well-formed XML 1.0, whatever characters the text and
 * attribute values hold. Characters XML 1.0 cannot carry (C0 controls but tab, LF and CR; U+FFFE,
 * U+FFFF; surrogates not in a pair) come out as U+FFFD. Checked by parsing the output with the
 * server's own stream parser, which rejects them as not-well-formed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { XmlStreamParser } from '../../shared/xml/stream-parser.js';
import { Element, escapeAttr, escapeText, replaceNonXmlChars, x } from '../../shared/xml/element.js';
import { streamErrorXml } from '../../server/streams/stream-error.js';

const NS_STREAM = 'http://etherx.jabber.org/streams';
const HEADER = `<stream:stream xmlns='jabber:client' xmlns:stream='${NS_STREAM}' to='example.com' version='1.0'>`;
const R = '\ufffd';

/** Every character XML 1.0 forbids that a JS string can hold, one of each kind. */
const FORBIDDEN: [string, string][] = [
  ['U+0000', '\u0000'],
  ['U+0001', '\u0001'],
  ['U+0008', '\u0008'],
  ['U+000B', '\u000b'],
  ['U+000C', '\u000c'],
  ['U+000E', '\u000e'],
  ['U+001B', '\u001b'],
  ['U+001F', '\u001f'],
  ['U+FFFE', '\ufffe'],
  ['U+FFFF', '\uffff'],
  ['a lone high surrogate', '\ud800'],
  ['a lone high surrogate at the end', '\udbff'],
  ['a lone low surrogate', '\udc00'],
  ['a lone low surrogate at the end', '\udfff'],
];

/** Parses serialised stanzas with the server's parser: the stanzas, or the error it raised. */
function parse(xml: string): { stanzas: Element[]; error: string | null } {
  const stanzas: Element[] = [];
  let error: string | null = null;
  const parser = new XmlStreamParser(
    {
      streamOpen: () => undefined,
      stanza: (el) => stanzas.push(el),
      streamClose: () => undefined,
      error: (condition, text) => (error ??= `${condition}: ${text}`),
    },
    { maxStanzaBytes: 1 << 20, maxDepth: 64, maxAttributes: 64 },
  );
  parser.write(Buffer.from(HEADER + xml));
  return { stanzas, error };
}

/** Whether a string holds only characters XML 1.0 allows (checked on the string: UTF-8 encoding would hide lone surrogates). */
function onlyXmlChars(s: string): boolean {
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    const ok = cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) || cp >= 0x10000;
    if (!ok) return false;
  }
  return true;
}

function roundTrip(el: Element): Element {
  const xml = el.toString();
  assert.ok(onlyXmlChars(xml), `only XML 1.0 characters in ${JSON.stringify(xml)}`);
  const { stanzas, error } = parse(xml);
  assert.equal(error, null, `the server's parser accepts ${JSON.stringify(el.toString())}`);
  assert.equal(stanzas.length, 1);
  return stanzas[0]!;
}

for (const [what, ch] of FORBIDDEN) {
  test(`${what} in text and attribute values comes out as U+FFFD: the output is well-formed`, () => {
    const stanza = x(
      'message',
      { to: `room@conference.example.com/ni${ch}ck`, id: `id${ch}` },
      x('body', {}, `before${ch}after`),
      x('subject', {}, ch),
      x('nick', { xmlns: 'http://jabber.org/protocol/nick' }, `${ch}name`),
    );
    const back = roundTrip(stanza);
    assert.equal(back.attrs.to, `room@conference.example.com/ni${R}ck`);
    assert.equal(back.attrs.id, `id${R}`);
    assert.equal(back.getChildText('body'), `before${R}after`);
    assert.equal(back.getChildText('subject'), R);
    assert.equal(back.getChildText('nick'), `${R}name`);
  });
}

test('escapeText and escapeAttr replace what XML 1.0 forbids and still escape markup', () => {
  assert.equal(escapeText('a\u0001<b>&\ufffe\ud800'), `a${R}&lt;b&gt;&amp;${R}${R}`);
  assert.equal(escapeAttr(`'\u0002"&<\uffff\udc00`), `&apos;${R}&quot;&amp;&lt;${R}${R}`);
  assert.equal(replaceNonXmlChars('x\u0000y\udbffz'), `x${R}y${R}z`);
  // One U+FFFD per forbidden UTF-16 unit: lengths (and offsets into the text) stay the same.
  const bad = '\u0001\u0002\ufffe\uffff\ud800\udc00\udc00\ud800';
  assert.equal(escapeText(bad), `${R}${R}${R}${R}\ud800\udc00${R}${R}`);
  assert.equal(escapeText(bad).length, bad.length);
});

test('allowed characters pass unchanged: tab, LF, CR, DEL, C1 controls, U+FFFD, private use, surrogate pairs', () => {
  const fine = 'tab\tLF\nCR\r DEL\u007f C1\u0085\u009f BMP-end\ufffd\ue000\ud7ff emoji😀 astral\u{10ffff}\u{10000} pair-at-end\ud83c\udf89';
  assert.equal(escapeText(fine), fine);
  assert.equal(escapeAttr(fine), fine);
  assert.equal(replaceNonXmlChars(fine), fine);
  // The same string object when nothing needs doing (no copy on the hot path).
  const plain = 'Hello, world: an ordinary body';
  assert.equal(escapeText(plain), plain);
  const back = roundTrip(x('message', { id: 'emoji😀' }, x('body', {}, 'emoji😀 and 🎉 and 𝄞')));
  assert.equal(back.attrs.id, 'emoji😀');
  assert.equal(back.getChildText('body'), 'emoji😀 and 🎉 and 𝄞');
});

test('markup escaping is unchanged', () => {
  const el = x('message', { to: `a'b"c<d>&e` }, x('body', {}, `1 < 2 && 3 > 2 "q" 'a' ]]>`));
  assert.equal(el.toString(), `<message to="a&apos;b&quot;c&lt;d&gt;&amp;e"><body>1 &lt; 2 &amp;&amp; 3 &gt; 2 "q" 'a' ]]&gt;</body></message>`);
  const back = roundTrip(el);
  assert.equal(back.attrs.to, `a'b"c<d>&e`);
  assert.equal(back.getChildText('body'), `1 < 2 && 3 > 2 "q" 'a' ]]>`);
});

test('text built with t() and children appended later are sanitised too; many stanzas in a row stay well-formed', () => {
  const el = new Element('message');
  el.c('body').t('one\u0001').t('two\u0007');
  let wire = el.toString();
  // Alternating clean and dirty strings: no state carried from one call to the next.
  for (let i = 0; i < 50; i++) wire += x('message', { id: String(i) }, x('body', {}, i % 2 ? `dirty\u0003${i}\ufffe` : `clean ${i} &`)).toString();
  const { stanzas, error } = parse(wire);
  assert.equal(error, null);
  assert.equal(stanzas.length, 51);
  assert.equal(stanzas[0]!.getChildText('body'), `one${R}two${R}`);
  assert.equal(stanzas[2]!.getChildText('body'), `dirty${R}1${R}`);
  assert.equal(stanzas[3]!.getChildText('body'), 'clean 2 &');
});

test('a stream error text with forbidden characters stays well-formed', () => {
  const xml = streamErrorXml('policy-violation', 'bad\u0001text\ud800');
  assert.ok(onlyXmlChars(xml));
  assert.match(xml, /bad\ufffdtext\ufffd/);
});

test('clone() of a child keeps the namespace and the prefixes its ancestors declared, so it stands alone well-formed', () => {
  const { stanzas, error } = parse(
    `<iq type='set' id='1' xmlns:e='urn:example:ext' xmlns:f='urn:example:flags' xmlns:unused='urn:example:unused'>` +
      `<pubsub xmlns='http://jabber.org/protocol/pubsub' xmlns:f='urn:example:nearer'><publish node='n'><item>` +
      `<conference xmlns='urn:xmpp:bookmarks:1' e:pinned='1' xml:lang='en'><extensions><f:flag/></extensions></conference>` +
      `<plain/></item></publish></pubsub></iq>`,
  );
  assert.equal(error, null);
  const item = stanzas[0]!.getChild('pubsub')!.getChild('publish')!.getChild('item')!;
  const copy = item.getChild('conference')!.clone();
  assert.equal(copy.parent, null);
  assert.equal(copy.attrs['xmlns:e'], 'urn:example:ext');
  // The nearest declaration wins; a prefix the copy does not use is not carried over.
  assert.equal(copy.attrs['xmlns:f'], 'urn:example:nearer');
  assert.equal(copy.attrs['xmlns:unused'], undefined);
  const alone = parse(copy.toString());
  assert.equal(alone.error, null, copy.toString());
  // An element without prefixes gets only its namespace.
  assert.equal(item.getChild('plain')!.clone().toString(), '<plain xmlns="http://jabber.org/protocol/pubsub"/>');
});
