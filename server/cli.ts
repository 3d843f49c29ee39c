#!/usr/bin/env node
/** The `gatehouse` command line: start the server and administer it (commands in server/cli/commands.ts). */
import { commandContext, commands } from './cli/commands.js';
import { runCommandLine } from './commands/run.js';

export async function main(argv: string[]): Promise<number> {
  // Everything the server and its commands write (database, WAL, certificates, logs, backups,
  // exports, the control socket) is for this user only, whatever umask the shell had.
  process.umask(0o077);
  return runCommandLine(commands, argv, commandContext());
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`gatehouse: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
