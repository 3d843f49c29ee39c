/** Every command of the `gatehouse` CLI, in the order of the command list; features add theirs here. */
import { commandSet } from '../commands/command.js';
import { coreCommands } from './core.js';
import { policyCommands } from '../privacy/cli-policy.js';
import { privacyCommands } from '../privacy/cli-privacy.js';
import { backupCommands } from '../privacy/cli-backup.js';
import { statsCommands } from '../privacy/cli-stats.js';
import { transportCommands } from '../../transports/cli-transport.js';

export const commands = commandSet(
  ...Object.values(coreCommands),
  ...Object.values(policyCommands),
  ...Object.values(privacyCommands),
  ...Object.values(backupCommands),
  ...Object.values(statsCommands),
  ...Object.values(transportCommands),
);
