/**
 * Pictures of the network's people (contacts and occupants) for XMPP clients: vCard-temp
 * (XEP-0054) on the gateway's JIDs with the image itself (BINVAL), and the XEP-0153 hash in their
 * presence. Images are fetched by the transport (never by the client: its address does not reach
 * the network's CDN, P19), only when a client asks or a presence needs the hash, and kept in
 * memory only, within limits: `avatars.maxEntries` images, `avatars.maxBytes` in all, each at
 * most `avatars.maxImageSize`, none older than `avatars.maxAge`. Nothing is stored.
 */
import { createHash } from 'node:crypto';
import { x, type Element } from '../../shared/xml/element.js';
import type { AvatarImage, LegacyContact, LegacySession } from './adapter.js';

export const NS_VCARD = 'vcard-temp';
export const NS_VCARD_UPDATE = 'vcard-temp:x:update';

export interface AvatarSettings {
  maxEntries: number;
  maxBytes: number;
  maxImageSize: number;
  /** Milliseconds an image is kept before it is fetched again. */
  maxAge: number;
}

interface Entry {
  /** LegacyContact.avatar when it was fetched (undefined: the request did not name it). */
  avatarId: string | undefined;
  image: AvatarImage | null;
  sha1: string | null;
  size: number;
  at: number;
}

export class AvatarCache {
  private readonly entries = new Map<string, Entry>();
  private readonly pending = new Map<string, Promise<Entry>>();
  private bytes = 0;

  constructor(
    private readonly settings: AvatarSettings,
    private readonly now: () => number = Date.now,
  ) {}

  get maxImageSize(): number {
    return this.settings.maxImageSize;
  }

  private static keyOf(contact: LegacyContact): string {
    return `${contact.server ?? ''}\u0000${contact.id}`;
  }

  /** The XEP-0153 hash of a picture already fetched (undefined: not known yet; null: none). */
  hashOf(contact: LegacyContact): string | null | undefined {
    return this.fresh(contact)?.sha1;
  }

  /** The picture, fetched through the session if it is not in the cache. */
  async get(session: LegacySession, contact: LegacyContact): Promise<{ image: AvatarImage; sha1: string } | null> {
    const key = AvatarCache.keyOf(contact);
    let e = this.fresh(contact);
    if (!e) {
      let p = this.pending.get(key);
      if (!p) {
        p = this.load(session, contact, key).finally(() => this.pending.delete(key));
        this.pending.set(key, p);
      }
      e = await p;
    }
    return e.image && e.sha1 ? { image: e.image, sha1: e.sha1 } : null;
  }

  /** The entry for the contact's current picture (an entry of another picture, or too old, is dropped). */
  private fresh(contact: LegacyContact): Entry | undefined {
    const key = AvatarCache.keyOf(contact);
    const e = this.entries.get(key);
    if (!e) return undefined;
    const changed = contact.avatar !== undefined && e.avatarId !== undefined && contact.avatar !== e.avatarId;
    if (changed || this.now() - e.at > this.settings.maxAge) {
      this.remove(key);
      return undefined;
    }
    // Most recently used last.
    this.entries.delete(key);
    this.entries.set(key, e);
    return e;
  }

  private async load(session: LegacySession, contact: LegacyContact, key: string): Promise<Entry> {
    let image: AvatarImage | null = null;
    try {
      image = (await session.fetchAvatar?.(contact, this.settings.maxImageSize)) ?? null;
    } catch {
      image = null;
    }
    if (image && (image.data.length > this.settings.maxImageSize || !/^image\/[a-z0-9.+-]+$/.test(image.type))) image = null;
    const entry: Entry = { avatarId: contact.avatar, image, sha1: image ? createHash('sha1').update(image.data).digest('hex') : null, size: image?.data.length ?? 0, at: this.now() };
    this.remove(key);
    this.entries.set(key, entry);
    this.bytes += entry.size;
    while (this.entries.size > this.settings.maxEntries || this.bytes > this.settings.maxBytes) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.remove(oldest);
    }
    return entry;
  }

  private remove(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.bytes -= e.size;
    this.entries.delete(key);
  }
}

/** A vCard-temp with the name and, when there is one, the picture. */
export function vcardElement(name: string | undefined, avatar: { image: AvatarImage } | null): Element {
  return x(
    'vCard',
    { xmlns: NS_VCARD },
    name ? x('FN', {}, name) : null,
    name ? x('NICKNAME', {}, name) : null,
    avatar ? x('PHOTO', {}, x('TYPE', {}, avatar.image.type), x('BINVAL', {}, avatar.image.data.toString('base64'))) : null,
  );
}

/** XEP-0153 in a presence: the hash, or (not fetched yet) an empty element that promises nothing. */
export function avatarUpdateElement(hash: string | null | undefined): Element {
  return x('x', { xmlns: NS_VCARD_UPDATE }, hash === undefined ? null : x('photo', {}, hash ?? ''));
}
