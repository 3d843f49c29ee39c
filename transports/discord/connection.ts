/**
 * The base of a Discord session: the discord.js client, logging in (bot tokens only), the end of
 * the session (once, with whether logging in again can help), and what the layers above share.
 */
import type { EventEmitter } from 'node:events';
import { Client, DiscordAPIError, DiscordjsErrorCodes, Events, GatewayIntentBits, Partials, type PartialUser, type User } from 'discord.js';
import { LegacyAuthError, LegacyNetworkError, type AdapterLogger, type LegacyContact, type MediaHost } from '../kit/adapter.js';
import { LegacySessionEmitter } from '../kit/session-emitter.js';
import { mapError } from './errors.js';
import { FinalDestroyStrategy } from './gateway.js';
import { Turns } from './files.js';
import { BoundedMap } from './ids.js';
import { cleanNick } from './text.js';

export interface DiscordSessionOptions {
  /** REST base (default https://discord.com/api); the gateway URL comes from GET /gateway/bot. */
  api: string;
  /** Ask for the privileged Server Members intent (occupant lists, joins and leaves). */
  members: boolean;
  /** Ask for the privileged Presence intent (contacts' online status). */
  presences: boolean;
  loginTimeoutMs: number;
  /** How long discord.js may try to get a dropped gateway connection back before the session gives up. */
  reconnectGraceMs: number;
  restTimeoutMs: number;
  /** A rate limit that would hold an action longer than this fails it instead (resource-constraint). */
  maxRateLimitWaitMs: number;
  /** Discord typing lasts about ten seconds; after this without news, 'paused'. */
  typingTimeoutMs: number;
  /** A text longer than 2000 characters is sent as up to this many messages. */
  maxMessageParts: number;
  /** Fetch the whole member list of guilds up to this size when a channel is joined. */
  maxMemberFetch: number;
  /** How long READY waits for the guilds to arrive (discord.js waitGuildTimeout). */
  waitGuildTimeoutMs: number;
  /** CDN base (avatars): https://cdn.discordapp.com. */
  cdn: string;
  /** After a fresh gateway session, at most this many missed messages per channel are fetched (0: none). */
  historyLimit: number;
  /** Largest file sent from XMPP as a Discord attachment (Discord takes 10 MiB from bots by default); larger ones go as links. */
  maxFileSize: number;
}

/**
 * The operator's bot that linked users share (shared-bot.ts): the session uses its client, posts
 * in guild channels through webhooks under the user's nick, and never ends the client itself.
 */
export interface SharedClient {
  readonly client: Client;
  /** Whether linked users may use this guild channel (configured guilds and channel allow-list). */
  allows(guildId: string, channelId: string): boolean;
  /** The channel's webhook (created by the bot if it has none): id and token. */
  webhook(channelId: string): Promise<{ id: string; token: string }>;
  /** Ids of the webhooks the bot posts through (their messages are linked users'). */
  isOwnWebhook(webhookId: string): boolean;
  /** A linked user is in a channel under `nick` (null: left); the other linked users there are told (LinkedUser.peerChanged). */
  present(channelId: string, user: LinkedUser, nick: string | null): void;
  /** The other linked users in a channel. */
  peers(channelId: string, except: LinkedUser): { key: string; nick: string }[];
}

/** A linked user's session, as the shared bot tells it about the others. */
export interface LinkedUser {
  /** Stable for the session, never shown: occupant ids `xmpp:<key>`. */
  readonly key: string;
  peerChanged(channelId: string, key: string, nick: string | null): void;
}

