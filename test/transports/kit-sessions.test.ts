/**
 * Presence-driven foreign sessions: login on the first available presence, logout after the grace
 * period, failures as presence errors, reconnects with backoff, start and shutdown announcements,
 * and the connection audit log (P10) for each event.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { ManualClock } from '../../shared/clock.js';
import { GW, bareOf, errorOf, freePort, onlineUser, startKit, startServer, until, type Kit } from './kit-harness.js';

let kit: Kit;

before(async () => {
  kit = await startKit();
});

after(async () => {
  await kit.stop();
});

const events = async (k: Kit, user: string) => (await k.audit(user)).map((r) => r.event);

/** Waits for the next timer to be set, and moves the clock to it. */
async function passTimer(clock: ManualClock, what: string): Promise<void> {
  await until(() => clock.pending().length > 0, what);
  clock.advance(clock.pending()[0]!);
}

/** A kit of the test's own whose transport timers run on a clock the test moves. */
async function withManualKit(body: (kit: Kit, clock: ManualClock) => Promise<void>): Promise<void> {
  const clock = new ManualClock();
  const own = await startKit({ clock });
  try {
    await body(own, clock);
  } finally {
    await own.stop();
  }
}

describe('transport kit: presence-driven sessions', () => {
  test('P10 the first available presence logs in; the last unavailable logs out after the grace period', async () => {
    // The transport's timers run on a clock the test moves: no window a busy machine can miss.
    const clock = new ManualClock();
    const own = await startKit({ clock });
    try {
      const alice = await onlineUser(own, 'sess-alice', 'alice-irc', 'pw-alice');
      const user = bareOf(alice);
      await until(() => own.net.sessionOf(user) !== undefined, 'a live session');
      const s1 = own.net.sessionOf(user)!;
      // Registration's test login became the live session: one login only.
      assert.equal(own.net.logins.filter((l) => l.userJid === user).length, 1);
      const rows = await own.audit(user);
      assert.deepEqual(rows.map((r) => r.event), ['connecting', 'connected']);
      assert.equal(rows[0]!.account, 'alice-irc');
      assert.equal(rows[0]!.server, 'irc.one');
      assert.equal(rows[0]!.network, 'fake');
      const grace = own.config.gracePeriod;

      // A second resource; the first goes away: the session stays.
      const alice2 = await own.ts.client();
      await alice2.login('sess-alice', 'secret-sess-alice', { resource: 'phone' });
      alice2.send(x('presence'));
      // Seen by alice, so the server sent it to the gateway before alice's unavailable.
      await alice.expect((el) => el.name === 'presence' && el.attrs.from === alice2.jid);
      alice.send(x('presence', { type: 'unavailable' }));
      // A marker through the same per-user presence queue: once the network sees it, the
      // unavailable before it has been handled.
      alice2.send(x('presence', {}, x('show', {}, 'xa'), x('status', {}, 'marker')));
      await until(() => s1.ownPresence?.status === 'marker', 'the marker presence on the network');
      assert.deepEqual(clock.pending(), [], 'no logout scheduled while another resource is online');
      clock.advance(10 * grace);
      assert.equal(s1.closed, false, 'another resource is still online');
      // The last one goes: logged out once the grace period is over, not before.
      alice2.send(x('presence', { type: 'unavailable' }));
      await until(() => clock.pending().length === 1, 'the grace timer');
      assert.deepEqual(clock.pending(), [grace]);
      clock.advance(grace - 1);
      assert.equal(s1.closed, false, 'still within the grace period');
      clock.advance(1);
      await until(() => s1.closed, 'logout after the grace period');
      assert.equal(s1.loggedOutWith, 'the user went offline');
      await until(async () => (await own.audit(user)).at(-1)!.event === 'disconnected', 'the disconnected row');
      assert.equal((await own.audit(user)).at(-1)!.reason, 'the user went offline');

      // Back within the grace period: the session survives without a new login.
      alice2.send(x('presence'));
      await until(() => own.net.sessionOf(user) !== undefined, 'logged in again');
      const s2 = own.net.sessionOf(user)!;
      const logins = own.net.logins.filter((l) => l.userJid === user).length;
      alice2.send(x('presence', { type: 'unavailable' }));
      await until(() => clock.pending().length === 1, 'the grace timer');
      alice2.send(x('presence'));
      await until(() => clock.pending().length === 0, 'the grace timer cancelled');
      clock.advance(10 * grace);
      assert.equal(s2.closed, false);
      assert.equal(own.net.logins.filter((l) => l.userJid === user).length, logins);
      // The user's show goes to the network (setPresence).
      alice2.send(x('presence', {}, x('show', {}, 'away'), x('status', {}, 'lunch')));
      await until(() => s2.ownPresence?.show === 'away', 'away on the network');
      assert.equal(s2.ownPresence?.status, 'lunch');
      await alice.close();
      await alice2.close();
    } finally {
      await own.stop();
    }
  });

  test('P10 a refused login is a not-authorized presence error and an auth-failed row; no retry until a new resource', () =>
    withManualKit(async (kit, clock) => {
      const bob = await onlineUser(kit, 'sess-bob', 'bob-irc', 'pw-bob');
      const user = bareOf(bob);
      await until(() => kit.net.sessionOf(user) !== undefined, 'a live session');
      const first = kit.net.sessionOf(user)!;
      bob.send(x('presence', { type: 'unavailable' }));
      await passTimer(clock, 'the grace timer');
      await until(() => first.closed, 'logged out');
      // The password changes on the network.
      kit.net.accounts.set('bob-irc', 'changed-elsewhere');
      bob.send(x('presence'));
      const err = await bob.expect((el) => el.name === 'presence' && el.attrs.type === 'error' && el.attrs.from === GW);
      assert.equal(errorOf(err), 'not-authorized');
      assert.ok(!String(err).includes('pw-bob'), 'no credential in the error');
      await until(async () => (await events(kit, user)).at(-1) === 'auth-failed', 'auth-failed row');
      const row = (await kit.audit(user)).at(-1)!;
      assert.ok(row.reason && !row.reason.includes('pw-bob'), `reason without the password: ${row.reason}`);
      const attempts = kit.net.logins.filter((l) => l.userJid === user).length;
      // The presence error was sent where a retry would have been scheduled: none is.
      assert.deepEqual(clock.pending(), []);
      assert.equal(kit.net.logins.filter((l) => l.userJid === user).length, attempts, 'no retry of a refused login');
      // Fixed on the network, and a new resource comes online: tried again.
      kit.net.accounts.set('bob-irc', 'pw-bob');
      const bob2 = await kit.ts.client();
      await bob2.login('sess-bob', 'secret-sess-bob', { resource: 'second' });
      bob2.send(x('presence'));
      await until(() => kit.net.sessionOf(user) !== undefined, 'logged in with the new resource');
      await bob.close();
      await bob2.close();
    }));

  test('P10 an unreachable network: one remote-server-timeout error, then retries with backoff until it works', async () => {
    const carol = await onlineUser(kit, 'sess-carol', 'carol-irc', 'pw-carol');
    const user = bareOf(carol);
    await until(() => kit.net.sessionOf(user) !== undefined, 'a live session');
    const first = kit.net.sessionOf(user)!;
    carol.send(x('presence', { type: 'unavailable' }));
    await until(() => first.closed, 'logged out');
    const mark = (await kit.audit(user)).length;
    kit.net.failNextLogins.push('network', 'network', 'network');
    carol.send(x('presence'));
    const err = await carol.expect((el) => el.name === 'presence' && el.attrs.type === 'error' && el.attrs.from === GW);
    assert.equal(errorOf(err), 'remote-server-timeout');
    await until(() => kit.net.sessionOf(user) !== undefined, 'logged in after the retries', 5000);
    const rows = (await kit.audit(user)).slice(mark);
    assert.deepEqual(
      rows.map((r) => r.event),
      ['connecting', 'error', 'connecting', 'error', 'connecting', 'error', 'connecting', 'connected'],
    );
    // Exponential backoff: each wait at least half the doubled base (50, 100, 200 ms with jitter).
    const gaps = [2, 4, 6].map((i) => rows[i]!.at.getTime() - rows[i - 1]!.at.getTime());
    assert.ok(gaps[0]! >= 20 && gaps[1]! >= 45 && gaps[2]! >= 95, `backoff gaps ${gaps.join(', ')}`);
    assert.equal(carol.received.filter((el) => el.name === 'presence' && el.attrs.type === 'error').length, 0, 'one error per failure streak');
    await carol.close();
  });

  test('P10 a dropped connection is logged and reconnected; a final drop is auth-failed with a presence error', () =>
    withManualKit(async (kit, clock) => {
      const dave = await onlineUser(kit, 'sess-dave', 'dave-irc', 'pw-dave');
      const user = bareOf(dave);
      await until(() => kit.net.sessionOf(user) !== undefined, 'a live session');
      const first = kit.net.sessionOf(user)!;
      kit.net.drop(user, 'Ping timeout: 240 seconds');
      await passTimer(clock, 'the reconnect timer');
      await until(() => kit.net.sessionOf(user) !== undefined && kit.net.sessionOf(user) !== first, 'reconnected');
      const rows = await kit.audit(user);
      const i = rows.findIndex((r) => r.event === 'disconnected' && r.reason === 'Ping timeout: 240 seconds');
      assert.ok(i >= 0, JSON.stringify(rows));
      assert.deepEqual(rows.slice(i).map((r) => r.event), ['disconnected', 'connecting', 'connected']);
      // A final drop (banned): not retried, the user is told.
      kit.net.drop(user, 'K-Lined', true);
      const err = await dave.expect((el) => el.name === 'presence' && el.attrs.type === 'error' && el.attrs.from === GW);
      assert.equal(errorOf(err), 'not-authorized');
      await until(async () => (await events(kit, user)).at(-1) === 'auth-failed', 'auth-failed row');
      const n = kit.net.logins.filter((l) => l.userJid === user).length;
      assert.deepEqual(clock.pending(), [], 'no retry scheduled');
      assert.equal(kit.net.logins.filter((l) => l.userJid === user).length, n);
      await dave.close();
    }));

  test('a login that hangs times out as remote-server-timeout', async () => {
    const erin = await onlineUser(kit, 'sess-erin', 'erin-irc', 'pw-erin');
    const user = bareOf(erin);
    await until(() => kit.net.sessionOf(user) !== undefined, 'a live session');
    const first = kit.net.sessionOf(user)!;
    erin.send(x('presence', { type: 'unavailable' }));
    await until(() => first.closed, 'logged out');
    kit.net.failNextLogins.push('hang');
    erin.send(x('presence'));
    const err = await erin.expect((el) => el.name === 'presence' && el.attrs.type === 'error' && el.attrs.from === GW, 5000);
    assert.equal(errorOf(err), 'remote-server-timeout');
    await until(() => kit.net.sessionOf(user) !== undefined, 'the retry logs in', 5000);
    await erin.close();
  });

  test('P10 at shutdown users see the gateway go away; at start it says it is back, probes, and logs online users in again', async () => {
    const gina = await onlineUser(kit, 'sess-gina', 'gina-irc', 'pw-gina');
    const user = bareOf(gina);
    await until(() => kit.net.sessionOf(user) !== undefined, 'a live session');
    const first = kit.net.sessionOf(user)!;
    await kit.stopTransport();
    const bye = await gina.expect((el) => el.name === 'presence' && el.attrs.from === GW && el.attrs.type === 'unavailable');
    assert.match(bye.getChildText('status') ?? '', /going away/);
    assert.equal(first.closed, true);
    const rows = await kit.audit(user);
    assert.equal(rows.at(-1)!.event, 'disconnected');
    assert.equal(rows.at(-1)!.reason, 'the transport is shutting down');

    await kit.restartTransport();
    await gina.expect((el) => el.name === 'presence' && el.attrs.from === GW && el.attrs.type === undefined, 8000);
    // The probe is answered by gina's server with her presence: she is logged in again.
    await until(() => kit.net.sessionOf(user) !== undefined, 'logged in again after the restart', 8000);
    const info = await gina.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoInfo })));
    assert.equal(info.attrs.type, 'result');
    await gina.close();
  });

  test('when the XMPP server goes away and comes back, the component reconnects and probes its users again', async () => {
    const port = await freePort();
    const first = await startServer(port);
    const own = await startKit({ server: first });
    try {
      const lena = await onlineUser(own, 'sess-lena', 'lena-irc', 'pw-l');
      const user = bareOf(lena);
      await until(() => own.net.sessionOf(user) !== undefined, 'a live session');
      const s = own.net.sessionOf(user)!;
      await first.stop();
      await until(() => !own.transport.link.online, 'the link noticed');
      // Nobody is known to be online any more: the session ends after the grace period.
      await until(() => s.closed, 'logged out while the server is gone', 5000);
      const second = await startServer(port);
      try {
        await until(() => own.transport.link.online, 'reconnected to the new server', 10000);
        const mia = await second.user('sess-mia');
        const info = await mia.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoInfo })));
        assert.equal(info.attrs.type, 'result');
        await mia.close();
      } finally {
        await own.stopTransport();
        await second.stop();
      }
    } finally {
      await own.stop();
    }
  });

  test('P10 audit rows name the user, network, account and server, and never a credential', async () => {
    const all = await kit.audit();
    assert.ok(all.length > 10);
    for (const r of all) {
      assert.equal(r.network, 'fake');
      assert.ok(['connecting', 'connected', 'disconnected', 'auth-failed', 'error'].includes(r.event));
      assert.ok(r.userJid.endsWith('@localhost'));
      const text = JSON.stringify(r);
      for (const pw of ['pw-alice', 'pw-bob', 'pw-carol', 'pw-dave', 'pw-erin', 'pw-gina', 'changed-elsewhere']) assert.equal(text.includes(pw), false, text);
    }
    for (const pw of ['pw-alice', 'pw-bob', 'pw-carol', 'pw-dave', 'pw-erin', 'pw-gina', 'changed-elsewhere']) {
      assert.equal(kit.logLines.some((l) => l.includes(pw)), false, `log line with ${pw}`);
    }
  });
});
