/**
 * The transport connection log (PRIVACY.md P10): when a connection to a foreign network was made
 * for which XMPP user, to which account and server, and how it ended. Rows: time, user JID,
 * network, foreign account, foreign server, event (connecting, connected, disconnected,
 * auth-failed, error) and a reason. No credential and no message text is ever written: the
 * reason comes from the adapter and is scrubbed of every credential value of the session before
 * it is stored (an adapter that quotes a server reply quoting the password cannot leak it here).
 *
 * Retention (P13): rows older than the transport's `retention.auditLog` (default 48 h, the
 * server's retention.detailedLogs) are deleted by sweep(), which the transport runs hourly; the
 * server's retention sweeper deletes them too when the transport shares its database.
 */
import type { Clock } from '../../shared/clock.js';
import type { TransportAuditEntry, TransportAuditEvent, TransportRepository } from '../../storage/types.js';

export interface AuditContext {
  userJid: string;
  account?: string | null;
  server?: string | null;
  /** Values that must never appear in a reason (the session's credentials). */
  secrets?: Iterable<string>;
}

/** Replaces every occurrence of a secret (3 characters or longer) in `text` with ***. */
export function scrub(text: string, secrets: Iterable<string> | undefined): string {
  let out = text;
  if (secrets) {
    const list = [...secrets].filter((s) => typeof s === 'string' && s.length >= 3).sort((a, b) => b.length - a.length);
    for (const s of list) out = out.split(s).join('***');
  }
  return out;
}

export class AuditLog {
  constructor(
    private readonly repo: TransportRepository,
    readonly network: string,
    private readonly clock: Clock,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  /** Writes one row; storage failures are reported, never thrown (the connection goes on). */
  async record(event: TransportAuditEvent, ctx: AuditContext, reason?: string | null): Promise<void> {
    const entry: TransportAuditEntry = {
      at: this.clock.now(),
      userJid: ctx.userJid,
      network: this.network,
      account: ctx.account ?? null,
      server: ctx.server ?? null,
      event,
      reason: reason === undefined || reason === null ? null : scrub(reason, ctx.secrets),
    };
    try {
      await this.repo.appendAudit(entry);
    } catch (err) {
      this.onError(err);
    }
  }

  /** Deletes rows older than `maxAge` milliseconds; returns how many. */
  sweep(maxAge: number): Promise<number> {
    return this.repo.deleteAuditBefore(new Date(this.clock.now().getTime() - maxAge));
  }
}

// ---- output for `gatehouse audit transports` ----

export type AuditFormat = 'table' | 'csv' | 'json';
export const AUDIT_COLUMNS = ['time', 'user', 'network', 'account', 'server', 'event', 'reason'] as const;

function cells(e: TransportAuditEntry): string[] {
  return [e.at.toISOString(), e.userJid, e.network, e.account ?? '', e.server ?? '', e.event, e.reason ?? ''];
}

function csvCell(s: string): string {
  // A leading = + - @ would be a formula in spreadsheets (CSV injection): prefix a quote mark.
  const safe = /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

export function formatAudit(entries: TransportAuditEntry[], format: AuditFormat): string {
  switch (format) {
    case 'json':
      return (
        JSON.stringify(
          entries.map((e) => ({ time: e.at.toISOString(), user: e.userJid, network: e.network, account: e.account, server: e.server, event: e.event, reason: e.reason })),
          null,
          2,
        ) + '\n'
      );
    case 'csv':
      return [AUDIT_COLUMNS.join(','), ...entries.map((e) => cells(e).map(csvCell).join(','))].join('\r\n') + '\r\n';
    case 'table': {
      if (entries.length === 0) return 'no connection log entries\n';
      const rows = [AUDIT_COLUMNS.map((c) => c.toUpperCase()), ...entries.map(cells)].map((r) => r.map((c) => c.replace(/[\r\n\t]+/g, ' ')));
      const widths = AUDIT_COLUMNS.map((_, i) => Math.min(60, Math.max(...rows.map((r) => r[i]!.length))));
      return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
    }
  }
}
