/**
 * Message features between XMPP and the adapter's TextMessage: ids both ways, corrections
 * (XEP-0308), retractions (XEP-0424), reactions (XEP-0444), replies (XEP-0461), read markers
 * (XEP-0333), invitations (XEP-0249 and XEP-0045 mediated), stanza-ids in rooms (XEP-0359), and the
 * adapter's sync state kept across reconnects and restarts.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { GW, bareOf, onlineUser, startKit, until, type Kit } from './kit-harness.js';

const CORRECT = 'urn:xmpp:message-correct:0';
const RETRACT = 'urn:xmpp:message-retract:1';
const REACTIONS = 'urn:xmpp:reactions:0';
const REPLY = 'urn:xmpp:reply:0';
const MARKERS = 'urn:xmpp:chat-markers:0';
const SID = 'urn:xmpp:sid:0';
const MUC = 'http://jabber.org/protocol/muc';
const MUC_USER = 'http://jabber.org/protocol/muc#user';

let kit: Kit;

before(async () => {
  kit = await startKit();
});

after(async () => {
  await kit.stop();
});

const contact = (id: string) => `${id}%irc.one@${GW}`;
const room = (id: string) => `${id}%irc.one@${GW}`;

async function joinRoom(c: TestClient, roomJid: string, nick: string): Promise<void> {
  c.send(x('presence', { to: `${roomJid}/${nick}` }, x('x', { xmlns: MUC })));
  await c.expect((el) => el.name === 'message' && el.attrs.from?.startsWith(roomJid) === true && !!el.getChild('subject'));
}

function sentLast(kind: string, pred: (r: (typeof kit.net.sent)[number]) => boolean = () => true) {
  return [...kit.net.sent].reverse().find((r) => r.kind === kind && pred(r));
}

describe('transport kit: message features', () => {
  test('ids, corrections, retractions, reactions and replies both ways with a contact', async () => {
    const alice = await onlineUser(kit, 'm-alice', 'alice-irc', 'pw-a');
    const user = bareOf(alice);
    await until(() => kit.net.sessionOf(user) !== undefined, 'a live session');
    const bob = contact('bob');
    // Out: the client's id goes to the adapter (it maps its own ids to it).
    alice.send(x('message', { to: bob, type: 'chat', id: 'u1' }, x('body', {}, 'helo')));
    await until(() => !!sentLast('message', (r) => r.id === 'u1'), 'the message');
    alice.send(x('message', { to: bob, type: 'chat', id: 'u2' }, x('body', {}, 'hello'), x('replace', { xmlns: CORRECT, id: 'u1' })));
    await until(() => !!sentLast('message', (r) => r.editOf === 'u1' && r.text === 'hello'), 'the correction');
    alice.send(x('message', { to: bob, type: 'chat', id: 'u3' }, x('reactions', { xmlns: REACTIONS, id: 'n1' }, x('reaction', {}, '👍'), x('reaction', {}, '🎉'))));
    await until(() => !!sentLast('message', (r) => r.reactions?.to === 'n1'), 'the reactions');
    assert.deepEqual(sentLast('message', (r) => r.reactions?.to === 'n1')!.reactions!.keys, ['👍', '🎉']);
    alice.send(x('message', { to: bob, type: 'chat', id: 'u4' }, x('retract', { xmlns: RETRACT, id: 'u1' }), x('body', {}, 'retracted (fallback)')));
    await until(() => !!sentLast('message', (r) => r.redacts === 'u1'), 'the retraction');
    assert.equal(sentLast('message', (r) => r.redacts === 'u1')!.text, '');
    alice.send(x('message', { to: bob, type: 'chat', id: 'u5' }, x('body', {}, 'as I said'), x('reply', { xmlns: REPLY, id: 'n1', to: bob })));
    await until(() => !!sentLast('message', (r) => r.replyTo === 'n1'), 'the reply');

    // In: the network's ids become stanza ids; edits, reactions, retractions, replies map back.
    kit.net.remoteMessage('bob', user, { text: 'first', id: 'n1' });
    const first = await alice.expect((el) => el.name === 'message' && el.attrs.from === bob && el.getChildText('body') === 'first');
    assert.equal(first.attrs.id, 'n1');
    assert.ok(first.getChild('markable', MARKERS), 'the adapter takes read markers: markable');
    kit.net.remoteMessage('bob', user, { text: 'first!', id: 'n2', editOf: 'n1' });
    const edit = await alice.expect((el) => el.name === 'message' && el.getChildText('body') === 'first!');
    assert.equal(edit.getChild('replace', CORRECT)?.attrs.id, 'n1');
    kit.net.remoteMessage('bob', user, { text: '', id: 'n3', reactions: { to: 'u5', keys: ['❤️'] } });
    const react = await alice.expect((el) => el.name === 'message' && !!el.getChild('reactions', REACTIONS));
    assert.equal(react.getChild('reactions', REACTIONS)!.attrs.id, 'u5');
    assert.deepEqual(react.getChild('reactions', REACTIONS)!.getChildren('reaction').map((r) => r.text()), ['❤️']);
    assert.equal(react.getChild('body'), undefined);
    kit.net.remoteMessage('bob', user, { text: '', id: 'n4', redacts: 'n2' });
    const retract = await alice.expect((el) => el.name === 'message' && !!el.getChild('retract', RETRACT));
    assert.equal(retract.getChild('retract', RETRACT)!.attrs.id, 'n2');
    kit.net.remoteMessage('bob', user, { text: 'replying', id: 'n5', replyTo: 'u2' });
    const reply = await alice.expect((el) => el.name === 'message' && el.getChildText('body') === 'replying');
    assert.equal(reply.getChild('reply', REPLY)?.attrs.id, 'u2');
    await alice.close();
  });

  test('XEP-0333 read markers both ways', async () => {
    const carol = await onlineUser(kit, 'm-carol', 'carol-irc', 'pw-c');
    const user = bareOf(carol);
    await until(() => kit.net.sessionOf(user) !== undefined, 'a live session');
    carol.send(x('message', { to: contact('dan'), type: 'chat' }, x('displayed', { xmlns: MARKERS, id: 'n9' })));
    await until(() => !!sentLast('read', (r) => r.to === 'dan' && r.id === 'n9'), 'the read marker');
    kit.net.remoteDisplayed('dan', user, 'c7');
    const marker = await carol.expect((el) => el.name === 'message' && !!el.getChild('displayed', MARKERS));
    assert.equal(marker.attrs.from, contact('dan'));
    assert.equal(marker.getChild('displayed', MARKERS)!.attrs.id, 'c7');
    assert.equal(marker.getChild('body'), undefined);
    await carol.close();
  });

  test('rooms: stanza-ids (XEP-0359) on echoes and on network messages, reactions in the room, invitations both ways', async () => {
    kit.net.remoteJoin('#feat', 'bob');
    const erin = await onlineUser(kit, 'm-erin', 'erin-irc', 'pw-e');
    const user = bareOf(erin);
    const r = room('#feat');
    await joinRoom(erin, r, 'erin-irc');
    erin.send(x('message', { to: r, type: 'groupchat', id: 'g1' }, x('body', {}, 'hi all')));
    const echo = await erin.expect((el) => el.name === 'message' && el.attrs.id === 'g1');
    assert.deepEqual(echo.getChild('stanza-id', SID)?.attrs, { xmlns: SID, id: 'g1', by: r });
    assert.equal(sentLast('room-message', (m) => m.text === 'hi all')!.id, 'g1');
    kit.net.remoteSay('#feat', 'bob', 'hello erin', { id: 'rn1' });
    const inbound = await erin.expect((el) => el.name === 'message' && el.getChildText('body') === 'hello erin');
    assert.equal(inbound.attrs.id, 'rn1');
    assert.deepEqual(inbound.getChild('stanza-id', SID)?.attrs, { xmlns: SID, id: 'rn1', by: r });
    // A reaction to it, by stanza-id, goes to the network and is reflected.
    erin.send(x('message', { to: r, type: 'groupchat', id: 'g2' }, x('reactions', { xmlns: REACTIONS, id: 'rn1' }, x('reaction', {}, '👋'))));
    await until(() => !!sentLast('room-message', (m) => m.reactions?.to === 'rn1'), 'the reaction on the network');
    const reflected = await erin.expect((el) => el.name === 'message' && el.attrs.id === 'g2');
    assert.equal(reflected.getChild('reactions', REACTIONS)?.attrs.id, 'rn1');
    // A mediated invitation (XEP-0045 §7.8.2) to a contact of the network.
    erin.send(x('message', { to: r }, x('x', { xmlns: MUC_USER }, x('invite', { to: contact('frank') }, x('reason', {}, 'join us')))));
    await until(() => !!sentLast('invite', (m) => m.to === 'frank' && m.text === '#feat join us'), 'the invitation on the network');
    // A direct invitation (XEP-0249) from the user to a contact.
    erin.send(x('message', { to: contact('gus') }, x('x', { xmlns: 'jabber:x:conference', jid: r })));
    await until(() => !!sentLast('invite', (m) => m.to === 'gus'), 'the direct invitation');
    // The network invites the user: a direct invitation from the inviter.
    kit.net.remoteInvite('bob', user, '#secret', 'come in');
    const inv: Element = await erin.expect((el) => el.name === 'message' && !!el.getChild('x', 'jabber:x:conference'));
    assert.equal(inv.attrs.from, contact('bob'));
    assert.equal(inv.getChild('x', 'jabber:x:conference')!.attrs.jid, room('#secret'));
    assert.equal(inv.getChild('x', 'jabber:x:conference')!.attrs.reason, 'come in');
    // Read markers in the room.
    kit.net.remoteDisplayed('bob', user, 'g1', '#feat');
    const seen = await erin.expect((el) => el.name === 'message' && !!el.getChild('displayed', MARKERS));
    assert.equal(seen.attrs.from, `${r}/bob`);
    assert.equal(seen.attrs.type, 'groupchat');
    await erin.close();
  });

  test('the adapter sync state is given back at the next login, after a drop and after a restart', async () => {
    const gus = await onlineUser(kit, 'm-gus', 'gus-irc', 'pw-g');
    const user = bareOf(gus);
    await until(() => kit.net.sessionOf(user) !== undefined, 'a live session');
    const kitState = () => kit.transport.gateway.sessions.ofUser(user)[0]?.syncState;
    kit.net.sync(user, 'token-1');
    await until(() => kitState() === 'token-1', 'the kit to have the sync state');
    kit.net.drop(user, 'network hiccup');
    await until(() => kit.net.logins.filter((l) => l.userJid === user && l.ok).length === 2, 'logged in again');
    assert.equal(kit.net.logins.filter((l) => l.userJid === user && l.ok).at(-1)!.state, 'token-1');
    kit.net.sync(user, 'token-2');
    await until(() => kitState() === 'token-2', 'the kit to have the new sync state');
    await kit.stopTransport();
    await kit.restartTransport();
    await until(() => kit.net.logins.filter((l) => l.userJid === user && l.ok).length === 3, 'logged in after the restart', 8000);
    assert.equal(kit.net.logins.filter((l) => l.userJid === user && l.ok).at(-1)!.state, 'token-2');
    // The state is not a user setting: the adapter's settings do not carry it.
    assert.deepEqual(Object.keys(kit.net.sessionOf(user)!.settings).filter((k) => k.startsWith('_')), []);
    await gus.close();
  });
});
