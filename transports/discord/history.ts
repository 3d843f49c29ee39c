/**
 * What was said while the session was away. Discord does not replay a gateway session that had to
 * start afresh (a new login, a restart, a session Discord would not resume), so the session keeps
 * the newest message id it saw per channel (the kit stores it as the sync state, per registration,
 * deleted with it) and, after a fresh session or when a room is joined again, fetches the
 * messages after it (`GET /channels/{id}/messages?after=&limit=`, at most `historyLimit` per
 * channel; when more were missed, the newest ones). They arrive once, oldest first, with their
 * time (XEP-0203 delay): as MUC history in rooms, as messages in direct chats.
 */
import type { Message } from 'discord.js';
import type { RoomHistoryItem } from '../kit/adapter.js';
import { DiscordOutgoing } from './outgoing.js';
import type { RoomState } from './rooms.js';

/** How long a join waits for the attachments of its history to be copied. */
const HISTORY_MEDIA_WAIT_MS = 10_000;

export abstract class DiscordHistory extends DiscordOutgoing {
  /** Channels being fetched now (a second request for the same channel waits its turn). */
  private readonly fetching = new Map<string, Promise<void>>();

  override async start(): Promise<void> {
    await super.start();
    // Direct messages missed since the last session (rooms follow when they are joined).
    setImmediate(() => {
      if (this.state === 'ready' && !this.shared) void this.backfillDirect();
    });
  }

  private async backfillDirect(): Promise<void> {
    for (const [ch, v] of [...this.lastSeen]) if (v.dm) await this.backfill(ch);
  }

  /** A room joined again: what was missed comes with roomJoined, before the subject (XEP-0045). */
  protected override async historyForJoin(r: RoomState): Promise<RoomHistoryItem[]> {
    if (!this.lastSeen.has(r.channelId)) return [];
    const items: RoomHistoryItem[] = [];
    const copying: Promise<void>[] = [];
    for (const m of await this.fetchAfter(r.channelId)) {
      let h: ReturnType<typeof this.historyItem>;
      try {
        h = this.historyItem(m, r);
      } catch (err) {
        this.log.debug('discord history message skipped', { channel: r.channelId, error: err instanceof Error ? err.message : String(err) });
        continue;
      }
      if (!h) continue;
      items.push(h.item);
      if (h.copying) copying.push(h.copying);
    }
    // Attachments are copied side by side; the join waits for them a little only (an item still
    // being copied keeps Discord's link).
    if (copying.length) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(copying), new Promise<void>((resolve) => (timer = setTimeout(resolve, HISTORY_MEDIA_WAIT_MS)))]);
      clearTimeout(timer);
    }
    return items;
  }

  protected override afterJoin(r: RoomState): void {
    if (this.lastSeen.has(r.channelId)) {
      void this.backfill(r.channelId);
      return;
    }
    // The first time: no history, but from now on a position to come back to.
    const ch = this.channel(r.channelId);
    const last = ch && 'lastMessageId' in ch ? ch.lastMessageId : null;
    if (last) this.noteSeen(r.channelId, last, false);
  }

  /** After a fresh gateway session: every joined room and (own bot) every direct chat with a position. */
  protected async backfillAll(): Promise<void> {
    for (const r of [...this.rooms.values()]) if (r.joined) await this.backfill(r.channelId);
    if (!this.shared) await this.backfillDirect();
  }

  private backfill(channelId: string): Promise<void> {
    const before = this.fetching.get(channelId) ?? Promise.resolve();
    const next = before.then(() => this.fetchMissed(channelId));
    this.fetching.set(channelId, next);
    void next.finally(() => {
      if (this.fetching.get(channelId) === next) this.fetching.delete(channelId);
    });
    return next;
  }

  private async fetchMissed(channelId: string): Promise<void> {
    for (const m of await this.fetchAfter(channelId)) {
      if (this.state !== 'ready') return;
      this.guard('history', () => this.onMessage(m, true));
    }
  }

  /** The messages after the last one seen in a channel, oldest first (at most historyLimit, the newest); none on errors. */
  private async fetchAfter(channelId: string): Promise<Message[]> {
    const limit = this.opts.historyLimit;
    const since = this.lastSeen.get(channelId)?.id;
    if (!limit || !since || this.state !== 'ready') return [];
    try {
      const ch = this.client.channels.cache.get(channelId) ?? (await this.client.channels.fetch(channelId));
      if (!ch || !ch.isTextBased() || !('messages' in ch)) return [];
      let found = [...(await ch.messages.fetch({ after: since, limit, cache: false })).values()];
      if (found.length >= limit) {
        // More were missed than the cap: the newest ones are worth more than the oldest.
        found = [...(await ch.messages.fetch({ limit, cache: false })).values()].filter((m) => BigInt(m.id) > BigInt(since));
        this.log.info('discord history capped', { channel: channelId, limit });
      }
      return found.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1)) as Message[];
    } catch (err) {
      this.log.debug('discord history not fetched', { channel: channelId, error: err instanceof Error ? err.message : String(err) });
      return [];
    }
  }
}
