/**
 * Preload for the P15 test: `node --import ./no-egress-hook.js ...`. Every outbound network
 * operation (TCP/TLS connect, UDP send, DNS lookup or query, fetch) to anything but loopback or a
 * Unix socket is written to $GATEHOUSE_EGRESS_LOG as an `EGRESS` line and then refused with an
 * exception. The log starts with `LOADED` so the test knows the hook was active.
 */
import net from 'node:net';
import dns from 'node:dns';
import dgram from 'node:dgram';
import { appendFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const LOG = process.env.GATEHOUSE_EGRESS_LOG;

function note(line: string): void {
  if (LOG) appendFileSync(LOG, line + '\n');
}

/** Loopback names and addresses only. */
export function isLoopback(host: unknown): boolean {
  if (host === undefined || host === null || host === '') return true; // Node's default: localhost
  const h = String(host).toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.replace(/^::ffff:/, '');
  return net.isIPv4(v4) && v4.startsWith('127.');
}

function refuse(what: string, destination: string): never {
  const line = `EGRESS ${what} ${destination}`;
  note(line);
  process.stderr.write(`${line}\n`);
  throw new Error(`outbound network access refused by the P15 test hook: ${what} ${destination}`);
}

// TCP and TLS (tls, http, https, fetch and the database drivers all end here).
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (this: net.Socket, ...args: unknown[]) {
  let options: unknown = args[0];
  if (Array.isArray(options)) options = options[0]; // net.connect() passes normalised [options, cb]
  if (typeof options === 'object' && options !== null) {
    const o = options as { path?: string; host?: string; port?: number };
    if (o.path === undefined && !isLoopback(o.host)) refuse('tcp', `${o.host}:${o.port}`);
  } else if (typeof options === 'number' || (typeof options === 'string' && /^\d+$/.test(options))) {
    if (!isLoopback(typeof args[1] === 'string' ? args[1] : undefined)) refuse('tcp', `${args[1]}:${options}`);
  } // a string path: a Unix socket
  return (connect as (...a: unknown[]) => net.Socket).apply(this, args);
} as typeof net.Socket.prototype.connect;

// UDP.
const send = dgram.Socket.prototype.send;
dgram.Socket.prototype.send = function (this: dgram.Socket, ...args: unknown[]) {
  const address = args.find((a, i) => i > 0 && typeof a === 'string');
  if (address !== undefined && !isLoopback(address)) refuse('udp', String(address));
  return (send as (...a: unknown[]) => void).apply(this, args);
} as typeof dgram.Socket.prototype.send;
const udpConnect = dgram.Socket.prototype.connect;
dgram.Socket.prototype.connect = function (this: dgram.Socket, ...args: unknown[]) {
  const address = typeof args[1] === 'string' ? args[1] : undefined;
  if (!isLoopback(address)) refuse('udp-connect', `${address}:${args[0]}`);
  return (udpConnect as (...a: unknown[]) => void).apply(this, args);
} as typeof dgram.Socket.prototype.connect;

// DNS: a lookup of anything but a loopback name, and any query to DNS servers.
function guardLookup<F extends (...a: any[]) => any>(fn: F, what: string): F {
  return function (this: unknown, ...args: unknown[]) {
    if (!isLoopback(args[0])) refuse(what, String(args[0]));
    return fn.apply(this, args);
  } as F;
}
dns.lookup = guardLookup(dns.lookup, 'dns-lookup');
dns.promises.lookup = guardLookup(dns.promises.lookup, 'dns-lookup');
for (const name of ['resolve', 'resolve4', 'resolve6', 'resolveAny', 'resolveCname', 'resolveMx', 'resolveNs', 'resolveSrv', 'resolveTxt', 'reverse'] as const) {
  (dns as any)[name] = guardLookup((dns as any)[name], `dns-${name}`);
  (dns.promises as any)[name] = guardLookup((dns.promises as any)[name], `dns-${name}`);
  (dns.Resolver.prototype as any)[name] = guardLookup((dns.Resolver.prototype as any)[name], `dns-${name}`);
  (dns.promises.Resolver.prototype as any)[name] = guardLookup((dns.promises.Resolver.prototype as any)[name], `dns-${name}`);
}

// fetch (undici) checks the URL before it dials.
const realFetch = globalThis.fetch;
if (realFetch) {
  globalThis.fetch = function (input: any, init?: any) {
    const url = new URL(typeof input === 'string' || input instanceof URL ? String(input) : input.url);
    if (!isLoopback(url.hostname)) refuse('fetch', url.href);
    return realFetch(input, init);
  } as typeof fetch;
}

syncBuiltinESMExports(); // `import { connect } from 'node:net'` sees the guarded functions too
note('LOADED');
