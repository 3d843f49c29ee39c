/**
 * PEP with an independent client: slixmpp (Debian's python3-slixmpp) publishes, fetches, configures
 * and receives events through its own plugins (xep_0060, xep_0163 with xep_0115 caps, xep_0223,
 * xep_0084, xep_0048, xep_0172, ...; explicit subscriptions through xep_0060), driven by test/e2e/slixmpp_pep_peer.py; and what one
 * implementation (xmpp.js) publishes as another (slixmpp) receives it. Each assertion is about what
 * a client saw.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startTestServer, ensureAccount, loginAs, type TestServer } from '../helpers/server.js';
import { skipWithout } from '../helpers/requirements.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import { contacts, items, itemsOf, rosterItem } from '../modules/pep-helpers.js';
import type { Element } from '../../shared/xml/element.js';
import { SlixmppPeer, type PeerEvent } from './slixmpp-peer.js';

const AXOLOTL = 'eu.siacs.conversations.axolotl';
const OMEMO2 = 'urn:xmpp:omemo:2';
const BOOKMARKS2 = 'urn:xmpp:bookmarks:1';
const AVATAR_METADATA = 'urn:xmpp:avatar:metadata';
/** The +notify a slixmpp plugin announces by itself once loaded. */
const PLUGIN_INTERESTS: Record<string, string> = { xep_0084: AVATAR_METADATA, xep_0048: 'storage:bookmarks', xep_0172: 'http://jabber.org/protocol/nick' };

let ts: TestServer;
const peers: SlixmppPeer[] = [];

/** The same XML, whatever the serializer (namespace declarations, quotes, empty elements). */
function canonical(xml: unknown): string {
  assert.equal(typeof xml, 'string', `an XML payload, got ${JSON.stringify(xml)}`);
  const el = parseXmlText(xml as string);
  assert.ok(el, `parsable XML: ${String(xml)}`);
  return el.toString();
}

interface Online {
  peer: SlixmppPeer;
  jid: string;
  /** The answer to a command; fails the test on an error answer. */
  ok(cmd: Record<string, unknown>): Promise<PeerEvent>;
  /** The answer to a command that must fail. */
  fails(cmd: Record<string, unknown>): Promise<PeerEvent>;
  /** Everything the server sent this client before now has reached slixmpp (a ping round trip). */
  settled(): Promise<void>;
  /** The PEP notifications slixmpp handled so far for `node`. */
  events(node: string): PeerEvent[];
}

/**
 * Logs `name@localhost/resource` in with slixmpp and waits until the server has verified its
 * caps and learnt every +notify it announces (its INTERESTS and those of its plugins).
 */
async function online(name: string, opts: { interests?: string[]; plugins?: string[]; resource?: string } = {}): Promise<Online> {
  await ensureAccount(ts, name);
  const bare = `${name}@localhost`;
  const jid = `${bare}/${opts.resource ?? 'slixmpp'}`;
  const interests = opts.interests ?? [];
  const plugins = opts.plugins ?? [];
  const notify = [...interests, ...plugins.flatMap((p) => PLUGIN_INTERESTS[p] ?? [])];
  const caps = ts.server.ctx.services.need('caps');
  const known = new Promise<void>((resolve) => {
    const off = caps.onFeatures((e) => {
      if (e.jid === jid && e.observer === bare && notify.every((n) => e.features.has(`${n}+notify`))) {
        off();
        resolve();
      }
    });
  });
  const peer = SlixmppPeer.spawnPep(['127.0.0.1', String(ts.port), jid, `pw-${name}`, interests.join(','), plugins.join(',')]);
  peers.push(peer);
  const started = await peer.expect((e) => e.event === 'session_start' || e.event === 'disconnected', 'login', 30_000);
  assert.equal(started.event, 'session_start', JSON.stringify(peer.log) + peer.stderr.join(''));
  assert.equal(started.jid, jid);
  await known;
  const ok = async (cmd: Record<string, unknown>) => {
    const answer = await peer.call(cmd);
    assert.equal(answer.event, 'result', `${name}: ${JSON.stringify(cmd)} -> ${JSON.stringify(answer)}`);
    return answer;
  };
  return {
    peer,
    jid,
    ok,
    fails: async (cmd) => {
      const answer = await peer.call(cmd);
      assert.equal(answer.event, 'error', `${name}: ${JSON.stringify(cmd)} should fail, got ${JSON.stringify(answer)}`);
      return answer;
    },
    settled: async () => {
      await ok({ cmd: 'ping' });
    },
    events: (node) => peer.log.filter((e) => e.event === 'items' && e.node === node),
  };
}

/** The next PEP notification for `node` that slixmpp handled. */
function nextEvent(who: Online, node: string): Promise<PeerEvent> {
  return who.peer.expect((e) => e.event === 'items' && e.node === node, `a ${node} event at ${who.jid}`);
}

before(async () => {
  ts = await startTestServer();
});
after(async () => {
  for (const p of peers) {
    p.command({ cmd: 'quit' });
    await Promise.race([p.exited, new Promise((r) => setTimeout(r, 5000).unref())]);
    p.proc.kill();
  }
  await ts.stop();
});

