/**
 * The Discord network adapter (discord.js 14): one bot per user.
 *
 * Registration asks for a bot token only. Discord forbids automating user accounts ("self-bots"),
 * so the gateway accepts bot tokens and nothing else: discord.js sends them as `Authorization:
 * Bot <token>`, and a login whose account is not a bot is refused. Users create the bot
 * themselves (Developer Portal → Applications → New Application → Bot → Reset Token; turn on the
 * "Message Content Intent", and the "Server Members Intent" for occupant lists; invite it with
 * the OAuth2 URL generator, scope `bot`, permissions View Channels, Send Messages, Read Message
 * History, Add Reactions, Attach Files (files from XMPP), and optionally Manage Messages, Manage
 * Channels for topics, Change Nickname). The token is a password: it goes into the kit's vault and never into logs.
 *
 * Addresses: rooms are guild text channels, `#<channel id>@discord.<domain>` (isRoomId: a `#`
 * and digits), contacts are users, `<user id>@discord.<domain>`. Not multi-server: Discord is one
 * network.
 *
 * Settings (`network:` in the transport's configuration): `api` (REST base, default
 * https://discord.com/api; the gateway URL comes from Discord), `members` (ask for the Server
 * Members intent, default true), `presences` (the Presence intent, default false),
 * `reconnectGraceSeconds` (default 120), `loginTimeoutSeconds` (default 60),
 * `maxRateLimitWaitSeconds` (default 30), `maxMessageParts` (default 4), `maxFileSize` (files sent
 * from XMPP as attachments, default 10 MiB: Discord's limit for bots outside boosted servers).
 */
import { LegacyAuthError, type AdapterLogger, type LoginRequest, type NetworkAdapter, type RegistrationField } from '../kit/adapter.js';
import { DiscordSession, channelIdOf, type DiscordSessionOptions } from './session.js';
import { SharedBot, type SharedBotSettings } from './shared-bot.js';
import { Turns } from './files.js';

export const DISCORD_REGISTRATION_FIELDS: RegistrationField[] = [
  {
    name: 'password',
    label: 'Discord bot token',
    type: 'text-private',
    required: true,
    secret: true,
    description:
      'The token of your own Discord bot (Developer Portal → Applications → your app → Bot → Reset Token). Discord forbids automating user accounts: user tokens are refused.',
  },
];

/** The registration form when the operator runs a shared bot: the token is optional. */
const SHARED_REGISTRATION_FIELDS: RegistrationField[] = [
  {
    ...DISCORD_REGISTRATION_FIELDS[0]!,
    label: 'Discord bot token (optional)',
    required: false,
    description:
      "Leave empty to use this gateway's shared bot: you join the channels the operator opened, and your messages appear in Discord under your nick. Or give the token of your own Discord bot (Developer Portal → Applications → your app → Bot → Reset Token) for your own servers and direct messages. User tokens are refused.",
  },
];

export const DEFAULT_DISCORD_OPTIONS: DiscordSessionOptions = {
  api: 'https://discord.com/api',
  members: true,
  presences: false,
  loginTimeoutMs: 60_000,
  reconnectGraceMs: 120_000,
  restTimeoutMs: 15_000,
  maxRateLimitWaitMs: 30_000,
  typingTimeoutMs: 10_000,
  maxMessageParts: 4,
  maxMemberFetch: 5000,
  waitGuildTimeoutMs: 15_000,
  cdn: 'https://cdn.discordapp.com',
  historyLimit: 50,
  maxFileSize: 10 * 1024 * 1024,
};

export interface DiscordAdapterOptions extends Partial<DiscordSessionOptions> {
  /** Shown in disco (default "Discord gateway"). */
  name?: string;
  /** The operator's shared bot (network.sharedBot): users may register without a token of their own. */
  sharedBot?: SharedBotSettings;
  /** For the shared bot's own log lines. */
  log?: AdapterLogger;
}

/**
 * The token as Discord expects it after "Bot ": what users paste may carry the prefix, quotes or
 * whitespace. Old user tokens ("mfa.…") are refused outright.
 */
export function parseToken(raw: string | undefined): string {
  let token = (raw ?? '').trim().replace(/^["']|["']$/g, '').trim();
  token = token.replace(/^Bot\s+/i, '');
  if (!token) throw new LegacyAuthError('a Discord bot token is required');
  if (/^mfa\./i.test(token)) throw new LegacyAuthError('this is a user token; Discord forbids automating user accounts, so only bot tokens are accepted');
  if (/^Bearer\s/i.test(token)) throw new LegacyAuthError('this is an OAuth2 token; the gateway needs a bot token');
  if (!/^[A-Za-z0-9_.-]{20,200}$/.test(token)) throw new LegacyAuthError('this does not look like a Discord bot token');
  return token;
}

export class DiscordAdapter implements NetworkAdapter {
  readonly network = 'discord';
  readonly name: string;
  readonly registrationFields: RegistrationField[];
  readonly multiServer = false;
  /** The kit echoes room messages (Discord's own echoes of the bot's messages are dropped). */
  readonly echoesRoomMessages = false;
  readonly options: DiscordSessionOptions;
  /** The operator's bot that users without their own token are linked to; null without one. */
  readonly shared: SharedBot | null;
  /** Files on their way to Discord are held in memory a few at a time, for all users together. */
  private readonly fileTurns = new Turns();

  constructor(options: DiscordAdapterOptions = {}) {
    const { name, sharedBot, log, ...rest } = options;
    this.name = name ?? 'Discord gateway';
    this.options = { ...DEFAULT_DISCORD_OPTIONS, ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)) };
    this.shared = sharedBot ? new SharedBot(sharedBot, this.options, log ?? SILENT) : null;
    this.registrationFields = this.shared ? SHARED_REGISTRATION_FIELDS : DISCORD_REGISTRATION_FIELDS;
  }

  /** Rooms are `#<channel id>`; user ids are bare snowflakes. */
  isRoomId(id: string): boolean {
    return channelIdOf(id) !== null;
  }

  async close(): Promise<void> {
    await this.shared?.stop();
  }

  /**
   * Logs in with the user's own bot token, or, when the token is left empty and the operator runs
   * a shared bot, links the user to it.
   */
  async login(request: LoginRequest): Promise<DiscordSession> {
    const raw = request.credentials.password ?? request.credentials.token ?? '';
    const source = this.shared && !raw.trim() ? await this.shared.acquire() : parseToken(raw);
    const session = new DiscordSession(source, this.options, request.log);
    session.media = request.media;
    session.fileTurns = this.fileTurns;
    session.restoreState(request.state);
    await session.start();
    // Shared bot: the user's own picture goes with their webhook messages (taken at login).
    if (typeof source !== 'string' && request.ownAvatarUrl) session.avatarUrl = request.ownAvatarUrl().catch(() => null);
    return session;
  }
}

const SILENT: AdapterLogger = { debug: () => undefined, info: () => undefined, warn: () => undefined };

export function createDiscordAdapter(options: DiscordAdapterOptions = {}): DiscordAdapter {
  return new DiscordAdapter(options);
}