/** The discord.js client of one bot, as the adapter runs it. */
export function createClient(opts: DiscordSessionOptions): Client {
  const intents = [
    GatewayIntentBits.Guilds,
    GatewayIntentBits.GuildMessages,
    GatewayIntentBits.GuildMessageReactions,
    GatewayIntentBits.GuildMessageTyping,
    GatewayIntentBits.DirectMessages,
    GatewayIntentBits.DirectMessageReactions,
    GatewayIntentBits.DirectMessageTyping,
    GatewayIntentBits.MessageContent,
  ];
  if (opts.members) intents.push(GatewayIntentBits.GuildMembers);
  if (opts.presences) intents.push(GatewayIntentBits.GuildPresences);
  const client = new Client({
    intents,
    // Direct-message channels are not announced to bots: without the Channel partial their messages would be dropped.
    partials: [Partials.Channel, Partials.Message, Partials.Reaction, Partials.User, Partials.GuildMember],
    rest: {
      api: opts.api,
      cdn: opts.cdn,
      timeout: opts.restTimeoutMs,
      retries: 2,
      rejectOnRateLimit: (info) => Math.max(info.timeToReset, info.retryAfter) > opts.maxRateLimitWaitMs,
    },
    ws: { large_threshold: 250, buildStrategy: (manager) => new FinalDestroyStrategy(manager) },
    waitGuildTimeout: opts.waitGuildTimeoutMs,
    failIfNotExists: false,
    allowedMentions: { parse: ['users', 'roles'], repliedUser: true },
  });
  // One listener per linked user's session on a shared client.
  client.setMaxListeners(0);
  return client;
}

const SELF_BOT_TEXT = 'this token belongs to a user account; Discord forbids automating user accounts, so the gateway only accepts bot tokens (Developer Portal → Applications → Bot)';

export abstract class DiscordConnection extends LegacySessionEmitter {
  protected readonly network = 'discord';

  protected override logContext(): Record<string, string> {
    return { server: this.server };
  }

  readonly server: string;
  readonly client: Client;
  protected state: 'connecting' | 'ready' | 'closed' = 'connecting';
  protected me = '';
  /** The XMPP server's upload service (kit), where attachments are re-hosted before their signed URLs expire. */
  media: MediaHost | undefined;
  /** Turns for files held in memory on their way to Discord, shared by the adapter's sessions. */
  fileTurns = new Turns();
  protected readonly timers = new Set<NodeJS.Timeout>();
  protected graceTimer: NodeJS.Timeout | null = null;

  /** Gateway echoes of our own actions that are expected (key → when). */
  private readonly expected = new BoundedMap<string, number>(2000);
  /** The operator's shared bot, when this user is linked to it instead of bringing a bot. */
  protected readonly shared: SharedClient | null;
  private readonly token: string;
  /** Listeners this session put on the client (a shared client outlives the session). */
  private readonly clientListeners: [EventEmitter, string, (...args: never[]) => void][] = [];

  constructor(
    source: string | SharedClient,
    protected readonly opts: DiscordSessionOptions,
    protected readonly log: AdapterLogger,
  ) {
    super();
    this.server = hostOf(opts.api);
    if (typeof source === 'string') {
      this.token = source;
      this.shared = null;
      this.client = createClient(opts);
    } else {
      this.token = '';
      this.shared = source;
      this.client = source.client;
    }
  }

  /** Listens to the client (or its REST manager) for as long as this session lives. */
  protected listen(emitter: EventEmitter, event: string, fn: (...args: never[]) => void): void {
    emitter.on(event, fn as (...args: unknown[]) => void);
    this.clientListeners.push([emitter, event, fn]);
  }

  get connected(): boolean {
    return this.state === 'ready';
  }

  /** The bot's user id. */
  get userId(): string {
    return this.me;
  }

  /** The bot as the audit log names it: "name (id)" (the token names no account). */
  get account(): string | undefined {
    const user = this.client.user;
    return user ? `${user.username} (${user.id})${this.shared ? ', shared' : ''}` : undefined;
  }

  /** The session ends: rooms and typing timers are forgotten (the layers above keep them). */
  protected abstract forgetState(): void;

