/**
 * Characters XML 1.0 cannot carry (U+0001 and the other C0 controls but tab/LF/CR, U+FFFE, U+FFFF,
 * lone surrogates) coming from a legacy network, in message bodies, nicks, topics and room names,
 * through each real adapter (IRC on ngIRCd, Matrix and Discord on their protocol fakes), the kit
 * and the XEP-0114 link into Gatehouse. The XMPP user gets the message with U+FFFD in their place,
 * and the component link stays up: Gatehouse's parser would answer a forbidden character with
 * not-well-formed and close the link, dropping every user's bridge.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { Logger } from '../../shared/logger.js';
import type { TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { FakeHomeserver } from '../fakes/matrix-homeserver.js';
import { FakeDiscord, type FakeChannel } from '../fakes/discord.js';
import { startNgircd, type Ircd } from '../helpers/ircd.js';
import { skipWithout } from '../helpers/requirements.js';
import { RawIrcClient } from '../helpers/irc-client.js';
import { createAdapter as createMatrixAdapter } from '../../transports/matrix/index.js';
import { createAdapter as createDiscordAdapter } from '../../transports/discord/index.js';
import { IrcAdapter } from '../../transports/irc/index.js';
import type { NetworkAdapter } from '../../transports/kit/adapter.js';
import { parseTransportConfig } from '../../transports/kit/config.js';
import { startTransport, type RunningTransport } from '../../transports/kit/gateway.js';
import { escapeLocal } from '../../transports/kit/jid-escaping.js';
import { GW, SECRET, registerForm, startServer, subscribeBoth, transportConfig } from './kit-harness.js';

const MUC = 'http://jabber.org/protocol/muc';
/** One of each kind: a C0 control, a noncharacter, a lone surrogate. */
const BAD = '\u0001\ufffe\ud800';
const AS_SENT = '\ufffd\ufffd\ufffd';
const bad = (s: string) => s.replace('|', BAD);
const sane = (s: string) => s.replace('|', AS_SENT);
const isMsg = (el: Element) => el.name === 'message';
const quiet = { debug() {}, info() {}, warn() {} };

/** Whether a string holds only characters XML 1.0 allows. */
function onlyXmlChars(s: string): boolean {
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (!(cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) || cp >= 0x10000)) return false;
  }
  return true;
}

/** A Gatehouse, a transport on it and one XMPP user; counts the times the component link went down. */
class Bridge {
  ts!: TestServer;
  transport!: RunningTransport;
  user!: TestClient;
  dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-xmlchars-'));
  linkDrops = 0;

  async start(name: string, adapter: NetworkAdapter, network: string, raw: Record<string, unknown> = {}): Promise<void> {
    this.ts = await startServer();
    const config =
      network === 'fake'
        ? transportConfig(this.ts, this.dir)
        : parseTransportConfig(
            {
              adapter: network,
              component: { domain: GW, secret: SECRET, host: '127.0.0.1', port: this.ts.componentPort },
              storage: { type: 'sqlite', path: path.join(this.dir, 'transport.sqlite') },
              vault: { keyFile: path.join(this.dir, 'keys', 'vault.key') },
              admins: ['admin@localhost'],
              gracePeriod: '2s',
              loginTimeout: '5s',
              reconnect: { min: '50ms', max: '400ms' },
              network: raw,
            },
            this.dir,
            network,
            {},
          );
    this.transport = await startTransport({ config, adapter, log: new Logger({ level: 'warn', format: 'text', sink: () => undefined }, 'transport'), env: {} });
    this.transport.link.on('offline', () => this.linkDrops++);
    this.user = await this.ts.user(name);
    await this.user.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
    this.user.send(x('presence'));
    await this.user.expect((el) => el.name === 'presence' && el.attrs.from === this.user.jid);
  }

  /** Every stanza the user received so far holds only XML 1.0 characters (what the parser gave us, serialised again). */
  assertClean(): void {
    for (const el of this.user.received) assert.ok(onlyXmlChars(String(el)));
  }

