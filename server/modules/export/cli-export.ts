/**
 * `gatehouse user export` / `user import` (P23): accounts with their data as XEP-0227 XML.
 */
import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { CONFIG_FLAG, UsageError, commandSet, configFrom, withStorage, type ParsedArgs } from '../../cli/kit.js';
import type { Config } from '../../config/index.js';
import { Jid } from '../../../shared/jid.js';
import { ExportError, exportAccounts, importAccounts, parseExport, planImport, renderExport } from './export.js';
import { usageLine } from '../../commands/help.js';

/** A value flag (`--out FILE` or `--out=FILE`); the kit's parser already took its value. */
function flagValue(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags.get(name);
  if (v === undefined) return undefined;
  if (v === true || v === '') throw new UsageError(`--${name} needs a value (--${name} VALUE or --${name}=VALUE)`);
  return v;
}

function noExtra(args: ParsedArgs, expected: number, command: string): void {
  if (args.positional.length > expected) throw new UsageError(`unexpected argument '${args.positional[expected]}' (usage: ${usageLine(exportCommands[command]!)})`);
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
    async run(args) {
      const config = configFrom(args);
      const out = flagValue(args, 'out');
      if (args.positional.length === 0) throw new UsageError('give at least one account (user@domain)');
      const accounts = args.positional.map((a) => accountOf(a, config));
      const xml = await withStorage(config, async (storage) => renderExport(await exportAccounts(storage, accounts, [])));
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
  {
    name: 'user import',
    summary: "create accounts with their data from an XEP-0227 file (--dry-run: only list; existing accounts only with --force, administrators' only with --replace-admin)",
    args: [{ name: 'FILE', doc: 'an XEP-0227 file, e.g. from gatehouse user export' }],
    flags: [
      CONFIG_FLAG,
      { name: 'dry-run', type: 'boolean', doc: 'only list what would be created and replaced' },
      { name: 'force', type: 'boolean', doc: 'replace existing accounts: each is deleted with all its data, then imported' },
      { name: 'replace-admin', type: 'string', value: 'USER@DOMAIN[,...]', doc: 'also replace these administrators (config admins); each must be named' },
    ],
    server: 'no',
    async run(args) {
      const config = configFrom(args);
      const file = args.positional[0];
      if (!file) throw new UsageError('give the XEP-0227 file');
      noExtra(args, 1, 'user import');
      const replaceAdmins = (flagValue(args, 'replace-admin') ?? '').split(',').map((j) => j.trim()).filter(Boolean);
      for (const j of replaceAdmins) {
        const jid = Jid.tryParse(j);
        if (!jid?.local || jid.resource) throw new UsageError(`--replace-admin: not a bare JID: ${j}`);
        if (!config.admins.includes(jid.bare)) throw new UsageError(`--replace-admin: ${jid.bare} is not an administrator (config admins)`);
      }
      let data: Buffer;
      try {
        data = await readFile(file);
      } catch (err) {
        throw new ExportError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
      }
      const parsed = parseExport(data, []);
      const opts = { hosts: config.hosts.map((h) => h.domain), admins: config.admins, replaceAdmins, force: args.flags.has('force'), now: new Date(), auth: config.auth };
      if (args.flags.has('dry-run')) {
        const plan = await withStorage(config, (storage) => planImport(storage, parsed, opts));
        for (const w of parsed.warnings) console.error(`warning: ${w}`);
        for (const jid of plan.create) console.log(`would create ${jid}`);
        for (const jid of plan.replace) {
          const notes = [plan.admins.includes(jid) ? 'an administrator' : '', opts.force ? '' : 'needs --force', plan.adminsNotNamed.includes(jid) ? `needs --replace-admin ${jid}` : ''].filter(Boolean);
          console.log(`would replace ${jid}${notes.length ? ` (${notes.join(', ')})` : ''}`);
        }
        console.log(`dry run: nothing was changed (${plan.create.length} to create, ${plan.replace.length} to replace)`);
        return 0;
      }
      const result = await withStorage(config, (storage) => importAccounts(storage, parsed, opts, []));
      for (const w of result.warnings) console.error(`warning: ${w}`);
      const admins = new Set(config.admins);
      for (const jid of result.replaced) console.log(`replaced ${jid}${admins.has(jid) ? ' (administrator)' : ''}: the existing account and all its data were deleted and imported from the file`);
      for (const jid of result.imported) if (!result.replaced.includes(jid)) console.log(`created ${jid}`);
      const n = (k: number, what: string) => `${k} ${what}${k === 1 ? '' : 's'}`;
      console.log(`imported ${n(result.imported.length, 'account')}: ${result.replaced.length} replaced, ${result.imported.length - result.replaced.length} created`);
      return 0;
    },
  },
);
