/**
 * Guild text channels as the kit's rooms, id `#<channel id>`, named "Guild / #channel": listing
 * them, joining, and their occupants in the kit's occupant table: the guild members who can see
 * the channel; the guild owner is owner, Administrator is admin, both moderators; members who may
 * manage messages are moderators, those who may not send are visitors. Nicks are display names
 * (server nick, else global name, else user name), made unique per room with the user name
 * ("Ann (ann_lee)"); whoever had a name first keeps it.
 */
import { randomBytes } from 'node:crypto';
import { ChannelType, Events, PermissionFlagsBits, Routes, type Guild, type GuildBasedChannel, type GuildMember } from 'discord.js';
import { LegacyNetworkError, type DirectoryItem, type DirectoryListing, type DirectoryRequest, type LegacyRoom, type Occupant, type RoomHistoryItem } from '../kit/adapter.js';
import type { OccupantTable } from '../kit/occupants.js';
import { DiscordConnection, type LinkedUser } from './connection.js';
import { DiscordCommandError, mapError } from './errors.js';
import { cleanNick, sanitize } from './text.js';

export interface RoomState {
  room: LegacyRoom;
  channelId: string;
  guildId: string;
  joined: boolean;
  /** Occupants by user id, as last reported; `base` is the display name a nick was made from. */
  occupants: OccupantTable;
}

export abstract class DiscordRooms extends DiscordConnection {
  protected readonly rooms = new Map<string, RoomState>();
  private readonly membersFetched = new Set<string>();

  /** Rooms this session is in. */
  get joinedRooms(): LegacyRoom[] {
    return [...this.rooms.values()].filter((r) => r.joined).map((r) => r.room);
  }

  /** This session as the shared bot knows it (the other linked users in a channel are occupants). */
  protected readonly linked: LinkedUser = { key: randomBytes(6).toString('hex'), peerChanged: (ch, key, nick) => this.guard('peer', () => this.peerChanged(ch, key, nick)) };

  /** Another linked user came, changed nick or left (shared bot). */
  private peerChanged(channelId: string, key: string, nick: string | null): void {
    const r = this.rooms.get(channelId);
    if (!r?.joined) return;
    if (nick === null) r.occupants.part(`${LINKED_PREFIX}${key}`);
    else this.addPeer(r, key, nick);
  }

  private addPeer(r: RoomState, key: string, nick: string): void {
    const id = `${LINKED_PREFIX}${key}`;
    const unique = r.occupants.uniqueNick(id, nick, [nick, `${nick} (XMPP)`], () => `${nick} (XMPP ${key.slice(0, 4)})`);
    r.occupants.join(id, { nick: unique, role: 'participant', affiliation: 'none' }, undefined, nick);
  }

  /** The user is no longer in a room (shared bot: the other linked users there are told). */
  protected leftRoom(channelId: string): void {
    this.shared?.present(channelId, this.linked, null);
  }

  /** The occupant key of the user: the bot itself, or (shared bot) the user's own entry beside the Discord members. */
  protected get selfKey(): string {
    return this.shared ? SHARED_SELF : this.me;
  }

  /** Whether the user may use this channel: the bot sees it and, with the shared bot, the operator allows it. */
  protected usable(ch: GuildBasedChannel): boolean {
    if (!isRoomChannel(ch) || !ch.permissionsFor(this.me)?.has(PermissionFlagsBits.ViewChannel)) return false;
    return !this.shared || this.shared.allows(ch.guild.id, ch.isThread() ? (ch.parentId ?? ch.id) : ch.id);
  }

  /** Every guild text channel the bot can see (and the user may use), as rooms. */
  listRooms(): LegacyRoom[] {
    const out: LegacyRoom[] = [];
    for (const guild of this.client.guilds.cache.values()) {
      for (const ch of guild.channels.cache.values()) if (!ch.isThread() && this.usable(ch)) out.push(this.roomOf(ch));
    }
    return out;
  }

  private guildUsable(guild: Guild): boolean {
    return [...guild.channels.cache.values()].some((ch) => !ch.isThread() && this.usable(ch));
  }

  /**
   * The room directory for disco#items on the gateway: the guilds (nodes `guild/<id>`), and in a
   * guild its text channels and active threads (GET /guilds/{id}/threads/active), as rooms.
   */
  async roomDirectory({ node, max }: DirectoryRequest): Promise<DirectoryListing | null> {
    const items = await this.directoryItems(node);
    return items && { items: items.slice(0, max), complete: items.length <= max };
  }

