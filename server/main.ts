import { mkdirSync } from 'node:fs';
import { fakeSaltKey } from './auth/server-secret.js';
import type { Socket } from 'node:net';
import type { Config } from './config/index.js';
import { openStorage } from '../storage/datasource.js';
import { dataFiles, looseFiles } from './config/file-modes.js';
import type { Storage } from '../storage/types.js';
import { Logger } from '../shared/logger.js';
import { systemClock, type Clock } from '../shared/clock.js';
import { HookBus } from './core/hooks.js';
import { Router } from './core/router.js';
import { LocalSessionRegistry } from './core/session.js';
import { DiscoRegistry } from './core/disco-registry.js';
import type { GatehouseModule, ServerContext } from './core/context.js';
import { checkModuleOrder } from './core/module.js';
import { ServiceRegistry } from './core/services.js';
import { ScramOffer } from './auth/scram-offer.js';
import { ConfigInForce } from './core/config-in-force.js';
import { ReloadRefused, type ReloadOutcome } from './core/runtime.js';
import { reloadedConfig } from './reload.js';
import { ConfigError } from './config/index.js';
import { loadTlsContexts } from './net/tls.js';
import { ConnectionLimits, listen, rejectionLogger, type BoundListener } from './net/listeners.js';
import { C2SStream, type C2SEnvironment } from './streams/c2s.js';
import { startComponentListeners } from './streams/component.js';
import { startS2sListeners } from './federation/s2s-in.js';
import { allModules } from './modules/index.js';
import { RotatingLogFile } from './modules/log-files/log-files.js';
import { ClusterNode } from './cluster/node.js';

export interface RunningServer {
  ctx: ServerContext;
  listeners: BoundListener[];
  /** First bound port of a listener kind ('c2s', 'c2s-tls', ...). */
  port(kind: string): number;
  /** Re-reads the configuration (StartOptions.loadConfig) and the certificates; throws ReloadRefused. */
  reload(): Promise<ReloadOutcome>;
  stop(): Promise<void>;
}

export interface StartOptions {
  clock?: Clock;
  log?: Logger;
  modules?: GatehouseModule[];
  /** Reads the configuration again for a reload (the start command re-reads its file); without it a reload is refused. */
  loadConfig?: () => Config;
}


