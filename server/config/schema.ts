/**
 * The configuration schema: keys, types, defaults, validation and documentation in one place.
 * docs/configuration.md is generated from it (see docs.ts), the Config type is derived from it
 * (types.ts). A feature declares its own section next to its code (section() in
 * shared/schema-kit.ts; X-config.ts beside a module file, config.ts in a feature folder); it is
 * composed here with fieldOf(), in the place it has in the file. What stays here is not one
 * feature's: hosts, listeners, TLS, client streams, authentication, storage, logging, and the
 * sections several parts of the server read (server, retention, components).
 */
import path from 'node:path';
import {
  array,
  bool,
  describe,
  duration,
  durationOrUnlimited,
  enumOf,
  fail,
  fieldOf,
  filePath,
  int,
  joinKey,
  nullable,
  object,
  oneOf,
  optional,
  refine,
  size,
  str,
} from '../../shared/schema-kit.js';
import { bareJid, cidr, domain } from '../../shared/config-values.js';
import { offlineConfigSection } from '../modules/offline-config.js';
import { privateStorageConfigSection } from '../modules/private-storage-config.js';
import { pepConfigSection } from '../modules/pep/config.js';
import { subscriptionsConfigSection } from '../modules/presence-config.js';
import { registrationLimitConfigSection } from '../modules/register-config.js';
import { loginGuardConfigSection } from '../modules/login-guard/config.js';
import { policyConfigSection } from '../modules/policy/config.js';
import { adminConfigSection } from '../admin/config.js';
import { httpConfigSection } from '../http/config.js';
import { transportsConfigSection } from '../modules/transports/config.js';
import { backupsConfigSection } from '../modules/backup/config.js';
import { s2sConfigSection } from '../federation/config.js';
import { capsConfigSection } from '../modules/caps/config.js';
import { uploadConfigSection } from '../modules/upload/config.js';
import { mucConfigSection } from '../modules/muc/config.js';
import { vcardConfigSection } from '../modules/vcard-config.js';
import { clusterConfigSection } from '../cluster/config.js';

// ---------------------------------------------------------------------------------------------
// Value types specific to Gatehouse

export const DB_SCHEMES: Readonly<Record<string, 'mysql' | 'postgres'>> = {
  'mysql:': 'mysql',
  'mariadb:': 'mysql',
  'postgres:': 'postgres',
  'postgresql:': 'postgres',
};

/** Shows a database URL without its password, whatever its shape. */
export function redactDbUrl(s: string): string {
  const at = s.lastIndexOf('@');
  if (at < 0) return s;
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(s);
  const start = scheme ? scheme[0].length : 0;
  const user = s.slice(start, at).split(':')[0];
  return `${s.slice(0, start)}${user}:***@${s.slice(at + 1)}`;
}

const DB_URL_EXPECTED = 'a URL starting with mysql://, mariadb://, postgres:// or postgresql://';

