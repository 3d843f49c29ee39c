/** The unavailable presence of a session whose node died or left without telling its contacts. */
import { Jid } from '../../shared/jid.js';
import { x } from '../../shared/xml/element.js';
import type { NodeBasics } from './node-host.js';
import type { RemoteSession } from './remote-session.js';

/** What presence on a node's behalf needs of this node. */
export interface OnBehalfHost extends Pick<NodeBasics, 'registry' | 'context'> {
  /** This node is the living node with the first name: it does what one node must do for all. */
  isFirstAlive(): boolean;
}

export class PresenceOnBehalf {
  constructor(private readonly host: OnBehalfHost) {}

  private get ctx() {
    return this.host.context();
  }

  private get registry() {
    return this.host.registry;
  }

  private isFirstAlive(): boolean {
    return this.host.isFirstAlive();
  }

  /**
   * A session of a dead node ends for its contacts (RFC 6121 4.5.2 on its behalf): each node tells
   * its own sessions of contacts and of the account's other resources; the first living node also
   * tells contacts on other domains.
   */
  async unavailableOnBehalf(session: RemoteSession): Promise<void> {
    const ctx = this.ctx;
    if (!ctx) return;
    const presence = x('presence', { type: 'unavailable', from: session.jid.full });
    const to = (target: string) => {
      const copy = presence.clone();
      copy.attrs.to = target;
      return copy;
    };
    const first = this.isFirstAlive();
    const reached = new Set<string>();
    if (session.available) {
      const account = await ctx.storage.accounts.get(session.jid.local, session.jid.domain);
      const items = account ? await ctx.storage.roster.list(account.id) : [];
      for (const item of items) {
        if (item.subscription !== 'from' && item.subscription !== 'both') continue;
        const contact = Jid.tryParse(item.jid);
        if (!contact) continue;
        reached.add(contact.bare);
        if (ctx.router.isLocalHost(contact.domain)) {
          for (const s of this.registry.localOfAccount(contact.bare)) if (s.available) s.send(to(s.jid.full));
        } else if (first) {
          await ctx.router.send(to(item.jid));
        }
      }
    }
    // Directed presence outside the roster (RFC 6121 4.6.3): as the presence module does for a
    // session that ends, each target once (a bare JID covers its resources).
    for (const target of session.directedPresence) {
      const jid = Jid.tryParse(target);
      if (!jid || reached.has(jid.bare) || (jid.resource && session.directedPresence.has(jid.bare))) continue;
      if (ctx.router.isLocalHost(jid.domain)) {
        const here = jid.resource ? [this.registry.localSession(jid.full)] : this.registry.localOfAccount(jid.bare);
        for (const s of here) if (s) s.send(to(s.jid.full));
      } else if (first) {
        await ctx.router.send(to(target));
      }
    }
    if (!session.available) return;
    for (const s of this.registry.localOfAccount(session.jid.bare)) if (s.available) s.send(to(s.jid.full));
  }
}
