/**
 * XEP-0280 Message Carbons (version 1.0.1): every carbons-enabled resource of a user sees both
 * sides of the user's conversations, whichever resource took part in them.
 *
 * - Enable/disable (sections 4, 5): an IQ-set from the user's own client with no 'to' (or to its
 *   own bare JID); state per session, forgotten when the session closes. Repeated enables and
 *   disables are no-ops answered with a result (section 10.1). Anybody else gets not-allowed.
 * - Eligible messages (section 6.1, the 'urn:xmpp:carbons:rules:0' set, which is advertised):
 *   never with <private xmlns='urn:xmpp:carbons:2'/> or a XEP-0334 <no-copy/> hint, never groupchat
 *   or headline; otherwise chat, normal with a <body>, anything carrying IM payloads (XEP-0184
 *   receipts, XEP-0085 chat states, XEP-0333 markers, XEP-0249 and mediated MUC invitations,
 *   XEP-0353 call messages), and errors bounced from a bare JID (the error answer to an eligible
 *   message, approximated like Prosody). A private message from a MUC occupant (a muc#user <x/>
 *   without an invitation, from a full JID) is not copied to the recipient's other resources; the
 *   MUC already delivers it to every joined resource.
 * - Received (section 7): when an eligible message to a local account (bare or full JID) is
 *   delivered, every carbons-enabled resource of that account that does not get the original
 *   under RFC 6121 8.5 (server/modules/message.ts decides; recomputed here with the same helpers)
 *   gets <received/>. A bare-JID message reaches the highest-priority resources, so those never
 *   get a carbon as well. A message that is dropped (an error to a bare JID) is not copied.
 * - Sent (section 8): when a resource sends an eligible message, the account's other
 *   carbons-enabled resources get <sent/>, whether or not the sender enabled carbons. A message
 *   from one of the user's resources to another is copied as <sent/> only, to the enabled
 *   resources that neither sent nor receive it (no resource sees the same message twice).
 * - Private (section 9): a <private/> message is not copied on either side, and the receiving
 *   server (this one, for local recipients) removes the <private/> element before delivering it.
 * - Wrapping: <message from='user@domain' to='user@domain/resource' type='(original)'> with
 *   <received|sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'> and the
 *   original stanza (XEP-0297), otherwise untouched (P19, P20: payloads are neither read nor changed).
 *
 * Carbons go to every enabled, bound resource, also one that has not sent presence yet: clients
 * enable carbons before their initial presence precisely so that nothing is missed in between
 * (as Prosody and ejabberd do).
 *
 * Hooks: message/bare, message/full (and message/remote for what leaves the server) in the 'copy'
 * phase, after filters such as blocking ('handle') have had their say and before the message
 * module delivers ('deliver'). The handler never claims the event and runs synchronously, so the session state
 * it reads is exactly what the message module then sees.
 */
import type { GatehouseModule, ServerContext } from '../core/context.js';
import type { StanzaEvent } from '../core/hooks.js';
import type { ClientSession } from '../core/session.js';
import { replyError, replyResult } from '../core/iq.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { messageType, nonNegativeResources, topResources } from '../core/delivery.js';

export const NS_CARBONS = 'urn:xmpp:carbons:2';
export const NS_CARBONS_RULES = 'urn:xmpp:carbons:rules:0';
export const NS_FORWARD = 'urn:xmpp:forward:0';
export const NS_HINTS = 'urn:xmpp:hints';
const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';

/** Payload namespaces that make a message part of an IM conversation (XEP-0280 6.1). */
const IM_PAYLOADS = new Set([
  'urn:xmpp:receipts', // XEP-0184
  'http://jabber.org/protocol/chatstates', // XEP-0085
  'urn:xmpp:chat-markers:0', // XEP-0333
  'jabber:x:conference', // XEP-0249 direct MUC invitation
  'urn:xmpp:jingle-message:0', // XEP-0353 call propose/accept/reject, so other devices stop ringing
  'urn:xmpp:jingle-message:1',
]);

/**
 * Whether a message may be carbon-copied (XEP-0280 6.1). `inbound` for the recipient's side;
 * `peerIsFull`: the other party's address (the sender's for inbound) has a resource.
 */
export function carbonsEligible(stanza: Element, inbound: boolean, peerIsFull: boolean): boolean {
  if (stanza.getChild('private', NS_CARBONS) || stanza.getChild('no-copy', NS_HINTS)) return false;
  // Already a carbon (or a forged one): never wrapped again.
  if (stanza.getChild('received', NS_CARBONS) || stanza.getChild('sent', NS_CARBONS)) return false;
  const type = messageType(stanza);
  if (type === 'groupchat' || type === 'headline') return false;
  const mucUser = stanza.getChild('x', NS_MUC_USER);
  if (mucUser && mucUser.getChild('invite')) return true; // mediated invitation
  if (inbound && mucUser && peerIsFull) return false; // a MUC private message from an occupant
  if (type === 'chat') return true;
  if (type === 'error') return inbound && !peerIsFull;
  if (stanza.getChild('body')) return true;
  return stanza.elements.some((c) => c.xmlns !== undefined && IM_PAYLOADS.has(c.xmlns));
}

/**
 * The resources that get the original of a message to a local account, following the message
 * module's RFC 6121 8.5 rules; null when the message is dropped or bounced (nobody gets it).
 * An empty set means it goes to offline storage.
 */