const dbUrl = str({
  type: 'database URL',
  expected: DB_URL_EXPECTED,
  redact: redactDbUrl,
  check(s, keyPath) {
    let url: URL | undefined;
    try {
      url = new URL(s);
    } catch {
      url = undefined;
    }
    if (!url || !DB_SCHEMES[url.protocol.toLowerCase()] || !s.includes('://') || !url.hostname)
      fail(keyPath, `expected ${DB_URL_EXPECTED} and a host, got ${describe(s, false, redactDbUrl)}`);
    if (url.pathname.replace(/^\//, '') === '') fail(keyPath, `names no database (add /DATABASE after the host): ${describe(s, false, redactDbUrl)}`);
    return s;
  },
});

const listenList = (def: { host: string; port: number }[], doc: string) =>
  array(
    object({
      host: str({ default: '::', doc: 'Address to bind: an IPv4 or IPv6 address or a host name. `::` is every address.' }),
      port: int({ min: 0, max: 65535, doc: 'TCP port. 0 picks a free port (for tests).' }),
      proxyProtocol: array(cidr, {
        default: [],
        type: 'list of CIDR ranges or IP addresses',
        doc:
          'Proxies in front of this listener (HAProxy, sslh, stunnel) that speak the PROXY protocol (version 1 or 2). A connection from one of these addresses must begin with a PROXY header within 5 seconds, ' +
          'and the address in it is the client\'s address from then on (connection limits, failed-login guard, records); a missing or malformed header closes the connection. Connections from other addresses are taken as direct and must not send one.',
      }),
    }),
    { default: def, doc },
  );

// ---------------------------------------------------------------------------------------------
// The schema

const hostSchema = object({
  domain: domain({ doc: 'The XMPP domain served, e.g. `example.org`. Normalised to lower case.' }),
  registration: oneOf(
    [
      enumOf(['closed', 'open', 'loopback']),
      object({
        allow: array(cidr, {
          minItems: 1,
          type: 'list of CIDR ranges or IP addresses',
          doc: 'Clients whose address is in one of these ranges may register. IPv4 or IPv6, with or without a prefix length (a plain address means just that address).',
        }),
      }),
    ],
    {
      default: 'loopback',
      type: '"closed", "open", "loopback" or { allow: [CIDR, …] }',
      doc: 'Who may create accounts in-band (XEP-0077): `closed` nobody (an administrator creates accounts), `open` anyone, `loopback` only clients connecting from this machine, `{ allow: [...] }` clients from the listed address ranges.',
    },
  ),
  tls: optional(
    object({
      cert: filePath({ mustExist: true, doc: 'PEM certificate (chain) file for this host.' }),
      key: filePath({ mustExist: true, doc: 'PEM private key file for this host.' }),
    }),
    { doc: 'Certificate and key for this host, if it should not use the top-level `tls` certificate. Both are required.' },
  ),
});

const tlsSchema = object(
  {
    cert: nullable(filePath({ mustExist: true }), {
      default: null,
      doc: 'PEM certificate (chain) file. `null`: a self-signed certificate for the configured hosts is generated under `<dataDir>/certs` on first start (fine for testing; clients will warn).',
    }),
    key: nullable(filePath({ mustExist: true }), { default: null, doc: 'PEM private key file. Required exactly when `cert` is set.' }),
    minVersion: enumOf(['TLSv1.2', 'TLSv1.3'], { default: 'TLSv1.2', doc: 'Oldest TLS version accepted.' }),
    ciphers: optional(str({ doc: "OpenSSL cipher list (Node's `ciphers` TLS option). Unset: Node's defaults." })),
    handshakeTimeout: duration({
      default: '10s',
      min: 100,
      doc: 'Connections to a direct-TLS listener (`listen.c2sDirectTls`, `listen.s2s`, `listen.admin`) that have not finished the TLS handshake after this long are closed. STARTTLS handshakes count against `c2s.authTimeout`.',
    }),
  },
  {
    doc: 'Default certificate and TLS settings, used for every host without its own `tls`.',
    check(v, keyPath) {
      if (v.cert !== null && v.key === null) fail(joinKey(keyPath, 'key'), 'missing; required when tls.cert is set');
      if (v.key !== null && v.cert === null) fail(joinKey(keyPath, 'cert'), 'missing; required when tls.key is set');
    },
  },
);

const listenSchema = object(
  {
    c2s: listenList([{ host: '::', port: 5222 }], 'Client connections (STARTTLS).'),
    c2sDirectTls: listenList([{ host: '::', port: 5223 }], 'Client connections with TLS from the first byte (XEP-0368).'),
    components: listenList(
      [{ host: '127.0.0.1', port: 5347 }],
      'External components (XEP-0114), e.g. the transports. Keep this on loopback. At most 32 component connections are open at a time (per address: `c2s.maxConnectionsPerIp`).',
    ),
    s2s: listenList([], 'Server-to-server connections. Empty: federation is off.'),
    admin: listenList([], 'Admin HTTP interface. Empty: off.'),
    https: listenList(
      [{ host: '::', port: 5443 }],
      'The HTTPS service (the hosts\' certificates): WebSocket client connections at `/xmpp-websocket` (RFC 7395), XEP-0156 discovery at `/.well-known/host-meta`, and what features add (see `http`). Empty: off.',
    ),
  },
  {
    doc: 'Where the server listens. Each entry is `{ host, port }`, with `proxyProtocol` for listeners behind a proxy; an empty list turns the listener off.',
    check(v, keyPath) {
      const seen = new Map<string, string>();
      for (const [name, list] of Object.entries(v)) {
        list.forEach((a, i) => {
          if (a.port === 0) return;
          const id = `${a.host.toLowerCase()} port ${a.port}`;
          const here = joinKey(joinKey(keyPath, name), i);
          const prev = seen.get(id);
          if (prev) fail(here, `${id} is already used by ${prev}`);
          seen.set(id, here);
        });
      }
    },
  },
);

const c2sSchema = object(
  {
    requireEncryption: bool({ default: true, doc: 'Clients must start TLS before they can authenticate.' }),
    allowPlain: bool({ default: true, doc: 'Offer SASL PLAIN (needed by some clients). PLAIN is never offered without TLS.' }),
    maxStanzaBytes: size({ default: '256KiB', min: 1024, doc: 'Largest stanza accepted from an authenticated client; larger closes the stream with `policy-violation`.' }),
    maxStanzaBytesPreAuth: size({ default: '10KiB', min: 1024, doc: 'Largest stanza accepted before authentication. At most `maxStanzaBytes`.' }),
    maxDepth: int({ default: 64, min: 4, max: 1024, doc: 'Deepest XML element nesting accepted in a stanza.' }),
    maxAttributes: int({ default: 64, min: 4, max: 1024, doc: 'Most attributes accepted on one element.' }),
    idlePingAfter: duration({ default: '5m', min: 1000, doc: 'Ping a client (XEP-0199) after this long without traffic.' }),
    pingTimeout: duration({ default: '60s', min: 1000, doc: 'Disconnect a client that does not answer a ping within this time.' }),
    resumptionTimeout: duration({
      default: '5m',
      min: 0,
      doc: 'How long the session of a client whose connection broke stays resumable (XEP-0198) before it ends and its unacknowledged messages go to offline storage; `0` disables resumption.',
    }),
    authTimeout: duration({ default: '60s', min: 1000, doc: 'Unauthenticated connections are closed (`connection-timeout`) after this long.' }),
    maxSendBuffer: size({ default: '1MiB', min: 16 * 1024, doc: 'A client that does not read is disconnected once this much output is waiting for it.' }),
    maxConnectionsPerIp: int({
      default: 50,
      min: 1,
      doc:
        'Most simultaneous client connections from one IPv4 address or one IPv6 /64, counted when the TCP connection is accepted (before TLS); more are closed at once. ' +
        'Inbound server (`listen.s2s`) and component connections have the same limit, counted apart.',
    }),
    maxConnections: int({
      default: 10000,
      min: 1,
      doc: 'Most open client connections (both client listeners together, authenticated or not); more are closed as soon as they are accepted.',
    }),
  },
  {
    doc: 'Client connections.',
    check(v, keyPath) {
      if (v.maxStanzaBytesPreAuth > v.maxStanzaBytes)
        fail(joinKey(keyPath, 'maxStanzaBytesPreAuth'), `must not be larger than c2s.maxStanzaBytes (${v.maxStanzaBytes} bytes)`);
    },
  },
);

const authSchema = object(
  {
    scramIterations: int({ default: 10000, min: 4096, max: 10_000_000, doc: 'PBKDF2 iterations for newly stored SCRAM verifiers.' }),
    hashes: array(enumOf(['SHA-1', 'SHA-256']), {
      default: ['SHA-1', 'SHA-256'],
      minItems: 1,
      uniqueBy: (h) => h,
      uniqueWhat: 'hash',
      doc: 'SCRAM hashes to store verifiers for and offer (SCRAM-SHA-1, SCRAM-SHA-256). Dropping one only affects passwords set afterwards.',
    }),
    channelBindingDowngrade: enumOf(['allow', 'reject'], {
      default: 'reject',
      doc:
        "What to do when a client says it supports channel binding but thinks the server does not (SCRAM flag 'y') although -PLUS mechanisms were offered. " +
        "'reject' is RFC 5802's downgrade protection: an attacker between client and server who strips the -PLUS mechanisms would make a client answer exactly so. " +
        "'allow' lets in clients that know none of the channel-binding types offered (tls-exporter, tls-server-end-point, tls-unique; Python clients such as slixmpp use tls-unique, which is offered, so they bind at once).",
    }),
  },
  { doc: 'Authentication (SASL SCRAM).' },
);

const storageSchema = refine(
  object(
    {
      type: enumOf(['sqlite', 'mysql', 'postgres'], { default: 'sqlite', doc: 'Database: SQLite (a file, no setup), MySQL/MariaDB or PostgreSQL.' }),
      path: optional(
        filePath({
          verbatim: [':memory:'],
          defaultDoc: '<dataDir>/gatehouse.sqlite',
          doc: 'SQLite database file (`type: sqlite` only). `:memory:` keeps everything in memory (tests).',
        }),
      ),
      url: optional(dbUrl, {
        doc: 'Connection URL, required for `mysql` (`mysql://` or `mariadb://`) and `postgres` (`postgres://` or `postgresql://`), e.g. `postgres://gatehouse:secret@localhost/gatehouse`. Overridden by the environment variable `GATEHOUSE_STORAGE_URL`.',
      }),
      migrateOnStart: bool({ default: true, doc: 'Apply pending database migrations on start.' }),
    },
    { doc: 'Where accounts, rosters and messages are stored.' },
  ),
  (v, keyPath, ctx) => {
    if (v.type === 'sqlite') {
      if (v.url !== undefined) fail(joinKey(keyPath, 'url'), 'only used when storage.type is "mysql" or "postgres" (it is "sqlite")');
      return {
        type: 'sqlite' as const,
        path: v.path ?? path.join(ctx.vars.dataDir ?? ctx.baseDir, 'gatehouse.sqlite'),
        migrateOnStart: v.migrateOnStart,
      };
    }
    if (v.path !== undefined) fail(joinKey(keyPath, 'path'), `only used when storage.type is "sqlite" (it is "${v.type}")`);
    if (v.url === undefined) fail(joinKey(keyPath, 'url'), `missing; required when storage.type is "${v.type}"`);
    const scheme = v.url.slice(0, v.url.indexOf(':') + 1).toLowerCase();
    if (DB_SCHEMES[scheme] !== v.type)
      fail(joinKey(keyPath, 'url'), `a ${scheme}// URL does not match storage.type "${v.type}"`);
    return { type: v.type, url: v.url, migrateOnStart: v.migrateOnStart };
  },
);

const retentionSchema = object(
  {
    inactiveAccounts: duration({ default: '365d', min: 86_400_000, doc: 'Accounts not used for this long are deleted, with everything they own.' }),
    inactiveWarning: duration({ default: '14d', doc: 'How long before that deletion the user is warned.' }),
    offlineMessages: duration({ default: '30d', min: 60_000, doc: 'Messages stored for offline users are deleted after this long.' }),
    detailedLogs: duration({ default: '48h', doc: 'Log entries with personal data (addresses, JIDs) are kept this long.' }),
    statistics: durationOrUnlimited({ default: 'unlimited', doc: 'Anonymous aggregate statistics are kept this long.' }),
    uploads: duration({
      default: '30d',
      min: 60_000,
      doc: 'Files uploaded with HTTP File Upload (XEP-0363) are deleted this long after their upload. As long as offline messages by default, so a link delivered from offline storage still works.',
    }),
  },
  {
    doc: 'How long data is kept. Durations accept `30s`, `5m`, `48h`, `14d`, `2w` or a number of seconds.',
    check(v, keyPath) {
      if (v.inactiveWarning >= v.inactiveAccounts)
        fail(joinKey(keyPath, 'inactiveWarning'), 'must be shorter than retention.inactiveAccounts');
    },
  },
);

const componentSchema = object({
  domain: domain({ doc: 'The component\'s domain, e.g. `irc.example.org`.' }),
  secret: str({ secret: true, doc: 'Shared secret (XEP-0114 handshake). Never shown in errors or logs.' }),
});

export const configSchema = object(
  {
    dataDir: filePath({ default: './data', doc: 'Directory for the SQLite database, generated certificates and backups.' }),
    hosts: array(hostSchema, {
      default: [{ domain: 'localhost', registration: 'loopback' }],
      minItems: 1,
      uniqueBy: (h) => h.domain,
      uniqueWhat: 'host',
      uniqueKey: 'domain',
      doc: 'The XMPP domains this server hosts.',
    }),
    admins: array(bareJid, {
      default: [],
      type: 'list of bare JIDs',
      uniqueBy: (j) => j,
      uniqueWhat: 'admin',
      doc: 'Bare JIDs of server administrators, e.g. `[admin@example.org]`.',
    }),
    tls: tlsSchema,
    listen: listenSchema,
    c2s: c2sSchema,
    auth: authSchema,
    storage: storageSchema,
    ...fieldOf(offlineConfigSection),
    ...fieldOf(privateStorageConfigSection),
    ...fieldOf(pepConfigSection),
    ...fieldOf(subscriptionsConfigSection),
    ...fieldOf(registrationLimitConfigSection),
    ...fieldOf(capsConfigSection),
    ...fieldOf(vcardConfigSection),
    ...fieldOf(uploadConfigSection),
    ...fieldOf(mucConfigSection),
    server: object(
      {
        name: str({ default: 'Gatehouse', doc: 'Software name reported to clients (XEP-0092).' }),
        hideVersion: bool({ default: false, doc: 'Do not report the software version.' }),
        hideOs: bool({ default: true, doc: 'Do not report the operating system.' }),
      },
      { doc: 'What the server tells about itself.' },
    ),
    log: object(
      {
        level: enumOf(['debug', 'info', 'warn', 'error'], { default: 'info', doc: 'Least severe level logged.' }),
        format: enumOf(['text', 'json'], { default: 'text', doc: 'One line of text per entry, or one JSON object per line.' }),
        file: nullable(filePath(), { default: null, doc: 'Log file; `null` logs to standard output.' }),
      },
      { doc: 'Logging.' },
    ),
    retention: retentionSchema,
    ...fieldOf(loginGuardConfigSection),
    ...fieldOf(backupsConfigSection),
    components: array(componentSchema, {
      default: [],
      uniqueBy: (c) => c.domain,
      uniqueWhat: 'component domain',
      uniqueKey: 'domain',
      doc: 'External components (XEP-0114) allowed to connect, e.g. the transports.',
    }),
    ...fieldOf(s2sConfigSection),
    ...fieldOf(transportsConfigSection),
    ...fieldOf(adminConfigSection),
    ...fieldOf(httpConfigSection),
    ...fieldOf(policyConfigSection),
    ...fieldOf(clusterConfigSection),
  },
  {
    check(v) {
      if (v.cluster.enabled && v.storage.type === 'sqlite')
        fail('cluster.enabled', 'needs a database all nodes share: storage.type "mysql" or "postgres" (SQLite serves one node only)');
      const hosts = new Set(v.hosts.map((h) => h.domain));
      v.components.forEach((c, i) => {
        if (hosts.has(c.domain)) fail(`components[${i}].domain`, `${JSON.stringify(c.domain)} is already a host (hosts) domain`);
      });
    },
  },
);

