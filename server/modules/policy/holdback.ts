/**
 * Holding back (P22): a configuration whose privacy policy differs from the version in force does
 * not stop the server. Each policy fact that changed is decided on its own:
 *
 * - a change that widens what happens to users' data (a new host, gateway or administrator,
 *   federation turned on or its allow-list widened, a longer retention period, weaker encryption
 *   requirements, ...) is held back: the value of the version in force stays in force until an
 *   announced version that allows the configured value takes effect (its effective date, at once
 *   for a technical announcement);
 * - a change that only narrows it (a gateway or host removed, a shorter retention period,
 *   federation turned off, stricter encryption) is in force at once: the published policy is still
 *   true, as an upper bound, until a new version is announced.
 *
 * The result is the configuration in force: the file's, with the held-back facts set to the
 * values in force. The rules are one per fact of versions.ts (FACT_KEYS), each saying when a change
 * widens and how the value in force is kept.
 */
import type { Config } from '../../config/index.js';
import { factsFromConfig, type PolicyFacts } from './facts.js';
import { describeChanges, earliestEffectiveDay, factChanges, inForce, parseDocument, upcoming, PolicyChangeError, type FactChange, type PolicyVersion } from './versions.js';

interface Rule {
  /** Whether going from the value in force to the configured one widens the policy (so it is held back). */
  widens(inForce: PolicyFacts, configured: PolicyFacts): boolean;
  /** `config` with this fact at its value in force. */
  keep(config: Config, inForce: PolicyFacts): Config;
}

const added = (before: readonly string[], after: readonly string[]): string[] => after.filter((v) => !before.includes(v));
const longer = (before: number | null, after: number | null): boolean => before !== null && (after === null || after > before);

