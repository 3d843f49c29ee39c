/**
 * The retention sweeper (P4, P5, P13): inactive accounts are warned, then deleted with all they
 * own; expired offline messages become delivery-failure records; detailed logs go after 48 hours;
 * `gatehouse retention run [--dry-run]`. Every test moves an injected clock: nothing sleeps.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { allModules, retentionClasses } from '../../server/modules/index.js';
import { retentionClassesOf } from '../../server/core/module.js';
import type { GatehouseModule } from '../../server/core/context.js';
import { HookBus } from '../../server/core/hooks.js';
import { LocalSessionRegistry } from '../../server/core/session.js';
import { parseConfig } from '../../server/config/index.js';
import { openStorage } from '../../storage/datasource.js';
import { storageTargets } from '../../storage/test-databases.js';
import { asTypeOrmStorage } from '../../storage/typeorm-storage.js';
import type { Storage } from '../../storage/types.js';
import { makeVerifier } from '../../server/auth/scram.js';
import {
  createRetentionModule,
  retentionSweeper,
  runRetention,
  inBatches,
  OFFLINE_EXPIRED_CONDITION,
  type RetentionClass,
  type RetentionEnv,
  type RetentionResult,
} from '../../server/modules/retention/retention.js';
import { createDeliveryFailureModule } from '../../server/modules/delivery-failures/delivery-failures.js';
import { ManualClock } from '../../shared/clock.js';
import { silentLogger } from '../../shared/logger.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { runCli } from '../helpers/server-process.js';

const DAY = 86_400_000;
const HOUR = 3_600_000;

// ---- support ----

/** Stand-in for the presence module while it is not in allModules() (as in test/im). */
const presenceStub: GatehouseModule = {
  name: 'test-presence-stub',
  specs: [],
  load({ hooks, sessions, router }) {
    hooks.on('presence/bare', async (e) => {
      if (e.origin.kind !== 'c2s' || e.stanza.attrs.to !== undefined) return;
      const s = e.origin.session;
      if (e.stanza.attrs.type === undefined) {
        const initial = !s.available;
        s.available = true;
        s.priority = Number.parseInt(e.stanza.getChildText('priority') ?? '0', 10) || 0;
        for (const r of sessions.ofAccount(s.jid.bare)) if (r.available) router.deliver(r, e.stanza);
        if (initial) await hooks.emit('session/available', { session: s });
      }
      return true;
    });
  },
};

/** allModules() plus ours (without duplicates once the lead lists them there too). */
function modules(...mine: GatehouseModule[]): GatehouseModule[] {
  const list = allModules().filter((m) => !mine.some((o) => o.name === m.name));
  if (!list.some((m) => /presence/i.test(m.name))) list.push(presenceStub);
  return [...list, ...mine];
}

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function result(results: RetentionResult[], name: string): RetentionResult {
  const r = results.find((x) => x.name === name);
  assert.ok(r, `class ${name} ran`);
  assert.equal(r.error, undefined, `class ${name} did not fail`);
  return r;
}

async function createAccount(storage: Storage, name: string, at: Date): Promise<number> {
  const a = await storage.accounts.create(name, 'localhost', [makeVerifier('pw-' + name, 'SHA-256', 4096)], at);
  assert.ok(a);
  return a.id;
}

const gatehouse = runCli;

// ---- the sweeper in a running server ----

