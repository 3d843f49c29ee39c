/**
 * Shared setup for the transport kit tests: a real Gatehouse with a component configured, the
 * kit running in-process against it over XEP-0114 with the fake network, and TestClients as users.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { reservedPort } from '../helpers/ports.js';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { allModules } from '../../server/modules/index.js';
import type { GatehouseModule } from '../../server/core/context.js';
import { createRosterModule } from '../../server/modules/roster.js';
import { createPresenceModule } from '../../server/modules/presence.js';
import { createMessageModule } from '../../server/modules/message.js';
import { createComponentsModule } from '../../server/modules/components.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { Logger } from '../../shared/logger.js';
import { FakeAdapter, FakeNetwork, type FakeNetworkOptions } from '../../transports/fake/fake-network.js';
import { parseTransportConfig, type TransportConfig } from '../../transports/kit/config.js';
import { startTransport, type RunningTransport } from '../../transports/kit/gateway.js';
import { openStorage, type StorageConfig } from '../../storage/datasource.js';
import type { TransportAuditEntry } from '../../storage/types.js';
import type { Clock } from '../../shared/clock.js';

export const GW = 'gw.localhost';
export const SECRET = 'kit-component-secret-4a1f';

export function serverModules(): GatehouseModule[] {
  const list = allModules();
  for (const m of [createRosterModule(), createPresenceModule(), createMessageModule(), createComponentsModule()]) if (!list.some((x) => x.name === m.name)) list.push(m);
  return list;
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(10);
  }
}

export interface KitOptions {
  fake?: FakeNetworkOptions;
  /** Raw transport configuration merged over the test defaults. */
  transport?: Record<string, unknown>;
  storage?: StorageConfig;
  /** Reuse this server (and this directory) instead of starting one. */
  server?: TestServer;
  dir?: string;
  network?: FakeNetwork;
  /** The transport's clock (a ManualClock moves its grace, retry and login timers too). */
  clock?: Clock;
}

export interface Kit {
  ts: TestServer;
  net: FakeNetwork;
  transport: RunningTransport;
  config: TransportConfig;
  dir: string;
  logLines: string[];
  /** Stops the transport (not the server). */
  stopTransport(): Promise<void>;
  /** Starts the transport again on the same database and key. */
  restartTransport(): Promise<void>;
  stop(): Promise<void>;
  audit(user?: string): Promise<TransportAuditEntry[]>;
}

export function transportConfig(ts: TestServer, dir: string, over: Record<string, unknown> = {}, storage?: StorageConfig): TransportConfig {
  const raw: Record<string, unknown> = {
    adapter: 'fake',
    component: { domain: GW, secret: SECRET, host: '127.0.0.1', port: ts.componentPort },
    storage: storage ? { type: storage.type, ...(storage.path ? { path: storage.path } : {}), ...(storage.url ? { url: storage.url } : {}) } : { type: 'sqlite', path: path.join(dir, 'transport.sqlite') },
    vault: { keyFile: path.join(dir, 'keys', 'vault.key') },
    admins: ['admin@localhost'],
    gracePeriod: '400ms',
    loginTimeout: '2s',
    reconnect: { min: '50ms', max: '400ms' },
    ...over,
  };
  return parseTransportConfig(raw, dir, 'fake', {});
}

export async function startServer(componentPort = 0): Promise<TestServer> {
  return startTestServer({
    modules: serverModules(),
    config: { components: [{ domain: GW, secret: SECRET }], listen: { components: [{ host: '127.0.0.1', port: componentPort }] } },
  });
}

/** A port for a server a test stops and starts again on the same port (see helpers/ports.ts). */
export const freePort = reservedPort;

