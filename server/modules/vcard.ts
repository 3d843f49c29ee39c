import { createHash } from 'node:crypto';
import type { GatehouseModule, ServerContext } from '../core/context.js';
import type { StanzaEvent } from '../core/hooks.js';
import { replyError, replyResult } from '../core/iq.js';
import type { ClientSession } from '../core/session.js';
import { x, type Element } from '../../shared/xml/element.js';
import type { Jid } from '../../shared/jid.js';
import type { Account } from '../../storage/types.js';
import { NS } from '../../shared/ns.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import { vcardConfigSection } from './vcard-config.js';

const KEY = 'vcard';

declare module '../core/hooks.js' {
  interface HookEvents {
    /** The owner stored a vCard whose PHOTO differs from the one before (null: no photo any more). */
    'vcard/photo': { account: Account; jid: Jid; photo: { type: string; data: string } | null };
  }
}

/** The PHOTO of a vCard (TYPE and base64 BINVAL, whitespace removed), or null. */
function photoOf(vcard: Element | null): { type: string; data: string } | null {
  const photo = vcard?.getChild('PHOTO');
  const data = photo?.getChildText('BINVAL')?.replace(/\s+/g, '');
  return photo && data ? { type: photo.getChildText('TYPE')?.trim() ?? '', data } : null;
}

/** The XEP-0153 hash of a PHOTO: SHA-1 of the image bytes in lower-case hex; null for no image. */
function photoHash(photo: { data: string } | null): string | null {
  const bytes = photo ? Buffer.from(photo.data, 'base64') : null;
  return bytes && bytes.length > 0 ? createHash('sha1').update(bytes).digest('hex') : null;
}

/** The client said "no avatar" itself: an x:update with an empty <photo/> (left alone, XEP-0398 4). */
function saysNoAvatar(presence: Element): boolean {
  return presence.getChildren('x', NS.vcardUpdate).some((u) => {
    const photo = u.getChild('photo');
    return photo !== undefined && photo.text().trim() === '';
  });
}

/**
 * XEP-0398 section 4 (and XEP-0153): the avatar hash in the account's available presence, so
 * clients that know only vCard avatars (and MUC occupants) see the avatar without the client having
 * to fetch its own vCard at every login. The hash of each online account is kept in memory while
 * it has a session; it is read from the stored vCard once, then follows the changes this module
 * makes or sees ('pep/avatar', a vCard set).
 */
class AvatarPresence {
  /** Online accounts (bare JID): the hash, or null for no avatar. */
  private readonly hashes = new Map<string, string | null>();
  /** Bumped on every change, so a read that raced with a change does not bring back the old hash. */
  private readonly changes = new Map<string, number>();
  /** Resources whose last broadcast had the client's own empty <photo/> (not the server's). */
  private readonly saidNoAvatar = new WeakSet<ClientSession>();

  constructor(private readonly ctx: ServerContext) {}

  private online(bare: string): boolean {
    return this.ctx.sessions.ofAccount(bare).length > 0;
  }

  private async hashOf(session: ClientSession): Promise<string | null> {
    const bare = session.jid.bare;
    const known = this.hashes.get(bare);
    if (known !== undefined) return known;
    const before = this.changes.get(bare) ?? 0;
    const account = session.account ?? (await this.ctx.storage.accounts.get(session.jid.local, session.jid.domain));
    const xml = account ? await this.ctx.storage.vcards.get(account.id, KEY) : null;
    const hash = photoHash(photoOf(xml !== null ? parseXmlText(xml) : null));
    if ((this.changes.get(bare) ?? 0) === before && this.online(bare)) this.hashes.set(bare, hash);
    return hash;
  }

