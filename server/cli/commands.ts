/**
 * Every command of the `gatehouse` CLI, in the order of the command list: the core ones, those the
 * modules declare (GatehouseModule `commands.cli`), and those of features whose command files
 * cannot be imported by their module without an import cycle (they read the module's tables, or
 * modules/index.ts) or that run without a server module (transports).
 */
import { commandSet } from '../commands/command.js';
import { coreCommands } from './core.js';
import { policyCommands } from '../privacy/cli-policy.js';
import { privacyCommands } from '../privacy/cli-privacy.js';
import { backupCommands } from '../privacy/cli-backup.js';
import { allModules } from '../modules/index.js';
import { transportCommands } from '../../transports/cli-transport.js';

export const commands = commandSet(
  ...Object.values(coreCommands),
  ...Object.values(policyCommands),
  ...Object.values(privacyCommands),
  ...Object.values(backupCommands),
  ...allModules().flatMap((m) => m.commands?.cli ?? []),
  ...Object.values(transportCommands),
);
