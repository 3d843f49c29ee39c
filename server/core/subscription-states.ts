/**
 * RFC 6121 Appendix A: presence subscription states and the server's processing of
 * subscription-related presence stanzas, as pure, table-driven functions.
 *
 * States are described from the perspective of the user whose roster holds the item; "outbound"
 * stanzas are the ones the user sends to the contact (Appendix A.2, processed by the user's
 * server), "inbound" the ones the contact's server delivers to the user (Appendix A.3).
 *
 * The transition tables below are the RFC tables, row for row. The functions add what the
 * prose of sections 3.1-3.4 says around them: roster pushes, the presence the user's server sends
 * to the contact when the contact gains or loses the user's presence, the automatic reply to a
 * subscribe from an already subscribed contact (3.1.3), and subscription pre-approval (3.4).
 */
import type { RosterItem, Storage, Subscription } from '../../storage/types.js';
import type { Jid } from '../../shared/jid.js';
import { x, type Element } from '../../shared/xml/element.js';

export type SubscriptionStanza = 'subscribe' | 'subscribed' | 'unsubscribe' | 'unsubscribed';

/** The nine defined states of RFC 6121 A.1. */
export type StateName =
  | 'None'
  | 'None + Pending Out'
  | 'None + Pending In'
  | 'None + Pending Out+In'
  | 'To'
  | 'To + Pending In'
  | 'From'
  | 'From + Pending Out'
  | 'Both';

export const STATE_NAMES: readonly StateName[] = [
  'None',
  'None + Pending Out',
  'None + Pending In',
  'None + Pending Out+In',
  'To',
  'To + Pending In',
  'From',
  'From + Pending Out',
  'Both',
];

/** A roster item's subscription state (the defined state plus the pre-approval flag). */
export interface SubState {
  subscription: Subscription;
  /** Outbound request pending: ask='subscribe'. */
  pendingOut: boolean;
  /** Inbound request pending (not shown in the roster). */
  pendingIn: boolean;
  /** Inbound subscription pre-approved (RFC 6121 3.4): approved='true'. */
  approved: boolean;
}

/** What the user's server sends to the contact on behalf of the user's available resources. */
export type PresenceEffect = 'none' | 'available' | 'unavailable';

export interface Transition {
  /** The Appendix A table that decided the transition, e.g. 'A.2.1'. */
  table: string;
  from: StateName;
  state: SubState;
  /** The defined state after the transition. */
  to: StateName;
  /** Whether the stored item changes (subscription, pending flags or pre-approval). */
  changed: boolean;
  /**
   * Outbound: the stanza is routed to the contact. Inbound: it is delivered to the user's
   * available resources.
   */
  route: boolean;
  /** A roster push to the user's interested resources (what the roster shows changed). */
  rosterPush: boolean;
  /**
   * 'available': the current presence of each of the user's available resources goes to the
   * contact (the contact now has a subscription from the user: 3.1.5, 3.4, 3.1.3);
   * 'unavailable': unavailable presence from each available resource goes to the contact (the
   * contact lost its subscription: 3.2.2, 3.3.3).
   */
  presence: PresenceEffect;
  /** Inbound only: the user's server answers the contact with this stanza itself (3.1.3, 3.4). */
  autoReply?: 'subscribed';
}

export function stateName(s: Pick<SubState, 'subscription' | 'pendingOut' | 'pendingIn'>): StateName {
  switch (s.subscription) {
    case 'none':
      if (s.pendingOut && s.pendingIn) return 'None + Pending Out+In';
      if (s.pendingOut) return 'None + Pending Out';
      if (s.pendingIn) return 'None + Pending In';
      return 'None';
    case 'to':
      return s.pendingIn ? 'To + Pending In' : 'To';
    case 'from':
      return s.pendingOut ? 'From + Pending Out' : 'From';
    case 'both':
      return 'Both';
  }
}

/** The stored shape of a defined state (pre-approval cleared). */
export function fromStateName(name: StateName): SubState {
  switch (name) {
    case 'None':
      return { subscription: 'none', pendingOut: false, pendingIn: false, approved: false };
    case 'None + Pending Out':
      return { subscription: 'none', pendingOut: true, pendingIn: false, approved: false };
    case 'None + Pending In':
      return { subscription: 'none', pendingOut: false, pendingIn: true, approved: false };
    case 'None + Pending Out+In':
      return { subscription: 'none', pendingOut: true, pendingIn: true, approved: false };
    case 'To':
      return { subscription: 'to', pendingOut: false, pendingIn: false, approved: false };
    case 'To + Pending In':
      return { subscription: 'to', pendingOut: false, pendingIn: true, approved: false };
    case 'From':
      return { subscription: 'from', pendingOut: false, pendingIn: false, approved: false };
    case 'From + Pending Out':
      return { subscription: 'from', pendingOut: true, pendingIn: false, approved: false };
    case 'Both':
      return { subscription: 'both', pendingOut: false, pendingIn: false, approved: false };
  }
}