  private async directoryItems(node: string | null): Promise<DirectoryItem[] | null> {
    this.ensureReady();
    if (node === null) {
      return [...this.client.guilds.cache.values()].filter((g) => this.guildUsable(g)).map((g) => ({ node: `guild/${g.id}`, name: sanitize(g.name) }));
    }
    const m = /^guild\/(\d{15,21})$/.exec(node);
    const guild = m ? this.client.guilds.cache.get(m[1]!) : undefined;
    if (!guild || !this.guildUsable(guild)) return null;
    const channels = [...guild.channels.cache.values()]
      .filter((ch) => !ch.isThread() && this.usable(ch))
      .sort((a, b) => ('position' in a && 'position' in b ? a.position - b.position : 0));
    const items: DirectoryItem[] = channels.map((ch) => {
      const room = this.roomOf(ch);
      return { room, name: room.name ?? ch.name };
    });
    let threads: { id: string; name: string; parent_id?: string | null }[] = [];
    try {
      threads = ((await this.client.rest.get(Routes.guildActiveThreads(guild.id))) as { threads: { id: string; name: string; parent_id?: string | null }[] }).threads;
    } catch (err) {
      this.log.debug('discord active threads not listed', { guild: guild.id, error: mapError(err, 'listing threads').message });
    }
    for (const t of threads) {
      const parent = t.parent_id ? guild.channels.cache.get(t.parent_id) : undefined;
      if (!parent || parent.isThread() || !this.usable(parent)) continue;
      items.push({ room: { id: `#${t.id}`, name: `${guild.name} / #${parent.name} / ${sanitize(t.name)}` }, name: `#${parent.name} / ${sanitize(t.name)}` });
    }
    return items;
  }

  private roomOf(ch: GuildBasedChannel): LegacyRoom {
    if (ch.isThread()) return { id: `#${ch.id}`, name: `${ch.guild.name} / #${ch.parent?.name ?? ch.parentId} / ${sanitize(ch.name)}` };
    return { id: `#${ch.id}`, name: `${ch.guild.name} / #${ch.name}` };
  }

