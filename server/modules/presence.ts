/**
 * RFC 6121 sections 3 and 4: presence subscriptions and presence.
 *
 * Two handlers per stanza event. The outbound one ('intercept' phase, stanzas from a local client) does
 * what the user's server does: broadcast, directed presence, outbound subscription processing.
 * It hands everything that leaves the user on with router.send, so a contact on another server
 * goes out through whatever handles 'presence/remote' (s2s, components) and a local contact comes
 * back in through the inbound handler ('deliver' phase, after blocking/filtering modules in 'handle'), which
 * does what the contact's server does: deliver, answer probes, inbound subscription processing.
 * Local and remote contacts take the same path; only probes to local contacts on initial presence
 * are answered straight from the session registry.
 *
 * Decisions, with the RFC text they follow:
 * - Subscription stanzas: the tables in core/subscription-states.ts (Appendix A) decide state, routing
 *   and roster pushes; they are stamped with bare JIDs (3.1.2). A subscribe from a contact that
 *   already has a subscription is answered "subscribed" by the server (3.1.3); a pre-approved one
 *   likewise (3.4). Subscription stanzas to or from the account itself are ignored.
 * - Pending inbound requests are stored (roster.ts, pendingIn) and delivered again to each resource
 *   that sends initial presence (3.1.3). The request's optional children (status, nick) are not
 *   stored: the re-delivered request is a bare <presence type='subscribe'/>.
 * - Limits on pending requests (config `subscriptions`), since anyone, a remote server with
 *   millions of JIDs included, can make a request and each one is stored and re-sent at every
 *   login: a new request from a stranger (no roster item the user made) is refused once
 *   `maxPendingPerDomain` requests from the sender's domain are waiting (remote domains only;
 *   local accounts share the host's domain and are limited by registration) with policy-violation,
 *   or once `maxPendingPerUser` requests in all are waiting with resource-constraint (RFC 6120
 *   8.3.3.12/8.3.3.14), both of type wait and bounced to the sender, so nothing is dropped silently.
 *   At the cap the requests already waiting survive and new ones are refused: an evicted request
 *   would vanish without its sender ever knowing, and a flood could push out a real request that
 *   came first; a refused sender can ask again once the user has answered. Contacts on the roster
 *   (they can already reach the user) and configured components (a transport asks once per legacy
 *   contact it adds) are not limited, and a request that is already pending is not counted twice.
 * - Initial presence (4.2.2): to every contact with subscription from/both, to all of the user's
 *   available resources including the sender; the other resources' presence to the new one;
 *   probes (from the bare JID, 4.3.1) to contacts with to/both, local ones answered at once.
 * - Probes (4.3.2): a contact without a subscription from the prober, or no such account, is
 *   answered "unsubscribed" (the same answer either way: P17); a subscribed prober gets each
 *   available resource's last presence, or an unavailable presence from the bare JID.
 * - Priority: <priority/> must be an integer in -128..127 (RFC 6121 4.7.2.3), else bad-request.
 * - Directed presence (4.6): remembered per resource (session.directedPresence) and sent the
 *   unavailable presence at unavailable or disconnect, unless the broadcast already reached it.
 * - Inbound presence to a bare JID goes to every available resource; to a full JID, to that
 *   resource if it is available or itself sent directed presence to the sender (a MUC join
 *   before initial presence). Delivery does not depend on subscriptions (directed presence).
 * - A client's probe is routed from its bare JID (the contact's side decides); client stanzas
 *   never gain anything from the server beyond from/to stamping (P19), except the avatar hash the
 *   vCard module puts into available presence (XEP-0398, the user's own public vCard photo).
 * - Account deletion: the account's resources go unavailable, every roster contact gets
 *   unsubscribe and unsubscribed, and the JID is removed from local rosters with pushes.
 */
