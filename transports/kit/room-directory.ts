/**
 * The network's room directory in disco#items (XEP-0030), one mechanism for every adapter
 * (LegacySession.roomDirectory): shown on the JID of the session it comes from, a server JID on
 * multi-server networks (an IRC server's channels, as Biboumi lists them) and the gateway JID
 * otherwise (Discord's guilds, each a node of channels and threads). The gateway JID's top level
 * also lists the rooms the user is in, first.
 *
 * Each listing is cached per user, server and node for `ttlMs` (a LIST on a large network is
 * thousands of lines), capped at `maxRooms`, and dropped earlier when the session says its
 * directory changed (the `directoryChanged` event); XEP-0059 pages are cut from the cached list
 * (rsm.ts), so a client paging through it sees one consistent list. The cache holds room names,
 * in memory only.
 *
 * Sessions: listing a server JID's top level logs in to that server as a join would (Biboumi's
 * way; registration-required without a registration or a nick); everything else uses the
 * session the user has, since clients browse the gateway JID in passing. A node the adapter does
 * not know, or without a session to ask, is item-not-found.
 */
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';
import type { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import type { DirectoryItem } from './adapter.js';
import type { Kit } from './kit-types.js';
import { SessionUnavailableError, type UserSession } from './user-session.js';
import { errorText } from './context.js';
import { iqError, iqResult } from './stanzas.js';
import { NS_RSM, rsmPage } from './rsm.js';

export interface RoomDirectorySettings {
  /** How long a listing is served from the cache. */
  ttlMs: number;
  /** Items kept of one listing. */
  maxRooms: number;
  /** Items in one answer when the client asks for no page size (or a larger one). */
  pageLimit: number;
  /** Listings kept at once (all users); the oldest go first. */
  maxListings: number;
}

export const DEFAULT_ROOM_DIRECTORY: RoomDirectorySettings = { ttlMs: 5 * 60_000, maxRooms: 10_000, pageLimit: 1_000, maxListings: 1_000 };

/** One disco item: a room's JID, or the gateway JID with a node. */
interface Entry {
  jid: string;
  node?: string;
  name: string;
}

interface Listing {
  at: number;
  entries: Entry[];
  complete: boolean;
}

const TOPIC_CHARS = 200;

export class RoomDirectory {
  private readonly cache = new Map<string, Listing>();
  private readonly pending = new Map<string, Promise<Listing | null>>();
  /** Bumped when listings are dropped: a listing fetched across a drop is not cached. */
  private epoch = 0;

  constructor(
    private readonly kit: Kit,
    private readonly settings: RoomDirectorySettings = DEFAULT_ROOM_DIRECTORY,
  ) {}

  /** disco#items at the gateway JID (`server` undefined) or a server JID, with or without a node. */
  async items(iq: Element, from: Jid, server: string | undefined): Promise<Element> {
    const query = iq.elements[0]!;
    const node = query.attrs.node || null;
    const topOfGateway = server === undefined && node === null;
    let listing: Listing | null = null;
    try {
      listing = await this.listing(from.bare, server, node);
    } catch (err) {
      // The gateway's own list (the rooms the user is in) answers even when the network does not.
      if (!topOfGateway) return this.failure(iq, err, server);
      this.kit.log.debug('room directory not listed', { network: this.kit.adapter.network, error: errorText(err) });
    }
    if (node !== null && !listing) return iqError(iq, 'item-not-found', 'no such node in the room directory');
    let entries = listing?.entries ?? [];
    if (topOfGateway) {
      const joined = this.kit.rooms.roomsOf(from.bare);
      const seen = new Set(joined.map((r) => r.jid));
      entries = [...joined, ...entries.filter((e) => e.node !== undefined || !seen.has(e.jid))];
    }
    const page = rsmPage(entries, uidOf, query.getChild('set', NS_RSM), this.settings.pageLimit);
    if ('error' in page) return iqError(iq, 'item-not-found', 'that item is no longer in the list; ask for the first page again');
    const items = page.items.map((e) => x('item', { jid: e.jid, ...(e.node !== undefined ? { node: e.node } : {}), name: e.name }));
    return iqResult(iq, x('query', { xmlns: NS.discoItems, ...(node !== null ? { node } : {}) }, items, page.set));
  }

  /** disco#info of a directory node (XEP-0030 hierarchy: a branch of rooms), or null when it is none. */
  async nodeInfo(from: Jid, server: string | undefined, node: string): Promise<Element | null> {
    let listing: Listing | null;
    try {
      listing = await this.listing(from.bare, server, node);
    } catch {
      return null;
    }
    if (!listing) return null;
    return x('query', { xmlns: NS.discoInfo, node }, x('identity', { category: 'hierarchy', type: 'branch' }), x('feature', { var: NS.discoItems }), x('feature', { var: NS_RSM }));
  }

  /** The session's directory changed: its cached listings go. */
  forget(user: string, server: string | undefined): void {
    this.epoch++;
    const prefix = `${user}\u0000${server ?? ''}\u0000`;
    for (const key of [...this.cache.keys()]) if (key.startsWith(prefix)) this.cache.delete(key);
  }

  private failure(iq: Element, err: unknown, server: string | undefined): Element {
    if (err instanceof SessionUnavailableError) {
      if (err.failure.condition !== 'registration-required') return iqError(iq, 'remote-server-timeout', err.failure.text);
      const text = server !== undefined ? `join a channel on ${server} first, or set your nickname in the server's settings, to list its channels` : err.failure.text;
      return iqError(iq, 'registration-required', text);
    }
    return iqError(iq, 'remote-server-timeout', errorText(err));
  }

  /** The listing from the cache or the session; null when there is no session to ask or no such node. */
  private async listing(user: string, server: string | undefined, node: string | null): Promise<Listing | null> {
    // Multi-server networks keep their directories on the server JIDs; the gateway JID lists joined rooms only.
    if (server === undefined && this.kit.addresses.multiServer) return null;
    const key = `${user}\u0000${server ?? ''}\u0000${node ?? ''}`;
    const now = this.kit.clock.now().getTime();
    for (const [k, c] of this.cache) if (now - c.at >= this.settings.ttlMs) this.cache.delete(k);
    const hit = this.cache.get(key);
    if (hit) return hit;
    const running = this.pending.get(key);
    if (running) return running;
    const job = this.fetch(user, server, node, key);
    this.pending.set(key, job);
    try {
      return await job;
    } finally {
      this.pending.delete(key);
    }
  }

  private async fetch(user: string, server: string | undefined, node: string | null, key: string): Promise<Listing | null> {
    const epoch = this.epoch;
    const s = await this.session(user, server, node);
    const legacy = s?.legacy;
    if (!legacy?.roomDirectory) return null;
    const { maxRooms } = this.settings;
    const got = await legacy.roomDirectory({ node, max: maxRooms });
    if (!got) return null;
    const listing: Listing = {
      at: this.kit.clock.now().getTime(),
      entries: this.entries(got.items.slice(0, maxRooms), server),
      complete: got.complete && got.items.length <= maxRooms,
    };
    if (epoch === this.epoch) {
      this.cache.set(key, listing);
      while (this.cache.size > this.settings.maxListings) this.cache.delete(this.cache.keys().next().value!);
    }
    return listing;
  }

  /** A server JID's top level logs in (as joining would); anything else asks the session the user has. */
  private async session(user: string, server: string | undefined, node: string | null): Promise<UserSession | null> {
    if (server !== undefined && node === null) return this.kit.sessions.ensure(user, server);
    const s = this.kit.sessions.get(user, server);
    return s?.state === 'online' ? s : null;
  }

  private entries(items: DirectoryItem[], server: string | undefined): Entry[] {
    const out: Entry[] = [];
    for (const item of items) {
      const name = nameOf(item);
      if (item.room) {
        const jid = this.kit.addresses.roomJid(item.room, server);
        if (jid) out.push({ jid, name });
      } else if (item.node) {
        const jid = server !== undefined ? this.kit.addresses.serverJid(server) : this.kit.domain;
        if (jid) out.push({ jid, node: item.node, name });
      }
    }
    return out;
  }
}

/** `#chan (12) – topic`: the item's name, or its room's, with the members and topic the network gave. */
function nameOf(item: DirectoryItem): string {
  const parts = [item.name ?? item.room?.name ?? item.room?.id ?? item.node ?? ''];
  if (item.members !== undefined) parts.push(`(${item.members})`);
  if (item.topic) parts.push(`– ${item.topic.slice(0, TOPIC_CHARS)}`);
  return parts.join(' ');
}

/** An item's XEP-0059 id: its JID, and its node after a space (no JID has one). */
function uidOf(e: Entry): string {
  return e.node === undefined ? e.jid : `${e.jid} ${e.node}`;
}