  /** Connects and waits for READY and the guilds; rejects with LegacyAuthError or LegacyNetworkError. */
  async start(): Promise<void> {
    if (this.shared) {
      // The shared client is logged in already (shared-bot.ts).
      const user = this.client.user;
      if (!user || !this.client.isReady()) throw new LegacyNetworkError('the shared Discord bot is not connected');
      this.me = user.id;
      this.state = 'ready';
      const account = `${user.username} (${user.id}), shared`;
      setImmediate(() => {
        if (this.state === 'ready') this.safeEmit('connected', this.server, account);
      });
      return;
    }
    const ready = new Promise<void>((resolve) => this.client.once(Events.ClientReady, () => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new LegacyNetworkError('Discord did not complete the login in time')), this.opts.loginTimeoutMs);
    });
    try {
      await Promise.race([this.client.login(this.token).then(() => ready), deadline]);
    } catch (err) {
      this.state = 'closed';
      await this.stopClient();
      throw loginError(err);
    } finally {
      clearTimeout(timer);
    }
    const user = this.client.user;
    if (!user || !user.bot) {
      this.state = 'closed';
      await this.stopClient();
      throw new LegacyAuthError(SELF_BOT_TEXT);
    }
    this.me = user.id;
    this.state = 'ready';
    this.log.info('discord logged in', { server: this.server, bot: user.id, guilds: this.client.guilds.cache.size });
    const account = `${user.username} (${user.id})`;
    setImmediate(() => {
      if (this.state === 'ready') this.safeEmit('connected', this.server, account);
    });
  }

  protected clearGrace(): void {
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = null;
  }

  /** The session is over: tells the kit once and stops discord.js. */
  protected fail(reason: string, final: boolean): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.teardown();
    this.log.info('discord disconnected', { server: this.server, final, reason });
    this.safeEmit('disconnected', reason, final);
  }

  private teardown(): void {
    this.clearGrace();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.forgetState();
    void this.stopClient();
  }

  /** Stops discord.js for good (see gateway.ts for why that needs care), and stops listening to it. */
  private async stopClient(): Promise<void> {
    for (const [emitter, event, fn] of this.clientListeners.splice(0)) emitter.off(event, fn as (...args: unknown[]) => void);
    // A shared client belongs to every linked user: only the shared bot ends it.
    if (this.shared) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.client.destroy().catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, 5000);
        timer.unref?.();
      }),
    ]);
    clearTimeout(timer);
    this.client.removeAllListeners();
    this.client.rest.removeAllListeners();
    this.client.on(Events.Error, () => undefined);
  }

  async logout(_reason?: string): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.clearGrace();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.forgetState();
    await this.stopClient();
    this.log.info('discord logged out', { server: this.server });
  }

  protected ensureReady(): void {
    if (this.state !== 'ready') throw new LegacyNetworkError(`not connected to ${this.server}`);
  }

  protected expect(key: string): void {
    this.expected.set(key, Date.now());
  }

  protected consume(key: string): boolean {
    const at = this.expected.get(key);
    if (at === undefined) return false;
    this.expected.delete(key);
    return Date.now() - at < 60_000;
  }

  /** A REST failure as the kit sees it; a refused token also ends the session (final). */
  protected actionError(err: unknown, what: string): Error {
    const e = mapError(err, what);
    if (e instanceof LegacyAuthError) {
      this.fail(e.message, true);
      return new LegacyNetworkError(e.message);
    }
    return e;
  }

  protected contactOf(user: User | PartialUser): LegacyContact {
    const name = cleanNick(user.globalName ?? user.username ?? '');
    const contact: LegacyContact = name ? { id: user.id, displayName: name } : { id: user.id };
    // The avatar hash names the picture (its CDN path changes with it).
    if (user.avatar) contact.avatar = user.avatar;
    return contact;
  }
}

function hostOf(api: string): string {
  try {
    return new URL(api).host || 'discord.com';
  } catch {
    return 'discord.com';
  }
}

/** A failed login as the kit sees it. */
export function loginError(err: unknown): Error {
  if (err instanceof LegacyAuthError || err instanceof LegacyNetworkError) return err;
  const e = err as { code?: unknown; message?: string; status?: number } | null;
  if (e?.code === DiscordjsErrorCodes.TokenInvalid || (err instanceof DiscordAPIError && err.status === 401)) {
    return new LegacyAuthError('Discord refused the bot token (copy it again from the Developer Portal: Applications → your app → Bot → Reset Token)');
  }
  const text = e?.message ?? '';
  if (text === 'Authentication failed') return new LegacyAuthError('Discord refused the bot token');
  if (text === 'Used disallowed intents') {
    return new LegacyAuthError(
      'Discord refused the privileged gateway intents: turn on "Message Content Intent" (and "Server Members Intent", "Presence Intent" if the gateway asks for them) for the bot in the Developer Portal (Applications → your app → Bot)',
    );
  }
  if (text === 'Used invalid intents' || text === 'Invalid shard' || text === 'Sharding is required' || text === 'Used an invalid API version') {
    return new LegacyAuthError(`Discord refused the connection: ${text.toLowerCase()}`);
  }
  return mapError(err, 'logging in');
}