import type { GatehouseModule, ServerContext } from '../core/context.js';
import type { StanzaEvent } from '../core/hooks.js';
import type { ClientSession } from '../core/session.js';
import { errorReply } from '../../shared/xml/stanza-errors.js';
import type { Account, RosterItem } from '../../storage/types.js';
import { Element, x } from '../../shared/xml/element.js';
import { Jid } from '../../shared/jid.js';
import type { Services } from '../core/services.js';
import { HIDDEN_GROUP, hasFrom, hasTo, inbound, isHidden, itemState, outbound, type SubscriptionStanza, type Transition } from '../core/subscription-states.js';
import { subscriptionsConfigSection } from './presence-config.js';

const SUBSCRIPTION_TYPES = new Set(['subscribe', 'subscribed', 'unsubscribe', 'unsubscribed']);

/** The priority of an available presence, or null if it is not a valid one (RFC 6121 4.7.2.3). */
export function parsePriority(stanza: Element): number | null {
  const el = stanza.getChild('priority');
  if (!el) return 0;
  const text = el.text().trim();
  if (!/^[+-]?\d{1,4}$/.test(text)) return null;
  const n = Number.parseInt(text, 10);
  return n >= -128 && n <= 127 ? n : null;
}

class Presence {
  private readonly roster: Services['roster'];

  constructor(private readonly ctx: ServerContext) {
    this.roster = ctx.services.need('roster');
  }

  // ---- outbound: stanzas from a local client ----

  async outbound(e: StanzaEvent): Promise<boolean | void> {
    if (e.origin.kind !== 'c2s') return;
    const session = e.origin.session;
    const { stanza } = e;
    const type = stanza.attrs.type;
    const user = session.jid.toBare();
    const broadcast = stanza.attrs.to === undefined || (e.to.bare === user.bare && !e.to.resource);
    if (type === undefined || type === 'unavailable') {
      if (broadcast) {
        if (type === undefined) await this.available(session, stanza);
        else await this.unavailable(session, stanza);
      } else {
        await this.directed(session, e);
      }
      return true;
    }
    if (SUBSCRIPTION_TYPES.has(type)) {
      if (stanza.attrs.to === undefined || e.to.bare === user.bare) return true;
      await this.outboundSubscription(user, e.to.toBare(), type as SubscriptionStanza, stanza);
      return true;
    }
    if (type === 'probe') {
      if (stanza.attrs.to === undefined || e.to.bare === user.bare) return true;
      await this.ctx.router.send(x('presence', { type: 'probe', from: user.bare, to: e.to.bare }));
      return true;
    }
    if (type === 'error') {
      if (stanza.attrs.to !== undefined) await this.ctx.router.send(stanza);
      return true;
    }
    const reply = errorReply(stanza, 'bad-request', 'unknown presence type');
    if (reply) {
      delete reply.attrs.from;
      session.send(reply);
    }
    return true;
  }

  private async available(session: ClientSession, stanza: Element): Promise<void> {
    const priority = parsePriority(stanza);
    if (priority === null) {
      const reply = errorReply(stanza, 'bad-request', 'priority must be an integer from -128 to 127');
      if (reply) {
        delete reply.attrs.from;
        delete reply.attrs.to;
        session.send(reply);
      }
      return;
    }
    const user = session.jid.toBare();
    const account = await this.roster.account(user);
    const initial = !session.available;
    const presence = stanza.clone();
    delete presence.attrs.to;
    presence.attrs.from = session.jid.full;
    session.available = true;
    session.priority = priority;
    session.presence = presence;

    const items = account ? await this.ctx.storage.roster.list(account.id) : [];
    for (const item of items) {
      if (!hasFrom(item.subscription)) continue;
      await this.ctx.router.send(withTo(presence, item.jid));
    }
    // RFC 6121 4.2.2 / 4.4.2: to all of the user's available resources, the sender included.
    for (const s of this.ctx.sessions.ofAccount(user.bare)) {
      if (s.available) s.send(withTo(presence, s.jid.full));
    }
    if (!initial) return;

    for (const s of this.ctx.sessions.ofAccount(user.bare)) {
      if (s !== session && s.available && s.presence) session.send(withTo(s.presence, session.jid.full));
    }
    for (const item of items) {
      if (!hasTo(item.subscription)) continue;
      const contact = Jid.tryParse(item.jid);
      if (!contact) continue;
      if (contact.local && this.ctx.router.isLocalHost(contact.domain)) {
        // A local contact: answered from the session registry, only to the new resource.
        for (const answer of await this.probeAnswer(contact, session.jid)) await this.ctx.router.send(answer);
      } else {
        await this.ctx.router.send(x('presence', { type: 'probe', from: user.bare, to: contact.bare }));
      }
    }
    // RFC 6121 3.1.3: pending subscription requests go to each resource that becomes available.
    for (const item of items) {
      if (item.pendingIn) session.send(x('presence', { type: 'subscribe', from: item.jid, to: user.bare }));
    }
    await this.ctx.hooks.emit('session/available', { session });
  }

