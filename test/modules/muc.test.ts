/**
 * XEP-0045 basics against a real server with raw clients: creating a room (201, locked until
 * configured, instant room), entering (presence order, 110, occupant ids), group chat with stanza
 * ids, history on entering, subject, private messages, nick conflicts and changes, leaving, a
 * temporary room going away when empty, disco of the service and a room.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, loginAs } from '../helpers/server.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { MUC, SERVICE, codes, configure, createInstant, enter, errorOf, item, selfPresence } from './muc-helpers.js';

const SID = 'urn:xmpp:sid:0';
const OID = 'urn:xmpp:occupant-id:0';

test('XEP-0045 a room is created locked (201), configured as an instant room, entered by others; messages carry stanza and occupant ids', async () => {
  const ts = await startTestServer({ logLevel: 'warn' });
  try {
    const alice = await loginAs(ts, 'alice');
    const bob = await loginAs(ts, 'bob');
    const room = `tea@${SERVICE}`;

    // Locked: before the owner configures it, others find no room.
    const created = await enter(alice, room, 'Alice');
    assert.deepEqual(codes(created).sort(), [110, 201]);
    assert.equal(item(created)?.attrs.affiliation, 'owner');
    assert.equal(item(created)?.attrs.role, 'moderator');
    const locked = await enter(bob, room, 'Bob');
    assert.equal(errorOf(locked), 'item-not-found');

    await configure(alice, room, {});
    await alice.expect((el) => el.name === 'message' && el.getChild('subject') !== undefined);

    // Bob enters: Alice's presence first, his self-presence (110) last; Alice sees him arrive.
    bob.send(x('presence', { to: `${room}/Bob` }, x('x', { xmlns: MUC })));
    const first = await bob.expect((el) => el.name === 'presence' && el.attrs.from?.startsWith(room) === true);
    assert.equal(first.attrs.from, `${room}/Alice`);
    assert.equal(item(first)?.attrs.jid, undefined, 'semi-anonymous: a participant sees no real JID');
    assert.ok(first.getChild('occupant-id', OID)?.attrs.id);
    const bobSelf = await bob.expect(selfPresence(room));
    assert.equal(item(bobSelf)?.attrs.role, 'participant');
    const seen = await alice.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Bob`);
    assert.match(item(seen)?.attrs.jid ?? '', /^bob@localhost\//, 'the moderator sees the real JID');
    const subject = await bob.expect((el) => el.name === 'message' && el.getChild('subject') !== undefined);
    assert.equal(subject.attrs.from, room);
    assert.equal(subject.getChildText('subject'), '');

    // Group chat: reflected to the sender with its id, stamped with stanza-id and occupant-id.
    bob.send(x('message', { type: 'groupchat', to: room, id: 'm1' }, x('body', {}, 'hello room'), x('stanza-id', { xmlns: SID, id: 'forged', by: room })));
    const atAlice = await alice.expect((el) => el.name === 'message' && el.getChildText('body') === 'hello room');
    const atBob = await bob.expect((el) => el.name === 'message' && el.getChildText('body') === 'hello room');
    assert.equal(atAlice.attrs.from, `${room}/Bob`);
    assert.equal(atBob.attrs.id, 'm1', 'muc#stable_id: the id is kept');
    const sids = atAlice.getChildren('stanza-id', SID);
    assert.equal(sids.length, 1);
    assert.notEqual(sids[0]!.attrs.id, 'forged');
    assert.equal(sids[0]!.attrs.by, room);
    assert.equal(atAlice.getChild('occupant-id', OID)?.attrs.id, seen.getChild('occupant-id', OID)?.attrs.id);

    // Subject: moderators may set it, participants may not (changesubject off).
    bob.send(x('message', { type: 'groupchat', to: room, id: 's1' }, x('subject', {}, 'nope')));
    assert.equal(errorOf(await bob.expect((el) => el.name === 'message' && el.attrs.type === 'error')), 'forbidden');
    alice.send(x('message', { type: 'groupchat', to: room }, x('subject', {}, 'Tea time')));
    const subj = await bob.expect((el) => el.name === 'message' && el.getChildText('subject') === 'Tea time');
    assert.equal(subj.attrs.from, `${room}/Alice`);

    // A third user gets the history (with delay) then the subject; maxstanzas cuts it.
    const carol = await loginAs(ts, 'carol');
    alice.send(x('message', { type: 'groupchat', to: room }, x('body', {}, 'second')));
    await bob.expect((el) => el.name === 'message' && el.getChildText('body') === 'second');
    await enter(carol, room, 'Carol', { history: { maxstanzas: '1' } });
    const hist = await carol.expect((el) => el.name === 'message' && el.getChild('body') !== undefined);
    assert.equal(hist.getChildText('body'), 'second');
    assert.equal(hist.getChild('delay', NS.delay)?.attrs.from, room);
    const carolSubject = await carol.expect((el) => el.name === 'message' && el.getChild('subject') !== undefined);
    assert.equal(carolSubject.getChildText('subject'), 'Tea time');
    assert.ok(await carol.expectNothing((el) => el.name === 'message' && el.getChildText('body') === 'hello room'));

    // Nick conflict (409 conflict), nick change (303 then the new presence).
    const dave = await loginAs(ts, 'dave');
    const clash = await enter(dave, room, 'Bob');
    assert.equal(errorOf(clash), 'conflict');
    bob.send(x('presence', { to: `${room}/Robert` }));
    const gone = await alice.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Bob` && el.attrs.type === 'unavailable');
    assert.ok(codes(gone).includes(303));
    assert.equal(item(gone)?.attrs.nick, 'Robert');
    await alice.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Robert` && el.attrs.type === undefined);
    const bobGone = await bob.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Bob`);
    assert.deepEqual(codes(bobGone).sort(), [110, 303]);

    // Private message between occupants, from the sender's occupant JID.
    carol.send(x('message', { type: 'chat', to: `${room}/Robert` }, x('body', {}, 'psst')));
    const pm = await bob.expect((el) => el.name === 'message' && el.getChildText('body') === 'psst');
    assert.equal(pm.attrs.from, `${room}/Carol`);
    assert.ok(pm.getChild('x', 'http://jabber.org/protocol/muc#user'));
    // Had Bob's session gone meanwhile, offline storage would refuse it rather than keep it.
    assert.ok(pm.getChild('no-store', 'urn:xmpp:hints'));
    assert.ok(await alice.expectNothing((el) => el.name === 'message' && el.getChildText('body') === 'psst'));
    carol.send(x('message', { type: 'chat', to: `${room}/Nobody` }, x('body', {}, 'hm')));
    assert.equal(errorOf(await carol.expect((el) => el.name === 'message' && el.attrs.type === 'error')), 'item-not-found');

    // A non-occupant cannot post.
    dave.send(x('message', { type: 'groupchat', to: room }, x('body', {}, 'intruder')));
    assert.equal(errorOf(await dave.expect((el) => el.name === 'message' && el.attrs.type === 'error')), 'not-acceptable');

    // Leaving: everyone sees the unavailable presence; the leaver gets 110.
    carol.send(x('presence', { to: `${room}/Carol`, type: 'unavailable' }));
    const left = await carol.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `${room}/Carol`);
    assert.ok(codes(left).includes(110));
    await alice.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Carol` && el.attrs.type === 'unavailable');
  } finally {
    await ts.stop();
  }
});

test('XEP-0045 disco: the service is in the host\'s items, lists public rooms only; a room shows its features and muc#roominfo; a temporary room goes when empty', async () => {
  const ts = await startTestServer({ logLevel: 'warn' });
  try {
    const alice = await loginAs(ts, 'alice');
    const items = async (to: string) =>
      (await alice.iq(x('iq', { type: 'get', to }, x('query', { xmlns: NS.discoItems })))).getChild('query', NS.discoItems)!.getChildren('item').map((i) => i.attrs.jid);
    const info = async (to: string) => alice.iq(x('iq', { type: 'get', to }, x('query', { xmlns: NS.discoInfo })));
    assert.ok((await items('localhost')).includes(SERVICE));
    const svc = (await info(SERVICE)).getChild('query', NS.discoInfo)!;
    assert.equal(svc.getChild('identity')?.attrs.category, 'conference');
    assert.ok(svc.getChildren('feature').some((f) => f.attrs.var === MUC));
    // XEP-0307: a name for a new private room.
    const unique = await alice.iq(x('iq', { type: 'get', to: SERVICE }, x('unique', { xmlns: 'http://jabber.org/protocol/muc#unique' })));
    assert.match(unique.getChildText('unique', 'http://jabber.org/protocol/muc#unique') ?? '', /^[0-9a-f]{20}$/);

    await createInstant(alice, `open@${SERVICE}`, 'A', { 'muc#roomconfig_roomname': 'Open room' });
    await createInstant(alice, `secret@${SERVICE}`, 'A', { 'muc#roomconfig_publicroom': '0', 'muc#roomconfig_membersonly': '1', 'muc#roomconfig_whois': 'anyone' });
    const listed = await items(SERVICE);
    assert.ok(listed.includes(`open@${SERVICE}`));
    assert.ok(!listed.includes(`secret@${SERVICE}`), 'hidden rooms are not listed');

    const q = (await info(`secret@${SERVICE}`)).getChild('query', NS.discoInfo)!;
    const features = q.getChildren('feature').map((f) => f.attrs.var);
    for (const f of ['muc_hidden', 'muc_membersonly', 'muc_nonanonymous', 'muc_temporary', 'muc_unsecured', 'muc_unmoderated', 'urn:xmpp:sid:0', 'urn:xmpp:occupant-id:0', 'http://jabber.org/protocol/muc#stable_id']) {
      assert.ok(features.includes(f), `feature ${f}`);
    }
    const openInfo = (await info(`open@${SERVICE}`)).getChild('query', NS.discoInfo)!;
    assert.equal(openInfo.getChild('identity')?.attrs.name, 'Open room');
    const form = openInfo.getChild('x', NS.dataForms)!;
    const field = (v: string) => form.getChildren('field').find((f) => f.attrs.var === v)?.getChildText('value');
    assert.equal(field('FORM_TYPE'), 'http://jabber.org/protocol/muc#roominfo');
    assert.equal(field('muc#roominfo_occupants'), '1');
    // Occupants are never listed.
    assert.deepEqual(await items(`secret@${SERVICE}`), []);

    // Temporary: the last one out takes the room with them.
    alice.send(x('presence', { to: `open@${SERVICE}/A`, type: 'unavailable' }));
    await alice.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `open@${SERVICE}/A`);
    assert.equal(errorOf(await info(`open@${SERVICE}`)), 'item-not-found');
    assert.ok(!(await items(SERVICE)).includes(`open@${SERVICE}`));
  } finally {
    await ts.stop();
  }
});
