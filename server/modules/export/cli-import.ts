/**
 * `gatehouse import PATH` (and its older name `user import`): accounts with their data from an
 * XEP-0227 export — Gatehouse's own `user export`, Prosody's prosody-migrator output (a directory
 * of user@host.xml files) or ejabberd's `export_piefxis` (a main file including one file per host).
 * sources.ts reads the files, ejabberd.ts mends what ejabberd writes differently, export.ts checks
 * and writes. `--dry-run` lists what would be created, per account, and never a secret.
 */
import { CONFIG_FLAG, UsageError, configFrom, withStorage, type ParsedArgs } from '../../cli/kit.js';
import type { CommandContext, CommandDefinition } from '../../commands/command.js';
import { normaliseDomain, normaliseLocal, Jid } from '../../../shared/jid.js';
import type { Element } from '../../../shared/xml/element.js';
import { HIDDEN_GROUP } from '../../core/subscription-states.js';
import { accountDataParts, importAccounts, parseExport, planImport, type ImportedUser } from './export.js';
import { readExportSource } from './sources.js';
import { controlRequest } from '../../admin/control.js';
import { fixEjabberdScram } from './ejabberd.js';
import { addVcardTempFromPep, dropEmptyPepConfigFields, pepNodes, type PepNodeSummary } from './prosody.js';

const n = (k: number, what: string, plural = `${what}s`) => `${k} ${k === 1 ? what : plural}`;

/** What an imported account brings, in words (counts and kinds only: no names, no secrets). */
export function describeAccount(u: ImportedUser, pep: PepNodeSummary[]): string {
  const credentials = u.verifiers.map((v) => `SCRAM-${v.hash}`);
  if (u.password !== null) credentials.push('a password (stored as SCRAM verifiers)');
  const parts = [
    credentials.length ? `credentials: ${credentials.join(', ')}` : 'no usable credentials',
    n(u.roster.filter((i) => !i.groups.includes(HIDDEN_GROUP)).length, 'roster item'),
    u.vcard !== null ? 'a vCard' : 'no vCard',
    n(u.privateXml.length, 'private XML item'),
    n(u.offline.length, 'offline message'),
  ];
  if (pep.length) parts.push(`${n(pep.length, 'PEP node')} with ${n(pep.reduce((s, p) => s + p.items, 0), 'item')}`);
  return parts.join('; ');
}

function pepByAccount(document: Element): Map<string, PepNodeSummary[]> {
  const out = new Map<string, PepNodeSummary[]>();
  for (const host of document.elements) {
    const domain = normaliseDomain(host.attrs.jid ?? '');
    for (const user of host.getChildren('user')) {
      const local = normaliseLocal(user.attrs.name ?? '');
      if (domain && local) out.set(`${local}@${domain}`, pepNodes(user));
    }
  }
  return out;
}

