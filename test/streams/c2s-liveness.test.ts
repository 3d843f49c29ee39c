/**
 * Idle clients are pinged (XEP-0199) and closed when silent; several virtual hosts are served by
 * one process, each with its own certificate chosen by SNI.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { startTestServer } from '../helpers/server.js';
import { TestClient } from '../helpers/xmpp-client.js';
import { makeVerifier } from '../../server/auth/scram.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

test('an idle client is pinged; answering keeps it, silence ends it with connection-timeout', async () => {
  const ts = await startTestServer({ config: { c2s: { idlePingAfter: '1s', pingTimeout: '1s' } } });
  try {
    const answering = await ts.user('alice');
    answering.send(x('presence'));
    const ping = await answering.expect((el) => el.name === 'iq' && el.attrs.type === 'get' && !!el.getChild('ping', NS.ping), 5000);
    assert.equal(ping.attrs.from, 'localhost');
    answering.send(x('iq', { type: 'result', id: ping.attrs.id, to: 'localhost' }));
    answering.answerPings();

    const silent = await ts.user('bob');
    silent.send(x('presence'));
    await silent.expect((el) => el.name === 'iq' && !!el.getChild('ping', NS.ping), 5000);
    await silent.waitClosed(5000);
    assert.equal(silent.streamError, 'connection-timeout');

    // The client that answered is still served.
    const pong = await answering.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
    assert.equal(pong.attrs.type, 'result');
  } finally {
    await ts.stop();
  }
});

test('one process serves several virtual hosts, each with its own certificate by SNI', async () => {
  const ts0 = await startTestServer();
  const dir = join(ts0.dir, 'hostcerts');
  await ts0.stop();
  mkdirSync(dir, { recursive: true });
  const hosts = ['one.test', 'two.test'];
  const certs: Record<string, { cert: string; key: string }> = {};
  for (const domain of hosts) {
    const pems = await generate([{ name: 'commonName', value: domain }], {
      keyType: 'ec',
      algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: domain }] }],
    });
    certs[domain] = { cert: join(dir, `${domain}.crt`), key: join(dir, `${domain}.key`) };
    writeFileSync(certs[domain]!.cert, pems.cert);
    writeFileSync(certs[domain]!.key, pems.private);
  }
  const ts = await startTestServer({ config: { hosts: hosts.map((domain) => ({ domain, registration: 'open', tls: certs[domain] })) } });
  try {
    for (const domain of hosts) {
      await ts.server.ctx.storage.accounts.create('carol', domain, [makeVerifier('pw', 'SHA-256', 4096)], new Date());
      const c = await TestClient.connect({ port: ts.port, domain });
      const presented = new X509Certificate(c.tlsSocket!.getPeerX509Certificate()!.raw);
      assert.ok(presented.checkHost(domain), `${domain} got a certificate for ${presented.subject}`);
      const jid = await c.login('carol', 'pw');
      assert.equal(jid.split('/')[0], `carol@${domain}`);
      await c.close();
    }
  } finally {
    await ts.stop();
  }
});
