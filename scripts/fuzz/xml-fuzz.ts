/**
 * The XML parser fuzz loop: input i of a run with seed S is generated from inputSeed(S, i), so
 * `--seed S --only i` replays exactly one input. A failing input is minimised (greedy chunk
 * removal, bounded) and printed with its chunk boundaries.
 */
import { Prng, inputSeed } from './prng.js';
import { XmlGenerator, randomSplit } from './xml-generator.js';
import { FUZZ_LIMITS, compare } from './xml-oracle.js';
import type { ParserLimits } from '../../shared/xml/stream-parser.js';

export interface XmlFuzzOptions {
  seed: number;
  /** Stop after this many inputs... */
  count: number;
  /** ...or after this many milliseconds, whichever comes first. */
  maxMs?: number;
  /** Replay only input i. */
  only?: number;
  /** Stop at the first failure (default true). */
  stopAtFirst?: boolean;
  progress?: (done: number) => void;
  /** Minimise failing inputs (default true). */
  minimise?: boolean;
}

export interface XmlFuzzFailure {
  seed: number;
  index: number;
  input: Buffer;
  cuts: number[];
  limits: ParserLimits;
  message: string;
  minimised: { input: Buffer; cuts: number[]; message: string };
}

export interface XmlFuzzResult {
  inputs: number;
  ms: number;
  failures: XmlFuzzFailure[];
  stats: Map<string, number>;
}

export function fuzzInput(seed: number, index: number): { input: Buffer; cuts: number[]; limits: ParserLimits } {
  const r = new Prng(inputSeed(seed, index));
  const { bytes } = new XmlGenerator(r).input();
  const cuts = randomSplit(r, bytes.length);
  // A quarter of the inputs run with small depth and attribute limits.
  const limits = r.chance(0.25) ? { ...FUZZ_LIMITS, maxDepth: r.range(1, 4), maxAttributes: r.range(0, 4) } : FUZZ_LIMITS;
  return { input: bytes, cuts, limits };
}

function check(input: Buffer, cuts: number[], limits: ParserLimits, stats?: Map<string, number>): string | null {
  try {
    return compare(input, cuts, stats, limits);
  } catch (err) {
    return `threw: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
  }
}

export function runXmlFuzz(options: XmlFuzzOptions): XmlFuzzResult {
  const started = Date.now();
  const stats = new Map<string, number>();
  const failures: XmlFuzzFailure[] = [];
  const first = options.only ?? 0;
  const last = options.only !== undefined ? options.only + 1 : options.count;
  let inputs = 0;
  for (let i = first; i < last; i++) {
    if (options.maxMs !== undefined && (i & 63) === 0 && Date.now() - started >= options.maxMs) break;
    const { input, cuts, limits } = fuzzInput(options.seed, i);
    const message = check(input, cuts, limits, stats);
    inputs++;
    if ((i & 0xffff) === 0) options.progress?.(i);
    if (message === null) continue;
    failures.push({ seed: options.seed, index: i, input, cuts, limits, message, minimised: options.minimise === false ? { input, cuts, message } : minimise(input, cuts, limits) });
    if (options.stopAtFirst ?? true) break;
  }
  return { inputs, ms: Date.now() - started, failures, stats };
}

/** Cut offsets that still make sense after removing input[from, to). */
function cutsWithout(cuts: number[], from: number, to: number): number[] {
  const out: number[] = [];
  for (const c of cuts) {
    const moved = c <= from ? c : c >= to ? c - (to - from) : from;
    if (moved > 0 && out[out.length - 1] !== moved) out.push(moved);
  }
  return out;
}

/** Greedily removes byte ranges (halving sizes down to 1) while the input still fails; bounded work. */
export function minimise(input: Buffer, cuts: number[], limits: ParserLimits = FUZZ_LIMITS): { input: Buffer; cuts: number[]; message: string } {
  let best = { input, cuts, message: check(input, cuts, limits) ?? '' };
  let budget = 4000;
  for (let size = Math.max(1, best.input.length >> 1); size >= 1 && budget > 0; size >>= 1) {
    for (let from = 0; from < best.input.length && budget > 0; ) {
      const to = Math.min(best.input.length, from + size);
      const candidate = Buffer.concat([best.input.subarray(0, from), best.input.subarray(to)]);
      const candidateCuts = cutsWithout(best.cuts, from, to).filter((c) => c < candidate.length);
      budget--;
      const message = check(candidate, candidateCuts, limits);
      if (message !== null) best = { input: candidate, cuts: candidateCuts, message };
      else from += size;
    }
  }
  // Fewer chunk boundaries, if the failure does not need them.
  const unsplit = best.cuts.length > 0 ? check(best.input, [], limits) : null;
  if (unsplit !== null) best = { ...best, cuts: [], message: unsplit };
  return best;
}

/** A failing input as JavaScript literals, ready to paste into a regression test. */
export function describeFailure(f: XmlFuzzFailure): string {
  const lit = (b: Buffer): string => (Buffer.from(b.toString('utf8'), 'utf8').equals(b) ? JSON.stringify(b.toString('utf8')) : `Buffer.from('${b.toString('hex')}', 'hex')`);
  const cap = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n)}... (${s.length} chars)` : s);
  return [
    `XML parser fuzz failure: seed ${f.seed}, input ${f.index} (replay: npm run fuzz -- --seed ${f.seed} --only ${f.index})`,
    `  ${f.message}`,
    `  limits: ${JSON.stringify(f.limits)}`,
    `  input: ${cap(lit(f.input), 3000)}`,
    `  chunk boundaries: ${cap(JSON.stringify(f.cuts), 1000)}`,
    `  minimised: ${cap(lit(f.minimised.input), 3000)} boundaries ${cap(JSON.stringify(f.minimised.cuts), 1000)}`,
    `  minimised failure: ${f.minimised.message}`,
  ].join('\n');
}
