/**
 * `gatehouse backup` and `gatehouse restore` (P14).
 *
 * Keys for encrypted backups: --key-file FILE, else GATEHOUSE_BACKUP_KEY (64 hex digits or base64
 * of 32 bytes), else the configured backups.encryptionKeyFile. Without a key, backups are written
 * unencrypted (with a warning): they hold everything the server stores.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { CONFIG_FLAG, UsageError, commandSet, configFrom, type FlagDefinition, type ParsedArgs } from '../../cli/kit.js';
import type { Config } from '../../config/index.js';
import { BACKUP_KEY_ENV, BackupError, generateBackupKeyText, loadBackupKey } from './crypto.js';
import { Progress } from './progress.js';
import { createBackup } from './backup.js';
import { listBackups, rotateBackups } from './files.js';
import { readBackupInfo, verifyBackup } from './format.js';
import { restoreBackup } from './restore.js';
import { migrations } from '../../../storage/migrations/index.js';
import { formatBytes } from '../../../shared/format.js';
import { usageLine } from '../../commands/help.js';

/** A value flag (`--out FILE` or `--out=FILE`); the kit's parser already took its value. */
function flagValue(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags.get(name);
  if (v === undefined) return undefined;
  if (v === true || v === '') throw new UsageError(`--${name} needs a value (--${name} VALUE or --${name}=VALUE)`);
  return v;
}

function keyFrom(args: ParsedArgs, config: Config | null): Buffer | null {
  return loadBackupKey({ keyFile: flagValue(args, 'key-file') ?? null, config });
}

function progressFor(args: ParsedArgs): Progress {
  return args.flags.has('quiet') ? Progress.disabled() : new Progress();
}

function noExtra(args: ParsedArgs, expected: number, command: string): void {
  if (args.positional.length > expected) throw new UsageError(`unexpected argument '${args.positional[expected]}' (usage: ${usageLine(backupCommands[command]!)})`);
}


const KEY_FILE: FlagDefinition = {
  name: 'key-file',
  type: 'string',
  value: 'FILE',
  doc: `the backup key (from gatehouse backup keygen); else ${BACKUP_KEY_ENV} (64 hex digits or base64 of 32 bytes), else the systemd credential backup-key, else backups.encryptionKeyFile of the configuration`,
};
const QUIET: FlagDefinition = { name: 'quiet', type: 'boolean', doc: 'no progress on standard error' };
const BACKUP_FILE = { name: 'BACKUP-FILE', doc: 'a file written by gatehouse backup' };

