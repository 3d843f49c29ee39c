/** What `gatehouse status` and /api/status report about the running server (no JID, no client address). */
import type { ServerContext } from '../../core/context.js';
import { packageVersion } from '../../commands/version.js';

export interface ServerStatus {
  version: string;
  pid: number;
  startedAt: string;
  uptimeSeconds: number;
  listeners: { kind: string; host: string; port: number }[];
  /** Client sessions online (a number, as the control socket's status always answered). */
  sessions: number;
  s2s: { in: number; out: number };
  components: { connected: number; configured: number };
  dataDir: string;
  database: string;
  /** The parts of the configuration held back until a privacy policy change takes effect (P22), when the server tells them. */
  heldBack: unknown[] | null;
}

export async function serverStatus(ctx: ServerContext): Promise<ServerStatus> {
  const s2s = ctx.services.get('s2s');
  // The privacy-policy module answers 'policy.held' where it holds parts back; found by name, as the control socket finds it.
  const held = ctx.modules.map((m) => m.commands?.control?.['policy.held']).find((h) => h && h.available?.() !== false);
  const heldBack = held ? await held.handler({}) : null;
  return {
    version: packageVersion(),
    pid: process.pid,
    startedAt: ctx.startedAt.toISOString(),
    uptimeSeconds: Math.max(0, Math.floor((ctx.clock.now().getTime() - ctx.startedAt.getTime()) / 1000)),
    listeners: [...(ctx.services.get('runtime')?.listeners() ?? []), ...(ctx.services.get('https-listeners') ?? []).map((l) => ({ kind: 'https', host: l.host, port: l.port }))],
    sessions: ctx.sessions.size,
    s2s: { in: s2s?.countLinks('in') ?? 0, out: s2s?.countLinks('out') ?? 0 },
    components: { connected: ctx.router.connectedComponents(), configured: ctx.config.components.length },
    dataDir: ctx.config.dataDir,
    database: ctx.config.storage.type,
    heldBack: Array.isArray(heldBack) ? heldBack : null,
  };
}
