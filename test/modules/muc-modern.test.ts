/**
 * What modern clients add to XEP-0045 rooms, and the service's limits: XEP-0410 self-ping,
 * XEP-0425 moderation, the room avatar (vCard-temp on the room JID), relayed occupant vCards;
 * message size and rate per occupant, rooms per owner, `muc.creation`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, loginAs } from '../helpers/server.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { SERVICE, codes, createInstant, enter, errorOf } from './muc-helpers.js';

test('XEP-0410 self-ping is answered for a joined session and not-acceptable otherwise; XEP-0425 a moderator retracts a message for everyone and in the history', async () => {
  const ts = await startTestServer({ logLevel: 'warn' });
  try {
    const room = `news@${SERVICE}`;
    const alice = await loginAs(ts, 'alice');
    const bob = await loginAs(ts, 'bob');
    await createInstant(alice, room, 'Alice');
    const ping = (c: typeof alice, to: string) => c.iq(x('iq', { type: 'get', to }, x('ping', { xmlns: NS.ping })));
    assert.equal((await ping(alice, `${room}/Alice`)).attrs.type, 'result');
    assert.equal(errorOf(await ping(bob, `${room}/Bob`)), 'not-acceptable');
    await enter(bob, room, 'Bob');
    assert.equal((await ping(bob, `${room}/Bob`)).attrs.type, 'result');
    // A client that lost track joins again while joined: it gets the whole state once more.
    await bob.expect((el) => el.name === 'message' && el.getChild('subject') !== undefined);
    const rejoin = await enter(bob, room, 'Bob', { initial: false });
    assert.ok(codes(rejoin).includes(110));
    await bob.expect((el) => el.name === 'message' && el.getChild('subject') !== undefined);
    const others = bob.received.filter((el) => el.name === 'presence' && el.attrs.from === `${room}/Alice`);
    assert.equal(others.length, 2, 'the other occupants once on entering and once again');

    bob.send(x('message', { type: 'groupchat', to: room }, x('body', {}, 'buy cheap pills')));
    const spam = await alice.expect((el) => el.name === 'message' && el.getChildText('body') === 'buy cheap pills');
    const sid = spam.getChild('stanza-id', 'urn:xmpp:sid:0')!.attrs.id!;
    const moderate = (c: typeof alice) =>
      c.iq(x('iq', { type: 'set', to: room }, x('moderate', { xmlns: 'urn:xmpp:message-moderate:1', id: sid }, x('retract', { xmlns: 'urn:xmpp:message-retract:1' }), x('reason', {}, 'spam'))));
    assert.equal(errorOf(await moderate(bob)), 'forbidden', 'participants cannot moderate');
    assert.equal((await moderate(alice)).attrs.type, 'result');
    const tomb = await bob.expect((el) => el.name === 'message' && el.getChild('retract', 'urn:xmpp:message-retract:1') !== undefined);
    assert.equal(tomb.attrs.from, room);
    const retract = tomb.getChild('retract', 'urn:xmpp:message-retract:1')!;
    assert.equal(retract.attrs.id, sid);
    assert.equal(retract.getChild('moderated', 'urn:xmpp:message-moderate:1')?.attrs.by, `${room}/Alice`);
    assert.equal(retract.getChildText('reason'), 'spam');
    // Someone entering later gets the retraction, not the message.
    const carol = await loginAs(ts, 'carol');
    await enter(carol, room, 'Carol');
    const first = await carol.expect((el) => el.name === 'message');
    assert.equal(first.getChildText('body'), undefined);
    assert.ok(first.getChild('retract', 'urn:xmpp:message-retract:1'));
  } finally {
    await ts.stop();
  }
});

test('XEP-0045 room avatar: owners set the room vCard, anyone reads it, the hash is in muc#roominfo; occupant vCards come from the account', async () => {
  const ts = await startTestServer({ logLevel: 'warn' });
  try {
    const room = `pics@${SERVICE}`;
    const alice = await loginAs(ts, 'alice');
    const bob = await loginAs(ts, 'bob');
    await createInstant(alice, room, 'Alice');
    const photo = Buffer.from('not really a png').toString('base64');
    const card = x('vCard', { xmlns: NS.vcard }, x('PHOTO', {}, x('TYPE', {}, 'image/png'), x('BINVAL', {}, photo)));
    assert.equal(errorOf(await bob.iq(x('iq', { type: 'set', to: room }, card.clone()))), 'forbidden');
    assert.equal((await alice.iq(x('iq', { type: 'set', to: room }, card))).attrs.type, 'result');
    const got = await bob.iq(x('iq', { type: 'get', to: room }, x('vCard', { xmlns: NS.vcard })));
    assert.equal(got.getChild('vCard', NS.vcard)?.getChild('PHOTO')?.getChildText('BINVAL'), photo);
    const info = await bob.iq(x('iq', { type: 'get', to: room }, x('query', { xmlns: NS.discoInfo })));
    const hash = info.getChild('query', NS.discoInfo)!.getChild('x', NS.dataForms)!.getChildren('field').find((f) => f.attrs.var === 'muc#roominfo_avatarhash');
    assert.match(hash?.getChildText('value') ?? '', /^[0-9a-f]{40}$/);

    // Alice's own vCard, fetched through her occupant JID by another occupant.
    assert.equal((await alice.iq(x('iq', { type: 'set' }, x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'Alice A.'))))).attrs.type, 'result');
    await enter(bob, room, 'Bob');
    const occ = await bob.iq(x('iq', { type: 'get', to: `${room}/Alice` }, x('vCard', { xmlns: NS.vcard })));
    assert.equal(occ.attrs.from, `${room}/Alice`);
    assert.equal(occ.getChild('vCard', NS.vcard)?.getChildText('FN'), 'Alice A.');
  } finally {
    await ts.stop();
  }
});

test('XEP-0045 limits: message size (policy-violation), rate per occupant (resource-constraint), rooms per owner, creation by local users only', async () => {
  const ts = await startTestServer({ logLevel: 'warn', config: { muc: { maxMessageSize: 1024, messagesPerMinute: 10, maxRoomsPerUser: 2 } } });
  try {
    const alice = await loginAs(ts, 'alice');
    const room = `chat@${SERVICE}`;
    await createInstant(alice, room, 'Alice');
    alice.send(x('message', { type: 'groupchat', to: room }, x('body', {}, 'x'.repeat(2000))));
    const big = await alice.expect((el) => el.name === 'message' && el.attrs.type === 'error');
    assert.equal(errorOf(big), 'policy-violation');
    // Ten a minute with bursts of two: the third at once is refused, with type wait.
    for (let i = 0; i < 3; i++) alice.send(x('message', { type: 'groupchat', to: room, id: `r${i}` }, x('body', {}, `n${i}`)));
    const limited = await alice.expect((el) => el.name === 'message' && el.attrs.type === 'error' && el.attrs.id === 'r2');
    assert.equal(errorOf(limited), 'resource-constraint');
    assert.equal(limited.getChild('error')?.attrs.type, 'wait');

    await createInstant(alice, `two@${SERVICE}`, 'Alice');
    const third = await enter(alice, `three@${SERVICE}`, 'Alice', { initial: false });
    assert.equal(errorOf(third), 'resource-constraint');
  } finally {
    await ts.stop();
  }
  const admins = await startTestServer({ logLevel: 'warn', config: { muc: { creation: 'admins' }, admins: ['root@localhost'] } });
  try {
    const bob = await loginAs(admins, 'bob');
    assert.equal(errorOf(await enter(bob, `mine@${SERVICE}`, 'Bob')), 'not-allowed');
    const root = await loginAs(admins, 'root');
    assert.ok(codes(await enter(root, `mine@${SERVICE}`, 'Root')).includes(201));
  } finally {
    await admins.stop();
  }
});

test('XEP-0045 7.10 registering with a room reserves a nick and makes a member; others cannot take the nick; <remove/> gives it up', async () => {
  const ts = await startTestServer({ logLevel: 'warn' });
  try {
    const room = `reg@${SERVICE}`;
    const alice = await loginAs(ts, 'alice');
    const bob = await loginAs(ts, 'bob');
    const carol = await loginAs(ts, 'carol');
    await createInstant(alice, room, 'Alice');
    const REG = 'jabber:iq:register';
    const form = await bob.iq(x('iq', { type: 'get', to: room }, x('query', { xmlns: REG })));
    assert.ok(form.getChild('query', REG)!.getChild('x', NS.dataForms)!.getChildren('field').some((f) => f.attrs.var === 'muc#register_roomnick'));
    const submit = (c: typeof bob, nick: string) =>
      c.iq(
        x('iq', { type: 'set', to: room }, x('query', { xmlns: REG }, x('x', { xmlns: NS.dataForms, type: 'submit' }, x('field', { var: 'FORM_TYPE' }, x('value', {}, 'http://jabber.org/protocol/muc#register')), x('field', { var: 'muc#register_roomnick' }, x('value', {}, nick))))),
      );
    assert.equal((await submit(bob, 'Bobby')).attrs.type, 'result');
    const again = await bob.iq(x('iq', { type: 'get', to: room }, x('query', { xmlns: REG })));
    assert.ok(again.getChild('query', REG)!.getChild('registered'));
    assert.equal(again.getChild('query', REG)!.getChildText('username'), 'Bobby');
    assert.equal(errorOf(await submit(carol, 'Bobby')), 'conflict');
    assert.equal(errorOf(await enter(carol, room, 'Bobby')), 'conflict', 'the reserved nick is Bob\'s');
    const self = await enter(bob, room, 'Bobby');
    assert.equal(self.getChild('x', 'http://jabber.org/protocol/muc#user')!.getChild('item')!.attrs.affiliation, 'member');
    assert.equal((await bob.iq(x('iq', { type: 'set', to: room }, x('query', { xmlns: REG }, x('remove'))))).attrs.type, 'result');
    const now = await bob.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Bobby` && el.getChild('x', 'http://jabber.org/protocol/muc#user')?.getChild('item')?.attrs.affiliation === 'none');
    assert.ok(now);
  } finally {
    await ts.stop();
  }
});
