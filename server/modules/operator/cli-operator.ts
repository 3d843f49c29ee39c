/** `gatehouse status`, `gatehouse reload` and `gatehouse kick JID`: they ask the running server (module.ts answers). */
import { CONFIG_FLAG, commandSet, configFrom, UsageError, type FlagDefinition } from '../../cli/kit.js';
import { controlRequest } from '../../admin/control.js';
import type { ReloadOutcome } from '../../core/runtime.js';
import { formatDurationShort } from '../../../shared/format.js';
import type { ServerStatus } from './status.js';
import type { ClusterStatus } from '../../core/cluster.js';

const JSON_FLAG: FlagDefinition = { name: 'json', type: 'boolean', doc: 'print JSON (the admin HTTP API answers the same)' };

const LISTENER_NAMES: Record<string, string> = {
  c2s: 'clients (STARTTLS)',
  'c2s-tls': 'clients (direct TLS)',
  component: 'components (XEP-0114)',
  s2s: 'other servers (s2s)',
  'admin-https': 'admin console (HTTPS)',
  'admin-http': 'admin console (HTTP)',
  https: 'HTTPS (WebSocket, ...)',
};

/** One held-back part as the privacy-policy module reports it ({ change, until }), or as given. */
function heldLine(p: unknown): string {
  if (p === null || typeof p !== 'object') return String(p);
  const { change, key, until } = p as { change?: unknown; key?: unknown; until?: unknown };
  const what = typeof change === 'string' ? change : typeof key === 'string' ? key : JSON.stringify(p);
  return typeof until === 'string' ? `${what} (from ${until.slice(0, 10)})` : `${what} (no announcement yet)`;
}

export function renderStatus(s: ServerStatus): string {
  const lines = [`Gatehouse ${s.version}, pid ${s.pid}, running since ${s.startedAt} (${formatDurationShort(s.uptimeSeconds * 1000)})`];
  lines.push('listeners:');
  for (const l of s.listeners) lines.push(`  ${(LISTENER_NAMES[l.kind] ?? l.kind).padEnd(24)} ${l.host} port ${l.port}`);
  lines.push(
    `sessions: ${s.sessions} client${s.sessions === 1 ? '' : 's'}, s2s links ${s.s2s.in} in / ${s.s2s.out} out, components ${s.components.connected} of ${s.components.configured} connected`,
  );
  lines.push(`data: ${s.dataDir}  database: ${s.database}`);
  if (s.heldBack !== null) {
    if (s.heldBack.length === 0) lines.push('held back (privacy policy): nothing');
    else {
      lines.push('held back until their privacy policy change takes effect:');
      for (const p of s.heldBack) lines.push(`  ${heldLine(p)}`);
    }
  }
  return lines.join('\n');
}

export function renderClusterStatus(s: ClusterStatus): string {
  const nats = s.nats.connected ? `connected to ${s.nats.server ?? '?'}` : 'NOT connected (reconnecting)';
  const lines = [`cluster node ${s.node}; NATS ${nats}${s.nats.reconnects ? `, ${s.nats.reconnects} reconnect${s.nats.reconnects === 1 ? '' : 's'}` : ''}`];
  const up = s.nodes.filter((n) => n.state === 'up');
  lines.push(`nodes: ${up.length} up${s.nodes.length > up.length ? `, ${s.nodes.length - up.length} dead` : ''}; sessions: ${up.reduce((n, x) => n + x.sessions, 0)}`);
  for (const n of s.nodes) {
    const seen = n.self ? 'this node' : `heard ${(n.lastSeenMs / 1000).toFixed(1)} s ago`;
    const comps = n.components.length ? `, components ${n.components.join(' ')}` : '';
    lines.push(`  ${n.name.padEnd(20)} ${n.state.padEnd(5)} ${String(n.sessions).padStart(6)} sessions  ${seen}, started ${n.startedAt || '?'}${comps}`);
  }
  for (const t of s.tasks) lines.push(`task ${t.name}: ${t.holder ? `runs on ${t.holder}` : 'no node holds it yet'}`);
  return lines.join('\n');
}

