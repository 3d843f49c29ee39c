/**
 * The IRC transport the way Biboumi users use it, end to end on Gatehouse with a real ngIRCd:
 * joining a channel without registering (the MUC nick becomes the IRC nick, TLS first with
 * certificate checks, plain ports only where the settings name them), per-server settings by
 * ad-hoc command on the server JID, the channel list in the server JID's disco#items, and raw
 * IRC commands sent as messages to the server JID; each against ngIRCd and InspIRCd.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { Logger } from '../../shared/logger.js';
import { startNgircd } from '../helpers/ircd.js';
import { startInspircd } from '../helpers/inspircd.js';
import { reservedPort } from '../helpers/ports.js';
import { skipWithout } from '../helpers/requirements.js';
import { RawIrcClient } from '../helpers/irc-client.js';
import type { TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { IrcAdapter } from '../../transports/irc/index.js';
import { startTransport, type RunningTransport } from '../../transports/kit/gateway.js';
import { GW, errorOf, startServer, transportConfig } from './kit-harness.js';

const MUC = 'http://jabber.org/protocol/muc';
const COMMANDS = 'http://jabber.org/protocol/commands';
const RSM = 'http://jabber.org/protocol/rsm';

interface TestIrcd {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly tlsPort: number;
  readonly certPem: string | null;
  stop(): Promise<void>;
}

for (const kind of ['ngircd', 'inspircd'] as const) {
describe(`IRC as Biboumi users expect it (Gatehouse, kit, IRC adapter, ${kind})`, { skip: skipWithout(kind) }, () => {
  let ircd: TestIrcd;
  let ts: TestServer;
  let transport: RunningTransport;
  let dir: string;
  let closedPort: number;
  const logLines: string[] = [];
  const irc: RawIrcClient[] = [];
  const room = (chan: string, host: string = ircd.host) => `${chan}%${host}@${GW}`;

  async function raw(nick: string): Promise<RawIrcClient> {
    const c = await RawIrcClient.connect({ port: ircd.port, nick });
    irc.push(c);
    return c;
  }

  async function online(name: string): Promise<TestClient> {
    const c = await ts.user(name);
    c.send(x('presence'));
    return c;
  }

  function joinPresence(c: TestClient, roomJid: string, nick: string): Promise<Element> {
    c.send(x('presence', { to: `${roomJid}/${nick}` }, x('x', { xmlns: MUC })));
    return c.expect(
      (el) => (el.name === 'message' && el.attrs.from?.startsWith(roomJid) === true && !!el.getChild('subject')) || (el.name === 'presence' && el.attrs.type === 'error' && el.attrs.from?.startsWith(roomJid) === true),
      15000,
    );
  }

  /** Runs a one-stage ad-hoc command with these values. */
  async function adhoc(c: TestClient, to: string, node: string, values: Record<string, string>): Promise<Element> {
    const first = await c.iq(x('iq', { type: 'set', to }, x('command', { xmlns: COMMANDS, node, action: 'execute' })));
    assert.equal(first.attrs.type, 'result', String(first));
    const sid = first.getChild('command', COMMANDS)!.attrs.sessionid!;
    return c.iq(
      x(
        'iq',
        { type: 'set', to },
        x(
          'command',
          { xmlns: COMMANDS, node, sessionid: sid, action: 'complete' },
          x('x', { xmlns: NS.dataForms, type: 'submit' }, Object.entries(values).map(([k, v]) => x('field', { var: k }, x('value', {}, v)))),
        ),
      ),
    );
  }

  before(async () => {
    ircd = kind === 'ngircd' ? await startNgircd({ tls: true }) : await startInspircd({ tls: true });
    closedPort = await reservedPort();
    ts = await startServer();
    dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-irc-biboumi-'));
    transport = await startTransport({
      config: transportConfig(ts, dir, { loginTimeout: '10s' }),
      adapter: new IrcAdapter({
        name: 'IRC gateway',
        ca: ircd.certPem!,
        flood: { burst: 10, intervalMs: 50 },
        commandTimeoutMs: 5000,
        joinTimeoutMs: 5000,
        // 127.0.0.1: the network's TLS port as the operator's default; localhost: a TLS port that refuses.
        serverDefaults: { '127.0.0.1': { tlsPorts: String(ircd.tlsPort) }, localhost: { tlsPorts: String(closedPort) } },
      }),
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

  test('joining a channel without registering connects with the MUC nick, over TLS with certificate checks', async () => {
    const bob = await raw('bbob');
    await bob.join('#guests');
    const dora = await online('guest-dora');
    const joined = await joinPresence(dora, room('#guests'), 'dora_g');
    assert.equal(joined.name, 'message', `joined: ${String(joined)}`);
    await bob.expect((l) => l.command === 'JOIN' && l.nick === 'dora_g');
    // The only way in was the TLS port (no plain port is allowed by default), checked against the CA.
    const connecting = logLines.filter((l) => l.includes('irc connecting') && l.includes('127.0.0.1'));
    assert.equal(connecting.length, 1, connecting.join('\n'));
    assert.match(connecting[0]!, new RegExp(`port=${ircd.tlsPort}\\b.*tls=true`));
    // Messages flow as for registered users.
    dora.send(x('message', { to: room('#guests'), type: 'groupchat', id: 'g-1' }, x('body', {}, 'hi from a guest')));
    await bob.expect((l) => l.command === 'PRIVMSG' && l.nick === 'dora_g' && l.trailing === 'hi from a guest');
    // Nothing was stored: the user has no registration.
    assert.equal(await transport.storage.transports.getRegistration('irc', 'guest-dora@localhost'), null);
    const audit = await transport.storage.transports.queryAudit({ userJid: 'guest-dora@localhost' });
    assert.deepEqual(
      audit.map((r) => r.event),
      ['connecting', 'connected'],
    );
    assert.equal(audit[1]!.account, 'dora_g');
  });

  test('no plain connection unless the per-server settings name plain ports; then TLS is tried first', async () => {
    const erin = await online('guest-erin');
    // localhost's only TLS port refuses, and no plain port is allowed: the join fails.
    const refused = await joinPresence(erin, room('#plain', 'localhost'), 'erin_g');
    assert.equal(refused.attrs.type, 'error');
    assert.equal(errorOf(refused), 'remote-server-timeout');
    assert.match(refused.getChild('error')?.getChildText('text', NS.stanzas) ?? '', /refused/);
    // The server JID's settings command, without any registration: allow the plain port.
    const done = await adhoc(erin, `localhost@${GW}`, 'settings', { nick: 'erin_g', ports: String(ircd.port) });
    assert.equal(done.attrs.type, 'result', String(done));
    assert.equal(done.getChild('command', COMMANDS)?.attrs.status, 'completed');
    const bob = await raw('bbob2');
    await bob.join('#plain');
    const joined = await joinPresence(erin, room('#plain', 'localhost'), 'erin_g');
    assert.equal(joined.name, 'message', String(joined));
    await bob.expect((l) => l.command === 'JOIN' && l.nick === 'erin_g');
    const tries = logLines.filter((l) => l.includes('localhost') && (l.includes('irc connecting') || l.includes('irc trying the next port')));
    assert.match(tries.join('\n'), new RegExp(`irc connecting.*port=${closedPort}\\b.*tls=true[^]*irc trying the next port.*port=${ircd.port}\\b.*tls=false`));
  });

  test('disco#items on the server JID lists the channels (IRC LIST), with RSM paging', async () => {
    const lister = await raw('lister');
    await lister.join('#alpha');
    lister.send('TOPIC #alpha :first letter');
    await lister.expect((l) => l.command === 'TOPIC');
    await lister.join('#beta');
    const dora = await online('guest-lister');
    const joined = await joinPresence(dora, room('#gamma'), 'lister_g');
    assert.equal(joined.name, 'message', String(joined));
    const serverJid = `${ircd.host}@${GW}`;
    const all = await dora.iq(x('iq', { type: 'get', to: serverJid }, x('query', { xmlns: NS.discoItems })));
    assert.equal(all.attrs.type, 'result', String(all));
    const items = all.getChild('query', NS.discoItems)!.getChildren('item');
    const jids = items.map((i) => i.attrs.jid);
    for (const chan of ['#alpha', '#beta', '#gamma']) assert.ok(jids.includes(room(chan)), `${chan} listed: ${jids.join(' ')}`);
    const alpha = items.find((i) => i.attrs.jid === room('#alpha'))!;
    assert.match(alpha.attrs.name ?? '', /#alpha \(1\).*first letter/);
    // XEP-0059: one item per page, then the next one after it.
    const page = (set: Element) => dora.iq(x('iq', { type: 'get', to: serverJid }, x('query', { xmlns: NS.discoItems }, set)));
    const first = await page(x('set', { xmlns: RSM }, x('max', {}, '1')));
    const q1 = first.getChild('query', NS.discoItems)!;
    assert.equal(q1.getChildren('item').length, 1);
    const set1 = q1.getChild('set', RSM)!;
    assert.equal(set1.getChildText('count'), String(items.length));
    assert.equal(set1.getChild('first')?.attrs.index, '0');
    const second = await page(x('set', { xmlns: RSM }, x('max', {}, '1'), x('after', {}, set1.getChildText('last')!)));
    const q2 = second.getChild('query', NS.discoItems)!;
    assert.equal(q2.getChildren('item')[0]?.attrs.jid, jids[1]);
    assert.equal(q2.getChild('set', RSM)?.getChild('first')?.attrs.index, '1');
    // Cached: a channel made now is not in the list until the cache expires.
    await lister.join('#delta');
    const again = await dora.iq(x('iq', { type: 'get', to: serverJid }, x('query', { xmlns: NS.discoItems })));
    assert.ok(!again.getChild('query', NS.discoItems)!.getChildren('item').some((i) => i.attrs.jid === room('#delta')), 'served from the cache');
    // Without a connection or a nickname for the server there is nothing to list with.
    const nobody = await online('guest-nobody');
    const refused = await nobody.iq(x('iq', { type: 'get', to: serverJid }, x('query', { xmlns: NS.discoItems })));
    assert.equal(refused.attrs.type, 'error');
    assert.equal(errorOf(refused), 'registration-required');
  });

  test('a message to the server JID is sent as a raw IRC command; the replies come back from the server JID', async () => {
    const target = await raw('rawtarget');
    await target.join('#rawroom');
    const fay = await online('guest-fay');
    const joined = await joinPresence(fay, room('#rawroom'), 'fay_g');
    assert.equal(joined.name, 'message', String(joined));
    const serverJid = `${ircd.host}@${GW}`;
    fay.send(x('message', { to: serverJid, type: 'chat', id: 'raw-1' }, x('body', {}, 'PRIVMSG rawtarget :sent raw')));
    await target.expect((l) => l.command === 'PRIVMSG' && l.nick === 'fay_g' && l.params[0] === 'rawtarget' && l.trailing === 'sent raw');
    fay.send(x('message', { to: serverJid, type: 'chat', id: 'raw-2' }, x('body', {}, 'WHOIS rawtarget')));
    const whois = await fay.expect((el) => el.name === 'message' && el.attrs.from === serverJid && /rawtarget/.test(el.getChildText('body') ?? '') && /~?rawtarget|127\.0\.0\.1|localhost/.test(el.getChildText('body') ?? ''));
    assert.equal(whois.attrs.type, 'chat');
    // Refused lines get an error, nothing reaches IRC.
    fay.send(x('message', { to: serverJid, type: 'chat', id: 'raw-3' }, x('body', {}, 'QUIT :bye')));
    const err = await fay.expect((el) => el.name === 'message' && el.attrs.id === 'raw-3' && el.attrs.type === 'error');
    assert.equal(errorOf(err), 'not-acceptable');
    // The setting turns it off.
    const settings = await adhoc(fay, GW, 'settings', { rawCommands: '0' });
    assert.equal(settings.attrs.type, 'result', String(settings));
    fay.send(x('message', { to: serverJid, type: 'chat', id: 'raw-4' }, x('body', {}, 'PRIVMSG rawtarget :must not arrive')));
    const off = await fay.expect((el) => el.name === 'message' && el.attrs.id === 'raw-4' && el.attrs.type === 'error');
    assert.equal(errorOf(off), 'feature-not-implemented');
    assert.ok(await target.expectNothing((l) => l.trailing === 'must not arrive', 500));
  });

  test('per-server settings by ad-hoc command: after-connect commands run at each login and are never shown again', async () => {
    const watcher = await raw('acwatch');
    const gina = await online('guest-gina');
    const serverJid = `${ircd.host}@${GW}`;
    const cmds = 'PRIVMSG acwatch :after-connect one\nPRIVMSG acwatch :after-connect two';
    const done = await adhoc(gina, serverJid, 'settings', { nick: 'gina_g', afterConnect: cmds });
    assert.equal(done.attrs.type, 'result', String(done));
    // The settings were tried before they were stored: that login ran them.
    await watcher.expect((l) => l.command === 'PRIVMSG' && l.nick === 'gina_g' && l.trailing === 'after-connect one');
    await watcher.expect((l) => l.command === 'PRIVMSG' && l.nick === 'gina_g' && l.trailing === 'after-connect two');
    const form = await gina.iq(x('iq', { type: 'set', to: serverJid }, x('command', { xmlns: COMMANDS, node: 'settings', action: 'execute' })));
    const field = form.getChild('command', COMMANDS)!.getChild('x', NS.dataForms)!.getChildren('field').find((f) => f.attrs.var === 'afterConnect');
    assert.equal(field?.attrs.type, 'text-multi');
    assert.deepEqual(field?.getChildren('value') ?? [], [], 'not shown again');
    // A refused command is refused before anything is stored.
    const bad = await adhoc(gina, serverJid, 'settings', { nick: 'gina_g', afterConnect: 'QUIT :bye' });
    assert.equal(bad.attrs.type, 'error');
    assert.match(bad.getChild('error')?.getChildText('text', NS.stanzas) ?? '', /QUIT cannot be sent/);
  });
});
}