describe('retention in the server (P4, P5)', () => {
  const T0 = Date.UTC(2026, 0, 5, 12, 0, 0);
  const clock = new ManualClock(T0);
  let ts: TestServer;

  before(async () => {
    ts = await startTestServer({
      clock,
      logLevel: 'info',
      modules: modules(createRetentionModule({ intervalMs: null }), createDeliveryFailureModule()),
      config: { retention: { inactiveAccounts: '365d', inactiveWarning: '14d', offlineMessages: '30d' } },
    });
  });
  after(async () => {
    await ts.stop();
  });

  const sweep = async () => {
    const sweeper = retentionSweeper(ts.server.ctx);
    assert.ok(sweeper, 'the retention module runs a sweeper');
    return sweeper.runNow();
  };
  const account = (name: string) => ts.server.ctx.storage.accounts.get(name, 'localhost');

  async function login(name: string): Promise<TestClient> {
    const c = await ts.client();
    await c.login(name, 'pw-' + name);
    return c;
  }

  test('P4 an unused account is warned inactiveWarning before the deadline, then deleted with everything it owns', async () => {
    clock.set(new Date(T0));
    const { storage } = ts.server.ctx;
    const id = await createAccount(storage, 'idle', clock.now());
    await storage.roster.put(id, { jid: 'friend@example.org', name: 'Friend', subscription: 'both', ask: false, pendingIn: false, approved: false, groups: ['g'] });
    await storage.vcards.set(id, 'vcard', "<vCard xmlns='vcard-temp'><FN>Idle</FN></vCard>");
    await storage.privateXml.set(id, '{x:y} z', "<z xmlns='x:y'/>");
    await storage.offline.store(id, "<message xmlns='jabber:client' from='friend@example.org/r' to='idle@localhost' type='chat'><body>hi</body></message>", clock.now());

    // Not yet in the warning window.
    clock.set(new Date(T0 + 351 * DAY - HOUR));
    let r = await sweep();
    assert.equal(result(r, 'inactive-account-warnings').count, 0);
    assert.equal((await account('idle'))?.warnedAt, null);

    // Inside it: warned once.
    clock.set(new Date(T0 + 351 * DAY + HOUR));
    r = await sweep();
    assert.equal(result(r, 'inactive-account-warnings').count, 1);
    const warnedAt = (await account('idle'))?.warnedAt;
    assert.equal(warnedAt?.getTime(), T0 + 351 * DAY + HOUR);
    r = await sweep();
    assert.equal(result(r, 'inactive-account-warnings').count, 0, 'warned only once');

    // Past 365 days but warned less than 14 days ago: kept.
    clock.set(new Date(T0 + 365 * DAY + 30 * 60_000));
    r = await sweep();
    assert.equal(result(r, 'inactive-accounts').count, 0);
    assert.ok(await account('idle'));

    // A full warning period after the warning: deleted with every row it owned.
    clock.set(new Date(T0 + 365 * DAY + 2 * HOUR));
    r = await sweep();
    assert.equal(result(r, 'inactive-accounts').count, 1);
    assert.equal(await account('idle'), null);
    const counts = await asTypeOrmStorage(storage).tableCounts(id);
    for (const [table, n] of Object.entries(counts)) assert.equal(n, 0, `${table} rows of the deleted account`);
    r = await sweep();
    assert.equal(result(r, 'inactive-accounts').count, 0, 'idempotent');
  });

  test('P4 the warning is a headline to an online resource, and a login cancels the deletion', async () => {
    clock.set(new Date(T0));
    const { storage } = ts.server.ctx;
    await createAccount(storage, 'sleepy', clock.now());
    await createAccount(storage, 'dozer', clock.now());

    // dozer is connected (bound at T0, so its last use is T0) and available.
    const dozer = await login('dozer');
    dozer.send(x('presence'));
    await dozer.expect((el) => el.name === 'presence');

    clock.set(new Date(T0 + 352 * DAY));
    const r = await sweep();
    assert.equal(result(r, 'inactive-account-warnings').count, 2);
    const warning = await dozer.expect((el) => el.name === 'message' && el.attrs.type === 'headline');
    assert.equal(warning.attrs.from, 'localhost');
    assert.match(warning.getChildText('body') ?? '', /dozer@localhost.*365 days.*Log in before 2027-01-06/);
    await dozer.close();

    // sleepy logs in after the warning: told that the account is kept, warning cleared.
    clock.set(new Date(T0 + 353 * DAY));
    assert.ok((await account('sleepy'))?.warnedAt);
    const sleepy = await login('sleepy');
    const notice = await sleepy.expect((el) => el.name === 'message' && el.attrs.type === 'headline');
    assert.match(notice.getChildText('subject') ?? '', /kept/);
    await waitFor('warned_at to be cleared', async () => (await account('sleepy'))?.warnedAt === null);
    await waitFor('the last use to be recorded', async () => (await account('sleepy'))?.lastUsedAt?.getTime() === T0 + 353 * DAY);
    await sleepy.close();

    // Past the original deadline: sleepy stays (used on day 353); dozer (last used when its session ended) too.
    clock.set(new Date(T0 + 367 * DAY));
    const after = await sweep();
    assert.equal(result(after, 'inactive-accounts').count, 0);
    assert.ok(await account('sleepy'));
    assert.ok(await account('dozer'));
    // And a second login after the warning was cleared brings no notice.
    const again = await login('sleepy');
    assert.ok(await again.expectNothing((el) => el.name === 'message', 200));
    await again.close();
  });

  test('P5 an offline message older than retention.offlineMessages is deleted and becomes a P8 record', async () => {
    clock.set(new Date(T0));
    const { storage } = ts.server.ctx;
    await createAccount(storage, 'sender5', clock.now());
    const rcptId = await createAccount(storage, 'rcpt5', clock.now());
    const alice = await login('sender5');
    alice.send(x('message', { to: 'rcpt5@localhost', type: 'chat', id: 'old' }, x('body', {}, 'expiring-marker-5')));
    await alice.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
    clock.advance(20 * DAY);
    alice.send(x('message', { to: 'rcpt5@localhost', type: 'chat', id: 'new' }, x('body', {}, 'still fresh')));
    await alice.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
    assert.equal(await storage.offline.count(rcptId), 2);

    clock.advance(10 * DAY + 60_000); // the first is 30 days and a minute old, the second 10 days
    const dry = await retentionSweeper(ts.server.ctx)!.runNow({ dryRun: true });
    assert.equal(result(dry, 'offline-messages').count, 1);
    assert.equal(await storage.offline.count(rcptId), 2, 'a dry run deletes nothing');

    const r = await sweep();
    assert.equal(result(r, 'offline-messages').count, 1);
    const left = await storage.offline.list(rcptId);
    assert.equal(left.length, 1);
    assert.match(left[0]!.stanza, /still fresh/);
    const records = (await storage.privacyLogs.listDeliveryFailures()).filter((f) => f.to === 'rcpt5@localhost');
    assert.equal(records.length, 1);
    assert.deepEqual(
      { from: records[0]!.from, to: records[0]!.to, kind: records[0]!.kind, condition: records[0]!.condition, at: records[0]!.at.getTime() },
      { from: 'sender5@localhost', to: 'rcpt5@localhost', kind: 'message', condition: OFFLINE_EXPIRED_CONDITION, at: clock.now().getTime() },
    );
    assert.ok(!JSON.stringify(records).includes('expiring-marker-5'), 'P8: no content');

    // The recipient gets only the fresh one.
    const bob = await login('rcpt5');
    bob.send(x('presence'));
    const got = await bob.expect((el) => el.name === 'message');
    assert.equal(got.getChildText('body'), 'still fresh');
    assert.ok(await bob.expectNothing((el) => el.name === 'message' && el.getChildText('body') === 'expiring-marker-5', 200));
  });
});

