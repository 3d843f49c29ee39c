/** The live client sessions (P6) as admins see them: `gatehouse sessions`, /api/sessions and the console's page. */
import type { ServerContext } from '../../core/context.js';

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
