/**
 * XEP-0352 Client State Indication (version 1.0.0): a client tells the server when its user is not
 * looking (<inactive xmlns='urn:xmpp:csi:0'/>) and when they are back (<active/>), and the server
 * saves the phone's radio and battery by holding back what can wait.
 *
 * The <csi/> stream feature is offered after authentication (section 4.1). Every stream starts
 * active (section 5); the state belongs to the bound session and is forgotten when a resumed stream
 * takes the session over (version 0.2.1: "the CSI state is not restored when the stream is resumed"),
 * so a resumption also delivers what was held. Nothing answers the nonzas, and the state is never
 * revealed to anybody (section 6).
 *
 * While a session is inactive, a SessionLayer (server/core/session.ts) holds back, in order:
 * - available and unavailable presence, collapsed per sender (its full JID) to the latest one: the
 *   client only needs each contact's current presence when the user looks again;
 * - messages with nothing to show: only XEP-0085 chat states, XEP-0334 hints, XEP-0359 ids and a
 *   thread, also inside a XEP-0280 carbon copy (typing on one's other device);
 * - headline messages without a body or subject (PEP notifications and the like).
 * Anything else is important and goes out at once, after everything held so far (so the client
 * still sees stanzas in the order the server sent them, RFC 6120 10.1): messages with a body or any
 * other payload (receipts, markers, encrypted messages, calls, invitations, errors), subscription
 * requests and answers, IQs. Flushed as well: everything, when the client says <active/> (before
 * the next stanza from that client is handled, section 5.1), and when 500 stanzas are held (the
 * queue is bounded; nothing is ever dropped for lack of room). Held presence of a session that ends
 * is dropped: it is state, not content, and nobody is left to show it to.
 */
import type { GatehouseModule } from '../core/context.js';
import type { BoundSession, SessionLayer } from '../core/session.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

export const NS_CSI = 'urn:xmpp:csi:0';
const NS_CHATSTATES = 'http://jabber.org/protocol/chatstates';
const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_FORWARD = 'urn:xmpp:forward:0';

/** Held stanzas per session, at most: more flushes them all. */
export const MAX_HELD = 500;

/** Children that carry nothing to show to the user. */
const EPHEMERAL_NS = new Set([NS_CHATSTATES, 'urn:xmpp:hints', 'urn:xmpp:sid:0']);
const STANZA_NS = new Set<string | undefined>([undefined, NS.client]);

/** The key a held stanza is collapsed under (presence: its sender), or null if it is important. */
export function holdKey(stanza: Element): string | null {
  const type = stanza.attrs.type;
  if (stanza.name === 'presence') return type === undefined || type === 'unavailable' ? `presence ${stanza.attrs.from ?? ''}` : null;
  if (stanza.name !== 'message' || type === 'error') return null;
  if (type === 'headline') return stanza.getChild('body') || stanza.getChild('subject') ? null : '';
  return nothingToShow(stanza) ? '' : null;
}

function nothingToShow(message: Element): boolean {
  const carbon = message.getChild('received', NS_CARBONS) ?? message.getChild('sent', NS_CARBONS);
  if (carbon) {
    const inner = carbon.getChild('forwarded', NS_FORWARD)?.getChild('message');
    return message.elements.length === 1 && inner !== undefined && nothingToShow(inner);
  }
  return message.elements.every((c) => (c.name === 'thread' && STANZA_NS.has(c.xmlns)) || (c.xmlns !== undefined && EPHEMERAL_NS.has(c.xmlns)));
}

class CsiLayer implements SessionLayer {
  inactive = false;
  /** Held stanzas in the order they were sent; a presence replaced by a newer one moves to the end. */
  private readonly held = new Map<string, Element>();
  private seq = 0;

  constructor(private readonly session: BoundSession) {}

  outbound(stanza: Element): boolean {
    if (!this.inactive) return false;
    const key = holdKey(stanza);
    if (key === null) {
      this.flush();
      return false;
    }
    const k = key || `#${++this.seq}`;
    this.held.delete(k);
    this.held.set(k, stanza);
    if (this.held.size > MAX_HELD) this.flush();
    return true;
  }

  setActive(active: boolean): void {
    this.inactive = !active;
    if (active) this.flush();
  }

  /** Another stream carries the session now: it starts active. */
  attached(): void {
    this.setActive(true);
  }

  ended(): void {
    this.held.clear();
  }

  private flush(): void {
    if (this.held.size === 0) return;
    const stanzas = [...this.held.values()];
    this.held.clear();
    for (const s of stanzas) this.session.forward(this, s);
  }
}

export function createCsiModule(): GatehouseModule {
  return {
    name: 'csi',
    specs: [
      {
        id: 'XEP-0352',
        version: '1.0.0',
        status: 'complete',
        note: 'while inactive, presence (latest per contact), chat states and PEP-style headlines wait; messages with content flush and go at once',
      },
    ],
    load({ hooks }) {
      const layers = new WeakMap<BoundSession, CsiLayer>();
      hooks.on('c2s/features', ({ stage, features }) => {
        if (stage === 'post-auth') features.append(x('csi', { xmlns: NS_CSI }));
      });
      hooks.on('c2s/nonza', ({ session, element }) => {
        if (element.xmlns !== NS_CSI) return false;
        // Before binding there is nothing to hold back yet; the stream starts active anyway.
        if (!session || (element.name !== 'active' && element.name !== 'inactive')) return true;
        let layer = layers.get(session);
        if (!layer) {
          if (element.name === 'active') return true;
          layers.set(session, (layer = new CsiLayer(session)));
          session.addLayer(layer);
        }
        layer.setActive(element.name === 'active');
        return true;
      });
    },
  };
}
