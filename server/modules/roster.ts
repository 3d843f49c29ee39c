/**
 * RFC 6121 section 2: the roster, shared by all of a user's resources (P3). With versioning
 * (RFC 6121 2.6, XEP-0237 without incremental diffs) and the two stream features clients look for.
 *
 * The RosterService below is shared with the presence module (one per server context): it owns
 * roster reads and writes, a per-account lock so that concurrent subscription stanzas and roster
 * sets never lose an update, roster pushes, and the presence a user's server sends when a contact
 * gains or loses a subscription.
 *
 * Pending inbound subscription requests from someone who is not in the user's roster (RFC 6121
 * 3.1.3: "MUST NOT create a roster item") are stored as a roster item marked with HIDDEN_GROUP, a
 * group name no XML document can carry. Such an item is never shown, pushed or counted as a
 * roster entry; it becomes a normal item as soon as the user acts on it.
 *
 * Decisions:
 * - Roster get/set only from the account's own client (origin c2s, same bare JID); to another
 *   account's bare JID: forbidden, whether that account exists or not (P17).
 * - Roster set validation (2.3.3): not exactly one item, duplicate groups or an unknown
 *   'subscription' value: bad-request; empty or over-long group, over-long name: not-acceptable;
 *   invalid JID: jid-malformed; the user's own JID: not-allowed (as Prosody). The values
 *   none/to/from/both of 'subscription' and any 'ask' are ignored (2.1.2.5: a client cannot set
 *   them, and some clients echo them back).
 * - Removal (2.5.2): unsubscribe if the user had (or asked for) the contact's presence,
 *   unsubscribed if the contact had (or asked for) the user's, unavailable presence from the
 *   user's available resources if the contact was subscribed; push with subscription='remove'.
 * - 'ver' is the storage's per-account counter, in every result and push.
 */
import type { GatehouseModule, ServerContext } from '../core/context.js';
import type { StanzaEvent } from '../core/hooks.js';
import type { ClientSession } from '../core/session.js';
import { replyError, replyResult } from '../core/iq.js';
import type { Account, RosterItem } from '../../storage/types.js';
import { Element, x } from '../../shared/xml/element.js';
import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import { randomBytes } from 'node:crypto';
import { hasFrom, hasTo, isHidden, rosterItemElement, type PresenceEffect } from '../core/subscription-states.js';

export { HIDDEN_GROUP } from '../core/subscription-states.js';

/** Limits for names and group names (not-acceptable above them, RFC 6121 2.3.3). */
export const MAX_NAME_CHARS = 1023;
export const MAX_GROUP_CHARS = 1023;
export const MAX_GROUPS = 256;


declare module '../core/services.js' {
  interface Services {
    roster: RosterService;
  }
}

declare module '../core/hooks.js' {
  interface HookEvents {
    /**
     * A roster item of `owner` was stored or deleted (subscription state, groups): fired by the
     * roster service after the change, so that what depends on it (PEP subscriptions) follows.
     */
    'roster/changed': { owner: Jid; accountId: number; contact: string };
  }
}

/** Accounts kept in RosterService's cache, least recently used evicted first. */
const ACCOUNT_CACHE_SIZE = 10_000;

/** The one RosterService of a server (provided by the roster module). */
export function rosterService(ctx: ServerContext): RosterService {
  return ctx.services.need('roster');
}

export class RosterService {
  private readonly locks = new Map<string, Promise<void>>();
  private readonly accounts = new Map<string, Account>();

  constructor(readonly ctx: ServerContext) {}

  /** The local account of a bare JID, or null (cached while it exists). */
  async account(jid: Jid): Promise<Account | null> {
    if (!jid.local || !this.ctx.router.isLocalHost(jid.domain)) return null;
    const bare = jid.bare;
    const cached = this.accounts.get(bare);
    if (cached) {
      this.remember(bare, cached);
      return cached;
    }
    const account = await this.ctx.storage.accounts.get(jid.local, jid.domain);
    if (account) this.remember(bare, account);
    return account;
  }

  forget(bare: string): void {
    this.accounts.delete(bare);
  }

  /** The account a session authenticated as: initial presence then needs no lookup. */
  remember(bare: string, account: Account): void {
    this.accounts.delete(bare);
    this.accounts.set(bare, account);
    while (this.accounts.size > ACCOUNT_CACHE_SIZE) this.accounts.delete(this.accounts.keys().next().value!);
  }

