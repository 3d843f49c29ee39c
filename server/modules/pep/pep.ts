/**
 * Personal eventing (XEP-0163) on a subset of publish-subscribe (XEP-0060) for the nodes of each
 * account, at the account's bare JID: what clients keep there are OMEMO device lists and bundles,
 * OpenPGP keys (XEP-0373), avatars (XEP-0084), the nickname (XEP-0172), bookmarks (XEP-0402, and
 * XEP-0048 as a private PEP node, XEP-0223), tune, mood and activity.
 *
 * Supported: publish (the node is created on first publish, item ids given or made by the server),
 * publish-options compared with the node's configuration (XEP-0060 7.1.5; a difference is
 * `conflict` + `<precondition-not-met/>`, after which clients such as Conversations configure the
 * node and publish again), retract, items (all, by id, max_items), create (with configure),
 * configure (get and set, the owner form), the default configuration, delete and purge, each with
 * its notification.
 *
 * Subscriptions: implicit (XEP-0163 auto-subscribe: +notify in entity capabilities, from the caps
 * module) and, while pep.subscriptions is on, explicit (XEP-0060 6.1 subscribe, 6.2 unsubscribe,
 * 5.6 the requester's subscriptions; 8.8 the owner lists a node's subscriptions and ends them,
 * each subscriber told with 8.8.4's message). Who may subscribe is who may read (the access
 * model); a subscription the access model no longer allows (the owner's roster item changed or
 * removed, the node reconfigured) is ended and the subscriber told. Subscription options (6.3)
 * are answered `feature-not-implemented` with `<unsupported feature='subscription-options'/>`;
 * the owner cannot subscribe others. Affiliations are read-only (5.7, 8.9): the owner, and
 * `member` for contacts the presence or roster model lets read (XEP-0163 5's subscriber);
 * `whitelist` means the owner only. Stored subscriptions (pep_subscriptions) are personal data:
 * in the XEP-0227 export, erased with the node and with either account (P23), those of remote
 * JIDs expiring after pep.remoteSubscriptionLifetime (retention class pep-subscriptions), named in
 * the privacy policy, so turning pep.subscriptions on is held back until announced (P22).
 *
 * Access models (P11, P16, P17) are enforced on every read and every notification, for the owner
 * nothing is hidden:
 * - open: anyone may read; notifications go to contacts with a presence subscription, like presence;
 * - presence: contacts whose subscription is 'from' or 'both' (the default, XEP-0163);
 * - roster: those contacts in one of `pubsub#roster_groups_allowed`;
 * - whitelist: the owner only (private nodes, XEP-0223).
 * A read the requester may not make gets `item-not-found`, exactly the answer for a node that does
 * not exist (XEP-0060 6.5.9.11) and for an account that does not exist. The access-model errors of
 * XEP-0060 6.5.9 (not-authorized with presence-subscription-required, not-allowed with
 * closed-node, ...) would tell the requester that the node exists and how it is configured.
 * Prosody 0.12 (util/pubsub.lua get_items) checks access before existence and answers `forbidden`,
 * so a stranger learns nothing there either, but a contact can tell a private node from a missing
 * one; here nobody can. A request to change another account's nodes gets `forbidden`, whether or
 * not that account exists.
 *
 * Notifications (type headline, from the bare JID) go to the owner's available resources and to
 * the available resources of the contacts the access model allows, each only when its entity
 * capabilities include NODE+notify, and to the explicit subscribers: a full JID as subscribed; a
 * bare JID at its resources with +notify where the service knows them, else once at the bare JID
 * (XEP-0163 4.3.1, 4.3.2), never a second copy to a resource that qualifies both ways. They are
 * sent before the publisher's IQ result, so when the
 * publisher has its answer every notification is on its way. A contact on another server is
 * reached through the router like any stanza from the account (and not at all when the owner has
 * blocked it: the blocking module drops it). The last published item (with its XEP-0203 delay) is
 * sent when a resource with +notify becomes available, for nodes with send_last_published_item
 * on_sub_and_presence, and only when the access model allows it; whether the owner is online does
 * not matter (XEP-0163 4.3.4: the service at the bare JID gets the contact's presence either way);
 * and to a new explicit subscriber after its result (XEP-0060 6.1.7), unless the node says never.
 *
 * XEP-0398: a published avatar becomes the vCard PHOTO ('pep/avatar', handled by the vCard module,
 * which also puts the photo's hash into the owner's presence) and a vCard PHOTO the owner stores
 * becomes the avatar ('vcard/photo', handled here). An avatar whose data is not the image its id
 * (SHA-1) names is not converted.
 *
 * Limits (pep.*): items per node (`max_items` may not exceed it; 'max' means it), the size of one
 * payload, nodes per account, bytes per account (core/quota.ts). Over a limit the request gets a
 * stanza error and nothing of it is stored.
 */
import { createHash } from 'node:crypto';
import { randomHex } from '../../../shared/random.js';
import type { GatehouseModule, ServerContext } from '../../core/context.js';
import type { StanzaEvent } from '../../core/hooks.js';
import { replyError, replyResult } from '../../core/iq.js';
import { checkQuota, KeyedSerial, xmlBytes } from '../../core/quota.js';
import { HIDDEN_GROUP, mayViewPresenceInfo } from '../../core/subscription-states.js';
import { inBatches, type RetentionClass } from '../../core/retention-class.js';
import type { ErrorType } from '../../../shared/xml/stanza-errors.js';
import type { Account, RosterItem } from '../../../storage/types.js';
import { Jid } from '../../../shared/jid.js';
import { NS } from '../../../shared/ns.js';
import { Element, x } from '../../../shared/xml/element.js';
import { parseXmlText } from '../../../shared/xml/parse-xml.js';
import { pepConfigSection } from './config.js';
import { PEP_LIMITS, pepStorage, type PepNodeRow, type PepRepository, type PepSubscriptionRow } from './storage.js';
import {
  PUBSUB,
  PUBSUB_OWNER,
  NODE_CONFIG_FORM,
  PUBLISH_OPTIONS_FORM,
  applyFields,
  checkPreconditions,
  configForm,
  defaultConfig,
  formValues,
  itemLimit,
  parseStoredConfig,
  storedConfig,
  type NodeConfig,
} from './node-config.js';
import { pepAccountData } from './account-data.js';

const PUBSUB_EVENT = `${PUBSUB}#event`;
const PUBSUB_ERRORS = `${PUBSUB}#errors`;

const AVATAR_DATA = 'urn:xmpp:avatar:data';
const AVATAR_METADATA = 'urn:xmpp:avatar:metadata';

declare module '../../core/hooks.js' {
  interface HookEvents {
    /**
     * The owner published an XEP-0084 avatar (photo: its type and base64 data) or disabled it
     * (photo null); fired by the PEP module so that the vCard's PHOTO can follow (XEP-0398).
     */
    'pep/avatar': { account: Account; jid: Jid; photo: { type: string; data: string } | null };
  }
}

