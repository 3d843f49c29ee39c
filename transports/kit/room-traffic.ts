/**
 * What a user sends to a MUC room or an occupant, on top of room-membership.ts: groupchat
 * messages (the user's own message comes back with the id it was sent with, echoed by the kit once
 * sendRoomMessage resolved unless the adapter says the network echoes), subject changes, chat
 * states and read markers, mediated invitations, private messages to room/nick (they go to the
 * occupant's contact), and IQs: disco, XEP-0410 self-pings, kicks (muc#admin role='none').
 */
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';
import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import { LegacyNetworkError, type SendReport } from './adapter.js';
import { errorText } from './context.js';
import { SessionUnavailableError, type UserSession } from './user-session.js';
import type { RoomState } from './room-state.js';
import { newId } from './contacts.js';
import { NS_SID, displayedMarker, noticeStanza, textMessageOf } from './messages.js';
import { NS_MUC, NS_MUC_ADMIN, NS_MUC_OWNER, NS_MUC_USER, chatStateOf, iqError, iqResult, stanzaError } from './stanzas.js';
import { jidWithResource, type RoomAddress } from './room-base.js';
import { RoomMembership } from './room-membership.js';
import { NS_VCARD, vcardElement } from './avatars.js';

export abstract class RoomTraffic extends RoomMembership {
  async messageIn(from: Jid, to: Jid, addr: RoomAddress, stanza: Element): Promise<void> {
    const { kit } = this;
    const type = stanza.attrs.type ?? 'normal';
    if (type === 'error') return;
    const roomJid = to.bare;
    const found = this.find(from.bare, roomJid, addr.server);
    if (addr.nick) return this.privateMessage(from, addr, stanza, found?.state);
    const mediated = stanza.getChild('x', NS_MUC_USER)?.getChild('invite');
    if (mediated) return this.mediatedInvitation(from, to, addr, stanza, mediated, found);
    if (type !== 'groupchat') {
      const reply = stanzaError(stanza, 'bad-request', 'only groupchat messages go to the room');
      if (reply) kit.send(reply);
      return;
    }
    if (!found || !found.state.resources.has(from.full) || !found.s.legacy) {
      const reply = stanzaError(stanza, 'not-acceptable', 'you are not in this room');
      if (reply) kit.send(reply);
      return;
    }
    const { s, state } = found;
    const legacy = s.legacy!;
    const subject = stanza.getChild('subject');
    const msg = textMessageOf(stanza);
    // The id the echo and the network share: the client's, or one given here.
    const id = stanza.attrs.id || newId();
    let report: void | SendReport;
    try {
      if (subject && !msg) {
        await legacy.setSubject(state.room, subject.text());
        return;
      }
      if (!msg) {
        const marker = displayedMarker(stanza);
        if (marker && legacy.markRead) await legacy.markRead(state.room, marker);
        const cs = chatStateOf(stanza);
        if ((cs === 'composing' || cs === 'paused' || cs === 'active') && legacy.sendTyping) await legacy.sendTyping(state.room, cs);
        return;
      }
      msg.id = id;
      if (kit.adapter.echoesRoomMessages) state.echoes.push({ text: msg.text, id });
      report = await legacy.sendRoomMessage(state.room, msg);
    } catch (err) {
      const reply = stanzaError(stanza, err instanceof LegacyNetworkError ? 'remote-server-timeout' : 'not-acceptable', errorText(err));
      if (reply) kit.send(reply);
      return;
    }
    if (!kit.adapter.echoesRoomMessages) {
      // XEP-0045 §7.4: the sender gets its own message back, from its occupant JID, with its id,
      // and the room's stanza-id (XEP-0359) by which reactions and retractions refer to it.
      for (const full of state.resources.keys()) {
        const echo = stanza.clone();
        echo.attrs = { ...echo.attrs, id, from: jidWithResource(state.jid, state.nick) ?? state.jid, to: full, type: 'groupchat' };
        delete echo.attrs.xmlns;
        for (const old of echo.getChildren('stanza-id', NS_SID)) echo.remove(old);
        echo.append(x('stanza-id', { xmlns: NS_SID, id, by: state.jid }));
        kit.send(echo);
      }
    }
    // After the echo: the room itself tells what became of the message (a file sent as a link).
    if (report?.notice) for (const full of state.resources.keys()) kit.send(noticeStanza(state.jid, full, 'groupchat', report.notice, newId()));
  }

  /** XEP-0045 §7.8.2: a mediated invitation through the room, to a contact of this network. */
  private async mediatedInvitation(from: Jid, to: Jid, addr: RoomAddress, stanza: Element, invite: Element, found: { s: UserSession; state: RoomState } | null): Promise<void> {
    const { kit } = this;
    const fail = (condition: string, text: string) => {
      const reply = stanzaError(stanza, condition, text);
      if (reply) kit.send(reply);
    };
    const target = Jid.tryParse(invite.attrs.to);
    const contact = target ? kit.addresses.parse(target) : null;
    if (!contact || contact.kind !== 'contact' || contact.server !== addr.server) return fail('not-acceptable', `only ${kit.networkName} contacts on the same server can be invited`);
    if (!found?.s.legacy) return fail('not-acceptable', 'you are not in this room');
    if (!found.s.legacy.invite) return fail('feature-not-implemented', `${kit.networkName} invitations are not supported`);
    try {
      const known = found.s.contacts.get(target!.bare) ?? { id: contact.id, ...(contact.server !== undefined ? { server: contact.server } : {}) };
      await found.s.legacy.invite(found.state.room, known, invite.getChildText('reason') || undefined);
    } catch (err) {
      fail(err instanceof LegacyNetworkError ? 'remote-server-timeout' : 'not-allowed', errorText(err));
    }
    void to;
  }

