/** Starts a real Gatehouse server for a test: random loopback ports, a temporary data directory. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, type Config } from '../../server/config/index.js';
import { startServer, type RunningServer } from '../../server/main.js';
import { Logger, type LogLevel } from '../../shared/logger.js';
import type { Clock } from '../../shared/clock.js';
import { TestClient } from './xmpp-client.js';
import { makeVerifier } from '../../server/auth/scram.js';
import type { StorageConfig } from '../../storage/datasource.js';
import type { GatehouseModule } from '../../server/core/context.js';
import { allModules } from '../../server/modules/index.js';
import { adminHttpListeners } from '../../server/admin/http.js';
import type { ReloadOutcome } from '../../server/core/runtime.js';
import { writeClusterSecrets } from './cluster-secrets.js';

export interface TestServer {
  server: RunningServer;
  config: Config;
  dir: string;
  /** Every log line the server wrote (for checking that no secret leaks). */
  logLines: string[];
  port: number;
  tlsPort: number;
  /** The XEP-0114 component listener's port (0 when no component listener is open). */
  componentPort: number;
  /** The server-to-server listener's port (0 when no s2s listener is open). */
  s2sPort: number;
  /** The admin HTTP listener's port (0 when listen.admin is empty or the admin-http module is not loaded). */
  adminPort: number;
  client(opts?: { directTls?: boolean; plain?: boolean; localAddress?: string; domain?: string; streamPrefixes?: Record<string, string> }): Promise<TestClient>;
  /** Registers (in-band) and logs in a new client. */
  user(username: string, password?: string, resource?: string): Promise<TestClient>;
  /**
   * Reloads the server as if its configuration file now held the start's configuration with
   * `config` merged over it (deep for plain objects); rejects with the refusal.
   */
  reload(config?: Record<string, unknown>): Promise<ReloadOutcome>;
  stop(): Promise<void>;
}

export interface TestServerOptions {
  /** Raw configuration merged over the test defaults (deep for plain objects). */
  config?: Record<string, unknown>;
  storage?: StorageConfig;
  clock?: Clock;
  logLevel?: LogLevel;
  /** Modules to load instead of server/modules/index.ts's list. */
  modules?: GatehouseModule[];
  /** Files written into the data directory before the start (name → content). */
  files?: Record<string, string>;
}

export async function startTestServer(opts: TestServerOptions = {}): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-test-'));
  const raw = deepMerge(
    {
      dataDir: dir,
      hosts: [{ domain: 'localhost', registration: 'open' }],
      listen: { c2s: [{ host: '127.0.0.1', port: 0 }], c2sDirectTls: [{ host: '127.0.0.1', port: 0 }], components: [], s2s: [], admin: [], https: [] },
      auth: { scramIterations: 4096 },
      // Tests register many accounts from loopback; test/accounts/registration-limit tests the limit.
      registrationLimit: { maxPerAddress: 0 },
      log: { level: opts.logLevel ?? 'debug' },
      ...(opts.storage ? { storage: storageRaw(opts.storage) } : {}),
    },
    opts.config ?? {},
  );
  for (const [name, content] of Object.entries(opts.files ?? {})) writeFileSync(join(dir, name), content, { mode: 0o600 });
  // Cluster nodes share these files (a node whose copies differ refuses to join).
  if ((raw.cluster as { enabled?: boolean } | undefined)?.enabled) writeClusterSecrets(dir);
  const config = parseConfig(raw, dir);
  const logLines: string[] = [];
  const log = new Logger({ level: config.log.level, format: 'text', sink: (l) => logLines.push(l) });
  let file = raw;
  const server = await startServer(config, { log, clock: opts.clock, modules: opts.modules, loadConfig: () => parseConfig(file, dir) });
  const port = server.port('c2s');
  const tlsPort = config.listen.c2sDirectTls.length ? server.port('c2s-tls') : 0;
  const clients: TestClient[] = [];
  const ts: TestServer = {
    server,
    config,
    dir,
    logLines,
    port,
    tlsPort,
    componentPort: server.listeners.find((l) => l.kind === 'component')?.port ?? 0,
    s2sPort: server.listeners.find((l) => l.kind === 's2s')?.port ?? 0,
    adminPort: adminHttpListeners(server.ctx)[0]?.port ?? 0,
    async client(o = {}) {
      const c = await TestClient.connect({ port: o.directTls ? tlsPort : port, ...o });
      clients.push(c);
      return c;
    },
    async user(username, password = 'secret-' + username, resource) {
      const c = await ts.client();
      const reg = await c.register(username, password);
      if (reg.attrs.type !== 'result') throw new Error(`registration failed: ${reg}`);
      await c.login(username, password, { resource });
      return c;
    },
    reload(over = {}) {
      file = deepMerge(raw, over);
      return server.reload();
    },
    async stop() {
      for (const c of clients) c.destroy();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return ts;
}

function storageRaw(s: StorageConfig): Record<string, unknown> {
  return s.type === 'sqlite' ? { type: 'sqlite', path: s.path } : { type: s.type, url: s.url };
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? deepMerge(b, v) : v;
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The server's module list with some replaced by test instances of the same name (kept in place); new ones appended. */
/** Runs `body` against a server started with `config`, and stops the server whatever happens. */
export async function withTestServer(config: Record<string, unknown>, body: (ts: TestServer) => Promise<void>): Promise<void> {
  const ts = await startTestServer({ config, logLevel: 'warn' });
  try {
    await body(ts);
  } finally {
    await ts.stop();
  }
}

export function modulesWith(...overrides: GatehouseModule[]): GatehouseModule[] {
  const byName = new Map(overrides.map((m) => [m.name, m]));
  const list = allModules().map((m) => byName.get(m.name) ?? m);
  for (const m of overrides) if (!list.includes(m)) list.push(m);
  return list;
}

/** Makes sure `name@localhost` exists with the password `pw-<name>`; returns its id. */
export async function ensureAccount(ts: TestServer, name: string): Promise<number> {
  const { storage, clock } = ts.server.ctx;
  const existing = await storage.accounts.get(name, 'localhost');
  if (existing) return existing.id;
  const created = await storage.accounts.create(name, 'localhost', [makeVerifier('pw-' + name, 'SHA-256', 4096)], clock.now());
  return created!.id;
}

/** Logs `name@localhost` in (creating the account if needed), with an optional resource. */
export async function loginAs(ts: TestServer, name: string, resource?: string): Promise<TestClient> {
  await ensureAccount(ts, name);
  const c = await ts.client();
  await c.login(name, 'pw-' + name, { resource });
  return c;
}
