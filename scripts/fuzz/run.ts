/**
 * `npm run fuzz`: the differential XML parser fuzzer (a million inputs by default).
 *   --seed N      run seed (default: from the clock, printed)
 *   --count N     inputs (default 1,000,000)
 *   --seconds N   stop after this long
 *   --only I      replay input I of the seed
 *   --all         keep going after a failure
 *   --no-minimise print failing inputs as generated
 */
import { describeFailure, runXmlFuzz } from './xml-fuzz.js';

function option(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const seed = Number(option('seed') ?? (Date.now() % 2 ** 31));
const count = Number(option('count') ?? 1_000_000);
const seconds = option('seconds');
const only = option('only');
console.log(`XML parser differential fuzz: seed ${seed}, ${only !== undefined ? `input ${only}` : `${count} inputs`}`);
const result = runXmlFuzz({
  seed,
  count,
  maxMs: seconds !== undefined ? Number(seconds) * 1000 : undefined,
  only: only !== undefined ? Number(only) : undefined,
  stopAtFirst: !process.argv.includes('--all'),
  minimise: !process.argv.includes('--no-minimise'),
  progress: (done) => done > 0 && console.log(`  ${done} inputs...`),
});
for (const f of result.failures) console.log(describeFailure(f));
console.log(`${result.inputs} inputs in ${(result.ms / 1000).toFixed(1)} s (${Math.round(result.inputs / (result.ms / 1000))}/s), ${result.failures.length} failure(s), seed ${seed}`);
for (const [k, v] of [...result.stats].sort()) console.log(`  ${k}: ${v}`);
process.exitCode = result.failures.length > 0 ? 1 : 0;
