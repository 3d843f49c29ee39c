/** Every command of the `gatehouse` CLI, in the order of the command list; features add theirs here. */
import { commandSet } from '../commands/command.js';
import { coreCommands } from './core.js';
import { policyCommands } from '../modules/policy/cli-policy.js';
import { retentionCommands } from '../modules/retention/cli-retention.js';
import { blockCommands } from '../modules/login-guard/cli-blocks.js';
import { backupCommands } from '../modules/backup/cli-backup.js';
import { exportCommands } from '../modules/export/cli-export.js';
import { statsCommands } from '../modules/statistics/cli-stats.js';
import { transportCommands } from '../../transports/cli-transport.js';

export const commands = commandSet(
  ...Object.values(coreCommands),
  ...Object.values(policyCommands),
  ...Object.values(retentionCommands),
  ...Object.values(blockCommands),
  ...Object.values(backupCommands),
  ...Object.values(exportCommands),
  ...Object.values(statsCommands),
  ...Object.values(transportCommands),
);