describe('PEP with slixmpp', { skip: skipWithout('slixmpp') }, () => {
  test('P20 P16 OMEMO in both namespaces published with access_model=open: a non-contact fetches the bundles untouched, the contact with +notify gets the device lists, the non-contact with +notify nothing', async () => {
    await contacts(ts, 'omalice', 'ombob');
    const deviceNodes = [`${AXOLOTL}.devicelist`, `${OMEMO2}:devices`];
    const alice = await online('omalice');
    const bob = await online('ombob', { interests: deviceNodes });
    const eve = await online('omeve', { interests: deviceNodes });

    const open = { 'pubsub#access_model': 'open' };
    const openMax = { 'pubsub#access_model': 'open', 'pubsub#max_items': 'max' };
    const devicelist = `<list xmlns='${AXOLOTL}'><device id='1234'/><device id='98765'/></list>`;
    const bundle =
      `<bundle xmlns='${AXOLOTL}'><signedPreKeyPublic signedPreKeyId='1'>BQ6fHc1J6vKgMe/Yp8mZBZQ=</signedPreKeyPublic>` +
      `<signedPreKeySignature>c2lnbmF0dXJl</signedPreKeySignature><identityKey>BSo6F1W4jrAI</identityKey>` +
      `<prekeys><preKeyPublic preKeyId='1'>BTdYzA==</preKeyPublic><preKeyPublic preKeyId='2'>BTdYzB==</preKeyPublic></prekeys></bundle>`;
    const devices = `<devices xmlns='${OMEMO2}'><device id='1234' label='slixmpp on Debian'/></devices>`;
    const bundle2 =
      `<bundle xmlns='${OMEMO2}'><spk id='1'>c3BrMQ==</spk><spks>c3Brcw==</spks><ik>aWs=</ik>` +
      `<prekeys><pk id='1'>cGsx</pk><pk id='2'>cGsy</pk></prekeys></bundle>`;

    const legacyEvent = nextEvent(bob, `${AXOLOTL}.devicelist`);
    assert.equal((await alice.ok({ cmd: 'publish', node: `${AXOLOTL}.devicelist`, id: 'current', payload: devicelist, options: open })).id, 'current');
    await alice.ok({ cmd: 'publish', node: `${AXOLOTL}.bundles:1234`, id: 'current', payload: bundle, options: openMax });
    const omemo2Event = nextEvent(bob, `${OMEMO2}:devices`);
    await alice.ok({ cmd: 'publish', node: `${OMEMO2}:devices`, id: 'current', payload: devices, options: openMax });
    await alice.ok({ cmd: 'publish', node: `${OMEMO2}:bundles`, id: '1234', payload: bundle2, options: openMax });

    for (const [event, node, payload] of [
      [await legacyEvent, `${AXOLOTL}.devicelist`, devicelist],
      [await omemo2Event, `${OMEMO2}:devices`, devices],
    ] as const) {
      assert.equal(event.frm, 'omalice@localhost', node);
      assert.equal(event.delay, null);
      assert.deepEqual((event.items as [string, string][]).map(([id, xml]) => [id, canonical(xml)]), [['current', canonical(payload)]]);
    }

    // A non-contact reads the open nodes, byte for byte what was published.
    const fetched = await eve.ok({ cmd: 'get_items', jid: 'omalice@localhost', node: `${AXOLOTL}.bundles:1234` });
    assert.deepEqual((fetched.items as [string, string][]).map(([id, xml]) => [id, canonical(xml)]), [['current', canonical(bundle)]]);
    const byId = await eve.ok({ cmd: 'get_items', jid: 'omalice@localhost', node: `${OMEMO2}:bundles`, ids: ['1234'] });
    assert.deepEqual((byId.items as [string, string][]).map(([id, xml]) => [id, canonical(xml)]), [['1234', canonical(bundle2)]]);
    const list = await eve.ok({ cmd: 'get_items', jid: 'omalice@localhost', node: `${OMEMO2}:devices` });
    assert.deepEqual((list.items as [string, string][]).map(([id, xml]) => [id, canonical(xml)]), [['current', canonical(devices)]]);

    // ...but is not sent the notifications meant for contacts, even with +notify.
    await eve.settled();
    assert.deepEqual(
      eve.peer.log.filter((e) => e.event === 'items'),
      [],
    );
    // Nor are the bundles pushed to the contact, who did not ask for them.
    await bob.settled();
    assert.deepEqual(
      bob.peer.log.filter((e) => e.event === 'items' && !deviceNodes.includes(e.node as string)),
      [],
    );

    // A contact whose client comes online later gets the last device list, marked as delayed.
    await contacts(ts, 'omalice', 'omcarol');
    const carolEvents = online('omcarol', { interests: [`${OMEMO2}:devices`] });
    const carol = await carolEvents;
    const late = await nextEvent(carol, `${OMEMO2}:devices`);
    assert.equal(late.frm, 'omalice@localhost');
    assert.ok(typeof late.delay === 'string', JSON.stringify(late));
    assert.deepEqual((late.items as [string, string][]).map(([id, xml]) => [id, canonical(xml)]), [['current', canonical(devices)]]);
  });

  test('P16 a contact\'s slixmpp that starts announcing +notify mid-session (new caps in its presence) is sent the last device list then', async () => {
    await contacts(ts, 'lialice', 'libob');
    const node = `${OMEMO2}:devices`;
    const alice = await online('lialice');
    const bob = await online('libob');
    const devices = `<devices xmlns='${OMEMO2}'><device id='31337'/></devices>`;
    await alice.ok({ cmd: 'publish', node, id: 'current', payload: devices, options: { 'pubsub#access_model': 'open' } });
    await bob.settled();
    assert.deepEqual(bob.events(node), []);

    const last = nextEvent(bob, node);
    await bob.ok({ cmd: 'interest', nodes: [node] });
    const got = await last;
    assert.equal(got.frm, 'lialice@localhost');
    assert.ok(typeof got.delay === 'string', JSON.stringify(got));
    assert.deepEqual((got.items as [string, string][]).map(([id, xml]) => [id, canonical(xml)]), [['current', canonical(devices)]]);
  });

  test('P17 disco with slixmpp\'s xep_0030: a stranger gets for an account with PEP nodes the answers for an account that does not exist; a contact is shown only the nodes it may read', async () => {
    await contacts(ts, 'dialice', 'dibob');
    const alice = await online('dialice');
    const bob = await online('dibob');
    const stranger = await online('distranger');
    await alice.ok({ cmd: 'publish', node: `${OMEMO2}:devices`, id: 'current', payload: `<devices xmlns='${OMEMO2}'/>`, options: { 'pubsub#access_model': 'open' } });
    await alice.ok({ cmd: 'publish', node: BOOKMARKS2, id: 'x@conference.localhost', payload: `<conference xmlns='${BOOKMARKS2}'/>`, options: { 'pubsub#access_model': 'whitelist' } });

    const nodesIn = (answer: PeerEvent) => parseXmlText(answer.xml as string)!.getChildren('item').map((i) => i.attrs.node);
    assert.deepEqual(nodesIn(await alice.ok({ cmd: 'disco_items', jid: 'dialice@localhost' })).sort(), [`${OMEMO2}:devices`, BOOKMARKS2].sort());
    assert.deepEqual(nodesIn(await bob.ok({ cmd: 'disco_items', jid: 'dialice@localhost' })), [`${OMEMO2}:devices`]);
    assert.equal((await bob.fails({ cmd: 'disco_info', jid: 'dialice@localhost', node: BOOKMARKS2 })).condition, (await bob.fails({ cmd: 'disco_info', jid: 'dialice@localhost', node: 'urn:xmpp:nothing' })).condition);

    const answer = async (jid: string, cmd: string, node?: string) => {
      const e = await stranger.peer.call({ cmd, jid, node });
      return [e.event, e.condition, e.type];
    };
    for (const [cmd, node] of [['disco_items', undefined], ['disco_info', undefined], ['disco_info', `${OMEMO2}:devices`], ['disco_info', BOOKMARKS2]] as const) {
      assert.deepEqual(await answer('dialice@localhost', cmd, node), await answer('nobody@localhost', cmd, node), `${cmd} ${node ?? ''}`);
    }
  });

  test('P16 blocking (XEP-0191) with slixmpp\'s xep_0191: a contact the owner blocked neither reads the node nor is notified, a contact who blocked the owner is not notified', async () => {
    await contacts(ts, 'blalice', 'blbob');
    await contacts(ts, 'blalice', 'blcarol');
    const node = 'http://jabber.org/protocol/tune';
    const alice = await online('blalice', { plugins: ['xep_0191'] });
    const bob = await online('blbob', { interests: [node], plugins: ['xep_0191'] });
    const carol = await online('blcarol', { interests: [node], plugins: ['xep_0191'] });
    const tune = (title: string) => `<tune xmlns='${node}'><title>${title}</title></tune>`;

    const first = [nextEvent(bob, node), nextEvent(carol, node)];
    await alice.ok({ cmd: 'publish', node, id: 'current', payload: tune('before') });
    for (const e of await Promise.all(first)) assert.match((e.items as [string, string][])[0]![1], /before/);

    await alice.ok({ cmd: 'block', jids: ['blbob@localhost'] });
    await carol.ok({ cmd: 'block', jids: ['blalice@localhost'] });
    await alice.ok({ cmd: 'publish', node, id: 'current', payload: tune('after') });
    assert.equal((await bob.fails({ cmd: 'get_items', jid: 'blalice@localhost', node })).condition, 'service-unavailable');
    for (const who of [bob, carol]) {
      await who.settled();
      assert.deepEqual(
        who.events(node).map((e) => (e.items as [string, string][])[0]![1]).filter((xml) => xml.includes('after')),
        [],
      );
    }
  });

  test('P20 namespace prefixes a client declares on the publish <iq> stay with the payload: the contact\'s slixmpp is notified of it and reads it, declarations included', async () => {
    await contacts(ts, 'pxalice', 'pxbob');
    const bob = await online('pxbob', { interests: [BOOKMARKS2] });
    const alice = await loginAs(ts, 'pxalice');
    const event = nextEvent(bob, BOOKMARKS2);
    // Valid XML: the prefixes e and f are in scope where the payload uses them.
    alice.writeRaw(
      `<iq type='set' id='px1' xmlns:e='urn:example:ext' xmlns:f='urn:example:flags'><pubsub xmlns='http://jabber.org/protocol/pubsub'>` +
        `<publish node='${BOOKMARKS2}'><item id='council@conference.localhost'>` +
        `<conference xmlns='${BOOKMARKS2}' name='Council' e:pinned='1'><extensions><f:flag f:colour='red'>t</f:flag></extensions></conference>` +
        `</item></publish></pubsub></iq>`,
    );
    assert.equal((await alice.expect((el) => el.attrs.id === 'px1')).attrs.type, 'result');
    // slixmpp resolved the prefixed names (its serialiser writes f:flag with a default namespace).
    assert.match(((await event).items as [string, string][])[0]![1], /<flag xmlns="urn:example:flags">t<\/flag>/);
    const read = await bob.ok({ cmd: 'get_items', jid: 'pxalice@localhost', node: BOOKMARKS2 });
    assert.match((read.items as [string, string][])[0]![1], /<flag xmlns="urn:example:flags">t<\/flag>/);

    // What the server stored and serves is the payload with the declarations it needs.
    const payload = parseXmlText(itemsOf(await alice.iq(items(undefined, BOOKMARKS2)))[0]![1]);
    assert.ok(payload);
    const declared = (el: Element, prefix: string): string | undefined => {
      for (let e: Element | null = el; e; e = e.parent) if (e.attrs[`xmlns:${prefix}`] !== undefined) return e.attrs[`xmlns:${prefix}`];
      return undefined;
    };
    assert.equal(payload.attrs['e:pinned'], '1');
    assert.equal(declared(payload, 'e'), 'urn:example:ext');
    const flag = payload.getChild('extensions')!.getChild('f:flag')!;
    assert.equal(flag.attrs['f:colour'], 'red');
    assert.equal(declared(flag, 'f'), 'urn:example:flags');
    await alice.close();
  });

  test('P20 prefixes a client declares on its stream header: its PEP payload and its chat message reach the contact\'s slixmpp whole, and slixmpp stays connected', async () => {
    await contacts(ts, 'shalice', 'shbob');
    const bob = await online('shbob', { interests: [BOOKMARKS2] });
    await ensureAccount(ts, 'shalice');
    const alice = await ts.client({ streamPrefixes: { e: 'urn:example:ext' } });
    await alice.login('shalice', 'pw-shalice');
    const event = nextEvent(bob, BOOKMARKS2);
    alice.writeRaw(
      `<iq type='set' id='sh1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='${BOOKMARKS2}'><item id='glade@conference.localhost'>` +
        `<conference xmlns='${BOOKMARKS2}' name='Glade'><extensions><e:mark/></extensions></conference></item></publish></pubsub></iq>`,
    );
    assert.equal((await alice.expect((el) => el.attrs.id === 'sh1')).attrs.type, 'result');
    assert.match(((await event).items as [string, string][])[0]![1], /<mark xmlns="urn:example:ext" \/>/);
    const read = await bob.ok({ cmd: 'get_items', jid: 'shalice@localhost', node: BOOKMARKS2 });
    assert.match((read.items as [string, string][])[0]![1], /<mark xmlns="urn:example:ext" \/>/);

    alice.writeRaw(`<message to='${bob.jid}' type='chat' id='sh2'><body>over the stream header</body><e:mark/></message>`);
    const message = await bob.peer.expect((e) => e.event === 'message' && e.body === 'over the stream header', 'the chat message at shbob');
    assert.equal(message.frm, 'shalice@localhost');
    await bob.settled();
    assert.deepEqual(bob.peer.log.filter((e) => e.event === 'disconnected'), []);
    await alice.close();
  });

  test('P16 explicit subscriptions with slixmpp\'s xep_0060 (as Movim follows a microblog): subscribe at the bare JID, the last item and the next, the subscriptions lists of subscriber and owner, the owner ends it and the subscriber is told', async () => {
    const node = 'urn:xmpp:microblog:0';
    const entry = (title: string) => `<entry xmlns='http://www.w3.org/2005/Atom'><title>${title}</title></entry>`;
    const alice = await online('sbalice');
    const bob = await online('sbbob');
    await alice.ok({ cmd: 'publish', node, id: 'p1', payload: entry('first'), options: { 'pubsub#access_model': 'open' } });

    const last = nextEvent(bob, node);
    const subscribed = await bob.ok({ cmd: 'subscribe', jid: 'sbalice@localhost', node });
    assert.deepEqual([subscribed.subscription, subscribed.subjid], ['subscribed', 'sbbob@localhost']);
    const first = await last;
    assert.equal(first.frm, 'sbalice@localhost');
    assert.ok(typeof first.delay === 'string', JSON.stringify(first));
    assert.match((first.items as [string, string][])[0]![1], /first/);

    const next = nextEvent(bob, node);
    await alice.ok({ cmd: 'publish', node, id: 'p2', payload: entry('second') });
    assert.match(((await next).items as [string, string][])[0]![1], /second/);
    await bob.settled();
    assert.equal(bob.events(node).length, 2, 'one notification each');

    assert.deepEqual((await bob.ok({ cmd: 'get_subscriptions', jid: 'sbalice@localhost' })).subscriptions, [[node, 'sbbob@localhost', 'subscribed']]);
    assert.deepEqual((await alice.ok({ cmd: 'node_subscriptions', node })).subscriptions, [['sbbob@localhost', 'subscribed']]);

    const told = bob.peer.expect((e) => e.event === 'subscription' && e.node === node, 'the end of the subscription at sbbob');
    await alice.ok({ cmd: 'end_subscriptions', node, jids: ['sbbob@localhost'] });
    const ended = await told;
    assert.deepEqual([ended.frm, ended.jid, ended.subscription], ['sbalice@localhost', 'sbbob@localhost', 'none']);
    await alice.ok({ cmd: 'publish', node, id: 'p3', payload: entry('third') });
    await bob.settled();
    assert.equal(bob.events(node).length, 2, 'nothing after the owner ended it');
    assert.deepEqual((await bob.ok({ cmd: 'get_subscriptions', jid: 'sbalice@localhost' })).subscriptions, []);
    const again = await bob.fails({ cmd: 'unsubscribe', jid: 'sbalice@localhost', node });
    assert.deepEqual([again.condition, again.app], ['unexpected-request', 'not-subscribed']);
  });

  test('the Conversations sequence: publish-options that differ from the node give precondition-not-met; slixmpp reads the owner form, submits it changed and publishes again', async () => {
    await contacts(ts, 'cvalice', 'cvbob');
    const node = `${AXOLOTL}.devicelist`;
    const alice = await online('cvalice');
    const bob = await online('cvbob', { interests: [node] });
    const stranger = await online('cvstranger');

    const first = nextEvent(bob, node);
    await alice.ok({ cmd: 'publish', node, id: 'current', payload: `<list xmlns='${AXOLOTL}'><device id='1'/></list>` });
    assert.deepEqual(((await first).items as [string, string][]).map(([id]) => id), ['current']);
    // The default access model (presence): a stranger cannot read it.
    assert.equal((await stranger.fails({ cmd: 'get_items', jid: 'cvalice@localhost', node })).condition, 'item-not-found');

    const second = `<list xmlns='${AXOLOTL}'><device id='1'/><device id='2'/></list>`;
    const refused = await alice.fails({ cmd: 'publish', node, id: 'current', payload: second, options: { 'pubsub#access_model': 'open' } });
    assert.equal(refused.condition, 'conflict');
    assert.equal(refused.app, 'precondition-not-met');
    assert.equal(refused.type, 'cancel');

    const config = (await alice.ok({ cmd: 'get_config', node })).fields as Record<string, unknown>;
    assert.equal(config['pubsub#access_model'], 'presence');
    const { FORM_TYPE: formType, ...fields } = config;
    // slixmpp reads a hidden field as a list of values.
    assert.deepEqual([formType].flat(), ['http://jabber.org/protocol/pubsub#node_config']);
    await alice.ok({ cmd: 'configure', node, fields: { ...fields, 'pubsub#access_model': 'open' } });
    assert.equal(((await alice.ok({ cmd: 'get_config', node })).fields as Record<string, unknown>)['pubsub#access_model'], 'open');

    const again = nextEvent(bob, node);
    await alice.ok({ cmd: 'publish', node, id: 'current', payload: second, options: { 'pubsub#access_model': 'open' } });
    assert.deepEqual(((await again).items as [string, string][]).map(([id, xml]) => [id, canonical(xml)]), [['current', canonical(second)]]);
    const read = await stranger.ok({ cmd: 'get_items', jid: 'cvalice@localhost', node });
    assert.deepEqual((read.items as [string, string][]).map(([id, xml]) => [id, canonical(xml)]), [['current', canonical(second)]]);
    // The refused publish notified nobody: bob saw exactly the two that were stored.
    await bob.settled();
    assert.equal(bob.events(node).length, 2);
  });

  test('P16 the roster access model set through slixmpp\'s configure form (roster_groups_allowed as list-multi): the contact in the group reads and is told of the deletion, the contact outside it neither', async () => {
    await rosterItem(ts, 'rgalice', 'rgbob', 'both', ['Friends']);
    await rosterItem(ts, 'rgbob', 'rgalice', 'both');
    await contacts(ts, 'rgalice', 'rgcarol');
    const node = 'http://jabber.org/protocol/geoloc';
    const alice = await online('rgalice');
    const bob = await online('rgbob', { interests: [node] });
    const carol = await online('rgcarol', { interests: [node] });

    const geoloc = `<geoloc xmlns='${node}'><locality>Athens</locality></geoloc>`;
    await alice.ok({ cmd: 'publish', node, id: 'current', payload: geoloc });
    await alice.ok({ cmd: 'configure', node, fields: { 'pubsub#access_model': 'roster', 'pubsub#roster_groups_allowed': ['Friends'] } });
    const config = (await alice.ok({ cmd: 'get_config', node })).fields as Record<string, unknown>;
    assert.deepEqual([config['pubsub#access_model'], config['pubsub#roster_groups_allowed']], ['roster', ['Friends']]);

    const read = await bob.ok({ cmd: 'get_items', jid: 'rgalice@localhost', node });
    assert.deepEqual((read.items as [string, string][]).map(([id, xml]) => [id, canonical(xml)]), [['current', canonical(geoloc)]]);
    assert.equal((await carol.fails({ cmd: 'get_items', jid: 'rgalice@localhost', node })).condition, 'item-not-found');

    const deleted = bob.peer.expect((e) => e.event === 'delete' && e.node === node, 'the deletion at rgbob');
    await alice.ok({ cmd: 'delete', node });
    assert.equal((await deleted).frm, 'rgalice@localhost');
    await carol.settled();
    assert.deepEqual(carol.peer.log.filter((e) => e.event === 'delete'), []);
  });

  test('P11 P16 a whitelist bookmark node (XEP-0402) from slixmpp: the owner\'s other resource reads it and gets the event, a contact and a stranger get item-not-found and no event', async () => {
    await contacts(ts, 'bmalice', 'bmbob');
    const desktop = await online('bmalice', { resource: 'desktop' });
    const phone = await online('bmalice', { resource: 'phone', interests: [BOOKMARKS2] });
    const bob = await online('bmbob', { interests: [BOOKMARKS2] });
    const stranger = await online('bmstranger', { interests: [BOOKMARKS2] });

    const conference = `<conference xmlns='${BOOKMARKS2}' name='Council of Oberon' autojoin='true'><nick>Puck</nick></conference>`;
    const event = nextEvent(phone, BOOKMARKS2);
    await desktop.ok({
      cmd: 'publish',
      node: BOOKMARKS2,
      id: 'council@conference.localhost',
      payload: conference,
      options: { 'pubsub#persist_items': 'true', 'pubsub#max_items': 'max', 'pubsub#send_last_published_item': 'never', 'pubsub#access_model': 'whitelist' },
    });
    const got = await event;
    assert.equal(got.frm, 'bmalice@localhost');
    assert.deepEqual((got.items as [string, string][]).map(([id, xml]) => [id, canonical(xml)]), [['council@conference.localhost', canonical(conference)]]);

    const own = await phone.ok({ cmd: 'get_items', node: BOOKMARKS2 });
    assert.deepEqual((own.items as [string, string][]).map(([id, xml]) => [id, canonical(xml)]), [['council@conference.localhost', canonical(conference)]]);

    for (const other of [bob, stranger]) {
      const denied = await other.fails({ cmd: 'get_items', jid: 'bmalice@localhost', node: BOOKMARKS2 });
      assert.equal(denied.condition, 'item-not-found', JSON.stringify(denied));
      assert.equal(denied.type, 'cancel');
      const byId = await other.fails({ cmd: 'get_items', jid: 'bmalice@localhost', node: BOOKMARKS2, ids: ['council@conference.localhost'] });
      assert.equal(byId.condition, 'item-not-found');
      await other.settled();
      assert.deepEqual(other.events(BOOKMARKS2), []);
    }
    // A second bookmark joins the first (max_items max); removing one is a retraction with notify.
    const second = `<conference xmlns='${BOOKMARKS2}' name='The Wood'><nick>Puck</nick></conference>`;
    const added = nextEvent(phone, BOOKMARKS2);
    await desktop.ok({
      cmd: 'publish',
      node: BOOKMARKS2,
      id: 'wood@conference.localhost',
      payload: second,
      options: { 'pubsub#persist_items': 'true', 'pubsub#max_items': 'max', 'pubsub#send_last_published_item': 'never', 'pubsub#access_model': 'whitelist' },
    });
    assert.deepEqual(((await added).items as [string, string][]).map(([id]) => id), ['wood@conference.localhost']);
    const both = await phone.ok({ cmd: 'get_items', node: BOOKMARKS2 });
    assert.deepEqual((both.items as [string, string][]).map(([id]) => id).sort(), ['council@conference.localhost', 'wood@conference.localhost']);
    const removed = nextEvent(phone, BOOKMARKS2);
    await desktop.ok({ cmd: 'retract', node: BOOKMARKS2, id: 'council@conference.localhost', notify: true });
    const retraction = await removed;
    assert.deepEqual([retraction.items, retraction.retracts], [[], ['council@conference.localhost']]);
    const left = await phone.ok({ cmd: 'get_items', node: BOOKMARKS2 });
    assert.deepEqual((left.items as [string, string][]).map(([id]) => id), ['wood@conference.localhost']);
    await bob.settled();
    assert.deepEqual(bob.events(BOOKMARKS2), []);

    // The answer is the one for a node that does not exist (P17).
    const missing = await bob.fails({ cmd: 'get_items', jid: 'bmalice@localhost', node: 'urn:xmpp:nothing-here' });
    assert.equal(missing.condition, 'item-not-found');
  });

  test('P11 XEP-0048 bookmarks stored in PEP by slixmpp\'s xep_0048 through xep_0223: read back and sent on login to the owner\'s other resources, item-not-found for a contact', async () => {
    await contacts(ts, 'oldalice', 'oldbob');
    const desktop = await online('oldalice', { resource: 'desktop', plugins: ['xep_0048'] });
    const laptop = await online('oldalice', { resource: 'laptop', plugins: ['xep_0048'] });
    const bob = await online('oldbob', { plugins: ['xep_0048'] });

    const event = nextEvent(laptop, 'storage:bookmarks');
    await desktop.ok({ cmd: 'bookmarks', conferences: [{ jid: 'theatre@conference.localhost', nick: 'Bottom', name: 'The Theatre', autojoin: true }] });
    assert.deepEqual(((await event).items as [string, string][]).map(([id]) => id), ['current']);
    const back = await laptop.ok({ cmd: 'get_bookmarks' });
    assert.deepEqual(back.conferences, [{ jid: 'theatre@conference.localhost', nick: 'Bottom', name: 'The Theatre', autojoin: true }]);

    // Stored again (the node exists, xep_0223's options match it): the one item is replaced.
    const again = nextEvent(laptop, 'storage:bookmarks');
    await desktop.ok({ cmd: 'bookmarks', conferences: [{ jid: 'wall@conference.localhost', nick: 'Snout', name: 'The Wall', autojoin: false }] });
    await again;
    assert.deepEqual((await laptop.ok({ cmd: 'get_bookmarks' })).conferences, [{ jid: 'wall@conference.localhost', nick: 'Snout', name: 'The Wall', autojoin: false }]);

    assert.equal((await bob.fails({ cmd: 'get_items', jid: 'oldalice@localhost', node: 'storage:bookmarks' })).condition, 'item-not-found');
    await bob.settled();
    assert.deepEqual(bob.events('storage:bookmarks'), []);

    // The owner's resource that comes online later is sent the stored bookmarks (the node's default send_last_published_item).
    const tablet = await online('oldalice', { resource: 'tablet', plugins: ['xep_0048'] });
    const last = await nextEvent(tablet, 'storage:bookmarks');
    assert.ok(typeof last.delay === 'string', JSON.stringify(last));
    assert.match((last.items as [string, string][])[0]![1], /wall@conference\.localhost/);
  });

  test('P16 avatars (XEP-0084) published with slixmpp\'s xep_0084 reach a contact\'s xep_0084 as metadata, the contact fetches the data by id; a stranger gets neither', async () => {
    await contacts(ts, 'avalice', 'avbob');
    const alice = await online('avalice', { plugins: ['xep_0084'] });
    const bob = await online('avbob', { plugins: ['xep_0084'] });
    const stranger = await online('avstranger', { plugins: ['xep_0084'] });

    // A 1x1 PNG.
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');
    const metadata = bob.peer.expect((e) => e.event === 'avatar_metadata' && e.frm === 'avalice@localhost', 'the avatar metadata at avbob');
    const published = await alice.ok({ cmd: 'avatar', data: png.toString('base64'), type: 'image/png' });
    const id = published.id as string;
    assert.match(id, /^[0-9a-f]{40}$/);
    assert.deepEqual((await metadata).info, [{ id, type: 'image/png', bytes: png.length }]);

    const data = await bob.ok({ cmd: 'get_avatar', jid: 'avalice@localhost', id });
    assert.equal(data.id, id);
    assert.deepEqual(Buffer.from(data.data as string, 'base64'), png);

    // Turning the avatar off (xep_0084.stop, empty metadata) reaches the contact too.
    const off = bob.peer.expect((e) => e.event === 'avatar_metadata' && e.frm === 'avalice@localhost', 'the avatar turned off at avbob');
    await alice.ok({ cmd: 'stop_avatar' });
    assert.deepEqual((await off).info, []);

    assert.equal((await stranger.fails({ cmd: 'get_avatar', jid: 'avalice@localhost', id })).condition, 'item-not-found');
    await stranger.settled();
    assert.deepEqual(
      stranger.peer.log.filter((e) => e.event === 'avatar_metadata' || e.event === 'items'),
      [],
    );
  });

  test('XEP-0398 with slixmpp: an avatar from xep_0084 is the vCard PHOTO xep_0054 reads; a vCard PHOTO set by xep_0153 reaches the contact\'s xep_0084', async () => {
    await contacts(ts, 'vcalice', 'vcbob');
    const alice = await online('vcalice', { plugins: ['xep_0084', 'xep_0054', 'xep_0153'] });
    const bob = await online('vcbob', { plugins: ['xep_0084', 'xep_0054'] });

    const gif = Buffer.from('R0lGODlhAQABAAAAACw=', 'base64');
    await alice.ok({ cmd: 'avatar', data: gif.toString('base64'), type: 'image/gif' });
    const vcard = await bob.ok({ cmd: 'get_vcard', jid: 'vcalice@localhost' });
    assert.equal(vcard.type, 'image/gif');
    assert.deepEqual(Buffer.from(vcard.data as string, 'base64'), gif);

    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');
    const id = createHash('sha1').update(png).digest('hex');
    const metadata = bob.peer.expect((e) => e.event === 'avatar_metadata' && (e.info as { id: string }[])[0]?.id === id, 'the vCard photo as avatar metadata at vcbob');
    await alice.ok({ cmd: 'vcard_avatar', data: png.toString('base64'), type: 'image/png' });
    assert.deepEqual((await metadata).info, [{ id, type: 'image/png', bytes: png.length }]);
    const data = await bob.ok({ cmd: 'get_avatar', jid: 'vcalice@localhost', id });
    assert.deepEqual(Buffer.from(data.data as string, 'base64'), png);
  });

  test('P16 nickname (XEP-0172), tune (XEP-0118), mood (XEP-0107) and activity (XEP-0108) from slixmpp\'s plugins reach a contact\'s plugins, not a stranger', async () => {
    await contacts(ts, 'nkalice', 'nkbob');
    const plugins = ['xep_0172', 'xep_0118', 'xep_0107', 'xep_0108'];
    const alice = await online('nkalice', { plugins });
    const bob = await online('nkbob', { plugins });
    const stranger = await online('nkstranger', { plugins });
    const from = (e: PeerEvent) => e.frm === 'nkalice@localhost';
    const nick = bob.peer.expect((e) => e.event === 'user_nick' && from(e), 'the nick at nkbob');
    const tune = bob.peer.expect((e) => e.event === 'user_tune' && from(e), 'the tune at nkbob');
    const mood = bob.peer.expect((e) => e.event === 'user_mood' && from(e), 'the mood at nkbob');
    const activity = bob.peer.expect((e) => e.event === 'user_activity' && from(e), 'the activity at nkbob');
    await alice.ok({ cmd: 'nick', nick: 'Titania & <Oberon> "🌙" ティターニア' });
    await alice.ok({ cmd: 'tune', artist: 'Mendelssohn', title: 'Wedding March', length: 290 });
    await alice.ok({ cmd: 'mood', value: 'happy', text: 'midsummer' });
    await alice.ok({ cmd: 'activity', general: 'relaxing', specific: 'partying', text: 'in the wood' });
    assert.equal((await nick).nick, 'Titania & <Oberon> "🌙" ティターニア');
    const t = await tune;
    assert.deepEqual([t.artist, t.title, t.length], ['Mendelssohn', 'Wedding March', '290']);
    const m = await mood;
    assert.deepEqual([m.value, m.text], ['happy', 'midsummer']);
    const a = await activity;
    assert.deepEqual([a.value, a.text], [['relaxing', 'partying'], 'in the wood']);

    await stranger.settled();
    assert.deepEqual(
      stranger.peer.log.filter((e) => e.event === 'items' || e.event.startsWith('user_')),
      [],
    );
  });
});

