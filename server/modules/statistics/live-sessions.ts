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

/** `--host DOMAIN`, `--jid JID` (bare: the account's sessions; full: that one) of `gatehouse sessions` and /api/sessions. */
export function filteredSessions(ctx: ServerContext, args: ControlArgs): LiveSession[] {
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
