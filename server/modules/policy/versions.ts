/**
 * Policy versions (P22): which stored version is in force, which are announced, what changed
 * between two versions, and the start-up check that stores the first version. A configuration
 * whose policy was not announced still starts: its widening parts are held back (holdback.ts).
 *
 * In force at time t: of the versions whose effective date has come, the one announced last
 * (highest id). So a later announcement supersedes an earlier one that has not taken effect yet
 * when its effective date is the same or sooner, and an older pending version never comes back
 * into force after a newer one.
 */
import type { Config } from '../../config/index.js';
import type { PolicyVersion, Storage } from '../../../storage/types.js';
import type { PolicyFacts } from './facts.js';
import { policyFromConfig, type PolicyTexts, type PolicyView, type ShownVersion } from './render.js';
import { dateEn, duration, type Lang } from './format.js';

export type { PolicyVersion } from '../../../storage/types.js';

/** At least this much notice for a change that is not technical (four weeks). */
export const NOTICE_MS = 28 * 86_400_000;

/** What a version's `document` column holds. */
export interface StoredDocument {
  facts: PolicyFacts;
  texts: PolicyTexts;
}

export function parseDocument(v: PolicyVersion): StoredDocument {
  return JSON.parse(v.document) as StoredDocument;
}

export function shown(v: PolicyVersion): ShownVersion {
  return { id: v.id, effectiveAt: v.effectiveAt, announcedAt: v.announcedAt, technicalReason: v.technicalReason, texts: parseDocument(v).texts };
}

/** The version in force at `now`: the highest id among those already effective. */
export function inForce(versions: readonly PolicyVersion[], now: Date): PolicyVersion | null {
  let best: PolicyVersion | null = null;
  for (const v of versions) if (v.effectiveAt.getTime() <= now.getTime() && (!best || v.id > best.id)) best = v;
  return best;
}

/**
 * Announced versions that will still come into force, soonest first: newer than the version in
 * force, not yet effective, and not superseded by a later announcement taking effect no later.
 */
export function upcoming(versions: readonly PolicyVersion[], now: Date): PolicyVersion[] {
  const current = inForce(versions, now);
  const pending = versions.filter((v) => v.effectiveAt.getTime() > now.getTime() && (!current || v.id > current.id));
  return pending
    .filter((v) => !pending.some((w) => w.id > v.id && w.effectiveAt.getTime() <= v.effectiveAt.getTime()))
    .sort((a, b) => a.effectiveAt.getTime() - b.effectiveAt.getTime() || a.id - b.id);
}

/** What the public page shows at `now`: the version in force and the announced ones. */
export function viewAt(versions: readonly PolicyVersion[], now: Date): PolicyView | null {
  const current = inForce(versions, now);
  if (!current) return null;
  return { current: shown(current), upcoming: upcoming(versions, now).map(shown) };
}

// ---------------------------------------------------------------------------------------------
// What changed

interface Field {
  key: string;
  get(f: PolicyFacts): unknown;
  show(v: unknown, lang: Lang): string;
  label: Record<Lang, string>;
}

const plain = (v: unknown): string => (Array.isArray(v) ? (v.length ? v.join(', ') : '—') : v === null || v === undefined ? '—' : String(v));
const yesNo = (v: unknown, lang: Lang): string => (v ? (lang === 'de' ? 'ja' : 'yes') : lang === 'de' ? 'nein' : 'no');
const dur = (v: unknown, lang: Lang): string => (v === null ? (lang === 'de' ? 'unbegrenzt' : 'unlimited') : duration(Number(v), lang));

