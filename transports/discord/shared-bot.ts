/**
 * The operator's shared bot (the way matterbridge bridges a guild): one discord.js client for
 * the whole transport, logged in with a bot token the operator keeps outside the configuration
 * (GATEHOUSE_DISCORD_BOT_TOKEN, the systemd credential `discord-bot-token`, or `tokenFile`).
 * Users who register without a token of their own are linked to it: each of their sessions
 * listens to this client (never ending it), may join the channels of the configured guilds (and
 * of the channel allow-list, when there is one), and posts through the channel's webhook under
 * the user's nick and avatar. The bot needs View Channels, Read Message History and Manage
 * Webhooks there; it reuses a webhook it made earlier in the channel, or makes one.
 *
 * A client that is gone for good (Discord closed the session, or the connection was not back
 * within the grace time) is dropped; the sessions on it end, the kit logs them in again, and the
 * next login starts a new client.
 */
import { Events, Routes, type Client } from 'discord.js';
import { LegacyAuthError, LegacyNetworkError, type AdapterLogger } from '../kit/adapter.js';
import { createClient, loginError, type DiscordSessionOptions, type LinkedUser, type SharedClient } from './connection.js';

export interface SharedBotSettings {
  token: string;
  /** Guilds whose channels linked users may join. */
  guilds: Set<string>;
  /** Only these channels (and their threads), when given. */
  channels: Set<string> | null;
  /** The name of the webhooks the bot makes. */
  webhookName: string;
}

export class SharedBot {
  private current: Client | null = null;
  private starting: Promise<Client> | null = null;
  private readonly hooks = new Map<string, Promise<{ id: string; token: string }>>();
  private readonly hookIds = new Set<string>();
  /** Linked users in each channel, with their nicks (the names on their webhook messages). */
  private readonly present = new Map<string, Map<LinkedUser, string>>();

  constructor(
    private readonly settings: SharedBotSettings,
    private readonly opts: DiscordSessionOptions,
    private readonly log: AdapterLogger,
  ) {}

  /** The running client, logged in (started on first use, or again after it was lost). */
  async acquire(): Promise<SharedClient> {
    const client = this.current ?? (await (this.starting ??= this.startClient().finally(() => (this.starting = null))));
    return {
      client,
      allows: (guildId, channelId) => this.settings.guilds.has(guildId) && (!this.settings.channels || this.settings.channels.has(channelId)),
      webhook: (channelId) => this.webhook(client, channelId),
      isOwnWebhook: (id) => this.hookIds.has(id),
      present: (channelId, user, nick) => this.setPresent(channelId, user, nick),
      peers: (channelId, except) => [...(this.present.get(channelId) ?? new Map<LinkedUser, string>())].filter(([u]) => u !== except).map(([u, nick]) => ({ key: u.key, nick })),
    };
  }

  private setPresent(channelId: string, user: LinkedUser, nick: string | null): void {
    let here = this.present.get(channelId);
    if (nick === null) {
      if (!here?.delete(user)) return;
      if (!here.size) this.present.delete(channelId);
    } else {
      if (here?.get(user) === nick) return;
      if (!here) this.present.set(channelId, (here = new Map()));
      here.set(user, nick);
    }
    for (const other of [...(this.present.get(channelId)?.keys() ?? [])]) if (other !== user) other.peerChanged(channelId, user.key, nick);
  }

  /** Ends the client (the transport stops). */
  async stop(): Promise<void> {
    const client = this.current;
    this.current = null;
    if (client) await client.destroy().catch(() => undefined);
  }

  private async startClient(): Promise<Client> {
    const client = createClient(this.opts);
    // From the start and for good: an error event without a listener would throw (also after a failed login).
    client.on(Events.Error, (err) => this.log.warn('shared discord client error', { error: err.message }));
    client.on(Events.ShardError, (err) => this.log.debug('shared discord gateway error', { error: err.message }));
    const ready = new Promise<void>((resolve) => client.once(Events.ClientReady, () => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new LegacyNetworkError('the shared Discord bot did not complete its login in time')), this.opts.loginTimeoutMs);
    });
    try {
      await Promise.race([client.login(this.settings.token).then(() => ready), deadline]);
    } catch (err) {
      await client.destroy().catch(() => undefined);
      const e = loginError(err);
      // The token is the operator's: users can do nothing about it, but must be told.
      if (e instanceof LegacyAuthError) this.log.warn('the shared Discord bot cannot log in', { reason: e.message });
      throw e instanceof LegacyAuthError ? new LegacyNetworkError(`the gateway's shared Discord bot cannot log in (${e.message}); tell the operator`) : e;
    } finally {
      clearTimeout(timer);
    }
    const user = client.user;
    if (!user?.bot) {
      await client.destroy().catch(() => undefined);
      throw new LegacyNetworkError("the gateway's shared Discord token is not a bot's; tell the operator");
    }
    let grace: NodeJS.Timeout | null = null;
    client.on(Events.ShardDisconnect, (ev) => this.drop(client, `Discord closed the gateway connection (${ev.code})`));
    client.on(Events.ShardReconnecting, () => {
      grace ??= setTimeout(() => this.drop(client, 'the gateway connection was not back in time'), this.opts.reconnectGraceMs);
    });
    const back = () => {
      if (grace) clearTimeout(grace);
      grace = null;
    };
    client.on(Events.ShardResume, back);
    client.on(Events.ShardReady, back);
    for (const id of this.settings.guilds) if (!client.guilds.cache.has(id)) this.log.warn('the shared Discord bot is not in a configured guild', { guild: id });
    this.log.info('shared discord bot logged in', { bot: user.id, guilds: client.guilds.cache.size });
    this.current = client;
    return client;
  }

  private drop(client: Client, reason: string): void {
    if (this.current !== client) return;
    this.current = null;
    this.hooks.clear();
    this.log.info('shared discord bot disconnected', { reason });
    // The sessions on it see the same events and end; discord.js is stopped once they had them.
    setImmediate(() => void client.destroy().catch(() => undefined));
  }

  /** The channel's webhook made by this bot, or a new one (Manage Webhooks). */
  private webhook(client: Client, channelId: string): Promise<{ id: string; token: string }> {
    let hook = this.hooks.get(channelId);
    if (!hook) {
      hook = this.findOrCreate(client, channelId);
      this.hooks.set(channelId, hook);
      hook.catch(() => this.hooks.delete(channelId));
    }
    return hook;
  }

  private async findOrCreate(client: Client, channelId: string): Promise<{ id: string; token: string }> {
    const botId = client.user!.id;
    const list = (await client.rest.get(Routes.channelWebhooks(channelId))) as { id: string; token?: string; application_id?: string | null; user?: { id: string } }[];
    const mine = list.find((h) => h.token && (h.application_id === botId || h.user?.id === botId));
    const hook = mine ?? ((await client.rest.post(Routes.channelWebhooks(channelId), { body: { name: this.settings.webhookName } })) as { id: string; token: string });
    if (!hook.token) throw new LegacyNetworkError('Discord gave the webhook no token');
    this.hookIds.add(hook.id);
    return { id: hook.id, token: hook.token };
  }
}
