/** The live client sessions (P6) as admins see them: `gatehouse sessions`, /api/sessions and the console's page. */
import type { ServerContext } from '../../core/context.js';
import { ControlError, type ControlArgs } from '../../commands/command.js';
import { Jid } from '../../../shared/jid.js';

/** One live session as the control channel reports it. */
export interface LiveSession {
  /** The stream id: how later admin commands (disconnect) name a session. */
  id: string;
  jid: string;
  ip: string;
  secure: boolean;
  available: boolean;
  startedAt: string;
  stanzasIn: number;
  stanzasOut: number;
  bytesIn: number;
  bytesOut: number;
}

export function liveSessions(ctx: ServerContext): LiveSession[] {
  return [...ctx.sessions.all()]
    .map((s) => ({
      id: s.id,
      jid: s.jid.full,
      ip: s.ip,
      secure: s.secure,
      available: s.available,
      startedAt: s.startedAt.toISOString(),
      stanzasIn: s.counters.stanzasIn,
      stanzasOut: s.counters.stanzasOut,
      bytesIn: s.counters.bytesIn,
      bytesOut: s.counters.bytesOut,
    }))
    .sort((a, b) => (a.startedAt < b.startedAt ? -1 : a.startedAt > b.startedAt ? 1 : a.jid < b.jid ? -1 : 1));
}

/** A server-to-server link (`--kind s2s`): other servers' domains, no user data. */
export interface LiveS2sLink {
  kind: 's2s';
  direction: 'in' | 'out';
  remote: string[];
  since: string;
  secure: boolean;
}

/** A configured component (`--kind component`), connected or not. */
export interface LiveComponent {
  kind: 'component';
  domain: string;
  connectedSince: string | null;
}

export const SESSION_KINDS = ['c2s', 's2s', 'component'] as const;

/**
 * What `gatehouse sessions` and /api/sessions list: `--kind` c2s (the default: client sessions,
 * narrowed by `--host` and `--jid`), s2s (links to other servers) or component. `components`:
 * connected since, by configured domain (kept by the session-stats module from the component hooks).
 */
export function listSessions(ctx: ServerContext, args: ControlArgs, components: ReadonlyMap<string, Date>): LiveSession[] | LiveS2sLink[] | LiveComponent[] {
  const kind = typeof args.kind === 'string' ? args.kind : 'c2s';
  if (!(SESSION_KINDS as readonly string[]).includes(kind)) throw new ControlError(`--kind: expected one of ${SESSION_KINDS.join(', ')}, got ${JSON.stringify(kind.slice(0, 40))}`);
  if (kind === 'c2s') return filteredSessions(ctx, args);
  if (args.host !== undefined || args.jid !== undefined) throw new ControlError(`--host and --jid narrow client sessions (--kind c2s), not --kind ${kind}`);
  if (kind === 's2s') {
    return (ctx.services.get('s2s')?.links() ?? []).map((l) => ({ kind: 's2s' as const, direction: l.direction, remote: [...l.remote].sort(), since: l.since.toISOString(), secure: l.secure }));
  }
  return ctx.config.components.map(({ domain }) => ({ kind: 'component' as const, domain, connectedSince: components.get(domain)?.toISOString() ?? null }));
}

/** `--host DOMAIN`, `--jid JID` (bare: the account's sessions; full: that one) of `gatehouse sessions` and /api/sessions. */
function filteredSessions(ctx: ServerContext, args: ControlArgs): LiveSession[] {
  const host = typeof args.host === 'string' ? args.host.toLowerCase() : null;
  const jidText = typeof args.jid === 'string' ? args.jid : null;
  const jid = jidText === null ? null : Jid.tryParse(jidText);
  if (jidText !== null && (!jid || !jid.local)) throw new ControlError(`--jid: not an account's JID (user@domain or user@domain/resource): ${JSON.stringify(jidText.slice(0, 200))}`);
  return liveSessions(ctx).filter((s) => {
    const j = Jid.tryParse(s.jid);
    if (!j) return false;
    if (host !== null && j.domain !== host) return false;
    if (jid && (jid.resource ? j.full !== jid.full : j.bare !== jid.bare)) return false;
    return true;
  });
}
