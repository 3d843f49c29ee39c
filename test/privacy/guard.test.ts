/**
 * The failed-login guard (P7): failures recorded with time, IP, account and mechanism; a growing
 * delay the client can measure; a temporary block answered with temporary-auth-failure (and
 * policy-violation for registration); `gatehouse blocks list|lift`; trusted proxies; IPv6 per /64.
 * The guard waits on the server clock: the delay tests move a ManualClock through each wait.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { allModules } from '../../server/modules/index.js';
import type { GatehouseModule } from '../../server/core/context.js';
import type { AuthAttempt } from '../../server/streams/c2s.js';
import { makeVerifier } from '../../server/auth/scram.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import {
  createFailedLoginGuardModule,
  ipSubject,
  loginGuard,
  loginGuardOptions,
  DEFAULT_LOGIN_GUARD,
  AUTH_IDENTIFIED,
  type LoginGuardOptions,
} from '../../server/modules/login-guard/failed-login-guard.js';
import { blockTarget } from '../../server/modules/login-guard/cli-blocks.js';
import { parseConfig } from '../../server/config/index.js';
import { ManualClock } from '../../shared/clock.js';
import { runCli } from '../helpers/server-process.js';


// ---- support ----

function modules(...mine: GatehouseModule[]): GatehouseModule[] {
  return [...allModules().filter((m) => !mine.some((o) => o.name === m.name)), ...mine];
}

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function createAccount(ts: TestServer, name: string): Promise<void> {
  await ts.server.ctx.storage.accounts.create(name, 'localhost', [makeVerifier('pw-' + name, 'SHA-256', 4096)], new Date());
}

/** One SASL attempt on a fresh stream (the server closes a stream after 5 failures). */
async function attempt(ts: TestServer, user: string, password: string, localAddress?: string): Promise<{ outcome: string; text: string; client: TestClient }> {
  const client = await ts.client(localAddress ? { localAddress } : {});
  const el = await client.authenticate(user, password);
  const outcome = el.name === 'success' ? 'success' : (el.elements.find((c) => c.name !== 'text')?.name ?? 'unknown');
  return { outcome, text: el.getChildText('text') ?? '', client };
}

const gatehouse = runCli;

async function cliConfigFor(ts: TestServer): Promise<string> {
  const file = path.join(ts.dir, 'cli.yaml');
  await writeFile(file, stringify({ dataDir: ts.dir, hosts: [{ domain: 'localhost' }], storage: { type: 'sqlite', path: ts.config.storage.path }, log: { level: 'warn' } }));
  return file;
}

async function start(guard: Partial<LoginGuardOptions>, extra: { clock?: ManualClock; config?: Record<string, unknown> } = {}): Promise<TestServer> {
  return startTestServer({ logLevel: 'info', modules: modules(createFailedLoginGuardModule({ poll: 0, trustedProxies: [], ...guard })), clock: extra.clock, config: extra.config });
}

// ---- units ----