  async stop(): Promise<void> {
    await this.user?.close().catch(() => undefined);
    await this.transport?.stop().catch(() => undefined);
    await this.ts?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

describe('forbidden XML characters from Matrix', () => {
  let hs: FakeHomeserver;
  const b = new Bridge();
  let bobId: string;
  let dmRoom: string;
  let groupRoom: string;

  before(async () => {
    hs = await FakeHomeserver.start();
    const meId = hs.createUser('alice', { password: 'alice-matrix-pw', displayName: 'Alice' });
    bobId = hs.createUser('bob', { displayName: bad('Bo|b') });
    dmRoom = hs.createRoom({ creator: bobId, members: [meId], direct: true });
    groupRoom = hs.createRoom({ creator: bobId, members: [meId], name: bad('Lou|nge'), alias: 'lounge', topic: bad('to|pic') });
    const settings = { pollTimeout: 2, syncFailureTimeout: 1, retryInterval: 0.2, requestTimeout: 5, loginTimeout: 5, joinTimeout: 3 };
    await b.start('xc-mx', await createMatrixAdapter(settings, quiet), 'matrix', settings);
    const ok = await registerForm(b.user, { username: meId, homeserver: hs.url, password: 'alice-matrix-pw' });
    assert.equal(ok.attrs.type, 'result', String(ok));
    await subscribeBoth(b.user);
  });

  after(async () => {
    await b.stop();
    await hs?.stop();
  });

  test('a direct message with U+0001, U+FFFE and a lone surrogate arrives with U+FFFD; the component link stays up', async () => {
    const bob = `${escapeLocal(bobId)}@${GW}`;
    hs.message(dmRoom, bobId, bad('he|llo'));
    const got = await b.user.expect((el) => isMsg(el) && el.attrs.from === bob && !!el.getChild('body'), 10000);
    assert.equal(got.getChildText('body'), sane('he|llo'));
    hs.message(dmRoom, bobId, 'second message');
    await b.user.expect((el) => isMsg(el) && el.attrs.from === bob && el.getChildText('body') === 'second message', 10000);
    assert.equal(b.linkDrops, 0, 'the component link never went down');
    b.assertClean();
  });

  test('a room with such characters in its name, topic, a nick, a nick change and a message: all arrive with U+FFFD; the link stays up', async () => {
    const room = `${escapeLocal(`#lounge:${hs.serverName}`)}@${GW}`;
    b.user.send(x('presence', { to: `${room}/alice` }, x('x', { xmlns: MUC })));
    const subject = await b.user.expect((el) => isMsg(el) && el.attrs.from?.startsWith(room) === true && !!el.getChild('subject'), 10000);
    assert.equal(subject.getChildText('subject'), sane('to|pic'));
    const nicks = b.user.received.filter((el) => el.name === 'presence' && el.attrs.from?.startsWith(`${room}/`) === true).map((el) => el.attrs.from!.slice(room.length + 1));
    assert.ok(nicks.includes(sane('Bo|b')), `Bob is an occupant under his sanitised nick: ${JSON.stringify(nicks)}`);

    const info = await b.user.iq(x('iq', { type: 'get', to: room }, x('query', { xmlns: NS.discoInfo })));
    assert.equal(info.getChild('query', NS.discoInfo)?.getChild('identity')?.attrs.name, sane('Lou|nge'));

    hs.message(groupRoom, bobId, bad('in the |room'));
    const inRoom = await b.user.expect((el) => isMsg(el) && el.attrs.type === 'groupchat' && el.getChildText('body') === sane('in the |room'), 10000);
    assert.equal(inRoom.attrs.from, `${room}/${sane('Bo|b')}`);
    hs.inject(groupRoom, { type: 'm.room.topic', sender: bobId, state_key: '', content: { topic: bad('new |topic') } });
    await b.user.expect((el) => isMsg(el) && el.getChildText('subject') === sane('new |topic'), 10000);
    // A new display name: the nick change (status 303) names the new nick with U+FFFD; messages follow it.
    hs.setDisplayName(bobId, bad('Ro|b'));
    const change = await b.user.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `${room}/${sane('Bo|b')}`, 10000);
    assert.equal(change.getChild('x', `${MUC}#user`)?.getChild('item')?.attrs.nick, sane('Ro|b'));
    hs.message(groupRoom, bobId, 'renamed');
    const renamed = await b.user.expect((el) => isMsg(el) && el.getChildText('body') === 'renamed', 10000);
    assert.equal(renamed.attrs.from, `${room}/${sane('Ro|b')}`);
    hs.message(groupRoom, bobId, 'still there');
    await b.user.expect((el) => isMsg(el) && el.getChildText('body') === 'still there', 10000);
    assert.equal(b.linkDrops, 0, 'the component link never went down');
    b.assertClean();
  });
});

/**
 * What an adapter that cleans text itself (IRC drops formatting and control codes, Discord drops
 * controls) delivers: no forbidden character left, the rest of the text intact, U+FFFD at most
 * where one was.
 */
function sanitisedFrom(got: string | undefined, sent: string): boolean {
  if (got === undefined || !onlyXmlChars(got)) return false;
  const rest = (s: string) => s.replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\ufffd\ufffe\uffff\ud800-\udfff]/g, '');
  return rest(got) === rest(sent);
}