// ---- the classes on every database ----

for (const target of storageTargets()) {
  describe(`retention classes on ${target.name}`, () => {
    let db: Awaited<ReturnType<typeof target.make>>;
    let storage: Storage;
    const clock = new ManualClock(Date.UTC(2026, 5, 1));
    let env: RetentionEnv;

    before(async () => {
      db = await target.make();
      storage = await openStorage(db.config);
      const config = parseConfig({ hosts: [{ domain: 'localhost' }], storage: db.config.type === 'sqlite' ? { type: 'sqlite', path: db.config.path } : { type: db.config.type, url: db.config.url } }, tmpdir());
      env = { config, storage, log: silentLogger, clock, hooks: new HookBus(), sessions: new LocalSessionRegistry() };
    });
    after(async () => {
      await storage.close();
      await db.drop();
    });

    test('P13 detailed logs older than 48 hours are deleted, newer ones kept, in batches, idempotently', async () => {
      const now = clock.now().getTime();
      const logs = storage.privacyLogs;
      const ages = [49 * HOUR, 48 * HOUR + 1, 47 * HOUR, HOUR, 0];
      for (const [i, age] of ages.entries()) {
        await logs.addFailedLogin({ at: new Date(now - age), ip: `192.0.2.${i}`, host: 'localhost', username: `u${i}`, mechanism: 'SCRAM-SHA-256', kind: 'auth', condition: 'not-authorized' });
        await logs.addDeliveryFailure({ at: new Date(now - age), from: `a${i}@localhost`, to: `b${i}@example.org`, kind: 'message', condition: 'remote-server-not-found' });
      }
      // Blocks: one expired an hour ago, one set 49 hours ago (and still "in force"), one current.
      await logs.putBlock({ kind: 'ip', subject: '192.0.2.1', createdAt: new Date(now - 2 * HOUR), expiresAt: new Date(now - HOUR), failures: 10 });
      await logs.putBlock({ kind: 'ip', subject: '2001:db8::/64', createdAt: new Date(now - 49 * HOUR), expiresAt: new Date(now + HOUR), failures: 10 });
      await logs.putBlock({ kind: 'account', subject: 'u1@localhost', createdAt: new Date(now - 60_000), expiresAt: new Date(now + 14 * 60_000), failures: 20 });

      const classes = retentionClasses().filter((c) => ['failed-logins', 'delivery-failures', 'auth-blocks'].includes(c.name));
      assert.equal(classes.length, 3, 'the P13 classes are registered');
      const dry = await runRetention(env, { dryRun: true, classes });
      assert.deepEqual(dry.map((r) => [r.name, r.count, r.clause]).sort(), [
        ['auth-blocks', 2, 'P13'],
        ['delivery-failures', 2, 'P13'],
        ['failed-logins', 2, 'P13'],
      ]);
      assert.equal((await logs.listFailedLogins()).length, 5, 'dry run deletes nothing');

      const r = await runRetention(env, { classes, batch: 1 });
      assert.deepEqual(r.map((x) => [x.name, x.count]).sort(), [
        ['auth-blocks', 2],
        ['delivery-failures', 2],
        ['failed-logins', 2],
      ]);
      assert.deepEqual((await logs.listFailedLogins()).map((f) => f.username).sort(), ['u2', 'u3', 'u4']);
      assert.deepEqual((await logs.listDeliveryFailures()).map((f) => f.from).sort(), ['a2@localhost', 'a3@localhost', 'a4@localhost']);
      assert.deepEqual((await logs.listBlocks()).map((b) => b.subject), ['u1@localhost']);
      const again = await runRetention(env, { classes });
      assert.deepEqual(again.map((x) => x.count), [0, 0, 0], 'a second run finds nothing');
    });

    test('P4 and P5 classes work on this database', async () => {
      const t = clock.now().getTime();
      const idle = await createAccount(storage, 'idle-db', new Date(t - 400 * DAY));
      const fresh = await createAccount(storage, 'fresh-db', new Date(t - 400 * DAY));
      await storage.accounts.touch(fresh, new Date(t - DAY));
      await storage.offline.store(fresh, "<message xmlns='jabber:client' from='x@example.org/r' to='fresh-db@localhost'><body>old</body></message>", new Date(t - 31 * DAY));
      await storage.offline.store(fresh, "<message xmlns='jabber:client' from='x@example.org/r' to='fresh-db@localhost'><body>new</body></message>", new Date(t - DAY));
      const classes = retentionClasses().filter((c) => c.clause === 'P4' || c.clause === 'P5');
      let r = await runRetention(env, { classes, batch: 1 });
      assert.equal(result(r, 'inactive-accounts').count, 0, 'never deleted without a warning first');
      assert.equal(result(r, 'inactive-account-warnings').count, 1);
      assert.equal(result(r, 'offline-messages').count, 1);
      assert.equal(await storage.offline.count(fresh), 1);
      const rec = (await storage.privacyLogs.listDeliveryFailures()).find((f) => f.to === 'fresh-db@localhost');
      assert.equal(rec?.from, 'x@example.org');

      clock.advance(14 * DAY);
      r = await runRetention(env, { classes, batch: 1 });
      assert.equal(result(r, 'inactive-accounts').count, 1);
      assert.equal(await storage.accounts.get('idle-db', 'localhost'), null);
      assert.ok(await storage.accounts.get('fresh-db', 'localhost'));
      assert.equal(idle > 0, true);
    });
  });
}

