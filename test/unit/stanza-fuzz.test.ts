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
