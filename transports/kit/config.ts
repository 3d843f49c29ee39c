/**
 * The transport configuration file (`gatehouse transport irc --config irc.yaml`), validated with
 * the same schema kit as the server's configuration: one-line errors naming the key path, secrets
 * never shown.
 *
 *   component:                      # the XEP-0114 connection to any XMPP server
 *     domain: irc.example.org       # the component's domain, as configured on the server
 *     secret: change-me             # or GATEHOUSE_COMPONENT_SECRET
 *     host: 127.0.0.1
 *     port: 5347
 *   storage:                        # same choices as the server; may be the server's database
 *     type: sqlite
 *     path: ./irc-transport.sqlite
 *   vault:
 *     keyFile: ./irc-vault.key      # created (mode 0600) if missing; GATEHOUSE_VAULT_KEY or a vault-key credential wins
 *   admins: [admin@example.org]
 *   gracePeriod: 30s
 *   reconnect: { min: 5s, max: 5m }
 *   media: { maxSize: 20MiB }       # attachments through the XMPP server's upload service (media.ts)
 *   avatars: { maxEntries: 500 }    # pictures of the network's people, in memory only (avatars.ts)
 *   network:                        # passed to the adapter as it is
 *     servers: [irc.libera.chat]
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { bareJid, domain } from '../../shared/config-values.js';
import { MAX_BOUNCER_HOURS, MAX_BOUNCER_LINES } from '../../shared/bouncer-limits.js';
import {
  ConfigError,
  anyMapping,
  array,
  bool,
  describe,
  duration,
  enumOf,
  fail,
  filePath,
  int,
  isPlainObject,
  joinKey,
  nullable,
  object,
  optional,
  size,
  str,
  type Ctx,
  type Infer,
} from '../../shared/schema-kit.js';
import type { StorageConfig } from '../../storage/datasource.js';

export const COMPONENT_SECRET_ENV = 'GATEHOUSE_COMPONENT_SECRET';
const MAX_BOUNCER_AGE = MAX_BOUNCER_HOURS * 3600_000;

/**
 * The validated transport configuration: the file's settings as the schema below parses them
 * (durations in milliseconds, paths absolute), with the adapter's name, the component secret and
 * the storage settled from the command line and the environment.
 */
export type TransportConfig = Omit<Infer<typeof transportConfigSchema>, 'adapter' | 'component' | 'storage'> & {
  /** The adapter's name (irc, matrix, ...): from `adapter` in the file or the command line. */
  adapter: string;
  component: Required<Infer<typeof transportConfigSchema>['component']>;
  storage: StorageConfig;
  /** Directory of the configuration file (relative paths resolve against it). */
  baseDir: string;
};

const storageSchema = object(
  {
    type: enumOf(['sqlite', 'mysql', 'postgres'], { default: 'sqlite', doc: 'Database: SQLite, MySQL/MariaDB or PostgreSQL. May be the server\'s own database.' }),
    path: optional(filePath({ verbatim: [':memory:'], doc: 'SQLite file (`type: sqlite`). Default: `<adapter>-transport.sqlite` beside this file.' })),
    url: optional(
      str({
        secret: true,
        doc: 'Connection URL for `mysql` (`mysql://user:password@host/db`) or `postgres` (`postgres://…`). Overridden by GATEHOUSE_TRANSPORT_STORAGE_URL.',
      }),
    ),
  },
  { doc: 'Where registrations, encrypted credentials and the connection log are stored.' },
);

