/**
 * `gatehouse policy ...`: the generated privacy policy (P22) on the command line.
 *
 *   policy render    the version in force (with any announced change), or --draft: what the
 *                    configuration would publish
 *   policy announce  store the configuration's policy as a new version with its effective date
 *   policy list      every stored version and its state
 *   policy check     what a start with this configuration would hold back (P22)
 */
import { CONFIG_FLAG, UsageError, commandSet, configFrom, withStorage, type ParsedArgs } from '../../cli/kit.js';
import type { Config } from '../../config/index.js';
import { systemClock } from '../../../shared/clock.js';
import { policyFromConfig, renderView, type Lang, type PolicyView } from './render.js';
import { dateEn } from './format.js';
import { PolicyChangeError, earliestEffectiveDay, inForce, upcoming, viewAt } from './versions.js';
import { holdBackReport } from './holdback.js';
import { AnnounceError, announcePolicy } from './announce.js';

/**
 * Flags that take a value. The CLI parses them by the definitions, so values arrive as strings;
 * a parse without a definition (`parseArgs(argv)`) may leave `--lang de` as flag `lang` = true
 * plus a positional 'de': this takes such values back from the positionals, in order (these
 * commands have no positionals of their own).
 */
function flagValues(args: ParsedArgs, names: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  const rest = [...args.positional];
  for (const [name, value] of args.flags) {
    if (!names.includes(name)) continue;
    if (typeof value === 'string') out.set(name, value);
    else {
      const next = rest.shift();
      if (next === undefined) throw new UsageError(`--${name} needs a value`);
      out.set(name, next);
    }
  }
  if (rest.length) throw new UsageError(`unexpected argument: ${rest[0]}`);
  return out;
}

function langOf(v: string | undefined, config: Config): Lang {
  if (v === undefined) return config.policy.language;
  if (v !== 'de' && v !== 'en') throw new UsageError(`--lang: expected de or en, got ${v}`);
  return v;
}

function formatOf(v: string | undefined): 'md' | 'html' {
  if (v === undefined) return 'md';
  if (v !== 'md' && v !== 'html') throw new UsageError(`--format: expected md or html, got ${v}`);
  return v;
}

function draftView(config: Config): PolicyView {
  const { texts } = policyFromConfig(config);
  const now = systemClock.now();
  return { current: { id: null, effectiveAt: now, announcedAt: now, technicalReason: null, texts }, upcoming: [] };
}

