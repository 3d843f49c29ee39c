/**
 * Messages from the kit to Discord: direct messages and channel messages (split at 2000
 * characters, at most `maxMessageParts`), files as attachments (files.ts), edits, deletions,
 * reactions (the bot's whole set) and typing. The kit echoes room messages itself; Discord's
 * echoes are recognised by their nonce.
 */
import { randomBytes } from 'node:crypto';
import { DiscordAPIError, PermissionFlagsBits, Routes, type Message, type RawFile } from 'discord.js';
import type { LegacyContact, LegacyRoom, SendReport, TextMessage } from '../kit/adapter.js';
import { DiscordCommandError, mapError } from './errors.js';
import { fetchFile, fileUrlOf, linkNotice, refusedAttachment, type FileOutcome } from './files.js';
import { BoundedMap, isSnowflake } from './ids.js';
import { DiscordIncoming } from './incoming.js';
import { channelIdOf, isRoomChannel, type RoomState } from './rooms.js';
import { sanitize, splitMessage, toDiscordMarkup } from './text.js';

export abstract class DiscordOutgoing extends DiscordIncoming {
  private readonly lastTypingSent = new BoundedMap<string, number>(500);

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
  async sendMessage(to: LegacyContact, message: TextMessage): Promise<SendReport | void> {
    this.ensureReady();
    if (this.shared) throw new DiscordCommandError('the shared Discord bot carries no direct messages (register with your own bot token for those)', 'not-allowed');
    const channelId = await this.dmChannelId(to.id);
    return this.deliverOut(channelId, message, null);
  }

  /** Sends to a guild channel (also edits, deletions and reactions there). The kit echoes room messages itself. */
  async sendRoomMessage(room: LegacyRoom, message: TextMessage): Promise<SendReport | void> {
    this.ensureReady();
    const id = this.roomChannelId(room);
    if (this.shared) return this.deliverThroughWebhook(id, message, this.rooms.get(id) ?? null);
    return this.deliverOut(id, message, this.rooms.get(id) ?? null);
  }

  /**
   * The file of a file message, fetched for Discord, or why it goes as a link. An own bot without
   * Attach Files in a guild channel is told so before anything is fetched.
   */
  private async outgoingFile(url: string, channelId: string): Promise<FileOutcome> {
    const ch = this.shared ? null : this.channel(channelId);
    if (ch && this.me && ch.permissionsFor(this.me)?.has(PermissionFlagsBits.AttachFiles) === false) {
      return { notice: linkNotice(null, 'the bot may not attach files here (Attach Files permission)') };
    }
    return fetchFile({ media: this.media, maxBytes: this.opts.maxFileSize, turns: this.fileTurns }, url, (reason) =>
      this.log.info('file not fetched for Discord; sent as a link', { server: this.server, reason: reason.slice(0, 200) }),
    );
  }

  /** The user's avatar for webhook messages (an https URL on the XMPP server's upload service), or none; looked up at login. */
  avatarUrl: Promise<string | null> = Promise.resolve(null);