describe('forbidden XML characters from Discord', () => {
  let fake: FakeDiscord;
  const b = new Bridge();
  let bobId: string;
  let dm: FakeChannel;
  let general: FakeChannel;

  before(async () => {
    fake = await FakeDiscord.start({ heartbeatIntervalMs: 400 });
    const olga = fake.createUser('olga', { globalName: 'Olga' });
    const guild = fake.createGuild(bad('Gate|house'), { ownerId: olga.id });
    general = fake.createChannel(guild.id, bad('gen|eral'), { topic: bad('to|pic') });
    bobId = fake.createUser('bob', { globalName: bad('Bo|b') }).id;
    fake.addMember(guild.id, bobId, { nick: bad('Bo|bby') });
    dm = fake.dmChannel(bobId);
    const settings = { api: fake.apiBase, reconnectGraceSeconds: 2, loginTimeoutSeconds: 5, maxRateLimitWaitSeconds: 5 };
    await b.start('xc-dc', await createDiscordAdapter(settings, quiet), 'discord', settings);
    const ok = await registerForm(b.user, { password: `Bot ${fake.token}` });
    assert.equal(ok.attrs.type, 'result', String(ok));
    await subscribeBoth(b.user);
  });

  after(async () => {
    await b.stop();
    await fake?.close();
  });

  test('a direct message with U+0001, U+FFFE and a lone surrogate arrives sanitised; the component link stays up', async () => {
    const bob = `${bobId}@${GW}`;
    fake.say(dm.id, bobId, bad('he|llo'));
    const got = await b.user.expect((el) => isMsg(el) && el.attrs.from === bob && !!el.getChild('body'), 10000);
    assert.ok(sanitisedFrom(got.getChildText('body'), bad('he|llo')), JSON.stringify(got.getChildText('body')));
    fake.say(dm.id, bobId, 'second message');
    await b.user.expect((el) => isMsg(el) && el.attrs.from === bob && el.getChildText('body') === 'second message', 10000);
    assert.equal(b.linkDrops, 0, 'the component link never went down');
    b.assertClean();
  });

  test('a channel with such characters in the guild and channel names, the topic, a nick and a message: all arrive sanitised; the link stays up', async () => {
    const room = `${escapeLocal(`#${general.id}`)}@${GW}`;
    b.user.send(x('presence', { to: `${room}/alice` }, x('x', { xmlns: MUC })));
    const subject = await b.user.expect((el) => isMsg(el) && el.attrs.from?.startsWith(room) === true && !!el.getChild('subject'), 10000);
    assert.ok(sanitisedFrom(subject.getChildText('subject'), bad('to|pic')), JSON.stringify(subject.getChildText('subject')));
    const nicks = b.user.received.filter((el) => el.name === 'presence' && el.attrs.from?.startsWith(`${room}/`) === true).map((el) => el.attrs.from!.slice(room.length + 1));
    const bobby = nicks.find((n) => sanitisedFrom(n, bad('Bo|bby')));
    assert.ok(bobby, `Bobby is an occupant under a sanitised nick: ${JSON.stringify(nicks)}`);

    const info = await b.user.iq(x('iq', { type: 'get', to: room }, x('query', { xmlns: NS.discoInfo })));
    const name = info.getChild('query', NS.discoInfo)?.getChild('identity')?.attrs.name;
    assert.ok(sanitisedFrom(name, `${bad('Gate|house')} / #${bad('gen|eral')}`), JSON.stringify(name));
    const items = await b.user.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoItems })));
    const item = items.getChild('query', NS.discoItems)?.getChildren('item').find((i) => i.attrs.jid === room);
    assert.ok(sanitisedFrom(item?.attrs.name, `${bad('Gate|house')} / #${bad('gen|eral')}`), String(items));

    fake.say(general.id, bobId, bad('in the |room'));
    const inRoom = await b.user.expect((el) => isMsg(el) && el.attrs.type === 'groupchat' && sanitisedFrom(el.getChildText('body'), bad('in the |room')), 10000);
    assert.equal(inRoom.attrs.from, `${room}/${bobby}`);
    fake.setTopic(general.id, bad('new |topic'));
    await b.user.expect((el) => isMsg(el) && sanitisedFrom(el.getChildText('subject'), bad('new |topic')), 10000);
    fake.say(general.id, bobId, 'still there');
    await b.user.expect((el) => isMsg(el) && el.getChildText('body') === 'still there', 10000);
    assert.equal(b.linkDrops, 0, 'the component link never went down');
    b.assertClean();
  });
});

