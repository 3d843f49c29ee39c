/**
 * Transports under the server: each configured transport runs as a child process
 * (`node dist/server/cli/transport.js transport NAME --config FILE`), connects back to this
 * server's component listener like any external component (XEP-0114), and is restarted with
 * exponential backoff (1 s doubling to 1 min, with jitter; the count starts over once a child ran
 * for a minute) when it exits. Every start and exit is logged with its code or signal; the child's
 * own log lines are passed on. At server shutdown the children get SIGTERM (their users see the
 * gateway go away) and SIGKILL after 10 s.
 *
 * Configuration: a top-level `transports: [{ name: irc, config: /etc/gatehouse/irc.yaml }]` list,
 * read defensively until the server's configuration schema declares it; each transport's own file
 * names its component domain and secret, which must match an entry of `components`.
 *
 * A transport whose component is held back (P22: added to the configuration, its privacy-policy
 * change not in force yet) is not started until its component comes into force ('config/in-force').
 *
 * Also the retention class of the transport connection log (P10/P13) when the transports share
 * the server's database: rows older than retention.detailedLogs are deleted by the sweeper; and the
 * transport commands (commands.ts: `transport`, `vault rotate`, `audit transports`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GatehouseModule, ServerContext } from '../../core/context.js';
import { inBatches, type RetentionClass } from '../../core/retention-class.js';
import { backoffDelay } from '../../../transports/kit/backoff.js';
import { formatDurationWords } from '../../../shared/format.js';
import { transportCommands } from './commands.js';
import { auditDownload, auditPage } from './admin-audit.js';
import { transportsConfigSection } from './config.js';
import { readYaml } from '../../../transports/kit/config.js';

export interface SupervisedTransport {
  /** The adapter: transports/<name>/index.ts. */
  name: string;
  /** The transport's configuration file. */
  config: string;
}

export interface SupervisorOptions {
  /** The transports to run; default: the server configuration's `transports` list. */
  transports?: SupervisedTransport[];
  /** Restart backoff bounds in milliseconds. */
  restart?: { min: number; max: number };
  /** A child that ran this long is considered healthy: the backoff starts over. */
  stableAfter?: number;
  /** How long a child may take to stop after SIGTERM. */
  stopTimeout?: number;
  /** The command line of a child (tests replace it). */
  command?: (t: SupervisedTransport) => { command: string; args: string[] };
}

/** The transport runner (server/cli/transport.ts; this file runs from dist/server/modules/transports/). */
const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'transport.js');

class Supervised {
  child: ChildProcess | null = null;
  attempt = 0;
  startedAt = 0;
  timer: NodeJS.Timeout | null = null;
  restarts = 0;
  private retired = false;

  constructor(
    readonly spec: SupervisedTransport,
    private readonly ctx: ServerContext,
    private readonly opts: Required<Omit<SupervisorOptions, 'transports'>>,
    private readonly isStopping: () => boolean,
  ) {}

  start(): void {
    if (this.isStopping() || this.retired) return;
    const { command, args } = this.opts.command(this.spec);
    const log = this.ctx.log;
    this.startedAt = Date.now();
    let child: ChildProcess;
    try {
      child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    } catch (err) {
      log.error('cannot start transport', { transport: this.spec.name, error: err instanceof Error ? err.message : String(err) });
      this.scheduleRestart();
      return;
    }
    this.child = child;
    log.info('transport started', { transport: this.spec.name, pid: child.pid ?? null, restarts: this.restarts });
    const relay = (stream: NodeJS.ReadableStream | null) => {
      if (!stream) return;
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trimEnd();
          buf = buf.slice(nl + 1);
          if (line) log.info('transport output', { transport: this.spec.name, line: line.slice(0, 2000) });
        }
      });
    };
    relay(child.stdout);
    relay(child.stderr);
    child.on('error', (err) => log.error('transport process error', { transport: this.spec.name, error: err.message }));
    child.on('exit', (code, signal) => {
      this.child = null;
      const ranMs = Date.now() - this.startedAt;
      const stopping = this.isStopping() || this.retired;
      (stopping ? log.info : log.warn).call(log, 'transport exited', { transport: this.spec.name, code, signal, ranMs });
      if (stopping) return;
      if (ranMs >= this.opts.stableAfter) this.attempt = 0;
      this.scheduleRestart();
    });
  }

  private scheduleRestart(): void {
    if (this.isStopping() || this.retired || this.timer) return;
    const delay = backoffDelay(this.attempt++, this.opts.restart);
    this.ctx.log.info('restarting transport later', { transport: this.spec.name, delayMs: delay });
    this.timer = setTimeout(() => {
      this.timer = null;
      this.restarts++;
      this.start();
    }, delay);
    this.timer.unref();
  }

  /** Stops the child; `retire`: for good (no restart when it exits), the server going on. */
  async stop(retire = false): Promise<void> {
    if (retire) this.retired = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const kill = setTimeout(() => child.kill('SIGKILL'), this.opts.stopTimeout);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }
}