  /**
   * Shared bot: the user's messages go out through the channel's webhook under their nick (and
   * avatar), so Discord shows who wrote them; edits and deletions of their own messages too.
   */
  private async deliverThroughWebhook(channelId: string, message: TextMessage, r: RoomState | null): Promise<SendReport | void> {
    if (!r?.joined) throw new DiscordCommandError('join the room first', 'not-allowed');
    if (message.reactions) throw new DiscordCommandError('reactions are not carried by the shared Discord bot', 'not-allowed');
    const ch = this.channel(channelId);
    if (!ch) throw new DiscordCommandError('unknown channel', 'item-not-found');
    const parentId = ch.isThread() ? ch.parentId : channelId;
    if (!parentId) throw new DiscordCommandError('unknown channel', 'item-not-found');
    const query = new URLSearchParams({ wait: 'true' });
    if (ch.isThread()) query.set('thread_id', channelId);
    let hook: { id: string; token: string };
    try {
      hook = await this.shared!.webhook(parentId);
    } catch (err) {
      throw this.actionError(err, 'preparing the channel\'s webhook (the bot needs the Manage Webhooks permission)');
    }
    const own = (id: string) => this.ids.discordIds(id).filter((d) => this.ownSent.has(d));
    if (message.redacts) {
      const targets = own(message.redacts);
      if (!targets.length) throw new DiscordCommandError('only your own messages can be retracted', 'forbidden');
      for (const id of targets) {
        try {
          await this.client.rest.delete(Routes.webhookMessage(hook.id, hook.token, id), { query: ch.isThread() ? new URLSearchParams({ thread_id: channelId }) : undefined, auth: false });
        } catch (err) {
          if (!(err instanceof DiscordAPIError && err.code === 10008)) throw this.actionError(err, 'deleting');
        }
      }
      return;
    }
    const parts = splitMessage(this.outText(message, r));
    if (message.editOf) {
      const targets = own(message.editOf);
      if (!targets.length) throw new DiscordCommandError('only your own messages can be corrected', 'forbidden');
      if (parts.length !== 1) throw new DiscordCommandError('the corrected text must be one Discord message (1 to 2000 characters)', 'not-acceptable');
      try {
        await this.client.rest.patch(Routes.webhookMessage(hook.id, hook.token, targets[0]!), {
          body: { content: parts[0], allowed_mentions: { parse: ['users'] } },
          query: ch.isThread() ? new URLSearchParams({ thread_id: channelId }) : undefined,
          auth: false,
        });
      } catch (err) {
        throw this.actionError(err, 'editing');
      }
      return;
    }
    if (!parts.length) throw new DiscordCommandError('Discord does not take empty messages', 'not-acceptable');
    if (parts.length > this.opts.maxMessageParts) {
      throw new DiscordCommandError(`the message is too long for Discord (${parts.length} messages of 2000 characters, at most ${this.opts.maxMessageParts})`, 'not-acceptable');
    }
    const username = this.ownNick(r);
    const avatarUrl = await this.avatarUrl.catch(() => null);
    // Linked users may mention people, not ping whole roles or @everyone through the operator's bot.
    const bodyOf = (content: string | null): Record<string, unknown> => ({
      ...(content !== null ? { content } : {}),
      username,
      allowed_mentions: { parse: ['users'] },
      ...(avatarUrl ? { avatar_url: avatarUrl } : {}),
    });
    const post = async (body: Record<string, unknown>, files?: RawFile[]): Promise<string> => {
      const res = (await this.client.rest.post(Routes.webhook(hook.id, hook.token), { body, query, auth: false, ...(files ? { files } : {}) })) as { id: string };
      this.ownSent.set(res.id, true);
      return res.id;
    };
    // The file is fetched before the send counts as in flight: other users' messages need not wait for it.
    const url = fileUrlOf(message);
    const out = url ? await this.outgoingFile(url, channelId) : null;
    const sent: string[] = [];
    this.sendsInFlight++;
    try {
      let notice = out && 'notice' in out ? out.notice : undefined;
      if (out && 'file' in out) {
        try {
          sent.push(await post(bodyOf(null), [out.file]));
          return undefined;
        } catch (err) {
          notice = refusedAttachment(err, out.file) ?? undefined;
          if (!notice) throw err;
        }
      }
      for (const content of parts) sent.push(await post(bodyOf(content)));
      return notice ? { notice } : undefined;
    } catch (err) {
      throw this.actionError(err, sent.length ? `sending (${sent.length} of ${parts.length} parts went out)` : 'sending');
    } finally {
      this.sendDone();
      if (message.id && sent.length) this.ids.link(message.id, sent);
    }
  }

  /** Chat states: Discord knows only "typing" (for about ten seconds); it is sent at most every eight seconds. */
  async sendTyping(to: LegacyContact | LegacyRoom, state: 'composing' | 'paused' | 'active'): Promise<void> {
    // The shared bot typing would speak for every linked user at once.
    if (state !== 'composing' || this.state !== 'ready' || this.shared) return;
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

  private async deliverOut(channelId: string, message: TextMessage, r: RoomState | null): Promise<SendReport | void> {
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
    const bodyOf = (content: string | null, first: boolean): Record<string, unknown> => ({
      ...(content !== null ? { content } : {}),
      allowed_mentions: { parse: ['users', 'roles'], replied_user: true },
      ...(first && replyTo ? { message_reference: { message_id: replyTo, fail_if_not_exists: false } } : {}),
    });
    const sent: string[] = [];
    try {
      const url = fileUrlOf(message);
      let notice: string | undefined;
      if (url) {
        const out = await this.outgoingFile(url, channelId);
        if ('file' in out) {
          try {
            sent.push(await this.postOwn(channelId, bodyOf(null, true), [out.file]));
            return undefined;
          } catch (err) {
            notice = refusedAttachment(err, out.file) ?? undefined;
            if (!notice) throw err;
          }
        } else notice = out.notice;
      }
      for (const [i, content] of parts.entries()) sent.push(await this.postOwn(channelId, bodyOf(content, i === 0)));
      return notice ? { notice } : undefined;
    } catch (err) {
      throw this.actionError(err, sent.length ? `sending (${sent.length} of ${parts.length} parts went out)` : 'sending');
    } finally {
      if (message.id && sent.length) this.ids.link(message.id, sent);
    }
  }

  /** One message from the bot (with files: multipart, `files[n]` and `payload_json`); its gateway echo is known by its nonce. */
  private async postOwn(channelId: string, body: Record<string, unknown>, files?: RawFile[]): Promise<string> {
    const nonce = randomBytes(12).toString('base64url');
    this.pendingNonces.add(nonce);
    try {
      const res = (await this.client.rest.post(Routes.channelMessages(channelId), { body: { ...body, nonce, enforce_nonce: true }, ...(files ? { files } : {}) })) as { id: string };
      this.ownSent.set(res.id, true);
      return res.id;
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
}
