/**
 * The whole chain with the real IRC adapter: a TestClient on Gatehouse, the kit over XEP-0114, the
 * IRC adapter (transports/irc) and ngIRCd from Debian, with a raw IRC client on the other side.
 * Per-server registration at the server JID, a channel as a room both ways, private messages both
 * ways, and the audit rows. Skipped when ngIRCd is not installed.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { Logger } from '../../shared/logger.js';
import { startNgircd, type Ircd } from '../helpers/ircd.js';
import { skipWithout } from '../helpers/requirements.js';
import { RawIrcClient } from '../helpers/irc-client.js';
import type { TestServer } from '../helpers/server.js';
import { IrcAdapter } from '../../transports/irc/index.js';
import { startTransport, type RunningTransport } from '../../transports/kit/gateway.js';
import { GW, errorOf, startServer, transportConfig } from './kit-harness.js';

const MUC = 'http://jabber.org/protocol/muc';

describe('transport kit with the IRC adapter and ngIRCd', { skip: skipWithout('ngircd') }, () => {
  let ircd: Ircd;
  let ts: TestServer;
  let transport: RunningTransport;
  let dir: string;
  const logLines: string[] = [];

  before(async () => {
    ircd = await startNgircd();
    ts = await startServer();
    dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-kit-irc-'));
    const config = transportConfig(ts, dir);
    transport = await startTransport({
      config,
      adapter: new IrcAdapter({ name: 'IRC gateway' }),
      log: new Logger({ level: 'debug', format: 'text', sink: (l) => logLines.push(l) }, 'transport-irc'),
      env: {},
    });
  });

  after(async () => {
    await transport?.stop().catch(() => undefined);
    await ts?.stop();
    await ircd?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('register on an IRC server, a channel both ways, private messages both ways', async () => {
    const alice = await ts.user('irc-alice');
    await alice.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
    alice.send(x('presence'));
    const serverJid = `${ircd.host}@${GW}`;
    // IRC accounts are per server: the gateway's own form says where to register.
    const gwForm = await alice.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.register })));
    assert.match(gwForm.getChild('query', NS.register)!.getChildText('instructions') ?? '', /per server/);
    const submit = (fields: Record<string, string>) =>
      alice.iq(
        x(
          'iq',
          { type: 'set', to: serverJid },
          x('query', { xmlns: NS.register }, x('x', { xmlns: NS.dataForms, type: 'submit' }, Object.entries(fields).map(([k, v]) => x('field', { var: k }, x('value', {}, v))))),
        ),
      );
    // The default port (6697, TLS) is not open: tried, refused, nothing stored.
    const refused = await submit({ nick: 'alicex' });
    assert.equal(errorOf(refused), 'remote-server-timeout');
    assert.equal(await transport.storage.transports.getRegistration('irc', 'irc-alice@localhost'), null);
    const ok = await submit({ nick: 'alicex', port: String(ircd.port), tls: '0' });
    assert.equal(ok.attrs.type, 'result', String(ok));

    const bob = await RawIrcClient.connect({ port: ircd.port, nick: 'bob' });
    try {
      await bob.join('#gatehouse');
      const room = `#gatehouse%${ircd.host}@${GW}`;
      alice.send(x('presence', { to: `${room}/alicex` }, x('x', { xmlns: MUC })));
      await alice.expect((el) => el.name === 'message' && el.attrs.from?.startsWith(room) === true && !!el.getChild('subject'), 15000);
      const bobPresence = alice.received.find((el) => el.name === 'presence' && el.attrs.from === `${room}/bob`);
      assert.ok(bobPresence, 'bob is an occupant');
      alice.send(x('message', { to: room, type: 'groupchat', id: 'irc-1' }, x('body', {}, 'hello IRC')));
      const echo = await alice.expect((el) => el.name === 'message' && el.attrs.id === 'irc-1');
      assert.equal(echo.attrs.from, `${room}/alicex`);
      await bob.expect((l) => l.command === 'PRIVMSG' && l.raw.includes(' #gatehouse ') && l.trailing === 'hello IRC');
      bob.privmsg('#gatehouse', 'hello XMPP');
      const inbound = await alice.expect((el) => el.name === 'message' && el.getChildText('body') === 'hello XMPP');
      assert.equal(inbound.attrs.from, `${room}/bob`);
      alice.send(x('message', { to: `bob%${ircd.host}@${GW}`, type: 'chat' }, x('body', {}, 'just you')));
      await bob.expect((l) => l.command === 'PRIVMSG' && l.raw.includes(' bob ') && l.trailing === 'just you');
      bob.privmsg('alicex', 'just you too');
      const pm = await alice.expect((el) => el.name === 'message' && el.getChildText('body') === 'just you too');
      assert.equal(pm.attrs.from, `bob%${ircd.host}@${GW}`);
    } finally {
      await bob.quit();
    }
    const rows = await transport.storage.transports.queryAudit({ userJid: 'irc-alice@localhost' });
    assert.deepEqual(rows.map((r) => r.event).slice(0, 4), ['connecting', 'error', 'connecting', 'connected']);
    assert.ok(rows.every((r) => r.network === 'irc' && r.server === ircd.host && r.account === 'alicex'));
    await alice.close();
  });
});
