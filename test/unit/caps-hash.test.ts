import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import type { Element } from '../../shared/xml/element.js';
import { capsVer, plausibleVer, readDiscoInfo, verificationString, verifyCaps, DEFAULT_CAPS_LIMITS } from '../../shared/xml/caps-hash.js';
import { NS } from '../../shared/ns.js';

function query(inner: string): Element {
  const el = parseXmlText(`<query xmlns='${NS.discoInfo}'>${inner}</query>`);
  assert.ok(el);
  return el;
}

const FEATURES = ['caps', 'disco#info', 'disco#items', 'muc'].map((f) => `<feature var='http://jabber.org/protocol/${f}'/>`).join('');

test('XEP-0115 5.2 simple generation example: the verification string and QgayPKawpkPSDYmwT/WM94uAlu0=', () => {
  const read = readDiscoInfo(query(`<identity category='client' type='pc' name='Exodus 0.9.1'/>${FEATURES}`));
  assert.ok(read.ok);
  assert.equal(
    verificationString(read.info),
    'client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<',
  );
  assert.equal(capsVer(read.info, 'sha-1'), 'QgayPKawpkPSDYmwT/WM94uAlu0=');
});

const COMPLEX_FORM = `<x xmlns='jabber:x:data' type='result'>
  <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
  <field var='ip_version' type='text-multi'><value>ipv4</value><value>ipv6</value></field>
  <field var='os'><value>Mac</value></field>
  <field var='os_version'><value>10.5.1</value></field>
  <field var='software'><value>Psi</value></field>
  <field var='software_version'><value>0.11</value></field>
</x>`;

const COMPLEX = `<identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
<identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
<feature var='http://jabber.org/protocol/caps'/><feature var='http://jabber.org/protocol/disco#info'/>
<feature var='http://jabber.org/protocol/disco#items'/><feature var='http://jabber.org/protocol/muc'/>
${COMPLEX_FORM}`;

test('XEP-0115 5.3 complex generation example (two languages, an extended form): q07IKJEyjvHSyhy//CH0CxmKi8w=', () => {
  const read = readDiscoInfo(query(COMPLEX));
  assert.ok(read.ok);
  assert.equal(
    verificationString(read.info),
    'client/pc/el/Ψ 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<' +
      'http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<' +
      'ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<',
  );
  assert.equal(capsVer(read.info, 'sha-1'), 'q07IKJEyjvHSyhy//CH0CxmKi8w=');
  assert.ok(verifyCaps(query(COMPLEX), 'sha-1', 'q07IKJEyjvHSyhy//CH0CxmKi8w=').ok);
  // The same answer in another order of elements hashes the same.
  const shuffled = query(`${COMPLEX_FORM}<feature var='http://jabber.org/protocol/muc'/><identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
    <feature var='http://jabber.org/protocol/caps'/><feature var='http://jabber.org/protocol/disco#items'/>
    <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/><feature var='http://jabber.org/protocol/disco#info'/>`);
  assert.ok(verifyCaps(shuffled, 'sha-1', 'q07IKJEyjvHSyhy//CH0CxmKi8w=').ok);
});

test('XEP-0115 5.4: other hashes of the IANA registry names; a wrong ver is refused', () => {
  const read = readDiscoInfo(query(COMPLEX));
  assert.ok(read.ok);
  const sha256 = capsVer(read.info, 'sha-256')!;
  assert.equal(Buffer.from(sha256, 'base64').length, 32);
  assert.ok(verifyCaps(query(COMPLEX), 'sha-256', sha256).ok);
  assert.equal(capsVer(read.info, 'md5'), undefined);
  assert.equal(capsVer(read.info, 'SHA1'), undefined);
  const wrong = verifyCaps(query(COMPLEX), 'sha-1', 'QgayPKawpkPSDYmwT/WM94uAlu0=');
  assert.equal(wrong.ok, false);
  assert.equal(verifyCaps(query(COMPLEX), 'md5', 'q07IKJEyjvHSyhy//CH0CxmKi8w=').ok, false);
});

test('XEP-0115 5.4 step 3.3-3.5: duplicate identities, features or FORM_TYPEs and a FORM_TYPE with two values make the answer ill-formed', () => {
  const ill = (inner: string) => {
    const r = readDiscoInfo(query(inner));
    assert.equal(r.ok, false, inner);
    return r.ok ? '' : r.reason;
  };
  assert.match(ill(`<identity category='client' type='pc' name='A'/><identity category='client' type='pc' name='A'/>`), /identity twice/);
  assert.match(ill(`<feature var='urn:x'/><feature var='urn:x'/>`), /feature twice/);
  assert.match(ill(COMPLEX_FORM + COMPLEX_FORM), /same FORM_TYPE/);
  assert.match(
    ill(`<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>urn:a</value><value>urn:b</value></field></x>`),
    /more than one value/,
  );
  // The same value twice is still one FORM_TYPE.
  assert.ok(readDiscoInfo(query(`<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>urn:a</value><value>urn:a</value></field></x>`)).ok);
  assert.match(ill(`<identity type='pc'/>`), /without category/);
  assert.match(ill(`<feature/>`), /without a usable var/);
  // '<' separates the parts of the string: in a value it could make two answers hash alike.
  assert.match(ill(`<feature var='urn:a&lt;urn:b'/>`), /usable var/);
});

test('XEP-0115 5.4 step 3.6: a form whose FORM_TYPE is not hidden, or that has none, is left out of the hash', () => {
  const base = `<identity category='client' type='pc' name='Exodus 0.9.1'/>${FEATURES}`;
  const notHidden = `<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'><value>urn:a</value></field><field var='f'><value>1</value></field></x>`;
  const none = `<x xmlns='jabber:x:data' type='result'><field var='f'><value>1</value></field></x>`;
  assert.ok(verifyCaps(query(base + notHidden + none), 'sha-1', 'QgayPKawpkPSDYmwT/WM94uAlu0=').ok);
});

test('hostile answers are refused as a whole once over the limits, never read in part', () => {
  const many = Array.from({ length: DEFAULT_CAPS_LIMITS.features + 1 }, (_, i) => `<feature var='urn:f:${i}'/>`).join('');
  const r = readDiscoInfo(query(many));
  assert.equal(r.ok, false);
  const long = readDiscoInfo(query(`<feature var='${'a'.repeat(DEFAULT_CAPS_LIMITS.stringLength + 1)}'/>`));
  assert.equal(long.ok, false);
  const forms = Array.from({ length: DEFAULT_CAPS_LIMITS.forms + 1 }, (_, i) => `<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>urn:${i}</value></field></x>`).join('');
  assert.equal(readDiscoInfo(query(forms)).ok, false);
});

test('a ver that cannot come from its hash (wrong length, not base64) is recognised before any query', () => {
  assert.ok(plausibleVer('sha-1', 'QgayPKawpkPSDYmwT/WM94uAlu0='));
  assert.equal(plausibleVer('sha-1', 'QgayPKawpkPSDYmwT/WM94uAlu0'), false);
  assert.equal(plausibleVer('sha-1', 'x'.repeat(200)), false);
  assert.equal(plausibleVer('sha-256', 'QgayPKawpkPSDYmwT/WM94uAlu0='), false);
  assert.equal(plausibleVer('md5', 'QgayPKawpkPSDYmwT/WM94uAlu0='), false);
});