export function originalRecipients(ctx: ServerContext, event: StanzaEvent): Set<ClientSession> | null {
  const { sessions } = ctx;
  const type = messageType(event.stanza);
  if (event.to.resource) {
    const s = sessions.get(event.to.full);
    if (s) return new Set([s]);
    if (type !== 'normal' && type !== 'chat') return null;
  }
  switch (type) {
    case 'error':
    case 'groupchat':
      return null;
    case 'headline':
      return new Set(nonNegativeResources(sessions, event.to.bare));
    default:
      return new Set(topResources(sessions, event.to.bare));
  }
}

function wrap(direction: 'sent' | 'received', user: string, to: string, original: Element): Element {
  const copy = original.clone();
  copy.attrs.xmlns = NS.client;
  return x('message', { xmlns: NS.client, from: user, to, type: original.attrs.type }, x(direction, { xmlns: NS_CARBONS }, x('forwarded', { xmlns: NS_FORWARD }, copy)));
}

/** The session flag of an enabled resource: a flag, so cluster nodes see it on each other's sessions. */
const FLAG = 'carbons';

class Carbons {
  /** This node's enabled sessions: on a single node, none means no message needs a look. */
  private readonly enabledHere = new Set<ClientSession>();

  constructor(private readonly ctx: ServerContext) {}

  toggle(e: StanzaEvent, on: boolean): true {
    const { router } = this.ctx;
    if (e.origin.kind !== 'c2s' || e.from.bare !== e.to.bare) return replyError(router, e, 'not-allowed');
    e.origin.session.setFlag(FLAG, on);
    if (on) this.enabledHere.add(e.origin.session);
    else this.enabledHere.delete(e.origin.session);
    return replyResult(router, e);
  }

  forget(session: ClientSession): void {
    this.enabledHere.delete(session);
  }

  /** Never claims the event: the message goes on to delivery (or out of the server) unchanged. */
  onMessage(e: StanzaEvent, target: 'bare' | 'full' | 'remote'): void {
    // In a cluster, resources on other nodes may have carbons on: no shortcut there.
    if (this.enabledHere.size === 0 && !e.stanza.getChild('private', NS_CARBONS) && !this.ctx.services.get('cluster')) return;
    const { stanza } = e;
    const sender = e.origin.kind === 'c2s' ? e.origin.session : null;
    const toLocalAccount = target !== 'remote';
    const toSelf = sender !== null && toLocalAccount && e.to.bare === sender.jid.bare;

    let originals: Set<ClientSession> | null | undefined;
    const recipients = () => (originals === undefined ? (originals = originalRecipients(this.ctx, e)) : originals);

    // Sent: the sender's other enabled resources.
    if (sender && carbonsEligible(stanza, false, !!e.to.resource)) {
      const user = sender.jid.bare;
      let forwarded: Element | null = null;
      for (const s of this.ctx.sessions.ofAccount(user)) {
        if (s === sender || !s.hasFlag(FLAG)) continue;
        if (toSelf && recipients()?.has(s)) continue;
        if (!forwarded) {
          forwarded = stanza.clone();
          if (forwarded.attrs.to === undefined) forwarded.attrs.to = e.to.full;
        }
        this.ctx.router.deliver(s, wrap('sent', user, s.jid.full, forwarded));
      }
    }
    if (!toLocalAccount) return;

    // Received: the recipient's enabled resources that do not get the original.
    const eligible = !toSelf && carbonsEligible(stanza, true, !!e.from.resource);
    const priv = stanza.getChild('private', NS_CARBONS);
    if (priv) stanza.remove(priv);
    if (!eligible) return;
    const got = recipients();
    if (got === null) return;
    const user = e.to.bare;
    for (const s of this.ctx.sessions.ofAccount(user)) {
      if (!s.hasFlag(FLAG) || got.has(s)) continue;
      this.ctx.router.deliver(s, wrap('received', user, s.jid.full, stanza));
    }
  }
}

export function createCarbonsModule(): GatehouseModule {
  return {
    name: 'carbons',
    specs: [
      {
        id: 'XEP-0280',
        version: '1.0.1',
        status: 'complete',
        note: "eligibility rules of 'urn:xmpp:carbons:rules:0' (advertised); <private/> and XEP-0334 <no-copy/> honoured; carbons of outgoing MUC private messages are not limited to resources sharing the nick",
      },
      { id: 'XEP-0297', version: '1.0', status: 'partial', note: 'used to wrap carbon copies' },
      { id: 'XEP-0334', version: '0.3.0', status: 'partial', note: '<no-copy/> keeps a message out of carbons' },
    ],
    load(ctx) {
      const c = new Carbons(ctx);
      const { hooks, disco } = ctx;
      disco.addServerFeature(NS_CARBONS, NS_CARBONS_RULES);
      hooks.on(`iq-set/bare/${NS_CARBONS}:enable`, (e) => c.toggle(e, true));
      hooks.on(`iq-set/bare/${NS_CARBONS}:disable`, (e) => c.toggle(e, false));
      for (const target of ['bare', 'full', 'remote'] as const) {
        hooks.on(`message/${target}`, (e) => c.onMessage(e, target), 'copy');
      }
      hooks.on('session/closed', ({ session }) => c.forget(session));
    },
  };
}