describe('addresses and options', () => {
  test('P7 IPv6 addresses are counted per /64, IPv4 (also IPv4-mapped) per address', () => {
    assert.equal(ipSubject('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(ipSubject('2001:0DB8:0001:0002:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
    assert.equal(ipSubject('[2001:db8:1:2::7]'), '2001:db8:1:2::/64');
    assert.equal(ipSubject('fe80::1%eth0'), 'fe80::/64');
    assert.notEqual(ipSubject('2001:db8:1:3::1'), ipSubject('2001:db8:1:2::1'));
    assert.equal(ipSubject('2001:db8:0:0:1::1'), '2001:db8::/64');
    assert.equal(ipSubject('::1'), '::/64');
    assert.equal(ipSubject('192.0.2.7'), '192.0.2.7');
    assert.equal(ipSubject('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(ipSubject('not an ip'), 'not an ip');
    assert.deepEqual(blockTarget('2001:db8:1:2:aaaa::1'), { kind: 'ip', subject: '2001:db8:1:2::/64' });
    assert.deepEqual(blockTarget('2001:db8:1:2::/64'), { kind: 'ip', subject: '2001:db8:1:2::/64' });
    assert.deepEqual(blockTarget('Alice@LocalHost'), { kind: 'account', subject: 'alice@localhost' });
  });

  test('P7 thresholds come from defaults, then configuration, then explicit overrides', () => {
    const config = parseConfig({}, tmpdir());
    assert.deepEqual(loginGuardOptions(config), { ...DEFAULT_LOGIN_GUARD, trustedProxies: [] });
    const withSection = parseConfig({ loginGuard: { blockAfter: 5, trustedProxies: ['10.0.0.0/8'] } }, tmpdir());
    const o = loginGuardOptions(withSection, { delayBase: 10 });
    assert.equal(o.blockAfter, 5);
    assert.deepEqual(o.trustedProxies, ['10.0.0.0/8']);
    assert.equal(o.delayBase, 10);
    assert.equal(o.window, DEFAULT_LOGIN_GUARD.window);
  });
});

// ---- over real streams ----

describe('failed-login guard over client streams', () => {
  test('P7 failed logins and registrations are recorded with time, IP, attempted account and mechanism, never a password', async () => {
    const ts = await start({ delayAfter: 100, blockAfter: 100 });
    try {
      await createAccount(ts, 'alice');
      const a = await attempt(ts, 'Alice', 'wrong-Pa55word-xyz');
      assert.equal(a.outcome, 'not-authorized');
      const reg = await (await ts.client()).register('alice', 'another-Pa55word-xyz');
      assert.equal(errorCondition(reg), 'conflict');
      const logs = ts.server.ctx.storage.privacyLogs;
      await waitFor('two records', async () => (await logs.listFailedLogins()).length === 2);
      const [register, auth] = await logs.listFailedLogins();
      assert.equal(auth!.ip, '127.0.0.1');
      assert.equal(auth!.host, 'localhost');
      assert.equal(auth!.username, 'alice', 'the attempted account, normalised');
      assert.equal(auth!.mechanism, 'SCRAM-SHA-256');
      assert.equal(auth!.kind, 'auth');
      assert.equal(auth!.condition, 'not-authorized');
      assert.ok(Math.abs(auth!.at.getTime() - Date.now()) < 60_000);
      assert.equal(register!.kind, 'register');
      assert.equal(register!.mechanism, 'XEP-0077');
      assert.equal(register!.condition, 'conflict');
      assert.equal(register!.username, 'alice');
      const everything = JSON.stringify(await logs.listFailedLogins()) + ts.logLines.join('\n');
      assert.ok(!everything.includes('Pa55word'), 'no password in records or logs');
    } finally {
      await ts.stop();
    }
  });

  test('P7 after a few failures the answer to each further attempt comes later, growing', async () => {
    // The guard waits on the server clock: the test sees each wait and moves the clock through it.
    const clock = new ManualClock();
    const ts = await start({ delayAfter: 2, delayBase: 60, delayMax: 1000, blockAfter: 100 }, { clock });
    try {
      await createAccount(ts, 'bob');
      const guard = loginGuard(ts.server.ctx)!;
      // No wait for the first two; then 60, 120, 240 ms; the right password after 5 failures: 480 ms.
      // Each twice: the address's wait before the attempt, the account's once the username is known.
      const expected = [0, 0, 60, 120, 240, 480];
      for (let i = 0; i < expected.length; i++) {
        const password = i < 5 ? 'wrong' : 'pw-bob';
        const client = await ts.client();
        let answered = false;
        const answer = client.authenticate('bob', password).finally(() => (answered = true));
        const delay = expected[i]!;
        for (const what of delay > 0 ? ['address', 'account'] : []) {
          await waitFor(`the ${what} wait before attempt ${i + 1}`, () => clock.pending().length > 0);
          assert.deepEqual(clock.pending(), [delay], `attempt ${i + 1}, ${what}`);
          clock.advance(delay - 1);
          // The timer has not fired, so the server cannot have answered.
          assert.equal(answered, false, `attempt ${i + 1} answered before the ${what} delay`);
          clock.advance(1);
        }
        const el = await answer;
        // The delay applies to the right password too (it is not known before the attempt).
        assert.equal(el.name, i < 5 ? 'failure' : 'success', `attempt ${i + 1}`);
        assert.deepEqual(clock.pending(), []);
        client.destroy();
        // the failure is counted when its event has run
        if (i < 5) await waitFor('the failure to be counted', () => guard.failureCount('ip', '127.0.0.1') === i + 1);
      }
    } finally {
      await ts.stop();
    }
  });

  test('P7 too many failures block the address: temporary-auth-failure, policy-violation for registration, until `gatehouse blocks lift`', async () => {
    const ts = await start({ delayAfter: 100, blockAfter: 4, blockFor: 15 * 60_000 });
    try {
      await createAccount(ts, 'carol');
      for (let i = 0; i < 4; i++) {
        const r = await attempt(ts, 'carol', 'wrong');
        assert.equal(r.outcome, 'not-authorized');
        r.client.destroy();
      }
      const guard = loginGuard(ts.server.ctx)!;
      await waitFor('the block', () => guard.isBlocked('ip', '127.0.0.1'));

      const blocked = await attempt(ts, 'carol', 'pw-carol');
      assert.equal(blocked.outcome, 'temporary-auth-failure', 'even the right password is refused while blocked');
      assert.match(blocked.text, /too many failed attempts.*try again in 15 minutes/);
      const reg = await (await ts.client()).register('newuser', 'whatever-password');
      assert.equal(reg.attrs.type, 'error');
      assert.equal(errorCondition(reg), 'policy-violation');
      assert.equal(reg.getChild('error')?.attrs.type, 'wait');
      assert.equal(await ts.server.ctx.storage.accounts.get('newuser', 'localhost'), null);
      // Refused attempts are recorded but not counted as guesses.
      assert.equal(guard.failureCount('ip', '127.0.0.1'), 4);

      const config = await cliConfigFor(ts);
      await waitFor('the stored block', async () => (await ts.server.ctx.storage.privacyLogs.listBlocks()).length === 1);
      const list = await gatehouse(['blocks', 'list', '--config', config]);
      assert.equal(list.code, 0, list.out);
      assert.match(list.out, /ip\s+127\.0\.0\.1\s+until \S+\s+\(4 failures/);

      const lift = await gatehouse(['blocks', 'lift', '127.0.0.1', '--config', config]);
      assert.equal(lift.code, 0, lift.out);
      assert.match(lift.out, /lifted the block of ip 127\.0\.0\.1/);
      // The running server notices at the next attempt.
      const ok = await attempt(ts, 'carol', 'pw-carol');
      assert.equal(ok.outcome, 'success');
      assert.equal(guard.isBlocked('ip', '127.0.0.1'), false);
      assert.equal(guard.failureCount('ip', '127.0.0.1'), 0, 'a lift forgives the counted failures');
      const none = await gatehouse(['blocks', 'list', '--config', config]);
      assert.match(none.out, /no blocks/);
      const again = await gatehouse(['blocks', 'lift', '127.0.0.1', '--config', config]);
      assert.equal(again.code, 1);
    } finally {
      await ts.stop();
    }
  });

  test('P7 a trusted proxy is never delayed or blocked by address (its failures are still recorded)', async () => {
    // On a clock nobody moves, a delayed attempt would never be answered.
    const clock = new ManualClock();
    const ts = await start({ delayAfter: 1, delayBase: 400, blockAfter: 3, trustedProxies: ['127.0.0.2/32'] }, { clock });
    try {
      await createAccount(ts, 'dave');
      for (let i = 0; i < 6; i++) {
        // different accounts each time, so the per-account limits do not apply
        const r = await attempt(ts, `nobody${i}`, 'wrong', '127.0.0.2');
        assert.equal(r.outcome, 'not-authorized');
        assert.deepEqual(clock.pending(), [], 'no delay for the trusted proxy');
        r.client.destroy();
      }
      const ok = await attempt(ts, 'dave', 'pw-dave', '127.0.0.2');
      assert.equal(ok.outcome, 'success');
      const logs = ts.server.ctx.storage.privacyLogs;
      await waitFor('six records', async () => (await logs.listFailedLogins({ ip: '127.0.0.2' })).length === 6);
      assert.equal(loginGuard(ts.server.ctx)!.isBlocked('ip', '127.0.0.2'), false);
      // An untrusted neighbour is blocked as usual.
      const guard = loginGuard(ts.server.ctx)!;
      for (let i = 0; i < 3; i++) {
        const r = attempt(ts, `x${i}`, 'wrong', '127.0.0.3');
        if (i > 0) {
          await waitFor('the neighbour to be delayed', () => clock.pending().length > 0);
          clock.advance(clock.pending()[0]!);
        }
        (await r).client.destroy();
        await waitFor('the failure to be counted', () => guard.failureCount('ip', '127.0.0.3') === i + 1);
      }
      await waitFor('the neighbour to be blocked', () => loginGuard(ts.server.ctx)!.isBlocked('ip', '127.0.0.3'));
    } finally {
      await ts.stop();
    }
  });
});

describe('failed-login guard and SASL outcomes', () => {
  test('P7 a channel-binding negotiation failure is not a failed login: no record, no count', async () => {
    const ts = await start({ delayAfter: 100, blockAfter: 100 });
    try {
      await createAccount(ts, 'erin');
      const sasl = (mechanism: string, first: string) =>
        `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='${mechanism}'>${Buffer.from(first).toString('base64')}</auth>`;
      const negotiations: [string, string][] = [
        // a type the connection does not offer (slixmpp's tls-unique, before it was offered)
        ['SCRAM-SHA-256-PLUS', 'p=tls-bogus,,n=erin,r=abcdef'],
        ['SCRAM-SHA-1-PLUS', 'p=tls-bogus,,n=erin,r=abcdef'],
        // 'y' although -PLUS is offered (auth.channelBindingDowngrade: reject)
        ['SCRAM-SHA-256', 'y,,n=erin,r=abcdef'],
        ['SCRAM-SHA-256', 'p=tls-exporter,,n=erin,r=abcdef'],
      ];
      for (const [mechanism, first] of negotiations) {
        const c = await ts.client();
        c.writeRaw(sasl(mechanism, first));
        const outcome = await c.expect((el) => el.name === 'failure' || el.name === 'challenge');
        assert.equal(outcome.name, 'failure', `${mechanism} ${first}`);
        c.destroy();
      }
      // A real failure afterwards: once it is counted, the earlier ones would have been too.
      const wrong = await attempt(ts, 'erin', 'wrong');
      assert.equal(wrong.outcome, 'not-authorized');
      const guard = loginGuard(ts.server.ctx)!;
      await waitFor('the wrong password to be counted', () => guard.failureCount('ip', '127.0.0.1') === 1);
      assert.equal(guard.failureCount('account', 'erin@localhost'), 1);
      const logs = ts.server.ctx.storage.privacyLogs;
      await waitFor('its record', async () => (await logs.listFailedLogins()).length >= 1);
      const records = await logs.listFailedLogins();
      assert.deepEqual(records.map((r) => [r.mechanism, r.condition]), [['SCRAM-SHA-256', 'not-authorized']]);
    } finally {
      await ts.stop();
    }
  });

  test('P7 a successful login clears the counters of its address and account (failures against other accounts stay)', async () => {
    const ts = await start({ delayAfter: 100, blockAfter: 100 });
    try {
      await createAccount(ts, 'frank');
      const guard = loginGuard(ts.server.ctx)!;
      for (const user of ['frank', 'Frank', 'someoneelse']) (await attempt(ts, user, 'wrong')).client.destroy();
      await waitFor('three failures', () => guard.failureCount('ip', '127.0.0.1') === 3);
      assert.equal(guard.failureCount('account', 'frank@localhost'), 2);
      const ok = await attempt(ts, 'frank', 'pw-frank');
      assert.equal(ok.outcome, 'success');
      await waitFor('frank\'s failures to be forgiven', () => guard.failureCount('account', 'frank@localhost') === 0);
      // frank's own typos no longer count against the address; a guess at another account does.
      assert.equal(guard.failureCount('ip', '127.0.0.1'), 1);
      assert.equal(guard.failureCount('account', 'someoneelse@localhost'), 1);
    } finally {
      await ts.stop();
    }
  });
});

describe('failed-login guard rules (events)', () => {
  const clock = new ManualClock(Date.UTC(2026, 3, 1));
  let ts: TestServer;
  before(async () => {
    ts = await start({ delayAfter: 100, blockAfter: 5, accountBlockAfter: 8, blockFor: 15 * 60_000, window: 10 * 60_000 }, { clock });
  });
  after(async () => {
    await ts.stop();
  });

  const fail = (ip: string, username: string | null = null) =>
    ts.server.ctx.hooks.emit('auth/failed', { at: clock.now(), ip, host: 'localhost', username, mechanism: 'PLAIN', condition: 'not-authorized' });
  /** The attempt as c2s announces it: 'auth/before', then (proposed core event) 'auth/identified' with the username. */
  const before_ = async (ip: string, username?: string) => {
    const a: AuthAttempt & { username?: string } = { ip, host: 'localhost', mechanism: 'PLAIN' };
    await ts.server.ctx.hooks.emit('auth/before', a);
    if (a.deny || !username) return a.deny;
    const b: AuthAttempt & { username?: string } = { ip, host: 'localhost', mechanism: 'PLAIN', username };
    await (ts.server.ctx.hooks as unknown as { emit(e: string, p: unknown): Promise<void> }).emit(AUTH_IDENTIFIED, b);
    return b.deny;
  };

  test('P7 one /64 is one subject: failures from many addresses in it block all of it, and only it', async () => {
    for (let i = 1; i <= 5; i++) await fail(`2001:db8:aa:1::${i}`);
    const deny = await before_('2001:db8:aa:1:ffff:ffff:ffff:ffff');
    assert.equal(deny?.condition, 'temporary-auth-failure');
    assert.equal(await before_('2001:db8:aa:2::1'), undefined, 'the next /64 is not blocked');
    await waitFor('the stored block', async () => (await ts.server.ctx.storage.privacyLogs.getBlock('ip', '2001:db8:aa:1::/64')) !== null);
  });

  test('P7 failures age out of the window, and a block ends by itself after blockFor', async () => {
    for (let i = 0; i < 4; i++) await fail('198.51.100.1');
    clock.advance(11 * 60_000);
    await fail('198.51.100.1');
    assert.equal(await before_('198.51.100.1'), undefined, 'old failures no longer count');
    for (let i = 0; i < 4; i++) await fail('198.51.100.1');
    await waitFor('the stored block', async () => (await ts.server.ctx.storage.privacyLogs.getBlock('ip', '198.51.100.1')) !== null);
    assert.ok(await before_('198.51.100.1'));
    clock.advance(14 * 60_000);
    assert.ok(await before_('198.51.100.1'), 'still blocked after 14 minutes');
    clock.advance(2 * 60_000);
    assert.equal(await before_('198.51.100.1'), undefined, 'over after 15 minutes');
  });

  test('P7 an account under attack from many addresses is blocked once the core names the username', async () => {
    for (let i = 1; i <= 8; i++) await fail(`203.0.113.${i}`, 'Victim');
    const guard = loginGuard(ts.server.ctx)!;
    assert.ok(guard.isBlocked('account', 'victim@localhost'));
    assert.equal((await before_('203.0.113.200', 'victim'))?.condition, 'temporary-auth-failure');
    assert.equal(await before_('203.0.113.200', 'someoneelse'), undefined);
    // A refused registration of a taken name is no attack on that account.
    for (let i = 0; i < 10; i++) await ts.server.ctx.hooks.emit('register/failed', { at: clock.now(), ip: `192.0.2.${i}`, host: 'localhost', username: 'popular', condition: 'conflict' });
    assert.equal(guard.failureCount('account', 'popular@localhost'), 0);
  });

  test('P7 blocks survive a restart of the guard', async () => {
    await fail('192.0.2.99');
    for (let i = 0; i < 4; i++) await fail('192.0.2.99');
    await waitFor('the stored block', async () => (await ts.server.ctx.storage.privacyLogs.getBlock('ip', '192.0.2.99')) !== null);
    const { LoginGuard } = await import('../../server/modules/login-guard/failed-login-guard.js');
    const fresh = new LoginGuard(ts.server.ctx, { ...DEFAULT_LOGIN_GUARD, poll: 0 });
    await fresh.start();
    try {
      assert.ok(fresh.isBlocked('ip', '192.0.2.99'));
      assert.ok((await fresh.check('192.0.2.99', 'localhost')) !== null);
    } finally {
      await fresh.stop();
    }
  });
});

