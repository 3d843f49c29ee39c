/**
 * The transport commands of the `gatehouse` CLI, declared by the transports module (supervisor.ts):
 * `transport` runs a transport (transports/NAME) in the foreground, `vault rotate` re-encrypts its
 * credentials (P9), `audit transports` reads the connection log (P10). They also run on their own
 * (server/cli/transport.ts), which is how the supervisor starts transports as child processes.
 * docs/cli.md is generated from the definitions.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { UsageError, commandSet, type FlagDefinition, type ParsedArgs } from '../../commands/command.js';
import { ConfigError, loadConfig } from '../../config/index.js';
import { parseDuration } from '../../../shared/schema-kit.js';
import { openStorage, type StorageConfig } from '../../../storage/datasource.js';
import type { TransportAuditEntry } from '../../../storage/types.js';
import { Jid } from '../../../shared/jid.js';
import { Logger } from '../../../shared/logger.js';
import { logFileSink } from '../../../shared/rotating-log-file.js';
import type { AdapterFactory, KitSettings, NetworkAdapter } from '../../../transports/kit/adapter.js';
import { formatAudit, type AuditFormat } from '../../../transports/kit/audit-log.js';
import { isTransportConfigDocument, loadTransportConfig, readYaml, type TransportConfig } from '../../../transports/kit/config.js';
import { startTransport } from '../../../transports/kit/gateway.js';
import { Vault, VaultError, readKeyFile, resolveVaultKey } from '../../../transports/kit/vault.js';

/** A flag's value (`--name value` or `--name=value`, parsed by the command's definition). */
function valueOf(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags.get(name);
  if (v === true) throw new UsageError(`--${name} needs a value`);
  return v;
}

function configPath(args: ParsedArgs): string | undefined {
  const file = valueOf(args, 'config');
  return file;
}

/** The transports' folder (this file runs from dist/server/modules/transports/). */
const TRANSPORTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'transports');

/** Loads an adapter: transports/<name>/index.js exports createAdapter. */
async function loadAdapter(name: string, settings: Record<string, unknown>, log: Logger, kit: KitSettings): Promise<NetworkAdapter> {
  if (!/^[a-z][a-z0-9-]*$/.test(name) || name === 'kit') throw new UsageError(`not a transport name: ${name}`);
  const file = path.join(TRANSPORTS_DIR, name, 'index.js');
  let mod: { createAdapter?: AdapterFactory; default?: AdapterFactory };
  try {
    mod = (await import(pathToFileURL(file).href)) as typeof mod;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes(file)) {
      throw new UsageError(`no transport named ${name} (looked for ${file})`);
    }
    throw err;
  }
  const factory = mod.createAdapter ?? mod.default;
  if (typeof factory !== 'function') throw new Error(`transports/${name} exports no createAdapter`);
  return factory(settings, log, kit);
}

function parseTime(text: string, now: Date, flag: string): Date {
  const ago = parseDuration(text);
  if (ago !== undefined && !/^\d{4}-/.test(text)) return new Date(now.getTime() - ago);
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) throw new UsageError(`--${flag}: expected an ISO 8601 time (2026-01-31T12:00Z) or an age (2h, 7d), got ${JSON.stringify(text)}`);
  return d;
}

