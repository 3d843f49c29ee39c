/**
 * XEP-0045 room configuration as occupants see it: muc#roomconfig_presencebroadcast (10.2, roles
 * whose presence the others see, kept with a persistent room), the status codes of a configuration
 * change (104 for a non-privacy change, 172/173 for anonymity, nothing for a form that changes
 * nothing: 10.2.1, 15.6) and 101 to a user whose affiliation changed while not in the room.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, loginAs } from '../helpers/server.js';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { MUC_ADMIN, MUC_OWNER, MUC_USER, SERVICE, codes, configure, createInstant, enter, item } from './muc-helpers.js';

const fromOccupant = (room: string, nick: string) => (el: Element) => el.name === 'presence' && el.attrs.from === `${room}/${nick}`;
const statusMessage = (room: string) => (el: Element) => el.name === 'message' && el.attrs.from === room && codes(el).length > 0;

async function say(c: TestClient, room: string, body: string): Promise<void> {
  c.send(x('message', { type: 'groupchat', to: room }, x('body', {}, body)));
}

async function formValues(c: TestClient, room: string, v: string): Promise<string[]> {
  const reply = await c.iq(x('iq', { type: 'get', to: room }, x('query', { xmlns: MUC_OWNER })));
  const field = reply.getChild('query', MUC_OWNER)?.getChild('x', NS.dataForms)?.getChildren('field').find((f) => f.attrs.var === v);
  assert.ok(field, `the form has ${v}: ${reply}`);
  return field.getChildren('value').map((e) => e.text());
}

test('XEP-0045 muc#roomconfig_presencebroadcast: a role not broadcast is hidden from the others, not from itself, and still speaks; kept with a persistent room', async () => {
  const ts = await startTestServer({ logLevel: 'warn' });
  try {
    const room = `quiet@${SERVICE}`;
    const alice = await loginAs(ts, 'alice');
    const bob = await loginAs(ts, 'bob');
    await createInstant(alice, room, 'Alice', { 'muc#roomconfig_persistentroom': '1', 'muc#roomconfig_presencebroadcast': ['moderator'] });
    assert.deepEqual(await formValues(alice, room, 'muc#roomconfig_presencebroadcast'), ['moderator']);

    // Bob, a participant, sees the moderator and himself (110); Alice does not see him, but his message reaches her.
    const bobSelf = await enter(bob, room, 'Bob');
    assert.equal(item(bobSelf)?.attrs.role, 'participant');
    await bob.expect(fromOccupant(room, 'Alice'));
    await say(bob, room, 'hidden but heard');
    const heard = await alice.expect((el) => el.name === 'message' && el.getChildText('body') === 'hidden but heard');
    assert.equal(heard.attrs.from, `${room}/Bob`);
    assert.ok(await alice.expectNothing(fromOccupant(room, 'Bob'), 1), 'no presence of Bob before his message');

    // Made a moderator, Bob is shown; made a participant again, the others see him leave.
    const grant = await alice.iq(x('iq', { type: 'set', to: room }, x('query', { xmlns: MUC_ADMIN }, x('item', { nick: 'Bob', role: 'moderator' }))));
    assert.equal(grant.attrs.type, 'result', String(grant));
    assert.equal(item(await alice.expect(fromOccupant(room, 'Bob')))?.attrs.role, 'moderator');
    await alice.iq(x('iq', { type: 'set', to: room }, x('query', { xmlns: MUC_ADMIN }, x('item', { nick: 'Bob', role: 'participant' }))));
    const gone = await alice.expect(fromOccupant(room, 'Bob'));
    assert.equal(gone.attrs.type, 'unavailable', String(gone));
    const bobSees = await bob.expect((el) => fromOccupant(room, 'Bob')(el) && item(el)?.attrs.role === 'participant');
    assert.ok(codes(bobSees).includes(110));

    // Stored with the room: the service off and on again reads it back from the database.
    await ts.reload({ muc: { enabled: false } });
    await ts.reload({ muc: { enabled: true } });
    const again = await enter(alice, room, 'Alice', { initial: false });
    assert.ok(!codes(again).includes(201), 'the stored room');
    assert.deepEqual(await formValues(alice, room, 'muc#roomconfig_presencebroadcast'), ['moderator']);

    // Broadcasting participants again: Bob, back in, is shown to Alice once more.
    await configure(alice, room, { 'muc#roomconfig_presencebroadcast': ['moderator', 'participant', 'visitor'] });
    await enter(bob, room, 'Bob', { initial: false });
    assert.notEqual((await alice.expect(fromOccupant(room, 'Bob'))).attrs.type, 'unavailable');
  } finally {
    await ts.stop();
  }
});

test('XEP-0045 10.2.1 status codes of a configuration change: 104 only for a non-privacy change, 172/173 for anonymity, none when nothing changed', async () => {
  const ts = await startTestServer({ logLevel: 'warn' });
  try {
    const room = `codes@${SERVICE}`;
    const alice = await loginAs(ts, 'alice');
    const bob = await loginAs(ts, 'bob');
    await createInstant(alice, room, 'Alice');
    await enter(bob, room, 'Bob');

    await configure(alice, room, { 'muc#roomconfig_roomname': 'Codes' });
    assert.deepEqual(codes(await bob.expect(statusMessage(room))), [104]);
    await configure(alice, room, { 'muc#roomconfig_whois': 'anyone' });
    assert.deepEqual(codes(await bob.expect(statusMessage(room))), [172]);
    await configure(alice, room, { 'muc#roomconfig_whois': 'moderators', 'muc#roomconfig_roomdesc': 'about codes' });
    assert.deepEqual(codes(await bob.expect(statusMessage(room))).sort(), [104, 173]);
    // The same values again: no message; the next change's 104 is the first status message Bob gets.
    await configure(alice, room, { 'muc#roomconfig_roomname': 'Codes', 'muc#roomconfig_whois': 'moderators' });
    await configure(alice, room, { 'muc#roomconfig_allowinvites': '1' });
    assert.deepEqual(codes(await bob.expect(statusMessage(room))), [104]);
    assert.ok(await bob.expectNothing(statusMessage(room), 1), 'one status message for two submissions');
  } finally {
    await ts.stop();
  }
});

test('XEP-0045 101: a user not in the room is told of an affiliation change by a message to the bare JID; an occupant by presence only', async () => {
  const ts = await startTestServer({ logLevel: 'warn' });
  try {
    const room = `club@${SERVICE}`;
    const alice = await loginAs(ts, 'alice');
    const bob = await loginAs(ts, 'bob');
    const carol = await loginAs(ts, 'carol');
    bob.send(x('presence'));
    await createInstant(alice, room, 'Alice');
    const set = (jid: string, affiliation: string) =>
      alice.iq(x('iq', { type: 'set', to: room }, x('query', { xmlns: MUC_ADMIN }, x('item', { jid, affiliation }, x('reason', {}, 'welcome')))));
    assert.equal((await set('bob@localhost', 'member')).attrs.type, 'result');
    const told = await bob.expect((el) => el.name === 'message' && el.attrs.from === room);
    assert.deepEqual(codes(told), [101]);
    const it = told.getChild('x', MUC_USER)!.getChild('item')!;
    assert.equal(it.attrs.affiliation, 'member');
    assert.equal(it.attrs.jid, 'bob@localhost');

    // Carol is in the room: her new affiliation comes as presence, not as a 101 message (which would come first).
    await enter(carol, room, 'Carol');
    assert.equal((await set('carol@localhost', 'admin')).attrs.type, 'result');
    const shown = await carol.expect((el) => fromOccupant(room, 'Carol')(el) && item(el)?.attrs.affiliation === 'admin');
    assert.ok(codes(shown).includes(110));
    // A change to the same affiliation is no change: nothing more for Bob; the ban after it is the next he hears of.
    assert.equal((await set('bob@localhost', 'member')).attrs.type, 'result');
    assert.equal((await set('bob@localhost', 'outcast')).attrs.type, 'result');
    const banned = await bob.expect((el) => el.name === 'message' && el.attrs.from === room);
    assert.equal(banned.getChild('x', MUC_USER)?.getChild('item')?.attrs.affiliation, 'outcast');
    assert.ok(await carol.expectNothing((el) => el.name === 'message' && codes(el).includes(101), 1));
  } finally {
    await ts.stop();
  }
});
