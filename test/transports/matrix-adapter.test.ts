/**
 * The Matrix adapter through matrix-js-sdk, without XMPP: against the fake homeserver
 * (test/fakes/matrix-homeserver.ts, real HTTP on a random port), and optionally against a real
 * homeserver.
 *
 * Real homeserver (skipped unless all three are set):
 *   MATRIX_TEST_HOMESERVER  the client API base URL, e.g. https://matrix.example.org
 *   MATRIX_TEST_USER        the full user ID of a throwaway test account, e.g. @gatehouse-test:example.org
 *   MATRIX_TEST_PASSWORD    its password
 * That suite logs in with the password (a new device "Gatehouse XMPP gateway" each run) and again
 * with the stored token, creates a private room (left afterwards), sends into it and receives
 * what a second client of the same account (another device) sends. Use an account made for this:
 * the test leaves rooms and devices behind on the server.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as sdk from 'matrix-js-sdk';
import { FakeHomeserver } from '../fakes/matrix-homeserver.js';
import {
  createMatrixAdapter,
  isMatrixRoomId,
  parseMatrixSettings,
  MatrixCommandError,
  UNDECRYPTABLE_TEXT,
  type MatrixAdapter,
  type MatrixSession,
  type MatrixAdapterOptions,
} from '../../transports/matrix/index.js';
import { contentFromMessage, mediaUrl, messageFromContent, pollText, stripReplyFallback } from '../../transports/matrix/content.js';
import { normaliseHomeserver, parseCredentials } from '../../transports/matrix/settings.js';
import { LegacyAuthError, LegacyNetworkError } from '../../transports/kit/adapter.js';
import { ElementPeer } from './matrix-element-peer.js';
import { Recorder, testLog, type TestLog } from './session-recorder.js';

// ------------------------------------------------------------------ helpers


const FAST: MatrixAdapterOptions = {
  pollTimeoutMs: 2000,
  syncFailureTimeoutMs: 1500,
  retryIntervalMs: 200,
  requestTimeoutMs: 5000,
  // Generous: the first sync with Rust crypto set up took over 5 s on the loaded 2-core CI machine; no test here times a login.
  loginTimeoutMs: 30_000,
  joinTimeoutMs: 3000,
};

/** The sync position the kit would have stored after the messages seen so far (the next syncState after the last message). */
async function stateAfterMessages(rec: Recorder): Promise<string> {
  for (let i = 0; i < 50; i++) {
    const lastMsg = rec.all.map((e) => e.event).lastIndexOf('message');
    const lastState = rec.all.map((e) => e.event).lastIndexOf('syncState');
    if (lastState > lastMsg) return rec.all[lastState]!.args[0] as string;
    await delay(100);
  }
  throw new Error('no syncState after the last message');
}

/**
 * Waits until the session reported a sync position at or after the homeserver's latest event:
 * every event before it has been emitted (the positive end of a "nothing else arrived" check).
 */
async function caughtUp(rec: Recorder, hs: FakeHomeserver): Promise<void> {
  const at = hs.position;
  const reached = () => rec.all.some((e) => e.event === 'syncState' && positionOf(e.args[0] as string) >= at);
  for (let i = 0; i < 200 && !reached(); i++) await delay(25);
  assert.ok(reached(), `no sync position at or after ${at}`);
}

/** The fake's stream position in a session's sync state (resume.ts: JSON with `since`). */
function positionOf(state: string | null | undefined): number {
  const since: unknown = state?.startsWith('{') ? (JSON.parse(state) as { since?: unknown }).since : state;
  return typeof since === 'string' ? Number(since.replace(/^s/, '')) : -1;
}

const seen = (rec: Recorder, event: string, pred: (args: any[]) => boolean = () => true) => rec.all.filter((e) => e.event === event && pred(e.args)).length;

let uniq = 0;
const name = (base: string) => `${base}${++uniq}`;

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ unit tests (no server)

describe('Matrix content mapping', () => {
  const hs = 'https://hs.example.org';

  test('text, notice and emote messages', () => {
    assert.deepEqual(messageFromContent({ msgtype: 'm.text', body: 'hello' }, 'm.room.message', hs), { text: 'hello' });
    assert.deepEqual(messageFromContent({ msgtype: 'm.notice', body: 'bot says' }, 'm.room.message', hs), { text: 'bot says', notice: true });
    assert.deepEqual(messageFromContent({ msgtype: 'm.emote', body: 'waves' }, 'm.room.message', hs), { text: 'waves', action: true });
    assert.equal(messageFromContent({ msgtype: 'm.text' }, 'm.room.message', hs), null);
  });

  test('media become their caption or file name with a download link', () => {
    const img = messageFromContent({ msgtype: 'm.image', body: 'cat.png', url: 'mxc://hs.example.org/AbC123' }, 'm.room.message', hs)!;
    assert.equal(img.text, 'cat.png');
    assert.deepEqual(img.attachments, ['https://hs.example.org/_matrix/media/v3/download/hs.example.org/AbC123/cat.png']);
    const captioned = messageFromContent({ msgtype: 'm.file', body: 'the report', filename: 'report 2024.pdf', url: 'mxc://other.org/xyz' }, 'm.room.message', hs)!;
    assert.equal(captioned.text, 'the report');
    assert.deepEqual(captioned.attachments, ['https://hs.example.org/_matrix/media/v3/download/other.org/xyz/report%202024.pdf']);
    assert.equal(mediaUrl(hs, 'https://evil.example/x'), null);
    assert.equal(mediaUrl(hs, 'mxc://a/../b'), null);
    const sticker = messageFromContent({ body: 'smile', url: 'mxc://hs.example.org/st1' }, 'm.sticker', hs)!;
    assert.equal(sticker.attachments?.length, 1);
    const loc = messageFromContent({ msgtype: 'm.location', body: 'here', geo_uri: 'geo:51.5,-0.1' }, 'm.room.message', hs)!;
    assert.equal(loc.text, 'here (geo:51.5,-0.1)');
  });

  test('replies lose the quoted fallback; edits carry the new text', () => {
    const reply = messageFromContent(
      { msgtype: 'm.text', body: '> <@bob:hs> original\n> second line\n\nmy answer', 'm.relates_to': { 'm.in_reply_to': { event_id: '$orig' } } },
      'm.room.message',
      hs,
    )!;
    assert.deepEqual(reply, { text: 'my answer', replyTo: '$orig' });
    assert.equal(stripReplyFallback('no quote'), 'no quote');
    const edit = messageFromContent(
      { msgtype: 'm.text', body: '* fixed', 'm.new_content': { msgtype: 'm.text', body: 'fixed' }, 'm.relates_to': { rel_type: 'm.replace', event_id: '$old' } },
      'm.room.message',
      hs,
    )!;
    assert.deepEqual(edit, { text: 'fixed', editOf: '$old' });
  });

  test('outgoing content: emote, notice, reply, edit, attachment links', () => {
    assert.deepEqual(contentFromMessage({ text: 'hi' }), { msgtype: 'm.text', body: 'hi' });
    assert.deepEqual(contentFromMessage({ text: 'waves', action: true }), { msgtype: 'm.emote', body: 'waves' });
    assert.deepEqual(contentFromMessage({ text: 'fyi', notice: true }), { msgtype: 'm.notice', body: 'fyi' });
    assert.deepEqual(contentFromMessage({ text: 'yes' }, { replyTo: '$q' }), { msgtype: 'm.text', body: 'yes', 'm.relates_to': { 'm.in_reply_to': { event_id: '$q' } } });
    assert.deepEqual(contentFromMessage({ text: 'new' }, { editOf: '$e' }), {
      msgtype: 'm.text',
      body: '* new',
      'm.new_content': { msgtype: 'm.text', body: 'new' },
      'm.relates_to': { rel_type: 'm.replace', event_id: '$e' },
    });
    assert.equal(contentFromMessage({ text: 'look', attachments: ['https://x/y.png'] }).body, 'look\nhttps://x/y.png');
    assert.equal(contentFromMessage({ text: 'https://x/y.png', attachments: ['https://x/y.png'] }).body, 'https://x/y.png');
  });

  test('polls become their question and answers', () => {
    const stable = { 'm.poll': { question: { 'm.text': [{ body: 'Lunch?' }] }, answers: [{ 'm.id': 'a', 'm.text': [{ body: 'Pizza' }] }, { 'm.id': 'b', 'm.text': [{ body: 'Soup' }] }] } };
    assert.equal(pollText(stable), '[poll] Lunch?\n1. Pizza\n2. Soup');
    const unstable = { 'org.matrix.msc3381.poll.start': { question: { 'org.matrix.msc1767.text': 'Tea?' }, answers: [{ id: '1', 'org.matrix.msc1767.text': 'Yes' }] } };
    assert.equal(pollText(unstable), '[poll] Tea?\n1. Yes');
    assert.equal(pollText({}), null);
  });

  test('credentials and settings are checked', () => {
    const c = parseCredentials({ username: '@alice:example.org', homeserver: 'matrix.example.org/', password: 'pw' });
    assert.equal(c.homeserver, 'https://matrix.example.org');
    assert.equal(c.userId, '@alice:example.org');
    assert.throws(() => parseCredentials({ username: 'alice', homeserver: 'https://x', password: 'pw' }), LegacyAuthError);
    // Neither a password nor a token: OAuth 2.0 login in the browser (the adapter decides).
    const bare = parseCredentials({ username: '@alice:example.org', homeserver: 'https://x' });
    assert.equal(bare.password, null);
    assert.equal(bare.token, null);
    // A server name is discovered; no homeserver at all: the server name of the user ID.
    assert.deepEqual([parseCredentials({ username: '@alice:example.org', homeserver: 'Matrix.org' }).serverName, parseCredentials({ username: '@alice:example.org', homeserver: 'Matrix.org' }).homeserver], ['matrix.org', null]);
    assert.equal(parseCredentials({ username: '@alice:example.org:8448', password: 'pw' }).serverName, 'example.org:8448');
    assert.throws(() => parseCredentials({ username: '@alice:example.org', homeserver: 'ftp://x', token: 't' }), LegacyAuthError);
    assert.throws(() => normaliseHomeserver('https://user:pw@x'), LegacyAuthError);
    assert.equal(normaliseHomeserver('https://hs.example.org/base/?q=1').pathname, '/base');
    assert.deepEqual(parseMatrixSettings({ leaveRoomsOnPart: true, syncFailureTimeout: 30, allowedHomeservers: ['matrix.org'] }), {
      leaveRoomsOnPart: true,
      syncFailureTimeoutMs: 30_000,
      allowedHomeservers: ['matrix.org'],
    });
    assert.throws(() => parseMatrixSettings({ leaveRoomsOnPart: 'yes' }), /network.leaveRoomsOnPart/);
    assert.throws(() => parseMatrixSettings({ nosuch: 1 }), /network.nosuch/);
  });

  test('the adapter describes itself for the kit', () => {
    const a = createMatrixAdapter();
    assert.equal(a.network, 'matrix');
    assert.equal(a.name, 'Matrix gateway');
    assert.equal(a.multiServer, false);
    assert.ok(isMatrixRoomId('!abc:example.org') && a.isRoomId('#room:example.org'));
    assert.ok(!a.isRoomId('@alice:example.org'));
    const fields = new Map(a.registrationFields.map((f) => [f.name, f]));
    assert.equal(fields.get('username')?.required, true);
    assert.equal(fields.get('homeserver')?.required, false);
    assert.equal(fields.get('password')?.secret, true);
    assert.equal(fields.get('token')?.secret, true);
  });
});