/** The storage and log settings named by a configuration file that is either the server's or a transport's. */
function storageFromConfig(file: string | undefined, adapter: string | undefined): { storage: StorageConfig; log: Logger; transport: TransportConfig | null } {
  if (file) {
    let raw: unknown;
    try {
      raw = readYaml(readFileSync(path.resolve(file), 'utf8'), path.resolve(file));
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError('', `cannot read ${path.resolve(file)}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    if (isTransportConfigDocument(raw)) {
      if (adapter === undefined && (raw as { adapter?: unknown }).adapter === undefined) {
        throw new UsageError('the transport configuration names no adapter: add `adapter: NAME` to it or give --adapter NAME');
      }
      const t = loadTransportConfig(file, adapter);
      return { storage: t.storage, log: new Logger({ level: 'info', format: t.log.format, sink: logFileSink(t.log.file, t.retention.auditLog, { timers: false }) }, `transport-${t.adapter}`), transport: t };
    }
  }
  const config = loadConfig(file ?? null);
  return { storage: config.storage, log: new Logger({ level: 'info', format: config.log.format, sink: logFileSink(config.log.file, config.retention.detailedLogs, { timers: false }) }, 'audit'), transport: null };
}

const TRANSPORT_CONFIG: FlagDefinition = { name: 'config', type: 'string', value: 'FILE', doc: 'the transport configuration (YAML)', required: true };
const ADAPTER: FlagDefinition = { name: 'adapter', type: 'string', value: 'NAME', doc: 'the adapter, when the transport configuration names none' };

export const transportCommands = commandSet(
  {
    name: 'transport',
    summary: 'run a transport (e.g. irc) against any XMPP server with XEP-0114 components',
    description:
      'Runs the transport NAME (transports/NAME, its createAdapter) in the foreground until SIGINT or SIGTERM, as a component of the XMPP server named in the configuration: Gatehouse, Prosody or any server with XEP-0114 components. The server\'s transport supervisor starts transports this way.',
    args: [{ name: 'NAME', doc: 'the transport: irc, matrix or discord' }],
    flags: [TRANSPORT_CONFIG],
    server: 'no',
    async run(args) {
      const name = args.positional[0];
      if (!name) throw new UsageError('name the transport, e.g. gatehouse transport irc --config irc.yaml');
      const file = configPath(args);
      if (!file) throw new UsageError('--config FILE is required (the transport configuration)');
      const config = loadTransportConfig(file, name);
      const log = new Logger({ level: config.log.level, format: config.log.format, sink: logFileSink(config.log.file, config.retention.auditLog) }, `transport-${name}`);
      let adapter: NetworkAdapter;
      try {
        adapter = await loadAdapter(name, config.network, log, { loginTimeoutMs: config.loginTimeout });
      } catch (err) {
        if (err instanceof UsageError) throw err;
        throw new ConfigError('network', err instanceof Error ? err.message.replace(/^config error: /, '') : String(err));
      }
      const running = await startTransport({ config, adapter, log });
      console.log(`transport ${name} running as ${config.component.domain} on ${config.component.host}:${config.component.port}`);
      let stopping = false;
      const shutdown = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        log.info('shutting down', { signal });
        await running.stop().catch((err) => log.error('shutdown failed', { error: String(err) }));
        process.exit(0);
      };
      process.once('SIGINT', () => void shutdown('SIGINT'));
      process.once('SIGTERM', () => void shutdown('SIGTERM'));
      return new Promise<number>(() => {});
    },
  },

  {
    name: 'vault rotate',
    summary: 're-encrypt every stored transport credential with a new vault key (P9)',
    description:
      'Re-encrypts every credential of this transport in one transaction; the old key is left in place, and a wrong current key changes nothing. Then point vault.keyFile at KEYFILE (or set GATEHOUSE_VAULT_KEY) and restart the transport.',
    flags: [
      { ...TRANSPORT_CONFIG, doc: 'the transport configuration: it names the database and the current key' },
      { name: 'new-key-file', type: 'string', value: 'KEYFILE', doc: 'the new key (created with a random key, mode 0600, when it does not exist)', required: true },
      ADAPTER,
      { name: 'network', type: 'string', value: 'NAME', doc: 'the network whose records are rotated', default: 'the adapter name' },
    ],
    server: 'no',
    async run(args) {
      const file = configPath(args);
      if (!file) throw new UsageError('--config FILE is required (the transport configuration that names the database and the current key)');
      const newKeyFile = valueOf(args, 'new-key-file');
      if (!newKeyFile) throw new UsageError('--new-key-file KEYFILE is required (created with a random key if it does not exist)');
      const config = loadTransportConfig(file, valueOf(args, 'adapter'));
      const current = await resolveVaultKey({ keyFile: config.vault.keyFile, keyringAccount: config.adapter });
      const previous = config.vault.previousKeyFiles.map((f) => readKeyFile(f, { create: false }).key);
      const oldVault = new Vault(current, previous);
      const { key: next, created } = readKeyFile(newKeyFile, { create: true });
      if (next.id === current.id) throw new VaultError(`the new key (key id ${next.id}) is the current key; give another key file`);
      const storage = await openStorage(config.storage, { migrate: true });
      try {
        const repo = storage.transports;
        // This transport's records only: other transports sharing the database have their own keys.
        const network = valueOf(args, 'network') ?? config.adapter;
        const records = await repo.listCredentials(network);
        // Decrypt everything first: one record the current keys cannot open stops the rotation before anything is written.
        const now = new Date();
        const newVault = new Vault(next);
        const updates = records.map((rec) => ({ record: newVault.seal(rec.userJid, rec.network, oldVault.open(rec), now), expectKeyId: rec.keyId }));
        // Secret states (Matrix: the encryption store) follow the same key.
        const states = await repo.listSecretStates(network);
        const stateUpdates = states.map(({ serverKey, record }) => ({ serverKey, record: newVault.sealBytes(record.userJid, record.network, serverKey, oldVault.openBytes(record, serverKey), now), expectKeyId: record.keyId }));
        await repo.reencrypt(updates);
        await repo.reencryptSecretStates(stateUpdates);
        const fromIds = [...new Set(records.map((r) => r.keyId))].join(', ') || current.id;
        console.log(`re-encrypted ${records.length} ${network} credential record(s)${states.length ? ` and ${states.length} secret state(s)` : ''}: key id ${fromIds} -> ${next.id}${created ? ` (new key file ${path.resolve(newKeyFile)})` : ''}`);
        console.log(`now set vault.keyFile to ${path.resolve(newKeyFile)} (or GATEHOUSE_VAULT_KEY to its contents) and restart the transport; the old key (${current.source}) is no longer needed afterwards`);
        return 0;
      } finally {
        await storage.close();
      }
    },
  },

  {
    name: 'audit transports',
    summary: 'show the transport connection log (P10)',
    description: 'The read itself is logged with the operating-system user and the filters (P21).',
    flags: [
      { name: 'config', type: 'string', value: 'FILE', doc: "the server's configuration or a transport's (which names the database)" },
      ADAPTER,
      { name: 'jid', type: 'string', value: 'JID', doc: "only this user's connections" },
      { name: 'network', type: 'string', value: 'NAME', doc: 'only this network (irc, matrix, discord)' },
      { name: 'since', type: 'string', value: 'TIME', doc: 'from this ISO 8601 time, or this age back from now (2h, 7d)' },
      { name: 'until', type: 'string', value: 'TIME', doc: 'up to this ISO 8601 time or age' },
      { name: 'format', type: 'string', value: 'table|csv|json', doc: 'the output format', default: 'table' },
    ],
    server: 'no',
    async run(args) {
      const now = new Date();
      const format = (valueOf(args, 'format') ?? 'table') as AuditFormat;
      if (!['table', 'csv', 'json'].includes(format)) throw new UsageError(`--format must be table, csv or json, got ${JSON.stringify(format)}`);
      const jidText = valueOf(args, 'jid');
      let userJid: string | undefined;
      if (jidText !== undefined) {
        const jid = Jid.tryParse(jidText.trim());
        if (!jid || !jid.local) throw new UsageError(`--jid: not a JID: ${jidText}`);
        userJid = jid.bare;
      }
      const network = valueOf(args, 'network');
      const sinceText = valueOf(args, 'since');
      const untilText = valueOf(args, 'until');
      const since = sinceText ? parseTime(sinceText, now, 'since') : undefined;
      const until = untilText ? parseTime(untilText, now, 'until') : undefined;
      const { storage: storageConfig, log } = storageFromConfig(configPath(args), valueOf(args, 'adapter'));
      const storage = await openStorage(storageConfig, { migrate: true });
      let rows: TransportAuditEntry[];
      try {
        rows = await storage.transports.queryAudit({ userJid, network, since, until });
      } finally {
        await storage.close();
      }
      // P21: reading the audit data is itself logged (who ran it, with which filters).
      let who = 'unknown';
      try {
        who = os.userInfo().username;
      } catch {
        // no user database entry
      }
      log.info('transport connection log read', {
        osUser: who,
        jid: userJid ?? null,
        network: network ?? null,
        since: since?.toISOString() ?? null,
        until: until?.toISOString() ?? null,
        rows: rows.length,
      });
      process.stdout.write(formatAudit(rows, format));
      return 0;
    },
  },
);
