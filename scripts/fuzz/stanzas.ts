/**
 * `npm run fuzz:stanzas`: the live-stream stanza fuzzer for a longer run.
 *   --seed N        (default: from the clock, printed)
 *   --seconds N     run time (default 300)
 *   --clients N     concurrent fuzzing clients (default 4)
 *   --why           print the last stanzas sent before the server closed a stream
 */
import { describeStanzaFuzz, runStanzaFuzz, stanzaFuzzProblems } from './stanza-fuzz.js';

function option(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const seed = Number(option('seed') ?? (Date.now() % 2 ** 31));
const seconds = Number(option('seconds') ?? 300);
console.log(`stanza fuzz: seed ${seed}, ${seconds} s`);
const result = await runStanzaFuzz({ seed, durationMs: seconds * 1000, clients: Number(option('clients') ?? 4), log: (l) => console.log(l),
  onClosed: process.argv.includes('--why') ? (why, last) => console.log(`closed: ${why}\n  ${last.join('\n  ')}`) : undefined });
console.log(describeStanzaFuzz(result));
const problems = stanzaFuzzProblems(result, 64 * 2 ** 20);
for (const p of problems) console.log(`PROBLEM ${p}`);
process.exitCode = problems.length > 0 ? 1 : 0;