  /** Unavailable broadcast: explicit, at disconnect, or when the account goes. */
  async unavailable(session: ClientSession, stanza: Element | null): Promise<void> {
    const wasAvailable = session.available;
    const user = session.jid.toBare();
    const presence = stanza ? stanza.clone() : x('presence', { type: 'unavailable' });
    delete presence.attrs.to;
    presence.attrs.from = session.jid.full;
    presence.attrs.type = 'unavailable';
    session.available = false;
    session.presence = null;

    const reached = new Set<string>();
    if (wasAvailable) {
      const account = await this.roster.account(user);
      const items = account ? await this.ctx.storage.roster.list(account.id) : [];
      for (const item of items) {
        if (!hasFrom(item.subscription)) continue;
        reached.add(item.jid);
        await this.ctx.router.send(withTo(presence, item.jid));
      }
    }
    const directed = [...session.directedPresence];
    for (const target of directed) {
      const jid = Jid.tryParse(target);
      // A bare JID reached (broadcast or directed) covers its resources.
      if (!jid || reached.has(jid.bare) || (jid.resource && session.directedPresence.has(jid.bare))) continue;
      await this.ctx.router.send(withTo(presence, target));
    }
    for (const target of directed) session.directedPresence.delete(target);
    if (!wasAvailable) return;
    for (const s of this.ctx.sessions.ofAccount(user.bare)) {
      if (s !== session && s.available) s.send(withTo(presence, s.jid.full));
    }
    await this.ctx.hooks.emit('session/unavailable', { session });
  }

  private async directed(session: ClientSession, e: StanzaEvent): Promise<void> {
    const target = e.to.full;
    if (e.stanza.attrs.type === 'unavailable') session.directedPresence.delete(target);
    else session.directedPresence.add(target);
    await this.ctx.router.send(e.stanza);
  }

  private async outboundSubscription(user: Jid, contact: Jid, type: SubscriptionStanza, stanza: Element): Promise<void> {
    const account = await this.roster.account(user);
    if (!account) return;
    const t = await this.roster.locked(user.bare, async () => {
      const item = await this.ctx.storage.roster.get(account.id, contact.bare);
      const t = outbound(itemState(item), type);
      if (t.changed) await this.persist(user, account, contact.bare, item, t, t.rosterPush);
      return t;
    });
    if (t.route) {
      const out = stanza.clone();
      out.attrs.from = user.bare;
      out.attrs.to = contact.bare;
      await this.ctx.router.send(out);
    }
    await this.roster.sendPresenceOf(user, contact.bare, t.presence);
  }