// ------------------------------------------------------------------ against the fake homeserver

describe('Matrix adapter against the fake homeserver', () => {
  let hs: FakeHomeserver;
  let adapter: MatrixAdapter;
  const sessions: MatrixSession[] = [];

  before(async () => {
    hs = await FakeHomeserver.start();
    adapter = createMatrixAdapter(FAST);
  });
  after(async () => {
    for (const s of sessions) await s.logout().catch(() => undefined);
    await hs.stop();
  });

  const open = async (credentials: Record<string, string>, opts: { state?: string; tl?: TestLog; adapter?: MatrixAdapter } = {}) => {
    const tl = opts.tl ?? testLog();
    const session = await (opts.adapter ?? adapter).login({
      userJid: 'user@localhost',
      credentials: { homeserver: hs.url, ...credentials },
      log: tl.log,
      ...(opts.state !== undefined ? { state: opts.state } : {}),
    });
    sessions.push(session);
    const rec = new Recorder(session);
    await rec.take('connected');
    return { session, rec, tl };
  };

  /** A user with a password; returns its user ID and login credentials. */
  const user = (base: string, displayName?: string) => {
    const local = name(base);
    const id = hs.createUser(local, { password: `${local}-pw`, ...(displayName ? { displayName } : {}) });
    return { id, creds: { username: id, password: `${local}-pw` } };
  };

  /** The user logged in, plus a contact with a direct chat. */
  const withContact = async () => {
    const me = user('me');
    const bob = user('bob', 'Bob');
    const dm = hs.createRoom({ creator: bob.id, members: [me.id], direct: true });
    const r = await open(me.creds);
    return { me, bob, dm, ...r };
  };

  test('P9 password login: the token and device are what is stored, never the password', async () => {
    const alice = user('alice');
    const { session, rec } = await open(alice.creds);
    assert.equal(session.userId, alice.id);
    assert.equal(hs.sent({ kind: 'login', userId: alice.id }).length, 1);
    const stored = adapter.credentialsToStore(session, { username: alice.id, homeserver: hs.url, password: alice.creds.password });
    assert.deepEqual(Object.keys(stored).sort(), ['deviceId', 'homeserver', 'token', 'username']);
    assert.ok(!Object.values(stored).includes(alice.creds.password));
    assert.equal(stored.deviceId, session.deviceId);
    assert.ok(hs.tokensOf(alice.id).some((t) => t.token === stored.token && t.valid));
    // The login form named our device.
    const login = hs.sent({ kind: 'login', userId: alice.id })[0]!;
    assert.equal(login.deviceId, session.deviceId);
    // Logging in again with what was stored: no second password login, same device.
    const again = await open(stored);
    assert.equal(again.session.deviceId, session.deviceId);
    assert.equal(hs.sent({ kind: 'login', userId: alice.id }).length, 1);
    assert.ok(rec.all.some((e) => e.event === 'syncState'));
  });

  test('a wrong password is 403 M_FORBIDDEN from the homeserver and an auth error for the kit', async () => {
    const alice = user('alice');
    const tl = testLog();
    await assert.rejects(
      adapter.login({ userJid: 'u@localhost', credentials: { homeserver: hs.url, username: alice.id, password: 'wrong-secret' }, log: tl.log }),
      (err: Error) => err instanceof LegacyAuthError && /Invalid username or password/.test(err.message) && !err.message.includes('wrong-secret'),
    );
    const raw = await fetch(`${hs.url}/_matrix/client/v3/login`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ type: 'm.login.password', identifier: { type: 'm.id.user', user: alice.id }, password: 'nope' }),
    });
    assert.equal(raw.status, 403);
    assert.deepEqual(await raw.json(), { errcode: 'M_FORBIDDEN', error: 'Invalid username or password' });
    assert.ok(!tl.lines.join('\n').includes('wrong-secret'));
  });

  test('access token login: whoami checks the token and its owner', async () => {
    const alice = user('alice');
    const other = user('other');
    const { accessToken, deviceId } = hs.issueToken(alice.id);
    const { session } = await open({ username: alice.id, token: accessToken });
    assert.equal(session.deviceId, deviceId);
    assert.equal(hs.sent({ kind: 'login', userId: alice.id }).length, 0);
    await assert.rejects(adapter.login({ userJid: 'u@localhost', credentials: { homeserver: hs.url, username: other.id, token: accessToken }, log: testLog().log }), (err: Error) => err instanceof LegacyAuthError && /another Matrix user/.test(err.message));
    const revoked = hs.issueToken(alice.id);
    hs.revokeTokens(revoked.accessToken);
    await assert.rejects(adapter.login({ userJid: 'u@localhost', credentials: { homeserver: hs.url, username: alice.id, token: revoked.accessToken }, log: testLog().log }), (err: Error) => err instanceof LegacyAuthError && /M_UNKNOWN_TOKEN/.test(err.message));
    const raw = await fetch(`${hs.url}/_matrix/client/v3/account/whoami`, { headers: { Authorization: `Bearer ${revoked.accessToken}` } });
    assert.equal(raw.status, 401);
    assert.equal(((await raw.json()) as { errcode: string }).errcode, 'M_UNKNOWN_TOKEN');
  });

  test('unreachable servers, non-homeservers and plain http elsewhere than loopback are refused', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const srv = createServer();
      srv.listen(0, '127.0.0.1', () => {
        const port = (srv.address() as { port: number }).port;
        srv.close(() => resolve(port));
      });
    });
    const creds = (homeserver: string) => ({ userJid: 'u@localhost', credentials: { homeserver, username: '@a:matrix.test', password: 'pw' }, log: testLog().log });
    await assert.rejects(adapter.login(creds(`http://127.0.0.1:${closedPort}`)), LegacyNetworkError);
    const web: Server = createServer((_req, res) => res.writeHead(404).end('not here'));
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', () => r()));
    try {
      await assert.rejects(adapter.login(creds(`http://127.0.0.1:${(web.address() as { port: number }).port}`)), (err: Error) => err instanceof LegacyNetworkError && /not a Matrix homeserver/.test(err.message));
    } finally {
      web.close();
    }
    await assert.rejects(adapter.login(creds('http://matrix.example.org')), (err: Error) => err instanceof LegacyAuthError && /https/.test(err.message));
    const restricted = createMatrixAdapter({ ...FAST, allowedHomeservers: ['matrix.example.org'] });
    await assert.rejects(restricted.login(creds(hs.url)), (err: Error) => err instanceof LegacyAuthError && /does not connect/.test(err.message));
  });

  test('a fresh login does not replay history; direct chats are the roster with presence', async () => {
    const me = user('me');
    const bob = user('bob', 'Bob');
    const carol = user('carol', 'Carol');
    const dm = hs.createRoom({ creator: bob.id, members: [me.id], direct: true });
    const group = hs.createRoom({ creator: carol.id, members: [me.id, bob.id], name: 'Group' });
    // A two-member room without name or alias counts as a direct chat too.
    const twoPeople = hs.createRoom({ creator: carol.id, members: [me.id] });
    hs.message(dm, bob.id, 'old direct message');
    hs.message(group, carol.id, 'old group message');
    hs.message(twoPeople, carol.id, 'old message from carol');
    hs.setPresence(bob.id, 'online', 'at work');
    const { rec } = await open(me.creds);
    const [contacts] = await rec.take('roster');
    assert.deepEqual(contacts.map((c) => c.id).sort(), [bob.id, carol.id].sort());
    assert.equal(contacts.find((c) => c.id === bob.id)?.displayName, 'Bob');
    const [who, show, status] = await rec.take('contactPresence', ([c]) => c.id === bob.id);
    assert.equal(who.id, bob.id);
    assert.equal(show, 'available');
    assert.equal(status, 'at work');
    await caughtUp(rec, hs);
    assert.equal(seen(rec, 'message'), 0, 'no history replayed');
    assert.deepEqual(rec.texts(), []);
    hs.setPresence(bob.id, 'unavailable');
    const [, away] = await rec.take('contactPresence', ([c, s]) => c.id === bob.id && s === 'away');
    assert.equal(away, 'away');
    hs.setPresence(bob.id, 'offline');
    await rec.take('contactPresence', ([c, s]) => c.id === bob.id && s === 'unavailable');
    hs.message(twoPeople, carol.id, 'new from carol');
    const [from, msg] = await rec.take('message');
    assert.equal(from.id, carol.id);
    assert.equal(msg.text, 'new from carol');
  });

  test('direct chats in: text, notice, emote, reply, edit, redaction, media, encrypted, typing, read receipts', async () => {
    const { bob, dm, rec, session } = await withContact();
    const first = hs.message(dm, bob.id, 'hello there');
    let [from, msg] = await rec.take('message');
    assert.deepEqual(from, { id: bob.id, displayName: 'Bob' });
    assert.equal(msg.text, 'hello there');
    assert.equal(msg.id, first);
    assert.equal(msg.timestamp, undefined);
    hs.inject(dm, { type: 'm.room.message', sender: bob.id, content: { msgtype: 'm.notice', body: 'automatic' } });
    [, msg] = await rec.take('message');
    assert.equal(msg.notice, true);
    hs.inject(dm, { type: 'm.room.message', sender: bob.id, content: { msgtype: 'm.emote', body: 'waves' } });
    [, msg] = await rec.take('message');
    assert.deepEqual([msg.text, msg.action], ['waves', true]);
    hs.message(dm, bob.id, '> <@x> hello there\n\nwelcome back', { 'm.relates_to': { 'm.in_reply_to': { event_id: first } } });
    [, msg] = await rec.take('message');
    assert.deepEqual([msg.text, msg.replyTo], ['welcome back', first]);
    hs.message(dm, bob.id, '* hello here', { 'm.new_content': { msgtype: 'm.text', body: 'hello here' }, 'm.relates_to': { rel_type: 'm.replace', event_id: first } });
    [, msg] = await rec.take('message');
    assert.deepEqual([msg.text, msg.editOf], ['hello here', first]);
    const redaction = hs.inject(dm, { type: 'm.room.redaction', sender: bob.id, redacts: first, content: {} });
    [from, msg] = await rec.take('message');
    assert.deepEqual([from.id, msg.text, msg.redacts, msg.id], [bob.id, '', first, redaction]);
    const mxc = hs.upload('PNGDATA', 'image/png', 'cat.png');
    hs.inject(dm, { type: 'm.room.message', sender: bob.id, content: { msgtype: 'm.image', body: 'cat.png', url: mxc, info: { mimetype: 'image/png' } } });
    [, msg] = await rec.take('message');
    assert.equal(msg.text, 'cat.png');
    assert.equal(msg.attachments?.length, 1);
    // Without the kit's upload service the link stays the unauthenticated one, which a homeserver
    // that froze its media (as matrix.org did) no longer serves; the file itself is there.
    const res = await fetch(msg.attachments![0]!);
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { errcode: string }).errcode, 'M_NOT_FOUND');
    assert.equal(hs.mediaOf(mxc)?.data.toString(), 'PNGDATA');
    hs.inject(dm, { type: 'm.room.encrypted', sender: bob.id, content: { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'AwgAEn...', session_id: 's', sender_key: 'k', device_id: 'D' } });
    [, msg] = await rec.take('message');
    assert.equal(msg.text, UNDECRYPTABLE_TEXT);
    assert.equal(msg.notice, true);
    hs.setTyping(dm, [bob.id]);
    let [who, state] = await rec.take('typing');
    assert.deepEqual([(who as { id: string }).id, state], [bob.id, 'composing']);
    hs.setTyping(dm, []);
    [who, state] = await rec.take('typing');
    assert.equal(state, 'paused');
    hs.setTyping(dm, [bob.id]);
    await rec.take('typing', ([, s]) => s === 'composing');
    hs.message(dm, bob.id, 'typed it'); // sending stops typing
    await rec.take('message', ([, m]) => m.text === 'typed it');
    [, state] = await rec.take('typing');
    assert.equal(state, 'active');
    // Bob reads what the user sent: the kit gets its own id back; a receipt for a Matrix event keeps its ID.
    await session.sendMessage({ id: bob.id }, { text: 'read this', id: 'kit-42' });
    const mine = hs.sent({ kind: 'event', eventType: 'm.room.message', roomId: dm }).pop()!.eventId!;
    hs.receipt(dm, bob.id, mine);
    const [reader, readId] = await rec.take('displayed');
    assert.deepEqual([(reader as { id: string }).id, readId], [bob.id, 'kit-42']);
    await session.sendMessage({ id: bob.id }, { text: 'no kit id' });
    const plain = hs.sent({ kind: 'event', eventType: 'm.room.message', roomId: dm }).pop()!.eventId!;
    hs.receipt(dm, bob.id, plain);
    const [, other] = await rec.take('displayed');
    assert.equal(other, plain);
    // Answers to what the user sent name it by the kit's id too.
    hs.message(dm, bob.id, 'got it', { 'm.relates_to': { 'm.in_reply_to': { event_id: mine } } });
    [, msg] = await rec.take('message', ([, m]) => m.text === 'got it');
    assert.equal(msg.replyTo, 'kit-42');
  });

  test('reactions in: the sender\'s whole set, also after a reaction is taken back', async () => {
    const { bob, dm, rec } = await withContact();
    const target = hs.message(dm, bob.id, 'react to me');
    await rec.take('message', ([, m]) => m.text === 'react to me');
    const thumbs = hs.inject(dm, { type: 'm.reaction', sender: bob.id, content: { 'm.relates_to': { rel_type: 'm.annotation', event_id: target, key: '👍' } } });
    let [from, msg] = await rec.take('message');
    assert.equal(from.id, bob.id);
    assert.deepEqual(msg.reactions, { to: target, keys: ['👍'] });
    assert.equal(msg.text, '');
    hs.inject(dm, { type: 'm.reaction', sender: bob.id, content: { 'm.relates_to': { rel_type: 'm.annotation', event_id: target, key: '❤️' } } });
    [, msg] = await rec.take('message');
    assert.deepEqual(msg.reactions?.keys.sort(), ['❤️', '👍'].sort());
    hs.inject(dm, { type: 'm.room.redaction', sender: bob.id, redacts: thumbs, content: {} });
    [from, msg] = await rec.take('message');
    assert.equal(from.id, bob.id);
    assert.deepEqual(msg.reactions, { to: target, keys: ['❤️'] });
  });

  test('direct chats out: text, emote, notice, reply, edit and retraction by the kit\'s ids, reactions, typing, read markers', async () => {
    const { session, me, bob, dm } = await withContact();
    const bobContact = { id: bob.id };
    await session.sendMessage(bobContact, { text: 'hi bob', id: 'xmpp-1' });
    const sent = hs.sent({ kind: 'event', userId: me.id, roomId: dm });
    assert.equal(sent.length, 1);
    assert.deepEqual(sent[0]!.body, { msgtype: 'm.text', body: 'hi bob' });
    const firstId = sent[0]!.eventId!;
    await session.sendMessage(bobContact, { text: 'dances', action: true });
    await session.sendMessage(bobContact, { text: 'automated', notice: true });
    const incoming = hs.message(dm, bob.id, 'question?');
    await session.sendMessage(bobContact, { text: 'answer', replyTo: incoming });
    await session.sendMessage(bobContact, { text: 'hi Bob', editOf: 'xmpp-1' });
    await session.sendMessage(bobContact, { text: '', redacts: 'xmpp-1' });
    const bodies = hs.sent({ kind: 'event', userId: me.id, roomId: dm }).map((r) => r.body);
    assert.deepEqual(bodies[1], { msgtype: 'm.emote', body: 'dances' });
    assert.deepEqual(bodies[2], { msgtype: 'm.notice', body: 'automated' });
    assert.deepEqual(bodies[3], { msgtype: 'm.text', body: 'answer', 'm.relates_to': { 'm.in_reply_to': { event_id: incoming } } });
    assert.deepEqual(bodies[4], { msgtype: 'm.text', body: '* hi Bob', 'm.new_content': { msgtype: 'm.text', body: 'hi Bob' }, 'm.relates_to': { rel_type: 'm.replace', event_id: firstId } });
    const redact = hs.sent({ kind: 'redact', userId: me.id });
    assert.equal(redact.length, 1);
    assert.equal(redact[0]!.target, firstId);
    await assert.rejects(session.sendMessage(bobContact, { text: 'x', editOf: 'never-sent' }), (err: Error) => err instanceof MatrixCommandError && err.condition === 'item-not-found');
    // Reactions: the whole set each time; the difference goes out.
    await session.sendMessage(bobContact, { text: '', reactions: { to: incoming, keys: ['👍', '🎉'] } });
    let reactions = hs.sent({ kind: 'event', userId: me.id, eventType: 'm.reaction' });
    assert.deepEqual(reactions.map((r) => (r.body['m.relates_to'] as { key: string }).key).sort(), ['🎉', '👍'].sort());
    await session.sendMessage(bobContact, { text: '', reactions: { to: incoming, keys: ['🎉'] } });
    reactions = hs.sent({ kind: 'event', userId: me.id, eventType: 'm.reaction' });
    assert.equal(reactions.length, 2, 'nothing new sent');
    const thumbs = reactions.find((r) => (r.body['m.relates_to'] as { key: string }).key === '👍')!;
    assert.ok(hs.sent({ kind: 'redact', userId: me.id }).some((r) => r.target === thumbs.eventId));
    // Typing and read markers.
    await session.sendTyping(bobContact, 'composing');
    await session.sendTyping(bobContact, 'paused');
    const typing = hs.sent({ kind: 'typing', userId: me.id });
    assert.deepEqual(typing.map((t) => t.body.typing), [true, false]);
    await session.markRead(bobContact, incoming);
    const marker = hs.sent({ kind: 'read_markers', userId: me.id });
    assert.equal(marker.length, 1);
    assert.equal(marker[0]!.body['m.read'], incoming);
    assert.equal(marker[0]!.body['m.fully_read'], incoming);
  });

  test('the echo of what the gateway sent is not reported back; what the user sent elsewhere in a direct chat neither', async () => {
    const { session, me, bob, dm, rec } = await withContact();
    await session.sendMessage({ id: bob.id }, { text: 'from xmpp' });
    // The same account on another device (e.g. Element).
    const other = sdk.createClient({ baseUrl: hs.url, ...(() => { const t = hs.issueToken(me.id); return { accessToken: t.accessToken, deviceId: t.deviceId }; })(), userId: me.id });
    await other.sendEvent(dm, 'm.room.message' as never, { msgtype: 'm.text', body: 'from element' } as never);
    hs.message(dm, bob.id, 'marker');
    await rec.take('message', ([, m]) => m.text === 'marker');
    assert.deepEqual(rec.texts(), ['marker']);
  });

  test('a message to a new contact opens a direct chat (is_direct, m.direct) and reuses it', async () => {
    const me = user('me');
    const dave = user('dave', 'Dave');
    const { session, rec } = await open(me.creds);
    await session.sendMessage({ id: dave.id }, { text: 'hello dave' });
    const created = hs.sent({ kind: 'createRoom', userId: me.id });
    assert.equal(created.length, 1);
    assert.equal(created[0]!.body.is_direct, true);
    assert.deepEqual(created[0]!.body.invite, [dave.id]);
    const roomId = created[0]!.roomId!;
    assert.deepEqual((hs.accountData(me.id, 'm.direct') as Record<string, string[]>)[dave.id], [roomId]);
    assert.equal(hs.membership(roomId, dave.id), 'invite');
    await session.sendMessage({ id: dave.id }, { text: 'second' });
    assert.equal(hs.sent({ kind: 'createRoom', userId: me.id }).length, 1);
    assert.equal(hs.sent({ kind: 'event', userId: me.id, roomId }).length, 2);
    hs.join(roomId, dave.id);
    hs.message(roomId, dave.id, 'hi back');
    const [from, msg] = await rec.take('message');
    assert.deepEqual([from.id, msg.text], [dave.id, 'hi back']);
    const [roster] = await rec.take('roster', ([c]) => c.some((x) => x.id === dave.id));
    assert.ok(roster.some((c) => c.id === dave.id));
  });

  test('rooms: join by alias with occupants, roles and topic; messages, occupants, nick changes, topic both ways', async () => {
    const me = user('me', 'Me');
    const owner = user('owner', 'Olivia');
    const mod = user('mod', 'Max');
    const quiet = user('quiet', 'Quinn');
    const alias = name('lobby');
    const roomId = hs.createRoom({ creator: owner.id, members: [me.id, mod.id, quiet.id], name: 'The Lobby', alias, topic: 'Welcome!', powerLevels: { [mod.id]: 50 } });
    const { session, rec } = await open(me.creds);
    const room = { id: `#${alias}:${hs.serverName}` };
    await session.joinRoom(room, 'ignored-nick');
    const [joined, ownNick, occupants, subject] = await rec.take('roomJoined');
    assert.equal(joined.id, room.id, 'reported under the id the kit joined with');
    assert.equal(joined.name, 'The Lobby');
    assert.equal(ownNick, 'Me');
    assert.equal(subject, 'Welcome!');
    const byNick = new Map(occupants.map((o) => [o.nick, o]));
    assert.deepEqual([byNick.get('Olivia')?.affiliation, byNick.get('Olivia')?.role], ['owner', 'moderator']);
    assert.deepEqual([byNick.get('Max')?.affiliation, byNick.get('Max')?.role], ['admin', 'moderator']);
    assert.deepEqual([byNick.get('Quinn')?.affiliation, byNick.get('Quinn')?.role], ['member', 'participant']);
    assert.equal(byNick.get('Quinn')?.contact?.id, quiet.id);
    assert.ok(byNick.has('Me'));
    // Messages in and out.
    hs.message(roomId, owner.id, 'hello room');
    const [r1, nick1, m1] = await rec.take('roomMessage');
    assert.deepEqual([r1.id, nick1, m1.text], [room.id, 'Olivia', 'hello room']);
    await session.sendRoomMessage(room, { text: 'hi all', id: 'k1' });
    assert.deepEqual(hs.sent({ kind: 'event', userId: me.id, roomId })[0]!.body, { msgtype: 'm.text', body: 'hi all' });
    await session.sendRoomMessage(room, { text: 'fixed', editOf: 'k1' });
    await caughtUp(rec, hs);
    assert.equal(seen(rec, 'roomMessage', ([, n]) => n === 'Me'), 0, 'no echo of own messages');
    // Occupants.
    const newbie = user('newbie', 'Nina');
    hs.join(roomId, newbie.id);
    const [, joinedOcc] = await rec.take('occupantJoined');
    assert.deepEqual([joinedOcc.nick, joinedOcc.role, joinedOcc.contact?.id], ['Nina', 'participant', newbie.id]);
    hs.setDisplayName(newbie.id, 'Nina B');
    const [, oldNick, newNick] = await rec.take('nickChanged');
    assert.deepEqual([oldNick, newNick], ['Nina', 'Nina B']);
    // Two members with one display name are told apart.
    const twin = user('twin', 'Nina B');
    hs.join(roomId, twin.id);
    const [, twinOcc] = await rec.take('occupantJoined');
    assert.equal(twinOcc.nick, `Nina B (${twin.id})`);
    hs.leave(roomId, twin.id);
    await rec.take('occupantLeft', ([, n]) => n === `Nina B (${twin.id})`);
    hs.leave(roomId, newbie.id, { by: mod.id, reason: 'spam' });
    const [, leftNick, reason, kickedBy] = await rec.take('occupantLeft', ([, n]) => n.startsWith('Nina B'));
    assert.deepEqual([reason, kickedBy], ['spam', 'Max']);
    assert.ok(leftNick.startsWith('Nina B'));
    // Power levels change roles.
    const pl = hs.stateContent(roomId, 'm.room.power_levels')!;
    hs.inject(roomId, { type: 'm.room.power_levels', sender: owner.id, state_key: '', content: { ...pl, users: { ...(pl.users as object), [quiet.id]: 50 } } });
    const [, changed] = await rec.take('occupantChanged');
    assert.deepEqual([changed.nick, changed.role, changed.affiliation], ['Quinn', 'moderator', 'admin']);
    // Topic both ways.
    hs.inject(roomId, { type: 'm.room.topic', sender: mod.id, state_key: '', content: { topic: 'New topic' } });
    const [, topic, by] = await rec.take('subject');
    assert.deepEqual([topic, by], ['New topic', 'Max']);
    await assert.rejects(session.setSubject(room, 'mine'), (err: Error) => err instanceof MatrixCommandError && err.condition === 'forbidden');
    // Typing and read receipts of occupants.
    hs.setTyping(roomId, [owner.id]);
    const [typer, state] = await rec.take('typing');
    assert.deepEqual([(typer as { nick: string }).nick, state], ['Olivia', 'composing']);
    const ev = hs.message(roomId, owner.id, 'seen?');
    await rec.take('roomMessage', ([, , m]) => m.text === 'seen?');
    hs.receipt(roomId, mod.id, ev);
    const [reader, readId] = await rec.take('displayed');
    assert.deepEqual([(reader as { nick: string }).nick, readId], ['Max', ev]);
    await session.sendTyping(room, 'composing');
    await session.markRead(room, ev);
    assert.equal(hs.sent({ kind: 'read_markers', userId: me.id, roomId }).length, 1);
  });

  test('rooms: moderation and own nick; being kicked; leaving keeps the Matrix membership unless configured', async () => {
    const me = user('me', 'Me');
    const other = user('other', 'Otto');
    const roomId = hs.createRoom({ creator: me.id, members: [other.id], name: 'Mine' });
    const { session, rec } = await open(me.creds);
    const room = { id: roomId };
    await session.joinRoom(room, 'Me');
    await rec.take('roomJoined');
    await session.setSubject(room, 'my topic');
    assert.equal(hs.stateContent(roomId, 'm.room.topic')?.topic, 'my topic');
    const [, topic, by] = await rec.take('subject');
    assert.deepEqual([topic, by], ['my topic', 'Me']);
    await session.changeNick(room, 'Captain');
    const [, oldNick, newNick] = await rec.take('nickChanged');
    assert.deepEqual([oldNick, newNick], ['Me', 'Captain']);
    assert.equal(hs.stateContent(roomId, 'm.room.member', me.id)?.displayname, 'Captain');
    await session.kick(room, 'Otto', 'bye');
    const [, kicked, reason, kickedBy] = await rec.take('occupantLeft');
    assert.deepEqual([kicked, reason, kickedBy], ['Otto', 'bye', 'Captain']);
    await assert.rejects(session.kick(room, 'Nobody'), (err: Error) => err instanceof MatrixCommandError && err.condition === 'item-not-found');
    const invitee = user('invitee');
    await session.invite(room, { id: invitee.id }, 'join us');
    assert.equal(hs.membership(roomId, invitee.id), 'invite');
    await session.leaveRoom(room);
    assert.equal(hs.membership(roomId, me.id), 'join', 'the Matrix membership stays');
    assert.equal(hs.sent({ kind: 'leave', userId: me.id }).length, 0);
    await assert.rejects(session.sendRoomMessage(room, { text: 'x' }), MatrixCommandError);
    // Joining again reports the room again.
    await session.joinRoom(room, 'Captain');
    await rec.take('roomJoined');
    // With leaveRoomsOnPart the Matrix room is left.
    const leaving = createMatrixAdapter({ ...FAST, leaveRoomsOnPart: true });
    const me2 = user('me');
    const room2 = hs.createRoom({ creator: other.id, members: [me2.id], name: 'Leave me' });
    const s2 = await open(me2.creds, { adapter: leaving });
    await s2.session.joinRoom({ id: room2 }, 'x');
    await s2.rec.take('roomJoined');
    await s2.session.leaveRoom({ id: room2 }, 'done here');
    assert.equal(hs.membership(room2, me2.id), 'leave');
    assert.equal(hs.sent({ kind: 'leave', userId: me2.id })[0]?.body.reason, 'done here');
    // Kicked by someone else.
    const room3 = hs.createRoom({ creator: other.id, members: [me.id], name: 'Strict' });
    await session.joinRoom({ id: room3 }, 'x');
    await rec.take('roomJoined', ([r]) => r.id === room3);
    hs.leave(room3, me.id, { by: other.id, reason: 'out' });
    const [r3, ownLeft, why, kicker] = await rec.take('occupantLeft', ([r]) => r.id === room3);
    assert.deepEqual([r3.id, ownLeft, why, kicker], [room3, 'Me', 'out', 'Otto'], 'the nick was changed in the other room only');
  });

  test('rooms: join failures map to MUC conditions; room IDs are found whatever their case', async () => {
    const me = user('me');
    const owner = user('owner');
    const { session, rec } = await open(me.creds);
    await session.joinRoom({ id: `#nosuch:${hs.serverName}` }, 'x');
    let [, reason, condition] = await rec.take('roomJoinFailed');
    assert.equal(condition, 'item-not-found');
    assert.match(reason, /not found/);
    const closed = hs.createRoom({ creator: owner.id, joinRule: 'invite', name: 'Closed' });
    await session.joinRoom({ id: closed }, 'x');
    [, reason, condition] = await rec.take('roomJoinFailed');
    assert.equal(condition, 'registration-required');
    const banned = hs.createRoom({ creator: owner.id, members: [me.id], name: 'Banned' });
    hs.leave(banned, me.id, { by: owner.id, ban: true });
    await session.joinRoom({ id: banned }, 'x');
    [, reason, condition] = await rec.take('roomJoinFailed');
    assert.equal(condition, 'forbidden');
    await session.joinRoom({ id: 'not-a-room' }, 'x');
    [, , condition] = await rec.take('roomJoinFailed');
    assert.equal(condition, 'item-not-found');
    // A JID folds the case of `!AbC:server`; the adapter finds the room the account is in.
    const mixed = hs.createRoom({ creator: owner.id, members: [me.id], name: 'Mixed' });
    const client = (session as unknown as { client: sdk.MatrixClient }).client;
    for (let i = 0; i < 100 && !client.getRoom(mixed); i++) await delay(50);
    const lower = { id: mixed.toLowerCase() };
    assert.notEqual(lower.id, mixed);
    await session.joinRoom(lower, 'x');
    const [joined] = await rec.take('roomJoined');
    assert.equal(joined.id, lower.id);
    hs.message(mixed, owner.id, 'case does not matter');
    const [r] = await rec.take('roomMessage');
    assert.equal(r.id, lower.id);
  });

  test('rooms not joined over XMPP keep their messages until the join; encrypted rooms: a broken event is a notice, sending encrypts', async () => {
    const me = user('me');
    const owner = user('owner', 'Olivia');
    const roomId = hs.createRoom({ creator: owner.id, members: [me.id], name: 'Busy' });
    const secret = hs.createRoom({ creator: owner.id, members: [me.id], name: 'Secret', encrypted: true });
    const { session, rec } = await open(me.creds);
    hs.message(roomId, owner.id, 'while you were away');
    hs.inject(secret, { type: 'm.room.encrypted', sender: owner.id, content: { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'xyz', session_id: 's', sender_key: 'k', device_id: 'D' } });
    await caughtUp(rec, hs);
    assert.equal(seen(rec, 'roomMessage'), 0);
    await session.joinRoom({ id: roomId }, 'x');
    await rec.take('roomJoined');
    const [, nick, msg] = await rec.take('roomMessage');
    assert.deepEqual([nick, msg.text], ['Olivia', 'while you were away']);
    assert.ok(msg.timestamp instanceof Date, 'delivered late, with its time');
    await session.joinRoom({ id: secret }, 'x');
    await rec.take('roomJoined', ([r]) => r.id === secret);
    const [, , note] = await rec.take('roomMessage', ([r]) => r.id === secret);
    assert.deepEqual([note.text, note.notice], [UNDECRYPTABLE_TEXT, true]);
    await session.sendRoomMessage({ id: secret }, { text: 'plain text' });
    const sent = hs.sent({ kind: 'event', userId: me.id, roomId: secret });
    assert.deepEqual(sent.map((r) => r.eventType), ['m.room.encrypted'], 'encrypted, never sent in clear text');
    assert.ok(!JSON.stringify(sent[0]!.body).includes('plain text'));
  });

  test('invitations: to a room becomes an invited event; to a direct chat is accepted', async () => {
    const me = user('me');
    const owner = user('owner', 'Olivia');
    const alias = name('party');
    const party = hs.createRoom({ creator: owner.id, name: 'Party', alias, joinRule: 'invite' });
    // An invitation waiting at the first login is reported too.
    const earlier = hs.createRoom({ creator: owner.id, name: 'Earlier', joinRule: 'invite' });
    hs.invite(earlier, owner.id, me.id);
    const { session, rec } = await open(me.creds);
    const [waiting, waitingBy] = await rec.take('invited');
    assert.deepEqual([waiting.id, waiting.name, waitingBy.id], [earlier, 'Earlier', owner.id]);
    hs.invite(party, owner.id, me.id, { reason: 'come along' });
    const [room, by, reason] = await rec.take('invited');
    assert.deepEqual([room.id, room.name, by.id, by.displayName, reason], [`#${alias}:${hs.serverName}`, 'Party', owner.id, 'Olivia', 'come along']);
    await session.joinRoom(room, 'x');
    await rec.take('roomJoined');
    assert.equal(hs.membership(party, me.id), 'join');
    // A direct chat invitation is accepted by itself and listed in m.direct.
    const erin = user('erin', 'Erin');
    const dm = hs.createRoom({ creator: erin.id, invite: [me.id], direct: true });
    await hs.waitForSent((r) => r.kind === 'join' && r.userId === me.id && r.roomId === dm);
    await hs.waitForSent((r) => r.kind === 'account_data' && r.userId === me.id);
    assert.deepEqual((hs.accountData(me.id, 'm.direct') as Record<string, string[]>)[erin.id], [dm]);
    hs.message(dm, erin.id, 'thanks for accepting');
    const [from, msg] = await rec.take('message');
    assert.deepEqual([from.id, msg.text], [erin.id, 'thanks for accepting']);
    await caughtUp(rec, hs);
    assert.equal(seen(rec, 'invited', ([r]) => r.id === dm), 0);
  });

  test('a restart with the stored sync token delivers what was missed and replays nothing', async () => {
    const { me, bob, dm, session, rec } = await withContact();
    hs.message(dm, bob.id, 'before restart');
    await rec.take('message', ([, m]) => m.text === 'before restart');
    const state = await stateAfterMessages(rec);
    await session.logout('restart');
    hs.message(dm, bob.id, 'while down 1');
    hs.message(dm, bob.id, 'while down 2');
    const stored = adapter.credentialsToStore(session, {});
    const again = await open(stored, { state: state });
    const [, a] = await again.rec.take('message');
    const [, b] = await again.rec.take('message');
    assert.deepEqual([a.text, b.text], ['while down 1', 'while down 2']);
    assert.ok(a.timestamp instanceof Date);
    hs.message(dm, bob.id, 'live again');
    const [, c] = await again.rec.take('message');
    assert.equal(c.text, 'live again');
    await caughtUp(again.rec, hs);
    assert.deepEqual(again.rec.texts(), ['while down 1', 'while down 2', 'live again'], 'nothing twice, nothing from before');
    // A position the homeserver does not accept (e.g. after a server reset): start at "now".
    const tl = testLog();
    const third = await open(stored, { state: 'not-a-token', tl });
    assert.ok(tl.lines.some((l) => /sync position not accepted/.test(l)));
    hs.message(dm, bob.id, 'third');
    const [, d] = await third.rec.take('message');
    assert.equal(d.text, 'third');
    void me;
  });

  test('an outage shorter than syncFailureTimeoutMs is bridged without a disconnect', async () => {
    const patient = createMatrixAdapter({ ...FAST, syncFailureTimeoutMs: 20_000 });
    const me = user('me');
    const bob = user('bob');
    const dm = hs.createRoom({ creator: bob.id, members: [me.id], direct: true });
    const { rec } = await open(me.creds, { adapter: patient });
    hs.dropConnections();
    await delay(300);
    hs.message(dm, bob.id, 'during a blip');
    hs.restore();
    hs.message(dm, bob.id, 'after a blip');
    await rec.take('message', ([, m]) => m.text === 'after a blip', 15_000);
    assert.deepEqual(rec.texts(), ['during a blip', 'after a blip']);
    assert.ok(await rec.none('disconnected'));
  });

  test('a long outage ends the session (not final) and a new login with the sync state resumes', async () => {
    const { bob, dm, session, rec, tl } = await withContact();
    hs.message(dm, bob.id, 'before the outage');
    await rec.take('message');
    const state = await stateAfterMessages(rec);
    hs.dropConnections();
    const [reason, final] = await rec.take('disconnected', () => true, 8000);
    assert.equal(final, false);
    assert.match(reason, /lost the connection/);
    assert.equal(session.connected, false);
    await assert.rejects(session.sendMessage({ id: bob.id }, { text: 'x' }), LegacyNetworkError);
    hs.message(dm, bob.id, 'during the outage');
    hs.restore();
    const again = await open(adapter.credentialsToStore(session, {}), { state: session.syncState() ?? state });
    const [, missed] = await again.rec.take('message');
    assert.equal(missed.text, 'during the outage');
    assert.ok(!tl.lines.join('\n').includes('during the outage'));
  });

  test('a revoked token ends the session for good (final), and the next login is an auth error', async () => {
    const { me, session, rec } = await withContact();
    const stored = adapter.credentialsToStore(session, {});
    hs.revokeTokens(me.id);
    const [reason, final] = await rec.take('disconnected', () => true, 8000);
    assert.equal(final, true);
    assert.match(reason, /M_UNKNOWN_TOKEN|no longer valid/);
    await assert.rejects(adapter.login({ userJid: 'u@localhost', credentials: stored, log: testLog().log }), LegacyAuthError);
  });

  test('P9 logs name no message text, password or token; the SDK prints nothing', async () => {
    const tl = testLog();
    const me = user('me');
    const bob = user('bob');
    const dm = hs.createRoom({ creator: bob.id, members: [me.id], direct: true });
    const printed: string[] = [];
    const original = { log: console.log, info: console.info, warn: console.warn, error: console.error, debug: console.debug };
    for (const k of Object.keys(original) as (keyof typeof original)[]) console[k] = (...a: unknown[]) => void printed.push(a.map(String).join(' '));
    try {
      const { session, rec } = await open(me.creds, { tl });
      hs.message(dm, bob.id, 'secret words');
      await rec.take('message');
      await session.sendMessage({ id: bob.id }, { text: 'more secret words' });
      const stored = adapter.credentialsToStore(session, {});
      const joined = tl.lines.join('\n');
      for (const s of ['secret words', me.creds.password, stored.token!]) assert.ok(!joined.includes(s), `log must not contain ${s}`);
    } finally {
      Object.assign(console, original);
    }
    assert.deepEqual(printed, []);
  });

  test('busy rooms: the SDK keeps a bounded timeline; every message still arrives once, in order', async () => {
    const { bob, dm, session, rec } = await withContact();
    for (let i = 0; i < 400; i++) hs.message(dm, bob.id, `n${i}`);
    await rec.take('message', ([, m]) => m.text === 'n399', 15_000);
    assert.deepEqual(rec.texts(), Array.from({ length: 400 }, (_, i) => `n${i}`));
    const timeline = (session as unknown as { client: sdk.MatrixClient }).client.getRoom(dm)!.getLiveTimeline().getEvents();
    assert.ok(timeline.length <= 260, `timeline holds ${timeline.length} events`);
    assert.ok(hs.requests.some((r) => r.includes('/messages')), 'the gap of the limited sync was fetched back');
  });

  test('rate limits: a send refused with 429 M_LIMIT_EXCEEDED is retried after retry_after_ms', async () => {
    const { me, bob, dm, session } = await withContact();
    hs.rateLimitSends(2, 50);
    await session.sendMessage({ id: bob.id }, { text: 'patience' });
    const sent = hs.sent({ kind: 'event', userId: me.id, roomId: dm });
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.body.body, 'patience');
    assert.equal(hs.requests.filter((r) => r.includes('/send/m.room.message/')).length >= 3, true);
    hs.rateLimitSends(10, 50);
    await assert.rejects(session.sendMessage({ id: bob.id }, { text: 'too much' }), (err: Error) => err instanceof MatrixCommandError && err.condition === 'resource-constraint');
    hs.rateLimitSends(0);
  });

  test('the room directory: the rooms the account is in (not direct chats), and the homeserver\'s published rooms (GET /publicRooms) as a node', async () => {
    const { me, bob, dm, session, rec } = await withContact();
    const owner = user('owner', 'Olga');
    const alias = name('plaza');
    const plaza = hs.createRoom({ creator: owner.id, members: [me.id], name: 'The Plaza', alias, topic: 'Meet here' });
    const plain = hs.createRoom({ creator: owner.id, members: [me.id, bob.id], name: 'Plain' });
    const hall = hs.createRoom({ creator: owner.id, members: [bob.id], name: 'Big Hall', topic: 'Everyone', published: true });
    const nook = hs.createRoom({ creator: owner.id, name: 'Nook', published: true });
    hs.createRoom({ creator: owner.id, members: [bob.id], name: 'Unlisted' });
    const client = (session as unknown as { client: sdk.MatrixClient }).client;
    const joined = (id: string) => client.getRoom(id)?.getMyMembership() === 'join';
    for (let i = 0; i < 100 && !(joined(plaza) && joined(plain) && joined(dm)); i++) await delay(50);
    const top = (await session.roomDirectory({ node: null, max: 100 }))!;
    assert.deepEqual(top, {
      items: [
        { node: 'public', name: `Public rooms on ${hs.serverName}` },
        { room: { id: plain, name: 'Plain' }, members: 3 },
        { room: { id: `#${alias}:${hs.serverName}`, name: 'The Plaza' }, members: 2, topic: 'Meet here' },
      ],
      complete: true,
    });
    const published = (await session.roomDirectory({ node: 'public', max: 100 }))!;
    assert.deepEqual(published, {
      items: [
        { room: { id: hall, name: 'Big Hall' }, members: 2, topic: 'Everyone' },
        { room: { id: nook, name: 'Nook' }, members: 1 },
      ],
      complete: true,
    });
    assert.ok(hs.requests.some((r) => /^GET \/_matrix\/client\/v3\/publicRooms$/.test(r)), hs.requests.join(' '));
    const cut = (await session.roomDirectory({ node: 'public', max: 1 }))!;
    assert.deepEqual([cut.items.length, cut.complete], [1, false], 'the homeserver has more than max: not complete');
    assert.equal(await session.roomDirectory({ node: 'elsewhere', max: 100 }), null);
    // A join changes the list of the rooms the account is in: the kit is told.
    const before = seen(rec, 'directoryChanged');
    hs.createRoom({ creator: owner.id, members: [me.id], name: 'Later' });
    for (let i = 0; i < 100 && seen(rec, 'directoryChanged') === before; i++) await delay(50);
    assert.ok(seen(rec, 'directoryChanged') > before, 'directoryChanged after a join');
    await session.logout();
  });

  test('the fake homeserver answered everything the SDK asked', () => {
    assert.deepEqual([...new Set(hs.unknown)], []);
  });
});