/** Per fact (the keys of versions.ts), when a change is held back. */
export const RULES: Readonly<Record<string, Rule>> = {
  hosts: {
    widens: (f0, f1) => added(f0.hosts, f1.hosts).length > 0,
    keep: (c, f0) => {
      const hosts = c.hosts.filter((h) => f0.hosts.includes(h.domain));
      if (hosts.length === 0) {
        throw new PolicyChangeError(
          `none of the configured hosts is in the privacy policy in force (${f0.hosts.join(', ')}), so there is nothing to serve until the change is in force: ` +
            'announce it (gatehouse policy announce --effective YYYY-MM-DD, or --technical REASON for today), or keep a host of the policy in force in the configuration',
        );
      }
      return { ...c, hosts };
    },
  },
  // The contact changes nothing that happens to data: in force at once (XEP-0157 shows it), while the
  // published policy names the old one until a new version is announced.
  'policy.contact': { widens: () => false, keep: (c) => c },
  // The policy states how many administrators there are: the first ones listed, as many as the
  // version in force states, are administrators; the others wait.
  admins: {
    widens: (f0, f1) => f1.adminCount > f0.adminCount,
    keep: (c, f0) => ({ ...c, admins: c.admins.slice(0, f0.adminCount) }),
  },
  'auth.hashes': {
    widens: (f0, f1) => added(f0.passwordHashes, f1.passwordHashes).length > 0,
    keep: (c, f0) => ({ ...c, auth: { ...c.auth, hashes: [...f0.passwordHashes] as Config['auth']['hashes'] } }),
  },
  'c2s.allowPlain': {
    widens: (f0, f1) => !f0.allowPlain && f1.allowPlain,
    keep: (c) => ({ ...c, c2s: { ...c.c2s, allowPlain: false } }),
  },
  'c2s.requireEncryption': {
    widens: (f0, f1) => f0.clientTlsRequired && !f1.clientTlsRequired,
    keep: (c) => ({ ...c, c2s: { ...c.c2s, requireEncryption: true } }),
  },
  'tls.minVersion': {
    widens: (f0, f1) => f1.tlsMinVersion < f0.tlsMinVersion,
    keep: (c, f0) => ({ ...c, tls: { ...c.tls, minVersion: `TLSv${f0.tlsMinVersion}` as Config['tls']['minVersion'] } }),
  },
  // Either way: longer keeps data longer, shorter deletes accounts users were told would be kept.
  'retention.inactiveAccounts': {
    widens: (f0, f1) => f0.retention.inactiveAccounts !== f1.retention.inactiveAccounts,
    keep: (c, f0) => ({ ...c, retention: { ...c.retention, inactiveAccounts: f0.retention.inactiveAccounts } }),
  },
  // A shorter warning gives users less notice before their account is deleted.
  'retention.inactiveWarning': {
    widens: (f0, f1) => f1.retention.inactiveWarning < f0.retention.inactiveWarning,
    keep: (c, f0) => ({ ...c, retention: { ...c.retention, inactiveWarning: f0.retention.inactiveWarning } }),
  },
  'retention.offlineMessages': {
    widens: (f0, f1) => longer(f0.retention.offlineMessages, f1.retention.offlineMessages),
    keep: (c, f0) => ({ ...c, retention: { ...c.retention, offlineMessages: f0.retention.offlineMessages } }),
  },
  'retention.detailedLogs': {
    widens: (f0, f1) => longer(f0.retention.detailedLogs, f1.retention.detailedLogs),
    keep: (c, f0) => ({ ...c, retention: { ...c.retention, detailedLogs: f0.retention.detailedLogs } }),
  },
  'retention.statistics': {
    widens: (f0, f1) => longer(f0.retention.statistics, f1.retention.statistics),
    keep: (c, f0) => ({ ...c, retention: { ...c.retention, statistics: f0.retention.statistics } }),
  },
  // A version stored before uploads existed does not mention them: offering them widens it.
  'upload.enabled': {
    widens: (f0, f1) => !f0.uploads && f1.uploads === true,
    keep: (c) => ({ ...c, upload: { ...c.upload, enabled: false } }),
  },
  // Files kept longer widen; a version that names no upload retention cannot allow uploads at all.
  'retention.uploads': {
    widens: (f0, f1) => f1.retention.uploads !== undefined && (f0.retention.uploads === undefined || f1.retention.uploads > f0.retention.uploads),
    keep: (c, f0) =>
      f0.retention.uploads === undefined
        ? { ...c, upload: { ...c.upload, enabled: false } }
        : { ...c, retention: { ...c.retention, uploads: f0.retention.uploads } },
  },
  // A version that does not mention group chats (or one stored before they existed) cannot allow them.
  'muc.enabled': {
    widens: (f0, f1) => f0.groupChats === undefined && f1.groupChats !== undefined,
    keep: (c) => ({ ...c, muc: { ...c.muc, enabled: false } }),
  },
  'muc.historyMaxAge': {
    widens: (f0, f1) => f0.groupChats !== undefined && f1.groupChats !== undefined && f1.groupChats.historyMaxAge > f0.groupChats.historyMaxAge,
    keep: (c, f0) => ({ ...c, muc: { ...c.muc, historyMaxAge: f0.groupChats!.historyMaxAge } }),
  },
  'muc.unusedRooms': {
    widens: (f0, f1) => f0.groupChats !== undefined && f1.groupChats !== undefined && f1.groupChats.unusedRooms > f0.groupChats.unusedRooms,
    keep: (c, f0) => ({ ...c, muc: { ...c.muc, unusedRooms: f0.groupChats!.unusedRooms } }),
  },
  // A version that does not mention PEP subscriptions (or one stored before they existed) cannot allow storing them.
  'pep.subscriptions': {
    widens: (f0, f1) => f0.pepSubscriptions === undefined && f1.pepSubscriptions !== undefined,
    keep: (c) => ({ ...c, pep: { ...c.pep, subscriptions: false } }),
  },
  'pep.remoteSubscriptionLifetime': {
    widens: (f0, f1) => f0.pepSubscriptions !== undefined && f1.pepSubscriptions !== undefined && f1.pepSubscriptions.remoteLifetime > f0.pepSubscriptions.remoteLifetime,
    keep: (c, f0) => ({ ...c, pep: { ...c.pep, remoteSubscriptionLifetime: f0.pepSubscriptions!.remoteLifetime } }),
  },
  'offline.maxPerUser': {
    widens: (f0, f1) => f1.offlineMaxPerUser > f0.offlineMaxPerUser,
    keep: (c, f0) => ({ ...c, offline: { ...c.offline, maxPerUser: f0.offlineMaxPerUser } }),
  },
  'backups.schedule': {
    widens: (f0, f1) => f0.backups.schedule === 'off' && f1.backups.schedule !== 'off',
    keep: (c, f0) => ({ ...c, backups: { ...c.backups, schedule: f0.backups.schedule } }),
  },
  'backups.keep': {
    widens: (f0, f1) => f1.backups.keep > f0.backups.keep,
    keep: (c, f0) => ({ ...c, backups: { ...c.backups, keep: f0.backups.keep } }),
  },
  components: {
    widens: (f0, f1) => added(f0.gateways, f1.gateways).length > 0,
    keep: (c, f0) => ({ ...c, components: c.components.filter((x) => f0.gateways.includes(x.domain)) }),
  },
  'listen.s2s': {
    widens: (f0, f1) => !f0.federation.enabled && f1.federation.enabled,
    keep: (c) => ({ ...c, listen: { ...c.listen, s2s: [] } }),
  },
  's2s.requireEncryption': {
    widens: (f0, f1) => f0.federation.requireEncryption && !f1.federation.requireEncryption,
    keep: (c) => ({ ...c, s2s: { ...c.s2s, requireEncryption: true } }),
  },
  's2s.requireValidCertificates': {
    widens: (f0, f1) => f0.federation.requireValidCertificates && !f1.federation.requireValidCertificates,
    keep: (c) => ({ ...c, s2s: { ...c.s2s, requireValidCertificates: true } }),
  },
  // An empty list allows every domain: emptying a list widens it, a list where there was none narrows it.
  's2s.allow': {
    widens: (f0, f1) => f0.federation.allow.length > 0 && (f1.federation.allow.length === 0 || added(f0.federation.allow, f1.federation.allow).length > 0),
    keep: (c, f0) => {
      const both = c.s2s.allow.filter((d) => f0.federation.allow.includes(d));
      return { ...c, s2s: { ...c.s2s, allow: both.length ? both : [...f0.federation.allow] } };
    },
  },
};

