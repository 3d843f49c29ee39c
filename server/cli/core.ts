/** The core commands of `gatehouse`: start the server, check the configuration, migrate, manage accounts. */
import type { Config } from '../config/index.js';
import { CONFIG_FLAG, UsageError, commandSet, configFrom, moduleStorages, readPassword, withStorage, type FlagDefinition } from './kit.js';
import type { CommandContext } from '../commands/command.js';
import { startServer } from '../main.js';
import { runMigrations } from '../../storage/datasource.js';
import { HookBus } from '../core/hooks.js';
import { LocalSessionRegistry } from '../core/session.js';
import { AccountService } from '../accounts/service.js';
import { systemClock } from '../../shared/clock.js';
import { Jid } from '../../shared/jid.js';
import { ServerNotRunningError, controlRequest } from '../admin/control.js';
import { holdBackReport } from '../modules/policy/holdback.js';
import { PolicyChangeError } from '../modules/policy/versions.js';
import { existsSync } from 'node:fs';
import { hashReport, type HashReport } from '../auth/scram-offer.js';
import type { Storage } from '../../storage/types.js';
import { nodesFlag, reportStarted, runPrimary, workerConfig, workerIndex } from './nodes.js';

const stringFlag = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined);

const NODES_FLAG: FlagDefinition = {
  name: 'nodes',
  type: 'string',
  value: 'N',
  doc: 'run N cluster nodes in worker processes sharing the listening ports, so one machine uses N cores (needs cluster.enabled; docs/cluster.md)',
};

const PASSWORD_FILE: FlagDefinition = {
  name: 'password-file',
  type: 'string',
  value: 'FILE',
  doc: 'read the password from the first line of FILE; without it, the password is read from the terminal (not echoed) or from the first line of standard input',
};

const ACCOUNT_ARG = { name: 'USER@DOMAIN', doc: 'the account; a bare USER means USER at the first configured host' };

function parseAccount(arg: string | undefined, config: Config): { username: string; host: string } {
  if (!arg) throw new UsageError('give the account as user@domain');
  const jid = Jid.tryParse(arg.includes('@') ? arg : `${arg}@${config.hosts[0]!.domain}`);
  if (!jid || !jid.local || jid.resource) throw new UsageError(`not a bare JID: ${arg}`);
  return { username: jid.local, host: jid.domain };
}

async function hashesOfHosts(config: Config, storage: Storage): Promise<HashReport[]> {
  return hashReport(config.hosts.map((h) => h.domain), await storage.accounts.verifierCoverage(), config.auth);
}

/**
 * A running server chooses the SCRAM mechanisms it offers from the stored verifiers (auth/scram-offer.ts):
 * after writing some here, it counts again at once instead of within a minute. Nothing when none runs.
 */
async function recountOnServer(config: Config): Promise<void> {
  await controlRequest(config.dataDir, 'accounts.recount', {}, 5000).catch(() => undefined);
}

function withAccounts<T>(config: Config, ctx: CommandContext, fn: (accounts: AccountService) => Promise<T>): Promise<T> {
  return withStorage(config, ctx, (storage) => fn(new AccountService({ storage, hooks: new HookBus(), config, clock: systemClock, sessions: new LocalSessionRegistry() })));
}