/** The pubsub features the service really has (disco#info of the account's bare JID). */
const FEATURES = [
  'access-open',
  'access-presence',
  'access-roster',
  'access-whitelist',
  'auto-create',
  'auto-subscribe',
  'config-node',
  'create-and-configure',
  'create-nodes',
  'delete-items',
  'delete-nodes',
  'filtered-notifications',
  'item-ids',
  'last-published',
  'persistent-items',
  'presence-notifications',
  'publish',
  'publish-options',
  'purge-nodes',
  'retract-items',
  'retrieve-default',
  'retrieve-items',
];

/** The features of explicit subscriptions, announced while pep.subscriptions is on. */
const SUBSCRIPTION_FEATURES = ['subscribe', 'retrieve-subscriptions', 'manage-subscriptions', 'subscription-notifications'];
/** Affiliations are read-only: the owner, and member for contacts the access model lets read (XEP-0163 5). */
const AFFILIATION_FEATURES = ['retrieve-affiliations', 'member-affiliation'];

function pubsubError(name: string, attrs: Record<string, string> = {}): Element {
  return x(name, { xmlns: PUBSUB_ERRORS, ...attrs });
}

function itemElement(id: string, payload: string | null): Element {
  const item = x('item', { id });
  if (payload !== null) {
    const el = parseXmlText(payload);
    if (el) item.append(el);
  }
  return item;
}

/** The roster item allows the requester to read a node of this configuration (not for the owner). */
function allowedBy(config: NodeConfig, item: RosterItem | null): boolean {
  switch (config.access) {
    case 'open':
      return true;
    case 'presence':
      return item?.subscription === 'from' || item?.subscription === 'both';
    case 'roster':
      return (item?.subscription === 'from' || item?.subscription === 'both') && item.groups.some((g) => config.groups.includes(g));
    case 'whitelist':
      return false;
  }
}

class PepService {
  readonly repo: PepRepository;
  private readonly writes = new KeyedSerial<number>();

  constructor(private readonly ctx: ServerContext) {
    this.repo = ctx.storage.repository(pepStorage);
  }

  private get limits() {
    return this.ctx.config.pep;
  }

  private fail(e: StanzaEvent, condition: string, app?: Element, text?: string, type?: ErrorType): true {
    return replyError(this.ctx.router, e, condition, text, type, app);
  }

  private account(jid: Jid): Promise<Account | null> {
    if (!jid.local || !this.ctx.router.isLocalHost(jid.domain)) return Promise.resolve(null);
    return this.ctx.storage.accounts.get(jid.local, jid.domain);
  }

  /** Whether `requester` (a bare JID) may read a node of `owner`'s (account id, bare JID) with this configuration. */
  async mayRead(accountId: number, owner: string, requester: string, config: NodeConfig): Promise<boolean> {
    if (requester === owner) return true;
    if (config.access === 'open') return true;
    if (config.access === 'whitelist') return false;
    return allowedBy(config, await this.ctx.storage.roster.get(accountId, requester));
  }

  // ---------------------------------------------------------------------------------------------
  // Requests to <pubsub xmlns='http://jabber.org/protocol/pubsub'/>

  async get(e: StanzaEvent): Promise<true> {
    const pubsub = e.stanza.firstElement()!;
    const items = pubsub.getChild('items');
    if (!items) {
      const other = pubsub.firstElement();
      if (other?.name === 'options') return this.unsupported(e, 'subscription-options');
      if (other?.name === 'affiliations') return this.ownAffiliations(e, other.attrs.node);
      if (other?.name === 'subscriptions') return this.limits.subscriptions ? this.ownSubscriptions(e, other.attrs.node) : this.unsupported(e, 'retrieve-subscriptions');
      return this.fail(e, 'bad-request');
    }
    const node = items.attrs.node;
    if (!node) return this.fail(e, 'bad-request', pubsubError('nodeid-required'));
    const account = await this.account(e.to);
    const row = account ? await this.repo.node(account.id, node) : null;
    if (!account || !row) return this.fail(e, 'item-not-found');
    const config = parseStoredConfig(row.config);
    if (!(await this.mayRead(account.id, e.to.bare, e.from.bare, config))) return this.fail(e, 'item-not-found');
    const wanted = new Set(items.getChildren('item').map((i) => i.attrs.id).filter((id): id is string => !!id));
    let found;
    if (wanted.size > 0) {
      // One query whatever the number of ids asked for (a node holds at most pep.maxItemsPerNode).
      found = (await this.repo.items(row.id)).filter((i) => wanted.has(i.itemId));
    } else {
      const maxAttr = items.attrs.max_items;
      if (maxAttr !== undefined && !/^\d{1,9}$/.test(maxAttr)) return this.fail(e, 'bad-request');
      found = await this.repo.items(row.id, maxAttr === undefined ? undefined : Number(maxAttr));
    }
    return replyResult(this.ctx.router, e, x('pubsub', { xmlns: PUBSUB }, x('items', { node }, found.map((i) => itemElement(i.itemId, i.payload)))));
  }

  async set(e: StanzaEvent): Promise<true> {
    const pubsub = e.stanza.firstElement()!;
    const action = pubsub.elements.find((c) => c.name !== 'publish-options' && c.name !== 'configure');
    if (action?.name === 'subscribe' || action?.name === 'unsubscribe') {
      if (!this.limits.subscriptions) return this.unsupported(e, 'subscribe');
      return action.name === 'subscribe' ? this.subscribe(e, action, pubsub.getChild('options')) : this.unsubscribe(e, action);
    }
    if (action?.name === 'options') return this.unsupported(e, 'subscription-options');
    if (e.from.bare !== e.to.bare) return this.fail(e, 'forbidden');
    const account = await this.account(e.to);
    if (!account) return this.fail(e, 'forbidden');
    switch (action?.name) {
      case 'publish':
        return this.publish(e, account, action, pubsub.getChild('publish-options'));
      case 'retract':
        return this.retract(e, account, action);
      case 'create':
        return this.create(e, account, action, pubsub.getChild('configure'));
      default:
        return this.fail(e, 'bad-request');
    }
  }

  private unsupported(e: StanzaEvent, feature: string): true {
    return this.fail(e, 'feature-not-implemented', pubsubError('unsupported', { feature }));
  }

