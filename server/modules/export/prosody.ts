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
 * the account data (GatehouseModule `accountData`) claims. This file reads them into a neutral
 * list of nodes for `gatehouse import --dry-run`, and mends one thing: Prosody writes every field
 * of its node_config form, also those the node has no value for (max_items, access_model,
 * persist_items… left at Prosody's defaults), as fields without <value/>. An empty field in a
 * submitted form sets nothing, so those fields are dropped and the node gets Gatehouse's default
 * for them, instead of an importer reading them as invalid values.
 *
 * Not in Prosody 0.12's XEP-0227 output at all: offline messages (the driver has no `offline`
 * store; prosody-migrator stops with "unsupported-datastore" when it is listed), MAM archives
 * other than the user's own (`archive` is written as <archive xmlns='urn:xmpp:pie:0#mam'/>, which
 * Gatehouse does not import), blocklists and privacy lists.
 */
import type { Element } from '../../../shared/xml/element.js';

const DATA_FORMS_NS = 'jabber:x:data';

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

/** Drops the fields without a value from the node configuration forms of every <user/>; returns how many. */
export function dropEmptyPepConfigFields(document: Element): number {
  let dropped = 0;
  for (const host of document.elements) {
    for (const user of host.getChildren('user')) {
      for (const ps of user.getChildren('pubsub', PUBSUB_OWNER_NS)) {
        for (const configure of ps.getChildren('configure')) {
          for (const form of configure.getChildren('x', DATA_FORMS_NS)) {
            for (const field of form.getChildren('field')) {
              if (field.getChildren('value').length === 0) {
                form.remove(field);
                dropped++;
              }
            }
          }
        }
      }
    }
  }
  return dropped;
}
