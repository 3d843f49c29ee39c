/**
 * The `cluster` configuration section, declared next to the cluster layer (server/cluster/) and
 * composed into the whole schema by server/config/schema.ts, which also refuses a cluster on SQLite.
 */
import { hostname } from 'node:os';
import { array, bool, describe, duration, fail, joinKey, object, refine, section, str } from '../../shared/schema-kit.js';

/** A NATS subject token: what may stand in a subject or a bucket name. */
const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

function token(what: string, opts: { default: string; defaultDoc?: string; doc: string }) {
  return str({
    ...opts,
    type: what,
    expected: `${what} (letters, digits, '-' and '_', at most 64)`,
    check(s, keyPath) {
      if (!TOKEN.test(s)) fail(keyPath, `expected ${what} (letters, digits, '-' and '_', at most 64), got ${describe(s)}`);
      return s;
    },
  });
}

const natsUrl = str({
  type: 'NATS URL',
  expected: 'a NATS server URL such as nats://127.0.0.1:4222',
  check(s, keyPath) {
    const m = /^(nats|tls):\/\/[^\s/]+(:\d{1,5})?\/?$/.exec(s.trim());
    if (!m) fail(keyPath, `expected a NATS server URL such as nats://127.0.0.1:4222, got ${describe(s)}`);
    return s.trim();
  },
});

/** The node name by default: the host name cut to what a NATS subject token allows. */
function defaultNodeName(): string {
  const name = hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 64);
  return name || 'node';
}

export const clusterConfigSection = section(
  'cluster',
  refine(
    object(
      {
        enabled: bool({
          default: false,
          doc: 'Run as one node of a cluster: several Gatehouse processes serve the same hosts, share one MariaDB/MySQL or PostgreSQL database (`storage.type`; SQLite cannot be shared) and coordinate through NATS (docs/cluster.md).',
        }),
        node: token('node name', {
          default: defaultNodeName(),
          defaultDoc: 'the host name',
          doc: 'This node\'s name, unique in the cluster: in NATS subjects, log lines (`[node]`) and metrics (label `node`).',
        }),
        nats: array(natsUrl, {
          default: ['nats://127.0.0.1:4222'],
          minItems: 1,
          type: 'list of NATS URLs',
          doc: 'NATS servers to connect to (with JetStream enabled); the client reconnects to any of them.',
        }),
        prefix: token('subject prefix', {
          default: 'gatehouse',
          doc: 'Starts every NATS subject and key-value bucket name of this cluster, so several clusters (or tests) can share one NATS server.',
        }),
        heartbeatInterval: duration({ default: '1s', min: 100, doc: 'How often a node tells the others it is alive.' }),
        failureTimeout: duration({
          default: '5s',
          min: 300,
          doc: 'A node not heard of for this long is declared dead: its sessions end for their contacts (unavailable presence sent by the others) and messages to its users go to offline storage. At least twice `heartbeatInterval`.',
        }),
        deliveryTimeout: duration({
          default: '3s',
          min: 100,
          doc: 'How long a node waits for another node to confirm it has delivered a message; without the confirmation the message is stored offline.',
        }),
        batchWindow: duration({
          default: '5ms',
          min: 0,
          max: 100,
          doc: 'The shortest time between two frames of stanzas a node sends to the other nodes: what it routes meanwhile goes in the next one. A stanza after a quiet moment goes at the end of the event-loop turn that routed it; under a steady flow each waits up to this long. Each frame costs both nodes a socket write or read and the receiving node a wake-up, so longer saves CPU per message under load and adds up to this much latency then; 0 sends one frame per turn of the event loop.',
        }),
      },
      {
        doc: 'Cluster mode (docs/cluster.md): nodes, NATS and failure detection.',
      },
    ),
    (v, keyPath) => {
      if (v.failureTimeout < 2 * v.heartbeatInterval) fail(joinKey(keyPath, 'failureTimeout'), 'must be at least twice cluster.heartbeatInterval');
      return v;
    },
  ),
);