  private async publish(e: StanzaEvent, account: Account, publish: Element, options: Element | undefined): Promise<true> {
    const node = publish.attrs.node;
    if (!node) return this.fail(e, 'bad-request', pubsubError('nodeid-required'));
    if ([...node].length > PEP_LIMITS.node) return this.fail(e, 'not-acceptable', undefined, `node names have at most ${PEP_LIMITS.node} characters`);
    const items = publish.getChildren('item');
    if (items.length === 0) return this.fail(e, 'bad-request', pubsubError('item-required'));
    if (items.length > 1) return this.fail(e, 'bad-request', pubsubError('invalid-payload'), 'one item per publish');
    const item = items[0]!;
    const payloads = item.elements;
    if (payloads.length === 0) return this.fail(e, 'bad-request', pubsubError('payload-required'));
    if (payloads.length > 1) return this.fail(e, 'bad-request', pubsubError('invalid-payload'), 'one payload element per item');
    const itemId = item.attrs.id || randomHex(12);
    if ([...itemId].length > PEP_LIMITS.itemId) return this.fail(e, 'not-acceptable', undefined, `item ids have at most ${PEP_LIMITS.itemId} characters`);
    const payload = payloads[0]!.clone().toString();
    if (xmlBytes(payload) > this.limits.maxItemBytes) return this.fail(e, 'not-acceptable', pubsubError('payload-too-big'));

    let fields: Map<string, string[]> | null = null;
    if (options) {
      const form = options.getChild('x', NS.dataForms);
      if (!form) return this.fail(e, 'bad-request', pubsubError('invalid-options'));
      const values = formValues(form);
      if (values.formType !== undefined && values.formType !== PUBLISH_OPTIONS_FORM) return this.fail(e, 'bad-request', pubsubError('invalid-options'));
      fields = values.fields;
    }
    const outcome = await this.store(account, node, itemId, payload, fields, e.from.bare);
    if ('refused' in outcome) return this.fail(e, ...outcome.refused);
    await this.broadcast(account, e.to.toBare(), node, outcome.config, () => x('items', { node }, itemElement(itemId, outcome.config.deliverPayloads ? payload : null)));
    if (node === AVATAR_METADATA) await this.avatarChanged(account, e.to.toBare(), payloads[0]!);
    return replyResult(this.ctx.router, e, x('pubsub', { xmlns: PUBSUB }, x('publish', { node }, x('item', { id: itemId }))));
  }

  /**
   * Stores one item (creating the node, with the publish-options as its configuration, when it is
   * not there yet), within the limits; one account's writes run one at a time. Returns the node's
   * configuration, or the error that refuses the publish (nothing stored then).
   */
  private store(
    account: Account,
    node: string,
    itemId: string,
    payload: string,
    fields: Map<string, string[]> | null,
    publisher: string,
  ): Promise<{ config: NodeConfig } | { refused: [string, Element | undefined, string | undefined] }> {
    const serverMax = this.limits.maxItemsPerNode;
    return this.writes.run(account.id, async () => {
      let row = await this.repo.node(account.id, node);
      let config: NodeConfig;
      if (!row) {
        const wanted = fields ? checkPreconditions(null, fields, serverMax) : { ok: true as const, config: defaultConfig() };
        if (!wanted.ok) return { refused: wanted.kind === 'unmet' ? ['conflict', pubsubError('precondition-not-met'), wanted.text] : ['not-acceptable', undefined, wanted.text] };
        config = wanted.config;
      } else {
        config = parseStoredConfig(row.config);
        if (fields) {
          const met = checkPreconditions(config, fields, serverMax);
          if (!met.ok) return { refused: ['conflict', pubsubError('precondition-not-met'), met.text] };
        }
      }
      const adding = { items: config.persist ? 1 : 0, bytes: config.persist ? xmlBytes(itemId) + xmlBytes(payload) : 0 };
      if (!row) adding.bytes += xmlBytes(node) + xmlBytes(storedConfig(config));
      if (adding.bytes > 0) {
        const usage = await this.repo.usage(account.id, row ? { nodeId: row.id, itemId } : undefined);
        const quota = checkQuota(usage, adding, { maxBytes: this.limits.maxBytesPerUser }, 'PEP storage');
        if (!quota.ok) return { refused: ['resource-constraint', undefined, quota.text] };
      }
      if (!row) {
        if ((await this.repo.countNodes(account.id)) >= this.limits.maxNodesPerUser) return { refused: this.nodeLimit() };
        row = await this.repo.createNode(account.id, node, storedConfig(config), this.ctx.clock.now());
        if (!row) return { refused: ['conflict', undefined, undefined] };
      }
      if (config.persist) await this.repo.publish(row.id, { itemId, payload, publisher }, this.ctx.clock.now(), itemLimit(config, serverMax));
      return { config };
    });
  }

  private nodeLimit(): [string, Element, string] {
    return ['not-allowed', pubsubError('max-nodes-exceeded'), `at most ${this.limits.maxNodesPerUser} nodes per account`];
  }

  /** XEP-0398: a published avatar (its metadata names the data item) goes to the vCard too. */
  private async avatarChanged(account: Account, owner: Jid, metadata: Element): Promise<void> {
    const info = metadata.getChildren('info').find((i) => i.attrs.id && !i.attrs.url);
    if (!info) {
      if (metadata.elements.length === 0) await this.ctx.hooks.emit('pep/avatar', { account, jid: owner, photo: null });
      return;
    }
    const dataNode = await this.repo.node(account.id, AVATAR_DATA);
    const item = dataNode ? await this.repo.item(dataNode.id, info.attrs.id!) : null;
    const data = item ? parseXmlText(item.payload) : null;
    if (!data || data.name !== 'data') return;
    const base64 = data.text().replace(/\s+/g, '');
    // XEP-0398 3.1: the image must be the one the id (its SHA-1, XEP-0084) names.
    if (createHash('sha1').update(Buffer.from(base64, 'base64')).digest('hex') !== info.attrs.id!.toLowerCase()) {
      return this.ctx.log.debug('pep: an avatar whose data does not match its id is not converted');
    }
    await this.ctx.hooks.emit('pep/avatar', { account, jid: owner, photo: { type: info.attrs.type ?? 'image/png', data: base64 } });
  }

  /**
   * XEP-0398, the other way: a vCard PHOTO the owner stored becomes the XEP-0084 avatar (data and
   * metadata, notified like a publish), unless the avatar already is that image. Nothing is
   * published when it would break a limit; the vCard itself is stored either way.
   */
  async fromVcard(account: Account, owner: Jid, photo: { type: string; data: string } | null): Promise<void> {
    const metaNode = await this.repo.node(account.id, AVATAR_METADATA);
    const [current] = metaNode ? await this.repo.items(metaNode.id, 1) : [];
    let metadata: Element;
    let id: string;
    if (!photo) {
      if (!current || parseXmlText(current.payload)?.elements.length === 0) return;
      metadata = x('metadata', { xmlns: AVATAR_METADATA });
      id = 'current';
    } else {
      const bytes = Buffer.from(photo.data, 'base64');
      if (bytes.length === 0) return;
      id = createHash('sha1').update(bytes).digest('hex');
      if (current?.itemId === id) return;
      const data = x('data', { xmlns: AVATAR_DATA }, bytes.toString('base64'));
      if (xmlBytes(data.toString()) > this.limits.maxItemBytes) return this.ctx.log.debug('pep: a vCard photo too big for an avatar item', { bytes: bytes.length });
      const stored = await this.store(account, AVATAR_DATA, id, data.toString(), null, owner.bare);
      if ('refused' in stored) return this.ctx.log.debug('pep: a vCard photo not converted', { reason: stored.refused[0] });
      await this.broadcast(account, owner, AVATAR_DATA, stored.config, () => x('items', { node: AVATAR_DATA }, itemElement(id, stored.config.deliverPayloads ? data.toString() : null)));
      metadata = x('metadata', { xmlns: AVATAR_METADATA }, x('info', { id, bytes: String(bytes.length), type: photo.type || 'image/png' }));
    }
    const stored = await this.store(account, AVATAR_METADATA, id, metadata.toString(), null, owner.bare);
    if ('refused' in stored) return this.ctx.log.debug('pep: a vCard photo not converted', { reason: stored.refused[0] });
    await this.broadcast(account, owner, AVATAR_METADATA, stored.config, () => x('items', { node: AVATAR_METADATA }, itemElement(id, stored.config.deliverPayloads ? metadata.toString() : null)));
  }