  /**
   * An available presence from a local client, broadcast or directed (MUC joins too): its
   * x:update gets the hash, replacing one without a photo or with another hash; an empty <photo/>
   * the client put there (it says "no avatar") stays as it is.
   */
  async stamp(e: StanzaEvent): Promise<void> {
    if (e.origin.kind !== 'c2s' || e.stanza.attrs.type !== undefined) return;
    const { session } = e.origin;
    const presence = e.stanza;
    const broadcast = presence.attrs.to === undefined || (e.to.bare === session.jid.bare && !e.to.resource);
    const none = saysNoAvatar(presence);
    if (broadcast) {
      if (none) this.saidNoAvatar.add(session);
      else this.saidNoAvatar.delete(session);
    }
    if (none) return;
    const hash = await this.hashOf(session);
    for (const old of presence.getChildren('x', NS.vcardUpdate)) presence.remove(old);
    presence.append(x('x', { xmlns: NS.vcardUpdate }, x('photo', {}, hash ?? undefined)));
  }

  /**
   * The avatar changed: each available resource whose last broadcast carries another hash
   * broadcasts it again with the new one, as if its client had sent it (contacts and the
   * account's own resources, like any presence update). Directed presence is not sent again
   * (XEP-0398, Implementation Notes: clients may send it again themselves).
   */
  async changed(jid: Jid, photo: { data: string } | null): Promise<void> {
    const bare = jid.bare;
    const hash = photoHash(photo);
    this.changes.set(bare, (this.changes.get(bare) ?? 0) + 1);
    // Other cluster nodes stamp their resources' presence from their own copy of the hash.
    this.ctx.services.get('cluster')?.invalidate('avatar-hash', bare);
    if (!this.online(bare)) {
      this.hashes.delete(bare);
      this.changes.delete(bare);
      return;
    }
    this.hashes.set(bare, hash);
    for (const session of this.ctx.sessions.ofAccount(bare)) {
      const last = session.presence;
      if (!session.available || !last || this.saidNoAvatar.has(session)) continue;
      const shown = last.getChild('x', NS.vcardUpdate)?.getChildText('photo')?.trim() ?? null;
      if (shown === (hash ?? '')) continue;
      const again = last.clone();
      delete again.attrs.from;
      delete again.attrs.to;
      // The x:update there is the server's; stamp() puts the new one in.
      for (const old of again.getChildren('x', NS.vcardUpdate)) again.remove(old);
      await this.ctx.router.route(again, session.jid, { kind: 'c2s', session });
    }
  }

  /** The avatar changed on another cluster node: the hash is read again when next needed. */
  forget(bare: string): void {
    const had = this.hashes.delete(bare);
    // Only for accounts this node keeps: a read under way then does not bring the old hash back.
    if (had || this.changes.has(bare)) this.changes.set(bare, (this.changes.get(bare) ?? 0) + 1);
  }

  /** A session ended: the account's hash is forgotten with its last one. */
  closed(session: ClientSession): void {
    const bare = session.jid.bare;
    if (this.ctx.sessions.ofAccount(bare).some((s) => s !== session)) return;
    this.hashes.delete(bare);
    this.changes.delete(bare);
  }
}

/**
 * XEP-0054 vcard-temp. The vCard is public data the user chose to publish (P11): anyone may fetch
 * it, one JID at a time (P16: there is no search or listing). Only the owner may change it.
 *
 * P17: for another user's JID, "no vCard" and "no such account" give the same answer,
 * service-unavailable (the condition XEP-0054 recommends for both, and the router's answer to
 * any unhandled IQ for a nonexistent account), so vCard queries do not reveal which accounts exist.
 * The owner asking for their own missing vCard gets an empty <vCard/>, which clients expect.
 *
 * Size: the stanza limit (c2s.maxStanzaBytes) bounds a vCard, photo included.
 *
 * XEP-0398: when the owner publishes an XEP-0084 avatar (the PEP module's 'pep/avatar' event), the
 * vCard's PHOTO becomes that image, so clients that read only vCard avatars show the same one; a
 * disabled avatar removes the PHOTO. The rest of the vCard stays as the owner stored it. The other
 * way, a stored vCard whose PHOTO changed fires 'vcard/photo' before the reply, for PEP to publish.
 *
 * XEP-0398 section 4 / XEP-0153: every available presence a local client sends (broadcast and
 * directed) carries <x xmlns='vcard-temp:x:update'><photo>SHA-1 of the PHOTO</photo></x>, or an
 * empty <photo/> when the vCard has none (AvatarPresence). This is the only thing the server adds
 * to a client's presence: the hash of the user's own public vCard photo (P11), nothing about the
 * connection (P19); an operator who reads P19 strictly turns it off (`vcard.avatarHashInPresence`). When the photo changes, the account's available resources broadcast their
 * presence again with the new hash, so contacts' clients fetch the new vCard.
 */