  /**
   * Stores the state a transition produced. An item the user acts on (a push-worthy change)
   * becomes a roster entry; a hidden record left with nothing pending is deleted.
   */
  private async persist(owner: Jid, account: Account, contact: string, item: RosterItem | null, t: Transition, visible: boolean): Promise<void> {
    const { subscription, pendingOut, pendingIn, approved } = t.state;
    let next: RosterItem;
    if (item) {
      next = { ...item, subscription, ask: pendingOut, pendingIn, approved };
      if (isHidden(item) && visible) next.groups = item.groups.filter((g) => g !== HIDDEN_GROUP);
    } else {
      next = { jid: contact, name: null, subscription, ask: pendingOut, pendingIn, approved, groups: visible ? [] : [HIDDEN_GROUP] };
    }
    if (isHidden(next) && subscription === 'none' && !pendingOut && !pendingIn && !approved) {
      if (item) await this.roster.delete(owner, account.id, item);
      return;
    }
    await this.roster.store(owner, account.id, next, t.rosterPush);
  }

  // ---- inbound: stanzas for a local account from anywhere but its own client ----

  async inbound(e: StanzaEvent): Promise<boolean | void> {
    if (e.origin.kind === 'c2s') return;
    const type = e.stanza.attrs.type;
    if (type === undefined || type === 'unavailable' || type === 'error') {
      this.deliver(e);
      return true;
    }
    if (type === 'probe') {
      if (e.from.bare === e.to.bare) return true;
      for (const answer of await this.probeAnswer(e.to.toBare(), e.from)) await this.ctx.router.send(answer);
      return true;
    }
    if (SUBSCRIPTION_TYPES.has(type)) {
      await this.inboundSubscription(e, type as SubscriptionStanza);
      return true;
    }
    return true;
  }

  private deliver(e: StanzaEvent): void {
    const { stanza, to, from } = e;
    if (to.resource) {
      const s = this.ctx.sessions.get(to.full);
      if (!s) return;
      if (s.available || stanza.attrs.type === 'error' || sentDirectedTo(s.directedPresence, from)) s.send(stanza);
      return;
    }
    for (const s of this.ctx.sessions.ofAccount(to.bare)) if (s.available) s.send(stanza);
  }

  /** What a local contact answers to a probe from `prober` (RFC 6121 4.3.2). */
  private async probeAnswer(contact: Jid, prober: Jid): Promise<Element[]> {
    const account = await this.roster.account(contact);
    const item = account ? await this.ctx.storage.roster.get(account.id, prober.bare) : null;
    if (!item || !hasFrom(item.subscription)) {
      return [x('presence', { type: 'unsubscribed', from: contact.bare, to: prober.bare })];
    }
    const answers: Element[] = [];
    for (const s of this.ctx.sessions.ofAccount(contact.bare)) {
      if (!s.available || !s.presence) continue;
      const p = withTo(s.presence, prober.full);
      p.attrs.from = s.jid.full;
      answers.push(p);
    }
    if (answers.length === 0) answers.push(x('presence', { type: 'unavailable', from: contact.bare, to: prober.full }));
    return answers;
  }

  private async inboundSubscription(e: StanzaEvent, type: SubscriptionStanza): Promise<void> {
    const user = e.to.toBare();
    const contact = e.from.toBare();
    if (user.bare === contact.bare) return;
    const account = await this.roster.account(user);
    if (!account) return;
    const t = await this.roster.locked(user.bare, async () => {
      const item = await this.ctx.storage.roster.get(account.id, contact.bare);
      const t = inbound(itemState(item), type);
      if (t.state.pendingIn && !item?.pendingIn && (!item || isHidden(item)) && e.origin.kind !== 'component') {
        const refusal = await this.pendingLimit(account, contact);
        if (refusal) return refusal;
      }
      // What the contact does never puts it on the user's roster (3.1.3): a new record is hidden.
      if (t.changed) await this.persist(user, account, contact.bare, item, t, false);
      return t;
    });
    if ('condition' in t) {
      this.ctx.log.debug('subscription request refused', { account: user.bare, condition: t.condition });
      this.ctx.router.bounce(e, t.condition, t.text, 'wait');
      return;
    }
    if (t.route) {
      const stanza = e.stanza.clone();
      stanza.attrs.from = contact.bare;
      stanza.attrs.to = user.bare;
      for (const s of this.ctx.sessions.ofAccount(user.bare)) if (s.available) s.send(stanza);
    }
    if (t.autoReply) await this.ctx.router.send(x('presence', { type: t.autoReply, from: user.bare, to: contact.bare }));
    await this.roster.sendPresenceOf(user, contact.bare, t.presence);
  }

