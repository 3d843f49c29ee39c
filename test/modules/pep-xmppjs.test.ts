/**
 * PEP with an independent client implementation, xmpp.js (@xmpp/client): it advertises +notify in
 * its entity capabilities and answers the server's disco#info itself, publishes an OMEMO 2 bundle
 * with publish-options, and receives a contact's device list as a PEP event.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { loginAs, startTestServer, type TestServer } from '../helpers/server.js';
import { capsVer } from '../../shared/xml/caps-hash.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { contacts, items, itemsOf, publish } from './pep-helpers.js';

const OMEMO2 = 'urn:xmpp:omemo:2';
let ts: TestServer;

before(async () => {
  ts = await startTestServer();
});
after(async () => {
  await ts.stop();
});

test('P20 xmpp.js: +notify in its caps brings a contact\'s OMEMO device list; its published bundle is fetched by a non-contact untouched', async () => {
  // Registered over the wire: verifiers for every SCRAM variant xmpp.js may choose.
  const reg = await ts.client();
  assert.equal((await reg.register('jsalice', 'pw-jsalice')).attrs.type, 'result');
  await reg.close();
  await contacts(ts, 'jsalice', 'jsbob');
  const { client, xml } = await import('@xmpp/client');
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
  const alice = client({ service: `xmpp://127.0.0.1:${ts.port}`, domain: 'localhost', username: 'jsalice', password: 'pw-jsalice', resource: 'xmppjs' });
  alice.reconnect.stop();
  alice.on('error', () => {});
  const features = [NS.caps, NS.discoInfo, `${OMEMO2}:devices+notify`].sort();
  const info = { identities: [{ category: 'client', type: 'pc', name: 'xmpp.js' }], features, forms: [] };
  const capsNode = 'https://xmpp.js.example';
  alice.iqCallee.get(NS.discoInfo, 'query', (ctx: any) =>
    xml('query', { xmlns: NS.discoInfo, node: ctx.element.attrs.node }, xml('identity', { category: 'client', type: 'pc', name: 'xmpp.js' }), ...features.map((f) => xml('feature', { var: f }))),
  );
  const event = new Promise<any>((resolve) => {
    alice.on('stanza', (s: any) => {
      const items = s.is('message') ? s.getChild('event', 'http://jabber.org/protocol/pubsub#event')?.getChild('items') : undefined;
      if (items?.attrs.node === `${OMEMO2}:devices`) resolve(s);
    });
  });
  try {
    await alice.start();
    const caps = ts.server.ctx.services.need('caps');
    const known = new Promise<void>((resolve) => {
      const off = caps.onFeatures((e) => {
        if (e.jid === 'jsalice@localhost/xmppjs') {
          off();
          resolve();
        }
      });
    });
    await alice.send(xml('presence', {}, xml('c', { xmlns: NS.caps, hash: 'sha-1', node: capsNode, ver: capsVer(info, 'sha-1') })));
    await known;

    const bob = await loginAs(ts, 'jsbob');
    const devices = x('devices', { xmlns: OMEMO2 }, x('device', { id: '4242' }));
    assert.equal((await bob.iq(publish(`${OMEMO2}:devices`, devices, 'current', { 'pubsub#access_model': 'open' }))).attrs.type, 'result');
    const got = await event;
    assert.equal(got.attrs.from, 'jsbob@localhost');
    assert.equal(got.getChild('event').getChild('items').getChild('item').getChild('devices', OMEMO2).getChild('device').attrs.id, '4242');

    const bundle = xml(
      'bundle',
      { xmlns: OMEMO2 },
      xml('spk', { id: '1' }, 'c3BrMQ=='),
      xml('spks', {}, 'c3Brcw=='),
      xml('ik', {}, 'aWs='),
      xml('prekeys', {}, xml('pk', { id: '1' }, 'cGsx')),
    );
    const options = xml(
      'x',
      { xmlns: NS.dataForms, type: 'submit' },
      xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, 'http://jabber.org/protocol/pubsub#publish-options')),
      xml('field', { var: 'pubsub#max_items' }, xml('value', {}, 'max')),
      xml('field', { var: 'pubsub#access_model' }, xml('value', {}, 'open')),
    );
    const result = await alice.iqCaller.request(
      xml('iq', { type: 'set' }, xml('pubsub', { xmlns: 'http://jabber.org/protocol/pubsub' }, xml('publish', { node: `${OMEMO2}:bundles` }, xml('item', { id: '777' }, bundle)), xml('publish-options', {}, options))),
    );
    assert.equal(result.attrs.type, 'result');
    const stranger = await loginAs(ts, 'jsstranger');
    const fetched = itemsOf(await stranger.iq(items('jsalice@localhost', `${OMEMO2}:bundles`, { ids: ['777'] })));
    assert.equal(fetched.length, 1);
    assert.equal(fetched[0]![1], x('bundle', { xmlns: OMEMO2 }, x('spk', { id: '1' }, 'c3BrMQ=='), x('spks', {}, 'c3Brcw=='), x('ik', {}, 'aWs='), x('prekeys', {}, x('pk', { id: '1' }, 'cGsx'))).toString());
    await bob.close();
    await stranger.close();
  } finally {
    await alice.stop().catch(() => {});
  }
});