  private async retract(e: StanzaEvent, account: Account, retract: Element): Promise<true> {
    const node = retract.attrs.node;
    if (!node) return this.fail(e, 'bad-request', pubsubError('nodeid-required'));
    const ids = retract.getChildren('item').map((i) => i.attrs.id);
    if (ids.length === 0) return this.fail(e, 'bad-request', pubsubError('item-required'));
    if (ids.length > 1 || !ids[0]) return this.fail(e, 'bad-request', pubsubError(ids[0] ? 'invalid-payload' : 'item-required'));
    const itemId = ids[0];
    const outcome = await this.writes.run(account.id, async () => {
      const row = await this.repo.node(account.id, node);
      if (!row || !(await this.repo.retract(row.id, itemId))) return null;
      return row;
    });
    if (!outcome) return this.fail(e, 'item-not-found');
    const config = parseStoredConfig(outcome.config);
    const asked = retract.attrs.notify === 'true' || retract.attrs.notify === '1';
    if (config.notifyRetract || asked) await this.broadcast(account, e.to.toBare(), node, config, () => x('items', { node }, x('retract', { id: itemId })));
    return replyResult(this.ctx.router, e);
  }

  private async create(e: StanzaEvent, account: Account, create: Element, configure: Element | undefined): Promise<true> {
    const node = create.attrs.node;
    if (!node) return this.fail(e, 'not-acceptable', pubsubError('nodeid-required'), 'PEP nodes have names (no instant nodes)');
    if ([...node].length > PEP_LIMITS.node) return this.fail(e, 'not-acceptable', undefined, `node names have at most ${PEP_LIMITS.node} characters`);
    let config = defaultConfig();
    const form = configure?.getChild('x', NS.dataForms);
    if (form) {
      const values = formValues(form);
      if (values.formType !== undefined && values.formType !== NODE_CONFIG_FORM) return this.fail(e, 'bad-request', pubsubError('invalid-options'));
      const applied = applyFields(config, values.fields, this.limits.maxItemsPerNode);
      if (!applied.ok) return this.fail(e, 'not-acceptable', undefined, applied.text);
      config = applied.config;
    }
    return this.writes.run(account.id, async () => {
      if (await this.repo.node(account.id, node)) return this.fail(e, 'conflict');
      if ((await this.repo.countNodes(account.id)) >= this.limits.maxNodesPerUser) return this.fail(e, ...this.nodeLimit());
      const quota = checkQuota(await this.repo.usage(account.id), { items: 0, bytes: xmlBytes(node) + xmlBytes(storedConfig(config)) }, { maxBytes: this.limits.maxBytesPerUser }, 'PEP storage');
      if (!quota.ok) return this.fail(e, 'resource-constraint', undefined, quota.text);
      const row = await this.repo.createNode(account.id, node, storedConfig(config), this.ctx.clock.now());
      if (!row) return this.fail(e, 'conflict');
      return replyResult(this.ctx.router, e);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Requests to <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'/>

  async ownerGet(e: StanzaEvent): Promise<true> {
    if (e.from.bare !== e.to.bare) return this.fail(e, 'forbidden');
    const account = await this.account(e.to);
    if (!account) return this.fail(e, 'forbidden');
    const action = e.stanza.firstElement()!.firstElement();
    if (action?.name === 'default') return replyResult(this.ctx.router, e, x('pubsub', { xmlns: PUBSUB_OWNER }, x('default', {}, configForm(defaultConfig(), 'form'))));
    if (action?.name === 'subscriptions' || action?.name === 'affiliations') return this.ownerLists(e, account, action, null);
    if (action?.name !== 'configure') return this.fail(e, 'bad-request');
    const node = action.attrs.node;
    if (!node) return this.fail(e, 'bad-request', pubsubError('nodeid-required'));
    const row = await this.repo.node(account.id, node);
    if (!row) return this.fail(e, 'item-not-found');
    const groups = new Set<string>();
    for (const item of await this.ctx.storage.roster.list(account.id)) for (const g of item.groups) if (g !== HIDDEN_GROUP) groups.add(g);
    return replyResult(this.ctx.router, e, x('pubsub', { xmlns: PUBSUB_OWNER }, x('configure', { node }, configForm(parseStoredConfig(row.config), 'form', [...groups].sort()))));
  }

  async ownerSet(e: StanzaEvent): Promise<true> {
    if (e.from.bare !== e.to.bare) return this.fail(e, 'forbidden');
    const account = await this.account(e.to);
    if (!account) return this.fail(e, 'forbidden');
    const action = e.stanza.firstElement()!.firstElement();
    const node = action?.attrs.node;
    if (action?.name === 'affiliations') return this.unsupported(e, 'modify-affiliations');
    if (action?.name === 'subscriptions') return this.ownerLists(e, account, action, action.getChildren('subscription'));
    if (!action || !['configure', 'delete', 'purge'].includes(action.name)) return this.fail(e, 'bad-request');
    if (!node) return this.fail(e, 'bad-request', pubsubError('nodeid-required'));
    const owner = e.to.toBare();
    const serverMax = this.limits.maxItemsPerNode;
    const outcome = await this.writes.run(account.id, async (): Promise<{ row: PepNodeRow; config: NodeConfig } | true> => {
      const row = await this.repo.node(account.id, node);
      if (!row) return this.fail(e, 'item-not-found');
      const config = parseStoredConfig(row.config);
      if (action.name === 'configure') {
        const form = action.getChild('x', NS.dataForms);
        if (!form) return this.fail(e, 'bad-request');
        if (form.attrs.type === 'cancel') return replyResult(this.ctx.router, e);
        const values = formValues(form);
        if (values.formType !== undefined && values.formType !== NODE_CONFIG_FORM) return this.fail(e, 'bad-request', pubsubError('invalid-options'));
        const applied = applyFields(config, values.fields, serverMax);
        if (!applied.ok) return this.fail(e, 'not-acceptable', undefined, applied.text);
        const growth = xmlBytes(storedConfig(applied.config)) - xmlBytes(row.config);
        const quota = checkQuota(await this.repo.usage(account.id), { items: 0, bytes: growth }, { maxBytes: this.limits.maxBytesPerUser }, 'PEP storage');
        if (!quota.ok) return this.fail(e, 'resource-constraint', undefined, quota.text);
        await this.repo.setConfig(row.id, storedConfig(applied.config));
        if (!applied.config.persist) await this.repo.purge(row.id);
        else await this.repo.trim(row.id, itemLimit(applied.config, serverMax));
        // XEP-0060 8.2: subscribers the new access model leaves out are unsubscribed and told.
        const roster = await this.rosterMap(account);
        const lost = (await this.repo.subscriptions(row.id)).filter((sub) => !this.subscriberAllowed(owner.bare, applied.config, roster, sub.bare));
        await this.cancel(owner, node, row.id, lost);
        return replyResult(this.ctx.router, e);
      }
      return { row, config };
    });
    if (outcome === true) return true;
    const { row, config } = outcome;
    if (action.name === 'delete') {
      // The recipients are worked out while the node and its access model still exist.
      const targets = config.notifyDelete ? await this.targets(account, owner, node, config) : [];
      await this.writes.run(account.id, () => this.repo.deleteNode(row.id));
      await this.send(owner, targets, () => x('delete', { node }));
    } else {
      await this.writes.run(account.id, () => this.repo.purge(row.id));
      await this.broadcast(account, owner, node, config, () => x('purge', { node }));
    }
    return replyResult(this.ctx.router, e);
  }

  // ---------------------------------------------------------------------------------------------
  // Notifications

  /**
   * The JIDs that get a notification of `node`: the owner's available resources and the allowed
   * contacts' resources, each only with NODE+notify in its capabilities (auto-subscription), and
   * the explicit subscribers (subscriberTargets). A resource that qualifies both ways is named once.
   * Explicit subscribers the access model no longer allows are unsubscribed and told.
   */
  async targets(account: Account, owner: Jid, node: string, config: NodeConfig): Promise<string[]> {
    if (!config.deliverNotifications) return [];
    const caps = this.ctx.services.need('caps');
    const out = new Set<string>();
    const localResources = (bare: string) => {
      for (const s of this.ctx.sessions.ofAccount(bare)) if (s.available && caps.wantsNotify(s.jid.full, node)) out.add(s.jid.full);
    };
    localResources(owner.bare);
    const subscriptions = this.limits.subscriptions ? await this.repo.nodeSubscriptions(account.id, node) : [];
    if (config.access === 'whitelist' && subscriptions.length === 0) return [...out];
    const roster = await this.rosterMap(account);
    if (config.access !== 'whitelist') {
      for (const item of roster.values()) {
        if (!allowedBy({ ...config, access: config.access === 'open' ? 'presence' : config.access }, item)) continue;
        const contact = Jid.tryParse(item.jid);
        if (!contact) continue;
        if (this.ctx.router.isLocalHost(contact.domain)) {
          if (contact.local) localResources(contact.bare);
          continue;
        }
        for (const r of caps.availableResources(owner.bare, contact.bare)) if (r.features?.has(`${node}+notify`)) out.add(r.jid);
      }
    }
    const lost: PepSubscriptionRow[] = [];
    const bareSubscribers = new Set<string>();
    for (const sub of subscriptions) {
      if (!this.subscriberAllowed(owner.bare, config, roster, sub.bare)) lost.push(sub);
      else if (sub.jid === sub.bare) bareSubscribers.add(sub.bare);
      else out.add(sub.jid);
    }
    for (const bare of bareSubscribers) for (const to of this.subscriberTargets(owner, node, bare, out)) out.add(to);
    if (lost.length > 0) await this.cancel(owner, node, lost[0]!.nodeId, lost);
    return [...out];
  }

  /**
   * Where a notification for a subscription at bare JID `bare` goes (XEP-0163 4.3.1, 4.3.2): to
   * the subscriber's available resources whose capabilities show interest (+notify), as far as
   * the service knows them (local sessions; remote resources whose presence reached the owner);
   * when it knows none, one notification to the bare JID, which the subscriber's server delivers
   * (RFC 6121 8.5.2.1.1: a headline to every available resource). Nothing when a resource of the
   * subscriber is among `already` (it would be a second copy there).
   */
  private subscriberTargets(owner: Jid, node: string, bare: string, already: ReadonlySet<string>): string[] {
    const caps = this.ctx.services.need('caps');
    const subscriber = Jid.tryParse(bare);
    if (!subscriber) return [];
    const interested: string[] = [];
    if (subscriber.local && this.ctx.router.isLocalHost(subscriber.domain)) {
      for (const s of this.ctx.sessions.ofAccount(bare)) if (s.available && caps.wantsNotify(s.jid.full, node)) interested.push(s.jid.full);
    } else {
      for (const r of caps.availableResources(owner.bare, bare)) if (r.features?.has(`${node}+notify`)) interested.push(r.jid);
    }
    const fresh = interested.filter((j) => !already.has(j));
    if (interested.length > 0) return fresh;
    for (const j of already) if (Jid.tryParse(j)?.bare === bare) return [];
    return [bare];
  }

  /** The owner's roster by contact JID. */
  private async rosterMap(account: Account): Promise<Map<string, RosterItem>> {
    return new Map((await this.ctx.storage.roster.list(account.id)).map((i) => [i.jid, i]));
  }

  /** Whether the access model still lets subscriber `bare` read the node (the owner always). */
  private subscriberAllowed(owner: string, config: NodeConfig, roster: ReadonlyMap<string, RosterItem>, bare: string): boolean {
    return bare === owner || allowedBy(config, roster.get(bare) ?? null);
  }

  /**
   * Ends subscriptions the service cancels (access lost, the owner removed them) and tells each
   * subscribed JID (XEP-0060 8.8.4: a message with the subscription state 'none').
   */
  private async cancel(owner: Jid, node: string, nodeId: number, subscriptions: readonly { jid: string }[]): Promise<void> {
    for (const sub of subscriptions) {
      if (!(await this.repo.unsubscribe(nodeId, sub.jid))) continue;
      await this.ctx.router.send(
        x('message', { from: owner.bare, to: sub.jid, id: randomHex(8) }, x('pubsub', { xmlns: PUBSUB }, x('subscription', { node, jid: sub.jid, subscription: 'none' }))),
      );
    }
  }

  /** A roster item of the owner changed: subscriptions of that contact its access models no longer allow end. */
  async rosterChanged(owner: Jid, accountId: number, contact: string): Promise<void> {
    const bare = Jid.tryParse(contact)?.bare;
    if (!bare || bare === owner.bare) return;
    const subscriptions = await this.repo.subscriptionsOf(accountId, bare);
    if (subscriptions.length === 0) return;
    const item = await this.ctx.storage.roster.get(accountId, bare);
    for (const sub of subscriptions) {
      if (!allowedBy(parseStoredConfig(sub.config), item)) await this.cancel(owner, sub.node, sub.nodeId, [sub]);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Explicit subscriptions (XEP-0060 6.1, 6.2, 5.6, 5.7; 8.8 and 8.9 for the owner)

  /**
   * Subscribe (6.1). The JID must be the requester's (bare or full); a node the requester may not
   * read gets item-not-found like a node that does not exist (P17, instead of 6.1.3's
   * presence-subscription-required, not-in-roster-group and closed-node, which would tell that the
   * node exists and how it is configured). Subscription options are not supported (6.3).
   */
  private async subscribe(e: StanzaEvent, request: Element, options: Element | undefined): Promise<true> {
    const node = request.attrs.node;
    if (!node) return this.fail(e, 'bad-request', pubsubError('nodeid-required'));
    const jid = Jid.tryParse(request.attrs.jid);
    if (!jid || jid.bare !== e.from.bare) return this.fail(e, 'bad-request', pubsubError('invalid-jid'));
    if (options?.getChild('x', NS.dataForms)) return this.unsupported(e, 'subscription-options');
    if ([...jid.full].length > PEP_LIMITS.subscriber) return this.fail(e, 'not-acceptable', undefined, `subscribed JIDs have at most ${PEP_LIMITS.subscriber} characters`);
    const account = await this.account(e.to);
    const row = account ? await this.repo.node(account.id, node) : null;
    if (!account || !row) return this.fail(e, 'item-not-found');
    const config = parseStoredConfig(row.config);
    const owner = e.to.toBare();
    if (!(await this.mayRead(account.id, owner.bare, jid.bare, config))) return this.fail(e, 'item-not-found');
    const max = this.limits.maxSubscriptionsPerNode;
    const stored = await this.writes.run(account.id, () => this.repo.subscribe(row.id, jid.full, jid.bare, this.ctx.clock.now(), max));
    if (!stored) return this.fail(e, 'policy-violation', pubsubError('too-many-subscriptions'), `at most ${max} subscriptions per node, ${PEP_LIMITS.subscriptionsPerBareJid} of one bare JID`);
    replyResult(this.ctx.router, e, x('pubsub', { xmlns: PUBSUB }, x('subscription', { node, jid: jid.full, subscription: 'subscribed' })));
    // 6.1.7: the last published item, after the result.
    if (config.sendLast !== 'never' && config.deliverNotifications) {
      const [last] = await this.repo.items(row.id, 1);
      const to = jid.resource ? [jid.full] : this.subscriberTargets(owner, node, jid.bare, new Set());
      if (last) await this.send(owner, to, () => x('items', { node }, itemElement(last.itemId, config.deliverPayloads ? last.payload : null)), last.updatedAt);
    }
    return true;
  }

  /** Unsubscribe (6.2): only the requester's own JIDs (forbidden otherwise, 6.2.3.3). */
  private async unsubscribe(e: StanzaEvent, request: Element): Promise<true> {
    const node = request.attrs.node;
    if (!node) return this.fail(e, 'bad-request', pubsubError('nodeid-required'));
    const jid = Jid.tryParse(request.attrs.jid);
    if (!jid) return this.fail(e, 'bad-request', pubsubError('invalid-jid'));
    if (jid.bare !== e.from.bare) return this.fail(e, 'forbidden');
    const account = await this.account(e.to);
    const row = account ? await this.repo.node(account.id, node) : null;
    if (!account || !row) return this.fail(e, 'item-not-found');
    if (await this.writes.run(account.id, () => this.repo.unsubscribe(row.id, jid.full))) return replyResult(this.ctx.router, e);
    if (!(await this.mayRead(account.id, e.to.bare, jid.bare, parseStoredConfig(row.config)))) return this.fail(e, 'item-not-found');
    return this.fail(e, 'unexpected-request', pubsubError('not-subscribed'));
  }

  /**
   * The requester's subscriptions to the account's nodes (5.6), of one node or all. An account
   * or node that does not exist, or that the requester may not read, has none: the same answer.
   */
  private async ownSubscriptions(e: StanzaEvent, node: string | undefined): Promise<true> {
    const account = await this.account(e.to);
    const mine = account ? await this.repo.subscriptionsOf(account.id, e.from.bare) : [];
    const list = mine.filter((s) => node === undefined || s.node === node).map((s) => x('subscription', { node: s.node, jid: s.jid, subscription: 'subscribed' }));
    return replyResult(this.ctx.router, e, x('pubsub', { xmlns: PUBSUB }, x('subscriptions', { node }, list)));
  }

  /**
   * The requester's affiliations (5.7): the owner owns every node; a contact the presence or roster
   * access model lets read a node is a member of it (XEP-0163 5's subscriber); nobody else has one.
   */
  private async ownAffiliations(e: StanzaEvent, node: string | undefined): Promise<true> {
    const account = await this.account(e.to);
    const list: Element[] = [];
    if (account) {
      const isOwner = e.from.bare === e.to.bare;
      const item = isOwner ? null : await this.ctx.storage.roster.get(account.id, e.from.bare);
      for (const row of await this.repo.nodes(account.id)) {
        if (node !== undefined && row.node !== node) continue;
        const config = parseStoredConfig(row.config);
        if (isOwner) list.push(x('affiliation', { node: row.node, affiliation: 'owner' }));
        else if (config.access !== 'open' && allowedBy(config, item)) list.push(x('affiliation', { node: row.node, affiliation: 'member' }));
      }
    }
    return replyResult(this.ctx.router, e, x('pubsub', { xmlns: PUBSUB }, x('affiliations', { node }, list)));
  }

  /**
   * The owner's lists of a node (8.8, 8.9): its explicit subscriptions (get), ending subscriptions
   * (set with subscription 'none'; the subscribers are told, 8.8.4), its affiliations (get: the
   * owner; members follow from the access model and are not kept). The owner cannot subscribe
   * others: a subscription is the subscriber's own request.
   */
  private async ownerLists(e: StanzaEvent, account: Account, action: Element, changes: Element[] | null): Promise<true> {
    const node = action.attrs.node;
    if (action.name === 'subscriptions' && !this.limits.subscriptions) return this.unsupported(e, 'manage-subscriptions');
    if (!node) return this.fail(e, 'bad-request', pubsubError('nodeid-required'));
    const row = await this.repo.node(account.id, node);
    if (!row) return this.fail(e, 'item-not-found');
    const owner = e.to.toBare();
    if (action.name === 'affiliations') {
      return replyResult(this.ctx.router, e, x('pubsub', { xmlns: PUBSUB_OWNER }, x('affiliations', { node }, x('affiliation', { jid: owner.bare, affiliation: 'owner' }))));
    }
    if (changes === null) {
      const list = (await this.repo.subscriptions(row.id)).map((s) => x('subscription', { jid: s.jid, subscription: 'subscribed' }));
      return replyResult(this.ctx.router, e, x('pubsub', { xmlns: PUBSUB_OWNER }, x('subscriptions', { node }, list)));
    }
    const jids: string[] = [];
    for (const c of changes) {
      const jid = Jid.tryParse(c.attrs.jid);
      if (!jid) return this.fail(e, 'bad-request', pubsubError('invalid-jid'));
      if (c.attrs.subscription !== 'none') return this.fail(e, 'not-acceptable', undefined, "the owner can end subscriptions (subscription='none'), not make them");
      jids.push(jid.full);
    }
    await this.writes.run(account.id, () => this.cancel(owner, node, row.id, jids.map((jid) => ({ jid }))));
    return replyResult(this.ctx.router, e);
  }

  private async broadcast(account: Account, owner: Jid, node: string, config: NodeConfig, event: () => Element): Promise<void> {
    const targets = await this.targets(account, owner, node, config);
    await this.send(owner, targets, event);
  }

  private async send(owner: Jid, targets: readonly string[], event: () => Element, delay?: Date): Promise<void> {
    for (const to of targets) {
      const message = x('message', { from: owner.bare, to, type: 'headline', id: randomHex(8) }, x('event', { xmlns: PUBSUB_EVENT }, event()));
      if (delay) message.append(x('delay', { xmlns: NS.delay, from: owner.bare, stamp: delay.toISOString() }));
      await this.ctx.router.send(message);
    }
  }

  /**
   * A resource became available (or changed its capabilities) with +notify for some nodes: it
   * gets the last item of each such node it may read. Its own account's nodes and those of local
   * contacts are sent when the resource's own presence is seen (whether or not those contacts are
   * online); the nodes of the account that saw a remote contact's resource are sent to it.
   */
  async onFeatures(jid: string, observer: string, features: ReadonlySet<string>): Promise<void> {
    const resource = Jid.tryParse(jid);
    if (!resource || !resource.resource) return;
    const nodes = new Set<string>();
    for (const f of features) if (f.endsWith('+notify')) nodes.add(f.slice(0, -'+notify'.length));
    if (nodes.size === 0) return;
    const ownerJid = Jid.tryParse(observer);
    if (!ownerJid) return;
    if (resource.bare === observer) {
      const account = await this.account(ownerJid);
      if (!account) return;
      await this.sendLast(ownerJid.bare, await this.repo.nodes(account.id), resource, nodes);
      // Local contacts whose presence the user receives, by domain: their nodes in a few queries.
      const byDomain = new Map<string, string[]>();
      for (const item of await this.ctx.storage.roster.list(account.id)) {
        if (item.subscription !== 'to' && item.subscription !== 'both') continue;
        const contact = Jid.tryParse(item.jid);
        if (!contact?.local || contact.resource || !this.ctx.router.isLocalHost(contact.domain)) continue;
        byDomain.set(contact.domain, [...(byDomain.get(contact.domain) ?? []), contact.local]);
      }
      for (const [domain, usernames] of byDomain) {
        const rows = await this.repo.nodesOfAccounts(domain, usernames, [...nodes]);
        const byOwner = new Map<string, PepNodeRow[]>();
        for (const row of rows) {
          const owner = `${row.username}@${domain}`;
          byOwner.set(owner, [...(byOwner.get(owner) ?? []), row]);
        }
        for (const [owner, ownerRows] of byOwner) await this.sendLast(owner, ownerRows, resource, nodes);
      }
    } else if (!this.ctx.router.isLocalHost(resource.domain)) {
      const account = await this.account(ownerJid);
      if (account) await this.sendLast(ownerJid.bare, await this.repo.nodes(account.id), resource, nodes);
    }
  }

  /** The last item of each of `owner`'s nodes (rows) that `to` wants (+notify) and may read. */
  private async sendLast(owner: string, rows: readonly PepNodeRow[], to: Jid, nodes: ReadonlySet<string>): Promise<void> {
    const from = Jid.parse(owner);
    for (const row of rows) {
      if (!nodes.has(row.node)) continue;
      const config = parseStoredConfig(row.config);
      if (config.sendLast !== 'on_sub_and_presence' || !config.deliverNotifications) continue;
      if (!(await this.mayRead(row.accountId, owner, to.bare, config))) continue;
      const [last] = await this.repo.items(row.id, 1);
      if (!last) continue;
      await this.send(from, [to.full], () => x('items', { node: row.node }, itemElement(last.itemId, config.deliverPayloads ? last.payload : null)), last.updatedAt);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Service discovery of the account (XEP-0030; XEP-0060 5.2, 5.3)

  /** disco#items of the bare JID: the nodes the requester may read; undefined leaves it to the disco module. */
  async discoItems(e: StanzaEvent): Promise<true | undefined> {
    if (!(await mayViewPresenceInfo(this.ctx.storage, e.to, e.from))) return undefined;
    const account = await this.account(e.to);
    if (!account) return undefined;
    const query = e.stanza.firstElement()!;
    const node = query.attrs.node;
    const owner = e.to.toBare();
    if (node === undefined) {
      const items: Element[] = [];
      for (const row of await this.repo.nodes(account.id)) {
        if (await this.mayRead(account.id, owner.bare, e.from.bare, parseStoredConfig(row.config))) items.push(x('item', { jid: owner.bare, node: row.node }));
      }
      return replyResult(this.ctx.router, e, x('query', { xmlns: NS.discoItems }, items));
    }
    const row = await this.repo.node(account.id, node);
    if (!row || !(await this.mayRead(account.id, owner.bare, e.from.bare, parseStoredConfig(row.config)))) return this.fail(e, 'item-not-found');
    const items = (await this.repo.items(row.id)).map((i) => x('item', { jid: owner.bare, name: i.itemId }));
    return replyResult(this.ctx.router, e, x('query', { xmlns: NS.discoItems, node }, items));
  }

  /** disco#info of one node (XEP-0060 5.3): for requesters who may read it. */
  async discoInfo(e: StanzaEvent): Promise<true | undefined> {
    const node = e.stanza.firstElement()!.attrs.node;
    if (node === undefined) return undefined;
    if (!(await mayViewPresenceInfo(this.ctx.storage, e.to, e.from))) return undefined;
    const account = await this.account(e.to);
    const row = account ? await this.repo.node(account.id, node) : null;
    if (!account || !row || !(await this.mayRead(account.id, e.to.bare, e.from.bare, parseStoredConfig(row.config)))) return undefined;
    return replyResult(this.ctx.router, e, x('query', { xmlns: NS.discoInfo, node }, x('identity', { category: 'pubsub', type: 'leaf' }), x('feature', { var: PUBSUB })));
  }
}

/**
 * P11: PEP data is the user's own. It is kept until the user (their client) retracts, purges or
 * deletes it, and deleted with the account (the tables cascade from accounts). The sweep enforces
 * the one limit that may change after the data was stored: nodes holding more items than
 * pep.maxItemsPerNode allows now (the setting was lowered) lose their oldest items.
 */
const pepItemsClass: RetentionClass = {
  name: 'pep-items',
  clause: 'P11',
  describe: (config) => `PEP data (published and private nodes): kept until the user deletes it or the account is deleted; items over pep.maxItemsPerNode (${config.pep.maxItemsPerNode}) per node, oldest first`,
  async run(env, _now, { dryRun }) {
    const repo = env.storage.repository(pepStorage);
    const max = env.config.pep.maxItemsPerNode;
    const nodes = await repo.nodesOver(max);
    let n = 0;
    for (const id of nodes) {
      n += dryRun ? Math.max(0, (await repo.items(id)).length - max) : (await repo.trim(id, max)).length;
      // One node per transaction; other work runs between them.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return n;
  },
};

/**
 * Explicit subscriptions (P11, P23): who follows whose node. Those of local accounts last until
 * the subscriber unsubscribes, the access model leaves them out, the owner ends them, or the node
 * or either account is deleted (all outside the sweep). The sweep deletes those of JIDs on other
 * servers pep.remoteSubscriptionLifetime after they were made or last renewed (a subscribe again),
 * so that the addresses of remote strangers following an open node are not kept for ever; those of
 * local accounts that no longer exist (deleted while the module did not run: `gatehouse user del`
 * without a running server); and every stored one while pep.subscriptions is off.
 */
const pepSubscriptionsClass: RetentionClass = {
  name: 'pep-subscriptions',
  clause: 'P11',
  describe: (config) =>
    config.pep.subscriptions
      ? `explicit PEP subscriptions: until unsubscribed, no longer allowed by the access model, or the node or either account is deleted; those of JIDs on other servers ${Math.round(config.pep.remoteSubscriptionLifetime / 86_400_000)} days after they were made or renewed (pep.remoteSubscriptionLifetime); those of local accounts that no longer exist`
      : 'explicit PEP subscriptions: pep.subscriptions is off, every stored one is deleted',
  async run(env, now, { dryRun, batch }) {
    const repo = env.storage.repository(pepStorage);
    if (!env.config.pep.subscriptions) return dryRun ? (await repo.remoteSubscriptionsBefore(new Date(8.64e15), [], Number.MAX_SAFE_INTEGER)).length : repo.deleteAllSubscriptions();
    const before = new Date(now.getTime() - env.config.pep.remoteSubscriptionLifetime);
    const hosts = env.config.hosts.map((h) => h.domain);
    const orphans = (await Promise.all(hosts.map((h) => repo.subscribersWithoutAccount(h)))).flat();
    if (dryRun) return (await repo.remoteSubscriptionsBefore(before, hosts, Number.MAX_SAFE_INTEGER)).length + orphans.length;
    let n = 0;
    for (const bare of orphans) n += await repo.deleteSubscriber(bare);
    return (
      n +
      (await inBatches(batch, async (limit) => {
        let deleted = 0;
        for (const sub of await repo.remoteSubscriptionsBefore(before, hosts, limit)) if (await repo.unsubscribe(sub.nodeId, sub.jid)) deleted++;
        return deleted;
      }))
    );
  },
};

export function createPepModule(): GatehouseModule {
  let unsubscribe: (() => void) | undefined;
  return {
    name: 'pep',
    config: pepConfigSection,
    needs: ['caps'],
    clauses: ['P11', 'P16', 'P17', 'P20', 'P23'],
    storage: pepStorage,
    accountData: pepAccountData,
    retention: [pepItemsClass, pepSubscriptionsClass],
    specs: [
      {
        id: 'XEP-0163',
        version: '1.2.2',
        status: 'partial',
        note:
          'notifications by +notify in entity capabilities (caps module) and to explicit subscribers (bare JIDs at their interested resources, else once at the bare JID, no second copy); last item on available presence of local and remote contacts, the owner online or not, and on subscribe; access models on every read, subscription and notification; owner and subscriber (member) affiliations. ' +
          'Missing: the XEP-0033 replyto address (SHOULD), leaving out resources with a negative priority',
      },
      {
        id: 'XEP-0060',
        version: '1.26.0',
        status: 'partial',
        note: 'PEP subset: publish (auto-create, publish-options), retract, items, create, configure, default, delete, purge; subscribe, unsubscribe and the subscriptions list (pep.subscriptions), the owner lists and ends subscriptions (8.8, with 8.8.4 notifications), affiliations read-only (5.7, 8.9); no subscription options, no owner-made subscriptions or affiliations; limits pep.*',
      },
      { id: 'XEP-0223', version: '1.1.1', status: 'complete', note: 'private (whitelist) nodes readable by the owner only' },
      {
        id: 'XEP-0398',
        version: '0.3.1',
        status: 'complete',
        note: "a published XEP-0084 avatar (its SHA-1 checked against the id) becomes the vCard PHOTO and a vCard PHOTO the avatar; the PHOTO's hash in every available presence, broadcast and directed (the vCard module's part)",
      },
    ],
    load(ctx) {
      const pep = new PepService(ctx);
      ctx.disco.accountIdentities.push({ category: 'pubsub', type: 'pep' });
      ctx.disco.addAccountFeature(PUBSUB, ...[...FEATURES, ...AFFILIATION_FEATURES].map((f) => `${PUBSUB}#${f}`), 'urn:xmpp:pep-vcard-conversion:0');
      // Announced while they are in force (P22 may hold pep.subscriptions back until announced).
      const subscriptionFeatures = (on: boolean) => {
        for (const f of SUBSCRIPTION_FEATURES) ctx.disco.accountFeatures[on ? 'add' : 'delete'](`${PUBSUB}#${f}`);
      };
      subscriptionFeatures(ctx.config.pep.subscriptions);
      ctx.hooks.on('config/in-force', ({ after }) => subscriptionFeatures(after.pep.subscriptions));
      ctx.hooks.on('roster/changed', ({ owner, accountId, contact }) => (ctx.config.pep.subscriptions ? pep.rosterChanged(owner, accountId, contact) : undefined));
      // P23: the subscriptions the deleted account held on other accounts' nodes (its own nodes' go with them).
      ctx.hooks.on('account/deleted', async ({ jid }) => {
        await pep.repo.deleteSubscriber(jid.bare);
      });
      ctx.hooks.on(`iq-get/bare/${PUBSUB}:pubsub`, (e) => pep.get(e));
      ctx.hooks.on('vcard/photo', ({ account, jid, photo }) => pep.fromVcard(account, jid, photo));
      ctx.hooks.on(`iq-set/bare/${PUBSUB}:pubsub`, (e) => pep.set(e));
      ctx.hooks.on(`iq-get/bare/${PUBSUB_OWNER}:pubsub`, (e) => pep.ownerGet(e));
      ctx.hooks.on(`iq-set/bare/${PUBSUB_OWNER}:pubsub`, (e) => pep.ownerSet(e));
      // Before the disco module's answers for the account (which list no nodes).
      ctx.hooks.on(`iq-get/bare/${NS.discoItems}:query`, (e) => pep.discoItems(e), 'intercept');
      ctx.hooks.on(`iq-get/bare/${NS.discoInfo}:query`, (e) => pep.discoInfo(e), 'intercept');
      unsubscribe = ctx.services.need('caps').onFeatures(({ jid, observer, features }) => {
        pep.onFeatures(jid, observer, features).catch((err) => ctx.log.warn('pep: last item delivery failed', { error: err instanceof Error ? err.message : String(err) }));
      });
    },
    unload() {
      unsubscribe?.();
      unsubscribe = undefined;
    },
  };
}
