/**
 * The IRC transport end to end: a TestClient on Gatehouse, the kit over XEP-0114 with the real IRC
 * adapter, a real ngIRCd, and raw IRC clients on the other side. A shared channel (messages, /me,
 * topic, nick changes, part, kicks both ways, private messages), registration and its removal, a
 * wrong NickServ password, the IRC server killed and restarted, the audit rows and the credential
 * at rest. Skipped when ngIRCd is not installed.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { Logger } from '../../shared/logger.js';
import { startNgircd, type Ircd } from '../helpers/ircd.js';
import { skipWithout } from '../helpers/requirements.js';
import { RawIrcClient, type IrcLine } from '../helpers/irc-client.js';
import type { TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { IrcAdapter } from '../../transports/irc/index.js';
import { startTransport, type RunningTransport } from '../../transports/kit/gateway.js';
import { GW, errorOf, startServer, transportConfig, until, bareOf } from './kit-harness.js';

const MUC = 'http://jabber.org/protocol/muc';
const MUC_USER = 'http://jabber.org/protocol/muc#user';
const MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';
const NS_MARKER = 'NickServMarker-5f3c9e1a';

function codes(p: Element): number[] {
  return (p.getChild('x', MUC_USER)?.getChildren('status') ?? []).map((s) => Number(s.attrs.code)).sort((a, b) => a - b);
}

function item(p: Element): Record<string, string> {
  return p.getChild('x', MUC_USER)?.getChild('item')?.attrs ?? {};
}

describe('IRC transport end to end (Gatehouse, kit, IRC adapter, ngIRCd)', { skip: skipWithout('ngircd') }, () => {
  let ircd: Ircd;
  let ts: TestServer;
  let transport: RunningTransport;
  let dir: string;
  const logLines: string[] = [];
  const irc: RawIrcClient[] = [];
  const serverJid = () => `${ircd.host}@${GW}`;
  const room = (chan: string) => `${chan}%${ircd.host}@${GW}`;
  const contact = (nick: string) => `${nick}%${ircd.host}@${GW}`;

  async function raw(nick: string): Promise<RawIrcClient> {
    const c = await RawIrcClient.connect({ port: ircd.port, nick });
    irc.push(c);
    return c;
  }

  function submit(c: TestClient, fields: Record<string, string>): Promise<Element> {
    return c.iq(
      x(
        'iq',
        { type: 'set', to: serverJid() },
        x('query', { xmlns: NS.register }, x('x', { xmlns: NS.dataForms, type: 'submit' }, Object.entries(fields).map(([k, v]) => x('field', { var: k }, x('value', {}, v))))),
      ),
    );
  }

  /** A user logged in, available, and registered on the test IRC server with this nick. */
  async function ircUser(name: string, nick: string, extra: Record<string, string> = {}): Promise<TestClient> {
    const c = await ts.user(name);
    await c.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
    c.send(x('presence'));
    const ok = await submit(c, { nick, port: String(ircd.port), tls: '0', ...extra });
    assert.equal(ok.attrs.type, 'result', String(ok));
    return c;
  }

  /** Joins a room and waits for the subject that ends the join. */
  async function join(c: TestClient, roomJid: string, nick: string): Promise<Element> {
    c.send(x('presence', { to: `${roomJid}/${nick}` }, x('x', { xmlns: MUC })));
    return c.expect((el) => el.name === 'message' && el.attrs.from?.startsWith(roomJid) === true && !!el.getChild('subject'), 15000);
  }

  const audit = async (user: string) => (await transport.storage.transports.queryAudit({ userJid: user })).map((r) => r.event);

  before(async () => {
    ircd = await startNgircd();
    ts = await startServer();
    dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-irc-e2e-'));
    transport = await startTransport({
      config: transportConfig(ts, dir),
      adapter: new IrcAdapter({ name: 'IRC gateway', flood: { burst: 10, intervalMs: 50 }, commandTimeoutMs: 5000, joinTimeoutMs: 5000, nickservTimeoutMs: 3000 }),
      log: new Logger({ level: 'debug', format: 'text', sink: (l) => logLines.push(l) }, 'transport-irc'),
      env: {},
    });
  });

  after(async () => {
    for (const c of irc) c.destroy();
    await transport?.stop().catch(() => undefined);
    await ts?.stop();
    await ircd?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a shared channel: messages, /me, topic, nick changes, part and kicks both ways; private messages both ways', async () => {
    const bob = await raw('bob1');
    await bob.join('#e2e');
    const carol = await raw('carol1');
    await carol.join('#e2e');
    const alice = await ircUser('e2e-alice', 'alice1');
    const chan = room('#e2e');
    await join(alice, chan, 'alice1');
    const bobIn = alice.received.find((el) => el.name === 'presence' && el.attrs.from === `${chan}/bob1`);
    assert.ok(bobIn, 'bob is an occupant');
    assert.equal(item(bobIn).role, 'moderator', 'the channel founder is op');
    await bob.expect((l) => l.command === 'JOIN' && l.nick === 'alice1');

    // Messages both ways.
    alice.send(x('message', { to: chan, type: 'groupchat', id: 'e2e-1' }, x('body', {}, 'hello IRC')));
    const echo = await alice.expect((el) => el.name === 'message' && el.attrs.id === 'e2e-1');
    assert.equal(echo.attrs.from, `${chan}/alice1`);
    await bob.expect((l) => l.command === 'PRIVMSG' && l.nick === 'alice1' && l.params[0] === '#e2e' && l.trailing === 'hello IRC');
    bob.privmsg('#e2e', 'hello XMPP');
    const inbound = await alice.expect((el) => el.name === 'message' && el.getChildText('body') === 'hello XMPP');
    assert.equal(inbound.attrs.from, `${chan}/bob1`);
    assert.equal(inbound.attrs.type, 'groupchat');

    // /me both ways: CTCP ACTION on IRC.
    alice.send(x('message', { to: chan, type: 'groupchat', id: 'e2e-2' }, x('body', {}, '/me waves')));
    await bob.expect((l) => l.command === 'PRIVMSG' && l.nick === 'alice1' && l.trailing === '\x01ACTION waves\x01');
    bob.action('#e2e', 'dances');
    const action = await alice.expect((el) => el.name === 'message' && el.attrs.from === `${chan}/bob1` && el.getChildText('body') === '/me dances');
    assert.equal(action.attrs.type, 'groupchat');

    // Topic from IRC.
    bob.send('TOPIC #e2e :Today: tests');
    const topic = await alice.expect((el) => el.name === 'message' && el.getChildText('subject') === 'Today: tests');
    assert.equal(topic.attrs.from, `${chan}/bob1`);
    // bob ops alice; she sets the topic from XMPP.
    bob.send('MODE #e2e +o alice1');
    const opped = await alice.expect((el) => el.name === 'presence' && el.attrs.from === `${chan}/alice1` && item(el).role === 'moderator');
    assert.ok(codes(opped).includes(110));
    alice.send(x('message', { to: chan, type: 'groupchat' }, x('subject', {}, 'Tomorrow: more tests')));
    const topicLine = await bob.expect((l) => l.command === 'TOPIC' && l.nick === 'alice1');
    assert.equal(topicLine.trailing, 'Tomorrow: more tests');
    const mine = await alice.expect((el) => el.name === 'message' && el.getChildText('subject') === 'Tomorrow: more tests');
    assert.equal(mine.attrs.from, `${chan}/alice1`);

    // IRC nick change: 303 with the new nick.
    bob.send('NICK bobby1');
    const gone = await alice.expect((el) => el.name === 'presence' && el.attrs.from === `${chan}/bob1` && el.attrs.type === 'unavailable');
    assert.deepEqual(codes(gone), [303]);
    assert.equal(item(gone).nick, 'bobby1');
    await alice.expect((el) => el.name === 'presence' && el.attrs.from === `${chan}/bobby1` && el.attrs.type === undefined);
    // XMPP nick change: presence to room/newnick is a NICK on IRC.
    alice.send(x('presence', { to: `${chan}/alicia1` }));
    const nickLine = await bob.expect((l) => l.command === 'NICK' && l.nick === 'alice1');
    assert.equal(nickLine.trailing, 'alicia1');
    const own = await alice.expect((el) => el.name === 'presence' && el.attrs.from === `${chan}/alice1` && el.attrs.type === 'unavailable');
    assert.deepEqual(codes(own), [110, 303]);
    assert.equal(item(own).nick, 'alicia1');
    const renamed = await alice.expect((el) => el.name === 'presence' && el.attrs.from === `${chan}/alicia1` && el.attrs.type === undefined);
    assert.ok(codes(renamed).includes(110));

    // A part with its reason.
    const dave = await raw('dave1');
    await dave.join('#e2e');
    await alice.expect((el) => el.name === 'presence' && el.attrs.from === `${chan}/dave1` && el.attrs.type === undefined);
    dave.send('PART #e2e :gone fishing');
    const part = await alice.expect((el) => el.name === 'presence' && el.attrs.from === `${chan}/dave1` && el.attrs.type === 'unavailable');
    assert.deepEqual(codes(part), []);

    // The XMPP user (op) kicks carol: KICK on IRC, 307 in the room.
    const kick = await alice.iq(x('iq', { type: 'set', to: chan }, x('query', { xmlns: MUC_ADMIN }, x('item', { nick: 'carol1', role: 'none' }, x('reason', {}, 'bye carol')))));
    assert.equal(kick.attrs.type, 'result', String(kick));
    const kickLine = await carol.expect((l) => l.command === 'KICK' && l.params[1] === 'carol1');
    assert.equal(kickLine.nick, 'alicia1');
    assert.equal(kickLine.trailing, 'bye carol');
    const out = await alice.expect((el) => el.name === 'presence' && el.attrs.from === `${chan}/carol1` && el.attrs.type === 'unavailable');
    assert.deepEqual(codes(out), [307]);

    // Private messages both ways (from alice's new nick).
    alice.send(x('message', { to: contact('bobby1'), type: 'chat' }, x('body', {}, 'just you')));
    const pmOut = await bob.expect((l) => l.command === 'PRIVMSG' && l.params[0] === 'bobby1' && l.trailing === 'just you');
    assert.equal(pmOut.nick, 'alicia1');
    bob.privmsg('alicia1', 'just you too');
    const pm = await alice.expect((el) => el.name === 'message' && el.getChildText('body') === 'just you too');
    assert.equal(pm.attrs.from, contact('bobby1'));
    assert.equal(pm.attrs.type, 'chat');

    // An IRC op kicks the XMPP user: 110 + 307 with the actor and the reason.
    bob.send('KICK #e2e alicia1 :flooding');
    const kicked = await alice.expect((el) => el.name === 'presence' && el.attrs.from === `${chan}/alicia1` && el.attrs.type === 'unavailable');
    assert.deepEqual(codes(kicked), [110, 307]);
    const kickItem = kicked.getChild('x', MUC_USER)!.getChild('item')!;
    assert.equal(kickItem.getChild('actor')?.attrs.nick, 'bobby1');
    assert.equal(kickItem.getChildText('reason'), 'flooding');
    alice.send(x('message', { to: chan, type: 'groupchat', id: 'after-kick' }, x('body', {}, 'still here?')));
    const refused = await alice.expect((el) => el.name === 'message' && el.attrs.id === 'after-kick');
    assert.equal(refused.attrs.type, 'error');
    assert.ok(await bob.expectNothing((l) => l.trailing === 'still here?', 300));
    await alice.close();
  });

  test('register and unregister: <remove/> ends the IRC connection and the credentials are gone', async () => {
    const watcher = await raw('watch2');
    await watcher.join('#e2e-reg');
    const erin = await ircUser('e2e-erin', 'erin2');
    const user = bareOf(erin);
    assert.ok(await transport.storage.transports.getRegistration('irc', user));
    assert.ok(await transport.storage.transports.getCredentials('irc', user));
    await join(erin, room('#e2e-reg'), 'erin2');
    await watcher.expect((l) => l.command === 'JOIN' && l.nick === 'erin2');
    const removed = await erin.iq(x('iq', { type: 'set', to: serverJid() }, x('query', { xmlns: NS.register }, x('remove'))));
    assert.equal(removed.attrs.type, 'result', String(removed));
    await watcher.expect((l) => l.command === 'QUIT' && l.nick === 'erin2', 5000);
    assert.equal(await transport.storage.transports.getRegistration('irc', user), null);
    assert.equal(await transport.storage.transports.getCredentials('irc', user), null);
    await until(async () => (await audit(user)).at(-1) === 'disconnected', 'the disconnected row');
    await erin.close();
  });

  test('P10 a wrong NickServ password is a not-authorized presence error and an auth-failed row', async () => {
    const ns = await raw('NickServ');
    let accepted = NS_MARKER;
    const asked: string[] = [];
    ns.onLine((l: IrcLine) => {
      if (l.command !== 'PRIVMSG' || !/^identify /i.test(l.trailing)) return;
      const args = l.trailing.split(' ').slice(1);
      const [account, pw] = args.length > 1 ? [args[0]!, args[1]!] : [l.nick, args[0]!];
      asked.push(account);
      ns.notice(l.nick, pw === accepted ? `You are now identified for \x02${account}\x02.` : `Invalid password for \x02${account}\x02.`);
    });
    // The right password at registration: tried, accepted, stored.
    const gus = await ircUser('e2e-gus', 'gus3', { nickservPassword: NS_MARKER });
    const user = bareOf(gus);
    assert.deepEqual(asked, ['gus3']);
    // Nothing demands the session (no presence at the server JID, no room): it ends after the grace period.
    await until(async () => (await audit(user)).at(-1) === 'disconnected', 'logged out', 5000);
    // The password changes at NickServ; the next login is refused.
    accepted = 'changed-elsewhere';
    gus.send(x('presence', { to: serverJid() }));
    const err = await gus.expect((el) => el.name === 'presence' && el.attrs.type === 'error' && el.attrs.from === serverJid(), 10000);
    assert.equal(errorOf(err), 'not-authorized');
    assert.ok(!String(err).includes(NS_MARKER), 'no credential in the error');
    await until(async () => (await audit(user)).at(-1) === 'auth-failed', 'the auth-failed row');
    assert.equal(asked.length, 2);
    for (const line of logLines) assert.ok(!line.includes(NS_MARKER), 'no password in a log line');
    await gus.close();
    await ns.quit();
  });

  test('P9 the NickServ password is encrypted at rest', async () => {
    const user = 'e2e-gus@localhost';
    const record = await transport.storage.transports.getCredentials('irc', user);
    assert.ok(record, 'the credential is stored');
    assert.equal(transport.gateway.vault.open(record).servers?.[ircd.host]?.nickservPassword, NS_MARKER);
    const db = path.join(dir, 'transport.sqlite');
    // Positive control: the scan finds what is stored in clear (the registration's JID), so a miss below means something.
    const files = [db, `${db}-wal`, `${db}-journal`].filter((f) => existsSync(f));
    assert.ok(Buffer.concat(files.map((f) => readFileSync(f))).includes(Buffer.from(user)), `the scan finds ${user} in ${files.join(', ')}`);
    for (const file of files) {
      const bytes = readFileSync(file);
      assert.equal(bytes.includes(Buffer.from(NS_MARKER, 'utf8')), false, `${path.basename(file)} holds the password in clear`);
      assert.equal(bytes.includes(Buffer.from(NS_MARKER, 'utf16le')), false, `${path.basename(file)} holds the password in UTF-16`);
      assert.equal(bytes.includes(Buffer.from(Buffer.from(NS_MARKER).toString('base64').slice(0, 16))), false, `${path.basename(file)} holds the password in base64`);
    }
  });

  test('P10 the IRC server is killed and restarted: the transport reconnects, rejoins, and messages flow again', async () => {
    const bob = await raw('bob5');
    await bob.join('#e2e-crash');
    const hank = await ircUser('e2e-hank', 'hank5');
    const user = bareOf(hank);
    const chan = room('#e2e-crash');
    await join(hank, chan, 'hank5');
    await bob.expect((l) => l.command === 'JOIN' && l.nick === 'hank5');
    await ircd.kill();
    await hank.expect((el) => el.name === 'presence' && el.attrs.from === `${chan}/bob5` && el.attrs.type === 'unavailable', 10000);
    await until(async () => (await audit(user)).includes('disconnected'), 'the disconnected row');
    // What arrived for the first join (hank's own presence, bob's) must not satisfy the waits for the
    // rejoin below: otherwise bob speaks before hank is back in the channel and the line is lost.
    hank.received.length = 0;
    await ircd.restart();
    const bob2 = await raw('bob5');
    await bob2.join('#e2e-crash');
    const back = await hank.expect((el) => el.name === 'presence' && el.attrs.from === `${chan}/hank5` && el.attrs.type === undefined && codes(el).includes(110), 15000);
    assert.ok(back);
    await hank.expect((el) => el.name === 'presence' && el.attrs.from === `${chan}/bob5` && el.attrs.type === undefined, 10000);
    bob2.privmsg('#e2e-crash', 'welcome back');
    await hank.expect((el) => el.name === 'message' && el.attrs.from === `${chan}/bob5` && el.getChildText('body') === 'welcome back');
    hank.send(x('message', { to: chan, type: 'groupchat', id: 'back-1' }, x('body', {}, 'glad to be back')));
    await bob2.expect((l) => l.command === 'PRIVMSG' && l.nick === 'hank5' && l.trailing === 'glad to be back');
    const events = await audit(user);
    const drop = events.indexOf('disconnected');
    assert.deepEqual(events.slice(0, 2), ['connecting', 'connected']);
    assert.ok(drop > 1 && events.slice(drop + 1).includes('connecting') && events.at(-1) === 'connected', events.join(','));
    await hank.close();
  });

  test('P10 every event left its audit row, with the network, server and account', async () => {
    const rows = await transport.storage.transports.queryAudit({});
    const seen = new Set(rows.map((r) => r.event));
    for (const e of ['connecting', 'connected', 'disconnected', 'auth-failed'] as const) assert.ok(seen.has(e), `a ${e} row`);
    assert.ok(rows.every((r) => r.network === 'irc' && r.server === ircd.host), 'network and server on every row');
    const gus = rows.filter((r) => r.userJid === 'e2e-gus@localhost');
    assert.ok(gus.every((r) => r.account === 'gus3'));
    for (const r of rows) assert.ok(!(r.reason ?? '').includes(NS_MARKER), 'no password in a reason');
    const erin = rows.filter((r) => r.userJid === 'e2e-erin@localhost');
    assert.equal(erin.at(-1)!.event, 'disconnected');
  });
});
