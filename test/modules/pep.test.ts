/**
 * PEP (XEP-0163 on XEP-0060) over real client connections, with the stanzas clients send:
 * Conversations/Dino/Gajim/Monal for OMEMO (both namespaces), OpenPGP for XMPP, avatars,
 * nickname, bookmarks (XEP-0402 and XEP-0048 in PEP), tune/mood/activity; the access models on
 * reads and notifications (P11, P16, P17), end-to-end encryption keys passed untouched (P20).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { loginAs, startTestServer, type TestServer } from '../helpers/server.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import { pepStorage } from '../../server/modules/pep/storage.js';
import {
  EVENT,
  OWNER,
  PUBSUB,
  arrived,
  contacts,
  errorOf,
  form,
  isEvent,
  items,
  itemsOf,
  online,
  owner,
  publish,
  rosterItem,
} from './pep-helpers.js';

const AXOLOTL = 'eu.siacs.conversations.axolotl';
const OMEMO2 = 'urn:xmpp:omemo:2';

const axolotlDevices = (...ids: number[]) => x('list', { xmlns: AXOLOTL }, ids.map((id) => x('device', { id })));
const axolotlBundle = () =>
  x(
    'bundle',
    { xmlns: AXOLOTL },
    x('signedPreKeyPublic', { signedPreKeyId: '1' }, 'BQXqGbBa2gxs1Hu8cjlSZkl3zydK7aqXgKk8V7YyUKVT'),
    x('signedPreKeySignature', {}, 'ynsVGH5lyl7ulU8NtABBd4WjrGaAUwW1JQzZoPW8kwbbIuUl7nNBpeKYWf3C6HC7dYPKUtShBQ7Ww1Nw9awVBA=='),
    x('identityKey', {}, 'BSgM8JebqWdB9lUhiDEqgp/jCNsvoLSu5TTJCr9Qe+tb'),
    x('prekeys', {}, x('preKeyPublic', { preKeyId: '1' }, 'BZdnhZwvYxiOFDWOkqyLd7Pk+J7FjUvgvZpoeTCcK+Jm'), x('preKeyPublic', { preKeyId: '2' }, 'BfJ9r02XYpMVxL7yw6ETyBR4QzhyOtXw+LDd8SNUWwdU')),
  );
const omemo2Bundle = (n: string) =>
  x(
    'bundle',
    { xmlns: OMEMO2 },
    x('spk', { id: '0' }, `c3BrJHtufQ${n}==`),
    x('spks', {}, 'c3Brcw=='),
    x('ik', {}, 'aWs='),
    x('prekeys', {}, x('pk', { id: '0' }, 'cGsw'), x('pk', { id: '1' }, 'cGsx')),
  );
const OPEN = { 'pubsub#access_model': 'open' };

describe('PEP (XEP-0163)', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ config: { pep: { maxItemsPerNode: 20, maxNodesPerUser: 40, maxItemBytes: '8KiB', maxBytesPerUser: '64KiB' } } });
  });
  after(async () => {
    await ts.stop();
  });

  test('the account shows identity pubsub/pep and the pubsub features clients check', async () => {
    const alice = await loginAs(ts, 'disco-owner');
    const reply = await alice.iq(x('iq', { type: 'get', to: 'disco-owner@localhost' }, x('query', { xmlns: NS.discoInfo })));
    const query = reply.getChild('query', NS.discoInfo)!;
    assert.ok(query.getChildren('identity').some((i) => i.attrs.category === 'pubsub' && i.attrs.type === 'pep'));
    const features = new Set(query.getChildren('feature').map((f) => f.attrs.var));
    for (const f of ['publish', 'publish-options', 'auto-create', 'persistent-items', 'retract-items', 'delete-nodes', 'purge-nodes', 'config-node', 'retrieve-items', 'access-open', 'access-presence', 'access-roster', 'access-whitelist', 'last-published', 'create-nodes', 'item-ids']) {
      assert.ok(features.has(`${PUBSUB}#${f}`), f);
    }
    for (const f of ['subscribe', 'retrieve-subscriptions', 'manage-subscriptions', 'retrieve-affiliations', 'member-affiliation']) assert.ok(features.has(`${PUBSUB}#${f}`), f);
    assert.ok(!features.has(`${PUBSUB}#subscription-options`), 'subscription options are not offered');
    assert.ok(!features.has(`${PUBSUB}#modify-affiliations`));
    assert.ok(!features.has(`${PUBSUB}#multi-items`));
    await alice.close();
  });

  test('P20 OMEMO (eu.siacs.conversations.axolotl): device list and bundle published with access_model=open; a non-contact fetches both unchanged', async () => {
    const juliet = await online(ts, 'juliet', [`${AXOLOTL}.devicelist`]);
    const list = await juliet.iq(publish(`${AXOLOTL}.devicelist`, axolotlDevices(12345), 'current', OPEN));
    assert.equal(list.attrs.type, 'result', String(list));
    assert.equal(list.getChild('pubsub', PUBSUB)!.getChild('publish')!.getChild('item')!.attrs.id, 'current');
    const bundle = axolotlBundle();
    assert.equal((await juliet.iq(publish(`${AXOLOTL}.bundles:12345`, bundle, 'current', OPEN))).attrs.type, 'result');
    // The owner's own resource with +notify got its device list (Conversations relies on it).
    await juliet.expect(isEvent(`${AXOLOTL}.devicelist`));

    const stranger = await loginAs(ts, 'stranger');
    const devices = await stranger.iq(items('juliet@localhost', `${AXOLOTL}.devicelist`));
    assert.equal(devices.attrs.type, 'result', String(devices));
    assert.deepEqual(itemsOf(devices), [['current', axolotlDevices(12345).toString()]]);
    const fetched = await stranger.iq(items('juliet@localhost', `${AXOLOTL}.bundles:12345`, { max: 1 }));
    assert.deepEqual(itemsOf(fetched), [['current', bundle.toString()]]);
    await juliet.close();
    await stranger.close();
  });

  test('P20 OMEMO 2 (urn:xmpp:omemo:2): devices and one bundle item per device with max_items max; a non-contact fetches one bundle by id', async () => {
    const romeo = await loginAs(ts, 'romeo2');
    const devices = x('devices', { xmlns: OMEMO2 }, x('device', { id: '31415', label: 'Gajim' }), x('device', { id: '27182' }));
    assert.equal((await romeo.iq(publish(`${OMEMO2}:devices`, devices, 'current', OPEN))).attrs.type, 'result');
    const options = { 'pubsub#max_items': 'max', ...OPEN };
    for (const id of ['31415', '27182']) assert.equal((await romeo.iq(publish(`${OMEMO2}:bundles`, omemo2Bundle(id), id, options))).attrs.type, 'result');
    const stranger = await loginAs(ts, 'stranger2');
    const one = await stranger.iq(items('romeo2@localhost', `${OMEMO2}:bundles`, { ids: ['31415'] }));
    assert.deepEqual(itemsOf(one), [['31415', omemo2Bundle('31415').toString()]]);
    const all = await stranger.iq(items('romeo2@localhost', `${OMEMO2}:bundles`));
    assert.deepEqual(itemsOf(all).map(([id]) => id), ['31415', '27182'], 'both bundles kept (max_items max)');
    assert.deepEqual(itemsOf(await stranger.iq(items('romeo2@localhost', `${OMEMO2}:devices`))), [['current', devices.toString()]]);
    await romeo.close();
    await stranger.close();
  });

  test('P16 a contact with +notify gets the event; a contact without +notify, a contact of the wrong kind and a non-contact get nothing', async () => {
    await contacts(ts, 'notifier', 'fan');
    await contacts(ts, 'notifier', 'quiet');
    await rosterItem(ts, 'notifier', 'follower', 'to'); // notifier sees follower's presence, not the other way round
    await rosterItem(ts, 'follower', 'notifier', 'from');
    const fan = await online(ts, 'fan', [`${AXOLOTL}.devicelist`]);
    const quiet = await online(ts, 'quiet', ['urn:xmpp:avatar:metadata']);
    const follower = await online(ts, 'follower', [`${AXOLOTL}.devicelist`]);
    const stranger = await online(ts, 'stranger3', [`${AXOLOTL}.devicelist`]);
    const notifier = await loginAs(ts, 'notifier');
    assert.equal((await notifier.iq(publish(`${AXOLOTL}.devicelist`, axolotlDevices(1, 2), 'current'))).attrs.type, 'result');
    const event = await fan.expect(isEvent(`${AXOLOTL}.devicelist`));
    assert.equal(event.attrs.from, 'notifier@localhost');
    assert.equal(event.attrs.type, 'headline');
    const item = event.getChild('event', EVENT)!.getChild('items')!.getChild('item')!;
    assert.equal(item.attrs.id, 'current');
    assert.equal(item.firstElement()!.toString(), axolotlDevices(1, 2).toString());
    for (const c of [quiet, follower, stranger]) assert.equal(await arrived(c, isEvent(`${AXOLOTL}.devicelist`)), false, c.jid);
    for (const c of [fan, quiet, follower, stranger, notifier]) await c.close();
  });

  test('publish-options that differ: precondition-not-met, then the owner configures the node and publishes again (Conversations)', async () => {
    const c = await loginAs(ts, 'conversations');
    const node = `${AXOLOTL}.bundles:777`;
    assert.equal((await c.iq(publish(node, axolotlBundle(), 'current'))).attrs.type, 'result'); // presence, the default
    const refused = await c.iq(publish(node, axolotlBundle(), 'current', OPEN));
    assert.equal(refused.attrs.type, 'error');
    assert.deepEqual(errorOf(refused), ['conflict', 'precondition-not-met']);
    assert.equal(refused.getChild('error')!.attrs.type, 'cancel');

    const config = await c.iq(owner('get', x('configure', { node })));
    const got = config.getChild('pubsub', OWNER)!.getChild('configure')!.getChild('x', NS.dataForms)!;
    assert.equal(got.attrs.type, 'form');
    const fields = new Map(got.getChildren('field').map((f) => [f.attrs.var, f]));
    assert.equal(fields.get('FORM_TYPE')!.getChildText('value'), `${PUBSUB}#node_config`);
    assert.equal(fields.get('pubsub#access_model')!.getChildText('value'), 'presence');
    // Conversations sends the form back with the field changed.
    const submit = form(`${PUBSUB}#node_config`, { 'pubsub#access_model': 'open' });
    assert.equal((await c.iq(owner('set', x('configure', { node }, submit)))).attrs.type, 'result');
    const again = await c.iq(publish(node, axolotlBundle(), 'current', OPEN));
    assert.equal(again.attrs.type, 'result', String(again));
    const stranger = await loginAs(ts, 'stranger4');
    assert.equal(itemsOf(await stranger.iq(items('conversations@localhost', node))).length, 1);
    // An option the server does not support cannot be met either.
    const unknown = await c.iq(publish(node, axolotlBundle(), 'current', { 'pubsub#frobnicate': '1' }));
    assert.deepEqual(errorOf(unknown), ['conflict', 'precondition-not-met']);
    await c.close();
    await stranger.close();
  });

  test('P11 P16 a whitelist bookmark node (XEP-0402) is unreadable by a contact and by a stranger, and notifies only the owner', async () => {
    await contacts(ts, 'booker', 'friend');
    const friend = await online(ts, 'friend', ['urn:xmpp:bookmarks:1']);
    const booker = await online(ts, 'booker', ['urn:xmpp:bookmarks:1'], 'laptop');
    const conference = x('conference', { xmlns: 'urn:xmpp:bookmarks:1', name: "The Play's the Thing", autojoin: 'true' }, x('nick', {}, 'JC'));
    const options = { 'pubsub#persist_items': 'true', 'pubsub#max_items': 'max', 'pubsub#send_last_published_item': 'never', 'pubsub#access_model': 'whitelist' };
    const r = await booker.iq(publish('urn:xmpp:bookmarks:1', conference, 'theplay@conference.shakespeare.lit', options));
    assert.equal(r.attrs.type, 'result', String(r));
    await booker.expect(isEvent('urn:xmpp:bookmarks:1'));
    assert.equal(await arrived(friend, isEvent('urn:xmpp:bookmarks:1')), false);
    for (const reader of [friend, await loginAs(ts, 'stranger5')]) {
      const denied = await reader.iq(items('booker@localhost', 'urn:xmpp:bookmarks:1'));
      assert.deepEqual(errorOf(denied), ['item-not-found', undefined]);
      assert.equal(denied.toString().includes('JC'), false);
    }
    const own = await booker.iq(items(undefined, 'urn:xmpp:bookmarks:1'));
    assert.deepEqual(itemsOf(own), [['theplay@conference.shakespeare.lit', conference.toString()]]);
    // A second bookmark keeps the first (max_items max).
    await booker.iq(publish('urn:xmpp:bookmarks:1', x('conference', { xmlns: 'urn:xmpp:bookmarks:1', autojoin: 'false' }), 'orchard@conference.shakespeare.lit', options));
    assert.equal(itemsOf(await booker.iq(items(undefined, 'urn:xmpp:bookmarks:1'))).length, 2);
    await friend.close();
    await booker.close();
  });

  test('P11 XEP-0048 bookmarks in a private PEP node (XEP-0223): the owner only', async () => {
    await contacts(ts, 'oldclient', 'buddy');
    const c = await loginAs(ts, 'oldclient');
    const storage = x('storage', { xmlns: 'storage:bookmarks' }, x('conference', { name: 'Council', autojoin: 'true', jid: 'council@conference.localhost' }, x('nick', {}, 'Puck')));
    const r = await c.iq(publish('storage:bookmarks', storage, 'current', { 'pubsub#persist_items': 'true', 'pubsub#access_model': 'whitelist' }));
    assert.equal(r.attrs.type, 'result');
    assert.deepEqual(itemsOf(await c.iq(items(undefined, 'storage:bookmarks'))), [['current', storage.toString()]]);
    const buddy = await loginAs(ts, 'buddy');
    assert.deepEqual(errorOf(await buddy.iq(items('oldclient@localhost', 'storage:bookmarks'))), ['item-not-found', undefined]);
    await c.close();
    await buddy.close();
  });

  test('P17 a forbidden read, a node that does not exist and an account that does not exist get the same answer', async () => {
    const shy = await loginAs(ts, 'shy');
    await shy.iq(publish('http://jabber.org/protocol/tune', x('tune', { xmlns: 'http://jabber.org/protocol/tune' }, x('artist', {}, 'Yes'))));
    const probe = await loginAs(ts, 'prober');
    const shape = async (to: string, node: string) => {
      const reply = await probe.iq(items(to, node));
      const copy = reply.clone();
      delete copy.attrs.id;
      delete copy.attrs.from;
      return copy.toString();
    };
    const forbidden = await shape('shy@localhost', 'http://jabber.org/protocol/tune');
    assert.ok(forbidden.includes('item-not-found'));
    assert.equal(await shape('shy@localhost', 'urn:example:none'), forbidden);
    assert.equal(await shape('nobody-here@localhost', 'http://jabber.org/protocol/tune'), forbidden);
    // Changing another account's nodes: forbidden, whether or not the account exists.
    for (const to of ['shy@localhost', 'nobody-here@localhost']) {
      assert.deepEqual(errorOf(await probe.iq(publish('urn:example:x', x('x', { xmlns: 'urn:example:x' }), undefined, undefined, to))), ['forbidden', undefined]);
    }
    await shy.close();
    await probe.close();
  });

  test('access models presence and roster: a "from" contact reads, the roster model needs an allowed group', async () => {
    await rosterItem(ts, 'grouper', 'work-mate', 'from', ['Work']);
    await rosterItem(ts, 'grouper', 'pal', 'both', ['Friends']);
    const g = await loginAs(ts, 'grouper');
    const mood = x('mood', { xmlns: 'http://jabber.org/protocol/mood' }, x('happy'));
    await g.iq(publish('http://jabber.org/protocol/mood', mood));
    const activity = x('activity', { xmlns: 'http://jabber.org/protocol/activity' }, x('relaxing', {}, x('partying')));
    const r = await g.iq(publish('http://jabber.org/protocol/activity', activity, undefined, { 'pubsub#access_model': 'roster', 'pubsub#roster_groups_allowed': 'Work' }));
    assert.equal(r.attrs.type, 'result', String(r));
    const mate = await loginAs(ts, 'work-mate');
    const pal = await loginAs(ts, 'pal');
    assert.equal(itemsOf(await mate.iq(items('grouper@localhost', 'http://jabber.org/protocol/mood')))[0]![1], mood.toString());
    assert.equal(itemsOf(await pal.iq(items('grouper@localhost', 'http://jabber.org/protocol/mood'))).length, 1);
    assert.equal(itemsOf(await mate.iq(items('grouper@localhost', 'http://jabber.org/protocol/activity')))[0]![1], activity.toString());
    assert.deepEqual(errorOf(await pal.iq(items('grouper@localhost', 'http://jabber.org/protocol/activity'))), ['item-not-found', undefined]);
    for (const c of [g, mate, pal]) await c.close();
  });

  test('OpenPGP for XMPP (XEP-0373): the public key list and a key, open to anyone', async () => {
    const c = await loginAs(ts, 'pgp');
    const fpr = '1357B01865B2503C18453D208CAC2A9678548E35';
    const list = x('public-keys-list', { xmlns: 'urn:xmpp:openpgp:0' }, x('pubkey-metadata', { 'v4-fingerprint': fpr, date: '2018-03-01T15:26:12Z' }));
    const key = x('pubkey', { xmlns: 'urn:xmpp:openpgp:0', date: '2018-03-01T15:26:12Z' }, x('data', {}, 'BASE64_OPENPGP_PUBLIC_KEY'));
    assert.equal((await c.iq(publish(`urn:xmpp:openpgp:0:public-keys:${fpr}`, key, '2018-03-01T15:26:12Z', OPEN))).attrs.type, 'result');
    assert.equal((await c.iq(publish('urn:xmpp:openpgp:0:public-keys', list, undefined, OPEN))).attrs.type, 'result');
    const other = await loginAs(ts, 'pgp-reader');
    assert.deepEqual(itemsOf(await other.iq(items('pgp@localhost', `urn:xmpp:openpgp:0:public-keys:${fpr}`, { max: 1 }))), [['2018-03-01T15:26:12Z', key.toString()]]);
    const fetched = itemsOf(await other.iq(items('pgp@localhost', 'urn:xmpp:openpgp:0:public-keys')));
    assert.equal(fetched.length, 1);
    assert.match(fetched[0]![0], /^[0-9a-f]{24}$/, 'an item id made by the server');
    assert.equal(fetched[0]![1], list.toString());
    await c.close();
    await other.close();
  });

  test('avatars (XEP-0084): data and metadata, the contact gets the metadata event, the vCard PHOTO follows (XEP-0398)', async () => {
    await contacts(ts, 'painter', 'viewer');
    const viewer = await online(ts, 'viewer', ['urn:xmpp:avatar:metadata']);
    const p = await loginAs(ts, 'painter');
    const image = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
    const id = createHash('sha1').update(image).digest('hex');
    const data = image.toString('base64');
    assert.equal((await p.iq(publish('urn:xmpp:avatar:data', x('data', { xmlns: 'urn:xmpp:avatar:data' }, data), id))).attrs.type, 'result');
    const metadata = x('metadata', { xmlns: 'urn:xmpp:avatar:metadata' }, x('info', { bytes: String(image.length), id, height: '64', width: '64', type: 'image/png' }));
    assert.equal((await p.iq(publish('urn:xmpp:avatar:metadata', metadata, id))).attrs.type, 'result');
    const event = await viewer.expect(isEvent('urn:xmpp:avatar:metadata'));
    assert.equal(event.getChild('event', EVENT)!.getChild('items')!.getChild('item')!.attrs.id, id);
    assert.equal(itemsOf(await viewer.iq(items('painter@localhost', 'urn:xmpp:avatar:data', { ids: [id] })))[0]![0], id);
    const vcard = await viewer.iq(x('iq', { type: 'get', to: 'painter@localhost' }, x('vCard', { xmlns: NS.vcard })));
    const photo = vcard.getChild('vCard', NS.vcard)!.getChild('PHOTO')!;
    assert.equal(photo.getChildText('TYPE'), 'image/png');
    assert.equal(photo.getChildText('BINVAL'), data);
    // Data that is not the image its id names (XEP-0398 3.1): the vCard keeps the last good one.
    const wrong = 'ab'.repeat(20);
    await p.iq(publish('urn:xmpp:avatar:data', x('data', { xmlns: 'urn:xmpp:avatar:data' }, Buffer.from('not that image').toString('base64')), wrong));
    await p.iq(publish('urn:xmpp:avatar:metadata', x('metadata', { xmlns: 'urn:xmpp:avatar:metadata' }, x('info', { bytes: '14', id: wrong, type: 'image/png' })), wrong));
    const kept = await p.iq(x('iq', { type: 'get' }, x('vCard', { xmlns: NS.vcard })));
    assert.equal(kept.getChild('vCard', NS.vcard)!.getChild('PHOTO')!.getChildText('BINVAL'), data);
    // Disabling the avatar (empty metadata) removes the PHOTO.
    await p.iq(publish('urn:xmpp:avatar:metadata', x('metadata', { xmlns: 'urn:xmpp:avatar:metadata' }), 'current'));
    const after = await p.iq(x('iq', { type: 'get' }, x('vCard', { xmlns: NS.vcard })));
    assert.equal(after.getChild('vCard', NS.vcard)!.getChild('PHOTO'), undefined);
    await viewer.close();
    await p.close();
  });

  test('XEP-0398 the other way: a vCard PHOTO becomes the XEP-0084 avatar, and the contact is told', async () => {
    await contacts(ts, 'vcarder', 'onlooker');
    const onlooker = await online(ts, 'onlooker', ['urn:xmpp:avatar:metadata']);
    const v = await loginAs(ts, 'vcarder');
    const image = Buffer.from('ffd8ffe000104a46494600010100000100010000', 'hex');
    const id = createHash('sha1').update(image).digest('hex');
    const set = await v.iq(x('iq', { type: 'set' }, x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'V. Carder'), x('PHOTO', {}, x('TYPE', {}, 'image/jpeg'), x('BINVAL', {}, image.toString('base64'))))));
    assert.equal(set.attrs.type, 'result');
    const event = await onlooker.expect(isEvent('urn:xmpp:avatar:metadata'));
    const info = event.getChild('event', EVENT)!.getChild('items')!.getChild('item')!.getChild('metadata', 'urn:xmpp:avatar:metadata')!.getChild('info')!;
    assert.deepEqual([info.attrs.id, info.attrs.type, info.attrs.bytes], [id, 'image/jpeg', String(image.length)]);
    const data = itemsOf(await onlooker.iq(items('vcarder@localhost', 'urn:xmpp:avatar:data', { ids: [id] })));
    assert.equal(parseXmlText(data[0]![1])!.text(), image.toString('base64'));
    // The same vCard again changes nothing; disco says the server converts.
    await v.iq(x('iq', { type: 'set' }, x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'V. C.'), x('PHOTO', {}, x('TYPE', {}, 'image/jpeg'), x('BINVAL', {}, image.toString('base64'))))));
    assert.equal(await arrived(onlooker, isEvent('urn:xmpp:avatar:metadata')), false);
    const disco = await v.iq(x('iq', { type: 'get', to: 'vcarder@localhost' }, x('query', { xmlns: NS.discoInfo })));
    assert.ok(disco.getChild('query', NS.discoInfo)!.getChildren('feature').some((f) => f.attrs.var === 'urn:xmpp:pep-vcard-conversion:0'));
    await onlooker.close();
    await v.close();
  });

  test('nickname (XEP-0172), tune, mood and activity pass as generic nodes with the default configuration', async () => {
    await contacts(ts, 'nicky', 'reader');
    const reader = await online(ts, 'reader', ['http://jabber.org/protocol/nick', 'http://jabber.org/protocol/tune']);
    const n = await loginAs(ts, 'nicky');
    const nick = x('nick', { xmlns: 'http://jabber.org/protocol/nick' }, 'Nicky ☃');
    await n.iq(publish('http://jabber.org/protocol/nick', nick));
    assert.equal((await reader.expect(isEvent('http://jabber.org/protocol/nick'))).getChild('event', EVENT)!.getChild('items')!.getChild('item')!.firstElement()!.toString(), nick.toString());
    const tune = x('tune', { xmlns: 'http://jabber.org/protocol/tune' }, x('artist', {}, 'Yes'), x('length', {}, '686'), x('title', {}, 'Heart of the Sunrise'));
    await n.iq(publish('http://jabber.org/protocol/tune', tune));
    await reader.expect(isEvent('http://jabber.org/protocol/tune'));
    // Default max_items is 1: a new tune replaces the old one.
    await n.iq(publish('http://jabber.org/protocol/tune', x('tune', { xmlns: 'http://jabber.org/protocol/tune' })));
    const kept = itemsOf(await reader.iq(items('nicky@localhost', 'http://jabber.org/protocol/tune')));
    assert.deepEqual(kept.map(([, p]) => p), [x('tune', { xmlns: 'http://jabber.org/protocol/tune' }).toString()]);
    await reader.close();
    await n.close();
  });

  test('retract with a notification; items by id and the newest max_items', async () => {
    await contacts(ts, 'retractor', 'witness');
    const witness = await online(ts, 'witness', ['urn:example:notes']);
    const r = await loginAs(ts, 'retractor');
    const note = (t: string) => x('note', { xmlns: 'urn:example:notes' }, t);
    for (const id of ['a', 'b', 'c']) await r.iq(publish('urn:example:notes', note(id), id, { 'pubsub#max_items': '10' }));
    for (let i = 0; i < 3; i++) await witness.expect(isEvent('urn:example:notes'));
    assert.deepEqual(itemsOf(await witness.iq(items('retractor@localhost', 'urn:example:notes', { max: 2 }))).map(([id]) => id), ['b', 'c']);
    assert.deepEqual(itemsOf(await witness.iq(items('retractor@localhost', 'urn:example:notes', { ids: ['a', 'zz'] }))).map(([id]) => id), ['a']);
    // Republishing an id makes it the newest.
    await r.iq(publish('urn:example:notes', note('a2'), 'a'));
    await witness.expect(isEvent('urn:example:notes'));
    assert.deepEqual(itemsOf(await witness.iq(items('retractor@localhost', 'urn:example:notes', { max: 1 }))), [['a', note('a2').toString()]]);
    const retract = x('iq', { type: 'set' }, x('pubsub', { xmlns: PUBSUB }, x('retract', { node: 'urn:example:notes', notify: 'true' }, x('item', { id: 'b' }))));
    assert.equal((await r.iq(retract)).attrs.type, 'result');
    const ev = await witness.expect(isEvent('urn:example:notes'));
    assert.equal(ev.getChild('event', EVENT)!.getChild('items')!.getChild('retract')!.attrs.id, 'b');
    assert.deepEqual(itemsOf(await witness.iq(items('retractor@localhost', 'urn:example:notes'))).map(([id]) => id), ['c', 'a']);
    assert.deepEqual(errorOf(await r.iq(retract)), ['item-not-found', undefined]);
    await witness.close();
    await r.close();
  });

  test('create with configure, the default configuration, configure, purge and delete with their notifications', async () => {
    await contacts(ts, 'creator', 'observer');
    const observer = await online(ts, 'observer', ['urn:example:made']);
    const c = await loginAs(ts, 'creator');
    const def = await c.iq(owner('get', x('default')));
    const defaults = new Map(def.getChild('pubsub', OWNER)!.getChild('default')!.getChild('x', NS.dataForms)!.getChildren('field').map((f) => [f.attrs.var, f.getChildText('value')]));
    assert.equal(defaults.get('pubsub#access_model'), 'presence');
    assert.equal(defaults.get('pubsub#send_last_published_item'), 'on_sub_and_presence');
    const create = x('iq', { type: 'set' }, x('pubsub', { xmlns: PUBSUB }, x('create', { node: 'urn:example:made' }), x('configure', {}, form(`${PUBSUB}#node_config`, { 'pubsub#max_items': '5' }))));
    assert.equal((await c.iq(create)).attrs.type, 'result');
    assert.deepEqual(errorOf(await c.iq(create)), ['conflict', undefined]);
    const conf = await c.iq(owner('get', x('configure', { node: 'urn:example:made' })));
    const max = conf.getChild('pubsub', OWNER)!.getChild('configure')!.getChild('x', NS.dataForms)!.getChildren('field').find((f) => f.attrs.var === 'pubsub#max_items');
    assert.equal(max!.getChildText('value'), '5');
    for (const id of ['1', '2']) await c.iq(publish('urn:example:made', x('thing', { xmlns: 'urn:example:made' }), id));
    for (let i = 0; i < 2; i++) await observer.expect(isEvent('urn:example:made'));
    assert.equal((await c.iq(owner('set', x('purge', { node: 'urn:example:made' })))).attrs.type, 'result');
    await observer.expect(isEvent('urn:example:made', 'purge'));
    assert.deepEqual(itemsOf(await c.iq(items(undefined, 'urn:example:made'))), []);
    assert.equal((await c.iq(owner('set', x('delete', { node: 'urn:example:made' })))).attrs.type, 'result');
    await observer.expect(isEvent('urn:example:made', 'delete'));
    assert.deepEqual(errorOf(await c.iq(items(undefined, 'urn:example:made'))), ['item-not-found', undefined]);
    assert.deepEqual(errorOf(await c.iq(owner('set', x('delete', { node: 'urn:example:made' })))), ['item-not-found', undefined]);
    await observer.close();
    await c.close();
  });

  test('the last published item arrives with its delay when a resource with +notify comes online (the owner offline), only where the access model allows', async () => {
    await contacts(ts, 'lastpub', 'arriver');
    const l = await loginAs(ts, 'lastpub');
    await l.iq(publish('http://jabber.org/protocol/nick', x('nick', { xmlns: 'http://jabber.org/protocol/nick' }, 'Last')));
    await l.iq(publish('urn:xmpp:bookmarks:1', x('conference', { xmlns: 'urn:xmpp:bookmarks:1' }), 'room@conference.localhost', { 'pubsub#access_model': 'whitelist' }));
    await l.close(); // the owner is offline: a local contact still gets the last item
    const arriver = await online(ts, 'arriver', ['http://jabber.org/protocol/nick', 'urn:xmpp:bookmarks:1']);
    const ev = await arriver.expect(isEvent('http://jabber.org/protocol/nick'));
    assert.equal(ev.attrs.from, 'lastpub@localhost');
    assert.ok(ev.getChild('delay', NS.delay)?.attrs.stamp);
    assert.equal(await arrived(arriver, isEvent('urn:xmpp:bookmarks:1')), false, 'a private node is never sent to a contact');
    // The owner's own new resource gets both.
    const second = await online(ts, 'lastpub', ['http://jabber.org/protocol/nick', 'urn:xmpp:bookmarks:1'], 'tablet');
    await second.expect(isEvent('http://jabber.org/protocol/nick'));
    await second.expect(isEvent('urn:xmpp:bookmarks:1'));
    // A stranger's client with +notify learns nothing.
    const stranger = await online(ts, 'stranger6', ['http://jabber.org/protocol/nick']);
    assert.equal(await arrived(stranger, isEvent('http://jabber.org/protocol/nick')), false);
    for (const c of [arriver, second, stranger]) await c.close();
  });

  test('subscription options and changing affiliations are refused with feature-not-implemented and the unsupported feature (explicit subscriptions: pep-subscriptions.test.ts)', async () => {
    const c = await loginAs(ts, 'subscriber');
    const options = await c.iq(x('iq', { type: 'set', to: 'notifier@localhost' }, x('pubsub', { xmlns: PUBSUB }, x('options', { node: 'urn:xmpp:avatar:metadata', jid: c.jid }))));
    assert.deepEqual(errorOf(options), ['feature-not-implemented', 'unsupported']);
    assert.equal(options.getChild('error')!.getChild('unsupported')!.attrs.feature, 'subscription-options');
    const aff = await c.iq(owner('set', x('affiliations', { node: 'x' }, x('affiliation', { jid: 'notifier@localhost', affiliation: 'member' }))));
    assert.deepEqual(errorOf(aff), ['feature-not-implemented', 'unsupported']);
    assert.equal(aff.getChild('error')!.getChild('unsupported')!.attrs.feature, 'modify-affiliations');
    await c.close();
  });

  test('P17 disco#items: the owner sees every node, a contact the nodes it may read, a stranger nothing', async () => {
    await contacts(ts, 'lister', 'peer');
    const l = await loginAs(ts, 'lister');
    await l.iq(publish('http://jabber.org/protocol/nick', x('nick', { xmlns: 'http://jabber.org/protocol/nick' }, 'L')));
    await l.iq(publish('storage:bookmarks', x('storage', { xmlns: 'storage:bookmarks' }), 'current', { 'pubsub#access_model': 'whitelist' }));
    const list = async (client: typeof l) => {
      const reply = await client.iq(x('iq', { type: 'get', to: 'lister@localhost' }, x('query', { xmlns: NS.discoItems })));
      return reply.attrs.type === 'result' ? reply.getChild('query', NS.discoItems)!.getChildren('item').map((i) => i.attrs.node) : errorOf(reply)[0];
    };
    assert.deepEqual(await list(l), ['http://jabber.org/protocol/nick', 'storage:bookmarks']);
    const peer = await loginAs(ts, 'peer');
    assert.deepEqual(await list(peer), ['http://jabber.org/protocol/nick']);
    const stranger = await loginAs(ts, 'stranger7');
    assert.equal(await list(stranger), 'service-unavailable');
    for (const c of [l, peer, stranger]) await c.close();
  });
});

describe('PEP data and the account (P23)', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(async () => {
    await ts.stop();
  });

  test('P23 <remove/> (XEP-0077) erases the PEP nodes and items of the account, and nobody can read them after', async () => {
    const gone = await ts.user('pep-gone', 'gone-pw');
    await gone.iq(publish(`${OMEMO2}:devices`, x('devices', { xmlns: OMEMO2 }, x('device', { id: '1' })), 'current', OPEN));
    await gone.iq(publish('urn:xmpp:bookmarks:1', x('conference', { xmlns: 'urn:xmpp:bookmarks:1' }), 'room@muc.localhost', { 'pubsub#access_model': 'whitelist' }));
    const { storage } = ts.server.ctx;
    const account = (await storage.accounts.get('pep-gone', 'localhost'))!;
    const repo = storage.repository(pepStorage);
    const nodes = await repo.nodes(account.id);
    assert.equal(nodes.length, 2);
    const reply = await gone.iq(x('iq', { type: 'set' }, x('query', { xmlns: 'jabber:iq:register' }, x('remove'))));
    assert.equal(reply.attrs.type, 'result');
    await gone.waitClosed();
    assert.deepEqual(await repo.nodes(account.id), []);
    for (const n of nodes) assert.deepEqual(await repo.items(n.id), [], 'no item outlives its node');
    const reader = await loginAs(ts, 'pep-reader');
    assert.deepEqual(errorOf(await reader.iq(items('pep-gone@localhost', `${OMEMO2}:devices`))), ['item-not-found', undefined]);
    await reader.close();
  });
});

describe('PEP limits: a full quota gets a stanza error, never silent loss', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ config: { pep: { maxItemsPerNode: 3, maxNodesPerUser: 2, maxItemBytes: '1KiB', maxBytesPerUser: '3KiB' } } });
  });
  after(async () => {
    await ts.stop();
  });

  test('max_items above pep.maxItemsPerNode is refused; max means the limit and the oldest item makes room', async () => {
    const c = await loginAs(ts, 'counter');
    const over = await c.iq(publish('urn:example:n', x('n', { xmlns: 'urn:example:n' }), '0', { 'pubsub#max_items': '4' }));
    assert.equal(errorOf(over)[0], 'not-acceptable');
    for (const id of ['1', '2', '3', '4']) assert.equal((await c.iq(publish('urn:example:n', x('n', { xmlns: 'urn:example:n' }, id), id, { 'pubsub#max_items': 'max' }))).attrs.type, 'result');
    assert.deepEqual(itemsOf(await c.iq(items(undefined, 'urn:example:n'))).map(([id]) => id), ['2', '3', '4']);
    await c.close();
  });

  test('an item over pep.maxItemBytes: not-acceptable with payload-too-big, nothing stored', async () => {
    const c = await loginAs(ts, 'big');
    const r = await c.iq(publish('urn:example:big', x('b', { xmlns: 'urn:example:big' }, 'x'.repeat(1100))));
    assert.deepEqual(errorOf(r), ['not-acceptable', 'payload-too-big']);
    assert.deepEqual(errorOf(await c.iq(items(undefined, 'urn:example:big'))), ['item-not-found', undefined]);
    await c.close();
  });

  test('one node more than pep.maxNodesPerUser: not-allowed with max-nodes-exceeded', async () => {
    const c = await loginAs(ts, 'noder');
    for (const n of ['urn:example:1', 'urn:example:2']) assert.equal((await c.iq(publish(n, x('p', { xmlns: n })))).attrs.type, 'result');
    const r = await c.iq(publish('urn:example:3', x('p', { xmlns: 'urn:example:3' })));
    assert.deepEqual(errorOf(r), ['not-allowed', 'max-nodes-exceeded']);
    const create = await c.iq(x('iq', { type: 'set' }, x('pubsub', { xmlns: PUBSUB }, x('create', { node: 'urn:example:4' }))));
    assert.deepEqual(errorOf(create), ['not-allowed', 'max-nodes-exceeded']);
    await c.close();
  });

  test('over pep.maxBytesPerUser: resource-constraint, and what was stored stays', async () => {
    const c = await loginAs(ts, 'filler');
    const payload = (n: string) => x('p', { xmlns: 'urn:example:fill' }, n.repeat(950));
    assert.equal((await c.iq(publish('urn:example:fill', payload('a'), 'a', { 'pubsub#max_items': '3' }))).attrs.type, 'result');
    assert.equal((await c.iq(publish('urn:example:fill', payload('b'), 'b'))).attrs.type, 'result');
    const full = await c.iq(publish('urn:example:fill', payload('c'), 'c'));
    assert.equal(errorOf(full)[0], 'resource-constraint');
    assert.match(full.getChild('error')!.getChildText('text', NS.stanzas) ?? '', /PEP storage is full/);
    assert.deepEqual(itemsOf(await c.iq(items(undefined, 'urn:example:fill'))).map(([id]) => id), ['a', 'b']);
    // Replacing an item counts only the difference.
    assert.equal((await c.iq(publish('urn:example:fill', payload('z'), 'b'))).attrs.type, 'result');
    const stored = itemsOf(await c.iq(items(undefined, 'urn:example:fill')));
    assert.equal(parseXmlText(stored[1]![1])!.text()[0], 'z');
    await c.close();
  });

  test('a configuration that would go over pep.maxBytesPerUser is refused and the old one stays', async () => {
    const c = await loginAs(ts, 'configurer');
    assert.equal((await c.iq(publish('urn:example:conf', x('p', { xmlns: 'urn:example:conf' })))).attrs.type, 'result');
    const groups = Array.from({ length: 40 }, (_, i) => `group ${i} `.padEnd(100, '.'));
    const r = await c.iq(owner('set', x('configure', { node: 'urn:example:conf' }, form(`${PUBSUB}#node_config`, { 'pubsub#access_model': 'roster', 'pubsub#roster_groups_allowed': groups }))));
    assert.equal(errorOf(r)[0], 'resource-constraint');
    const config = await c.iq(owner('get', x('configure', { node: 'urn:example:conf' })));
    const access = config.getChild('pubsub', OWNER)!.getChild('configure')!.getChild('x', NS.dataForms)!.getChildren('field').find((f) => f.attrs.var === 'pubsub#access_model');
    assert.equal(access!.getChildText('value'), 'presence');
    await c.close();
  });
});