const FIELDS: Field[] = [
  { key: 'hosts', get: (f) => f.hosts, show: plain, label: { en: 'domains', de: 'Domains' } },
  { key: 'policy.contact', get: (f) => f.contact, show: plain, label: { en: 'contact', de: 'Kontakt' } },
  { key: 'admins', get: (f) => f.adminCount, show: plain, label: { en: 'number of administrators', de: 'Zahl der Administratoren' } },
  { key: 'auth.hashes', get: (f) => f.passwordHashes, show: plain, label: { en: 'stored password verifiers', de: 'gespeicherte Passwort-Prüfwerte' } },
  { key: 'c2s.allowPlain', get: (f) => f.allowPlain, show: yesNo, label: { en: 'PLAIN login over TLS', de: 'Anmeldung mit PLAIN über TLS' } },
  { key: 'c2s.requireEncryption', get: (f) => f.clientTlsRequired, show: yesNo, label: { en: 'encryption required for clients', de: 'Verschlüsselung für Clients vorgeschrieben' } },
  { key: 'tls.minVersion', get: (f) => f.tlsMinVersion, show: plain, label: { en: 'oldest TLS version', de: 'älteste TLS-Version' } },
  { key: 'retention.inactiveAccounts', get: (f) => f.retention.inactiveAccounts, show: dur, label: { en: 'unused accounts deleted after', de: 'unbenutzte Konten gelöscht nach' } },
  { key: 'retention.inactiveWarning', get: (f) => f.retention.inactiveWarning, show: dur, label: { en: 'warning before that deletion', de: 'Warnung vor dieser Löschung' } },
  { key: 'retention.offlineMessages', get: (f) => f.retention.offlineMessages, show: dur, label: { en: 'offline messages kept', de: 'Offline-Nachrichten aufbewahrt' } },
  { key: 'retention.detailedLogs', get: (f) => f.retention.detailedLogs, show: dur, label: { en: 'detailed logs kept', de: 'detaillierte Protokolle aufbewahrt' } },
  { key: 'retention.statistics', get: (f) => f.retention.statistics, show: dur, label: { en: 'statistics kept', de: 'Statistiken aufbewahrt' } },
  { key: 'upload.enabled', get: (f) => f.uploads ?? false, show: yesNo, label: { en: 'file upload (HTTP File Upload)', de: 'Hochladen von Dateien (HTTP File Upload)' } },
  { key: 'retention.uploads', get: (f) => f.retention.uploads ?? null, show: dur, label: { en: 'uploaded files kept', de: 'hochgeladene Dateien aufbewahrt' } },
  { key: 'muc.enabled', get: (f) => f.groupChats !== undefined, show: yesNo, label: { en: 'group chats (multi-user chat)', de: 'Gruppenchats (Multi-User Chat)' } },
  { key: 'muc.historyMaxAge', get: (f) => f.groupChats?.historyMaxAge ?? null, show: dur, label: { en: 'group chat messages kept in memory', de: 'Gruppenchat-Nachrichten im Arbeitsspeicher gehalten' } },
  { key: 'muc.unusedRooms', get: (f) => f.groupChats?.unusedRooms ?? null, show: dur, label: { en: 'unused persistent group chats deleted after', de: 'unbenutzte dauerhafte Gruppenchats gelöscht nach' } },
  { key: 'pep.subscriptions', get: (f) => f.pepSubscriptions !== undefined, show: yesNo, label: { en: 'subscriptions to published data (PEP) stored', de: 'Abonnements veröffentlichter Daten (PEP) gespeichert' } },
  {
    key: 'pep.remoteSubscriptionLifetime',
    get: (f) => f.pepSubscriptions?.remoteLifetime ?? null,
    show: dur,
    label: { en: 'subscriptions from other servers kept', de: 'Abonnements von anderen Servern aufbewahrt' },
  },
  { key: 'offline.maxPerUser', get: (f) => f.offlineMaxPerUser, show: plain, label: { en: 'offline messages per user', de: 'Offline-Nachrichten je Nutzer' } },
  { key: 'backups.schedule', get: (f) => f.backups.schedule, show: plain, label: { en: 'backups', de: 'Sicherungen' } },
  { key: 'backups.keep', get: (f) => f.backups.keep, show: plain, label: { en: 'backups kept', de: 'aufbewahrte Sicherungen' } },
  { key: 'components', get: (f) => f.gateways, show: plain, label: { en: 'gateways', de: 'Netzübergänge' } },
  { key: 'listen.s2s', get: (f) => f.federation.enabled, show: yesNo, label: { en: 'federation with other servers', de: 'Föderation mit anderen Servern' } },
  { key: 's2s.requireEncryption', get: (f) => f.federation.requireEncryption, show: yesNo, label: { en: 'encryption required for other servers', de: 'Verschlüsselung zu anderen Servern vorgeschrieben' } },
  { key: 's2s.requireValidCertificates', get: (f) => f.federation.requireValidCertificates, show: yesNo, label: { en: 'valid certificates required from other servers', de: 'gültige Zertifikate anderer Server vorgeschrieben' } },
  { key: 's2s.allow', get: (f) => f.federation.allow, show: plain, label: { en: 'federation only with', de: 'Föderation nur mit' } },
];

