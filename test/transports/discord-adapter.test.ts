/**
 * The Discord adapter through discord.js against a protocol-level fake Discord (test/fakes/discord.ts:
 * real HTTP REST and WebSocket gateway servers on 127.0.0.1), without XMPP; and, when credentials
 * are given, a basic round trip against real Discord.
 *
 * Real Discord (skipped unless both are set):
 *   DISCORD_TEST_TOKEN    the token of a bot made for testing
 *   DISCORD_TEST_CHANNEL  the id of a text channel the bot can see and write to
 * To get them: https://discord.com/developers/applications → New Application → Bot → Reset Token
 * (copy it); on the same page turn on "Message Content Intent" and "Server Members Intent". Invite
 * the bot to a test server: OAuth2 → URL Generator → scope "bot", permissions View Channels, Send
 * Messages, Read Message History, Add Reactions → open the URL. In Discord, Settings → Advanced →
 * Developer Mode, then right-click the channel → Copy Channel ID. Run e.g.
 *   DISCORD_TEST_TOKEN=… DISCORD_TEST_CHANNEL=… node --test dist/test/transports/discord-adapter.test.js
 * Discord forbids automating user accounts: only a bot token works.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { REST, Routes } from 'discord.js';
import { FakeDiscord, Intent, Op, Perm, type FakeChannel, type FakeGuild } from '../fakes/discord.js';
import { createAdapter, createDiscordAdapter, parseToken, DiscordCommandError, channelIdOf, type DiscordAdapter, type DiscordSession } from '../../transports/discord/index.js';
import { LegacyAuthError, LegacyNetworkError, type LegacyRoom, type TextMessage } from '../../transports/kit/adapter.js';
import { fromDiscordMarkup, splitMessage, toDiscordMarkup } from '../../transports/discord/text.js';
import { IdMap } from '../../transports/discord/ids.js';
import { mapError } from '../../transports/discord/errors.js';
import { Recorder, testLog, type TestLog } from './session-recorder.js';

// ------------------------------------------------------------------ helpers


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rejectsWith<T extends Error>(p: Promise<unknown>, cls: new (...a: any[]) => T, check?: (e: T) => void): Promise<T> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
    check?.(err as T);
    return err as T;
  }
  assert.fail(`expected ${cls.name}, but it resolved`);
}

const room = (ch: FakeChannel): LegacyRoom => ({ id: `#${ch.id}` });

// ------------------------------------------------------------------ unit tests (no network)

describe('Discord text handling', () => {
  const names = {
    user: (id: string) => ({ '111111111111111111': 'Bobby' })[id] ?? null,
    role: (id: string) => ({ '222222222222222222': 'Mods' })[id] ?? null,
    channel: (id: string) => ({ '333333333333333333': 'random' })[id] ?? null,
  };

  test('mentions, roles, channels, custom emoji, timestamps and commands become readable text', () => {
    assert.equal(
      fromDiscordMarkup('hi <@111111111111111111> <@!111111111111111111> <@&222222222222222222> see <#333333333333333333> <:party:444444444444444444> <a:spin:555555555555555555>', names),
      'hi @Bobby @Bobby @Mods see #random :party: :spin:',
    );
    assert.equal(fromDiscordMarkup('<@999999999999999999> <#999999999999999999>', names), '@unknown-user #unknown-channel');
    assert.equal(fromDiscordMarkup('at <t:1700000000:F> or <t:1700000000:d>', names), 'at 2023-11-14 22:13 UTC or 2023-11-14');
    assert.equal(fromDiscordMarkup('use </ping:666666666666666666>', names), 'use /ping');
    assert.equal(fromDiscordMarkup('code `<@111111111111111111>` stays', names), 'code `<@111111111111111111>` stays');
    assert.equal(fromDiscordMarkup('bell\x07 and nul\x00 go\r\nline', names), 'bell and nul go\nline');
  });

  test('@nick and "nick:" become Discord mentions only when unambiguous; longest names first; code untouched', () => {
    const targets = {
      users: [
        ['Ann', '1'],
        ['Ann Lee', '2'],
        ['Bobby', '3'],
        ['Twin', '4'],
        ['Twin', '5'],
      ] as [string, string][],
      channels: [['random', '9'] as [string, string]],
    };
    assert.equal(toDiscordMarkup('@Ann Lee and @Ann, hi', targets), '<@2> and <@1>, hi');
    assert.equal(toDiscordMarkup('Bobby: look at #random', targets), '<@3>: look at <#9>');
    assert.equal(toDiscordMarkup('@Twin is ambiguous', targets), '@Twin is ambiguous');
    assert.equal(toDiscordMarkup('mail ann@Ann.example and `@Bobby`', targets), 'mail ann@Ann.example and `@Bobby`');
    assert.equal(toDiscordMarkup('@Bobbyx is not Bobby', targets), '@Bobbyx is not Bobby');
    assert.equal(toDiscordMarkup('#randomness', targets), '#randomness');
  });

  test('long text is split at line breaks or spaces, never inside a surrogate pair', () => {
    const words = Array.from({ length: 800 }, (_, i) => `w${i}`).join(' ');
    const parts = splitMessage(words, 2000);
    assert.ok(parts.length >= 2);
    assert.ok(parts.every((p) => p.length <= 2000));
    assert.equal(parts.join(' '), words);
    const emoji = '😀'.repeat(1500);
    const e = splitMessage(emoji, 2000);
    assert.ok(e.every((p) => p.length <= 2000 && !/^[\udc00-\udfff]/.test(p)));
    assert.equal(e.join(''), emoji);
    assert.deepEqual(splitMessage('', 2000), []);
  });

  test('ids the kit sent keep its ids both ways; snowflakes pass; the map is bounded', () => {
    const ids = new IdMap(2);
    ids.link('kit-1', ['100000000000000001', '100000000000000002']);
    assert.deepEqual(ids.discordIds('kit-1'), ['100000000000000001', '100000000000000002']);
    assert.equal(ids.kitId('100000000000000002'), 'kit-1');
    assert.deepEqual(ids.discordIds('100000000000000009'), ['100000000000000009']);
    assert.deepEqual(ids.discordIds('not-known'), []);
    ids.link('kit-2', ['100000000000000003']);
    ids.link('kit-3', ['100000000000000004']);
    assert.deepEqual(ids.discordIds('kit-1'), []);
  });

  test('bot tokens only: a "Bot " prefix is accepted, user and OAuth tokens are refused', () => {
    const tok = 'MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB';
    assert.equal(parseToken(`Bot ${tok}`), tok);
    assert.equal(parseToken(`  "${tok}"\n`), tok);
    assert.throws(() => parseToken('mfa.abcdefghijklmnopqrstuvwxyz0123456789'), LegacyAuthError);
    assert.throws(() => parseToken('Bearer abcdefghijklmnopqrstuvwxyz'), LegacyAuthError);
    assert.throws(() => parseToken(''), LegacyAuthError);
    assert.throws(() => parseToken('not a token at all'), LegacyAuthError);
  });

  test('rooms are #<channel id>, contacts are user ids', () => {
    const a = createDiscordAdapter();
    assert.equal(a.network, 'discord');
    assert.equal(a.multiServer, false);
    assert.equal(a.isRoomId('#123456789012345678'), true);
    assert.equal(a.isRoomId('123456789012345678'), false);
    assert.equal(a.isRoomId('#general'), false);
    assert.equal(channelIdOf('#123456789012345678'), '123456789012345678');
    const token = a.registrationFields.find((f) => f.name === 'password')!;
    assert.equal(token.secret, true);
    assert.equal(token.required, true);
    assert.equal(token.type, 'text-private');
  });

  test('the transport configuration is checked key by key', async () => {
    const a = (await createAdapter({ api: 'https://discord.example/api/', members: false, reconnectGraceSeconds: 30 }, testLog().log)) as DiscordAdapter;
    assert.equal(a.options.api, 'https://discord.example/api');
    assert.equal(a.options.members, false);
    assert.equal(a.options.reconnectGraceMs, 30_000);
    assert.throws(() => createAdapter({ api: 'ftp://x' }, testLog().log), /network\.api/);
    assert.throws(() => createAdapter({ members: 'yes' }, testLog().log), /network\.members/);
    assert.throws(() => createAdapter({ bogus: 1 }, testLog().log), /network\.bogus: unknown setting/);
    assert.throws(() => createAdapter({ historyLimit: 101 }, testLog().log), /network\.historyLimit/);
  });

  test("P9 the shared bot's token comes from a file only its owner reads (or the environment), never from the configuration; guilds are required", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-discord-token-'));
    try {
      const token = 'MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789';
      const file = path.join(dir, 'token');
      writeFileSync(file, `Bot ${token}\n`, { mode: 0o644 });
      chmodSync(file, 0o644);
      const guilds = ['123456789012345678'];
      assert.throws(() => createAdapter({ sharedBot: { tokenFile: file, guilds } }, testLog().log), /network\.sharedBot\.tokenFile: the token file must not be readable by group or others/);
      chmodSync(file, 0o600);
      const a = (await createAdapter({ sharedBot: { tokenFile: file, guilds, channels: ['234567890123456789'] } }, testLog().log)) as DiscordAdapter;
      assert.ok(a.shared, 'the shared bot is set up');
      const field = a.registrationFields.find((f) => f.name === 'password')!;
      assert.equal(field.required, false, 'registration without a token');
      assert.throws(() => createAdapter({ sharedBot: { tokenFile: file } }, testLog().log), /network\.sharedBot\.guilds/);
      assert.throws(() => createAdapter({ sharedBot: { tokenFile: file, guilds, token } }, testLog().log), /network\.sharedBot\.token: unknown setting/);
      assert.throws(() => createAdapter({ sharedBot: { guilds } }, testLog().log), /network\.sharedBot\.tokenFile: missing/);
      assert.throws(() => createAdapter({ sharedBot: { tokenFile: file, guilds, webhookName: 'Discord bridge' } }, testLog().log), /network\.sharedBot\.webhookName/);
      // Errors never quote the token.
      writeFileSync(file, 'not a token', { mode: 0o600 });
      assert.throws(() => createAdapter({ sharedBot: { tokenFile: file, guilds } }, testLog().log), (e: Error) => /holds no bot token/.test(e.message) && !e.message.includes('not a token'));
      assert.equal((createDiscordAdapter({}) as DiscordAdapter).registrationFields.find((f) => f.name === 'password')!.required, true, 'without a shared bot the token is required');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ------------------------------------------------------------------ against the fake Discord

describe('Discord adapter against the fake Discord', () => {
  let fake: FakeDiscord;
  let adapter: DiscordAdapter;
  let guild: FakeGuild;
  let general: FakeChannel;
  let random: FakeChannel;
  let secret: FakeChannel;
  let readonly: FakeChannel;
  const u: Record<string, string> = {};
  let mods: string;
  const sessions: DiscordSession[] = [];

  async function login(credentials: Record<string, string> = { password: fake.token }, a: DiscordAdapter = adapter, tl: TestLog = testLog()) {
    const session = await a.login({ userJid: 'user@localhost', credentials, log: tl.log });
    sessions.push(session);
    return { session, rec: new Recorder(session), tl };
  }

  before(async () => {
    fake = await FakeDiscord.start({ heartbeatIntervalMs: 400 });
    const olga = fake.createUser('olga', { globalName: 'Olga' });
    guild = fake.createGuild('Gatehouse', { ownerId: olga.id });
    mods = fake.createRole(guild.id, 'Mods', Perm.ManageMessages).id;
    const admins = fake.createRole(guild.id, 'Admins', Perm.Administrator).id;
    const muted = fake.createRole(guild.id, 'Muted', 0n).id;
    general = fake.createChannel(guild.id, 'general', { topic: 'Welcome to Gatehouse' });
    random = fake.createChannel(guild.id, 'random');
    secret = fake.createChannel(guild.id, 'secret', { overwrites: [{ id: guild.id, type: 0, allow: '0', deny: Perm.ViewChannel.toString() }] });
    readonly = fake.createChannel(guild.id, 'announcements', { overwrites: [{ id: guild.id, type: 0, allow: '0', deny: Perm.SendMessages.toString() }] });
    u.olga = olga.id;
    for (const [name, global] of [
      ['alice', 'Alice'],
      ['bob', 'Bob'],
      ['carol', 'Carol'],
      ['mod', 'Moderator'],
      ['admin', 'Admin'],
      ['ann1', 'Ann'],
      ['ann2', 'Ann'],
      ['closed', 'Closed'],
    ] as const) {
      u[name] = fake.createUser(name, { globalName: global }).id;
    }
    fake.addMember(guild.id, u.alice!);
    fake.addMember(guild.id, u.bob!, { nick: 'Bobby' });
    fake.addMember(guild.id, u.carol!, { roles: [muted] });
    fake.setOverwrites(general.id, [{ id: muted, type: 0, allow: '0', deny: Perm.SendMessages.toString() }]);
    fake.addMember(guild.id, u.mod!, { roles: [mods] });
    fake.addMember(guild.id, u.admin!, { roles: [admins] });
    fake.addMember(guild.id, u.ann1!);
    fake.addMember(guild.id, u.ann2!);
    fake.addMember(guild.id, u.closed!);
    fake.dmsClosed.add(u.closed!);
    // The bot may set topics (Manage Channels), as an operator would allow it when inviting it.
    const botRole = fake.createRole(guild.id, 'Gatehouse', Perm.ManageChannels | Perm.ChangeNickname).id;
    fake.updateMember(guild.id, fake.bot.id, { roles: [botRole] });
    adapter = createDiscordAdapter({ api: fake.apiBase, typingTimeoutMs: 300, reconnectGraceMs: 20_000, loginTimeoutMs: 8000, waitGuildTimeoutMs: 2000 });
  });

  after(async () => {
    for (const s of sessions) await s.logout().catch(() => undefined);
    await fake.close();
  });

  test('login: IDENTIFY with the bot token and intents, READY, heartbeats acknowledged, connected once', async () => {
    const tl = testLog();
    const { session, rec } = await login(undefined, adapter, tl);
    const [server, account] = await rec.take('connected');
    assert.equal(server, `127.0.0.1:${fake.port}`);
    assert.match(account, /^gatehouse-bot \(\d+\)$/);
    assert.equal(session.userId, fake.bot.id);
    const identify = fake.gatewayReceived.find((p) => p.op === Op.Identify)!;
    assert.equal(identify.d.token, '<redacted>');
    for (const bit of [Intent.Guilds, Intent.GuildMessages, Intent.MessageContent, Intent.DirectMessages, Intent.GuildMembers, Intent.GuildMessageReactions, Intent.GuildMessageTyping]) {
      assert.ok(identify.d.intents & bit, `intent ${bit} requested`);
    }
    assert.equal(identify.d.intents & Intent.GuildPresences, 0, 'no presence intent unless configured');
    // REST authenticated as the bot ("Authorization: Bot <token>"; anything else is 401 in the fake).
    assert.ok(fake.sent({ method: 'GET', path: '/gateway/bot' }).every((r) => r.status === 200 && r.botId === fake.bot.id));
    const before = fake.gatewayReceived.filter((p) => p.op === Op.Heartbeat).length;
    await fake.waitForOp(Op.Heartbeat, before + 2, 3000);
    fake.requestHeartbeat();
    await fake.waitForOp(Op.Heartbeat, before + 3, 1000);
    assert.ok(await rec.none('connected'));
    assert.ok(!tl.lines.join('\n').includes(fake.token), 'the token is never logged');
    await session.logout();
  });

  test('rooms: guild text channels the bot can see, named "Guild / #channel"', async () => {
    const { session } = await login();
    const rooms = session.listRooms();
    const names = rooms.map((r) => r.name).sort();
    assert.deepEqual(names, ['Gatehouse / #announcements', 'Gatehouse / #general', 'Gatehouse / #random']);
    assert.ok(rooms.every((r) => adapter.isRoomId(r.id)));
    await session.logout();
  });

  test('the room directory (own bot): guilds, then a guild\'s channels and active threads; a thread is a room', async () => {
    const { session, rec } = await login();
    const thread = fake.createThread(random.id, 'side topic', { ownerId: u.alice! });
    const archived = fake.createThread(random.id, 'old topic', { ownerId: u.alice! });
    fake.archiveThread(archived.id);
    const directory = async (node: string | null) => (await session.roomDirectory({ node, max: 100 }))?.items ?? null;
    const top = await directory(null);
    assert.deepEqual(top, [{ node: `guild/${guild.id}`, name: 'Gatehouse' }]);
    const inGuild = (await directory(`guild/${guild.id}`))!;
    assert.deepEqual(
      inGuild.map((i) => [i.room?.id, i.name]),
      [
        [`#${general.id}`, 'Gatehouse / #general'],
        [`#${random.id}`, 'Gatehouse / #random'],
        [`#${readonly.id}`, 'Gatehouse / #announcements'],
        [`#${thread.id}`, '#random / side topic'],
      ],
      'text channels the bot sees (not #secret), in order, then the active threads',
    );
    assert.ok(fake.sent({ method: 'GET', path: `/guilds/${guild.id}/threads/active` }).length >= 1);
    assert.equal(await directory('guild/1'), null);
    assert.equal(await directory('elsewhere'), null);
    await session.joinRoom(room(thread), 'x');
    const [joined] = await rec.take('roomJoined');
    assert.equal(joined.name, 'Gatehouse / #random / side topic');
    fake.say(thread.id, u.alice!, 'in the thread');
    const [, nick, m] = await rec.take('roomMessage');
    assert.equal(nick, 'Alice');
    assert.equal(m.text, 'in the thread');
    await session.sendRoomMessage(room(thread), { text: 'thread answer' });
    assert.ok([...thread.messages.values()].some((x) => x.message.content === 'thread answer' && x.message.author.id === fake.bot.id));
    await session.joinRoom(room(archived), 'x');
    const [, reason, condition] = await rec.take('roomJoinFailed');
    assert.equal(condition, 'item-not-found');
    assert.match(reason, /archived/);
    await session.logout();
  });

  describe('in a room', () => {
    let session: DiscordSession;
    let rec: Recorder;
    let tl: TestLog;
    const r = () => room(general);
    /** A message from Alice, taken: the gateway dispatches in order, so whatever came before it is in. */
    const roomMarker = async (tag: string) => {
      fake.say(general.id, u.alice!, `marker: ${tag}`);
      await rec.take('roomMessage', ([, , m]) => m.text === `marker: ${tag}`);
    };

    before(async () => {
      ({ session, rec, tl } = await login());
      await session.joinRoom(r(), 'ignored');
    });

    after(async () => {
      await session.logout();
    });

    test('joining: occupants with owner/admin/moderator/participant/visitor, unique nicks, the topic as subject', async () => {
      const [joined, ownNick, occupants, subject] = await rec.take('roomJoined');
      assert.equal(joined.id, `#${general.id}`);
      assert.equal(joined.name, 'Gatehouse / #general');
      assert.equal(ownNick, 'gatehouse-bot');
      assert.equal(subject, 'Welcome to Gatehouse');
      const by = new Map(occupants.map((o) => [o.nick, o]));
      assert.deepEqual(
        [...by.keys()].sort(),
        ['Admin', 'Alice', 'Ann', 'Ann (ann2)', 'Bobby', 'Carol', 'Closed', 'Moderator', 'Olga', 'gatehouse-bot'].sort(),
      );
      assert.deepEqual([by.get('Olga')!.affiliation, by.get('Olga')!.role], ['owner', 'moderator']);
      assert.deepEqual([by.get('Admin')!.affiliation, by.get('Admin')!.role], ['admin', 'moderator']);
      assert.deepEqual([by.get('Moderator')!.affiliation, by.get('Moderator')!.role], ['member', 'moderator']);
      assert.deepEqual([by.get('Alice')!.affiliation, by.get('Alice')!.role], ['member', 'participant']);
      assert.deepEqual([by.get('Carol')!.affiliation, by.get('Carol')!.role], ['member', 'visitor']);
      assert.deepEqual(by.get('Bobby')!.contact, { id: u.bob, displayName: 'Bob' });
      assert.equal(by.get('Ann')!.contact!.id, u.ann1);
      // Joining again re-reports the room.
      await session.joinRoom(r(), 'x');
      await rec.take('roomJoined');
    });

    test('joining fails for channels the bot cannot see, unknown channels and DMs', async () => {
      await session.joinRoom(room(secret), 'x');
      const [, , cond1] = await rec.take('roomJoinFailed', ([rm]) => rm.id === `#${secret.id}`);
      assert.equal(cond1, 'forbidden');
      await session.joinRoom({ id: '#123456789012345678' }, 'x');
      const [, , cond2] = await rec.take('roomJoinFailed', ([rm]) => rm.id === '#123456789012345678');
      assert.equal(cond2, 'item-not-found');
      await session.joinRoom({ id: '#general' }, 'x');
      assert.equal((await rec.take('roomJoinFailed', ([rm]) => rm.id === '#general'))[2], 'item-not-found');
    });

    test('messages in: mentions shown as nicks, roles and channels by name', async () => {
      const m = fake.say(general.id, u.alice!, `hello <@${u.bob}> and <@${fake.bot.id}>, see <#${random.id}> <@&${mods}>`);
      const [rm, nick, msg] = await rec.take('roomMessage');
      assert.equal(rm.id, `#${general.id}`);
      assert.equal(nick, 'Alice');
      assert.equal(msg.text, 'hello @Bobby and @gatehouse-bot, see #random @Mods');
      assert.equal(msg.id, m.id);
      assert.equal(msg.timestamp, undefined, 'live messages carry no delay');
    });

    test('messages out: @nick and #channel become mentions; no echo from Discord; a reply to it names the kit id', async () => {
      await session.sendRoomMessage(r(), { text: '@Bobby hi, see #random', id: 'kit-1' });
      const req = fake.sent({ method: 'POST', path: `/channels/${general.id}/messages` }).at(-1)!;
      assert.equal(req.body.content, `<@${u.bob}> hi, see <#${random.id}>`);
      assert.equal(typeof req.body.nonce, 'string');
      assert.ok(req.body.nonce.length <= 25);
      assert.equal(req.body.enforce_nonce, true);
      assert.deepEqual(req.body.allowed_mentions.parse.sort(), ['roles', 'users']);
      const sentId = [...general.messages.values()].at(-1)!.message.id;
      fake.say(general.id, u.alice!, 'sure', { replyTo: sentId });
      const [, , reply] = await rec.take('roomMessage', ([, n]) => n === 'Alice');
      assert.equal(reply.replyTo, 'kit-1');
      // The echo was dispatched before Alice's reply, in order.
      assert.equal(rec.unseen('roomMessage'), 0, 'the gateway echo of our own message is dropped');
      // Reactions to it name the kit id too, always with the sender's whole set.
      fake.react(general.id, sentId, u.alice!, '👍');
      assert.deepEqual((await rec.take('roomMessage', ([, , m]) => !!m.reactions))[2].reactions, { to: 'kit-1', keys: ['👍'] });
      fake.react(general.id, sentId, u.alice!, '🎉');
      assert.deepEqual((await rec.take('roomMessage', ([, , m]) => !!m.reactions))[2].reactions, { to: 'kit-1', keys: ['👍', '🎉'] });
      fake.react(general.id, sentId, u.alice!, '👍', true);
      const [, who, last] = await rec.take('roomMessage', ([, , m]) => !!m.reactions);
      assert.equal(who, 'Alice');
      assert.deepEqual(last.reactions, { to: 'kit-1', keys: ['🎉'] });
      assert.equal(last.text, '');
    });

    test('edits in: MESSAGE_UPDATE becomes editOf with the new text; embed updates are no edits', async () => {
      const m = fake.say(general.id, u.alice!, 'tpyo');
      await rec.take('roomMessage', ([, , msg]) => msg.id === m.id);
      fake.embedUpdate(general.id, m.id);
      fake.edit(general.id, m.id, 'typo fixed');
      const [, nick, edit] = await rec.take('roomMessage', ([, , msg]) => !!msg.editOf);
      assert.equal(nick, 'Alice');
      assert.equal(edit.editOf, m.id);
      assert.equal(edit.text, 'typo fixed');
      assert.equal(edit.id, undefined);
      await roomMarker('edits');
      assert.equal(rec.unseen('roomMessage'), 0, 'exactly one event: the embed update was not taken for an edit');
    });

    test('deletions in: MESSAGE_DELETE becomes redacts, from the author', async () => {
      const m = fake.say(general.id, u.bob!, 'oops');
      await rec.take('roomMessage', ([, , msg]) => msg.id === m.id);
      fake.delete(general.id, m.id);
      const [, nick, del] = await rec.take('roomMessage', ([, , msg]) => !!msg.redacts);
      assert.equal(nick, 'Bobby');
      assert.deepEqual(del, { text: '', redacts: m.id });
    });

    test('edits, deletions and reactions out, by kit id or Discord id; unknown ids are item-not-found', async () => {
      await session.sendRoomMessage(r(), { text: 'first version', id: 'kit-2' });
      const sent = [...general.messages.values()].at(-1)!.message;
      await session.sendRoomMessage(r(), { text: 'second version', editOf: 'kit-2' });
      assert.equal(fake.getMessage(general.id, sent.id)!.content, 'second version');
      assert.ok(fake.sent({ method: 'PATCH', path: `/channels/${general.id}/messages/${sent.id}` }).length === 1);

      const theirs = fake.say(general.id, u.alice!, 'react to me');
      await rec.take('roomMessage', ([, , msg]) => msg.id === theirs.id);
      await session.sendRoomMessage(r(), { text: '', reactions: { to: theirs.id, keys: ['👍', '🎉'] } });
      assert.deepEqual([...fake.reactionsOf(general.id, theirs.id).keys()].sort(), ['🎉', '👍'].sort());
      await session.sendRoomMessage(r(), { text: '', reactions: { to: theirs.id, keys: ['🎉'] } });
      assert.deepEqual([...fake.reactionsOf(general.id, theirs.id).entries()], [['🎉', [fake.bot.id]]]);
      const reactionCalls = fake.sent({ path: new RegExp(`/messages/${theirs.id}/reactions/`) });
      assert.deepEqual(reactionCalls.map((c) => c.method), ['PUT', 'PUT', 'DELETE']);
      assert.equal(reactionCalls[0]!.path, `/channels/${general.id}/messages/${theirs.id}/reactions/${encodeURIComponent('👍')}/@me`);

      await session.sendRoomMessage(r(), { text: '', redacts: 'kit-2' });
      assert.equal(fake.getMessage(general.id, sent.id), undefined);
      await roomMarker('own actions');
      assert.equal(rec.unseen('roomMessage'), 0, 'our own edits, reactions and deletions are not echoed back');

      await rejectsWith(session.sendRoomMessage(r(), { text: 'x', editOf: 'kit-unknown' }), DiscordCommandError, (e) => assert.equal(e.condition, 'item-not-found'));
      await rejectsWith(session.sendRoomMessage(r(), { text: 'x', editOf: theirs.id }), DiscordCommandError, (e) => assert.equal(e.condition, 'not-allowed'));
    });

    test('replies out carry a message_reference', async () => {
      const theirs = fake.say(general.id, u.alice!, 'question?');
      await rec.take('roomMessage', ([, , msg]) => msg.id === theirs.id);
      await session.sendRoomMessage(r(), { text: 'answer', replyTo: theirs.id });
      const req = fake.sent({ method: 'POST', path: `/channels/${general.id}/messages` }).at(-1)!;
      assert.deepEqual(req.body.message_reference, { message_id: theirs.id, fail_if_not_exists: false });
      assert.equal(fake.getMessage(general.id, [...general.messages.keys()].at(-1)!)!.message_reference!.message_id, theirs.id);
    });

    test('attachments as links both ways; /me as italics; stickers, forwards and webhooks readable', async () => {
      fake.say(general.id, u.alice!, 'look', { attachments: [{ filename: 'cat.png', content_type: 'image/png' }] });
      const [, , msg] = await rec.take('roomMessage');
      assert.equal(msg.attachments!.length, 1);
      assert.match(msg.attachments![0]!, /^https:\/\/cdn\.discordapp\.com\/attachments\/.*\/cat\.png$/);
      assert.equal(msg.text, `look\n${msg.attachments![0]}`);

      await session.sendRoomMessage(r(), { text: 'see this', attachments: ['https://upload.example/a.png'] });
      assert.equal(fake.sent({ method: 'POST', path: `/channels/${general.id}/messages` }).at(-1)!.body.content, 'see this\nhttps://upload.example/a.png');
      await session.sendRoomMessage(r(), { text: 'waves', action: true });
      assert.equal(fake.sent({ method: 'POST', path: `/channels/${general.id}/messages` }).at(-1)!.body.content, '_waves_');

      fake.say(general.id, u.alice!, '', { stickers: [{ id: '777777777777777777', name: 'wave' }] });
      assert.equal((await rec.take('roomMessage'))[2].text, '[sticker: wave]');
      const orig = fake.say(random.id, u.bob!, 'the original');
      fake.say(general.id, u.alice!, '', { forwardOf: { channelId: random.id, messageId: orig.id } });
      assert.equal((await rec.take('roomMessage'))[2].text, 'Forwarded:\nthe original');
      fake.say(general.id, u.alice!, 'from a bridge', { webhookName: 'Hookbot' });
      assert.equal((await rec.take('roomMessage'))[1], 'Hookbot');
      // A webhook may not take an occupant's nick.
      fake.say(general.id, u.alice!, 'spoof', { webhookName: 'Alice' });
      assert.equal((await rec.take('roomMessage'))[1], 'Alice (webhook)');
    });

    test('the bot\'s own messages sent elsewhere appear from its own nick', async () => {
      fake.say(general.id, fake.bot.id, 'posted by another program');
      const [, nick, msg] = await rec.take('roomMessage');
      assert.equal(nick, 'gatehouse-bot');
      assert.equal(msg.text, 'posted by another program');
    });

    test('typing both ways: TYPING_START is composing, then paused; composing out is throttled', async () => {
      fake.type(general.id, u.alice!);
      const [from, state] = await rec.take('typing');
      assert.ok('room' in from);
      assert.equal(from.room.id, `#${general.id}`);
      assert.equal(from.nick, 'Alice');
      assert.equal(state, 'composing');
      assert.equal((await rec.take('typing'))[1], 'paused');
      const before = fake.sent({ method: 'POST', path: `/channels/${general.id}/typing` }).length;
      await session.sendTyping(r(), 'composing');
      await session.sendTyping(r(), 'composing');
      await session.sendTyping(r(), 'paused');
      assert.equal(fake.sent({ method: 'POST', path: `/channels/${general.id}/typing` }).length, before + 1);
      await roomMarker('typing');
      assert.equal(rec.unseen('typing'), 0, 'our own typing is not reported back');
    });

    test('members: joins, leaves, nick and role changes, losing sight of the channel', async () => {
      const dave = fake.createUser('dave', { globalName: 'Dave' }).id;
      fake.addMember(guild.id, dave);
      assert.equal((await rec.take('occupantJoined'))[1].nick, 'Dave');
      fake.updateMember(guild.id, u.bob!, { nick: 'Robert' });
      assert.deepEqual((await rec.take('nickChanged')).slice(1), ['Bobby', 'Robert']);
      fake.updateMember(guild.id, dave, { roles: [mods] });
      const [, changed] = await rec.take('occupantChanged');
      assert.deepEqual([changed.nick, changed.role], ['Dave', 'moderator']);
      fake.removeMember(guild.id, dave);
      assert.equal((await rec.take('occupantLeft'))[1], 'Dave');
      // A channel overwrite hides it from Alice: she leaves the room.
      fake.setOverwrites(general.id, [...general.overwrites, { id: u.alice!, type: 1, allow: '0', deny: Perm.ViewChannel.toString() }]);
      assert.equal((await rec.take('occupantLeft'))[1], 'Alice');
      fake.setOverwrites(general.id, general.overwrites.filter((o) => o.id !== u.alice));
      assert.equal((await rec.take('occupantJoined'))[1].nick, 'Alice');
      fake.updateMember(guild.id, u.bob!, { nick: 'Bobby' });
      await rec.take('nickChanged');
    });

    test('subject both ways; changing the nick; no per-channel kick', async () => {
      fake.setTopic(general.id, 'New topic');
      assert.deepEqual((await rec.take('subject')).slice(1), ['New topic', null]);
      await session.setSubject(r(), 'Set from XMPP');
      assert.deepEqual((await rec.take('subject')).slice(1), ['Set from XMPP', 'gatehouse-bot']);
      assert.equal(general.topic, 'Set from XMPP');
      await session.changeNick(r(), 'Gate Keeper');
      assert.deepEqual((await rec.take('nickChanged')).slice(1), ['gatehouse-bot', 'Gate Keeper']);
      assert.equal(guild.members.get(fake.bot.id)!.nick, 'Gate Keeper');
      await rejectsWith(session.changeNick(r(), 'x'.repeat(40)), DiscordCommandError, (e) => assert.equal(e.condition, 'not-acceptable'));
      await rejectsWith(session.kick(r(), 'Alice'), DiscordCommandError, (e) => assert.equal(e.condition, 'not-allowed'));
      await rejectsWith(session.changeNick(r(), ''), DiscordCommandError);
      await session.changeNick(r(), 'gatehouse-bot');
      assert.deepEqual((await rec.take('nickChanged')).slice(1), ['Gate Keeper', 'gatehouse-bot']);
    });

    test('a read-only channel: the bot is a visitor and sending is forbidden', async () => {
      await session.joinRoom(room(readonly), 'x');
      const [, own, occupants] = await rec.take('roomJoined', ([rm]) => rm.id === `#${readonly.id}`);
      assert.equal(occupants.find((o) => o.nick === own)!.role, 'visitor');
      await rejectsWith(session.sendRoomMessage(room(readonly), { text: 'hi' }), DiscordCommandError, (e) => assert.equal(e.condition, 'forbidden'));
      await session.leaveRoom(room(readonly));
      assert.equal((await rec.take('occupantLeft', ([rm]) => rm.id === `#${readonly.id}`))[1], own);
    });

    test('long texts go out in parts; too long is not-acceptable; an edit must fit one message', async () => {
      const text = Array.from({ length: 900 }, (_, i) => `word${i}`).join(' ');
      const before = fake.sent({ method: 'POST', path: `/channels/${general.id}/messages` }).length;
      await session.sendRoomMessage(r(), { text, id: 'kit-long' });
      const posts = fake.sent({ method: 'POST', path: `/channels/${general.id}/messages` }).slice(before);
      assert.ok(posts.length >= 3);
      assert.equal(posts.map((p) => p.body.content).join(' '), text);
      await rejectsWith(session.sendRoomMessage(r(), { text: 'y'.repeat(2000 * 5) }), DiscordCommandError, (e) => assert.equal(e.condition, 'not-acceptable'));
      await rejectsWith(session.sendRoomMessage(r(), { text: 'z'.repeat(2500), editOf: 'kit-long' }), DiscordCommandError, (e) => assert.equal(e.condition, 'not-acceptable'));
      // Retracting it removes every part.
      await session.sendRoomMessage(r(), { text: '', redacts: 'kit-long' });
      for (const p of posts) assert.ok(!p.body.content || ![...general.messages.values()].some((m) => m.message.content === p.body.content));
    });

    test('raw gateway events: a bulk deletion retracts each message; a guild rename renames the rooms', async () => {
      const a = fake.say(general.id, u.alice!, 'bulk 1');
      const b = fake.say(general.id, u.bob!, 'bulk 2');
      await rec.take('roomMessage', ([, , m]) => m.id === a.id);
      await rec.take('roomMessage', ([, , m]) => m.id === b.id);
      fake.inject('MESSAGE_DELETE_BULK', { ids: [a.id, b.id], channel_id: general.id, guild_id: guild.id });
      const got = [await rec.take('roomMessage', ([, , m]) => !!m.redacts), await rec.take('roomMessage', ([, , m]) => !!m.redacts)];
      assert.deepEqual(got.map(([, nick, m]) => [nick, m.redacts]).sort(), [['Alice', a.id], ['Bobby', b.id]].sort());
      fake.inject('GUILD_UPDATE', { id: guild.id, name: 'Gatehouse HQ', owner_id: guild.ownerId, roles: [...guild.roles.values()], emojis: [], features: [] });
      for (let i = 0; i < 20 && !session.listRooms().some((x) => x.name === 'Gatehouse HQ / #general'); i++) await sleep(25);
      assert.ok(session.listRooms().some((x) => x.name === 'Gatehouse HQ / #general'));
      assert.equal(session.joinedRooms.find((x) => x.id === `#${general.id}`)!.name, 'Gatehouse HQ / #general');
      fake.inject('GUILD_UPDATE', { id: guild.id, name: 'Gatehouse', owner_id: guild.ownerId, roles: [...guild.roles.values()], emojis: [], features: [] });
      for (let i = 0; i < 20 && !session.listRooms().some((x) => x.name === 'Gatehouse / #general'); i++) await sleep(25);
    });

    test('leaving stops relaying the channel', async () => {
      await session.leaveRoom(room(random));
      await session.joinRoom(room(random), 'x');
      await rec.take('roomJoined', ([rm]) => rm.id === `#${random.id}`);
      await session.leaveRoom(room(random), 'bye');
      assert.deepEqual((await rec.take('occupantLeft', ([rm]) => rm.id === `#${random.id}`)).slice(1), ['gatehouse-bot', 'bye', null]);
      fake.say(random.id, u.alice!, 'nobody listens');
      await roomMarker('left random');
      assert.equal(rec.unseen('roomMessage', ([rm]) => rm.id === `#${random.id}`), 0);
      assert.ok(!tl.lines.join('\n').includes('nobody listens'), 'message text is never logged');
    });
  });

  test('a large guild comes without its offline members; joining fetches them (op 8, GUILD_MEMBERS_CHUNK)', async () => {
    const big = fake.createGuild('Big');
    const hall = fake.createChannel(big.id, 'hall');
    for (let i = 0; i < 1200; i++) fake.addMember(big.id, fake.createUser(`member${i}`).id);
    const { session, rec } = await login();
    const before = fake.gatewayReceived.filter((p) => p.op === Op.RequestGuildMembers).length;
    await session.joinRoom(room(hall), 'x');
    const [, , occupants] = await rec.take('roomJoined');
    assert.equal(occupants.length, 1202);
    assert.equal(new Set(occupants.map((o) => o.nick)).size, 1202);
    assert.equal(fake.gatewayReceived.filter((p) => p.op === Op.RequestGuildMembers).length, before + 1);
    await session.logout();
  });

  describe('direct messages', () => {
    let session: DiscordSession;
    let rec: Recorder;
    let tl: TestLog;

    before(async () => {
      ({ session, rec, tl } = await login());
    });

    after(async () => {
      await session.logout();
    });

    test('messages in from a user become messages from the contact (no CHANNEL_CREATE needed)', async () => {
      const dm = fake.dmChannel(u.alice!);
      const m = fake.say(dm.id, u.alice!, 'psst');
      const [from, msg] = await rec.take('message');
      assert.deepEqual(from, { id: u.alice, displayName: 'Alice' });
      assert.equal(msg.text, 'psst');
      assert.equal(msg.id, m.id);
      fake.edit(dm.id, m.id, 'psst!');
      assert.deepEqual((await rec.take('message'))[1], { text: 'psst!', editOf: m.id });
      fake.react(dm.id, m.id, u.alice!, '❤️');
      assert.deepEqual((await rec.take('message'))[1].reactions, { to: m.id, keys: ['❤️'] });
      fake.delete(dm.id, m.id);
      assert.deepEqual((await rec.take('message'))[1], { text: '', redacts: m.id });
      fake.type(dm.id, u.alice!);
      const [typer, state] = await rec.take('typing');
      assert.deepEqual([typer, state], [{ id: u.alice, displayName: 'Alice' }, 'composing']);
      await rec.take('typing');
    });

    test('messages out open the DM channel once and go there; replies and reactions work there too', async () => {
      await session.sendMessage({ id: u.bob! }, { text: 'hello Bob', id: 'kit-dm-1' });
      await session.sendMessage({ id: u.bob! }, { text: 'again' });
      assert.equal(fake.sent({ method: 'POST', path: '/users/@me/channels' }).filter((r) => r.body.recipient_id === u.bob).length, 1);
      const dm = fake.dmChannel(u.bob!);
      const contents = [...dm.messages.values()].map((m) => m.message.content);
      assert.deepEqual(contents.slice(-2), ['hello Bob', 'again']);
      const first = [...dm.messages.values()].at(-2)!.message.id;
      fake.say(dm.id, u.bob!, 'hi!', { replyTo: first });
      assert.equal((await rec.take('message', ([, m]) => m.text === 'hi!'))[1].replyTo, 'kit-dm-1');
      assert.equal(rec.unseen('message'), 0, 'our own DMs are not echoed');
      await session.sendMessage({ id: u.bob! }, { text: '', reactions: { to: 'kit-dm-1', keys: ['👋'] } });
      assert.deepEqual([...fake.reactionsOf(dm.id, first).keys()], ['👋']);
      await session.sendTyping({ id: u.bob! }, 'composing');
      await fake.waitForRequest({ method: 'POST', path: `/channels/${dm.id}/typing` }, 1000);
    });

    test('users who refuse DMs, unknown users and the bot itself are errors', async () => {
      await rejectsWith(session.sendMessage({ id: u.closed! }, { text: 'hi' }), DiscordCommandError, (e) => assert.equal(e.condition, 'service-unavailable'));
      await rejectsWith(session.sendMessage({ id: '123456789012345678' }, { text: 'hi' }), DiscordCommandError, (e) => assert.equal(e.condition, 'item-not-found'));
      await rejectsWith(session.sendMessage({ id: 'alice' }, { text: 'hi' }), DiscordCommandError, (e) => assert.equal(e.condition, 'item-not-found'));
      await rejectsWith(session.sendMessage({ id: fake.bot.id }, { text: 'hi' }), DiscordCommandError, (e) => assert.equal(e.condition, 'bad-request'));
      assert.ok(!tl.lines.join('\n').includes('psst'), 'message text is never logged');
    });
  });

  describe('rate limits', () => {
    let session: DiscordSession;
    let rec: Recorder;
    let ch: FakeChannel;

    before(async () => {
      ({ session, rec } = await login());
      ch = fake.createChannel(guild.id, 'busy');
      for (let i = 0; i < 200 && !session.listRooms().some((x) => x.id === `#${ch.id}`); i++) await sleep(25);
      await session.joinRoom(room(ch), 'x');
      await rec.take('roomJoined');
    });

    after(async () => {
      await session.logout();
    });

    test('a 429 from Discord delays the message by retry_after but does not lose it', async () => {
      fake.rateLimit({ method: 'POST', path: new RegExp(`^/channels/${ch.id}/messages$`) }, 1);
      const t0 = Date.now();
      await session.sendRoomMessage(room(ch), { text: 'patience', id: 'kit-429' });
      const took = Date.now() - t0;
      const posts = fake.sent({ method: 'POST', path: `/channels/${ch.id}/messages` });
      assert.deepEqual(posts.map((p) => p.status), [429, 200]);
      assert.ok(posts[1]!.at - posts[0]!.at >= 1000, `retried after ${posts[1]!.at - posts[0]!.at} ms, Retry-After was 1 s`);
      assert.ok(took >= 1000);
      assert.deepEqual([...ch.messages.values()].map((m) => m.message.content), ['patience']);
    });

    test('a global 429 is honoured too', async () => {
      fake.rateLimit({ path: /^\/channels\/\d+\/messages$/ }, 1, { global: true });
      const t0 = Date.now();
      await session.sendRoomMessage(room(ch), { text: 'global' });
      assert.ok(Date.now() - t0 >= 1000);
      assert.equal([...ch.messages.values()].filter((m) => m.message.content === 'global').length, 1);
    });

    test('the X-RateLimit headers are honoured: a burst waits for the bucket instead of hitting 429', async () => {
      fake.setBucket('POST /channels/{channel}/messages', 2, 1000);
      await sleep(1100);
      const violations = fake.bucketViolations;
      const t0 = Date.now();
      await Promise.all([1, 2, 3, 4, 5].map((i) => session.sendRoomMessage(room(ch), { text: `burst ${i}` })));
      const took = Date.now() - t0;
      assert.equal(fake.bucketViolations, violations, 'discord.js never exceeded the bucket');
      assert.ok(took >= 1500, `five messages at two per second took ${took} ms`);
      assert.deepEqual(
        [...ch.messages.values()].map((m) => m.message.content).filter((c) => c.startsWith('burst')).sort(),
        ['burst 1', 'burst 2', 'burst 3', 'burst 4', 'burst 5'],
      );
      fake.setBucket('POST /channels/{channel}/messages', 50, 1000);
    });

    test('a rate limit longer than maxRateLimitWaitSeconds fails the action with resource-constraint', async () => {
      const impatient = createDiscordAdapter({ api: fake.apiBase, maxRateLimitWaitMs: 500, waitGuildTimeoutMs: 2000 });
      const { session: s2 } = await login(undefined, impatient);
      fake.rateLimit({ method: 'POST', path: new RegExp(`^/channels/${ch.id}/messages$`) }, 5);
      const posts = () => fake.sent({ method: 'POST', path: `/channels/${ch.id}/messages` }).length;
      const before = posts();
      await rejectsWith(s2.sendRoomMessage(room(ch), { text: 'in a hurry' }), DiscordCommandError, (e) => assert.equal(e.condition, 'resource-constraint'));
      // Failed on the 429 itself: no retry after waiting out the 5 s limit.
      assert.equal(posts(), before + 1);
      await s2.logout();
    });
  });

  describe('connection', () => {
    test('a dropped gateway connection is resumed at resume_gateway_url and no event is lost', async () => {
      const { session, rec } = await login();
      await session.joinRoom(room(general), 'x');
      await rec.take('roomJoined');
      const resumesBefore = fake.gatewayReceived.filter((p) => p.op === Op.Resume).length;
      fake.dropGateway();
      // While the bot is away:
      fake.say(general.id, u.alice!, 'missed 1');
      fake.say(general.id, u.bob!, 'missed 2');
      fake.say(fake.dmChannel(u.alice!).id, u.alice!, 'missed dm');
      await fake.waitForOp(Op.Resume, resumesBefore + 1, 5000);
      assert.equal((await rec.take('roomMessage'))[2].text, 'missed 1');
      assert.equal((await rec.take('roomMessage'))[2].text, 'missed 2');
      assert.equal((await rec.take('message'))[1].text, 'missed dm');
      assert.equal(fake.gatewayConnections.at(-1), '/resume');
      const resume = fake.gatewayReceived.filter((p) => p.op === Op.Resume).at(-1)!;
      assert.equal(typeof resume.d.session_id, 'string');
      assert.equal(typeof resume.d.seq, 'number');
      fake.say(general.id, u.alice!, 'after');
      assert.equal((await rec.take('roomMessage'))[2].text, 'after');
      fake.say(general.id, u.alice!, 'marker after the resume');
      await rec.take('roomMessage', ([, , m]) => m.text === 'marker after the resume');
      assert.equal(rec.unseen('roomMessage'), 0, 'nothing twice');
      assert.ok(await rec.none('disconnected', () => true, 2000), 'no disconnect for a resumed connection');
      await session.logout();
    });

    test('op 7 RECONNECT resumes; a non-resumable INVALID_SESSION identifies again and the room stays usable', async () => {
      const { session, rec } = await login();
      await session.joinRoom(room(general), 'x');
      await rec.take('roomJoined');
      const resumes = fake.gatewayReceived.filter((p) => p.op === Op.Resume).length;
      fake.requestReconnect();
      await fake.waitForOp(Op.Resume, resumes + 1, 5000);
      fake.say(general.id, u.alice!, 'after reconnect');
      assert.equal((await rec.take('roomMessage'))[2].text, 'after reconnect');
      const identifies = fake.gatewayReceived.filter((p) => p.op === Op.Identify).length;
      fake.invalidateSessions(false);
      await fake.waitForOp(Op.Identify, identifies + 1, 15_000);
      await sleep(300);
      fake.say(general.id, u.alice!, 'after new session');
      assert.equal((await rec.take('roomMessage'))[2].text, 'after new session');
      await session.sendRoomMessage(room(general), { text: 'still here' });
      assert.ok(await rec.none('disconnected'));
      await session.logout();
    });

    test('a gateway outage longer than the grace time ends the session (not final); the session is dead', async () => {
      const impatient = createDiscordAdapter({ api: fake.apiBase, reconnectGraceMs: 1500, waitGuildTimeoutMs: 2000 });
      const { session, rec } = await login(undefined, impatient);
      fake.refuseGateway(4000);
      const [reason, final] = await rec.take('disconnected', () => true, 6000);
      assert.match(reason, /lost the connection to the Discord gateway/);
      assert.equal(final, false);
      assert.equal(session.connected, false);
      await rejectsWith(session.sendMessage({ id: u.alice! }, { text: 'x' }), LegacyNetworkError);
      assert.ok(await rec.none('disconnected', () => true, 500), 'disconnected is emitted once');
      // discord.js is stopped for good: once the gateway is back, nothing connects for this session.
      const connections = fake.gatewayConnections.length;
      await sleep(4000);
      assert.equal(fake.gatewayConnections.length, connections, 'no connection after the session ended');
    });

    test('a revoked token (close 4004) ends the session for good (final)', async () => {
      const bot = fake.createBot('revoked-bot');
      fake.addMember(guild.id, bot.user.id);
      const { session, rec } = await login({ password: bot.token });
      fake.revokeToken(bot.token);
      const [reason, final] = await rec.take('disconnected');
      assert.match(reason, /no longer accepts the bot token/);
      assert.equal(final, true);
      assert.equal(session.connected, false);
    });

    test('a new login fetches what was missed since the last message seen (the sync state): direct messages at once, a room when joined, once, with their time', async () => {
      const first = await login();
      await first.session.joinRoom(room(random), 'x');
      await first.rec.take('roomJoined');
      const dmCh = fake.dmChannel(u.bob!);
      fake.say(random.id, u.alice!, 'seen live');
      fake.say(dmCh.id, u.bob!, 'dm seen live');
      await first.rec.take('roomMessage', ([, , m]) => m.text === 'seen live');
      await first.rec.take('message', ([, m]) => m.text === 'dm seen live');
      const [state] = await first.rec.take('syncState');
      assert.equal(typeof state, 'string');
      const stored = first.session.syncState();
      assert.deepEqual(Object.keys(JSON.parse(stored).rooms), [random.id]);
      await first.session.logout();
      const missed = [fake.say(random.id, u.alice!, 'missed in the room 1'), fake.say(random.id, u.bob!, 'missed in the room 2')];
      fake.say(dmCh.id, u.bob!, 'missed dm');

      const session = await adapter.login({ userJid: 'user@localhost', credentials: { password: fake.token }, log: testLog().log, state: stored });
      sessions.push(session);
      const rec = new Recorder(session);
      const [from, dmMsg] = await rec.take('message', ([, m]) => m.text === 'missed dm', 8000);
      assert.equal(from.id, u.bob);
      assert.ok(dmMsg.timestamp instanceof Date, 'with its time (XEP-0203 delay)');
      await session.joinRoom(room(random), 'x');
      // The room's history comes with roomJoined (the kit sends it before the subject).
      const [, , , , history] = await rec.take('roomJoined');
      assert.deepEqual(history?.map((h) => [h.nick, h.message.text]), [
        ['Alice', 'missed in the room 1'],
        ['Bobby', 'missed in the room 2'],
      ]);
      assert.equal(history![0]!.message.timestamp?.getTime(), Date.parse(missed[0]!.timestamp));
      const fetched = fake.sent({ method: 'GET', path: `/channels/${random.id}/messages` }).at(-1)!;
      assert.equal(fetched.query.after, JSON.parse(stored).rooms[random.id]);
      fake.say(random.id, u.alice!, 'live again');
      await rec.take('roomMessage', ([, , m]) => m.text === 'live again');
      assert.ok(!rec.texts().includes('seen live') && !rec.texts().includes('dm seen live'), 'nothing seen before is delivered again');
      await session.logout();
    });

    test('logging out ends the gateway session without a disconnected event', async () => {
      const { session, rec } = await login();
      const open = fake.connectionsOpen;
      await session.logout('bye');
      assert.ok(await rec.none('disconnected'));
      for (let i = 0; i < 20 && fake.connectionsOpen >= open; i++) await sleep(50);
      assert.ok(fake.connectionsOpen < open);
      await session.logout();
    });
  });

  describe('login failures', () => {
    test('P9 an invalid token is LegacyAuthError (REST 401), and no token is ever logged', async () => {
      const tl = testLog();
      const bad = 'MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.wrongwrongwrongwrongwrongwrongwrong12';
      await rejectsWith(adapter.login({ userJid: 'user@localhost', credentials: { password: bad }, log: tl.log }), LegacyAuthError, (e) => assert.match(e.message, /refused the bot token/));
      assert.equal(fake.sent({ path: '/gateway/bot' }).at(-1)!.status, 401);
      assert.ok(!tl.lines.join('\n').includes(bad));
    });

    test('privileged intents not switched on in the portal (close 4014) are LegacyAuthError with advice', async () => {
      const bot = fake.createBot('no-content-bot', { messageContent: false });
      await rejectsWith(adapter.login({ userJid: 'user@localhost', credentials: { password: bot.token }, log: testLog().log }), LegacyAuthError, (e) =>
        assert.match(e.message, /Message Content Intent/),
      );
      const withoutMembers = createDiscordAdapter({ api: fake.apiBase, members: false, waitGuildTimeoutMs: 2000 });
      const bot2 = fake.createBot('no-members-bot', { members: false });
      const { session } = await login({ password: bot2.token }, withoutMembers);
      await session.logout();
    });

    test('an unreachable Discord or gateway is LegacyNetworkError; a gateway that never says HELLO times out', async () => {
      const nowhere = createDiscordAdapter({ api: 'http://127.0.0.1:9/api', restTimeoutMs: 2000, loginTimeoutMs: 8000 });
      await rejectsWith(nowhere.login({ userJid: 'user@localhost', credentials: { password: fake.token }, log: testLog().log }), LegacyNetworkError);
      fake.refuseGateway(300, false);
      await rejectsWith(adapter.login({ userJid: 'user@localhost', credentials: { password: fake.token }, log: testLog().log }), LegacyNetworkError);
      await sleep(300);
      const slow = createDiscordAdapter({ api: fake.apiBase, loginTimeoutMs: 1500 });
      fake.stallGateway(1000);
      const t0 = Date.now();
      await rejectsWith(slow.login({ userJid: 'user@localhost', credentials: { password: fake.token }, log: testLog().log }), LegacyNetworkError, (e) => assert.match(e.message, /in time/));
      assert.ok(Date.now() - t0 >= 1400);
      // The abandoned attempt is gone: no gateway connection stays open for it.
      await sleep(200);
      const open = fake.connectionsOpen;
      const { session } = await login();
      assert.equal(fake.connectionsOpen, open + 1);
      await session.logout();
    });
  });

  test('presence of contacts with the Presence intent', async () => {
    const withPresence = createDiscordAdapter({ api: fake.apiBase, presences: true, waitGuildTimeoutMs: 2000 });
    const { session, rec } = await login(undefined, withPresence);
    const identify = fake.gatewayReceived.filter((p) => p.op === Op.Identify).at(-1)!;
    assert.ok(identify.d.intents & Intent.GuildPresences);
    await session.addContact!({ id: u.alice! });
    fake.setPresence(u.alice!, 'idle');
    const [contact, show] = await rec.take('contactPresence');
    assert.equal(contact.id, u.alice);
    assert.equal(show, 'away');
    fake.setPresence(u.bob!, 'online');
    fake.setPresence(u.alice!, 'offline');
    assert.equal((await rec.take('contactPresence', ([c]) => c.id === u.alice))[1], 'unavailable');
    // Bob's update was dispatched before Alice's, in order.
    assert.equal(rec.unseen('contactPresence'), 0, 'only contacts the user has');
    await session.setPresence!('dnd', 'busy');
    const op3 = await fake.waitForOp(Op.PresenceUpdate, 1, 2000);
    assert.equal(op3.d.status, 'dnd');
    await session.logout();
  });

  test('errors that are not Discord refusals are network errors', () => {
    assert.ok(mapError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'sending') instanceof LegacyNetworkError);
    assert.ok(mapError(Object.assign(new Error('aborted'), { name: 'AbortError' }), 'sending') instanceof LegacyNetworkError);
  });
});