describe('PEP between two independent clients', { skip: skipWithout('slixmpp') }, () => {
  test('P11 P16 xmpp.js publishes an avatar and a whitelist bookmark: the contact\'s slixmpp gets the avatar through xep_0084, and neither reads nor is told of the bookmark', async () => {
    // Registered over the wire: verifiers for every SCRAM variant xmpp.js may choose.
    const reg = await ts.client();
    assert.equal((await reg.register('xjalice', 'pw-xjalice')).attrs.type, 'result');
    await reg.close();
    await contacts(ts, 'xjalice', 'xjbob');
    const bob = await online('xjbob', { plugins: ['xep_0084'], interests: [BOOKMARKS2] });

    const { client, xml } = await import('@xmpp/client');
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
    const alice = client({ service: `xmpp://127.0.0.1:${ts.port}`, domain: 'localhost', username: 'xjalice', password: 'pw-xjalice', resource: 'xmppjs' });
    alice.reconnect.stop();
    alice.on('error', () => {});
    const PUBSUB = 'http://jabber.org/protocol/pubsub';
    const options = (fields: Record<string, string>) =>
      xml(
        'publish-options',
        {},
        xml(
          'x',
          { xmlns: 'jabber:x:data', type: 'submit' },
          xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, `${PUBSUB}#publish-options`)),
          ...Object.entries(fields).map(([k, v]) => xml('field', { var: k }, xml('value', {}, v))),
        ),
      );
    const publish = (node: string, id: string, payload: ReturnType<typeof xml>, opts?: Record<string, string>) =>
      alice.iqCaller.request(xml('iq', { type: 'set' }, xml('pubsub', { xmlns: PUBSUB }, xml('publish', { node }, xml('item', { id }, payload)), opts ? options(opts) : undefined)));
    try {
      await alice.start();
      await alice.send(xml('presence'));
      const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');
      const id = createHash('sha1').update(png).digest('hex');
      const metadata = bob.peer.expect((e) => e.event === 'avatar_metadata' && e.frm === 'xjalice@localhost', 'the avatar metadata from xmpp.js at xjbob');
      await publish('urn:xmpp:avatar:data', id, xml('data', { xmlns: 'urn:xmpp:avatar:data' }, png.toString('base64')));
      await publish(AVATAR_METADATA, id, xml('metadata', { xmlns: AVATAR_METADATA }, xml('info', { id, bytes: String(png.length), type: 'image/png', width: '1', height: '1' })));
      assert.deepEqual((await metadata).info, [{ id, type: 'image/png', bytes: png.length }]);
      const data = await bob.ok({ cmd: 'get_avatar', jid: 'xjalice@localhost', id });
      assert.deepEqual(Buffer.from(data.data as string, 'base64'), png);

      await publish(BOOKMARKS2, 'secret@conference.localhost', xml('conference', { xmlns: BOOKMARKS2, name: 'Secret' }, xml('nick', {}, 'Oberon')), {
        'pubsub#persist_items': 'true',
        'pubsub#max_items': 'max',
        'pubsub#send_last_published_item': 'never',
        'pubsub#access_model': 'whitelist',
      });
      assert.equal((await bob.fails({ cmd: 'get_items', jid: 'xjalice@localhost', node: BOOKMARKS2 })).condition, 'item-not-found');
      await bob.settled();
      assert.deepEqual(bob.events(BOOKMARKS2), []);
    } finally {
      await alice.stop().catch(() => {});
    }
  });
});
