/**
 * Announcing a policy change (P22): storing the new version with its effective date (at least
 * four weeks ahead unless technical reasons are given), and telling users with a headline message
 * (once per account, to its online resources, and to those who come online before the date).
 */
import { randomBytes } from 'node:crypto';
import type { Config } from '../../config/index.js';
import type { Storage, Account } from '../../../storage/types.js';
import type { ServerContext } from '../../core/context.js';
import type { ClientSession } from '../../core/session.js';
import { x, type Element } from '../../../shared/xml/element.js';
import { parseXmlText } from '../../../shared/xml/parse-xml.js';
import { policyFromConfig } from './render.js';
import { date, dateEn, type Lang } from './format.js';
import { NOTICE_MS, changesBetween, earliestEffectiveDay, parseDocument, type PolicyVersion } from './versions.js';
import { POLICY_LIMITS } from '../../../storage/repos/policy-versions.js';

/** A refused announcement; the message is one line for the operator. */
export class AnnounceError extends Error {
  override name = 'AnnounceError';
}

const DAY = 86_400_000;

/**
 * The effective time of `--effective`: a date (YYYY-MM-DD, midnight UTC) or an ISO date-time with
 * zone. Without a technical reason it must be at least 28 days after `now`; with one it may be
 * today (meaning now), but not in the past.
 */
export function parseEffective(value: string, now: Date, technical: string | null): Date {
  const s = value.trim();
  let at: Date;
  if (/^\d{4}-\d{2}-\d{2}$/.test(s)) at = new Date(`${s}T00:00:00Z`);
  else if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(s)) at = new Date(s);
  else throw new AnnounceError(`--effective: expected a date as YYYY-MM-DD, got ${JSON.stringify(value)}`);
  if (Number.isNaN(at.getTime()) || (s.length === 10 && dateEn(at) !== s)) throw new AnnounceError(`--effective: not a valid date: ${JSON.stringify(value)}`);
  if (technical !== null) {
    const today = Math.floor(now.getTime() / DAY) * DAY;
    if (at.getTime() < today) throw new AnnounceError(`--effective ${s} is in the past`);
    return at.getTime() < now.getTime() ? now : at;
  }
  if (at.getTime() - now.getTime() < NOTICE_MS) {
    throw new AnnounceError(
      `--effective ${s} is less than 28 days ahead (${earliestEffectiveDay(now)} at the earliest); a change on shorter notice needs --technical REASON`,
    );
  }
  return at;
}

export interface AnnounceResult {
  version: PolicyVersion;
  /** No version was stored before: this one is in force at once. */
  first: boolean;
  /** Operator-readable list of what changed against the previous version. */
  changes: string[];
}

/** Stores the policy of `config` as a new version taking effect at `effective` (see parseEffective). */
export async function announcePolicy(
  storage: Storage,
  config: Config,
  opts: { effective: string; technical?: string | null; now: Date },
): Promise<AnnounceResult> {
  const technical = opts.technical === undefined || opts.technical === null ? null : opts.technical.trim().replace(/\s+/g, ' ');
  if (technical !== null && technical === '') throw new AnnounceError('--technical needs a reason');
  if (technical !== null && technical.length > POLICY_LIMITS.technicalReason) throw new AnnounceError(`--technical: the reason is longer than ${POLICY_LIMITS.technicalReason} characters`);
  const current = policyFromConfig(config);
  const document = JSON.stringify({ facts: current.facts, texts: current.texts });
  const versions = await storage.policyVersions.list();
  const latest = versions.at(-1) ?? null;
  if (!latest) {
    // Nothing was ever published, so there is nothing to give notice of.
    const version = await storage.policyVersions.add({ hash: current.hash, document, announcedAt: opts.now, effectiveAt: opts.now, technicalReason: null }, null);
    if (!version) throw new AnnounceError('another policy version was stored at the same time; run the command again');
    return { version, first: true, changes: [] };
  }
  if (latest.hash === current.hash) {
    throw new AnnounceError(`nothing to announce: this configuration renders version ${latest.id} (in force from ${dateEn(latest.effectiveAt)})`);
  }
  const effectiveAt = parseEffective(opts.effective, opts.now, technical);
  const version = await storage.policyVersions.add({ hash: current.hash, document, announcedAt: opts.now, effectiveAt, technicalReason: technical }, latest.id);
  if (!version) throw new AnnounceError('another policy version was announced at the same time; run the command again');
  return { version, first: false, changes: changesBetween(latest, current, 'en', 'operator') };
}

// ---------------------------------------------------------------------------------------------
// Telling the users

/** accountState key: `<policy-notified version='N' at='ISO'/>`, the last version the account was told about. */
export const NOTIFIED_KEY = 'policy-notified';

/**
 * The announcement users should hear about at `now`: the newest version, if it is a change (not
 * the first version) and either not yet in force or in force for less than four weeks since it
 * was announced (a technical change on short notice is still told to those who log in later).
 */
export function announcementToNotify(versions: readonly PolicyVersion[], now: Date): PolicyVersion | null {
  if (versions.length < 2) return null;
  const latest = versions.reduce((a, b) => (b.id > a.id ? b : a));
  const until = Math.max(latest.effectiveAt.getTime(), latest.announcedAt.getTime() + NOTICE_MS);
  return now.getTime() < until ? latest : null;
}