  /**
   * Whether a new pending request from a stranger would go over the account's limits (see the
   * module comment): the refusal to send back, or null.
   */
  private async pendingLimit(account: Account, contact: Jid): Promise<{ condition: string; text: string } | null> {
    const { maxPendingPerUser, maxPendingPerDomain } = this.ctx.config.subscriptions;
    const pending = this.ctx.storage.roster;
    if (!this.ctx.router.isLocalHost(contact.domain) && (await pending.countPendingIn(account.id, contact.domain)) >= maxPendingPerDomain) {
      return { condition: 'policy-violation', text: 'too many subscription requests from your domain are waiting for this user' };
    }
    if ((await pending.countPendingIn(account.id)) >= maxPendingPerUser) {
      return { condition: 'resource-constraint', text: 'too many subscription requests are waiting for this user' };
    }
    return null;
  }

  // ---- lifecycle ----

  async closed(session: ClientSession): Promise<void> {
    if (session.available || session.directedPresence.size > 0) await this.unavailable(session, null);
  }

  /** XEP-0077 / RFC 6121: an account about to be deleted leaves every roster it is in. */
  async deleting(account: Account, jid: Jid): Promise<void> {
    const user = jid.toBare();
    for (const s of this.ctx.sessions.ofAccount(user.bare)) await this.closed(s);
    const items = await this.ctx.storage.roster.list(account.id);
    for (const item of items) {
      await this.ctx.router.send(x('presence', { type: 'unsubscribe', from: user.bare, to: item.jid }));
      await this.ctx.router.send(x('presence', { type: 'unsubscribed', from: user.bare, to: item.jid }));
    }
    for (const entry of await this.ctx.storage.roster.listByContact(user.bare)) {
      if (entry.accountId === account.id) continue;
      const owner = Jid.of(entry.username, entry.host);
      if (!owner) continue;
      await this.roster.locked(owner.bare, async () => {
        const item = await this.ctx.storage.roster.get(entry.accountId, user.bare);
        if (item) await this.roster.delete(owner, entry.accountId, item);
      });
    }
    this.roster.forget(user.bare);
  }
}

/**
 * Whether a resource sent directed presence to `from`, its bare JID or another full JID of that bare
 * JID (a MUC join goes to room@service/nick, the other occupants answer from room@service/theirs).
 */
function sentDirectedTo(directed: ReadonlySet<string>, from: Jid): boolean {
  if (directed.size === 0) return false;
  if (directed.has(from.full) || directed.has(from.bare)) return true;
  const prefix = from.bare + '/';
  for (const t of directed) if (t.startsWith(prefix)) return true;
  return false;
}

function withTo(stanza: Element, to: string): Element {
  const copy = stanza.clone();
  copy.attrs.to = to;
  return copy;
}

export function createPresenceModule(): GatehouseModule {
  return {
    name: 'presence',
    config: subscriptionsConfigSection,
    needs: ['roster'],
    specs: [
      {
        id: 'RFC 6121',
        version: 'sections 3 (subscriptions, incl. 3.4 pre-approval), 4 (presence), Appendix A',
        status: 'complete',
        note: 'pending requests are re-delivered without their status text',
      },
    ],
    load(ctx) {
      const p = new Presence(ctx);
      const { hooks } = ctx;
      for (const target of ['bare', 'full', 'remote'] as const) {
        hooks.on(`presence/${target}`, (e) => p.outbound(e), 'intercept');
      }
      for (const target of ['bare', 'full'] as const) {
        hooks.on(`presence/${target}`, (e) => p.inbound(e), 'deliver');
      }
      hooks.on('session/closed', ({ session }) => p.closed(session));
      hooks.on('account/deleting', ({ account, jid }) => p.deleting(account, jid));
    },
  };
}
