import type { GatehouseModule } from '../core/context.js';
import type { StanzaEvent } from '../core/hooks.js';
import { replyError, replyResult } from '../core/iq.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { checkQuota, KeyedSerial, xmlBytes } from '../core/quota.js';
import { privateStorageConfigSection } from './private-storage-config.js';


/** Namespaces XEP-0049 calls reserved: storing under them is refused with not-acceptable. */
export function isReservedNamespace(ns: string | undefined): boolean {
  return !ns || ns.startsWith('jabber:') || ns.startsWith('http://jabber.org/') || ns === NS.vcard;
}

/** The storage key of a stored element: Clark notation, `{namespace}name`. */
export function privateKey(el: Element): string {
  return `{${el.xmlns ?? ''}}${el.name}`;
}

/** Longest key the storage accepts (kv_items.item_key). */
const MAX_KEY_CHARS = 512;

/**
 * XEP-0049 private XML storage. Readable and writable by the owner only (P11): any IQ to another
 * account's bare JID is refused with forbidden before anything is read, whether or not that account
 * exists (P17). Each child of a set is stored under its qualified name, replacing what was there;
 * a get names exactly one element and returns it, or the empty element if nothing is stored.
 * Deleted with the account (the storage cascades every account-owned row).
 *
 * Quota (core/quota.ts): the account's keys and XML together may take `privateStorage.maxBytesPerUser`
 * bytes. A set is all or nothing: if what it stores, minus what its elements replace, would go over
 * the quota, nothing is written and the reply is resource-constraint (RFC 6120 8.3.3.14: the
 * recipient lacks the resources to serve the request); the data stored before stays intact.
 */
export function createPrivateStorageModule(): GatehouseModule {
  return {
    name: 'private-storage',
    config: privateStorageConfigSection,
    specs: [{ id: 'XEP-0049', version: '1.2', status: 'complete', note: 'owner only; reserved namespaces refused; byte quota privateStorage.maxBytesPerUser' }],
    load({ hooks, router, storage, log, config }) {
      const writes = new KeyedSerial<number>();
      const ownerAccount = async (e: StanzaEvent) => {
        if (e.from.bare !== e.to.bare) return null;
        return storage.accounts.get(e.to.local, e.to.domain);
      };

      const check = (e: StanzaEvent): Element[] | string => {
        const query = e.stanza.firstElement()!;
        const children = query.elements;
        if (children.length === 0) return 'not-acceptable';
        for (const c of children) {
          if (isReservedNamespace(c.xmlns)) return 'not-acceptable';
          if (privateKey(c).length > MAX_KEY_CHARS) return 'not-acceptable';
        }
        return children;
      };

      hooks.on(`iq-get/bare/${NS.privateXml}:query`, async (e) => {
        if (e.from.bare !== e.to.bare) return replyError(router, e, 'forbidden');
        const children = check(e);
        if (typeof children === 'string') return replyError(router, e, children);
        // "A client MUST NOT query for more than one namespace in a single IQ get request."
        if (children.length > 1) return replyError(router, e, 'bad-request', 'one element per request');
        const account = await ownerAccount(e);
        if (!account) return replyError(router, e, 'forbidden');
        const wanted = children[0]!;
        const xml = await storage.privateXml.get(account.id, privateKey(wanted));
        let payload = xml !== null ? parseXmlText(xml) : null;
        if (xml !== null && !payload) log.warn('unreadable private XML record', { key: privateKey(wanted) });
        if (!payload) payload = x(wanted.name, { xmlns: wanted.xmlns });
        return replyResult(router, e, x('query', { xmlns: NS.privateXml }, payload));
      });

      hooks.on(`iq-set/bare/${NS.privateXml}:query`, async (e) => {
        if (e.from.bare !== e.to.bare) return replyError(router, e, 'forbidden');
        const children = check(e);
        if (typeof children === 'string') return replyError(router, e, children);
        const account = await ownerAccount(e);
        if (!account) return replyError(router, e, 'forbidden');
        // Later elements with the same key replace earlier ones of the same set.
        const items = new Map(children.map((c) => [privateKey(c), c.clone().toString()] as const));
        const adding = { items: 0, bytes: 0 };
        for (const [key, xml] of items) adding.bytes += xmlBytes(key) + xmlBytes(xml);
        return writes.run(account.id, async () => {
          const usage = await storage.privateXml.usage(account.id, [...items.keys()]);
          const quota = checkQuota(usage, adding, { maxBytes: config.privateStorage.maxBytesPerUser }, 'private storage');
          if (!quota.ok) return replyError(router, e, 'resource-constraint', quota.text);
          for (const [key, xml] of items) await storage.privateXml.set(account.id, key, xml);
          return replyResult(router, e);
        });
      });
    },
  };
}