export async function startKit(opts: KitOptions = {}): Promise<Kit> {
  const ts = opts.server ?? (await startServer());
  const dir = opts.dir ?? mkdtempSync(path.join(tmpdir(), 'gatehouse-kit-'));
  const net = opts.network ?? new FakeNetwork({ servers: ['irc.one', 'irc.two'], ...opts.fake });
  const config = transportConfig(ts, dir, opts.transport, opts.storage);
  const logLines: string[] = [];
  const log = new Logger({ level: 'debug', format: 'text', sink: (l) => logLines.push(l) }, 'transport-fake');
  const start = () => startTransport({ config, adapter: new FakeAdapter(net), log, env: {}, clock: opts.clock });
  const transport = await start();
  // A handle of its own, so the log can be read while the transport is stopped.
  const auditStorage = await openStorage(config.storage, { migrate: false });
  const kit: Kit = {
    ts,
    net,
    transport,
    config,
    dir,
    logLines,
    async stopTransport() {
      await kit.transport.stop();
    },
    async restartTransport() {
      kit.transport = await start();
    },
    async stop() {
      await kit.transport.stop().catch(() => undefined);
      await auditStorage.close();
      if (!opts.server) await ts.stop();
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
    async audit(user) {
      const rows = await auditStorage.transports.queryAudit({});
      return user ? rows.filter((r) => r.userJid === user) : rows;
    },
  };
  return kit;
}

export function bareOf(c: TestClient): string {
  return c.jid.split('/')[0]!;
}

/** A registration IQ with legacy fields. */
export function registerLegacy(c: TestClient, fields: Record<string, string>, to = GW): Promise<Element> {
  return c.iq(x('iq', { type: 'set', to }, x('query', { xmlns: NS.register }, Object.entries(fields).map(([k, v]) => x(k, {}, v)))));
}

/** A registration IQ with an XEP-0004 data form. */
export function registerForm(c: TestClient, fields: Record<string, string>, to = GW): Promise<Element> {
  return c.iq(
    x(
      'iq',
      { type: 'set', to },
      x(
        'query',
        { xmlns: NS.register },
        x(
          'x',
          { xmlns: NS.dataForms, type: 'submit' },
          x('field', { var: 'FORM_TYPE', type: 'hidden' }, x('value', {}, NS.register)),
          Object.entries(fields).map(([k, v]) => x('field', { var: k }, x('value', {}, v))),
        ),
      ),
    ),
  );
}

export function errorOf(el: Element): string | undefined {
  const err = el.getChild('error');
  return err?.elements.find((c) => c.xmlns === NS.stanzas && c.name !== 'text')?.name;
}

/**
 * A user logged in, registered with the gateway (legacy fields), subscribed both ways and
 * available: the full XEP-0100 flow.
 */
export async function onlineUser(kit: Kit, name: string, account: string, password: string, extra: Record<string, string> = {}): Promise<TestClient> {
  kit.net.addAccount(account, password);
  const c = await availableUser(kit.ts, name);
  const reply = await registerLegacy(c, { username: account, password, ...extra });
  if (reply.attrs.type !== 'result') throw new Error(`registration failed: ${reply}`);
  await subscribeBoth(c);
  return c;
}

/** A new user logged in, its roster fetched and available: what a client does before it uses a gateway. */
export async function availableUser(ts: TestServer, name: string): Promise<TestClient> {
  const c = await ts.user(name);
  await c.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
  c.send(x('presence'));
  await c.expect((el) => el.name === 'presence' && el.attrs.from === c.jid);
  return c;
}

/** The XEP-0100 subscription dance after registration: approve the gateway, subscribe to it. */
export async function subscribeBoth(c: TestClient, gw = GW): Promise<void> {
  await c.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === gw);
  c.send(x('presence', { type: 'subscribed', to: gw }));
  c.send(x('presence', { type: 'subscribe', to: gw }));
  await c.expect((el) => el.name === 'iq' && el.attrs.type === 'set' && !!el.getChild('query', NS.roster)?.getChildren('item').some((i) => i.attrs.jid === gw && i.attrs.subscription === 'both'));
}
