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
 * vCards: with Prosody's default modules (mod_vcard4 and mod_vcard_legacy) a user's vCard is not
 * in the `vcard` store but in PEP: the XEP-0292 vCard in node urn:xmpp:vcard4 and the avatar in
 * the XEP-0084 nodes; mod_vcard_legacy answers vcard-temp requests from them. For clients that
 * ask with vcard-temp (XEP-0054) on Gatehouse, an account without a vcard-temp vCard in the export
 * gets one made from those nodes the same way (the fields both formats have, the avatar as
 * PHOTO); the PEP nodes themselves are carried as well.
 *
 * Not in Prosody 0.12's XEP-0227 output at all: offline messages (the driver has no `offline`
 * store; prosody-migrator stops with "unsupported-datastore" when it is listed), MAM archives
 * other than the user's own (`archive` is written as <archive xmlns='urn:xmpp:pie:0#mam'/>, which
 * Gatehouse does not import), blocklists and privacy lists.
 */
import { x, type Element } from '../../../shared/xml/element.js';

const DATA_FORMS_NS = 'jabber:x:data';
const VCARD_TEMP_NS = 'vcard-temp';
const VCARD4_NODE = 'urn:xmpp:vcard4';
const VCARD4_NS = 'urn:ietf:params:xml:ns:vcard-4.0';
const AVATAR_METADATA = 'urn:xmpp:avatar:metadata';
const AVATAR_DATA = 'urn:xmpp:avatar:data';

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

/** The payloads of a PEP node's items in a <user/>. */
function pepPayloads(user: Element, node: string): Element[] {
  const out: Element[] = [];
  for (const ps of user.getChildren('pubsub', PUBSUB_NS)) {
    for (const items of ps.getChildren('items')) {
      if (items.attrs.node !== node) continue;
      for (const item of items.getChildren('item')) {
        const payload = item.firstElement();
        if (payload) out.push(payload);
      }
    }
  }
  return out;
}

/** The text of a vCard 4 property's value element (`<fn><text>…</text></fn>`). */
function value(prop: Element | undefined, kind = 'text'): string {
  return (prop?.getChildText(kind) ?? '').trim();
}

/** The lower-case TYPE parameters of a vCard 4 property. */
function types(prop: Element): string[] {
  const type = prop.getChild('parameters')?.getChild('type');
  return (type?.getChildren('text') ?? []).map((t) => t.text().trim().toLowerCase());
}

/** A vcard-temp element with the given children, or null when none has content. */
function temp(name: string, children: (Element | null)[]): Element | null {
  const kept = children.filter((c): c is Element => c !== null);
  return kept.length ? x(name, {}, kept) : null;
}

const leaf = (name: string, text: string): Element | null => (text ? x(name, {}, text) : null);
const flag = (name: string, on: boolean): Element | null => (on ? x(name) : null);

/**
 * A vcard-temp vCard (XEP-0054) made from the user's XEP-0292 vCard and XEP-0084 avatar PEP nodes,
 * as Prosody's mod_vcard_legacy presents them; null when there are none.
 */
