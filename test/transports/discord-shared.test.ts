/**
 * The Discord transport with the operator's shared bot (network.sharedBot), end to end: two XMPP
 * users on Gatehouse register without a bot token, browse the gateway's disco#items (guild →
 * channels and active threads), join the same Discord channel as a MUC room and see each other's
 * messages, which Discord gets through the channel's webhook under each user's nick; Discord
 * members are occupants; a thread is a room too; what is said during a fresh gateway session's
 * gap arrives afterwards as MUC history with delay stamps. The fake Discord speaks the REST API
 * and gateway v10 (webhooks, threads, history).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { FakeDiscord, Op, Perm, type FakeChannel, type FakeGuild } from '../fakes/discord.js';
import { createAdapter } from '../../transports/discord/index.js';
import type { RunningTransport } from '../../transports/kit/gateway.js';
import { escapeLocal } from '../../transports/kit/jid-escaping.js';
import { transportFixture, type TransportFixture } from './transport-fixture.js';
import { GW, bareOf, errorOf, registerForm, startServer, subscribeBoth, until } from './kit-harness.js';

const MUC = 'http://jabber.org/protocol/muc';
const DELAY = 'urn:xmpp:delay';
/** A tiny PNG (the header is enough for the test: the bytes must arrive unchanged). */
const CAROL_PICTURE = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.from('carol-avatar-pixels')]);