/** A part of the configuration held back. */
export interface HeldPart {
  /** The configuration key, e.g. `components`. */
  key: string;
  /** For the operator: `components: — → irc.localhost` (the value in force → the configured one). */
  change: string;
  /** When it comes into force: the effective date of the announced version allowing it; null when none is announced. */
  until: Date | null;
  /** That version's technical reason, if it was announced as technical. */
  technical: string | null;
}

export interface HoldBackResult {
  /** The configuration in force. */
  config: Config;
  held: HeldPart[];
  /** Changes against the version in force that are in force at once (narrowing), for the operator. */
  inForceAtOnce: string[];
  /** The version in force. */
  version: PolicyVersion;
}

function apply(file: Config, inForceFacts: PolicyFacts): { config: Config; held: FactChange[]; narrowing: FactChange[] } {
  const configured = factsFromConfig(file);
  let config = file;
  const held: FactChange[] = [];
  const narrowing: FactChange[] = [];
  for (const change of factChanges(inForceFacts, configured)) {
    const rule = RULES[change.key];
    // Every fact has a rule (a unit test checks); an unknown one is held back rather than guessed.
    if (!rule) throw new Error(`no hold-back rule for policy fact ${change.key}`);
    if (rule.widens(inForceFacts, configured)) {
      held.push(change);
      config = rule.keep(config, inForceFacts);
    } else narrowing.push(change);
  }
  return { config, held, narrowing };
}

/**
 * The configuration in force at `now` for the file's configuration `file`, given the stored
 * versions (at least one must be in force), and what is held back until when.
 */
export function holdBack(file: Config, versions: readonly PolicyVersion[], now: Date): HoldBackResult {
  const version = inForce(versions, now);
  if (!version) throw new Error('no privacy policy version is in force');
  const { config, held, narrowing } = apply(file, parseDocument(version).facts);
  const coming = upcoming(versions, now);
  const configured = factsFromConfig(file);
  return {
    config,
    version,
    inForceAtOnce: describeChanges(narrowing, 'en', 'operator'),
    held: held.map((change) => {
      const rule = RULES[change.key]!;
      const allowing = coming.find((v) => !rule.widens(parseDocument(v).facts, configured)) ?? null;
      return { key: change.key, change: describeChanges([change], 'en', 'operator')[0]!, until: allowing?.effectiveAt ?? null, technical: allowing?.technicalReason ?? null };
    }),
  };
}

/**
 * What `gatehouse check-config` and `gatehouse policy check` say about the policy of `file`
 * against the stored versions: one line per held-back part and per change in force at once.
 * Throws PolicyChangeError when the server could not start with it.
 */
export function holdBackReport(file: Config, versions: readonly PolicyVersion[], now: Date): string[] {
  const current = inForce(versions, now);
  if (!current) return ["privacy policy: no version stored yet; the first start stores this configuration's policy, in force at once"];
  const r = holdBack(file, versions, now);
  const lines: string[] = [];
  for (const p of r.held) {
    const until = p.until ? `until ${p.until.toISOString()}${p.technical ? ' (technical change)' : ''}` : 'until a change is announced';
    lines.push(`held back ${until}: ${p.change}`);
  }
  if (r.held.some((p) => !p.until)) lines.push(`to announce it: gatehouse policy announce --effective ${earliestEffectiveDay(now)} (the earliest date), or sooner with --technical REASON`);
  for (const c of r.inForceAtOnce) lines.push(`in force at once (narrows the privacy policy): ${c}`);
  if (lines.length === 0) lines.push(`privacy policy: version ${current.id} in force, nothing held back`);
  return lines;
}