/** A row: [route/deliver?, new state or null for "no state change"]. */
type Row = readonly [boolean, StateName | null];
type Table = Readonly<Record<StateName, Row>>;

/** A.2.1 Subscribe: the user's server always routes it (3.1.2), resent requests included. */
const A_2_1: Table = {
  None: [true, 'None + Pending Out'],
  'None + Pending Out': [true, null],
  'None + Pending In': [true, 'None + Pending Out+In'],
  'None + Pending Out+In': [true, null],
  To: [true, null],
  'To + Pending In': [true, null],
  From: [true, 'From + Pending Out'],
  'From + Pending Out': [true, null],
  Both: [true, null],
};

/** A.2.2 Unsubscribe. */
const A_2_2: Table = {
  None: [true, null],
  'None + Pending Out': [true, 'None'],
  'None + Pending In': [true, null],
  'None + Pending Out+In': [true, 'None + Pending In'],
  To: [true, 'None'],
  'To + Pending In': [true, 'None + Pending In'],
  From: [true, null],
  'From + Pending Out': [true, 'From'],
  Both: [true, 'From'],
};

/** A.2.3 Subscribed. */
const A_2_3: Table = {
  None: [false, null],
  'None + Pending Out': [false, null],
  'None + Pending In': [true, 'From'],
  'None + Pending Out+In': [true, 'From + Pending Out'],
  To: [false, null],
  'To + Pending In': [true, 'Both'],
  From: [false, null],
  'From + Pending Out': [false, null],
  Both: [false, null],
};

/** A.2.4 Unsubscribed. */
const A_2_4: Table = {
  None: [false, null],
  'None + Pending Out': [false, null],
  'None + Pending In': [true, 'None'],
  'None + Pending Out+In': [true, 'None + Pending Out'],
  To: [false, null],
  'To + Pending In': [true, 'To'],
  From: [true, 'None'],
  'From + Pending Out': [true, 'None + Pending Out'],
  Both: [true, 'To'],
};

/** A.3.1 Subscribe (inbound). From, From + Pending Out and Both: the server auto-replies "subscribed". */
const A_3_1: Table = {
  None: [true, 'None + Pending In'],
  'None + Pending Out': [true, 'None + Pending Out+In'],
  'None + Pending In': [false, null],
  'None + Pending Out+In': [false, null],
  To: [true, 'To + Pending In'],
  'To + Pending In': [false, null],
  From: [false, null],
  'From + Pending Out': [false, null],
  Both: [false, null],
};

/** A.3.2 Unsubscribe (inbound). */
const A_3_2: Table = {
  None: [false, null],
  'None + Pending Out': [false, null],
  'None + Pending In': [true, 'None'],
  'None + Pending Out+In': [true, 'None + Pending Out'],
  To: [false, null],
  'To + Pending In': [true, 'To'],
  From: [true, 'None'],
  'From + Pending Out': [true, 'None + Pending Out'],
  Both: [true, 'To'],
};

/** A.3.3 Subscribed (inbound). */
const A_3_3: Table = {
  None: [false, null],
  'None + Pending Out': [true, 'To'],
  'None + Pending In': [false, null],
  'None + Pending Out+In': [true, 'To + Pending In'],
  To: [false, null],
  'To + Pending In': [false, null],
  From: [false, null],
  'From + Pending Out': [true, 'Both'],
  Both: [false, null],
};

/** A.3.4 Unsubscribed (inbound). */
const A_3_4: Table = {
  None: [false, null],
  'None + Pending Out': [true, 'None'],
  'None + Pending In': [false, null],
  'None + Pending Out+In': [true, 'None + Pending In'],
  To: [true, 'None'],
  'To + Pending In': [true, 'None + Pending In'],
  From: [false, null],
  'From + Pending Out': [true, 'From'],
  Both: [true, 'From'],
};

export const OUTBOUND_TABLES: Readonly<Record<SubscriptionStanza, { id: string; table: Table }>> = {
  subscribe: { id: 'A.2.1', table: A_2_1 },
  unsubscribe: { id: 'A.2.2', table: A_2_2 },
  subscribed: { id: 'A.2.3', table: A_2_3 },
  unsubscribed: { id: 'A.2.4', table: A_2_4 },
};

export const INBOUND_TABLES: Readonly<Record<SubscriptionStanza, { id: string; table: Table }>> = {
  subscribe: { id: 'A.3.1', table: A_3_1 },
  unsubscribe: { id: 'A.3.2', table: A_3_2 },
  subscribed: { id: 'A.3.3', table: A_3_3 },
  unsubscribed: { id: 'A.3.4', table: A_3_4 },
};

function hasFrom(s: Subscription): boolean {
  return s === 'from' || s === 'both';
}

/** States in which a "subscribed" from the user is a pre-approval (3.4.2) rather than an approval. */
const PRE_APPROVABLE: ReadonlySet<StateName> = new Set<StateName>(['None', 'None + Pending Out', 'To']);

