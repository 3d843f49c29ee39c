/**
 * The live-stream stanza fuzzer (scripts/fuzz/stanza-fuzz.ts), bounded: random stanzas for
 * every module from four logged-in clients for 30 s against a server in this process. No crash,
 * no unhandled rejection, no error logged, heap growth bounded, and a fresh client still gets
 * its roster and a ping answered. Longer runs: `npm run fuzz:stanzas -- --seconds 600`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeStanzaFuzz, runStanzaFuzz, stanzaFuzzProblems } from '../../scripts/fuzz/stanza-fuzz.js';

test('stanza fuzz over a live c2s stream (30 s, clock seed): no crash, bounded heap, the server still answers', async () => {
  const seed = Number(process.env.GATEHOUSE_FUZZ_SEED ?? Date.now() % 2 ** 31);
  console.log(`stanza fuzz seed ${seed} (replay: npm run fuzz:stanzas -- --seed ${seed} --seconds 30)`);
  const result = await runStanzaFuzz({ seed, durationMs: 30_000 });
  console.log(describeStanzaFuzz(result));
  // A bound on growth, generous for a heap of ~20 MiB: a leak per stanza or per login shows as far more.
  const problems = stanzaFuzzProblems(result, 32 * 2 ** 20);
  assert.deepEqual(problems, [], `stanza fuzz seed ${seed}:\n${problems.join('\n')}`);
  assert.ok(result.stanzas > 1000, `only ${result.stanzas} stanzas sent (seed ${seed})`);
});

test('fuzz finding: the roster module caches at most 10,000 accounts (one login per new account grew the heap)', async () => {
  const { RosterService } = await import('../../server/modules/roster.js');
  const { Jid } = await import('../../shared/jid.js');
  let lookups = 0;
  const ctx = {
    router: { isLocalHost: (domain: string) => domain === 'localhost' },
    storage: { accounts: { get: async (local: string) => (lookups++, { id: 1, username: local, domain: 'localhost' }) } },
  } as unknown as ConstructorParameters<typeof RosterService>[0];
  const service = new RosterService(ctx);
  for (let i = 0; i <= 10_000; i++) await service.account(Jid.parse(`u${i}@localhost`));
  assert.equal(lookups, 10_001);
  await service.account(Jid.parse('u10000@localhost'));
  assert.equal(lookups, 10_001, 'the most recent account is cached');
  await service.account(Jid.parse('u0@localhost'));
  assert.equal(lookups, 10_002, 'the oldest account was evicted');
});