  /** Runs fn with the account's roster to itself: read-modify-write cycles never interleave. */
  async locked<T>(bare: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(bare) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = previous.then(() => mine);
    this.locks.set(bare, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(bare) === tail) this.locks.delete(bare);
    }
  }

  /** The roster entries the user sees (hidden pending-in records left out). */
  async visibleItems(accountId: number): Promise<RosterItem[]> {
    return (await this.ctx.storage.roster.list(accountId)).filter((i) => !isHidden(i));
  }

  /** Stores an item and pushes it (unless hidden or `push` is false). Returns the new version. */
  async store(owner: Jid, accountId: number, item: RosterItem, push = true): Promise<string> {
    const ver = await this.ctx.storage.roster.put(accountId, item);
    if (push && !isHidden(item)) this.push(owner, rosterItemElement(item), ver);
    await this.ctx.hooks.emit('roster/changed', { owner, accountId, contact: item.jid });
    return ver;
  }

  /** Deletes an item; a visible one is pushed with subscription='remove'. */
  async delete(owner: Jid, accountId: number, item: RosterItem): Promise<string> {
    const ver = await this.ctx.storage.roster.remove(accountId, item.jid);
    if (!isHidden(item)) this.push(owner, x('item', { jid: item.jid, subscription: 'remove' }), ver);
    await this.ctx.hooks.emit('roster/changed', { owner, accountId, contact: item.jid });
    return ver;
  }

  /** A roster push (RFC 6121 2.1.6) to every interested resource of the account. */
  push(owner: Jid, item: Element, ver: string): void {
    for (const session of this.ctx.sessions.ofAccount(owner.bare)) {
      if (!session.interested) continue;
      session.send(x('iq', { type: 'set', id: 'push-' + randomBytes(6).toString('hex'), to: session.jid.full }, x('query', { xmlns: NS.roster, ver }, item.clone())));
    }
  }

  /**
   * Presence from each of the user's available resources to a contact: their current presence
   * when the contact gains a subscription (RFC 6121 3.1.5), unavailable when it loses it (3.2.2).
   */
  async sendPresenceOf(user: Jid, contact: string, effect: PresenceEffect): Promise<void> {
    if (effect === 'none') return;
    for (const s of this.ctx.sessions.ofAccount(user.bare)) {
      if (!s.available) continue;
      const stanza = effect === 'available' && s.presence ? s.presence.clone() : x('presence', { type: 'unavailable' });
      stanza.attrs.from = s.jid.full;
      stanza.attrs.to = contact;
      await this.ctx.router.send(stanza);
    }
  }

  /**
   * Removes a roster item as a roster set with subscription='remove' does (RFC 6121 2.5.2).
   * Returns false if the user has no such (visible) item.
   */
  async remove(owner: Jid, accountId: number, contact: string): Promise<boolean> {
    const outcome = await this.locked(owner.bare, async () => {
      const item = await this.ctx.storage.roster.get(accountId, contact);
      if (!item || isHidden(item)) return null;
      await this.delete(owner, accountId, item);
      return item;
    });
    if (!outcome) return false;
    const from = owner.bare;
    if (hasTo(outcome.subscription) || outcome.ask) await this.ctx.router.send(x('presence', { type: 'unsubscribe', from, to: contact }));
    if (hasFrom(outcome.subscription) || outcome.pendingIn) {
      await this.ctx.router.send(x('presence', { type: 'unsubscribed', from, to: contact }));
      if (hasFrom(outcome.subscription)) await this.sendPresenceOf(owner, contact, 'unavailable');
    }
    return true;
  }
}

type Validated = { ok: true; remove: boolean; jid: Jid; name: string | null; groups: string[] } | { ok: false; condition: string; text: string };

/** RFC 6121 2.3.3 checks on a roster set. */
export function validateRosterSet(query: Element, owner: Jid): Validated {
  const items = query.getChildren('item', NS.roster);
  if (items.length !== 1 || query.elements.length !== 1) return { ok: false, condition: 'bad-request', text: 'a roster set carries exactly one item' };
  const item = items[0]!;
  const jidAttr = item.attrs.jid;
  if (!jidAttr) return { ok: false, condition: 'bad-request', text: 'the item has no jid' };
  const jid = Jid.tryParse(jidAttr);
  if (!jid) return { ok: false, condition: 'jid-malformed', text: 'invalid item jid' };
  if (jid.resource) return { ok: false, condition: 'bad-request', text: 'roster items are bare JIDs' };
  const subscription = item.attrs.subscription;
  const remove = subscription === 'remove';
  if (subscription !== undefined && !remove && !['none', 'to', 'from', 'both'].includes(subscription)) {
    return { ok: false, condition: 'bad-request', text: 'invalid subscription value' };
  }
  if (remove) return { ok: true, remove, jid, name: null, groups: [] };
  if (jid.bare === owner.bare) return { ok: false, condition: 'not-allowed', text: 'the account itself cannot be a roster item' };
  const rawName = item.attrs.name;
  if (rawName !== undefined && [...rawName].length > MAX_NAME_CHARS) return { ok: false, condition: 'not-acceptable', text: 'name too long' };
  const groups: string[] = [];
  const groupEls = item.getChildren('group', NS.roster);
  if (groupEls.length > MAX_GROUPS) return { ok: false, condition: 'not-acceptable', text: 'too many groups' };
  for (const g of groupEls) {
    const name = g.text();
    if (name.length === 0) return { ok: false, condition: 'not-acceptable', text: 'empty group name' };
    if ([...name].length > MAX_GROUP_CHARS) return { ok: false, condition: 'not-acceptable', text: 'group name too long' };
    if (groups.includes(name)) return { ok: false, condition: 'bad-request', text: 'duplicate group' };
    groups.push(name);
  }
  return { ok: true, remove, jid, name: rawName ? rawName : null, groups };
}