export const policyCommands = commandSet(
  {
    name: 'policy render',
    summary: 'print the privacy policy in force (--draft: as the configuration would publish it)',
    description: 'The version in force, with any announced change after it. Before the first start stored a version, the draft is printed with a note.',
    flags: [
      CONFIG_FLAG,
      { name: 'lang', type: 'string', value: 'de|en', doc: 'the language', default: 'policy.language of the configuration' },
      { name: 'format', type: 'string', value: 'md|html', doc: 'Markdown or a complete HTML page', default: 'md' },
      { name: 'draft', type: 'boolean', doc: 'print what the configuration would publish, not the stored version' },
    ],
    server: 'no',
    async run(args, ctx) {
      const values = flagValues(args, ['lang', 'format']);
      const config = configFrom(args);
      const lang = langOf(values.get('lang'), config);
      const format = formatOf(values.get('format'));
      if (!config.policy.contact) process.stderr.write('note: policy.contact is not set, so the policy names no way to reach the operator\n');
      let view: PolicyView;
      if (args.flags.has('draft')) view = draftView(config);
      else {
        const versions = await withStorage(config, ctx, (s) => s.policyVersions.list());
        const found = viewAt(versions, systemClock.now());
        if (found) view = found;
        else {
          process.stderr.write('note: no policy version is stored yet; this is what the server will publish on its first start\n');
          view = draftView(config);
        }
      }
      process.stdout.write(renderView(view, lang, format));
      return 0;
    },
  },
  {
    name: 'policy announce',
    summary: 'announce the policy of this configuration, in force from a date at least 28 days ahead',
    description: 'Stores the policy the configuration renders as a new version. Users are told (within a minute on a running server); the previous version stays in force until the date.',
    flags: [
      { name: 'effective', type: 'string', value: 'YYYY-MM-DD', doc: 'the day the new version takes effect: at least 28 days ahead, unless --technical is given', required: true },
      { name: 'technical', type: 'string', value: 'REASON', doc: 'a change on shorter notice for a technical reason: it may take effect from today; the reason is stored with the version' },
      CONFIG_FLAG,
    ],
    server: 'no',
    async run(args, ctx) {
      const values = flagValues(args, ['effective', 'technical']);
      const effective = values.get('effective');
      if (!effective) throw new UsageError(`--effective YYYY-MM-DD is required (${earliestEffectiveDay(systemClock.now())} at the earliest without --technical)`);
      const config = configFrom(args);
      try {
        const result = await withStorage(config, ctx, (s) => announcePolicy(s, config, { effective, technical: values.get('technical') ?? null, now: systemClock.now() }));
        const v = result.version;
        if (result.first) console.log(`no policy was stored yet: stored this one as version ${v.id}, in force now`);
        else {
          console.log(`announced privacy policy version ${v.id}, in force from ${v.effectiveAt.toISOString()}${v.technicalReason ? ' (technical change)' : ''}`);
          console.log(`changes: ${result.changes.join('; ')}`);
          console.log(
            'The previous version stays in force until that date: what this configuration holds back comes into force then, on a running server without a restart; users are told (within a minute on a running server).',
          );
        }
        return 0;
      } catch (err) {
        if (err instanceof AnnounceError) {
          console.error(`gatehouse policy announce: ${err.message}`);
          return 1;
        }
        throw err;
      }
    },
  },
  {
    name: 'policy list',
    summary: 'list the stored privacy policy versions',
    description: 'One line per version: its number, state (in force, announced, superseded, past), dates and hash, and whether it matches this configuration.',
    flags: [CONFIG_FLAG],
    server: 'no',
    async run(args, ctx) {
      flagValues(args, []);
      const config = configFrom(args);
      const versions = await withStorage(config, ctx, (s) => s.policyVersions.list());
      const now = systemClock.now();
      const current = inForce(versions, now);
      const coming = new Set(upcoming(versions, now).map((v) => v.id));
      const configHash = policyFromConfig(config).hash;
      for (const v of versions) {
        const state =
          v.id === current?.id ? 'in force' : coming.has(v.id) ? 'announced' : v.effectiveAt.getTime() > now.getTime() || (current && v.id > current.id) ? 'superseded' : 'past';
        const parts = [`${v.id}`, state, `effective ${dateEn(v.effectiveAt)}`, `announced ${dateEn(v.announcedAt)}`, `hash ${v.hash.slice(0, 12)}`];
        if (v.hash === configHash) parts.push('matches this configuration');
        if (v.technicalReason) parts.push(`technical: ${v.technicalReason}`);
        console.log(parts.join('\t'));
      }
      if (versions.length === 0) console.log('no policy version stored yet (the first start of the server stores one)');
      return 0;
    },
  },
  {
    name: 'policy check',
    summary: 'check what a start would hold back until its privacy policy change takes effect',
    description:
      'Lists the parts of the configuration that would change the published policy and are held back until an announced version allowing them takes effect (P22), and the changes that only narrow it (in force at once). Exit code 0 when the server would start, 1 when it could not (no configured host is in the policy in force).',
    flags: [CONFIG_FLAG],
    server: 'no',
    async run(args, ctx) {
      flagValues(args, []);
      const config = configFrom(args);
      const versions = await withStorage(config, ctx, (s) => s.policyVersions.list());
      const current = policyFromConfig(config);
      const match = [...versions].reverse().find((v) => v.hash === current.hash);
      if (match) console.log(`the configuration renders policy version ${match.id}${match.id === versions.at(-1)!.id ? '' : ` (not the latest, ${versions.at(-1)!.id})`}`);
      try {
        for (const line of holdBackReport(config, versions, systemClock.now())) console.log(line);
        return 0;
      } catch (err) {
        if (!(err instanceof PolicyChangeError)) throw err;
        console.error(`gatehouse policy check: ${err.message}`);
        return 1;
      }
    },
  },
);
