import type { GatehouseModule } from '../core/context.js';
import { replyError, replyResult } from '../core/iq.js';
import { x, type Element } from '../../shared/xml/element.js';
import type { Jid } from '../../shared/jid.js';
import type { Account } from '../../storage/types.js';
import { NS } from '../../shared/ns.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';

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
 */
export function createVcardModule(): GatehouseModule {
  return {
    name: 'vcard',
    specs: [{ id: 'XEP-0054', version: '1.2', status: 'complete', note: 'public per JID; owner-only updates; the PHOTO follows a published XEP-0084 avatar (XEP-0398)' }],
    load({ hooks, router, storage, disco, log }) {
      disco.addServerFeature(NS.vcard);

      hooks.on('pep/avatar', async ({ account, photo }) => {
        const xml = await storage.vcards.get(account.id, KEY);
        const vcard = (xml !== null ? parseXmlText(xml) : null) ?? x('vCard', { xmlns: NS.vcard });
        for (const old of vcard.getChildren('PHOTO')) vcard.remove(old);
        if (photo) vcard.append(x('PHOTO', {}, x('TYPE', {}, photo.type), x('BINVAL', {}, photo.data)));
        if (vcard.elements.length === 0) await storage.vcards.delete(account.id, KEY);
        else await storage.vcards.set(account.id, KEY, vcard.toString());
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
        if (oldPhoto?.data !== newPhoto?.data || oldPhoto?.type !== newPhoto?.type) await hooks.emit('vcard/photo', { account, jid: e.to.toBare(), photo: newPhoto });
        return replyResult(router, e);
      });
    },
  };
}