// ------------------------------------------------------------------ no other network peer

describe('P15 the Matrix adapter talks to the homeserver only', () => {
  test('P15 login, sync, messages and rooms reach no address but the homeserver', { timeout: 60_000 }, async () => {
    const hook = fileURLToPath(new URL('../privacy/no-egress-hook.js', import.meta.url));
    const fake = fileURLToPath(new URL('../fakes/matrix-homeserver.js', import.meta.url));
    const matrix = fileURLToPath(new URL('../../transports/matrix/index.js', import.meta.url));
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-matrix-egress-'));
    try {
      const log = join(dir, 'egress.log');
      const script = `
        const { FakeHomeserver } = await import(${JSON.stringify(fake)});
        const { createMatrixAdapter } = await import(${JSON.stringify(matrix)});
        const hs = await FakeHomeserver.start();
        const me = hs.createUser('me', { password: 'pw' });
        const bob = hs.createUser('bob');
        const dm = hs.createRoom({ creator: bob, members: [me], direct: true });
        const room = hs.createRoom({ creator: bob, members: [me], name: 'Room', alias: 'room' });
        const quiet = { debug() {}, info() {}, warn() {} };
        const adapter = createMatrixAdapter({ pollTimeoutMs: 1000 });
        const session = await adapter.login({ userJid: 'u@localhost', credentials: { homeserver: hs.url, username: me, password: 'pw' }, log: quiet });
        const got = new Promise((r) => session.on('message', (_f, m) => m.text === 'ping' && r()));
        hs.message(dm, bob, 'ping');
        await got;
        await session.sendMessage({ id: bob }, { text: 'pong' });
        const joined = new Promise((r) => session.on('roomJoined', r));
        await session.joinRoom({ id: '#room:matrix.test' }, 'me');
        await joined;
        await session.sendRoomMessage({ id: '#room:matrix.test' }, { text: 'hello' });
        await session.sendMessage({ id: '@carol:elsewhere.example' }, { text: 'x' }).catch(() => {});
        await session.logout();
        await hs.stop();
        process.stdout.write('DONE');
      `;
      const proc = spawn(process.execPath, ['--import', hook, '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GATEHOUSE_EGRESS_LOG: log } });
      let out = '';
      proc.stdout.on('data', (d) => (out += d));
      proc.stderr.on('data', (d) => (out += d));
      const code = await new Promise<number | null>((r) => proc.once('exit', r));
      assert.equal(code, 0, out);
      assert.match(out, /DONE/);
      const record = readFileSync(log, 'utf8');
      assert.match(record, /^LOADED/);
      assert.ok(!record.includes('EGRESS'), record);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ------------------------------------------------------------------ against a real homeserver

const real = {
  homeserver: process.env.MATRIX_TEST_HOMESERVER,
  user: process.env.MATRIX_TEST_USER,
  password: process.env.MATRIX_TEST_PASSWORD,
};
const realSkip = real.homeserver && real.user && real.password ? false : 'set MATRIX_TEST_HOMESERVER, MATRIX_TEST_USER and MATRIX_TEST_PASSWORD to run against a real homeserver';

describe('Matrix adapter against a real homeserver', { skip: realSkip }, () => {
  const adapter = createMatrixAdapter({ requestTimeoutMs: 30_000, loginTimeoutMs: 60_000, joinTimeoutMs: 60_000 });
  const sessions: MatrixSession[] = [];
  let other: sdk.MatrixClient | null = null;
  let roomId: string | null = null;

  after(async () => {
    if (other && roomId) await other.leave(roomId).catch(() => undefined);
    other?.stopClient();
    for (const s of sessions) await s.logout().catch(() => undefined);
  });

  test('login, send and receive', { timeout: 120_000 }, async () => {
    const tl = testLog();
    const creds = { homeserver: real.homeserver!, username: real.user!, password: real.password! };
    await assert.rejects(adapter.login({ userJid: 'u@localhost', credentials: { ...creds, password: `${real.password}-wrong` }, log: tl.log }), LegacyAuthError);
    const first = await adapter.login({ userJid: 'u@localhost', credentials: creds, log: tl.log });
    sessions.push(first);
    const stored = adapter.credentialsToStore(first, creds);
    assert.ok(!Object.values(stored).includes(real.password!));
    await first.logout();
    const session = await adapter.login({ userJid: 'u@localhost', credentials: stored, log: tl.log });
    sessions.push(session);
    const rec = new Recorder(session);
    await rec.take('connected', () => true, 30_000);
    // A second device of the same account creates a room and talks in it.
    const tmp = sdk.createClient({ baseUrl: stored.homeserver! });
    const login = await tmp.loginRequest({ type: 'm.login.password', identifier: { type: 'm.id.user', user: real.user! }, password: real.password!, initial_device_display_name: 'Gatehouse test peer' } as never);
    other = sdk.createClient({ baseUrl: stored.homeserver!, accessToken: login.access_token, userId: login.user_id, deviceId: login.device_id });
    roomId = (await other.createRoom({ name: `gatehouse test ${Date.now()}`, preset: 'private_chat' as never })).room_id;
    await session.joinRoom({ id: roomId }, 'x');
    await rec.take('roomJoined', () => true, 60_000);
    await session.sendRoomMessage({ id: roomId }, { text: 'hello from the gateway' });
    const messages = await other.createMessagesRequest(roomId, null, 10, sdk.Direction.Backward);
    assert.ok(messages.chunk.some((e) => (e.content as { body?: string }).body === 'hello from the gateway'));
    await other.sendEvent(roomId, 'm.room.message' as never, { msgtype: 'm.text', body: 'hello from another device' } as never);
    const [, , msg] = await rec.take('roomMessage', ([, , m]) => m.text === 'hello from another device', 60_000);
    assert.equal(msg.text, 'hello from another device');
    assert.ok(!tl.lines.join('\n').includes(real.password!));
  });

  test('an encrypted room both ways with another device of the account (its own Rust crypto)', { timeout: 180_000 }, async () => {
    const tl = testLog();
    const creds = { homeserver: real.homeserver!, username: real.user!, password: real.password! };
    const session = await adapter.login({ userJid: 'u@localhost', credentials: creds, log: tl.log });
    sessions.push(session);
    const rec = new Recorder(session);
    await rec.take('connected', () => true, 30_000);
    const tmp = sdk.createClient({ baseUrl: session.homeserver });
    const login = await tmp.loginRequest({ type: 'm.login.password', identifier: { type: 'm.id.user', user: real.user! }, password: real.password!, initial_device_display_name: 'Gatehouse test peer (E2EE)' } as never);
    const peer = await ElementPeer.connect(session.homeserver, login.user_id, login.access_token, login.device_id);
    try {
      const room = (
        await peer.client.createRoom({
          name: `gatehouse e2ee test ${Date.now()}`,
          preset: 'private_chat' as never,
          initial_state: [{ type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } }],
        } as never)
      ).room_id;
      await session.joinRoom({ id: room }, 'x');
      await rec.take('roomJoined', ([r]) => r.id === room, 60_000);
      await session.sendRoomMessage({ id: room }, { text: 'encrypted hello from the gateway' });
      const got = await peer.waitForMessage(room, (c) => c.body === 'encrypted hello from the gateway', 60_000);
      assert.ok(got.isEncrypted(), 'sent encrypted');
      await peer.sendText(room, 'encrypted hello from another device');
      const [, , msg] = await rec.take('roomMessage', ([r, , m]) => r.id === room && m.text === 'encrypted hello from another device', 90_000);
      assert.equal(msg.notice, undefined);
      await peer.client.leave(room).catch(() => undefined);
    } finally {
      peer.stop();
      await peer.client.logout(true).catch(() => undefined);
    }
    assert.ok(!tl.lines.join('\n').includes('encrypted hello'), 'no message text in the log');
  });
});