async function runImport(args: ParsedArgs, ctx: CommandContext, command: string): Promise<number> {
  const config = configFrom(args);
  const input = args.positional[0];
  if (!input) throw new UsageError('give the export: an XEP-0227 file or a directory of them');
  if (args.positional.length > 1) throw new UsageError(`unexpected argument '${args.positional[1]}' (${command} takes one file or directory)`);
  const flag = args.flags.get('replace-admin');
  if (flag === true || flag === '') throw new UsageError('--replace-admin needs a value (--replace-admin VALUE or --replace-admin=VALUE)');
  const replaceAdmins = (flag ?? '').split(',').map((j) => j.trim()).filter(Boolean);
  for (const j of replaceAdmins) {
    const jid = Jid.tryParse(j);
    if (!jid?.local || jid.resource) throw new UsageError(`--replace-admin: not a bare JID: ${j}`);
    if (!config.admins.includes(jid.bare)) throw new UsageError(`--replace-admin: ${jid.bare} is not an administrator (config admins)`);
  }

  const source = await readExportSource(input);
  const mended = fixEjabberdScram(source.document);
  dropEmptyPepConfigFields(source.document);
  const vcards = addVcardTempFromPep(source.document);
  const parts = accountDataParts(ctx.modules);
  const parsed = parseExport(source.document.toString(), parts);
  const pep = pepByAccount(source.document);
  const read = `read ${n(source.files.length, 'file')} (${source.bytes} bytes) from ${input}`;
  const partial = parsed.users.filter((u) => u.password === null && u.verifiers.length > 0 && config.auth.hashes.some((h) => !u.verifiers.some((v) => v.hash === h)));
  if (partial.length) {
    const names = partial.map((u) => `${u.username}@${u.host}`);
    const has = [...new Set(partial.flatMap((u) => u.verifiers.map((v) => `SCRAM-${v.hash}`)))].join(', ');
    console.error(
      `warning: ${n(partial.length, 'account has', 'accounts have')} credentials only for ${has} (${names.slice(0, 5).join(', ')}${names.length > 5 ? ', …' : ''}): ` +
        (config.auth.offerCoverage > 0
          ? `their hosts offer no stronger SCRAM mechanism than every account can use (auth.offerCoverage ${config.auth.offerCoverage}%), and each account gets the verifiers it lacks when its password is next seen in clear (a PLAIN login over TLS, a password change); gatehouse user hashes counts them; see docs/migration.md`
          : `a client that chooses another offered mechanism (auth.hashes; auth.offerCoverage is 0) fails to log in until the password is seen in clear again; see docs/migration.md`),
    );
  }
  if (vcards) console.error(`note: made the vcard-temp vCard of ${n(vcards, 'account')} from its PEP vCard (XEP-0292) and avatar (XEP-0084), as Prosody's mod_vcard_legacy shows them`);
  if (mended) console.error(`note: decoded the doubly base64-encoded SCRAM credentials of ${n(mended, 'account')} (as ejabberd's export_piefxis writes them)`);
  const opts = { hosts: config.hosts.map((h) => h.domain), admins: config.admins, replaceAdmins, force: args.flags.has('force'), now: new Date(), auth: config.auth };

  if (args.flags.has('dry-run')) {
    const plan = await withStorage(config, ctx, (storage) => planImport(storage, parsed, opts));
    for (const w of parsed.warnings) console.error(`warning: ${w}`);
    console.log(read);
    for (const u of parsed.users) {
      const jid = `${u.username}@${u.host}`;
      const what = describeAccount(u, pep.get(jid) ?? []);
      if (plan.create.includes(jid)) {
        console.log(`would create ${jid}: ${what}`);
        continue;
      }
      const notes = [plan.admins.includes(jid) ? 'an administrator' : '', opts.force ? '' : 'needs --force', plan.adminsNotNamed.includes(jid) ? `needs --replace-admin ${jid}` : ''].filter(Boolean);
      console.log(`would replace ${jid}${notes.length ? ` (${notes.join(', ')})` : ''}: ${what}`);
    }
    console.log(`dry run: nothing was changed (${plan.create.length} to create, ${plan.replace.length} to replace)`);
    return 0;
  }
  const result = await withStorage(config, ctx, (storage) => importAccounts(storage, parsed, opts, parts));
  for (const w of result.warnings) console.error(`warning: ${w}`);
  console.log(read);
  const admins = new Set(config.admins);
  for (const jid of result.replaced) console.log(`replaced ${jid}${admins.has(jid) ? ' (administrator)' : ''}: the existing account and all its data were deleted and imported from the file`);
  for (const jid of result.imported) if (!result.replaced.includes(jid)) console.log(`created ${jid}`);
  console.log(`imported ${n(result.imported.length, 'account')}: ${result.replaced.length} replaced, ${result.imported.length - result.replaced.length} created`);
  // A running server chooses its SCRAM mechanisms from the stored verifiers: it counts again now.
  await controlRequest(config.dataDir, 'accounts.recount', {}, 5000).catch(() => undefined);
  return 0;
}

/** The import command under a name (`import`, and `user import` as it was called before). */
export function importCommand(name: string, summary: string): CommandDefinition {
  return {
    name,
    summary,
    args: [{ name: 'PATH', doc: "an XEP-0227 file (with the files it includes by XInclude) or a directory of them: Gatehouse's user export, Prosody's prosody-migrator output, ejabberd's export_piefxis directory" }],
    flags: [
      CONFIG_FLAG,
      { name: 'dry-run', type: 'boolean', doc: 'only list what would be created and replaced, with what each account brings' },
      { name: 'force', type: 'boolean', doc: 'replace existing accounts: each is deleted with all its data, then imported' },
      { name: 'replace-admin', type: 'string', value: 'USER@DOMAIN[,...]', doc: 'also replace these administrators (config admins); each must be named' },
    ],
    server: 'no',
    run: (args, ctx) => runImport(args, ctx, name),
  };
}