// ---- the schedule ----

describe('last use held in memory (P4)', () => {
  test('P4 a session that just ended is never taken for inactivity: the sweep writes the held last-use time first', async () => {
    const T0 = Date.UTC(2026, 0, 5, 12, 0, 0);
    const clock = new ManualClock(T0);
    const ts = await startTestServer({
      clock,
      modules: modules(createRetentionModule({ intervalMs: null })),
      config: { retention: { inactiveAccounts: '365d', inactiveWarning: 0 } },
    });
    try {
      const { storage } = ts.server.ctx;
      await createAccount(storage, 'returning', clock.now());
      // A year and more without use, then one short session.
      clock.set(new Date(T0 + 400 * DAY));
      const c = await ts.client();
      await c.login('returning', 'pw-returning');
      await c.close();
      await waitFor('the session to end', () => ts.server.ctx.sessions.ofAccount('returning@localhost').length === 0);
      // Right away, within the time last-use writes may wait in memory.
      const r = await retentionSweeper(ts.server.ctx)!.runNow();
      assert.equal(result(r, 'inactive-accounts').count, 0, 'the account just used is kept');
      assert.equal((await storage.accounts.get('returning', 'localhost'))?.lastUsedAt?.getTime(), T0 + 400 * DAY);
    } finally {
      await ts.stop();
    }
  });
});

