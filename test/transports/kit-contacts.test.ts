/**
 * Legacy contacts (XEP-0100 subscription flow, presence both ways, messages, XEP-0144 offers,
 * chat states, server messages) and the ad-hoc commands (XEP-0050): user settings, per-server
 * settings, admin list and disconnect.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { GW, bareOf, delay, errorOf, onlineUser, startKit, until, type Kit } from './kit-harness.js';

const COMMANDS = 'http://jabber.org/protocol/commands';
const ROSTERX = 'http://jabber.org/protocol/rosterx';

let kit: Kit;

before(async () => {
  kit = await startKit();
});

after(async () => {
  await kit.stop();
});

const contact = (id: string, server = 'irc.one') => `${id}%${server}@${GW}`;

function rosterItem(el: Element, jid: string): Element | undefined {
  return el.name === 'iq' ? el.getChild('query', NS.roster)?.getChildren('item').find((i) => i.attrs.jid === jid) : undefined;
}

async function command(c: TestClient, to: string, node: string, fields?: Record<string, string>, sessionid?: string): Promise<Element> {
  const cmd = x('command', { xmlns: COMMANDS, node, action: sessionid ? 'complete' : 'execute', sessionid });
  if (fields) {
    cmd.append(x('x', { xmlns: NS.dataForms, type: 'submit' }, Object.entries(fields).map(([k, v]) => x('field', { var: k }, x('value', {}, v)))));
  }
  return c.iq(x('iq', { type: 'set', to }, cmd));
}

function formValues(form: Element | undefined): Map<string, string[]> {
  return new Map((form?.getChildren('field') ?? []).map((f) => [f.attrs.var!, f.getChildren('value').map((v) => v.text())]));
}

/** Answers the gateway's disco#info to this client (XEP-0144 support check). */
async function answerDisco(c: TestClient, features: string[]): Promise<void> {
  const q = await c.expect((el) => el.name === 'iq' && el.attrs.type === 'get' && el.attrs.from === GW && !!el.getChild('query', NS.discoInfo));
  c.send(x('iq', { type: 'result', id: q.attrs.id, to: q.attrs.from }, x('query', { xmlns: NS.discoInfo }, x('identity', { category: 'client', type: 'pc' }), features.map((f) => x('feature', { var: f })))));
}