export const backupCommands = commandSet(
  {
    name: 'backup',
    summary: 'back up the whole database (compressed; encrypted with a key); keeps backups.keep newest in backups.dir',
    description: `Without a key the backup is written unencrypted, with a warning: it holds everything the server stores. Without --out it goes to backups.dir and older backups beyond backups.keep are removed.`,
    flags: [
      CONFIG_FLAG,
      { name: 'out', type: 'string', value: 'FILE', doc: 'write the backup to FILE instead of backups.dir (no rotation)' },
      KEY_FILE,
      QUIET,
    ],
    server: 'no',
    async run(args) {
      const config = configFrom(args);
      const out = flagValue(args, 'out');
      const key = keyFrom(args, config);
      noExtra(args, 0, 'backup');
      if (!key) console.error(`warning: this backup is not encrypted (set ${BACKUP_KEY_ENV} or use --key-file; see gatehouse backup keygen)`);
      const result = await createBackup({ storage: config.storage, file: out, dir: config.backups.dir, key, progress: progressFor(args) });
      console.log(`backup written: ${result.file} (${formatBytes(result.bytes)}, ${key ? 'encrypted' : 'not encrypted'})`);
      if (!out) {
        const removed = await rotateBackups(config.backups.dir, config.backups.keep);
        for (const f of removed) console.log(`removed old backup ${path.basename(f)}`);
      }
      return 0;
    },
  },
  {
    name: 'backup verify',
    summary: 'read a whole backup file and check that it is complete and unchanged',
    args: [BACKUP_FILE],
    flags: [KEY_FILE, { ...CONFIG_FLAG, doc: 'the configuration whose backups.encryptionKeyFile holds the key (read only when given)' }, QUIET],
    server: 'no',
    async run(args) {
      const key = keyFrom(args, args.flags.has('config') ? configFrom(args) : null);
      const file = args.positional[0];
      if (!file) throw new UsageError('give the backup file');
      noExtra(args, 1, 'backup verify');
      const { info, dumpBytes } = await verifyBackup(file, key, progressFor(args));
      console.log(`${file}: OK, ${info.header.kind} backup of ${info.header.createdAt}, ${info.encrypted ? 'encrypted' : 'not encrypted'}, ${formatBytes(dumpBytes)} of data`);
      return 0;
    },
  },
  {
    name: 'backup list',
    summary: 'list the backups in backups.dir, oldest first',
    description: 'One line per file: time, size, kind (or damaged), whether encrypted, and the path.',
    flags: [CONFIG_FLAG],
    server: 'no',
    async run(args) {
      const config = configFrom(args);
      const list = await listBackups(config.backups.dir);
      if (list.length === 0) console.log(`no backups in ${config.backups.dir}`);
      for (const b of list) {
        let kind = '?';
        let encrypted = '?';
        try {
          const info = await readBackupInfo(b.file);
          kind = info.header.kind;
          encrypted = info.encrypted ? 'encrypted' : 'not encrypted';
        } catch (err) {
          kind = err instanceof BackupError ? 'damaged' : '?';
        }
        console.log(`${b.createdAt.toISOString()}\t${formatBytes(b.bytes)}\t${kind}\t${encrypted}\t${b.file}`);
      }
      return 0;
    },
  },
  {
    name: 'backup keygen',
    summary: `make a new random backup key (a file readable by its owner only, or standard output for ${BACKUP_KEY_ENV})`,
    description: 'An existing key file is never overwritten: the backups made with it need it.',
    flags: [{ name: 'out', type: 'string', value: 'FILE', doc: 'write the key to FILE (mode 0600) instead of standard output' }],
    server: 'no',
    async run(args) {
      const out = flagValue(args, 'out');
      noExtra(args, 0, 'backup keygen');
      const text = generateBackupKeyText();
      if (!out) {
        process.stdout.write(text);
        return 0;
      }
      try {
        writeFileSync(out, text, { flag: 'wx', mode: 0o600 });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new BackupError(code === 'EEXIST' ? `${out} already exists: a key is never overwritten (backups made with it need it)` : `cannot write ${out}: ${code ?? 'error'}`);
      }
      console.log(`backup key written to ${out}: keep a copy somewhere safe, away from the backups`);
      return 0;
    },
  },
  {
    name: 'restore',
    summary: 'restore a backup into the configured (empty) database; the server must be stopped',
    description: 'Migrations the backup predates are applied by gatehouse migrate or at the next start.',
    args: [BACKUP_FILE],
    flags: [CONFIG_FLAG, { name: 'force', type: 'boolean', doc: 'restore into a database that is not empty: everything in it is wiped first' }, KEY_FILE, QUIET],
    server: 'no',
    async run(args) {
      const config = configFrom(args);
      const key = keyFrom(args, config);
      const file = args.positional[0];
      if (!file) throw new UsageError('give the backup file');
      noExtra(args, 1, 'restore');
      const result = await restoreBackup(file, {
        storage: config.storage,
        dataDir: config.dataDir,
        key,
        force: args.flags.has('force'),
        progress: progressFor(args),
      });
      console.log(`restored the backup of ${result.header.createdAt} (${result.tables} tables) into the ${config.storage.type} database`);
      const known = new Set(migrations.map((m) => new m().name));
      const applied = result.header.migrations ?? [];
      const unknown = applied.filter((m) => !known.has(m));
      const pending = [...known].filter((m) => !applied.includes(m));
      if (unknown.length) console.error(`warning: the backup was made by a newer Gatehouse (unknown migrations: ${unknown.join(', ')}): run that version`);
      else if (pending.length && result.header.migrations) console.error(`note: the backup predates ${pending.length} migration(s); they are applied by gatehouse migrate or at the next start`);
      return 0;
    },
  },
);