const OTHER: Record<Lang, Lang> = { de: 'en', en: 'de' };

function headlineText(versions: readonly PolicyVersion[], target: PolicyVersion, host: string, now: Date, lang: Lang): { subject: string; body: string } {
  const previous = versions.filter((v) => v.id < target.id).reduce<PolicyVersion | null>((a, b) => (!a || b.id > a.id ? b : a), null);
  const doc = parseDocument(target);
  const changes = previous ? changesBetween(previous, doc, lang, 'user') : [];
  const when = date(target.effectiveAt, lang);
  const pending = target.effectiveAt.getTime() > now.getTime();
  const contact = doc.facts.contact;
  if (lang === 'de') {
    let body = pending
      ? `Die Datenschutzerklärung von ${host} ändert sich am ${when}. Bis dahin gilt die bisherige Fassung.`
      : `Die Datenschutzerklärung von ${host} hat sich am ${when} geändert.`;
    if (target.technicalReason) body += ` Die Änderung gilt aus technischen Gründen mit kürzerer Frist als vier Wochen: ${target.technicalReason}`;
    if (changes.length) body += `\nWas sich ändert: ${changes.join('; ')}.`;
    if (contact) body += `\nFragen: ${contact}`;
    return { subject: 'Änderung der Datenschutzerklärung', body };
  }
  let body = pending
    ? `The privacy policy of ${host} changes on ${when}. Until then the current version stays in force.`
    : `The privacy policy of ${host} changed on ${when}.`;
  if (target.technicalReason) body += ` It takes effect on shorter notice than four weeks for technical reasons: ${target.technicalReason}`;
  if (changes.length) body += `\nWhat changes: ${changes.join('; ')}.`;
  if (contact) body += `\nQuestions: ${contact}`;
  return { subject: 'Privacy policy change', body };
}

/** The headline message for one resource: the configured language first, the other one after it. */
export function policyHeadline(versions: readonly PolicyVersion[], target: PolicyVersion, to: string, host: string, now: Date, lang: Lang): Element {
  const main = headlineText(versions, target, host, now, lang);
  const other = headlineText(versions, target, host, now, OTHER[lang]);
  return x(
    'message',
    { type: 'headline', from: host, to, id: `policy-${target.id}-${randomBytes(4).toString('hex')}`, 'xml:lang': lang },
    x('subject', {}, main.subject),
    x('body', {}, main.body),
    x('subject', { 'xml:lang': OTHER[lang] }, other.subject),
    x('body', { 'xml:lang': OTHER[lang] }, other.body),
  );
}

function notifiedVersion(xml: string | null): number | null {
  if (!xml) return null;
  const el = parseXmlText(xml);
  const v = Number(el?.attrs.version);
  return Number.isSafeInteger(v) ? v : null;
}

/** Inside the server: watches for announcements and tells each account once. */
export class PolicyNotifier {
  private versions: PolicyVersion[] = [];
  private lastLogged = 0;
  private readonly inflight = new Set<number>();

  constructor(private readonly ctx: ServerContext) {}

  /** Re-reads the versions (an announcement may come from the command line) and tells online users. */
  async check(): Promise<void> {
    this.versions = await this.ctx.storage.policyVersions.list();
    const target = announcementToNotify(this.versions, this.ctx.clock.now());
    if (!target) return;
    if (target.id !== this.lastLogged) {
      this.lastLogged = target.id;
      this.ctx.log.info('privacy policy change announced', { version: target.id, effective: target.effectiveAt.toISOString(), technical: target.technicalReason !== null });
    }
    const seen = new Set<number>();
    for (const s of [...this.ctx.sessions.all()]) {
      if (!s.available || !s.account || seen.has(s.account.id)) continue;
      seen.add(s.account.id);
      await this.notifyAccount(s.account, s.jid.bare, s.jid.domain, target);
    }
  }

  /** A resource came online. */
  async onAvailable(session: ClientSession): Promise<void> {
    const target = announcementToNotify(this.versions, this.ctx.clock.now());
    if (!target || !session.account) return;
    await this.notifyAccount(session.account, session.jid.bare, session.jid.domain, target);
  }

  private async notifyAccount(account: Account, bare: string, host: string, target: PolicyVersion): Promise<void> {
    if (this.inflight.has(account.id)) return;
    this.inflight.add(account.id);
    try {
      const { storage, sessions, router, clock, config } = this.ctx;
      if (notifiedVersion(await storage.accountState.get(account.id, NOTIFIED_KEY)) === target.id) return;
      const online = sessions.ofAccount(bare).filter((s) => s.available);
      if (online.length === 0) return;
      const now = clock.now();
      for (const s of online) router.deliver(s, policyHeadline(this.versions, target, s.jid.full, host, now, config.policy.language));
      await storage.accountState.set(account.id, NOTIFIED_KEY, x('policy-notified', { version: String(target.id), at: now.toISOString() }).toString());
    } finally {
      this.inflight.delete(account.id);
    }
  }
}
