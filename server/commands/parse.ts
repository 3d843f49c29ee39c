/** Parsing a command line against a command's definition: value flags, unknown flags with a suggestion. */
import { UsageError, type CommandDefinition, type FlagDefinition, type ParsedArgs } from './command.js';

export const HELP_FLAGS = new Set(['--help', '-h']);

/** Edit distance (insertions, deletions, substitutions), for "did you mean" suggestions. */
export function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/** The closest candidate, if within a third of the word's length (at least 2 edits); else null. */
export function closest(word: string, candidates: Iterable<string>): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = levenshtein(word, c);
    // On a tie, a candidate the word begins (a word cut short) beats one it only resembles.
    if (d < bestDistance || (d === bestDistance && c.startsWith(word) && !best!.startsWith(word))) {
      best = c;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : null;
}

/**
 * Splits `argv` (the words after the command name) into positionals and flags. With a definition,
 * its string flags take the next word as their value and any other flag is a UsageError; without
 * one (`parseArgs(argv)` in tests), the flags of every command that take a value are known.
 */
export function parseArgs(argv: string[], def?: Pick<CommandDefinition, 'flags'>): ParsedArgs {
  const flagDefs = def ? new Map((def.flags ?? []).map((f) => [f.name, f])) : null;
  const takesValue = (name: string) => (flagDefs ? flagDefs.get(name)?.type === 'string' : ANY_VALUE_FLAGS.has(name));
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--') && a.length > 2) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (flagDefs && !flagDefs.has(name)) throw unknownFlag(name, flagDefs.values());
      if (eq > 0) {
        if (flagDefs && !takesValue(name)) throw new UsageError(`--${name} takes no value`);
        flags.set(name, a.slice(eq + 1));
      } else if (takesValue(name) && i + 1 < argv.length) flags.set(name, argv[++i]!);
      else if (flagDefs && takesValue(name)) {
        const value = flagDefs.get(name)!.value ?? 'VALUE';
        throw new UsageError(`--${name} needs a value (--${name} ${value} or --${name}=${value})`);
      } else flags.set(name, true);
    } else if (flagDefs && /^-[a-zA-Z]/.test(a)) {
      throw new UsageError(`unknown flag ${a}`);
    } else positional.push(a);
  }
  return { positional, flags };
}

function unknownFlag(name: string, known: Iterable<FlagDefinition>): UsageError {
  const suggestion = closest(name, [...known].map((f) => f.name));
  return new UsageError(`unknown flag --${name}${suggestion ? `; did you mean --${suggestion}?` : ''}`);
}

/** Value flags of all commands, for parsing without a definition (kept as the parser had them). */
const ANY_VALUE_FLAGS = new Set(['config', 'password-file', 'lang', 'format', 'effective', 'technical', 'out', 'since', 'until', 'jid', 'network', 'series', 'resolution', 'chart', 'key-file', 'new-key-file', 'adapter', 'replace-admin']);

