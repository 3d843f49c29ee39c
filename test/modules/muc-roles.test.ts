/**
 * XEP-0045 roles and affiliations: kick (307), ban (301) and the outcast list, voice in a moderated
 * room, members-only rooms (registration-required, 321 on removal), passwords, the occupant limit,
 * real JIDs in semi-anonymous and non-anonymous rooms, mediated invitations and declines, the last
 * owner, and destruction with an alternate venue.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, loginAs } from '../helpers/server.js';
import { x, type Element } from '../../shared/xml/element.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { MUC_ADMIN, MUC_OWNER, MUC_USER, SERVICE, codes, configure, createInstant, enter, errorOf, item } from './muc-helpers.js';

function admin(c: TestClient, room: string, ...items: Element[]): Promise<Element> {
  return c.iq(x('iq', { type: 'set', to: room }, x('query', { xmlns: MUC_ADMIN }, items)));
}

test('XEP-0045 kick (307), ban (301, forbidden on return), voice in a moderated room, admin lists, the last owner stays', async () => {
  const ts = await startTestServer({ logLevel: 'warn' });
  try {
    const room = `hall@${SERVICE}`;
    const alice = await loginAs(ts, 'alice');
    const bob = await loginAs(ts, 'bob');
    const carol = await loginAs(ts, 'carol');
    await createInstant(alice, room, 'Alice', { 'muc#roomconfig_moderatedroom': '1' });
    const bobSelf = await enter(bob, room, 'Bob');
    assert.equal(item(bobSelf)?.attrs.role, 'visitor', 'no voice in a moderated room without membership');
    bob.send(x('message', { type: 'groupchat', to: room }, x('body', {}, 'may I?')));
    assert.equal(errorOf(await bob.expect((el) => el.name === 'message' && el.attrs.type === 'error')), 'forbidden');

    // Voice: a moderator makes Bob a participant; everyone sees the new role.
    assert.equal((await admin(alice, room, x('item', { nick: 'Bob', role: 'participant' }, x('reason', {}, 'welcome')))).attrs.type, 'result');
    const voiced = await bob.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Bob` && item(el)?.attrs.role === 'participant');
    assert.equal(item(voiced)?.getChildText('reason'), 'welcome');
    bob.send(x('message', { type: 'groupchat', to: room }, x('body', {}, 'thanks')));
    await alice.expect((el) => el.name === 'message' && el.getChildText('body') === 'thanks');

    // A visitor asks for voice (8.6): the moderators get the form, an approval gives voice.
    await enter(carol, room, 'Carol');
    const REQ = 'http://jabber.org/protocol/muc#request';
    const field = (v: string, value: string) => x('field', { var: v }, x('value', {}, value));
    carol.send(x('message', { to: room }, x('x', { xmlns: 'jabber:x:data', type: 'submit' }, field('FORM_TYPE', REQ), field('muc#role', 'participant'))));
    const asked = await alice.expect((el) => el.name === 'message' && el.attrs.from === room && el.getChild('x', 'jabber:x:data') !== undefined);
    const form = asked.getChild('x', 'jabber:x:data')!;
    assert.equal(form.getChildren('field').find((f) => f.attrs.var === 'muc#roomnick')?.getChildText('value'), 'Carol');
    alice.send(x('message', { to: room }, x('x', { xmlns: 'jabber:x:data', type: 'submit' }, field('FORM_TYPE', REQ), field('muc#role', 'participant'), field('muc#roomnick', 'Carol'), field('muc#request_allow', 'true'))));
    await carol.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Carol` && item(el)?.attrs.role === 'participant');

    // A participant cannot kick; the moderator can (307), and the kicked one is told with 110.
    assert.equal(errorOf(await admin(bob, room, x('item', { nick: 'Carol', role: 'none' }))), 'forbidden');
    assert.equal(errorOf(await admin(alice, room, x('item', { nick: 'Alice', role: 'none' }))), 'not-allowed', 'an owner cannot be kicked');
    assert.equal((await admin(alice, room, x('item', { nick: 'Carol', role: 'none' }, x('reason', {}, 'out')))).attrs.type, 'result');
    const kicked = await carol.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `${room}/Carol`);
    assert.deepEqual(codes(kicked).sort(), [110, 307]);
    assert.equal(item(kicked)?.getChild('actor')?.attrs.nick, 'Alice');
    assert.equal(item(kicked)?.getChildText('reason'), 'out');
    const seenKick = await bob.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `${room}/Carol`);
    assert.deepEqual(codes(seenKick), [307]);

    // Ban Bob (301): removed, on the outcast list, refused with forbidden when he comes back.
    assert.equal((await admin(alice, room, x('item', { jid: 'bob@localhost', affiliation: 'outcast' }, x('reason', {}, 'spam')))).attrs.type, 'result');
    const banned = await bob.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `${room}/Bob`);
    assert.ok(codes(banned).includes(301));
    assert.equal(item(banned)?.attrs.affiliation, 'outcast');
    const outcasts = await alice.iq(x('iq', { type: 'get', to: room }, x('query', { xmlns: MUC_ADMIN }, x('item', { affiliation: 'outcast' }))));
    const listed = outcasts.getChild('query', MUC_ADMIN)!.getChildren('item');
    assert.deepEqual(listed.map((i) => i.attrs.jid), ['bob@localhost']);
    assert.equal(listed[0]!.getChildText('reason'), 'spam');
    assert.equal(errorOf(await enter(bob, room, 'Bob', { initial: false })), 'forbidden');
    // Only admins and owners see the lists.
    await enter(carol, room, 'Carol', { initial: false });
    assert.equal(errorOf(await carol.iq(x('iq', { type: 'get', to: room }, x('query', { xmlns: MUC_ADMIN }, x('item', { affiliation: 'outcast' }))))), 'forbidden');

    // The last owner cannot go.
    assert.equal(errorOf(await admin(alice, room, x('item', { jid: 'alice@localhost', affiliation: 'admin' }))), 'conflict');
    // An owner makes Carol admin: her role becomes moderator.
    assert.equal((await admin(alice, room, x('item', { jid: 'carol@localhost', affiliation: 'admin' }))).attrs.type, 'result');
    const promoted = await carol.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Carol` && item(el)?.attrs.affiliation === 'admin');
    assert.equal(item(promoted)?.attrs.role, 'moderator');
    // An admin may not touch an owner.
    assert.equal(errorOf(await admin(carol, room, x('item', { jid: 'alice@localhost', affiliation: 'member' }))), 'not-allowed');
  } finally {
    await ts.stop();
  }
});

test('XEP-0045 members-only (registration-required, 321), password (not-authorized), occupant limit (service-unavailable), real JIDs by whois', async () => {
  const ts = await startTestServer({ logLevel: 'warn' });
  try {
    const alice = await loginAs(ts, 'alice');
    const bob = await loginAs(ts, 'bob');
    const carol = await loginAs(ts, 'carol');
    const club = `club@${SERVICE}`;
    await createInstant(alice, club, 'Alice', { 'muc#roomconfig_membersonly': '1' });
    assert.equal(errorOf(await enter(bob, club, 'Bob')), 'registration-required');
    assert.equal((await admin(alice, club, x('item', { jid: 'bob@localhost', affiliation: 'member' }))).attrs.type, 'result');
    const inside = await enter(bob, club, 'Bob', { initial: false });
    assert.equal(item(inside)?.attrs.affiliation, 'member');
    // Members see the lists only where they may see real JIDs (OMEMO in private rooms), never the outcasts.
    const list = (aff: string) => bob.iq(x('iq', { type: 'get', to: club }, x('query', { xmlns: MUC_ADMIN }, x('item', { affiliation: aff }))));
    assert.equal(errorOf(await list('owner')), 'forbidden', 'semi-anonymous: no lists for participants');
    await configure(alice, club, { 'muc#roomconfig_whois': 'anyone' });
    const owners = await list('owner');
    assert.deepEqual(owners.getChild('query', MUC_ADMIN)!.getChildren('item').map((i) => i.attrs.jid), ['alice@localhost']);
    assert.equal(errorOf(await list('outcast')), 'forbidden');
    assert.equal((await admin(alice, club, x('item', { jid: 'bob@localhost', affiliation: 'none' }))).attrs.type, 'result');
    const removed = await bob.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `${club}/Bob`);
    assert.ok(codes(removed).includes(321));

    const locked = `vault@${SERVICE}`;
    await createInstant(alice, locked, 'Alice', { 'muc#roomconfig_passwordprotectedroom': '1', 'muc#roomconfig_roomsecret': 'sesame', 'muc#roomconfig_maxusers': '2' });
    assert.equal(errorOf(await enter(carol, locked, 'Carol')), 'not-authorized');
    assert.equal(errorOf(await enter(carol, locked, 'Carol', { password: 'wrong', initial: false })), 'not-authorized');
    assert.ok(codes(await enter(carol, locked, 'Carol', { password: 'sesame', initial: false })).includes(110));
    // Two occupants: the room is full.
    assert.equal(errorOf(await enter(bob, locked, 'Bob', { password: 'sesame', initial: false })), 'service-unavailable');

    // Semi-anonymous (the default): Carol, a participant, never sees Alice's real JID; in a
    // non-anonymous room everyone does, with status 100 on entering and 172 on the change.
    const dave = await loginAs(ts, 'dave');
    const open = `open@${SERVICE}`;
    await createInstant(alice, open, 'Alice');
    dave.send(x('presence'));
    await enter(carol, open, 'Carol', { initial: false });
    dave.send(x('presence', { to: `${open}/Dave` }, x('x', { xmlns: 'http://jabber.org/protocol/muc' })));
    const aliceAtDave = await dave.expect((el) => el.name === 'presence' && el.attrs.from === `${open}/Alice`);
    assert.equal(item(aliceAtDave)?.attrs.jid, undefined);
    const carolSeesDave = await carol.expect((el) => el.name === 'presence' && el.attrs.from === `${open}/Dave`);
    assert.equal(item(carolSeesDave)?.attrs.jid, undefined);
    await configure(alice, open, { 'muc#roomconfig_whois': 'anyone' });
    const change = await carol.expect((el) => el.name === 'message' && el.attrs.from === open && codes(el).length > 0);
    assert.deepEqual(codes(change), [172], 'who sees real JIDs is a privacy change: 172 without 104');
    const again = await carol.expect((el) => el.name === 'presence' && el.attrs.from === `${open}/Dave` && item(el)?.attrs.jid !== undefined);
    assert.match(item(again)!.attrs.jid!, /^dave@localhost\//);
    const eve = await loginAs(ts, 'eve');
    const eveSelf = await enter(eve, open, 'Eve');
    assert.ok(codes(eveSelf).includes(100));
  } finally {
    await ts.stop();
  }
});

test('XEP-0045 mediated invitations and declines; an owner destroys the room with an alternate venue and a reason', async () => {
  const ts = await startTestServer({ logLevel: 'warn' });
  try {
    const alice = await loginAs(ts, 'alice');
    const bob = await loginAs(ts, 'bob');
    const room = `party@${SERVICE}`;
    await createInstant(alice, room, 'Alice', { 'muc#roomconfig_membersonly': '1' });
    bob.send(x('presence'));
    alice.send(x('message', { to: room }, x('x', { xmlns: MUC_USER }, x('invite', { to: 'bob@localhost' }, x('reason', {}, 'come along')))));
    const inv = await bob.expect((el) => el.name === 'message' && el.attrs.from === room);
    const invite = inv.getChild('x', MUC_USER)!.getChild('invite')!;
    assert.equal(invite.attrs.from, 'alice@localhost');
    assert.equal(invite.getChildText('reason'), 'come along');
    assert.equal(inv.getChild('x', 'jabber:x:conference')?.attrs.jid, room);
    // An owner's invitation to a members-only room makes the invitee a member.
    assert.equal(item(await enter(bob, room, 'Bob', { initial: false }))?.attrs.affiliation, 'member');
    bob.send(x('message', { to: room }, x('x', { xmlns: MUC_USER }, x('decline', { to: 'alice@localhost' }, x('reason', {}, 'busy later')))));
    const dec = await alice.expect((el) => el.name === 'message' && el.getChild('x', MUC_USER)?.getChild('decline') !== undefined);
    assert.equal(dec.getChild('x', MUC_USER)!.getChild('decline')!.attrs.from, 'bob@localhost');

    // Bob's reserved nick (7.12) is found through the x-roomuser-item node.
    await alice.iq(x('iq', { type: 'set', to: room }, x('query', { xmlns: MUC_ADMIN }, x('item', { jid: 'bob@localhost', affiliation: 'member', nick: 'Bobby' }))));
    const reserved = await bob.iq(x('iq', { type: 'get', to: room }, x('query', { xmlns: 'http://jabber.org/protocol/disco#info', node: 'x-roomuser-item' })));
    assert.equal(reserved.getChild('query')?.getChild('identity')?.attrs.name, 'Bobby');

    // In an open room a participant may invite; an invitation addressed to another room of the
    // service is answered by that room without either room hanging.
    const lounge = `lounge@${SERVICE}`;
    await createInstant(alice, lounge, 'Alice');
    await enter(bob, lounge, 'Bob', { initial: false });
    bob.send(x('message', { to: lounge, id: 'inv-room' }, x('x', { xmlns: MUC_USER }, x('invite', { to: room }))));
    bob.send(x('message', { to: lounge }, x('x', { xmlns: MUC_USER }, x('invite', { to: 'alice@localhost' }))));
    const fromBob = await alice.expect((el) => el.name === 'message' && el.attrs.from === lounge && el.getChild('x', MUC_USER)?.getChild('invite') !== undefined);
    assert.equal(fromBob.getChild('x', MUC_USER)!.getChild('invite')!.attrs.from, 'bob@localhost');
    const ping = await bob.iq(x('iq', { type: 'get', to: `${room}/Bob` }, x('ping', { xmlns: 'urn:xmpp:ping' })));
    assert.equal(ping.attrs.type, 'result');

    // Only owners destroy.
    const destroy = (c: TestClient) => c.iq(x('iq', { type: 'set', to: room }, x('query', { xmlns: MUC_OWNER }, x('destroy', { jid: `elsewhere@${SERVICE}` }, x('reason', {}, 'moving')))));
    assert.equal(errorOf(await destroy(bob)), 'forbidden');
    assert.equal((await destroy(alice)).attrs.type, 'result');
    const gone = await bob.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `${room}/Bob`);
    const d = gone.getChild('x', MUC_USER)!.getChild('destroy')!;
    assert.equal(d.attrs.jid, `elsewhere@${SERVICE}`);
    assert.equal(d.getChildText('reason'), 'moving');
    assert.equal(item(gone)?.attrs.role, 'none');
    const info = await bob.iq(x('iq', { type: 'get', to: room }, x('query', { xmlns: 'http://jabber.org/protocol/disco#info' })));
    assert.equal(errorOf(info), 'item-not-found');
  } finally {
    await ts.stop();
  }
});
