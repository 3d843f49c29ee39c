/**
 * Retention classes come from the module contract (issue #12): every module lists the classes of
 * the records it stores, and the sweeper runs exactly the classes of the loaded modules. This file
 * compares that list with PRIVACY.md: a module whose class drops out (or a module dropped from
 * modules/index.ts) fails here, instead of a clause silently going unenforced.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { allModules, retentionClasses } from '../../server/modules/index.js';
import { createRetentionModule, retentionSweeper } from '../../server/modules/retention/retention.js';
import type { GatehouseModule } from '../../server/core/context.js';
import { ManualClock } from '../../shared/clock.js';

/**
 * The clauses of PRIVACY.md that keep records for a limited time, and the classes that delete
 * them. P7, P8, P10 and P6's per-session records go after retention.detailedLogs (P13).
 */
const CLAUSE_CLASSES: Record<string, string[]> = {
  P4: ['inactive-accounts', 'inactive-account-warnings'],
  P5: ['offline-messages'],
  P6: ['session-records'],
  P7: ['failed-logins', 'auth-blocks'],
  P8: ['delivery-failures'],
  P10: ['transport-connections'],
  P11: ['pep-items', 'pep-subscriptions', 'uploads', 'muc-rooms'],
  P13: ['session-records', 'failed-logins', 'auth-blocks', 'delivery-failures', 'transport-connections', 'log-files'],
};

/** The clause each class names (what `gatehouse retention run` prints). */
const DECLARED_CLAUSE: Record<string, string> = {
  'inactive-accounts': 'P4',
  'inactive-account-warnings': 'P4',
  'offline-messages': 'P5',
  'session-records': 'P6',
  'failed-logins': 'P13',
  'auth-blocks': 'P13',
  'delivery-failures': 'P13',
  'transport-connections': 'P13',
  'log-files': 'P13',
  'pep-items': 'P11',
  'pep-subscriptions': 'P11',
  uploads: 'P11',
  'muc-rooms': 'P11',
};

describe('retention classes of the loaded modules', () => {
  let ts: TestServer;
  let known: [string, string][];
  before(async () => {
    // An injected clock: the sweeper has no schedule; a dry run lists what it would sweep.
    ts = await startTestServer({ clock: new ManualClock(Date.UTC(2026, 0, 5)) });
    const results = await retentionSweeper(ts.server.ctx)!.runNow({ dryRun: true });
    known = results.map((r) => [r.name, r.clause]);
  });
  after(() => ts?.stop());

  test('P4 P5 P6 P7 P8 P10 P11 P13 the sweeper of a server with every module knows exactly the classes PRIVACY.md needs', () => {
    assert.deepEqual(Object.fromEntries(known), DECLARED_CLAUSE);
    assert.equal(known.length, Object.keys(DECLARED_CLAUSE).length, 'no class twice');
  });

  for (const [clause, classes] of Object.entries(CLAUSE_CLASSES)) {
    test(`${clause} records are swept with all modules loaded: ${classes.join(', ')}`, () => {
      const names = known.map(([n]) => n);
      for (const c of classes) assert.ok(names.includes(c), `${clause}: class ${c} is not known to the sweeper`);
    });
  }

  test('P13 the CLI (`gatehouse retention run`, without a server) sweeps the same classes as the server', () => {
    assert.deepEqual(
      retentionClasses().map((c) => [c.name, c.clause]),
      known,
    );
  });
});

describe('the sweeper takes its classes from the modules, not from imports', () => {
  test('P13 a class listed by a loaded module is swept; the same class is not swept when its module is not loaded', async () => {
    let runs = 0;
    const extra: GatehouseModule = {
      name: 'test-extra-records',
      specs: [],
      retention: [{ name: 'test-extra-records', clause: 'P13', describe: () => 'test records', run: async () => (runs++, 3) }],
      load() {},
    };
    const clock = new ManualClock(Date.UTC(2026, 0, 5));
    const modules = (...more: GatehouseModule[]) => [...allModules().filter((m) => m.name !== 'retention'), createRetentionModule({ intervalMs: null }), ...more];
    const withIt = await startTestServer({ clock, modules: modules(extra) });
    try {
      const r = await retentionSweeper(withIt.server.ctx)!.runNow();
      assert.deepEqual(r.filter((x) => x.name === 'test-extra-records').map((x) => [x.clause, x.count]), [['P13', 3]]);
      assert.equal(runs, 1);
    } finally {
      await withIt.stop();
    }
    const without = await startTestServer({ clock, modules: modules() });
    try {
      const r = await retentionSweeper(without.server.ctx)!.runNow();
      assert.ok(!r.some((x) => x.name === 'test-extra-records'));
      assert.ok(r.some((x) => x.name === 'log-files'), 'the loaded modules still count');
      assert.equal(runs, 1);
    } finally {
      await without.stop();
    }
  });
});
