/**
 * One user's bot on Discord, on discord.js 14.
 *
 * discord.js does the protocol plumbing: the gateway (HELLO, IDENTIFY, heartbeats, RESUME with
 * replay after a dropped connection), caches of guilds, channels, members and roles, and the REST
 * client with Discord's rate limits (per-route buckets from the X-RateLimit-* headers, 429
 * answers waited out and retried; a wait longer than `maxRateLimitWaitMs` fails the action with
 * `resource-constraint` instead of hanging). This class maps Discord to the kit:
 *
 * - Rooms are guild text channels, id `#<channel id>` (Discord ids do not tell channels from
 *   users, the `#` does; see DiscordAdapter.isRoomId), named "Guild / #channel". Occupants are the
 *   guild members who can see the channel; the guild owner is owner, Administrator is admin, both
 *   moderators; members who may manage messages are moderators, those who may not send are
 *   visitors. Nicks are display names (server nick, else global name, else user name), made
 *   unique per room with the user name ("Ann (ann_lee)"); whoever had a name first keeps it.
 * - Contacts are users (id = user id), reached by direct message.
 * - Messages both ways, with edits (editOf), deletions (redacts), reactions (the sender's whole
 *   set, `reactions`), replies (message_reference ↔ replyTo), typing, attachments as links and
 *   mentions as names (see text.ts). Messages sent through the transport keep the kit's ids in
 *   events (ids.ts). Discord echoes what the bot sends; those echoes are dropped (the kit echoes
 *   room messages itself), while messages the bot sent elsewhere appear from the own nick.
 *
 * Lifecycle: `start()` resolves once the gateway is READY and the guilds have arrived. A dropped
 * gateway connection is resumed by discord.js without losing events; if it is not back within
 * `reconnectGraceMs`, or Discord closes it for good (4004 token invalid, 4014 intents not
 * allowed, …), the session emits `disconnected(reason, final)` once and is dead. `final` is true
 * when logging in again cannot help (the token or the bot's settings must change).
 */
import { randomBytes } from 'node:crypto';
import {
  ChannelType,
  Client,
  DiscordAPIError,
  DiscordjsErrorCodes,
  Events,
  GatewayIntentBits,
  MessageReferenceType,
  MessageType,
  Partials,
  PermissionFlagsBits,
  Routes,
  type Guild,
  type GuildBasedChannel,
  type GuildMember,
  type Message,
  type MessageReaction,
  type PartialMessage,
  type PartialMessageReaction,
  type PartialUser,
  type Presence,
  type Typing,
  type User,
} from 'discord.js';
import {
  LegacyAuthError,
  LegacyNetworkError,
  type AdapterLogger,
  type LegacyContact,
  type LegacyRoom,
  type LegacySession,
  type Occupant,
  type TextMessage,
} from '../kit/adapter.js';
import { LegacySessionEmitter } from '../kit/session-emitter.js';
import type { OccupantTable } from '../kit/occupants.js';
import { DiscordCommandError, mapError } from './errors.js';
import { FinalDestroyStrategy } from './gateway.js';
import { BoundedMap, IdMap, isSnowflake } from './ids.js';
import { cleanNick, fromDiscordMarkup, sanitize, splitMessage, toDiscordMarkup, type MentionNames } from './text.js';

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
}

interface RoomState {
  room: LegacyRoom;
  channelId: string;
  guildId: string;
  joined: boolean;
  /** Occupants by user id, as last reported; `base` is the display name a nick was made from. */
  occupants: OccupantTable;
}

/** Gateway close codes after which a new login cannot succeed without changes (topics/opcodes-and-status-codes). */
const FINAL_CLOSE_CODES: Record<number, string> = {
  4004: 'Discord no longer accepts the bot token',
  4010: 'Discord refused the shard',
  4011: 'the bot is in too many servers for one connection (sharding required)',
  4012: 'Discord refused the gateway version',
  4013: 'Discord refused the gateway intents',
  4014: 'Discord refused the privileged gateway intents; turn them on for the bot in the Developer Portal',
};

const RELAYED_TYPES = new Set<number>([MessageType.Default, MessageType.Reply, MessageType.ChatInputCommand, MessageType.ContextMenuCommand]);

const SELF_BOT_TEXT = 'this token belongs to a user account; Discord forbids automating user accounts, so the gateway only accepts bot tokens (Developer Portal → Applications → Bot)';

type Where = { room: RoomState } | { contact: LegacyContact };

export class DiscordSession extends LegacySessionEmitter implements LegacySession {
  protected readonly network = 'discord';

  protected override logContext(): Record<string, string> {
    return { server: this.server };
  }

