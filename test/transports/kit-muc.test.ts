/**
 * Foreign channels as XEP-0045 rooms served by the transport: join, occupants with roles,
 * groupchat both ways with the echo, subject, nick changes, part and kick, private messages,
 * join errors, self-ping, several resources, room-only sessions, rejoin after a drop.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { GW, bareOf, errorOf, onlineUser, registerLegacy, startKit, until, type Kit } from './kit-harness.js';

const MUC = 'http://jabber.org/protocol/muc';
const MUC_USER = 'http://jabber.org/protocol/muc#user';
const MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';

let kit: Kit;

before(async () => {
  kit = await startKit();
});

after(async () => {
  await kit.stop();
});

function codes(p: Element): number[] {
  return (p.getChild('x', MUC_USER)?.getChildren('status') ?? []).map((s) => Number(s.attrs.code)).sort((a, b) => a - b);
}

function item(p: Element): Record<string, string> {
  return p.getChild('x', MUC_USER)?.getChild('item')?.attrs ?? {};
}

const room = (id: string, server = 'irc.one') => `${id}%${server}@${GW}`;

/** Joins and collects the join sequence up to the subject message. */
async function join(c: TestClient, roomJid: string, nick: string, password?: string): Promise<{ presences: Element[]; subject: Element }> {
  c.send(x('presence', { to: `${roomJid}/${nick}` }, x('x', { xmlns: MUC }, password ? x('password', {}, password) : null)));
  const subject = await c.expect((el) => el.name === 'message' && el.attrs.from?.startsWith(roomJid) === true && !!el.getChild('subject'));
  const presences = c.received.filter((el) => el.name === 'presence' && el.attrs.from?.startsWith(`${roomJid}/`) === true);
  for (const p of presences) c.received.splice(c.received.indexOf(p), 1);
  return { presences, subject };
}

