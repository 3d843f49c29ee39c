export { IrcAdapter, createIrcAdapter, ircAdapter, isIrcRoomId, DEFAULT_SESSION_OPTIONS, type IrcAdapterOptions } from './adapter.js';
export { IrcSession, type IrcSessionOptions } from './session.js';
export { IrcCommandError, type IrcCommandCondition } from './errors.js';
export { IRC_REGISTRATION_FIELDS } from './settings.js';
export { DEFAULT_FLOOD, type FloodOptions } from './flood.js';

import { readFileSync } from 'node:fs';
import type { AdapterFactory } from '../kit/adapter.js';
import { createIrcAdapter as create } from './adapter.js';

const SETTINGS = new Set(['name', 'allowServers', 'caFile']);

/**
 * The factory `gatehouse transport irc` uses. Settings (the transport config's `network:` section):
 * `name` (disco name), `allowServers` (list of IRC server host names users may connect to; default:
 * any — restrict it on a public gateway so users cannot make it connect to internal hosts) and
 * `caFile` (PEM file of extra trusted certificate authorities).
 */
export const createAdapter: AdapterFactory = (settings) => {
  for (const key of Object.keys(settings)) if (!SETTINGS.has(key)) throw new Error(`network.${key}: unknown setting for the IRC transport (known: ${[...SETTINGS].join(', ')})`);
  const { name, allowServers, caFile } = settings;
  if (name !== undefined && typeof name !== 'string') throw new Error('network.name: expected a string');
  if (allowServers !== undefined && (!Array.isArray(allowServers) || !allowServers.every((s) => typeof s === 'string'))) throw new Error('network.allowServers: expected a list of host names');
  if (caFile !== undefined && typeof caFile !== 'string') throw new Error('network.caFile: expected a file path');
  const allowed = allowServers ? new Set((allowServers as string[]).map((s) => s.toLowerCase())) : null;
  return create({
    ...(name ? { name } : {}),
    ...(allowed ? { allowServer: (host: string) => allowed.has(host.toLowerCase()) } : {}),
    ...(caFile ? { ca: readFileSync(caFile, 'utf8') } : {}),
  });
};
