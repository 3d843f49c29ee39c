/**
 * The PEP part of an account's XEP-0227 export and import (P23), in the form XEP-0227 gives PEP
 * data: the nodes with their configuration as the owner's configure forms, and their items:
 *
 *   <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
 *     <configure node='urn:xmpp:avatar:metadata'> <x xmlns='jabber:x:data' type='submit'>…</x> </configure>
 *   </pubsub>
 *   <pubsub xmlns='http://jabber.org/protocol/pubsub'>
 *     <items node='urn:xmpp:avatar:metadata'> <item id='…' publisher='…'>payload</item> </items>
 *   </pubsub>
 *
 * Items are exported oldest first, so an import keeps their order. A node named only in <items/>
 * is imported with the default configuration. The explicit subscriptions of a node (who follows it)
 * go in the owner's form of XEP-0060 8.8.1, and an import makes them again (a remote one's lifetime
 * then starts anew):
 *
 *   <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
 *     <subscriptions node='urn:xmpp:microblog:0'> <subscription jid='romeo@montague.lit' subscription='subscribed'/> </subscriptions>
 *   </pubsub>
 *
 * The subscriptions the account holds on other accounts' nodes of this server are its data too
 * (whom it follows), so the export names them; XEP-0227 has no form for them, hence a namespace of
 * Gatehouse's. An import skips them: they live in the other accounts' nodes, whose export and
 * import carry them.
 *
 *   <subscribed xmlns='urn:gatehouse:pep-subscribed:0'> <subscription service='juliet@capulet.lit' node='urn:xmpp:microblog:0' jid='romeo@capulet.lit'/> </subscribed>
 */
import type { AccountDataPart } from '../../core/context.js';
import type { Account, Storage } from '../../../storage/types.js';
import { NS } from '../../../shared/ns.js';
import { Jid } from '../../../shared/jid.js';
import { x, type Element } from '../../../shared/xml/element.js';
import { parseXmlText } from '../../../shared/xml/parse-xml.js';
import { PUBSUB, PUBSUB_OWNER, applyFields, configForm, defaultConfig, formValues, NODE_CONFIG_FORM, parseStoredConfig, storedConfig, type NodeConfig } from './node-config.js';
import { PEP_LIMITS, pepStorage } from './storage.js';

const SUBSCRIBED = 'urn:gatehouse:pep-subscribed:0';

/** Checking a configuration from a file: max_items is limited by the server when it is used. */
const ANY_MAX = 1_000_000_000;

interface ImportedNode {
  config: NodeConfig;
  items: { id: string; payload: string; publisher: string | null }[];
  subscribers: Jid[];
}

/** The nodes of the claimed elements, or problems (one line each, no payloads). */
function readNodes(elements: readonly Element[]): { nodes: Map<string, ImportedNode>; problems: string[] } {
  const nodes = new Map<string, ImportedNode>();
  const problems: string[] = [];
  const nodeOf = (name: string | undefined, what: string): ImportedNode | null => {
    if (!name) {
      problems.push(`PEP: a <${what}/> without a node name`);
      return null;
    }
    if ([...name].length > PEP_LIMITS.node) {
      problems.push(`PEP: a node name is longer than ${PEP_LIMITS.node} characters`);
      return null;
    }
    let n = nodes.get(name);
    if (!n) nodes.set(name, (n = { config: defaultConfig(), items: [], subscribers: [] }));
    return n;
  };
  for (const el of elements) {
    if (el.xmlns === PUBSUB_OWNER) {
      for (const c of el.getChildren('configure')) {
        const node = nodeOf(c.attrs.node, 'configure');
        const form = c.getChild('x', NS.dataForms);
        if (!node || !form) continue;
        const values = formValues(form);
        if (values.formType !== undefined && values.formType !== NODE_CONFIG_FORM) {
          problems.push(`PEP node ${c.attrs.node!.slice(0, 80)}: the configuration is not a node_config form`);
          continue;
        }
        const applied = applyFields(defaultConfig(), values.fields, ANY_MAX);
        if (applied.ok) node.config = applied.config;
        else problems.push(`PEP node ${c.attrs.node!.slice(0, 80)}: ${applied.text}`);
      }
      for (const list of el.getChildren('subscriptions')) {
        const node = nodeOf(list.attrs.node, 'subscriptions');
        if (!node) continue;
        for (const sub of list.getChildren('subscription')) {
          const jid = Jid.tryParse(sub.attrs.jid);
          if (!jid || [...jid.full].length > PEP_LIMITS.subscriber) problems.push(`PEP node ${list.attrs.node!.slice(0, 80)}: a subscription without a usable JID`);
          else if (sub.attrs.subscription !== undefined && sub.attrs.subscription !== 'subscribed') problems.push(`PEP node ${list.attrs.node!.slice(0, 80)}: subscription state ${sub.attrs.subscription.slice(0, 20)} (only subscribed is kept)`);
          else if (!node.subscribers.some((j) => j.full === jid.full)) node.subscribers.push(jid);
        }
      }
    } else {
      for (const items of el.getChildren('items')) {
        const node = nodeOf(items.attrs.node, 'items');
        if (!node) continue;
        for (const item of items.getChildren('item')) {
          const id = item.attrs.id;
          const payloads = item.elements;
          if (!id || [...id].length > PEP_LIMITS.itemId) problems.push(`PEP node ${items.attrs.node!.slice(0, 80)}: an item without a usable id`);
          else if (payloads.length !== 1) problems.push(`PEP node ${items.attrs.node!.slice(0, 80)}: item ${id.slice(0, 80)} must have exactly one payload element`);
          else {
            const publisher = item.attrs.publisher ?? null;
            node.items.push({ id, payload: payloads[0]!.clone().toString(), publisher: publisher && publisher.length <= PEP_LIMITS.publisher ? publisher : null });
          }
        }
      }
    }
  }
  return { nodes, problems };
}