describe('transport kit: rooms (XEP-0045)', () => {
  test('join: occupants with their roles, self-presence with 110, then the subject; groupchat both ways with the echo', async () => {
    const r = kit.net.room('#lobby', 'irc.one');
    r.subject = 'Welcome to the lobby';
    r.subjectBy = 'bob';
    kit.net.remoteJoin('#lobby', 'bob', 'moderator');
    kit.net.remoteJoin('#lobby', 'carol');
    const alice = await onlineUser(kit, 'muc-alice', 'alice-irc', 'pw-a');
    const lobby = room('#lobby');
    const order: string[] = [];
    alice.send(x('presence', { to: `${lobby}/alice` }, x('x', { xmlns: MUC })));
    const seen: Element[] = [];
    for (let i = 0; i < 4; i++) {
      const el = await alice.expect((e) => e.attrs.from?.startsWith(lobby) === true);
      seen.push(el);
      order.push(`${el.name}:${el.attrs.from!.slice(lobby.length)}`);
    }
    // Occupants first (any order), self last with 110, then the subject.
    assert.deepEqual(order.slice(0, 2).sort(), ['presence:/bob', 'presence:/carol']);
    assert.equal(order[2], 'presence:/alice');
    // The subject from the room itself (roomJoined does not say who set it).
    assert.equal(order[3], 'message:');
    assert.equal(item(seen.find((e) => e.attrs.from === `${lobby}/bob`)!).role, 'moderator');
    assert.equal(item(seen.find((e) => e.attrs.from === `${lobby}/bob`)!).jid, `bob%irc.one@${GW}`);
    assert.equal(item(seen.find((e) => e.attrs.from === `${lobby}/carol`)!).role, 'participant');
    assert.deepEqual(codes(seen[2]!), [110]);
    assert.equal(seen[3]!.attrs.type, 'groupchat');
    assert.equal(seen[3]!.getChildText('subject'), 'Welcome to the lobby');
    assert.equal(seen[3]!.getChild('body'), undefined);

    // Groupchat out: to the network, and echoed back with the client's id.
    alice.send(x('message', { to: lobby, type: 'groupchat', id: 'msg-1' }, x('body', {}, 'hello everyone')));
    const echo = await alice.expect((el) => el.name === 'message' && el.attrs.id === 'msg-1');
    assert.equal(echo.attrs.from, `${lobby}/alice`);
    assert.equal(echo.attrs.type, 'groupchat');
    assert.equal(echo.getChildText('body'), 'hello everyone');
    assert.ok(kit.net.sent.some((s) => s.kind === 'room-message' && s.to === '#lobby' && s.text === 'hello everyone' && s.from === 'alice'));
    // /me both ways.
    alice.send(x('message', { to: lobby, type: 'groupchat', id: 'msg-2' }, x('body', {}, '/me waves')));
    await alice.expect((el) => el.name === 'message' && el.attrs.id === 'msg-2');
    assert.ok(kit.net.sent.some((s) => s.kind === 'room-message' && s.text === 'waves' && s.action === true));
    // Groupchat in.
    kit.net.remoteSay('#lobby', 'bob', 'hi alice');
    const inbound = await alice.expect((el) => el.name === 'message' && el.attrs.from === `${lobby}/bob` && !!el.getChild('body'));
    assert.equal(inbound.attrs.type, 'groupchat');
    assert.equal(inbound.getChildText('body'), 'hi alice');
    kit.net.remoteSay('#lobby', 'carol', 'dances', { action: true });
    const action = await alice.expect((el) => el.name === 'message' && el.attrs.from === `${lobby}/carol`);
    assert.equal(action.getChildText('body'), '/me dances');
    await alice.close();
  });

  test('subject changes both ways, nick changes (303), parts, and being kicked (307)', async () => {
    kit.net.remoteJoin('#talk', 'bob', 'moderator');
    kit.net.remoteJoin('#talk', 'carol');
    const dave = await onlineUser(kit, 'muc-dave', 'dave-irc', 'pw-d');
    const talk = room('#talk');
    const joined = await join(dave, talk, 'dave');
    assert.equal(joined.subject.getChildText('subject'), '', 'an empty subject completes the join');
    // The network changes the subject.
    kit.net.remoteTopic('#talk', 'Today: tests', 'bob');
    const topic = await dave.expect((el) => el.name === 'message' && !!el.getChild('subject'));
    assert.equal(topic.attrs.from, `${talk}/bob`);
    assert.equal(topic.getChildText('subject'), 'Today: tests');
    // The user changes it.
    dave.send(x('message', { to: talk, type: 'groupchat' }, x('subject', {}, 'Tomorrow: more tests')));
    const mine = await dave.expect((el) => el.name === 'message' && el.getChildText('subject') === 'Tomorrow: more tests');
    assert.equal(mine.attrs.from, `${talk}/dave`);
    assert.equal(kit.net.findRoom('#talk', 'irc.one')!.subject, 'Tomorrow: more tests');

    // Someone else's nick change.
    kit.net.remoteNick('carol', 'caroline', 'irc.one');
    const gone = await dave.expect((el) => el.name === 'presence' && el.attrs.from === `${talk}/carol`);
    assert.equal(gone.attrs.type, 'unavailable');
    assert.deepEqual(codes(gone), [303]);
    assert.equal(item(gone).nick, 'caroline');
    await dave.expect((el) => el.name === 'presence' && el.attrs.from === `${talk}/caroline` && el.attrs.type === undefined);
    // The user's own nick change: presence to the new occupant JID.
    dave.send(x('presence', { to: `${talk}/davey` }));
    const own = await dave.expect((el) => el.name === 'presence' && el.attrs.from === `${talk}/dave`);
    assert.equal(own.attrs.type, 'unavailable');
    assert.deepEqual(codes(own), [110, 303]);
    assert.equal(item(own).nick, 'davey');
    const renamed = await dave.expect((el) => el.name === 'presence' && el.attrs.from === `${talk}/davey`);
    assert.deepEqual(codes(renamed), [110]);
    // A part.
    kit.net.remotePart('#talk', 'caroline', 'gone fishing');
    const part = await dave.expect((el) => el.name === 'presence' && el.attrs.from === `${talk}/caroline`);
    assert.equal(part.attrs.type, 'unavailable');
    assert.deepEqual(codes(part), []);
    // Kicked by a moderator.
    kit.net.remoteKick('#talk', 'davey', 'bob', 'flooding');
    const kicked = await dave.expect((el) => el.name === 'presence' && el.attrs.from === `${talk}/davey` && el.attrs.type === 'unavailable');
    assert.deepEqual(codes(kicked), [110, 307]);
    const kickItem = kicked.getChild('x', MUC_USER)!.getChild('item')!;
    assert.equal(kickItem.attrs.role, 'none');
    assert.equal(kickItem.getChild('actor')?.attrs.nick, 'bob');
    assert.equal(kickItem.getChildText('reason'), 'flooding');
    // Out of the room: groupchat is refused.
    dave.send(x('message', { to: talk, type: 'groupchat', id: 'after-kick' }, x('body', {}, 'still here?')));
    const refused = await dave.expect((el) => el.name === 'message' && el.attrs.id === 'after-kick');
    assert.equal(refused.attrs.type, 'error');
    assert.equal(errorOf(refused), 'not-acceptable');
    await dave.close();
  });

  test('a moderator kicks; private messages both ways; self-ping; leaving', async () => {
    const erin = await onlineUser(kit, 'muc-erin', 'erin-irc', 'pw-e');
    const ops = room('#ops');
    const joined = await join(erin, ops, 'erin');
    assert.equal(item(joined.presences.find((p) => p.attrs.from === `${ops}/erin`)!).role, 'moderator', 'the first in the channel is operator');
    kit.net.remoteJoin('#ops', 'mallory');
    kit.net.remoteJoin('#ops', 'dan');
    await erin.expect((el) => el.name === 'presence' && el.attrs.from === `${ops}/mallory`);
    await erin.expect((el) => el.name === 'presence' && el.attrs.from === `${ops}/dan`);
    // Kick with the muc#admin IQ.
    const kick = await erin.iq(x('iq', { type: 'set', to: ops }, x('query', { xmlns: MUC_ADMIN }, x('item', { nick: 'mallory', role: 'none' }, x('reason', {}, 'bye')))));
    assert.equal(kick.attrs.type, 'result', String(kick));
    const out = await erin.expect((el) => el.name === 'presence' && el.attrs.from === `${ops}/mallory` && el.attrs.type === 'unavailable');
    assert.deepEqual(codes(out), [307]);
    // The network took the asked-for nick.
    assert.equal(out.getChild('x', MUC_USER)!.getChild('item')!.getChild('actor')?.attrs.nick, 'erin');
    // Private message to an occupant: to that nick on the network.
    erin.send(x('message', { to: `${ops}/dan`, type: 'chat', id: 'pm-1' }, x('body', {}, 'psst dan')));
    await until(() => kit.net.sent.some((s) => s.kind === 'message' && s.to === 'dan' && s.text === 'psst dan'), 'the private message');
    kit.net.remotePrivate('dan', bareOf(erin), 'psst back');
    const pm = await erin.expect((el) => el.name === 'message' && el.attrs.from === `dan%irc.one@${GW}`);
    assert.equal(pm.attrs.type, 'chat');
    assert.equal(pm.getChildText('body'), 'psst back');
    // XEP-0410 self-ping while joined, and after leaving.
    const ping = await erin.iq(x('iq', { type: 'get', to: `${ops}/erin` }, x('ping', { xmlns: NS.ping })));
    assert.equal(ping.attrs.type, 'result');
    erin.send(x('presence', { to: `${ops}/erin`, type: 'unavailable' }));
    const left = await erin.expect((el) => el.name === 'presence' && el.attrs.from === `${ops}/erin` && el.attrs.type === 'unavailable');
    assert.deepEqual(codes(left), [110]);
    await until(() => !kit.net.sessionOf(bareOf(erin))?.joined.has('#ops'), 'left on the network');
    const ping2 = await erin.iq(x('iq', { type: 'get', to: `${ops}/erin` }, x('ping', { xmlns: NS.ping })));
    assert.equal(errorOf(ping2), 'not-acceptable');
    await erin.close();
  });

  test('join errors carry the network condition: banned is forbidden, a wrong key not-authorized; the right key joins', async () => {
    const fred = await onlineUser(kit, 'muc-fred', 'fred-irc', 'pw-f');
    kit.net.room('#nofred', 'irc.one').banned.add('fred');
    fred.send(x('presence', { to: `${room('#nofred')}/fred` }, x('x', { xmlns: MUC })));
    const banned = await fred.expect((el) => el.name === 'presence' && el.attrs.type === 'error');
    assert.equal(banned.attrs.from, `${room('#nofred')}/fred`);
    assert.equal(errorOf(banned), 'forbidden');
    assert.ok(banned.getChild('x', MUC));
    kit.net.room('#locked', 'irc.one').password = 'sesame';
    fred.send(x('presence', { to: `${room('#locked')}/fred` }, x('x', { xmlns: MUC })));
    const locked = await fred.expect((el) => el.name === 'presence' && el.attrs.type === 'error');
    assert.equal(errorOf(locked), 'not-authorized');
    const ok = await join(fred, room('#locked'), 'fred', 'sesame');
    assert.ok(ok.presences.some((p) => codes(p).includes(110)));
    // An unregistered user: registration-required.
    const stranger = await kit.ts.user('muc-stranger');
    stranger.send(x('presence', { to: `${room('#lobby')}/stranger` }, x('x', { xmlns: MUC })));
    const reg = await stranger.expect((el) => el.name === 'presence' && el.attrs.type === 'error');
    assert.equal(errorOf(reg), 'registration-required');
    // Disco on a room works without joining.
    const info = await stranger.iq(x('iq', { type: 'get', to: room('#locked') }, x('query', { xmlns: NS.discoInfo })));
    assert.equal(info.getChild('query', NS.discoInfo)!.getChild('identity')!.attrs.category, 'conference');
    await fred.close();
    await stranger.close();
  });

  test('two resources share a room; the network room is left when the last one leaves', async () => {
    kit.net.remoteJoin('#shared', 'bob');
    const gina = await onlineUser(kit, 'muc-gina', 'gina-irc', 'pw-g');
    const shared = room('#shared');
    await join(gina, shared, 'gina-irc');
    const gina2 = await kit.ts.client();
    await gina2.login('muc-gina', 'secret-muc-gina', { resource: 'laptop' });
    gina2.send(x('presence'));
    const second = await join(gina2, shared, 'gina-irc');
    assert.ok(second.presences.some((p) => p.attrs.from === `${shared}/bob`));
    assert.deepEqual(codes(second.presences.find((p) => p.attrs.from === `${shared}/gina-irc`)!), [110]);
    kit.net.remoteSay('#shared', 'bob', 'to both');
    await gina.expect((el) => el.name === 'message' && el.getChildText('body') === 'to both');
    await gina2.expect((el) => el.name === 'message' && el.getChildText('body') === 'to both');
    // The echo reaches both resources.
    gina2.send(x('message', { to: shared, type: 'groupchat', id: 'g2' }, x('body', {}, 'from the laptop')));
    await gina.expect((el) => el.name === 'message' && el.attrs.id === 'g2');
    await gina2.expect((el) => el.name === 'message' && el.attrs.id === 'g2');
    gina.send(x('presence', { to: `${shared}/gina-irc`, type: 'unavailable' }));
    await gina.expect((el) => el.name === 'presence' && el.attrs.from === `${shared}/gina-irc` && el.attrs.type === 'unavailable');
    // A marker through the same per-user presence queue: once the network sees it, the leave
    // before it has been handled.
    gina2.send(x('presence', {}, x('priority', {}, '5'), x('status', {}, 'marker')));
    await until(() => kit.net.sessionOf(bareOf(gina))!.ownPresence?.status === 'marker', 'the marker presence on the network');
    assert.ok(kit.net.sessionOf(bareOf(gina))!.joined.has('#shared'), 'still in the network room');
    kit.net.remoteSay('#shared', 'bob', 'only laptop');
    await gina2.expect((el) => el.name === 'message' && el.getChildText('body') === 'only laptop');
    gina2.send(x('presence', { to: `${shared}/gina-irc`, type: 'unavailable' }));
    await until(() => !kit.net.sessionOf(bareOf(gina))!.joined.has('#shared'), 'left on the network');
    await gina.close();
    await gina2.close();
  });

  test('a room join alone logs in; leaving the last room logs out after the grace period', async () => {
    kit.net.addAccount('hank-irc', 'pw-h');
    const hank = await kit.ts.user('muc-hank');
    // Registered, but the gateway is not in the roster: no presence reaches it except the room join.
    assert.equal((await registerLegacy(hank, { username: 'hank-irc', password: 'pw-h', server: 'irc.two' })).attrs.type, 'result');
    const user = bareOf(hank);
    await until(() => kit.net.sessionOf(user, 'irc.two') === undefined || kit.net.sessionOf(user, 'irc.two')!.closed, 'the registration session ends after the grace period', 3000);
    await until(() => kit.net.sessionOf(user, 'irc.two') === undefined, 'logged out');
    hank.send(x('presence'));
    const r2 = `#dev%irc.two@${GW}`;
    await join(hank, r2, 'hank');
    const s = kit.net.sessionOf(user, 'irc.two');
    assert.ok(s && !s.closed, 'logged in to irc.two for the room');
    hank.send(x('presence', { to: `${r2}/hank`, type: 'unavailable' }));
    await until(() => s.closed, 'logged out after leaving', 3000);
    await hank.close();
  });

  test('a room the network joined by itself (autojoin) is there at once when the client joins', async () => {
    kit.net.remoteJoin('#auto', 'bob');
    const jane = await onlineUser(kit, 'muc-jane', 'jane-irc', 'pw-j');
    const user = bareOf(jane);
    await until(() => kit.net.sessionOf(user) !== undefined, 'a live session');
    const s = kit.net.sessionOf(user)!;
    kit.net.forceJoin(user, '#auto');
    await until(() => kit.transport.gateway.sessions.ofUser(user).some((us) => us.rooms.get(room('#auto'))?.joined === true), 'the kit to know the joined room');
    const calls = s.joinCalls;
    const joined = await join(jane, room('#auto'), 'jane-irc');
    assert.ok(joined.presences.some((p) => p.attrs.from === `${room('#auto')}/bob`));
    assert.deepEqual(codes(joined.presences.find((p) => p.attrs.from === `${room('#auto')}/jane-irc`)!), [110]);
    assert.equal(s.joinCalls, calls, 'no second network join');
    await jane.close();
  });

  test('a network that echoes room messages: the echo carries the client id, once', async () => {
    const other = await startKit({ fake: { echo: true } });
    try {
      other.net.remoteJoin('#echo', 'bob');
      const kim = await onlineUser(other, 'muc-kim', 'kim-irc', 'pw-k');
      const echoRoom = room('#echo');
      await join(kim, echoRoom, 'kim-irc');
      kim.send(x('message', { to: echoRoom, type: 'groupchat', id: 'e1' }, x('body', {}, 'echo me')));
      const echo = await kim.expect((el) => el.name === 'message' && el.getChildText('body') === 'echo me');
      assert.equal(echo.attrs.id, 'e1');
      assert.equal(echo.attrs.from, `${echoRoom}/kim-irc`);
      // The network's echo came before this, in order.
      other.net.remoteSay('#echo', 'bob', 'after the echo');
      await kim.expect((el) => el.name === 'message' && el.getChildText('body') === 'after the echo');
      assert.equal(kim.received.filter((el) => el.name === 'message' && el.getChildText('body') === 'echo me').length, 0, 'only one echo');
      await kim.close();
    } finally {
      await other.stop();
    }
  });

  test('a dropped connection: the others leave, and after the reconnect the room is joined again', async () => {
    kit.net.remoteJoin('#sturdy', 'bob');
    const ivan = await onlineUser(kit, 'muc-ivan', 'ivan-irc', 'pw-i');
    const sturdy = room('#sturdy');
    await join(ivan, sturdy, 'ivan-irc');
    const user = bareOf(ivan);
    const first = kit.net.sessionOf(user)!;
    kit.net.drop(user, 'connection reset');
    const left = await ivan.expect((el) => el.name === 'presence' && el.attrs.from === `${sturdy}/bob` && el.attrs.type === 'unavailable');
    assert.ok(left);
    await until(() => kit.net.sessionOf(user) !== undefined && kit.net.sessionOf(user) !== first, 'reconnected');
    const back = await ivan.expect((el) => el.name === 'presence' && el.attrs.from === `${sturdy}/ivan-irc` && codes(el).includes(110));
    assert.equal(back.attrs.type, undefined);
    await ivan.expect((el) => el.name === 'presence' && el.attrs.from === `${sturdy}/bob` && el.attrs.type === undefined);
    kit.net.remoteSay('#sturdy', 'bob', 'welcome back');
    await ivan.expect((el) => el.name === 'message' && el.getChildText('body') === 'welcome back');
    await ivan.close();
  });
});