describe('Discord shared bot end to end through Gatehouse', () => {
  let fake: FakeDiscord;
  let ts: TestServer;
  let transport: RunningTransport;
  let dir: string;
  let alice: TestClient;
  let bob: TestClient;
  let guild: FakeGuild;
  let general: FakeChannel;
  let closed: FakeChannel;
  let thread: FakeChannel;
  let carolId: string;
  let fixture: TransportFixture;
  const logLines: string[] = [];
  /** Every stanza each client got, also those an expect() took (to count deliveries). */
  const everything = new Map<TestClient, Element[]>();
  const record = (c: TestClient) => {
    const seen: Element[] = [];
    everything.set(c, seen);
    const client = c as unknown as { onElement(el: Element): void };
    const onElement = client.onElement.bind(c);
    client.onElement = (el) => {
      seen.push(el);
      onElement(el);
    };
  };
  const count = (c: TestClient, text: string) => everything.get(c)!.filter(body(text)).length;

  const isMsg = (el: Element) => el.name === 'message';
  const roomJid = (ch: FakeChannel) => `${escapeLocal(`#${ch.id}`)}@${GW}`;
  const body = (text: string) => (el: Element) => isMsg(el) && el.getChildText('body') === text;
  const selfPresence = (room: string) => (el: Element) =>
    el.name === 'presence' && el.attrs.from?.startsWith(`${room}/`) === true && !!el.getChild('x', `${MUC}#user`)?.getChildren('status').some((st) => st.attrs.code === '110');
  const join = async (c: TestClient, room: string, nick: string) => {
    c.send(x('presence', { to: `${room}/${nick}` }, x('x', { xmlns: MUC })));
    return c.expect(selfPresence(room), 10000);
  };
  const executions = (hookPred: (r: { path: string; query: Record<string, string>; body: any }) => boolean) =>
    fake.requests.filter((r) => r.method === 'POST' && /^\/webhooks\/\d+\/[^/]+$/.test(r.path) && r.status < 300 && hookPred(r));

  before(async () => {
    fake = await FakeDiscord.start({ heartbeatIntervalMs: 400 });
    const olga = fake.createUser('olga', { globalName: 'Olga' });
    guild = fake.createGuild('Community', { ownerId: olga.id });
    general = fake.createChannel(guild.id, 'general', { topic: 'Be nice' });
    closed = fake.createChannel(guild.id, 'staff');
    carolId = fake.createUser('carol', { globalName: 'Carol' }).id;
    fake.addMember(guild.id, carolId);
    fake.setAvatar(carolId, CAROL_PICTURE);
    // The operator invited the bot with Manage Webhooks.
    const botRole = fake.createRole(guild.id, 'Bridge', Perm.ManageWebhooks).id;
    fake.updateMember(guild.id, fake.bot.id, { roles: [botRole] });
    thread = fake.createThread(general.id, 'release planning', { ownerId: carolId });
    fake.say(general.id, carolId, 'said before anyone linked');

    ts = await startServer();
    dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-discord-shared-'));
    const tokenFile = path.join(dir, 'discord-bot.token');
    writeFileSync(tokenFile, `${fake.token}\n`, { mode: 0o600 });
    fixture = transportFixture({
      adapter: 'discord',
      createAdapter,
      componentPort: ts.componentPort,
      dir,
      logLines,
      settings: {
        network: {
          api: fake.apiBase,
          cdn: fake.cdnBase,
          reconnectGraceSeconds: 3,
          loginTimeoutSeconds: 5,
          historyLimit: 10,
          sharedBot: { tokenFile, guilds: [guild.id], channels: [general.id] },
        },
      },
    });
    transport = await fixture.start();
    alice = await ts.user('sb-alice');
    bob = await ts.user('sb-bob');
    for (const c of [alice, bob]) {
      record(c);
      await c.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
      c.send(x('presence'));
      await c.expect((el) => el.name === 'presence' && el.attrs.from === c.jid);
    }
  });

  after(async () => {
    await alice?.close().catch(() => undefined);
    await bob?.close().catch(() => undefined);
    await fixture?.stop();
    await ts?.stop();
    await fake?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('registration without a bot token links to the shared bot; the token is never in the log', async () => {
    const form = await alice.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.register })));
    const field = form.getChild('query', NS.register)!.getChild('x', NS.dataForms)!.getChildren('field').find((f) => f.attrs.var === 'password');
    assert.ok(field, String(form));
    assert.equal(field.getChild('required'), undefined, 'the token is optional');
    for (const c of [alice, bob]) {
      const ok = await registerForm(c, { password: '' });
      assert.equal(ok.attrs.type, 'result', String(ok));
      await subscribeBoth(c);
    }
    await until(async () => (await transport.storage.transports.queryAudit({ userJid: bareOf(bob) })).some((r) => r.event === 'connected'), 'a connected row', 8000);
    const row = (await transport.storage.transports.queryAudit({ userJid: bareOf(alice) })).find((r) => r.event === 'connected')!;
    assert.match(String(row.account), /^gatehouse-bot \(\d+\), shared$/);
    // One gateway session for both users.
    assert.equal(fake.gatewayReceived.filter((p) => p.op === Op.Identify).length, 1);
    assert.ok(!logLines.join('\n').includes(fake.token), 'no token in the log');
  });

  test('disco#items on the gateway: the guild, then its open channels and active threads', async () => {
    const top = await alice.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoItems })));
    const guildItem = top.getChild('query', NS.discoItems)!.getChildren('item').find((i) => i.attrs.node === `guild/${guild.id}`);
    assert.ok(guildItem, String(top));
    assert.equal(guildItem.attrs.jid, GW);
    assert.equal(guildItem.attrs.name, 'Community');
    const info = await alice.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoInfo, node: guildItem.attrs.node })));
    assert.equal(info.getChild('query', NS.discoInfo)!.getChild('identity')!.attrs.category, 'hierarchy');
    const inGuild = await alice.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoItems, node: guildItem.attrs.node })));
    const items = inGuild.getChild('query', NS.discoItems)!.getChildren('item');
    const byJid = new Map(items.map((i) => [i.attrs.jid, i.attrs.name]));
    assert.equal(byJid.get(roomJid(general)), 'Community / #general', String(inGuild));
    assert.equal(byJid.get(roomJid(thread)), '#general / release planning', String(inGuild));
    assert.ok(!byJid.has(roomJid(closed)), 'a channel the operator did not open is not listed');
    const unknown = await alice.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoItems, node: 'guild/123456789012345678' })));
    assert.equal(errorOf(unknown), 'item-not-found');
  });

  test('two XMPP users in one channel: each sees the other under their nick, Discord sees webhook authors, nobody gets their own message twice', async () => {
    const room = roomJid(general);
    const aliceSelf = await join(alice, room, 'alice');
    assert.equal(aliceSelf.attrs.from, `${room}/alice`);
    await join(bob, room, 'bob');
    // The linked users are occupants of each other's room.
    await alice.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/bob` && el.attrs.type === undefined, 8000);
    assert.ok(everything.get(bob)!.some((el) => el.name === 'presence' && el.attrs.from === `${room}/alice`), 'bob sees alice in the room');
    const occupants = everything.get(alice)!.filter((el) => el.name === 'presence' && el.attrs.from?.startsWith(`${room}/`) === true).map((el) => el.attrs.from);
    assert.ok(occupants.includes(`${room}/Carol`), `Discord members are occupants: ${occupants.join(', ')}`);

    alice.send(x('message', { to: room, type: 'groupchat', id: 'sb-1' }, x('body', {}, 'hello from alice')));
    const echo = await alice.expect((el) => isMsg(el) && el.attrs.id === 'sb-1', 8000);
    assert.equal(echo.attrs.from, `${room}/alice`);
    const atBob = await bob.expect(body('hello from alice'), 8000);
    assert.equal(atBob.attrs.from, `${room}/alice`);
    assert.equal(atBob.attrs.type, 'groupchat');
    // Discord got it from the channel's webhook, under alice's nick.
    const stored = [...general.messages.values()].map((m) => m.message).find((m) => m.content === 'hello from alice')!;
    assert.ok(stored.webhook_id, 'posted through a webhook');
    assert.equal(stored.author.username, 'alice');
    const exec = executions((r) => r.body?.content === 'hello from alice');
    assert.equal(exec.length, 1);
    assert.equal(exec[0]!.query.wait, 'true');
    assert.deepEqual(exec[0]!.body.allowed_mentions, { parse: ['users'] }, 'no role or @everyone pings through the shared bot');

    bob.send(x('message', { to: room, type: 'groupchat', id: 'sb-2' }, x('body', {}, 'hello from bob')));
    const atAlice = await alice.expect(body('hello from bob'), 8000);
    assert.equal(atAlice.attrs.from, `${room}/bob`);
    fake.say(general.id, carolId, 'hello from carol');
    assert.equal((await alice.expect(body('hello from carol'), 8000)).attrs.from, `${room}/Carol`);
    assert.equal((await bob.expect(body('hello from carol'), 8000)).attrs.from, `${room}/Carol`);
    // Delivery is in order: an echo of alice's own message would have come before Carol's.
    assert.equal(count(alice, 'hello from alice'), 1, 'alice got her message once (the kit echo)');
    assert.equal(count(bob, 'hello from bob'), 1);
    assert.equal(count(bob, 'hello from alice'), 1);
    // One webhook for the channel, made once by the bot and reused.
    const hooks = fake.webhooks.filter((h) => h.channelId === general.id);
    assert.equal(hooks.length, 1);
    assert.equal(hooks[0]!.applicationId, fake.bot.id);
    assert.equal(fake.sent({ method: 'POST', path: `/channels/${general.id}/webhooks` }).length, 1);
    // No bot message in the channel: everything XMPP users said came through the webhook.
    assert.ok(![...general.messages.values()].some((m) => m.message.author.id === fake.bot.id));
  });

  test("avatars: occupants' presence carries the XEP-0153 hash, vCard-temp on the occupant and contact JIDs has the picture, fetched once by the transport", async () => {
    const room = roomJid(general);
    const sha1 = createHash('sha1').update(CAROL_PICTURE).digest('hex');
    // The picture is fetched lazily; the occupant's presence comes again with the hash.
    const withHash = await alice.expect(
      (el) => el.name === 'presence' && el.attrs.from === `${room}/Carol` && el.getChild('x', 'vcard-temp:x:update')?.getChildText('photo') === sha1,
      8000,
    );
    assert.ok(withHash.getChild('x', `${MUC}#user`), String(withHash));
    const vcard = await alice.iq(x('iq', { type: 'get', to: `${room}/Carol` }, x('vCard', { xmlns: 'vcard-temp' })));
    const photo = vcard.getChild('vCard', 'vcard-temp')!.getChild('PHOTO')!;
    assert.equal(photo.getChildText('TYPE'), 'image/png');
    assert.equal(photo.getChildText('BINVAL'), CAROL_PICTURE.toString('base64'));
    assert.equal(vcard.getChild('vCard', 'vcard-temp')!.getChildText('NICKNAME'), 'Carol');
    const contact = await bob.iq(x('iq', { type: 'get', to: `${carolId}@${GW}` }, x('vCard', { xmlns: 'vcard-temp' })));
    assert.equal(contact.getChild('vCard', 'vcard-temp')!.getChild('PHOTO')!.getChildText('BINVAL'), CAROL_PICTURE.toString('base64'));
    // Fetched from Discord's CDN once, by the transport, for both users and all three uses.
    assert.equal(fake.avatarRequests.filter((r) => r.path.startsWith(`/avatars/${carolId}/`)).length, 1);
    // Without a picture: a vCard without PHOTO.
    const olgaCard = await alice.iq(x('iq', { type: 'get', to: `${room}/Olga` }, x('vCard', { xmlns: 'vcard-temp' })));
    assert.equal(olgaCard.attrs.type, 'result', String(olgaCard));
    assert.equal(olgaCard.getChild('vCard', 'vcard-temp')!.getChild('PHOTO'), undefined);
    // Only people in the room may ask there.
    const closedRoom = roomJid(closed);
    const stranger = await alice.iq(x('iq', { type: 'get', to: `${closedRoom}/Carol` }, x('vCard', { xmlns: 'vcard-temp' })));
    assert.equal(errorOf(stranger), 'not-acceptable');
  });

  test('a correction and a retraction of the own message reach Discord through the webhook', async () => {
    const room = roomJid(general);
    alice.send(x('message', { to: room, type: 'groupchat', id: 'sb-e1' }, x('body', {}, 'teh plan')));
    await bob.expect(body('teh plan'), 8000);
    alice.send(x('message', { to: room, type: 'groupchat', id: 'sb-e2' }, x('body', {}, 'the plan'), x('replace', { xmlns: 'urn:xmpp:message-correct:0', id: 'sb-e1' })));
    const edit = await fake.waitForRequest({ method: 'PATCH', path: /^\/webhooks\/\d+\/[^/]+\/messages\/\d+$/ }, 8000);
    assert.equal(edit.body.content, 'the plan');
    const corrected = await bob.expect(body('the plan'), 8000);
    assert.ok(corrected.getChild('replace', 'urn:xmpp:message-correct:0'), String(corrected));
    alice.send(x('message', { to: room, type: 'groupchat', id: 'sb-e3' }, x('retract', { xmlns: 'urn:xmpp:message-retract:1', id: 'sb-e1' }), x('body', {}, 'retracted')));
    const del = await fake.waitForRequest({ method: 'DELETE', path: /^\/webhooks\/\d+\/[^/]+\/messages\/\d+$/ }, 8000);
    assert.equal(del.status, 204);
    // The other XMPP user sees the retraction, from alice.
    const retraction = await bob.expect((el) => isMsg(el) && !!el.getChild('retract', 'urn:xmpp:message-retract:1'), 8000);
    assert.equal(retraction.attrs.from, `${room}/alice`);
    assert.ok(![...general.messages.values()].some((m) => m.message.content === 'the plan'));
  });

  test('a channel the operator did not open is refused; direct messages are not carried by the shared bot', async () => {
    const room = roomJid(closed);
    alice.send(x('presence', { to: `${room}/alice` }, x('x', { xmlns: MUC })));
    const refused = await alice.expect((el) => el.name === 'presence' && el.attrs.type === 'error' && el.attrs.from?.startsWith(room) === true, 8000);
    assert.equal(errorOf(refused), 'forbidden', String(refused));
    alice.send(x('message', { to: `${carolId}@${GW}`, type: 'chat', id: 'sb-dm' }, x('body', {}, 'psst')));
    const dmError = await alice.expect((el) => isMsg(el) && el.attrs.type === 'error' && el.attrs.id === 'sb-dm', 8000);
    assert.equal(errorOf(dmError), 'service-unavailable', String(dmError));
    assert.match(dmError.getChild('error')!.getChildText('text', 'urn:ietf:params:xml:ns:xmpp-stanzas') ?? '', /shared Discord bot carries no direct messages/);
    fake.say(fake.dmChannel(carolId).id, carolId, 'a DM to the shared bot');
    fake.say(general.id, carolId, 'dm marker');
    await alice.expect(body('dm marker'), 8000);
    assert.equal(count(alice, 'a DM to the shared bot'), 0, "the shared bot's DMs reach no user");
  });

  test('a thread is a room: messages in, and out through the webhook with thread_id', async () => {
    const room = roomJid(thread);
    await join(alice, room, 'alice');
    // One name is one author in Discord: a second XMPP user may not take it in the same channel.
    bob.send(x('presence', { to: `${room}/alice` }, x('x', { xmlns: MUC })));
    const taken = await bob.expect((el) => el.name === 'presence' && el.attrs.type === 'error' && el.attrs.from?.startsWith(room) === true, 8000);
    assert.equal(errorOf(taken), 'conflict', String(taken));
    fake.say(thread.id, carolId, 'in the thread');
    const inbound = await alice.expect(body('in the thread'), 8000);
    assert.equal(inbound.attrs.from, `${room}/Carol`);
    alice.send(x('message', { to: room, type: 'groupchat', id: 'sb-t1' }, x('body', {}, 'thread reply')));
    await alice.expect((el) => isMsg(el) && el.attrs.id === 'sb-t1', 8000);
    await until(() => executions((r) => r.body?.content === 'thread reply').length === 1, 'the webhook executed', 8000);
    assert.equal(executions((r) => r.body?.content === 'thread reply')[0]!.query.thread_id, thread.id);
    assert.ok([...thread.messages.values()].some((m) => m.message.content === 'thread reply' && m.message.author.username === 'alice'));
    // Not in the parent channel.
    assert.ok(![...general.messages.values()].some((m) => m.message.content === 'thread reply'));
  });

  test('rejoining a room: what was said meanwhile comes as MUC history with delay stamps, after the self-presence and before the subject', async () => {
    const room = roomJid(general);
    bob.send(x('presence', { to: `${room}/bob`, type: 'unavailable' }));
    await bob.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `${room}/bob`, 8000);
    await alice.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `${room}/bob`, 8000);
    fake.say(general.id, carolId, 'while bob was away');
    await alice.expect(body('while bob was away'), 8000);
    alice.send(x('message', { to: room, type: 'groupchat', id: 'sb-away' }, x('body', {}, 'alice while bob was away')));
    await fake.waitForRequest({ method: 'POST', path: /^\/webhooks\/\d+\/[^/]+$/, pred: (r) => r.body?.content === 'alice while bob was away' && r.status === 200 }, 8000);
    const seen = everything.get(bob)!.length;
    await join(bob, room, 'bob');
    const isSubject = (el: Element) => isMsg(el) && el.attrs.from?.startsWith(room) === true && !!el.getChild('subject');
    // This join's subject (earlier ones may still wait unread in the client's buffer).
    await until(() => everything.get(bob)!.slice(seen).some(isSubject), "the join's subject", 8000);
    const after = everything.get(bob)!.slice(seen);
    const self = after.findIndex(selfPresence(room));
    const missed = after.findIndex(body('while bob was away'));
    const subject = after.findIndex(isSubject);
    assert.ok(self >= 0 && missed > self && subject > missed, `self-presence ${self}, history ${missed}, subject ${subject}`);
    const stamp = after[missed]!.getChild('delay', DELAY);
    assert.ok(stamp?.attrs.from === room && stamp.attrs.stamp, String(after[missed]));
    assert.equal(after[missed]!.attrs.from, `${room}/Carol`);
    assert.equal(count(bob, 'while bob was away'), 1);
    // The other XMPP user's message in the history is theirs (the webhook's name), before the subject too.
    const fromAlice = after.findIndex(body('alice while bob was away'));
    assert.ok(fromAlice > missed && fromAlice < subject, `alice's message in the history: ${fromAlice}`);
    assert.equal(after[fromAlice]!.attrs.from, `${room}/alice`);
  });

  test('after a fresh gateway session, what was said in the gap arrives once as history with delay stamps', async () => {
    const room = roomJid(general);
    const identifies = fake.gatewayReceived.filter((p) => p.op === Op.Identify).length;
    // A gateway outage after which Discord does not resume the session: its events are gone.
    fake.refuseGateway(1000);
    fake.forgetSessions();
    const gap1 = fake.say(general.id, carolId, 'said in the gap 1');
    fake.say(general.id, carolId, 'said in the gap 2');
    await fake.waitForOp(Op.Identify, identifies + 1, 15000);
    const first = await alice.expect(body('said in the gap 1'), 10000);
    const second = await alice.expect(body('said in the gap 2'), 10000);
    await bob.expect(body('said in the gap 2'), 10000);
    assert.equal(first.attrs.from, `${room}/Carol`);
    const stamp = first.getChild('delay', DELAY)?.attrs.stamp;
    assert.ok(stamp && Math.abs(Date.parse(stamp) - Date.parse(gap1.timestamp)) < 1000, String(first));
    assert.ok(second.getChild('delay', DELAY), String(second));
    const history = fake.sent({ method: 'GET', path: `/channels/${general.id}/messages` }).at(-1)!;
    assert.ok(history.query.after, 'fetched after the last message seen');
    assert.equal(history.query.limit, '10', 'capped at historyLimit');
    // Live again, and nothing twice.
    fake.say(general.id, carolId, 'after the gap');
    await alice.expect(body('after the gap'), 8000);
    assert.equal(count(alice, 'said in the gap 1'), 1);
    assert.equal(count(alice, 'said before anyone linked'), 0, 'no history from before the user joined');
  });

  test('an outage longer than the grace time: the shared client is replaced, the users are logged in and rejoined, and the gap arrives once', async () => {
    const room = roomJid(general);
    const identifies = fake.gatewayReceived.filter((p) => p.op === Op.Identify).length;
    const disconnected = async () => (await transport.storage.transports.queryAudit({ userJid: bareOf(alice) })).filter((r) => r.event === 'disconnected').length;
    const before = await disconnected();
    fake.refuseGateway(6000);
    fake.forgetSessions();
    fake.say(general.id, carolId, 'during the long outage');
    await until(async () => (await disconnected()) > before, 'the sessions ended after the grace time', 10000);
    await fake.waitForOp(Op.Identify, identifies + 1, 20000);
    const missed = await alice.expect(body('during the long outage'), 20000);
    assert.ok(missed.getChild('delay', DELAY), String(missed));
    assert.equal(missed.attrs.from, `${room}/Carol`);
    // One new client for both users, and the room works again.
    await until(() => fake.gatewayReceived.filter((p) => p.op === Op.Identify).length === identifies + 1, 'one identify', 5000);
    fake.say(general.id, carolId, 'after the long outage');
    await alice.expect(body('after the long outage'), 10000);
    await bob.expect(body('after the long outage'), 10000);
    assert.equal(count(alice, 'during the long outage'), 1);
  });

  test('a restart of the transport: the position stored per channel brings what was said while it was down, as history on rejoining', async () => {
    const room = roomJid(general);
    await transport.stop();
    await alice.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `${room}/alice`, 8000);
    fake.say(general.id, carolId, 'said while the transport was down');
    transport = await fixture.start();
    // Stored with the registration (transport_sync_state): the last message seen per channel, no text.
    const stored = JSON.parse((await transport.storage.transports.getSyncState('discord', bareOf(alice), ''))!) as { rooms: Record<string, string> };
    assert.ok(/^\d+$/.test(stored.rooms[general.id]!), JSON.stringify(stored));
    // The gateway is back; the user's client rejoins the room.
    const seen = everything.get(alice)!.length;
    // Before the fix, a registration without any value (no token) read as "not registered" here.
    await join(alice, room, 'alice');
    const isSubject = (el: Element) => isMsg(el) && el.attrs.from?.startsWith(room) === true && !!el.getChild('subject');
    await until(() => everything.get(alice)!.slice(seen).some(isSubject), "the join's subject", 10000);
    const after = everything.get(alice)!.slice(seen);
    const missed = after.findIndex(body('said while the transport was down'));
    assert.ok(missed >= 0 && missed < after.findIndex(isSubject), `history before the subject: ${missed}`);
    assert.ok(after[missed]!.getChild('delay', DELAY));
    assert.equal(after.filter(body('after the gap')).length, 0, 'what was seen before the restart does not come again');
  });
});
