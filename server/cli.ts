#!/usr/bin/env node
/** The `gatehouse` command line: start the server and administer it. */
import { ConfigError, type Config } from './config/index.js';
import { HELP_FLAGS, UsageError, configFrom, parseArgs, readPassword, withStorage, type Command } from './cli/kit.js';
import { startServer } from './main.js';
import { runMigrations } from './storage/datasource.js';
import { HookBus } from './core/hooks.js';
import { LocalSessionRegistry } from './core/session.js';
import { AccountService } from './accounts/service.js';
import { systemClock } from '../shared/clock.js';
import { Jid } from '../shared/jid.js';
import { policyCommands } from './privacy/cli-policy.js';
import { privacyCommands } from './privacy/cli-privacy.js';
import { backupCommands } from './privacy/cli-backup.js';
import { statsCommands } from './privacy/cli-stats.js';
import { transportCommands } from '../transports/cli-transport.js';
import { ServerNotRunningError, controlRequest } from './admin/control.js';

function parseAccount(arg: string | undefined, config: Config): { username: string; host: string } {
  if (!arg) throw new UsageError('give the account as user@domain');
  const jid = Jid.tryParse(arg.includes('@') ? arg : `${arg}@${config.hosts[0]!.domain}`);
  if (!jid || !jid.local || jid.resource) throw new UsageError(`not a bare JID: ${arg}`);
  return { username: jid.local, host: jid.domain };
}

function withAccounts<T>(config: Config, fn: (accounts: AccountService) => Promise<T>): Promise<T> {
  return withStorage(config, (storage) => fn(new AccountService({ storage, hooks: new HookBus(), config, clock: systemClock, sessions: new LocalSessionRegistry() })));
}

const coreCommands: Record<string, Command> = {
  start: {
    usage: 'gatehouse start [--config FILE]',
    summary: 'start the server (embedded defaults without --config)',
    async run(args) {
      const config = configFrom(args);
      const server = await startServer(config);
      const c2s = server.listeners.filter((l) => l.kind === 'c2s');
      const tls = server.listeners.filter((l) => l.kind === 'c2s-tls');
      const hosts = config.hosts.map((h) => h.domain).join(', ');
      console.log(`Gatehouse is running for ${hosts}.`);
      for (const l of c2s) console.log(`  clients (STARTTLS): ${l.host} port ${l.port}`);
      for (const l of tls) console.log(`  clients (direct TLS): ${l.host} port ${l.port}`);
      for (const l of server.listeners.filter((x) => x.kind === 'component')) console.log(`  components (XEP-0114): ${l.host} port ${l.port}`);
      for (const l of server.listeners.filter((x) => x.kind === 's2s')) console.log(`  other servers (s2s): ${l.host} port ${l.port}`);
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
  'check-config': {
    usage: 'gatehouse check-config [--config FILE]',
    summary: 'validate the configuration and exit',
    async run(args) {
      const config = configFrom(args);
      console.log(`configuration OK: ${config.hosts.length} host(s), storage ${config.storage.type}`);
      return 0;
    },
  },
  migrate: {
    usage: 'gatehouse migrate [--config FILE]',
    summary: 'apply pending database migrations',
    async run(args) {
      const config = configFrom(args);
      const applied = await runMigrations(config.storage);
      console.log(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date');
      return 0;
    },
  },
  'user add': {
    usage: 'gatehouse user add USER@DOMAIN [--config FILE] [--password-file FILE]  (password read from the terminal or standard input)',
    summary: 'create an account',
    async run(args) {
      const config = configFrom(args);
      const { username, host } = parseAccount(args.positional[0], config);
      const password = await readPassword(args, `password for ${username}@${host}: `);
      await withAccounts(config, (a) => a.create(username, host, password, null));
      console.log(`created ${username}@${host}`);
      return 0;
    },
  },
  'user del': {
    usage: 'gatehouse user del USER@DOMAIN [--config FILE]',
    summary: 'delete an account and all its data',
    async run(args) {
      const config = configFrom(args);
      const { username, host } = parseAccount(args.positional[0], config);
      try {
        // A running server deletes it itself: it closes the account's sessions and tells its contacts.
        await controlRequest(config.dataDir, 'accounts.delete', { username, host });
      } catch (err) {
        if (!(err instanceof ServerNotRunningError)) throw err;
        await withAccounts(config, (a) => a.delete(username, host));
      }
      console.log(`deleted ${username}@${host}`);
      return 0;
    },
  },
  'user passwd': {
    usage: 'gatehouse user passwd USER@DOMAIN [--config FILE] [--password-file FILE]',
    summary: 'set an account password',
    async run(args) {
      const config = configFrom(args);
      const { username, host } = parseAccount(args.positional[0], config);
      const password = await readPassword(args, `new password for ${username}@${host}: `);
      await withAccounts(config, (a) => a.changePassword(username, host, password));
      console.log(`password changed for ${username}@${host}`);
      return 0;
    },
  },
  'user list': {
    usage: 'gatehouse user list [DOMAIN] [--config FILE]',
    summary: 'list accounts (admin only: the server never lists users to clients)',
    async run(args) {
      const config = configFrom(args);
      const accounts = await withAccounts(config, (a) => a.list(args.positional[0]));
      for (const a of accounts) console.log(`${a.username}@${a.host}\tcreated ${a.createdAt.toISOString()}\tlast used ${a.lastUsedAt?.toISOString() ?? 'never'}`);
      return 0;
    },
  },
};

/** Subcommands of every area; features add theirs to this list. */
const commands: Record<string, Command> = { ...coreCommands, ...policyCommands, ...privacyCommands, ...backupCommands, ...statsCommands, ...transportCommands };

function printHelp(): void {
  console.log('Usage: gatehouse COMMAND [options]\n\nCommands:');
  for (const [name, c] of Object.entries(commands)) console.log(`  ${name.padEnd(17)} ${c.summary}`);
  console.log('\nRun gatehouse COMMAND --help for the options of one command.');
}

export async function main(argv: string[]): Promise<number> {
  // Everything the server and its commands write (database, WAL, certificates, logs, backups,
  // exports, the control socket) is for this user only, whatever umask the shell had.
  process.umask(0o077);
  const words = argv.filter((a) => !a.startsWith('-'));
  const name = commands[`${words[0]} ${words[1]}`] ? `${words[0]} ${words[1]}` : words[0];
  if (!name) {
    printHelp();
    return argv.some((a) => HELP_FLAGS.has(a)) ? 0 : 2;
  }
  const command = commands[name];
  if (!command) {
    if (name === 'user') {
      console.error('gatehouse user: give one of add, del, passwd, list, export, import');
      return 2;
    }
    console.error(`gatehouse: unknown command '${name}' (see gatehouse --help)`);
    return 2;
  }
  if (argv.some((a) => HELP_FLAGS.has(a))) {
    console.log(`Usage: ${command.usage}\n\n${command.summary}`);
    return 0;
  }
  const rest = argv.slice(argv.indexOf(name.split(' ').at(-1)!) + 1);
  try {
    return await command.run(parseArgs(rest));
  } catch (err) {
    if (err instanceof ConfigError || err instanceof UsageError) {
      console.error(err instanceof ConfigError ? err.message : `gatehouse ${name}: ${err.message}`);
      return 2;
    }
    console.error(`gatehouse ${name}: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`gatehouse: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