  protected channel(id: string): GuildBasedChannel | null {
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
  protected updateOccupant(r: RoomState, userId: string): void {
    if (userId === SHARED_SELF || userId.startsWith(LINKED_PREFIX)) return; // XMPP users, not Discord members
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
  protected resync(r: RoomState, emit = true): void {
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

  protected resyncGuild(guildId: string): void {
    for (const r of [...this.rooms.values()]) if (r.guildId === guildId && r.joined) this.resync(r);
  }

  protected memberChanged(guildId: string, userId: string): void {
    for (const r of [...this.rooms.values()]) if (r.guildId === guildId && r.joined) this.updateOccupant(r, userId);
  }

  protected lostRoom(r: RoomState, reason: string): void {
    if (!this.rooms.has(r.channelId)) return;
    this.rooms.delete(r.channelId);
    this.leftRoom(r.channelId);
    const own = this.ownNick(r);
    if (r.joined) this.safeEmit('occupantLeft', r.room, own, reason, null);
  }

  protected onChannelUpdate(old: unknown, ch: unknown): void {
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

  protected ownNick(r: RoomState): string {
    return r.occupants.nickOf(this.selfKey) ?? (cleanNick(this.client.user?.displayName) || 'bot');
  }

  /** Called once a room is joined (the history layer fetches what was missed meanwhile). */
  protected afterJoin(_r: RoomState): void {}

  /** What was said since the user was last in the room, for roomJoined (the history layer). */
  protected async historyForJoin(_r: RoomState): Promise<RoomHistoryItem[]> {
    return [];
  }

  private emitJoined(r: RoomState, history: RoomHistoryItem[] = []): void {
    const ch = this.channel(r.channelId);
    const topic = ch && 'topic' in ch ? (ch.topic ?? null) : null;
    this.safeEmit('roomJoined', r.room, this.ownNick(r), r.occupants.list(), topic || null, ...(history.length ? [history] : []));
  }

  /**
   * Joins a guild channel (`#<channel id>`): resolves once roomJoined or roomJoinFailed was
   * emitted. The bot's display name in the guild is its nick (`nick` is not applied: a Discord
   * nick is per guild and visible in every channel; changeNick sets it). Joining a room we are in
   * re-emits roomJoined.
   */
  async joinRoom(room: LegacyRoom, nick: string, _password?: string): Promise<void> {
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
    if (!this.usable(ch)) {
      this.safeEmit('roomJoinFailed', room, 'the operator of the gateway has not opened this channel to XMPP users', 'forbidden');
      return;
    }
    if (ch.isThread() && ch.archived) {
      this.safeEmit('roomJoinFailed', room, 'the thread is archived', 'item-not-found');
      return;
    }
    const wanted = cleanNick(nick);
    if (this.shared && !webhookName(wanted)) {
      this.safeEmit('roomJoinFailed', room, 'Discord does not take this nick for messages (1 to 80 characters, without "discord" or "clyde")', 'not-acceptable');
      return;
    }
    // Two XMPP users under one name would be one author in Discord.
    if (this.shared && this.shared.peers(ch.id, this.linked).some((p) => p.nick === wanted)) {
      this.safeEmit('roomJoinFailed', room, 'another XMPP user has this nick in the channel', 'conflict');
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
    // The user first (the bot's plain display name, or with the shared bot the MUC nick), then everyone else.
    if (this.shared) {
      r.occupants.join(SHARED_SELF, { nick: wanted, role: 'participant', affiliation: 'none' }, undefined, wanted);
      for (const p of this.shared.peers(id, this.linked)) this.addPeer(r, p.key, p.nick);
    } else {
      this.updateOccupant(r, this.me);
    }
    this.resync(r, false);
    // The channel's webhook, ready for the first message (and known when the history shows the user's own).
    if (this.shared) await this.shared.webhook(ch.isThread() ? (ch.parentId ?? id) : id).catch(() => undefined);
    const history = await this.historyForJoin(r);
    if (this.state !== 'ready' || this.rooms.get(id) !== r) return;
    r.joined = true;
    r.occupants.announced = true;
    this.emitJoined(r, history);
    this.shared?.present(id, this.linked, wanted);
    this.afterJoin(r);
  }

  /** Stops relaying the channel (a bot cannot leave one channel of a guild). */
  async leaveRoom(room: LegacyRoom, reason?: string): Promise<void> {
    const id = channelIdOf(room.id);
    const r = id ? this.rooms.get(id) : undefined;
    if (!r) return;
    this.rooms.delete(r.channelId);
    this.leftRoom(r.channelId);
    this.safeEmit('occupantLeft', r.room, this.ownNick(r), reason ?? null, null);
  }

  /** Sets the channel topic (Manage Channels permission). */
  async setSubject(room: LegacyRoom, subject: string): Promise<void> {
    this.ensureReady();
    if (this.shared) throw new DiscordCommandError('with the shared bot, topics are set in Discord', 'forbidden');
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
    if (this.shared) return this.renameSelf(id, nick);
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

  /** With the shared bot the nick is the user's own (the name on their webhook messages): changed here only. */
  private renameSelf(channelId: string, nick: string): void {
    const r = this.rooms.get(channelId);
    const wanted = cleanNick(nick);
    if (!webhookName(wanted)) throw new DiscordCommandError('Discord does not take this nick for messages (1 to 80 characters, without "discord" or "clyde")', 'not-acceptable');
    if (!r) return;
    const holder = r.occupants.idOf(wanted);
    if (holder !== undefined && holder !== SHARED_SELF) throw new DiscordCommandError('someone in this channel has that name', 'not-allowed');
    r.occupants.update(SHARED_SELF, { nick: wanted }, wanted);
    this.shared!.present(channelId, this.linked, wanted);
  }

  /** Discord has no per-channel kick: a kick removes a member from the whole server. */
  async kick(_room: LegacyRoom, _nick: string, _reason?: string): Promise<void> {
    throw new DiscordCommandError('Discord has no per-channel kick (a kick removes the member from the whole server); do that in Discord', 'not-allowed');
  }

  protected roomChannelId(room: LegacyRoom): string {
    const id = channelIdOf(room.id);
    if (!id) throw new DiscordCommandError(`not a Discord channel: ${room.id}`, 'bad-request');
    return id;
  }
}

/** The occupant key of the user in shared-bot rooms (Discord ids are digits, so it cannot clash). */
export const SHARED_SELF = 'xmpp-user';
/** Occupant ids of the other linked users in shared-bot rooms. */
export const LINKED_PREFIX = 'xmpp:';

/** Whether Discord takes `name` as a webhook message's user name (resources/webhook: 1 to 80 characters, no "clyde" or "discord"). */
export function webhookName(name: string): boolean {
  return name.length >= 1 && name.length <= 80 && !/clyde|discord/i.test(name);
}

/** `#<snowflake>` → the channel id; anything else → null. */
export function channelIdOf(roomId: string): string | null {
  const m = /^#(\d{15,21})$/.exec(roomId);
  return m ? m[1]! : null;
}

export function isRoomChannel(ch: { isTextBased(): boolean; isDMBased(): boolean; type: ChannelType }): ch is GuildBasedChannel & { isTextBased(): true } {
  return ch.isTextBased() && !ch.isDMBased() && ch.type !== ChannelType.GuildVoice && ch.type !== ChannelType.GuildStageVoice;
}
