/**
 * The whole chain with the Discord adapter: an XMPP TestClient on Gatehouse, the transport kit over
 * XEP-0114 (component configured in Gatehouse), the Discord adapter (transports/discord, built by its
 * `createAdapter` from `network:` settings) and the fake Discord (test/fakes/discord.ts: REST and
 * gateway v10) with test-side Discord users on the other side.
 *
 * Registration with a bot token (stored encrypted: the token is nowhere in clear in the transport
 * database; a bad token is refused and nothing is stored), a direct message both ways (the Discord
 * user as a contact JID), a guild channel as a MUC room ("Guild / #channel" in disco), messages
 * both ways, corrections (XEP-0308), retractions (XEP-0424), reactions (XEP-0444) and replies
 * (XEP-0461), mentions as names, an attachment as a link (XEP-0066), a dropped gateway connection
 * resumed without lost or duplicated events, an outage longer than the grace time (the kit logs in
 * again), and the audit rows (P10).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { FakeDiscord, Op, type FakeChannel, type FakeGuild } from '../fakes/discord.js';
import { createAdapter } from '../../transports/discord/index.js';
import type { TransportConfig } from '../../transports/kit/config.js';
import type { RunningTransport } from '../../transports/kit/gateway.js';
import { escapeLocal } from '../../transports/kit/jid-escaping.js';
import { GW, bareOf, errorOf, registerForm, startServer, subscribeBoth, until } from './kit-harness.js';
import { transportFixture, type TransportFixture } from './transport-fixture.js';

const CORRECT = 'urn:xmpp:message-correct:0';
const RETRACT = 'urn:xmpp:message-retract:1';
const REACTIONS = 'urn:xmpp:reactions:0';
const REPLY = 'urn:xmpp:reply:0';
const MUC = 'http://jabber.org/protocol/muc';

describe('Discord transport end to end through Gatehouse', () => {
  let fake: FakeDiscord;
  let ts: TestServer;
  let transport: RunningTransport;
  let config: TransportConfig;
  let fixture: TransportFixture;
  let alice: TestClient;
  let user: string;
  let guild: FakeGuild;
  let general: FakeChannel;
  let bobId: string;
  let carolId: string;
  let dm: FakeChannel;
  const logLines: string[] = [];
  const everything: Element[] = [];

  const isMsg = (el: Element) => el.name === 'message';
  const contactJid = (id: string) => `${id}@${GW}`;
  const roomJid = (ch: FakeChannel) => `${escapeLocal(`#${ch.id}`)}@${GW}`;
  const count = (body: string) => everything.filter((el) => isMsg(el) && el.getChildText('body') === body).length;
  /** A message in the DM and in the room, waited for: delivery is in order, so a duplicate would have come first. */
  const markers = async (tag: string) => {
    fake.say(dm.id, bobId, `${tag} dm marker`);
    fake.say(general.id, carolId, `${tag} room marker`);
    await alice.expect((el) => isMsg(el) && el.getChildText('body') === `${tag} dm marker`, 8000);
    await alice.expect((el) => isMsg(el) && el.getChildText('body') === `${tag} room marker`, 8000);
  };
  const posted = (channelId: string, pred: (body: any) => boolean) =>
    fake.waitForRequest({ method: 'POST', path: `/channels/${channelId}/messages`, pred: (r) => r.status < 300 && pred(r.body) }, 8000);

  before(async () => {
    fake = await FakeDiscord.start({ heartbeatIntervalMs: 400 });
    const olga = fake.createUser('olga', { globalName: 'Olga' });
    guild = fake.createGuild('Gatehouse', { ownerId: olga.id });
    general = fake.createChannel(guild.id, 'general', { topic: 'Welcome to Gatehouse' });
    bobId = fake.createUser('bob', { globalName: 'Bob' }).id;
    carolId = fake.createUser('carol', { globalName: 'Carol' }).id;
    fake.addMember(guild.id, bobId, { nick: 'Bobby' });
    fake.addMember(guild.id, carolId);
    dm = fake.dmChannel(bobId);
    fake.say(dm.id, bobId, 'history before registration');

    ts = await startServer();
    fixture = transportFixture({
      adapter: 'discord',
      createAdapter,
      componentPort: ts.componentPort,
      logLines,
      settings: {
        admins: ['admin@localhost'],
        // Seconds, as in a transport's YAML file: a short outage tolerance.
        network: { api: fake.apiBase, reconnectGraceSeconds: 2, loginTimeoutSeconds: 5, maxRateLimitWaitSeconds: 5 },
      },
    });
    config = fixture.config;
    transport = await fixture.start();

    alice = await ts.user('dc-alice');
    // Every stanza the client gets, also those a test's expect() took (to count deliveries).
    const client = alice as unknown as { onElement(el: Element): void };
    const onElement = client.onElement.bind(alice);
    client.onElement = (el) => {
      everything.push(el);
      onElement(el);
    };
    user = bareOf(alice);
    await alice.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
    alice.send(x('presence'));
    await alice.expect((el) => el.name === 'presence' && el.attrs.from === alice.jid);
  });

  after(async () => {
    await alice?.close().catch(() => undefined);
    await fixture?.stop();
    await ts?.stop();
    await fake?.close();
  });

  test('P9 registration with a bot token: a bad token is refused and nothing stored; the token is stored encrypted', async () => {
    const form = await alice.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.register })));
    const vars = form.getChild('query', NS.register)!.getChild('x', NS.dataForms)!.getChildren('field').map((f) => f.attrs.var);
    assert.ok(vars.includes('password'), `form fields: ${vars.join(', ')}`);

    // A well-formed token Discord does not know: refused, nothing stored.
    const badToken = 'MTIzNDU2Nzg5MDEyMzQ1Njc4.bad0.AAAAAAAAAAAAAAAAAAAAAAAAAAA';
    const refused = await registerForm(alice, { password: badToken });
    assert.equal(refused.attrs.type, 'error', String(refused));
    assert.equal(errorOf(refused), 'not-acceptable', String(refused));
    assert.ok(!String(refused).includes(badToken));
    assert.equal(await transport.storage.transports.getRegistration('discord', user), null);

    const ok = await registerForm(alice, { password: `Bot ${fake.token}` });
    assert.equal(ok.attrs.type, 'result', String(ok));
    await subscribeBoth(alice);
    assert.ok(await transport.storage.transports.getRegistration('discord', user), 'registered');
    const prepared = await transport.gateway.registration.loginRequestFor(user, undefined);
    assert.ok(prepared);
    assert.ok(String(prepared.credentials.password).includes(fake.token), 'the vault holds the token');

    // Scan every byte of the transport database (and its WAL): the token is not there in clear.
    const dbFiles = [config.storage.path!, `${config.storage.path}-wal`, `${config.storage.path}-journal`].filter((f) => existsSync(f));
    const bytes = Buffer.concat(dbFiles.map((f) => readFileSync(f)));
    // Positive control: the scan finds what is stored in clear (the registration's JID), so a miss below means something.
    assert.ok(bytes.includes(Buffer.from(user)), 'the scan finds the registered JID');
    for (const marker of [fake.token, fake.token.split('.').at(-1)!, badToken]) {
      assert.equal(bytes.indexOf(marker), -1, 'the token is not in the database in clear');
      assert.equal(bytes.indexOf(Buffer.from(marker, 'utf16le')), -1);
    }
    assert.ok(!logLines.join('\n').includes(fake.token), 'no token in the log');
    assert.ok(!logLines.join('\n').includes(badToken), 'no bad token in the log');
    // The available presence logs in: IDENTIFY on the gateway.
    await fake.waitForOp(Op.Identify, 1, 8000);
    await until(async () => (await transport.storage.transports.queryAudit({ userJid: user })).some((r) => r.event === 'connected'), 'a connected row', 8000);
  });

  test('a direct message both ways, the Discord user as a contact JID; history is not replayed', async () => {
    const bob = contactJid(bobId);
    fake.say(dm.id, bobId, 'hello from discord');
    const inbound = await alice.expect((el) => isMsg(el) && el.getChildText('body') === 'hello from discord', 8000);
    assert.equal(inbound.attrs.from, bob);
    assert.equal(inbound.attrs.type, 'chat');
    assert.equal(count('history before registration'), 0, 'no replay of old history');

    alice.send(x('message', { to: bob, type: 'chat', id: 'x-dm-1' }, x('body', {}, 'hello from xmpp')));
    const sent = await posted(dm.id, (b) => b.content === 'hello from xmpp');
    assert.equal(sent.botId, fake.bot.id);
  });

  test('a guild channel as a MUC room named "Guild / #channel", messages both ways, mentions as names, an attachment as a link', async () => {
    const room = roomJid(general);
    alice.send(x('presence', { to: `${room}/alice` }, x('x', { xmlns: MUC })));
    const subject = await alice.expect((el) => isMsg(el) && el.attrs.from?.startsWith(room) === true && !!el.getChild('subject'), 10000);
    assert.equal(subject.getChildText('subject'), 'Welcome to Gatehouse');
    // The own nick is the bot's name on Discord (status 210: the service chose it).
    const self = await alice.expect((el) => el.name === 'presence' && el.attrs.from?.startsWith(`${room}/`) === true && !!el.getChild('x', `${MUC}#user`)?.getChildren('status').some((st) => st.attrs.code === '110'), 10000);
    assert.equal(self.attrs.from, `${room}/gatehouse-bot`);
    assert.ok(self.getChild('x', `${MUC}#user`)!.getChildren('status').some((st) => st.attrs.code === '210'));
    const occupants = alice.received.filter((el) => el.name === 'presence' && el.attrs.from?.startsWith(`${room}/`) === true).map((el) => el.attrs.from);
    assert.ok(occupants.includes(`${room}/Bobby`), `Bobby is an occupant: ${occupants.join(', ')}`);

    const info = await alice.iq(x('iq', { type: 'get', to: room }, x('query', { xmlns: NS.discoInfo })));
    const identity = info.getChild('query', NS.discoInfo)!.getChild('identity')!;
    assert.equal(identity.attrs.category, 'conference');
    assert.equal(identity.attrs.name, 'Gatehouse / #general');
    const items = await alice.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoItems })));
    const item = items.getChild('query', NS.discoItems)!.getChildren('item').find((i) => i.attrs.jid === room);
    assert.ok(item, String(items));
    assert.equal(item.attrs.name, 'Gatehouse / #general');

    fake.say(general.id, carolId, 'hello room');
    const inbound = await alice.expect((el) => isMsg(el) && el.getChildText('body') === 'hello room', 8000);
    assert.equal(inbound.attrs.from, `${room}/Carol`);
    assert.equal(inbound.attrs.type, 'groupchat');

    alice.send(x('message', { to: room, type: 'groupchat', id: 'x-g1' }, x('body', {}, 'hello discord room')));
    const echo = await alice.expect((el) => isMsg(el) && el.attrs.id === 'x-g1', 8000);
    assert.equal(echo.attrs.type, 'groupchat');
    assert.equal(echo.attrs.from, `${room}/gatehouse-bot`);
    await posted(general.id, (b) => b.content === 'hello discord room');
    // Discord's echo was dispatched before this marker, and delivery is in order.
    fake.say(general.id, carolId, 'echo marker');
    await alice.expect((el) => isMsg(el) && el.getChildText('body') === 'echo marker', 8000);
    assert.equal(count('hello discord room'), 1, "Discord's echo of the bot's message is not delivered twice");

    // Mentions become names (the server nick wins over the global name).
    fake.say(general.id, carolId, `hey <@${bobId}>, and <@${fake.bot.id}>`);
    const mention = await alice.expect((el) => isMsg(el) && el.getChildText('body')?.startsWith('hey @') === true, 8000);
    assert.equal(mention.getChildText('body'), 'hey @Bobby, and @gatehouse-bot');

    // An attachment arrives as a link (in the body and as XEP-0066).
    const pic = fake.say(general.id, bobId, 'a picture', { attachments: [{ filename: 'cat.png', content_type: 'image/png' }] });
    const url = pic.attachments[0]!.url;
    const withFile = await alice.expect((el) => isMsg(el) && el.getChildText('body')?.startsWith('a picture') === true, 8000);
    assert.ok(withFile.getChildText('body')!.includes(url), String(withFile));
    assert.equal(withFile.getChild('x', NS.oob)?.getChildText('url'), url);
    assert.equal(withFile.attrs.from, `${room}/Bobby`);
  });

  test('XEP-0308 / 0424 / 0444 / 0461: edits, deletions, reactions and replies both ways', async () => {
    const bob = contactJid(bobId);
    const room = roomJid(general);
    // Out, in the room: by the client's ids.
    alice.send(x('message', { to: room, type: 'groupchat', id: 'x-e1' }, x('body', {}, 'teh typo')));
    await alice.expect((el) => isMsg(el) && el.attrs.id === 'x-e1', 8000);
    const orig = await posted(general.id, (b) => b.content === 'teh typo');
    const origId = await until(() => [...general.messages.values()].some((m) => m.message.content === 'teh typo'), 'the message stored', 3000).then(
      () => [...general.messages.values()].find((m) => m.message.content === 'teh typo')!.message.id,
    );
    assert.ok(orig);
    alice.send(x('message', { to: room, type: 'groupchat', id: 'x-e2' }, x('body', {}, 'the typo'), x('replace', { xmlns: CORRECT, id: 'x-e1' })));
    const patch = await fake.waitForRequest({ method: 'PATCH', path: `/channels/${general.id}/messages/${origId}` }, 8000);
    assert.equal(patch.body.content, 'the typo');
    assert.equal(fake.getMessage(general.id, origId)?.content, 'the typo');
    alice.send(x('message', { to: room, type: 'groupchat', id: 'x-e3' }, x('retract', { xmlns: RETRACT, id: 'x-e1' }), x('body', {}, 'retracted')));
    // The room reflects the retraction to the client, as a MUC does.
    const reflected = await alice.expect((el) => isMsg(el) && el.attrs.id === 'x-e3', 8000);
    assert.equal(reflected.getChild('retract', RETRACT)?.attrs.id, 'x-e1');
    await fake.waitForRequest({ method: 'DELETE', path: `/channels/${general.id}/messages/${origId}` }, 8000);
    await until(() => !fake.getMessage(general.id, origId), 'the message deleted', 3000);

    // Out, with the contact: a reaction and a reply to Bob's message.
    const theirs = fake.say(dm.id, bobId, 'react to this');
    const got = await alice.expect((el) => isMsg(el) && el.getChildText('body') === 'react to this', 8000);
    assert.equal(got.attrs.id, theirs.id);
    alice.send(x('message', { to: bob, type: 'chat', id: 'x-r1' }, x('reactions', { xmlns: REACTIONS, id: theirs.id }, x('reaction', {}, '👍'))));
    await fake.waitForRequest({ method: 'PUT', path: new RegExp(`^/channels/${dm.id}/messages/${theirs.id}/reactions/`) }, 8000);
    await until(() => (fake.reactionsOf(dm.id, theirs.id).get('👍') ?? []).includes(fake.bot.id), 'the reaction on Discord', 3000);
    alice.send(x('message', { to: bob, type: 'chat', id: 'x-rp1' }, x('body', {}, 'my answer'), x('reply', { xmlns: REPLY, id: theirs.id, to: bob })));
    const replyOut = await posted(dm.id, (b) => b.message_reference?.message_id === theirs.id);
    assert.match(String(replyOut.body.content), /my answer/);

    // In: Discord events become XMPP ones, ids of messages sent through the transport mapped back.
    const mine = [...dm.messages.values()].find((m) => m.message.content === 'hello from xmpp')!.message.id;
    fake.say(dm.id, bobId, 'welcome', { replyTo: mine });
    const replyIn = await alice.expect((el) => isMsg(el) && el.getChildText('body') === 'welcome', 8000);
    assert.equal(replyIn.getChild('reply', REPLY)?.attrs.id, 'x-dm-1', String(replyIn));
    fake.edit(dm.id, theirs.id, 'react to that');
    const editIn = await alice.expect((el) => isMsg(el) && el.getChildText('body') === 'react to that', 8000);
    assert.equal(editIn.getChild('replace', CORRECT)?.attrs.id, theirs.id);
    fake.react(dm.id, mine, bobId, '🎉');
    const reactIn = await alice.expect((el) => isMsg(el) && !!el.getChild('reactions', REACTIONS), 8000);
    assert.equal(reactIn.getChild('reactions', REACTIONS)!.attrs.id, 'x-dm-1');
    assert.deepEqual(reactIn.getChild('reactions', REACTIONS)!.getChildren('reaction').map((r) => r.text()), ['🎉']);
    assert.equal(reactIn.attrs.from, bob);
    fake.delete(dm.id, theirs.id);
    const retractIn = await alice.expect((el) => isMsg(el) && el.attrs.from === bob && !!el.getChild('retract', RETRACT), 8000);
    assert.equal(retractIn.getChild('retract', RETRACT)!.attrs.id, theirs.id);
    assert.equal(retractIn.attrs.from, bob);

    // In, in the room: an edit and a deletion by a Discord user.
    const roomMsg = fake.say(general.id, carolId, 'room typo');
    await alice.expect((el) => isMsg(el) && el.getChildText('body') === 'room typo', 8000);
    fake.edit(general.id, roomMsg.id, 'room fixed');
    const roomEdit = await alice.expect((el) => isMsg(el) && el.getChildText('body') === 'room fixed', 8000);
    assert.equal(roomEdit.attrs.from, `${room}/Carol`);
    assert.ok(roomEdit.getChild('replace', CORRECT)?.attrs.id, String(roomEdit));
    fake.delete(general.id, roomMsg.id);
    const roomRetract = await alice.expect((el) => isMsg(el) && el.attrs.from === `${room}/Carol` && !!el.getChild('retract', RETRACT), 8000);
    assert.equal(roomRetract.getChild('retract', RETRACT)!.attrs.id, roomEdit.getChild('replace', CORRECT)!.attrs.id);
  });

  test('a dropped gateway connection is resumed: nothing lost, nothing twice, no disconnect', async () => {
    const bob = contactJid(bobId);
    const room = roomJid(general);
    fake.say(dm.id, bobId, 'before the drop');
    await alice.expect((el) => isMsg(el) && el.getChildText('body') === 'before the drop', 8000);
    const resumes = fake.gatewayReceived.filter((p) => p.op === Op.Resume).length;
    const identifies = fake.gatewayReceived.filter((p) => p.op === Op.Identify).length;
    const disconnectsBefore = (await transport.storage.transports.queryAudit({ userJid: user })).filter((r) => r.event === 'disconnected').length;
    fake.dropGateway();
    // While the bot is away:
    fake.say(dm.id, bobId, 'during the drop');
    fake.say(general.id, carolId, 'room during the drop');
    await fake.waitForOp(Op.Resume, resumes + 1, 8000);
    const missed = await alice.expect((el) => isMsg(el) && el.getChildText('body') === 'during the drop', 8000);
    assert.equal(missed.attrs.from, bob);
    const missedRoom = await alice.expect((el) => isMsg(el) && el.getChildText('body') === 'room during the drop', 8000);
    assert.equal(missedRoom.attrs.from, `${room}/Carol`);
    fake.say(dm.id, bobId, 'after the drop');
    await alice.expect((el) => isMsg(el) && el.getChildText('body') === 'after the drop', 8000);
    await markers('drop');
    for (const body of ['hello from discord', 'before the drop', 'during the drop', 'room during the drop', 'after the drop']) assert.equal(count(body), 1, `${body} once`);
    assert.equal(fake.gatewayReceived.filter((p) => p.op === Op.Identify).length, identifies, 'resumed, not identified again');
    const after = (await transport.storage.transports.queryAudit({ userJid: user })).filter((r) => r.event === 'disconnected').length;
    assert.equal(after, disconnectsBefore, 'no disconnected row for a resumed connection');
  });

  test('P10 an outage longer than the grace time: disconnected, the kit logs in again; audit rows', async () => {
    const room = roomJid(general);
    const identifies = fake.gatewayReceived.filter((p) => p.op === Op.Identify).length;
    const seen = everything.length;
    const isSelf = (el: Element) =>
      el.name === 'presence' && el.attrs.from === `${room}/gatehouse-bot` && !!el.getChild('x', `${MUC}#user`)?.getChildren('status').some((st) => st.attrs.code === '110');
    fake.refuseGateway(3000);
    await until(async () => (await transport.storage.transports.queryAudit({ userJid: user })).some((r) => r.event === 'disconnected'), 'a disconnected row', 10000);
    await fake.waitForOp(Op.Identify, identifies + 1, 15000);
    await until(async () => (await transport.storage.transports.queryAudit({ userJid: user })).filter((r) => r.event === 'connected').length >= 2, 'connected again', 10000);
    // The room is joined again after the reconnect (the failed attempts in between do not make the client leave it).
    await until(() => everything.slice(seen).some((el) => isSelf(el) && el.attrs.type === undefined), 'the room joined again', 10000);
    const fresh = everything.slice(seen);
    assert.ok(!fresh.some((el) => el.name === 'presence' && el.attrs.type === 'error' && el.attrs.from?.startsWith(`${room}/`) === true), 'no join error from the room');
    assert.ok(!fresh.some((el) => isSelf(el) && el.attrs.type === 'unavailable'), 'the client was not made to leave the room');
    // Usable again: a DM both ways, and the room.
    fake.say(dm.id, bobId, 'after the outage');
    await alice.expect((el) => isMsg(el) && el.getChildText('body') === 'after the outage', 10000);
    fake.say(general.id, carolId, 'room after the outage');
    const roomAfter = await alice.expect((el) => isMsg(el) && el.getChildText('body') === 'room after the outage', 10000);
    assert.equal(roomAfter.attrs.from, `${room}/Carol`);
    await markers('outage');
    assert.equal(count('after the outage'), 1);
    assert.equal(count('during the drop'), 1, 'not replayed by the new session');

    const rows = await transport.storage.transports.queryAudit({ userJid: user });
    const events: string[] = rows.map((r) => r.event);
    assert.ok(rows.every((r) => r.network === 'discord'));
    const idx = (e: string, from = 0) => events.indexOf(e, from);
    const c1 = idx('connecting');
    const ok1 = idx('connected', c1);
    const d1 = idx('disconnected', ok1);
    const c2 = idx('connecting', d1);
    const ok2 = idx('connected', c2);
    assert.ok(c1 !== -1 && ok1 > c1 && d1 > ok1 && c2 > d1 && ok2 > c2, `connecting, connected, disconnected, connecting, connected in order: ${events.join(', ')}`);
    // The token names no account: the rows name the bot (P10).
    const named = rows.filter((r) => r.event === 'connected' || r.event === 'disconnected');
    assert.ok(named.length >= 3);
    for (const r of named) assert.equal(r.account, `gatehouse-bot (${fake.bot.id})`, `${r.event} names the bot`);
    assert.match(rows.find((r) => r.event === 'disconnected')!.reason ?? '', /Discord gateway/);
    const text = JSON.stringify(rows);
    assert.ok(!text.includes(fake.token), 'no token in the audit rows');
  });
});