export const operatorCommands = commandSet(
  {
    name: 'status',
    summary: 'version, uptime, listeners and session counts of the running server',
    description:
      'Asks the running server: its version, process id and uptime, each listener with its address, the number of client sessions, s2s links and connected components, the data directory and the kind of database, and the parts of the configuration held back until their privacy policy change takes effect. Names no account and no address of a client.',
    flags: [CONFIG_FLAG, JSON_FLAG],
    server: 'yes',
    control: 'status',
    http: { audit: () => null },
    async run(args) {
      const config = configFrom(args);
      const status = (await controlRequest(config.dataDir, 'status')) as ServerStatus;
      console.log(args.flags.has('json') ? JSON.stringify(status, null, 2) : renderStatus(status));
      return 0;
    },
  },
  {
    name: 'cluster status',
    summary: 'the nodes of the cluster, their sessions and components, NATS, once-per-cluster tasks',
    description:
      'Asks the running server (in cluster mode): which nodes it hears (up, or dead once not heard of for cluster.failureTimeout), how many client sessions each holds, the components linked to each, whether it is connected to NATS, and which node runs each once-per-cluster task (retention, backup, transports) it knows of. Names no account and no address.',
    flags: [CONFIG_FLAG, JSON_FLAG],
    server: 'yes',
    control: 'cluster-status',
    async run(args) {
      const config = configFrom(args);
      const status = (await controlRequest(config.dataDir, 'cluster-status')) as ClusterStatus;
      console.log(args.flags.has('json') ? JSON.stringify(status, null, 2) : renderClusterStatus(status));
      return 0;
    },
  },
  {
    name: 'reload',
    summary: 'reload the configuration file and the certificates without dropping sessions',
    description:
      'The running server reads its configuration file (the one it was started with) and the certificate files again, as on SIGHUP. Log level, connection caps and limits, registration, the login guard, storage quotas, components, transports and renewed certificates change at once; open sessions stay. What cannot change while it runs (listeners, storage, dataDir, the list of hosts, ...) keeps its running value and is named: it takes a restart.\n\n' +
      'A change of the published privacy policy that was not announced is held back (P22), as at a start, and named. An invalid configuration or an unreadable certificate is refused with the reason (exit code 1); the running configuration stays. A file this command cannot read either is a configuration error (exit code 2), and the server is not asked.',
    flags: [CONFIG_FLAG],
    server: 'yes',
    control: 'reload',
    async run(args) {
      const config = configFrom(args);
      const outcome = (await controlRequest(config.dataDir, 'reload', {}, 60_000)) as ReloadOutcome;
      console.log(`reloaded: ${outcome.changed.join(', ')}`);
      if (outcome.needsRestart.length > 0) console.log(`needs a restart: ${outcome.needsRestart.join(', ')}`);
      if (outcome.heldBack?.length) console.log(`held back until announced (P22): ${outcome.heldBack.join('; ')}`);
      return 0;
    },
  },
  {
    name: 'kick',
    summary: 'disconnect the sessions of an account, or one session',
    description:
      'A bare JID (user@domain) closes every session of the account, a full JID (user@domain/resource) that one. The client gets the stream error policy-violation, "disconnected by an administrator"; the session is not kept for resumption. The client may log in again: to keep someone out, change the password or delete the account.',
    args: [{ name: 'JID', doc: 'user@domain for all sessions of the account, user@domain/resource for one' }],
    flags: [CONFIG_FLAG],
    server: 'yes',
    control: 'kick',
    async run(args) {
      const config = configFrom(args);
      const jid = args.positional[0];
      if (!jid) throw new UsageError('give the JID to disconnect');
      if (args.positional.length > 1) throw new UsageError(`unexpected argument: ${args.positional[1]}`);
      const { kicked } = (await controlRequest(config.dataDir, 'kick', { jid })) as { kicked: string[] };
      for (const j of kicked) console.log(`disconnected ${j}`);
      return 0;
    },
  },
);