describe('forbidden XML characters from IRC', { skip: skipWithout('ngircd') }, () => {
  let ircd: Ircd;
  const b = new Bridge();
  let bob: RawIrcClient;

  before(async () => {
    ircd = await startNgircd();
    await b.start('xc-irc', new IrcAdapter({ name: 'IRC gateway', flood: { burst: 10, intervalMs: 50 }, commandTimeoutMs: 5000, joinTimeoutMs: 5000, nickservTimeoutMs: 3000 }), 'fake');
    const form = x('x', { xmlns: NS.dataForms, type: 'submit' }, Object.entries({ nick: 'alice1', port: String(ircd.port), tls: '0' }).map(([k, v]) => x('field', { var: k }, x('value', {}, v))));
    const ok = await b.user.iq(x('iq', { type: 'set', to: `${ircd.host}@${GW}` }, x('query', { xmlns: NS.register }, form)));
    assert.equal(ok.attrs.type, 'result', String(ok));
    bob = await RawIrcClient.connect({ port: ircd.port, nick: 'bob1' });
    await bob.join('#xc');
    bob.send(`TOPIC #xc :${bad('to|pic')}`);
  });

  after(async () => {
    bob?.destroy();
    await b.stop();
    await ircd?.stop();
  });

  test('a channel topic, a channel message and a private message with U+0001, U+FFFE and a lone surrogate arrive sanitised; the link stays up', async () => {
    const room = `#xc%${ircd.host}@${GW}`;
    b.user.send(x('presence', { to: `${room}/alice1` }, x('x', { xmlns: MUC })));
    const subject = await b.user.expect((el) => isMsg(el) && el.attrs.from?.startsWith(room) === true && !!el.getChild('subject'), 15000);
    assert.ok(sanitisedFrom(subject.getChildText('subject'), bad('to|pic')), JSON.stringify(subject.getChildText('subject')));
    await bob.expect((l) => l.command === 'JOIN' && l.nick === 'alice1');

    bob.privmsg('#xc', bad('in the |room'));
    await b.user.expect((el) => isMsg(el) && el.attrs.from === `${room}/bob1` && sanitisedFrom(el.getChildText('body'), bad('in the |room')), 10000);
    bob.send(`TOPIC #xc :${bad('new |topic')}`);
    await b.user.expect((el) => isMsg(el) && sanitisedFrom(el.getChildText('subject'), bad('new |topic')), 10000);
    bob.privmsg('alice1', bad('pri|vate'));
    await b.user.expect((el) => isMsg(el) && el.attrs.from?.startsWith(`bob1%${ircd.host}@${GW}`) === true && sanitisedFrom(el.getChildText('body'), bad('pri|vate')), 10000);
    bob.privmsg('#xc', 'still there');
    await b.user.expect((el) => isMsg(el) && el.getChildText('body') === 'still there', 10000);
    assert.equal(b.linkDrops, 0, 'the component link never went down');
    b.assertClean();
  });
});

describe('forbidden XML characters in what the server itself writes', () => {
  let ts: TestServer;

  before(async () => {
    ts = await startServer();
  });

  after(async () => {
    await ts?.stop();
  });

  test('a stanza the server builds with U+0001, U+FFFE and a lone surrogate reaches the client with U+FFFD; the stream stays open', async () => {
    const alice = await ts.user('xc-server');
    const session = ts.server.ctx.sessions.get(alice.jid)!;
    ts.server.ctx.router.deliver(session, x('message', { from: 'localhost', to: alice.jid, id: bad('i|d') }, x('body', {}, bad('he|llo')), x('subject', {}, bad('to|pic'))));
    const got = await alice.expect((el) => isMsg(el) && el.attrs.from === 'localhost', 5000);
    assert.equal(got.attrs.id, sane('i|d'));
    assert.equal(got.getChildText('body'), sane('he|llo'));
    assert.equal(got.getChildText('subject'), sane('to|pic'));
    const ping = await alice.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
    assert.equal(ping.attrs.type, 'result', 'the stream is still open');
    await alice.close();
  });
});