describe('the in-process schedule', () => {
  test('P13 the server sweeps on its own, on the system clock', async () => {
    const ts = await startTestServer({ modules: modules(createRetentionModule({ intervalMs: 100, firstRunAfterMs: 10 })) });
    try {
      const logs = ts.server.ctx.storage.privacyLogs;
      await logs.addFailedLogin({ at: new Date(Date.now() - 3 * DAY), ip: '192.0.2.1', host: 'localhost', username: null, mechanism: 'PLAIN', kind: 'auth', condition: 'not-authorized' });
      await logs.addFailedLogin({ at: new Date(), ip: '192.0.2.2', host: 'localhost', username: null, mechanism: 'PLAIN', kind: 'auth', condition: 'not-authorized' });
      await waitFor('the scheduled sweep', async () => (await logs.listFailedLogins()).length === 1);
      assert.equal((await logs.listFailedLogins())[0]!.ip, '192.0.2.2');
      assert.ok(ts.logLines.some((l) => /retention: deleted expired records.*class=failed-logins.*count=1/.test(l)), 'counts are logged');
      assert.ok(!ts.logLines.some((l) => l.includes('192.0.2.1')), 'no record content in the log');
    } finally {
      await ts.stop();
    }
  });
});

// ---- the registry and the command ----

describe('retention classes through the module contract, and `gatehouse retention run`', () => {
  test('P13 a feature adds its own class without touching the sweeper: the module lists it in `retention`', async () => {
    const seen: { dryRun: boolean; batch: number }[] = [];
    const extraClass: RetentionClass = {
      name: 'test-extra-class',
      clause: 'P6',
      describe: () => 'test records',
      async run(_env, _now, opts) {
        seen.push(opts);
        let calls = 0;
        return opts.dryRun ? 7 : inBatches(2, async (limit) => (++calls < 3 ? limit : 1));
      },
    };
    const extra: GatehouseModule = { name: 'test-extra', specs: [], retention: [extraClass], load() {} };
    const withExtra = retentionClassesOf([...allModules(), extra]);
    assert.ok(withExtra.some((c) => c.name === 'test-extra-class'));
    const env = { config: parseConfig({}, tmpdir()), storage: {} as Storage, log: silentLogger, clock: new ManualClock(), hooks: new HookBus(), sessions: new LocalSessionRegistry(), retentionClasses: withExtra.filter((c) => c.name === 'test-extra-class') };
    const dry = await runRetention(env, { dryRun: true });
    assert.deepEqual(dry.map((r) => [r.name, r.clause, r.count]), [['test-extra-class', 'P6', 7]]);
    const real = await runRetention(env, {});
    assert.equal(real[0]!.count, 5, 'inBatches loops until a batch is not full');
    assert.ok(!retentionClasses().some((c) => c.name === 'test-extra-class'), 'a module that is not listed adds nothing');
  });

  test('P13 `gatehouse retention run --dry-run` prints counts per class and deletes nothing; without it, deletes', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-retention-'));
    try {
      const dbPath = path.join(dir, 'gatehouse.sqlite');
      const configPath = path.join(dir, 'gatehouse.yaml');
      await writeFile(configPath, stringify({ dataDir: dir, hosts: [{ domain: 'localhost' }], storage: { type: 'sqlite', path: dbPath }, log: { level: 'warn' } }));
      const storage = await openStorage({ type: 'sqlite', path: dbPath });
      const now = Date.now();
      for (const age of [3 * DAY, 50 * HOUR, HOUR]) {
        await storage.privacyLogs.addFailedLogin({ at: new Date(now - age), ip: '198.51.100.7', host: 'localhost', username: 'mallory', mechanism: 'PLAIN', kind: 'auth', condition: 'not-authorized' });
        await storage.privacyLogs.addDeliveryFailure({ at: new Date(now - age), from: 'a@localhost', to: 'b@localhost', kind: 'message', condition: 'service-unavailable' });
      }
      await storage.close();

      const dry = await gatehouse(['retention', 'run', '--dry-run', '--config', configPath]);
      assert.equal(dry.code, 0, dry.out);
      assert.match(dry.out, /P13\s+failed-logins\s+2 would be deleted/);
      assert.match(dry.out, /P13\s+delivery-failures\s+2 would be deleted/);
      assert.match(dry.out, /P4\s+inactive-accounts\s+0 would be deleted/);
      assert.match(dry.out, /P5\s+offline-messages\s+0 would be deleted/);
      assert.match(dry.out, /nothing was deleted/);
      assert.ok(!/198\.51\.100\.7|mallory/.test(dry.out), 'counts only: no address or account in the output');

      let check = await openStorage({ type: 'sqlite', path: dbPath });
      assert.equal((await check.privacyLogs.listFailedLogins()).length, 3);
      assert.equal((await check.privacyLogs.listDeliveryFailures()).length, 3);
      await check.close();

      const real = await gatehouse(['retention', 'run', '--config', configPath]);
      assert.equal(real.code, 0, real.out);
      assert.match(real.out, /P13\s+failed-logins\s+2 deleted/);
      check = await openStorage({ type: 'sqlite', path: dbPath });
      assert.equal((await check.privacyLogs.listFailedLogins()).length, 1);
      assert.equal((await check.privacyLogs.listDeliveryFailures()).length, 1);
      await check.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