// ------------------------------------------------------------------ real Discord (optional)

const LIVE_TOKEN = process.env.DISCORD_TEST_TOKEN;
const LIVE_CHANNEL = process.env.DISCORD_TEST_CHANNEL;

describe('Discord adapter against real Discord', { skip: LIVE_TOKEN && LIVE_CHANNEL ? false : 'set DISCORD_TEST_TOKEN and DISCORD_TEST_CHANNEL to run' }, () => {
  let session: DiscordSession;
  let rec: Recorder;
  const tl = testLog();
  const r = (): LegacyRoom => ({ id: `#${LIVE_CHANNEL}` });

  before(async () => {
    session = await createDiscordAdapter().login({ userJid: 'test@localhost', credentials: { password: LIVE_TOKEN! }, log: tl.log });
    rec = new Recorder(session);
  });

  after(async () => {
    await session?.logout();
  });

  test('joins the channel with its occupants', async () => {
    await session.joinRoom(r(), 'x');
    const [joined, own, occupants] = await rec.take('roomJoined', () => true, 20_000);
    assert.equal(joined.id, r().id);
    assert.ok(occupants.some((o) => o.nick === own));
  });

  test('sends (no echo), and relays, edits and deletes what the bot posts elsewhere', async () => {
    const tag = `gatehouse test ${Date.now()}`;
    await session.sendRoomMessage(r(), { text: `${tag} via the adapter`, id: 'live-1' });
    assert.ok(await rec.none('roomMessage', (a) => (a[2] as TextMessage).text.includes(tag), 3000));
    const rest = new REST({ version: '10' }).setToken(LIVE_TOKEN!);
    const posted = (await rest.post(Routes.channelMessages(LIVE_CHANNEL!), { body: { content: `${tag} via REST` } })) as { id: string };
    const [, , msg] = await rec.take('roomMessage', ([, , m]) => m.text === `${tag} via REST`, 20_000);
    assert.equal(msg.id, posted.id);
    await rest.patch(Routes.channelMessage(LIVE_CHANNEL!, posted.id), { body: { content: `${tag} edited` } });
    assert.equal((await rec.take('roomMessage', ([, , m]) => m.editOf === posted.id, 20_000))[2].text, `${tag} edited`);
    await rest.delete(Routes.channelMessage(LIVE_CHANNEL!, posted.id));
    await rec.take('roomMessage', ([, , m]) => m.redacts === posted.id, 20_000);
    await session.sendRoomMessage(r(), { text: '', redacts: 'live-1' });
    assert.ok(!tl.lines.join('\n').includes(LIVE_TOKEN!));
  });
});
