/**
 * The server's log files (PRIVACY.md P13): the rotation itself lives in shared/rotating-log-file.ts
 * (transports use it too; main.ts opens the file); this module owns the retention class that deletes
 * expired rotated files, so `gatehouse retention run` deletes them even while the server is stopped.
 */
import path from 'node:path';
import type { GatehouseModule } from '../../core/context.js';
import type { RetentionClass } from '../../core/retention-class.js';
import { deleteExpiredLogFiles } from '../../../shared/rotating-log-file.js';
import { formatDurationWords } from '../../../shared/format.js';

export * from '../../../shared/rotating-log-file.js';

const logFilesClass: RetentionClass = {
  name: 'log-files',
  clause: 'P13',
  describe: (config) =>
    config.log.file ? `rotated log files (${path.basename(config.log.file)}.DATE) older than ${formatDurationWords(config.retention.detailedLogs)}` : 'no log files (log.file is not set)',
  async run(env, now, { dryRun }) {
    const file = env.config.log.file;
    if (!file) return 0;
    return deleteExpiredLogFiles(file, env.config.retention.detailedLogs, now, dryRun);
  },
};

/** Nothing to do at load: the module is here to own the log files' retention. */
export function createLogFilesModule(): GatehouseModule {
  return { name: 'log-files', specs: [], clauses: ['P13'], retention: [logFilesClass], load() {} };
}
