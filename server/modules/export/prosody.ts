/**
 * What Prosody's XEP-0227 files (prosody-migrator with a `xep0227` output, Prosody 0.12) hold
 * beyond the core data, read without changing it.
 *
 * PEP: Prosody writes a user's PEP nodes in XEP-0227's pubsub form, two children of <user/>:
 *
 *   <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
 *     <configure node='…'> <x xmlns='jabber:x:data' type='submit'> node_config fields </x> </configure>
 *     <affiliations node='…'/> <subscriptions node='…'/>          (when the node has any)
 *   </pubsub>
 *   <pubsub xmlns='http://jabber.org/protocol/pubsub'>
 *     <items node='…'> <item id='…'> payload </item> … </items>        (oldest first)
 *   </pubsub>
 *
 * These elements are handed on to the import as they are: they are what the PEP module's part of
 * the account data (GatehouseModule `accountData`) claims. This file only reads them into a
 * neutral list of nodes for `gatehouse import --dry-run` and for checking them.
 *
 * Not in Prosody 0.12's XEP-0227 output at all: offline messages (the driver has no `offline`
 * store; prosody-migrator stops with "unsupported-datastore" when it is listed), MAM archives
 * other than the user's own (`archive` is written as <archive xmlns='urn:xmpp:pie:0#mam'/>, which
 * Gatehouse does not import), blocklists and privacy lists.
 */
import type { Element } from '../../../shared/xml/element.js';

export const PUBSUB_NS = 'http://jabber.org/protocol/pubsub';
export const PUBSUB_OWNER_NS = 'http://jabber.org/protocol/pubsub#owner';

export interface PepNodeSummary {
  node: string;
  /** Whether the node's configuration form is in the export. */
  configured: boolean;
  items: number;
}

/** The PEP nodes of a <user/> element, in the order they first appear. */
export function pepNodes(user: Element): PepNodeSummary[] {
  const nodes = new Map<string, PepNodeSummary>();
  const get = (name: string): PepNodeSummary => {
    let n = nodes.get(name);
    if (!n) nodes.set(name, (n = { node: name, configured: false, items: 0 }));
    return n;
  };
  for (const ps of user.getChildren('pubsub')) {
    if (ps.xmlns === PUBSUB_OWNER_NS) {
      for (const c of ps.elements) if (c.attrs.node) get(c.attrs.node).configured ||= c.name === 'configure';
    } else if (ps.xmlns === PUBSUB_NS) {
      for (const items of ps.getChildren('items')) if (items.attrs.node) get(items.attrs.node).items += items.getChildren('item').length;
    }
  }
  return [...nodes.values()];
}
