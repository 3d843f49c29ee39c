/**
 * Starts Debian's Prosody (/usr/bin/prosody) for federation tests: its own domain, a temporary
 * config and data directory, random loopback ports, users created with prosodyctl.
 *
 * Pointing Prosody at a Gatehouse on a random port: Prosody has no static s2s route option and
 * resolves peers through DNS SRV (net.resolvers.service). The test plugin mod_test_s2s_routes
 * (written into the temporary plugin directory) replaces service.new for the domains listed in
 * `routes` with a manual resolver that yields 127.0.0.1:<port>: Prosody then runs its normal
 * outgoing s2s code (STARTTLS, SASL EXTERNAL, dialback) against that address. Nothing on the
 * machine (/etc/hosts, resolv.conf) is touched. `directTlsRoutes` does the same for the
 * _xmpps-server lookup (XEP-0368 direct TLS).
 *
 * Tests that use it take their `skip` option from skipWithout('prosody') (test/helpers/requirements.ts).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { reservedPort } from './ports.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CertFiles } from './test-ca.js';
import { PROSODY, PROSODYCTL } from './requirements.js';

export { PROSODY, PROSODYCTL };

export interface ProsodyOptions {
  domain: string;
  cert: CertFiles;
  /** CA file Prosody trusts for peers (SASL EXTERNAL scenario); default the system store. */
  caFile?: string;
  /** s2s_secure_auth: require valid certificates from peers (no dialback fallback). */
  secureAuth: boolean;
  /** Remote domain -> port on 127.0.0.1 (STARTTLS). */
  routes?: Record<string, number>;
  /** Remote domain -> port on 127.0.0.1 for XEP-0368 direct TLS. */
  directTlsRoutes?: Record<string, number>;
  /** [username, password] pairs created before start. */
  users?: [string, string][];
  /** Modules loaded besides the default list (e.g. "private", "pep", "offline"). */
  extraModules?: string[];
  /** Modules of the default list to leave out (e.g. "vcard", for "vcard_legacy"). */
  withoutModules?: string[];
  /** Start in this directory (config, data) instead of a new one: a restart of a stopped Prosody. */
  dir?: string;
  /** Leave the directory on stop (for a restart with `dir`). */
  keepDir?: boolean;
  /** The s2s port, when the test needs it before the start (two servers routing to each other); default a free one. */
  s2sPort?: number;
  /** Components after the VirtualHost, e.g. { domain: 'conference.example', module: 'muc', options: { restrict_room_creation: false } }. */
  components?: { domain: string; module: string; options?: Record<string, string | number | boolean> }[];
}

export interface Prosody {
  domain: string;
  c2sPort: number;
  s2sPort: number;
  dir: string;
  /** The configuration file (for prosodyctl) and the data directory (storage "internal"). */
  configFile: string;
  dataDir: string;
  /** The debug log so far (for diagnosing failures). */
  log(): string;
  /** Creates an account with prosodyctl while Prosody runs (storage "internal" reads it on login). */
  register(user: string, password: string): void;
  stop(): Promise<void>;
}


const ROUTES_PLUGIN = `-- Test-only: static s2s routes (see test/helpers/prosody.ts).
local manual = require "net.resolvers.manual";
local service = require "net.resolvers.service";
local routes = module:get_option("test_s2s_routes", {});
local tls_routes = module:get_option("test_s2s_direct_tls_routes", {});
local original = service.new;
service.new = function (hostname, service_name, protocol, extra)
	if service_name == "xmpps-server" and (routes[hostname] or tls_routes[hostname]) then
		local port = tls_routes[hostname];
		return manual.new(port and { { "tcp4", "127.0.0.1", port, extra } } or {}, protocol, extra);
	end
	if service_name == "xmpp-server" and routes[hostname] then
		return manual.new({ { "tcp4", "127.0.0.1", routes[hostname], extra } }, protocol, extra);
	end
	return original(hostname, service_name, protocol, extra);
end
module:log("info", "test s2s routes installed");
`;

const DEFAULT_MODULES = ['roster', 'saslauth', 'tls', 'dialback', 'disco', 'ping', 'vcard', 'presence', 'message', 'iq', 'test_s2s_routes'];

function luaTable(map: Record<string, number>): string {
  return `{ ${Object.entries(map)
    .map(([k, v]) => `["${k}"] = ${v}`)
    .join('; ')} }`;
}

export async function startProsody(opts: ProsodyOptions): Promise<Prosody> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'gatehouse-prosody-'));
  mkdirSync(join(dir, 'data'), { recursive: true });
  mkdirSync(join(dir, 'plugins'), { recursive: true });
  writeFileSync(join(dir, 'plugins', 'mod_test_s2s_routes.lua'), ROUTES_PLUGIN);
  const c2sPort = await reservedPort();
  const s2sPort = opts.s2sPort ?? (await reservedPort());
  const logFile = join(dir, 'prosody.log');
  const ssl = `{ certificate = "${opts.cert.cert}"; key = "${opts.cert.key}";${opts.caFile ? ` cafile = "${opts.caFile}";` : ''} }`;
  const cfg = join(dir, 'prosody.cfg.lua');
  writeFileSync(
    cfg,
    `-- Generated by test/helpers/prosody.ts
run_as_root = true
daemonize = false
pidfile = "${join(dir, 'prosody.pid')}"
data_path = "${join(dir, 'data')}"
plugin_paths = { "${join(dir, 'plugins')}" }
log = { { levels = { min = "debug" }, to = "file", filename = "${logFile}" } }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { ${c2sPort} }
s2s_ports = { ${s2sPort} }
c2s_direct_tls_ports = { }
s2s_direct_tls_ports = { }
http_ports = { }
https_ports = { }
modules_enabled = { ${[...DEFAULT_MODULES.filter((m) => !opts.withoutModules?.includes(m)), ...(opts.extraModules ?? [])].map((m) => `"${m}"`).join('; ')} }
modules_disabled = { "s2s_bidi"${opts.extraModules?.includes('offline') ? '' : '; "offline"'} }
authentication = "internal_hashed"
storage = "internal"
allow_registration = false
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = ${opts.secureAuth ? 'true' : 'false'}
ssl = ${ssl}
test_s2s_routes = ${luaTable(opts.routes ?? {})}
test_s2s_direct_tls_routes = ${luaTable(opts.directTlsRoutes ?? {})}

VirtualHost "${opts.domain}"
  ssl = ${ssl}
${(opts.components ?? [])
  .map((c) => `\nComponent "${c.domain}" "${c.module}"\n  ssl = ${ssl}\n${Object.entries(c.options ?? {}).map(([k, v]) => `  ${k} = ${typeof v === 'string' ? JSON.stringify(v) : String(v)}\n`).join('')}`)
  .join('')}`,
  );
  const register = (user: string, password: string) =>
    void execFileSync(PROSODYCTL, ['--config', cfg, 'register', user, opts.domain, password], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
  for (const [user, password] of opts.users ?? []) register(user, password);
  const child: ChildProcess = spawn(PROSODY, ['--config', cfg, '-F'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  const readLog = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`prosody exited (${child.exitCode}): ${output}\n${readLog().slice(-3000)}`);
    if ((await canConnect(c2sPort)) && (await canConnect(s2sPort))) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`prosody did not start: ${output}\n${readLog().slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    domain: opts.domain,
    c2sPort,
    s2sPort,
    dir,
    configFile: cfg,
    dataDir: join(dir, 'data'),
    log: readLog,
    register,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      if (!process.env.GATEHOUSE_KEEP_PROSODY && !opts.keepDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
