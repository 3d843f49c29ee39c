/**
 * `gatehouse transport discord --config FILE`: the Discord adapter. Settings (`network:` in the
 * transport's configuration file), all optional:
 *
 *   network:
 *     api: https://discord.com/api     # REST base; the gateway URL comes from GET /gateway/bot
 *     members: true                    # ask for the Server Members intent (occupant lists)
 *     presences: false                 # ask for the Presence intent (contacts' status)
 *     reconnectGraceSeconds: 120       # a gateway outage longer than this ends the session
 *     loginTimeoutSeconds: 60
 *     maxRateLimitWaitSeconds: 30      # a longer rate-limit wait fails the action instead
 *     maxMessageParts: 4               # a long text goes out as at most this many messages
 */
import type { AdapterFactory } from '../kit/adapter.js';
import { createDiscordAdapter, type DiscordAdapterOptions } from './adapter.js';

export { DiscordAdapter, createDiscordAdapter, parseToken, DISCORD_REGISTRATION_FIELDS, DEFAULT_DISCORD_OPTIONS, type DiscordAdapterOptions } from './adapter.js';
export { DiscordSession, channelIdOf, type DiscordSessionOptions } from './session.js';
export { DiscordCommandError, type DiscordCommandCondition } from './errors.js';

const KNOWN = new Set(['network', 'api', 'members', 'presences', 'reconnectGraceSeconds', 'loginTimeoutSeconds', 'maxRateLimitWaitSeconds', 'maxMessageParts', 'name']);

function fail(key: string, problem: string): never {
  throw new Error(`config error: network.${key}: ${problem}`);
}

function bool(settings: Record<string, unknown>, key: string): boolean | undefined {
  const v = settings[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') fail(key, 'expected true or false');
  return v;
}

function seconds(settings: Record<string, unknown>, key: string, min: number, max: number): number | undefined {
  const v = settings[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) fail(key, `expected a number from ${min} to ${max}`);
  return v * 1000;
}

export const createAdapter: AdapterFactory = (settings) => {
  for (const key of Object.keys(settings)) if (!KNOWN.has(key)) fail(key, 'unknown setting');
  const options: DiscordAdapterOptions = {};
  if (settings.api !== undefined) {
    if (typeof settings.api !== 'string') fail('api', 'expected a URL');
    let url: URL;
    try {
      url = new URL(settings.api);
    } catch {
      fail('api', 'expected a URL');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') fail('api', 'expected an https URL');
    options.api = settings.api.replace(/\/+$/, '');
  }
  if (settings.name !== undefined) {
    if (typeof settings.name !== 'string' || !settings.name.trim()) fail('name', 'expected a display name');
    options.name = settings.name;
  }
  const members = bool(settings, 'members');
  if (members !== undefined) options.members = members;
  const presences = bool(settings, 'presences');
  if (presences !== undefined) options.presences = presences;
  const grace = seconds(settings, 'reconnectGraceSeconds', 1, 86_400);
  if (grace !== undefined) options.reconnectGraceMs = grace;
  const login = seconds(settings, 'loginTimeoutSeconds', 1, 600);
  if (login !== undefined) options.loginTimeoutMs = login;
  const wait = seconds(settings, 'maxRateLimitWaitSeconds', 0, 3600);
  if (wait !== undefined) options.maxRateLimitWaitMs = wait;
  if (settings.maxMessageParts !== undefined) {
    const n = settings.maxMessageParts;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 20) fail('maxMessageParts', 'expected a whole number from 1 to 20');
    options.maxMessageParts = n;
  }
  return createDiscordAdapter(options);
};