export function createTransportsSupervisor(options: SupervisorOptions = {}): GatehouseModule & { running(): { name: string; pid: number | null; restarts: number }[] } {
  let supervised: Supervised[] = [];
  let stopping = false;
  /** In a cluster the transports run on one node, the one holding their task; elsewhere they wait. */
  let leading = true;
  let leaderCheck: NodeJS.Timeout | null = null;
  const paused = () => stopping || !leading;
  let offInForce = (): void => {};
  const opts = {
    restart: options.restart ?? { min: 1000, max: 60_000 },
    stableAfter: options.stableAfter ?? 60_000,
    stopTimeout: options.stopTimeout ?? 10_000,
    command: options.command ?? ((t: SupervisedTransport) => ({ command: process.execPath, args: [CLI, 'transport', t.name, '--config', t.config] })),
  };
  return {
    name: 'transports-supervisor',
    config: transportsConfigSection,
    retention: [transportConnectionsClass],
    clauses: ['P9', 'P10'],
    commands: { cli: Object.values(transportCommands) },
    admin: { pages: [auditPage], downloads: [auditDownload] },
    specs: [
      { id: 'XEP-0100', version: '1.0', status: 'complete', note: 'the IRC, Matrix and Discord transports (transports/, docs/transports.md): registration, jabber:iq:gateway, presence-driven login, XEP-0144 contact suggestions' },
      { id: 'XEP-0106', status: 'complete', note: 'legacy ids in transport JIDs' },
      {
        id: 'XEP-0066',
        version: '1.5',
        status: 'partial',
        note: 'jabber:x:oob URLs on transport messages: Matrix and Discord attachments re-hosted on the upload service (XEP-0363), the URL in body and OOB; a file a user sends (its upload URL as body and OOB) goes to Matrix and Discord as a file; no jabber:iq:oob (service-unavailable)',
      },
      { id: 'XEP-0045', status: 'partial', note: 'foreign channels as rooms served by transports: join (IRC: without registration), occupants, groupchat, subject, nick changes, kicks, private messages, history of lines kept for IRC users who stay connected; no room configuration' },
      { id: 'XEP-0059', version: '1.0', status: 'partial', note: 'paging of the IRC channel list in disco#items of IRC server JIDs (max, after, before, index)' },
      { id: 'XEP-0050', status: 'partial', note: 'transport settings and admin commands, single-stage' },
      { id: 'XEP-0144', status: 'partial', note: 'transports suggest contacts of the foreign network (add only)' },
      { id: 'XEP-0308', status: 'complete', note: 'corrections relayed by transports where the network has edits' },
      { id: 'XEP-0424', status: 'partial', note: 'retractions relayed by transports where the network has them' },
      { id: 'XEP-0444', status: 'complete', note: 'reactions relayed by transports where the network has them' },
      { id: 'XEP-0333', status: 'partial', note: 'displayed markers relayed by transports where the network has read receipts' },
      { id: 'XEP-0410', status: 'complete', note: 'self-pings answered in transport rooms' },
    ],
    load(ctx) {
      const list = options.transports ?? ctx.config.transports;
      supervised = list.map((t) => new Supervised(t, ctx, opts, paused));
      const inForce = (s: Supervised, components: readonly { domain: string }[]): boolean => {
        const domain = componentDomainOf(s.spec);
        return domain === null || components.some((c) => c.domain === domain);
      };
      const waiting = new Set<Supervised>();
      const startOrWait = (s: Supervised, components: readonly { domain: string }[]) => {
        if (inForce(s, components)) return s.start();
        waiting.add(s);
        ctx.log.info('transport not started: its component is held back until its privacy policy change takes effect', { transport: s.spec.name, component: componentDomainOf(s.spec) });
      };
      const startAll = () => {
        for (const s of supervised) startOrWait(s, ctx.config.components);
      };
      if (ctx.config.cluster.enabled && list.length > 0) {
        leading = false;
        leaderCheck = setInterval(() => {
          const holds = ctx.services.get('cluster')?.holds('transports') ?? false;
          if (holds && !leading) {
            leading = true;
            ctx.log.info('this node runs the transports (once per cluster)');
            startAll();
          } else if (!holds && leading) {
            leading = false;
            ctx.log.warn('another node runs the transports now: stopping them here');
            void Promise.all(supervised.map((s) => s.stop()));
          }
        }, 1000);
        leaderCheck.unref();
      } else startAll();
      offInForce = ctx.hooks.on('config/in-force', async ({ after }) => {
        // A held-back component came into force: its transport starts.
        for (const s of [...waiting]) {
          if (!inForce(s, after.components)) continue;
          waiting.delete(s);
          s.start();
        }
        if (options.transports) return;
        // A reload starts the transports added to the list and stops those removed (or moved to
        // another configuration file: stopped, then started with the new one).
        const same = (a: SupervisedTransport, b: SupervisedTransport) => a.name === b.name && a.config === b.config;
        const gone = supervised.filter((s) => !after.transports.some((t) => same(t, s.spec)));
        const added = after.transports.filter((t) => !supervised.some((s) => same(t, s.spec)));
        supervised = supervised.filter((s) => !gone.includes(s));
        for (const s of gone) {
          waiting.delete(s);
          ctx.log.info('stopping transport (removed from the configuration)', { transport: s.spec.name });
        }
        await Promise.all(gone.map((s) => s.stop(true)));
        for (const t of added) {
          const s = new Supervised(t, ctx, opts, paused);
          supervised.push(s);
          startOrWait(s, after.components);
        }
      });
    },
    async unload() {
      offInForce();
      stopping = true;
      if (leaderCheck) clearInterval(leaderCheck);
      await Promise.all(supervised.map((s) => s.stop()));
    },
    running() {
      return supervised.map((s) => ({ name: s.spec.name, pid: s.child?.pid ?? null, restarts: s.restarts }));
    },
  };
}

/**
 * The component domain a transport's own file names, or null when it cannot be read here (the
 * transport then starts, and reports the problem itself).
 */
function componentDomainOf(t: SupervisedTransport): string | null {
  try {
    const raw = readYaml(readFileSync(t.config, 'utf8'), t.config) as { component?: { domain?: unknown } } | null;
    const domain = raw?.component?.domain;
    return typeof domain === 'string' ? domain.toLowerCase() : null;
  } catch {
    return null;
  }
}

const transportConnectionsClass: RetentionClass = {
  name: 'transport-connections',
  clause: 'P13',
  describe: (config) => `transport connection-log rows (P10) older than ${formatDurationWords(config.retention.detailedLogs)}`,
  async run(env, now, { dryRun, batch }) {
    const before = new Date(now.getTime() - env.config.retention.detailedLogs);
    if (dryRun) return env.storage.transports.countAuditBefore(before);
    return inBatches(batch, (limit) => env.storage.transports.deleteAuditBefore(before, limit));
  },
};
