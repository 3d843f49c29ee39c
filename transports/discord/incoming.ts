/**
 * Discord messages to the kit: new messages, edits, deletions, reactions (the sender's whole set)
 * and typing, in rooms and direct messages; attachments are re-hosted on the XMPP server's upload
 * service before their signed CDN URLs expire (links to the CDN without one), mentions become
 * names (see text.ts), message ids the kit's (ids.ts). The bot's own echoes are dropped.
 */
import { MessageReferenceType, MessageType, type Guild, type Message, type MessageReaction, type PartialMessage, type PartialMessageReaction, type PartialUser, type Typing, type User } from 'discord.js';
import type { Attachment } from 'discord.js';
import type { LegacyContact, LegacyRoom, RoomHistoryItem, TextMessage } from '../kit/adapter.js';
import { formatBytes } from '../../shared/format.js';
import { BoundedMap, IdMap, isSnowflake } from './ids.js';
import { DiscordRooms, LINKED_PREFIX, type RoomState } from './rooms.js';
import { cleanNick, fromDiscordMarkup, sanitize, type MentionNames } from './text.js';

/** Channels whose last message is remembered (the sync state stays small). */
const MAX_CHANNELS_REMEMBERED = 500;

const RELAYED_TYPES = new Set<number>([MessageType.Default, MessageType.Reply, MessageType.ChatInputCommand, MessageType.ContextMenuCommand]);

type Where = { room: RoomState } | { contact: LegacyContact };