export const coreCommands = commandSet(
  {
    name: 'start',
    summary: 'start the server (embedded defaults without --config)',
    description:
      'Runs in the foreground until SIGINT or SIGTERM, then stops cleanly. Prints where it listens and how to connect.\n\n' +
      'SIGHUP reloads: the configuration file and the certificates are read again without dropping sessions, as gatehouse reload does; the log names what changed and what needs a restart.\n\n' +
      'With --nodes N (cluster mode) it starts N nodes as worker processes that share the listening ports, named after cluster.node with -1, -2, ... appended; a node that dies is started again. Node 1 answers the control socket (gatehouse status, cluster status, kick); SIGHUP and SIGTERM go to every node.',
    flags: [CONFIG_FLAG, NODES_FLAG],
    server: 'no',
    async run(args) {
      const index = workerIndex();
      const asWorker = (c: Config) => (index === null ? c : workerConfig(c, index));
      const config = asWorker(configFrom(args));
      const nodes = index === null ? nodesFlag(stringFlag(args.flags.get('nodes')), config) : null;
      if (nodes !== null) return runPrimary(nodes, process.argv.slice(2));
      // Installed before the start: Node's default for SIGHUP would end the process.
      let reload: (() => Promise<unknown>) | null = null;
      process.on('SIGHUP', () => {
        // The server logs the outcome (what changed, what needs a restart, or why it was refused).
        if (reload) void reload().catch(() => {});
        else console.log('received SIGHUP while starting: the configuration just read stays');
      });
      const server = await startServer(config, { loadConfig: () => asWorker(configFrom(args)) });
      reload = () => server.reload();
      if (index !== null) reportStarted();
      const c2s = server.listeners.filter((l) => l.kind === 'c2s');
      const tls = server.listeners.filter((l) => l.kind === 'c2s-tls');
      const hosts = config.hosts.map((h) => h.domain).join(', ');
      console.log(`Gatehouse is running for ${hosts}.`);
      for (const l of c2s) console.log(`  clients (STARTTLS): ${l.host} port ${l.port}`);
      for (const l of tls) console.log(`  clients (direct TLS): ${l.host} port ${l.port}`);
      for (const l of server.listeners.filter((x) => x.kind === 'component')) console.log(`  components (XEP-0114): ${l.host} port ${l.port}`);
      for (const l of server.listeners.filter((x) => x.kind === 's2s')) console.log(`  other servers (s2s): ${l.host} port ${l.port}`);
      for (const l of server.ctx.services.get('https-listeners') ?? []) console.log(`  HTTPS, web clients at /xmpp-websocket: ${l.host} port ${l.port}`);
      console.log(`  data: ${config.dataDir}  database: ${config.storage.type}`);
      if (!config.tls.cert) console.log('  certificate: self-signed (accept it in your client, or set tls.cert/tls.key)');
      const reg = config.hosts.map((h) => `${h.domain}: ${typeof h.registration === 'string' ? h.registration : 'allow ' + h.registration.allow.join(' ')}`).join('; ');
      console.log(`  in-band registration: ${reg}`);
      console.log(`Connect with any XMPP client as user@${config.hosts[0]!.domain}, or add a user: npm run gatehouse -- user add user@${config.hosts[0]!.domain}`);
      const shutdown = async (signal: string) => {
        console.log(`received ${signal}, shutting down`);
        await server.stop();
        process.exit(0);
      };
      process.once('SIGINT', () => void shutdown('SIGINT'));
      process.once('SIGTERM', () => void shutdown('SIGTERM'));
      return new Promise<number>(() => {});
    },
  },
  {
    name: 'check-config',
    summary: 'validate the configuration and exit',
    description:
      'Exit code 0 when the configuration is valid, 2 (with the first error, naming its key) when not. Also lists the parts that a start would hold back until their privacy policy change takes effect (P22), read from the database; exit code 1 when the server could not start with it at all.',
    flags: [CONFIG_FLAG],
    server: 'no',
    async run(args, ctx) {
      const config = configFrom(args);
      console.log(`configuration OK: ${config.hosts.length} host(s), storage ${config.storage.type}`);
      const { path } = config.storage.type === 'sqlite' ? config.storage : { path: null };
      if (path !== null && (path === ':memory:' || !existsSync(path))) {
        console.log("privacy policy: no database yet; the first start stores this configuration's policy, in force at once");
        return 0;
      }
      try {
        const versions = await withStorage(config, ctx, (s) => s.policyVersions.list());
        for (const line of holdBackReport(config, versions, systemClock.now())) console.log(line);
        return 0;
      } catch (err) {
        if (!(err instanceof PolicyChangeError)) throw err;
        console.error(`gatehouse check-config: ${err.message}`);
        return 1;
      }
    },
  },
  {
    name: 'migrate',
    summary: 'apply pending database migrations',
    flags: [CONFIG_FLAG],
    server: 'no',
    async run(args, ctx) {
      const config = configFrom(args);
      const applied = await runMigrations(config.storage, { modules: moduleStorages(ctx) });
      console.log(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date');
      return 0;
    },
  },
  {
    name: 'user add',
    summary: 'create an account',
    args: [ACCOUNT_ARG],
    flags: [CONFIG_FLAG, PASSWORD_FILE],
    server: 'no',
    async run(args, ctx) {
      const config = configFrom(args);
      const { username, host } = parseAccount(args.positional[0], config);
      const password = await readPassword(args, `password for ${username}@${host}: `);
      await withAccounts(config, ctx, (a) => a.create(username, host, password, null));
      await recountOnServer(config);
      console.log(`created ${username}@${host}`);
      return 0;
    },
  },
  {
    name: 'user del',
    summary: 'delete an account and all its data',
    description: 'On a running server the server deletes it itself: it closes the account\'s sessions and tells its contacts. Otherwise the account is deleted in the database.',
    args: [ACCOUNT_ARG],
    flags: [CONFIG_FLAG],
    server: 'if-running',
    control: 'accounts.delete',
    async run(args, ctx) {
      const config = configFrom(args);
      const { username, host } = parseAccount(args.positional[0], config);
      try {
        // A running server deletes it itself: it closes the account's sessions and tells its contacts.
        await controlRequest(config.dataDir, 'accounts.delete', { username, host });
      } catch (err) {
        if (!(err instanceof ServerNotRunningError)) throw err;
        await withAccounts(config, ctx, (a) => a.delete(username, host));
      }
      console.log(`deleted ${username}@${host}`);
      return 0;
    },
  },
  {
    name: 'user passwd',
    summary: 'set an account password',
    args: [ACCOUNT_ARG],
    flags: [CONFIG_FLAG, PASSWORD_FILE],
    server: 'no',
    async run(args, ctx) {
      const config = configFrom(args);
      const { username, host } = parseAccount(args.positional[0], config);
      const password = await readPassword(args, `new password for ${username}@${host}: `);
      await withAccounts(config, ctx, (a) => a.changePassword(username, host, password));
      await recountOnServer(config);
      console.log(`password changed for ${username}@${host}`);
      return 0;
    },
  },
  {
    name: 'user list',
    summary: 'list accounts (admin only: the server never lists users to clients)',
    description: 'One line per account: JID, creation time and last use.',
    args: [{ name: 'DOMAIN', doc: 'only the accounts of this host', optional: true }],
    flags: [CONFIG_FLAG],
    server: 'no',
    async run(args, ctx) {
      const config = configFrom(args);
      const accounts = await withAccounts(config, ctx, (a) => a.list(args.positional[0]));
      for (const a of accounts) console.log(`${a.username}@${a.host}\tcreated ${a.createdAt.toISOString()}\tlast used ${a.lastUsedAt?.toISOString() ?? 'never'}`);
      return 0;
    },
  },
  {
    name: 'user hashes',
    summary: 'count accounts per host by stored SCRAM verifiers, and the SCRAM mechanisms each host offers',
    description:
      'One line per host: how many accounts have a SCRAM-SHA-1 and a SCRAM-SHA-256 verifier, how many lack one of `auth.hashes` (accounts imported from Prosody or ejabberd with SCRAM-SHA-1 only), and which SCRAM hashes the host offers with these counts and `auth.offerCoverage`. ' +
      'An account gets the verifiers it lacks when its password is next seen in clear (a PLAIN login over TLS, a password change, an admin console login). Counts only: no account is named.',
    flags: [CONFIG_FLAG],
    server: 'no',
    async run(args, ctx) {
      const config = configFrom(args);
      const report = await withStorage(config, ctx, (storage) => hashesOfHosts(config, storage));
      for (const r of report) {
        const lacking = Object.entries(r.lacking).map(([h, n]) => `${n} lack SCRAM-${h}`);
        const offered = r.offered.map((h) => `SCRAM-${h}`).join(', ');
        console.log(`${r.host}: ${r.accounts} accounts; SCRAM-SHA-1 ${r.withHash['SHA-1']}, SCRAM-SHA-256 ${r.withHash['SHA-256']}; ${lacking.join(', ')}; offers ${offered} (auth.offerCoverage ${config.auth.offerCoverage}%)`);
      }
      return 0;
    },
  },
);
