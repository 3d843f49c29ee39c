/**
 * Staying connected (bouncer mode) end to end: Gatehouse with its offline storage, the kit, the
 * IRC adapter and a real ngIRCd. A user who chose "stay connected" for a server goes offline: the
 * IRC connection and channels stay, a private message lands in the user's offline storage (P5:
 * through normal delivery to the bare JID), channel lines wait in memory and arrive as MUC history
 * with delay stamps at the next join, a line naming the nick also comes as a private message.
 * After a restart of the transport, the connection is made again by itself (autojoin channels),
 * and what was kept before the restart is gone, as the policy says.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { Logger } from '../../shared/logger.js';
import { startNgircd, type Ircd } from '../helpers/ircd.js';
import { skipWithout } from '../helpers/requirements.js';
import { RawIrcClient } from '../helpers/irc-client.js';
import type { TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { IrcAdapter } from '../../transports/irc/index.js';
import { mentions } from '../../transports/kit/rooms.js';
import { startTransport, type RunningTransport } from '../../transports/kit/gateway.js';
import type { TransportConfig } from '../../transports/kit/config.js';
import { GW, delay, startServer, transportConfig } from './kit-harness.js';
import { storageTargets } from '../../storage/test-databases.js';

const MUC = 'http://jabber.org/protocol/muc';
const DELAY = 'urn:xmpp:delay';

describe('highlights', () => {
  test('a line names the nick as a word of its own, in any case', () => {
    assert.ok(mentions('hey alice, look', 'alice'));
    assert.ok(mentions('ALICE: ping', 'alice'));
    assert.ok(mentions('[m] is here', '[m]'));
    assert.ok(!mentions('malice aforethought', 'alice'));
    assert.ok(!mentions('alice_ is someone else', 'alice'));
  });
});

describe('bouncer limits in the transport configuration', () => {
  test('P22 they can be lowered, never raised past what the policy states', () => {
    const ts = { componentPort: 5347 } as TestServer;
    assert.equal(transportConfig(ts, tmpdir(), {}).bouncer.maxLines, 200);
    assert.throws(() => transportConfig(ts, tmpdir(), { bouncer: { maxLines: 1001 } }), /bouncer\.maxLines/);
    assert.throws(() => transportConfig(ts, tmpdir(), { bouncer: { maxAge: '25h' } }), /bouncer\.maxAge/);
  });
});

for (const target of storageTargets()) {
describe(`IRC: staying connected while the XMPP user is offline (bouncer mode; transport storage on ${target.name})`, { skip: skipWithout('ngircd') }, () => {
  let ircd: Ircd;
  let ts: TestServer;
  let transport: RunningTransport;
  let config: TransportConfig;
  let dir: string;
  let dropStorage: () => Promise<void> = async () => undefined;
  const logLines: string[] = [];
  const irc: RawIrcClient[] = [];
  const chan = () => `#bnc%${ircd.host}@${GW}`;
  const serverJid = () => `${ircd.host}@${GW}`;

  const start = async () => {
    transport = await startTransport({
      config,
      adapter: new IrcAdapter({ name: 'IRC gateway', flood: { burst: 20, intervalMs: 50 }, commandTimeoutMs: 5000, joinTimeoutMs: 5000 }),
      log: new Logger({ level: 'debug', format: 'text', sink: (l) => logLines.push(l) }, 'transport-irc'),
      env: {},
    });
  };

  /** The user's next login (the account exists after the first). */
  let registered = false;
  async function login(): Promise<TestClient> {
    if (!registered) {
      registered = true;
      return ts.user('bnc-alice', 'secret-bouncer');
    }
    const c = await ts.client();
    await c.login('bnc-alice', 'secret-bouncer');
    return c;
  }

  async function online(): Promise<TestClient> {
    const c = await login();
    c.send(x('presence'));
    return c;
  }

  function join(c: TestClient, nick: string, history?: Element): Promise<Element> {
    c.send(x('presence', { to: `${chan()}/${nick}` }, x('x', { xmlns: MUC }, history ?? null)));
    return c.expect((el) => el.name === 'message' && el.attrs.from?.startsWith(chan()) === true && !!el.getChild('subject'), 15000);
  }

  before(async () => {
    ircd = await startNgircd();
    ts = await startServer();
    dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-irc-bouncer-'));
    const made = await target.make();
    dropStorage = made.drop;
    config = transportConfig(ts, dir, { bouncer: { maxLines: 50, maxAge: '1h' } }, made.config.type === 'sqlite' ? undefined : made.config);
    await start();
  });

  after(async () => {
    for (const c of irc) c.destroy();
    await transport?.stop().catch(() => undefined);
    await ts?.stop();
    await ircd?.stop();
    await dropStorage();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('P5 a PM lands in offline storage, channel lines come as history on rejoin, a highlight as a private message', async () => {
    const bob = await RawIrcClient.connect({ port: ircd.port, nick: 'bncbob' });
    irc.push(bob);
    await bob.join('#bnc');
    let alice = await online();
    const reg = await alice.iq(
      x(
        'iq',
        { type: 'set', to: serverJid() },
        x(
          'query',
          { xmlns: NS.register },
          x(
            'x',
            { xmlns: NS.dataForms, type: 'submit' },
            Object.entries({ nick: 'bncalice', port: String(ircd.port), tls: '0', stayConnected: '1', autojoin: '#bnc' }).map(([k, v]) => x('field', { var: k }, x('value', {}, v))),
          ),
        ),
      ),
    );
    assert.equal(reg.attrs.type, 'result', String(reg));
    // The gateway asks for the user's presence (XEP-0100); a user who refused would be unregistered at the next start.
    alice.send(x('presence', { to: GW, type: 'subscribed' }));
    await join(alice, 'bncalice');
    // Alice's XMPP client goes away: the grace period (400 ms here) passes, the IRC side stays.
    await alice.close();
    await delay(1200);
    assert.ok(await bob.expectNothing((l) => (l.command === 'QUIT' || l.command === 'PART') && l.nick === 'bncalice', 300), 'alice stays on IRC');
    bob.privmsg('bncalice', 'psst, while you were away');
    bob.privmsg('#bnc', 'first line');
    bob.privmsg('#bnc', 'bncalice: are you there?');
    bob.privmsg('#bnc', 'third line');
    await delay(500);

    // Back online: the server delivers what it stored while she was offline (XEP-0160 with delay).
    alice = await online();
    const pm = await alice.expect((el) => el.name === 'message' && el.getChildText('body') === 'psst, while you were away');
    assert.equal(pm.attrs.from?.split('/')[0], `bncbob%${ircd.host}@${GW}`);
    assert.ok(pm.getChild('delay', DELAY), 'stored offline, delivered with a delay stamp');
    const highlight = await alice.expect((el) => el.name === 'message' && /are you there\?/.test(el.getChildText('body') ?? '') && el.attrs.type === 'chat');
    assert.equal(highlight.attrs.from, chan());
    assert.match(highlight.getChildText('body') ?? '', /^bncbob in #bnc: /);

    // Joining again: no new IRC join, the kept lines as history (delay stamps), then the subject.
    bob.clear();
    const seen: Element[] = [];
    const subject = await (async () => {
      alice.send(x('presence', { to: `${chan()}/bncalice` }, x('x', { xmlns: MUC })));
      for (;;) {
        const el = await alice.expect((e) => e.name === 'message' && e.attrs.from?.startsWith(chan()) === true && e.attrs.type === 'groupchat', 15000);
        if (el.getChild('subject')) return el;
        seen.push(el);
      }
    })();
    assert.ok(subject);
    assert.deepEqual(
      seen.map((m) => m.getChildText('body')),
      ['first line', 'bncalice: are you there?', 'third line'],
    );
    for (const m of seen) {
      assert.equal(m.attrs.from, `${chan()}/bncbob`);
      assert.ok(m.getChild('delay', DELAY)?.attrs.stamp, 'history carries its time');
    }
    assert.ok(await bob.expectNothing((l) => l.command === 'JOIN' && l.nick === 'bncalice', 300), 'no second IRC join');
    // Live again: messages flow at once.
    bob.privmsg('#bnc', 'welcome back');
    const live = await alice.expect((el) => el.name === 'message' && el.getChildText('body') === 'welcome back');
    assert.equal(live.getChild('delay', DELAY), undefined);
    await alice.close();
    await delay(1000);
  });

  test('after a restart the transport connects again by itself (autojoin); lines kept before the restart are gone', async () => {
    const bob = irc[0]!;
    bob.privmsg('#bnc', 'said before the restart');
    await delay(300);
    bob.clear();
    await transport.stop();
    await bob.expect((l) => l.command === 'QUIT' && l.nick === 'bncalice');
    await start();
    // Nobody is online: the transport logs in to keep its promise and joins the autojoin channel.
    await bob.expect((l) => l.command === 'JOIN' && l.nick === 'bncalice', 15000);
    bob.privmsg('#bnc', 'said after the restart');
    await delay(300);
    const alice = await online();
    const seen: string[] = [];
    alice.send(x('presence', { to: `${chan()}/bncalice` }, x('x', { xmlns: MUC })));
    for (;;) {
      const el = await alice.expect((e) => e.name === 'message' && e.attrs.from?.startsWith(chan()) === true && e.attrs.type === 'groupchat', 15000);
      if (el.getChild('subject')) break;
      seen.push(el.getChildText('body') ?? '');
    }
    assert.deepEqual(seen, ['said after the restart']);
    await alice.close();
  });

  test('maxstanzas=0 in the join asks for no history', async () => {
    const bob = irc[0]!;
    await delay(1000);
    bob.privmsg('#bnc', 'not wanted as history');
    await delay(300);
    const alice = await online();
    const got: string[] = [];
    alice.send(x('presence', { to: `${chan()}/bncalice` }, x('x', { xmlns: MUC }, x('history', { maxstanzas: '0' }))));
    for (;;) {
      const el = await alice.expect((e) => e.name === 'message' && e.attrs.from?.startsWith(chan()) === true && e.attrs.type === 'groupchat', 15000);
      if (el.getChild('subject')) break;
      got.push(el.getChildText('body') ?? '');
    }
    assert.deepEqual(got, []);
    await alice.close();
  });
});
}
