export { IrcAdapter, createIrcAdapter, ircAdapter, isIrcRoomId, DEFAULT_SESSION_OPTIONS, type IrcAdapterOptions } from './adapter.js';
export { IrcSession, type IrcSessionOptions } from './session.js';
export { IrcCommandError, type IrcCommandCondition } from './errors.js';
export { IRC_REGISTRATION_FIELDS } from './settings.js';
export { DEFAULT_FLOOD, type FloodOptions } from './flood.js';

import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { AdapterFactory, Credentials } from '../kit/adapter.js';
import { createIrcAdapter as create } from './adapter.js';
import { parseFlood, type FloodOptions } from './flood.js';
import { IdentServer } from './identd.js';
import { parsePrefix, type WebircServer } from './webirc.js';

const SETTINGS = new Set(['name', 'allowServers', 'caFile', 'flood', 'servers', 'identd', 'webirc']);
const SERVER_SETTINGS = new Set(['tlsPorts', 'ports', 'verifyCertificate', 'flood']);

type Raw = Record<string, unknown>;

function isMap(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A secret read from a file that only its owner can read (the WEBIRC password); never logged. */
function readSecretFile(file: string, where: string): string {
  const mode = statSync(file).mode;
  if (mode & 0o077) throw new Error(`${where}: ${file} must not be readable by group or others (chmod 600)`);
  const text = readFileSync(file, 'utf8').trim();
  if (!text || /[\s\0]/.test(text)) throw new Error(`${where}: ${file} must hold one password without spaces`);
  return text;
}

/**
 * The factory `gatehouse transport irc` uses. Settings (the transport config's `network:` section):
 * - `name` (disco name), `allowServers` (IRC server host names users may connect to; default: any
 *   — restrict it on a public gateway), `caFile` (PEM file of extra trusted certificate authorities);
 * - `flood: { burst, linesPerSecond }` (default 10 and 1);
 * - `servers: { HOST: { tlsPorts, ports, verifyCertificate, flood } }`: defaults per IRC server
 *   that users' own settings override (e.g. a network's TLS port), and its flood control;
 * - `identd: { port, host }` (an RFC 1413 server answering for the gateway's connections with a
 *   per-user identifier; port 113 needs CAP_NET_BIND_SERVICE; absent: no identd);
 * - `webirc: { HOST: { passwordFile, prefix, gateway, hostSuffix } }`: WEBIRC for networks the
 *   operator has an agreement with (see webirc.ts).
 */
export const createAdapter: AdapterFactory = async (settings, log) => {
  for (const key of Object.keys(settings)) if (!SETTINGS.has(key)) throw new Error(`network.${key}: unknown setting for the IRC transport (known: ${[...SETTINGS].join(', ')})`);
  const { name, allowServers, caFile, flood, servers, identd, webirc } = settings;
  if (name !== undefined && typeof name !== 'string') throw new Error('network.name: expected a string');
  if (allowServers !== undefined && (!Array.isArray(allowServers) || !allowServers.every((s) => typeof s === 'string'))) throw new Error('network.allowServers: expected a list of host names');
  if (caFile !== undefined && typeof caFile !== 'string') throw new Error('network.caFile: expected a file path');
  const allowed = allowServers ? new Set((allowServers as string[]).map((s) => s.toLowerCase())) : null;
  const serverDefaults: Record<string, Credentials> = {};
  const serverFlood: Record<string, FloodOptions> = {};
  if (servers !== undefined) {
    if (!isMap(servers)) throw new Error('network.servers: expected a mapping of IRC server host names');
    for (const [host, value] of Object.entries(servers)) {
      const where = `network.servers.${host}`;
      if (!isMap(value)) throw new Error(`${where}: expected a mapping`);
      const defaults: Credentials = {};
      for (const [k, v] of Object.entries(value)) {
        if (!SERVER_SETTINGS.has(k)) throw new Error(`${where}.${k}: unknown setting (known: ${[...SERVER_SETTINGS].join(', ')})`);
        if (k === 'flood') serverFlood[host] = parseFlood(v, `${where}.flood`);
        else if (k === 'verifyCertificate') {
          if (typeof v !== 'boolean') throw new Error(`${where}.verifyCertificate: true or false`);
          defaults[k] = String(v);
        } else {
          const ports = Array.isArray(v) ? v : [v];
          if (!ports.every((p) => Number.isInteger(p) && (p as number) >= 1 && (p as number) <= 65535)) throw new Error(`${where}.${k}: a list of port numbers`);
          defaults[k] = ports.join(',');
        }
      }
      serverDefaults[host] = defaults;
    }
  }
  let identServer: IdentServer | null = null;
  if (identd !== undefined) {
    if (!isMap(identd)) throw new Error('network.identd: expected { port, host }');
    const port = identd.port ?? 113;
    const host = identd.host ?? '0.0.0.0';
    if (!Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535) throw new Error('network.identd.port: a port number (113 is the standard one)');
    if (typeof host !== 'string') throw new Error('network.identd.host: an address to listen on');
    identServer = new IdentServer({ port: port as number, host, log });
    try {
      await identServer.start();
    } catch (err) {
      throw new Error(`network.identd: cannot listen on ${host} port ${port}: ${(err as Error).message}`);
    }
  }
  const webircServers: Record<string, WebircServer> = {};
  if (webirc !== undefined) {
    if (!isMap(webirc)) throw new Error('network.webirc: expected a mapping of IRC server host names');
    for (const [host, value] of Object.entries(webirc)) {
      const where = `network.webirc.${host}`;
      if (!isMap(value)) throw new Error(`${where}: expected { passwordFile, prefix }`);
      for (const k of Object.keys(value)) if (!['passwordFile', 'passwordCredential', 'prefix', 'gateway', 'hostSuffix'].includes(k)) throw new Error(`${where}.${k}: unknown setting`);
      let passwordFile = value.passwordFile;
      if (typeof value.passwordCredential === 'string') {
        // A systemd credential (LoadCredential=NAME:/path), as for the vault key.
        const dir = process.env.CREDENTIALS_DIRECTORY;
        if (!dir || !/^[A-Za-z0-9._-]+$/.test(value.passwordCredential)) throw new Error(`${where}.passwordCredential: no systemd credential ${value.passwordCredential} (CREDENTIALS_DIRECTORY is not set)`);
        passwordFile = join(dir, value.passwordCredential);
      }
      if (typeof passwordFile !== 'string') throw new Error(`${where}.passwordFile: the file holding the WEBIRC password the network gave you (or passwordCredential: a systemd credential name)`);
      if (typeof value.prefix !== 'string') throw new Error(`${where}.prefix: an IPv6 prefix set aside for the gateway's users, e.g. 2001:db8:1:2::/64`);
      if (value.gateway !== undefined && (typeof value.gateway !== 'string' || !/^[A-Za-z0-9._-]{1,32}$/.test(value.gateway))) throw new Error(`${where}.gateway: a short name`);
      if (value.hostSuffix !== undefined && (typeof value.hostSuffix !== 'string' || !/^[a-z0-9.-]+\.[a-z]{2,}$/i.test(value.hostSuffix))) throw new Error(`${where}.hostSuffix: a domain name`);
      webircServers[host] = {
        password: readSecretFile(passwordFile, `${where}.passwordFile`),
        gateway: (value.gateway as string | undefined) ?? 'gatehouse',
        prefix: parsePrefix(value.prefix, `${where}.prefix`),
        hostSuffix: (value.hostSuffix as string | undefined) ?? null,
      };
    }
  }
  return create({
    ...(name ? { name: name as string } : {}),
    ...(allowed ? { allowServer: (host: string) => allowed.has(host.toLowerCase()) } : {}),
    ...(caFile ? { ca: readFileSync(caFile as string, 'utf8') } : {}),
    ...(flood !== undefined ? { flood: parseFlood(flood, 'network.flood') } : {}),
    serverDefaults,
    serverFlood,
    identd: identServer,
    webirc: webircServers,
  });
};