describe('transport kit: contacts and commands', () => {
  test('XEP-0100 adding a contact: subscribed, its presence, a subscription request back; presence follows the network', async () => {
    kit.net.remotePresenceChange('bob', 'away', 'brb');
    const alice = await onlineUser(kit, 'c-alice', 'alice-irc', 'pw-a');
    const bob = contact('bob');
    alice.send(x('presence', { type: 'subscribe', to: bob }));
    await alice.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribed' && el.attrs.from === bob);
    const req = await alice.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === bob);
    assert.ok(req);
    alice.send(x('presence', { type: 'subscribed', to: bob }));
    await alice.expect((el) => rosterItem(el, bob)?.attrs.subscription === 'both');
    const user = bareOf(alice);
    await until(() => kit.net.sessionOf(user)?.watching.has('bob') ?? false, 'the adapter watches bob');
    const away = await alice.expect((el) => el.name === 'presence' && el.attrs.from === bob && el.getChildText('show') === 'away');
    assert.equal(away.getChildText('status'), 'brb');
    kit.net.remotePresenceChange('bob', 'available');
    const avail = await alice.expect((el) => el.name === 'presence' && el.attrs.from === bob && el.attrs.type === undefined && !el.getChild('show'));
    assert.ok(avail);
    kit.net.remotePresenceChange('bob', 'unavailable');
    await alice.expect((el) => el.name === 'presence' && el.attrs.from === bob && el.attrs.type === 'unavailable');
    const reg = await kit.transport.storage.transports.getRegistration('fake', user);
    assert.deepEqual(reg?.contacts, [bob]);
    // Removing the contact from the roster stops the watch and the stored entry.
    await alice.iq(x('iq', { type: 'set' }, x('query', { xmlns: NS.roster }, x('item', { jid: bob, subscription: 'remove' }))));
    await until(async () => (await kit.transport.storage.transports.getRegistration('fake', user))?.contacts.length === 0, 'contact removed');
    await until(() => !kit.net.sessionOf(user)!.watching.has('bob'), 'unwatched');
    await alice.close();
  });

  test('messages both ways: chat, /me, the name, delay, attachments, escaped ids, chat states', async () => {
    const carol = await onlineUser(kit, 'c-carol', 'carol-irc', 'pw-c');
    const user = bareOf(carol);
    await until(() => kit.net.sessionOf(user) !== undefined, 'a live session');
    carol.send(x('message', { to: contact('dan'), type: 'chat', id: 'c1' }, x('body', {}, 'hi dan')));
    carol.send(x('message', { to: contact('dan'), type: 'chat', id: 'c2' }, x('body', {}, '/me grins')));
    await until(() => kit.net.sent.filter((s) => s.kind === 'message' && s.to === 'dan').length === 2, 'two messages');
    const sent = kit.net.sent.filter((s) => s.kind === 'message' && s.to === 'dan');
    assert.deepEqual(sent.map((s) => [s.text, s.action ?? false]), [['hi dan', false], ['grins', true]]);

    kit.net.remotePrivate('Dan', user, 'hey carol', { displayName: 'Dan the Man', timestamp: new Date('2026-01-02T03:04:05Z') });
    const m = await carol.expect((el) => el.name === 'message' && el.attrs.from === contact('dan'));
    assert.equal(m.attrs.type, 'chat');
    assert.equal(m.getChildText('body'), 'hey carol');
    assert.equal(m.getChild('nick', 'http://jabber.org/protocol/nick')?.text(), 'Dan the Man');
    assert.equal(m.getChild('delay', NS.delay)?.attrs.stamp, '2026-01-02T03:04:05Z');
    kit.net.remotePrivate('dan', user, 'shrugs', { action: true, attachments: ['https://example.org/pic.png'] });
    const a = await carol.expect((el) => el.name === 'message' && el.getChildText('body') === '/me shrugs');
    assert.equal(a.getChild('x', NS.oob)?.getChildText('url'), 'https://example.org/pic.png');
    // An id that needs XEP-0106 escaping, both ways.
    kit.net.remotePrivate("d'art@home", user, 'en garde');
    const e = await carol.expect((el) => el.name === 'message' && el.getChildText('body') === 'en garde');
    assert.equal(e.attrs.from, contact("d\\27art\\40home"));
    carol.send(x('message', { to: e.attrs.from, type: 'chat' }, x('body', {}, 'touché')));
    await until(() => kit.net.sent.some((s) => s.kind === 'message' && s.to === "d'art@home" && s.text === 'touché'), 'the reply to the unescaped id');
    // Chat states both ways.
    carol.send(x('message', { to: contact('dan'), type: 'chat' }, x('composing', { xmlns: 'http://jabber.org/protocol/chatstates' })));
    await until(() => kit.net.sent.some((s) => s.kind === 'typing' && s.to === 'dan' && s.text === 'composing'), 'typing to the network');
    kit.net.remoteTyping('dan', user, 'composing');
    const typing = await carol.expect((el) => el.name === 'message' && el.attrs.from === contact('dan') && !!el.getChild('composing', 'http://jabber.org/protocol/chatstates'));
    assert.equal(typing.getChild('body'), undefined);
    // Not registered: registration-required.
    const stranger = await kit.ts.user('c-stranger');
    stranger.send(x('message', { to: contact('dan'), type: 'chat', id: 's1' }, x('body', {}, 'hello?')));
    const err = await stranger.expect((el) => el.name === 'message' && el.attrs.id === 's1');
    assert.equal(errorOf(err), 'registration-required');
    assert.equal(err.getChild('body'), undefined, 'the error does not carry the body back');
    await carol.close();
    await stranger.close();
  });

  test('the network contact list: XEP-0144 suggestions when the client supports it, else subscription requests with the name', async () => {
    const erin = await onlineUser(kit, 'c-erin', 'erin-irc', 'pw-e');
    const user = bareOf(erin);
    await until(() => kit.net.sessionOf(user) !== undefined, 'a live session');
    kit.net.sendRoster(user, [{ id: 'zed', displayName: 'Zed Zed' }, { id: 'yan' }]);
    await answerDisco(erin, [NS.discoInfo, ROSTERX]);
    const offer = await erin.expect((el) => el.name === 'message' && !!el.getChild('x', ROSTERX));
    const items = offer.getChild('x', ROSTERX)!.getChildren('item');
    assert.deepEqual(items.map((i) => [i.attrs.action, i.attrs.jid, i.attrs.name]), [['add', contact('zed'), 'Zed Zed'], ['add', contact('yan'), 'yan']]);

    const fred = await onlineUser(kit, 'c-fred', 'fred-irc', 'pw-f');
    const fuser = bareOf(fred);
    await until(() => kit.net.sessionOf(fuser) !== undefined, 'a live session');
    kit.net.sendRoster(fuser, [{ id: 'zed', displayName: 'Zed Zed' }]);
    await answerDisco(fred, [NS.discoInfo]);
    const sub = await fred.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === contact('zed'));
    assert.equal(sub.getChild('nick', 'http://jabber.org/protocol/nick')?.text(), 'Zed Zed');
    await erin.close();
    await fred.close();
  });

  test('XEP-0050 user settings: server messages can be turned off; adapter settings reach the next login', async () => {
    const gina = await onlineUser(kit, 'c-gina', 'gina-irc', 'pw-g');
    const user = bareOf(gina);
    await until(() => kit.net.sessionOf(user) !== undefined, 'a live session');
    kit.net.serverNotice(user, '- irc.one Message of the Day -');
    const notice = await gina.expect((el) => el.name === 'message' && el.attrs.from === `irc.one@${GW}`);
    assert.equal(notice.getChildText('body'), '- irc.one Message of the Day -');

    const items = await gina.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoItems, node: COMMANDS })));
    const nodes = items.getChild('query', NS.discoItems)!.getChildren('item').map((i) => i.attrs.node);
    assert.deepEqual(nodes, ['settings'], 'no admin commands for users');
    const first = await command(gina, GW, 'settings');
    const cmd = first.getChild('command', COMMANDS)!;
    assert.equal(cmd.attrs.status, 'executing');
    const values = formValues(cmd.getChild('x', NS.dataForms));
    assert.deepEqual(values.get('serverMessages'), ['1']);
    assert.ok(values.has('quitMessage'));
    const done = await command(gina, GW, 'settings', { serverMessages: '0', quitMessage: 'see you' }, cmd.attrs.sessionid);
    assert.equal(done.getChild('command', COMMANDS)!.attrs.status, 'completed', String(done));
    kit.net.serverNotice(user, 'another notice');
    // A contact's message after it, as a marker: the notice would have come first.
    kit.net.remoteMessage('marker-nick', user, { text: 'after the notice' });
    await gina.expect((el) => el.name === 'message' && el.getChildText('body') === 'after the notice');
    assert.equal(gina.received.filter((el) => el.name === 'message' && el.getChildText('body') === 'another notice').length, 0);
    // The adapter's own setting is passed at the next login.
    const old = kit.net.sessionOf(user)!;
    kit.net.drop(user, 'reconnect please');
    await until(() => kit.net.sessionOf(user) !== undefined && kit.net.sessionOf(user) !== old, 'reconnected');
    assert.equal(kit.net.sessionOf(user)!.settings.quitMessage, 'see you');
    // A stale session id is refused.
    const stale = await command(gina, GW, 'settings', { serverMessages: '1' }, cmd.attrs.sessionid);
    assert.equal(errorOf(stale), 'bad-request');
    await gina.close();
  });

  test('XEP-0050 per-server settings at the server JID: tried before stored, the password never shown', async () => {
    const hank = await onlineUser(kit, 'c-hank', 'hank-irc', 'pw-h');
    const user = bareOf(hank);
    kit.net.addAccount('hank-two', 'pw-two');
    const serverJid = `irc.two@${GW}`;
    const first = await command(hank, serverJid, 'settings');
    const cmd = first.getChild('command', COMMANDS)!;
    const values = formValues(cmd.getChild('x', NS.dataForms));
    assert.deepEqual(values.get('username'), ['hank-irc']);
    assert.deepEqual(values.get('password'), []);
    assert.equal(String(first).includes('pw-h'), false);
    const bad = await command(hank, serverJid, 'settings', { username: 'hank-two', password: 'nope' }, cmd.attrs.sessionid);
    assert.equal(errorOf(bad), 'not-acceptable');
    const again = (await command(hank, serverJid, 'settings')).getChild('command', COMMANDS)!;
    const ok = await command(hank, serverJid, 'settings', { username: 'hank-two', password: 'pw-two' }, again.attrs.sessionid);
    assert.equal(ok.getChild('command', COMMANDS)!.attrs.status, 'completed', String(ok));
    const payload = kit.transport.gateway.vault.open((await kit.transport.storage.transports.getCredentials('fake', user))!);
    assert.deepEqual(payload.servers?.['irc.two'], { username: 'hank-two', password: 'pw-two' });
    assert.equal(payload.fields.username, 'hank-irc');
    const two = kit.net.sessionOf(user, 'irc.two');
    assert.ok(two && two.username === 'hank-two');
    await hank.close();
  });

  test('P21 admin commands: connected users without credentials; disconnecting a user', async () => {
    const ivan = await onlineUser(kit, 'c-ivan', 'ivan-irc', 'pw-i');
    const user = bareOf(ivan);
    await until(() => kit.net.sessionOf(user) !== undefined, 'a live session');
    const admin = await kit.ts.user('admin');
    const items = await admin.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoItems, node: COMMANDS })));
    const nodes = items.getChild('query', NS.discoItems)!.getChildren('item').map((i) => i.attrs.node);
    assert.deepEqual(nodes.sort(), ['disconnect', 'users']);
    const list = await command(admin, GW, 'users');
    const cmd = list.getChild('command', COMMANDS)!;
    assert.equal(cmd.attrs.status, 'completed');
    const form = cmd.getChild('x', NS.dataForms)!;
    assert.equal(form.attrs.type, 'result');
    const rows = form.getChildren('item').map((i) => formValues(i));
    const row = rows.find((r) => r.get('user')?.[0] === user);
    assert.ok(row, String(form));
    assert.deepEqual(row.get('account'), ['ivan-irc']);
    assert.deepEqual(row.get('server'), ['irc.one']);
    assert.deepEqual(row.get('state'), ['online']);
    assert.equal(String(list).includes('pw-'), false);
    // Users may not run admin commands.
    const denied = await command(ivan, GW, 'users');
    assert.equal(errorOf(denied), 'forbidden');

    // An earlier unavailable presence from the gateway (while the session was still connecting)
    // must not stand in for the one the disconnect sends.
    ivan.received.length = 0;
    const session = kit.net.sessionOf(user)!;
    const start = (await command(admin, GW, 'disconnect')).getChild('command', COMMANDS)!;
    const done = await command(admin, GW, 'disconnect', { user, reason: 'maintenance' }, start.attrs.sessionid);
    assert.equal(done.getChild('command', COMMANDS)!.attrs.status, 'completed');
    assert.match(done.getChild('command', COMMANDS)!.getChildText('note') ?? '', /1 session/);
    assert.equal(session.closed, true);
    const bye = await ivan.expect((el) => el.name === 'presence' && el.attrs.from === GW && el.attrs.type === 'unavailable');
    assert.equal(bye.getChildText('status'), 'maintenance');
    await until(async () => (await kit.audit(user)).at(-1)?.reason === 'maintenance', 'audit row');
    await delay(10);
    await ivan.close();
    await admin.close();
  });
});