  private async privateMessage(from: Jid, addr: RoomAddress, stanza: Element, state: RoomState | undefined): Promise<void> {
    const { kit } = this;
    const type = stanza.attrs.type ?? 'normal';
    if (type === 'groupchat') {
      const reply = stanzaError(stanza, 'bad-request', 'groupchat messages go to the room');
      if (reply) kit.send(reply);
      return;
    }
    const msg = textMessageOf(stanza);
    if (!msg) return;
    if (!state || !state.resources.has(from.full)) {
      const reply = stanzaError(stanza, 'not-acceptable', 'join the room to send private messages');
      if (reply) kit.send(reply);
      return;
    }
    const nick = addr.nick!;
    const contact = state.occupants.get(nick)?.contact ?? { id: nick, ...(addr.server !== undefined ? { server: addr.server } : {}) };
    try {
      const s = await kit.sessions.ensure(from.bare, addr.server);
      const report = await s.legacy!.sendMessage(contact, msg);
      if (report?.notice) kit.send(noticeStanza(kit.domain, from.full, 'chat', report.notice, newId()));
    } catch (err) {
      const condition = err instanceof SessionUnavailableError ? err.failure.condition : err instanceof LegacyNetworkError ? 'remote-server-timeout' : 'item-not-found';
      const reply = stanzaError(stanza, condition, errorText(err));
      if (reply) kit.send(reply);
    }
  }

  /** IQs to a room or an occupant; returns the reply. */
  async iqIn(from: Jid, to: Jid, addr: RoomAddress, iq: Element): Promise<Element> {
    const { kit } = this;
    const child = iq.elements[0];
    const ns = child?.xmlns;
    const found = this.find(from.bare, to.bare, addr.server);
    if (iq.attrs.type === 'get' && ns === NS.ping) {
      if (!addr.nick) return iqResult(iq);
      // XEP-0410: answered for a joined resource; not-acceptable tells the client to rejoin.
      if (found?.state.resources.has(from.full) && found.state.joined) return iqResult(iq);
      return iqError(iq, 'not-acceptable', 'not in this room');
    }
    if (addr.nick && iq.attrs.type === 'get' && ns === NS_VCARD && child?.name === 'vCard') {
      // An occupant's vCard (XEP-0054 through the room, XEP-0045 §17.3): its nick and picture, for people in the room.
      if (!found?.state.resources.has(from.full) || !found.state.joined) return iqError(iq, 'not-acceptable', 'not in this room');
      const contact = found.state.occupants.get(addr.nick)?.contact;
      if (!found.state.occupants.has(addr.nick)) return iqError(iq, 'item-not-found', 'no such occupant');
      const legacy = found.s.legacy;
      const avatar = contact && legacy?.fetchAvatar && kit.avatars ? await kit.avatars.get(legacy, contact) : null;
      return iqResult(iq, vcardElement(addr.nick, avatar));
    }
    if (addr.nick) return iqError(iq, 'service-unavailable');
    if (iq.attrs.type === 'get' && ns === NS.discoInfo && child?.name === 'query') {
      if (child.attrs.node) return iqError(iq, 'item-not-found');
      const name = found?.state.room.name ?? addr.id;
      return iqResult(
        iq,
        x(
          'query',
          { xmlns: NS.discoInfo },
          x('identity', { category: 'conference', type: kit.adapter.network, name }),
          [NS.discoInfo, NS_MUC, 'muc_open', 'muc_persistent', 'muc_public', 'muc_semianonymous', 'muc_unmoderated', 'muc_unsecured', NS.ping].map((v) => x('feature', { var: v })),
        ),
      );
    }
    if (iq.attrs.type === 'get' && ns === NS.discoItems && child?.name === 'query') return iqResult(iq, x('query', { xmlns: NS.discoItems }));
    if (iq.attrs.type === 'set' && ns === NS_MUC_ADMIN && child?.name === 'query') {
      const items = child.getChildren('item');
      if (items.length !== 1 || items[0]!.attrs.role !== 'none' || !items[0]!.attrs.nick) return iqError(iq, 'feature-not-implemented', 'only kicking (role none) is supported');
      if (!found || !found.state.resources.has(from.full) || !found.s.legacy) return iqError(iq, 'not-acceptable', 'you are not in this room');
      try {
        await found.s.legacy.kick(found.state.room, items[0]!.attrs.nick, items[0]!.getChildText('reason') ?? undefined);
        return iqResult(iq);
      } catch (err) {
        return iqError(iq, err instanceof LegacyNetworkError ? 'remote-server-timeout' : 'not-allowed', errorText(err));
      }
    }
    if (ns === NS_MUC_ADMIN || ns === NS_MUC_OWNER) return iqError(iq, 'feature-not-implemented');
    return iqError(iq, 'service-unavailable');
  }
}