export const transportConfigSchema = object({
  adapter: optional(str({ doc: 'The network adapter (`irc`, ...). The command line (`gatehouse transport NAME`) names it too; they must agree.' })),
  component: object(
    {
      domain: domain({ doc: 'The component domain (XEP-0114), as configured on the XMPP server, e.g. `irc.example.org`.' }),
      secret: optional(str({ secret: true, doc: `Shared secret of the component handshake. Overridden by ${COMPONENT_SECRET_ENV}; one of them is required.` })),
      host: str({ default: '127.0.0.1', doc: 'Host of the XMPP server\'s component listener.' }),
      port: int({ default: 5347, min: 1, max: 65535, doc: 'Port of the XMPP server\'s component listener.' }),
    },
    { doc: 'The connection to the XMPP server, which may be any server speaking XEP-0114 (Gatehouse, Prosody, ejabberd, …).' },
  ),
  storage: storageSchema,
  vault: object(
    {
      keyFile: nullable(filePath(), {
        default: null,
        doc: `File holding the 32-byte vault key (base64), created with mode 0600 if missing. ${'GATEHOUSE_VAULT_KEY'} and the systemd credential vault-key take precedence; without any of them, the OS keyring is used if @napi-rs/keyring is installed.`,
      }),
      previousKeyFiles: array(filePath({ mustExist: true }), {
        default: [],
        type: 'list of paths',
        doc: 'Older keys that may still decrypt records during a key change (`gatehouse vault rotate` re-encrypts everything with the current key).',
      }),
    },
    { doc: 'The credential vault (P9): AES-256-GCM with a key kept outside the database.' },
  ),
  admins: array(bareJid, { default: [], type: 'list of bare JIDs', uniqueBy: (j) => j, uniqueWhat: 'admin', doc: 'Who may use the admin commands (list and disconnect users).' }),
  allowDomains: array(domain({ doc: 'An XMPP domain.' }), {
    default: [],
    type: 'list of domain names',
    uniqueBy: (d) => d,
    uniqueWhat: 'domain',
    doc: 'Only users of these XMPP domains may register. Empty: users of any domain (federated ones too).',
  }),
  gracePeriod: duration({ default: '30s', doc: 'A foreign session stays up this long after the user\'s last resource went offline (a reconnecting phone keeps its session).' }),
  loginTimeout: duration({ default: '30s', min: 100, doc: 'A foreign login that takes longer fails with remote-server-timeout. Adapters get it as their own deadline (Matrix: the first sync included).' }),
  reconnect: object(
    {
      min: duration({ default: '5s', min: 10, doc: 'First delay before reconnecting a dropped foreign connection (doubles each attempt, with jitter).' }),
      max: duration({ default: '5m', min: 10, doc: 'Longest delay between reconnect attempts.' }),
    },
    {
      doc: 'Reconnecting dropped foreign connections (and the connection to the XMPP server).',
      check(v, keyPath) {
        if (v.max < v.min) fail(joinKey(keyPath, 'max'), 'must not be shorter than reconnect.min');
      },
    },
  ),
  retention: object(
    { auditLog: duration({ default: '48h', doc: 'Connection-log rows (P10) and rotated log files are deleted after this long (P13).' }) },
    { doc: 'How long the transport keeps its connection log.' },
  ),
  bouncer: object(
    {
      maxLines: int({ default: 200, min: 0, max: MAX_BOUNCER_LINES, doc: `Room lines kept per room while a user who chose "stay connected" has no resource online (at most ${MAX_BOUNCER_LINES}); 0 keeps none.` }),
      maxAge: duration({ default: '12h', min: 1000, max: MAX_BOUNCER_AGE, doc: 'Older kept lines are dropped (at most 24h). Kept in memory only: nothing survives a restart of the transport.' }),
    },
    { doc: 'Staying connected (bouncer mode, opt-in per user and server): what is kept while the user is offline. The published privacy policy states the maximums.' },
  ),
  log: object(
    {
      level: enumOf(['debug', 'info', 'warn', 'error'], { default: 'info', doc: 'Least severe level logged.' }),
      format: enumOf(['text', 'json'], { default: 'text', doc: 'One line of text per entry, or one JSON object per line.' }),
      file: nullable(filePath(), { default: null, doc: 'Log file, rotated by day and deleted after retention.auditLog (P13); `null` logs to standard error.' }),
    },
    { doc: 'Logging. No password, credential or message text is ever logged.' },
  ),
  media: object(
    {
      enabled: bool({ default: true, doc: 'Re-host attachments of the network on the XMPP server\'s upload service (XEP-0363), and send files users upload there to the network as files. false: attachments are links, as the network gives them.' }),
      maxSize: size({ default: '20MiB', min: 1, doc: 'Largest attachment re-hosted or sent as a file (also at most what the upload service takes); larger ones stay links, with a notice.' }),
      timeout: duration({ default: '60s', min: 100, doc: 'How long one transfer (download and upload) may take.' }),
      service: nullable(domain({ doc: 'The upload service\'s address.' }), { default: null, doc: 'The upload service\'s address; `null`: found in the disco#items of `media.server`.' }),
      server: nullable(domain({ doc: 'The XMPP server\'s domain.' }), {
        default: null,
        doc: 'The XMPP server\'s domain, where the upload service is looked for, and whose (sub)domains\' HTTPS files users send are fetched; `null`: the component domain without its first label (irc.example.org → example.org).',
      }),
      caFile: nullable(filePath({ mustExist: true }), { default: null, doc: 'PEM file of certificate authorities to trust for the upload service\'s HTTPS besides the system\'s (a private CA).' }),
      links: object(
        {
          enabled: bool({ default: true, doc: 'Re-host file links said on the network (IRC) when the upload service is there; the text gets the upload URL in place of the link.' }),
          allLinks: bool({ default: false, doc: 'Every link, not only those whose path ends in one of `extensions` (each is still fetched and kept only when its type is one of `types`).' }),
          allowHttp: bool({ default: false, doc: 'Fetch plain http links too (https only by default).' }),
          allowPrivateAddresses: bool({
            default: false,
            doc: 'DANGEROUS: fetch links whose host is a private, loopback, link-local or other special-use address. Anyone on the network could make the gateway read from its own machine and internal networks. Only for tests.',
          }),
          types: array(str({ doc: 'A media type, or a kind such as `image/*`.' }), {
            default: ['image/*', 'audio/*', 'video/*', 'application/pdf', 'application/zip', 'application/gzip', 'application/x-7z-compressed', 'application/x-tar', 'text/plain'],
            type: 'list of media types',
            doc: 'Kinds of file re-hosted (by the Content-Type the origin sends); other links stay as they are.',
          }),
          extensions: array(str({ doc: 'A file name extension without the dot.' }), {
            default: ['png', 'jpg', 'jpeg', 'gif', 'webp', 'avif', 'heic', 'svg', 'mp3', 'ogg', 'oga', 'opus', 'm4a', 'flac', 'wav', 'mp4', 'webm', 'mkv', 'mov', 'pdf', 'zip', 'gz', 'tgz', '7z', 'tar', 'txt', 'log'],
            type: 'list of extensions',
            doc: 'A link whose path ends in one of these is a file link.',
          }),
          cacheSize: int({ default: 1000, min: 0, doc: 'Links remembered with their upload URL, so a link seen by many users is fetched and uploaded once.' }),
          cacheAge: duration({ default: '1h', min: 1000, doc: 'How long a remembered link is reused; keep it well below the upload service\'s `retention.uploads`, which deletes the copies.' }),
        },
        { doc: 'File links said on the network (IRC), fetched through a guard: https only, public addresses only (checked after resolving and pinned for the connection), redirects checked again (at most 3), `maxSize` and `timeout` apply.' },
      ),
    },
    { doc: 'Attachments through the XMPP server\'s upload service (XEP-0363): the transport asks it for slots as a component.' },
  ),
  avatars: object(
    {
      maxEntries: int({ default: 500, min: 0, doc: 'Pictures of contacts and occupants kept in memory at most (0: none are fetched).' }),
      maxBytes: size({ default: '32MiB', min: 0, doc: 'Memory the kept pictures may take in all; the least recently used go first.' }),
      maxImageSize: size({ default: '512KiB', min: 1, doc: 'A larger picture is not passed on.' }),
      maxAge: duration({ default: '1h', min: 1000, doc: 'A picture is fetched again after this long.' }),
    },
    { doc: "Pictures of the network's people (vCard-temp and XEP-0153 on the gateway's JIDs): fetched by the transport when a client needs them, kept in memory only." },
  ),
  network: anyMapping({
    default: {},
    defaultDoc: '{}',
    type: 'mapping (adapter-specific)',
    doc: 'Settings of the network adapter (see its documentation), passed to it unchanged.',
  }),
});

