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
 *   set, `reactions`), replies (message_reference ↔ replyTo), typing, attachments (Discord's
 *   re-hosted on the XMPP server, files from XMPP posted as attachments: files.ts) and mentions as
 *   names (see text.ts). Messages sent through the transport keep the kit's ids in
 *   events (ids.ts). Discord echoes what the bot sends; those echoes are dropped (the kit echoes
 *   room messages itself), while messages the bot sent elsewhere appear from the own nick.
 *
 * The session is built in layers: connection.ts (client, login, end), rooms.ts (channels and
 * occupants), incoming.ts and outgoing.ts (messages), and this file (gateway events, contacts,
 * presence).
 *
 * Lifecycle: `start()` resolves once the gateway is READY and the guilds have arrived. A dropped
 * gateway connection is resumed by discord.js without losing events; if it is not back within
 * `reconnectGraceMs`, or Discord closes it for good (4004 token invalid, 4014 intents not
 * allowed, …), the session emits `disconnected(reason, final)` once and is dead. `final` is true
 * when logging in again cannot help (the token or the bot's settings must change).
 */
import { Events, type Presence } from 'discord.js';
import type { AdapterLogger, AvatarImage, LegacyContact, LegacySession } from '../kit/adapter.js';
import type { DiscordSessionOptions, SharedClient } from './connection.js';
import { isSnowflake } from './ids.js';
import { DiscordHistory } from './history.js';
import { sanitize } from './text.js';

export type { DiscordSessionOptions } from './connection.js';
export { channelIdOf } from './rooms.js';

/** Gateway close codes after which a new login cannot succeed without changes (topics/opcodes-and-status-codes). */
const FINAL_CLOSE_CODES: Record<number, string> = {
  4004: 'Discord no longer accepts the bot token',
  4010: 'Discord refused the shard',
  4011: 'the bot is in too many servers for one connection (sharding required)',
  4012: 'Discord refused the gateway version',
  4013: 'Discord refused the gateway intents',
  4014: 'Discord refused the privileged gateway intents; turn them on for the bot in the Developer Portal',
};

export class DiscordSession extends DiscordHistory implements LegacySession {
  private readonly watched = new Set<string>();

  constructor(source: string | SharedClient, opts: DiscordSessionOptions, log: AdapterLogger) {
    super(source, opts, log);
    this.bind();
  }

  private bind(): void {
    const c = this.client;
    const on = <K extends keyof import('discord.js').ClientEvents>(event: K, fn: (...args: import('discord.js').ClientEvents[K]) => void) => {
      this.listen(c, event, ((...args: import('discord.js').ClientEvents[K]) => {
        if (this.state !== 'ready') return;
        this.guard(String(event), () => fn(...args));
      }) as (...args: never[]) => void);
    };
    const raw = <K extends keyof import('discord.js').ClientEvents>(event: K, fn: (...args: import('discord.js').ClientEvents[K]) => void) =>
      this.listen(c, event, fn as (...args: never[]) => void);
    raw(Events.Error, (err) => this.log.warn('discord client error', { server: this.server, error: err.message }));
    raw(Events.ShardError, (err) => this.log.debug('discord gateway error', { server: this.server, error: err.message }));
    this.listen(c.rest, 'rateLimited', ((info: { route: string; timeToReset: number; global: boolean }) =>
      this.log.debug('discord rate limit', { route: info.route, waitMs: info.timeToReset, global: info.global })) as (...args: never[]) => void);

    raw(Events.ShardDisconnect, (ev) => {
      if (this.state !== 'ready') return;
      const reason = FINAL_CLOSE_CODES[ev.code] ?? `Discord closed the gateway connection (${ev.code})`;
      this.fail(reason, ev.code in FINAL_CLOSE_CODES);
    });
    raw(Events.ShardReconnecting, () => {
      if (this.state !== 'ready' || this.graceTimer) return;
      this.log.debug('discord gateway connection lost, discord.js reconnects', { server: this.server });
      this.graceTimer = setTimeout(() => {
        this.graceTimer = null;
        this.fail(`lost the connection to the Discord gateway for more than ${Math.round(this.opts.reconnectGraceMs / 1000)} s`, false);
      }, this.opts.reconnectGraceMs);
    });
    raw(Events.ShardResume, (_id, replayed) => {
      this.clearGrace();
      if (this.state === 'ready') this.log.debug('discord gateway resumed', { server: this.server, replayed });
    });
    raw(Events.ShardReady, () => {
      this.clearGrace();
      // A new gateway session (not a resume): events in between are lost, so bring rooms up to date
      // and fetch what was said meanwhile.
      if (this.state !== 'ready') return;
      for (const r of this.rooms.values()) if (r.joined) this.resync(r);
      void this.backfillAll();
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
    on(Events.ThreadUpdate, (_o, th) => {
      const r = this.rooms.get(th.id);
      if (r && th.archived) this.lostRoom(r, 'the thread was archived');
    });
    on(Events.ThreadDelete, (th) => {
      const r = this.rooms.get(th.id);
      if (r) this.lostRoom(r, 'the thread was deleted');
    });
  }

  protected forgetState(): void {
    for (const ch of this.rooms.keys()) this.leftRoom(ch);
    for (const t of this.typingTimers.values()) clearTimeout(t);
    this.typingTimers.clear();
    this.rooms.clear();
  }

  async addContact(contact: LegacyContact): Promise<void> {
    if (!isSnowflake(contact.id) || this.shared) return;
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

  /**
   * A user's avatar from Discord's CDN (`/avatars/{user}/{hash}.png?size=128`), fetched by the
   * transport so that clients never contact Discord (P19); null without one or when it fails.
   */
  async fetchAvatar(contact: LegacyContact, maxBytes: number): Promise<AvatarImage | null> {
    if (!isSnowflake(contact.id) || this.state !== 'ready') return null;
    let user = this.client.users.cache.get(contact.id);
    try {
      if (!user || (contact.avatar && user.avatar !== contact.avatar)) user = await this.client.users.fetch(contact.id, { force: !!user });
    } catch {
      return null;
    }
    const url = user.avatarURL({ extension: 'png', size: 128 });
    if (!url) return null;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(this.opts.restTimeoutMs), redirect: 'error' });
      const type = (res.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
      const declared = Number(res.headers.get('content-length') ?? NaN);
      if (!res.ok || !type.startsWith('image/') || declared > maxBytes) {
        await res.body?.cancel();
        return null;
      }
      const data = Buffer.from(await res.arrayBuffer());
      return data.length <= maxBytes ? { data, type } : null;
    } catch (err) {
      this.log.debug('discord avatar not fetched', { user: contact.id, error: err instanceof Error ? err.message : String(err) });
      return null;
    }
  }

  /** The bot's own status (shown to Discord users). */
  async setPresence(show: 'available' | 'away' | 'dnd' | 'xa', status: string | null): Promise<void> {
    this.ensureReady();
    if (this.shared) return; // the shared bot's status is the operator's, not one user's
    const s = show === 'available' ? 'online' : show === 'dnd' ? 'dnd' : 'idle';
    this.client.user?.setPresence({ status: s, activities: status ? [{ name: 'Custom Status', type: 4, state: sanitize(status).slice(0, 128) }] : [] });
  }
}