/** An attachment URL without its query (Discord signs CDN URLs anew, the path stays). */
function cdnPath(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

export abstract class DiscordIncoming extends DiscordRooms {
  protected readonly ids = new IdMap();
  /** Nonces of messages on their way out; their gateway echoes are dropped. */
  protected readonly pendingNonces = new Set<string>();
  /** Messages this session sent. */
  protected readonly ownSent = new BoundedMap<string, true>(2000);
  /** Who wrote a message (for deletions of messages no longer cached). */
  private readonly authors = new BoundedMap<string, string>(5000);
  /** Messages of the channels this session follows that were handled (delivered or dropped): never twice. */
  private readonly handled = new BoundedMap<string, true>(5000);
  /** The nick a webhook message was shown under (webhooks share one author id): for its deletion. */
  private readonly webhookNicks = new BoundedMap<string, string>(2000);
  /** `${message}:${user}` → that user's reactions (keys as the kit sees them). */
  private readonly reactionSets = new BoundedMap<string, Set<string>>(5000);
  /** message → our own reactions (Discord emoji identifiers). */
  protected readonly ownReactions = new BoundedMap<string, Set<string>>(2000);
  protected readonly typingTimers = new Map<string, NodeJS.Timeout>();
  /** New messages wait here while an earlier one's attachments are being re-hosted (to keep their order). */
  private deliveries: Promise<void> = Promise.resolve();
  private deliveriesPending = 0;
  /** CDN path of an attachment (without its signature) → its URL on the upload service, for edits of its message. */
  private readonly rehosted = new BoundedMap<string, string>(2000);
  /** The newest message seen per channel (rooms joined and, with an own bot, direct messages): the sync state. */
  protected readonly lastSeen = new Map<string, { id: string; dm: boolean }>();
  /** Webhook messages this user is sending right now (shared bot): their echo may come before the answer. */
  protected sendsInFlight = 0;
  private sendsSettledWaiters: (() => void)[] = [];

  /** Remembers the newest message of a channel and tells the kit (which stores it a few seconds later). */
  protected noteSeen(channelId: string, id: string, dm: boolean): void {
    const known = this.lastSeen.get(channelId);
    if (known && BigInt(known.id) >= BigInt(id)) return;
    this.lastSeen.delete(channelId);
    this.lastSeen.set(channelId, { id, dm });
    // Bounded: the channels seen least recently go first.
    while (this.lastSeen.size > MAX_CHANNELS_REMEMBERED) this.lastSeen.delete(this.lastSeen.keys().next().value!);
    this.safeEmit('syncState', this.syncState());
  }

  /** The sync state: the last message seen per channel, as JSON. */
  syncState(): string {
    const rooms: Record<string, string> = {};
    const dms: Record<string, string> = {};
    for (const [ch, v] of this.lastSeen) (v.dm ? dms : rooms)[ch] = v.id;
    return JSON.stringify({ v: 1, rooms, dms });
  }

  /** Takes the previous session's sync state (ignored when it is not one of ours). */
  restoreState(state: string | undefined): void {
    if (!state) return;
    try {
      const parsed = JSON.parse(state) as { v?: unknown; rooms?: Record<string, unknown>; dms?: Record<string, unknown> };
      if (parsed.v !== 1) return;
      for (const [dm, map] of [[false, parsed.rooms], [true, parsed.dms]] as const) {
        for (const [ch, id] of Object.entries(map ?? {})) if (isSnowflake(ch) && typeof id === 'string' && isSnowflake(id)) this.lastSeen.set(ch, { id, dm });
      }
    } catch {
      this.log.debug('discord sync state not readable, starting afresh');
    }
  }

  protected async sendsSettled(): Promise<void> {
    if (this.sendsInFlight === 0) return;
    await new Promise<void>((resolve) => this.sendsSettledWaiters.push(resolve));
  }

  protected sendDone(): void {
    this.sendsInFlight--;
    if (this.sendsInFlight === 0) for (const w of this.sendsSettledWaiters.splice(0)) w();
  }

  private where(channelId: string, isDm: boolean, author: User | PartialUser | null): Where | null {
    // The shared bot's direct messages belong to no one user.
    if (isDm) return author && !this.shared ? { contact: this.contactOf(author) } : null;
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
    // Another linked user's message through the shared bot's webhook: from their occupant.
    if (msg.webhookId && this.shared?.isOwnWebhook(msg.webhookId)) {
      const peer = r.occupants.entries().find((e) => e.id.startsWith(LINKED_PREFIX) && (e.base ?? e.nick) === name);
      if (peer) return peer.nick;
    }
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
  private textOf(msg: Message | PartialMessage, r: RoomState | null, history = false): TextMessage | null {
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
    if (msg.createdTimestamp && (history || Date.now() - msg.createdTimestamp > 10_000)) out.timestamp = new Date(msg.createdTimestamp);
    return out;
  }

  private deliverIn(w: Where, nick: string | null, msg: TextMessage): void {
    if ('room' in w) this.safeEmit('roomMessage', w.room.room, nick ?? this.ownNick(w.room), msg);
    else this.safeEmit('message', w.contact, msg);
  }

  /** A new message (live, or fetched from the history after a gap: `history`, delivered once with its time). */
  protected onMessage(msg: Message, history = false): void {
    const isDm = !msg.guildId;
    const authorId = msg.author.id;
    // Handled already: live while the history was fetched, or from the history before a resumed gateway replays it.
    if (this.handled.has(msg.id)) return;
    this.authors.set(msg.id, authorId);
    if (isDm ? !this.shared : this.rooms.get(msg.channelId)?.joined) {
      this.handled.set(msg.id, true);
      this.noteSeen(msg.channelId, msg.id, isDm);
    }
    const viaOwnWebhook = !!this.shared && !!msg.webhookId && this.shared.isOwnWebhook(msg.webhookId);
    if (viaOwnWebhook && this.ownSent.has(msg.id)) return; // what this user posted through the webhook
    if (authorId === this.me) {
      const nonce = msg.nonce === null || msg.nonce === undefined ? null : String(msg.nonce);
      if (this.ownSent.has(msg.id) || (nonce && this.pendingNonces.has(nonce))) return; // our own echo
      if (isDm) return; // sent elsewhere to someone: XMPP has no place for it here
    }
    if (!RELAYED_TYPES.has(msg.type)) return;
    const w = this.where(msg.channelId, isDm, msg.author);
    if (!w) return;
    this.stopTyping(msg.channelId, authorId);
    const text = this.textOf(msg, 'room' in w ? w.room : null, history);
    if (!text) return;
    const nick = 'room' in w ? (authorId === this.me && !this.shared ? this.ownNick(w.room) : this.authorNick(w.room, msg)) : null;
    if (nick && msg.webhookId) this.webhookNicks.set(msg.id, nick);
    const attachments = [...(msg.attachments?.values() ?? [])];
    // A webhook message while this user's own sends are unanswered may be one of them: wait for the answers.
    const mayBeOwn = viaOwnWebhook && this.sendsInFlight > 0;
    if (this.deliveriesPending === 0 && !mayBeOwn && (!this.media || attachments.length === 0)) return this.deliverIn(w, nick, text);
    this.deliveriesPending++;
    this.deliveries = this.deliveries
      .then(async () => {
        if (mayBeOwn) {
          await this.sendsSettled();
          if (this.ownSent.has(msg.id)) return;
        }
        if (this.media && attachments.length) await this.rehost(text, attachments);
        if (this.state !== 'closed') this.deliverIn(w, nick, text);
      })
      .catch((err: unknown) => this.log.warn('discord message not delivered', { reason: err instanceof Error ? err.message : String(err) }))
      .finally(() => this.deliveriesPending--);
  }

  /**
   * A message of the room's history for roomJoined (the room is not announced yet), once;
   * `copying` re-hosts its attachments (the item's text and links change when it is done).
   */
  protected historyItem(msg: Message, r: RoomState): { item: RoomHistoryItem; copying: Promise<void> | null } | null {
    if (this.handled.has(msg.id)) return null;
    this.handled.set(msg.id, true);
    this.authors.set(msg.id, msg.author.id);
    this.noteSeen(msg.channelId, msg.id, false);
    if (!RELAYED_TYPES.has(msg.type)) return null;
    const text = this.textOf(msg, r, true);
    if (!text) return null;
    // The user's own earlier messages: the bot's (own bot), or the webhook's under the user's nick (shared bot).
    const own = this.shared ? !!msg.webhookId && this.shared.isOwnWebhook(msg.webhookId) && cleanNick(msg.author.username) === this.ownNick(r) : msg.author.id === this.me;
    const nick = own ? this.ownNick(r) : this.authorNick(r, msg);
    if (nick && msg.webhookId) this.webhookNicks.set(msg.id, nick);
    const attachments = [...(msg.attachments?.values() ?? [])];
    const copying = this.media && attachments.length ? this.rehost(text, attachments).catch(() => undefined) : null;
    return { item: { nick, message: text }, copying };
  }

  /** Puts each attachment on the upload service and its URL in place of the CDN's (in the text and as attachment). */
  private async rehost(msg: TextMessage, attachments: Attachment[]): Promise<void> {
    const media = this.media!;
    for (const a of attachments) {
      const out = await media.rehost(
        { url: a.url },
        { name: a.name, ...(a.contentType ? { type: a.contentType } : {}), ...(Number.isSafeInteger(a.size) ? { size: a.size } : {}) },
      );
      if (out.url !== null) {
        this.rehosted.set(cdnPath(a.url), out.url);
        msg.text = msg.text.split(a.url).join(out.url);
        msg.attachments = (msg.attachments ?? []).map((u) => (u === a.url ? out.url! : u));
      } else if (out.reason === 'too-large') {
        msg.text = `${msg.text}\n[${sanitize(a.name)}: too large for the gateway to pass on (at most ${formatBytes(media.maxSize)}); the link expires]`;
      } else if (out.reason === 'failed') {
        // Only the kind of failure: error texts might quote the signed URL.
        const status = /HTTP (\d{3})/.exec(out.text)?.[1];
        const why = status ? `Discord answered HTTP ${status}` : out.text === 'timed out' ? 'it took too long' : 'a network error';
        msg.text = `${msg.text}\n[${sanitize(a.name)}: the gateway could not copy it from Discord (${why}); the link may not work]`;
      }
    }
  }

  protected onUpdate(old: Message | PartialMessage, msg: Message | PartialMessage): void {
    if (!msg.editedTimestamp) return; // an embed or flag update, not an edit
    if (!old.partial && old.content === msg.content) return;
    const authorId = msg.author?.id ?? this.authors.get(msg.id);
    if (!authorId) return;
    if (authorId === this.me && (this.consume(`u:${msg.id}`) || !msg.guildId)) return;
    if (this.shared && msg.webhookId && this.ownSent.has(msg.id)) return; // this user's own edit
    const w = this.where(msg.channelId, !msg.guildId, msg.author ?? null);
    if (!w) return;
    const text = this.textOf(msg, 'room' in w ? w.room : null);
    if (!text) return;
    // The attachments keep the URLs they were re-hosted at (an edit only changes the text).
    for (const a of msg.attachments?.values() ?? []) {
      const url = this.rehosted.get(cdnPath(a.url));
      if (!url) continue;
      text.text = text.text.split(a.url).join(url);
      text.attachments = (text.attachments ?? []).map((u) => (u === a.url ? url : u));
    }
    const edit: TextMessage = { ...text, editOf: this.ids.kitId(msg.id) };
    delete edit.id;
    delete edit.timestamp;
    if ('room' in w) this.deliverIn(w, authorId === this.me ? this.ownNick(w.room) : this.authorNick(w.room, msg), edit);
    else this.deliverIn(w, null, edit);
  }

  protected onDelete(id: string, channelId: string, knownAuthor: string | null): void {
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
    const nick = authorId === this.me ? this.ownNick(r) : (r.occupants.nickOf(authorId) ?? this.webhookNicks.get(id));
    if (!nick) return;
    this.safeEmit('roomMessage', r.room, nick, msg);
  }

  protected onReaction(reaction: MessageReaction | PartialMessageReaction, user: User | PartialUser, added: boolean): void {
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

  protected onTyping(t: Typing): void {
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
}