/**
 * Validates a raw transport configuration. `adapterName` (from the command line) fills in or must
 * match `adapter`. Reads GATEHOUSE_COMPONENT_SECRET and GATEHOUSE_TRANSPORT_STORAGE_URL from `env`.
 */
export function parseTransportConfig(raw: unknown, baseDir: string, adapterName?: string, env: NodeJS.ProcessEnv = process.env): TransportConfig {
  const doc = raw === null || raw === undefined ? {} : raw;
  if (!isPlainObject(doc)) throw new ConfigError('', `expected a mapping of settings at the top level, got ${describe(doc)}`);
  const ctx: Ctx = { baseDir: path.resolve(baseDir), vars: {} };
  const v = transportConfigSchema.parse(doc, '', ctx);
  const adapter = adapterName ?? v.adapter;
  if (!adapter) fail('adapter', 'missing; name the network adapter here or on the command line');
  if (v.adapter !== undefined && adapterName !== undefined && v.adapter !== adapterName)
    fail('adapter', `the file is for adapter "${v.adapter}", the command line asks for "${adapterName}"`);
  const secret = env[COMPONENT_SECRET_ENV] || v.component.secret;
  if (!secret) fail('component.secret', `missing; set it here or in ${COMPONENT_SECRET_ENV}`);
  const envUrl = env.GATEHOUSE_TRANSPORT_STORAGE_URL;
  let storage: StorageConfig;
  if (envUrl) {
    const type = /^(mysql|mariadb):/i.test(envUrl) ? 'mysql' : /^postgres(ql)?:/i.test(envUrl) ? 'postgres' : null;
    if (!type) fail('storage.url (from GATEHOUSE_TRANSPORT_STORAGE_URL)', 'expected a mysql://, mariadb://, postgres:// or postgresql:// URL');
    storage = { type, url: envUrl };
  } else if (v.storage.type === 'sqlite') {
    if (v.storage.url !== undefined) fail('storage.url', 'only used when storage.type is "mysql" or "postgres"');
    storage = { type: 'sqlite', path: v.storage.path ?? path.join(ctx.baseDir, `${adapter}-transport.sqlite`) };
  } else {
    if (v.storage.path !== undefined) fail('storage.path', `only used when storage.type is "sqlite" (it is "${v.storage.type}")`);
    if (!v.storage.url) fail('storage.url', `missing; required when storage.type is "${v.storage.type}"`);
    storage = { type: v.storage.type, url: v.storage.url };
  }
  return {
    adapter,
    component: { domain: v.component.domain, secret, host: v.component.host, port: v.component.port },
    storage,
    vault: { keyFile: v.vault.keyFile, previousKeyFiles: v.vault.previousKeyFiles },
    admins: v.admins,
    allowDomains: v.allowDomains,
    gracePeriod: v.gracePeriod,
    loginTimeout: v.loginTimeout,
    reconnect: v.reconnect,
    retention: v.retention,
    bouncer: v.bouncer,
    log: v.log,
    media: v.media,
    avatars: v.avatars,
    network: v.network,
    baseDir: ctx.baseDir,
  };
}

/** Reads and validates a transport configuration file. */
export function loadTransportConfig(file: string, adapterName?: string, env: NodeJS.ProcessEnv = process.env): TransportConfig {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = fs.readFileSync(abs, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError('', `cannot read ${abs}: ${code === 'ENOENT' ? 'file not found' : (code ?? String(e))}`);
  }
  return parseTransportConfig(readYaml(text, abs), path.dirname(abs), adapterName, env);
}

export function readYaml(text: string, file: string): unknown {
  const doc = YAML.parseDocument(text, { uniqueKeys: true });
  const err = doc.errors[0];
  if (err) {
    const pos = err.linePos?.[0];
    // Only the first line: later lines quote the file, which may hold secrets.
    throw new ConfigError('', `${file}: invalid YAML${pos ? ` at line ${pos.line}, column ${pos.col}` : ''}: ${err.message.split('\n')[0]}`);
  }
  return doc.toJS();
}

/** Whether a parsed YAML document looks like a transport configuration (it has `component`). */
export function isTransportConfigDocument(raw: unknown): boolean {
  return isPlainObject(raw) && isPlainObject(raw.component);
}
