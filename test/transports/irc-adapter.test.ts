/**
 * The IRC adapter against a real IRC server (ngIRCd from Debian) and raw IRC clients, without XMPP.
 * NickServ is a raw client registered as "NickServ"; SASL PLAIN runs against a scripted fake server
 * (ngIRCd has no SASL; no real services package is used here).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { startNgircd, type Ircd } from '../helpers/ircd.js';
import { skipWithout } from '../helpers/requirements.js';
import { RawIrcClient } from '../helpers/irc-client.js';
import { createIrcAdapter, ircAdapter, isIrcRoomId, IrcCommandError, type IrcSession } from '../../transports/irc/index.js';
import { LegacyAuthError, LegacyNetworkError } from '../../transports/kit/adapter.js';
import { SendQueue } from '../../transports/irc/flood.js';
import { splitLine, splitMessage, stripFormatting, utf8Length, decodeLine } from '../../transports/irc/text.js';
import { parseServerSettings, normaliseFingerprint } from '../../transports/irc/settings.js';
import { roleFor, DEFAULT_PREFIXES } from '../../transports/irc/roles.js';
import { Recorder, testLog, type TestLog } from './session-recorder.js';

const skip = skipWithout('ngircd');

// ------------------------------------------------------------------ helpers


const adapter = createIrcAdapter({ flood: { burst: 5, intervalMs: 50 }, commandTimeoutMs: 5000, joinTimeoutMs: 5000, nickservTimeoutMs: 3000 });

async function login(ircd: Ircd, credentials: Record<string, string>, tl: TestLog = testLog(), a = adapter): Promise<{ session: IrcSession; rec: Recorder; tl: TestLog }> {
  const session = await a.login({ userJid: 'user@localhost', server: '127.0.0.1', credentials: { tls: 'false', port: String(ircd.port), ...credentials }, log: tl.log });
  return { session, rec: new Recorder(session), tl };
}

const room = (id: string) => ({ id, server: '127.0.0.1' });

// ------------------------------------------------------------------ unit tests (no server)

describe('IRC text handling', () => {
  test('mIRC formatting codes are stripped from incoming text', () => {
    assert.equal(stripFormatting('\x02bold\x02 \x1ditalic\x1d \x1funder\x1f \x1estrike\x1e \x11mono\x11 \x16rev\x16 x\x0f'), 'bold italic under strike mono rev x');
    assert.equal(stripFormatting('\x0304red\x03 \x0312,05blue on red\x03 \x033,4x \x03plain'), 'red blue on red x plain');
    assert.equal(stripFormatting('\x0399,99 done'), ' done');
    assert.equal(stripFormatting('\x04FF0000hex\x04 \x04FF0000,00FF00two'), 'hex two');
    assert.equal(stripFormatting('tab\tstays, bell\x07 goes'), 'tab\tstays, bell goes');
  });

  test('long lines split at UTF-8 boundaries, preferably at spaces', () => {
    const words = Array.from({ length: 200 }, (_, i) => `word${i}`).join(' ');
    const parts = splitLine(words, 100);
    assert.ok(parts.length > 1);
    for (const p of parts) assert.ok(utf8Length(p) <= 100, `${utf8Length(p)} bytes`);
    assert.equal(parts.join(' '), words);
    // No spaces: multi-byte characters are never cut, and nothing is lost.
    const dense = 'ä€😀'.repeat(100);
    const cut = splitLine(dense, 50);
    for (const p of cut) {
      assert.ok(utf8Length(p) <= 50);
      assert.ok(!/[\ud800-\udbff]$/.test(p), 'no dangling high surrogate');
    }
    assert.equal(cut.join(''), dense);
    // A family emoji (one grapheme of several code points) stays whole.
    const family = '👨‍👩‍👧‍👦'.repeat(10);
    for (const p of splitLine(family, 30)) assert.equal(p.length % '👨‍👩‍👧‍👦'.length, 0);
    assert.deepEqual(splitMessage('one\n\ntwo\r\nthree  ', 100), ['one', 'two', 'three']);
  });

  test('received lines decode as UTF-8, else as Windows-1252', () => {
    assert.equal(decodeLine(Buffer.from('grüße €', 'utf8')), 'grüße €');
    assert.equal(decodeLine(Buffer.from([0x67, 0x72, 0xfc, 0xdf, 0x65, 0x20, 0x80])), 'grüße €');
  });

  test('flood control keeps the order and holds lines beyond the burst', async () => {
    const written: string[] = [];
    const q = new SendQueue((l, done) => (written.push(l), done()), { burst: 3, intervalMs: 60_000 });
    const sent = Array.from({ length: 10 }, (_, i) => q.send(`line ${i}`));
    assert.deepEqual(written, ['line 0', 'line 1', 'line 2']);
    assert.equal(q.length, 7);
    q.close(new Error('closed'));
    const results = await Promise.allSettled(sent);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 3);
    await assert.rejects(q.send('late'), /closed/);
    // A fast queue delivers everything, in order.
    const out: string[] = [];
    const fast = new SendQueue((l, done) => (out.push(l), done()), { burst: 2, intervalMs: 5 });
    await fast.sendAll(Array.from({ length: 12 }, (_, i) => `m${i}`));
    assert.deepEqual(out, Array.from({ length: 12 }, (_, i) => `m${i}`));
  });

  test('channel prefixes map to MUC roles and affiliations', () => {
    const r = (modes: string[], moderated = false) => roleFor(modes, DEFAULT_PREFIXES, moderated);
    assert.deepEqual(r(['q']), { role: 'moderator', affiliation: 'owner' });
    assert.deepEqual(r(['a']), { role: 'moderator', affiliation: 'admin' });
    assert.deepEqual(r(['o', 'v']), { role: 'moderator', affiliation: 'admin' });
    assert.deepEqual(r(['h']), { role: 'moderator', affiliation: 'member' });
    assert.deepEqual(r(['v']), { role: 'participant', affiliation: 'member' });
    assert.deepEqual(r([]), { role: 'participant', affiliation: 'none' });
    assert.deepEqual(r([], true), { role: 'visitor', affiliation: 'none' });
    assert.deepEqual(r(['v'], true), { role: 'participant', affiliation: 'member' });
  });

  test('registration values are checked; TLS and certificate checks default on', () => {
    const s = parseServerSettings('irc.example.org', { nick: 'alice' });
    assert.equal(s.tls, true);
    assert.equal(s.verifyCertificate, true);
    assert.equal(s.port, 6697);
    assert.equal(s.username, 'alice');
    assert.equal(parseServerSettings('irc.example.org', { nick: 'alice', tls: '0' }).port, 6667);
    assert.deepEqual(parseServerSettings('h', { nick: 'a', autojoin: '#x, #y' }).autojoin, ['#x', '#y']);
    assert.throws(() => parseServerSettings('h', {}), LegacyAuthError);
    assert.throws(() => parseServerSettings('h', { nick: 'a b' }), LegacyAuthError);
    assert.throws(() => parseServerSettings('h', { nick: 'a', port: '99999' }), LegacyAuthError);
    assert.throws(() => parseServerSettings('h', { nick: 'a', autojoin: 'nochannel' }), LegacyAuthError);
    assert.throws(() => parseServerSettings('h', { nick: 'a', password: 'x\r\nQUIT' }), LegacyAuthError);
    assert.equal(normaliseFingerprint('ab'.repeat(32)), Array(32).fill('AB').join(':'));
    assert.throws(() => normaliseFingerprint('abc'), LegacyAuthError);
  });

  test('the adapter describes itself for the kit', () => {
    assert.equal(ircAdapter.network, 'irc');
    assert.equal(ircAdapter.multiServer, true);
    assert.ok(isIrcRoomId('#chan') && isIrcRoomId('&local') && isIrcRoomId('+modeless') && isIrcRoomId('!safe'));
    assert.ok(!ircAdapter.isRoomId('nick'));
    const fields = new Map(ircAdapter.registrationFields.map((f) => [f.name, f]));
    assert.equal(fields.get('nick')?.required, true);
    for (const secret of ['password', 'nickservPassword', 'saslPassword']) assert.equal(fields.get(secret)?.secret, true, secret);
    assert.equal(fields.get('tls')?.default, 'true');
    assert.equal(fields.get('verifyCertificate')?.default, 'true');
    for (const f of fields.values()) if (!f.secret) assert.ok(!/password/i.test(f.name), `${f.name} must be secret`);
  });
});

// ------------------------------------------------------------------ against ngIRCd

describe('IRC adapter against ngIRCd', { skip }, () => {
  let ircd: Ircd;
  const raws: RawIrcClient[] = [];
  const sessions: IrcSession[] = [];
  const raw = async (nick: string) => {
    const c = await RawIrcClient.connect({ port: ircd.port, nick });
    raws.push(c);
    return c;
  };
  const open = async (credentials: Record<string, string>, tl?: TestLog) => {
    const r = await login(ircd, credentials, tl);
    sessions.push(r.session);
    return r;
  };

  before(async () => {
    ircd = await startNgircd({ operators: [{ name: 'admin', password: 'operpw' }], dns: true });
  });
  after(async () => {
    for (const s of sessions) await s.logout().catch(() => undefined);
    for (const c of raws) c.destroy();
    await ircd?.stop();
  });

  test('login with nick, username and realname; server notices and the MOTD become serverMessages', async () => {
    const { session, rec } = await open({ nick: 'alice1', username: 'aident', realname: 'Alice Liddell' });
    assert.equal(session.nick, 'alice1');
    const [server, account] = await rec.take('connected');
    assert.equal(server, '127.0.0.1');
    assert.equal(account, 'alice1');
    const [, notice] = await rec.take('serverMessage', ([, m]) => /looking up your hostname/i.test(m.text));
    assert.equal(notice.notice, true);
    await rec.take('serverMessage', ([, m]) => m.text.includes('Welcome to the Gatehouse test IRC server'));
    const bob = await raw('bob1');
    bob.send('WHOIS alice1');
    const whois = await bob.expect('311');
    assert.equal(whois.params[2], '~aident'); // ngIRCd marks unverified idents with ~
    assert.equal(whois.trailing, 'Alice Liddell');
  });

  test('unreachable server gives LegacyNetworkError', async () => {
    const closed = await new Promise<number>((resolve) => {
      const srv = createServer();
      srv.listen(0, '127.0.0.1', () => {
        const port = (srv.address() as { port: number }).port;
        srv.close(() => resolve(port));
      });
    });
    await assert.rejects(
      adapter.login({ userJid: 'u@localhost', server: '127.0.0.1', credentials: { nick: 'nobody', tls: 'false', port: String(closed) }, log: testLog().log }),
      (err: Error) => err instanceof LegacyNetworkError && /refused/.test(err.message),
    );
  });

  test('nick collision at login: nick_ then nick__', async () => {
    await raw('taken');
    const first = await open({ nick: 'taken' });
    assert.equal(first.session.nick, 'taken_');
    const second = await open({ nick: 'taken' });
    assert.equal(second.session.nick, 'taken__');
  });

  test('join: occupants with roles from channel modes, topic as subject', async () => {
    const bob = await raw('bob2');
    await bob.join('#roles');
    bob.send('TOPIC #roles :The \x02topic\x02');
    const carol = await raw('carol2');
    await carol.join('#roles');
    const dave = await raw('dave2');
    await dave.join('#roles');
    const erin = await raw('erin2');
    await erin.join('#roles');
    bob.send('MODE #roles +v carol2');
    bob.send('MODE #roles +h dave2');
    erin.send('OPER admin operpw');
    await erin.expect('381');
    erin.send('MODE #roles +q erin2');
    await bob.expect((l) => l.command === 'MODE' && l.params[1] === '+q');

    const { session, rec } = await open({ nick: 'alice2' });
    await session.joinRoom(room('#roles'), 'alice2');
    const [r, own, occupants, subject] = await rec.take('roomJoined');
    assert.equal(r.id, '#roles');
    assert.equal(own, 'alice2');
    assert.equal(subject, 'The topic');
    const by = new Map(occupants.map((o) => [o.nick, o]));
    assert.deepEqual([by.get('bob2')?.role, by.get('bob2')?.affiliation], ['moderator', 'admin']);
    assert.deepEqual([by.get('carol2')?.role, by.get('carol2')?.affiliation], ['participant', 'member']);
    assert.deepEqual([by.get('dave2')?.role, by.get('dave2')?.affiliation], ['moderator', 'member']);
    assert.deepEqual([by.get('erin2')?.role, by.get('erin2')?.affiliation], ['moderator', 'owner']);
    assert.deepEqual([by.get('alice2')?.role, by.get('alice2')?.affiliation], ['participant', 'none']);
    assert.deepEqual(by.get('carol2')?.contact, { id: 'carol2', server: '127.0.0.1' });

    // Joining again (a second XMPP resource) re-reports the room without a new JOIN.
    await session.joinRoom(room('#roles'), 'alice2');
    const [, , again] = await rec.take('roomJoined');
    assert.equal(again.length, 5);

    // mode +o / -o → occupantChanged; +m makes unvoiced members visitors
    bob.send('MODE #roles +o alice2');
    let [, changed] = await rec.take('occupantChanged', ([, o]) => o.nick === 'alice2');
    assert.deepEqual([changed.role, changed.affiliation], ['moderator', 'admin']);
    bob.send('MODE #roles -o alice2');
    [, changed] = await rec.take('occupantChanged', ([, o]) => o.nick === 'alice2');
    assert.deepEqual([changed.role, changed.affiliation], ['participant', 'none']);
    bob.send('MODE #roles +m');
    [, changed] = await rec.take('occupantChanged', ([, o]) => o.nick === 'alice2');
    assert.equal(changed.role, 'visitor');
    assert.ok(await rec.none('occupantChanged', ([, o]) => o.nick === 'carol2'), 'voiced members stay participants');
  });

  test('join failures: banned, invite-only, bad key, bad name', async () => {
    const bob = await raw('bob3');
    await bob.join('#banned');
    bob.send('MODE #banned +b alice3!*@*');
    await bob.join('#invite');
    bob.send('MODE #invite +i');
    await bob.join('#keyed');
    bob.send('MODE #keyed +k sesame');
    await bob.expect((l) => l.command === 'MODE' && l.params[1] === '+k');
    const { session, rec } = await open({ nick: 'alice3' });
    await session.joinRoom(room('#banned'), 'alice3');
    assert.equal((await rec.take('roomJoinFailed'))[2], 'forbidden');
    await session.joinRoom(room('#invite'), 'alice3');
    assert.equal((await rec.take('roomJoinFailed'))[2], 'registration-required');
    await session.joinRoom(room('#keyed'), 'alice3', 'wrong');
    assert.equal((await rec.take('roomJoinFailed'))[2], 'not-authorized');
    await session.joinRoom(room('#keyed'), 'alice3', 'sesame');
    assert.equal((await rec.take('roomJoined'))[0].id, '#keyed');
    await session.joinRoom(room('#bad,name'), 'alice3');
    assert.equal((await rec.take('roomJoinFailed'))[2], 'item-not-found');
  });

  test('messages, /me and notices both ways; formatting stripped; the own message is echoed with its id', async () => {
    const bob = await raw('bob4');
    await bob.join('#talk');
    const { session, rec } = await open({ nick: 'alice4' });
    await session.joinRoom(room('#talk'), 'alice4');
    await rec.take('roomJoined');
    await bob.expect((l) => l.command === 'JOIN' && l.nick === 'alice4');

    bob.privmsg('#talk', 'hello \x02world\x02 in \x0304,01colour\x03!');
    let [r, nick, msg] = await rec.take('roomMessage', ([, n]) => n === 'bob4');
    assert.equal(r.id, '#talk');
    assert.equal(msg.text, 'hello world in colour!');
    assert.ok(!msg.action && !msg.notice);

    bob.action('#talk', 'waves');
    [, nick, msg] = await rec.take('roomMessage', ([, n]) => n === 'bob4');
    assert.equal(msg.text, 'waves');
    assert.equal(msg.action, true);

    bob.notice('#talk', 'a notice');
    [, nick, msg] = await rec.take('roomMessage', ([, n]) => n === 'bob4');
    assert.equal(msg.text, 'a notice');
    assert.equal(msg.notice, true);

    await session.sendRoomMessage(room('#talk'), { text: 'hi bob', id: 'origin-1' });
    let line = await bob.expect('PRIVMSG');
    assert.equal(line.raw, ':alice4!~alice4@localhost PRIVMSG #talk :hi bob');
    [, nick, msg] = await rec.take('roomMessage', ([, n]) => n === 'alice4');
    assert.equal(msg.text, 'hi bob');
    assert.equal(msg.id, 'origin-1');

    await session.sendRoomMessage(room('#talk'), { text: 'dances', action: true });
    line = await bob.expect('PRIVMSG');
    assert.equal(line.trailing, '\x01ACTION dances\x01');
    [, nick, msg] = await rec.take('roomMessage', ([, n]) => n === 'alice4');
    assert.equal(msg.action, true);

    await session.sendRoomMessage(room('#talk'), { text: 'note this', notice: true });
    line = await bob.expect((l) => l.command === 'NOTICE' && l.nick === 'alice4');
    assert.equal(line.params[0], '#talk');
    assert.equal(line.trailing, 'note this');

    // A line break in the text makes two IRC messages; \x01 cannot start a CTCP.
    await session.sendRoomMessage(room('#talk'), { text: 'one\ntwo \x01VERSION\x01' });
    assert.equal((await bob.expect('PRIVMSG')).trailing, 'one');
    assert.equal((await bob.expect('PRIVMSG')).trailing, 'two VERSION');
    assert.equal(nick, 'alice4');
  });

  test('private messages both ways, /me and notices in private', async () => {
    const bob = await raw('bob5');
    const { session, rec } = await open({ nick: 'alice5' });
    bob.privmsg('alice5', 'psst \x1fsecret\x1f');
    let [from, msg] = await rec.take('message');
    assert.deepEqual(from, { id: 'bob5', server: '127.0.0.1' });
    assert.equal(msg.text, 'psst secret');
    bob.action('alice5', 'winks');
    [from, msg] = await rec.take('message');
    assert.equal(msg.action, true);
    bob.notice('alice5', 'fyi');
    [from, msg] = await rec.take('message');
    assert.equal(msg.notice, true);

    await session.sendMessage({ id: 'bob5', server: '127.0.0.1' }, { text: 'hello back' });
    const line = await bob.expect('PRIVMSG');
    assert.equal(line.nick, 'alice5');
    assert.equal(line.params[0], 'bob5');
    assert.equal(line.trailing, 'hello back');
    await session.sendMessage({ id: 'bob5' }, { text: 'smiles', action: true });
    assert.equal((await bob.expect('PRIVMSG')).trailing, '\x01ACTION smiles\x01');
    await assert.rejects(session.sendMessage({ id: 'bob5,carol' }, { text: 'x' }), IrcCommandError);
    // A message to nobody: the server's refusal reaches the user as a server message.
    await session.sendMessage({ id: 'ghost5' }, { text: 'anyone?' });
    const [, err] = await rec.take('serverMessage', ([, m]) => m.text.includes('ghost5'));
    assert.match(err.text, /no such nick/i);
  });

  test('long messages split under the 512-byte line limit, prefix included, at spaces and UTF-8 boundaries', async () => {
    const bob = await raw('bob6');
    await bob.join('#long');
    const { session, rec } = await open({ nick: 'alice6' });
    await session.joinRoom(room('#long'), 'alice6');
    await rec.take('roomJoined');
    await bob.expect((l) => l.command === 'JOIN' && l.nick === 'alice6');
    const words = Array.from({ length: 300 }, (_, i) => `wörd${i}€`).join(' ');
    await session.sendRoomMessage(room('#long'), { text: words });
    const parts: string[] = [];
    while (parts.join(' ').length < words.length) {
      const l = await bob.expect('PRIVMSG');
      assert.ok(Buffer.byteLength(l.raw + '\r\n') <= 512, `line of ${Buffer.byteLength(l.raw) + 2} bytes`);
      parts.push(l.trailing);
    }
    assert.ok(parts.length >= 5);
    assert.equal(parts.join(' '), words);
    // Without spaces: cut at character boundaries, nothing lost, actions too.
    const dense = '😀é'.repeat(400);
    await session.sendRoomMessage(room('#long'), { text: dense, action: true });
    let got = '';
    while (got.length < dense.length) {
      const l = await bob.expect('PRIVMSG');
      assert.ok(Buffer.byteLength(l.raw + '\r\n') <= 512);
      assert.ok(l.trailing.startsWith('\x01ACTION ') && l.trailing.endsWith('\x01'));
      got += l.trailing.slice(8, -1);
    }
    assert.equal(got, dense);
    // A wall of text beyond the per-message line cap is refused, not trickled out for minutes.
    await assert.rejects(session.sendRoomMessage(room('#long'), { text: 'x '.repeat(20_000) }), (e: IrcCommandError) => e.condition === 'not-acceptable');
  });

  test('flood control: a burst of lines arrives complete and in order', async () => {
    const bob = await raw('bob7');
    const { session } = await open({ nick: 'alice7' });
    const n = 25;
    const sends = Array.from({ length: n }, (_, i) => session.sendMessage({ id: 'bob7' }, { text: `burst ${i}` }));
    await Promise.all(sends);
    for (let i = 0; i < n; i++) assert.equal((await bob.expect('PRIVMSG')).trailing, `burst ${i}`);
  });

  test('topic set both ways, nick changes (own and others), part and quit with reasons', async () => {
    const bob = await raw('bob8');
    await bob.join('#misc');
    bob.send('MODE #misc +t');
    const carol = await raw('carol8');
    await carol.join('#misc');
    const { session, rec } = await open({ nick: 'alice8' });
    await session.joinRoom(room('#misc'), 'alice8');
    await rec.take('roomJoined');

    bob.send('TOPIC #misc :from bob');
    let [r, subject, by] = await rec.take('subject');
    assert.deepEqual([r.id, subject, by], ['#misc', 'from bob', 'bob8']);
    // +t and not opped: refused
    await assert.rejects(session.setSubject(room('#misc'), 'mine'), (e: IrcCommandError) => e.condition === 'forbidden');
    bob.send('MODE #misc +o alice8');
    await rec.take('occupantChanged');
    await session.setSubject(room('#misc'), 'from alice');
    [r, subject, by] = await rec.take('subject');
    assert.deepEqual([subject, by], ['from alice', 'alice8']);
    assert.equal((await bob.expect((l) => l.command === 'TOPIC' && l.nick === 'alice8')).trailing, 'from alice');

    carol.send('NICK carol8b');
    let [, oldNick, newNick] = await rec.take('nickChanged');
    assert.deepEqual([oldNick, newNick], ['carol8', 'carol8b']);
    await session.changeNick(room('#misc'), 'alice8b');
    [, oldNick, newNick] = await rec.take('nickChanged');
    assert.deepEqual([oldNick, newNick], ['alice8', 'alice8b']);
    assert.equal(session.nick, 'alice8b');
    await assert.rejects(session.changeNick(null, 'bob8'), (e: IrcCommandError) => e.condition === 'conflict');

    carol.send('PART #misc :gone fishing');
    let [, nick, reason, kickedBy] = await rec.take('occupantLeft');
    assert.deepEqual([nick, reason, kickedBy], ['carol8b', 'gone fishing', null]);
    await carol.join('#misc');
    await rec.take('occupantJoined', ([, o]) => o.nick === 'carol8b');
    await carol.quit('so long');
    [, nick, reason, kickedBy] = await rec.take('occupantLeft');
    assert.equal(nick, 'carol8b');
    assert.match(reason ?? '', /so long/);
    assert.equal(kickedBy, null);

    await session.leaveRoom(room('#misc'), 'see you');
    [r, nick, reason] = await rec.take('occupantLeft');
    assert.deepEqual([r.id, nick, reason], ['#misc', 'alice8b', 'see you']);
    const part = await bob.expect((l) => l.command === 'PART' && l.nick === 'alice8b');
    assert.equal(part.trailing, 'see you');
    assert.deepEqual(session.joinedRooms, []);
  });

  test('kicks: being kicked, kicking when opped, refused when not', async () => {
    const bob = await raw('bob9');
    await bob.join('#kick');
    const carol = await raw('carol9');
    await carol.join('#kick');
    const { session, rec } = await open({ nick: 'alice9' });
    await session.joinRoom(room('#kick'), 'alice9');
    await rec.take('roomJoined');

    await assert.rejects(session.kick(room('#kick'), 'carol9', 'no'), (e: IrcCommandError) => e.condition === 'forbidden');
    bob.send('MODE #kick +o alice9');
    await rec.take('occupantChanged');
    await session.kick(room('#kick'), 'carol9', 'behave');
    let [, nick, reason, by] = await rec.take('occupantLeft');
    assert.deepEqual([nick, reason, by], ['carol9', 'behave', 'alice9']);
    const k = await carol.expect('KICK');
    assert.deepEqual([k.nick, k.params[1], k.trailing], ['alice9', 'carol9', 'behave']);
    await assert.rejects(session.kick(room('#kick'), 'nobody9'), (e: IrcCommandError) => e.condition === 'item-not-found');

    bob.send('KICK #kick alice9 :bye alice');
    [, nick, reason, by] = await rec.take('occupantLeft');
    assert.deepEqual([nick, reason, by], ['alice9', 'bye alice', 'bob9']);
    assert.deepEqual(session.joinedRooms, []);
  });

  test('autojoin channels are joined after login', async () => {
    const bob = await raw('bob10');
    await bob.join('#auto1');
    const { session, rec } = await open({ nick: 'alice10', autojoin: '#auto1,#auto2' });
    const joined = new Set([(await rec.take('roomJoined'))[0].id, (await rec.take('roomJoined'))[0].id]);
    assert.deepEqual(joined, new Set(['#auto1', '#auto2']));
    assert.deepEqual(session.autojoin, ['#auto1', '#auto2']);
  });

  test('NickServ: the right password logs in, a wrong one is an auth error, no NickServ is a network error', async () => {
    const ns = await raw('NickServ');
    const accounts: Record<string, string> = { alice11: 'right-pass', alice12: 'right-pass' };
    const asked: string[] = [];
    ns.onLine((l) => {
      if (l.command !== 'PRIVMSG' || !/^identify /i.test(l.trailing)) return;
      const args = l.trailing.split(' ').slice(1);
      const [account, pw] = args.length > 1 ? [args[0]!, args[1]!] : [l.nick, args[0]!];
      asked.push(account);
      ns.notice(l.nick, accounts[account] === pw ? `You are now identified for \x02${account}\x02.` : `Invalid password for \x02${account}\x02.`);
    });
    const tl = testLog();
    const ok = await open({ nick: 'alice11', nickservPassword: 'right-pass' }, tl);
    assert.equal(ok.session.nick, 'alice11');
    assert.deepEqual(asked, ['alice11']);
    await assert.rejects(
      login(ircd, { nick: 'alice12', nickservPassword: 'wrong-pass' }, tl),
      (e: Error) => e instanceof LegacyAuthError && !e.message.includes('wrong-pass'),
    );
    // nick taken: identify for the registered nick from nick_
    await raw('alice12');
    const collided = await open({ nick: 'alice12', nickservPassword: 'right-pass' }, tl);
    assert.equal(collided.session.nick, 'alice12_');
    assert.equal(asked.at(-1), 'alice12');
    await ns.quit();
    await assert.rejects(login(ircd, { nick: 'alice13', nickservPassword: 'right-pass' }, tl), (e: Error) => e instanceof LegacyNetworkError && /NickServ/.test(e.message));
    for (const line of tl.lines) assert.ok(!line.includes('right-pass') && !line.includes('wrong-pass'), line);
  });

  test('SASL against a server without SASL is an auth error', async () => {
    await assert.rejects(login(ircd, { nick: 'alice14', saslPassword: 'pw' }), (e: Error) => e instanceof LegacyAuthError && /SASL/.test(e.message));
  });

  test('room ids keep the case the kit used; a KILL by an operator is a non-final disconnect with its reason', async () => {
    const bob = await raw('bob16');
    await bob.join('#caseroom');
    const { session, rec } = await open({ nick: 'alice16' });
    await session.joinRoom(room('#CaseRoom'), 'alice16');
    assert.equal((await rec.take('roomJoined'))[0].id, '#CaseRoom');
    bob.privmsg('#caseroom', 'hi');
    assert.equal((await rec.take('roomMessage'))[0].id, '#CaseRoom');
    bob.send('OPER admin operpw');
    await bob.expect('381');
    bob.send('KILL alice16 :spamming');
    const [reason, final] = await rec.take('disconnected');
    assert.match(reason, /spamming/);
    assert.equal(final, false);
  });

  test('after logout the session refuses work and emits no disconnected', async () => {
    const { session, rec } = await open({ nick: 'alice15' });
    await session.logout('done');
    await assert.rejects(session.sendMessage({ id: 'x' }, { text: 'x' }), LegacyNetworkError);
    assert.ok(await rec.none('disconnected'));
  });
});

describe('IRC adapter: server password', { skip }, () => {
  let ircd: Ircd;
  before(async () => {
    ircd = await startNgircd({ password: 'letmein' });
  });
  after(async () => ircd?.stop());

  test('P9 a wrong server password is LegacyAuthError and no password reaches a log line or error', async () => {
    const tl = testLog();
    await assert.rejects(login(ircd, { nick: 'pw1', password: 'not-the-password' }, tl), (e: Error) => {
      assert.ok(e instanceof LegacyAuthError, String(e));
      assert.ok(!e.message.includes('not-the-password'));
      return true;
    });
    const { session } = await login(ircd, { nick: 'pw2', password: 'letmein' }, tl);
    assert.equal(session.nick, 'pw2');
    await session.logout();
    for (const line of tl.lines) assert.ok(!line.includes('letmein') && !line.includes('not-the-password'), line);
  });
});

describe('IRC adapter: server restart', { skip }, () => {
  let ircd: Ircd;
  before(async () => {
    ircd = await startNgircd();
  });
  after(async () => ircd?.stop());

  test('a killed server gives disconnected(final=false); a fresh login after the restart rejoins', async () => {
    let bob = await RawIrcClient.connect({ port: ircd.port, nick: 'bob20' });
    await bob.join('#persist');
    const first = await login(ircd, { nick: 'alice20', autojoin: '#auto20' });
    await first.session.joinRoom(room('#persist'), 'alice20');
    await first.rec.take('roomJoined', ([r]) => r.id === '#persist');
    await first.rec.take('roomJoined', ([r]) => r.id === '#auto20');

    await ircd.kill();
    const [reason, final] = await first.rec.take('disconnected');
    assert.equal(final, false);
    assert.ok(reason.length > 0);
    assert.equal(first.session.connected, false);
    await assert.rejects(first.session.sendRoomMessage(room('#persist'), { text: 'x' }), LegacyNetworkError);

    // While it is down, logging in fails as a network error (the kit backs off and retries).
    await assert.rejects(login(ircd, { nick: 'alice20' }), LegacyNetworkError);

    await ircd.restart();
    bob.destroy();
    bob = await RawIrcClient.connect({ port: ircd.port, nick: 'bob20' });
    await bob.join('#persist');
    const second = await login(ircd, { nick: 'alice20', autojoin: '#auto20' });
    await second.session.joinRoom(room('#persist'), 'alice20');
    const [, , occupants] = await second.rec.take('roomJoined', ([r]) => r.id === '#persist');
    assert.deepEqual(occupants.map((o) => o.nick).sort(), ['alice20', 'bob20']);
    await second.rec.take('roomJoined', ([r]) => r.id === '#auto20');
    bob.privmsg('#persist', 'welcome back');
    assert.equal((await second.rec.take('roomMessage'))[2].text, 'welcome back');
    await second.session.logout();
    bob.destroy();
  });
});

describe('IRC adapter: nick length', { skip }, () => {
  let ircd: Ircd;
  before(async () => {
    ircd = await startNgircd({ maxNickLength: 6 });
  });
  after(async () => ircd?.stop());

  test('a collision on a nick of the maximum length shortens the nick to fit the suffix', async () => {
    const holder = await RawIrcClient.connect({ port: ircd.port, nick: 'abcdef' });
    const { session } = await login(ircd, { nick: 'abcdef' });
    assert.equal(session.nick, 'abcde_');
    await session.logout();
    holder.destroy();
  });

  test('a nick the server refuses outright is an auth error', async () => {
    await assert.rejects(login(ircd, { nick: 'muchtoolong' }), (e: Error) => e instanceof LegacyAuthError && /nickname/.test(e.message));
  });
});

describe('IRC adapter: TLS', { skip }, () => {
  let ircd: Ircd;
  before(async () => {
    ircd = await startNgircd({ tls: true });
  });
  after(async () => ircd?.stop());

  const tlsLogin = (creds: Record<string, string>, tl = testLog()) =>
    adapter.login({ userJid: 'u@localhost', server: '127.0.0.1', credentials: { port: String(ircd.tlsPort), ...creds }, log: tl.log });

  test('certificate checks are on by default: a self-signed certificate is refused', async () => {
    await assert.rejects(tlsLogin({ nick: 'tls1' }), (e: Error) => e instanceof LegacyNetworkError && /certificate/i.test(e.message));
  });

  test('a pinned SHA-256 fingerprint is trusted; a different one is refused', async () => {
    const s = await tlsLogin({ nick: 'tls2', certificateFingerprint: ircd.certFingerprint256!.toLowerCase() });
    assert.equal(s.nick, 'tls2');
    await s.logout();
    await assert.rejects(tlsLogin({ nick: 'tls3', certificateFingerprint: 'AB'.repeat(32) }), (e: Error) => e instanceof LegacyNetworkError && /fingerprint/.test(e.message));
  });

  test('verification can be switched off per server (with a warning in the log)', async () => {
    const tl = testLog();
    const s = await tlsLogin({ nick: 'tls4', verifyCertificate: 'false' }, tl);
    assert.equal(s.nick, 'tls4');
    assert.ok(tl.lines.some((l) => l.startsWith('warn') && /verification is off/.test(l)));
    await s.logout();
  });

  test('a trusted CA (adapter option) verifies the server normally', async () => {
    const withCa = createIrcAdapter({ ca: ircd.certPem! });
    const s = await withCa.login({ userJid: 'u@localhost', server: '127.0.0.1', credentials: { nick: 'tls5', port: String(ircd.tlsPort) }, log: testLog().log });
    assert.equal(s.nick, 'tls5');
    await s.logout();
  });
});

// ------------------------------------------------------------------ SASL against a scripted server

/** A minimal IRC server speaking CAP and SASL PLAIN, for the SASL exchange only. */
async function fakeSaslServer(accounts: Record<string, string>): Promise<{ port: number; close(): Promise<void>; auths: string[] }> {
  const auths: string[] = [];
  const sockets = new Set<Socket>();
  const srv: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf = '';
    let nick = '*';
    let authed = false;
    const send = (l: string) => sock.write(l + '\r\n');
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      let i: number;
      while ((i = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, i).replace(/\r$/, '');
        buf = buf.slice(i + 1);
        const [cmd, ...args] = line.split(' ');
        switch (cmd) {
          case 'CAP':
            if (args[0] === 'LS') send(':fake.server CAP * LS :sasl=PLAIN multi-prefix');
            else if (args[0] === 'REQ') send(`:fake.server CAP * ACK :${line.split(':')[1]}`);
            else if (args[0] === 'END') {
              send(`:fake.server 001 ${nick} :Welcome ${nick}!u@h`);
              send(`:fake.server 005 ${nick} PREFIX=(ov)@+ CHANTYPES=# :are supported`);
              send(`:fake.server 422 ${nick} :No MOTD`);
            }
            break;
          case 'NICK':
            nick = args[0]!;
            break;
          case 'AUTHENTICATE':
            if (args[0] === 'PLAIN') send('AUTHENTICATE +');
            else {
              const [, user, pass] = Buffer.from(args[0]!, 'base64').toString('utf8').split('\0');
              auths.push(user!);
              authed = accounts[user!] === pass;
              if (authed) {
                send(`:fake.server 900 ${nick} ${nick}!u@h ${user} :You are now logged in as ${user}`);
                send(`:fake.server 903 ${nick} :SASL authentication successful`);
              } else {
                send(`:fake.server 904 ${nick} :SASL authentication failed`);
              }
            }
            break;
          case 'QUIT':
            send('ERROR :Closing link');
            sock.end();
            break;
        }
      }
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    port: (srv.address() as { port: number }).port,
    auths,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        srv.close(() => resolve());
      }),
  };
}

describe('IRC adapter: SASL PLAIN (scripted server; untested against real services)', () => {
  test('the right SASL password logs in with the SASL account; a wrong one is an auth error', async () => {
    const fake = await fakeSaslServer({ acct: 'sasl-secret' });
    try {
      const tl = testLog();
      const creds = (pw: string) => ({ nick: 'sasluser', saslAccount: 'acct', saslPassword: pw, tls: 'false', port: String(fake.port) });
      const s = await adapter.login({ userJid: 'u@localhost', server: '127.0.0.1', credentials: creds('sasl-secret'), log: tl.log });
      const rec = new Recorder(s);
      assert.equal((await rec.take('connected'))[1], 'acct');
      await s.logout();
      await assert.rejects(
        adapter.login({ userJid: 'u@localhost', server: '127.0.0.1', credentials: creds('bad-secret'), log: tl.log }),
        (e: Error) => e instanceof LegacyAuthError && /SASL/.test(e.message) && !e.message.includes('bad-secret'),
      );
      assert.deepEqual(fake.auths, ['acct', 'acct']);
      for (const line of tl.lines) assert.ok(!line.includes('secret'), line);
    } finally {
      await fake.close();
    }
  });
});