function ownerSession(e: StanzaEvent): ClientSession | null {
  if (e.origin.kind !== 'c2s') return null;
  if (e.from.bare !== e.to.bare || e.to.resource) return null;
  return e.origin.session;
}

async function handleGet(ctx: ServerContext, e: StanzaEvent): Promise<true> {
  const session = ownerSession(e);
  if (!session) return replyError(ctx.router, e, 'forbidden');
  const service = rosterService(ctx);
  const account = await service.account(e.to);
  if (!account) return replyError(ctx.router, e, 'internal-server-error');
  session.interested = true;
  const query = e.stanza.firstElement()!;
  const ver = await ctx.storage.roster.version(account.id);
  if (query.attrs.ver !== undefined && query.attrs.ver === ver) {
    // RFC 6121 2.6.3: the client's copy is current: an empty result, changes come as pushes.
    return replyResult(ctx.router, e);
  }
  const items = await service.visibleItems(account.id);
  return replyResult(ctx.router, e, x('query', { xmlns: NS.roster, ver }, items.map((i) => rosterItemElement(i))));
}

async function handleSet(ctx: ServerContext, e: StanzaEvent): Promise<true> {
  const session = ownerSession(e);
  if (!session) return replyError(ctx.router, e, 'forbidden');
  const service = rosterService(ctx);
  const owner = e.to.toBare();
  const account = await service.account(owner);
  if (!account) return replyError(ctx.router, e, 'internal-server-error');
  const v = validateRosterSet(e.stanza.firstElement()!, owner);
  if (!v.ok) return replyError(ctx.router, e, v.condition, v.text);
  const contact = v.jid.bare;
  if (v.remove) {
    // 2.5.3: removing an item that does not exist is item-not-found.
    const found = await service.remove(owner, account.id, contact);
    return found ? replyResult(ctx.router, e) : replyError(ctx.router, e, 'item-not-found');
  }
  await service.locked(owner.bare, async () => {
    const existing = await ctx.storage.roster.get(account.id, contact);
    const item: RosterItem = existing
      ? { ...existing, name: v.name, groups: v.groups }
      : { jid: contact, name: v.name, subscription: 'none', ask: false, pendingIn: false, approved: false, groups: v.groups };
    await service.store(owner, account.id, item);
  });
  return replyResult(ctx.router, e);
}

export function createRosterModule(): GatehouseModule {
  return {
    name: 'roster',
    specs: [
      { id: 'RFC 6121', version: 'section 2 (roster management), 2.6 (versioning)', status: 'complete', note: 'full roster on version mismatch, no incremental diffs' },
      { id: 'XEP-0237', version: '1.3', status: 'partial', note: 'roster versioning without diffs: a changed version returns the whole roster' },
    ],
    provides: ['roster'],
    load(ctx) {
      const { hooks } = ctx;
      const roster = new RosterService(ctx);
      ctx.services.provide('roster', roster);
      hooks.on(`iq-get/bare/${NS.roster}:query`, (e) => handleGet(ctx, e));
      hooks.on(`iq-set/bare/${NS.roster}:query`, (e) => handleSet(ctx, e));
      hooks.on('c2s/features', ({ stage, features }) => {
        if (stage !== 'post-auth') return;
        features.append(x('ver', { xmlns: NS.rosterver }));
        features.append(x('sub', { xmlns: NS.preApproval }));
      });
      hooks.on('session/bound', ({ session, account }) => {
        roster.remember(session.jid.bare, account);
      });
      hooks.on('account/deleted', ({ jid }) => {
        roster.forget(jid.bare);
      });
      // An account deleted through another cluster node: its cached row goes here too.
      ctx.services.get('cluster')?.onInvalidate('account', (bare) => roster.forget(bare));
    },
  };
}