export function vcardTempFromPep(user: Element): Element | null {
  const card = pepPayloads(user, VCARD4_NODE).find((p) => p.name === 'vcard' && p.xmlns === VCARD4_NS);
  const out: (Element | null)[] = [];
  if (card) {
    const n = card.getChild('n');
    out.push(leaf('FN', value(card.getChild('fn'))));
    if (n) {
      const part = (name: string) => (n.getChildText(name) ?? '').trim();
      out.push(temp('N', [leaf('FAMILY', part('surname')), leaf('GIVEN', part('given')), leaf('MIDDLE', part('additional')), leaf('PREFIX', part('prefix')), leaf('SUFFIX', part('suffix'))]));
    }
    for (const nick of card.getChildren('nickname')) out.push(leaf('NICKNAME', value(nick)));
  }
  const photo = avatarPhoto(user);
  if (photo) out.push(photo);
  if (card) {
    out.push(leaf('BDAY', value(card.getChild('bday'), 'date') || value(card.getChild('bday'))));
    for (const adr of card.getChildren('adr')) {
      const part = (name: string) => (adr.getChildText(name) ?? '').trim();
      const t = types(adr);
      out.push(temp('ADR', [flag('HOME', t.includes('home')), flag('WORK', t.includes('work')), leaf('POBOX', part('pobox')), leaf('EXTADD', part('ext')), leaf('STREET', part('street')), leaf('LOCALITY', part('locality')), leaf('REGION', part('region')), leaf('PCODE', part('code')), leaf('CTRY', part('country'))]));
    }
    for (const tel of card.getChildren('tel')) {
      const number = (value(tel, 'uri') || value(tel)).replace(/^tel:/i, '');
      if (!number) continue;
      const t = types(tel);
      out.push(x('TEL', {}, [flag('HOME', t.includes('home')), flag('WORK', t.includes('work')), flag('CELL', t.includes('cell')), flag('FAX', t.includes('fax')), flag('VOICE', t.includes('voice') || !t.includes('fax')), x('NUMBER', {}, number)].filter((e): e is Element => e !== null)));
    }
    for (const email of card.getChildren('email')) {
      const address = value(email);
      if (!address) continue;
      const t = types(email);
      out.push(x('EMAIL', {}, [flag('HOME', t.includes('home')), flag('WORK', t.includes('work')), x('INTERNET'), x('USERID', {}, address)].filter((e): e is Element => e !== null)));
    }
    for (const impp of card.getChildren('impp')) {
      const uri = value(impp, 'uri');
      if (/^xmpp:/i.test(uri)) out.push(leaf('JABBERID', uri.slice(5)));
    }
    out.push(leaf('TITLE', value(card.getChild('title'))));
    out.push(leaf('ROLE', value(card.getChild('role'))));
    const org = value(card.getChild('org'));
    if (org) out.push(x('ORG', {}, x('ORGNAME', {}, org)));
    for (const url of card.getChildren('url')) out.push(leaf('URL', value(url, 'uri')));
    out.push(leaf('DESC', value(card.getChild('note'))));
  }
  const kept = out.filter((e): e is Element => e !== null && (e.name !== 'ADR' || e.elements.some((c) => c.text() !== '')));
  return kept.length ? x('vCard', { xmlns: VCARD_TEMP_NS }, kept) : null;
}

/** The current XEP-0084 avatar as a vcard-temp PHOTO (the metadata's first info with its data item). */
function avatarPhoto(user: Element): Element | null {
  const info = pepPayloads(user, AVATAR_METADATA)
    .filter((m) => m.name === 'metadata' && m.xmlns === AVATAR_METADATA)
    .flatMap((m) => m.getChildren('info'))
    .find((i) => i.attrs.id && !i.attrs.url);
  if (!info) return null;
  for (const ps of user.getChildren('pubsub', PUBSUB_NS)) {
    for (const items of ps.getChildren('items')) {
      if (items.attrs.node !== AVATAR_DATA) continue;
      const item = items.getChildren('item').find((i) => i.attrs.id === info.attrs.id);
      const data = item?.getChild('data', AVATAR_DATA)?.text().replace(/\s+/g, '');
      if (data) return x('PHOTO', {}, x('TYPE', {}, info.attrs.type ?? 'image/png'), x('BINVAL', {}, data));
    }
  }
  return null;
}

/**
 * Gives every <user/> that has XEP-0292/XEP-0084 PEP data but no vcard-temp vCard one made from
 * it (vcardTempFromPep); returns how many.
 */
export function addVcardTempFromPep(document: Element): number {
  let added = 0;
  for (const host of document.elements) {
    for (const user of host.getChildren('user')) {
      if (user.getChild('vCard', VCARD_TEMP_NS)) continue;
      const vcard = vcardTempFromPep(user);
      if (!vcard) continue;
      user.append(vcard);
      added++;
    }
  }
  return added;
}
