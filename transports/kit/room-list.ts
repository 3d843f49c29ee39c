/**
 * The network's room directory for disco#items on a server JID (Biboumi lists an IRC server's
 * channels there): LegacySession.roomDirectory through the user's session for that server, cached per
 * user and server for `ttlMs` (a LIST on a large network is thousands of lines) and capped at
 * `maxRooms`, with XEP-0059 Result Set Management paging over the cached list (`max`, `after`,
 * `before`, `index`). The cache holds room names only, in memory, and is dropped after the TTL.
 */
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';
import type { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import type { ListedRoom } from './adapter.js';
import type { Kit } from './kit-types.js';
import { SessionUnavailableError } from './user-session.js';
import { errorText } from './context.js';
import { iqError, iqResult } from './stanzas.js';

export const NS_RSM = 'http://jabber.org/protocol/rsm';

export interface RoomListSettings {
  ttlMs: number;
  maxRooms: number;
  /** Items in one answer when the client asks for no page size (or a larger one). */
  pageLimit: number;
}

export const DEFAULT_ROOM_LIST: RoomListSettings = { ttlMs: 5 * 60_000, maxRooms: 10_000, pageLimit: 1_000 };

interface Cached {
  at: number;
  items: { jid: string; name: string }[];
  complete: boolean;
}

export class RoomDirectory {
  private readonly cache = new Map<string, Cached>();
  private readonly pending = new Map<string, Promise<Cached>>();

  constructor(
    private readonly kit: Kit,
    private readonly settings: RoomListSettings = DEFAULT_ROOM_LIST,
  ) {}

  /** disco#items (no node) at a server JID. */
  async items(iq: Element, from: Jid, server: string): Promise<Element> {
    const key = `${from.bare}\u0000${server}`;
    let list: Cached;
    try {
      list = await this.load(key, from.bare, server);
    } catch (err) {
      if (err instanceof SessionUnavailableError) {
        const text =
          err.failure.condition === 'registration-required'
            ? `join a channel on ${server} first, or set your nickname in the server's settings, to list its channels`
            : err.failure.text;
        return iqError(iq, err.failure.condition === 'registration-required' ? 'registration-required' : 'remote-server-timeout', text);
      }
      return iqError(iq, 'remote-server-timeout', errorText(err));
    }
    return iqResult(iq, x('query', { xmlns: NS.discoItems }, this.page(iq, list)));
  }

  private async load(key: string, user: string, server: string): Promise<Cached> {
    const now = this.kit.clock.now().getTime();
    for (const [k, c] of this.cache) if (now - c.at > this.settings.ttlMs) this.cache.delete(k);
    const hit = this.cache.get(key);
    if (hit) return hit;
    const running = this.pending.get(key);
    if (running) return running;
    const job = (async () => {
      const s = await this.kit.sessions.ensure(user, server);
      const legacy = s.legacy!;
      if (!legacy.roomDirectory) return { at: now, items: [], complete: true };
      const { rooms, complete } = await legacy.roomDirectory(this.settings.maxRooms);
      const entry: Cached = { at: this.kit.clock.now().getTime(), items: this.toItems(rooms, server), complete };
      this.cache.set(key, entry);
      return entry;
    })();
    this.pending.set(key, job);
    try {
      return await job;
    } finally {
      this.pending.delete(key);
    }
  }

  private toItems(rooms: ListedRoom[], server: string): { jid: string; name: string }[] {
    const out: { jid: string; name: string }[] = [];
    for (const r of rooms.slice(0, this.settings.maxRooms)) {
      const jid = this.kit.addresses.roomJid(r.room, server);
      if (!jid) continue;
      const parts = [r.room.name ?? r.room.id];
      if (r.members !== undefined) parts.push(`(${r.members})`);
      if (r.topic) parts.push(`– ${r.topic.slice(0, 200)}`);
      out.push({ jid, name: parts.join(' ') });
    }
    return out;
  }

  /** The requested page (XEP-0059), or the first `pageLimit` items with a <set/> when the list is longer. */
  private page(iq: Element, list: Cached): Element[] {
    const set = iq.elements[0]!.getChild('set', NS_RSM);
    const all = list.items;
    let start = 0;
    let max = this.settings.pageLimit;
    if (set) {
      const m = Number.parseInt(set.getChildText('max') ?? '', 10);
      if (Number.isFinite(m) && m >= 0) max = Math.min(m, this.settings.pageLimit);
      const after = set.getChild('after');
      const before = set.getChild('before');
      const index = Number.parseInt(set.getChildText('index') ?? '', 10);
      if (after) {
        const i = all.findIndex((it) => it.jid === after.text());
        start = i < 0 ? all.length : i + 1;
      } else if (before) {
        const b = before.text();
        const end = b ? all.findIndex((it) => it.jid === b) : all.length;
        start = Math.max(0, (end < 0 ? all.length : end) - max);
        return this.withSet(all, start, Math.min(max, (end < 0 ? all.length : end) - start));
      } else if (Number.isFinite(index) && index >= 0) start = index;
    } else if (all.length <= max) {
      return all.map((it) => x('item', { jid: it.jid, name: it.name }));
    }
    return this.withSet(all, start, max);
  }

  private withSet(all: { jid: string; name: string }[], start: number, count: number): Element[] {
    const slice = all.slice(start, start + Math.max(0, count));
    const set = x('set', { xmlns: NS_RSM });
    if (slice.length) {
      set.append(x('first', { index: String(start) }, slice[0]!.jid));
      set.append(x('last', {}, slice[slice.length - 1]!.jid));
    }
    set.append(x('count', {}, String(all.length)));
    return [...slice.map((it) => x('item', { jid: it.jid, name: it.name })), set];
  }
}
