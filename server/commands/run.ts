/**
 * The command-line dispatcher shared by `gatehouse` (server/cli.ts) and the transport runner
 * (server/cli/transport.ts): finds the command, answers help and --version, parses the flags
 * against the definition, runs it with the command context and maps errors to exit codes
 * (2: usage or configuration, 1: failure).
 */
import { ConfigError } from '../config/index.js';
import { UsageError, type CommandContext, type CommandDefinition, type CommandSet } from './command.js';
import { HELP_FLAGS, closest, parseArgs } from './parse.js';
import { PROGRAM, renderHelp, renderOverview } from './help.js';
import { packageVersion } from './version.js';

export interface Output {
  out(text: string): void;
  err(text: string): void;
}

const stdio: Output = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

/** The command named by the first one or two words of argv, and the words after its name. */
function findCommand(commands: CommandSet, argv: string[]): { def: CommandDefinition; rest: string[] } | null {
  const [a, b] = argv;
  if (a !== undefined && b !== undefined && Object.hasOwn(commands, `${a} ${b}`)) return { def: commands[`${a} ${b}`]!, rest: argv.slice(2) };
  if (a !== undefined && Object.hasOwn(commands, a)) return { def: commands[a]!, rest: argv.slice(1) };
  return null;
}

/** Why argv names no command, with a suggestion when one is close. */
function unknownCommand(commands: CommandSet, argv: string[]): string {
  const names = Object.keys(commands);
  const [a, b] = argv;
  const groups = new Map<string, string[]>();
  for (const n of names) {
    const [g, sub] = n.split(' ');
    if (sub) groups.set(g!, [...(groups.get(g!) ?? []), sub]);
  }
  const subs = a !== undefined ? groups.get(a) : undefined;
  if (subs) {
    if (b === undefined || b.startsWith('-')) return `${PROGRAM} ${a}: give one of ${subs.join(', ')}`;
    const near = closest(b, subs);
    return `${PROGRAM}: unknown command '${a} ${b}'${near ? `; did you mean '${a} ${near}'?` : ''} (see ${PROGRAM} --help)`;
  }
  const word = a ?? '';
  const two = b !== undefined ? closest(`${word} ${b}`, names) : null;
  const near = two ?? closest(word, [...new Set(names.map((n) => n.split(' ')[0]!))]);
  return `${PROGRAM}: unknown command '${word}'${near ? `; did you mean '${near}'?` : ''} (see ${PROGRAM} --help)`;
}

/** Runs one command line, handing the command `ctx`; resolves with the process exit code. */
export async function runCommandLine(commands: CommandSet, argv: string[], ctx: CommandContext, io: Output = stdio): Promise<number> {
  const first = argv[0];
  if (first === undefined || HELP_FLAGS.has(first)) {
    io.out(renderOverview(Object.values(commands)));
    return first === undefined ? 2 : 0;
  }
  if (first === '--version' || first === '-V') {
    io.out(`${PROGRAM} ${packageVersion()}\n`);
    return 0;
  }
  if (first === 'help') {
    const rest = argv.slice(1);
    if (rest.length === 0) {
      io.out(renderOverview(Object.values(commands)));
      return 0;
    }
    const found = findCommand(commands, rest);
    if (!found || found.rest.length > 0) {
      io.err(unknownCommand(commands, rest) + '\n');
      return 2;
    }
    io.out(renderHelp(found.def));
    return 0;
  }
  if (first.startsWith('-')) {
    io.err(`${PROGRAM}: unknown flag ${first}${closest(first, ['--help', '--version']) ? `; did you mean ${closest(first, ['--help', '--version'])}?` : ''} (see ${PROGRAM} --help)\n`);
    return 2;
  }
  const found = findCommand(commands, argv);
  if (!found) {
    io.err(unknownCommand(commands, argv) + '\n');
    return 2;
  }
  const { def, rest } = found;
  // `backup verfy`: a command that takes no argument but heads a group (backup verify, ...) is
  // more likely a mistyped subcommand than a stray argument.
  if (!def.args?.length && rest[0] !== undefined && !rest[0].startsWith('-') && Object.keys(commands).some((n) => n.startsWith(`${def.name} `))) {
    io.err(unknownCommand(commands, [def.name, rest[0]]) + '\n');
    return 2;
  }
  if (rest.some((a) => HELP_FLAGS.has(a))) {
    io.out(renderHelp(def));
    return 0;
  }
  try {
    return await def.run(parseArgs(rest, def), ctx);
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(`${err.message}\n`);
      return 2;
    }
    if (err instanceof UsageError) {
      io.err(`${PROGRAM} ${def.name}: ${err.message}\n`);
      return 2;
    }
    io.err(`${PROGRAM} ${def.name}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