/** Wiring only: config -> storage -> modules -> listeners. */
export async function startServer(config: Config, opts: StartOptions = {}): Promise<RunningServer> {
  const clock = opts.clock ?? systemClock;
  // Log files name JIDs and IPs: rotated and pruned after retention.detailedLogs (P13).
  const logFile = !opts.log && config.log.file ? new RotatingLogFile(config.log.file, { retention: config.retention.detailedLogs, clock }) : null;
  const log = opts.log ?? new Logger({
      level: config.log.level,
      format: config.log.format,
      sink: logFile ? (line) => logFile.write(line) : undefined,
      node: config.cluster.enabled ? config.cluster.node : undefined,
    });
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  for (const f of looseFiles(dataFiles(config))) log.warn('open to other users (group or others have access): restrict it with chmod go-rwx', { path: f.path, mode: f.mode });
  // The installation's secret is read (or made) now, so a damaged file stops the start, not a login.
  fakeSaltKey(config);

  // Certificates of every configured host, held back or not (P22): a host coming into force needs its own.
  // Kept for the whole run: a reload adopt()s contexts made from the renewed files into it.
  const tls = await loadTlsContexts(config);
  const modules = opts.modules ?? allModules();
  const storage: Storage = await openStorage(config.storage, {
    migrate: config.storage.migrateOnStart,
    logger: (m) => log.info(m),
    modules: modules.flatMap((m) => (m.storage ? [m.storage] : [])),
  });
  const hooks = new HookBus((event, err) => log.error('hook failed', { event, error: err instanceof Error ? err.message : String(err) }));
  // Cluster mode: the registry also holds stand-ins for the other nodes' sessions (server/cluster/).
  const cluster = config.cluster.enabled ? new ClusterNode(config.cluster, log.child('cluster')) : null;
  const sessions = cluster ? cluster.registry : new LocalSessionRegistry();
  const inForce = new ConfigInForce(config, hooks);
  // The hosts served: those in force (a host held back by the policy module answers host-unknown).
  const hosts = new Set(config.hosts.map((h) => h.domain));
  hooks.on(
    'config/in-force',
    ({ after }) => {
      hosts.clear();
      for (const h of after.hosts) hosts.add(h.domain);
    },
    'observe',
  );
  const router = new Router(hosts, sessions, hooks, clock, log.child('router'));
  const disco = new DiscoRegistry();
  const ctx: ServerContext = {
    config: inForce.view,
    configInForce: inForce,
    storage,
    router,
    sessions,
    hooks,
    clock,
    log,
    disco,
    modules,
    services: new ServiceRegistry(),
    startedAt: clock.now(),
  };
  ctx.services.provide('tls-contexts', tls);
  const scramOffer = new ScramOffer(storage, () => ctx.config.auth, log.child('auth'));
  ctx.services.provide('scram-offer', scramOffer);
  for (const event of ['account/created', 'account/deleted', 'account/verifiers-changed'] as const) hooks.on(event, () => scramOffer.changed(), 'observe');

  const loaded: GatehouseModule[] = [];
  try {
    await scramOffer.start();
    // Joined before the modules load: they find the cluster service (and the other nodes' sessions) at load.
    await cluster?.start(ctx);
    checkModuleOrder(modules);
    for (const m of modules) {
      hooks.owner = m.name;
      try {
        await m.prepare?.(ctx);
      } finally {
        hooks.owner = 'core';
      }
    }
    for (const m of modules) {
      hooks.owner = m.name;
      try {
        await m.load(ctx);
      } finally {
        hooks.owner = 'core';
      }
      loaded.push(m);
    }
    // A lower tls.minVersion may be held back (P22): the contexts then keep the one in force.
    if (ctx.config.tls.minVersion !== config.tls.minVersion) tls.adopt(await loadTlsContexts({ ...config, tls: ctx.config.tls }));
  } catch (err) {
    scramOffer.stop();
    await cluster?.stop();
    for (const m of loaded.reverse()) await m.unload?.();
    await storage.close();
    logFile?.close();
    throw err;
  }

  const env: C2SEnvironment = { ctx, tls, streams: new Set() };
  // One count for both client listeners: 5222 and 5223 share the per-address and total caps.
  const limits = new ConnectionLimits(config.c2s.maxConnections, config.c2s.maxConnectionsPerIp);
  const listeners: BoundListener[] = [];
  let componentListeners = false;
  let stopComponents = (): void => {};
  const s2sStops: (() => void)[] = [];
  const stopS2s = (): void => {
    for (const stop of s2sStops.splice(0)) stop();
  };
  const onConnection = (direct: boolean) => (socket: Socket, ip: string) => {
    new C2SStream(env, socket, ip, direct);
  };
  try {
    const onRejected = rejectionLogger(log, 'c2s');
    for (const address of config.listen.c2s) {
      listeners.push(await listen({ kind: 'c2s', address, limits, onConnection: onConnection(false), onRejected }));
    }
    for (const address of config.listen.c2sDirectTls) {
      const handshakeTimeout = config.tls.handshakeTimeout;
      listeners.push(await listen({ kind: 'c2s-tls', address, tls, handshakeTimeout, limits, onConnection: onConnection(true), onRejected }));
    }
    const components = await startComponentListeners(ctx);
    listeners.push(...components.listeners);
    componentListeners = components.listeners.length > 0;
    stopComponents = components.stop;
    const s2s = await startS2sListeners(ctx);
    listeners.push(...s2s.listeners);
    s2sStops.push(s2s.stop);
  } catch (err) {
    for (const l of listeners) l.server.close();
    await cluster?.stop();
    for (const m of [...modules].reverse()) await m.unload?.();
    await storage.close();
    logFile?.close();
    throw err;
  }
  for (const l of listeners) log.info('listening', { kind: l.kind, address: l.host, port: l.port });

  let stopped = false;
  // Federation held back at start (P22) opens its listener when it comes into force; 'fallback'
  // runs after the modules' handlers, so the s2s module has set up its service by then.
  hooks.on(
    'config/in-force',
    async ({ before, after }) => {
      if (stopped || before.listen.s2s.length > 0 || after.listen.s2s.length === 0) return;
      const s2s = await startS2sListeners(ctx);
      listeners.push(...s2s.listeners);
      s2sStops.push(s2s.stop);
      for (const l of s2s.listeners) log.info('listening', { kind: l.kind, address: l.host, port: l.port });
    },
    'fallback',
  );
  hooks.on('config/in-force', ({ before, after }) => {
    if (before.tls.minVersion !== after.tls.minVersion) log.warn('tls.minVersion comes into force at the next start', { configured: after.tls.minVersion, inForce: before.tls.minVersion });
  });

  const sweep = setInterval(() => {
    const now = Date.now();
    for (const s of env.streams) s.sweep(now);
  }, sweepInterval(config));
  sweep.unref();

  /** One reload at a time: a second SIGHUP waits for the first. */
  let reloading: Promise<unknown> = Promise.resolve();
  const reloadNow = async (): Promise<ReloadOutcome> => {
    if (stopped) throw new ReloadRefused('the server is stopping');
    if (!opts.loadConfig) throw new ReloadRefused('this server was started without a configuration file to read again');
    let file: Config;
    try {
      file = opts.loadConfig();
    } catch (err) {
      if (err instanceof ConfigError) throw new ReloadRefused(err.message);
      throw err;
    }
    const { next, changed, needsRestart } = reloadedConfig(inForce.file, file);
    // The certificates are read before anything changes: a missing or broken file refuses the reload.
    let fresh;
    try {
      fresh = await loadTlsContexts(next);
    } catch (err) {
      throw new ReloadRefused(`certificate: ${err instanceof Error ? err.message : String(err)}`);
    }
    // The policy module decides what of the new file is in force (P22: a change of the published
    // policy is held back until announced, as at a start); 'config/in-force' tells the modules.
    inForce.setFile(next);
    const policy = ctx.services.get('policy');
    if (policy) await policy.refresh();
    else await inForce.put(next);
    const running = inForce.get();
    if (running.tls.minVersion !== next.tls.minVersion) fresh = await loadTlsContexts({ ...next, tls: running.tls });
    tls.adopt(fresh);
    log.setLevel(running.log.level);
    limits.setCaps(running.c2s.maxConnections, running.c2s.maxConnectionsPerIp);
    // The component listener opens with the first component (its address is listen.components).
    if (!stopped && !componentListeners && next.components.length > 0 && !needsRestart.includes('listen.components')) {
      const components = await startComponentListeners(ctx);
      listeners.push(...components.listeners);
      componentListeners = components.listeners.length > 0;
      stopComponents = components.stop;
      for (const l of components.listeners) log.info('listening', { kind: l.kind, address: l.host, port: l.port });
    }
    const heldBack = policy ? policy.held().map((p) => p.change) : [];
    const outcome = { changed: [...changed, 'certificates'], needsRestart, heldBack };
    log.info('configuration reloaded', { changed: outcome.changed.join(', ') });
    if (needsRestart.length > 0) log.warn(`needs a restart: ${needsRestart.join(', ')}`);
    return outcome;
  };
  const reload = (): Promise<ReloadOutcome> => {
    const run = reloading.then(reloadNow, reloadNow);
    reloading = run.catch(() => {});
    return run.catch((err: unknown) => {
      log.error('reload refused, the running configuration stays', { error: err instanceof Error ? err.message : String(err) });
      throw err;
    });
  };
  ctx.services.provide('runtime', { reload, listeners: () => listeners.map(({ kind, host, port }) => ({ kind, host, port })) });

  return {
    ctx,
    listeners,
    reload,
    port(kind) {
      const l = listeners.find((x) => x.kind === kind);
      if (!l) throw new Error(`no ${kind} listener`);
      return l.port;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(sweep);
      await Promise.all(listeners.map((l) => new Promise<void>((r) => l.server.close(() => r()))).map((p) => Promise.race([p, delay(100)])));
      // Modules' last words go out while streams and links are open (a slow link holds nobody up long).
      await Promise.race([ctx.hooks.emit('server/stopping', {}), delay(2_000)]);
      // The other nodes end this node's sessions for their users while the sessions are still listed.
      await cluster?.leave();
      for (const s of [...env.streams]) s.close('system-shutdown');
      stopComponents();
      stopS2s();
      scramOffer.stop();
      await cluster?.stop();
      for (const m of [...modules].reverse()) await m.unload?.();
      await storage.close();
      logFile?.close();
    },
  };
}

/** Often enough that no timeout overshoots by more than half its length, at most every 5 s. */
function sweepInterval(config: Config): number {
  const shortest = Math.min(config.c2s.authTimeout, config.c2s.idlePingAfter, config.c2s.pingTimeout);
  return Math.max(100, Math.min(5_000, Math.floor(shortest / 2)));
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
