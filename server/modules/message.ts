import type { GatehouseModule, ServerContext } from '../core/context.js';
import type { StanzaEvent } from '../core/hooks.js';
import { messageType, nonNegativeResources, topResources } from '../core/delivery.js';

/**
 * RFC 6121 section 8.5: delivery of message stanzas addressed to local accounts.
 *
 * The handlers run in the 'deliver' phase (priority -1, as Prosody's mod_message does) so that modules which inspect
 * or copy messages (carbons, archives, blocking) see them first in 'handle' and 'copy'.
 * Stanzas are handed on exactly as received: no payload is read beyond the 'type' attribute, so
 * end-to-end encrypted payloads (OMEMO, OpenPGP) pass through untouched (P19, P20).
 *
 * Decisions, with the RFC text they follow:
 * - bare JID, normal/chat (8.5.2.1.1): every available resource with the highest non-negative
 *   priority (all of them when several share it, as Prosody does). None (no resource, only
 *   connected-without-presence resources, or only negative priorities): 'message/offline' for an
 *   existing account (XEP-0160 stores it); otherwise, or when nobody stores it, service-unavailable.
 * - bare JID, groupchat (8.5.2.1.1, 8.5.2.2.1): never delivered, service-unavailable.
 * - bare JID, headline (8.5.2.1.1, 8.5.2.2.1): every available non-negative resource, else dropped.
 * - bare JID, error (8.5.2.1.1, 8.5.2.2.1): "the server MUST silently ignore the message". Error
 *   replies to what a client sent go to its full JID; only server-side senders use the bare JID.
 * - no such account (8.5.1): the same outcome as for an existing account that stores nothing:
 *   service-unavailable for normal/chat/groupchat, silence for headline/error. The error carries no
 *   text, so it tells the sender nothing an offline account with a full store would not (P17).
 * - full JID with a bound resource (8.5.3.1): delivered, whatever the type and whether or not the
 *   resource has sent presence.
 * - full JID without that resource (8.5.3.2.1): chat is treated as addressed to the bare JID. The RFC
 *   lets normal be dropped or bounced; like Prosody and ejabberd we also treat it as bare, which
 *   loses nothing (receipts, invitations). groupchat: service-unavailable. headline, error: dropped.
 * - the host itself: dropped silently (modules that want such messages hook earlier).
 */

export function createMessageModule(): GatehouseModule {
  return {
    name: 'message',
    specs: [
      {
        id: 'RFC 6121',
        version: 'section 8.5 (message stanzas)',
        status: 'complete',
        note: 'bare-JID messages go to all resources with the highest non-negative priority; chat and normal to an unavailable full JID fall back to the bare JID',
      },
    ],
    load(ctx) {
      const { hooks } = ctx;
      hooks.on('message/bare', (e) => toBare(ctx, e), 'deliver');
      hooks.on('message/full', (e) => toFull(ctx, e), 'deliver');
      hooks.on('message/host', () => true, 'deliver');
    },
  };
}

async function toFull(ctx: ServerContext, event: StanzaEvent): Promise<true> {
  const session = ctx.sessions.get(event.to.full);
  if (session) {
    ctx.router.deliver(session, event.stanza);
    return true;
  }
  switch (messageType(event.stanza)) {
    case 'normal':
    case 'chat':
      return toBare(ctx, event);
    case 'groupchat':
      return ctx.router.bounce(event, 'service-unavailable');
    default:
      return true;
  }
}

async function toBare(ctx: ServerContext, event: StanzaEvent): Promise<true> {
  const { router, sessions, storage, hooks } = ctx;
  const { stanza } = event;
  const bare = event.to.bare;
  switch (messageType(stanza)) {
    case 'error':
      return true;
    case 'groupchat':
      return router.bounce(event, 'service-unavailable');
    case 'headline':
      for (const s of nonNegativeResources(sessions, bare)) router.deliver(s, stanza);
      return true;
    default: {
      const top = topResources(sessions, bare);
      if (top.length > 0) {
        for (const s of top) router.deliver(s, stanza);
        return true;
      }
      const account = await storage.accounts.get(event.to.local, event.to.domain);
      if (account && (await hooks.fire('message/offline', event))) return true;
      return router.bounce(event, 'service-unavailable');
    }
  }
}
