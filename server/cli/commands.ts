/**
 * Every command of the `gatehouse` CLI, in the order of the command list: the core ones, those the
 * modules declare (GatehouseModule `commands.cli`), and those of features whose command files
 * cannot be imported by their module without an import cycle (they read the module's tables, or
 * modules/index.ts) or that run without a server module (transports).
 */
import { commandSet } from '../commands/command.js';
import { coreCommands } from './core.js';
import { policyCommands } from '../modules/policy/cli-policy.js';
import { retentionCommands } from '../modules/retention/cli-retention.js';
import { blockCommands } from '../modules/login-guard/cli-blocks.js';
import { backupCommands } from '../modules/backup/cli-backup.js';
import { exportCommands } from '../modules/export/cli-export.js';
import { allModules } from '../modules/index.js';
import { transportCommands } from '../../transports/cli-transport.js';

export const commands = commandSet(
  ...Object.values(coreCommands),
  ...Object.values(policyCommands),
  ...Object.values(retentionCommands),
  ...Object.values(blockCommands),
  ...Object.values(backupCommands),
  ...Object.values(exportCommands),
  ...allModules().flatMap((m) => m.commands?.cli ?? []),
  ...Object.values(transportCommands),
);
