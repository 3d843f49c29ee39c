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
 *     historyLimit: 50                 # messages per channel fetched after a gap (0: none)
 *     cdn: https://cdn.discordapp.com  # avatars
 *     maxFileSize: 10MiB               # files from XMPP go as attachments up to this size (Discord's
 *                                      # limit for bots; boosted servers take more), larger as links
 *     sharedBot:                       # optional: the operator's bot, for users without their own
 *       tokenFile: /etc/gatehouse/discord-bot.token   # mode 0600; or GATEHOUSE_DISCORD_BOT_TOKEN,
 *                                                     # or the systemd credential discord-bot-token
 *       guilds: ['123456789012345678']                # whose channels linked users may join
 *       channels: ['234567890123456789']              # optional allow-list (threads follow their channel)
 *       webhookName: Gatehouse                        # name of the webhooks the bot makes
 */
import { readFileSync, statSync } from 'node:fs';
import { credentialFile } from '../../shared/credentials.js';
import { parseSize } from '../../shared/schema-kit.js';
import type { AdapterFactory, AdapterLogger } from '../kit/adapter.js';
import type { SharedBotSettings } from './shared-bot.js';
import { createDiscordAdapter, type DiscordAdapterOptions } from './adapter.js';

export { DiscordAdapter, createDiscordAdapter, parseToken, DISCORD_REGISTRATION_FIELDS, DEFAULT_DISCORD_OPTIONS, type DiscordAdapterOptions } from './adapter.js';
export { DiscordSession, channelIdOf, type DiscordSessionOptions } from './session.js';
export { DiscordCommandError, type DiscordCommandCondition } from './errors.js';

const KNOWN = new Set(['network', 'api', 'members', 'presences', 'reconnectGraceSeconds', 'loginTimeoutSeconds', 'maxRateLimitWaitSeconds', 'maxMessageParts', 'name', 'historyLimit', 'cdn', 'sharedBot', 'maxFileSize']);
const SHARED_KNOWN = new Set(['tokenFile', 'guilds', 'channels', 'webhookName']);

/** Files are held in memory on their way to Discord; Discord's largest limit for bots (boost level 3) is 100 MiB. */
const MAX_FILE_SIZE = 100 * 1024 * 1024;

/** Where the shared bot's token comes from, in this order (it never sits in the configuration itself). */
export const SHARED_TOKEN_ENV = 'GATEHOUSE_DISCORD_BOT_TOKEN';
export const SHARED_TOKEN_CREDENTIAL = 'discord-bot-token';

function snowflakes(value: unknown, key: string, required: boolean): Set<string> | null {
  if (value === undefined && !required) return null;
  if (!Array.isArray(value) || (required && value.length === 0)) fail(key, required ? 'expected a list of guild ids (at least one)' : 'expected a list of channel ids');
  const out = new Set<string>();
  for (const v of value) {
    const id = typeof v === 'number' ? String(v) : v;
    if (typeof id !== 'string' || !/^\d{15,21}$/.test(id)) fail(key, 'expected Discord ids (digits, as strings)');
    out.add(id);
  }
  return out;
}

function readToken(file: string, key: string, checkMode: boolean): string {
  let text: string;
  try {
    if (checkMode && (statSync(file).mode & 0o077) !== 0) fail(key, 'the token file must not be readable by group or others (chmod 600)');
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('config error:')) throw err;
    fail(key, 'the token file cannot be read');
  }
  const token = text.trim().replace(/^Bot\s+/i, '');
  if (!/^[A-Za-z0-9_.-]{20,200}$/.test(token)) fail(key, 'the token file holds no bot token');
  return token;
}

/** network.sharedBot: the token from the environment, a systemd credential or the token file. */
function sharedBotSettings(raw: unknown, env: NodeJS.ProcessEnv): SharedBotSettings {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) fail('sharedBot', 'expected a mapping');
  const s = raw as Record<string, unknown>;
  for (const key of Object.keys(s)) if (!SHARED_KNOWN.has(key)) fail(`sharedBot.${key}`, 'unknown setting');
  let token: string;
  const fromEnv = env[SHARED_TOKEN_ENV]?.trim();
  const credential = credentialFile([SHARED_TOKEN_CREDENTIAL], env);
  if (fromEnv) token = fromEnv.replace(/^Bot\s+/i, '');
  else if (credential) token = readToken(credential, 'sharedBot', false);
  else if (typeof s.tokenFile === 'string' && s.tokenFile) token = readToken(s.tokenFile, 'sharedBot.tokenFile', true);
  else fail('sharedBot.tokenFile', `missing; give a token file, ${SHARED_TOKEN_ENV} or the systemd credential ${SHARED_TOKEN_CREDENTIAL}`);
  const webhookName = s.webhookName ?? 'Gatehouse';
  if (typeof webhookName !== 'string' || !webhookName.trim() || webhookName.length > 80 || /clyde|discord/i.test(webhookName)) {
    fail('sharedBot.webhookName', 'expected a name of 1 to 80 characters without "discord" or "clyde"');
  }
  return { token, guilds: snowflakes(s.guilds, 'sharedBot.guilds', true)!, channels: snowflakes(s.channels, 'sharedBot.channels', false), webhookName };
}

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

export const createAdapter: AdapterFactory = (settings, log?: AdapterLogger) => {
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
  if (settings.cdn !== undefined) {
    let url: URL | null = null;
    try {
      url = typeof settings.cdn === 'string' ? new URL(settings.cdn) : null;
    } catch {
      url = null;
    }
    if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) fail('cdn', 'expected an https URL');
    options.cdn = (settings.cdn as string).replace(/\/+$/, '');
  }
  if (settings.historyLimit !== undefined) {
    const n = settings.historyLimit;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 100) fail('historyLimit', 'expected a whole number from 0 to 100');
    options.historyLimit = n;
  }
  if (settings.maxFileSize !== undefined) {
    const n = parseSize(settings.maxFileSize);
    if (n === undefined || n < 1 || n > MAX_FILE_SIZE) fail('maxFileSize', 'expected a size from 1 byte to 100MiB (such as 10MiB)');
    options.maxFileSize = n;
  }
  if (settings.sharedBot !== undefined) {
    options.sharedBot = sharedBotSettings(settings.sharedBot, process.env);
    if (log) options.log = log;
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