export const pepAccountData: AccountDataPart = {
  async export(storage: Storage, account: Account): Promise<Element[]> {
    const repo = storage.repository(pepStorage);
    const held = await repo.subscriptionsHeldBy(`${account.username}@${account.host}`);
    const subscribed = held.length > 0 ? [x('subscribed', { xmlns: SUBSCRIBED }, held.map((h) => x('subscription', { service: h.owner, node: h.node, jid: h.jid })))] : [];
    const nodes = await repo.nodes(account.id);
    if (nodes.length === 0) return subscribed;
    const owner = x('pubsub', { xmlns: PUBSUB_OWNER });
    const data = x('pubsub', { xmlns: PUBSUB });
    for (const row of nodes) {
      owner.append(x('configure', { node: row.node }, configForm(parseStoredConfig(row.config), 'submit')));
      const subscriptions = await repo.subscriptions(row.id);
      if (subscriptions.length > 0) owner.append(x('subscriptions', { node: row.node }, subscriptions.map((s) => x('subscription', { jid: s.jid, subscription: 'subscribed' }))));
      const items = await repo.items(row.id);
      if (items.length === 0) continue;
      const el = x('items', { node: row.node });
      for (const i of items) {
        const payload = parseXmlText(i.payload);
        if (payload) el.append(x('item', { id: i.itemId, publisher: i.publisher ?? undefined }, payload));
      }
      data.append(el);
    }
    return [owner, ...(data.elements.length > 0 ? [data] : []), ...subscribed];
  },

  claims(element: Element): boolean {
    return (element.name === 'pubsub' && (element.xmlns === PUBSUB_OWNER || element.xmlns === PUBSUB)) || (element.name === 'subscribed' && element.xmlns === SUBSCRIBED);
  },

  check(elements: readonly Element[]): string[] {
    return readNodes(elements.filter((el) => el.xmlns !== SUBSCRIBED)).problems;
  },

  async import(storage: Storage, account: Account, elements: readonly Element[]): Promise<void> {
    const repo = storage.repository(pepStorage);
    const now = new Date();
    for (const [name, node] of readNodes(elements.filter((el) => el.xmlns !== SUBSCRIBED)).nodes) {
      const row = await repo.createNode(account.id, name, storedConfig(node.config), now);
      if (!row) throw new Error(`PEP node ${name.slice(0, 80)} appears twice`);
      for (const jid of node.subscribers) await repo.subscribe(row.id, jid.full, jid.bare, now, Number.MAX_SAFE_INTEGER);
      if (!node.config.persist) continue;
      const keep = node.config.maxItems === 'max' ? ANY_MAX : node.config.maxItems;
      for (const item of node.items) await repo.publish(row.id, { itemId: item.id, payload: item.payload, publisher: item.publisher }, now, keep);
    }
  },
};