  readonly server: string;
  readonly client: Client;
  private state: 'connecting' | 'ready' | 'closed' = 'connecting';
  private me = '';
  private readonly rooms = new Map<string, RoomState>();
  private readonly ids = new IdMap();
  /** Nonces of messages on their way out; their gateway echoes are dropped. */
  private readonly pendingNonces = new Set<string>();
  /** Messages this session sent. */
  private readonly ownSent = new BoundedMap<string, true>(2000);
  /** Gateway echoes of our own actions that are expected (key → when). */
  private readonly expected = new BoundedMap<string, number>(2000);
  /** Who wrote a message (for deletions of messages no longer cached). */
  private readonly authors = new BoundedMap<string, string>(5000);
  /** `${message}:${user}` → that user's reactions (keys as the kit sees them). */
  private readonly reactionSets = new BoundedMap<string, Set<string>>(5000);
  /** message → our own reactions (Discord emoji identifiers). */
  private readonly ownReactions = new BoundedMap<string, Set<string>>(2000);
  private readonly typingTimers = new Map<string, NodeJS.Timeout>();
  private readonly lastTypingSent = new BoundedMap<string, number>(500);
  private readonly membersFetched = new Set<string>();
  private readonly watched = new Set<string>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private graceTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly token: string,
    private readonly opts: DiscordSessionOptions,
    protected readonly log: AdapterLogger,
  ) {
    super();
    this.server = hostOf(opts.api);
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
    this.client = new Client({
      intents,
      // Direct-message channels are not announced to bots: without the Channel partial their messages would be dropped.
      partials: [Partials.Channel, Partials.Message, Partials.Reaction, Partials.User, Partials.GuildMember],
      rest: {
        api: opts.api,
        timeout: opts.restTimeoutMs,
        retries: 2,
        rejectOnRateLimit: (info) => Math.max(info.timeToReset, info.retryAfter) > opts.maxRateLimitWaitMs,
      },
      ws: { large_threshold: 250, buildStrategy: (manager) => new FinalDestroyStrategy(manager) },
      waitGuildTimeout: opts.waitGuildTimeoutMs,
      failIfNotExists: false,
      allowedMentions: { parse: ['users', 'roles'], repliedUser: true },
    });
    this.bind();
  }

  // ---------------------------------------------------------------- public state

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
    return user ? `${user.username} (${user.id})` : undefined;
  }

  /** Rooms this session is in. */
  get joinedRooms(): LegacyRoom[] {
    return [...this.rooms.values()].filter((r) => r.joined).map((r) => r.room);
  }

  /** Every guild text channel the bot can see, as rooms (for disco#items). */
  listRooms(): LegacyRoom[] {
    const out: LegacyRoom[] = [];
    for (const guild of this.client.guilds.cache.values()) {
      for (const ch of guild.channels.cache.values()) {
        if (!isRoomChannel(ch)) continue;
        if (!ch.permissionsFor(this.me)?.has(PermissionFlagsBits.ViewChannel)) continue;
        out.push(this.roomOf(ch));
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- login

  /** Connects and waits for READY and the guilds; rejects with LegacyAuthError or LegacyNetworkError. */
  async start(): Promise<void> {
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

  private bind(): void {
    const c = this.client;
    const on = <K extends keyof import('discord.js').ClientEvents>(event: K, fn: (...args: import('discord.js').ClientEvents[K]) => void) => {
      c.on(event, (...args) => {
        if (this.state !== 'ready') return;
        this.guard(String(event), () => fn(...args));
      });
    };
    c.on(Events.Error, (err) => this.log.warn('discord client error', { server: this.server, error: err.message }));
    c.on(Events.ShardError, (err) => this.log.debug('discord gateway error', { server: this.server, error: err.message }));
    c.rest.on('rateLimited', (info) => this.log.debug('discord rate limit', { route: info.route, waitMs: info.timeToReset, global: info.global }));

    c.on(Events.ShardDisconnect, (ev) => {
      if (this.state !== 'ready') return;
      const reason = FINAL_CLOSE_CODES[ev.code] ?? `Discord closed the gateway connection (${ev.code})`;
      this.fail(reason, ev.code in FINAL_CLOSE_CODES);
    });
    c.on(Events.ShardReconnecting, () => {
      if (this.state !== 'ready' || this.graceTimer) return;
      this.log.debug('discord gateway connection lost, discord.js reconnects', { server: this.server });
      this.graceTimer = setTimeout(() => {
        this.graceTimer = null;
        this.fail(`lost the connection to the Discord gateway for more than ${Math.round(this.opts.reconnectGraceMs / 1000)} s`, false);
      }, this.opts.reconnectGraceMs);
    });
    c.on(Events.ShardResume, (_id, replayed) => {
      this.clearGrace();
      if (this.state === 'ready') this.log.debug('discord gateway resumed', { server: this.server, replayed });
    });
    c.on(Events.ShardReady, () => {
      this.clearGrace();
      // A new gateway session (not a resume): events in between are lost, so bring rooms up to date.
      if (this.state === 'ready') for (const r of this.rooms.values()) if (r.joined) this.resync(r);
    });

    on(Events.MessageCreate, (m) => this.onMessage(m));
    on(Events.MessageUpdate, (old, m) => this.onUpdate(old, m));
    on(Events.MessageDelete, (m) => this.onDelete(m.id, m.channelId, m.author?.id ?? null));
    on(Events.MessageBulkDelete, (msgs, ch) => {
      for (const m of msgs.values()) this.onDelete(m.id, ch.id, m.author?.id ?? null);
    });
    on(Events.MessageReactionAdd, (r, u) => this.onReaction(r, u, true));
    on(Events.MessageReactionRemove, (r, u) => this.onReaction(r, u, false));
    on(Events.TypingStart, (t) => this.onTyping(t));
    on(Events.GuildMemberAdd, (m) => this.memberChanged(m.guild.id, m.id));
    on(Events.GuildMemberRemove, (m) => this.memberChanged(m.guild.id, m.id));
    on(Events.GuildMemberUpdate, (_o, m) => this.memberChanged(m.guild.id, m.id));
    on(Events.GuildRoleCreate, (r) => this.resyncGuild(r.guild.id));
    on(Events.GuildRoleUpdate, (_o, r) => this.resyncGuild(r.guild.id));
    on(Events.GuildRoleDelete, (r) => this.resyncGuild(r.guild.id));
    on(Events.GuildCreate, (g) => this.resyncGuild(g.id));
    on(Events.GuildUpdate, (_o, g) => this.resyncGuild(g.id));
    on(Events.GuildDelete, (g) => {
      if (!g.available) return; // an outage, not a removal
      for (const r of [...this.rooms.values()]) if (r.guildId === g.id) this.lostRoom(r, 'the bot was removed from the server');
    });
    on(Events.ChannelUpdate, (old, ch) => this.onChannelUpdate(old, ch));
    on(Events.ChannelDelete, (ch) => {
      const r = this.rooms.get(ch.id);
      if (r) this.lostRoom(r, 'the channel was deleted');
    });
    on(Events.PresenceUpdate, (_o, p) => this.onPresence(p));
  }

  private clearGrace(): void {
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = null;
  }

  /** The session is over: tells the kit once and stops discord.js. */
  private fail(reason: string, final: boolean): void {
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
    for (const t of this.typingTimers.values()) clearTimeout(t);
    this.typingTimers.clear();
    this.rooms.clear();
    void this.stopClient();
  }

  /** Stops discord.js for good (see gateway.ts for why that needs care), and stops listening to it. */
  private async stopClient(): Promise<void> {
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
    for (const t of this.typingTimers.values()) clearTimeout(t);
    this.typingTimers.clear();
    this.rooms.clear();
    await this.stopClient();
    this.log.info('discord logged out', { server: this.server });
  }

  // ---------------------------------------------------------------- rooms and occupants

  private roomOf(ch: GuildBasedChannel): LegacyRoom {
    const parent = ch.isThread() && ch.parent ? `#${ch.parent.name} / ` : '';
    return { id: `#${ch.id}`, name: `${ch.guild.name} / ${parent}#${ch.name}` };
  }

  private channel(id: string): GuildBasedChannel | null {
    const ch = this.client.channels.cache.get(id);
    return ch && !ch.isDMBased() ? (ch as GuildBasedChannel) : null;
  }

  private occupantFor(member: GuildMember, ch: GuildBasedChannel, nick: string): Occupant {
    const perms = ch.permissionsFor(member);
    let occ: Pick<Occupant, 'role' | 'affiliation'>;
    if (member.guild.ownerId === member.id) occ = { affiliation: 'owner', role: 'moderator' };
    else if (perms?.has(PermissionFlagsBits.Administrator)) occ = { affiliation: 'admin', role: 'moderator' };
    else if (perms?.has(PermissionFlagsBits.ManageMessages)) occ = { affiliation: 'member', role: 'moderator' };
    else if (!perms?.has(PermissionFlagsBits.SendMessages) || member.isCommunicationDisabled()) occ = { affiliation: 'member', role: 'visitor' };
    else occ = { affiliation: 'member', role: 'participant' };
    return { nick, ...occ, contact: this.contactOf(member.user) };
  }

  private canSee(ch: GuildBasedChannel, member: GuildMember): boolean {
    return !!ch.permissionsFor(member)?.has(PermissionFlagsBits.ViewChannel);
  }

  /** A nick for a member: its current one while its display name is unchanged, else a free one. */
  private nickFor(r: RoomState, member: GuildMember, base: string): string {
    const candidates = [base, `${base} (${member.user.username})`, `${base} (${member.id})`];
    return r.occupants.uniqueNick(member.id, base, candidates, () => `${base} (${member.id}-${randomBytes(2).toString('hex')})`);
  }

  /** Brings one member's occupant up to date in one room; the table reports what changed once the room is joined. */
  private updateOccupant(r: RoomState, userId: string): void {
    const ch = this.channel(r.channelId);
    if (!ch) return;
    const member = ch.guild.members.cache.get(userId);
    const visible = !!member && this.canSee(ch, member);
    if (!visible) {
      if (!r.occupants.has(userId)) return;
      if (userId === this.me) {
        this.lostRoom(r, 'the bot can no longer see this channel');
        return;
      }
      r.occupants.part(userId);
      return;
    }
    const base = cleanNick(member.displayName) || cleanNick(member.user.username) || member.id;
    const nick = this.nickFor(r, member, base);
    r.occupants.join(userId, this.occupantFor(member, ch, nick), undefined, base);
  }

  /** Recomputes every occupant (roles, overwrites or the member list changed). */
  private resync(r: RoomState, emit = true): void {
    const ch = this.channel(r.channelId);
    if (!ch) {
      if (emit) this.lostRoom(r, 'the channel is gone');
      return;
    }
    r.room.name = this.roomOf(ch).name;
    const ids = new Set<string>([...ch.guild.members.cache.keys(), ...r.occupants.ids()]);
    // Members who had a nick first keep it: existing occupants go first.
    const order = [...r.occupants.ids(), ...[...ids].filter((id) => !r.occupants.has(id))];
    for (const id of order) {
      if (this.state !== 'ready' && emit) return;
      this.updateOccupant(r, id);
      if (!this.rooms.has(r.channelId)) return; // we lost the room
    }
  }

  private resyncGuild(guildId: string): void {
    for (const r of [...this.rooms.values()]) if (r.guildId === guildId && r.joined) this.resync(r);
  }

  private memberChanged(guildId: string, userId: string): void {
    for (const r of [...this.rooms.values()]) if (r.guildId === guildId && r.joined) this.updateOccupant(r, userId);
  }

  private lostRoom(r: RoomState, reason: string): void {
    if (!this.rooms.has(r.channelId)) return;
    this.rooms.delete(r.channelId);
    const own = r.occupants.nickOf(this.me) ?? this.client.user?.username ?? 'bot';
    if (r.joined) this.safeEmit('occupantLeft', r.room, own, reason, null);
  }

  private onChannelUpdate(old: unknown, ch: unknown): void {
    const channel = ch as GuildBasedChannel;
    const r = this.rooms.get(channel.id);
    if (!r || !r.joined) return;
    const before = old as { topic?: string | null; permissionOverwrites?: { cache: Map<string, unknown> } };
    const topic = 'topic' in channel ? (channel.topic ?? null) : null;
    this.resync(r);
    if (!this.rooms.has(channel.id)) return;
    if ((before.topic ?? null) !== topic) {
      const ours = this.consume(`s:${channel.id}`);
      this.safeEmit('subject', r.room, topic ?? '', ours ? (r.occupants.nickOf(this.me) ?? null) : null);
    }
  }

  private async ensureMembers(guild: Guild): Promise<void> {
    if (!this.opts.members || this.membersFetched.has(guild.id)) return;
    if (guild.members.cache.size >= guild.memberCount || guild.memberCount > this.opts.maxMemberFetch) return;
    this.membersFetched.add(guild.id);
    try {
      await guild.members.fetch({ time: 20_000 });
    } catch (err) {
      this.log.debug('discord member list fetch failed', { guild: guild.id, error: (err as Error).message });
    }
  }

  private ownNick(r: RoomState): string {
    return r.occupants.nickOf(this.me) ?? (cleanNick(this.client.user?.displayName) || 'bot');
  }

  private emitJoined(r: RoomState): void {
    const ch = this.channel(r.channelId);
    const topic = ch && 'topic' in ch ? (ch.topic ?? null) : null;
    this.safeEmit('roomJoined', r.room, this.ownNick(r), r.occupants.list(), topic || null);
  }

  /**
   * Joins a guild channel (`#<channel id>`): resolves once roomJoined or roomJoinFailed was
   * emitted. The bot's display name in the guild is its nick (`nick` is not applied: a Discord
   * nick is per guild and visible in every channel; changeNick sets it). Joining a room we are in
   * re-emits roomJoined.
   */
  async joinRoom(room: LegacyRoom, _nick: string, _password?: string): Promise<void> {
    this.ensureReady();
    const id = channelIdOf(room.id);
    if (!id) {
      this.safeEmit('roomJoinFailed', room, `not a Discord channel: ${room.id}`, 'item-not-found');
      return;
    }
    const existing = this.rooms.get(id);
    if (existing?.joined) {
      this.emitJoined(existing);
      return;
    }
    let ch = this.client.channels.cache.get(id) ?? null;
    if (!ch) {
      try {
        ch = await this.client.channels.fetch(id);
      } catch (err) {
        const e = mapError(err, 'joining');
        const condition = e instanceof DiscordCommandError && e.condition === 'forbidden' ? 'forbidden' : e instanceof LegacyNetworkError ? 'service-unavailable' : 'item-not-found';
        this.safeEmit('roomJoinFailed', room, condition === 'forbidden' ? 'the bot has no access to this channel' : e.message, condition);
        return;
      }
    }
    if (!ch || ch.isDMBased()) {
      this.safeEmit('roomJoinFailed', room, 'direct messages are contacts, not rooms', 'item-not-found');
      return;
    }
    if (!isRoomChannel(ch)) {
      this.safeEmit('roomJoinFailed', room, 'not a text channel', 'item-not-found');
      return;
    }
    if (!ch.permissionsFor(this.me)?.has(PermissionFlagsBits.ViewChannel)) {
      this.safeEmit('roomJoinFailed', room, 'the bot cannot see this channel', 'forbidden');
      return;
    }
    await this.ensureMembers(ch.guild);
    if (this.state !== 'ready') return;
    const again = this.rooms.get(id);
    if (again?.joined) {
      this.emitJoined(again);
      return;
    }
    const channelRoom = this.roomOf(ch);
    const r: RoomState = { room: channelRoom, channelId: id, guildId: ch.guild.id, joined: false, occupants: this.occupantTable(channelRoom) };
    this.rooms.set(id, r);
    // The bot first (its nick should be its plain display name), then everyone else.
    this.updateOccupant(r, this.me);
    this.resync(r, false);
    r.joined = true;
    r.occupants.announced = true;
    this.emitJoined(r);
  }

  /** Stops relaying the channel (a bot cannot leave one channel of a guild). */
  async leaveRoom(room: LegacyRoom, reason?: string): Promise<void> {
    const id = channelIdOf(room.id);
    const r = id ? this.rooms.get(id) : undefined;
    if (!r) return;
    this.rooms.delete(r.channelId);
    this.safeEmit('occupantLeft', r.room, this.ownNick(r), reason ?? null, null);
  }

  /** Sets the channel topic (Manage Channels permission). */
  async setSubject(room: LegacyRoom, subject: string): Promise<void> {
    this.ensureReady();
    const id = this.roomChannelId(room);
    const topic = sanitize(subject).trim();
    if (topic.length > 1024) throw new DiscordCommandError('a Discord channel topic has at most 1024 characters', 'not-acceptable');
    this.expect(`s:${id}`);
    try {
      await this.client.rest.patch(Routes.channel(id), { body: { topic: topic || null } });
    } catch (err) {
      throw this.actionError(err, 'setting the topic');
    }
  }

  /** Sets the bot's nick in the room's guild (in every channel of it); resolves once Discord reports it. */
  async changeNick(room: LegacyRoom | null, nick: string): Promise<void> {
    this.ensureReady();
    if (!room) throw new DiscordCommandError('Discord nicks are per server: change it in a room', 'bad-request');
    const id = this.roomChannelId(room);
    const ch = this.channel(id);
    if (!ch) throw new DiscordCommandError('unknown channel', 'item-not-found');
    const wanted = cleanNick(nick);
    if (!wanted || wanted.length > 32) throw new DiscordCommandError('a Discord nick has 1 to 32 characters', 'not-acceptable');
    const me = ch.guild.members.me;
    if (me && cleanNick(me.displayName) === wanted) return;
    const guildId = ch.guild.id;
    const updated = new Promise<void>((resolve) => {
      const timer = setTimeout(done, 5000);
      const client = this.client;
      const self = this.me;
      function listener(_o: unknown, m: GuildMember): void {
        if (m.id === self && m.guild.id === guildId) done();
      }
      function done(): void {
        clearTimeout(timer);
        client.off(Events.GuildMemberUpdate, listener);
        resolve();
      }
      client.on(Events.GuildMemberUpdate, listener);
    });
    try {
      await this.client.rest.patch(Routes.guildMember(guildId, '@me'), { body: { nick: wanted } });
    } catch (err) {
      throw this.actionError(err, 'changing the nick');
    }
    await updated;
  }

  /** Discord has no per-channel kick: a kick removes a member from the whole server. */
  async kick(_room: LegacyRoom, _nick: string, _reason?: string): Promise<void> {
    throw new DiscordCommandError('Discord has no per-channel kick (a kick removes the member from the whole server); do that in Discord', 'not-allowed');
  }

  // ---------------------------------------------------------------- contacts

  private contactOf(user: User | PartialUser): LegacyContact {
    const name = cleanNick(user.globalName ?? user.username ?? '');
    return name ? { id: user.id, displayName: name } : { id: user.id };
  }

  async addContact(contact: LegacyContact): Promise<void> {
    if (!isSnowflake(contact.id)) return;
    this.watched.add(contact.id);
    if (!this.opts.presences || this.state !== 'ready') return;
    for (const g of this.client.guilds.cache.values()) {
      const p = g.presences.cache.get(contact.id);
      if (p) {
        this.onPresence(p);
        return;
      }
    }
  }

  async removeContact(contact: LegacyContact): Promise<void> {
    this.watched.delete(contact.id);
  }

  private onPresence(p: Presence): void {
    if (!this.opts.presences || !p.userId || !this.watched.has(p.userId)) return;
    const show = p.status === 'online' ? 'available' : p.status === 'idle' ? 'away' : p.status === 'dnd' ? 'dnd' : 'unavailable';
    const custom = p.activities.find((a) => a.type === 4);
    const user = p.user ?? this.client.users.cache.get(p.userId);
    this.safeEmit('contactPresence', user ? this.contactOf(user) : { id: p.userId }, show, custom?.state ? sanitize(custom.state) : null);
  }

  /** The bot's own status (shown to Discord users). */
  async setPresence(show: 'available' | 'away' | 'dnd' | 'xa', status: string | null): Promise<void> {
    this.ensureReady();
    const s = show === 'available' ? 'online' : show === 'dnd' ? 'dnd' : 'idle';
    this.client.user?.setPresence({ status: s, activities: status ? [{ name: 'Custom Status', type: 4, state: sanitize(status).slice(0, 128) }] : [] });
  }

  // ---------------------------------------------------------------- incoming

  private where(channelId: string, isDm: boolean, author: User | PartialUser | null): Where | null {
    if (isDm) return author ? { contact: this.contactOf(author) } : null;
    const r = this.rooms.get(channelId);
    return r?.joined ? { room: r } : null;
  }

  /** The nick of a message author in a room: its occupant nick, else (webhooks, non-members) its name, kept apart from occupants. */
  private authorNick(r: RoomState, msg: Message | PartialMessage): string {
    const id = msg.author?.id ?? '';
    if (!msg.webhookId) {
      if (!r.occupants.has(id) && msg.member) this.updateOccupant(r, id);
      const nick = r.occupants.nickOf(id);
      if (nick) return nick;
    }
    const name = cleanNick(msg.member?.displayName ?? msg.author?.displayName ?? msg.author?.username) || 'unknown';
    const holder = r.occupants.idOf(name);
    return holder === undefined || holder === id ? name : `${name} (${msg.webhookId ? 'webhook' : id})`;
  }

  private names(guild: Guild | null, r: RoomState | null, msg?: Message | PartialMessage): MentionNames {
    return {
      user: (id) =>
        r?.occupants.nickOf(id) ??
        (cleanNick(guild?.members.cache.get(id)?.displayName ?? msg?.mentions?.users.get(id)?.displayName ?? this.client.users.cache.get(id)?.displayName) || null),
      role: (id) => (guild?.roles.cache.get(id)?.name ? cleanNick(guild.roles.cache.get(id)!.name) : null),
      channel: (id) => {
        const ch = this.client.channels.cache.get(id);
        return ch && 'name' in ch && ch.name ? ch.name : null;
      },
    };
  }

  /** The text a Discord message becomes, or null if there is nothing to show. */
  private textOf(msg: Message | PartialMessage, r: RoomState | null): TextMessage | null {
    const names = this.names(msg.guild ?? null, r, msg);
    let text = fromDiscordMarkup(msg.content ?? '', names);
    const urls = [...(msg.attachments?.values() ?? [])].map((a) => a.url);
    if (msg.reference?.type === MessageReferenceType.Forward) {
      const snap = msg.messageSnapshots?.first();
      if (snap) {
        const inner = fromDiscordMarkup(snap.content ?? '', names);
        text = `Forwarded:${inner ? `\n${inner}` : ''}${text ? `\n${text}` : ''}`;
        for (const a of snap.attachments?.values() ?? []) urls.push(a.url);
      }
    }
    for (const s of msg.stickers?.values() ?? []) text += `${text ? '\n' : ''}[sticker: ${s.name}]`;
    if (!text && !urls.length) {
      const lines = (msg.embeds ?? []).flatMap((e) => [e.title, e.description, e.url].filter((x): x is string => !!x)).map((l) => sanitize(l));
      text = lines.join('\n');
    }
    for (const url of urls) if (!text.includes(url)) text += `${text ? '\n' : ''}${url}`;
    if (!text) return null;
    const out: TextMessage = { text, id: this.ids.kitId(msg.id) };
    if (msg.reference?.messageId && msg.reference.type !== MessageReferenceType.Forward) out.replyTo = this.ids.kitId(msg.reference.messageId);
    if (urls.length) out.attachments = urls;
    // Replayed or delayed messages keep their time; live ones do not need it.
    if (msg.createdTimestamp && Date.now() - msg.createdTimestamp > 10_000) out.timestamp = new Date(msg.createdTimestamp);
    return out;
  }

  private deliverIn(w: Where, nick: string | null, msg: TextMessage): void {
    if ('room' in w) this.safeEmit('roomMessage', w.room.room, nick ?? this.ownNick(w.room), msg);
    else this.safeEmit('message', w.contact, msg);
  }

  private onMessage(msg: Message): void {
    const isDm = !msg.guildId;
    const authorId = msg.author.id;
    this.authors.set(msg.id, authorId);
    if (authorId === this.me) {
      const nonce = msg.nonce === null || msg.nonce === undefined ? null : String(msg.nonce);
      if (this.ownSent.has(msg.id) || (nonce && this.pendingNonces.has(nonce))) return; // our own echo
      if (isDm) return; // sent elsewhere to someone: XMPP has no place for it here
    }
    if (!RELAYED_TYPES.has(msg.type)) return;
    const w = this.where(msg.channelId, isDm, msg.author);
    if (!w) return;
    this.stopTyping(msg.channelId, authorId);
    const text = this.textOf(msg, 'room' in w ? w.room : null);
    if (!text) return;
    if ('room' in w) this.deliverIn(w, authorId === this.me ? this.ownNick(w.room) : this.authorNick(w.room, msg), text);
    else this.deliverIn(w, null, text);
  }

  private onUpdate(old: Message | PartialMessage, msg: Message | PartialMessage): void {
    if (!msg.editedTimestamp) return; // an embed or flag update, not an edit
    if (!old.partial && old.content === msg.content) return;
    const authorId = msg.author?.id ?? this.authors.get(msg.id);
    if (!authorId) return;
    if (authorId === this.me && (this.consume(`u:${msg.id}`) || !msg.guildId)) return;
    const w = this.where(msg.channelId, !msg.guildId, msg.author ?? null);
    if (!w) return;
    const text = this.textOf(msg, 'room' in w ? w.room : null);
    if (!text) return;
    const edit: TextMessage = { ...text, editOf: this.ids.kitId(msg.id) };
    delete edit.id;
    delete edit.timestamp;
    if ('room' in w) this.deliverIn(w, authorId === this.me ? this.ownNick(w.room) : this.authorNick(w.room, msg), edit);
    else this.deliverIn(w, null, edit);
  }

  private onDelete(id: string, channelId: string, knownAuthor: string | null): void {
    const authorId = knownAuthor ?? this.authors.get(id);
    if (!authorId) {
      this.log.debug('discord deletion of an unknown message ignored', { channel: channelId });
      return;
    }
    if (authorId === this.me && this.consume(`d:${id}`)) return;
    const ch = this.client.channels.cache.get(channelId);
    const isDm = !ch || ch.isDMBased();
    if (isDm && authorId === this.me) return;
    const msg: TextMessage = { text: '', redacts: this.ids.kitId(id) };
    if (isDm) {
      const user = this.client.users.cache.get(authorId);
      this.safeEmit('message', user ? this.contactOf(user) : { id: authorId }, msg);
      return;
    }
    const r = this.rooms.get(channelId);
    if (!r?.joined) return;
    const nick = authorId === this.me ? this.ownNick(r) : r.occupants.nickOf(authorId);
    if (!nick) return;
    this.safeEmit('roomMessage', r.room, nick, msg);
  }

  private onReaction(reaction: MessageReaction | PartialMessageReaction, user: User | PartialUser, added: boolean): void {
    const msgId = reaction.message.id;
    const emojiId = reaction.emoji.id ? `${reaction.emoji.name ?? '_'}:${reaction.emoji.id}` : (reaction.emoji.name ?? '');
    if (!emojiId) return;
    const key = reaction.emoji.id ? `:${reaction.emoji.name ?? 'emoji'}:` : emojiId;
    if (user.id === this.me) {
      const own = this.ownReactions.get(msgId) ?? new Set<string>();
      if (added) own.add(emojiId);
      else own.delete(emojiId);
      this.ownReactions.set(msgId, own);
      if (this.consume(`r:${msgId}:${emojiId}:${added ? '+' : '-'}`)) return;
      if (!reaction.message.guildId) return;
    }
    const setKey = `${msgId}:${user.id}`;
    const set = this.reactionSets.get(setKey) ?? new Set<string>();
    if (added) set.add(key);
    else set.delete(key);
    this.reactionSets.set(setKey, set);
    const channelId = reaction.message.channelId;
    const w = this.where(channelId, !reaction.message.guildId, user);
    if (!w) return;
    const msg: TextMessage = { text: '', reactions: { to: this.ids.kitId(msgId), keys: [...set] } };
    if ('room' in w) {
      let nick = user.id === this.me ? this.ownNick(w.room) : w.room.occupants.nickOf(user.id);
      if (!nick) {
        this.updateOccupant(w.room, user.id);
        nick = w.room.occupants.nickOf(user.id);
      }
      if (!nick) return;
      this.deliverIn(w, nick, msg);
    } else {
      this.deliverIn(w, null, msg);
    }
  }

  private onTyping(t: Typing): void {
    const userId = t.user.id;
    if (userId === this.me) return;
    const isDm = !t.guild;
    const w = this.where(t.channel.id, isDm, t.user);
    if (!w) return;
    let from: LegacyContact | { room: LegacyRoom; nick: string };
    if ('room' in w) {
      if (!w.room.occupants.has(userId)) this.updateOccupant(w.room, userId);
      const nick = w.room.occupants.nickOf(userId);
      if (!nick) return;
      from = { room: w.room.room, nick };
    } else {
      from = w.contact;
    }
    const k = `${t.channel.id}:${userId}`;
    const running = this.typingTimers.get(k);
    if (running) clearTimeout(running);
    else this.safeEmit('typing', from, 'composing');
    this.typingTimers.set(
      k,
      setTimeout(() => {
        this.typingTimers.delete(k);
        if (this.state === 'ready') this.safeEmit('typing', from, 'paused');
      }, this.opts.typingTimeoutMs),
    );
  }

  private stopTyping(channelId: string, userId: string): void {
    const k = `${channelId}:${userId}`;
    const t = this.typingTimers.get(k);
    if (t) clearTimeout(t);
    this.typingTimers.delete(k);
  }

  // ---------------------------------------------------------------- outgoing

  private ensureReady(): void {
    if (this.state !== 'ready') throw new LegacyNetworkError(`not connected to ${this.server}`);
  }

  private roomChannelId(room: LegacyRoom): string {
    const id = channelIdOf(room.id);
    if (!id) throw new DiscordCommandError(`not a Discord channel: ${room.id}`, 'bad-request');
    return id;
  }

  private expect(key: string): void {
    this.expected.set(key, Date.now());
  }

  private consume(key: string): boolean {
    const at = this.expected.get(key);
    if (at === undefined) return false;
    this.expected.delete(key);
    return Date.now() - at < 60_000;
  }

  /** A REST failure as the kit sees it; a refused token also ends the session (final). */
  private actionError(err: unknown, what: string): Error {
    const e = mapError(err, what);
    if (e instanceof LegacyAuthError) {
      this.fail(e.message, true);
      return new LegacyNetworkError(e.message);
    }
    return e;
  }

  private async dmChannelId(userId: string): Promise<string> {
    if (!isSnowflake(userId)) throw new DiscordCommandError(`not a Discord user id: ${userId}`, 'item-not-found');
    if (userId === this.me) throw new DiscordCommandError('that is the bot itself', 'bad-request');
    try {
      return (await this.client.users.createDM(userId)).id;
    } catch (err) {
      throw this.actionError(err, 'opening a direct message');
    }
  }

  /** Sends a direct message to a user (contact id = user id); also edits, deletions and reactions there. */
  async sendMessage(to: LegacyContact, message: TextMessage): Promise<void> {
    this.ensureReady();
    const channelId = await this.dmChannelId(to.id);
    await this.deliverOut(channelId, message, null);
  }

  /** Sends to a guild channel (also edits, deletions and reactions there). The kit echoes room messages itself. */
  async sendRoomMessage(room: LegacyRoom, message: TextMessage): Promise<void> {
    this.ensureReady();
    const id = this.roomChannelId(room);
    await this.deliverOut(id, message, this.rooms.get(id) ?? null);
  }

  /** Chat states: Discord knows only "typing" (for about ten seconds); it is sent at most every eight seconds. */
  async sendTyping(to: LegacyContact | LegacyRoom, state: 'composing' | 'paused' | 'active'): Promise<void> {
    if (state !== 'composing' || this.state !== 'ready') return;
    const roomId = channelIdOf(to.id);
    let channelId: string;
    try {
      channelId = roomId ?? (await this.dmChannelId(to.id));
    } catch {
      return;
    }
    const last = this.lastTypingSent.get(channelId);
    if (last !== undefined && Date.now() - last < 8000) return;
    this.lastTypingSent.set(channelId, Date.now());
    await this.client.rest.post(Routes.channelTyping(channelId)).catch((err: unknown) => {
      this.log.debug('discord typing refused', { channel: channelId, error: mapError(err, 'typing').message });
    });
  }

  private outText(message: TextMessage, r: RoomState | null): string {
    let text = sanitize(message.text ?? '');
    if (message.action && text) text = `_${text}_`;
    for (const url of message.attachments ?? []) if (!text.includes(url)) text += `${text ? '\n' : ''}${sanitize(url)}`;
    if (!r) return text;
    const ch = this.channel(r.channelId);
    const channels: [string, string][] = [];
    if (ch) for (const c of ch.guild.channels.cache.values()) if (isRoomChannel(c)) channels.push([c.name, c.id]);
    return toDiscordMarkup(text, { users: r.occupants.entries().map((o) => [o.nick, o.id]), channels });
  }

  private targets(id: string): string[] {
    const found = this.ids.discordIds(id);
    if (!found.length) throw new DiscordCommandError('unknown message', 'item-not-found');
    return found;
  }

  private async deliverOut(channelId: string, message: TextMessage, r: RoomState | null): Promise<void> {
    if (message.redacts) return this.deleteOut(channelId, this.targets(message.redacts));
    if (message.reactions) return this.reactOut(channelId, this.targets(message.reactions.to)[0]!, message.reactions.keys, r);
    const text = this.outText(message, r);
    const parts = splitMessage(text);
    if (message.editOf) return this.editOut(channelId, this.targets(message.editOf), parts);
    if (!parts.length) throw new DiscordCommandError('Discord does not take empty messages', 'not-acceptable');
    if (parts.length > this.opts.maxMessageParts) {
      throw new DiscordCommandError(`the message is too long for Discord (${parts.length} messages of 2000 characters, at most ${this.opts.maxMessageParts})`, 'not-acceptable');
    }
    const replyTo = message.replyTo ? this.ids.discordIds(message.replyTo)[0] : undefined;
    const sent: string[] = [];
    try {
      for (const [i, content] of parts.entries()) {
        const nonce = randomBytes(12).toString('base64url');
        const body: Record<string, unknown> = { content, nonce, enforce_nonce: true, allowed_mentions: { parse: ['users', 'roles'], replied_user: true } };
        if (i === 0 && replyTo) body.message_reference = { message_id: replyTo, fail_if_not_exists: false };
        this.pendingNonces.add(nonce);
        try {
          const res = (await this.client.rest.post(Routes.channelMessages(channelId), { body })) as { id: string };
          this.ownSent.set(res.id, true);
          sent.push(res.id);
        } finally {
          // Keep the nonce a little: the gateway echo can come after the answer.
          const t = setTimeout(() => {
            this.timers.delete(t);
            this.pendingNonces.delete(nonce);
          }, 30_000);
          t.unref?.();
          this.timers.add(t);
        }
      }
    } catch (err) {
      throw this.actionError(err, sent.length ? `sending (${sent.length} of ${parts.length} parts went out)` : 'sending');
    } finally {
      if (message.id && sent.length) this.ids.link(message.id, sent);
    }
  }

  private async editOut(channelId: string, ids: string[], parts: string[]): Promise<void> {
    if (!parts.length) throw new DiscordCommandError('Discord does not take empty messages (retract the message instead)', 'not-acceptable');
    if (parts.length > 1) throw new DiscordCommandError('the corrected text is too long for one Discord message (2000 characters)', 'not-acceptable');
    const [first, ...rest] = ids;
    this.expect(`u:${first}`);
    try {
      await this.client.rest.patch(Routes.channelMessage(channelId, first!), { body: { content: parts[0], allowed_mentions: { parse: ['users', 'roles'] } } });
    } catch (err) {
      throw this.actionError(err, 'editing');
    }
    // A long message that went out in parts is now one.
    if (rest.length) await this.deleteOut(channelId, rest);
  }

  private async deleteOut(channelId: string, ids: string[]): Promise<void> {
    for (const id of ids) {
      this.expect(`d:${id}`);
      try {
        await this.client.rest.delete(Routes.channelMessage(channelId, id));
      } catch (err) {
        const e = mapError(err, 'deleting');
        // Already gone is fine.
        if (e instanceof DiscordCommandError && e.condition === 'item-not-found' && err instanceof DiscordAPIError && err.code === 10008) continue;
        throw this.actionError(err, 'deleting');
      }
    }
  }

  /** The Discord identifier of a reaction key from XMPP: unicode as it is, `:name:` a custom emoji of the guild. */
  private emojiFor(key: string, r: RoomState | null): string | null {
    const custom = /^:([\w~-]{2,32}):$/.exec(key);
    if (custom) {
      const guild = r ? this.client.guilds.cache.get(r.guildId) : undefined;
      const e = guild?.emojis.cache.find((x) => x.name === custom[1]) ?? this.client.emojis.cache.find((x) => x.name === custom[1]);
      return e ? `${e.name}:${e.id}` : null;
    }
    if (!key || key.length > 64 || /[\s<>:]/.test(key)) return null;
    return key;
  }

  /** Makes the bot's reactions to a message exactly `keys` (XEP-0444 sends the whole set). */
  private async reactOut(channelId: string, messageId: string, keys: string[], r: RoomState | null): Promise<void> {
    const want = new Set<string>();
    for (const k of keys) {
      const e = this.emojiFor(k, r);
      if (!e) throw new DiscordCommandError(`Discord has no emoji ${k}`, 'not-acceptable');
      want.add(e);
    }
    let have = this.ownReactions.get(messageId);
    if (!have) {
      const cached = (this.client.channels.cache.get(channelId) as { messages?: { cache: Map<string, Message> } } | undefined)?.messages?.cache.get(messageId);
      have = new Set([...(cached?.reactions.cache.values() ?? [])].filter((x) => x.me).map((x) => (x.emoji.id ? `${x.emoji.name}:${x.emoji.id}` : (x.emoji.name ?? ''))));
    }
    const add = [...want].filter((e) => !have.has(e));
    const remove = [...have].filter((e) => !want.has(e));
    try {
      for (const e of add) {
        this.expect(`r:${messageId}:${e}:+`);
        await this.client.rest.put(Routes.channelMessageOwnReaction(channelId, messageId, encodeURIComponent(e)));
        have.add(e);
      }
      for (const e of remove) {
        this.expect(`r:${messageId}:${e}:-`);
        await this.client.rest.delete(Routes.channelMessageOwnReaction(channelId, messageId, encodeURIComponent(e)));
        have.delete(e);
      }
    } catch (err) {
      throw this.actionError(err, 'reacting');
    } finally {
      this.ownReactions.set(messageId, have);
    }
  }

  // ---------------------------------------------------------------- plumbing

  /** Runs a handler; an exception (ours or a listener's) is logged and never reaches discord.js. */

}

/** `#<snowflake>` → the channel id; anything else → null. */
export function channelIdOf(roomId: string): string | null {
  const m = /^#(\d{15,21})$/.exec(roomId);
  return m ? m[1]! : null;
}

function isRoomChannel(ch: { isTextBased(): boolean; isDMBased(): boolean; type: ChannelType }): ch is GuildBasedChannel & { isTextBased(): true } {
  return ch.isTextBased() && !ch.isDMBased() && ch.type !== ChannelType.GuildVoice && ch.type !== ChannelType.GuildStageVoice;
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
