/**
 * The `backups` configuration section, declared next to the backup module that reads it
 * (schedule.ts, cli-backup.ts, crypto.ts) and composed into the whole schema by
 * server/config/schema.ts.
 */
import { enumOf, filePath, int, nullable, object, section } from '../../../shared/schema-kit.js';

export const backupsConfigSection = section(
  'backups',
  object(
    {
      keep: int({ default: 7, min: 1, doc: 'How many backups to keep; older ones are deleted.' }),
      dir: filePath({ default: '<dataDir>/backups', doc: 'Where backups are written.' }),
      schedule: enumOf(['daily', 'off'], { default: 'daily', doc: 'When backups are made automatically.' }),
      encryptionKeyFile: nullable(filePath(), {
        default: null,
        doc: 'File with the 32-byte backup key (`gatehouse backup keygen` makes one); `null` = unencrypted backups unless `GATEHOUSE_BACKUP_KEY` or the systemd credential `backup-key` is set (docs/production.md).',
      }),
    },
    { doc: 'Automatic backups of the database.' },
  ),
);
