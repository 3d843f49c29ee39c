/**
 * A transport with a real network adapter (Matrix, Discord) for the end-to-end tests, next to the
 * fake homeserver or fake Discord: a component of a test Gatehouse (kit-harness.ts's startServer, or
 * an upload server), its database and vault key in a directory, its log lines kept for checking.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Logger } from '../../shared/logger.js';
import type { AdapterFactory } from '../../transports/kit/adapter.js';
import { parseTransportConfig, type TransportConfig } from '../../transports/kit/config.js';
import { startTransport, type RunningTransport } from '../../transports/kit/gateway.js';
import { createAdapter as createMatrixAdapter } from '../../transports/matrix/index.js';
import { GW, SECRET } from './kit-harness.js';

export interface TransportFixtureOptions {
  /** The adapter's name (as in `gatehouse transport NAME`) and its factory. */
  adapter: string;
  createAdapter: AdapterFactory;
  /** Gatehouse's component listener. */
  componentPort: number;
  /** The component's domain (default GW). */
  domain?: string;
  /**
   * Raw transport settings merged over the defaults (gracePeriod 2s, loginTimeout 5s, reconnect
   * 50 to 400 ms): `network:` in seconds as in a transport's YAML file, and what else a test needs.
   */
  settings: Record<string, unknown>;
  /** A directory to share with another transport (stop() keeps it); by default one of its own. */
  dir?: string;
  /** Where the transport's log lines go (by default an array of its own). */
  logLines?: string[];
}

export interface TransportFixture {
  readonly config: TransportConfig;
  readonly dir: string;
  readonly logLines: string[];
  /**
   * Builds the adapter from `network:` and starts the transport; again after a stop, on the same
   * database and vault key. With `kitSettings` the adapter gets the kit's settings too, as
   * `gatehouse transport NAME` gives them.
   */
  start(opts?: { kitSettings?: boolean }): Promise<RunningTransport>;
  /** Stops the transport started last (if it runs) and removes the directory it made. */
  stop(): Promise<void>;
}

const quiet = { debug() {}, info() {}, warn() {} };

export function transportFixture(opts: TransportFixtureOptions): TransportFixture {
  const { adapter } = opts;
  const dir = opts.dir ?? mkdtempSync(path.join(tmpdir(), `gatehouse-${adapter}-e2e-`));
  const logLines = opts.logLines ?? [];
  const config = parseTransportConfig(
    {
      adapter,
      component: { domain: opts.domain ?? GW, secret: SECRET, host: '127.0.0.1', port: opts.componentPort },
      storage: { type: 'sqlite', path: path.join(dir, `${adapter}.sqlite`) },
      vault: { keyFile: path.join(dir, 'keys', `${adapter}.key`) },
      gracePeriod: '2s',
      loginTimeout: '5s',
      reconnect: { min: '50ms', max: '400ms' },
      ...opts.settings,
    },
    dir,
    adapter,
    {},
  );
  let running: RunningTransport | null = null;
  return {
    config,
    dir,
    logLines,
    async start(o = {}) {
      const network = await opts.createAdapter(config.network, quiet, o.kitSettings ? { loginTimeoutMs: config.loginTimeout } : undefined);
      const log = new Logger({ level: 'debug', format: 'text', sink: (l) => logLines.push(l) }, `transport-${adapter}`);
      running = await startTransport({ config, adapter: network, log, env: {} });
      return running;
    },
    async stop() {
      await running?.stop().catch(() => undefined);
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The Matrix transport: `where` it connects (and logs), `settings` as in transportFixture. */
export function matrixTransport(where: Omit<TransportFixtureOptions, 'adapter' | 'createAdapter' | 'settings'>, settings: Record<string, unknown>): TransportFixture {
  return transportFixture({ ...where, adapter: 'matrix', createAdapter: createMatrixAdapter, settings });
}
