import type { GatehouseModule, ServerContext } from '../core/context.js';
import type { StanzaEvent } from '../core/hooks.js';
import { replyError, replyResult } from '../core/iq.js';
import type { DiscoRegistry } from '../core/disco-registry.js';
import { mayViewPresenceInfo } from '../core/subscription-states.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

/** The XEP-0115 node of the server's own capabilities. */
export const CAPS_NODE = 'https://gatehouse.example/caps';

/**
 * The caps verification string, computed lazily: modules announce features while they load, so
 * the first stream feature list (after every module has loaded) fixes it. It is recomputed only
 * if a module announces something later (the registry only grows).
 */
class CapsCache {
  private ver = '';
  private signature = '';
  constructor(private readonly disco: DiscoRegistry) {}
  get(): string {
    const sig = `${this.disco.serverFeatures.size}/${this.disco.serverIdentities.length}`;
    if (sig !== this.signature) {
      this.ver = this.disco.serverCapsHash();
      this.signature = sig;
    }
    return this.ver;
  }
}

function identityElements(disco: DiscoRegistry, account: boolean): Element[] {
  const list = account ? disco.accountIdentities : disco.serverIdentities;
  return list.map((i) => x('identity', { category: i.category, type: i.type, name: i.name }));
}

function featureElements(features: Iterable<string>): Element[] {
  return [...features].sort().map((f) => x('feature', { var: f }));
}

/**
 * XEP-0030 service discovery for the hosts and (on their behalf) for accounts, plus XEP-0115
 * entity capabilities of the server in the stream features.
 *
 * Privacy (P17): the host's disco#items lists services only (components, upload, ...), never
 * accounts. A bare JID's disco#info/#items are answered only to the owner and to contacts with a
 * presence subscription ('from'/'both'); everyone else gets service-unavailable, which is also
 * exactly what an IQ to a nonexistent account gets (the router's default answer), so disco cannot
 * be used to enumerate accounts. A neutral "empty" result would have been possible too, but it
 * would differ from the router's answer for nonexistent accounts to every other namespace, and
 * that difference would itself leak existence.
 */
export function createDiscoModule(): GatehouseModule {
  return {
    name: 'disco',
    specs: [
      { id: 'XEP-0030', version: '2.5rc3', status: 'complete', note: 'hosts and accounts (accounts: owner and subscribed contacts only)' },
      { id: 'XEP-0115', version: '1.6.0', status: 'partial', note: 'server capabilities in stream features' },
    ],
    load(ctx: ServerContext) {
      const { hooks, router, disco, config, storage } = ctx;
      if (!disco.serverIdentities.some((i) => i.category === 'server' && i.type === 'im')) {
        disco.serverIdentities.push({ category: 'server', type: 'im', name: config.server.name });
      }
      disco.addServerFeature(NS.discoInfo, NS.discoItems);
      disco.addAccountFeature(NS.discoInfo, NS.discoItems);
      const caps = new CapsCache(disco);

      hooks.on('c2s/features', ({ features }) => {
        features.append(x('c', { xmlns: NS.caps, hash: 'sha-1', node: CAPS_NODE, ver: caps.get() }));
      });

      hooks.on(`iq-get/host/${NS.discoInfo}:query`, (e) => {
        const node = e.stanza.firstElement()!.attrs.node;
        if (node !== undefined && node !== `${CAPS_NODE}#${caps.get()}`) return replyError(router, e, 'item-not-found');
        return replyResult(
          router,
          e,
          x('query', { xmlns: NS.discoInfo, node }, identityElements(disco, false), featureElements(disco.serverFeatures)),
        );
      });

      hooks.on(`iq-get/host/${NS.discoItems}:query`, (e) => {
        const node = e.stanza.firstElement()!.attrs.node;
        if (node !== undefined) return replyError(router, e, 'item-not-found');
        // P17: services only. Nothing here is ever derived from the account table.
        const items = [...disco.serverItems].sort(([a], [b]) => a.localeCompare(b)).map(([jid, name]) => x('item', { jid, name }));
        return replyResult(router, e, x('query', { xmlns: NS.discoItems }, items));
      });

      const accountQuery = (build: (e: StanzaEvent, node: string | undefined) => Element | null) => async (e: StanzaEvent) => {
        if (!(await mayViewPresenceInfo(storage, e.to, e.from))) return replyError(router, e, 'service-unavailable');
        const node = e.stanza.firstElement()!.attrs.node;
        const payload = build(e, node);
        return payload ? replyResult(router, e, payload) : replyError(router, e, 'item-not-found');
      };

      hooks.on(
        `iq-get/bare/${NS.discoInfo}:query`,
        accountQuery((_e, node) =>
          node !== undefined ? null : x('query', { xmlns: NS.discoInfo }, identityElements(disco, true), featureElements(disco.accountFeatures)),
        ),
      );

      // No items yet; PEP will list its nodes here (with a higher-priority handler or by extending this one).
      hooks.on(`iq-get/bare/${NS.discoItems}:query`, accountQuery((_e, node) => (node !== undefined ? null : x('query', { xmlns: NS.discoItems }))));
    },
  };
}
