/**
 * Unit tests for the federation building blocks: dialback keys (XEP-0185), target resolution
 * (RFC 6120 3.2, XEP-0368), stream header checks, the trust store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dialbackKey, isValidDialbackKey } from '../../server/federation/dialback.js';
import { resolveS2sTargets, type SrvSource, type SrvRecordLike } from '../../server/federation/resolver.js';
import { TrustStore } from '../../server/federation/certificates.js';
import { parseServerHeader, qualify, fromServerWire, forServerWire } from '../../server/federation/s2s-common.js';
import { createTestCa } from '../helpers/test-ca.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

test('P18 dialback keys match the published XEP-0185 example (section 3)', () => {
  // XEP-0185 1.0, section 3 "Example": the data table and the key computed from it.
  const secret = 's3cr3tf0rd14lb4ck';
  const receiving = 'xmpp.example.com';
  const originating = 'example.org';
  const streamId = 'D60000229F';
  const published = '37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643';
  assert.equal(dialbackKey(secret, receiving, originating, streamId), published);
  // Step 8/9: the authoritative server validates the key from the db:verify, with spaces around it.
  assert.ok(isValidDialbackKey(secret, receiving, originating, streamId, published));
  assert.ok(isValidDialbackKey(secret, receiving, originating, streamId, `\n    ${published}\n`));
  assert.ok(!isValidDialbackKey(secret, receiving, originating, 'D60000229G', published), 'other stream');
  assert.ok(!isValidDialbackKey(secret, 'example.com', originating, streamId, published), 'other receiving server');
  assert.ok(!isValidDialbackKey(secret, originating, receiving, streamId, published), 'receiving and originating swapped');
  assert.ok(!isValidDialbackKey('other', receiving, originating, streamId, published), 'other secret');
  assert.ok(!isValidDialbackKey(secret, receiving, originating, streamId, 'short'));
});

function fakeDns(records: Record<string, SrvRecordLike[]>): SrvSource & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    async resolveSrv(name) {
      asked.push(name);
      const r = records[name];
      if (!r) throw Object.assign(new Error(`queryNotFound ${name}`), { code: 'ENOTFOUND' });
      return r;
    },
  };
}

test('P18 static routes win over DNS', async () => {
  const dns = fakeDns({});
  const t = await resolveS2sTargets('example.org', { 'example.org': { host: '10.0.0.1', port: 5999 } }, dns);
  assert.deepEqual(t, [{ host: '10.0.0.1', port: 5999, directTls: false, via: 'static' }]);
  assert.deepEqual(dns.asked, []);
});

test('P18 SRV records for xmpps-server and xmpp-server are merged by priority, then weight', async () => {
  const dns = fakeDns({
    '_xmpps-server._tcp.example.org': [{ name: 'tls.example.org', port: 5270, priority: 10, weight: 0 }],
    '_xmpp-server._tcp.example.org': [
      { name: 'b.example.org.', port: 5269, priority: 20, weight: 0 },
      { name: 'a.example.org.', port: 5269, priority: 5, weight: 0 },
      { name: 'c.example.org.', port: 5269, priority: 10, weight: 0 },
    ],
  });
  const t = await resolveS2sTargets('example.org', {}, dns, () => 0);
  assert.deepEqual(
    t.map((x) => `${x.host}:${x.port}:${x.directTls ? 'tls' : 'starttls'}`),
    ['a.example.org:5269:starttls', 'tls.example.org:5270:tls', 'c.example.org:5269:starttls', 'b.example.org:5269:starttls'],
  );
  assert.ok(t.every((x) => x.via === 'srv'));
});

test('P18 weights pick among equal priorities (RFC 2782)', async () => {
  const dns = fakeDns({
    '_xmpp-server._tcp.example.org': [
      { name: 'light', port: 1, priority: 1, weight: 1 },
      { name: 'heavy', port: 2, priority: 1, weight: 99 },
    ],
  });
  assert.equal((await resolveS2sTargets('example.org', {}, dns, () => 0.5))[0]!.host, 'heavy');
  assert.equal((await resolveS2sTargets('example.org', {}, dns, () => 0.001))[0]!.host, 'light');
});

test("P18 no SRV record falls back to the domain on 5269; '.' means no service", async () => {
  assert.deepEqual(await resolveS2sTargets('example.org', {}, fakeDns({})), [{ host: 'example.org', port: 5269, directTls: false, via: 'fallback' }]);
  const none = fakeDns({ '_xmpp-server._tcp.example.org': [{ name: '.', port: 0, priority: 0, weight: 0 }] });
  assert.deepEqual(await resolveS2sTargets('example.org', {}, none), []);
  // Internationalised domains are looked up in their ASCII form.
  const idn = fakeDns({});
  await resolveS2sTargets('bücher.example', {}, idn);
  assert.ok(idn.asked.includes('_xmpp-server._tcp.xn--bcher-kva.example'));
});

test('P18 server stream headers: namespaces, version, dialback declaration', () => {
  const ok = parseServerHeader('stream:stream', { xmlns: NS.server, 'xmlns:stream': NS.stream, 'xmlns:db': 'jabber:server:dialback', from: 'A.example', to: 'b.example', version: '1.0' });
  assert.equal(ok.ok, true);
  assert.equal(ok.dialback, true);
  assert.equal(ok.from, 'a.example');
  assert.equal(parseServerHeader('stream:stream', { xmlns: NS.client, 'xmlns:stream': NS.stream }).condition, 'invalid-namespace');
  assert.equal(parseServerHeader('stream', { xmlns: NS.server }).condition, 'invalid-namespace');
  assert.equal(parseServerHeader('stream:stream', { xmlns: NS.server, 'xmlns:stream': NS.stream, version: '2.0' }).condition, 'unsupported-version');
  const db = new Element('db:result', { xmlns: NS.server });
  assert.deepEqual(qualify(db, ok.decls), { local: 'result', ns: 'jabber:server:dialback' });
  assert.deepEqual(qualify(new Element('result', { xmlns: 'jabber:server:dialback' }), {}), { local: 'result', ns: 'jabber:server:dialback' });
});

test('P18 stanzas change namespace at the server boundary without touching nested stanzas', () => {
  const inbound = x('message', { xmlns: NS.server, from: 'a@b', to: 'c@d' }, x('body', {}, 'hi'), x('error', { xmlns: NS.server, type: 'cancel' }));
  fromServerWire(inbound);
  assert.equal(inbound.attrs.xmlns, NS.client);
  assert.equal(inbound.getChild('error')!.attrs.xmlns, undefined);
  const forwarded = x('message', { xmlns: NS.client, to: 'x@y' }, x('forwarded', { xmlns: 'urn:xmpp:forward:0' }, x('message', { xmlns: NS.client }, x('body', {}, 'inner'))));
  const wire = forServerWire(forwarded).toString();
  assert.ok(wire.startsWith('<message to="x@y">'), wire);
  assert.ok(wire.includes('<message xmlns="jabber:client">'), 'nested stanza keeps jabber:client');
  assert.equal(forwarded.attrs.xmlns, NS.client, 'the routed element is unchanged');
});

test('P18 the trust store accepts chains to a configured CA and nothing else', () => {
  const ca = createTestCa();
  const other = createTestCa('Some Other CA');
  try {
    const store = new TrustStore([readFileSync(ca.caFile, 'utf8')]);
    const leaf = new X509Certificate(readFileSync(ca.issue('a.test').cert));
    assert.deepEqual(store.verify([leaf]), { ok: true });
    const foreign = new X509Certificate(readFileSync(other.issue('a.test').cert));
    assert.equal(store.verify([foreign]).ok, false);
    const self = new X509Certificate(readFileSync(ca.selfSigned('a.test').cert));
    assert.deepEqual(store.verify([self]), { ok: false, error: 'self-signed certificate' });
    assert.equal(store.verify([leaf], new Date(Date.now() + 10 * 86_400_000)).ok, false, 'expired');
    assert.ok(leaf.checkHost('a.test') && leaf.checkHost('muc.a.test') && !leaf.checkHost('b.test'));
  } finally {
    ca.remove();
    other.remove();
  }
});
