/**
 * `gatehouse user export` / `import` (P23): accounts with their data as XEP-0227 XML; the import
 * itself is in cli-import.ts.
 */
import { writeFileSync } from 'node:fs';
import { CONFIG_FLAG, UsageError, commandSet, configFrom, withStorage, type ParsedArgs } from '../../cli/kit.js';
import type { Config } from '../../config/index.js';
import { Jid } from '../../../shared/jid.js';
import { ExportError, accountDataParts, exportAccounts, renderExport } from './export.js';
import { importCommand } from './cli-import.js';

/** A value flag (`--out FILE` or `--out=FILE`); the kit's parser already took its value. */
function flagValue(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags.get(name);
  if (v === undefined) return undefined;
  if (v === true || v === '') throw new UsageError(`--${name} needs a value (--${name} VALUE or --${name}=VALUE)`);
  return v;
}

function accountOf(arg: string, config: Config): { username: string; host: string } {
  const jid = Jid.tryParse(arg.includes('@') ? arg : `${arg}@${config.hosts[0]!.domain}`);
  if (!jid || !jid.local || jid.resource) throw new UsageError(`not a bare JID: ${arg}`);
  return { username: jid.local, host: jid.domain };
}

export const exportCommands = commandSet(
  {
    name: 'user export',
    summary: "write accounts' data as XEP-0227 XML (credentials as SCRAM verifiers only) to a file or standard output",
    args: [{ name: 'USER@DOMAIN', doc: 'the accounts to export', variadic: true }],
    flags: [
      CONFIG_FLAG,
      { name: 'out', type: 'string', value: 'FILE', doc: 'write to FILE (mode 0600) instead of standard output; - is standard output' },
      { name: 'force', type: 'boolean', doc: 'overwrite an existing --out file' },
    ],
    server: 'no',
    async run(args, ctx) {
      const config = configFrom(args);
      const out = flagValue(args, 'out');
      if (args.positional.length === 0) throw new UsageError('give at least one account (user@domain)');
      const accounts = args.positional.map((a) => accountOf(a, config));
      const xml = await withStorage(config, ctx, async (storage) => renderExport(await exportAccounts(storage, accounts, accountDataParts(ctx.modules))));
      if (!out || out === '-') {
        process.stdout.write(xml);
        return 0;
      }
      try {
        writeFileSync(out, xml, { flag: args.flags.has('force') ? 'w' : 'wx', mode: 0o600 });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new ExportError(code === 'EEXIST' ? `${out} already exists (use --force to overwrite)` : `cannot write ${out}: ${code ?? 'error'}`);
      }
      console.error(`exported ${accounts.length} account(s) to ${out}`);
      return 0;
    },
  },
  importCommand(
    'user import',
    "the same as gatehouse import: create accounts with their data from an XEP-0227 export (--dry-run: only list; existing accounts only with --force, administrators' only with --replace-admin)",
  ),
  importCommand(
    'import',
    "create accounts with their data from an XEP-0227 export of Gatehouse, Prosody or ejabberd, a file (with its XIncludes) or a directory (--dry-run: only list; existing accounts only with --force, administrators' only with --replace-admin)",
  ),
);