/** The configuration keys of the policy facts, in the order changes are listed. */
export const FACT_KEYS: readonly string[] = FIELDS.map((f) => f.key);

export interface FactChange {
  /** The configuration key, e.g. retention.offlineMessages. */
  key: string;
  before: unknown;
  after: unknown;
}

export function factChanges(before: PolicyFacts, after: PolicyFacts): FactChange[] {
  const out: FactChange[] = [];
  for (const f of FIELDS) {
    const a = f.get(before);
    const b = f.get(after);
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ key: f.key, before: a, after: b });
  }
  return out;
}

/** "retention.offlineMessages 30 days → 14 days" (operators) or a localised label (users). */
export function describeChanges(changes: FactChange[], lang: Lang, audience: 'operator' | 'user'): string[] {
  return changes.map((c) => {
    const f = FIELDS.find((x) => x.key === c.key)!;
    const name = audience === 'operator' ? c.key : f.label[lang];
    return `${name}: ${f.show(c.before, lang)} → ${f.show(c.after, lang)}`;
  });
}

/** Changes between two stored versions, or a note that only the wording changed. */
export function changesBetween(before: PolicyVersion | StoredDocument, after: StoredDocument, lang: Lang, audience: 'operator' | 'user'): string[] {
  const b = 'facts' in before ? before : parseDocument(before);
  const list = describeChanges(factChanges(b.facts, after.facts), lang, audience);
  if (list.length === 0) list.push(lang === 'de' ? 'neuer Wortlaut der Erklärung' : audience === 'operator' ? 'the wording of the policy (this Gatehouse version renders it differently)' : 'the wording of the policy');
  return list;
}

// ---------------------------------------------------------------------------------------------
// The start-up check

/** A configuration the server cannot start with at all (holdback.ts: no host of it is in force). */
export class PolicyChangeError extends Error {
  override name = 'PolicyChangeError';
}

export type StartCheck =
  | { status: 'first'; version: PolicyVersion }
  | { status: 'unchanged'; version: PolicyVersion }
  /** The configuration renders an older stored version, not the latest announced one. */
  | { status: 'older'; version: PolicyVersion; latest: PolicyVersion }
  /** The configuration renders no stored version: what changes is held back or in force at once (holdback.ts). */
  | { status: 'changed'; latest: PolicyVersion };

/** The earliest effective date (UTC day) at least four weeks after `now`. */
export function earliestEffectiveDay(now: Date): string {
  const t = now.getTime() + NOTICE_MS;
  const day = new Date(Math.floor(t / 86_400_000) * 86_400_000);
  return dateEn(day.getTime() < t ? new Date(day.getTime() + 86_400_000) : day);
}

/**
 * Run at server start: stores the first version (in force at once) if there is none, and says
 * which stored version, if any, the configuration renders.
 */
export async function checkPolicyAtStart(storage: Storage, config: Config, now: Date): Promise<StartCheck> {
  const current = policyFromConfig(config);
  for (let attempt = 0; attempt < 3; attempt++) {
    const versions = await storage.policyVersions.list();
    const latest = versions.at(-1) ?? null;
    if (!latest) {
      const added = await storage.policyVersions.add(
        { hash: current.hash, document: JSON.stringify({ facts: current.facts, texts: current.texts }), announcedAt: now, effectiveAt: now, technicalReason: null },
        null,
      );
      if (added) return { status: 'first', version: added };
      continue; // another process stored one first: check against it
    }
    if (latest.hash === current.hash) return { status: 'unchanged', version: latest };
    const older = [...versions].reverse().find((v) => v.hash === current.hash);
    if (older) return { status: 'older', version: older, latest };
    return { status: 'changed', latest };
  }
  throw new PolicyChangeError('the privacy policy versions changed while the server was starting; start it again');
}
