/** What every `gatehouse` subcommand shares: argument parsing, configuration, storage access. */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { loadConfig, type Config } from '../config/index.js';
import { openStorage } from '../../storage/datasource.js';
import type { Storage } from '../../storage/types.js';
import { UsageError, type CommandContext, type ParsedArgs } from '../commands/command.js';
import type { ModuleStorage } from '../../storage/module-storage.js';

export type { ParsedArgs };
export type { FlagDefinition } from '../commands/command.js';
export { UsageError, CONFIG_FLAG, commandSet } from '../commands/command.js';
export { parseArgs } from '../commands/parse.js';

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

/** The tables of the command context's modules (their `storage`), which the CLI opens with the core's. */
export function moduleStorages(ctx: CommandContext): ModuleStorage[] {
  return ctx.modules.flatMap((m) => (m.storage ? [m.storage] : []));
}

/** Opens the configured database (with the modules' tables) for a command and closes it afterwards. */
export async function withStorage<T>(config: Config, ctx: CommandContext, fn: (storage: Storage) => Promise<T>): Promise<T> {
  const storage = await openStorage(config.storage, { migrate: config.storage.migrateOnStart, modules: moduleStorages(ctx) });
  try {
    return await fn(storage);
  } finally {
    await storage.close();
  }
}
