/**
 * The operator's commands about the running server (`gatehouse status`, `reload`, `kick`; status
 * also as /api/status): the module gives their control-socket handlers, closures over the server
 * it was loaded into. What the server alone knows (its listeners, the reload) comes from the
 * `runtime` service main.ts provides once its listeners are open.
 *
 * Kick closes every session of an account (bare JID) or one (full JID) with the stream error
 * <policy-violation/> and the text "disconnected by an administrator", as the admin console's
 * Disconnect button does: RFC 6120 4.9.3.14 (the entity violated a local service policy) is the
 * closest defined condition to an administrator's decision, and what ejabberd sends when an
 * admin kicks a session. Not <reset/> (4.9.3.18: the client should reconnect at once because the
 * server has new features or keys) and not <conflict/> (another session of its own replaced it).
 * The session ends there: stream management does not keep it for resumption, and a client that
 * reconnects logs in anew.
 */
import type { GatehouseModule, ServerContext } from '../../core/context.js';
import { ControlError, type ControlArgs } from '../../commands/command.js';
import { ReloadRefused } from '../../core/runtime.js';
import { Jid } from '../../../shared/jid.js';
import { operatorCommands } from './cli-operator.js';
import { serverStatus } from './status.js';

export const KICK_CONDITION = 'policy-violation';
export const KICK_TEXT = 'disconnected by an administrator';

function kick(ctx: ServerContext, args: ControlArgs): { kicked: string[] } {
  const text = typeof args.jid === 'string' ? args.jid : '';
  const jid = Jid.tryParse(text);
  if (!jid || !jid.local) throw new ControlError(`not an account's JID (user@domain or user@domain/resource): ${JSON.stringify(text.slice(0, 200))}`);
  const found = jid.resource ? ctx.sessions.get(jid.full) : undefined;
  const sessions = jid.resource ? (found ? [found] : []) : ctx.sessions.ofAccount(jid.bare);
  if (sessions.length === 0) throw new ControlError(`no session of ${jid.full} is online`);
  const kicked: string[] = [];
  for (const s of sessions) {
    ctx.log.info('administrator kicked a client session', { jid: s.jid.full });
    kicked.push(s.jid.full);
    s.close(KICK_CONDITION, KICK_TEXT);
  }
  return { kicked };
}

export function createOperatorModule(): GatehouseModule {
  let loaded: ServerContext | null = null;
  const on = () => loaded !== null;
  const server = (): ServerContext => {
    if (!loaded) throw new ControlError('the server is stopping');
    return loaded;
  };
  return {
    name: 'operator',
    specs: [],
    // Administrators only (the control socket's boundary); a kick is logged with the JID it closed.
    clauses: ['P21'],
    commands: {
      cli: Object.values(operatorCommands),
      control: {
        status: {
          summary: 'version, uptime, listeners, session counts, data directory and database, held-back policy parts',
          available: on,
          handler: () => serverStatus(server()),
        },
        reload: {
          summary: 're-read the configuration file and the certificates without dropping sessions',
          available: on,
          handler: async () => {
            const runtime = server().services.get('runtime');
            if (!runtime) throw new ControlError('the server is still starting: try again');
            try {
              return await runtime.reload();
            } catch (err) {
              if (err instanceof ReloadRefused) throw new ControlError(`reload refused, the running configuration stays: ${err.message}`);
              throw err;
            }
          },
        },
        'cluster-status': {
          summary: 'the nodes of the cluster as this node sees them',
          available: on,
          handler: () => {
            const cluster = server().services.get('cluster');
            if (!cluster) throw new ControlError('this server does not run in cluster mode (cluster.enabled is false)');
            return cluster.status();
          },
        },
        kick: {
          summary: 'close the sessions of an account (bare JID) or one session (full JID)',
          available: on,
          handler: (args) => kick(server(), args),
        },
      },
    },
    load(ctx) {
      loaded = ctx;
    },
    unload() {
      loaded = null;
    },
  };
}