function build(table: string, before: SubState, route: boolean, next: SubState, extra: Partial<Transition> = {}): Transition {
  const changed =
    before.subscription !== next.subscription || before.pendingOut !== next.pendingOut || before.pendingIn !== next.pendingIn || before.approved !== next.approved;
  // What a roster item shows: subscription, ask and approved. Pending-in is not part of it.
  const rosterPush = before.subscription !== next.subscription || before.pendingOut !== next.pendingOut || before.approved !== next.approved;
  let presence: PresenceEffect = 'none';
  if (!hasFrom(before.subscription) && hasFrom(next.subscription)) presence = 'available';
  if (hasFrom(before.subscription) && !hasFrom(next.subscription)) presence = 'unavailable';
  return { table, from: stateName(before), state: next, to: stateName(next), changed, route, rosterPush, presence, ...extra };
}

function apply(before: SubState, row: Row): SubState {
  if (!row[1]) return { ...before };
  const next = fromStateName(row[1]);
  // A pre-approval survives transitions that leave the contact without a subscription from the user.
  next.approved = before.approved && !hasFrom(next.subscription);
  return next;
}

/**
 * The user sends a subscription stanza to the contact (RFC 6121 A.2, 3.1.2, 3.1.5, 3.2.2,
 * 3.3.2, 3.4.2).
 */
export function outbound(before: SubState, type: SubscriptionStanza): Transition {
  const { id, table } = OUTBOUND_TABLES[type];
  const name = stateName(before);
  const row = table[name];
  if (type === 'subscribed' && PRE_APPROVABLE.has(name)) {
    // 3.4.2: no subscription request to approve yet: note a pre-approval, never route.
    return build(id, before, false, { ...before, approved: true });
  }
  if (type === 'unsubscribed' && before.approved && !row[1]) {
    // Cancelling a pre-approval (3.4): nothing to route, the flag goes.
    return build(id, before, false, { ...before, approved: false });
  }
  return build(id, before, row[0], apply(before, row));
}

/**
 * The contact's server delivers a subscription stanza to the user (RFC 6121 A.3, 3.1.3, 3.1.6,
 * 3.2.3, 3.3.3, 3.4).
 */
export function inbound(before: SubState, type: SubscriptionStanza): Transition {
  const { id, table } = INBOUND_TABLES[type];
  const name = stateName(before);
  const row = table[name];
  if (type === 'subscribe') {
    if (hasFrom(before.subscription)) {
      // 3.1.3: the contact already has a subscription: answer "subscribed" on the user's behalf.
      return build(id, before, false, { ...before, approved: false }, { autoReply: 'subscribed', presence: 'available' });
    }
    if (before.approved && PRE_APPROVABLE.has(name)) {
      // 3.4: pre-approved: approve automatically, do not bother the user.
      const next = fromStateName(name === 'None' ? 'From' : name === 'To' ? 'Both' : 'From + Pending Out');
      return build(id, before, false, next, { autoReply: 'subscribed' });
    }
  }
  return build(id, before, row[0], apply(before, row));
}

/** Whether the user receives the contact's presence (probes, broadcast from the contact). */
export function hasTo(s: Subscription): boolean {
  return s === 'to' || s === 'both';
}

export { hasFrom };

// ------------------------------------------------------------------------------------------------
// Stored roster items (shared by roster, presence, blocking and the account export)

/** Marks a server-side record of a pending inbound request that is not a roster entry. */
export const HIDDEN_GROUP = '\u0000pending-in';

/**
 * The <item/> of a stored roster item (RFC 6121 roster result or push, and the XEP-0227 export,
 * which passes its own extra attributes); the hidden group never shows.
 */
export function rosterItemElement(item: RosterItem, extra: Record<string, string | undefined> = {}): Element {
  const el = x('item', {
    jid: item.jid,
    name: item.name ?? undefined,
    subscription: item.subscription,
    ask: item.ask ? 'subscribe' : undefined,
    approved: item.approved ? 'true' : undefined,
    ...extra,
  });
  for (const g of item.groups) if (g !== HIDDEN_GROUP) el.append(x('group', {}, g));
  return el;
}

export function isHidden(item: RosterItem): boolean {
  return item.groups.includes(HIDDEN_GROUP);
}

export function itemState(item: RosterItem | null): SubState {
  if (!item) return { subscription: 'none', pendingOut: false, pendingIn: false, approved: false };
  return { subscription: item.subscription, pendingOut: item.ask, pendingIn: item.pendingIn, approved: item.approved };
}

/**
 * Whether `requester` may see `owner`'s presence-level information (disco#info of the account,
 * last activity): the owner themself, or a contact the owner's roster lists with subscription
 * 'from' or 'both' (RFC 6121: the contact receives the owner's presence). A nonexistent account
 * answers false, exactly like an existing one without that subscription (P17).
 */
export async function mayViewPresenceInfo(storage: Storage, owner: Jid, requester: Jid): Promise<boolean> {
  if (requester.bare === owner.bare) return true;
  const account = await storage.accounts.get(owner.local, owner.domain);
  if (!account) return false;
  const item = await storage.roster.get(account.id, requester.bare);
  return item?.subscription === 'from' || item?.subscription === 'both';
}