export function createVcardModule(): GatehouseModule {
  return {
    name: 'vcard',
    config: vcardConfigSection,
    specs: [
      { id: 'XEP-0054', version: '1.2', status: 'complete', note: 'public per JID; owner-only updates; the PHOTO follows a published XEP-0084 avatar (XEP-0398)' },
      {
        id: 'XEP-0153',
        version: '1.1.1',
        status: 'complete',
        note: "the server's part: the PHOTO hash added to every available presence of local clients (XEP-0398), presence broadcast again when the photo changes; `vcard.avatarHashInPresence: false` turns it off",
      },
    ],
    load(ctx) {
      const { hooks, router, storage, disco, log } = ctx;
      disco.addServerFeature(NS.vcard);
      // Off (P19 read strictly), presence passes as the client sent it and nothing is broadcast again.
      const avatars = ctx.config.vcard.avatarHashInPresence ? new AvatarPresence(ctx) : null;
      if (avatars) {
        // 'filter' runs before the presence module's outbound handling ('intercept'), which broadcasts the stanza.
        for (const target of ['bare', 'full', 'remote'] as const) hooks.on(`presence/${target}`, (e) => avatars.stamp(e), 'filter');
        hooks.on('session/closed', ({ session }) => avatars.closed(session));
        ctx.services.get('cluster')?.onInvalidate('avatar-hash', (bare) => avatars.forget(bare));
      }

      hooks.on('pep/avatar', async ({ account, jid, photo }) => {
        const xml = await storage.vcards.get(account.id, KEY);
        const vcard = (xml !== null ? parseXmlText(xml) : null) ?? x('vCard', { xmlns: NS.vcard });
        for (const old of vcard.getChildren('PHOTO')) vcard.remove(old);
        if (photo) vcard.append(x('PHOTO', {}, x('TYPE', {}, photo.type), x('BINVAL', {}, photo.data)));
        if (vcard.elements.length === 0) await storage.vcards.delete(account.id, KEY);
        else await storage.vcards.set(account.id, KEY, vcard.toString());
        await avatars?.changed(jid, photo);
      });

      hooks.on(`iq-get/bare/${NS.vcard}:vCard`, async (e) => {
        const own = e.from.bare === e.to.bare;
        const account = await storage.accounts.get(e.to.local, e.to.domain);
        const xml = account ? await storage.vcards.get(account.id, KEY) : null;
        const vcard = xml !== null ? parseXmlText(xml) : null;
        if (xml !== null && !vcard) log.warn('unreadable stored vCard', { account: account!.id });
        if (vcard) return replyResult(router, e, vcard);
        if (own && account) return replyResult(router, e, x('vCard', { xmlns: NS.vcard }));
        return replyError(router, e, 'service-unavailable');
      });

      hooks.on(`iq-set/bare/${NS.vcard}:vCard`, async (e) => {
        if (e.from.bare !== e.to.bare) return replyError(router, e, 'forbidden');
        const account = await storage.accounts.get(e.to.local, e.to.domain);
        if (!account) return replyError(router, e, 'forbidden');
        const vcard = e.stanza.firstElement()!;
        const before = await storage.vcards.get(account.id, KEY);
        // An empty vCard clears it (several clients "delete" the vCard this way).
        if (vcard.elements.length === 0 && vcard.text().trim() === '') await storage.vcards.delete(account.id, KEY);
        else await storage.vcards.set(account.id, KEY, vcard.clone().toString());
        const [oldPhoto, newPhoto] = [photoOf(before !== null ? parseXmlText(before) : null), photoOf(vcard)];
        if (oldPhoto?.data !== newPhoto?.data || oldPhoto?.type !== newPhoto?.type) {
          await hooks.emit('vcard/photo', { account, jid: e.to.toBare(), photo: newPhoto });
          await avatars?.changed(e.to, newPhoto);
        }
        return replyResult(router, e);
      });
    },
  };
}
