/** What every `gatehouse` subcommand shares: argument parsing, configuration, storage access. */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { loadConfig, type Config } from '../config/index.js';
import { openStorage } from '../storage/datasource.js';
import type { Storage } from '../storage/types.js';

export interface Command {
  usage: string;
  summary: string;
  run(args: ParsedArgs): Promise<number>;
}

export interface ParsedArgs {
  positional: string[];
  flags: Map<string, string | true>;
}

export class UsageError extends Error {}

export const HELP_FLAGS = new Set(['--help', '-h']);

export function parseArgs(argv: string[]): ParsedArgs {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      if (eq > 0) flags.set(a.slice(2, eq), a.slice(eq + 1));
      else if (VALUE_FLAGS.has(a.slice(2)) && i + 1 < argv.length) flags.set(a.slice(2), argv[++i]!);
      else flags.set(a.slice(2), true);
    } else positional.push(a);
  }
  return { positional, flags };
}

const VALUE_FLAGS = new Set(['config', 'password-file', 'lang', 'format', 'effective', 'technical', 'out', 'since', 'until', 'jid', 'network', 'series', 'resolution', 'chart', 'key-file', 'new-key-file', 'adapter', 'replace-admin']);

export function configFrom(args: ParsedArgs): Config {
  const path = args.flags.get('config');
  if (path === true) throw new UsageError('--config needs a file path');
  return loadConfig(path ?? null);
}

export async function readPassword(args: ParsedArgs, prompt: string): Promise<string> {
  const file = args.flags.get('password-file');
  if (typeof file === 'string') return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  if (process.stdin.isTTY) return promptHidden(prompt);
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    rl.close();
    return line;
  }
  throw new UsageError('no password given on standard input');
}

function promptHidden(prompt: string): Promise<string> {
  return new Promise((resolve) => {
    process.stderr.write(prompt);
    const stdin = process.stdin;
    stdin.setRawMode(true);
    stdin.resume();
    let value = '';
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          stdin.setRawMode(false);
          stdin.pause();
          stdin.off('data', onData);
          process.stderr.write('\n');
          resolve(value);
          return;
        }
        if (ch === '\u0003') process.exit(130);
        if (ch === '\u007f') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}

/** Opens the configured database for a command and closes it afterwards. */
export async function withStorage<T>(config: Config, fn: (storage: Storage) => Promise<T>): Promise<T> {
  const storage = await openStorage(config.storage, { migrate: config.storage.migrateOnStart });
  try {
    return await fn(storage);
  } finally {
    await storage.close();
  }
}
