#!/usr/bin/env node
/**
 * The transport commands on their own (`node dist/server/cli/transport.js transport irc --config
 * irc.yaml`): the same definitions as `gatehouse transport ...` (server/modules/transports/commands.ts),
 * without loading the rest of the server's commands. The transport supervisor starts transports as
 * child processes this way.
 */
import { transportCommands } from '../modules/transports/commands.js';
import { runCommandLine } from '../commands/run.js';

// The transport commands read no other module's declarations.
runCommandLine(transportCommands, process.argv.slice(2), { modules: [] }).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`gatehouse: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
